//! Splitting CPU work over threads: a persistent `rayon` pool of [`threads`] workers,
//! started once on first use (a job's parts go to waiting workers: no thread start per
//! call). Only work worth at least [`MIN_WORK`] is split. The count is
//! `WGRAD_NUM_THREADS` when set, else the machine's available parallelism. The browser
//! build (wasm32) runs every part on the calling thread.

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

/// The pool the parts run on: `threads() - 1` workers beside the calling thread, which
/// runs a part itself. `None` when the pool could not start (the parts then run one
/// after another on the calling thread: slower, never wrong).
#[cfg(not(target_arch = "wasm32"))]
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads().saturating_sub(1).max(1))
            .thread_name(|i| format!("wgrad-cpu-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Runs every job of `jobs` (the first on this thread, the rest on the pool) and returns
/// when all have finished.
fn run_all<'a>(mut jobs: Vec<Box<dyn FnOnce() + Send + 'a>>) {
    if jobs.is_empty() {
        return;
    }
    let first = jobs.remove(0);
    // The parts' spans record nothing of their own (see `profile::suspended`).
    let first = move || super::profile::suspended(first);
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(pool) = pool() {
        pool.in_place_scope(|s| {
            for job in jobs {
                s.spawn(move |_| job());
            }
            first();
        });
        return;
    }
    first();
    for job in jobs {
        job();
    }
}

/// Runs `f(part index, item range)` over `parts` near-equal contiguous ranges of
/// `0..items`, the first on this thread and the rest on the pool.
pub fn for_parts(items: usize, parts: usize, f: impl Fn(usize, Range<usize>) + Sync) {
    let range = |p: usize| (p * items / parts)..((p + 1) * items / parts);
    if parts <= 1 {
        super::profile::suspended(|| f(0, 0..items));
        return;
    }
    let f = &f;
    let jobs = (0..parts)
        .map(|p| Box::new(move || f(p, range(p))) as Box<dyn FnOnce() + Send + '_>)
        .collect();
    run_all(jobs);
}

/// A raw pointer that may cross into the pool's workers during [`for_parts`]; users
/// guarantee that the parts write disjoint elements.
#[derive(Clone, Copy)]
pub struct SendPtr<T>(pub *mut T);
// SAFETY: only used for disjoint writes from parts that all end before the owner
// resumes (`for_parts` returns only after every part has finished).
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
        super::profile::suspended(|| f(0, out));
        return;
    }
    let block = out.len() / items;
    let f = &f;
    let mut jobs: Vec<Box<dyn FnOnce() + Send + '_>> = Vec::with_capacity(parts);
    let mut rest = out;
    let mut first = 0;
    for p in 0..parts {
        let end = (p + 1) * items / parts;
        let (mine, tail) = std::mem::take(&mut rest).split_at_mut((end - first) * block);
        rest = tail;
        let at = first;
        jobs.push(Box::new(move || f(at, mine)));
        first = end;
    }
    run_all(jobs);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_runs_once_and_blocks_are_disjoint() {
        let seen: Vec<std::sync::atomic::AtomicUsize> =
            (0..1000).map(|_| Default::default()).collect();
        for_parts(1000, 4, |_, r| {
            for i in r {
                seen[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        assert!(seen
            .iter()
            .all(|c| c.load(std::sync::atomic::Ordering::Relaxed) == 1));
        let mut out = vec![0usize; 12 * 5];
        for_blocks_mut(&mut out, 12, MIN_WORK * 8, |first, run| {
            for (k, v) in run.iter_mut().enumerate() {
                *v = first * 5 + k;
            }
        });
        assert_eq!(out, (0..60).collect::<Vec<_>>());
    }
}
