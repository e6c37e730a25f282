//! The GPU backend: one wgpu device and queue, the deferred-dispatch scheduler
//! (`scheduler`), the buffer pool, caches of shader modules, pipelines and bind groups
//! (`pipeline`), and per-kernel profiling ([`profile`]).
//!
//! A kernel launch appends a dispatch to the pending list and returns at once. The list
//! is encoded into one command encoder and one `queue.submit` when a value is read
//! back, on `sync()`, or when it reaches [`MAX_PENDING`] dispatches. Per-dispatch
//! parameters (shapes, strides, scalars) go into one parameter arena bound with a dynamic
//! offset, and host uploads into one upload arena copied in queue order, so a steady
//! training loop creates no buffers, pipelines or bind groups.

pub mod adapter;
pub(crate) mod amp;
pub(crate) mod attention;
mod attention_rows;
pub(crate) mod augment;
pub(crate) mod batchnorm;
pub(crate) mod buffers;
mod clip;
pub(crate) mod conv2d;
pub(crate) mod elementwise;
pub(crate) mod fused;
pub(crate) mod half;
pub(crate) mod half_io;
pub(crate) mod inplace;
pub(crate) mod kernels;
pub(crate) mod layout;
pub(crate) mod loss;
pub(crate) mod matmul;
pub mod matmul_plan;
pub(crate) mod multi_tensor;
pub(crate) mod norm;
pub(crate) mod optim;
pub(crate) mod optim_specs;
pub(crate) mod params;
mod pipeline;
pub(crate) mod pool;
pub(crate) mod pool2d;
pub mod profile;
pub(crate) mod random;
mod readback;
pub(crate) mod reduce;
pub(crate) mod rnn;
mod rnn_layer;
mod scheduler;
pub(crate) mod softmax;
pub(crate) mod sources;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use adapter::{list_adapters, AdapterSummary};
pub(crate) use pool::fmt_bytes;
pub use pool::GpuBuffer;
pub use profile::{DispatchRecord, KernelSummary, Profile};

use crate::error::{Error, Result};

/// Elements one workgroup reduces in one pass, at most (64 per thread): a longer
/// reduction splits over workgroups, so no thread loops long and no big reduction runs on
/// one workgroup.
pub const MAX_GROUP_ELEMENTS: usize = 16_384;
/// Workgroups that keep a reference GPU (132 SMs, two workgroups each) busy: a hardware
/// adapter's [`GpuContext::full_groups`] (the matmul planner's notion of a full device).
pub const FULL_GROUPS: usize = 264;
/// Dispatches recorded before the scheduler submits on its own.
pub const MAX_PENDING: usize = 1024;
/// Dispatches after which a recording step is submitted, so the GPU starts on them
/// while the host records the rest (a step is also submitted when its backward pass
/// begins).
pub const SUBMIT_CHUNK: usize = 32;
/// Bytes of parameters one dispatch may pass (64 `u32` words); also the arena stride.
const PARAM_BYTES: u64 = 256;
/// Uploads larger than this skip the upload arena and are written directly after a flush.
const DIRECT_UPLOAD_BYTES: usize = 8 << 20;

/// A shader file: one op family, forward and backward entry points side by side.
pub(crate) struct ShaderFile {
    pub name: &'static str,
    pub source: &'static str,
    /// True when every memory index and every divisor in the file is guarded by the
    /// shader itself (each thread checks its element against the sizes it was given, and
    /// the host never passes a zero divisor), so the module may be created without naga's
    /// runtime checks. See [`GpuOptions::shader_checks`].
    pub guarded: bool,
    /// True when the file uses subgroup operations (compiled only on adapters that have
    /// them).
    pub subgroups: bool,
    /// Generated WGSL placed between the prelude and `source` (the elementwise table's
    /// functions and kernels), given by the op layer.
    pub generated: Generated,
    /// The parameter structs of the file's kernels (their WGSL goes before the rest).
    pub params: &'static [&'static params::ParamsInfo],
}

