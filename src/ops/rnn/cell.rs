//! The LSTM and GRU cells as ops (`lstm_cell`, `gru_cell`): one step's gate math on
//! the CPU (the loops, also used by the CPU recurrences) and the GPU (`lstm_cell_*`,
//! `gru_cell_*` kernels).

use super::*;

pub(super) const LSTM_FWD: &Kernel =
    kernel!(FILE, "lstm_cell_fwd", [X0, X1, Y0], params = CellParams);
pub(super) const LSTM_BWD: &Kernel = kernel!(
    FILE,
    "lstm_cell_bwd",
    [X0, X1, X2, Y0, Y1],
    params = CellParams
);
pub(super) const GRU_FWD: &Kernel =
    kernel!(FILE, "gru_cell_fwd", [X0, X1, X2, Y0], params = CellParams);
pub(super) const GRU_BWD: &Kernel = kernel!(
    FILE,
    "gru_cell_bwd",
    [X0, X1, X2, XI, Y0, Y1, Y2],
    params = CellParams
);

/// The cell kernels' parameters.
fn cell_params(b: usize, h: usize) -> CellParams {
    CellParams {
        b: b as u32,
        h: h as u32,
        ..Default::default()
    }
}

/// The GPU clamps tanh's argument (see the shader); the CPU does the same so both agree.
pub(super) fn tanh_c<T: Float>(x: T) -> T {
    let lim = T::from_f64(15.0);
    let x = if x > lim {
        lim
    } else if x < -lim {
        -lim
    } else {
        x
    };
    x.tanh()
}

/// The LSTM gates of one element: (i, f, g, o, c, tanh c).
#[inline]
pub(super) fn lstm_unit<T: Float>(a: &[T], base: usize, h: usize, cp: T) -> (T, T, T, T, T, T) {
    let i = sigmoid(a[base]);
    let f = sigmoid(a[base + h]);
    let g = tanh_c(a[base + 2 * h]);
    let o = sigmoid(a[base + 3 * h]);
    let c = f * cp + i * g;
    (i, f, g, o, c, tanh_c(c))
}

pub(super) fn lstm_fwd_cpu<T: Float>(a: &[T], cp: &[T], h: usize) -> Vec<T> {
    let n = cp.len();
    let mut out = pool::filled(2 * n, T::zero());
    for k in 0..n {
        let base = (k / h) * 4 * h + k % h;
        let (_, _, _, o, c, tc) = lstm_unit(a, base, h, cp[k]);
        out[k] = o * tc;
        out[n + k] = c;
    }
    out
}

pub(super) fn lstm_bwd_cpu<T: Float>(a: &[T], cp: &[T], gy: &[T], h: usize) -> (Vec<T>, Vec<T>) {
    let n = cp.len();
    let one = T::one();
    let mut da = pool::filled(4 * n, T::zero());
    let mut dcp = pool::filled(n, T::zero());
    for k in 0..n {
        let base = (k / h) * 4 * h + k % h;
        let (i, f, g, o, _, tc) = lstm_unit(a, base, h, cp[k]);
        let dh = gy[k];
        let dc = gy[n + k] + dh * o * (one - tc * tc);
        da[base] = dc * g * i * (one - i);
        da[base + h] = dc * cp[k] * f * (one - f);
        da[base + 2 * h] = dc * i * (one - g * g);
        da[base + 3 * h] = dh * tc * o * (one - o);
        dcp[k] = dc * f;
    }
    (da, dcp)
}

/// The fused forward without a graph: `[2, B, H]` holding `h` then `c`.
pub(super) fn lstm_forward_raw(
    gates: &Tensor,
    c_prev: &Tensor,
    b: usize,
    h: usize,
) -> Result<Tensor> {
    match gates.device() {
        Device::Cpu => {
            let out = map_float2!(&*gates.cpu_data(), &*c_prev.cpu_data(), |a, cp: T| {
                lstm_fwd_cpu(a, cp, h)
            });
            Ok(Tensor::from_cpu(out, vec![2, b, h]))
        }
        Device::Gpu(g) => {
            let out = gpu_alloc(g, 2 * b * h)?;
            g.launch(
                LSTM_FWD,
                &cell_params(b, h),
                &[gates.gpu_buf(), c_prev.gpu_buf(), &out],
                groups_1d(b * h),
            );
            Ok(Tensor::from_gpu(out, vec![2, b, h], gates.dtype()))
        }
    }
}

