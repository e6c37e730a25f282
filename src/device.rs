//! Devices: the CPU reference backend or a GPU through wgpu, and how [`Device::best`]
//! chooses between them. Each device owns a seeded counter-based random generator.

use std::sync::{Arc, OnceLock};

use crate::backend::gpu::{adapter, DeviceCounters, GpuContext, GpuOptions, Profile};
use crate::backend::random::RngState;
pub use crate::backend::random::{RngKey, DEFAULT_SEED};
use crate::error::{Error, Result};

static CPU_RNG: RngState = RngState::new(DEFAULT_SEED);
static DEFAULT_GPU: OnceLock<std::result::Result<Arc<GpuContext>, String>> = OnceLock::new();

/// Where tensors live and kernels run.
#[derive(Clone)]
pub enum Device {
    /// The plain-Rust reference backend.
    Cpu,
    /// A GPU (or a software rasteriser) driven through wgpu and WGSL kernels.
    Gpu(Arc<GpuContext>),
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            (Device::Gpu(a), Device::Gpu(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name())
    }
}

impl Device {
    /// The CPU backend: plain Rust loops, always available, and the reference the GPU
    /// kernels are checked against.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// assert!(!dev.is_gpu());
    /// let t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3], &dev)?;
    /// assert_eq!(t.to_vec::<f32>()?, [1.0, 2.0, 3.0]);
    /// # Ok(()) }
    /// ```
    pub fn cpu() -> Device {
        Device::Cpu
    }

    /// The default GPU: the best adapter wgpu finds (hardware first, then software such
    /// as lavapipe), honouring `WGPU_BACKEND`, `WGPU_ADAPTER_NAME` and `WGPU_POWER_PREF`,
    /// opened with [`GpuOptions::from_env`]. Opened once per process; later calls share it.
    /// In the browser a device can only be opened asynchronously: call
    /// [`Device::gpu_async`] first; after it, this returns the same device.
    ///
    /// A machine without any adapter gets [`Error::NoAdapter`], whose message says what
    /// to install; a program can fall back to the CPU:
    ///
    /// ```no_run
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::gpu().unwrap_or_else(|e| {
    ///     eprintln!("{e}; using the CPU");
    ///     Device::cpu()
    /// });
    /// let x = Tensor::ones(&[4], &dev)?; // on the GPU when there is one
    /// assert_eq!(x.sum()?.item()?, 4.0);
    /// # Ok(()) }
    /// ```
    pub fn gpu() -> Result<Device> {
        #[cfg(target_arch = "wasm32")]
        let ctx = DEFAULT_GPU.get().ok_or_else(|| {
            Error::NoAdapter(
                "in the browser the GPU is opened with Device::gpu_async().await".into(),
            )
        })?;
        #[cfg(not(target_arch = "wasm32"))]
        let ctx = DEFAULT_GPU.get_or_init(|| {
            let adapters = adapter::ranked_adapters(false);
            let Some(first) = adapters.first() else {
                return Err(adapter::NO_ADAPTER_HELP.to_string());
            };
            GpuContext::open(first, GpuOptions::from_env()).map_err(|e| e.to_string())
        });
        match ctx {
            Ok(c) => Ok(Device::Gpu(c.clone())),
            Err(msg) => Err(Error::NoAdapter(msg.clone())),
        }
    }

    /// [`Device::gpu`] without blocking: the way to open the GPU in the browser (WebGPU),
    /// and the same device natively (where it waits as `gpu` does). Opened once per
    /// process; later calls, async or not, share it.
    pub async fn gpu_async() -> Result<Device> {
        if DEFAULT_GPU.get().is_none() {
            let opened = match adapter::best_adapter_async().await {
                None => Err(adapter::NO_ADAPTER_HELP.to_string()),
                Some(a) => GpuContext::open_async(&a, GpuOptions::from_env())
                    .await
                    .map_err(|e| e.to_string()),
            };
            // Another caller may have opened it meanwhile: theirs is kept.
            let _ = DEFAULT_GPU.set(opened);
        }
        match DEFAULT_GPU.get().expect("set above") {
            Ok(c) => Ok(Device::Gpu(c.clone())),
            Err(msg) => Err(Error::NoAdapter(msg.clone())),
        }
    }

    /// This device's backend: the seam through which an op reaches the CPU loops or
    /// the GPU launchers. The one place that tells the backends apart.
    pub(crate) fn backend(&self) -> &dyn crate::backend::Backend {
        static CPU: crate::backend::cpu::elementwise::CpuBackend =
            crate::backend::cpu::elementwise::CpuBackend;
        match self {
            Device::Cpu => &CPU,
            Device::Gpu(g) => g,
        }
    }

    /// A device on hardware GPU number `index` modulo the number of hardware GPUs
    /// (software adapters excluded), each opened anew with the environment's options; one
    /// per data-parallel rank on a machine with several GPUs. `None` when there is no
    /// hardware GPU or it cannot be opened (and in the browser).
    pub(crate) fn hardware_gpu(index: usize) -> Option<Device> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let gpus = adapter::hardware_adapters();
            let pick = gpus.get(index % gpus.len().max(1))?;
            GpuContext::open(pick, GpuOptions::from_env())
                .ok()
                .map(Device::Gpu)
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = index;
            None
        }
    }

