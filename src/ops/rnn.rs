//! Recurrent layers over whole sequences ([`rnn_layer`]) and the cells' gate math, one
//! fused kernel per time step forward and one backward. On the GPU a layer runs on
//! `[T, ...]` buffers: the input products of all steps are one fused product (with
//! `b_ih`), and each step is one fused product (Elman: the recurrent product, `b_hh`,
//! the input term and the activation) or a product and a gate kernel (LSTM, GRU) that
//! read and write their slots in place, with no per-step copies. The CPU composes the
//! cells with ordinary ops. The modules in `crate::nn` (`RNN`, `LSTM`, `GRU`) use
//! these.
//!
//! LSTM (PyTorch's gate order i, f, g, o): from the pre-activations `a = [a_i, a_f, a_g,
//! a_o]`, `c = s(a_f) c_prev + s(a_i) tanh(a_g)` and `h = s(a_o) tanh(c)`.
//! GRU (order r, z, n): from `gi = x W_ih^T + b_ih` and `gh = h_prev W_hh^T + b_hh`,
//! `r = s(gi_r + gh_r)`, `z = s(gi_z + gh_z)`, `n = tanh(gi_n + r gh_n)` and
//! `h = (1 - z) n + z h_prev`.

use crate::autograd::record;
use crate::backend::cpu::{map_float2, map_float3, pool, CpuData, Float};
use crate::backend::gpu::{Kernel, ShaderFile};
use crate::device::Device;
use crate::error::{shape_err, Result};
use crate::ops::matmul::cpu::{gemm_slices, Gemm};
use crate::ops::unary::sigmoid;
use crate::ops::{gpu_alloc, groups_1d, kernel};
use crate::tensor::{check_float, check_pair, DType, Tensor};

pub(crate) const FILE: ShaderFile = crate::ops::shader_with(
    "rnn",
    include_str!("../../shaders/rnn.wgsl"),
    crate::backend::gpu::Generated::Fixed(crate::ops::elementwise::wgsl_functions),
);
const LSTM_FWD: &Kernel = kernel!(FILE, "lstm_cell_fwd", [X0, X1, Y0]);
const LSTM_BWD: &Kernel = kernel!(FILE, "lstm_cell_bwd", [X0, X1, X2, Y0, Y1]);
const LSTM_STEP_FWD: &Kernel = kernel!(FILE, "lstm_step_fwd", [X0, X1, Y0, Y1]);
const LSTM_STEP_BWD: &Kernel = kernel!(FILE, "lstm_step_bwd", [X0, X1, X2, Y0, Y1, Y2]);
const GRU_STEP_FWD: &Kernel = kernel!(FILE, "gru_step_fwd", [X0, X1, X2, Y0]);
const GRU_STEP_BWD: &Kernel = kernel!(FILE, "gru_step_bwd", [X0, X1, X2, XI, Y0, Y1, Y2]);
const GRU_FWD: &Kernel = kernel!(FILE, "gru_cell_fwd", [X0, X1, X2, Y0]);
const GRU_BWD: &Kernel = kernel!(FILE, "gru_cell_bwd", [X0, X1, X2, XI, Y0, Y1, Y2]);

/// The GPU clamps tanh's argument (see the shader); the CPU does the same so both agree.
fn tanh_c<T: Float>(x: T) -> T {
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
fn lstm_unit<T: Float>(a: &[T], base: usize, h: usize, cp: T) -> (T, T, T, T, T, T) {
    let i = sigmoid(a[base]);
    let f = sigmoid(a[base + h]);
    let g = tanh_c(a[base + 2 * h]);
    let o = sigmoid(a[base + 3 * h]);
    let c = f * cp + i * g;
    (i, f, g, o, c, tanh_c(c))
}

fn lstm_fwd_cpu<T: Float>(a: &[T], cp: &[T], h: usize) -> Vec<T> {
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

fn lstm_bwd_cpu<T: Float>(a: &[T], cp: &[T], gy: &[T], h: usize) -> (Vec<T>, Vec<T>) {
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
fn lstm_forward_raw(gates: &Tensor, c_prev: &Tensor, b: usize, h: usize) -> Result<Tensor> {
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
                &[b as u32, h as u32],
                &[gates.gpu_buf(), c_prev.gpu_buf(), &out],
                groups_1d(b * h),
            );
            Ok(Tensor::from_gpu(out, vec![2, b, h], gates.dtype()))
        }
    }
}

/// The fused backward without a graph: from the gradient `[2, B, H]` of `(h, c)`, the
/// gradients of the gate pre-activations `[B, 4H]` and of `c_prev` `[B, H]`.
fn lstm_backward_raw(
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
                &[b as u32, h as u32],
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
fn gru_unit<T: Float>(gi: &[T], gh: &[T], base: usize, h: usize) -> (T, T, T) {
    let r = sigmoid(gi[base] + gh[base]);
    let z = sigmoid(gi[base + h] + gh[base + h]);
    let n = tanh_c(gi[base + 2 * h] + r * gh[base + 2 * h]);
    (r, z, n)
}

fn gru_fwd_cpu<T: Float>(gi: &[T], gh: &[T], hp: &[T], h: usize) -> Vec<T> {
    let one = T::one();
    pool::collect(
        hp.len(),
        hp.iter().enumerate().map(|(k, &p)| {
            let (_, z, n) = gru_unit(gi, gh, (k / h) * 3 * h + k % h, h);
            (one - z) * n + z * p
        }),
    )
}

type Grads3<T> = (Vec<T>, Vec<T>, Vec<T>);

fn gru_bwd_cpu<T: Float>(gi: &[T], gh: &[T], hp: &[T], gy: &[T], h: usize) -> Grads3<T> {
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

fn gru_forward_raw(
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
                &[b as u32, h as u32],
                &[gi.gpu_buf(), gh.gpu_buf(), h_prev.gpu_buf(), &out],
                groups_1d(b * h),
            );
            Ok(Tensor::from_gpu(out, vec![b, h], gi.dtype()))
        }
    }
}