/// The fused backward without a graph: from the gradient `[2, B, H]` of `(h, c)`, the
/// gradients of the gate pre-activations `[B, 4H]` and of `c_prev` `[B, H]`.
pub(super) fn lstm_backward_raw(
    sa: &Tensor,
    sc: &Tensor,
    gy: &Tensor,
    b: usize,
    h: usize,
) -> Result<(Tensor, Tensor)> {
    match gy.device() {
        Device::Cpu => {
            let (ad, cd, gd) = (sa.cpu_data(), sc.cpu_data(), gy.cpu_data());
            let (da, dc) = match (&*ad, &*cd, &*gd) {
                (CpuData::F32(a), CpuData::F32(c), CpuData::F32(g)) => {
                    let (x, y) = lstm_bwd_cpu(a, c, g, h);
                    (CpuData::F32(x), CpuData::F32(y))
                }
                (CpuData::F64(a), CpuData::F64(c), CpuData::F64(g)) => {
                    let (x, y) = lstm_bwd_cpu(a, c, g, h);
                    (CpuData::F64(x), CpuData::F64(y))
                }
                _ => unreachable!("lstm_cell dtypes checked"),
            };
            Ok((
                Tensor::from_cpu(da, vec![b, 4 * h]),
                Tensor::from_cpu(dc, vec![b, h]),
            ))
        }
        Device::Gpu(g) => {
            let (da, dc) = (gpu_alloc(g, 4 * b * h)?, gpu_alloc(g, b * h)?);
            g.launch(
                LSTM_BWD,
                &cell_params(b, h),
                &[sa.gpu_buf(), sc.gpu_buf(), gy.gpu_buf(), &da, &dc],
                groups_1d(b * h),
            );
            Ok((
                Tensor::from_gpu(da, vec![b, 4 * h], gy.dtype()),
                Tensor::from_gpu(dc, vec![b, h], gy.dtype()),
            ))
        }
    }
}

/// One LSTM step's gate math: `gates` `[B, 4H]` (pre-activations, biases included) and
/// `c_prev` `[B, H]` give `(h, c)`, each `[B, H]`.
pub fn lstm_cell(gates: &Tensor, c_prev: &Tensor) -> Result<(Tensor, Tensor)> {
    check_pair("lstm_cell", gates, c_prev)?;
    check_float("lstm_cell", gates)?;
    let (b, h) = match c_prev.shape() {
        &[b, h] if gates.shape() == [b, 4 * h] => (b, h),
        _ => {
            return shape_err(
                "lstm_cell",
                format!(
                    "gates {:?} and cell state {:?}: expected [B, 4H] and [B, H]",
                    gates.shape(),
                    c_prev.shape()
                ),
            )
        }
    };
    let y = lstm_forward_raw(gates, c_prev, b, h)?;
    let (sa, sc) = (gates.detach(), c_prev.detach());
    let y = record(y, "lstm_cell", &[gates, c_prev], move |gy| {
        let (da, dc) = lstm_backward_raw(&sa, &sc, gy, b, h)?;
        Ok(vec![Some(da), Some(dc)])
    });
    let hs = y.narrow(0, 0, 1)?.reshape(&[b, h])?;
    let cs = y.narrow(0, 1, 1)?.reshape(&[b, h])?;
    Ok((hs, cs))
}

/// The GRU gates of one element: (r, z, n).
#[inline]
pub(super) fn gru_unit<T: Float>(gi: &[T], gh: &[T], base: usize, h: usize) -> (T, T, T) {
    let r = sigmoid(gi[base] + gh[base]);
    let z = sigmoid(gi[base + h] + gh[base + h]);
    let n = tanh_c(gi[base + 2 * h] + r * gh[base + 2 * h]);
    (r, z, n)
}

pub(super) fn gru_fwd_cpu<T: Float>(gi: &[T], gh: &[T], hp: &[T], h: usize) -> Vec<T> {
    let one = T::one();
    pool::collect(
        hp.len(),
        hp.iter().enumerate().map(|(k, &p)| {
            let (_, z, n) = gru_unit(gi, gh, (k / h) * 3 * h + k % h, h);
            (one - z) * n + z * p
        }),
    )
}

pub(super) type Grads3<T> = (Vec<T>, Vec<T>, Vec<T>);

pub(super) fn gru_bwd_cpu<T: Float>(gi: &[T], gh: &[T], hp: &[T], gy: &[T], h: usize) -> Grads3<T> {
    let one = T::one();
    let mut dgi = pool::filled(gi.len(), T::zero());
    let mut dgh = pool::filled(gi.len(), T::zero());
    let mut dhp = pool::filled(hp.len(), T::zero());
    for k in 0..hp.len() {
        let base = (k / h) * 3 * h + k % h;
        let (r, z, n) = gru_unit(gi, gh, base, h);
        let dh = gy[k];
        let dn = dh * (one - z) * (one - n * n);
        let dz = dh * (hp[k] - n) * z * (one - z);
        let dr = dn * gh[base + 2 * h] * r * (one - r);
        dgi[base] = dr;
        dgi[base + h] = dz;
        dgi[base + 2 * h] = dn;
        dgh[base] = dr;
        dgh[base + h] = dz;
        dgh[base + 2 * h] = dn * r;
        dhp[k] = dh * z;
    }
    (dgi, dgh, dhp)
}

