//! The deferred-dispatch scheduler: kernel launches append to a pending list that is
//! encoded into one command encoder and one `queue.submit` on a readback, on `sync()`,
//! or at the size bound; uploads ride in the same queue order through an arena.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::params::Params;
use super::profile::{DispatchRecord, Recorder};
#[cfg(not(target_arch = "wasm32"))]
use super::readback::map_and_wait;
#[cfg(target_arch = "wasm32")]
use super::readback::no_blocking;
use super::readback::{map_async, wait_for_device};
use super::{
    Caches, GpuBuffer, GpuContext, Kernel, Work, DIRECT_UPLOAD_BYTES, MAX_PENDING, PARAM_BYTES,
    SUBMIT_CHUNK,
};
use crate::error::{Error, Result};

enum Command {
    Dispatch {
        pipeline: wgpu::ComputePipeline,
        bind_group: wgpu::BindGroup,
        param_offset: u32,
        groups: [u32; 3],
        /// The dispatch's index in the active profile, if one is recording.
        record: Option<usize>,
    },
    Upload {
        arena_offset: u64,
        dst: wgpu::Buffer,
        bytes: u64,
    },
    /// A buffer-to-buffer copy (no binding, so no binding limit): how work too large
    /// for one binding is cut into pieces and put back together.
    Copy {
        src: wgpu::Buffer,
        src_offset: u64,
        dst: wgpu::Buffer,
        dst_offset: u64,
        bytes: u64,
    },
}

/// Everything the scheduler keeps between launches, behind the context's lock.
pub(crate) struct State {
    pub(crate) caches: Caches,
    /// Bind groups by `[pipeline id, buffer ids...]` (any number of buffers: a
    /// multi-tensor kernel binds many).
    pub(crate) bind_groups: HashMap<Box<[u64]>, wgpu::BindGroup>,
    /// The key being looked up, kept to spare an allocation per launch.
    key: Vec<u64>,
    pending: Vec<Command>,
    params: Vec<u32>,
    params_arena: wgpu::Buffer,
    uploads: Vec<u8>,
    upload_arena: Option<wgpu::Buffer>,
    pub(crate) profile: Option<Recorder>,
    /// The device-side error flag (one `u32`, zero when nothing went wrong) that kernels
    /// reading indices from device memory set when an index is out of range; made by the
    /// first such launch after a check, read with the next readback or `sync`.
    flag: Option<Arc<GpuBuffer>>,
    /// The first error found while recording (a dispatch that could not run), returned
    /// by the next readback or sync.
    deferred: Option<Error>,
}

/// The op each code of the error flag stands for (a kernel writes its code).
pub(crate) const FLAG_OPS: [&str; 4] =
    ["", "index_select (or Embedding)", "gather", "cross_entropy"];

/// The error a set flag turns into at the sync that reads it.
fn flag_error(code: u32) -> Error {
    let op = FLAG_OPS
        .get(code as usize)
        .copied()
        .unwrap_or("an index kernel");
    Error::Argument {
        op,
        msg: "an index was out of range (found on the GPU at this readback; the op's \
              results since the previous readback are not valid)"
            .into(),
    }
}

impl State {
    pub(crate) fn new(device: &wgpu::Device) -> State {
        let params_arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgrad parameter arena"),
            size: MAX_PENDING as u64 * PARAM_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        State {
            caches: Caches::default(),
            bind_groups: HashMap::new(),
            key: Vec::new(),
            pending: Vec::new(),
            params: Vec::new(),
            params_arena,
            uploads: Vec::new(),
            flag: None,
            deferred: None,
            upload_arena: None,
            profile: None,
        }
    }
}

impl GpuContext {
    /// Records one dispatch of `k` over `groups` workgroups with the parameters `p`.
    /// `buffers` follow `k.slots`, then `k.extra`.
    /// For kernels without override constants or data-dependent loops.
    pub(crate) fn launch<P: Params>(
        &self,
        k: &'static Kernel,
        p: &P,
        buffers: &[&GpuBuffer],
        groups: [u32; 3],
    ) {
        self.launch_with(k, p, buffers, groups, Work::default())
    }

    /// [`GpuContext::launch`] of a kernel variant, declaring the dispatch's work.
    pub(crate) fn launch_with<P: Params>(
        &self,
        k: &'static Kernel,
        p: &P,
        buffers: &[&GpuBuffer],
        groups: [u32; 3],
        work: Work,
    ) {
        assert_eq!(
            k.params,
            P::INFO.name,
            "{}: launched with the wrong parameter struct",
            k.entry
        );
        self.launch_words_with(
            k,
            bytemuck::cast_slice(bytemuck::bytes_of(p)),
            buffers,
            groups,
            work,
        )
    }

