//! The CPU backend's geometric augmentation.

use std::sync::Arc;

use super::elementwise::CpuBackend;
use super::{map_float, CpuStorage, Float};
use crate::backend::{wrong_backend, Augment, ImageMove, Storage};
use crate::error::Result;

impl Augment for CpuBackend {
    fn geometric(&self, x: &Storage, dims: [usize; 7], moves: &[ImageMove]) -> Result<Storage> {
        let _span = super::profile::span("geometric");
        let Storage::Cpu(x) = x else {
            return wrong_backend("augment");
        };
        let out = map_float!(&*x.read(), |v: T| geometric_cpu(v, dims, moves));
        Ok(Storage::Cpu(Arc::new(CpuStorage::new(out))))
    }
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
