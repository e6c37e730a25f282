//! The indexing ops: `index_select`, `gather` and `where`, whose backward scatters (adds)
//! the output gradient back through the same indices.

use super::*;

const INDEX_SELECT_FWD: &Kernel = kernel!(
    FILE,
    "index_select_fwd",
    [X0, XI, Y0, YI],
    params = IndexParams
);
const INDEX_SELECT_BWD: &Kernel = kernel!(
    FILE,
    "index_select_bwd",
    [X0, XI, Y0],
    loops,
    params = IndexParams
);
const GATHER_FWD: &Kernel = kernel!(FILE, "gather_fwd", [X0, XI, Y0, YI], params = IndexParams);
const GATHER_BWD: &Kernel = kernel!(
    FILE,
    "gather_bwd",
    [X0, XI, Y0],
    loops,
    params = IndexParams
);
const WHERE_FWD: &Kernel = kernel!(FILE, "where_fwd", [X0, X1, X2, Y0], params = WhereParams);
const WHERE_BWD: &Kernel = kernel!(FILE, "where_bwd", [X0, X2, Y0, Y1], params = WhereParams);

/// The indexing kernels.
pub(super) fn kernels() -> Vec<&'static Kernel> {
    vec![
        INDEX_SELECT_FWD,
        INDEX_SELECT_BWD,
        GATHER_FWD,
        GATHER_BWD,
        WHERE_FWD,
        WHERE_BWD,
    ]
}

/// The index kernels' geometry (no backward chunk set).
fn index_params(n: usize, size: usize, j: usize, inner: usize) -> IndexParams {
    IndexParams {
        n: n as u32,
        size: size as u32,
        j: j as u32,
        inner: inner as u32,
        ..Default::default()
    }
}

impl Tensor {
    /// Rows (or slices along `dim`) picked by a `u32` index vector, like `torch.index_select`.
    pub fn index_select(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        check_float("index_select", self)?;
        check_index("index_select", index)?;
        check_same_device("index_select", self, index)?;
        if index.rank() != 1 {
            return shape_err(
                "index_select",
                format!("the index must be 1-D, got {:?}", index.shape()),
            );
        }
        let d = shape::normalize_dim("index_select", dim, self.rank())?;
        let (outer, size, inner) = split3(self.shape(), d);
        let j = index.numel();
        let mut out_shape = self.shape().to_vec();
        out_shape[d] = j;
        let n = shape::numel(&out_shape);
        let params = index_params(n, size, j, inner);
        let y = match self.device() {
            Device::Cpu => {
                let idx = u32_data(index);
                if let Some(&bad) = idx.iter().find(|&&k| k as usize >= size) {
                    return arg_err(
                        "index_select",
                        format!("index {bad} is out of range for size {size}"),
                    );
                }
                let out = cpu_remap(&self.cpu_data(), n, |i| {
                    let r = i % inner;
                    let jj = (i / inner) % j;
                    let o = i / (inner * j);
                    (o * size + idx[jj] as usize) * inner + r
                });
                Tensor::from_cpu(out, out_shape)
            }
            Device::Gpu(g) => {
                let out = gpu_alloc(g, n)?;
                let flag = g.error_flag()?;
                g.launch(
                    INDEX_SELECT_FWD,
                    &params,
                    &[self.gpu_buf(), index.gpu_buf(), &out, &flag],
                    groups_1d(n),
                );
                Tensor::from_gpu(out, out_shape, self.dtype())
            }
        };
        let (idx, full) = (index.clone(), self.shape().to_vec());
        let _ = outer;
        Ok(record(y, "index_select", &[self], move |g| {
            let n_in = shape::numel(&full);
            let p = index_params(n_in, size, j, inner);
            Ok(vec![Some(match g.device() {
                Device::Cpu => {
                    let iv = u32_data(&idx);
                    let out = map_float!(&*g.cpu_data(), |gv: T| {
                        let mut dx = crate::backend::cpu::pool::filled(
                            n_in,
                            <T as crate::backend::cpu::Float>::zero(),
                        );
                        for (i, &gi) in gv.iter().enumerate() {
                            let r = i % inner;
                            let jj = (i / inner) % j;
                            let o = i / (inner * j);
                            dx[(o * size + iv[jj] as usize) * inner + r] += gi;
                        }
                        dx
                    });
                    Tensor::from_cpu(out, full.clone())
                }
                Device::Gpu(ctx) => {
                    let out = gpu_alloc(ctx, n_in)?;
                    let bufs = [g.gpu_buf(), idx.gpu_buf(), &out];
                    scatter_add_chunks(ctx, INDEX_SELECT_BWD, p, &bufs, n_in, j);
                    Tensor::from_gpu(out, full.clone(), g.dtype())
                }
            })])
        }))
    }