    /// A new device on the adapter [`Device::gpu`] would pick, opened with `options`
    /// (for instance with the shader runtime checks on, or without subgroup operations).
    /// Each call opens a separate device: tensors of one cannot meet tensors of another.
    /// In the browser, use [`Device::gpu_with_async`].
    pub fn gpu_with(options: GpuOptions) -> Result<Device> {
        #[cfg(target_arch = "wasm32")]
        {
            let _ = options;
            Err(Error::NoAdapter(
                "in the browser the GPU is opened with Device::gpu_with_async(options).await"
                    .into(),
            ))
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let adapters = adapter::ranked_adapters(false);
            let first = adapters
                .first()
                .ok_or_else(|| Error::NoAdapter(adapter::NO_ADAPTER_HELP.to_string()))?;
            Ok(Device::Gpu(GpuContext::open(first, options)?))
        }
    }

    /// [`Device::gpu_with`] without blocking (the browser's way).
    pub async fn gpu_with_async(options: GpuOptions) -> Result<Device> {
        let adapter = adapter::best_adapter_async()
            .await
            .ok_or_else(|| Error::NoAdapter(adapter::NO_ADAPTER_HELP.to_string()))?;
        Ok(Device::Gpu(
            GpuContext::open_async(&adapter, options).await?,
        ))
    }

