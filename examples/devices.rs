//! Which devices can wgrad run on? This lists every adapter wgpu sees (best first), says
//! which device `Device::best()` would train on and why, and names the environment
//! variables that change the choice.
//!
//! ```text
//! cargo run --release --example devices
//! WGRAD_DEVICE=cpu cargo run --release --example devices
//! ```

use wgrad::prelude::*;

fn main() {
    let adapters = wgrad::list_adapters();
    if adapters.is_empty() {
        println!("wgpu sees no adapter.");
        println!(
            "  On Debian/Ubuntu, `sudo apt-get install mesa-vulkan-drivers libvulkan1` installs \
             lavapipe, a software Vulkan GPU; elsewhere install your GPU's Vulkan, Metal or \
             DX12 driver. wgrad still runs on its CPU backend without one."
        );
    } else {
        println!("adapters wgpu sees (best first):");
        for (i, a) in adapters.iter().enumerate() {
            let kind = if a.is_software {
                "software"
            } else {
                "hardware"
            };
            println!(
                "  {i}: {} | backend {} | type {} | driver {} | {kind}",
                a.name,
                a.backend,
                a.device_type,
                if a.driver.is_empty() { "?" } else { &a.driver }
            );
        }
    }

    let (dev, why) = Device::best_with_reason();
    println!();
    println!("Device::best() picks: {}", dev.name());
    println!("  because {why}");

    println!();
    println!("environment variables:");
    println!("  WGRAD_DEVICE=cpu|gpu       force the CPU backend or the GPU in Device::best()");
    println!("  WGPU_BACKEND=vulkan,gl,... which graphics APIs wgpu may use");
    println!("  WGPU_ADAPTER_NAME=text     use only adapters whose name contains text");
    println!("  WGPU_POWER_PREF=low|high   prefer an integrated (low) or discrete (high) GPU");
}