/// The fused GRU backward without a graph: `[d gi, d gh, d h_prev]` (the last only
/// through `z`; the recurrent product's share is added by the caller).
fn gru_backward_raw(
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
                &[b as u32, h as u32],
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

/// Which recurrence a layer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RnnMode {
    /// Elman RNN, `h = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`.
    Tanh,
    /// Elman RNN with ReLU instead of tanh.
    Relu,
    /// Long short-term memory (gates i, f, g, o).
    Lstm,
    /// Gated recurrent unit (gates r, z, n).
    Gru,
}

impl RnnMode {
    /// Gate blocks stacked in the weights: 1, 4 or 3.
    pub fn gates(self) -> usize {
        match self {
            RnnMode::Tanh | RnnMode::Relu => 1,
            RnnMode::Lstm => 4,
            RnnMode::Gru => 3,
        }
    }
    fn name(self) -> &'static str {
        match self {
            RnnMode::Tanh => "rnn_tanh",
            RnnMode::Relu => "rnn_relu",
            RnnMode::Lstm => "lstm",
            RnnMode::Gru => "gru",
        }
    }
}

/// One layer's weights in PyTorch's layout: `w_ih [G H, I]`, `w_hh [G H, H]`, biases
/// `[G H]`, with `G` gate blocks.
#[derive(Clone, Copy, Debug)]
pub struct LayerWeights<'a> {
    /// Input-to-hidden weights.
    pub w_ih: &'a Tensor,
    /// Hidden-to-hidden weights.
    pub w_hh: &'a Tensor,
    /// Input-to-hidden bias.
    pub b_ih: Option<&'a Tensor>,
    /// Hidden-to-hidden bias.
    pub b_hh: Option<&'a Tensor>,
}

/// A layer's outputs: every step's hidden state `[T, B, H]`, the last hidden state
/// `[B, H]` and, for an LSTM, the last cell state.
pub type LayerOutput = (Tensor, Tensor, Option<Tensor>);

/// One recurrent layer over a whole sequence `x` `[T, B, I]` from the initial states
/// `h0` (and `c0` for an LSTM), each `[B, H]`.
///
/// The input products of all steps are one matrix product; the recurrence is then one
/// graph node whose forward runs, per step, the recurrent product and the fused gate
/// kernel, and whose backward walks the steps in reverse with the fused backward kernel
/// (backpropagation through time), finishing with one product each for the recurrent
/// weights' and bias's gradients. The graph stays a few nodes long however long the
/// sequence, so thousands of steps need no deep recursion and only the per-step
/// activations are kept.
pub fn rnn_layer(
    mode: RnnMode,
    x: &Tensor,
    w: LayerWeights<'_>,
    h0: &Tensor,
    c0: Option<&Tensor>,
) -> Result<LayerOutput> {
    let op = mode.name();
    check_pair(op, x, w.w_ih)?;
    check_pair(op, x, w.w_hh)?;
    check_pair(op, x, h0)?;
    check_float(op, x)?;
    let (t_len, b, i) = match x.shape() {
        &[t, b, i] if t > 0 => (t, b, i),
        _ => {
            return shape_err(
                op,
                format!("input {:?}: expected [T, B, I] with T >= 1", x.shape()),
            )
        }
    };
    let g = mode.gates();
    let h = w.w_hh.shape().get(1).copied().unwrap_or(0);
    let gh_size = g * h;
    let bias_ok = |bias: Option<&Tensor>| bias.is_none_or(|t| t.shape() == [gh_size]);
    if w.w_ih.shape() != [gh_size, i]
        || w.w_hh.shape() != [gh_size, h]
        || !bias_ok(w.b_ih)
        || !bias_ok(w.b_hh)
        || h0.shape() != [b, h]
        || (mode == RnnMode::Lstm) != c0.is_some()
        || c0.is_some_and(|c| c.shape() != [b, h])
    {
        return shape_err(
            op,
            format!(
                "input {:?}, w_ih {:?}, w_hh {:?}, h0 {:?}{}: expected w_ih [{g}H, I], \
                 w_hh [{g}H, H], biases [{g}H], h0 [B, H]{}",
                x.shape(),
                w.w_ih.shape(),
                w.w_hh.shape(),
                h0.shape(),
                c0.map_or(String::new(), |c| format!(", c0 {:?}", c.shape())),
                if mode == RnnMode::Lstm {
                    " and c0 [B, H]"
                } else {
                    " and no c0"
                }
            ),
        );
    }
    for t in [w.b_ih, w.b_hh, c0].into_iter().flatten() {
        check_pair(op, x, t)?;
    }
    if matches!(x.device(), Device::Cpu) && matches!(mode, RnnMode::Tanh | RnnMode::Relu) {
        return elman_cpu(mode, x, w, h0, (t_len, b, i, h));
    }
    if matches!(x.device(), Device::Gpu(_)) {
        match (mode, c0) {
            (RnnMode::Tanh | RnnMode::Relu, _) => {
                return elman_gpu(mode, x, w, h0, (t_len, b, i, h));
            }
            (RnnMode::Gru, None) => {
                let gi_all = x.linear_act(w.w_ih, w.b_ih, crate::ops::matmul::Act::Identity)?;
                return gru_gpu(&gi_all, w.w_hh, w.b_hh, h0, (t_len, b, h));
            }
            (RnnMode::Lstm, Some(c0)) => {
                let gi_all = x.linear_act(w.w_ih, w.b_ih, crate::ops::matmul::Act::Identity)?;
                return lstm_gpu(&gi_all, w.w_hh, w.b_hh, h0, c0, (t_len, b, h));
            }
            _ => {}
        }
    }
    // The CPU's LSTM and GRU (Elman layers and the GPU returned above). All steps'
    // input products at once: [T, B, G H]. Where the two biases only ever appear summed
    // (LSTM), b_hh joins them here once instead of every step; the GRU needs b_hh inside
    // the reset gate's product.
    let mut gi_all = x.linear(w.w_ih)?;
    if let Some(bias) = w.b_ih {
        gi_all = gi_all.add(bias)?;
    }
    let mut b_hh = w.b_hh;
    if mode != RnnMode::Gru {
        if let Some(bias) = b_hh.take() {
            gi_all = gi_all.add(bias)?;
        }
    }
    recurrence(mode, &gi_all, w.w_hh, b_hh, h0, c0, (t_len, b, h))
}

