//! Saving and loading parameters as safetensors, with PyTorch's `state_dict` names and
//! layouts, so files move between wgrad and PyTorch. Loading checks every name, shape
//! and dtype before changing anything: a bad file leaves the model as it was.

use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::Module;
use crate::tensor::{DType, Tensor};

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source: e,
    }
}

fn format_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Format {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// Writes named tensors (`f32`, `f64` or `u32`) to a safetensors file.
pub fn write_safetensors(tensors: &[(String, Tensor)], path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let mut bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let (dtype, data) = match t.dtype() {
            DType::F32 => (
                Dtype::F32,
                bytemuck::cast_slice(&t.to_vec::<f32>()?).to_vec(),
            ),
            DType::F64 => (
                Dtype::F64,
                bytemuck::cast_slice(&t.to_vec::<f64>()?).to_vec(),
            ),
            DType::U32 => (
                Dtype::U32,
                bytemuck::cast_slice(&t.to_vec::<u32>()?).to_vec(),
            ),
        };
        bytes.push((name.clone(), dtype, t.shape().to_vec(), data));
    }
    let views = bytes
        .iter()
        .map(|(n, d, s, b)| TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format_err(path, e.to_string()))?;
    let data =
        safetensors::tensor::serialize(views, None).map_err(|e| format_err(path, e.to_string()))?;
    std::fs::write(path, data).map_err(|e| io_err(path, e))
}

/// Reads every tensor of a safetensors file onto `device`, in the file's order of names.
/// `F32`, `F64` and `U32` load as they are; signed integers (`I64`, `I32`: PyTorch's
/// `num_batches_tracked` counters and index tensors) load as `U32` when every value fits
/// `0..2^32`, else they are an error, as are other element types.
pub fn read_safetensors(path: impl AsRef<Path>, device: &Device) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| format_err(path, format!("not a valid safetensors file ({e})")))?;
    let mut names: Vec<&str> = st.names();
    names.sort_unstable();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let v = st
            .tensor(name)
            .map_err(|e| format_err(path, e.to_string()))?;
        let shape = v.shape().to_vec();
        let t = match v.dtype() {
            Dtype::F32 => Tensor::from_vec(
                bytemuck::pod_collect_to_vec::<u8, f32>(v.data()),
                &shape,
                device,
            )?,
            Dtype::F64 => Tensor::from_vec(
                bytemuck::pod_collect_to_vec::<u8, f64>(v.data()),
                &shape,
                device,
            )?,
            Dtype::U32 => Tensor::from_vec(
                bytemuck::pod_collect_to_vec::<u8, u32>(v.data()),
                &shape,
                device,
            )?,
            Dtype::I64 | Dtype::I32 => {
                let values: Vec<i64> = if v.dtype() == Dtype::I64 {
                    bytemuck::pod_collect_to_vec::<u8, i64>(v.data())
                } else {
                    bytemuck::pod_collect_to_vec::<u8, i32>(v.data())
                        .into_iter()
                        .map(i64::from)
                        .collect()
                };
                let narrowed: Option<Vec<u32>> =
                    values.iter().map(|&x| u32::try_from(x).ok()).collect();
                let Some(narrowed) = narrowed else {
                    return Err(format_err(
                        path,
                        format!(
                            "tensor {name} ({:?}) has values outside 0..2^32, which wgrad's U32 cannot hold",
                            v.dtype()
                        ),
                    ));
                };
                Tensor::from_vec(narrowed, &shape, device)?
            }
            other => {
                return Err(format_err(
                    path,
                    format!(
                        "tensor {name} has dtype {other:?}; wgrad reads F32, F64, U32, and I64/I32 that fit U32"
                    ),
                ))
            }
        };
        out.push((name.to_string(), t));
    }
    Ok(out)
}

/// Saves a module's parameters (its `state_dict`) to a safetensors file.
pub fn save(model: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    write_safetensors(&model.state_dict(), path)
}

/// Loads a module's parameters from a safetensors file (for example one written by
/// PyTorch's `safetensors.torch.save_file(model.state_dict(), path)`). Missing or
/// unexpected names, wrong shapes, wrong dtypes and damaged files are errors, and then
/// the model is unchanged.
pub fn load(model: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    // Read to the CPU first: a bad file then costs no GPU memory, and shapes are checked
    // before anything moves.
    let state = read_safetensors(path, &Device::Cpu)?;
    model.load_state_dict(&state).map_err(|e| match e {
        Error::StateDict(msg) => format_err(path, format!("does not fit the model: {msg}")),
        other => other,
    })
}
