//! Shape and layout ops. Tensors are always contiguous: `reshape` is a view that shares
//! storage, everything else (`permute`, `transpose`, `narrow`, `broadcast_to`, `cat`,
//! `stack`, `index_select`, `gather`, `where`) writes a new contiguous tensor through
//! the strided-copy and scatter kernels of `shaders/layout.wgsl`.

use crate::autograd::record;
use crate::backend::cpu::pool::CollectPooled;
use crate::backend::cpu::{map_float, strided_offset, CpuData, StridedIter};
use crate::backend::gpu::params::{params, Dims, Params};
use crate::backend::gpu::{Kernel, ShaderFile, Work};
use crate::device::Device;
use crate::error::{arg_err, shape_err, Error, Result};
use crate::ops::{gpu_alloc, groups_1d, kernel, shader};
use crate::shape;
use crate::tensor::{check_float, check_index, check_pair, check_same_device, DType, Tensor};

pub(crate) const FILE: ShaderFile = shader("layout", include_str!("../../../shaders/layout.wgsl"))
    .with_params(&[
        &FillParams::INFO,
        &RegionParams::INFO,
        &IndexParams::INFO,
        &WhereParams::INFO,
    ]);

params! {
    /// A fill: `n` elements of `value` (f32) or `bits` (u32).
    pub(crate) struct FillParams as fp {
        /// Elements.
        n: u32,
        /// The f32 value.
        value: f32,
        /// The u32 value.
        bits: u32,
        /// Padding.
        _pad: u32,
    }

    /// A strided region of a buffer: a copy out of it or a scatter into it.
    pub(crate) struct RegionParams as rg {
        /// Elements.
        n: u32,
        /// The region's rank.
        rank: u32,
        /// Its first element's offset.
        base: u32,
        /// Padding.
        _pad: u32,
        /// Its shape.
        shape: Dims,
        /// Its strides in the buffer.
        strides: Dims @ (shape, rank),
    }

    /// `index_select` and `gather` (the indexed dimension viewed as `[outer, size,
    /// inner]`) and their chunked scatter-add backward.
    pub(crate) struct IndexParams as ix {
        /// Threads: the output's elements (forward), the input's (backward).
        n: u32,
        /// The indexed dimension's size in the input.
        size: u32,
        /// Its size in the output (the index's length).
        j: u32,
        /// Elements per position of the dimension.
        inner: u32,
        /// The positions j one backward launch covers: from `start`...
        start: u32,
        /// ... to `end`.
        end: u32,
        /// 1: the launch adds to the earlier chunks' sums.
        accumulate: u32,
        /// Padding.
        _pad: u32,
    }

    /// `where` with broadcasting: the condition (x0), a (x1) and b (x2).
    pub(crate) struct WhereParams as wp {
        /// Output elements.
        n: u32,
        /// The output's rank.
        rank: u32,
        /// Padding.
        _pad0: u32,
        /// Padding.
        _pad1: u32,
        /// The output's shape.
        shape: Dims,
        /// The condition's strides over it.
        sc: Dims @ (shape, rank),
        /// a's strides.
        sa: Dims @ (shape, rank),
        /// b's strides.
        sb: Dims @ (shape, rank),
    }
}

mod index;
const FILL: &Kernel = kernel!(FILE, "fill_fwd", [Y0], params = FillParams);
const FILL_U32: &Kernel = kernel!(FILE, "fill_u32_fwd", [YI], params = FillParams);
const STRIDED_COPY: &Kernel = kernel!(FILE, "strided_copy_fwd", [X0, Y0], params = RegionParams);
const STRIDED_SCATTER: &Kernel =
    kernel!(FILE, "strided_scatter_fwd", [X0, Y0], params = RegionParams);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    let mut k = vec![FILL, FILL_U32, STRIDED_COPY, STRIDED_SCATTER];
    k.extend(index::kernels());
    k
}

