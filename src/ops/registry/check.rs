//! Running the registry's cases: the inputs each case draws, the op's output and input
//! gradients on a device, and the GPU-against-CPU comparison.
//! `tests/gradcheck.rs` runs it natively (blocking readbacks); `tests/web_registry.rs`
//! runs it in a browser on WebGPU, where readbacks are awaited ([`run_case_async`]).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{OpCase, OpEntry};
use crate::device::Device;
use crate::error::Result;
use crate::tensor::{DType, Tensor};

/// The seed of case `case` of op `name` (the same draw on every device and run).
pub fn seed_for(name: &str, case: usize) -> u64 {
    name.bytes().fold(case as u64 + 1, |h, b| {
        h.wrapping_mul(131).wrapping_add(b as u64)
    })
}

/// The input values of case `k` of `entry`, and the generator after drawing them.
pub fn draw(entry: &OpEntry, k: usize) -> (Vec<Vec<f64>>, StdRng) {
    let mut rng = StdRng::seed_from_u64(seed_for(entry.name, k));
    let vals = entry.cases[k]
        .inputs
        .iter()
        .map(|s| s.values(&mut rng))
        .collect();
    (vals, rng)
}

/// A fixed random projection so that every output element's gradient matters.
pub fn projection(rng: &mut StdRng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// A case's inputs as tensors of `dtype` on `dev` (indices stay `u32`), float inputs
/// requiring grad when `grad`.
pub fn make_inputs(
    case: &OpCase,
    values: &[Vec<f64>],
    dtype: DType,
    dev: &Device,
    grad: bool,
) -> Result<Vec<Tensor>> {
    case.inputs
        .iter()
        .zip(values)
        .map(|(spec, v)| {
            if spec.is_index() {
                let idx: Vec<u32> = v.iter().map(|&x| x as u32).collect();
                return Tensor::from_vec(idx, &spec.shape, dev);
            }
            let t = match dtype {
                DType::F64 => Tensor::from_vec(v.clone(), &spec.shape, dev)?,
                _ => Tensor::from_vec(
                    v.iter().map(|&x| x as f32).collect::<Vec<_>>(),
                    &spec.shape,
                    dev,
                )?,
            };
            t.requires_grad_(grad)
        })
        .collect()
}

/// Case `k` of `entry` run on `dev` in f32: its output, then the gradient of every
/// differentiable input through a fixed random projection (nothing read back yet).
fn run_tensors(entry: &OpEntry, k: usize, dev: &Device) -> Result<Vec<Tensor>> {
    run_tensors_in(entry, k, dev, DType::F32)
}

/// [`run_tensors`] with the float inputs of `dtype` (`F32`, or a half type: the drawn
/// values rounded to it); the projection is applied to the output in f32.
fn run_tensors_in(entry: &OpEntry, k: usize, dev: &Device, dtype: DType) -> Result<Vec<Tensor>> {
    let case = &entry.cases[k];
    let (values, rng) = draw(entry, k);
    let inputs = make_inputs(case, &values, DType::F32, dev, false)?
        .into_iter()
        .zip(&case.inputs)
        .map(|(t, spec)| {
            let t = if spec.is_index() {
                t
            } else {
                t.to_dtype(dtype)?
            };
            t.requires_grad_(entry.differentiable && !spec.is_index())
        })
        .collect::<Result<Vec<_>>>()?;
    let out = (case.run)(&inputs, dev)?;
    let wide = if out.dtype().is_half() {
        out.float()?
    } else {
        out.clone()
    };
    let mut got = vec![out];
    got.extend(gradients(entry, k, &inputs, &wide, &rng, dev)?);
    Ok(got)
}

/// For a differentiable entry, the gradients of case `k`'s differentiable `inputs`
/// through the fixed random projection of `out` (an f32 view of the output); none
/// otherwise.
fn gradients(
    entry: &OpEntry,
    k: usize,
    inputs: &[Tensor],
    out: &Tensor,
    rng: &StdRng,
    dev: &Device,
) -> Result<Vec<Tensor>> {
    if !entry.differentiable {
        return Ok(Vec::new());
    }
    let w = projection(&mut rng.clone(), out.numel());
    let w: Vec<f32> = w.iter().map(|&x| x as f32).collect();
    let wt = Tensor::from_vec(w, out.shape(), dev)?;
    out.mul(&wt)?.sum()?.backward()?;
    let mut grads = Vec::new();
    for (i, spec) in entry.cases[k].inputs.iter().enumerate() {
        if spec.differentiable() {
            grads.push(inputs[i].grad().ok_or_else(|| {
                crate::Error::Autograd(format!("input {i} of {} got no gradient", entry.name))
            })?);
        }
    }
    Ok(grads)
}

/// What one case gave on one device: the output's shape, then the output's values and
/// each differentiable input's gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseResult {
    /// The output's shape.
    pub shape: Vec<usize>,
    /// The output, then the gradients.
    pub values: Vec<Vec<f64>>,
}

