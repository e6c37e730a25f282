//! Convolutions (NCHW, PyTorch's semantics and weight layouts) as im2col + the tiled
//! matmul. `im2col` and `col2im` are adjoint ops: each one's backward is the other's
//! kernel, so a convolution's input gradient is col2im and a transposed convolution is
//! col2im forward. Weight gradients come from the matmul's own backward.

use crate::autograd::record;
use crate::backend::matmul::{Act, ConvAct};
use crate::error::{arg_err, shape_err, Result};
use crate::ops::split;
use crate::shape;
use crate::tensor::{check_pair, Tensor};

mod im2col;
use im2col::check_positive;
pub use im2col::{col2im, im2col, Geometry};

/// Options of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvOptions {
    /// Stride (rows, columns).
    pub stride: (usize, usize),
    /// Zero padding (rows, columns).
    pub padding: (usize, usize),
    /// Dilation (rows, columns).
    pub dilation: (usize, usize),
    /// Channel groups.
    pub groups: usize,
    /// Extra rows/columns on one side of a transposed convolution's output.
    pub output_padding: (usize, usize),
}

impl Default for ConvOptions {
    fn default() -> Self {
        ConvOptions {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
            output_padding: (0, 0),
        }
    }
}

fn check_4d(op: &'static str, x: &Tensor, w: &Tensor) -> Result<()> {
    check_pair(op, x, w)?;
    if x.rank() != 4 || w.rank() != 4 {
        return shape_err(
            op,
            format!(
                "input {} and weight {} must both be 4-D (NCHW)",
                shape::fmt(x.shape()),
                shape::fmt(w.shape())
            ),
        );
    }
    Ok(())
}

/// A bias must be `[channels]`: checked before anything is launched.
fn check_bias(bias: Option<&Tensor>, channels: usize, op: &'static str) -> Result<()> {
    match bias {
        Some(b) if b.shape() != [channels] => {
            shape_err(op, format!("bias {:?} should be [{channels}]", b.shape()))
        }
        _ => Ok(()),
    }
}

/// Adds a bias already checked by [`check_bias`].
fn add_bias(y: Tensor, bias: Option<&Tensor>, channels: usize) -> Result<Tensor> {
    match bias {
        None => Ok(y),
        Some(b) => y.add(&b.reshape(&[channels, 1, 1])?),
    }
}

/// The geometry of `conv2d(x, weight)` with options `o`, after checking the shapes.
fn conv_geometry(x: &Tensor, weight: &Tensor, o: ConvOptions) -> Result<Geometry> {
    check_4d("conv2d", x, weight)?;
    let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    let [oc, cg, kh, kw] = [
        weight.shape()[0],
        weight.shape()[1],
        weight.shape()[2],
        weight.shape()[3],
    ];
    let g = o.groups;
    // PyTorch's checks and wording, in its order (`c != cg * g` is `c % g != 0 ||
    // cg != c / g`).
    if g == 0 {
        return shape_err(
            "conv2d",
            "non-positive groups is not supported (groups = 0)",
        );
    }
    if oc % g != 0 {
        return shape_err(
            "conv2d",
            format!(
                "given groups={g}, expected weight to be divisible by {g} at dimension 0, but got weight of size {} instead",
                shape::fmt(weight.shape())
            ),
        );
    }
    if cg.checked_mul(g) != Some(c) {
        return shape_err(
            "conv2d",
            format!(
                "given groups={g}, weight of size {}, expected input{} to have {} channels, but got {c} channels instead",
                shape::fmt(weight.shape()),
                shape::fmt(x.shape()),
                cg as u128 * g as u128
            ),
        );
    }
    check_positive("conv2d", (kh, kw), o.stride, o.dilation)?;
    let (Some(ho), Some(wo)) = (
        Geometry::out_size(h, kh, o.stride.0, o.padding.0, o.dilation.0),
        Geometry::out_size(w, kw, o.stride.1, o.padding.1, o.dilation.1),
    ) else {
        return shape_err(
            "conv2d",
            format!(
                "the {kh}x{kw} kernel (dilation {:?}) is larger than the padded input {}",
                o.dilation,
                shape::fmt(x.shape())
            ),
        );
    };
    crate::ops::check_out("conv2d", &[n, oc, ho, wo], x.dtype(), x.device())?;
    // The columns a backend without the fused convolution and grouped
    // convolutions lay out (the fused one-group convolution gathers them inside the
    // product and never stores them).
    if !x.device().backend().fuses_conv() || g > 1 {
        crate::ops::check_out("conv2d", &[n, c * kh * kw, ho * wo], x.dtype(), x.device())?;
    }
    Ok(Geometry {
        n,
        c,
        h,
        w,
        ho,
        wo,
        k: (kh, kw),
        stride: o.stride,
        padding: o.padding,
        dilation: o.dilation,
    })
}