/// An Elman layer on the GPU as one graph node of fused products: forward, the input
/// product with `b_ih` for all steps (one dispatch), then one dispatch per step,
/// `h_t = act(h_{t-1} W_hh^T + gi_t + b_hh)`, that reads `h_{t-1}` from and writes `h_t`
/// into its slot of the output. Backward, one dispatch per step walks back `e_t =
/// gy_t + (e_{t+1} act'(h_{t+1})) W_hh` (the gradient reaching `h_t`, into its slot of one
/// `[T, B, H]` buffer), the derivative applied as the product loads its operand; then
/// two products give `W_hh`'s gradient with `b_hh`'s as their operand's row sums, one gives
/// `W_ih`'s with `b_ih`'s, and one each the input's and `h0`'s where they are needed.
/// No per-step copies, scatters or elementwise passes.
fn elman_gpu(
    mode: RnnMode,
    x: &Tensor,
    w: LayerWeights<'_>,
    h0: &Tensor,
    (t_len, b, i, h): (usize, usize, usize, usize),
) -> Result<LayerOutput> {
    use crate::ops::matmul::{Act, Epi, GpuProduct, MatmulChoice};
    let Device::Gpu(ctx) = x.device() else {
        unreachable!("a GPU layer")
    };
    let act = if mode == RnnMode::Relu {
        Act::Relu
    } else {
        Act::Tanh
    };
    let auto = MatmulChoice::AUTO;
    let rows = t_len * b;
    let step = b * h;
    let x2 = x.detach().reshape(&[rows, i])?;
    let (w_ih, w_hh) = (w.w_ih.detach(), w.w_hh.detach());
    let (b_ih, b_hh) = (w.b_ih.map(Tensor::detach), w.b_hh.map(Tensor::detach));
    let h0d = h0.detach();
    // All steps' input products with b_ih: [T B, H].
    let gi = GpuProduct::plain((rows, h, i), (i, 1), (1, i)).run_epi(
        &x2,
        &w_ih,
        auto,
        &Epi {
            bias: b_ih.as_ref(),
            ..Epi::default()
        },
    )?;
    let hs = Tensor::from_gpu(gpu_alloc(ctx, rows * h)?, vec![t_len, b, h], x.dtype());
    let recurrent = GpuProduct::plain((b, h, h), (h, 1), (1, h));
    for t in 0..t_len {
        let epi = Epi {
            bias: b_hh.as_ref(),
            act,
            addend: Some((&gi, t * step)),
            out: Some((&hs, t * step)),
            a_in_out: t > 0,
            a_off: t.saturating_sub(1) * step,
            ..Epi::default()
        };
        let a = if t == 0 { &h0d } else { &hs };
        recurrent.run_epi(a, &w_hh, auto, &epi)?;
    }
    let mut inputs: Vec<&Tensor> = vec![x, w.w_ih, w.w_hh];
    inputs.extend(w.b_ih);
    inputs.extend(w.b_hh);
    inputs.push(h0);
    let need: Vec<bool> = inputs.iter().map(|t| t.requires_grad()).collect();
    let (has_bih, has_bhh) = (w.b_ih.is_some(), w.b_hh.is_some());
    let saved = hs.detach();
    let y = crate::autograd::record(hs, mode.name(), &inputs, move |gy| {
        let mut need = need.iter().copied();
        let need_x = need.next().unwrap_or(false);
        let need_wih = need.next().unwrap_or(false);
        let need_whh = need.next().unwrap_or(false);
        let need_bih = has_bih && need.next().unwrap_or(false);
        let need_bhh = has_bhh && need.next().unwrap_or(false);
        let need_h0 = need.next().unwrap_or(false);
        let Device::Gpu(ctx) = gy.device() else {
            unreachable!("a GPU layer")
        };
        let new = |n: usize, shape: Vec<usize>| {
            gpu_alloc(ctx, n).map(|buf| Tensor::from_gpu(buf, shape, DType::F32))
        };
        let pro = Some((&saved, act));
        // e_t for every step, last to first.
        let e = new(rows * h, vec![t_len, b, h])?;
        let back = GpuProduct::plain((b, h, h), (h, 1), (h, 1));
        for t in (0..t_len).rev() {
            let last = t + 1 == t_len;
            let epi = Epi {
                pro,
                addend: Some((gy, t * step)),
                out: Some((&e, t * step)),
                a_in_out: true,
                a_off: if last { 0 } else { (t + 1) * step },
                empty: last,
                ..Epi::default()
            };
            back.run_epi(&e, &w_hh, auto, &epi)?;
        }
        // delta = e * act'(h), as the products below load it; a bias gradient without
        // its weight's (or with nothing to multiply) sums an explicit delta.
        let delta = || act.backward_op(&saved, &e)?.reshape(&[rows, h]);
        let db_hh = if need_bhh && !(need_whh && h > 0) {
            Some(delta()?.sum_dim(&[0], false)?)
        } else {
            need_bhh.then(|| new(h, vec![h])).transpose()?
        };
        let dw_hh = if need_whh {
            let dims = (t_len, b, h, h);
            Some(recurrent_weight_grad(
                &e,
                pro,
                &saved,
                &h0d,
                db_hh.as_ref(),
                dims,
            )?)
        } else {
            None
        };
        let db_ih = if need_bih && !(need_wih && i > 0) {
            Some(delta()?.sum_dim(&[0], false)?)
        } else {
            need_bih.then(|| new(h, vec![h])).transpose()?
        };
        let dw_ih = if need_wih {
            Some(GpuProduct::plain((h, i, rows), (1, h), (i, 1)).run_epi(
                &e,
                &x2,
                auto,
                &Epi {
                    pro,
                    rowsum: db_ih.as_ref().filter(|_| i > 0),
                    ..Epi::default()
                },
            )?)
        } else {
            None
        };
        let dx = if need_x {
            let d = GpuProduct::plain((rows, i, h), (h, 1), (i, 1)).run_epi(
                &e,
                &w_ih,
                auto,
                &Epi {
                    pro,
                    ..Epi::default()
                },
            )?;
            Some(d.reshape(&[t_len, b, i])?)
        } else {
            None
        };
        let dh0 = if need_h0 {
            Some(back.run_epi(
                &e,
                &w_hh,
                auto,
                &Epi {
                    pro,
                    ..Epi::default()
                },
            )?)
        } else {
            None
        };
        let mut grads = vec![dx, dw_ih, dw_hh];
        if has_bih {
            grads.push(db_ih);
        }
        if has_bhh {
            grads.push(db_hh);
        }
        grads.push(dh0);
        Ok(grads)
    });
    let h_last = y.narrow(0, t_len - 1, 1)?.reshape(&[b, h])?;
    Ok((y, h_last, None))
}

