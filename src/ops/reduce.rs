//! Reductions over chosen dimensions (`sum`, `mean`, `max`, with `keepdim`) and their
//! backward: `sum`/`mean` spread the output gradient back over the reduced positions;
//! `max` saves the argmax indices and routes the gradient through them.

use crate::autograd::record;
use crate::backend::cpu::pool::{self, CollectPooled};
use crate::backend::cpu::{map_float, strided_offset, CpuData, Float, StridedIter};
use crate::backend::gpu::{Kernel, ShaderFile};
use crate::device::Device;
use crate::error::Result;
use crate::ops::{gpu_alloc, groups_1d, groups_rows, kernel, put, shader};
use crate::shape::{self, MAX_RANK};
use crate::tensor::{check_float, DType, Tensor};

pub(crate) const FILE: ShaderFile = shader("reduce", include_str!("../../shaders/reduce.wgsl"));
const SUM_FWD: &Kernel = kernel!(FILE, "sum_fwd", [X0, Y0]);
const MAX_FWD: &Kernel = kernel!(FILE, "max_fwd", [X0, Y0, YI]);
const SUM_BWD: &Kernel = kernel!(FILE, "sum_bwd", [X0, Y0]);
const MAX_BWD: &Kernel = kernel!(FILE, "max_bwd", [X0, XI, Y0]);

/// The geometry of one reduction.
#[derive(Clone)]
struct Plan {
    input: Vec<usize>,
    reduced: Vec<bool>,
    keep_shape: Vec<usize>,
    out_shape: Vec<usize>,
    kept_sizes: Vec<usize>,
    kept_strides: Vec<usize>,
    red_sizes: Vec<usize>,
    red_strides: Vec<usize>,
}

impl Plan {
    fn new(op: &'static str, input: &[usize], dims: &[isize], keepdim: bool) -> Result<Plan> {
        let dims = shape::normalize_dims(op, dims, input.len())?;
        let strides = shape::contiguous_strides(input);
        let reduced: Vec<bool> = (0..input.len()).map(|d| dims.contains(&d)).collect();
        let mut p = Plan {
            input: input.to_vec(),
            reduced: reduced.clone(),
            keep_shape: Vec::new(),
            out_shape: Vec::new(),
            kept_sizes: Vec::new(),
            kept_strides: Vec::new(),
            red_sizes: Vec::new(),
            red_strides: Vec::new(),
        };
        for d in 0..input.len() {
            if reduced[d] {
                p.keep_shape.push(1);
                p.red_sizes.push(input[d]);
                p.red_strides.push(strides[d]);
                if keepdim {
                    p.out_shape.push(1);
                }
            } else {
                p.keep_shape.push(input[d]);
                p.kept_sizes.push(input[d]);
                p.kept_strides.push(strides[d]);
                p.out_shape.push(input[d]);
            }
        }
        Ok(p)
    }

    fn outputs(&self) -> usize {
        shape::numel(&self.kept_sizes)
    }

    fn m(&self) -> usize {
        shape::numel(&self.red_sizes)
    }

    fn fwd_params(&self, scale: f32) -> [u32; 29] {
        let mut p = [0u32; 29];
        p[0] = self.outputs() as u32;
        p[1] = self.m() as u32;
        p[2] = self.kept_sizes.len() as u32;
        p[3] = self.red_sizes.len() as u32;
        put(&mut p, 4, &self.kept_sizes, MAX_RANK);
        put(&mut p, 10, &self.kept_strides, MAX_RANK);
        put(&mut p, 16, &self.red_sizes, MAX_RANK);
        put(&mut p, 22, &self.red_strides, MAX_RANK);
        p[28] = scale.to_bits();
        p
    }

    /// For each input dim: its stride in the output (0 if reduced) and in the
    /// reduced-position space (0 if kept).
    fn bwd_strides(&self) -> (Vec<usize>, Vec<usize>) {
        let out_strides = shape::contiguous_strides(&self.keep_shape);
        let red_space = shape::contiguous_strides(&self.red_sizes);
        let (mut so, mut sr) = (Vec::new(), Vec::new());
        let mut r = 0;
        for (&reduced, &out_stride) in self.reduced.iter().zip(&out_strides) {
            if reduced {
                so.push(0);
                sr.push(red_space[r]);
                r += 1;
            } else {
                so.push(out_stride);
                sr.push(0);
            }
        }
        (so, sr)
    }

