//! Data: the [`Dataset`] trait, an in-memory dataset, subsets and a seeded train/test
//! split, a [`DataLoader`] that shuffles with a seed and delivers batches as tensors on
//! the chosen device, the bundled digits, an IDX reader with a Fashion-MNIST loader,
//! and one-hot and normalisation helpers.

pub mod augment;
pub mod digits;
pub mod fashion_mnist;
pub mod idx;
pub mod text;

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::device::Device;
use crate::error::{arg_err, Result};
use crate::tensor::Tensor;

/// What one example predicts.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A class index.
    Class(u32),
    /// Real values (regression, autoencoders).
    Values(Vec<f32>),
}

/// A collection of examples with fixed feature (and target) shapes.
pub trait Dataset: Send + Sync {
    /// Number of examples.
    fn len(&self) -> usize;
    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The shape of one example's features (`[64]` for flat digits, `[1, 8, 8]` as images).
    fn feature_shape(&self) -> Vec<usize>;
    /// The shape of one `Target::Values` target (`[]` for class labels).
    fn target_shape(&self) -> Vec<usize> {
        Vec::new()
    }
    /// Example `i`: its features (row-major) and its target.
    fn get(&self, i: usize) -> (Vec<f32>, Target);
}

/// Examples held in memory.
#[derive(Clone, Debug)]
pub struct InMemoryDataset {
    features: Vec<f32>,
    feature_shape: Vec<usize>,
    targets: Vec<Target>,
    target_shape: Vec<usize>,
}

impl InMemoryDataset {
    /// Classification data: `features` holds `labels.len()` rows of `feature_shape`.
    pub fn classification(
        features: Vec<f32>,
        feature_shape: &[usize],
        labels: Vec<u32>,
    ) -> Result<Self> {
        let row: usize = feature_shape.iter().product();
        if features.len() != row * labels.len() {
            return arg_err(
                "InMemoryDataset",
                format!(
                    "{} feature values for {} labels of shape {feature_shape:?}",
                    features.len(),
                    labels.len()
                ),
            );
        }
        Ok(InMemoryDataset {
            features,
            feature_shape: feature_shape.to_vec(),
            targets: labels.into_iter().map(Target::Class).collect(),
            target_shape: Vec::new(),
        })
    }

    /// Regression data: targets of `target_shape` per row.
    pub fn regression(
        features: Vec<f32>,
        feature_shape: &[usize],
        targets: Vec<f32>,
        target_shape: &[usize],
    ) -> Result<Self> {
        let row: usize = feature_shape.iter().product();
        let trow: usize = target_shape.iter().product();
        let n = features.len().checked_div(row).unwrap_or(0);
        if features.len() != row * n || targets.len() != trow * n {
            return arg_err(
                "InMemoryDataset",
                format!(
                    "{} feature values and {} target values do not make whole rows",
                    features.len(),
                    targets.len()
                ),
            );
        }
        Ok(InMemoryDataset {
            features,
            feature_shape: feature_shape.to_vec(),
            targets: targets
                .chunks(trow.max(1))
                .take(n)
                .map(|c| Target::Values(c.to_vec()))
                .collect(),
            target_shape: target_shape.to_vec(),
        })
    }

    /// The labels of a classification set (`None` for regression).
    pub fn labels(&self) -> Option<Vec<u32>> {
        self.targets
            .iter()
            .map(|t| match t {
                Target::Class(c) => Some(*c),
                Target::Values(_) => None,
            })
            .collect()
    }

    /// The feature values, row after row.
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    /// Applies `f` to every feature value (e.g. scaling).
    pub fn map_features(mut self, f: impl Fn(f32) -> f32) -> Self {
        self.features.iter_mut().for_each(|v| *v = f(*v));
        self
    }
}

impl Dataset for InMemoryDataset {
    fn len(&self) -> usize {
        self.targets.len()
    }
    fn feature_shape(&self) -> Vec<usize> {
        self.feature_shape.clone()
    }
    fn target_shape(&self) -> Vec<usize> {
        self.target_shape.clone()
    }
    fn get(&self, i: usize) -> (Vec<f32>, Target) {
        let row: usize = self.feature_shape.iter().product();
        (
            self.features[i * row..(i + 1) * row].to_vec(),
            self.targets[i].clone(),
        )
    }
}

/// A view of some examples of another dataset.
#[derive(Clone)]
pub struct Subset {
    dataset: Arc<dyn Dataset>,
    indices: Vec<usize>,
}

impl Subset {
    /// The examples `indices` of `dataset`.
    pub fn new(dataset: Arc<dyn Dataset>, indices: Vec<usize>) -> Subset {
        Subset { dataset, indices }
    }
    /// Which examples of the parent it holds.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }
}

impl Dataset for Subset {
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn feature_shape(&self) -> Vec<usize> {
        self.dataset.feature_shape()
    }
    fn target_shape(&self) -> Vec<usize> {
        self.dataset.target_shape()
    }
    fn get(&self, i: usize) -> (Vec<f32>, Target) {
        self.dataset.get(self.indices[i])
    }
}

