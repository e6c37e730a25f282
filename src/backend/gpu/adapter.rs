//! Choosing a wgpu adapter. wgpu's own environment conventions are honoured
//! (`WGPU_BACKEND`, `WGPU_ADAPTER_NAME`, `WGPU_POWER_PREF`); otherwise hardware GPUs rank
//! above software rasterisers (lavapipe, llvmpipe, WARP), and Vulkan/Metal/DX12 above GL.

/// What wgrad knows about one adapter wgpu can see.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// The adapter's name (e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// The graphics API wgpu would drive it through.
    pub backend: String,
    /// Discrete, integrated, virtual, CPU (software) or other.
    pub device_type: String,
    /// The driver and its version.
    pub driver: String,
    /// True for software rasterisers, which run on the CPU.
    pub is_software: bool,
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

pub(crate) fn summary(info: &wgpu::AdapterInfo) -> AdapterSummary {
    AdapterSummary {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        is_software: info.device_type == wgpu::DeviceType::Cpu,
    }
}

/// Higher is better.
#[cfg(not(target_arch = "wasm32"))]
fn rank(info: &wgpu::AdapterInfo, prefer_low_power: bool) -> u32 {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu if prefer_low_power => 40,
        wgpu::DeviceType::IntegratedGpu if prefer_low_power => 50,
        wgpu::DeviceType::DiscreteGpu => 50,
        wgpu::DeviceType::IntegratedGpu => 40,
        wgpu::DeviceType::VirtualGpu => 30,
        wgpu::DeviceType::Other => 20,
        wgpu::DeviceType::Cpu => 10,
    };
    let api = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 2,
        wgpu::Backend::Gl => 1,
        _ => 0,
    };
    kind * 4 + api
}

/// The adapters wgpu sees under the current environment, best first. Without
/// `WGPU_BACKEND`, the primary APIs (Vulkan, Metal, DX12) are searched first and GL only
/// when they find nothing, unless `every_backend` asks for all of them at once (GL's EGL
/// start-up prints warnings on headless Linux, so it is not probed needlessly).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn ranked_adapters(every_backend: bool) -> Vec<wgpu::Adapter> {
    let named = wgpu::Backends::from_env();
    let search = |b: wgpu::Backends| pollster::block_on(instance(b).enumerate_adapters(b));
    let mut adapters = match named {
        Some(b) => search(b),
        None if every_backend => search(wgpu::Backends::all()),
        None => {
            let primary = search(wgpu::Backends::PRIMARY);
            if primary.is_empty() {
                search(wgpu::Backends::SECONDARY)
            } else {
                primary
            }
        }
    };
    let low_power = matches!(
        wgpu::PowerPreference::from_env(),
        Some(wgpu::PowerPreference::LowPower)
    );
    if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
        let wanted = wanted.to_lowercase();
        adapters.retain(|a| a.get_info().name.to_lowercase().contains(&wanted));
    }
    adapters.sort_by_key(|a| std::cmp::Reverse(rank(&a.get_info(), low_power)));
    adapters
}

/// The hardware GPUs among [`ranked_adapters`], best first (one per rank in
/// data-parallel training).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn hardware_adapters() -> Vec<wgpu::Adapter> {
    ranked_adapters(false)
        .into_iter()
        .filter(|a| a.get_info().device_type != wgpu::DeviceType::Cpu)
        .collect()
}

/// In the browser adapters are only found asynchronously ([`best_adapter_async`]).
#[cfg(target_arch = "wasm32")]
pub(crate) fn ranked_adapters(_every_backend: bool) -> Vec<wgpu::Adapter> {
    Vec::new()
}

/// The adapter [`ranked_adapters`] would put first, found without blocking: in the
/// browser WebGPU's `requestAdapter` (high performance), natively the same search.
pub(crate) async fn best_adapter_async() -> Option<wgpu::Adapter> {
    #[cfg(target_arch = "wasm32")]
    {
        instance(wgpu::Backends::BROWSER_WEBGPU)
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .ok()
    }
    #[cfg(not(target_arch = "wasm32"))]
    ranked_adapters(false).into_iter().next()
}

/// Lists every adapter wgpu can see on every backend, best first (natively; in the
/// browser, see [`crate::Device::gpu_async`]).
pub fn list_adapters() -> Vec<AdapterSummary> {
    ranked_adapters(true)
        .iter()
        .map(|a| summary(&a.get_info()))
        .collect()
}

#[cfg(target_arch = "wasm32")]
pub(crate) const NO_ADAPTER_HELP: &str = "this browser offers no WebGPU adapter. WebGPU is in \
Chrome and Edge 113+ (on Linux, and headless, only with --enable-unsafe-webgpu), Firefox 141+ \
on Windows and Safari 26; the page must be served from https or localhost.";

#[cfg(not(target_arch = "wasm32"))]
pub(crate) const NO_ADAPTER_HELP: &str = "wgpu found no GPU adapter. On Debian/Ubuntu, \
`apt-get install mesa-vulkan-drivers libvulkan1` provides a software Vulkan GPU (lavapipe); \
on other systems install your GPU's Vulkan, Metal or DX12 driver. WGPU_BACKEND and \
WGPU_ADAPTER_NAME narrow the search (a filter that matches nothing also ends here).";