/// The generated part of a shader file.
#[derive(Clone, Copy)]
pub(crate) enum Generated {
    /// None.
    None,
    /// The same text for every kernel of the file.
    Fixed(fn() -> &'static str),
    /// Text specialised to a kernel's override values (so a pipeline compiles only the
    /// code its variant runs); each distinct text is its own module. The second function
    /// gives the general text, for validation.
    PerVariant(fn(&Kernel, &[u32; 6]) -> String, fn() -> &'static str),
}

impl ShaderFile {
    /// The file's WGSL without the prelude: the general generated part, then `source`.
    pub(crate) fn body(&self) -> String {
        match self.generated {
            Generated::Fixed(f) | Generated::PerVariant(_, f) => self.body_with(f()),
            Generated::None => self.body_with(""),
        }
    }

    /// The file's WGSL without the prelude, with `generated` as its generated part: its
    /// parameter structs, `generated`, then `source`.
    pub(crate) fn body_with(&self, generated: &str) -> String {
        let mut s: String = self.params.iter().map(|p| p.wgsl).collect();
        s += generated;
        s += "\n";
        s + self.source
    }

    /// Declares the file's parameter structs.
    pub(crate) const fn with_params(self, params: &'static [&'static params::ParamsInfo]) -> Self {
        ShaderFile { params, ..self }
    }

    /// The file with `generated` as its generated part.
    pub(crate) const fn with_generated(self, generated: Generated) -> Self {
        ShaderFile { generated, ..self }
    }

    /// The generated text for one kernel variant, when it depends on the variant.
    pub(crate) fn variant_text(&self, k: &Kernel, overrides: &[u32; 6]) -> Option<String> {
        match self.generated {
            Generated::PerVariant(f, _) => Some(f(k, overrides)),
            _ => None,
        }
    }
}

/// Declarations and helpers shared by every shader file (prepended at compile time).
pub const PRELUDE: &str = include_str!("../../../shaders/prelude.wgsl");

/// Binding slots, fixed across all shaders (see `shaders/prelude.wgsl`):
/// 1-3 read-only `f32` inputs, 4 a read-only `u32` input, 5-7 `f32` outputs,
/// 8 a `u32` output, 9-11 read-only `vec4<f32>` views of the three inputs.
/// Binding 0 is the parameter block.
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
    pub const X0V: u32 = 9;
    pub const X1V: u32 = 10;
    pub const X2V: u32 = 11;

    /// The first binding number past the fixed slots: generated kernels (multi-tensor
    /// kernels, [`multi_tensor`]) declare their own bindings from here on.
    pub const FIRST_EXTRA: u32 = 12;

    /// True for the read-only slots.
    pub fn read_only(s: u32) -> bool {
        s <= XI || s >= X0V
    }
}

/// A binding a generated shader declares itself, past the fixed slots (a multi-tensor
/// kernel binds several tensors' buffers at once): its number and access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ExtraSlot {
    /// The binding number, at least [`slot::FIRST_EXTRA`].
    pub binding: u32,
    /// True for a `var<storage, read>` binding.
    pub read_only: bool,
}

/// One compute entry point and the binding slots it uses, in the order buffers are passed:
/// first the fixed `slots`, then the `extra` bindings of a generated shader.
pub(crate) struct Kernel {
    pub file: &'static ShaderFile,
    pub entry: &'static str,
    pub slots: &'static [u32],
    /// Bindings past the fixed slots (empty for every kernel written in `shaders/`).
    pub extra: &'static [ExtraSlot],
    /// Names of the WGSL `override` constants a launch sets (at most six), in the order
    /// of [`Work::overrides`]. Each combination of values is its own pipeline.
    pub overrides: &'static [&'static str],
    /// True when a thread loops over a data-dependent number of elements; launches of
    /// such kernels declare that number in [`Work::serial`], which profiles report and
    /// tests bound.
    pub loops: bool,
    /// The name of its parameter struct (`params::Params`), which every launch passes.
    pub params: &'static str,
}