/// Images per piece when a GPU convolution's input, columns or output (over the whole
/// batch) is too large for one binding and the batch can be cut; `None` otherwise.
fn image_pieces(x: &Tensor, geo: &Geometry, out_channels: usize) -> Option<usize> {
    let g = x.device();
    let per_image = [
        geo.c * geo.h * geo.w,
        geo.c * geo.kk() * geo.ho * geo.wo,
        out_channels * geo.ho * geo.wo,
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    let big = per_image
        .checked_mul(geo.n)
        .is_none_or(|total| split::over(g, total));
    (geo.n > 1 && big).then(|| split::rows_per_piece(g, per_image))
}

/// Output rows per piece when one GPU image's input, columns or output is too large
/// for one binding (a batch is cut by images first, [`image_pieces`]); `None` when it
/// fits, or when not even one output row (with the input rows it reads) fits.
fn row_pieces(x: &Tensor, geo: &Geometry, out_channels: usize) -> Option<usize> {
    let g = x.device();
    if geo.n != 1 || geo.ho < 2 {
        return None;
    }
    let per_image = [
        geo.c * geo.h * geo.w,
        geo.c * geo.kk() * geo.ho * geo.wo,
        out_channels * geo.ho * geo.wo,
    ];
    if !per_image.iter().any(|&e| split::over(g, e)) {
        return None;
    }
    // r output rows read (r - 1) stride + span input rows (padding included).
    let cap = g.backend().binding_elements();
    let span = geo.dilation.0 * (geo.k.0 - 1) + 1;
    let image_row = (geo.c * geo.w).max(1);
    let by_input = (cap / image_row)
        .checked_sub(span)
        .map_or(0, |rest| rest / geo.stride.0 + 1);
    let by_cols = cap / (geo.c * geo.kk() * geo.wo).max(1);
    let by_output = cap / (out_channels * geo.wo).max(1);
    let per = by_input.min(by_cols).min(by_output).min(geo.ho - 1);
    (per > 0).then_some(per)
}

/// A convolution `f` (the same options with no row padding) run on pieces of the
/// single image `x` of `per` output rows each, its results joined along the rows: each
/// piece reads the input rows its outputs need, the kernel's halo included, with the
/// padding's zero rows joined on at the edges. Slicing and joining are differentiable
/// buffer copies, so the backward runs in the same pieces.
fn map_output_rows(
    x: &Tensor,
    geo: &Geometry,
    per: usize,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let (s, pad, h) = (geo.stride.0, geo.padding.0 as isize, geo.h as isize);
    let span = geo.dilation.0 * (geo.k.0 - 1) + 1;
    let zeros = |rows: usize| Tensor::zeros(&[1, geo.c, rows, geo.w], x.device());
    let mut outs = Vec::with_capacity(geo.ho.div_ceil(per));
    for r0 in (0..geo.ho).step_by(per) {
        let r1 = (r0 + per).min(geo.ho);
        // Input rows [a, b) in padded coordinates less the padding.
        let a = (r0 * s) as isize - pad;
        let b = ((r1 - 1) * s + span) as isize - pad;
        let total = (b - a) as usize;
        let top = (-a).clamp(0, total as isize) as usize;
        let (lo, hi) = (a.max(0), b.min(h));
        let mid = (hi - lo).max(0) as usize;
        let bottom = total - top - mid;
        let mut parts = Vec::with_capacity(3);
        if top > 0 {
            parts.push(zeros(top)?);
        }
        if mid > 0 {
            parts.push(x.narrow(2, lo as usize, mid)?);
        }
        if bottom > 0 {
            parts.push(zeros(bottom)?);
        }
        let piece = match parts.len() {
            1 => parts.pop().expect("one part"),
            _ => Tensor::cat(&parts.iter().collect::<Vec<_>>(), 2)?,
        };
        outs.push(f(&piece)?);
    }
    Tensor::cat(&outs.iter().collect::<Vec<_>>(), 2)
}

/// Input rows per piece when one GPU image of a transposed convolution (geometry `geo`,
/// transposed: its `ho` rows are the input's) has an input, columns or output too large
/// for one binding; `None` when it fits or cannot be cut. A piece has at least as many
/// rows as the kernel spans, so its output overlaps only its neighbours'.
fn transposed_row_pieces(x: &Tensor, geo: &Geometry, in_channels: usize) -> Option<usize> {
    let g = x.device();
    let (h, w, cout) = (geo.ho, geo.wo, geo.c);
    if geo.n != 1 || h < 2 {
        return None;
    }
    let per_image = [
        in_channels * h * w,
        cout * geo.kk() * h * w,
        cout * geo.h * geo.w,
    ];
    if !per_image.iter().any(|&e| split::over(g, e)) {
        return None;
    }
    let cap = g.backend().binding_elements();
    let (s, span) = (geo.stride.0, geo.dilation.0 * (geo.k.0 - 1) + 1);
    let by_input = cap / (in_channels * w).max(1);
    let by_cols = cap / (cout * geo.kk() * w).max(1);
    // r input rows give (r - 1) s + span output rows (before the padding is cut).
    let by_output = (cap / (cout * geo.w).max(1))
        .checked_sub(span)
        .map_or(0, |rest| rest / s + 1);
    let per = by_input.min(by_cols).min(by_output).min(h - 1);
    (per > 0 && per >= span.div_ceil(s)).then_some(per)
}

/// A transposed convolution `f` (called with the options less their row padding and
/// row output padding) run on bands of `per` input rows of the single image `x`: each
/// band's output starts `stride` rows further per input row, so neighbouring bands'
/// outputs overlap where the kernel spans more rows than the stride (they are added
/// there) and leave zero rows between them where it spans fewer. The padding's rows
/// are then cut from the top and bottom and the output padding's zero rows joined on.
/// All differentiable slicing, adding and joining, so the backward runs in the same
/// bands. The bias is the caller's (it would be added twice where bands overlap).
fn overlap_add_rows(
    x: &Tensor,
    geo: &Geometry,
    o: ConvOptions,
    per: usize,
    f: impl Fn(&Tensor, ConvOptions) -> Result<Tensor>,
) -> Result<Tensor> {
    let (h, s) = (geo.ho, geo.stride.0);
    let (cout, wo) = (geo.c, geo.w);
    let band_o = ConvOptions {
        padding: (0, o.padding.1),
        output_padding: (0, o.output_padding.1),
        ..o
    };
    let zeros = |rows: usize| Tensor::zeros(&[1, cout, rows, wo], x.device());
    // Final rows, and the rows from `at` on that a later band may still add to.
    let mut done: Vec<Tensor> = Vec::new();
    let mut tail: Option<(Tensor, usize)> = None;
    for r0 in (0..h).step_by(per) {
        let rows = per.min(h - r0);
        let band = f(&x.narrow(2, r0, rows)?, band_o)?;
        let (start, len) = (r0 * s, band.shape()[2]);
        tail = Some(match tail.take() {
            None => (band, start),
            Some((t, at)) => {
                let end = at + t.shape()[2];
                if start >= end {
                    done.push(t);
                    if start > end {
                        done.push(zeros(start - end)?);
                    }
                    (band, start)
                } else {
                    // The band's first `end - start` rows land on the tail's last ones
                    // (no further: a band spans at least the kernel's rows).
                    let over = end - start;
                    if start > at {
                        done.push(t.narrow(2, 0, start - at)?);
                    }
                    let sum = t
                        .narrow(2, start - at, over)?
                        .add(&band.narrow(2, 0, over)?)?;
                    let joined = if len > over {
                        Tensor::cat(&[&sum, &band.narrow(2, over, len - over)?], 2)?
                    } else {
                        sum
                    };
                    (joined, start)
                }
            }
        });
    }
    done.extend(tail.map(|(t, _)| t));
    // The full output, (H - 1) s + span rows, then the output padding's zero rows.
    if o.output_padding.0 > 0 {
        done.push(zeros(o.output_padding.0)?);
    }
    let full = Tensor::cat(&done.iter().collect::<Vec<_>>(), 2)?;
    full.narrow(2, o.padding.0, geo.h)
}

/// 2-D convolution: input `[N, C, H, W]`, weight `[O, C / groups, kh, kw]`, bias `[O]`.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    o: ConvOptions,
) -> Result<Tensor> {
    let ins = crate::ops::half::with_optional(&[x, weight], &[bias]);
    if let Some(r) = crate::ops::half::widened("conv2d", &ins, |w| {
        let (f, b) = crate::ops::half::split_optional(w, 2, &[bias]);
        conv2d(&f[0], &f[1], b[0], o)
    }) {
        return r;
    }
    let geo = conv_geometry(x, weight, o)?;
    // Every check before anything is launched: a failed op leaves no work behind.
    check_bias(bias, weight.shape()[0], "conv2d")?;
    if let Some(per) = image_pieces(x, &geo, weight.shape()[0]) {
        return split::map_rows(x, per, |p| conv2d(p, weight, bias, o));
    }
    if let Some(per) = row_pieces(x, &geo, weight.shape()[0]) {
        let o = ConvOptions {
            padding: (0, o.padding.1),
            ..o
        };
        return map_output_rows(x, &geo, per, |p| conv2d(p, weight, bias, o));
    }
    let (n, c, oc, g) = (geo.n, geo.c, weight.shape()[0], o.groups);
    let (cg, kh, kw, ho, wo) = (c / g, geo.k.0, geo.k.1, geo.ho, geo.wo);
    let kk = cg * kh * kw;
    // Per image and group: [O/g, kk] x [kk, Ho Wo], the weight broadcast over the batch;
    // the product [N, g, O/g, Ho Wo] is the NCHW output. Its backward sums the weight's
    // gradient over the batch in place (see `matmul`).
    let cols = im2col(x, geo)?.reshape(&[n, g, kk, ho * wo])?;
    let wm = weight.reshape(&[g, oc / g, kk])?;
    let y = wm.matmul(&cols)?.reshape(&[n, oc, ho, wo])?;
    add_bias(y, bias, oc)
}

