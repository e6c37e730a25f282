//! The CPU's matrix products: the `gemm` crate's single-threaded kernels, split over
//! threads by the engine (by batch, or by rows of `C` for a single product). `gemm`
//! replaced `matrixmultiply` after measuring both here on the workloads' shapes, one
//! thread per call as the engine uses them (2026-12-07, 2-core AMD EPYC with AVX-512):
//! 96-100 against 61-72 GFLOP/s on attention's per-head products (64 x 64 x 32), 85-106
//! against 81-85 on per-image convolutions, 98-108 against 76-100 on the transformer's
//! linear layers. The fused layers (`super::fused`) run a product and then their bias
//! and activation over its output; the fused convolution (`super::conv_fused`) does so
//! per image.

use super::elementwise::CpuBackend;
use super::parallel::{self, SendPtr};
use super::{strided_offset, CpuData, Float};
use crate::backend::gpu::matmul_plan::{MatmulPlan, ProductShape};
use crate::backend::half::cpu_f32;
use crate::backend::matmul::{MatmulChoice, Product};
use crate::backend::{Matmul, Storage};
use crate::error::{Error, Result};
use crate::shape::{self, broadcast_strides};

impl Matmul for CpuBackend {
    fn matmul(
        &self,
        a: &Storage,
        b: &Storage,
        p: &Product,
        _choice: MatmulChoice,
    ) -> Result<Storage> {
        let _span = super::profile::span("matmul");
        let (m, n) = (p.m, p.n);
        // Where each batch's product goes: its own matrix, or (summing) a shared one.
        let so: Vec<usize> = broadcast_strides(&p.out_batch, &p.batch)
            .iter()
            .map(|s| s * m * n)
            .collect();
        let (a, b) = (cpu_f32(a), cpu_f32(b));
        let (ad, bd) = (a.cpu("matmul")?.read(), b.cpu("matmul")?.read());
        let len = p.out_len();
        // A plain product with k > 0 writes every element of its result (beta 0: C is
        // not read), so the buffer needs no zeroing; a summing one accumulates into it.
        let overwrites = !p.summing && p.k > 0;
        let geo = CpuGemm {
            m,
            k: p.k,
            n,
            batch: &p.batch,
            sa: &p.sa,
            sb: &p.sb,
            so: &so,
            a_strides: p.a_strides,
            b_strides: p.b_strides,
            summing: p.summing,
        };
        let out = match (&*ad, &*bd) {
            (CpuData::F32(x), CpuData::F32(y)) => CpuData::F32(geo.product(x, y, len, overwrites)),
            (CpuData::F64(x), CpuData::F64(y)) => CpuData::F64(geo.product(x, y, len, overwrites)),
            _ => {
                return Err(Error::DType {
                    op: "matmul",
                    msg: "mixed or integer dtypes reached a float product".into(),
                })
            }
        };
        Ok(Storage::new_cpu(out))
    }

    fn matmul_plan(&self, _shape: &ProductShape) -> Option<MatmulPlan> {
        None
    }
}

/// The `gemm` crate's single-threaded kernels for one element type.
pub(crate) trait Gemm: Float {
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
    ($t:ty) => {
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
                // Computed as `C^T = B^T A^T`: `gemm` works column-major, and row-major
                // `C` is its column-major transpose (unit row stride), with `B^T` the
                // left operand; for contiguous operands it then needs no packing
                // buffer (so no allocation) for most of the workloads' shapes, and
                // measured a little faster. `gemm`'s `alpha` scales the old C (read
                // only when `read_dst`) and its `beta` the product.
                IN_GEMM.with(|f| f.set(true));
                gemm::gemm(
                    n,
                    m,
                    k,
                    c,
                    c_row as isize,
                    1,
                    beta != 0.0,
                    b,
                    br as isize,
                    bc as isize,
                    a,
                    ar as isize,
                    ac as isize,
                    beta,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
                IN_GEMM.with(|f| f.set(false));
            }
        }
    };
}