    fn bwd_params(&self, scale: f32) -> [u32; 21] {
        let (so, sr) = self.bwd_strides();
        let mut p = [0u32; 21];
        p[0] = shape::numel(&self.input) as u32;
        p[1] = self.input.len() as u32;
        put(&mut p, 2, &self.input, MAX_RANK);
        put(&mut p, 8, &so, MAX_RANK);
        put(&mut p, 14, &sr, MAX_RANK);
        p[20] = scale.to_bits();
        p
    }

    fn base(&self, o: usize) -> usize {
        strided_offset(o, &self.kept_sizes, &self.kept_strides)
    }

    fn offset(&self, j: usize) -> usize {
        strided_offset(j, &self.red_sizes, &self.red_strides)
    }
}

fn sum_cpu<T: Float>(plan: &Plan, x: &[T], scale: f64) -> Vec<T> {
    // Reducing leading dimensions only (a bias gradient: [rows, features] -> [features]):
    // add whole rows in memory order instead of striding down each column.
    let lead = plan.reduced.iter().take_while(|&&r| r).count();
    if lead > 0 && plan.reduced[lead..].iter().all(|&r| !r) {
        let inner: usize = plan.input[lead..].iter().product();
        let mut out = pool::filled(inner, T::zero());
        if inner > 0 {
            for row in x.chunks_exact(inner) {
                for (o, &v) in out.iter_mut().zip(row) {
                    *o += v;
                }
            }
        }
        if scale != 1.0 {
            let s = T::from_f64(scale);
            out.iter_mut().for_each(|o| *o = *o * s);
        }
        return out;
    }
    let offsets: Vec<usize> = StridedIter::new(&plan.red_sizes, &plan.red_strides).collect();
    StridedIter::new(&plan.kept_sizes, &plan.kept_strides)
        .map(|base| {
            let mut acc = T::zero();
            for &j in &offsets {
                acc += x[base + j];
            }
            acc * T::from_f64(scale)
        })
        .collect_pooled()
}

fn max_cpu<T: Float>(plan: &Plan, x: &[T]) -> (Vec<T>, Vec<u32>) {
    (0..plan.outputs())
        .map(|o| {
            let base = plan.base(o);
            let mut best = (x[base + plan.offset(0)], 0u32);
            for j in 1..plan.m() {
                let v = x[base + plan.offset(j)];
                if v > best.0 {
                    best = (v, j as u32);
                }
            }
            best
        })
        .unzip()
}

/// Spreads `g` (output shape) back over the input: `scale * g[output of i]`.
fn spread(plan: &Plan, g: &Tensor, scale: f64) -> Tensor {
    let n = shape::numel(&plan.input);
    match g.device() {
        Device::Cpu => {
            let (so, _) = plan.bwd_strides();
            let out = map_float!(&*g.cpu_data(), |gv: T| StridedIter::new(&plan.input, &so)
                .map(|o| gv[o] * T::from_f64(scale))
                .collect_pooled());
            Tensor::from_cpu(out, plan.input.clone())
        }
        Device::Gpu(ctx) => {
            let out = gpu_alloc(ctx, n);
            ctx.launch(
                SUM_BWD,
                &plan.bwd_params(scale as f32),
                &[g.gpu_buf(), &out],
                groups_1d(n),
            );
            Tensor::from_gpu(out, plan.input.clone(), g.dtype())
        }
    }
}

fn sum_like(x: &Tensor, dims: &[isize], keepdim: bool, mean: bool) -> Result<Tensor> {
    let op = if mean { "mean" } else { "sum" };
    check_float(op, x)?;
    let plan = Plan::new(op, x.shape(), dims, keepdim)?;
    let scale = if mean {
        1.0 / plan.m().max(1) as f64
    } else {
        1.0
    };
    if plan.red_sizes.is_empty() {
        return x.reshape(&plan.out_shape);
    }
    let y = match x.device() {
        Device::Cpu => {
            let out = map_float!(&*x.cpu_data(), |v: T| sum_cpu(&plan, v, scale));
            Tensor::from_cpu(out, plan.out_shape.clone())
        }
        Device::Gpu(g) => {
            let out = gpu_alloc(g, plan.outputs());
            g.launch(
                SUM_FWD,
                &plan.fwd_params(scale as f32),
                &[x.gpu_buf(), &out],
                groups_rows(plan.outputs()),
            );
            Tensor::from_gpu(out, plan.out_shape.clone(), x.dtype())
        }
    };
    Ok(record(y, op, &[x], move |g| {
        Ok(vec![Some(spread(&plan, g, scale))])
    }))
}