    /// `torch.gather`: `out[.., j, ..] = self[.., index[.., j, ..], ..]` along `dim`. The
    /// index has the input's shape except along `dim`.
    pub fn gather(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        check_float("gather", self)?;
        check_index("gather", index)?;
        check_same_device("gather", self, index)?;
        let d = shape::normalize_dim("gather", dim, self.rank())?;
        let fits = index.rank() == self.rank()
            && (0..self.rank()).all(|k| k == d || index.shape()[k] == self.shape()[k]);
        if !fits {
            return shape_err(
                "gather",
                format!(
                    "the index {} must match the input {} except along dimension {d}",
                    shape::fmt(index.shape()),
                    shape::fmt(self.shape())
                ),
            );
        }
        let (_, size, inner) = split3(self.shape(), d);
        let j = index.shape()[d];
        let out_shape = index.shape().to_vec();
        let n = shape::numel(&out_shape);
        let y = match self.device() {
            Device::Cpu => {
                let idx = u32_data(index);
                if let Some(&bad) = idx.iter().find(|&&k| k as usize >= size) {
                    return arg_err(
                        "gather",
                        format!("index {bad} is out of range for size {size}"),
                    );
                }
                let out = cpu_remap(&self.cpu_data(), n, |i| {
                    let r = i % inner;
                    let o = i / (inner * j);
                    (o * size + idx[i] as usize) * inner + r
                });
                Tensor::from_cpu(out, out_shape)
            }
            Device::Gpu(g) => {
                let out = gpu_alloc(g, n)?;
                let flag = g.error_flag()?;
                g.launch(
                    GATHER_FWD,
                    &index_params(n, size, j, inner),
                    &[self.gpu_buf(), index.gpu_buf(), &out, &flag],
                    groups_1d(n),
                );
                Tensor::from_gpu(out, out_shape, self.dtype())
            }
        };
        let (idx, full) = (index.clone(), self.shape().to_vec());
        Ok(record(y, "gather", &[self], move |g| {
            let n_in = shape::numel(&full);
            Ok(vec![Some(match g.device() {
                Device::Cpu => {
                    let iv = u32_data(&idx);
                    let out = map_float!(&*g.cpu_data(), |gv: T| {
                        let mut dx = crate::backend::cpu::pool::filled(
                            n_in,
                            <T as crate::backend::cpu::Float>::zero(),
                        );
                        for (i, &gi) in gv.iter().enumerate() {
                            let r = i % inner;
                            let o = i / (inner * j);
                            dx[(o * size + iv[i] as usize) * inner + r] += gi;
                        }
                        dx
                    });
                    Tensor::from_cpu(out, full.clone())
                }
                Device::Gpu(ctx) => {
                    let out = gpu_alloc(ctx, n_in)?;
                    let p = index_params(n_in, size, j, inner);
                    let bufs = [g.gpu_buf(), idx.gpu_buf(), &out];
                    scatter_add_chunks(ctx, GATHER_BWD, p, &bufs, n_in, j);
                    Tensor::from_gpu(out, full.clone(), g.dtype())
                }
            })])
        }))
    }

