//! Saving and loading parameters as safetensors, with PyTorch's `state_dict` names and
//! layouts, so files move between wgrad and PyTorch. Loading checks every name, shape
//! and dtype before changing anything: a bad file leaves the model as it was. Every file
//! is written atomically (a temporary file in the same directory, synced, then renamed
//! over the target), so a failed save (a full disk, a crash) leaves the previous file.
//! Training checkpoints (model, optimizer, schedule, random generator and progress in
//! one file) are in [`Checkpoint`].

mod checkpoint;

pub use checkpoint::{load_checkpoint, save_checkpoint, Checkpoint, CHECKPOINT_VERSION};

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::Module;
use crate::tensor::{DType, Tensor};

pub(crate) fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source: e,
    }
}

pub(crate) fn format_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Format {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// Writes named tensors (`f32`, `f64`, `f16`, `bf16` or `u32`) to a safetensors file, atomically: on
/// any error the previous file at `path` (if any) is left as it was.
pub fn write_safetensors(tensors: &[(String, Tensor)], path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    write_atomic(path, &encode_safetensors(tensors, None, path)?)
}

/// The bytes of a safetensors file holding `tensors` and the `__metadata__` map.
pub(crate) fn encode_safetensors(
    tensors: &[(String, Tensor)],
    metadata: Option<HashMap<String, String>>,
    path: &Path,
) -> Result<Vec<u8>> {
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
            DType::F16 => (
                Dtype::F16,
                bytemuck::cast_slice(&t.to_vec::<crate::half::f16>()?).to_vec(),
            ),
            DType::BF16 => (
                Dtype::BF16,
                bytemuck::cast_slice(&t.to_vec::<crate::half::bf16>()?).to_vec(),
            ),
        };
        bytes.push((name.clone(), dtype, t.shape().to_vec(), data));
    }
    let views = bytes
        .iter()
        .map(|(n, d, s, b)| TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format_err(path, e.to_string()))?;
    safetensors::tensor::serialize(views, metadata).map_err(|e| format_err(path, e.to_string()))
}

/// Writes `data` to `path` atomically: into a new temporary file next to it (a name no
/// concurrent save can take), synced to disk, renamed over `path`, and (on Unix) the
/// directory synced so that the rename survives a crash. On any error before the rename
/// the temporary file is removed and `path` is untouched (absent if it was absent); a
/// failure to sync the directory afterwards is reported with the new file in place. A
/// symbolic link is followed: the file it points to is replaced, not the link.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_with(path, data, &mut |f, d| f.write_all(d))
}

/// [`write_atomic`] with the writing of the bytes into the temporary file done by
/// `write`: a seam for tests that make the write fail midway (a full disk).
#[doc(hidden)]
pub fn write_atomic_with(
    path: &Path,
    data: &[u8],
    write: &mut dyn FnMut(&mut File, &[u8]) -> std::io::Result<()>,
) -> Result<()> {
    let link_target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).ok(),
        _ => None,
    };
    let path = link_target.as_deref().unwrap_or(path);
    let (tmp, mut file) = create_temp(path)?;
    let written = write(&mut file, data)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            // Closed before the rename (Windows cannot rename an open file; on wasm32
            // a File has nothing to close, hence the allow).
            #[allow(clippy::drop_non_drop)]
            drop(file);
            std::fs::rename(&tmp, path)
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(path, e));
    }
    sync_dir(path).map_err(|e| io_err(path, e))
}

/// A new, empty temporary file in `path`'s directory, named after it
/// (`.NAME.PID-N.wgrad-tmp`); `create_new` guarantees no other save holds the name.
fn create_temp(path: &Path) -> Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let Some(name) = path.file_name() else {
        return Err(io_err(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        ));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{}.{}-{n}{TEMP_SUFFIX}",
            name.to_string_lossy(),
            std::process::id()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(path, e)),
        }
    }
}

/// How the temporary files of atomic saves end (a leftover one is from a killed process).
pub const TEMP_SUFFIX: &str = ".wgrad-tmp";

