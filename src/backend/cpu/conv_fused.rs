//! The CPU's fused convolution, `act(conv2d(x, W) + b)` and its backward, one image at
//! a time: each thread takes a run of the batch and, per image, gathers its columns
//! into a scratch block that stays in cache (`C kh kw x Ho Wo`, not the whole batch's
//! column matrix), multiplies, and adds the bias and applies the activation while the
//! image's output is still in cache. The backward does, per image, the activation's
//! derivative, the bias and weight gradients (summed into the thread's own
//! accumulators, added in part order at the end, so a run is deterministic for a given
//! thread count), and the columns' gradient folded straight back into the image's.

use std::sync::Mutex;

use super::conv2d::{fold_one, unfold_one, OneImage};
use super::matmul::{gemm_slices, Gemm};
use super::parallel::{self, SendPtr};
use super::pool;
use crate::backend::matmul::{Act, ConvAct};

/// The sizes of one image's product: output channels `o`, column rows `k` (`C kh kw`)
/// and output positions `hw`, with the image's elements `img`.
#[derive(Clone, Copy)]
struct Dims {
    o: usize,
    k: usize,
    hw: usize,
    img: usize,
}

impl Dims {
    fn of(c: &ConvAct) -> Dims {
        let g = &c.geo;
        Dims {
            o: c.oc,
            k: c.kc(),
            hw: c.hw(),
            img: g.c * g.h * g.w,
        }
    }
}

/// Threads for a convolution of `n` images of `work` multiply-adds each.
fn parts(n: usize, work: usize) -> usize {
    parallel::parts(n, n.saturating_mul(work))
}

/// `y = act(W cols + b)` for every image of `x` (`[N, C, H, W]`), the weight `w`
/// `[O, C kh kw]`. A caller that keeps the pre-activation (an activation whose
/// derivative reads its input) passes the identity and applies the activation itself.
pub(crate) fn forward<T: Gemm>(
    c: &ConvAct,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    act: Act,
) -> Vec<T> {
    let (g, d) = (&c.geo, Dims::of(c));
    let per_out = d.o * d.hw;
    let len = g.n * per_out;
    let mut y: Vec<T> = pool::with_capacity(len);
    let yp = SendPtr(y.as_mut_ptr());
    let one = OneImage::new(g);
    let n_parts = parts(g.n, d.o * d.k * d.hw);
    parallel::for_parts(g.n, n_parts, |_, images| {
        // The whole wrapper (not its raw-pointer field) is what the parts share.
        let yp = &yp;
        let mut cols = pool::filled(d.k * d.hw, T::zero());
        for i in images {
            // SAFETY: `y` has room for `n` images of `per_out` elements; each image (so
            // each part's run of images) writes only its own.
            let yi = unsafe { std::slice::from_raw_parts_mut(yp.0.add(i * per_out), per_out) };
            if d.k == 0 {
                yi.fill(T::zero());
            } else {
                unfold_one(&one, &x[i * d.img..(i + 1) * d.img], &mut cols);
                let (m, k, n) = (d.o, d.k, d.hw);
                gemm_slices((m, k, n), w, (k, 1), &cols, (n, 1), T::zero(), yi, n);
            }
            for (o, row) in yi.chunks_exact_mut(d.hw.max(1)).enumerate() {
                if let Some(b) = bias {
                    let b = b[o];
                    for v in row.iter_mut() {
                        *v += b;
                    }
                }
                act.apply_slice(row);
            }
        }
    });
    // SAFETY: every image wrote all its `per_out` elements above.
    unsafe { y.set_len(len) };
    y
}

