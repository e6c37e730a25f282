//! Reuse of large host buffers. A training step frees and reallocates the same buffer
//! sizes every iteration; through the system allocator each large one is a fresh
//! `mmap` whose pages fault in on first touch (measured: about a third of a small CNN's
//! CPU step). Freed tensor buffers of at least [`MIN_ELEMS`] elements are kept here,
//! keyed by element type and capacity, and handed back to the next op that asks for the
//! same size. At most [`MAX_POOLED_BYTES`] are kept; [`clear`] returns them all.

use std::collections::HashMap;
use std::sync::Mutex;

use super::CpuData;

/// Smaller buffers go straight back to the allocator (its own free lists serve them).
pub const MIN_ELEMS: usize = 4 * 1024;
/// The most bytes the pool keeps; buffers freed beyond this are released.
pub const MAX_POOLED_BYTES: usize = 512 << 20;

#[doc(hidden)]
#[derive(Default)]
pub struct Pool {
    f32: HashMap<usize, Vec<Vec<f32>>>,
    f64: HashMap<usize, Vec<Vec<f64>>>,
    u32: HashMap<usize, Vec<Vec<u32>>>,
    bytes: usize,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

fn with_pool<R>(f: impl FnOnce(&mut Pool) -> R) -> R {
    let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(Pool::default))
}

/// Element types the pool keeps.
pub trait Pooled: Copy + Send + 'static {
    #[doc(hidden)]
    fn bucket(pool: &mut Pool) -> &mut HashMap<usize, Vec<Vec<Self>>>;
}

macro_rules! pooled {
    ($t:ty, $field:ident) => {
        impl Pooled for $t {
            fn bucket(pool: &mut Pool) -> &mut HashMap<usize, Vec<Vec<Self>>> {
                &mut pool.$field
            }
        }
    };
}
pooled!(f32, f32);
pooled!(f64, f64);
pooled!(u32, u32);

/// An empty vector with room for `n` elements, reusing a freed buffer when one fits.
pub fn with_capacity<T: Pooled>(n: usize) -> Vec<T> {
    if n >= MIN_ELEMS {
        let reused = with_pool(|p| {
            let v = T::bucket(p).get_mut(&n).and_then(|list| list.pop());
            if v.is_some() {
                p.bytes -= n * size_of::<T>();
            }
            v
        });
        if let Some(mut v) = reused {
            v.clear();
            return v;
        }
    }
    Vec::with_capacity(n)
}

/// `n` copies of `value` in a (possibly reused) buffer.
pub fn filled<T: Pooled>(n: usize, value: T) -> Vec<T> {
    let mut v = with_capacity(n);
    v.resize(n, value);
    v
}

/// The `n` items of `iter` in a (possibly reused) buffer.
pub fn collect<T: Pooled>(n: usize, iter: impl Iterator<Item = T>) -> Vec<T> {
    let mut v = with_capacity(n);
    v.extend(iter);
    v
}

fn keep<T: Pooled>(v: Vec<T>) {
    let cap = v.capacity();
    if cap < MIN_ELEMS {
        return;
    }
    let bytes = cap * size_of::<T>();
    with_pool(|p| {
        if p.bytes + bytes <= MAX_POOLED_BYTES {
            p.bytes += bytes;
            T::bucket(p).entry(cap).or_default().push(v);
        }
    });
}

/// Takes back a freed tensor buffer.
pub(crate) fn recycle(data: CpuData) {
    match data {
        CpuData::F32(v) => keep(v),
        CpuData::F64(v) => keep(v),
        CpuData::U32(v) => keep(v),
    }
}

/// Releases every pooled buffer to the system allocator.
pub fn clear() {
    with_pool(|p| *p = Pool::default());
}

/// Bytes the pool holds now.
pub fn pooled_bytes() -> usize {
    with_pool(|p| p.bytes)
}

/// `collect()` into a pooled buffer when the iterator knows its exact length.
pub(crate) trait CollectPooled<T: Pooled>: Iterator<Item = T> + Sized {
    fn collect_pooled(self) -> Vec<T> {
        match self.size_hint() {
            (lo, Some(hi)) if lo == hi => collect(lo, self),
            _ => self.collect(),
        }
    }
}

impl<T: Pooled, I: Iterator<Item = T>> CollectPooled<T> for I {}