/// `act(conv2d(x, weight, bias))`, fused on the GPU for one group: forward one product
/// that gathers the columns from the image as it loads them (no im2col in memory) and
/// adds the bias and applies the activation as it stores; backward one product for the
/// weight's gradient (gathering the columns again) that sums the batch and gives the
/// bias's gradient as its operand's row sums (both finished by one pass over the
/// partials), one for the columns' gradient (stored transposed) and one fold back to
/// the image, the activation's derivative applied as the products load the output
/// gradient. On the CPU the same fusion runs one image at a time per thread (the
/// image's columns in a cache-sized block, the bias and activation on the product's
/// output). Other cases (grouped convolutions) run `conv2d` and the activation as
/// separate ops, with the same result.
pub fn conv2d_act(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    o: ConvOptions,
    act: Act,
) -> Result<Tensor> {
    let ins = crate::ops::half::with_optional(&[x, weight], &[bias]);
    match crate::ops::half::direct("conv2d", &ins, |w| {
        let (f, b) = crate::ops::half::split_optional(w, 2, &[bias]);
        conv2d_act_recorded(&f[0], &f[1], b[0], o, act)
    }) {
        Some(r) => r,
        None => conv2d_act_recorded(x, weight, bias, o, act),
    }
}

/// [`conv2d_act`] on inputs of one dtype (half ones read as they are by the fused
/// kernels; the unfused path widens them).
fn conv2d_act_recorded(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    o: ConvOptions,
    act: Act,
) -> Result<Tensor> {
    if o.groups != 1 || !x.device().backend().fuses_conv() {
        return act.apply_op(&conv2d(x, weight, bias, o)?);
    }
    let geo = conv_geometry(x, weight, o)?;
    let oc = weight.shape()[0];
    crate::ops::fused::check_bias("conv2d", x, bias, oc)?;
    if let Some(per) = image_pieces(x, &geo, oc) {
        return split::map_rows(x, per, |p| conv2d_act(p, weight, bias, o, act));
    }
    if let Some(per) = row_pieces(x, &geo, oc) {
        let o = ConvOptions {
            padding: (0, o.padding.1),
            ..o
        };
        return map_output_rows(x, &geo, per, |p| conv2d_act(p, weight, bias, o, act));
    }
    let save = crate::autograd::is_grad_enabled()
        && [Some(x), Some(weight), bias]
            .iter()
            .flatten()
            .any(|t| t.requires_grad());
    let c = ConvAct { geo, oc, act, save };
    let (xd, wd) = (x.detach(), weight.detach());
    let out_shape = vec![geo.n, oc, geo.ho, geo.wo];
    let backend = x.device().backend();
    let (y, pre) = backend.conv_act(xd.storage(), wd.storage(), bias.map(Tensor::storage), &c)?;
    let like = crate::ops::half::like;
    let y = like(y, out_shape.clone(), x)?;
    let saved = match pre {
        Some(p) => Some(like(p, out_shape, x)?),
        None => (act != Act::Identity).then(|| y.detach()),
    };
    let need = [
        x.requires_grad(),
        weight.requires_grad(),
        bias.is_some_and(|b| b.requires_grad()),
    ];
    let has_bias = bias.is_some();
    let w_shape = weight.shape().to_vec();
    let mut inputs = vec![x, weight];
    inputs.extend(bias);
    Ok(record(y, "conv2d_act", &inputs, move |g| {
        let [dx, dw, db] = g.device().backend().conv_act_backward(
            g.storage(),
            saved.as_ref().map(Tensor::storage),
            xd.storage(),
            wd.storage(),
            &c,
            need,
        )?;
        let mut grads = vec![
            dx.map(|d| like(d, geo.image_shape(), g)).transpose()?,
            dw.map(|d| like(d, w_shape.clone(), g)).transpose()?,
        ];
        if has_bias {
            grads.push(db.map(|d| like(d, vec![oc], g)).transpose()?);
        }
        Ok(grads)
    }))
}

