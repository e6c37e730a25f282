//! Shader modules and compute pipelines, compiled once per device and cached.
//!
//! Every shader file is compiled with `shaders/prelude.wgsl` prepended. Files whose
//! indices are all guarded in the shader are created without naga's runtime checks
//! (unless [`GpuOptions::shader_checks`](super::GpuOptions) asks for them); a kernel's
//! override constants make one pipeline per combination of values.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{slot, Caches, GpuContext, Kernel, PRELUDE};

/// A compiled kernel variant and the layout of its bind group.
pub(crate) struct Pipeline {
    /// Position in the cache, part of the bind-group cache key.
    pub id: usize,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

impl GpuContext {
    /// True when `file`'s module is created without runtime checks on this device.
    fn unchecked(&self, k: &Kernel) -> bool {
        k.file.guarded && !self.options.shader_checks
    }

    fn module<'c>(
        &self,
        caches: &'c mut Caches,
        k: &'static Kernel,
        overrides: &[u32; 6],
        io: u32,
    ) -> &'c wgpu::ShaderModule {
        let unchecked = self.unchecked(k);
        let variant = k.file.variant_text(k, overrides);
        let key = (k.file.name, variant.clone(), io);
        caches.modules.entry(key).or_insert_with(|| {
            let body = match &variant {
                Some(text) => k.file.body_with(text),
                None => k.file.body(),
            };
            let source = super::half_io::rewrite(PRELUDE, &body, io);
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(k.file.name),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            };
            if unchecked {
                // SAFETY: a guarded file's kernels check every index against the sizes in
                // their parameter block before they read or write, never divide by a
                // parameter the host may pass as zero, and have no unbounded loops
                // (reviewed per file; `tests/gradcheck.rs` runs the whole registry with and
                // without the checks and requires identical results).
                unsafe {
                    self.device
                        .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
                }
            } else {
                self.device.create_shader_module(desc)
            }
        })
    }

    /// The pipeline of `k` with the given override values and input formats (`io`, see
    /// [`super::half_io`]), compiled on first use.
    pub(crate) fn pipeline(
        &self,
        caches: &mut Caches,
        k: &'static Kernel,
        overrides: [u32; 6],
        io: u32,
    ) -> Arc<Pipeline> {
        let key = (k.file.name, k.entry, overrides, io);
        if let Some(p) = caches.pipelines.get(&key) {
            return p.clone();
        }
        let id = caches.pipelines.len();
        let unchecked = self.unchecked(k);
        let module = self.module(caches, k, &overrides, io).clone();
        let storage = |binding: u32, read_only: bool| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: None,
            },
            count: None,
        }];
        entries.extend(k.slots.iter().map(|&s| storage(s, slot::read_only(s))));
        entries.extend(k.extra.iter().map(|e| storage(e.binding, e.read_only)));
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
        let constants: Vec<(&str, f64)> = k
            .overrides
            .iter()
            .zip(overrides)
            .map(|(&name, v)| (name, v as f64))
            .collect();
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(k.entry),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(k.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    // Every kernel writes its workgroup memory before reading it; the
                    // zeroing pass is kept only in the checked (debugging) mode.
                    zero_initialize_workgroup_memory: !unchecked,
                },
                cache: None,
            });
        self.counters
            .pipelines_created
            .fetch_add(1, Ordering::Relaxed);
        let p = Arc::new(Pipeline {
            id,
            pipeline,
            layout,
        });
        caches.pipelines.insert(key, p.clone());
        p
    }
}