    /// Waits until the device has finished all recorded work, without blocking: the
    /// browser's [`Device::sync`]. Natively it waits as `sync` does. An error found on
    /// the device (an out-of-range index) or a dispatch that could not run is returned
    /// here, as by `sync`.
    pub async fn sync_async(&self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Gpu(g) => g.sync_async().await,
        }
    }

    /// Runs `f` and reports every kernel it dispatched on this device: per kernel
    /// variant, the dispatches, workgroups and bytes bound, and the GPU time where the
    /// adapter supports timestamp queries ([`Profile::timestamps`]). The work recorded
    /// before the call is finished first, and the work `f` records is finished before
    /// the profile returns. Only the calling thread's dispatches are recorded, so the
    /// profile holds exactly `f`'s work even while other threads use the same device
    /// (their GPU time may still overlap `f`'s). One profile records on a device at a
    /// time: a second, from any thread, is an [`Error::Argument`]. On the CPU each record
    /// is one backend primitive the calling thread ran (a product, an im2col, a buffer
    /// request or release) with its own wall time in place of the GPU time; the step's
    /// wall time less their sum is graph bookkeeping above the backend. The browser's
    /// CPU profile is empty (it has no clock).
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu(); // or Device::gpu()?
    /// let x = Tensor::ones(&[1000], &dev)?;
    /// let (sum, profile) = dev.profile(|| x.sum())?;
    /// assert_eq!(sum?.item()?, 1000.0);
    /// println!("{profile}");
    /// # Ok(()) }
    /// ```
    pub fn profile<R>(&self, f: impl FnOnce() -> R) -> Result<(R, Profile)> {
        match self {
            Device::Cpu => {
                let recorder = crate::backend::cpu::profile::begin()?;
                let out = f();
                Ok((out, recorder.finish()))
            }
            Device::Gpu(g) => {
                g.begin_profile()?;
                let out = f();
                let profile = g.end_profile()?;
                Ok((out, profile))
            }
        }
    }

    /// The device a program should train on, and why it was chosen: a hardware GPU when
    /// there is one, else the CPU backend (which beats a software rasteriser).
    /// `WGRAD_DEVICE=cpu|gpu` overrides the choice; so does naming an adapter in
    /// `WGPU_ADAPTER_NAME` (then that adapter is used even if it is software).
    pub fn best_with_reason() -> (Device, String) {
        match std::env::var("WGRAD_DEVICE").as_deref() {
            Ok("cpu") => return (Device::Cpu, "WGRAD_DEVICE=cpu".into()),
            Ok("gpu") => {
                return match Device::gpu() {
                    Ok(d) => (d, "WGRAD_DEVICE=gpu".into()),
                    Err(e) => (
                        Device::Cpu,
                        format!("WGRAD_DEVICE=gpu, but {e}; using the CPU"),
                    ),
                }
            }
            _ => {}
        }
        let named = std::env::var("WGPU_ADAPTER_NAME").is_ok();
        let adapters: Vec<_> = adapter::ranked_adapters(false)
            .iter()
            .map(|a| adapter::summary(&a.get_info()))
            .collect();
        match adapters.first() {
            None => (Device::Cpu, "wgpu found no adapter".into()),
            Some(a) if a.is_software && !named => (
                Device::Cpu,
                format!(
                    "the only adapters are software rasterisers ({}, {}); the CPU backend is faster",
                    a.name, a.backend
                ),
            ),
            Some(a) => match Device::gpu() {
                Ok(d) => {
                    let why = if named {
                        format!("WGPU_ADAPTER_NAME selects {} ({})", a.name, a.backend)
                    } else {
                        format!("hardware GPU {} ({}, {})", a.name, a.device_type, a.backend)
                    };
                    (d, why)
                }
                Err(e) => (Device::Cpu, format!("{} could not be opened ({e})", a.name)),
            },
        }
    }

    /// [`Device::best_with_reason`] without the reason: a hardware GPU when there is one,
    /// else the CPU. Never fails.
    ///
    /// ```
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::best();
    /// println!("training on {}", dev.name());
    /// let x = Tensor::ones(&[2, 3], &dev)?;
    /// assert_eq!(x.sum()?.item()?, 6.0);
    /// # Ok(()) }
    /// ```
    pub fn best() -> Device {
        Device::best_with_reason().0
    }

    /// True for a GPU device.
    pub fn is_gpu(&self) -> bool {
        matches!(self, Device::Gpu(_))
    }

    /// A short human-readable name: `cpu`, or `gpu (adapter name, backend)`.
    pub fn name(&self) -> String {
        match self {
            Device::Cpu => "cpu".into(),
            Device::Gpu(g) => format!("gpu ({}, {:?})", g.info.name, g.info.backend),
        }
    }

    /// Object and memory counters (all zero on the CPU).
    pub fn counters(&self) -> DeviceCounters {
        match self {
            Device::Cpu => DeviceCounters::default(),
            Device::Gpu(g) => g.counters(),
        }
    }

    /// Frees the memory this device keeps for reuse (like `torch.cuda.empty_cache`): the
    /// CPU's pool of freed host buffers, or a GPU's pool of free buffers. Tensors still
    /// alive are untouched; later ops allocate afresh.
    pub fn empty_cache(&self) {
        match self {
            Device::Cpu => crate::backend::cpu::pool::clear(),
            Device::Gpu(g) => g.trim(),
        }
    }

    /// Bytes of freed CPU tensor buffers kept for reuse (at most 256 MiB; see
    /// [`Device::empty_cache`]).
    pub fn cpu_cached_bytes() -> usize {
        crate::backend::cpu::pool::pooled_bytes()
    }

    /// Submits pending GPU work and waits for it (nothing to do on the CPU).
    pub fn sync(&self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Gpu(g) => g.sync(),
        }
    }

    /// Restarts this device's random generator from `seed`. The CPU and a GPU seeded
    /// alike draw the same numbers. Each device has one generator for the whole process
    /// (the CPU's is shared by all threads, as in PyTorch): threads that draw from the
    /// same device concurrently interleave their draws, so a run that must repeat
    /// exactly draws from one thread, or uses explicit seeds (`Tensor::rand_seeded`).
    pub fn manual_seed(&self, seed: u64) {
        self.rng().reseed(seed)
    }

    /// The state of this device's random generator: its seed and the number of draws
    /// made since (the Philox stream's offset; each random op is one draw). With
    /// [`Device::set_rng_state`] it lets a resumed run draw the numbers the uninterrupted
    /// one would have (PyTorch's `get_rng_state`); checkpoints store it.
    pub fn rng_state(&self) -> RngKey {
        self.rng().get()
    }

    /// Puts this device's random generator back to a state from [`Device::rng_state`]
    /// (of this or another device: the CPU and a GPU draw alike).
    pub fn set_rng_state(&self, state: RngKey) {
        self.rng().set(state)
    }

    fn rng(&self) -> &RngState {
        match self {
            Device::Cpu => &CPU_RNG,
            Device::Gpu(g) => &g.rng,
        }
    }

    /// The key of the next random draw on this device.
    pub(crate) fn next_rng_key(&self) -> RngKey {
        self.rng().next()
    }
}