/// Case `k` of `entry` on `dev` in f32, read back (blocking).
pub fn run_case(entry: &OpEntry, k: usize, dev: &Device) -> Result<CaseResult> {
    let got = run_tensors(entry, k, dev)?;
    Ok(CaseResult {
        shape: got[0].shape().to_vec(),
        values: got.iter().map(|t| t.to_f64_vec()).collect::<Result<_>>()?,
    })
}

/// Case `k` of `entry` on `dev` with its float inputs in the half type `dtype` (the
/// drawn values rounded to it), read back: the op's output and gradients in `dtype`.
pub fn run_case_half(entry: &OpEntry, k: usize, dev: &Device, dtype: DType) -> Result<CaseResult> {
    let got = run_tensors_in(entry, k, dev, dtype)?;
    Ok(CaseResult {
        shape: got[0].shape().to_vec(),
        values: got.iter().map(|t| t.to_f64_vec()).collect::<Result<_>>()?,
    })
}

/// The reference for [`run_case_half`]: the case in f32 on `dev` from the drawn values
/// rounded to `dtype`, its output and gradients then rounded to `dtype` (what an op that
/// computes in f32 and rounds once gives).
pub fn run_case_rounded(
    entry: &OpEntry,
    k: usize,
    dev: &Device,
    dtype: DType,
) -> Result<CaseResult> {
    let case = &entry.cases[k];
    let (values, rng) = draw(entry, k);
    let rounded: Vec<Vec<f64>> = values
        .iter()
        .zip(&case.inputs)
        .map(|(v, spec)| {
            if spec.is_index() {
                v.clone()
            } else {
                v.iter()
                    .map(|&x| round_to(dtype, x as f32) as f64)
                    .collect()
            }
        })
        .collect();
    let inputs = make_inputs(case, &rounded, DType::F32, dev, entry.differentiable)?;
    let out = (case.run)(&inputs, dev)?;
    // An op with no float input (u32 to f32) computes in f32 in both runs.
    let any_float = case.inputs.iter().any(|s| !s.is_index());
    let wide = if out.dtype() == DType::F32 && any_float {
        out.to_dtype(dtype)?.float()?
    } else {
        out.clone()
    };
    let mut got = vec![out];
    got.extend(gradients(entry, k, &inputs, &wide, &rng, dev)?);
    let round = |t: &Tensor| -> Result<Vec<f64>> {
        if t.dtype() == DType::F32 && any_float {
            t.to_dtype(dtype)?.to_f64_vec()
        } else {
            t.to_f64_vec()
        }
    };
    Ok(CaseResult {
        shape: got[0].shape().to_vec(),
        values: got.iter().map(round).collect::<Result<_>>()?,
    })
}

/// [`run_case_half`] with awaited readbacks: the browser's way.
pub async fn run_case_half_async(
    entry: &OpEntry,
    k: usize,
    dev: &Device,
    dtype: DType,
) -> Result<CaseResult> {
    read_async(run_tensors_in(entry, k, dev, dtype)?).await
}

/// A case's tensors read back with awaited readbacks (the first one's shape kept).
async fn read_async(got: Vec<Tensor>) -> Result<CaseResult> {
    let mut values = Vec::with_capacity(got.len());
    for t in &got {
        values.push(t.to_f64_vec_async().await?);
    }
    Ok(CaseResult {
        shape: got[0].shape().to_vec(),
        values,
    })
}

/// Whether the half-precision registry check leaves case `label` of `entry` out, and
/// why: the gradient scaler unscales f32 master gradients and clipping is built for f32
/// gradients (mixed precision keeps both in f32); Adam's and centered RMSprop's half
/// states are checked elsewhere (see below); `rms_norm`
/// with `eps: None` takes the input dtype's epsilon (PyTorch's `finfo(dtype).eps`), not
/// the f32 reference's; attention's "logits x100" case scales q and k by 10 inside the
/// case, which in half precision rounds the scaled inputs before a near-one-hot softmax
/// (as PyTorch's half ops do), so its gradients follow other keys.
pub fn half_skip(entry: &str, label: &str) -> Option<&'static str> {
    const IN_PLACE: &[&str] = &["grad_scaler", "scaled_adam_step", "clip_grad_norm"];
    // Second moments in half states sit near f16's underflow (a variance of half
    // values cancels), so pure-half steps leave the f32 reference by design;
    // `tests/half_inplace.rs` holds them to f32 steps with rounded states, bit for bit.
    const HALF_STATES: &[&str] = &[
        "adam_step",
        "adamw_step",
        "rmsprop_centered_step",
        "rmsprop_centered_momentum_step",
    ];
    if HALF_STATES.contains(&entry) {
        Some("second moments in half optimizer states")
    } else if IN_PLACE.contains(&entry) {
        Some("f32 master gradients (the scaler) and clipping of f32 gradients")
    } else if entry == "rms_norm" && label.contains("eps None") {
        Some("the half dtype's epsilon")
    } else if entry == "scaled_dot_product_attention" && label.contains("logits x100") {
        Some("logits scaled in half precision inside the case")
    } else {
        None
    }
}

