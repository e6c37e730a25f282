//! Per-primitive CPU profiling ([`crate::Device::profile`] on the CPU): every backend
//! primitive the profiling thread runs while its profile is active, as a
//! [`DispatchRecord`] whose time is the primitive's wall time on the CPU (its own time:
//! a primitive that calls another, or a buffer allocation inside one, is recorded
//! separately and not counted twice). Buffer requests (`alloc`) and releases (`free`)
//! are records too, so a profile's times add up to the part of a step spent below the
//! op layer; the rest of the step's wall time is graph bookkeeping above it.
//!
//! A span costs one thread-local check when no profile is active. The browser build
//! (wasm32) has no clock to read, so its profiles stay empty.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::gpu::profile::{DispatchRecord, Profile};
use crate::error::{Error, Result};

/// True while some thread holds a CPU profile.
static BUSY: AtomicBool = AtomicBool::new(false);

#[cfg(not(target_arch = "wasm32"))]
type Clock = std::time::Instant;

/// A span being timed: when it started and how long the spans inside it took.
#[cfg(not(target_arch = "wasm32"))]
struct Frame {
    start: Clock,
    inner_ns: f64,
}

#[derive(Default)]
struct Recording {
    records: Vec<DispatchRecord>,
    #[cfg(not(target_arch = "wasm32"))]
    stack: Vec<Frame>,
}

thread_local! {
    static RECORDING: RefCell<Option<Recording>> = const { RefCell::new(None) };
}

/// Starts recording this thread's primitives until the returned guard finishes (or
/// drops, as when the profiled closure panics); an [`Error::Argument`] while another
/// profile (from any thread) is recording.
pub(crate) fn begin() -> Result<Recorder> {
    if BUSY
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(Error::Argument {
            op: "profile",
            msg: "a profile is already recording on the CPU; profiles do not nest".into(),
        });
    }
    RECORDING.with(|r| *r.borrow_mut() = Some(Recording::default()));
    Ok(Recorder(()))
}

/// A CPU profile being recorded on this thread (see [`begin`]).
pub(crate) struct Recorder(());

impl Recorder {
    /// Stops recording and returns what was recorded.
    pub(crate) fn finish(self) -> Profile {
        let rec = RECORDING
            .with(|r| r.borrow_mut().take())
            .unwrap_or_default();
        Profile {
            device: "cpu".into(),
            timestamps: cfg!(not(target_arch = "wasm32")),
            dispatches: rec.records,
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        RECORDING.with(|r| r.borrow_mut().take());
        BUSY.store(false, Ordering::Release);
    }
}

/// Times the primitive `kernel` until the returned guard drops. Free when no profile
/// records on this thread.
#[must_use = "the span times until it is dropped"]
pub(crate) fn span(kernel: &'static str) -> Span {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let on = RECORDING.with(|r| match r.borrow_mut().as_mut() {
            Some(rec) => {
                rec.stack.push(Frame {
                    start: Clock::now(),
                    inner_ns: 0.0,
                });
                true
            }
            None => false,
        });
        Span {
            kernel: on.then_some(kernel),
            product: None,
            flops: 0,
            bytes: 0,
        }
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = kernel;
        Span {
            kernel: None,
            product: None,
            flops: 0,
            bytes: 0,
        }
    }
}

/// Runs `f` with this thread's recording set aside: the parts of a job split over
/// threads ([`super::parallel`]) record nothing of their own, so the spans inside them
/// neither count some parts (the calling thread's) and not others, nor split the
/// enclosing primitive's time.
pub(crate) fn suspended<R>(f: impl FnOnce() -> R) -> R {
    let saved = RECORDING.with(|r| r.borrow_mut().take());
    let out = f();
    if saved.is_some() {
        RECORDING.with(|r| *r.borrow_mut() = saved);
    }
    out
}

/// An open span (see [`span`]).
pub(crate) struct Span {
    kernel: Option<&'static str>,
    product: Option<[u64; 4]>,
    flops: u64,
    bytes: u64,
}

impl Span {
    /// Declares that the span multiplies `m x k` by `k x n` matrices `batches` times
    /// (a product, or a fused layer's products), so the record carries their useful
    /// floating-point operations.
    pub(crate) fn product(&mut self, m: usize, n: usize, k: usize, batches: usize) {
        if self.kernel.is_some() {
            self.product = Some([m as u64, n as u64, k as u64, batches as u64]);
            self.flops = 2 * (m * n) as u64 * k as u64 * batches as u64;
        }
    }

    /// Records `bytes` as the bytes the span touched (a buffer request's size).
    pub(crate) fn bytes(&mut self, bytes: usize) {
        self.bytes = bytes as u64;
    }

    /// Adds the products `batches` times `[m, k] x [k, n]` to the span's useful
    /// floating-point operations (for a span whose products differ in shape).
    pub(crate) fn add_products(&mut self, m: usize, n: usize, k: usize, batches: usize) {
        self.flops += 2 * (m * n) as u64 * k as u64 * batches as u64;
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(kernel) = self.kernel {
            RECORDING.with(|r| {
                let mut r = r.borrow_mut();
                let Some(rec) = r.as_mut() else { return };
                let Some(frame) = rec.stack.pop() else { return };
                let total = frame.start.elapsed().as_secs_f64() * 1e9;
                if let Some(parent) = rec.stack.last_mut() {
                    parent.inner_ns += total;
                }
                let flops = self.flops;
                rec.records.push(DispatchRecord {
                    kernel: kernel.to_string(),
                    workgroups: 0,
                    bytes_bound: self.bytes,
                    loops: false,
                    serial: 0,
                    reduced: 0,
                    useful_flops: flops,
                    executed_flops: flops,
                    product: self.product,
                    gpu_ns: Some((total - frame.inner_ns).max(0.0)),
                });
            });
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn nested_spans_record_their_own_time_once() {
        let rec = begin().unwrap();
        assert!(begin().is_err(), "profiles do not nest");
        {
            let mut outer = span("outer");
            outer.product(2, 3, 4, 1);
            std::thread::sleep(std::time::Duration::from_millis(2));
            let _inner = span("inner");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let p = rec.finish();
        assert_eq!(p.dispatches.len(), 2);
        assert_eq!(p.dispatches[0].kernel, "inner");
        assert_eq!(p.dispatches[1].kernel, "outer");
        assert_eq!(p.dispatches[1].useful_flops, 48);
        // Each slept about 2 ms; the outer's own time excludes the inner's.
        for d in &p.dispatches {
            let ns = d.gpu_ns.unwrap();
            assert!((1.5e6..1.0e9).contains(&ns), "{}: {ns} ns", d.kernel);
        }
        // Nothing is recorded once the profile has ended.
        drop(span("after"));
        assert!(begin().unwrap().finish().dispatches.is_empty());
    }
}
