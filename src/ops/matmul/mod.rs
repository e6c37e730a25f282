//! Batched matrix products with broadcasting over batch dimensions (PyTorch's `matmul`,
//! including 1-D operands), and `linear`. On the GPU a planner ([`plan`]) picks a kernel
//! of the family in `shaders/matmul.wgsl` by shape (a register-tiled kernel with 128 or
//! 64 wide tiles, or a small-tile kernel for skinny products) and splits long inner
//! dimensions over workgroups (split-K) whose partial products a reduction pass adds.
//! The CPU uses the `gemm` crate's kernels. Transposed operands are read through strides, so the
//! backward products `dA = dC B^T` and `dB = A^T dC` need no transpose copies. The
//! products run behind the backend seam ([`crate::backend`]'s `Matmul`); this module
//! checks shapes, cuts products too large for one binding and records the backward.

use crate::autograd::{no_grad, record};
use crate::backend::matmul::Product;
pub use crate::backend::matmul::{Act, MatmulChoice};
pub use crate::backend::matmul_plan as plan;
use crate::device::Device;
use crate::error::{shape_err, Result};
use crate::ops::split;
use crate::shape::{self, broadcast_strides};
use crate::tensor::{check_pair, Tensor};
pub use plan::{MatmulKernel, MatmulPlan, PlanLimits, ProductShape};

/// Batch dims the GPU kernel supports (the rest of the parameter block holds strides).
const MAX_BATCH_RANK: usize = 4;

/// `op(a) @ op(b)` where `op` transposes the last two dims when asked; no graph.
/// Returns a tensor of shape `[broadcast batch..., M, N]`.
pub(crate) fn matmul_raw(
    a: &Tensor,
    ta: bool,
    b: &Tensor,
    tb: bool,
    choice: MatmulChoice,
) -> Result<Tensor> {
    matmul_raw_sum(a, ta, b, tb, choice, None)
}

/// [`matmul_raw`] whose per-batch products are summed down to the batch shape `sum_to`
/// (a shape the broadcast batch reduces to, as in `sum_to_shape`): the backward of a
/// broadcast operand. The CPU accumulates each product straight into its target
/// (`C += A B`), so no `[batch, M, N]` intermediate exists; the GPU reduces after.
fn matmul_raw_sum(
    a: &Tensor,
    ta: bool,
    b: &Tensor,
    tb: bool,
    choice: MatmulChoice,
    sum_to: Option<&[usize]>,
) -> Result<Tensor> {
    let (ar, br) = (a.rank(), b.rank());
    let (a_rows, a_cols) = (a.shape()[ar - 2], a.shape()[ar - 1]);
    let (b_rows, b_cols) = (b.shape()[br - 2], b.shape()[br - 1]);
    let (m, k) = if ta {
        (a_cols, a_rows)
    } else {
        (a_rows, a_cols)
    };
    let (k2, n) = if tb {
        (b_cols, b_rows)
    } else {
        (b_rows, b_cols)
    };
    if k != k2 {
        // PyTorch's wording, with the matrices as the product reads them (`mat2` of a
        // linear layer is the weight transposed); batched operands get their shapes too.
        let whole = if ar > 2 || br > 2 {
            format!(
                " (batched: {} and {})",
                shape::fmt(a.shape()),
                shape::fmt(b.shape())
            )
        } else {
            String::new()
        };
        return shape_err(
            "matmul",
            format!("mat1 and mat2 shapes cannot be multiplied ({m}x{k} and {k2}x{n}){whole}"),
        );
    }
    let (a_batch, b_batch) = (&a.shape()[..ar - 2], &b.shape()[..br - 2]);
    let batch = match shape::broadcast_mismatch(a_batch, b_batch) {
        Ok(batch) => batch,
        Err((i, da, db)) => {
            return shape_err(
                "matmul",
                format!(
                    "batch dimensions {} of {} and {} of {} do not broadcast: the size of tensor a ({da}) must match the size of tensor b ({db}) at non-singleton dimension {i}",
                    shape::fmt(a_batch),
                    shape::fmt(a.shape()),
                    shape::fmt(b_batch),
                    shape::fmt(b.shape())
                ),
            )
        }
    };
    if batch.len() > MAX_BATCH_RANK {
        return shape_err(
            "matmul",
            format!("at most {MAX_BATCH_RANK} batch dimensions are supported"),
        );
    }
    let sa: Vec<usize> = broadcast_strides(a_batch, &batch)
        .iter()
        .map(|s| s * a_rows * a_cols)
        .collect();
    let sb: Vec<usize> = broadcast_strides(b_batch, &batch)
        .iter()
        .map(|s| s * b_rows * b_cols)
        .collect();
    // Element strides of op(A)[m, k] and op(B)[k, n] within one matrix.
    let (a_rs, a_cs) = if ta { (1, a_cols) } else { (a_cols, 1) };
    let (b_rs, b_cs) = if tb { (1, b_cols) } else { (b_cols, 1) };
    let mut out_shape = batch.clone();
    out_shape.extend([m, n]);
    crate::ops::check_out("matmul", &out_shape, a.dtype(), a.device())?;
    // Where each batch's product goes: its own matrix, or (summing) a shared one.
    let out_batch: Vec<usize> = sum_to.map_or(batch.clone(), |t| t[..t.len() - 2].to_vec());
    let summing = sum_to.is_some_and(|t| t != out_shape.as_slice());
    if !summing {
        if let Some(y) = split_product(a, ta, b, tb, choice, (m, k, n), &batch)? {
            return y.reshape(&out_shape);
        }
    }
    let final_shape = sum_to.unwrap_or(&out_shape).to_vec();
    if m * n * shape::numel(&batch) == 0 || k == 0 {
        // An empty product, or an empty inner dimension: all zeros.
        return crate::ops::layout::fill(&final_shape, a.dtype(), 0.0, a.device());
    }
    let product = Product {
        m,
        n,
        k,
        batch,
        out_batch,
        sa,
        sb,
        a_strides: (a_rs, a_cs),
        b_strides: (b_rs, b_cs),
        summing,
    };
    let y = a
        .device()
        .backend()
        .matmul(a.storage(), b.storage(), &product, choice)?;
    crate::ops::half::like(y, final_shape, a)
}

