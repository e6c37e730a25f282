//! Reuse of large host buffers. A training step frees and reallocates the same buffer
//! sizes every iteration; through the system allocator each large one is a fresh
//! `mmap` whose pages fault in on first touch (measured: about a third of a small CNN's
//! CPU step). Freed tensor buffers of at least [`MIN_ELEMS`] elements are kept here,
//! keyed by element type and capacity, and handed back to the next op that asks for the
//! same size.
//!
//! The pool only keeps what is asked for again. Each size class is a stack (the most
//! recently freed buffer is handed out first), so in a repeated step the buffers a
//! class needs cycle at its top and a surplus (buffers freed more often than that size
//! is requested) sinks to its bottom. A buffer that stays unrequested while
//! [`MAX_IDLE`] pooled-size requests go by is released, and past [`MAX_POOLED_BYTES`]
//! the longest-idle buffers of any class are released to make room for the newest.
//! [`clear`] returns them all.

use std::collections::HashMap;
use std::sync::Mutex;

use super::CpuData;

/// Smaller buffers go straight back to the allocator (its own free lists serve them).
pub const MIN_ELEMS: usize = 4 * 1024;
/// The most bytes the pool keeps; past it the longest-idle buffers are released.
pub const MAX_POOLED_BYTES: usize = 256 << 20;
/// A pooled buffer not handed out again within this many requests (of at least
/// [`MIN_ELEMS`] elements, any type and size) is released. A training step makes tens
/// to a few hundred such requests, so a buffer a step needs is back in use long before.
pub const MAX_IDLE: u64 = 4096;
/// Idle buffers are looked for once every this many requests.
const SWEEP_EVERY: u64 = 64;

/// A free buffer and the request count when it was freed.
type Entry<T> = (Vec<T>, u64);
type Classes<T> = HashMap<usize, Vec<Entry<T>>>;

#[doc(hidden)]
#[derive(Default)]
pub struct Pool {
    f32: Classes<f32>,
    f64: Classes<f64>,
    u32: Classes<u32>,
    bytes: usize,
    /// Requests of at least `MIN_ELEMS` elements so far: the pool's clock.
    clock: u64,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

fn with_pool<R>(f: impl FnOnce(&mut Pool) -> R) -> R {
    let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(Pool::default))
}

/// Element types the pool keeps.
pub trait Pooled: Copy + Send + 'static {
    #[doc(hidden)]
    fn classes(pool: &mut Pool) -> &mut Classes<Self>;
}

macro_rules! pooled {
    ($t:ty, $field:ident) => {
        impl Pooled for $t {
            fn classes(pool: &mut Pool) -> &mut Classes<Self> {
                &mut pool.$field
            }
        }
    };
}
pooled!(f32, f32);
pooled!(f64, f64);
pooled!(u32, u32);

/// Releases the buffers of `classes` freed before `before`; returns the bytes released.
fn release_idle<T: Pooled>(classes: &mut Classes<T>, before: u64) -> usize {
    let mut released = 0;
    classes.retain(|&cap, stack| {
        // Stamps grow from the bottom of a stack to its top.
        let old = stack.partition_point(|&(_, t)| t < before);
        released += old * cap * size_of::<T>();
        stack.drain(..old);
        !stack.is_empty()
    });
    released
}

/// The stamp of the longest-idle buffer of `classes` and its class.
fn oldest<T: Pooled>(classes: &Classes<T>) -> Option<(u64, usize)> {
    classes
        .iter()
        .filter_map(|(&cap, stack)| stack.first().map(|&(_, t)| (t, cap)))
        .min()
}

impl Pool {
    /// A free buffer of capacity `n` (at least `MIN_ELEMS`), if the pool has one.
    fn take<T: Pooled>(&mut self, n: usize) -> Option<Vec<T>> {
        self.clock += 1;
        if self.clock.is_multiple_of(SWEEP_EVERY) {
            self.sweep();
        }
        let classes = T::classes(self);
        let stack = classes.get_mut(&n)?;
        let (v, _) = stack.pop()?;
        if stack.is_empty() {
            classes.remove(&n);
        }
        self.bytes -= n * size_of::<T>();
        Some(v)
    }

    /// Keeps a freed buffer (at least `MIN_ELEMS`, at most `MAX_POOLED_BYTES`), making
    /// room by releasing the longest-idle ones.
    fn give<T: Pooled>(&mut self, v: Vec<T>) {
        let bytes = v.capacity() * size_of::<T>();
        while self.bytes + bytes > MAX_POOLED_BYTES && self.release_oldest() {}
        self.bytes += bytes;
        let stamp = self.clock;
        T::classes(self)
            .entry(v.capacity())
            .or_default()
            .push((v, stamp));
    }

    fn sweep(&mut self) {
        let before = self.clock.saturating_sub(MAX_IDLE);
        let released = release_idle(&mut self.f32, before)
            + release_idle(&mut self.f64, before)
            + release_idle(&mut self.u32, before);
        self.bytes -= released;
    }

