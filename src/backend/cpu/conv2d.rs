//! The CPU's column transforms of a convolution: `im2col` copies each output
//! position's receptive field into a column, `col2im` adds columns back into images, in
//! runs of consecutive entries that read the image (the padding's entries are skipped).

use super::elementwise::CpuBackend;
use super::{map_float, parallel, pool, Float};
use crate::backend::conv2d::Geometry;
use crate::backend::{Conv, Storage};
use crate::error::Result;

impl Conv for CpuBackend {
    fn im2col(&self, x: &Storage, g: &Geometry) -> Result<Storage> {
        let _span = super::profile::span("im2col");
        Ok(Storage::new_cpu(map_float!(
            &*x.cpu("im2col")?.read(),
            |v: T| im2col_cpu(g, v)
        )))
    }

    fn col2im(&self, cols: &Storage, g: &Geometry) -> Result<Storage> {
        let _span = super::profile::span("col2im");
        Ok(Storage::new_cpu(map_float!(
            &*cols.cpu("col2im")?.read(),
            |v: T| col2im_cpu(g, v)
        )))
    }
}

/// The output columns `ow` whose tap `kj` reads inside the image (not padding), as a
/// half-open range.
fn valid_outputs(
    out: usize,
    size: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dil: usize,
) -> (usize, usize) {
    let shift = k * dil;
    // ow stride + shift - pad must lie in [0, size).
    let lo = pad.saturating_sub(shift).div_ceil(stride);
    let hi = if size + pad > shift {
        ((size + pad - shift - 1) / stride + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// A one-image geometry (`n = 1`) with, per kernel column `kj`, the output columns
/// whose tap reads inside the image: computed once per convolution, not per image.
pub(crate) struct OneImage {
    g: Geometry,
    spans: Vec<(usize, usize)>,
}

impl OneImage {
    pub(crate) fn new(g: &Geometry) -> OneImage {
        let g = Geometry { n: 1, ..*g };
        let spans = (0..g.k.1)
            .map(|kj| valid_outputs(g.wo, g.w, kj, g.stride.1, g.padding.1, g.dilation.1))
            .collect();
        OneImage { g, spans }
    }
}

/// Calls `f(first column index, first image index, length)` for every run of column
/// entries that read the image (entries reading padding are skipped): within a run the
/// column index steps by 1 and the image index by the column stride. For one image:
/// callers offset by the image themselves.
fn for_each_run(one: &OneImage, mut f: impl FnMut(usize, usize, usize)) {
    let (g, spans) = (&one.g, &one.spans);
    let pp = g.ho * g.wo;
    for c in 0..g.c {
        let plane = c * g.h * g.w;
        for ki in 0..g.k.0 {
            for (kj, &(lo, hi)) in spans.iter().enumerate() {
                let row = (c * g.k.0 + ki) * g.k.1 + kj;
                let col_base = row * pp;
                if lo >= hi {
                    continue;
                }
                let iw0 = lo * g.stride.1 + kj * g.dilation.1 - g.padding.1;
                for oh in 0..g.ho {
                    let ih = (oh * g.stride.0 + ki * g.dilation.0) as isize - g.padding.0 as isize;
                    if ih < 0 || ih as usize >= g.h {
                        continue;
                    }
                    let img = plane + ih as usize * g.w + iw0;
                    f(col_base + oh * g.wo + lo, img, hi - lo);
                }
            }
        }
    }
}

/// The columns `[C kh kw, Ho Wo]` of one image `x` into `cols`, whose entries that read
/// padding are left as they are (zero in a fresh buffer, and still zero in one this
/// geometry filled before: the same entries are skipped every time).
pub(crate) fn unfold_one<T: Float>(one: &OneImage, x: &[T], cols: &mut [T]) {
    let sw = one.g.stride.1;
    for_each_run(one, |col, img, len| {
        let dst = &mut cols[col..col + len];
        if sw == 1 {
            dst.copy_from_slice(&x[img..img + len]);
        } else {
            for (t, d) in dst.iter_mut().enumerate() {
                *d = x[img + t * sw];
            }
        }
    });
}

/// Adds one image's columns `cols` into the image `img_out` (overlaps summed).
pub(crate) fn fold_one<T: Float>(one: &OneImage, cols: &[T], img_out: &mut [T]) {
    let sw = one.g.stride.1;
    for_each_run(one, |col, img, len| {
        let src = &cols[col..col + len];
        if sw == 1 {
            for (d, &v) in img_out[img..img + len].iter_mut().zip(src) {
                *d += v;
            }
        } else {
            for (t, &v) in src.iter().enumerate() {
                img_out[img + t * sw] += v;
            }
        }
    });
}

fn im2col_cpu<T: Float>(g: &Geometry, x: &[T]) -> Vec<T> {
    let mut out = pool::filled(g.n * g.c * g.kk() * g.ho * g.wo, T::zero());
    let image = g.c * g.h * g.w;
    let one = OneImage::new(g);
    parallel::for_blocks_mut(&mut out, g.n, x.len() * g.kk(), |first, part| {
        let per = (g.c * g.kk() * g.ho * g.wo).max(1);
        for (i, cols) in part.chunks_exact_mut(per).enumerate() {
            unfold_one(&one, &x[(first + i) * image..(first + i + 1) * image], cols);
        }
    });
    out
}

fn col2im_cpu<T: Float>(g: &Geometry, cols: &[T]) -> Vec<T> {
    let mut out = pool::filled(g.n * g.c * g.h * g.w, T::zero());
    let per = g.c * g.kk() * g.ho * g.wo;
    let one = OneImage::new(g);
    parallel::for_blocks_mut(&mut out, g.n, cols.len(), |first, part| {
        for (i, img_out) in part.chunks_exact_mut((g.c * g.h * g.w).max(1)).enumerate() {
            fold_one(
                &one,
                &cols[(first + i) * per..(first + i + 1) * per],
                img_out,
            );
        }
    });
    out
}