/// Transposed 2-D convolution (`torch.nn.functional.conv_transpose2d`): input
/// `[N, Cin, H, W]`, weight `[Cin, Cout / groups, kh, kw]`, bias `[Cout]`; the output
/// has `(H - 1) stride - 2 padding + dilation (kh - 1) + output_padding + 1` rows.
pub fn conv_transpose2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    o: ConvOptions,
) -> Result<Tensor> {
    let ins = crate::ops::half::with_optional(&[x, weight], &[bias]);
    if let Some(r) = crate::ops::half::widened("conv_transpose2d", &ins, |w| {
        let (f, b) = crate::ops::half::split_optional(w, 2, &[bias]);
        conv_transpose2d(&f[0], &f[1], b[0], o)
    }) {
        return r;
    }
    check_4d("conv_transpose2d", x, weight)?;
    let [n, cin, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    let [wc, cog, kh, kw] = [
        weight.shape()[0],
        weight.shape()[1],
        weight.shape()[2],
        weight.shape()[3],
    ];
    let g = o.groups;
    if g == 0 || wc != cin || cin % g != 0 {
        return shape_err(
            "conv_transpose2d",
            format!(
                "input {} and weight {} with groups = {g}: expected weight [Cin, Cout / groups, kh, kw]",
                shape::fmt(x.shape()),
                shape::fmt(weight.shape())
            ),
        );
    }
    check_positive("conv_transpose2d", (kh, kw), o.stride, o.dilation)?;
    if o.output_padding.0 >= o.stride.0.max(o.dilation.0)
        || o.output_padding.1 >= o.stride.1.max(o.dilation.1)
    {
        return arg_err(
            "conv_transpose2d",
            "output_padding must be smaller than stride or dilation",
        );
    }
    if h == 0 || w == 0 {
        return shape_err(
            "conv_transpose2d",
            format!("the input {} has no pixels", shape::fmt(x.shape())),
        );
    }
    // (i - 1) s + d (k - 1) + op + 1 - 2 p, with every step checked: huge strides or
    // paddings give an error, not a wrapped size.
    let size = |i: usize, k: usize, s: usize, p: usize, d: usize, op: usize| {
        (i - 1)
            .checked_mul(s)?
            .checked_add(d.checked_mul(k - 1)?)?
            .checked_add(op + 1)?
            .checked_sub(p.checked_mul(2)?)
    };
    let (Some(ho), Some(wo)) = (
        size(
            h,
            kh,
            o.stride.0,
            o.padding.0,
            o.dilation.0,
            o.output_padding.0,
        ),
        size(
            w,
            kw,
            o.stride.1,
            o.padding.1,
            o.dilation.1,
            o.output_padding.1,
        ),
    ) else {
        return shape_err("conv_transpose2d", "the padding removes the whole output");
    };
    let cout = cog * g;
    check_bias(bias, cout, "conv_transpose2d")?;
    crate::ops::check_out(
        "conv_transpose2d",
        &[n, cout, ho, wo],
        x.dtype(),
        x.device(),
    )?;
    let geo = Geometry {
        n,
        c: cout,
        h: ho,
        w: wo,
        ho: h,
        wo: w,
        k: (kh, kw),
        stride: o.stride,
        padding: o.padding,
        dilation: o.dilation,
    };
    // (The transposed geometry's image is the output, its output the input.)
    if let Some(per) = image_pieces(x, &geo, cin) {
        return split::map_rows(x, per, |p| conv_transpose2d(p, weight, bias, o));
    }
    if let Some(per) = transposed_row_pieces(x, &geo, cin) {
        let y = overlap_add_rows(x, &geo, o, per, |p, o| conv_transpose2d(p, weight, None, o))?;
        return add_bias(y, bias, cout);
    }
    let kk = cog * kh * kw;
    // Columns [N, Cout kh kw, H W] = W^T x per image and group.
    let wt = weight.reshape(&[g, cin / g, kk])?.transpose(-1, -2)?;
    let xs = x.reshape(&[n, g, cin / g, h * w])?;
    let cols = wt.matmul(&xs)?.reshape(&[n, cout * kh * kw, h * w])?;
    let y = col2im(&cols, geo)?;
    add_bias(y, bias, cout)
}

impl Tensor {
    /// 2-D convolution, see [`conv2d`].
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        options: ConvOptions,
    ) -> Result<Tensor> {
        conv2d(self, weight, bias, options)
    }
    /// `act(conv2d(...))` in fused kernels, see [`conv2d_act`].
    pub fn conv2d_act(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        options: ConvOptions,
        act: Act,
    ) -> Result<Tensor> {
        conv2d_act(self, weight, bias, options, act)
    }
    /// Transposed 2-D convolution, see [`conv_transpose2d`].
    pub fn conv_transpose2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        options: ConvOptions,
    ) -> Result<Tensor> {
        conv_transpose2d(self, weight, bias, options)
    }
}
