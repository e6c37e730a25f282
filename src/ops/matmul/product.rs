//! The fused product on tensors, for the recurrences, which still drive their GPU
//! products from the op layer (`ops/rnn/gpu.rs`): [`GpuProduct`] and [`Epi`] hold
//! tensors and hand their storages to [`crate::backend::Matmul::product_epi`] (whose
//! storage-level `Product` and `Epi` live in `backend::matmul`). To go once the
//! recurrences are behind the seam.

use crate::backend::matmul::{self, Act, MatmulChoice, Product};
use crate::error::Result;
use crate::tensor::Tensor;

/// What a product fuses around its arithmetic, over tensors: see
/// `backend::matmul::Epi`, field by field.
#[derive(Clone, Copy, Default)]
pub(crate) struct Epi<'a> {
    pub bias: Option<&'a Tensor>,
    pub act: Act,
    pub addend: Option<(&'a Tensor, usize)>,
    pub pro: Option<(&'a Tensor, Act)>,
    pub rowsum: Option<&'a Tensor>,
    pub out: Option<(&'a Tensor, usize)>,
    pub a_off: usize,
    pub a_in_out: bool,
    pub accumulate: bool,
    pub empty: bool,
}

/// A product on the GPU (see `backend::matmul::Product`).
pub(crate) struct GpuProduct(Product);

impl GpuProduct {
    /// A single `[m, k] x [k, n]` product whose operands' element strides are given
    /// (`(row, column)` of op(A) and op(B)).
    pub(crate) fn plain(
        mnk: (usize, usize, usize),
        a_strides: (usize, usize),
        b_strides: (usize, usize),
    ) -> GpuProduct {
        GpuProduct(Product::plain(mnk, a_strides, b_strides))
    }

    /// The product of `a` and `b` with the fused parts `epi`, shaped `[M, N]` (`epi.out`
    /// itself when given).
    pub(crate) fn run_epi(
        &self,
        a: &Tensor,
        b: &Tensor,
        choice: MatmulChoice,
        epi: &Epi,
    ) -> Result<Tensor> {
        let e = matmul::Epi {
            bias: epi.bias.map(Tensor::storage),
            act: epi.act,
            addend: epi.addend.map(|(t, off)| (t.storage(), off)),
            pro: epi.pro.map(|(t, act)| (t.storage(), act)),
            rowsum: epi.rowsum.map(Tensor::storage),
            out: epi.out.map(|(t, off)| (t.storage(), off)),
            a_off: epi.a_off,
            a_in_out: epi.a_in_out,
            accumulate: epi.accumulate,
            empty: epi.empty,
            ..matmul::Epi::default()
        };
        let y = a
            .device()
            .backend()
            .product_epi(a.storage(), b.storage(), &self.0, choice, &e)?;
        Ok(match epi.out {
            Some((t, _)) => t.clone(),
            None => Tensor::like(y, vec![self.0.m, self.0.n], a),
        })
    }
}