/// Syncs the directory holding `path`, so that a rename into it is durable (Unix; a
/// no-op elsewhere, and where the file system cannot sync directories).
fn sync_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        match File::open(dir).and_then(|d| d.sync_all()) {
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
            other => other,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Reads every tensor of a safetensors file onto `device`, in the file's order of names.
/// `F32`, `F64` and `U32` load as they are; signed integers (`I64`, `I32`: PyTorch's
/// `num_batches_tracked` counters and index tensors) load as `U32` when every value fits
/// `0..2^32`, else they are an error, as are other element types.
pub fn read_safetensors(path: impl AsRef<Path>, device: &Device) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    Ok(read_with_metadata(path, device)?.0)
}

/// Tensors by name.
type NamedTensors = Vec<(String, Tensor)>;

/// [`read_safetensors`] and the file's `__metadata__` map (empty when it has none).
pub(crate) fn read_with_metadata(
    path: &Path,
    device: &Device,
) -> Result<(NamedTensors, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| format_err(path, format!("not a valid safetensors file ({e})")))?;
    let metadata = SafeTensors::read_metadata(&bytes)
        .map_err(|e| format_err(path, format!("not a valid safetensors file ({e})")))?
        .1
        .metadata()
        .clone()
        .unwrap_or_default();
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
            Dtype::F16 => Tensor::from_vec(
                bytemuck::pod_collect_to_vec::<u8, crate::half::f16>(v.data()),
                &shape,
                device,
            )?,
            Dtype::BF16 => Tensor::from_vec(
                bytemuck::pod_collect_to_vec::<u8, crate::half::bf16>(v.data()),
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
                        "tensor {name} has dtype {other:?}; wgrad reads F32, F64, F16, BF16, U32, and I64/I32 that fit U32"
                    ),
                ))
            }
        };
        out.push((name.to_string(), t));
    }
    Ok((out, metadata))
}

/// Saves a module's parameters and buffers (its `state_dict`) to a safetensors file,
/// under PyTorch's names (`0.weight`, `0.bias`, ...), atomically: a failed save leaves
/// the previous file as it was.
///
/// ```
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let model = Sequential::new().add(Linear::new(&dev, 4, 2));
/// let path = std::env::temp_dir().join(format!("wgrad-save-{}.safetensors", std::process::id()));
/// wgrad::io::save(&model, &path)?;
/// let saved = wgrad::io::read_safetensors(&path, &dev)?;
/// let names: Vec<&str> = saved.iter().map(|(n, _)| n.as_str()).collect();
/// assert!(names.contains(&"0.weight") && names.contains(&"0.bias"));
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
pub fn save(model: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    write_safetensors(&model.state_dict(), path)
}

/// Loads a module's parameters from a safetensors file (for example one written by
/// PyTorch's `safetensors.torch.save_file(model.state_dict(), path)`). Missing or
/// unexpected names, wrong shapes, wrong dtypes and damaged files are errors, and then
/// the model is unchanged.
///
/// ```
/// use wgrad::prelude::*;
/// # fn main() -> wgrad::Result<()> {
/// let dev = Device::cpu();
/// let path = std::env::temp_dir().join(format!("wgrad-load-{}.safetensors", std::process::id()));
/// let trained = Sequential::new().add(Linear::new(&dev, 4, 2));
/// wgrad::io::save(&trained, &path)?;
///
/// let fresh = Sequential::new().add(Linear::new(&dev, 4, 2)); // other random weights
/// wgrad::io::load(&fresh, &path)?;
/// let x = Tensor::ones(&[1, 4], &dev)?;
/// assert_eq!(fresh.forward(&x)?.to_vec::<f32>()?, trained.forward(&x)?.to_vec::<f32>()?);
///
/// let wrong = Sequential::new().add(Linear::new(&dev, 3, 2)); // another shape
/// assert!(wgrad::io::load(&wrong, &path).is_err());
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
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
