//! The CPU backend's pooling and upsampling.

use super::elementwise::CpuBackend;
use super::{map_float, parallel, pool, CpuData, Float};
use crate::backend::pool2d::Pool;
use crate::backend::{Pool2d, Storage};
use crate::error::Result;

impl Pool2d for CpuBackend {
    fn max_pool(&self, x: &Storage, g: &Pool, _positions: bool) -> Result<(Storage, Storage)> {
        let x = crate::backend::half::cpu_f32(x);
        let (v, i) = match &*x.cpu("pool2d")?.read() {
            CpuData::F32(d) => {
                let (v, i) = maxpool_cpu(g, d);
                (CpuData::F32(v), i)
            }
            CpuData::F64(d) => {
                let (v, i) = maxpool_cpu(g, d);
                (CpuData::F64(v), i)
            }
            CpuData::U32(_) => {
                return Err(crate::error::Error::DType {
                    op: "max_pool2d",
                    msg: "u32 data reached a float kernel".into(),
                })
            }
        };
        Ok((Storage::new_cpu(v), Storage::new_cpu(CpuData::U32(i))))
    }

    fn max_pool_backward(&self, gy: &Storage, idx: &Storage, g: &Pool) -> Result<Storage> {
        let idx = idx.cpu("pool2d")?.read();
        let CpuData::U32(winners) = &*idx else {
            return Err(crate::error::Error::DType {
                op: "max_pool2d",
                msg: "the saved positions are not u32".into(),
            });
        };
        let gy = crate::backend::half::cpu_f32(gy);
        let dx = map_float!(&*gy.cpu("pool2d")?.read(), |gv: T| {
            let mut dx = pool::filled(g.planes() * g.h * g.w, T::zero());
            for (o, (&gi, &at)) in gv.iter().zip(winners).enumerate() {
                let plane = o / (g.ho * g.wo);
                dx[plane * g.h * g.w + at as usize] += gi;
            }
            dx
        });
        Ok(Storage::new_cpu(dx))
    }

    fn avg_pool(&self, x: &Storage, g: &Pool) -> Result<Storage> {
        Ok(Storage::new_cpu(map_float!(
            &*x.cpu("pool2d")?.read(),
            |v: T| avg_fwd_cpu(g, v)
        )))
    }

    fn avg_pool_backward(&self, gy: &Storage, g: &Pool) -> Result<Storage> {
        Ok(Storage::new_cpu(map_float!(
            &*gy.cpu("pool2d")?.read(),
            |v: T| avg_bwd_cpu(g, v)
        )))
    }

    fn upsample(&self, x: &Storage, g: &Pool) -> Result<Storage> {
        let scale = g.k;
        Ok(Storage::new_cpu(map_float!(
            &*x.cpu("pool2d")?.read(),
            |v: T| {
                let mut o = pool::with_capacity(g.planes() * g.ho * g.wo);
                for plane in 0..g.planes() {
                    for oh in 0..g.ho {
                        for ow in 0..g.wo {
                            o.push(v[(plane * g.h + oh / scale.0) * g.w + ow / scale.1]);
                        }
                    }
                }
                o
            }
        )))
    }

    fn upsample_backward(&self, gy: &Storage, g: &Pool) -> Result<Storage> {
        let scale = g.k;
        Ok(Storage::new_cpu(map_float!(
            &*gy.cpu("pool2d")?.read(),
            |v: T| {
                let mut dx = pool::filled(g.planes() * g.h * g.w, T::zero());
                for plane in 0..g.planes() {
                    for oh in 0..g.ho {
                        for ow in 0..g.wo {
                            dx[(plane * g.h + oh / scale.0) * g.w + ow / scale.1] +=
                                v[(plane * g.ho + oh) * g.wo + ow];
                        }
                    }
                }
                dx
            }
        )))
    }
}

/// The clipped input range of every output row (`rows`) or column.
fn clipped_windows(g: &Pool, rows: bool) -> Vec<(usize, usize)> {
    let (n_out, n) = if rows { (g.ho, g.h) } else { (g.wo, g.w) };
    (0..n_out)
        .map(|o| {
            let (a, b, _) = g.window(o, rows);
            (a.max(0) as usize, b.min(n as isize) as usize)
        })
        .collect()
}

