//! Pooling over NCHW planes — `max_pool2d` (backward through the saved winner of each
//! window), `avg_pool2d`, `adaptive_avg_pool2d` — and nearest-neighbour upsampling.
//! Backward kernels gather over the windows covering each input element, so they need
//! no atomics and are deterministic.

use crate::autograd::record;
use crate::backend::pool2d::Pool;
use crate::error::{arg_err, shape_err, Result};
use crate::shape;
use crate::tensor::{check_float, DType, Tensor};

fn plan(
    op: &'static str,
    x: &Tensor,
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
) -> Result<Pool> {
    check_float(op, x)?;
    if x.rank() != 4 {
        return shape_err(
            op,
            format!("needs NCHW input, got {}", shape::fmt(x.shape())),
        );
    }
    if k.0 == 0 || k.1 == 0 || s.0 == 0 || s.1 == 0 {
        return arg_err(op, "kernel size and stride must be positive");
    }
    if 2 * p.0 > k.0 || 2 * p.1 > k.1 {
        return arg_err(
            op,
            format!("padding {p:?} must be at most half the kernel {k:?}"),
        );
    }
    let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    let out =
        |i: usize, k: usize, s: usize, p: usize| (i + 2 * p).checked_sub(k).map(|v| v / s + 1);
    let (Some(ho), Some(wo)) = (out(h, k.0, s.0, p.0), out(w, k.1, s.1, p.1)) else {
        return shape_err(
            op,
            format!(
                "the {k:?} window is larger than the padded input {}",
                shape::fmt(x.shape())
            ),
        );
    };
    Ok(Pool {
        n,
        c,
        h,
        w,
        ho,
        wo,
        k,
        s,
        p,
        adaptive: false,
    })
}

/// Max pooling with PyTorch's `max_pool2d(x, kernel, stride, padding)` semantics: a window
/// holding NaN gives NaN, and its gradient goes to the window's last NaN.
pub fn max_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    // Half inputs are read as they are (a native f16 one gives its output directly).
    let run = |x: &Tensor| max_pool2d_recorded(x, kernel, stride, padding);
    match crate::ops::half::direct("max_pool2d", &[x], |w| run(&w[0])) {
        Some(r) => r,
        None => run(x),
    }
}

/// [`max_pool2d`] on an input of the op's own dtype.
fn max_pool2d_recorded(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let like = crate::ops::half::like;
    let g = plan("max_pool2d", x, kernel, stride, padding)?;
    // The positions only a backward reads (inference leaves them out on the GPU).
    let positions = crate::autograd::is_grad_enabled() && x.requires_grad();
    let (v, i) = x.device().backend().max_pool(x.storage(), &g, positions)?;
    let y = like(v, g.out_shape(), x)?;
    // Recorded exactly when `positions` holds (grad mode on, x requiring a gradient).
    let idx =
        positions.then(|| Tensor::from_storage(i, g.out_shape(), DType::U32, x.device().clone()));
    Ok(record(y, "max_pool2d", &[x], move |grad| {
        let Some(idx) = &idx else {
            return Err(crate::error::Error::Autograd(
                "max_pool2d: a backward without saved positions (a wgrad bug)".into(),
            ));
        };
        let dx = grad
            .device()
            .backend()
            .max_pool_backward(grad.storage(), idx.storage(), &g)?;
        Ok(vec![Some(like(dx, g.in_shape(), grad)?)])
    }))
}

fn avg_pool(x: &Tensor, g: Pool, name: &'static str) -> Result<Tensor> {
    if let Some(r) = crate::ops::half::widened(name, &[x], |w| avg_pool(&w[0], g, name)) {
        return r;
    }
    let out = x.device().backend().avg_pool(x.storage(), &g)?;
    let y = Tensor::like(out, g.out_shape(), x);
    Ok(record(y, name, &[x], move |grad| {
        let dx = grad
            .device()
            .backend()
            .avg_pool_backward(grad.storage(), &g)?;
        Ok(vec![Some(Tensor::like(dx, g.in_shape(), grad))])
    }))
}

/// [`max_pool2d`] with PyTorch's defaults `stride=None, padding=0`: non-overlapping
/// `kernel` windows, the stride equal to the kernel (`F.max_pool2d(x, 2)` is
/// `max_pool2d_by(&x, (2, 2))`). A trailing row or column that fills no window is
/// dropped, as in PyTorch.
pub fn max_pool2d_by(x: &Tensor, kernel: (usize, usize)) -> Result<Tensor> {
    max_pool2d(x, kernel, kernel, (0, 0))
}

