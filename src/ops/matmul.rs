//! Batched matrix products with broadcasting over batch dimensions (PyTorch's `matmul`,
//! including 1-D operands). The GPU kernel is register-tiled (64x64 tiles, 4x4 outputs
//! per thread, vec4 staging in workgroup memory); the CPU uses `matrixmultiply`.
//! Transposed operands are read through strides, so the backward products
//! `dA = dC B^T` and `dB = A^T dC` need no transpose copies.

use crate::autograd::record;
use crate::backend::cpu::parallel::{self, SendPtr};
use crate::backend::cpu::{strided_offset, CpuData, Float};
use crate::backend::gpu::{Kernel, ShaderFile};
use crate::device::Device;
use crate::error::{shape_err, Result};
use crate::ops::{gpu_alloc, kernel, put, shader};
use crate::shape::{self, broadcast_strides};
use crate::tensor::{check_pair, Tensor};

pub(crate) const FILE: ShaderFile = shader("matmul", include_str!("../../shaders/matmul.wgsl"));
const MATMUL_TILED: &Kernel = kernel!(FILE, "matmul_fwd", [X0, X1, Y0]);
const MATMUL_NAIVE: &Kernel = kernel!(FILE, "matmul_naive_fwd", [X0, X1, Y0]);

/// Workgroups a grid dimension may hold.
const MAX_GROUPS: usize = 65_535;
/// Batch dims the GPU kernel supports (the rest of the parameter block holds strides).
const MAX_BATCH_RANK: usize = 4;

/// Which GPU kernel computes the product (the naive one exists for benchmarks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernel {
    /// Register-tiled: 64x64 workgroup tiles, 4x4 outputs per thread.
    Tiled,
    /// One output per thread, straight from global memory.
    Naive,
}

/// `op(a) @ op(b)` where `op` transposes the last two dims when asked; no graph.
/// Returns a tensor of shape `[broadcast batch..., M, N]`.
pub(crate) fn matmul_raw(
    a: &Tensor,
    ta: bool,
    b: &Tensor,
    tb: bool,
    which: MatmulKernel,
) -> Result<Tensor> {
    matmul_raw_sum(a, ta, b, tb, which, None)
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
    which: MatmulKernel,
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
        return shape_err(
            "matmul",
            format!(
                "{} x {}: inner dimensions differ ({k} vs {k2})",
                shape::fmt(a.shape()),
                shape::fmt(b.shape())
            ),
        );
    }
    let (a_batch, b_batch) = (&a.shape()[..ar - 2], &b.shape()[..br - 2]);
    let batch = shape::broadcast("matmul", a_batch, b_batch)?;
    if batch.len() > MAX_BATCH_RANK {
        return shape_err(
            "matmul",
            format!("at most {MAX_BATCH_RANK} batch dimensions are supported"),
        );
    }
    let batches = shape::numel(&batch);
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
    // Where each batch's product goes: its own matrix, or (summing) a shared one.
    let out_batch: Vec<usize> = sum_to.map_or(batch.clone(), |t| t[..t.len() - 2].to_vec());
    let so: Vec<usize> = broadcast_strides(&out_batch, &batch)
        .iter()
        .map(|s| s * m * n)
        .collect();
    let summing = sum_to.is_some_and(|t| t != out_shape.as_slice());
    Ok(match a.device() {
        Device::Gpu(_) if summing => {
            let full = matmul_raw_sum(a, ta, b, tb, which, None)?;
            full.sum_to_shape(sum_to.expect("summing"))?
        }
        Device::Cpu => {
            let (ad, bd) = (a.cpu_data(), b.cpu_data());
            let mut out = ad.float_like(shape::numel(&out_batch) * m * n, 0.0);
            let geo = CpuGemm {
                m,
                k,
                n,
                batch: &batch,
                sa: &sa,
                sb: &sb,
                so: &so,
                a_strides: (a_rs, a_cs),
                b_strides: (b_rs, b_cs),
                summing,
            };
            match (&*ad, &*bd, &mut out) {
                (CpuData::F32(x), CpuData::F32(y), CpuData::F32(c)) => geo.run(x, y, c),
                (CpuData::F64(x), CpuData::F64(y), CpuData::F64(c)) => geo.run(x, y, c),
                _ => unreachable!("matmul dtypes checked"),
            }
            let mut shape = out_batch;
            shape.extend([m, n]);
            Tensor::from_cpu(out, shape).reshape(sum_to.unwrap_or(&out_shape))?
        }
        Device::Gpu(g) => {
            let mut p = [0u32; 21];
            p[0] = m as u32;
            p[1] = n as u32;
            p[2] = k as u32;
            p[3] = batch.len() as u32;
            put(&mut p, 4, &batch, MAX_BATCH_RANK);
            put(&mut p, 8, &sa, MAX_BATCH_RANK);
            put(&mut p, 12, &sb, MAX_BATCH_RANK);
            p[16] = a_rs as u32;
            p[17] = a_cs as u32;
            p[18] = b_rs as u32;
            p[19] = b_cs as u32;
            let out = gpu_alloc(g, batches * m * n);
            let (kernel, tile) = match which {
                MatmulKernel::Tiled => (MATMUL_TILED, 64),
                MatmulKernel::Naive => (MATMUL_NAIVE, 16),
            };
            let (gx, gy) = (n.div_ceil(tile), m.div_ceil(tile));
            if gx > MAX_GROUPS || gy > MAX_GROUPS {
                return shape_err(
                    "matmul",
                    format!(
                        "a {m} x {n} result needs more than {MAX_GROUPS} workgroups along one axis"
                    ),
                );
            }
            if k == 0 {
                // An empty inner dimension: the product is all zeros.
                return Tensor::from_gpu(out, out_shape, a.dtype()).zeros_like();
            }
            // At most MAX_GROUPS batches per launch; P[20] is the launch's first batch.
            for first in (0..batches).step_by(MAX_GROUPS) {
                p[20] = first as u32;
                let count = (batches - first).min(MAX_GROUPS);
                g.launch(
                    kernel,
                    &p,
                    &[a.gpu_buf(), b.gpu_buf(), &out],
                    [gx as u32, gy as u32, count as u32],
                );
            }
            Tensor::from_gpu(out, out_shape, a.dtype())
        }
    })
}