/// The gradients of `x`, `w` and `b` (where `need` asks) from the output gradient `g`
/// and the saved value `s` (the output, or the pre-activation where the activation's
/// derivative reads its input; `None` for the identity).
#[allow(clippy::type_complexity)]
pub(crate) fn backward<T: Gemm>(
    c: &ConvAct,
    gy: &[T],
    s: Option<&[T]>,
    x: &[T],
    w: &[T],
    [need_x, need_w, need_b]: [bool; 3],
) -> [Option<Vec<T>>; 3] {
    let (g, d) = (&c.geo, Dims::of(c));
    let per_out = d.o * d.hw;
    let one = OneImage::new(g);
    let mut dx: Option<Vec<T>> = need_x.then(|| pool::with_capacity(g.n * d.img));
    let dxp = dx.as_mut().map(|v| SendPtr(v.as_mut_ptr()));
    let n_parts = parts(g.n, d.o * d.k * d.hw * (need_x as usize + need_w as usize));
    // Each part's weight and bias gradients, summed in part order afterwards.
    let partials: Vec<Mutex<Option<(Vec<T>, Vec<T>)>>> =
        (0..n_parts).map(|_| Mutex::new(None)).collect();
    parallel::for_parts(g.n, n_parts, |part, images| {
        let dxp = &dxp;
        let mut gp = pool::filled(per_out, T::zero());
        let mut cols = pool::filled(if need_w { d.k * d.hw } else { 0 }, T::zero());
        let mut dcols = pool::filled(if need_x { d.k * d.hw } else { 0 }, T::zero());
        let mut dw = vec![T::zero(); if need_w { d.o * d.k } else { 0 }];
        let mut db = vec![T::zero(); if need_b { d.o } else { 0 }];
        for i in images {
            let gi = &gy[i * per_out..(i + 1) * per_out];
            match s {
                Some(s) => c
                    .act
                    .mul_deriv_into(&mut gp, gi, &s[i * per_out..(i + 1) * per_out]),
                None => gp.copy_from_slice(gi),
            }
            if need_b {
                for (b, row) in db.iter_mut().zip(gp.chunks_exact(d.hw.max(1))) {
                    *b += row.iter().fold(T::zero(), |a, &v| a + v);
                }
            }
            if d.k == 0 {
                if let Some(p) = dxp {
                    // SAFETY: as below; an image with no columns has no elements either.
                    let dxi = unsafe { std::slice::from_raw_parts_mut(p.0.add(i * d.img), d.img) };
                    dxi.fill(T::zero());
                }
                continue;
            }
            if need_w {
                // dW += gp [O, HW] cols^T [HW, K].
                unfold_one(&one, &x[i * d.img..(i + 1) * d.img], &mut cols);
                let (m, k, n) = (d.o, d.hw, d.k);
                gemm_slices((m, k, n), &gp, (k, 1), &cols, (1, k), T::one(), &mut dw, n);
            }
            if let Some(p) = dxp {
                // dcols [K, HW] = W^T [K, O] gp [O, HW], folded into the image.
                let (m, k, n) = (d.k, d.o, d.hw);
                gemm_slices((m, k, n), w, (1, m), &gp, (n, 1), T::zero(), &mut dcols, n);
                // SAFETY: `dx` has room for `n` images; each writes only its own.
                let dxi = unsafe { std::slice::from_raw_parts_mut(p.0.add(i * d.img), d.img) };
                dxi.fill(T::zero());
                fold_one(&one, &dcols, dxi);
            }
        }
        *partials[part].lock().unwrap_or_else(|e| e.into_inner()) = Some((dw, db));
    });
    if let Some(v) = dx.as_mut() {
        // SAFETY: every image's `img` elements were written above.
        unsafe { v.set_len(g.n * d.img) };
    }
    let mut sums = partials
        .into_iter()
        .filter_map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()));
    let (mut dw, mut db) = sums.next().unwrap_or_default();
    for (pw, pb) in sums {
        dw.iter_mut().zip(pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    if need_w && dw.is_empty() {
        dw = vec![T::zero(); d.o * d.k];
    }
    if need_b && db.is_empty() {
        db = vec![T::zero(); d.o];
    }
    [dx, need_w.then_some(dw), need_b.then_some(db)]
}
