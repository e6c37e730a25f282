//! The bundled handwritten digits (`data/digits.csv.gz`; source and licence in
//! `data/SOURCES.md`): 1,797 8x8 images with grey levels 0..16 and their labels.

use std::path::{Path, PathBuf};

use super::InMemoryDataset;
use crate::error::{Error, Result};

/// Where the repository keeps the file.
pub fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join("digits.csv.gz")
}

/// Loads the digits from the repository's copy, pixels scaled to [0, 1], as flat
/// features of shape `[64]` with class labels 0..9.
///
/// ```
/// use wgrad::data::Dataset;
/// # fn main() -> wgrad::Result<()> {
/// let digits = wgrad::data::digits::load()?;
/// assert_eq!(digits.len(), 1797);
/// assert_eq!(digits.feature_shape(), [64]);
/// # Ok(()) }
/// ```
pub fn load() -> Result<InMemoryDataset> {
    load_from(default_path())
}

/// Loads a digits file (gzip-compressed CSV rows of 64 pixels 0..16 and a label 0..9).
pub fn load_from(path: impl AsRef<Path>) -> Result<InMemoryDataset> {
    let path = path.as_ref();
    let text = super::text::load_gzip_text(path)?;
    parse(&text, &path.display().to_string())
}

/// The digits from the bytes of a digits file (gzip-compressed CSV, as
/// [`load_from`] reads): for programs that embed the data, such as the browser demo
/// (`include_bytes!` of `data/digits.csv.gz`). `origin` names the data in errors.
pub fn from_gzip_bytes(bytes: &[u8], origin: &str) -> Result<InMemoryDataset> {
    parse(&super::text::gunzip_text(bytes, origin)?, origin)
}

/// The digits from their CSV text.
fn parse(text: &str, origin: &str) -> Result<InMemoryDataset> {
    let bad = |msg: String| Error::Format {
        path: origin.to_string(),
        msg,
    };
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for (line_no, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let vals: Vec<f32> = line
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad(format!("line {}: {e}", line_no + 1)))?;
        if vals.len() != 65 {
            return Err(bad(format!(
                "line {}: {} values, expected 65",
                line_no + 1,
                vals.len()
            )));
        }
        let label = vals[64];
        if !(0.0..=9.0).contains(&label) || label.fract() != 0.0 {
            return Err(bad(format!(
                "line {}: label {label} is not a digit",
                line_no + 1
            )));
        }
        features.extend(vals[..64].iter().map(|p| p / 16.0));
        labels.push(label as u32);
    }
    InMemoryDataset::classification(features, &[64], labels)
}