/// `W_hh`'s gradient `[G, H]` on the GPU: the sum over steps of `d_t^T h_{t-1}` for the
/// per-step gradients `d` (`[T, B, G]`, through the prologue `pro` when given), the saved
/// outputs `ys` (`h_t` in the first T slots of `[.., B, H]`) and `h0`, as two products
/// (steps 1.. against `h_0 .. h_{T-2}`, then step 0 against `h0`, adding) whose operand's
/// row sums are the bias gradient, written into `db` when given.
fn recurrent_weight_grad(
    d: &Tensor,
    pro: Option<(&Tensor, crate::ops::matmul::Act)>,
    ys: &Tensor,
    h0: &Tensor,
    db: Option<&Tensor>,
    (t_len, b, g, h): (usize, usize, usize, usize),
) -> Result<Tensor> {
    use crate::ops::matmul::{Epi, GpuProduct, MatmulChoice};
    let Device::Gpu(ctx) = d.device() else {
        unreachable!("a GPU layer")
    };
    let dw = Tensor::from_gpu(gpu_alloc(ctx, g * h)?, vec![g, h], DType::F32);
    let rowsum = db.filter(|_| h > 0);
    let later = (t_len - 1) * b;
    if later > 0 {
        GpuProduct::plain((g, h, later), (1, g), (h, 1)).run_epi(
            d,
            ys,
            MatmulChoice::AUTO,
            &Epi {
                pro,
                rowsum,
                out: Some((&dw, 0)),
                a_off: b * g,
                ..Epi::default()
            },
        )?;
    }
    GpuProduct::plain((g, h, b), (1, g), (h, 1)).run_epi(
        d,
        h0,
        MatmulChoice::AUTO,
        &Epi {
            pro,
            rowsum,
            out: Some((&dw, 0)),
            accumulate: later > 0,
            ..Epi::default()
        },
    )?;
    Ok(dw)
}

/// The gradients of `W_hh` and (when the layer has one) `b_hh` that `need` (the node's
/// inputs' flags: the gate input, `W_hh`, `b_hh`...) asks for, from the per-step gate
/// gradients `d` `[T, B, G]`.
fn hidden_weight_grads(
    d: &Tensor,
    need: &[bool],
    has_bias: bool,
    ys: &Tensor,
    h0: &Tensor,
    (t_len, b, g, h): (usize, usize, usize, usize),
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let Device::Gpu(ctx) = d.device() else {
        unreachable!("a GPU layer")
    };
    let need_w = need.get(1).copied().unwrap_or(false);
    let need_b = has_bias && need.get(2).copied().unwrap_or(false);
    let db = if need_b && !(need_w && h > 0) {
        Some(d.reshape(&[t_len * b, g])?.sum_dim(&[0], false)?)
    } else {
        need_b
            .then(|| gpu_alloc(ctx, g).map(|buf| Tensor::from_gpu(buf, vec![g], DType::F32)))
            .transpose()?
    };
    let dw = if need_w {
        let dims = (t_len, b, g, h);
        Some(recurrent_weight_grad(d, None, ys, h0, db.as_ref(), dims)?)
    } else {
        None
    };
    Ok((dw, db))
}