    /// [`GpuContext::launch_with`] with the parameter struct's words.
    fn launch_words_with(
        &self,
        k: &'static Kernel,
        params: &[u32],
        buffers: &[&GpuBuffer],
        groups: [u32; 3],
        work: Work,
    ) {
        assert_eq!(
            buffers.len(),
            k.slots.len() + k.extra.len(),
            "{}: wrong number of buffers",
            k.entry
        );
        assert!(
            params.len() <= (PARAM_BYTES / 4) as usize,
            "{}: too many parameters",
            k.entry
        );
        if groups.contains(&0) {
            return;
        }
        if let Some((a, b)) = writable_alias(k, buffers) {
            // WebGPU refuses a dispatch that binds one buffer twice when either binding
            // is writable (native drivers run it); caught here on every backend so that
            // the native tests find what a browser would refuse.
            self.lock_state().deferred.get_or_insert(Error::Gpu(format!(
                "{}: one buffer is bound at bindings {a} and {b}, one of them writable \
                 (a wgrad bug: WebGPU refuses it)",
                k.entry
            )));
            return;
        }
        let limit = self.max_binding();
        if let Some(big) = buffers.iter().find(|b| b.buffer.size() > limit) {
            // No kernel can bind this buffer whole: the dispatch is skipped and the next
            // readback or sync returns the error (ops that can split their work check
            // first, so this is the last resort, never a panic or a wrong result).
            let mut st = self.lock_state();
            st.deferred.get_or_insert(Error::OutOfMemory {
                op: k.entry,
                msg: format!(
                    "a {} buffer is larger than the largest storage binding of {} ({}); \
                     run the work in smaller pieces (a smaller batch)",
                    super::fmt_bytes(big.buffer.size()),
                    self.info.name,
                    super::fmt_bytes(limit)
                ),
            });
            return;
        }
        let mut st = self.lock_state();
        if st.pending.len() >= MAX_PENDING {
            self.flush_locked(&mut st, None);
        }
        let p = self.pipeline(&mut st.caches, k, work.overrides, work.io);
        let mut key = std::mem::take(&mut st.key);
        key.clear();
        key.push(p.id as u64);
        key.extend(buffers.iter().map(|b| b.id));
        let bind_group = match st.bind_groups.get(key.as_slice()) {
            Some(bg) => bg.clone(),
            None => {
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &st.params_arena,
                        offset: 0,
                        size: std::num::NonZeroU64::new(PARAM_BYTES),
                    }),
                }];
                let bindings = k
                    .slots
                    .iter()
                    .copied()
                    .chain(k.extra.iter().map(|e| e.binding));
                for (b, s) in buffers.iter().zip(bindings) {
                    entries.push(wgpu::BindGroupEntry {
                        binding: s,
                        resource: b.buffer.as_entire_binding(),
                    });
                }
                let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(k.entry),
                    layout: &p.layout,
                    entries: &entries,
                });
                self.counters
                    .bind_groups_created
                    .fetch_add(1, Ordering::Relaxed);
                if st.bind_groups.len() > 65_536 {
                    st.bind_groups.clear();
                }
                st.bind_groups.insert(key.as_slice().into(), bg.clone());
                bg
            }
        };
        st.key = key;
        let base = st.params.len();
        let param_offset = (base * 4) as u32;
        st.params.extend_from_slice(params);
        st.params.resize(base + (PARAM_BYTES / 4) as usize, 0);
        let workgroups = groups.iter().map(|&g| g as u64).product::<u64>();
        let record = st
            .profile
            .as_mut()
            .filter(|prof| prof.records_this_thread())
            .map(|prof| {
                prof.push(DispatchRecord {
                    kernel: kernel_name(k, &work),
                    workgroups,
                    bytes_bound: buffers.iter().map(|b| b.buffer.size()).sum(),
                    loops: k.loops,
                    serial: work.serial,
                    reduced: work.reduced,
                    useful_flops: work.useful_flops,
                    executed_flops: work.executed_flops,
                    product: work.product,
                    gpu_ns: None,
                })
            });
        st.pending.push(Command::Dispatch {
            pipeline: p.pipeline.clone(),
            bind_group,
            param_offset,
            groups,
            record,
        });
        self.counters.dispatches.fetch_add(1, Ordering::Relaxed);
        self.counters
            .workgroups
            .fetch_add(workgroups, Ordering::Relaxed);
        if st.pending.len() >= SUBMIT_CHUNK {
            self.flush_locked(&mut st, None);
        }
    }

    /// Submits the pending work without waiting (the GPU starts on it while the host
    /// records what follows).
    pub(crate) fn submit(&self) {
        let mut st = self.lock_state();
        self.flush_locked(&mut st, None);
    }

    /// A new buffer holding `bytes`, written in queue order with the pending work.
    pub(crate) fn upload(self: &Arc<Self>, bytes: &[u8]) -> Result<GpuBuffer> {
        let buf = self.alloc(bytes.len() as u64)?;
        if bytes.is_empty() {
            return Ok(buf);
        }
        let mut st = self.lock_state();
        if bytes.len() > DIRECT_UPLOAD_BYTES {
            self.flush_locked(&mut st, None);
            self.queue.write_buffer(&buf.buffer, 0, bytes);
            return Ok(buf);
        }
        if st.uploads.len() + bytes.len() > 4 * DIRECT_UPLOAD_BYTES
            || st.pending.len() >= MAX_PENDING
        {
            self.flush_locked(&mut st, None);
        }
        let arena_offset = st.uploads.len() as u64;
        st.uploads.extend_from_slice(bytes);
        let aligned = st
            .uploads
            .len()
            .next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT as usize);
        st.uploads.resize(aligned, 0);
        st.pending.push(Command::Upload {
            arena_offset,
            dst: buf.buffer.clone(),
            bytes: bytes.len() as u64,
        });
        Ok(buf)
    }

    /// Copies `bytes` of `src` from `src_offset` to `dst` at `dst_offset`, in queue order
    /// with the pending work (offsets and size multiples of 4: whole elements).
    pub(crate) fn copy_range(
        &self,
        src: &GpuBuffer,
        src_offset: u64,
        dst: &GpuBuffer,
        dst_offset: u64,
        bytes: u64,
    ) {
        debug_assert!(
            [src_offset, dst_offset, bytes]
                .iter()
                .all(|v| v % wgpu::COPY_BUFFER_ALIGNMENT == 0),
            "copies move whole 4-byte elements"
        );
        debug_assert!(
            src_offset + bytes <= src.buffer.size() && dst_offset + bytes <= dst.buffer.size()
        );
        if bytes == 0 {
            return;
        }
        let mut st = self.lock_state();
        if st.pending.len() >= MAX_PENDING {
            self.flush_locked(&mut st, None);
        }
        st.pending.push(Command::Copy {
            src: src.buffer.clone(),
            src_offset,
            dst: dst.buffer.clone(),
            dst_offset,
            bytes,
        });
    }

    /// Encodes every pending command into one command buffer and submits it, with an
    /// optional final copy (a readback). Does not wait for the GPU, except while a
    /// profile with timestamps is recording (then it reads the timestamps back).
    pub(crate) fn flush_locked(&self, st: &mut State, readback: Option<Readback>) {
        if st.pending.is_empty() && readback.is_none() {
            return;
        }
        if !st.params.is_empty() {
            self.queue
                .write_buffer(&st.params_arena, 0, bytemuck::cast_slice(&st.params));
        }
        if !st.uploads.is_empty() {
            let need = st.uploads.len() as u64;
            let too_small = st.upload_arena.as_ref().is_none_or(|a| a.size() < need);
            if too_small {
                st.upload_arena = Some(self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgrad upload arena"),
                    size: need.next_power_of_two().max(1 << 16),
                    usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }));
                self.counters
                    .buffers_created
                    .fetch_add(1, Ordering::Relaxed);
            }
            let arena = st.upload_arena.as_ref().expect("upload arena exists");
            self.queue.write_buffer(arena, 0, &st.uploads);
        }
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgrad"),
            });
        let commands = std::mem::take(&mut st.pending);
        let timer = st.profile.as_ref().and_then(|p| p.timer());
        // (query pair, profile record) of each timed dispatch.
        let mut timed: Vec<(u32, usize)> = Vec::new();
        let mut i = 0;
        while i < commands.len() {
            if let Command::Upload {
                arena_offset,
                dst,
                bytes,
            } = &commands[i]
            {
                let arena = st.upload_arena.as_ref().expect("upload arena exists");
                encoder.copy_buffer_to_buffer(arena, *arena_offset, dst, 0, *bytes);
                i += 1;
                continue;
            }
            if let Command::Copy {
                src,
                src_offset,
                dst,
                dst_offset,
                bytes,
            } = &commands[i]
            {
                encoder.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *bytes);
                i += 1;
                continue;
            }
            // Timed dispatches get a pass each, with timestamps at its start and end;
            // otherwise consecutive dispatches share one pass.
            let timestamp_writes = match (timer, &commands[i]) {
                (
                    Some(t),
                    Command::Dispatch {
                        record: Some(r), ..
                    },
                ) => {
                    let q = timed.len() as u32;
                    timed.push((q, *r));
                    Some(wgpu::ComputePassTimestampWrites {
                        query_set: &t.query_set,
                        beginning_of_pass_write_index: Some(2 * q),
                        end_of_pass_write_index: Some(2 * q + 1),
                    })
                }
                _ => None,
            };
            let one_per_pass = timestamp_writes.is_some();
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes,
            });
            while let Some(Command::Dispatch {
                pipeline,
                bind_group,
                param_offset,
                groups,
                ..
            }) = commands.get(i)
            {
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, bind_group, &[*param_offset]);
                pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                i += 1;
                if one_per_pass {
                    break;
                }
            }
        }
        if let (Some(t), false) = (timer, timed.is_empty()) {
            t.resolve(&mut encoder, timed.len() as u32);
        }
        if let Some(r) = readback {
            if r.bytes > 0 {
                encoder.copy_buffer_to_buffer(r.src, 0, r.dst, 0, r.bytes);
            }
            if let Some((flag, at)) = r.flag {
                encoder.copy_buffer_to_buffer(flag, 0, r.dst, at, 4);
            }
        }
        self.queue.submit([encoder.finish()]);
        self.counters.submits.fetch_add(1, Ordering::Relaxed);
        st.params.clear();
        st.uploads.clear();
        if !timed.is_empty() {
            let times = timer.map(|t| t.read(&self.device, timed.len() as u32));
            if let (Some(Ok(ns)), Some(prof)) = (times, st.profile.as_mut()) {
                for ((_, record), d) in timed.iter().zip(ns) {
                    prof.set_time(*record, d);
                }
            }
        }
    }

    /// Submits all pending work and waits until the GPU has finished it.
    /// A set error flag (an out-of-range index on the device) is returned here as
    /// [`Error::Argument`]. In the browser nothing may block: use
    /// [`GpuContext::sync_async`] there.
    pub fn sync(self: &Arc<Self>) -> Result<()> {
        if let Some(e) = self.lock_state().deferred.take() {
            return Err(e);
        }
        if self.lock_state().flag.is_some() {
            // Reading nothing still reads (and clears) the flag.
            return self.read_with_flag(None, 0).map(|_| ());
        }
        self.submit();
        wait_for_device(&self.device)?;
        self.take_device_error()
    }

    /// [`GpuContext::sync`] without blocking: awaits the device (in the browser, the
    /// queue's work-done promise; natively it waits as `sync` does).
    pub async fn sync_async(self: &Arc<Self>) -> Result<()> {
        if let Some(e) = self.lock_state().deferred.take() {
            return Err(e);
        }
        if self.lock_state().flag.is_some() {
            return self.read_async_with_flag(None, 0).await.map(|_| ());
        }
        self.submit();
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        #[cfg(not(target_arch = "wasm32"))]
        wait_for_device(&self.device)?;
        rx.receive()
            .await
            .ok_or_else(|| Error::Gpu("the device was lost while waiting".into()))?;
        self.take_device_error()
    }

    /// The device's error flag, made (zeroed, in queue order) if no launch since the last
    /// check has made one. Kernels that read indices from device memory bind it.
    pub(crate) fn error_flag(self: &Arc<Self>) -> Result<Arc<GpuBuffer>> {
        if let Some(f) = &self.lock_state().flag {
            return Ok(f.clone());
        }
        let made = Arc::new(self.upload(&[0u8; 4])?);
        let mut st = self.lock_state();
        Ok(st.flag.get_or_insert(made).clone())
    }

    /// Reads the first `bytes` bytes of `buf` back to the host (one submit, one wait).
    /// The device's error flag, if set since the last check, rides in the same copy and
    /// turns the read into [`Error::Argument`].
    pub(crate) fn read(self: &Arc<Self>, buf: &GpuBuffer, bytes: u64) -> Result<Vec<u8>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        self.read_with_flag(Some(buf), bytes)
    }

    /// [`GpuContext::read`] without blocking (the browser's way; natively the same wait).
    pub(crate) async fn read_async(
        self: &Arc<Self>,
        buf: &GpuBuffer,
        bytes: u64,
    ) -> Result<Vec<u8>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        self.read_async_with_flag(Some(buf), bytes).await
    }

    fn read_with_flag(self: &Arc<Self>, buf: Option<&GpuBuffer>, bytes: u64) -> Result<Vec<u8>> {
        // In the browser, refuse before taking the flag (which the async read reports).
        #[cfg(target_arch = "wasm32")]
        {
            let _ = (buf, bytes);
            Err(no_blocking())
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let Some(pending) = self.begin_read(buf, bytes)? else {
                return Ok(Vec::new());
            };
            let mapped = map_and_wait(&self.device, &pending.staging.buffer.slice(..pending.total));
            pending.finish(mapped)
        }
    }

    async fn read_async_with_flag(
        self: &Arc<Self>,
        buf: Option<&GpuBuffer>,
        bytes: u64,
    ) -> Result<Vec<u8>> {
        let Some(pending) = self.begin_read(buf, bytes)? else {
            return Ok(Vec::new());
        };
        let mapped = map_async(&self.device, &pending.staging.buffer.slice(..pending.total)).await;
        pending.finish(mapped)
    }

    /// Submits the pending work with the copy of `bytes` of `buf` (and of the error flag,
    /// when one is being checked) into a staging buffer, ready to map. `None` when there
    /// is nothing to read.
    fn begin_read(
        self: &Arc<Self>,
        buf: Option<&GpuBuffer>,
        bytes: u64,
    ) -> Result<Option<PendingRead>> {
        if let Some(e) = self.lock_state().deferred.take() {
            return Err(e);
        }
        let flag = self.lock_state().flag.take();
        let at = bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
        let total = at + if flag.is_some() { 4 } else { 0 };
        if total == 0 {
            return Ok(None);
        }
        let staging = self.alloc_staging(total);
        self.counters.readbacks.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = self.lock_state();
            let readback = Readback {
                src: buf.map_or(&staging.buffer, |b| &b.buffer),
                dst: &staging.buffer,
                bytes,
                flag: flag.as_ref().map(|f| (&f.buffer, at)),
            };
            self.flush_locked(&mut st, Some(readback));
        }
        Ok(Some(PendingRead {
            staging,
            total,
            bytes,
            flag_at: flag.map(|_| at),
        }))
    }
}