    /// `torch.where(cond, a, b)` with broadcasting: `a` where `cond != 0`, else `b`.
    pub fn where_cond(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        check_pair("where", a, b)?;
        check_pair("where", cond, a)?;
        let ab = shape::broadcast("where", a.shape(), b.shape())?;
        let out = shape::broadcast("where", cond.shape(), &ab)?;
        crate::ops::check_out("where", &out, a.dtype(), a.device())?;
        let (sc, sa, sb) = (
            shape::broadcast_strides(cond.shape(), &out),
            shape::broadcast_strides(a.shape(), &out),
            shape::broadcast_strides(b.shape(), &out),
        );
        let n = shape::numel(&out);
        let p = WhereParams {
            n: n as u32,
            rank: out.len() as u32,
            shape: Dims::of(&out),
            sc: Dims::of(&sc),
            sa: Dims::of(&sa),
            sb: Dims::of(&sb),
            ..Default::default()
        };
        let y = match a.device() {
            Device::Cpu => {
                let (cd, ad, bd) = (cond.cpu_data(), a.cpu_data(), b.cpu_data());
                let c = cd.to_f64_vec();
                let pick = |i: usize| c[strided_offset(i, &out, &sc)] != 0.0;
                let data = match (&*ad, &*bd) {
                    (CpuData::F32(x), CpuData::F32(z)) => CpuData::F32(
                        (0..n)
                            .map(|i| {
                                if pick(i) {
                                    x[strided_offset(i, &out, &sa)]
                                } else {
                                    z[strided_offset(i, &out, &sb)]
                                }
                            })
                            .collect(),
                    ),
                    (CpuData::F64(x), CpuData::F64(z)) => CpuData::F64(
                        (0..n)
                            .map(|i| {
                                if pick(i) {
                                    x[strided_offset(i, &out, &sa)]
                                } else {
                                    z[strided_offset(i, &out, &sb)]
                                }
                            })
                            .collect(),
                    ),
                    _ => unreachable!("where dtypes checked"),
                };
                Tensor::from_cpu(data, out.clone())
            }
            Device::Gpu(g) => {
                let buf = gpu_alloc(g, n)?;
                g.launch(
                    WHERE_FWD,
                    &p,
                    &[cond.gpu_buf(), a.gpu_buf(), b.gpu_buf(), &buf],
                    groups_1d(n),
                );
                Tensor::from_gpu(buf, out.clone(), a.dtype())
            }
        };
        let (cs, a_shape, b_shape) = (cond.detach(), a.shape().to_vec(), b.shape().to_vec());
        Ok(record(y, "where", &[a, b], move |g| {
            let (da, db) = match g.device() {
                Device::Cpu => {
                    let c = cs.cpu_data().to_f64_vec();
                    let keep: Vec<f64> = (0..n)
                        .map(|i| (c[strided_offset(i, &out, &sc)] != 0.0) as u8 as f64)
                        .collect();
                    let gd = g.cpu_data();
                    let da = map_float!(&*gd, |gv: T| (0..n)
                        .map(|i| gv[i] * <T as crate::backend::cpu::Float>::from_f64(keep[i]))
                        .collect());
                    let db = map_float!(&*gd, |gv: T| (0..n)
                        .map(|i| gv[i] * <T as crate::backend::cpu::Float>::from_f64(1.0 - keep[i]))
                        .collect());
                    (
                        Tensor::from_cpu(da, out.clone()),
                        Tensor::from_cpu(db, out.clone()),
                    )
                }
                Device::Gpu(ctx) => {
                    let (da, db) = (gpu_alloc(ctx, n)?, gpu_alloc(ctx, n)?);
                    ctx.launch(
                        WHERE_BWD,
                        &p,
                        &[cs.gpu_buf(), g.gpu_buf(), &da, &db],
                        groups_1d(n),
                    );
                    (
                        Tensor::from_gpu(da, out.clone(), g.dtype()),
                        Tensor::from_gpu(db, out.clone(), g.dtype()),
                    )
                }
            };
            Ok(vec![
                Some(da.sum_to_shape(&a_shape)?),
                Some(db.sum_to_shape(&b_shape)?),
            ])
        }))
    }
}
