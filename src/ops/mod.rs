//! Ops: each family in one file with its shape rule, its forward (the kernel it
//! launches on each backend), its backward (the kernels that turn the output gradient
//! into input gradients) and the values it saves. The WGSL lives in `shaders/<family>.wgsl`.
//! `registry` (with the `testing` feature) lists every op so the gradient suite cannot
//! miss one.

pub mod augment;
pub mod batchnorm;
pub mod binary;
pub mod conv2d;
pub use crate::backend::elementwise;
pub mod embedding;
pub mod fused;
pub mod layout;
pub mod loss;
pub mod matmul;
pub mod optim;
pub mod pool2d;
pub mod random;
pub mod reduce;
#[cfg(feature = "testing")]
pub mod registry;
pub mod rnn;
pub mod softmax;
pub(crate) mod split;
pub mod unary;

pub use crate::backend::gpu::params::ParamsInfo;

/// One shader file as the validation tests see it.
#[derive(Clone, Debug)]
pub struct ShaderSource {
    /// The file's name (without `.wgsl`; a file compiled from several parts is named
    /// after its entry points' part).
    pub name: &'static str,
    /// Its WGSL, without the prelude (generated parts included).
    pub source: String,
    /// True when it uses subgroup operations (wgpu's `SUBGROUP` feature).
    pub subgroups: bool,
    /// Its parameter structs, as the Rust side lays them out.
    pub params: Vec<&'static ParamsInfo>,
    /// The kernels the Rust side defines on it.
    pub kernels: Vec<KernelInfo>,
}

/// A kernel constant as the entry-point test sees it.
#[derive(Clone, Copy, Debug)]
pub struct KernelInfo {
    /// Its WGSL entry point.
    pub entry: &'static str,
    /// The name of the parameter struct its launches pass.
    pub params: &'static str,
}

/// Every kernel constant of the op layer (not the generated multi-tensor kernels).
fn all_kernels() -> Vec<&'static crate::backend::gpu::Kernel> {
    [
        crate::backend::gpu::elementwise::unary_kernels(),
        crate::backend::gpu::elementwise::binary_kernels(),
        crate::backend::gpu::reduce::kernels(),
        crate::backend::gpu::layout::kernels(),
        crate::backend::gpu::matmul::kernels(),
        crate::backend::gpu::softmax::kernels(),
        crate::backend::gpu::loss::kernels(),
        crate::backend::gpu::random::kernels(),
        crate::backend::gpu::optim::kernels(),
        crate::backend::gpu::conv2d::kernels(),
        crate::backend::gpu::pool2d::kernels(),
        crate::backend::gpu::augment::kernels(),
        crate::backend::gpu::batchnorm::kernels(),
        crate::backend::gpu::rnn::kernels(),
    ]
    .concat()
}

/// Every shader file, for validation tests, and one instance (for three tensors) of each
/// generated multi-tensor kernel.
pub fn shader_sources() -> Vec<ShaderSource> {
    let files = [
        crate::backend::gpu::elementwise::UNARY_FILE,
        crate::backend::gpu::elementwise::BINARY_FILE,
        crate::backend::gpu::reduce::FILE,
        crate::backend::gpu::reduce::SUBGROUP_FILE,
        crate::backend::gpu::layout::FILE,
        crate::backend::gpu::matmul::FILE,
        crate::backend::gpu::softmax::FILE,
        crate::backend::gpu::loss::FILE,
        crate::backend::gpu::random::FILE,
        crate::backend::gpu::optim::FILE,
        crate::backend::gpu::conv2d::FILE,
        crate::backend::gpu::pool2d::FILE,
        crate::backend::gpu::augment::FILE,
        crate::backend::gpu::batchnorm::FILE,
        crate::backend::gpu::rnn::FILE,
    ];
    let kernels = all_kernels();
    let mut sources: Vec<ShaderSource> = files
        .iter()
        .map(|f| ShaderSource {
            name: f.name,
            source: f.body(),
            subgroups: f.subgroups,
            params: f.params.to_vec(),
            kernels: kernels
                .iter()
                .filter(|k| k.file.name == f.name)
                .map(|k| KernelInfo {
                    entry: k.entry,
                    params: k.params,
                })
                .collect(),
        })
        .collect();
    sources.extend(
        crate::backend::gpu::optim::generated_kernels()
            .into_iter()
            .map(|k| ShaderSource {
                name: k.file.name,
                source: k.file.body(),
                subgroups: k.file.subgroups,
                params: k.file.params.to_vec(),
                kernels: vec![KernelInfo {
                    entry: k.entry,
                    params: k.params,
                }],
            }),
    );
    sources
}

/// Checks that a new tensor of `shape` and `dtype` can exist on `device` before an op
/// makes it: the rank, an element count that does not overflow, on the GPU the 32-bit
/// element indices and the adapter's largest buffer, on the CPU (for 1 GiB and more) an
/// allocation the system can give. Returns the element count. Ops call it where the
/// output can be larger than their inputs (creation, broadcasting, products, images).
pub(crate) fn check_out(
    op: &'static str,
    shape: &[usize],
    dtype: crate::tensor::DType,
    device: &crate::device::Device,
) -> crate::error::Result<usize> {
    let n = crate::shape::check_new(op, shape)?;
    let bytes = n as u64 * dtype.size_bytes() as u64;
    device.backend().check_new(op, shape, bytes)?;
    Ok(n)
}