/// Maximum over `dims` and the flat position of the maximum within the reduced
/// dimensions (row-major over them; the first on ties).
pub fn max_with_indices(x: &Tensor, dims: &[isize], keepdim: bool) -> Result<(Tensor, Tensor)> {
    check_float("max", x)?;
    let plan = Plan::new("max", x.shape(), dims, keepdim)?;
    if plan.m() == 0 {
        return crate::error::arg_err("max", "cannot take the maximum of an empty dimension");
    }
    let (y, idx) = match x.device() {
        Device::Cpu => {
            let (vals, idx) = match &*x.cpu_data() {
                CpuData::F32(v) => {
                    let (a, b) = max_cpu(&plan, v);
                    (CpuData::F32(a), b)
                }
                CpuData::F64(v) => {
                    let (a, b) = max_cpu(&plan, v);
                    (CpuData::F64(a), b)
                }
                CpuData::U32(_) => unreachable!("max dtype checked"),
            };
            (
                Tensor::from_cpu(vals, plan.out_shape.clone()),
                Tensor::from_cpu(CpuData::U32(idx), plan.out_shape.clone()),
            )
        }
        Device::Gpu(g) => {
            let (out, idx) = (gpu_alloc(g, plan.outputs()), gpu_alloc(g, plan.outputs()));
            g.launch(
                MAX_FWD,
                &plan.fwd_params(1.0),
                &[x.gpu_buf(), &out, &idx],
                groups_rows(plan.outputs()),
            );
            (
                Tensor::from_gpu(out, plan.out_shape.clone(), x.dtype()),
                Tensor::from_gpu(idx, plan.out_shape.clone(), DType::U32),
            )
        }
    };
    let saved = idx.clone();
    let y = record(y, "max", &[x], move |g| {
        let n = shape::numel(&plan.input);
        let dx = match g.device() {
            Device::Cpu => {
                let (so, sr) = plan.bwd_strides();
                let idx = saved.cpu_data();
                let CpuData::U32(idx) = &*idx else {
                    unreachable!("argmax is u32")
                };
                let out = map_float!(&*g.cpu_data(), |gv: T| (0..n)
                    .map(|i| {
                        let o = strided_offset(i, &plan.input, &so);
                        if idx[o] as usize == strided_offset(i, &plan.input, &sr) {
                            gv[o]
                        } else {
                            T::zero()
                        }
                    })
                    .collect_pooled());
                Tensor::from_cpu(out, plan.input.clone())
            }
            Device::Gpu(ctx) => {
                let out = gpu_alloc(ctx, n);
                ctx.launch(
                    MAX_BWD,
                    &plan.bwd_params(1.0),
                    &[g.gpu_buf(), saved.gpu_buf(), &out],
                    groups_1d(n),
                );
                Tensor::from_gpu(out, plan.input.clone(), g.dtype())
            }
        };
        Ok(vec![Some(dx)])
    });
    Ok((y, idx))
}

impl Tensor {
    /// Sum of all elements (a 0-dimensional tensor).
    pub fn sum(&self) -> Result<Tensor> {
        let all: Vec<isize> = (0..self.rank() as isize).collect();
        sum_like(self, &all, false, false)
    }
    /// Sum over `dims` (negative dims count from the end).
    pub fn sum_dim(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        sum_like(self, dims, keepdim, false)
    }
    /// Mean of all elements.
    pub fn mean(&self) -> Result<Tensor> {
        let all: Vec<isize> = (0..self.rank() as isize).collect();
        sum_like(self, &all, false, true)
    }
    /// Mean over `dims`.
    pub fn mean_dim(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        sum_like(self, dims, keepdim, true)
    }
    /// Maximum of all elements.
    pub fn max(&self) -> Result<Tensor> {
        let all: Vec<isize> = (0..self.rank() as isize).collect();
        Ok(max_with_indices(self, &all, false)?.0)
    }
    /// Maximum over `dims`; the gradient flows to the (first) maximal element.
    pub fn max_dim(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        Ok(max_with_indices(self, dims, keepdim)?.0)
    }
    /// Maximum over one dimension and its position along it (`u32`), like `torch.max(x, dim)`.
    pub fn max_dim_with_indices(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        max_with_indices(self, &[dim], keepdim)
    }
    /// Position of the maximum along `dim` (`u32`).
    pub fn argmax(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        Ok(crate::autograd::no_grad(|| max_with_indices(self, &[dim], keepdim))?.1)
    }
}