    /// Releases the longest-idle buffer of any type; false when the pool is empty.
    fn release_oldest(&mut self) -> bool {
        let candidates = [
            oldest(&self.f32).map(|(t, c)| (t, 0, c)),
            oldest(&self.f64).map(|(t, c)| (t, 1, c)),
            oldest(&self.u32).map(|(t, c)| (t, 2, c)),
        ];
        let Some((_, kind, cap)) = candidates.into_iter().flatten().min() else {
            return false;
        };
        fn pop_bottom<T: Pooled>(classes: &mut Classes<T>, cap: usize) -> usize {
            let stack = classes.get_mut(&cap).expect("the class was just found");
            stack.remove(0);
            if stack.is_empty() {
                classes.remove(&cap);
            }
            cap * size_of::<T>()
        }
        self.bytes -= match kind {
            0 => pop_bottom(&mut self.f32, cap),
            1 => pop_bottom(&mut self.f64, cap),
            _ => pop_bottom(&mut self.u32, cap),
        };
        true
    }
}

/// An empty vector with room for `n` elements, reusing a freed buffer when one fits.
pub fn with_capacity<T: Pooled>(n: usize) -> Vec<T> {
    let mut span = super::profile::span("alloc");
    span.bytes(n * size_of::<T>());
    if n >= MIN_ELEMS {
        let reused = with_pool(|p| p.take::<T>(n));
        if let Some(mut v) = reused {
            v.clear();
            return v;
        }
    }
    Vec::with_capacity(n)
}

/// `n` copies of `value` in a (possibly reused) buffer.
pub fn filled<T: Pooled>(n: usize, value: T) -> Vec<T> {
    let mut span = super::profile::span("alloc");
    span.bytes(n * size_of::<T>());
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
    if bytes > MAX_POOLED_BYTES {
        return;
    }
    with_pool(|p| p.give(v));
}

/// Takes back a freed tensor buffer.
pub(crate) fn recycle(data: CpuData) {
    let _span = super::profile::span("free");
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

#[cfg(test)]
mod tests {
    use super::*;

    // The pool is process-wide and other unit tests allocate concurrently, so these
    // tests drive a private `Pool` through the same code paths instead of the global.

    fn take(p: &mut Pool, n: usize) -> Option<Vec<f32>> {
        p.take(n)
    }

    fn give(p: &mut Pool, v: Vec<f32>) {
        p.give(v)
    }

    #[test]
    fn a_surplus_is_released_and_needed_buffers_stay() {
        let mut p = Pool::default();
        let n = MIN_ELEMS;
        // Each "step" takes two buffers of size n and frees three (one made outside the
        // pool, as a buffer from elsewhere can be): the pool must not grow without bound.
        let mut made = 0;
        for _ in 0..10 * MAX_IDLE {
            let a = take(&mut p, n).unwrap_or_else(|| {
                made += 1;
                Vec::with_capacity(n)
            });
            let b = take(&mut p, n).unwrap_or_else(|| {
                made += 1;
                Vec::with_capacity(n)
            });
            give(&mut p, a);
            give(&mut p, b);
            give(&mut p, Vec::with_capacity(n));
        }
        let held = p.f32.get(&n).map_or(0, Vec::len);
        assert!(held as u64 <= MAX_IDLE + SWEEP_EVERY, "{held} buffers held");
        assert_eq!(p.bytes, held * n * 4);
        // The two buffers each step needs came from the pool after the first step.
        assert_eq!(made, 2);
    }

    #[test]
    fn an_unused_class_is_released() {
        let mut p = Pool::default();
        give(&mut p, Vec::with_capacity(3 * MIN_ELEMS));
        for _ in 0..MAX_IDLE + SWEEP_EVERY {
            let v = take(&mut p, MIN_ELEMS).unwrap_or_else(|| Vec::with_capacity(MIN_ELEMS));
            give(&mut p, v);
        }
        assert!(!p.f32.contains_key(&(3 * MIN_ELEMS)));
        assert_eq!(p.bytes, MIN_ELEMS * 4);
    }

    #[test]
    fn over_budget_the_oldest_buffer_makes_room() {
        let mut p = Pool::default();
        let big = MAX_POOLED_BYTES / 4 / 3;
        give(&mut p, Vec::with_capacity(big));
        p.clock += 1;
        give(&mut p, Vec::with_capacity(big + MIN_ELEMS));
        p.clock += 1;
        // A third buffer does not fit: the oldest (the first) goes, the new one stays.
        give(&mut p, Vec::with_capacity(big + 2 * MIN_ELEMS));
        assert!(!p.f32.contains_key(&big));
        assert!(p.f32.contains_key(&(big + MIN_ELEMS)));
        assert!(p.f32.contains_key(&(big + 2 * MIN_ELEMS)));
        assert!(p.bytes <= MAX_POOLED_BYTES);
    }
}
