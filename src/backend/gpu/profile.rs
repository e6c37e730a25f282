//! Per-kernel GPU profiling ([`crate::Device::profile`]): every dispatch the profiling
//! thread records while its profile is active, with its grid, the bytes it binds and the work it declares, and,
//! where the adapter supports timestamp queries, the GPU time between the start and the
//! end of its compute pass. Timed dispatches run one per pass, so a profiled run is
//! slower than a plain one; the counts are the same.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::readback::map_and_wait;
use super::{GpuContext, MAX_PENDING};
use crate::error::{Error, Result};

/// One dispatch as a profile saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct DispatchRecord {
    /// The entry point, with its variant's override values in brackets.
    pub kernel: String,
    /// Workgroups launched.
    pub workgroups: u64,
    /// Bytes of the storage buffers bound (whole pooled buffers; the parameter block is
    /// not counted).
    pub bytes_bound: u64,
    /// True when the kernel's threads loop over a data-dependent number of elements.
    pub loops: bool,
    /// Elements each thread loops over serially (declared by the op; 0 without a loop).
    pub serial: u64,
    /// Elements the dispatch reduces, for reductions (0 otherwise).
    pub reduced: u64,
    /// Floating-point operations the result needs (matrix products; 0 otherwise).
    pub useful_flops: u64,
    /// Floating-point operations the threads execute, partial tiles included.
    pub executed_flops: u64,
    /// For matrix products: M, N, K and the batches this dispatch covers.
    pub product: Option<[u64; 4]>,
    /// GPU time of the dispatch in nanoseconds, where the adapter has timestamp queries;
    /// on the CPU, the primitive's own wall time (less the records inside it).
    pub gpu_ns: Option<f64>,
}

/// The dispatches of one kernel variant, summed.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelSummary {
    /// The entry point and variant.
    pub kernel: String,
    /// Dispatches.
    pub dispatches: u64,
    /// Workgroups over all its dispatches.
    pub workgroups: u64,
    /// Bytes bound over all its dispatches.
    pub bytes_bound: u64,
    /// Useful floating-point operations.
    pub useful_flops: u64,
    /// Executed floating-point operations.
    pub executed_flops: u64,
    /// GPU time in nanoseconds, where measured.
    pub gpu_ns: Option<f64>,
}

/// What [`crate::Device::profile`] recorded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    /// The device's name.
    pub device: String,
    /// True when dispatches were timed (the adapter has timestamp queries).
    pub timestamps: bool,
    /// Every dispatch, in recording order.
    pub dispatches: Vec<DispatchRecord>,
}