thread_local! {
    /// True while this thread is inside the GEMM library.
    static IN_GEMM: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True while the calling thread runs the GEMM library's code. The library allocates
/// its packing buffers per call (a `malloc` of tens of kilobytes, tens of nanoseconds);
/// a test's counting allocator asks this to tell those from the engine's own
/// allocations, which the small-matrix paths must not make per step.
#[doc(hidden)]
pub fn in_gemm() -> bool {
    IN_GEMM.with(|f| f.get())
}
gemm_impl!(f32);
gemm_impl!(f64);

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
    /// The product's `len` elements in a pooled buffer. With `overwrites` (not summing,
    /// k > 0: every element is written with beta 0) the buffer is not zeroed first.
    fn product<T: Gemm>(&self, a: &[T], b: &[T], len: usize, overwrites: bool) -> Vec<T> {
        if !overwrites || len == 0 {
            let mut c = super::pool::filled(len, T::zero());
            self.run(a, b, SendPtr(c.as_mut_ptr()), len, true);
            return c;
        }
        let mut c = super::pool::with_capacity(len);
        self.run(a, b, SendPtr(c.as_mut_ptr()), len, false);
        // SAFETY: the capacity is at least `len`, and a non-summing product with k > 0
        // wrote all `len` elements (every batch's, or every row's, `m x n` block with
        // beta 0, which `gemm` stores without reading: `read_dst` is false).
        unsafe { c.set_len(len) };
        c
    }

    /// Splits the work over threads: by batch when there are several (a summing product
    /// gives each thread its own accumulator, added at the end), else by rows of `C`.
    /// `c` points to room for `c_len` elements, initialised (zeros) when `zeroed`; a
    /// summing product needs them so.
    fn run<T: Gemm>(&self, a: &[T], b: &[T], c_ptr: SendPtr<T>, c_len: usize, zeroed: bool) {
        debug_assert!(zeroed || !self.summing);
        let (m, k, n) = (self.m, self.k, self.n);
        let batches = shape::numel(self.batch);
        let mut span = super::profile::span("gemm");
        span.product(m, n, k, batches);
        if batches == 0 || m * n == 0 {
            // Nothing to compute: `c` is already zeros (and an empty batch must not reach
            // the row-split path with empty operands).
            return;
        }
        let work = batches * m * n * k;
        let by_batch = batches > 1;
        let parts = parallel::parts(if by_batch { batches } else { m }, work);
        let beta = if self.summing { T::one() } else { T::zero() };
        // Extra accumulators for all but the first part when summing.
        let mut partials: Vec<Vec<T>> = if self.summing && parts > 1 {
            (1..parts).map(|_| vec![T::zero(); c_len]).collect()
        } else {
            Vec::new()
        };
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
        if partials.is_empty() {
            return;
        }
        // SAFETY: a summing product's buffer is initialised (zeroed, then written by
        // the first part), and the parts have ended.
        let c = unsafe { std::slice::from_raw_parts_mut(c_ptr.0, c_len) };
        for p in partials {
            for (o, v) in c.iter_mut().zip(p) {
                *o += v;
            }
        }
    }
}

/// `C = A B + beta C` on slices (`A` `[m, k]`, `B` `[k, n]` with the given (row, column)
/// element strides, `C` with rows `c_row` apart), bounds-checked: the safe entry to
/// [`Gemm::gemm`] for kernels that multiply parts of their own buffers.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_slices<T: Gemm>(
    (m, k, n): (usize, usize, usize),
    a: &[T],
    a_strides: (usize, usize),
    b: &[T],
    b_strides: (usize, usize),
    beta: T,
    c: &mut [T],
    c_row: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let mut span = super::profile::span("gemm");
    span.product(m, n, k, 1);
    assert!((m - 1) * c_row + n <= c.len(), "gemm: C out of bounds");
    if k == 0 {
        for r in 0..m {
            for v in &mut c[r * c_row..r * c_row + n] {
                *v = *v * beta;
            }
        }
        return;
    }
    let last =
        |rows: usize, cols: usize, (rs, cs): (usize, usize)| (rows - 1) * rs + (cols - 1) * cs;
    assert!(last(m, k, a_strides) < a.len(), "gemm: A out of bounds");
    assert!(last(k, n, b_strides) < b.len(), "gemm: B out of bounds");
    // SAFETY: every index of A, B and C was checked above; C is a distinct `&mut`.
    unsafe {
        T::gemm(
            m,
            k,
            n,
            a.as_ptr(),
            a_strides,
            b.as_ptr(),
            b_strides,
            beta,
            c.as_mut_ptr(),
            c_row,
        )
    }
}
