//! Splitting CPU work over threads. Scoped standard-library threads, started per call
//! (tens of microseconds), so only work worth at least [`MIN_WORK`] is split. The count
//! is `WGRAD_NUM_THREADS` when set, else the machine's available parallelism.

use std::ops::Range;
use std::sync::OnceLock;

/// Work units (multiply-adds, elements touched) below which a job runs on one thread.
pub const MIN_WORK: usize = 1 << 21;

/// Threads CPU ops may use.
pub fn threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("WGRAD_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

/// How many parts `items` items of `work` total units split into.
pub fn parts(items: usize, work: usize) -> usize {
    if work < MIN_WORK {
        1
    } else {
        threads().min(items).min(work / (MIN_WORK / 2)).max(1)
    }
}

/// Runs `f(part index, item range)` over `parts` near-equal contiguous ranges of
/// `0..items`, the first on this thread and the rest on scoped threads.
pub fn for_parts(items: usize, parts: usize, f: impl Fn(usize, Range<usize>) + Sync) {
    let range = |p: usize| (p * items / parts)..((p + 1) * items / parts);
    if parts <= 1 {
        f(0, 0..items);
        return;
    }
    std::thread::scope(|s| {
        for p in 1..parts {
            let f = &f;
            s.spawn(move || f(p, range(p)));
        }
        f(0, range(0));
    });
}

/// A raw pointer that may cross into the scoped threads of [`for_parts`]; users
/// guarantee that the parts write disjoint elements.
#[derive(Clone, Copy)]
pub struct SendPtr<T>(pub *mut T);
// SAFETY: only used for disjoint writes from parts that all end before the owner
// resumes (scoped threads).
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// Splits `out` (made of `items` equal blocks) into contiguous runs of whole blocks and
/// calls `f(first item, that run)` for each, on several threads when `work` is large.
pub fn for_blocks_mut<T: Send>(
    out: &mut [T],
    items: usize,
    work: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let parts = parts(items, work);
    if parts <= 1 || items == 0 {
        f(0, out);
        return;
    }
    let block = out.len() / items;
    std::thread::scope(|s| {
        let mut rest = out;
        let mut first = 0;
        for p in 0..parts {
            let end = (p + 1) * items / parts;
            let (mine, tail) = rest.split_at_mut((end - first) * block);
            rest = tail;
            let f = &f;
            if p + 1 == parts {
                f(first, mine);
            } else {
                s.spawn(move || f(first, mine));
            }
            first = end;
        }
    });
}