/// [`avg_pool2d`] with PyTorch's defaults `stride=None, padding=0`: non-overlapping
/// `kernel` windows, the stride equal to the kernel (`F.avg_pool2d(x, 2)` is
/// `avg_pool2d_by(&x, (2, 2))`).
pub fn avg_pool2d_by(x: &Tensor, kernel: (usize, usize)) -> Result<Tensor> {
    avg_pool2d(x, kernel, kernel, (0, 0))
}

/// Average pooling, counting padded zeros in the divisor (PyTorch's default).
pub fn avg_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    if let Some(r) = crate::ops::half::widened("avg_pool2d", &[x], |w| {
        avg_pool2d(&w[0], kernel, stride, padding)
    }) {
        return r;
    }
    let g = plan("avg_pool2d", x, kernel, stride, padding)?;
    avg_pool(x, g, "avg_pool2d")
}

/// Average pooling to a fixed output size (`torch.nn.AdaptiveAvgPool2d`).
pub fn adaptive_avg_pool2d(x: &Tensor, output: (usize, usize)) -> Result<Tensor> {
    if let Some(r) = crate::ops::half::widened("adaptive_avg_pool2d", &[x], |w| {
        adaptive_avg_pool2d(&w[0], output)
    }) {
        return r;
    }
    check_float("adaptive_avg_pool2d", x)?;
    if x.rank() != 4 || output.0 == 0 || output.1 == 0 {
        return shape_err(
            "adaptive_avg_pool2d",
            format!(
                "needs NCHW input and a positive output size, got {} -> {output:?}",
                shape::fmt(x.shape())
            ),
        );
    }
    let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    if output == (1, 1) && h * w > 1024 {
        // Global average pooling of a large plane: a mean, which spreads over many
        // workgroups, instead of one thread looping over the whole plane.
        return x.mean_dim(&[2, 3], true);
    }
    let g = Pool {
        n,
        c,
        h,
        w,
        ho: output.0,
        wo: output.1,
        k: (1, 1),
        s: (1, 1),
        p: (0, 0),
        adaptive: true,
    };
    avg_pool(x, g, "adaptive_avg_pool2d")
}

/// Nearest-neighbour upsampling by integer factors (`nn.Upsample(scale_factor, 'nearest')`).
pub fn upsample_nearest(x: &Tensor, scale: (usize, usize)) -> Result<Tensor> {
    if let Some(r) =
        crate::ops::half::widened("upsample_nearest", &[x], |w| upsample_nearest(&w[0], scale))
    {
        return r;
    }
    check_float("upsample_nearest", x)?;
    if x.rank() != 4 || scale.0 == 0 || scale.1 == 0 {
        return shape_err(
            "upsample_nearest",
            format!(
                "needs NCHW input and positive factors, got {} and {scale:?}",
                shape::fmt(x.shape())
            ),
        );
    }
    let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    let g = Pool {
        n,
        c,
        h,
        w,
        ho: h * scale.0,
        wo: w * scale.1,
        k: scale,
        s: (1, 1),
        p: (0, 0),
        adaptive: false,
    };
    let out = x.device().backend().upsample(x.storage(), &g)?;
    let y = Tensor::like(out, g.out_shape(), x);
    Ok(record(y, "upsample_nearest", &[x], move |grad| {
        let dx = grad
            .device()
            .backend()
            .upsample_backward(grad.storage(), &g)?;
        Ok(vec![Some(Tensor::like(dx, g.in_shape(), grad))])
    }))
}

impl Tensor {
    /// Max pooling, see [`max_pool2d`].
    pub fn max_pool2d(
        &self,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        max_pool2d(self, kernel, stride, padding)
    }
    /// Average pooling, see [`avg_pool2d`].
    pub fn avg_pool2d(
        &self,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        avg_pool2d(self, kernel, stride, padding)
    }
    /// Max pooling with the stride equal to the kernel, see [`max_pool2d_by`].
    pub fn max_pool2d_by(&self, kernel: (usize, usize)) -> Result<Tensor> {
        max_pool2d_by(self, kernel)
    }
    /// Average pooling with the stride equal to the kernel, see [`avg_pool2d_by`].
    pub fn avg_pool2d_by(&self, kernel: (usize, usize)) -> Result<Tensor> {
        avg_pool2d_by(self, kernel)
    }
    /// Adaptive average pooling, see [`adaptive_avg_pool2d`].
    pub fn adaptive_avg_pool2d(&self, output: (usize, usize)) -> Result<Tensor> {
        adaptive_avg_pool2d(self, output)
    }
    /// Nearest upsampling, see [`upsample_nearest`].
    pub fn upsample_nearest(&self, scale: (usize, usize)) -> Result<Tensor> {
        upsample_nearest(self, scale)
    }
}