/// A new tensor of `shape` filled with `value`.
pub(crate) fn fill(shape: &[usize], dtype: DType, value: f64, device: &Device) -> Result<Tensor> {
    let n = crate::ops::check_out("full", shape, dtype, device)?;
    Ok(match device {
        Device::Cpu => {
            let data = match dtype {
                DType::F32 => CpuData::F32(crate::backend::cpu::pool::filled(n, value as f32)),
                DType::F64 => CpuData::F64(crate::backend::cpu::pool::filled(n, value)),
                DType::U32 => CpuData::U32(crate::backend::cpu::pool::filled(n, value as u32)),
            };
            Tensor::from_cpu(data, shape.to_vec())
        }
        Device::Gpu(g) => {
            let out = gpu_alloc(g, n)?;
            if crate::ops::split::over(device, n) && dtype != DType::F64 {
                // Past the binding limit: fill one piece and copy it along.
                let t = Tensor::from_gpu(out, shape.to_vec(), dtype);
                let piece_len = (g.binding_cap() / 4) as usize;
                let piece = fill(&[piece_len], dtype, value, device)?;
                for at in (0..n).step_by(piece_len) {
                    let len = piece_len.min(n - at);
                    g.copy_range(
                        piece.gpu_buf(),
                        0,
                        t.gpu_buf(),
                        at as u64 * 4,
                        len as u64 * 4,
                    );
                }
                return Ok(t);
            }
            match dtype {
                DType::F32 => {
                    let p = FillParams {
                        n: n as u32,
                        value: value as f32,
                        ..Default::default()
                    };
                    g.launch(FILL, &p, &[&out], groups_1d(n))
                }
                DType::U32 => {
                    let p = FillParams {
                        n: n as u32,
                        bits: value as u32,
                        ..Default::default()
                    };
                    g.launch(FILL_U32, &p, &[&out], groups_1d(n))
                }
                DType::F64 => {
                    return Err(Error::DType {
                        op: "full",
                        msg: "GPU tensors hold f32 or u32, not f64".into(),
                    })
                }
            }
            Tensor::from_gpu(out, shape.to_vec(), dtype)
        }
    })
}

/// Rebuilds CPU data of any dtype by reading the offsets `src` yields, in order.
fn cpu_gather(d: &CpuData, src: impl Iterator<Item = usize>) -> CpuData {
    match d {
        CpuData::F32(v) => CpuData::F32(src.map(|i| v[i]).collect_pooled()),
        CpuData::F64(v) => CpuData::F64(src.map(|i| v[i]).collect_pooled()),
        CpuData::U32(v) => CpuData::U32(src.map(|i| v[i]).collect_pooled()),
    }
}

/// Rebuilds CPU data of any dtype by reading `src(i)` for each output element.
fn cpu_remap(d: &CpuData, n: usize, src: impl Fn(usize) -> usize) -> CpuData {
    match d {
        CpuData::F32(v) => CpuData::F32((0..n).map(|i| v[src(i)]).collect_pooled()),
        CpuData::F64(v) => CpuData::F64((0..n).map(|i| v[src(i)]).collect_pooled()),
        CpuData::U32(v) => CpuData::U32((0..n).map(|i| v[src(i)]).collect_pooled()),
    }
}

fn gpu_float_only(op: &'static str, x: &Tensor) -> Result<()> {
    if x.device().is_gpu() && x.dtype() != DType::F32 {
        return Err(Error::DType {
            op,
            msg: format!(
                "on the GPU this op moves f32 tensors only, got {:?}",
                x.dtype()
            ),
        });
    }
    Ok(())
}

/// A contiguous tensor of `out_shape` read from `x` at `base + sum idx_d * strides_d`.
/// Splits a strided region into contiguous runs: the trailing dimensions whose strides
/// are those of a contiguous layout form one run of `run` elements, and the leading
/// `k` dimensions (shape and strides `[..k]`) walk the runs' starts.
fn contiguous_runs(shape_: &[usize], strides: &[usize]) -> (usize, usize) {
    let (mut run, mut k) = (1, shape_.len());
    while k > 0 && (strides[k - 1] == run || shape_[k - 1] == 1) {
        run *= shape_[k - 1];
        k -= 1;
    }
    (run, k)
}

/// Calls `f(region offset, flat offset, run)` for each contiguous run of a strided
/// region (see [`contiguous_runs`]).
fn for_each_run(shape_: &[usize], strides: &[usize], mut f: impl FnMut(usize, usize, usize)) {
    let (run, k) = contiguous_runs(shape_, strides);
    if run == 0 {
        return;
    }
    for (i, o) in StridedIter::new(&shape_[..k], &strides[..k]).enumerate() {
        f(o, i * run, run);
    }
}

