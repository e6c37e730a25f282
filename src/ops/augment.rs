//! The geometric augmentation kernel: random crop after zero padding (which includes
//! random translation) and horizontal/vertical flips, applied to a whole NCHW batch with
//! per-image choices made on the host. Colour changes are compositions of tensor ops in
//! `data::augment`.

use crate::backend::cpu::{map_float, Float};
use crate::backend::gpu::params::{params, Params};
use crate::backend::gpu::{Kernel, ShaderFile};
use crate::device::Device;
use crate::error::{arg_err, shape_err, Result};
use crate::ops::{gpu_alloc, groups_1d, kernel, shader};
use crate::shape;
use crate::tensor::{check_float, Tensor};

pub(crate) const FILE: ShaderFile = shader("augment", include_str!("../../shaders/augment.wgsl"))
    .with_params(&[&AugmentParams::INFO]);

params! {
    /// The geometric augmentation of an NCHW batch.
    pub(crate) struct AugmentParams as ag {
        /// Images.
        n: u32,
        /// Channels.
        c: u32,
        /// Input height.
        h: u32,
        /// Input width.
        w: u32,
        /// Output height.
        ho: u32,
        /// Output width.
        wo: u32,
        /// Zero padding before the crop.
        pad: u32,
        /// Padding.
        _pad: u32,
    }
}

const GEOMETRIC: &Kernel = kernel!(
    FILE,
    "augment_geometric_fwd",
    [X0, XI, Y0],
    params = AugmentParams
);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![GEOMETRIC]
}

/// What happens to one image: crop offsets into the padded image, and flips.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageMove {
    /// First row of the crop in the padded image (`0..=H + 2 pad - Ho`).
    pub crop_row: u32,
    /// First column of the crop in the padded image.
    pub crop_col: u32,
    /// Mirror left-right.
    pub hflip: bool,
    /// Mirror top-bottom.
    pub vflip: bool,
}

fn geometric_cpu<T: Float>(x: &[T], dims: [usize; 7], moves: &[ImageMove]) -> Vec<T> {
    let [n, c, h, w, ho, wo, pad] = dims;
    let mut out = Vec::with_capacity(n * c * ho * wo);
    for (img, m) in moves.iter().enumerate().take(n) {
        for ch in 0..c {
            for y in 0..ho {
                for xx in 0..wo {
                    let xs = if m.hflip { wo - 1 - xx } else { xx };
                    let ys = if m.vflip { ho - 1 - y } else { y };
                    let iy = (ys + m.crop_row as usize) as isize - pad as isize;
                    let ix = (xs + m.crop_col as usize) as isize - pad as isize;
                    let inside = iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w;
                    out.push(if inside {
                        x[((img * c + ch) * h + iy as usize) * w + ix as usize]
                    } else {
                        T::zero()
                    });
                }
            }
        }
    }
    out
}

/// Pads each image of `x` (`[N, C, H, W]`) with `padding` zeros, crops `out` (rows,
/// columns) at each image's offsets, then flips it as asked. No gradient (data only).
pub fn geometric(
    x: &Tensor,
    padding: usize,
    out: (usize, usize),
    moves: &[ImageMove],
) -> Result<Tensor> {
    check_float("augment", x)?;
    if x.rank() != 4 || moves.len() != x.shape()[0] {
        return shape_err(
            "augment",
            format!(
                "needs NCHW images and one move per image: {} and {} moves",
                shape::fmt(x.shape()),
                moves.len()
            ),
        );
    }
    let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    if out.0 > h + 2 * padding || out.1 > w + 2 * padding {
        return arg_err(
            "augment",
            format!("a {out:?} crop does not fit {h}x{w} padded by {padding}"),
        );
    }
    let (max_r, max_c) = (
        (h + 2 * padding - out.0) as u32,
        (w + 2 * padding - out.1) as u32,
    );
    if let Some(m) = moves
        .iter()
        .find(|m| m.crop_row > max_r || m.crop_col > max_c)
    {
        return arg_err(
            "augment",
            format!("crop offset {m:?} is outside 0..={max_r} x 0..={max_c}"),
        );
    }
    let dims = [n, c, h, w, out.0, out.1, padding];
    let out_shape = vec![n, c, out.0, out.1];
    Ok(match x.device() {
        Device::Cpu => {
            let data = map_float!(&*x.cpu_data(), |v: T| geometric_cpu(v, dims, moves));
            Tensor::from_cpu(data, out_shape)
        }
        Device::Gpu(g) => {
            let words: Vec<u32> = moves
                .iter()
                .flat_map(|m| [m.crop_row, m.crop_col, m.hflip as u32, m.vflip as u32])
                .collect();
            let words = Tensor::from_vec(words, &[n, 4], x.device())?;
            let total = shape::numel(&out_shape);
            let buf = gpu_alloc(g, total)?;
            g.launch(
                GEOMETRIC,
                &AugmentParams {
                    n: dims[0] as u32,
                    c: dims[1] as u32,
                    h: dims[2] as u32,
                    w: dims[3] as u32,
                    ho: dims[4] as u32,
                    wo: dims[5] as u32,
                    pad: dims[6] as u32,
                    ..Default::default()
                },
                &[x.gpu_buf(), words.gpu_buf(), &buf],
                groups_1d(total),
            );
            Tensor::from_gpu(buf, out_shape, x.dtype())
        }
    })
}