fn maxpool_cpu<T: Float>(g: &Pool, x: &[T]) -> (Vec<T>, Vec<u32>) {
    let per_plane = g.ho * g.wo;
    let mut vals = pool::filled(g.planes() * per_plane, T::zero());
    let mut idx: Vec<u32> = pool::filled(vals.len(), 0);
    let (rows, cols) = (clipped_windows(g, true), clipped_windows(g, false));
    // One block per plane: its outputs and their argmax side by side in `pairs`.
    let mut pairs: Vec<(&mut T, &mut u32)> = vals.iter_mut().zip(idx.iter_mut()).collect();
    parallel::for_blocks_mut(&mut pairs, g.planes(), x.len(), |first, out| {
        for (p, out) in out.chunks_exact_mut(per_plane).enumerate() {
            let xp = &x[(first + p) * g.h * g.w..(first + p + 1) * g.h * g.w];
            let mut slot = out.iter_mut();
            if g.k == (2, 2) && g.s == (2, 2) && g.p == (0, 0) && !g.adaptive {
                // The common 2 x 2 window, unrolled: the same four elements in the same
                // order and the same strict comparisons as the general loop below.
                for oh in 0..g.ho {
                    let r0 = 2 * oh * g.w;
                    for ow in 0..g.wo {
                        let i0 = r0 + 2 * ow;
                        let (mut best, mut at) = (xp[i0], i0);
                        for i in [i0 + 1, i0 + g.w, i0 + g.w + 1] {
                            let v = xp[i];
                            let better = v > best || v.is_nan();
                            best = if better { v } else { best };
                            at = if better { i } else { at };
                        }
                        let (v, a) = slot.next().expect("one slot per output");
                        **v = best;
                        **a = at as u32;
                    }
                }
                continue;
            }
            for &(h0, h1) in &rows {
                for &(w0, w1) in &cols {
                    // Windows are never empty: padding is at most half the kernel.
                    // Branch-free selects: which element wins is unpredictable. A NaN
                    // always takes over, so the window's last NaN wins (PyTorch's kernel).
                    let mut at = h0 * g.w + w0;
                    let mut best = xp[at];
                    for ih in h0..h1 {
                        let row0 = ih * g.w + w0;
                        for (i, &v) in (row0..).zip(&xp[row0..ih * g.w + w1]) {
                            let better = v > best || v.is_nan();
                            best = if better { v } else { best };
                            at = if better { i } else { at };
                        }
                    }
                    let (v, a) = slot.next().expect("one slot per output");
                    **v = best;
                    **a = at as u32;
                }
            }
        }
    });
    drop(pairs);
    (vals, idx)
}

fn avg_fwd_cpu<T: Float>(g: &Pool, x: &[T]) -> Vec<T> {
    let mut out = pool::with_capacity(g.planes() * g.ho * g.wo);
    for plane in 0..g.planes() {
        for oh in 0..g.ho {
            for ow in 0..g.wo {
                let (h0, h1, dh) = g.window(oh, true);
                let (w0, w1, dw) = g.window(ow, false);
                let mut acc = T::zero();
                for ih in h0.max(0)..h1.min(g.h as isize) {
                    for iw in w0.max(0)..w1.min(g.w as isize) {
                        acc += x[(plane * g.h + ih as usize) * g.w + iw as usize];
                    }
                }
                out.push(acc / T::from_f64((dh * dw) as f64));
            }
        }
    }
    out
}

fn avg_bwd_cpu<T: Float>(g: &Pool, gy: &[T]) -> Vec<T> {
    let mut dx = pool::filled(g.planes() * g.h * g.w, T::zero());
    for plane in 0..g.planes() {
        for oh in 0..g.ho {
            for ow in 0..g.wo {
                let (h0, h1, dh) = g.window(oh, true);
                let (w0, w1, dw) = g.window(ow, false);
                let share = gy[(plane * g.ho + oh) * g.wo + ow] / T::from_f64((dh * dw) as f64);
                for ih in h0.max(0)..h1.min(g.h as isize) {
                    for iw in w0.max(0)..w1.min(g.w as isize) {
                        dx[(plane * g.h + ih as usize) * g.w + iw as usize] += share;
                    }
                }
            }
        }
    }
    dx
}
