//! Reading buffers back: mapping a staging buffer and waiting for the device, blocking
//! (natively) or awaiting (natively and in the browser). A leaf below the scheduler and
//! the profiler, which both read back.

use crate::error::{Error, Result};

/// The error of a blocking wait in the browser, where nothing may block.
#[cfg(target_arch = "wasm32")]
pub(crate) fn no_blocking() -> Error {
    Error::Gpu(
        "a blocking GPU wait is not possible in the browser: use the async API \
         (Device::gpu_async, Tensor::to_vec_async, item_async, Device::sync_async)"
            .into(),
    )
}

/// Waits until the device has finished the submitted work (natively; an error in the
/// browser).
pub(crate) fn wait_for_device(device: &wgpu::Device) -> Result<()> {
    #[cfg(target_arch = "wasm32")]
    {
        let _ = device;
        Err(no_blocking())
    }
    #[cfg(not(target_arch = "wasm32"))]
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map(|_| ())
        .map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))
}

/// Maps `slice` for reading, waits for the device, and copies the bytes out (the caller
/// unmaps). Natively only: in the browser it is an error (see [`map_async`]).
pub(crate) fn map_and_wait(device: &wgpu::Device, slice: &wgpu::BufferSlice) -> Result<Vec<u8>> {
    #[cfg(target_arch = "wasm32")]
    {
        let _ = (device, slice);
        Err(no_blocking())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        wait_for_device(device)?;
        rx.recv()
            .map_err(|_| Error::Gpu("the readback was dropped".into()))?
            .map_err(|e| Error::Gpu(format!("mapping the readback buffer: {e}")))?;
        mapped_bytes(slice)
    }
}

/// [`map_and_wait`] awaiting the map: in the browser the event loop runs the callback;
/// natively the device is polled until it has (the same wait as the blocking call).
pub(crate) async fn map_async(
    device: &wgpu::Device,
    slice: &wgpu::BufferSlice<'_>,
) -> Result<Vec<u8>> {
    let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    #[cfg(not(target_arch = "wasm32"))]
    wait_for_device(device)?;
    #[cfg(target_arch = "wasm32")]
    let _ = device;
    rx.receive()
        .await
        .ok_or_else(|| Error::Gpu("the readback was dropped".into()))?
        .map_err(|e| Error::Gpu(format!("mapping the readback buffer: {e}")))?;
    mapped_bytes(slice)
}

fn mapped_bytes(slice: &wgpu::BufferSlice) -> Result<Vec<u8>> {
    Ok(slice
        .get_mapped_range()
        .map_err(|e| Error::Gpu(format!("reading the mapped buffer: {e}")))?
        .to_vec())
}