/// What one dispatch does, beyond its grid: the variant it runs and the work it declares
/// for profiles and for the tests that hold the kernels to their shape rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Work {
    /// Values of the kernel's override constants, in the order of [`Kernel::overrides`].
    pub overrides: [u32; 6],
    /// Elements one thread loops over serially (0 for kernels without such loops).
    pub serial: u64,
    /// Elements a reduction reads (0 for other kernels).
    pub reduced: u64,
    /// Floating-point operations the result needs (matrix products).
    pub useful_flops: u64,
    /// Floating-point operations the threads execute, padding of partial tiles included.
    pub executed_flops: u64,
    /// For matrix products: M, N, K and the batches this dispatch covers.
    pub product: Option<[u64; 4]>,
    /// The formats of the input slots `x0`, `x1`, `x2` ([`half_io::io_of`]; 0: all
    /// `f32`).
    pub io: u32,
}

/// How a GPU device is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuOptions {
    /// Keep naga's runtime checks in every shader module: clamped array indices, guarded
    /// integer division and a bounded counter in every loop. Off by default for the
    /// shader files whose every index is guarded in the shader itself (all of wgrad's,
    /// see ARCHITECTURE.md), which runs their loops without the extra work; the
    /// environment variable `WGRAD_SHADER_CHECKS=1` turns the checks back on for
    /// debugging. Results are identical either way (a test runs the whole op registry
    /// both ways).
    pub shader_checks: bool,
    /// Use subgroup operations in reductions where the adapter offers them (wgpu's
    /// `SUBGROUP` feature); otherwise, or when this is false, reductions combine through
    /// workgroup memory. `WGRAD_SUBGROUPS=0` turns them off.
    pub subgroups: bool,
    /// On a software adapter (lavapipe, SwiftShader, WARP), let matrix products take the
    /// block kernels made for CPU SIMD lanes (see `backend::matmul_plan`); when false they
    /// are planned as on a hardware GPU (tests use this to run the hardware kernels on
    /// lavapipe). `WGRAD_SOFTWARE_KERNELS=0` turns them off. No effect on hardware.
    pub software_kernels: bool,
    /// Caps the storage-binding size (bytes) below the adapter's, for instance at
    /// WebGPU's default 128 MiB to see how a model fares in a browser. A dispatch that
    /// would bind a larger buffer is skipped and the next readback or `sync` returns
    /// [`crate::Error::OutOfMemory`]. `None`: the adapter's limit.
    pub max_binding: Option<u64>,
    /// Let kernels read `F16` tensors as WGSL's `f16` where the adapter offers it (wgpu's
    /// `SHADER_F16`); otherwise, or when this is false, they read packed pairs of 16-bit
    /// values through integer widening, as on every adapter (the path browsers without
    /// `shader-f16` take; `bf16` always takes it). Results are identical either way.
    /// `WGRAD_NATIVE_F16=0` turns it off.
    pub native_f16: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            shader_checks: false,
            subgroups: true,
            software_kernels: true,
            max_binding: None,
            native_f16: true,
        }
    }
}

impl GpuOptions {
    /// The defaults with the environment's overrides: `WGRAD_SHADER_CHECKS=1`,
    /// `WGRAD_SUBGROUPS=0`, `WGRAD_SOFTWARE_KERNELS=0` and `WGRAD_NATIVE_F16=0`.
    pub fn from_env() -> GpuOptions {
        let flag = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_string());
        let mut o = GpuOptions::default();
        if let Some(v) = flag("WGRAD_SHADER_CHECKS") {
            o.shader_checks = !matches!(v.as_str(), "" | "0" | "false" | "off");
        }
        if let Some(v) = flag("WGRAD_SUBGROUPS") {
            o.subgroups = !matches!(v.as_str(), "0" | "false" | "off");
        }
        if let Some(v) = flag("WGRAD_SOFTWARE_KERNELS") {
            o.software_kernels = !matches!(v.as_str(), "0" | "false" | "off");
        }
        if let Some(v) = flag("WGRAD_NATIVE_F16") {
            o.native_f16 = !matches!(v.as_str(), "0" | "false" | "off");
        }
        o
    }
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
    /// Reads of device memory back to the host so far (each one waits for the GPU).
    pub readbacks: u64,
    /// Kernel dispatches recorded so far.
    pub dispatches: u64,
    /// Workgroups launched by those dispatches.
    pub workgroups: u64,
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
    pub readbacks: AtomicU64,
    pub dispatches: AtomicU64,
    pub workgroups: AtomicU64,
    pub bytes_in_use: AtomicU64,
    pub peak_bytes: AtomicU64,
}

