//! Every shader file and kernel constant of the GPU backend, as the validation tests
//! (`tests/shaders.rs`, `tests/gradcheck.rs`) see them: a new shader file is listed in
//! [`shader_sources`], a new family's kernel constants in `all_kernels`.

use super::params::ParamsInfo;

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
fn all_kernels() -> Vec<&'static super::Kernel> {
    [
        super::elementwise::unary_kernels(),
        super::elementwise::binary_kernels(),
        super::reduce::kernels(),
        super::layout::kernels(),
        super::matmul::kernels(),
        super::softmax::kernels(),
        super::loss::kernels(),
        super::random::kernels(),
        super::optim::kernels(),
        super::conv2d::kernels(),
        super::pool2d::kernels(),
        super::augment::kernels(),
        super::batchnorm::kernels(),
        super::norm::kernels(),
        super::rnn::kernels(),
        super::inplace::kernels(),
        super::attention::kernels(),
        super::attention_rows::kernels(),
        super::half::kernels(),
        super::amp::kernels(),
    ]
    .concat()
}

/// Every shader file, for validation tests, and one instance (for three tensors) of each
/// generated multi-tensor kernel.
pub fn shader_sources() -> Vec<ShaderSource> {
    let files = [
        super::elementwise::UNARY_FILE,
        super::elementwise::BINARY_FILE,
        super::reduce::FILE,
        super::reduce::SUBGROUP_FILE,
        super::layout::FILE,
        super::matmul::FILE,
        super::softmax::FILE,
        super::loss::FILE,
        super::random::FILE,
        super::optim::FILE,
        super::conv2d::FILE,
        super::pool2d::FILE,
        super::augment::FILE,
        super::batchnorm::FILE,
        super::norm::FILE,
        super::rnn::FILE,
        super::inplace::FILE,
        super::attention::FILE,
        super::attention_rows::FILE,
        super::half::FILE,
        super::amp::FILE,
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
        super::optim::generated_kernels()
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