/// A GPU product with an operand or result too large for one storage binding, in pieces
/// (see [`crate::ops::split`]): rows of A and C when A is untransposed and B is one
/// matrix (A's batch folds into the rows); the inner dimension, the pieces' products
/// summed, when both are single matrices and only A is transposed (`dW = g^T x`); the
/// batch, when the operands are batched alike or A is one matrix (a piece still too
/// large recurses into the first two). `None` when everything fits or no cut applies
/// (both operands transposed; a single operand too large to bind whole), and then the
/// launch reports the error.
fn split_product(
    a: &Tensor,
    ta: bool,
    b: &Tensor,
    tb: bool,
    choice: MatmulChoice,
    (m, k, n): (usize, usize, usize),
    batch: &[usize],
) -> Result<Option<Tensor>> {
    let g = a.device();
    let batches = shape::numel(batch);
    if m * n * batches == 0 || (!split::any_over(&[a, b]) && !split::over(g, batches * m * n)) {
        return Ok(None);
    }
    let (ar, br) = (a.rank(), b.rank());
    let (a_rows, a_cols) = (a.shape()[ar - 2], a.shape()[ar - 1]);
    let (b_rows, b_cols) = (b.shape()[br - 2], b.shape()[br - 1]);
    let a_batch = shape::numel(&a.shape()[..ar - 2]);
    let b_batch = shape::numel(&b.shape()[..br - 2]);
    let (ad, bd) = (a.detach(), b.detach());
    let product = |p: &[Tensor]| Ok(vec![matmul_raw(&p[0], ta, &p[1], tb, choice)?]);
    if b_batch == 1 && !ta {
        let a2 = ad.reshape(&[a_batch * m, k])?;
        let b2 = bd.reshape(&[b_rows, b_cols])?;
        let parts = [split::Part::Rows(&a2), split::Part::Whole(&b2)];
        let out = split::rows(&parts, &[a_batch * m, n], 1, a.dtype(), product)?;
        return Ok(out.map(|mut o| o.remove(0)));
    }
    if a_batch == 1 && b_batch == 1 && ta && !tb {
        if split::over(g, m * n) {
            return Ok(None);
        }
        let (a2, b2) = (ad.reshape(&[k, m])?, bd.reshape(&[k, n])?);
        let per = split::rows_per_piece(g, m.max(n));
        let mut sum: Option<Tensor> = None;
        for first in (0..k).step_by(per) {
            let len = per.min(k - first);
            let pa = split::take(&a2, first * m, vec![len, m])?;
            let pb = split::take(&b2, first * n, vec![len, n])?;
            let c = matmul_raw(&pa, true, &pb, false, choice)?;
            sum = Some(match sum {
                None => c,
                Some(s) => no_grad(|| s.add(&c))?,
            });
        }
        return Ok(sum);
    }
    let alike = |t: usize| t == batches || t == 1;
    if batches > 1 && alike(a_batch) && alike(b_batch) {
        // One matrix is passed whole to every piece (broadcast over the batch).
        let shaped = |t: &Tensor, count: usize, rows: usize, cols: usize| {
            if count == 1 {
                t.reshape(&[rows, cols])
            } else {
                t.reshape(&[count, rows, cols])
            }
        };
        let a3 = shaped(&ad, a_batch, a_rows, a_cols)?;
        let b3 = shaped(&bd, b_batch, b_rows, b_cols)?;
        let parts = [(&a3, a_batch), (&b3, b_batch)].map(|(t, count)| {
            if count == 1 {
                split::Part::Whole(t)
            } else {
                split::Part::Rows(t)
            }
        });
        let out = split::rows(&parts, &[batches, m, n], 1, a.dtype(), product)?;
        return Ok(out.map(|mut o| o.remove(0)));
    }
    Ok(None)
}

