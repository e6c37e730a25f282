//! The CPU backend and reference: loops over contiguous slices, generic over the float
//! type so the gradient checker can run every op in `f64`, split over a persistent
//! thread pool where the work is large. Matrix products use the `gemm` crate's kernels;
//! convolutions are fused with their bias and activation and work one image at a time
//! (`conv_fused`); `Device::profile` times each primitive (`profile`).

pub(crate) mod attention;
pub(crate) mod augment;
pub(crate) mod batchnorm;
pub(crate) mod buffers;
pub(crate) mod conv2d;
pub(crate) mod conv_fused;
pub(crate) mod elementwise;
pub(crate) mod fast_exp;
pub(crate) mod fused;
pub(crate) mod gelu;
pub(crate) mod inplace;
pub(crate) mod layout;
pub(crate) mod loss;
pub(crate) mod matmul;
#[doc(hidden)]
pub use matmul::in_gemm;
pub(crate) mod norm;
pub(crate) mod optim;
pub(crate) mod parallel;
pub(crate) mod pool;
pub(crate) mod pool2d;
pub(crate) mod profile;
pub(crate) mod random;
pub(crate) mod reduce;
pub(crate) mod rnn;
pub(crate) mod softmax;

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The float types the CPU kernels are generic over (`f32`, and `f64` for gradient checks).
pub trait Float:
    pool::Pooled
    + Copy
    + Send
    + Sync
    + 'static
    + PartialOrd
    + std::fmt::Debug
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
{
    /// Converts from `f64` (rounding for `f32`).
    fn from_f64(v: f64) -> Self;
    /// Converts to `f64`.
    fn to_f64(self) -> f64;
    /// e^x.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// self^e.
    fn powf(self, e: Self) -> Self;
    /// ln(1 + x), accurate near 0.
    fn ln_1p(self) -> Self;
    /// The complementary error function, `1 - erf(x)` without cancellation for large x.
    fn erfc(self) -> Self;
    /// The exact GELU `x Phi(x)` (`f32`: the fast `gelu::gelu`; `f64`: libm's `erfc`).
    fn gelu(self) -> Self;
    /// The exact GELU's derivative `Phi(x) + x phi(x)`.
    fn gelu_slope(self) -> Self;
    /// `y = GELU(y)` over a slice (`f32`: vectorised, threaded when long).
    fn gelu_in_place(ys: &mut [Self]);
    /// `out = g GELU'(s)` elementwise over slices of one length.
    fn gelu_backward_into(out: &mut [Self], g: &[Self], s: &[Self]);
    /// The larger value (NaN-propagating is not required).
    fn max(self, o: Self) -> Self;
    /// The smaller value.
    fn min(self, o: Self) -> Self;
    /// True for NaN.
    #[allow(clippy::eq_op)]
    fn is_nan(self) -> bool {
        self != self
    }
    /// `max(self, 0)` that keeps NaN and -0 (PyTorch's `relu`; `max` drops NaN).
    fn relu(self) -> Self {
        if self < Self::zero() {
            Self::zero()
        } else {
            self
        }
    }
    /// True when `self` should replace `best` in a NaN-propagating running maximum: it is
    /// larger, or NaN where `best` is not (the first NaN wins, as in PyTorch's `max`).
    fn beats_nan(self, best: Self) -> bool {
        self > best || (self.is_nan() && !best.is_nan())
    }
    /// 0.
    fn zero() -> Self {
        Self::from_f64(0.0)
    }
    /// 1.
    fn one() -> Self {
        Self::from_f64(1.0)
    }
}

