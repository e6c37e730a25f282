//! The CPU backend's random draws and masks (Philox, [`crate::backend::random`]).

use crate::backend::random::{normal, uniform01, RngKey};

impl crate::backend::Random for super::elementwise::CpuBackend {
    fn draw(
        &self,
        dist: crate::backend::Dist,
        key: RngKey,
        n: usize,
    ) -> crate::error::Result<crate::backend::Storage> {
        let _span = super::profile::span("draw");
        let v: Vec<f32> = (0..n)
            .map(|i| {
                let w = key.words(i);
                match dist {
                    crate::backend::Dist::Uniform => uniform01(w[0]) as f32,
                    crate::backend::Dist::Normal => normal(w[0], w[1]) as f32,
                }
            })
            .collect();
        Ok(crate::backend::Storage::Cpu(std::sync::Arc::new(
            super::CpuStorage::new(super::CpuData::F32(v)),
        )))
    }

    fn masked(
        &self,
        op: crate::backend::Masked,
        x: &crate::backend::Storage,
        key: RngKey,
        n: usize,
    ) -> crate::error::Result<(crate::backend::Storage, crate::backend::Storage)> {
        use super::{pool, CpuData, CpuStorage};
        use crate::backend::{Masked, Storage};
        let _span = super::profile::span("masked");
        let Storage::Cpu(x) = x else {
            return crate::backend::wrong_backend("masked");
        };
        let x = x.read();
        // (output, mask) of element i with input a, in f64; `f32` says whether the
        // tensor is f32 (noisy ReLU then adds its noise in f32, as the GPU does).
        let one = |i: usize, a: f64, f32: bool| -> (f64, f64) {
            match op {
                Masked::Dropout { threshold, scale } => {
                    let keep = (key.words(i)[0] >> 8) >= threshold;
                    let m = if keep { scale as f64 } else { 0.0 };
                    (a * m, m)
                }
                Masked::NoisyRelu { sigma } => {
                    let w = key.words(i);
                    let eps = normal(w[0], w[1]);
                    let z = if f32 {
                        (a as f32 + sigma * eps as f32) as f64
                    } else {
                        a + sigma as f64 * eps
                    };
                    if z > 0.0 {
                        (z, 1.0)
                    } else {
                        (0.0, 0.0)
                    }
                }
            }
        };
        // Output and mask come from the CPU pool, as every op's outputs do: buffers made
        // outside it are recycled into it but never asked for.
        let (y, m) = match &*x {
            CpuData::F32(v) => {
                let (mut y, mut m) = (pool::with_capacity(n), pool::with_capacity(n));
                for (i, &a) in v.iter().enumerate() {
                    let (b, k) = one(i, a as f64, true);
                    y.push(b as f32);
                    m.push(k as f32);
                }
                (CpuData::F32(y), CpuData::F32(m))
            }
            CpuData::F64(v) => {
                let (mut y, mut m) = (pool::with_capacity(n), pool::with_capacity(n));
                for (i, &a) in v.iter().enumerate() {
                    let (b, k) = one(i, a, false);
                    y.push(b);
                    m.push(k);
                }
                (CpuData::F64(y), CpuData::F64(m))
            }
            CpuData::U32(_) => {
                return Err(crate::error::Error::DType {
                    op: "masked",
                    msg: "a u32 tensor reached a float op".into(),
                })
            }
        };
        let wrap = |d| Storage::Cpu(std::sync::Arc::new(CpuStorage::new(d)));
        Ok((wrap(y), wrap(m)))
    }
}
