//! The CPU backend's pooling and upsampling.

use super::elementwise::CpuBackend;
use super::{map_float, parallel, pool, CpuData, Float};
use crate::backend::pool2d::Pool;
use crate::backend::{Pool2d, Storage};
use crate::error::Result;

impl Pool2d for CpuBackend {
    fn max_pool(&self, x: &Storage, g: &Pool, _positions: bool) -> Result<(Storage, Storage)> {
        let _span = super::profile::span("max_pool");
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
        let _span = super::profile::span("max_pool_backward");
        let idx = idx.cpu("pool2d")?.read();
        let CpuData::U32(winners) = &*idx else {
            return Err(crate::error::Error::DType {
                op: "max_pool2d",
                msg: "the saved positions are not u32".into(),
            });
        };
        let gy = crate::backend::half::cpu_f32(gy);
        let (plane_in, plane_out) = (g.h * g.w, g.ho * g.wo);
        let dx = map_float!(&*gy.cpu("pool2d")?.read(), |gv: T| {
            let mut dx = pool::filled(g.planes() * plane_in, T::zero());
            // Planes are independent: each scatters its outputs' gradients into its own
            // input plane (overlapping windows add up there).
            parallel::for_blocks_mut(&mut dx, g.planes(), gv.len(), |first, run| {
                for (p, dxp) in run.chunks_exact_mut(plane_in).enumerate() {
                    let o = (first + p) * plane_out;
                    for (&gi, &at) in gv[o..o + plane_out].iter().zip(&winners[o..]) {
                        dxp[at as usize] += gi;
                    }
                }
            });
            dx
        });
        Ok(Storage::new_cpu(dx))
    }

    fn avg_pool(&self, x: &Storage, g: &Pool) -> Result<Storage> {
        let _span = super::profile::span("avg_pool");
        Ok(Storage::new_cpu(map_float!(
            &*x.cpu("pool2d")?.read(),
            |v: T| avg_fwd_cpu(g, v)
        )))
    }

    fn avg_pool_backward(&self, gy: &Storage, g: &Pool) -> Result<Storage> {
        let _span = super::profile::span("avg_pool_backward");
        Ok(Storage::new_cpu(map_float!(
            &*gy.cpu("pool2d")?.read(),
            |v: T| avg_bwd_cpu(g, v)
        )))
    }