/// An LSTM's recurrence on the GPU as one graph node over whole-sequence buffers: per
/// step forward one fused product writes the gate pre-activations `h_{t-1} W_hh^T +
/// gi_t + b_hh` into slot t of `[T, B, 4H]` (reading `h_{t-1}` from its slot of the
/// output) and one kernel turns them into `h_t` and `c_t` in their slots; per step
/// backward one kernel gives the gate gradients (slot t) and the cell gradient carried
/// back, and one product the hidden gradient carried back (`h0`'s after the first
/// step). Two products give `W_hh`'s gradient with `b_hh`'s as their row sums. The
/// output is `[T + 1, B, H]`: every step's `h`, then the last `c`.
fn lstm_gpu(
    gi_all: &Tensor,
    w_hh: &Tensor,
    b_hh: Option<&Tensor>,
    h0: &Tensor,
    c0: &Tensor,
    (t_len, b, h): (usize, usize, usize),
) -> Result<LayerOutput> {
    use crate::ops::matmul::{Epi, GpuProduct, MatmulChoice};
    let Device::Gpu(ctx) = gi_all.device() else {
        unreachable!("a GPU layer")
    };
    let auto = MatmulChoice::AUTO;
    let (g4, step) = (4 * h, b * h);
    let step_g = b * g4;
    let new = |n: usize, shape: Vec<usize>| {
        gpu_alloc(ctx, n).map(|buf| Tensor::from_gpu(buf, shape, DType::F32))
    };
    let (whh, bhh) = (w_hh.detach(), b_hh.map(Tensor::detach));
    let (h0d, c0d) = (h0.detach(), c0.detach());
    let gates = new(t_len * step_g, vec![t_len, b, g4])?;
    let y = new((t_len + 1) * step, vec![t_len + 1, b, h])?;
    let cs = new(t_len.max(2) * step, vec![t_len.max(2), b, h])?;
    let recurrent = GpuProduct::plain((b, g4, h), (h, 1), (1, h));
    let cells = crate::ops::groups_1d(step);
    for t in 0..t_len {
        let epi = Epi {
            bias: bhh.as_ref(),
            addend: Some((gi_all, t * step_g)),
            out: Some((&gates, t * step_g)),
            a_off: t.saturating_sub(1) * step,
            ..Epi::default()
        };
        recurrent.run_epi(if t == 0 { &h0d } else { &y }, &whh, auto, &epi)?;
        let last = t + 1 == t_len;
        let params = [
            b as u32,
            h as u32,
            (t * step_g) as u32,
            (t.saturating_sub(1) * step) as u32,
            (t * step) as u32,
            if last { t_len * step } else { t * step } as u32,
            (t > 0) as u32 | (last as u32) << 1,
        ];
        let bufs = [gates.gpu_buf(), c0d.gpu_buf(), y.gpu_buf(), cs.gpu_buf()];
        ctx.launch(LSTM_STEP_FWD, &params, &bufs, cells);
    }
    let mut inputs: Vec<&Tensor> = vec![gi_all, w_hh];
    inputs.extend(b_hh);
    inputs.push(h0);
    inputs.push(c0);
    let need: Vec<bool> = inputs.iter().map(|t| t.requires_grad()).collect();
    let has_bias = b_hh.is_some();
    let saved_y = y.detach();
    let out = crate::autograd::record(y, "lstm", &inputs, move |gy| {
        let Device::Gpu(ctx) = gy.device() else {
            unreachable!("a GPU layer")
        };
        let new = |n: usize, shape: Vec<usize>| {
            gpu_alloc(ctx, n).map(|buf| Tensor::from_gpu(buf, shape, DType::F32))
        };
        let da = new(t_len * step_g, vec![t_len, b, g4])?;
        let dc = new(step, vec![b, h])?;
        let dh = new(step, vec![b, h])?;
        let carry = GpuProduct::plain((b, h, g4), (g4, 1), (h, 1));
        for t in (0..t_len).rev() {
            let last = t + 1 == t_len;
            let params = [
                b as u32,
                h as u32,
                (t * step_g) as u32,
                (t.saturating_sub(1) * step) as u32,
                (t * step) as u32,
                (t_len * step) as u32,
                last as u32,
            ];
            let c_prev = if t == 0 { &c0d } else { &cs };
            let bufs = [
                gates.gpu_buf(),
                c_prev.gpu_buf(),
                gy.gpu_buf(),
                da.gpu_buf(),
                dc.gpu_buf(),
                dh.gpu_buf(),
            ];
            ctx.launch(LSTM_STEP_BWD, &params, &bufs, cells);
            let epi = Epi {
                out: Some((&dh, 0)),
                a_off: t * step_g,
                ..Epi::default()
            };
            carry.run_epi(&da, &whh, auto, &epi)?;
        }
        let (dw, db) =
            hidden_weight_grads(&da, &need, has_bias, &saved_y, &h0d, (t_len, b, g4, h))?;
        let mut grads = vec![Some(da), dw];
        if has_bias {
            grads.push(db);
        }
        grads.push(Some(dh));
        grads.push(Some(dc));
        Ok(grads)
    });
    let h_all = out.narrow(0, 0, t_len)?;
    let h_last = out.narrow(0, t_len - 1, 1)?.reshape(&[b, h])?;
    let c_last = out.narrow(0, t_len, 1)?.reshape(&[b, h])?;
    Ok((h_all, h_last, Some(c_last)))
}

/// A GRU's recurrence on the GPU as one graph node over whole-sequence buffers: per step
/// forward one fused product writes `h_{t-1} W_hh^T + b_hh` into slot t of `[T, B, 3H]`
/// (reading `h_{t-1}` from its slot of the output) and one kernel writes `h_t` into its
/// slot; per step backward one kernel gives the gate gradients (slot t) and the direct
/// part of the hidden gradient, and one product adds `d gh_t W_hh` to it (`h0`'s
/// gradient after the first step). Two products give `W_hh`'s gradient with `b_hh`'s as
/// their row sums.
fn gru_gpu(
    gi_all: &Tensor,
    w_hh: &Tensor,
    b_hh: Option<&Tensor>,
    h0: &Tensor,
    (t_len, b, h): (usize, usize, usize),
) -> Result<LayerOutput> {
    use crate::ops::matmul::{Epi, GpuProduct, MatmulChoice};
    let Device::Gpu(ctx) = gi_all.device() else {
        unreachable!("a GPU layer")
    };
    let auto = MatmulChoice::AUTO;
    let (g3, step) = (3 * h, b * h);
    let step_g = b * g3;
    let new = |n: usize, shape: Vec<usize>| {
        gpu_alloc(ctx, n).map(|buf| Tensor::from_gpu(buf, shape, DType::F32))
    };
    let (whh, bhh) = (w_hh.detach(), b_hh.map(Tensor::detach));
    let (gi, h0d) = (gi_all.detach(), h0.detach());
    let gh = new(t_len * step_g, vec![t_len, b, g3])?;
    let y = new(t_len * step, vec![t_len, b, h])?;
    let recurrent = GpuProduct::plain((b, g3, h), (h, 1), (1, h));
    let cells = crate::ops::groups_1d(step);
    for t in 0..t_len {
        let epi = Epi {
            bias: bhh.as_ref(),
            out: Some((&gh, t * step_g)),
            a_off: t.saturating_sub(1) * step,
            ..Epi::default()
        };
        recurrent.run_epi(if t == 0 { &h0d } else { &y }, &whh, auto, &epi)?;
        let params = [
            b as u32,
            h as u32,
            (t * step_g) as u32,
            (t.saturating_sub(1) * step) as u32,
            (t * step) as u32,
            (t > 0) as u32,
        ];
        let bufs = [gi.gpu_buf(), gh.gpu_buf(), h0d.gpu_buf(), y.gpu_buf()];
        ctx.launch(GRU_STEP_FWD, &params, &bufs, cells);
    }
    let mut inputs: Vec<&Tensor> = vec![gi_all, w_hh];
    inputs.extend(b_hh);
    inputs.push(h0);
    let need: Vec<bool> = inputs.iter().map(|t| t.requires_grad()).collect();
    let has_bias = b_hh.is_some();
    let saved_y = y.detach();
    let out = crate::autograd::record(y, "gru", &inputs, move |gy| {
        let Device::Gpu(ctx) = gy.device() else {
            unreachable!("a GPU layer")
        };
        let new = |n: usize, shape: Vec<usize>| {
            gpu_alloc(ctx, n).map(|buf| Tensor::from_gpu(buf, shape, DType::F32))
        };
        let dgi = new(t_len * step_g, vec![t_len, b, g3])?;
        let dgh = new(t_len * step_g, vec![t_len, b, g3])?;
        let carry = new(step, vec![b, h])?;
        let back = GpuProduct::plain((b, h, g3), (g3, 1), (h, 1));
        for t in (0..t_len).rev() {
            let params = [
                b as u32,
                h as u32,
                (t * step_g) as u32,
                (t.saturating_sub(1) * step) as u32,
                (t * step) as u32,
                (t + 1 == t_len) as u32,
            ];
            let h_prev = if t == 0 { &h0d } else { &saved_y };
            let bufs = [
                gi.gpu_buf(),
                gh.gpu_buf(),
                h_prev.gpu_buf(),
                gy.gpu_buf(),
                dgi.gpu_buf(),
                dgh.gpu_buf(),
                carry.gpu_buf(),
            ];
            ctx.launch(GRU_STEP_BWD, &params, &bufs, cells);
            // carry += dgh_t W_hh (accumulated in place: binding carry as both the
            // addend and the output is an alias WebGPU refuses).
            let epi = Epi {
                out: Some((&carry, 0)),
                accumulate: true,
                a_off: t * step_g,
                ..Epi::default()
            };
            back.run_epi(&dgh, &whh, auto, &epi)?;
        }
        let (dw, db) =
            hidden_weight_grads(&dgh, &need, has_bias, &saved_y, &h0d, (t_len, b, g3, h))?;
        let mut grads = vec![Some(dgi), dw];
        if has_bias {
            grads.push(db);
        }
        grads.push(Some(carry));
        Ok(grads)
    });
    let h_last = out.narrow(0, t_len - 1, 1)?.reshape(&[b, h])?;
    Ok((out, h_last, None))
}

