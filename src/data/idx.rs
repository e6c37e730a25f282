//! A reader for IDX files, the format of MNIST, Fashion-MNIST, KMNIST and EMNIST:
//! a big-endian header (two zero bytes, the element type, the number of dimensions,
//! then each dimension's size as a `u32`) followed by the elements, row-major. Files
//! may be gzip-compressed (recognised by their first bytes, whatever their name).
//!
//! Only unsigned-byte files are read: labels (magic `0x00000801`, one dimension) and
//! images (magic `0x00000803`, three dimensions: count, rows, columns). Every check
//! names the file and says what is wrong: a bad magic number, a truncated header or
//! body, bytes after the data, or image and label files that do not belong together.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::InMemoryDataset;
use crate::error::{Error, Result};

/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;

/// Which part of a dataset shipped as training and test files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training examples (`train-*` files).
    Train,
    /// The test examples (`t10k-*` files).
    Test,
}

impl Split {
    /// The prefix of the split's file names in the MNIST layout (`train`, `t10k`).
    pub fn file_prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }

    /// The split's image and label file names in the MNIST layout, without `.gz`
    /// (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`).
    pub fn file_names(self) -> (String, String) {
        let p = self.file_prefix();
        (
            format!("{p}-images-idx3-ubyte"),
            format!("{p}-labels-idx1-ubyte"),
        )
    }
}

/// Images read from an IDX file: `count` images of `rows x cols` bytes, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows of each image.
    pub rows: usize,
    /// Columns of each image.
    pub cols: usize,
    /// `count * rows * cols` grey levels, image after image.
    pub pixels: Vec<u8>,
}

fn format_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Format {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// A file's bytes as a stream, gunzipped when it starts with the gzip magic bytes.
/// The reader pulls only what the header asks for, so a small file that inflates to
/// gigabytes (a "gzip bomb") costs no more memory than its header promises.
fn open_maybe_gzip(path: &Path) -> Result<(Box<dyn Read>, bool)> {
    let io_err = |e| Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        match file.read(&mut magic[got..]).map_err(io_err)? {
            0 => break,
            n => got += n,
        }
    }
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let reader = std::io::BufReader::new(file);
    Ok(if got == 2 && magic == [0x1f, 0x8b] {
        (Box::new(flate2::read::MultiGzDecoder::new(reader)), true)
    } else {
        (Box::new(reader), false)
    })
}

/// Reads up to `limit` bytes of `r` into `out` (fewer at its end). Errors of a gzip
/// stream become format errors.
fn read_up_to(
    r: &mut dyn Read,
    limit: u64,
    out: &mut Vec<u8>,
    path: &Path,
    gz: bool,
) -> Result<()> {
    r.take(limit)
        .read_to_end(out)
        .map(|_| ())
        .map_err(|e| gz_err(e, path, gz))
}

/// A read error: in a gzip stream, a damaged or truncated file.
fn gz_err(e: std::io::Error, path: &Path, gz: bool) -> Error {
    if gz {
        format_err(
            path,
            format!("not a complete gzip stream ({e}); the download may be truncated"),
        )
    } else {
        Error::Io {
            path: path.display().to_string(),
            source: e,
        }
    }
}

fn element_type_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => "unknown",
    }
}

fn describe_magic(magic: u32) -> String {
    let b = magic.to_be_bytes();
    if b[0] != 0 || b[1] != 0 {
        if magic >> 16 == 0x1f8b {
            return "a gzip stream inside the gzip stream".into();
        }
        return "not an IDX file (IDX files start with two zero bytes)".into();
    }
    match magic {
        IDX_LABELS_MAGIC => "an IDX label file".into(),
        IDX_IMAGES_MAGIC => "an IDX image file".into(),
        _ => format!(
            "an IDX file of {} elements (type 0x{:02x}) with {} dimensions",
            element_type_name(b[2]),
            b[2],
            b[3]
        ),
    }
}

