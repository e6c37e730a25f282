//! Data augmentation for image batches, as the lecture lists it: random translation,
//! horizontal and vertical reflection, random crops after padding, and changes of RGB
//! intensity (AlexNet's PCA colour augmentation, brightness and contrast jitter).
//! Per-image random choices come from the seeded Philox generator on the host (a few
//! numbers per image); the pixels are moved by GPU kernels and tensor ops on the batch's
//! device. The same seed and step give identical batches on the CPU and the GPU, and the
//! labels are never touched.

use crate::autograd::no_grad;
use crate::backend::random::{normal, uniform01, RngKey};
use crate::error::{arg_err, shape_err, Result};
use crate::ops::augment::{geometric, ImageMove};
use crate::tensor::Tensor;

/// AlexNet's colour augmentation: each image gets `sum_i alpha_i lambda_i p_i` added to
/// every RGB pixel, `alpha_i ~ N(0, sigma^2)` per image, with `lambda_i`, `p_i` the
/// eigenvalues and eigenvectors of the training set's RGB covariance.
#[derive(Clone, Debug, PartialEq)]
pub struct PcaColor {
    /// Eigenvalues of the RGB covariance.
    pub eigenvalues: [f32; 3],
    /// The matching unit eigenvectors.
    pub eigenvectors: [[f32; 3]; 3],
    /// Standard deviation of the per-image multipliers (AlexNet: 0.1).
    pub sigma: f64,
}

impl PcaColor {
    /// Fits the principal components of the RGB values of NCHW images (`C = 3`) given
    /// as a flat slice.
    #[allow(clippy::needless_range_loop)]
    pub fn fit(images: &[f32], height: usize, width: usize, sigma: f64) -> Result<PcaColor> {
        let plane = height * width;
        if plane == 0 || !images.len().is_multiple_of(3 * plane) {
            return arg_err(
                "PcaColor::fit",
                "expects whole RGB images (3 channels of height x width)",
            );
        }
        let mut sum = [0f64; 3];
        let mut sq = [[0f64; 3]; 3];
        let mut count = 0f64;
        for img in images.chunks(3 * plane) {
            for p in 0..plane {
                let v = [
                    img[p] as f64,
                    img[plane + p] as f64,
                    img[2 * plane + p] as f64,
                ];
                for a in 0..3 {
                    sum[a] += v[a];
                    for b in 0..3 {
                        sq[a][b] += v[a] * v[b];
                    }
                }
                count += 1.0;
            }
        }
        let mut cov = [[0f64; 3]; 3];
        for a in 0..3 {
            for b in 0..3 {
                cov[a][b] = sq[a][b] / count - (sum[a] / count) * (sum[b] / count);
            }
        }
        let (values, vectors) = symmetric_eigen3(cov);
        Ok(PcaColor {
            eigenvalues: values.map(|v| v.max(0.0) as f32),
            eigenvectors: vectors.map(|v| v.map(|x| x as f32)),
            sigma,
        })
    }
}

/// Eigenvalues and unit eigenvectors of a symmetric 3x3 matrix by Jacobi rotations.
#[allow(clippy::needless_range_loop)] // index arithmetic reads as the textbook algorithm
pub fn symmetric_eigen3(mut a: [[f64; 3]; 3]) -> ([f64; 3], [[f64; 3]; 3]) {
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _ in 0..50 {
        let (mut p, mut q, mut big) = (0, 1, 0.0);
        for i in 0..3 {
            for j in i + 1..3 {
                if a[i][j].abs() > big {
                    (p, q, big) = (i, j, a[i][j].abs());
                }
            }
        }
        if big < 1e-15 {
            break;
        }
        let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
        let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
        let t = if theta == 0.0 { 1.0 } else { t };
        let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
        for k in 0..3 {
            let (akp, akq) = (a[k][p], a[k][q]);
            a[k][p] = c * akp - s * akq;
            a[k][q] = s * akp + c * akq;
        }
        for k in 0..3 {
            let (apk, aqk) = (a[p][k], a[q][k]);
            a[p][k] = c * apk - s * aqk;
            a[q][k] = s * apk + c * aqk;
        }
        for row in v.iter_mut() {
            let (vp, vq) = (row[p], row[q]);
            row[p] = c * vp - s * vq;
            row[q] = s * vp + c * vq;
        }
    }
    let values = [a[0][0], a[1][1], a[2][2]];
    // Column k of v is the eigenvector of values[k]; return them as rows.
    let vectors = [0, 1, 2].map(|k| [v[0][k], v[1][k], v[2][k]]);
    (values, vectors)
}

/// A pipeline of augmentations applied to NCHW batches. Built with the methods below;
/// [`Augment::apply`] runs it for one step (batch) number.
#[derive(Clone, Debug, Default)]
pub struct Augment {
    seed: u64,
    padding: usize,
    crop: Option<(usize, usize)>,
    hflip: f32,
    vflip: f32,
    brightness: f32,
    contrast: f32,
    pca: Option<PcaColor>,
}