/// The `f32` elements of optional CPU data of that type.
fn f32s(d: Option<&CpuData>) -> Option<&[f32]> {
    match d {
        Some(CpuData::F32(v)) => Some(v),
        _ => None,
    }
}

/// The `f64` elements of optional CPU data of that type.
fn f64s(d: Option<&CpuData>) -> Option<&[f64]> {
    match d {
        Some(CpuData::F64(v)) => Some(v),
        _ => None,
    }
}

/// One Elman layer's forward on the CPU: `h_t = act(gi_t + b_ih + b_hh + h_{t-1}
/// W_hh^T)`, each step's product added straight into its slot of the output.
#[allow(clippy::too_many_arguments)]
fn elman_fwd_cpu<T: Gemm>(
    gi: &[T],
    whh: &[T],
    h0: &[T],
    b_ih: Option<&[T]>,
    b_hh: Option<&[T]>,
    act: crate::ops::matmul::Act,
    (t_len, b, h): (usize, usize, usize),
) -> Vec<T> {
    let step = b * h;
    let mut hs = pool::filled(t_len * step, T::zero());
    if step == 0 {
        return hs;
    }
    // Both biases in one vector, added row by row (no per-element index arithmetic).
    let bias: Vec<T> = (0..h)
        .map(|j| b_ih.map_or(T::zero(), |bb| bb[j]) + b_hh.map_or(T::zero(), |bb| bb[j]))
        .collect();
    for t in 0..t_len {
        let (done, rest) = hs.split_at_mut(t * step);
        let slot = &mut rest[..step];
        for (row, g) in slot
            .chunks_mut(h)
            .zip(gi[t * step..(t + 1) * step].chunks(h))
        {
            for ((v, &gv), &bv) in row.iter_mut().zip(g).zip(&bias) {
                *v = gv + bv;
            }
        }
        let prev: &[T] = if t == 0 { h0 } else { &done[(t - 1) * step..] };
        gemm_slices((b, h, h), prev, (h, 1), whh, (1, h), T::one(), slot, h);
        act.apply_slice(slot);
    }
    hs
}

/// Its backward: from the output gradient `gy` `[T, B, H]`, the gradients of the
/// pre-activations `d` `[T, B, H]` (`d_t = (gy_t + d_{t+1} W_hh) act'(h_t)`) and of `h0`.
fn elman_bwd_cpu<T: Gemm>(
    gy: &[T],
    hs: &[T],
    whh: &[T],
    act: crate::ops::matmul::Act,
    (t_len, b, h): (usize, usize, usize),
) -> (Vec<T>, Vec<T>) {
    let step = b * h;
    let mut d = pool::filled(t_len * step, T::zero());
    let mut e = pool::filled(step, T::zero());
    for t in (0..t_len).rev() {
        e.copy_from_slice(&gy[t * step..(t + 1) * step]);
        let (cur, next) = d.split_at_mut((t + 1) * step);
        if t + 1 < t_len {
            gemm_slices(
                (b, h, h),
                &next[..step],
                (h, 1),
                whh,
                (h, 1),
                T::one(),
                &mut e,
                h,
            );
        }
        act.mul_deriv_into(&mut cur[t * step..], &e, &hs[t * step..(t + 1) * step]);
    }
    let mut dh0 = pool::filled(step, T::zero());
    gemm_slices(
        (b, h, h),
        &d[..step],
        (h, 1),
        whh,
        (h, 1),
        T::zero(),
        &mut dh0,
        h,
    );
    (d, dh0)
}

