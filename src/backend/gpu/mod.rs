//! The GPU backend: one wgpu device and queue, the deferred-dispatch scheduler, the
//! buffer pool, and caches of shader modules, pipelines and bind groups.
//!
//! A kernel launch appends a dispatch to the pending list and returns at once. The list
//! is encoded into one command encoder and one `queue.submit` when a value is read
//! back, on `sync()`, or when it reaches [`MAX_PENDING`] dispatches. Per-dispatch
//! parameters (shapes, strides, scalars) go into one parameter arena bound with a dynamic
//! offset, and host uploads into one upload arena copied in queue order, so a steady
//! training loop creates no buffers, pipelines or bind groups.

pub mod adapter;
pub(crate) mod pool;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use adapter::{list_adapters, AdapterSummary};
pub use pool::GpuBuffer;

use crate::error::{Error, Result};

/// Dispatches recorded before the scheduler submits on its own.
pub const MAX_PENDING: usize = 1024;
/// Bytes of parameters one dispatch may pass (64 `u32` words); also the arena stride.
const PARAM_BYTES: u64 = 256;
/// Uploads larger than this skip the upload arena and are written directly after a flush.
const DIRECT_UPLOAD_BYTES: usize = 8 << 20;

/// A shader file: one op family, forward and backward entry points side by side.
pub(crate) struct ShaderFile {
    pub name: &'static str,
    pub source: &'static str,
}

/// Declarations and helpers shared by every shader file (prepended at compile time).
pub const PRELUDE: &str = include_str!("../../../shaders/prelude.wgsl");

/// Binding slots, fixed across all shaders (see `shaders/prelude.wgsl`):
/// 1-3 read-only `f32` inputs, 4 a read-only `u32` input, 5-7 `f32` outputs,
/// 8 a `u32` output. Binding 0 is the parameter block.
pub(crate) mod slot {
    pub const X0: u32 = 1;
    pub const X1: u32 = 2;
    pub const X2: u32 = 3;
    pub const XI: u32 = 4;
    pub const Y0: u32 = 5;
    pub const Y1: u32 = 6;
    #[allow(dead_code)] // declared for three-output kernels
    pub const Y2: u32 = 7;
    pub const YI: u32 = 8;
}

/// One compute entry point and the binding slots it uses, in the order buffers are passed.
pub(crate) struct Kernel {
    pub file: &'static ShaderFile,
    pub entry: &'static str,
    pub slots: &'static [u32],
}

/// Counts of GPU objects created and memory held, for tests and for curious users.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    /// wgpu buffers created so far (tensor storage, readback staging, arenas).
    pub buffers_created: u64,
    /// Compute pipelines compiled so far.
    pub pipelines_created: u64,
    /// Bind groups created so far.
    pub bind_groups_created: u64,
    /// `queue.submit` calls so far.
    pub submits: u64,
    /// Kernel dispatches recorded so far.
    pub dispatches: u64,
    /// Bytes of pooled buffers currently held by tensors.
    pub bytes_in_use: u64,
    /// The largest `bytes_in_use` seen.
    pub peak_bytes: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub buffers_created: AtomicU64,
    pub pipelines_created: AtomicU64,
    pub bind_groups_created: AtomicU64,
    pub submits: AtomicU64,
    pub dispatches: AtomicU64,
    pub bytes_in_use: AtomicU64,
    pub peak_bytes: AtomicU64,
}

struct Pipeline {
    id: usize,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

enum Command {
    Dispatch {
        pipeline: wgpu::ComputePipeline,
        bind_group: wgpu::BindGroup,
        param_offset: u32,
        groups: [u32; 3],
    },
    Upload {
        arena_offset: u64,
        dst: wgpu::Buffer,
        bytes: u64,
    },
}

pub(crate) struct State {
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    pipelines: HashMap<(&'static str, &'static str), Arc<Pipeline>>,
    pub(crate) bind_groups: HashMap<(usize, [u64; 8]), wgpu::BindGroup>,
    pending: Vec<Command>,
    params: Vec<u32>,
    params_arena: wgpu::Buffer,
    uploads: Vec<u8>,
    upload_arena: Option<wgpu::Buffer>,
}

/// A GPU device as wgrad drives it. Obtain one through [`crate::Device::gpu`].
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) info: wgpu::AdapterInfo,
    pub(crate) pool: Mutex<pool::Pool>,
    state: Mutex<State>,
    pub(crate) counters: Counters,
    pub(crate) rng: crate::device::RngState,
    /// The adapter's largest storage-buffer binding, in bytes.
    max_binding: u64,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuContext({} via {:?})",
            self.info.name, self.info.backend
        )
    }
}