macro_rules! impl_float {
    ($t:ty, $exp:path, $erfc:path, $gelu:path, $slope:path, $gelu_slice:path, $gelu_back:path) => {
        impl Float for $t {
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                $exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn tanh(self) -> Self {
                <$t as FastTanhConsts>::tanh_(self)
            }
            fn powf(self, e: Self) -> Self {
                <$t>::powf(self, e)
            }
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            fn erfc(self) -> Self {
                $erfc(self)
            }
            fn gelu(self) -> Self {
                $gelu(self)
            }
            fn gelu_slope(self) -> Self {
                $slope(self)
            }
            fn gelu_in_place(ys: &mut [Self]) {
                $gelu_slice(ys)
            }
            fn gelu_backward_into(out: &mut [Self], g: &[Self], s: &[Self]) {
                $gelu_back(out, g, s)
            }
            fn max(self, o: Self) -> Self {
                <$t>::max(self, o)
            }
            fn min(self, o: Self) -> Self {
                <$t>::min(self, o)
            }
        }
    };
}
// f32's exp is the branch-free one that vectorises; f64 (the gradient checker's
// reference) keeps libm's.
impl_float!(
    f32,
    fast_exp::exp_f32,
    libm::erfcf,
    gelu::gelu,
    gelu::gelu_slope,
    gelu::forward_in_place,
    gelu::backward_into
);
impl_float!(
    f64,
    f64::exp,
    libm::erfc,
    gelu::gelu_f64,
    gelu::gelu_slope_f64,
    gelu_in_place_f64,
    gelu_backward_into_f64
);

/// The `f64` GELU over a slice, element by element.
fn gelu_in_place_f64(ys: &mut [f64]) {
    ys.iter_mut().for_each(|y| *y = gelu::gelu_f64(*y));
}

/// The `f64` GELU's backward, element by element.
fn gelu_backward_into_f64(out: &mut [f64], g: &[f64], s: &[f64]) {
    for ((o, &g), &s) in out.iter_mut().zip(g).zip(s) {
        *o = g * gelu::gelu_slope_f64(s);
    }
}

/// tanh through one `exp` (libm's `tanhf` goes through `expm1f`, several times slower,
/// and recurrent cells call it millions of times per step): an odd Taylor polynomial
/// below |x| = 1/16, else `1 - 2 / (e^{2|x|} + 1)`. Close to libm in f32
/// (relative error below 2e-6; about 5e-12 in f64, which therefore keeps libm's).
fn fast_tanh<T>(x: T) -> T
where
    T: Copy
        + PartialOrd
        + std::ops::Neg<Output = T>
        + std::ops::Add<Output = T>
        + std::ops::Sub<Output = T>
        + std::ops::Mul<Output = T>
        + std::ops::Div<Output = T>
        + FastTanhConsts,
{
    // Both branches are computed and one is selected, so the loop has no unpredictable
    // branch; e^{2|x|} overflowing to infinity still gives exactly 1.
    let a = if x < T::ZERO { -x } else { x };
    let a2 = a * a;
    // x - x^3/3 + 2x^5/15 - 17x^7/315: the next term is below 1e-10 relative.
    let small = a * (T::ONE + a2 * (T::C3 + a2 * (T::C5 + a2 * T::C7)));
    let large = T::ONE - T::TWO / ((a + a).exp_() + T::ONE);
    let r = if a < T::SMALL { small } else { large };
    if x < T::ZERO {
        -r
    } else {
        r
    }
}

/// Constants and `exp` for [`fast_tanh`].
trait FastTanhConsts: Sized {
    const ZERO: Self;
    const ONE: Self;
    const TWO: Self;
    const SMALL: Self;
    const C3: Self;
    const C5: Self;
    const C7: Self;
    fn exp_(self) -> Self;
    /// The `tanh` the CPU backend uses for this type.
    fn tanh_(self) -> Self;
}

macro_rules! tanh_consts {
    ($t:ty, $tanh:expr) => {
        impl FastTanhConsts for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const TWO: Self = 2.0;
            const SMALL: Self = 0.0625;
            const C3: Self = -1.0 / 3.0;
            const C5: Self = 2.0 / 15.0;
            const C7: Self = -17.0 / 315.0;
            fn exp_(self) -> Self {
                self.exp()
            }
            fn tanh_(self) -> Self {
                $tanh(self)
            }
        }
    };
}
// f32 (all model math) takes the fast path; f64 (the gradient checker's reference)
// keeps libm's full precision.
tanh_consts!(f32, fast_tanh::<f32>);
tanh_consts!(f64, f64::tanh);

