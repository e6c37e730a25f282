//! The GPU backend's elementwise primitives: the elementwise table's unary and binary
//! kernels (generated from its rows into `shaders/unary.wgsl` and
//! `shaders/binary.wgsl`), the parametric ReLU's and the comparison's, and their
//! launches.

use std::sync::{Arc, OnceLock};

use super::half_io::inputs;
use super::kernels::{gpu_alloc, groups_1d, kernel, shader_with};
use super::params::{params, Dims, Params};
use super::{slot, GpuContext, Kernel, ShaderFile};
use crate::backend::broadcast::Broadcast;
use crate::backend::elementwise::binary::{BinaryOp, CompareOp};
use crate::backend::elementwise::UnaryOp;
use crate::backend::{Elementwise, PreluGeo, Storage};
use crate::error::Result;
use crate::shape;
use crate::tensor::DType;

pub(crate) const UNARY_FILE: ShaderFile = shader_with(
    "unary",
    include_str!("../../../shaders/unary.wgsl"),
    crate::backend::gpu::Generated::Fixed(crate::backend::elementwise::wgsl_with_kernels),
)
.with_params(&[&UnaryParams::INFO, &PreluParams::INFO]);

params! {
    /// The parameters of the elementwise table's unary kernels.
    pub(crate) struct UnaryParams as up {
        /// Elements.
        n: u32,
        /// The row's scalars.
        a: f32,
        /// See `a`.
        b: f32,
    }

    /// The parameters of the parametric ReLU's kernels.
    pub(crate) struct PreluParams as pp {
        /// Elements.
        n: u32,
        /// Channels (the input's dimension 1, or 1).
        channels: u32,
        /// Elements per channel plane.
        plane: u32,
        /// Slopes: 1 or `channels`.
        slopes: u32,
    }
}

/// The unary rows' kernels and parameters.
trait UnaryKernels {
    fn kernels(self) -> (&'static Kernel, &'static Kernel);
    fn params(self, n: usize) -> UnaryParams;
}

impl UnaryKernels for UnaryOp {
    fn kernels(self) -> (&'static Kernel, &'static Kernel) {
        static KERNELS: OnceLock<Vec<(Kernel, Kernel)>> = OnceLock::new();
        let all = KERNELS.get_or_init(|| {
            let make = |entry: String, slots: &'static [u32]| Kernel {
                file: &UNARY_FILE,
                entry: Box::leak(entry.into_boxed_str()),
                slots,
                extra: &[],
                overrides: &[],
                loops: false,
                params: UnaryParams::INFO.name,
            };
            UnaryOp::ROWS
                .iter()
                .map(|op| {
                    (
                        make(format!("{}_fwd", op.name()), &[slot::X0, slot::Y0]),
                        make(
                            format!("{}_bwd", op.name()),
                            &[slot::X0, slot::X1, slot::Y0],
                        ),
                    )
                })
                .collect()
        });
        let (f, b) = &all[self.code() as usize - 1];
        (f, b)
    }

    fn params(self, n: usize) -> UnaryParams {
        let [a, b] = self.scalars();
        UnaryParams {
            n: n as u32,
            a: a as f32,
            b: b as f32,
        }
    }
}

pub(crate) const BINARY_FILE: ShaderFile = shader_with(
    "binary",
    include_str!("../../../shaders/binary.wgsl"),
    crate::backend::gpu::Generated::Fixed(crate::backend::elementwise::binary::wgsl),
)
.with_params(&[&BinaryParams::INFO]);

params! {
    /// The parameters of every kernel in `shaders/binary.wgsl`.
    pub(crate) struct BinaryParams as bp {
        /// Output elements.
        n: u32,
        /// Rank of the collapsed geometry; 0: both inputs are read at the output's own
        /// index.
        rank: u32,
        /// The comparison's code (`CMP_<NAME>`).
        code: u32,
        /// Padding.
        _pad: u32,
        /// The collapsed output shape.
        shape: Dims,
        /// a's strides over it (0 on broadcast dimensions).
        sa: Dims @ (shape, rank),
        /// b's strides over it.
        sb: Dims @ (shape, rank),
    }
}