/// The region of `src` at `base` with `shape_`/`strides`, as a contiguous vector.
fn gather_runs<T: crate::backend::cpu::pool::Pooled + Default>(
    src: &[T],
    shape_: &[usize],
    strides: &[usize],
    base: usize,
) -> Vec<T> {
    let mut out = crate::backend::cpu::pool::filled(shape::numel(shape_), T::default());
    for_each_run(shape_, strides, |o, i, run| {
        out[i..i + run].copy_from_slice(&src[base + o..base + o + run])
    });
    out
}

/// Positions j one launch of a chunked scatter-add covers: no thread loops longer.
const SCATTER_CHUNK: usize = 1024;

/// Launches a scatter-add backward (`index_select_bwd`, `gather_bwd`) over the `j`
/// positions in chunks of [`SCATTER_CHUNK`], each after the first adding to the sums.
/// `p` gives the geometry; the chunks are set here.
fn scatter_add_chunks(
    ctx: &std::sync::Arc<crate::backend::gpu::GpuContext>,
    kernel: &'static Kernel,
    mut p: IndexParams,
    bufs: &[&crate::backend::gpu::GpuBuffer; 3],
    n_in: usize,
    j: usize,
) {
    // One launch even for j = 0, so the result is written (as zeros).
    for (chunk, start) in (0..j.max(1)).step_by(SCATTER_CHUNK).enumerate() {
        let end = (start + SCATTER_CHUNK).min(j);
        p.start = start as u32;
        p.end = end as u32;
        p.accumulate = (chunk > 0) as u32;
        let work = Work {
            serial: (end - start).max(1) as u64,
            ..Work::default()
        };
        ctx.launch_with(kernel, &p, bufs, groups_1d(n_in), work);
    }
}

fn strided_copy(x: &Tensor, out_shape: &[usize], strides: &[usize], base: usize) -> Result<Tensor> {
    let n = shape::numel(out_shape);
    match x.device() {
        Device::Cpu => {
            let (run, _) = contiguous_runs(out_shape, strides);
            if run < 16 {
                let src = StridedIter::new(out_shape, strides).map(|o| base + o);
                let out = cpu_gather(&x.cpu_data(), src);
                return Ok(Tensor::from_cpu(out, out_shape.to_vec()));
            }
            // Long contiguous runs: slice copies.
            let out = match &*x.cpu_data() {
                CpuData::F32(v) => CpuData::F32(gather_runs(v, out_shape, strides, base)),
                CpuData::F64(v) => CpuData::F64(gather_runs(v, out_shape, strides, base)),
                CpuData::U32(v) => CpuData::U32(gather_runs(v, out_shape, strides, base)),
            };
            Ok(Tensor::from_cpu(out, out_shape.to_vec()))
        }
        Device::Gpu(g) => {
            let out = gpu_alloc(g, n)?;
            if let Some(runs) = copy_runs(x.device(), out_shape, strides, n, x.numel()) {
                // Whole runs move as buffer copies (no kernel, no binding limit).
                for (o, i, run) in runs {
                    g.copy_range(
                        x.gpu_buf(),
                        (base + o) as u64 * 4,
                        &out,
                        i as u64 * 4,
                        run as u64 * 4,
                    );
                }
                return Ok(Tensor::from_gpu(out, out_shape.to_vec(), x.dtype()));
            }
            g.launch(
                STRIDED_COPY,
                &region_params(out_shape, strides, base),
                &[x.gpu_buf(), &out],
                groups_1d(n),
            );
            Ok(Tensor::from_gpu(out, out_shape.to_vec(), x.dtype()))
        }
    }
}

/// The runs of a strided region of `n` elements as `(region offset, flat offset, run)`,
/// when buffer copies should move it instead of a kernel: one run (a contiguous
/// region), or at most 4,096 runs when the region or its tensor is too large for a
/// kernel to bind.
fn copy_runs(
    g: &crate::Device,
    shape_: &[usize],
    strides: &[usize],
    n: usize,
    whole: usize,
) -> Option<Vec<(usize, usize, usize)>> {
    let (run, _) = contiguous_runs(shape_, strides);
    // Too large for a kernel: the region, or the tensor it is cut from or put into
    // (`whole` elements), which the kernel would bind whole.
    let big = crate::ops::split::over(g, n) || crate::ops::split::over(g, whole);
    if n == 0 || (run != n && !(big && n / run.max(1) <= 4096)) {
        return None;
    }
    let mut runs = Vec::new();
    for_each_run(shape_, strides, |o, i, r| runs.push((o, i, r)));
    Some(runs)
}