/// Host memory of one tensor.
#[derive(Clone, Debug)]
pub enum CpuData {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit floats (CPU only; used by the gradient checker).
    F64(Vec<f64>),
    /// Unsigned indices (class labels, gather indices, argmax).
    U32(Vec<u32>),
}

impl CpuData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            CpuData::F32(v) => v.len(),
            CpuData::F64(v) => v.len(),
            CpuData::U32(v) => v.len(),
        }
    }
    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The values as `f64` (for printing, `item`, conversions).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            CpuData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            CpuData::F64(v) => v.clone(),
            CpuData::U32(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }
    /// A float buffer of the same type as `self`, filled with `value`.
    pub fn float_like(&self, n: usize, value: f64) -> CpuData {
        match self {
            CpuData::F64(_) => CpuData::F64(pool::filled(n, value)),
            _ => CpuData::F32(pool::filled(n, value as f32)),
        }
    }
}

/// A float type's slices out of CPU data, and back (the kernels generic over `f32` and
/// `f64` take their operands and return their results through it).
pub(crate) trait Elem: matmul::Gemm {
    /// The elements, when `d` holds this type.
    fn of(d: &CpuData) -> Option<&[Self]>;
    /// The elements as CPU data.
    fn data(v: Vec<Self>) -> CpuData;
}

impl Elem for f32 {
    fn of(d: &CpuData) -> Option<&[f32]> {
        match d {
            CpuData::F32(v) => Some(v),
            _ => None,
        }
    }
    fn data(v: Vec<f32>) -> CpuData {
        CpuData::F32(v)
    }
}

impl Elem for f64 {
    fn of(d: &CpuData) -> Option<&[f64]> {
        match d {
            CpuData::F64(v) => Some(v),
            _ => None,
        }
    }
    fn data(v: Vec<f64>) -> CpuData {
        CpuData::F64(v)
    }
}

/// A CPU tensor's storage. The lock is only written by in-place parameter updates.
#[derive(Debug)]
pub struct CpuStorage(RwLock<CpuData>);

impl Drop for CpuStorage {
    fn drop(&mut self) {
        let data = self.0.get_mut().unwrap_or_else(|e| e.into_inner());
        pool::recycle(std::mem::replace(data, CpuData::U32(Vec::new())));
    }
}

impl CpuStorage {
    pub(crate) fn new(data: CpuData) -> Self {
        CpuStorage(RwLock::new(data))
    }
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, CpuData> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, CpuData> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs a generic float expression on one buffer, producing a buffer of the same type.
/// `$T` names the element type inside the body.
macro_rules! map_float {
    ($d:expr, |$v:ident : $T:ident| $body:expr) => {
        match $d {
            $crate::backend::cpu::CpuData::F32($v) => {
                #[allow(dead_code)]
                type $T = f32;
                $crate::backend::cpu::CpuData::F32($body)
            }
            $crate::backend::cpu::CpuData::F64($v) => {
                #[allow(dead_code)]
                type $T = f64;
                $crate::backend::cpu::CpuData::F64($body)
            }
            $crate::backend::cpu::CpuData::U32(_) => unreachable!("float kernel given u32 data"),
        }
    };
}

/// Like `map_float!` for two buffers of the same float type.
macro_rules! map_float2 {
    ($a:expr, $b:expr, |$va:ident, $vb:ident : $T:ident| $body:expr) => {
        match ($a, $b) {
            ($crate::backend::cpu::CpuData::F32($va), $crate::backend::cpu::CpuData::F32($vb)) => {
                #[allow(dead_code)]
                type $T = f32;
                $crate::backend::cpu::CpuData::F32($body)
            }
            ($crate::backend::cpu::CpuData::F64($va), $crate::backend::cpu::CpuData::F64($vb)) => {
                #[allow(dead_code)]
                type $T = f64;
                $crate::backend::cpu::CpuData::F64($body)
            }
            _ => unreachable!("float kernel given mismatched data types"),
        }
    };
}

/// Like `map_float2!` for three buffers.
macro_rules! map_float3 {
    ($a:expr, $b:expr, $c:expr, |$va:ident, $vb:ident, $vc:ident : $T:ident| $body:expr) => {
        match ($a, $b, $c) {
            (
                $crate::backend::cpu::CpuData::F32($va),
                $crate::backend::cpu::CpuData::F32($vb),
                $crate::backend::cpu::CpuData::F32($vc),
            ) => {
                #[allow(dead_code)]
                type $T = f32;
                $crate::backend::cpu::CpuData::F32($body)
            }
            (
                $crate::backend::cpu::CpuData::F64($va),
                $crate::backend::cpu::CpuData::F64($vb),
                $crate::backend::cpu::CpuData::F64($vc),
            ) => {
                #[allow(dead_code)]
                type $T = f64;
                $crate::backend::cpu::CpuData::F64($body)
            }
            _ => unreachable!("float kernel given mismatched data types"),
        }
    };
}

pub(crate) use {map_float, map_float2, map_float3};

/// Offset into a strided input for the element at flat index `i` of a contiguous
/// output of shape `out_shape` (used for broadcasting, permutes and slices).
#[inline]
pub(crate) fn strided_offset(mut i: usize, out_shape: &[usize], strides: &[usize]) -> usize {
    let mut off = 0;
    for d in (0..out_shape.len()).rev() {
        let s = out_shape[d];
        off += (i % s) * strides[d];
        i /= s;
    }
    off
}

/// The offsets `strided_offset(i, shape, strides)` for `i = 0, 1, ...` in order, at
/// amortised constant cost per element (an odometer instead of a division per dim).
pub(crate) struct StridedIter<'a> {
    shape: &'a [usize],
    strides: &'a [usize],
    idx: [usize; crate::shape::MAX_RANK],
    off: usize,
    remaining: usize,
}

