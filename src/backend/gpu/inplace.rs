//! The GPU backend's in-place updates (`shaders/inplace.wgsl`): one dispatch per update,
//! `dst` bound read-write, an operand that is `dst`'s own storage read through it.

use std::sync::Arc;

use super::kernels::{groups_1d, kernel, shader_with};
use super::params::{params, Dims, Params};
use super::{GpuContext, Kernel, ShaderFile};
use crate::backend::broadcast::Broadcast;
use crate::backend::inplace::InplaceOp;
use crate::backend::{Inplace, Storage};
use crate::error::Result;
use crate::shape;

pub(crate) const FILE: ShaderFile = shader_with(
    "inplace",
    include_str!("../../../shaders/inplace.wgsl"),
    crate::backend::gpu::Generated::Fixed(crate::backend::inplace::wgsl),
)
.with_params(&[&InplaceParams::INFO]);

params! {
    /// The parameters of every kernel in `shaders/inplace.wgsl`.
    pub(crate) struct InplaceParams as ip {
        /// Elements of `dst`.
        n: u32,
        /// Rank of the collapsed geometry; 0: the operands are read at `dst`'s index.
        rank: u32,
        /// The update's code (`IP_<NAME>`).
        code: u32,
        /// `inplace1_step`'s bound operand: 1 for `a`, 2 for `b`.
        ext: u32,
        /// The update's scalar.
        s: f32,
        /// Padding.
        _pad0: u32,
        /// Padding.
        _pad1: u32,
        /// Padding.
        _pad2: u32,
        /// The collapsed shape of `dst`.
        shape: Dims,
        /// a's strides over it (0 on broadcast dimensions).
        sa: Dims @ (shape, rank),
        /// b's strides over it.
        sb: Dims @ (shape, rank),
    }
}

const INPLACE_0: &Kernel = kernel!(FILE, "inplace0_step", [Y0], params = InplaceParams);
const INPLACE_1: &Kernel = kernel!(FILE, "inplace1_step", [X0, Y0], params = InplaceParams);
const INPLACE_2: &Kernel = kernel!(FILE, "inplace2_step", [X0, X1, Y0], params = InplaceParams);

/// The kernels of `shaders/inplace.wgsl`.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![INPLACE_0, INPLACE_1, INPLACE_2]
}

impl Inplace for Arc<GpuContext> {
    fn update(
        &self,
        op: InplaceOp,
        dst: &Storage,
        a: Option<&Storage>,
        b: Option<&Storage>,
        geo: &Broadcast,
    ) -> Result<()> {
        let n = shape::numel(&geo.out);
        if n == 0 {
            return Ok(());
        }
        let name = "inplace update";
        let d = dst.gpu(name)?;
        // Operands other than dst's own storage (which is read through dst's binding).
        let a = a
            .filter(|s| !s.same_as(dst))
            .map(|s| s.gpu(name))
            .transpose()?;
        let b = b
            .filter(|s| !s.same_as(dst))
            .map(|s| s.gpu(name))
            .transpose()?;
        let (out, sa, sb) = geo.collapsed();
        let direct = out.len() <= 1 && sa.iter().chain(&sb).all(|&s| s == 1);
        let mut p = InplaceParams {
            n: n as u32,
            rank: if direct { 0 } else { out.len() as u32 },
            code: op.code(),
            s: op.scalar() as f32,
            shape: Dims::of(&out),
            sa: Dims::of(&sa),
            sb: Dims::of(&sb),
            ..Default::default()
        };
        let groups = groups_1d(n);
        match (a, b) {
            (Some(a), Some(b)) => self.launch(INPLACE_2, &p, &[a, b, d], groups),
            (Some(x), None) | (None, Some(x)) => {
                p.ext = if a.is_some() { 1 } else { 2 };
                self.launch(INPLACE_1, &p, &[x, d], groups)
            }
            (None, None) => self.launch(INPLACE_0, &p, &[d], groups),
        }
        Ok(())
    }
}