/// The binary rows' kernels.
trait BinaryKernels {
    fn kernels(self) -> (&'static Kernel, Option<&'static Kernel>);
}

impl BinaryKernels for BinaryOp {
    fn kernels(self) -> (&'static Kernel, Option<&'static Kernel>) {
        static KERNELS: OnceLock<Vec<(Kernel, Option<Kernel>)>> = OnceLock::new();
        let all = KERNELS.get_or_init(|| {
            let make = |entry: String, slots: &'static [u32]| Kernel {
                file: &BINARY_FILE,
                entry: Box::leak(entry.into_boxed_str()),
                slots,
                extra: &[],
                overrides: &[],
                loops: false,
                params: BinaryParams::INFO.name,
            };
            BinaryOp::ROWS
                .iter()
                .map(|op| {
                    (
                        make(
                            format!("{}_fwd", op.name()),
                            &[slot::X0, slot::X1, slot::Y0],
                        ),
                        op.constant_grads().is_none().then(|| {
                            make(
                                format!("{}_bwd", op.name()),
                                &[slot::X0, slot::X1, slot::X2, slot::Y0, slot::Y1],
                            )
                        }),
                    )
                })
                .collect()
        });
        let at = BinaryOp::ROWS.iter().position(|&r| r == self);
        let (f, b) = &all[at.expect("every variant is a row")];
        (f, b.as_ref())
    }
}

/// The binary kernels' parameters over `geo` (rank 0 tells them both inputs are read at
/// the output's own index).
fn binary_params(geo: &Broadcast, code: u32) -> BinaryParams {
    let (out, sa, sb) = geo.collapsed();
    let direct = out.len() <= 1 && sa.iter().chain(&sb).all(|&s| s == 1);
    BinaryParams {
        n: shape::numel(&geo.out) as u32,
        rank: if direct { 0 } else { out.len() as u32 },
        code,
        shape: Dims::of(&out),
        sa: Dims::of(&sa),
        sb: Dims::of(&sb),
        ..Default::default()
    }
}

const PRELU_FWD: &Kernel = kernel!(UNARY_FILE, "prelu_fwd", [X0, X1, Y0], params = PreluParams);
const PRELU_BWD: &Kernel = kernel!(
    UNARY_FILE,
    "prelu_bwd",
    [X0, X1, X2, Y0, Y1],
    params = PreluParams
);
const COMPARE: &Kernel = kernel!(
    BINARY_FILE,
    "compare_fwd",
    [X0, X1, Y0],
    params = BinaryParams
);
const COMPARE_U32: &Kernel = kernel!(
    BINARY_FILE,
    "compare_u32_fwd",
    [X0, X1, YI],
    params = BinaryParams
);

/// The kernels of `shaders/unary.wgsl`, for the entry-point test: each row's, and
/// prelu's.
pub(crate) fn unary_kernels() -> Vec<&'static Kernel> {
    let mut all = vec![PRELU_FWD, PRELU_BWD];
    for op in UnaryOp::ROWS {
        let (f, b) = op.kernels();
        all.extend([f, b]);
    }
    all
}

/// The kernels of `shaders/binary.wgsl`, for the entry-point test: each row's, and the
/// comparisons (floats and `u32`).
pub(crate) fn binary_kernels() -> Vec<&'static Kernel> {
    let mut all = vec![COMPARE, COMPARE_U32];
    for op in BinaryOp::ROWS {
        let (f, b) = op.kernels();
        all.push(f);
        all.extend(b);
    }
    all
}

/// The work of an elementwise launch whose inputs have the formats `io`.
fn io_work(io: u32) -> super::Work {
    super::Work {
        io,
        ..Default::default()
    }
}

fn prelu_params(geo: PreluGeo) -> PreluParams {
    PreluParams {
        n: geo.n as u32,
        channels: geo.channels as u32,
        plane: geo.plane as u32,
        slopes: geo.slopes as u32,
    }
}