    fn upsample(&self, x: &Storage, g: &Pool) -> Result<Storage> {
        let _span = super::profile::span("upsample");
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
        let _span = super::profile::span("upsample_backward");
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
    let mut vals: Vec<T> = pool::with_capacity(g.planes() * per_plane);
    let mut idx: Vec<u32> = pool::with_capacity(g.planes() * per_plane);
    let (rows, cols) = (clipped_windows(g, true), clipped_windows(g, false));
    let two = g.k == (2, 2) && g.s == (2, 2) && g.p == (0, 0) && !g.adaptive;
    let (vp, ip) = (
        parallel::SendPtr(vals.as_mut_ptr()),
        parallel::SendPtr(idx.as_mut_ptr()),
    );
    let planes = g.planes();
    // About four units of work per input element (its load, compare and select, and
    // the winner's position).
    let work = x.len().saturating_mul(4);
    parallel::for_parts(planes, parallel::parts(planes, work), |_, range| {
        let (vp, ip) = (vp, ip);
        for p in range {
            let xp = &x[p * g.h * g.w..(p + 1) * g.h * g.w];
            // SAFETY: both buffers have room for every plane's `per_plane` outputs, and
            // each plane (so each part's range of planes) writes only its own.
            let (ov, oi) = unsafe {
                (
                    std::slice::from_raw_parts_mut(vp.0.add(p * per_plane), per_plane),
                    std::slice::from_raw_parts_mut(ip.0.add(p * per_plane), per_plane),
                )
            };
            if two {
                max_2x2_plane(g, xp, ov, oi);
            } else {
                max_plane(g, xp, &rows, &cols, ov, oi);
            }
        }
    });
    // SAFETY: every plane wrote all its `per_plane` values and positions above.
    unsafe {
        vals.set_len(g.planes() * per_plane);
        idx.set_len(g.planes() * per_plane);
    }
    (vals, idx)
}

/// One plane of the common 2 x 2, stride 2 window. Without NaN the winner is the first
/// element equal to the window's maximum (what [`max_plane`]'s strict comparisons pick),
/// found without branches: which of four random values wins is unpredictable, and a
/// mispredicted branch per comparison made this loop ten times slower. A row with a NaN
/// is done again with [`max_plane`]'s scan (a window's last NaN wins).
fn max_2x2_plane<T: Float>(g: &Pool, xp: &[T], ov: &mut [T], oi: &mut [u32]) {
    let (w, wo) = (g.w, g.wo);
    for (oh, (ov, oi)) in ov
        .chunks_exact_mut(wo)
        .zip(oi.chunks_exact_mut(wo))
        .enumerate()
    {
        let r0 = 2 * oh * w;
        let (top, bottom) = (&xp[r0..r0 + 2 * wo], &xp[r0 + w..r0 + w + 2 * wo]);
        let mut nan = false;
        for ow in 0..wo {
            let (x0, x1, x2, x3) = (
                top[2 * ow],
                top[2 * ow + 1],
                bottom[2 * ow],
                bottom[2 * ow + 1],
            );
            nan |= (x0.is_nan() | x1.is_nan()) | (x2.is_nan() | x3.is_nan());
            let m = x0.max(x1).max(x2.max(x3));
            // k: the first of the four equal to the maximum (0..=3), from flags.
            let k = (x0 != m) as usize * (1 + (x1 != m) as usize * (1 + (x2 != m) as usize));
            // The stored value is the winner itself (so -0 and +0 keep their sign).
            ov[ow] = [x0, x1, x2, x3][k & 3];
            oi[ow] = (r0 + 2 * ow + (k & 1) + (k >> 1) * w) as u32;
        }
        if nan {
            // The row again with the scan's NaN rule (the window's last NaN wins).
            for ow in 0..wo {
                let i0 = r0 + 2 * ow;
                let (mut best, mut at) = (top[2 * ow], i0);
                for (v, i) in [
                    (top[2 * ow + 1], i0 + 1),
                    (bottom[2 * ow], i0 + w),
                    (bottom[2 * ow + 1], i0 + w + 1),
                ] {
                    if v > best || v.is_nan() {
                        (best, at) = (v, i);
                    }
                }
                ov[ow] = best;
                oi[ow] = at as u32;
            }
        }
    }
}

/// One plane of any max pool: each output's clipped window, scanned row by row.
fn max_plane<T: Float>(
    g: &Pool,
    xp: &[T],
    rows: &[(usize, usize)],
    cols: &[(usize, usize)],
    ov: &mut [T],
    oi: &mut [u32],
) {
    let mut slots = ov.iter_mut().zip(oi.iter_mut());
    for &(h0, h1) in rows {
        for &(w0, w1) in cols {
            // Windows are never empty: padding is at most half the kernel. Branch-free
            // selects: which element wins is unpredictable. A NaN always takes over, so
            // the window's last NaN wins (PyTorch's kernel).
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
            let Some((v, a)) = slots.next() else { return };
            *v = best;
            *a = at as u32;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The unrolled 2 x 2 window picks what the general scan picks: the first of equal
    /// maxima, the winner's own sign for zeros, and a window's last NaN.
    #[test]
    fn the_2x2_path_matches_the_general_scan() {
        let g = Pool {
            n: 1,
            c: 1,
            h: 4,
            w: 6,
            ho: 2,
            wo: 3,
            k: (2, 2),
            s: (2, 2),
            p: (0, 0),
            adaptive: false,
        };
        let nan = f32::NAN;
        #[rustfmt::skip]
        let cases: [[f32; 24]; 3] = [
            [1.0, 2.0, 3.0, 3.0, -1.0, -2.0,
             2.0, 0.5, 3.0, 3.0, -3.0, -1.0,
             -0.0, 0.0, 5.0, 4.0, 7.0, 7.0,
             0.0, -0.0, 4.0, 5.0, 7.0, 6.0],
            [nan, 2.0, 3.0, nan, -1.0, -2.0,
             2.0, nan, 3.0, 3.0, -3.0, nan,
             -0.0, 0.0, 5.0, 4.0, 7.0, 7.0,
             0.0, -0.0, 4.0, 5.0, nan, 6.0],
            [0.0; 24],
        ];
        for x in cases {
            let (rows, cols) = (clipped_windows(&g, true), clipped_windows(&g, false));
            let (mut v1, mut i1) = (vec![0.0f32; 6], vec![0u32; 6]);
            let (mut v2, mut i2) = (vec![0.0f32; 6], vec![0u32; 6]);
            max_2x2_plane(&g, &x, &mut v1, &mut i1);
            max_plane(&g, &x, &rows, &cols, &mut v2, &mut i2);
            assert_eq!(i1, i2, "{x:?}");
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&v1), bits(&v2), "{x:?}");
        }
    }
}