impl Profile {
    /// Dispatches summed per kernel variant, the most expensive first (by GPU time where
    /// measured, else by workgroups).
    pub fn by_kernel(&self) -> Vec<KernelSummary> {
        let mut map: BTreeMap<&str, KernelSummary> = BTreeMap::new();
        for d in &self.dispatches {
            let s = map.entry(&d.kernel).or_insert_with(|| KernelSummary {
                kernel: d.kernel.clone(),
                dispatches: 0,
                workgroups: 0,
                bytes_bound: 0,
                useful_flops: 0,
                executed_flops: 0,
                gpu_ns: None,
            });
            s.dispatches += 1;
            s.workgroups += d.workgroups;
            s.bytes_bound += d.bytes_bound;
            s.useful_flops += d.useful_flops;
            s.executed_flops += d.executed_flops;
            if let Some(t) = d.gpu_ns {
                *s.gpu_ns.get_or_insert(0.0) += t;
            }
        }
        let mut out: Vec<KernelSummary> = map.into_values().collect();
        out.sort_by(|a, b| {
            let key = |s: &KernelSummary| (s.gpu_ns.unwrap_or(0.0), s.workgroups as f64);
            key(b)
                .partial_cmp(&key(a))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        out
    }

    /// Total GPU time of the timed dispatches in nanoseconds (`None` without timestamps).
    pub fn gpu_ns(&self) -> Option<f64> {
        self.timestamps
            .then(|| self.dispatches.iter().filter_map(|d| d.gpu_ns).sum())
    }

    /// Workgroups over all dispatches.
    pub fn workgroups(&self) -> u64 {
        self.dispatches.iter().map(|d| d.workgroups).sum()
    }

    /// Useful and executed floating-point operations of the matrix products.
    pub fn flops(&self) -> (u64, u64) {
        self.dispatches.iter().fold((0, 0), |(u, e), d| {
            (u + d.useful_flops, e + d.executed_flops)
        })
    }

    /// Useful over executed floating-point operations of the matrix products (`None` when
    /// there were none).
    pub fn useful_fraction(&self) -> Option<f64> {
        let (u, e) = self.flops();
        (e > 0).then(|| u as f64 / e as f64)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cpu = self.device == "cpu";
        let (useful, executed) = self.flops();
        writeln!(
            f,
            "profile on {}: {} {}, {} workgroups{}",
            self.device,
            self.dispatches.len(),
            if cpu { "primitive calls" } else { "dispatches" },
            self.workgroups(),
            match self.gpu_ns() {
                Some(ns) if cpu => format!(", {:.3} ms of wall time in them", ns / 1e6),
                Some(ns) => format!(", {:.3} ms of GPU time", ns / 1e6),
                None if cpu => ", no times (no clock in this build)".into(),
                None => ", no GPU times (the adapter has no timestamp queries)".into(),
            }
        )?;
        if executed > 0 {
            writeln!(
                f,
                "matrix products: {:.1} MFLOP useful of {:.1} MFLOP executed ({:.1}%)",
                useful as f64 / 1e6,
                executed as f64 / 1e6,
                100.0 * useful as f64 / executed as f64
            )?;
        }
        writeln!(
            f,
            "{:<48} {:>6} {:>10} {:>11} {:>10}",
            "kernel",
            "calls",
            "workgroups",
            "MiB bound",
            if cpu { "CPU ms" } else { "GPU ms" }
        )?;
        for k in self.by_kernel() {
            writeln!(
                f,
                "{:<48} {:>6} {:>10} {:>11.2} {:>10}",
                k.kernel,
                k.dispatches,
                k.workgroups,
                k.bytes_bound as f64 / (1u64 << 20) as f64,
                k.gpu_ns
                    .map_or_else(|| "-".into(), |ns| format!("{:.4}", ns / 1e6))
            )?;
        }
        Ok(())
    }
}

/// Timestamp queries for the dispatches of one flush.
pub(crate) struct Timer {
    pub(crate) query_set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    period_ns: f64,
}

impl Timer {
    fn new(ctx: &GpuContext) -> Timer {
        let queries = 2 * MAX_PENDING as u32;
        let bytes = queries as u64 * 8;
        let query_set = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("wgrad profile"),
            ty: wgpu::QueryType::Timestamp,
            count: queries,
        });
        let buffer = |usage| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgrad profile timestamps"),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        Timer {
            query_set,
            resolve: buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
            readback: buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
            period_ns: ctx.queue.get_timestamp_period() as f64,
        }
    }

    /// Records the copy of the first `pairs` start/end pairs to the readback buffer.
    pub(crate) fn resolve(&self, encoder: &mut wgpu::CommandEncoder, pairs: u32) {
        encoder.resolve_query_set(&self.query_set, 0..2 * pairs, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, pairs as u64 * 16);
    }

    /// Waits for the submitted work and returns each pair's duration in nanoseconds.
    pub(crate) fn read(&self, device: &wgpu::Device, pairs: u32) -> Result<Vec<f64>> {
        let slice = self.readback.slice(..pairs as u64 * 16);
        let bytes = map_and_wait(device, &slice);
        self.readback.unmap();
        let bytes = bytes?;
        let ticks: &[u64] = bytemuck::cast_slice(&bytes);
        Ok(ticks
            .chunks_exact(2)
            .map(|p| p[1].saturating_sub(p[0]) as f64 * self.period_ns)
            .collect())
    }
}

/// The profile being recorded on a device.
pub(crate) struct Recorder {
    records: Vec<DispatchRecord>,
    timer: Option<Timer>,
    /// The thread that started the profile: only its dispatches are recorded.
    thread: std::thread::ThreadId,
}

impl Recorder {
    /// True when the calling thread is the one being profiled.
    pub(crate) fn records_this_thread(&self) -> bool {
        self.thread == std::thread::current().id()
    }

    pub(crate) fn push(&mut self, r: DispatchRecord) -> usize {
        self.records.push(r);
        self.records.len() - 1
    }

    pub(crate) fn timer(&self) -> Option<&Timer> {
        self.timer.as_ref()
    }

    pub(crate) fn set_time(&mut self, record: usize, ns: f64) {
        if let Some(r) = self.records.get_mut(record) {
            r.gpu_ns = Some(ns);
        }
    }
}

impl GpuContext {
    /// Starts recording dispatches (after finishing the work already recorded).
    pub(crate) fn begin_profile(self: &Arc<Self>) -> Result<()> {
        self.sync()?;
        let mut st = self.lock_state();
        if st.profile.is_some() {
            return Err(Error::Argument {
                op: "profile",
                msg: "a profile is already recording on this device".into(),
            });
        }
        st.profile = Some(Recorder {
            records: Vec::new(),
            timer: self.has_timestamps().then(|| Timer::new(self)),
            thread: std::thread::current().id(),
        });
        Ok(())
    }

    /// Finishes the recorded work and returns the profile.
    pub(crate) fn end_profile(self: &Arc<Self>) -> Result<Profile> {
        let synced = self.sync();
        let rec = self.lock_state().profile.take();
        synced?;
        let rec = rec.ok_or_else(|| Error::Argument {
            op: "profile",
            msg: "no profile was recording".into(),
        })?;
        Ok(Profile {
            device: format!("gpu ({}, {:?})", self.info.name, self.info.backend),
            timestamps: rec.timer.is_some(),
            dispatches: rec.records,
        })
    }
}