/// A GPU device as wgrad drives it. Obtain one through [`crate::Device::gpu`].
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) info: wgpu::AdapterInfo,
    pub(crate) pool: Mutex<pool::Pool>,
    state: Mutex<scheduler::State>,
    pub(crate) counters: Counters,
    pub(crate) rng: crate::backend::random::RngState,
    options: GpuOptions,
    features: wgpu::Features,
    limits: wgpu::Limits,
    /// True for a software rasteriser (lavapipe, llvmpipe, WARP).
    software: bool,
    /// Workgroups that keep this device busy (see [`GpuContext::full_groups`]).
    full_groups: usize,
    /// A cap on the tensors one multi-tensor dispatch covers, below what the limits allow
    /// (0: none). Tests lower it to exercise the chunking.
    multi_tensor_cap: AtomicUsize,
    /// The first error the device reported outside an error scope (a validation error:
    /// a bug in wgrad, or a browser's WebGPU refusing what the native one accepts),
    /// returned by the next readback or sync instead of wgpu's default panic.
    device_error: Arc<Mutex<Option<String>>>,
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
    /// Opens a device on the given adapter with every limit the adapter offers, and the
    /// optional features wgrad uses where the adapter has them (timestamp queries for
    /// profiles, subgroups for reductions).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn open(adapter: &wgpu::Adapter, options: GpuOptions) -> Result<Arc<GpuContext>> {
        pollster::block_on(Self::open_async(adapter, options))
    }

    /// [`GpuContext::open`] without blocking (the only way in the browser). There the
    /// device gets no timestamp queries: reading them back would block.
    pub(crate) async fn open_async(
        adapter: &wgpu::Adapter,
        options: GpuOptions,
    ) -> Result<Arc<GpuContext>> {
        let info = adapter.get_info();
        let offered = adapter.features();
        let mut wanted = if cfg!(target_arch = "wasm32") {
            wgpu::Features::empty()
        } else {
            wgpu::Features::TIMESTAMP_QUERY
        };
        if options.subgroups {
            wanted |= wgpu::Features::SUBGROUP;
        }
        if options.native_f16 {
            wanted |= wgpu::Features::SHADER_F16;
        }
        let features = offered & wanted;
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgrad"),
                required_features: features,
                required_limits: limits.clone(),
                memory_hints: wgpu::MemoryHints::Performance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::NoAdapter(format!("{} refused a device: {e}", info.name)))?;
        let device_error = Arc::new(Mutex::new(None::<String>));
        let sink = device_error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut first = sink.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }));
        let state = scheduler::State::new(&device);
        let software = info.device_type == wgpu::DeviceType::Cpu;
        // A software rasteriser runs one workgroup per CPU thread; a hardware GPU is
        // assumed to be of the H100 class (there is no portable way to ask).
        let full_groups = if software {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            FULL_GROUPS
        };
        let ctx = GpuContext {
            device,
            queue,
            info,
            pool: Mutex::new(pool::Pool::default()),
            state: Mutex::new(state),
            counters: Counters::default(),
            rng: crate::backend::random::RngState::new(crate::backend::random::DEFAULT_SEED),
            options,
            features,
            limits,
            software,
            full_groups,
            multi_tensor_cap: AtomicUsize::new(0),
            device_error,
        };
        ctx.counters.buffers_created.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(ctx))
    }

    /// The adapter this device runs on.
    pub fn adapter(&self) -> AdapterSummary {
        adapter::summary(&self.info)
    }

    /// True when the adapter is a software rasteriser running on the CPU.
    pub fn is_software(&self) -> bool {
        self.software
    }

    /// Workgroups that keep this device busy: one per CPU thread on a software adapter,
    /// [`FULL_GROUPS`] on a hardware GPU (the matmul planner's
    /// notion of a full device).
    pub fn full_groups(&self) -> usize {
        self.full_groups
    }

    /// The options this device was opened with.
    pub fn options(&self) -> GpuOptions {
        self.options
    }

    /// True when reductions use subgroup operations on this device.
    pub fn uses_subgroups(&self) -> bool {
        self.options.subgroups && self.features.contains(wgpu::Features::SUBGROUP)
    }

    /// True when kernels read `F16` inputs as WGSL's `f16` (see
    /// [`GpuOptions::native_f16`]); otherwise as packed pairs.
    pub fn native_f16(&self) -> bool {
        self.features.contains(wgpu::Features::SHADER_F16)
    }

    /// True when this device can time kernels (timestamp queries).
    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// The adapter's largest buffer, in bytes.
    pub(crate) fn max_buffer(&self) -> u64 {
        self.limits.max_buffer_size
    }

    /// The adapter's largest storage-buffer binding, in bytes.
    pub(crate) fn max_binding(&self) -> u64 {
        let adapter = self.limits.max_storage_buffer_binding_size;
        self.options
            .max_binding
            .map_or(adapter, |cap| cap.min(adapter))
    }

    /// The largest tensor, in bytes, that a kernel binds whole: [`GpuContext::max_binding`]
    /// rounded down to 256 bytes. Ops on larger tensors cut their work into pieces of at
    /// most this size (see `ops::split`).
    pub(crate) fn binding_cap(&self) -> u64 {
        self.max_binding() & !255
    }

    /// Storage buffers one kernel may bind (the parameter block included): the adapter's
    /// per-stage limit, bounded by the bindings a bind group may hold.
    pub(crate) fn max_storage_buffers(&self) -> usize {
        self.limits
            .max_storage_buffers_per_shader_stage
            .min(self.limits.max_bindings_per_bind_group) as usize
    }

    /// The test cap on tensors per multi-tensor dispatch (0: none).
    pub(crate) fn multi_tensor_cap(&self) -> usize {
        self.multi_tensor_cap.load(Ordering::Relaxed)
    }

    /// Caps the tensors one multi-tensor dispatch covers (0 removes the cap), so that
    /// tests can exercise the chunking on an adapter with generous limits.
    #[cfg(test)]
    pub(crate) fn set_multi_tensor_cap(&self, cap: usize) {
        self.multi_tensor_cap.store(cap, Ordering::Relaxed)
    }

    /// A snapshot of the object and memory counters.
    pub fn counters(&self) -> DeviceCounters {
        let c = &self.counters;
        DeviceCounters {
            buffers_created: c.buffers_created.load(Ordering::Relaxed),
            pipelines_created: c.pipelines_created.load(Ordering::Relaxed),
            bind_groups_created: c.bind_groups_created.load(Ordering::Relaxed),
            submits: c.submits.load(Ordering::Relaxed),
            readbacks: c.readbacks.load(Ordering::Relaxed),
            dispatches: c.dispatches.load(Ordering::Relaxed),
            workgroups: c.workgroups.load(Ordering::Relaxed),
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

    /// The error the device reported since the last check, if any (see `device_error`).
    pub(crate) fn take_device_error(&self) -> Result<()> {
        let reported = self
            .device_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match reported {
            Some(msg) => Err(Error::Gpu(format!(
                "{} reported an error; the results since the previous readback are not \
                 valid: {msg}",
                self.info.name
            ))),
            None => Ok(()),
        }
    }

    pub(crate) fn lock_state(&self) -> MutexGuard<'_, scheduler::State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The pipeline cache's key: file, entry point, override values and input formats.
type PipelineKey = (&'static str, &'static str, [u32; 6], u32);

/// Shader modules and pipelines compiled on one device.
#[derive(Default)]
pub(crate) struct Caches {
    /// Keyed by file, and by the generated text for a file specialised per variant.
    /// Keyed by the input formats too (see [`half_io`]).
    modules: HashMap<(&'static str, Option<String>, u32), wgpu::ShaderModule>,
    pipelines: HashMap<PipelineKey, Arc<pipeline::Pipeline>>,
}