fn region_params(shape_: &[usize], strides: &[usize], base: usize) -> RegionParams {
    RegionParams {
        n: shape::numel(shape_) as u32,
        rank: shape_.len() as u32,
        base: base as u32,
        shape: Dims::of(shape_),
        strides: Dims::of(strides),
        ..Default::default()
    }
}

/// Writes contiguous `src` into the region of `dst` at `base` with `strides` (in place).
fn strided_scatter(dst: &Tensor, src: &Tensor, strides: &[usize], base: usize) {
    match dst.device() {
        Device::Cpu => {
            let crate::backend::Storage::Cpu(s) = dst.storage() else {
                unreachable!()
            };
            let src_data = src.cpu_data();
            let mut d = s.write();
            let n = src.numel();
            if contiguous_runs(src.shape(), strides).0 >= 16 {
                macro_rules! put_runs {
                    ($o:expr, $v:expr) => {
                        for_each_run(src.shape(), strides, |o, i, run| {
                            $o[base + o..base + o + run].copy_from_slice(&$v[i..i + run])
                        })
                    };
                }
                match (&mut *d, &*src_data) {
                    (CpuData::F32(o), CpuData::F32(v)) => put_runs!(o, v),
                    (CpuData::F64(o), CpuData::F64(v)) => put_runs!(o, v),
                    (CpuData::U32(o), CpuData::U32(v)) => put_runs!(o, v),
                    _ => unreachable!("scatter dtypes checked"),
                }
                return;
            }
            let at = StridedIter::new(src.shape(), strides)
                .map(|o| base + o)
                .take(n);
            match (&mut *d, &*src_data) {
                (CpuData::F32(o), CpuData::F32(v)) => at.zip(v).for_each(|(k, &x)| o[k] = x),
                (CpuData::F64(o), CpuData::F64(v)) => at.zip(v).for_each(|(k, &x)| o[k] = x),
                (CpuData::U32(o), CpuData::U32(v)) => at.zip(v).for_each(|(k, &x)| o[k] = x),
                _ => unreachable!("scatter dtypes checked"),
            }
        }
        Device::Gpu(g) => {
            match copy_runs(dst.device(), src.shape(), strides, src.numel(), dst.numel()) {
                Some(runs) => {
                    for (o, i, run) in runs {
                        g.copy_range(
                            src.gpu_buf(),
                            i as u64 * 4,
                            dst.gpu_buf(),
                            (base + o) as u64 * 4,
                            run as u64 * 4,
                        );
                    }
                }
                None => g.launch(
                    STRIDED_SCATTER,
                    &region_params(src.shape(), strides, base),
                    &[src.gpu_buf(), dst.gpu_buf()],
                    groups_1d(src.numel()),
                ),
            }
        }
    }
}

/// Overwrites `dst` with `src` (same shape, dtype and device; checked by the caller).
pub(crate) fn copy_into(dst: &Tensor, src: &Tensor) -> Result<()> {
    gpu_float_only("copy_from", dst)?;
    if dst.storage().same_as(src.storage()) {
        return Ok(()); // a view of itself: already equal
    }
    strided_scatter(dst, src, &shape::contiguous_strides(src.shape()), 0);
    Ok(())
}

/// An uninitialised-on-GPU / zeroed-on-CPU tensor to scatter into.
fn empty_like_shape(x: &Tensor, shape_: &[usize]) -> Result<Tensor> {
    crate::ops::check_out("cat", shape_, x.dtype(), x.device())?;
    match x.device() {
        Device::Cpu => fill(shape_, x.dtype(), 0.0, x.device()),
        Device::Gpu(g) => Ok(Tensor::from_gpu(
            gpu_alloc(g, shape::numel(shape_))?,
            shape_.to_vec(),
            x.dtype(),
        )),
    }
}

impl Tensor {
    /// The same elements viewed with another shape (shares storage; no copy).
    pub fn reshape(&self, shape_: &[usize]) -> Result<Tensor> {
        if shape::check_new("reshape", shape_)? != self.numel() {
            return shape_err(
                "reshape",
                format!(
                    "cannot view {} ({} elements) as {} ({} elements)",
                    shape::fmt(self.shape()),
                    self.numel(),
                    shape::fmt(shape_),
                    shape::numel(shape_)
                ),
            );
        }
        shape::check_rank("reshape", shape_)?;
        if shape_ == self.shape() {
            return Ok(self.clone());
        }
        let view = Tensor::from_storage(
            self.storage().clone(),
            shape_.to_vec(),
            self.dtype(),
            self.device().clone(),
        );
        let from = self.shape().to_vec();
        Ok(record(view, "reshape", &[self], move |g| {
            Ok(vec![Some(g.reshape(&from)?)])
        }))
    }