/// Matrix product with PyTorch's `matmul` rules, recording the backward.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    matmul_with(a, b, MatmulChoice::AUTO)
}

/// [`matmul`] through a chosen GPU kernel and split count, forward and backward (the
/// tests reach every kernel of the family this way; benchmarks compare them). The CPU
/// ignores the choice.
pub fn matmul_with(a: &Tensor, b: &Tensor, choice: MatmulChoice) -> Result<Tensor> {
    match crate::ops::half::direct("matmul", &[a, b], |w| matmul_recorded(&w[0], &w[1], choice)) {
        Some(r) => r,
        None => matmul_recorded(a, b, choice),
    }
}

/// [`matmul_with`] on operands of one dtype (half ones read as they are).
fn matmul_recorded(a: &Tensor, b: &Tensor, choice: MatmulChoice) -> Result<Tensor> {
    check_pair("matmul", a, b)?;
    if a.rank() == 0 || b.rank() == 0 {
        return shape_err(
            "matmul",
            format!(
                "{} x {}: both operands need at least one dimension",
                shape::fmt(a.shape()),
                shape::fmt(b.shape())
            ),
        );
    }
    if a.rank() == 1 && b.rank() == 1 {
        return matmul_recorded(&a.unsqueeze(0)?, &b.unsqueeze(-1)?, choice)?.reshape(&[]);
    }
    if a.rank() == 1 {
        return matmul_recorded(&a.unsqueeze(0)?, b, choice)?.squeeze(-2);
    }
    if b.rank() == 1 {
        return matmul_recorded(a, &b.unsqueeze(-1)?, choice)?.squeeze(-1);
    }
    let y = matmul_raw(a, false, b, false, choice)?;
    let (sa, sb) = (a.detach(), b.detach());
    let (need_a, need_b) = (a.requires_grad(), b.requires_grad());
    Ok(record(y, "matmul", &[a, b], move |g| {
        let da = if need_a {
            Some(matmul_raw_sum(
                g,
                false,
                &sb,
                true,
                choice,
                Some(sa.shape()),
            )?)
        } else {
            None
        };
        let db = if need_b {
            Some(matmul_raw_sum(
                &sa,
                true,
                g,
                false,
                choice,
                Some(sb.shape()),
            )?)
        } else {
            None
        };
        Ok(vec![da, db])
    }))
}