impl GpuContext {
    /// Opens a device on the given adapter with every limit the adapter offers.
    pub(crate) fn open(adapter: &wgpu::Adapter) -> Result<Arc<GpuContext>> {
        let info = adapter.get_info();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgrad"),
            required_features: wgpu::Features::empty(),
            required_limits: adapter.limits(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        }))
        .map_err(|e| Error::NoAdapter(format!("{} refused a device: {e}", info.name)))?;
        let params_arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgrad parameter arena"),
            size: MAX_PENDING as u64 * PARAM_BYTES,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let ctx = GpuContext {
            device,
            queue,
            info,
            pool: Mutex::new(pool::Pool::default()),
            state: Mutex::new(State {
                modules: HashMap::new(),
                pipelines: HashMap::new(),
                bind_groups: HashMap::new(),
                pending: Vec::new(),
                params: Vec::new(),
                params_arena,
                uploads: Vec::new(),
                upload_arena: None,
            }),
            counters: Counters::default(),
            rng: crate::device::RngState::new(crate::device::DEFAULT_SEED),
            max_binding: adapter.limits().max_storage_buffer_binding_size,
        };
        ctx.counters.buffers_created.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(ctx))
    }

    /// The adapter this device runs on.
    pub fn adapter(&self) -> AdapterSummary {
        adapter::summary(&self.info)
    }

    /// A snapshot of the object and memory counters.
    pub fn counters(&self) -> DeviceCounters {
        let c = &self.counters;
        DeviceCounters {
            buffers_created: c.buffers_created.load(Ordering::Relaxed),
            pipelines_created: c.pipelines_created.load(Ordering::Relaxed),
            bind_groups_created: c.bind_groups_created.load(Ordering::Relaxed),
            submits: c.submits.load(Ordering::Relaxed),
            dispatches: c.dispatches.load(Ordering::Relaxed),
            bytes_in_use: c.bytes_in_use.load(Ordering::Relaxed),
            peak_bytes: c.peak_bytes.load(Ordering::Relaxed),
        }
    }

    /// Resets the peak-bytes counter to the bytes in use now.
    pub fn reset_peak_bytes(&self) {
        let c = &self.counters;
        c.peak_bytes
            .store(c.bytes_in_use.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    pub(crate) fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pipeline(&self, st: &mut State, k: &'static Kernel) -> Arc<Pipeline> {
        if let Some(p) = st.pipelines.get(&(k.file.name, k.entry)) {
            return p.clone();
        }
        let module = st.modules.entry(k.file.name).or_insert_with(|| {
            let source = format!("{PRELUDE}\n{}", k.file.source);
            self.device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(k.file.name),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                })
        });
        let storage = |binding: u32, read_only: bool, dynamic: bool| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: dynamic,
                min_binding_size: None,
            },
            count: None,
        };
        let mut entries = vec![storage(0, true, true)];
        entries.extend(k.slots.iter().map(|&s| storage(s, s <= slot::XI, false)));
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(k.entry),
                entries: &entries,
            });
        let pipeline_layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(k.entry),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(k.entry),
                layout: Some(&pipeline_layout),
                module,
                entry_point: Some(k.entry),
                compilation_options: Default::default(),
                cache: None,
            });
        self.counters
            .pipelines_created
            .fetch_add(1, Ordering::Relaxed);
        let p = Arc::new(Pipeline {
            id: st.pipelines.len(),
            pipeline,
            layout,
        });
        st.pipelines.insert((k.file.name, k.entry), p.clone());
        p
    }

    /// Records one dispatch of `k` over `groups` workgroups. `buffers` follow `k.slots`.
    pub(crate) fn launch(
        &self,
        k: &'static Kernel,
        params: &[u32],
        buffers: &[&GpuBuffer],
        groups: [u32; 3],
    ) {
        assert_eq!(
            buffers.len(),
            k.slots.len(),
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
        let limit = self.max_binding;
        for b in buffers {
            assert!(
                b.buffer.size() <= limit,
                "{}: a {} MiB buffer exceeds this adapter's largest storage binding ({} MiB, \
                 {}); run the batch in smaller pieces",
                k.entry,
                b.buffer.size() >> 20,
                limit >> 20,
                self.info.name
            );
        }
        let mut st = self.lock_state();
        if st.pending.len() >= MAX_PENDING {
            self.flush_locked(&mut st, None);
        }
        let p = self.pipeline(&mut st, k);
        let mut key = [0u64; 8];
        for (i, b) in buffers.iter().enumerate() {
            key[i] = b.id;
        }
        let bind_group = match st.bind_groups.get(&(p.id, key)) {
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
                for (b, &s) in buffers.iter().zip(k.slots) {
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
                st.bind_groups.insert((p.id, key), bg.clone());
                bg
            }
        };
        let base = st.params.len();
        let param_offset = (base * 4) as u32;
        st.params.extend_from_slice(params);
        st.params.resize(base + (PARAM_BYTES / 4) as usize, 0);
        st.pending.push(Command::Dispatch {
            pipeline: p.pipeline.clone(),
            bind_group,
            param_offset,
            groups,
        });
        self.counters.dispatches.fetch_add(1, Ordering::Relaxed);
    }

    /// A new buffer holding `bytes`, written in queue order with the pending work.
    pub(crate) fn upload(self: &Arc<Self>, bytes: &[u8]) -> GpuBuffer {
        let buf = self.alloc(bytes.len() as u64);
        if bytes.is_empty() {
            return buf;
        }
        let mut st = self.lock_state();
        if bytes.len() > DIRECT_UPLOAD_BYTES {
            self.flush_locked(&mut st, None);
            self.queue.write_buffer(&buf.buffer, 0, bytes);
            return buf;
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
        buf
    }

    /// Encodes every pending command into one command buffer and submits it, with an
    /// optional final copy (a readback). Does not wait for the GPU.
    pub(crate) fn flush_locked(
        &self,
        st: &mut State,
        readback: Option<(&wgpu::Buffer, &wgpu::Buffer, u64)>,
    ) {
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
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            while let Some(Command::Dispatch {
                pipeline,
                bind_group,
                param_offset,
                groups,
            }) = commands.get(i)
            {
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, bind_group, &[*param_offset]);
                pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                i += 1;
            }
        }
        if let Some((src, dst, bytes)) = readback {
            encoder.copy_buffer_to_buffer(src, 0, dst, 0, bytes);
        }
        self.queue.submit([encoder.finish()]);
        self.counters.submits.fetch_add(1, Ordering::Relaxed);
        st.params.clear();
        st.uploads.clear();
    }

    /// Submits all pending work and waits until the GPU has finished it.
    pub fn sync(&self) -> Result<()> {
        {
            let mut st = self.lock_state();
            self.flush_locked(&mut st, None);
        }
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))?;
        Ok(())
    }

    /// Reads the first `bytes` bytes of `buf` back to the host (one submit, one wait).
    pub(crate) fn read(self: &Arc<Self>, buf: &GpuBuffer, bytes: u64) -> Result<Vec<u8>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.alloc_staging(bytes);
        {
            let mut st = self.lock_state();
            self.flush_locked(&mut st, Some((&buf.buffer, &staging.buffer, bytes)));
        }
        let slice = staging.buffer.slice(..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        let mapped = self
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))
            .and_then(|_| {
                rx.recv()
                    .map_err(|_| Error::Gpu("the readback was dropped".into()))?
                    .map_err(|e| Error::Gpu(format!("mapping the readback buffer: {e}")))
            })
            .and_then(|_| {
                let data = slice
                    .get_mapped_range()
                    .map_err(|e| Error::Gpu(format!("reading the mapped buffer: {e}")))?
                    .to_vec();
                staging.buffer.unmap();
                Ok(data)
            });
        if mapped.is_err() {
            // A buffer left mapped (or still being mapped) must not go back to the pool.
            std::mem::forget(staging);
        }
        mapped
    }
}