    /// Merges dimensions `start..=end` into one.
    pub fn flatten(&self, start: isize, end: isize) -> Result<Tensor> {
        if self.rank() == 0 {
            return self.reshape(&[1]);
        }
        let s = shape::normalize_dim("flatten", start, self.rank())?;
        let e = shape::normalize_dim("flatten", end, self.rank())?;
        if s > e {
            return arg_err("flatten", format!("start {start} is after end {end}"));
        }
        let mut new: Vec<usize> = self.shape()[..s].to_vec();
        new.push(self.shape()[s..=e].iter().product());
        new.extend_from_slice(&self.shape()[e + 1..]);
        self.reshape(&new)
    }

    /// Inserts a dimension of size 1 at `dim`.
    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        let d = shape::normalize_dim("unsqueeze", dim, self.rank() + 1)?;
        let mut new = self.shape().to_vec();
        new.insert(d, 1);
        self.reshape(&new)
    }

    /// Removes dimension `dim`, which must have size 1.
    pub fn squeeze(&self, dim: isize) -> Result<Tensor> {
        let d = shape::normalize_dim("squeeze", dim, self.rank())?;
        if self.shape()[d] != 1 {
            return shape_err(
                "squeeze",
                format!("dimension {d} of {:?} is not 1", self.shape()),
            );
        }
        let mut new = self.shape().to_vec();
        new.remove(d);
        self.reshape(&new)
    }

    /// Reorders dimensions: output dim `i` is input dim `dims[i]` (a contiguous copy).
    pub fn permute(&self, dims: &[usize]) -> Result<Tensor> {
        let r = self.rank();
        let mut seen = vec![false; r];
        if dims.len() != r
            || dims
                .iter()
                .any(|&d| d >= r || std::mem::replace(&mut seen[d], true))
        {
            return arg_err(
                "permute",
                format!(
                    "{dims:?} is not a permutation of the {r} dimensions of {:?}",
                    self.shape()
                ),
            );
        }
        gpu_float_only("permute", self)?;
        if dims.iter().enumerate().all(|(i, &d)| i == d) {
            return Ok(self.clone());
        }
        let own = shape::contiguous_strides(self.shape());
        let out_shape: Vec<usize> = dims.iter().map(|&d| self.shape()[d]).collect();
        let strides: Vec<usize> = dims.iter().map(|&d| own[d]).collect();
        let y = strided_copy(self, &out_shape, &strides, 0)?;
        let mut inverse = vec![0; r];
        for (i, &d) in dims.iter().enumerate() {
            inverse[d] = i;
        }
        Ok(record(y, "permute", &[self], move |g| {
            Ok(vec![Some(g.permute(&inverse)?)])
        }))
    }

    /// Swaps two dimensions.
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Tensor> {
        let a = shape::normalize_dim("transpose", d0, self.rank())?;
        let b = shape::normalize_dim("transpose", d1, self.rank())?;
        let mut dims: Vec<usize> = (0..self.rank()).collect();
        dims.swap(a, b);
        self.permute(&dims)
    }

    /// The transpose of a matrix.
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() != 2 {
            return shape_err(
                "t",
                format!("needs a matrix, got {}", shape::fmt(self.shape())),
            );
        }
        self.transpose(0, 1)
    }

    /// Tensors are always stored contiguously, so this is the identity; kept for PyTorch
    /// familiarity.
    pub fn contiguous(&self) -> Tensor {
        self.clone()
    }

    /// Elements `start..start + len` along `dim` (a copy).
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        let d = shape::normalize_dim("narrow", dim, self.rank())?;
        if start
            .checked_add(len)
            .is_none_or(|end| end > self.shape()[d])
        {
            return shape_err(
                "narrow",
                format!(
                    "start {start} and length {len} reach outside dimension {d} (size {}) of {}",
                    self.shape()[d],
                    shape::fmt(self.shape())
                ),
            );
        }
        gpu_float_only("narrow", self)?;
        let strides = shape::contiguous_strides(self.shape());
        let mut out_shape = self.shape().to_vec();
        out_shape[d] = len;
        let base = start * strides[d];
        let y = strided_copy(self, &out_shape, &strides, base)?;
        let full = self.shape().to_vec();
        let xs = self.detach();
        Ok(record(y, "narrow", &[self], move |g| {
            let dx = fill(&full, g.dtype(), 0.0, g.device())?;
            strided_scatter(&dx, g, &strides, base);
            drop(xs);
            Ok(vec![Some(dx)])
        }))
    }

    /// Repeats size-1 (and missing leading) dimensions to reach `shape` (a copy).
    pub fn broadcast_to(&self, shape_: &[usize]) -> Result<Tensor> {
        let out = shape::broadcast("broadcast_to", self.shape(), shape_)?;
        if out != shape_ {
            return shape_err(
                "broadcast_to",
                format!(
                    "{} cannot be broadcast to {}",
                    shape::fmt(self.shape()),
                    shape::fmt(shape_)
                ),
            );
        }
        gpu_float_only("broadcast_to", self)?;
        crate::ops::check_out("broadcast_to", shape_, self.dtype(), self.device())?;
        if shape_ == self.shape() {
            return Ok(self.clone());
        }
        let strides = shape::broadcast_strides(self.shape(), shape_);
        let y = strided_copy(self, shape_, &strides, 0)?;
        let from = self.shape().to_vec();
        Ok(record(y, "broadcast_to", &[self], move |g| {
            Ok(vec![Some(g.sum_to_shape(&from)?)])
        }))
    }

    /// Concatenates along `dim`; all other dimensions must agree.
    pub fn cat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let Some(first) = tensors.first() else {
            return arg_err("cat", "needs at least one tensor");
        };
        let d = shape::normalize_dim("cat", dim, first.rank())?;
        let mut total = 0;
        for t in tensors {
            check_same_device("cat", first, t)?;
            if t.dtype() != first.dtype() {
                return Err(Error::DType {
                    op: "cat",
                    msg: format!("dtypes differ: {:?} and {:?}", first.dtype(), t.dtype()),
                });
            }
            gpu_float_only("cat", t)?;
            let same = t.rank() == first.rank()
                && (0..t.rank()).all(|k| k == d || t.shape()[k] == first.shape()[k]);
            if !same {
                return shape_err(
                    "cat",
                    format!(
                        "{} and {} differ outside dimension {d}",
                        shape::fmt(first.shape()),
                        shape::fmt(t.shape())
                    ),
                );
            }
            total += t.shape()[d];
        }
        let mut out_shape = first.shape().to_vec();
        out_shape[d] = total;
        let out = empty_like_shape(first, &out_shape)?;
        let strides = shape::contiguous_strides(&out_shape);
        let mut starts = Vec::with_capacity(tensors.len());
        let mut at = 0;
        for t in tensors {
            strided_scatter(&out, t, &strides, at * strides[d]);
            starts.push((at, t.shape()[d]));
            at += t.shape()[d];
        }
        let inputs: Vec<&Tensor> = tensors.to_vec();
        Ok(record(out, "cat", &inputs, move |g| {
            starts
                .iter()
                .map(|&(s, len)| Ok(Some(g.narrow(d as isize, s, len)?)))
                .collect()
        }))
    }

    /// Stacks equal-shaped tensors along a new dimension `dim`.
    pub fn stack(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let Some(first) = tensors.first() else {
            return arg_err("stack", "needs at least one tensor");
        };
        for t in tensors {
            if t.shape() != first.shape() {
                return shape_err(
                    "stack",
                    format!(
                        "shapes differ: {} and {}",
                        shape::fmt(first.shape()),
                        shape::fmt(t.shape())
                    ),
                );
            }
        }
        let d = shape::normalize_dim("stack", dim, first.rank() + 1)? as isize;
        let parts: Vec<Tensor> = tensors
            .iter()
            .map(|t| t.unsqueeze(d))
            .collect::<Result<_>>()?;
        let refs: Vec<&Tensor> = parts.iter().collect();
        Tensor::cat(&refs, d)
    }
}

/// Views a shape as `[outer, shape[d], inner]` around dimension `d`.
pub(crate) fn split3(shape_: &[usize], d: usize) -> (usize, usize, usize) {
    (
        shape_[..d].iter().product(),
        shape_[d],
        shape_[d + 1..].iter().product(),
    )
}

/// The values of a CPU `u32` tensor.
pub(crate) fn u32_data(t: &Tensor) -> Vec<u32> {
    match &*t.cpu_data() {
        CpuData::U32(v) => v.clone(),
        _ => unreachable!("index dtype checked"),
    }
}