impl<'a> StridedIter<'a> {
    pub(crate) fn new(shape: &'a [usize], strides: &'a [usize]) -> Self {
        debug_assert!(shape.len() <= crate::shape::MAX_RANK && shape.len() == strides.len());
        StridedIter {
            shape,
            strides,
            idx: [0; crate::shape::MAX_RANK],
            off: 0,
            remaining: shape.iter().product(),
        }
    }
}

impl Iterator for StridedIter<'_> {
    type Item = usize;
    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let current = self.off;
        for d in (0..self.shape.len()).rev() {
            self.idx[d] += 1;
            self.off += self.strides[d];
            if self.idx[d] < self.shape[d] {
                break;
            }
            self.off -= self.strides[d] * self.shape[d];
            self.idx[d] = 0;
        }
        Some(current)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

#[cfg(test)]
mod strided_tests {
    use super::*;

    #[test]
    fn the_odometer_matches_the_division_formula() {
        let shape = [2, 3, 4];
        let strides = [0, 4, 1];
        let fast: Vec<usize> = StridedIter::new(&shape, &strides).collect();
        let slow: Vec<usize> = (0..24)
            .map(|i| strided_offset(i, &shape, &strides))
            .collect();
        assert_eq!(fast, slow);
        assert_eq!(StridedIter::new(&[], &[]).collect::<Vec<_>>(), vec![0]);
    }
}

#[cfg(test)]
mod tanh_tests {
    #[test]
    fn fast_tanh_matches_libm() {
        let mut worst32 = 0.0f64;
        let mut worst64 = 0.0f64;
        for i in -40_000..=40_000 {
            let x = i as f64 * 5e-4;
            let want = x.tanh();
            let g32 = super::fast_tanh(x as f32) as f64;
            let g64 = super::fast_tanh(x);
            let want32 = (x as f32 as f64).tanh();
            let rel = |g: f64, w: f64| {
                if w == 0.0 {
                    g.abs()
                } else {
                    ((g - w) / w).abs()
                }
            };
            worst32 = worst32.max(rel(g32, want32));
            worst64 = worst64.max(rel(g64, want));
        }
        assert!(worst32 < 2e-6, "f32 relative error {worst32}");
        assert!(worst64 < 1e-11, "f64 relative error {worst64}");
        assert_eq!(super::fast_tanh(100.0f32), 1.0);
        assert_eq!(super::fast_tanh(-100.0f32), -1.0);
        assert_eq!(super::fast_tanh(0.0f32), 0.0);
    }
}