/// The plan the GPU would run for a product of `batches` `[m, k] x [k, n]` matrices on
/// `device` (`None` on the CPU): which kernel, how many splits, useful and executed
/// FLOPs. For benchmarks and curious users.
pub fn gpu_plan(
    device: &Device,
    m: usize,
    n: usize,
    k: usize,
    batches: usize,
) -> Option<MatmulPlan> {
    device.backend().matmul_plan(&ProductShape {
        m,
        n,
        k,
        batches,
        summing: false,
    })
}

impl Tensor {
    /// Matrix product with broadcasting over batch dimensions (`torch.matmul`).
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        matmul(self, other)
    }
}

/// Checks `linear`'s operands: the same device, `x` `[..., in]` and `weight` `[out, in]`.
pub(crate) fn check_linear(x: &Tensor, weight: &Tensor) -> Result<()> {
    check_pair("linear", x, weight)?;
    if weight.rank() == 2 && x.rank() > 0 && x.shape()[x.rank() - 1] != weight.shape()[1] {
        // PyTorch's wording: the input's leading dimensions flattened into rows, times
        // the weight transposed.
        let (out, inp) = (weight.shape()[0], weight.shape()[1]);
        let cols = x.shape()[x.rank() - 1];
        let rows = shape::numel(&x.shape()[..x.rank() - 1]);
        let mut msg =
            format!("mat1 and mat2 shapes cannot be multiplied ({rows}x{cols} and {inp}x{out})");
        if x.rank() > 2 {
            msg += &format!(
                " (input {}, weight {})",
                shape::fmt(x.shape()),
                shape::fmt(weight.shape())
            );
            if shape::numel(&x.shape()[1..]) == inp {
                msg += "; hint: flatten the input (x.flatten(1, -1)) before Linear";
            }
        }
        return shape_err("linear", msg);
    }
    if weight.rank() != 2 || x.rank() == 0 {
        return shape_err(
            "linear",
            format!(
                "input {} and weight {}: expected [..., in] and [out, in]",
                shape::fmt(x.shape()),
                shape::fmt(weight.shape())
            ),
        );
    }
    Ok(())
}

/// `x @ weight^T` for `x` of shape `[..., in]` and `weight` `[out, in]` (PyTorch's
/// `Linear` layout), reading the weight transposed through strides: no copy forward or
/// backward. `dx = g @ W`, `dW = g^T @ x` over the flattened leading dims.
pub fn linear(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    match crate::ops::half::direct("linear", &[x, weight], |w| linear_recorded(&w[0], &w[1])) {
        Some(r) => r,
        None => linear_recorded(x, weight),
    }
}

/// [`linear`] on operands of one dtype (half ones read as they are).
fn linear_recorded(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    check_linear(x, weight)?;
    let (inp, out) = (weight.shape()[1], weight.shape()[0]);
    let rows = x.numel() / inp.max(1);
    let x2 = x.detach().reshape(&[rows, inp])?;
    let y2 = matmul_raw(&x2, false, weight, true, MatmulChoice::AUTO)?;
    let mut out_shape = x.shape().to_vec();
    *out_shape.last_mut().expect("rank >= 1") = out;
    let y = y2.reshape(&out_shape)?;
    let (ws, need_x, need_w) = (weight.detach(), x.requires_grad(), weight.requires_grad());
    let x_shape = x.shape().to_vec();
    Ok(record(y, "linear", &[x, weight], move |g| {
        let g2 = g.reshape(&[rows, out])?;
        let dx = if need_x {
            Some(matmul_raw(&g2, false, &ws, false, MatmulChoice::AUTO)?.reshape(&x_shape)?)
        } else {
            None
        };
        let dw = if need_w {
            Some(matmul_raw(&g2, true, &x2, false, MatmulChoice::AUTO)?)
        } else {
            None
        };
        Ok(vec![dx, dw])
    }))
}

impl Tensor {
    /// `self @ weight^T` with `weight` in PyTorch's `[out, in]` layout.
    pub fn linear(&self, weight: &Tensor) -> Result<Tensor> {
        linear(self, weight)
    }
}

impl Act {
    /// The same activation as an unfused op.
    pub(crate) fn apply_op(self, x: &Tensor) -> Result<Tensor> {
        match self.op() {
            None => Ok(x.clone()),
            Some(op) => x.unary(op),
        }
    }
}
