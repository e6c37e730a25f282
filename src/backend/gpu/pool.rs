//! GPU buffers come from a pool keyed by size class (powers of two) and go back to it
//! when the last tensor handle drops. Within a class the lowest-numbered free buffer is
//! handed out, so a training loop that repeats the same sequence of allocations gets the
//! same buffers each step and therefore hits the bind-group cache every time.
//! Reuse while work is still pending is safe: all work runs in queue order.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::GpuContext;
use crate::error::{oom_err, Result};

/// Smallest buffer handed out: wgpu cannot bind a zero-sized buffer.
const MIN_CLASS: u64 = 256;

pub(crate) fn size_class(bytes: u64) -> u64 {
    bytes.max(MIN_CLASS).next_power_of_two()
}

/// The size class, or the size rounded up to 256 bytes when the power of two would pass
/// the adapter's largest buffer (`limit`), or would pass the largest binding (`binding`,
/// a multiple of 256) that the size itself fits: a tensor a kernel can bind whole gets
/// a buffer it can bind whole.
fn class_within(bytes: u64, limit: u64, binding: u64) -> u64 {
    let class = size_class(bytes);
    if class <= limit && (class <= binding || bytes > binding) {
        class
    } else {
        bytes.next_multiple_of(MIN_CLASS).min(limit)
    }
}

/// `1.5 GiB`, `300 MiB`, `12 KiB`, `10 B`.
pub(crate) fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[derive(Default)]
pub(crate) struct Pool {
    free: HashMap<u64, BTreeMap<u64, wgpu::Buffer>>,
    staging_free: HashMap<u64, BTreeMap<u64, wgpu::Buffer>>,
    next_id: u64,
}

/// One pooled storage buffer holding a tensor's elements. Returned to the pool on drop.
pub struct GpuBuffer {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) id: u64,
    pub(crate) class: u64,
    pub(crate) ctx: Arc<GpuContext>,
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer(#{}, {} bytes)", self.id, self.class)
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        let c = &self.ctx.counters;
        c.bytes_in_use.fetch_sub(self.class, Ordering::Relaxed);
        let mut pool = self.ctx.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.free
            .entry(self.class)
            .or_default()
            .insert(self.id, self.buffer.clone());
    }
}

/// A mappable buffer for reading results back to the host.
pub(crate) struct StagingBuffer {
    pub(crate) buffer: wgpu::Buffer,
    id: u64,
    class: u64,
    pub(crate) ctx: Arc<GpuContext>,
}

impl Drop for StagingBuffer {
    fn drop(&mut self) {
        let mut pool = self.ctx.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.staging_free
            .entry(self.class)
            .or_default()
            .insert(self.id, self.buffer.clone());
    }
}

impl GpuContext {
    /// A storage buffer able to hold `bytes` bytes (contents undefined), or
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory) when the adapter's largest buffer
    /// is smaller or the device cannot allocate it.
    pub(crate) fn alloc(self: &Arc<Self>, bytes: u64) -> Result<GpuBuffer> {
        let limit = self.limits.max_buffer_size;
        if bytes > limit {
            return oom_err(
                "alloc",
                format!(
                    "a tensor of {} needs one buffer; the largest buffer {} allows is {}",
                    fmt_bytes(bytes),
                    self.info.name,
                    fmt_bytes(limit)
                ),
            );
        }
        let class = class_within(bytes, limit, self.binding_cap());
        let reused = {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.free.get_mut(&class).and_then(|m| m.pop_first())
        };
        let (id, buffer) = match reused {
            Some(pair) => pair,
            None => {
                let create = || {
                    let descriptor = wgpu::BufferDescriptor {
                        label: Some("wgrad tensor"),
                        size: class,
                        usage: wgpu::BufferUsages::STORAGE
                            | wgpu::BufferUsages::COPY_SRC
                            | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    };
                    // In the browser the error scope's answer comes back asynchronously
                    // and nothing may block: the limits checked above are the guard there.
                    #[cfg(target_arch = "wasm32")]
                    return Ok::<_, wgpu::Error>(self.device.create_buffer(&descriptor));
                    #[cfg(not(target_arch = "wasm32"))]
                    {
                        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
                        let buffer = self.device.create_buffer(&descriptor);
                        match pollster::block_on(scope.pop()) {
                            None => Ok(buffer),
                            Some(e) => Err(e),
                        }
                    }
                };
                // On failure, free what the pool holds and try once more.
                let buffer = match create() {
                    Ok(b) => b,
                    Err(_) => {
                        self.trim();
                        create().or_else(|e| {
                            oom_err(
                                "alloc",
                                format!(
                                    "{} could not allocate {} ({e})",
                                    self.info.name,
                                    fmt_bytes(class)
                                ),
                            )
                        })?
                    }
                };
                self.counters
                    .buffers_created
                    .fetch_add(1, Ordering::Relaxed);
                (self.next_buffer_id(), buffer)
            }
        };
        let c = &self.counters;
        let now = c.bytes_in_use.fetch_add(class, Ordering::Relaxed) + class;
        c.peak_bytes.fetch_max(now, Ordering::Relaxed);
        Ok(GpuBuffer {
            buffer,
            id,
            class,
            ctx: self.clone(),
        })
    }

    pub(crate) fn alloc_staging(self: &Arc<Self>, bytes: u64) -> StagingBuffer {
        let class = size_class(bytes);
        let reused = {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.staging_free
                .get_mut(&class)
                .and_then(|m| m.pop_first())
        };
        let (id, buffer) = match reused {
            Some(pair) => pair,
            None => {
                let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgrad readback"),
                    size: class,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                self.counters
                    .buffers_created
                    .fetch_add(1, Ordering::Relaxed);
                (self.next_buffer_id(), buffer)
            }
        };
        StagingBuffer {
            buffer,
            id,
            class,
            ctx: self.clone(),
        }
    }

    pub(crate) fn next_buffer_id(&self) -> u64 {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.next_id += 1;
        pool.next_id
    }

    /// Frees every pooled buffer that no tensor uses (and the bind groups that name them).
    pub fn trim(&self) {
        let mut st = self.lock_state();
        self.flush_locked(&mut st, None);
        st.bind_groups.clear();
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.free.clear();
        pool.staging_free.clear();
    }
}
