//! Fashion-MNIST (Zalando Research): 28x28 grey images of clothes in 10 classes,
//! 60,000 for training and 10,000 for testing, in the MNIST file layout.
//!
//! The data is not bundled. On Debian and Ubuntu `apt-get install dataset-fashion-mnist`
//! puts the four files in `/usr/share/datasets/fashion-mnist`, where [`load`] looks;
//! [`load_from`] reads them from any folder (gzip-compressed or unpacked).
//!
//! ```no_run
//! use wgrad::data::fashion_mnist::{self, Split, CLASS_NAMES};
//! use wgrad::data::Dataset;
//! # fn main() -> wgrad::Result<()> {
//! let train = fashion_mnist::load(Split::Train)?;
//! assert_eq!(train.len(), 60_000);
//! assert_eq!(train.feature_shape(), [1, 28, 28]);
//! println!("first label: {}", CLASS_NAMES[train.labels().unwrap()[0] as usize]);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use super::idx::load_idx_split;
pub use super::idx::Split;
use super::{Dataset, InMemoryDataset};
use crate::error::{Error, Result};

/// Where the Debian/Ubuntu package `dataset-fashion-mnist` installs the files.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The names of the ten classes, by label.
pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// [`DEFAULT_DIR`] as a path.
pub fn default_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DIR)
}

/// Loads a split from [`DEFAULT_DIR`]: features `[1, 28, 28]` scaled to [0, 1], labels
/// 0..9 (see [`CLASS_NAMES`]).
pub fn load(split: Split) -> Result<InMemoryDataset> {
    load_from(DEFAULT_DIR, split)
}

/// Loads a split from `dir`, which holds `train-images-idx3-ubyte.gz`,
/// `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz` and
/// `t10k-labels-idx1-ubyte.gz` (or the same files unpacked). A missing file is an
/// [`Error::Io`] whose message says how to get the data.
pub fn load_from(dir: impl AsRef<Path>, split: Split) -> Result<InMemoryDataset> {
    let dir = dir.as_ref();
    let data = load_idx_split(dir, split, CLASS_NAMES.len()).map_err(|e| match e {
        Error::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => Error::Io {
            path,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "{source}. The Fashion-MNIST data is not there: on Debian/Ubuntu \
                         `apt-get install dataset-fashion-mnist` installs it in {DEFAULT_DIR}, \
                         or pass a folder holding the four files \
                         train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, \
                         t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz to \
                         fashion_mnist::load_from"
                ),
            ),
        },
        other => other,
    })?;
    if data.feature_shape() != [1, 28, 28] {
        return Err(Error::Format {
            path: dir.join(split.file_names().0).display().to_string(),
            msg: format!(
                "images of shape {:?}, Fashion-MNIST's are [1, 28, 28]: is this another \
                 dataset? (wgrad::data::idx::load_idx_split reads any)",
                data.feature_shape()
            ),
        });
    }
    Ok(data)
}