/// Parses an IDX file whose magic number must be `magic`; returns its dimension sizes
/// and its data, checked to be exactly as long as the dimensions say.
fn read_idx(path: &Path, magic: u32, what: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    let (mut reader, gz) = open_maybe_gzip(path)?;
    let mut bytes = Vec::with_capacity(4 + 4 * 255);
    read_up_to(&mut reader, 4, &mut bytes, path, gz)?;
    if bytes.len() < 4 {
        return Err(format_err(
            path,
            format!(
                "{} bytes: too short for an IDX header (expected {what})",
                bytes.len()
            ),
        ));
    }
    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found != magic {
        let mut msg = format!(
            "bad magic number 0x{found:08x}, expected 0x{magic:08x} ({what}); this is {}",
            describe_magic(found)
        );
        if matches!(found, IDX_LABELS_MAGIC | IDX_IMAGES_MAGIC) {
            msg.push_str(": were the image and label files swapped?");
        }
        return Err(format_err(path, msg));
    }
    let ndims = bytes[3] as usize;
    let header = 4 + 4 * ndims;
    read_up_to(&mut reader, 4 * ndims as u64, &mut bytes, path, gz)?;
    if bytes.len() < header {
        return Err(format_err(
            path,
            format!(
                "truncated header: {ndims} dimension sizes need {header} bytes, the file holds {}",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let shown = dims
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(" x ");
    let want = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format_err(path, format!("dimensions {shown} overflow")))?;
    // Only what the header promises is read (and reserved, growing with the data, so a
    // header promising more than the file holds costs only what the file holds).
    let mut data = Vec::new();
    read_up_to(&mut reader, want as u64, &mut data, path, gz)?;
    let have = data.len();
    if have < want {
        return Err(format_err(
            path,
            format!(
                "truncated: the header promises {shown} = {want} bytes of data, the file holds \
                 {have}; the file is incomplete (download it again)"
            ),
        ));
    }
    // Trailing bytes are counted, not kept (up to 64 MiB; past that, "more than").
    const COUNTED: u64 = 64 << 20;
    let extra = std::io::copy(&mut reader.take(COUNTED + 1), &mut std::io::sink())
        .map_err(|e| gz_err(e, path, gz))?;
    if extra > 0 {
        let count = if extra > COUNTED {
            "more than 64 MiB of".to_string()
        } else {
            extra.to_string()
        };
        return Err(format_err(
            path,
            format!(
                "{count} unexpected bytes after the {want} bytes of data that the header \
                 ({shown}) describes"
            ),
        ));
    }
    Ok((dims, data))
}

/// Reads an IDX file of images (`u8`, magic `0x00000803`: count, rows, columns), gzip
/// or plain.
pub fn load_idx_images(path: impl AsRef<Path>) -> Result<IdxImages> {
    let (dims, pixels) = read_idx(
        path.as_ref(),
        IDX_IMAGES_MAGIC,
        "IDX images: unsigned bytes, 3 dimensions",
    )?;
    Ok(IdxImages {
        count: dims[0],
        rows: dims[1],
        cols: dims[2],
        pixels,
    })
}

/// Reads an IDX file of labels (`u8`, magic `0x00000801`: count), gzip or plain.
pub fn load_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    Ok(read_idx(
        path.as_ref(),
        IDX_LABELS_MAGIC,
        "IDX labels: unsigned bytes, 1 dimension",
    )?
    .1)
}

/// A classification dataset from an IDX image file and its label file: features
/// `[1, rows, cols]` scaled from 0..255 to [0, 1], labels checked to be below
/// `num_classes` and as many as the images.
pub fn load_idx_classification(
    images: impl AsRef<Path>,
    labels: impl AsRef<Path>,
    num_classes: usize,
) -> Result<InMemoryDataset> {
    let (images, labels) = (images.as_ref(), labels.as_ref());
    let img = load_idx_images(images)?;
    let lab = load_idx_labels(labels)?;
    if img.count != lab.len() {
        return Err(format_err(
            labels,
            format!(
                "{} labels, but the image file {} holds {} images: the two files do not belong \
                 together",
                lab.len(),
                images.display(),
                img.count
            ),
        ));
    }
    if let Some((i, &l)) = lab
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= num_classes)
    {
        return Err(format_err(
            labels,
            format!("label {l} at index {i} is not a class (expected 0..{num_classes})"),
        ));
    }
    let features = img.pixels.iter().map(|&p| p as f32 / 255.0).collect();
    InMemoryDataset::classification(
        features,
        &[1, img.rows, img.cols],
        lab.into_iter().map(u32::from).collect(),
    )
}

/// The file `name.gz` in `dir` if it exists, else `name` (unpacked), else a
/// not-found error naming both.
pub fn locate(dir: impl AsRef<Path>, name: &str) -> Result<PathBuf> {
    let dir = dir.as_ref();
    let gz = dir.join(format!("{name}.gz"));
    let plain = dir.join(name);
    for p in [&gz, &plain] {
        if p.is_file() {
            return Ok(p.clone());
        }
    }
    Err(Error::Io {
        path: gz.display().to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("not found (nor {name} unpacked)"),
        ),
    })
}

/// A split of a dataset kept in the MNIST layout in `dir`
/// (`{train,t10k}-{images-idx3,labels-idx1}-ubyte`, each gzip-compressed or not).
pub fn load_idx_split(
    dir: impl AsRef<Path>,
    split: Split,
    num_classes: usize,
) -> Result<InMemoryDataset> {
    let dir = dir.as_ref();
    let (images, labels) = split.file_names();
    let images = locate(dir, &images)?;
    let labels = locate(dir, &labels)?;
    load_idx_classification(images, labels, num_classes)
}