/// Splits a dataset at random (seeded) into a training part and a test part holding
/// `test_fraction` of the examples.
pub fn train_test_split(
    dataset: Arc<dyn Dataset>,
    test_fraction: f64,
    seed: u64,
) -> Result<(Subset, Subset)> {
    if !(0.0..1.0).contains(&test_fraction) {
        return arg_err(
            "train_test_split",
            format!("test_fraction must be in [0, 1), got {test_fraction}"),
        );
    }
    let mut idx: Vec<usize> = (0..dataset.len()).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(seed));
    let n_test = (dataset.len() as f64 * test_fraction).round() as usize;
    let test = idx.split_off(idx.len() - n_test);
    Ok((
        Subset::new(dataset.clone(), idx),
        Subset::new(dataset, test),
    ))
}

/// One batch: features `[B, feature_shape...]` and targets (`u32 [B]` for classes,
/// `f32 [B, target_shape...]` for values), on the loader's device.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The inputs.
    pub x: Tensor,
    /// The targets.
    pub y: Tensor,
}

/// Turns a dataset into batches on a device, reshuffling (seeded) every epoch.
pub struct DataLoader {
    dataset: Arc<dyn Dataset>,
    batch_size: usize,
    shuffle_seed: Option<u64>,
    drop_last: bool,
    device: Device,
    epoch: u64,
    augment: Option<augment::Augment>,
    sampler: Option<crate::distributed::DistributedSampler>,
}

impl DataLoader {
    /// Batches of `batch_size` in order, not shuffled, keeping a short last batch. Each
    /// batch's inputs and targets are tensors on `device`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use wgrad::data::InMemoryDataset;
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// // Five examples of two features each, with class labels.
    /// let features = (0..10).map(|v| v as f32).collect();
    /// let data = InMemoryDataset::classification(features, &[2], vec![0, 1, 0, 1, 0])?;
    /// let mut loader = DataLoader::new(Arc::new(data), 2, &dev);
    /// assert_eq!(loader.len(), 3); // 2 + 2 + 1
    /// let first = loader.epoch().next().unwrap()?;
    /// assert_eq!(first.x.shape(), [2, 2]);
    /// assert_eq!(first.x.to_vec::<f32>()?, [0.0, 1.0, 2.0, 3.0]);
    /// assert_eq!(first.y.to_vec::<u32>()?, [0, 1]);
    /// # Ok(()) }
    /// ```
    pub fn new(dataset: Arc<dyn Dataset>, batch_size: usize, device: &Device) -> DataLoader {
        DataLoader {
            dataset,
            batch_size: batch_size.max(1),
            shuffle_seed: None,
            drop_last: false,
            device: device.clone(),
            epoch: 0,
            augment: None,
            sampler: None,
        }
    }
    /// Shuffles every epoch with a generator seeded by `seed` and the epoch number, so
    /// each epoch has its own order and a rerun with the same seed repeats them all.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use wgrad::data::InMemoryDataset;
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let features = (0..8).map(|v| v as f32).collect();
    /// let data = InMemoryDataset::classification(features, &[1], vec![0; 8])?;
    /// let mut loader = DataLoader::new(Arc::new(data), 8, &dev).shuffle(42);
    /// let mut order = loader.epoch().next().unwrap()?.x.to_vec::<f32>()?;
    /// order.sort_by(f32::total_cmp);
    /// assert_eq!(order, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]); // every example once
    /// # Ok(()) }
    /// ```
    pub fn shuffle(mut self, seed: u64) -> DataLoader {
        self.shuffle_seed = Some(seed);
        self
    }
    /// Augments every batch's inputs (NCHW images) with `aug`; the targets are untouched.
    /// Batch `b` of epoch `e` uses step number `e * batches + b`, so runs repeat exactly.
    pub fn augment(mut self, aug: augment::Augment) -> DataLoader {
        self.augment = Some(aug);
        self
    }
    /// Draws each epoch's examples from `sampler` (this rank's shard in data-parallel
    /// training; it shuffles, so [`DataLoader::shuffle`] no longer applies). The
    /// loader passes its epoch number, so every epoch is reshuffled on every rank
    /// alike (PyTorch's `set_epoch`, done for you).
    pub fn distributed(
        mut self,
        sampler: crate::distributed::DistributedSampler,
    ) -> Result<DataLoader> {
        let len = self.dataset.len();
        if sampler.dataset_len() != len {
            return crate::error::arg_err(
                "DataLoader::distributed",
                format!(
                    "the sampler is for {} examples, the data set has {len}",
                    sampler.dataset_len()
                ),
            );
        }
        self.sampler = Some(sampler);
        Ok(self)
    }
    /// Drops a last batch smaller than `batch_size`.
    pub fn drop_last(mut self, on: bool) -> DataLoader {
        self.drop_last = on;
        self
    }
    /// Batches per epoch.
    pub fn len(&self) -> usize {
        let n = self
            .sampler
            .as_ref()
            .map_or(self.dataset.len(), |s| s.num_samples());
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }
    /// True when an epoch has no batches.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The dataset.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    /// The batches of the next epoch (each an `Err` only if making its tensors fails).
    /// Every call starts a new epoch, reshuffled when [`DataLoader::shuffle`] is on.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use wgrad::prelude::*;
    /// # fn main() -> wgrad::Result<()> {
    /// let dev = Device::cpu();
    /// let data = Arc::new(wgrad::data::digits::load()?);
    /// let mut loader = DataLoader::new(data, 256, &dev).shuffle(0);
    /// let mut seen = 0;
    /// for batch in loader.epoch() {
    ///     let batch = batch?; // x: [B, 64] f32 pixels, y: [B] u32 labels
    ///     seen += batch.y.shape()[0];
    /// }
    /// assert_eq!(seen, 1797);
    /// # Ok(()) }
    /// ```
    pub fn epoch(&mut self) -> impl Iterator<Item = Result<Batch>> + '_ {
        let mut order: Vec<usize> = match &self.sampler {
            Some(s) => s.indices(self.epoch),
            None => (0..self.dataset.len()).collect(),
        };
        if let (Some(seed), None) = (self.shuffle_seed, &self.sampler) {
            order.shuffle(&mut StdRng::seed_from_u64(
                seed.wrapping_add(self.epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            ));
        }
        let epoch = self.epoch;
        self.epoch += 1;
        let batches = self.len();
        let bs = self.batch_size;
        (0..batches).map(move |b| {
            let idx = &order[b * bs..((b + 1) * bs).min(order.len())];
            let mut batch = make_batch(self.dataset.as_ref(), idx, &self.device)?;
            if let Some(aug) = &self.augment {
                batch.x = aug.apply(&batch.x, epoch * batches as u64 + b as u64)?;
            }
            Ok(batch)
        })
    }
}