/// `matrixmultiply`'s single-threaded kernels for one element type.
trait Gemm: Float {
    /// `C = alpha A B + beta C` with arbitrary strides.
    ///
    /// # Safety
    /// The pointers and strides must describe in-bounds matrices, `c` not aliasing.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        a_strides: (usize, usize),
        b: *const Self,
        b_strides: (usize, usize),
        beta: Self,
        c: *mut Self,
        c_row: usize,
    );
}

macro_rules! gemm_impl {
    ($t:ty, $f:path) => {
        impl Gemm for $t {
            unsafe fn gemm(
                m: usize,
                k: usize,
                n: usize,
                a: *const Self,
                (ar, ac): (usize, usize),
                b: *const Self,
                (br, bc): (usize, usize),
                beta: Self,
                c: *mut Self,
                c_row: usize,
            ) {
                $f(
                    m,
                    k,
                    n,
                    1.0,
                    a,
                    ar as isize,
                    ac as isize,
                    b,
                    br as isize,
                    bc as isize,
                    beta,
                    c,
                    c_row as isize,
                    1,
                )
            }
        }
    };
}
gemm_impl!(f32, matrixmultiply::sgemm);
gemm_impl!(f64, matrixmultiply::dgemm);

/// One batched product on the CPU: per-batch offsets, element strides, and whether the
/// batches sum into shared outputs.
struct CpuGemm<'a> {
    m: usize,
    k: usize,
    n: usize,
    batch: &'a [usize],
    sa: &'a [usize],
    sb: &'a [usize],
    so: &'a [usize],
    a_strides: (usize, usize),
    b_strides: (usize, usize),
    summing: bool,
}

impl CpuGemm<'_> {
    /// Splits the work over threads: by batch when there are several (a summing product
    /// gives each thread its own accumulator, added at the end), else by rows of `C`.
    fn run<T: Gemm>(&self, a: &[T], b: &[T], c: &mut [T]) {
        let (m, k, n) = (self.m, self.k, self.n);
        let batches = shape::numel(self.batch);
        let work = batches * m * n * k;
        let by_batch = batches > 1;
        let parts = parallel::parts(if by_batch { batches } else { m }, work);
        let beta = if self.summing { T::one() } else { T::zero() };
        // Extra accumulators for all but the first part when summing.
        let mut partials: Vec<Vec<T>> = if self.summing && parts > 1 {
            (1..parts).map(|_| vec![T::zero(); c.len()]).collect()
        } else {
            Vec::new()
        };
        let c_ptr = SendPtr(c.as_mut_ptr());
        let partial_ptrs: Vec<SendPtr<T>> = partials
            .iter_mut()
            .map(|p| SendPtr(p.as_mut_ptr()))
            .collect();
        let items = if by_batch { batches } else { m };
        parallel::for_parts(items, parts, |part, range| {
            let target = if part > 0 && self.summing {
                partial_ptrs[part - 1]
            } else {
                c_ptr
            };
            // SAFETY: offsets and strides describe in-bounds matrices of the contiguous
            // buffers (shapes checked by the caller); parts write disjoint outputs (their
            // own batches, their own rows, or their own accumulator), and `c` aliases
            // neither input.
            unsafe {
                if by_batch {
                    for bi in range {
                        let oa = strided_offset(bi, self.batch, self.sa);
                        let ob = strided_offset(bi, self.batch, self.sb);
                        let oc = strided_offset(bi, self.batch, self.so);
                        T::gemm(
                            m,
                            k,
                            n,
                            a.as_ptr().add(oa),
                            self.a_strides,
                            b.as_ptr().add(ob),
                            self.b_strides,
                            beta,
                            target.0.add(oc),
                            n,
                        );
                    }
                } else {
                    let rows = range.len();
                    T::gemm(
                        rows,
                        k,
                        n,
                        a.as_ptr().add(range.start * self.a_strides.0),
                        self.a_strides,
                        b.as_ptr(),
                        self.b_strides,
                        beta,
                        target.0.add(range.start * n),
                        n,
                    );
                }
            }
        });
        for p in partials {
            for (o, v) in c.iter_mut().zip(p) {
                *o += v;
            }
        }
    }
}