impl Augment {
    /// The identity pipeline, drawing its random choices from `seed`.
    pub fn new(seed: u64) -> Augment {
        Augment {
            seed,
            ..Default::default()
        }
    }
    /// Shifts each image by up to `k` pixels in each direction, filling with zeros.
    pub fn translate(mut self, k: usize) -> Augment {
        self.padding = k;
        self.crop = None;
        self
    }
    /// Pads each image with `padding` zeros and crops `size` (rows, columns) at random.
    pub fn random_crop(mut self, padding: usize, size: (usize, usize)) -> Augment {
        self.padding = padding;
        self.crop = Some(size);
        self
    }
    /// Mirrors left-right with probability `p`.
    pub fn horizontal_flip(mut self, p: f64) -> Augment {
        self.hflip = p as f32;
        self
    }
    /// Mirrors top-bottom with probability `p`.
    pub fn vertical_flip(mut self, p: f64) -> Augment {
        self.vflip = p as f32;
        self
    }
    /// Multiplies each image by a factor uniform in `[1 - b, 1 + b]`.
    pub fn brightness(mut self, b: f64) -> Augment {
        self.brightness = b as f32;
        self
    }
    /// Scales each image's deviation from its mean by a factor uniform in `[1 - c, 1 + c]`.
    pub fn contrast(mut self, c: f64) -> Augment {
        self.contrast = c as f32;
        self
    }
    /// Adds AlexNet's PCA colour noise (RGB images only).
    pub fn pca_color(mut self, pca: PcaColor) -> Augment {
        self.pca = Some(pca);
        self
    }

    /// The crops and flips of step `step` for `n` images of `h x w`.
    pub fn moves(&self, n: usize, h: usize, w: usize, step: u64) -> Vec<ImageMove> {
        let (oh, ow) = self.crop.unwrap_or((h, w));
        let range_r = (h + 2 * self.padding).saturating_sub(oh) as u32 + 1;
        let range_c = (w + 2 * self.padding).saturating_sub(ow) as u32 + 1;
        let key = RngKey {
            seed: self.seed,
            offset: step.wrapping_mul(2),
        };
        (0..n)
            .map(|i| {
                let wds = key.words(i);
                ImageMove {
                    crop_row: wds[0] % range_r,
                    crop_col: wds[1] % range_c,
                    hflip: uniform01(wds[2]) < self.hflip as f64,
                    vflip: uniform01(wds[3]) < self.vflip as f64,
                }
            })
            .collect()
    }

    /// Augments a batch `[N, C, H, W]` for step number `step` (each step draws anew).
    pub fn apply(&self, x: &Tensor, step: u64) -> Result<Tensor> {
        if x.rank() != 4 {
            return shape_err("augment", format!("needs NCHW images, got {:?}", x.shape()));
        }
        let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
        no_grad(|| {
            let mut y = x.clone();
            let moves_anything =
                self.padding > 0 || self.crop.is_some() || self.hflip > 0.0 || self.vflip > 0.0;
            if moves_anything {
                let out = self.crop.unwrap_or((h, w));
                y = geometric(&y, self.padding, out, &self.moves(n, h, w, step))?;
            }
            if self.brightness == 0.0 && self.contrast == 0.0 && self.pca.is_none() {
                return Ok(y);
            }
            // Colour: a few numbers per image from a second stream of the same seed.
            let key = RngKey {
                seed: self.seed,
                offset: step.wrapping_mul(2) + 1,
            };
            let words: Vec<[u32; 8]> = (0..n)
                .map(|i| {
                    let (a, b) = (key.words(2 * i), key.words(2 * i + 1));
                    [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
                })
                .collect();
            let dev = y.device().clone();
            if self.brightness != 0.0 {
                let f: Vec<f32> = words
                    .iter()
                    .map(|wd| 1.0 + self.brightness * (2.0 * uniform01(wd[0]) as f32 - 1.0))
                    .collect();
                y = y.mul(&Tensor::from_vec(f, &[n, 1, 1, 1], &dev)?)?;
            }
            if self.contrast != 0.0 {
                let f: Vec<f32> = words
                    .iter()
                    .map(|wd| 1.0 + self.contrast * (2.0 * uniform01(wd[1]) as f32 - 1.0))
                    .collect();
                let mean = y.mean_dim(&[1, 2, 3], true)?;
                y = y
                    .sub(&mean)?
                    .mul(&Tensor::from_vec(f, &[n, 1, 1, 1], &dev)?)?
                    .add(&mean)?;
            }
            if let Some(pca) = &self.pca {
                if c != 3 {
                    return arg_err(
                        "augment",
                        format!("PCA colour augmentation needs RGB images, got {c} channels"),
                    );
                }
                let sigma = pca.sigma as f32;
                let mut offsets = Vec::with_capacity(n * 3);
                for wd in &words {
                    let alpha = [
                        normal(wd[2], wd[3]) as f32 * sigma,
                        normal(wd[4], wd[5]) as f32 * sigma,
                        normal(wd[6], wd[7]) as f32 * sigma,
                    ];
                    for ch in 0..3 {
                        offsets.push(
                            (0..3)
                                .map(|k| alpha[k] * pca.eigenvalues[k] * pca.eigenvectors[k][ch])
                                .sum::<f32>(),
                        );
                    }
                }
                y = y.add(&Tensor::from_vec(offsets, &[n, 3, 1, 1], &dev)?)?;
            }
            Ok(y)
        })
    }
}