/// An Elman layer on the CPU as one graph node: one product for all steps' inputs, then
/// per step one product accumulated into the output's slot and one pass for the biases
/// and the activation; backward one product and one pass per step, then one product
/// each for the weights' and the input's gradients. No per-step tensors.
fn elman_cpu(
    mode: RnnMode,
    x: &Tensor,
    w: LayerWeights<'_>,
    h0: &Tensor,
    (t_len, b, i, h): (usize, usize, usize, usize),
) -> Result<LayerOutput> {
    use crate::ops::matmul::{matmul_raw, Act, MatmulChoice};
    let act = if mode == RnnMode::Relu {
        Act::Relu
    } else {
        Act::Tanh
    };
    let all = [Some(w.w_ih), Some(w.w_hh), w.b_ih, w.b_hh, Some(h0)];
    if all.iter().flatten().any(|t| t.dtype() != x.dtype()) {
        return shape_err(
            mode.name(),
            format!(
                "the weights, biases and state must all be {:?} like the input",
                x.dtype()
            ),
        );
    }
    let auto = MatmulChoice::AUTO;
    let rows = t_len * b;
    let x2 = x.detach().reshape(&[rows, i])?;
    let (w_ih, w_hh) = (w.w_ih.detach(), w.w_hh.detach());
    let gi = matmul_raw(&x2, false, &w_ih, true, auto)?;
    let dims = (t_len, b, h);
    let hs = {
        let (gd, wd, hd) = (gi.cpu_data(), w_hh.cpu_data(), h0.cpu_data());
        let (bi, bh) = (w.b_ih.map(|t| t.cpu_data()), w.b_hh.map(|t| t.cpu_data()));
        let data = match (&*gd, &*wd, &*hd) {
            (CpuData::F32(g), CpuData::F32(wv), CpuData::F32(h0v)) => {
                let (bi, bh) = (f32s(bi.as_deref()), f32s(bh.as_deref()));
                CpuData::F32(elman_fwd_cpu(g, wv, h0v, bi, bh, act, dims))
            }
            (CpuData::F64(g), CpuData::F64(wv), CpuData::F64(h0v)) => {
                let (bi, bh) = (f64s(bi.as_deref()), f64s(bh.as_deref()));
                CpuData::F64(elman_fwd_cpu(g, wv, h0v, bi, bh, act, dims))
            }
            _ => return shape_err(mode.name(), "the input, weights and state differ in dtype"),
        };
        Tensor::from_cpu(data, vec![t_len, b, h])
    };
    let mut inputs: Vec<&Tensor> = vec![x, w.w_ih, w.w_hh];
    inputs.extend(w.b_ih);
    inputs.extend(w.b_hh);
    inputs.push(h0);
    let need: Vec<bool> = inputs.iter().map(|t| t.requires_grad()).collect();
    let (has_bih, has_bhh) = (w.b_ih.is_some(), w.b_hh.is_some());
    let saved = hs.detach();
    let h0d = h0.detach();
    let y = crate::autograd::record(hs, mode.name(), &inputs, move |gy| {
        let mut need = need.iter().copied();
        let need_x = need.next().unwrap_or(false);
        let need_wih = need.next().unwrap_or(false);
        let need_whh = need.next().unwrap_or(false);
        let need_bih = has_bih && need.next().unwrap_or(false);
        let need_bhh = has_bhh && need.next().unwrap_or(false);
        let need_h0 = need.next().unwrap_or(false);
        let (d, dh0) = {
            let (gd, sd, wd) = (gy.cpu_data(), saved.cpu_data(), w_hh.cpu_data());
            match (&*gd, &*sd, &*wd) {
                (CpuData::F32(g), CpuData::F32(s), CpuData::F32(wv)) => {
                    let (d, dh0) = elman_bwd_cpu(g, s, wv, act, dims);
                    (CpuData::F32(d), CpuData::F32(dh0))
                }
                (CpuData::F64(g), CpuData::F64(s), CpuData::F64(wv)) => {
                    let (d, dh0) = elman_bwd_cpu(g, s, wv, act, dims);
                    (CpuData::F64(d), CpuData::F64(dh0))
                }
                _ => unreachable!("dtypes checked in the forward"),
            }
        };
        let d = Tensor::from_cpu(d, vec![rows, h]);
        let dx = need_x
            .then(|| matmul_raw(&d, false, &w_ih, false, auto)?.reshape(&[t_len, b, i]))
            .transpose()?;
        let dw_ih = need_wih
            .then(|| matmul_raw(&d, true, &x2, false, auto))
            .transpose()?;
        let dw_hh = if need_whh {
            // h_{t-1} for every step: h0, then the outputs of all but the last step.
            let prev = Tensor::cat(&[&h0d, &saved.reshape(&[rows, h])?], 0)?.narrow(0, 0, rows)?;
            Some(matmul_raw(&d, true, &prev, false, auto)?)
        } else {
            None
        };
        let db_ih = need_bih.then(|| d.sum_dim(&[0], false)).transpose()?;
        let db_hh = need_bhh.then(|| d.sum_dim(&[0], false)).transpose()?;
        let mut grads = vec![dx, dw_ih, dw_hh];
        if has_bih {
            grads.push(db_ih);
        }
        if has_bhh {
            grads.push(db_hh);
        }
        grads.push(need_h0.then(|| Tensor::from_cpu(dh0, vec![b, h])));
        Ok(grads)
    });
    let h_last = y.narrow(0, t_len - 1, 1)?.reshape(&[b, h])?;
    Ok((y, h_last, None))
}

/// The unary op whose backward rule is the activation's.
/// What the forward keeps for the backward, per step.
enum Saved {
    /// LSTM: gate pre-activations and the previous cell state.
    Lstm(Vec<(Tensor, Tensor)>),
    /// GRU: the input and recurrent gate products.
    Gru(Vec<(Tensor, Tensor)>),
}