/// Compares a half-precision run with [`run_case_rounded`]'s reference: one unit in the
/// last place of `dtype` (2^-10 for f16, 2^-7 for bf16) relative for the output, four
/// for gradients, on top of the f32 registry's absolute tolerance times `slack`; a case
/// made of several ops rounds between them, as PyTorch's half ops do, so each result
/// vector also allows 8 units of its largest magnitude. Equal infinities and NaN
/// against NaN agree.
pub fn compare_half(
    what: &str,
    got: &CaseResult,
    want: &CaseResult,
    dtype: DType,
    slack: f64,
    failures: &mut Vec<String>,
) {
    let ulp = match dtype {
        DType::F16 => 2f64.powi(-10),
        _ => 2f64.powi(-7),
    };
    if got.shape != want.shape {
        failures.push(format!("{what}: shape {:?} vs {:?}", got.shape, want.shape));
        return;
    }
    for (i, (g, w)) in got.values.iter().zip(&want.values).enumerate() {
        let largest = w
            .iter()
            .filter(|x| x.is_finite())
            .fold(0f64, |m, x| m.max(x.abs()));
        let atol = 1e-4 * slack + 8.0 * ulp * largest;
        let rtol = if i == 0 { ulp } else { 4.0 * ulp };
        for (j, (&a, &b)) in g.iter().zip(w).enumerate() {
            let ok = if a.is_nan() || b.is_nan() {
                a.is_nan() && b.is_nan()
            } else if a.is_infinite() || b.is_infinite() {
                a == b
            } else {
                (a - b).abs() <= atol + rtol * b.abs()
            };
            if !ok {
                failures.push(format!("{what} result {i}[{j}]: {a} vs {b}"));
                break;
            }
        }
    }
}

fn round_to(dtype: DType, x: f32) -> f32 {
    crate::backend::half::to_f32(dtype, crate::backend::half::from_f32(dtype, x))
}

/// [`run_case`] with awaited readbacks: the browser's way.
pub async fn run_case_async(entry: &OpEntry, k: usize, dev: &Device) -> Result<CaseResult> {
    read_async(run_tensors(entry, k, dev)?).await
}

/// The widening of the absolute tolerance for `entry`: long f32 sums (matmul over K up
/// to 1030, sums of up to 257 terms) are added in another order on the GPU (trees)
/// than on the CPU, so their rounding differs by up to about `len * eps * sum |terms|`.
/// Attention's cases with logits near ±700 round each score by about `700 * 2^-24 * E`
/// (a few 1e-5, differently on each device), which reaches the near-one-hot weights'
/// gradients as an absolute error of that size.
pub fn slack(entry: &OpEntry) -> f64 {
    if entry.name.starts_with("matmul") {
        30.0
    } else {
        match entry.name {
            "sum_dim"
            | "mse_loss"
            | "cross_entropy"
            | "linear"
            | "scaled_dot_product_attention" => 10.0,
            _ => 1.0,
        }
    }
}

/// Compares a case's GPU result with the CPU's under the rule
/// `|gpu - cpu| <= 1e-5 slack + 1e-4 |cpu|` (NaN matching NaN); pushes the first
/// mismatch of each tensor to `failures`, labelled with `what`.
pub fn compare(
    what: &str,
    gpu: &CaseResult,
    cpu: &CaseResult,
    slack: f64,
    failures: &mut Vec<String>,
) {
    if gpu.shape != cpu.shape {
        failures.push(format!(
            "{what}: shapes differ {:?} vs {:?}",
            gpu.shape, cpu.shape
        ));
        return;
    }
    for (t, (g, c)) in gpu.values.iter().zip(&cpu.values).enumerate() {
        let label = if t == 0 {
            format!("{what} forward")
        } else {
            format!("{what} grad {}", t - 1)
        };
        if g.len() != c.len() {
            failures.push(format!(
                "{label}: {} values on the GPU, {} on the CPU",
                g.len(),
                c.len()
            ));
            continue;
        }
        for (j, (g, c)) in g.iter().zip(c).enumerate() {
            let ok = (g - c).abs() <= 1e-5 * slack + 1e-4 * c.abs() || (g.is_nan() && c.is_nan());
            if !ok {
                failures.push(format!("{label}[{j}]: gpu {g} cpu {c}"));
                break;
            }
        }
    }
}