pub(super) fn gru_forward_raw(
    gi: &Tensor,
    gh: &Tensor,
    h_prev: &Tensor,
    b: usize,
    h: usize,
) -> Result<Tensor> {
    match gi.device() {
        Device::Cpu => {
            let out = map_float3!(
                &*gi.cpu_data(),
                &*gh.cpu_data(),
                &*h_prev.cpu_data(),
                |a, c, p: T| gru_fwd_cpu(a, c, p, h)
            );
            Ok(Tensor::from_cpu(out, vec![b, h]))
        }
        Device::Gpu(g) => {
            let out = gpu_alloc(g, b * h)?;
            g.launch(
                GRU_FWD,
                &cell_params(b, h),
                &[gi.gpu_buf(), gh.gpu_buf(), h_prev.gpu_buf(), &out],
                groups_1d(b * h),
            );
            Ok(Tensor::from_gpu(out, vec![b, h], gi.dtype()))
        }
    }
}

/// The fused GRU backward without a graph: `[d gi, d gh, d h_prev]` (the last only
/// through `z`; the recurrent product's share is added by the caller).
pub(super) fn gru_backward_raw(
    si: &Tensor,
    sh: &Tensor,
    sp: &Tensor,
    gy: &Tensor,
    b: usize,
    h: usize,
) -> Result<[Tensor; 3]> {
    match gy.device() {
        Device::Cpu => {
            let (a, c, p, g) = (si.cpu_data(), sh.cpu_data(), sp.cpu_data(), gy.cpu_data());
            let grads = match (&*a, &*c, &*p, &*g) {
                (CpuData::F32(a), CpuData::F32(c), CpuData::F32(p), CpuData::F32(g)) => {
                    let (x, y, z) = gru_bwd_cpu(a, c, p, g, h);
                    [CpuData::F32(x), CpuData::F32(y), CpuData::F32(z)]
                }
                (CpuData::F64(a), CpuData::F64(c), CpuData::F64(p), CpuData::F64(g)) => {
                    let (x, y, z) = gru_bwd_cpu(a, c, p, g, h);
                    [CpuData::F64(x), CpuData::F64(y), CpuData::F64(z)]
                }
                _ => unreachable!("gru_cell dtypes checked"),
            };
            let [x, y, z] = grads;
            Ok([
                Tensor::from_cpu(x, vec![b, 3 * h]),
                Tensor::from_cpu(y, vec![b, 3 * h]),
                Tensor::from_cpu(z, vec![b, h]),
            ])
        }
        Device::Gpu(g) => {
            let (dgi, dgh, dhp) = (
                gpu_alloc(g, 3 * b * h)?,
                gpu_alloc(g, 3 * b * h)?,
                gpu_alloc(g, b * h)?,
            );
            g.launch(
                GRU_BWD,
                &cell_params(b, h),
                &[
                    si.gpu_buf(),
                    sh.gpu_buf(),
                    sp.gpu_buf(),
                    gy.gpu_buf(),
                    &dgi,
                    &dgh,
                    &dhp,
                ],
                groups_1d(b * h),
            );
            let dt = gy.dtype();
            Ok([
                Tensor::from_gpu(dgi, vec![b, 3 * h], dt),
                Tensor::from_gpu(dgh, vec![b, 3 * h], dt),
                Tensor::from_gpu(dhp, vec![b, h], dt),
            ])
        }
    }
}

/// One GRU step's gate math: `gi` and `gh` `[B, 3H]` (input and recurrent products with
/// their biases) and `h_prev` `[B, H]` give the new hidden state `[B, H]`.
pub fn gru_cell(gi: &Tensor, gh: &Tensor, h_prev: &Tensor) -> Result<Tensor> {
    check_pair("gru_cell", gi, gh)?;
    check_pair("gru_cell", gi, h_prev)?;
    check_float("gru_cell", gi)?;
    let (b, h) = match h_prev.shape() {
        &[b, h] if gi.shape() == [b, 3 * h] && gh.shape() == [b, 3 * h] => (b, h),
        _ => {
            return shape_err(
                "gru_cell",
                format!(
                    "gi {:?}, gh {:?} and h_prev {:?}: expected [B, 3H], [B, 3H] and [B, H]",
                    gi.shape(),
                    gh.shape(),
                    h_prev.shape()
                ),
            )
        }
    };
    let y = gru_forward_raw(gi, gh, h_prev, b, h)?;
    let (si, sh, sp) = (gi.detach(), gh.detach(), h_prev.detach());
    Ok(record(y, "gru_cell", &[gi, gh, h_prev], move |gy| {
        Ok(gru_backward_raw(&si, &sh, &sp, gy, b, h)?
            .into_iter()
            .map(Some)
            .collect())
    }))
}