impl Elementwise for Arc<GpuContext> {
    fn unary(&self, op: UnaryOp, x: &Storage, n: usize) -> Result<Storage> {
        let (f, _) = op.kernels();
        let (mut bufs, io) = inputs(op.name(), &[x])?;
        // A native f16 input gives a native f16 output, rounded by the kernel.
        let (out, io) = super::half_io::output(self, io, n)?;
        bufs.push(out.buffer(op.name())?);
        self.launch_with(f, &op.params(n), &bufs, groups_1d(n), io_work(io));
        Ok(out)
    }

    fn unary_backward(&self, op: UnaryOp, s: &Storage, g: &Storage, n: usize) -> Result<Storage> {
        let out = gpu_alloc(self, n)?;
        let (_, b) = op.kernels();
        let (mut bufs, io) = inputs(op.name(), &[s, g])?;
        bufs.push(&out);
        self.launch_with(b, &op.params(n), &bufs, groups_1d(n), io_work(io));
        Ok(Storage::new_gpu(out))
    }

    fn prelu(&self, x: &Storage, w: &Storage, geo: PreluGeo) -> Result<Storage> {
        let out = gpu_alloc(self, geo.n)?;
        let bufs = [x.gpu("prelu")?, w.gpu("prelu")?, &out];
        self.launch(PRELU_FWD, &prelu_params(geo), &bufs, groups_1d(geo.n));
        Ok(Storage::new_gpu(out))
    }

    fn prelu_backward(
        &self,
        x: &Storage,
        w: &Storage,
        g: &Storage,
        geo: PreluGeo,
    ) -> Result<(Storage, Storage)> {
        let (dx, dw) = (gpu_alloc(self, geo.n)?, gpu_alloc(self, geo.n)?);
        let bufs = [x.gpu("prelu")?, w.gpu("prelu")?, g.gpu("prelu")?, &dx, &dw];
        self.launch(PRELU_BWD, &prelu_params(geo), &bufs, groups_1d(geo.n));
        Ok((Storage::new_gpu(dx), Storage::new_gpu(dw)))
    }

    fn binary(&self, op: BinaryOp, a: &Storage, b: &Storage, geo: &Broadcast) -> Result<Storage> {
        let n = shape::numel(&geo.out);
        let (mut bufs, io) = inputs(op.name(), &[a, b])?;
        let (out, io) = super::half_io::output(self, io, n)?;
        bufs.push(out.buffer(op.name())?);
        let p = binary_params(geo, 0);
        self.launch_with(op.kernels().0, &p, &bufs, groups_1d(n), io_work(io));
        Ok(out)
    }

    fn binary_backward(
        &self,
        op: BinaryOp,
        a: &Storage,
        b: &Storage,
        g: &Storage,
        geo: &Broadcast,
    ) -> Result<(Storage, Storage)> {
        let Some(k) = op.kernels().1 else {
            return Err(crate::error::Error::Gpu(format!(
                "{}: a row with constant gradients has no backward kernel (a wgrad bug)",
                op.name()
            )));
        };
        let n = shape::numel(&geo.out);
        let (da, db) = (gpu_alloc(self, n)?, gpu_alloc(self, n)?);
        let (mut bufs, io) = inputs(op.name(), &[a, b, g])?;
        bufs.extend([&da, &db]);
        self.launch_with(k, &binary_params(geo, 0), &bufs, groups_1d(n), io_work(io));
        Ok((Storage::new_gpu(da), Storage::new_gpu(db)))
    }

    fn compare(
        &self,
        op: CompareOp,
        a: &Storage,
        b: &Storage,
        geo: &Broadcast,
        dtype: DType,
    ) -> Result<Storage> {
        let n = shape::numel(&geo.out);
        let out = gpu_alloc(self, n)?;
        let bufs = [a.gpu("compare")?, b.gpu("compare")?, &out];
        let kernel = if dtype == DType::U32 {
            COMPARE_U32
        } else {
            COMPARE
        };
        self.launch(kernel, &binary_params(geo, op.code()), &bufs, groups_1d(n));
        Ok(Storage::new_gpu(out))
    }
}