fn recurrence(
    mode: RnnMode,
    gi_all: &Tensor,
    w_hh: &Tensor,
    b_hh: Option<&Tensor>,
    h0: &Tensor,
    c0: Option<&Tensor>,
    (t_len, b, h): (usize, usize, usize),
) -> Result<LayerOutput> {
    let g = mode.gates();
    let (whh, bhh) = (w_hh.detach(), b_hh.map(Tensor::detach));
    let h0d = h0.detach();
    let (y, hs, saved) = crate::autograd::no_grad(|| -> Result<_> {
        let mut hs: Vec<Tensor> = Vec::with_capacity(t_len);
        let mut saved = match mode {
            RnnMode::Lstm => Saved::Lstm(Vec::with_capacity(t_len)),
            _ => Saved::Gru(Vec::with_capacity(t_len)),
        };
        let mut hprev = h0d.clone();
        let mut cprev = c0.map(Tensor::detach);
        for t in 0..t_len {
            let gi = gi_all.narrow(0, t, 1)?.reshape(&[b, g * h])?;
            let mut gh = hprev.linear(&whh)?;
            if let Some(bias) = &bhh {
                gh = gh.add(bias)?;
            }
            let hnew = match &mut saved {
                Saved::Lstm(steps) => {
                    let gates = gi.add(&gh)?;
                    let cp = cprev.take().expect("an LSTM has a cell state");
                    let y = lstm_forward_raw(&gates, &cp, b, h)?;
                    cprev = Some(y.narrow(0, 1, 1)?.reshape(&[b, h])?);
                    steps.push((gates, cp));
                    y.narrow(0, 0, 1)?.reshape(&[b, h])?
                }
                Saved::Gru(steps) => {
                    let hn = gru_forward_raw(&gi, &gh, &hprev, b, h)?;
                    steps.push((gi, gh));
                    hn
                }
            };
            hs.push(hnew.clone());
            hprev = hnew;
        }
        let refs: Vec<&Tensor> = hs.iter().collect();
        let mut y = Tensor::stack(&refs, 0)?;
        if let Some(c) = &cprev {
            y = Tensor::cat(&[&y, &c.unsqueeze(0)?], 0)?;
        }
        Ok((y, hs, saved))
    })?;
    let mut inputs: Vec<&Tensor> = vec![gi_all, w_hh];
    inputs.extend(b_hh);
    inputs.push(h0);
    inputs.extend(c0);
    let needs: Vec<bool> = inputs.iter().map(|t| t.requires_grad()).collect();
    let has_bias = b_hh.is_some();
    let y = crate::autograd::record(y, mode.name(), &inputs, move |gy| {
        crate::autograd::no_grad(|| {
            bptt(
                mode,
                gy,
                &whh,
                &h0d,
                &hs,
                &saved,
                (t_len, b, h),
                has_bias,
                &needs,
            )
        })
    });
    let out = y.narrow(0, 0, t_len)?;
    let h_last = y.narrow(0, t_len - 1, 1)?.reshape(&[b, h])?;
    let c_last = if mode == RnnMode::Lstm {
        Some(y.narrow(0, t_len, 1)?.reshape(&[b, h])?)
    } else {
        None
    };
    Ok((out, h_last, c_last))
}

/// Backpropagation through time for [`recurrence`]: gradients for `[gi_all, w_hh,
/// (b_hh), h0, (c0)]` from the gradient of `[outputs..., (c_T)]`.
#[allow(clippy::too_many_arguments)]
fn bptt(
    mode: RnnMode,
    gy: &Tensor,
    whh: &Tensor,
    h0: &Tensor,
    hs: &[Tensor],
    saved: &Saved,
    (t_len, b, h): (usize, usize, usize),
    has_bias: bool,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let g = mode.gates();
    let mut dh_carry: Option<Tensor> = None;
    let mut dc_carry = if mode == RnnMode::Lstm {
        Some(gy.narrow(0, t_len, 1)?.reshape(&[b, h])?)
    } else {
        None
    };
    let mut dgi_steps: Vec<Tensor> = Vec::with_capacity(t_len);
    let mut dgh_steps: Vec<Tensor> = Vec::new();
    for t in (0..t_len).rev() {
        let mut dh = gy.narrow(0, t, 1)?.reshape(&[b, h])?;
        if let Some(c) = &dh_carry {
            dh = dh.add(c)?;
        }
        let hprev = if t == 0 { h0 } else { &hs[t - 1] };
        let (dgi, dgh, direct) = match saved {
            Saved::Lstm(steps) => {
                let (gates, cp) = &steps[t];
                let dc = dc_carry.take().expect("an LSTM carries a cell gradient");
                let g2 = Tensor::stack(&[&dh, &dc], 0)?;
                let (da, dcp) = lstm_backward_raw(gates, cp, &g2, b, h)?;
                dc_carry = Some(dcp);
                (da.clone(), da, None)
            }
            Saved::Gru(steps) => {
                let (gi, gh) = &steps[t];
                let [dgi, dgh, dhp] = gru_backward_raw(gi, gh, hprev, &dh, b, h)?;
                (dgi, dgh, Some(dhp))
            }
        };
        let mut carry = dgh.matmul(whh)?;
        if let Some(d) = direct {
            carry = carry.add(&d)?;
        }
        dh_carry = Some(carry);
        dgi_steps.push(dgi);
        if mode == RnnMode::Gru {
            dgh_steps.push(dgh);
        }
    }
    dgi_steps.reverse();
    dgh_steps.reverse();
    let refs: Vec<&Tensor> = dgi_steps.iter().collect();
    let dgi_all = Tensor::stack(&refs, 0)?;
    let dgh_all = if mode == RnnMode::Gru {
        let refs: Vec<&Tensor> = dgh_steps.iter().collect();
        Tensor::stack(&refs, 0)?
    } else {
        dgi_all.clone()
    };
    let rows = t_len * b;
    let dgh2 = dgh_all.reshape(&[rows, g * h])?;
    let mut grads = vec![Some(dgi_all)];
    let w_index = 1;
    grads.push(if needs[w_index] {
        // One product over all steps: sum_t dgh_t^T h_{t-1}.
        let mut prev: Vec<&Tensor> = vec![h0];
        prev.extend(hs[..t_len - 1].iter());
        let hprev_all = Tensor::stack(&prev, 0)?.reshape(&[rows, h])?;
        Some(crate::ops::matmul::matmul_raw(
            &dgh2,
            true,
            &hprev_all,
            false,
            crate::ops::matmul::MatmulChoice::AUTO,
        )?)
    } else {
        None
    });
    if has_bias {
        grads.push(Some(dgh2.sum_dim(&[0], false)?));
    }
    grads.push(dh_carry);
    if mode == RnnMode::Lstm {
        grads.push(dc_carry);
    }
    Ok(grads)
}

/// Kept here too for existing callers; the op lives in [`crate::ops::embedding`].
pub use super::embedding::embedding;