/// Gathers examples `idx` into one batch on `device`.
pub fn make_batch(dataset: &dyn Dataset, idx: &[usize], device: &Device) -> Result<Batch> {
    let mut fshape = vec![idx.len()];
    fshape.extend(dataset.feature_shape());
    let row: usize = dataset.feature_shape().iter().product();
    // From the CPU pool: on the CPU the batch's buffer goes back there when it is freed.
    let mut x = crate::backend::cpu::pool::with_capacity(row * idx.len());
    let mut labels = Vec::new();
    let mut values = Vec::new();
    for &i in idx {
        let (f, t) = dataset.get(i);
        x.extend_from_slice(&f);
        match t {
            Target::Class(c) => labels.push(c),
            Target::Values(v) => values.extend(v),
        }
    }
    let x = Tensor::from_vec(x, &fshape, device)?;
    let y = if values.is_empty() {
        Tensor::from_vec(labels, &[idx.len()], device)?
    } else {
        let mut tshape = vec![idx.len()];
        tshape.extend(dataset.target_shape());
        Tensor::from_vec(values, &tshape, device)?
    };
    Ok(Batch { x, y })
}

/// One-hot rows `[N, classes]` for class labels.
pub fn one_hot(labels: &[u32], classes: usize, device: &Device) -> Result<Tensor> {
    let mut v = vec![0.0f32; labels.len() * classes];
    for (i, &c) in labels.iter().enumerate() {
        if c as usize >= classes {
            return arg_err(
                "one_hot",
                format!("label {c} is out of range for {classes} classes"),
            );
        }
        v[i * classes + c as usize] = 1.0;
    }
    Tensor::from_vec(v, &[labels.len(), classes], device)
}

/// Per-feature mean and standard deviation, for standardising inputs.
#[derive(Clone, Debug)]
pub struct Standardizer {
    /// Mean of each feature.
    pub mean: Vec<f32>,
    /// Standard deviation of each feature (1 where it is 0).
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Measures rows of `width` features.
    pub fn fit(rows: &[f32], width: usize) -> Standardizer {
        let n = (rows.len() / width.max(1)).max(1) as f64;
        let mut mean = vec![0f64; width];
        let mut sq = vec![0f64; width];
        for r in rows.chunks(width) {
            for (j, &v) in r.iter().enumerate() {
                mean[j] += v as f64;
                sq[j] += v as f64 * v as f64;
            }
        }
        let mean: Vec<f64> = mean.iter().map(|m| m / n).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(s, m)| {
                let var = (s / n - m * m).max(0.0);
                if var > 0.0 {
                    var.sqrt() as f32
                } else {
                    1.0
                }
            })
            .collect();
        Standardizer {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        }
    }
    /// `(x - mean) / std`, feature by feature, in place.
    pub fn apply(&self, rows: &mut [f32]) {
        let w = self.mean.len();
        for r in rows.chunks_mut(w) {
            for (j, v) in r.iter_mut().enumerate() {
                *v = (*v - self.mean[j]) / self.std[j];
            }
        }
    }
}