/// Matrix product with PyTorch's `matmul` rules, recording the backward.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
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
        return matmul(&a.unsqueeze(0)?, &b.unsqueeze(-1)?)?.reshape(&[]);
    }
    if a.rank() == 1 {
        return matmul(&a.unsqueeze(0)?, b)?.squeeze(-2);
    }
    if b.rank() == 1 {
        return matmul(a, &b.unsqueeze(-1)?)?.squeeze(-1);
    }
    let y = matmul_raw(a, false, b, false, MatmulKernel::Tiled)?;
    let (sa, sb) = (a.detach(), b.detach());
    let (need_a, need_b) = (a.requires_grad(), b.requires_grad());
    Ok(record(y, "matmul", &[a, b], move |g| {
        let da = if need_a {
            Some(matmul_raw_sum(
                g,
                false,
                &sb,
                true,
                MatmulKernel::Tiled,
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
                MatmulKernel::Tiled,
                Some(sb.shape()),
            )?)
        } else {
            None
        };
        Ok(vec![da, db])
    }))
}

/// A matrix product through the chosen GPU kernel, without a graph (for benchmarks).
#[doc(hidden)]
pub fn matmul_with_kernel(a: &Tensor, b: &Tensor, which: MatmulKernel) -> Result<Tensor> {
    check_pair("matmul", a, b)?;
    if a.rank() < 2 || b.rank() < 2 {
        return shape_err("matmul", "matmul_with_kernel needs matrices");
    }
    matmul_raw(a, false, b, false, which)
}

impl Tensor {
    /// Matrix product with broadcasting over batch dimensions (`torch.matmul`).
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        matmul(self, other)
    }
}

/// `x @ weight^T` for `x` of shape `[..., in]` and `weight` `[out, in]` (PyTorch's
/// `Linear` layout), reading the weight transposed through strides: no copy forward or
/// backward. `dx = g @ W`, `dW = g^T @ x` over the flattened leading dims.
pub fn linear(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    check_pair("linear", x, weight)?;
    if weight.rank() != 2 || x.rank() == 0 || x.shape()[x.rank() - 1] != weight.shape()[1] {
        return shape_err(
            "linear",
            format!(
                "input {} and weight {}: expected [..., in] and [out, in]",
                shape::fmt(x.shape()),
                shape::fmt(weight.shape())
            ),
        );
    }
    let (inp, out) = (weight.shape()[1], weight.shape()[0]);
    let rows = x.numel() / inp.max(1);
    let x2 = x.detach().reshape(&[rows, inp])?;
    let y2 = matmul_raw(&x2, false, weight, true, MatmulKernel::Tiled)?;
    let mut out_shape = x.shape().to_vec();
    *out_shape.last_mut().expect("rank >= 1") = out;
    let y = y2.reshape(&out_shape)?;
    let (ws, need_x, need_w) = (weight.detach(), x.requires_grad(), weight.requires_grad());
    let x_shape = x.shape().to_vec();
    Ok(record(y, "linear", &[x, weight], move |g| {
        let g2 = g.reshape(&[rows, out])?;
        let dx = if need_x {
            Some(matmul_raw(&g2, false, &ws, false, MatmulKernel::Tiled)?.reshape(&x_shape)?)
        } else {
            None
        };
        let dw = if need_w {
            Some(matmul_raw(&g2, true, &x2, false, MatmulKernel::Tiled)?)
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