/// A readback submitted and waiting to be mapped.
struct PendingRead {
    staging: super::pool::StagingBuffer,
    total: u64,
    bytes: u64,
    /// Where the error flag's copy sits in the staging buffer, when one was checked.
    flag_at: Option<u64>,
}

impl PendingRead {
    /// The data once mapped (`mapped`: the staging buffer's bytes), the flag checked.
    fn finish(self, mapped: Result<Vec<u8>>) -> Result<Vec<u8>> {
        let ctx = self.staging.ctx.clone();
        if mapped.is_ok() {
            self.staging.buffer.unmap();
        } else {
            // A buffer left mapped (or still being mapped) must not go back to the pool.
            std::mem::forget(self.staging);
        }
        let mut data = mapped?;
        if let Some(at) = self.flag_at {
            let at = at as usize;
            let code = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            if code != 0 {
                // A device error, if any, stays for the next readback.
                return Err(flag_error(code));
            }
        }
        ctx.take_device_error()?;
        data.truncate(self.bytes as usize);
        Ok(data)
    }
}

/// The copies a flush ends with: `bytes` of `src` to the start of the staging buffer
/// `dst`, and the error flag (when one is being checked) to `dst` at an offset.
pub(crate) struct Readback<'a> {
    src: &'a wgpu::Buffer,
    dst: &'a wgpu::Buffer,
    bytes: u64,
    flag: Option<(&'a wgpu::Buffer, u64)>,
}

/// Two bindings of `k` given the same buffer where either is writable, if any.
fn writable_alias(k: &Kernel, buffers: &[&GpuBuffer]) -> Option<(u32, u32)> {
    // (binding, read-only) of buffer i: the fixed slots, then the extra bindings. No
    // allocation: this runs on every launch.
    let slot = |i: usize| match k.slots.get(i) {
        Some(&s) => (s, super::slot::read_only(s)),
        None => {
            let e = k.extra[i - k.slots.len()];
            (e.binding, e.read_only)
        }
    };
    for (i, written) in buffers.iter().enumerate() {
        let (binding, read_only) = slot(i);
        if read_only {
            continue;
        }
        if let Some(j) = (0..buffers.len()).find(|&j| j != i && buffers[j].id == written.id) {
            return Some((binding, slot(j).0));
        }
    }
    None
}

/// A kernel's name in profiles: the entry point, with its override values if any.
fn kernel_name(k: &Kernel, work: &Work) -> String {
    let io = super::half_io::describe(work.io);
    if k.overrides.is_empty() {
        return format!("{}{io}", k.entry);
    }
    let values: Vec<String> = k
        .overrides
        .iter()
        .zip(work.overrides)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    format!("{}[{}]{io}", k.entry, values.join(","))
}
