//! The GPU backend's batch normalisation (`shaders/batchnorm.wgsl`): a training forward
//! is at most three dispatches (per-block Welford summaries, one workgroup per channel
//! finishing the statistics and the running ones, the normalisation; two when a channel
//! fits one workgroup), and so is a backward (per-block sums, their combination into
//! the coefficients, `dx`). Evaluation mode is two dispatches forward.

use std::sync::Arc;

use super::kernels::{gpu_alloc, groups_1d, groups_rows, kernel, shader};
use super::params::{params, Params};
use super::{GpuBuffer, GpuContext, Kernel, ShaderFile, Work};
use crate::backend::batchnorm::{Plan, THREADS};
use crate::backend::{BatchNorm, BnChannels, Storage};
use crate::error::{arg_err, Result};

pub(crate) const FILE: ShaderFile =
    shader("batchnorm", include_str!("../../../shaders/batchnorm.wgsl"))
        .with_params(&[&BatchNormParams::INFO]);

params! {
    /// Every batch-normalisation kernel's parameters: the input viewed as `[N, C, L]`.
    pub(crate) struct BatchNormParams as bn {
        /// Batch.
        n: u32,
        /// Channels.
        c: u32,
        /// Elements per image and channel (H W, or 1).
        l: u32,
        /// Blocks per channel.
        blocks: u32,
        /// Elements per block.
        block: u32,
        /// The kernels' flags.
        flags: u32,
        /// Variance epsilon.
        eps: f32,
        /// Running statistics' momentum.
        momentum: f32,
        /// M / (M - 1), for the unbiased running variance.
        unbiased: f32,
        /// N C L.
        numel: u32,
        /// Elements per channel, N L.
        m: u32,
        /// 1 / M.
        inv_m: f32,
    }
}
const STATS_PARTIAL: &Kernel = kernel!(
    FILE,
    "bn_partial_fwd",
    [X0, Y0],
    loops,
    params = BatchNormParams
);
const STATS_REDUCE: &Kernel = kernel!(
    FILE,
    "bn_reduce_fwd",
    [X0, X1, X2, Y0, Y1, Y2, YI],
    loops,
    params = BatchNormParams
);
const STATS_FINALIZE: &Kernel = kernel!(
    FILE,
    "bn_finalize_fwd",
    [X0, X1, X2, Y0, Y1, Y2, YI],
    loops,
    params = BatchNormParams
);
const EVAL_PREP: &Kernel = kernel!(
    FILE,
    "bn_eval_fwd",
    [X0, X1, X2, XI, Y0],
    params = BatchNormParams
);
const NORM_FWD: &Kernel = kernel!(FILE, "bn_norm_fwd", [X0, X1, Y0], params = BatchNormParams);
const BWD_PARTIAL: &Kernel = kernel!(
    FILE,
    "bn_partial_bwd",
    [X0, X1, X2, Y0],
    loops,
    params = BatchNormParams
);
const BWD_REDUCE: &Kernel = kernel!(
    FILE,
    "bn_reduce_bwd",
    [X0, X1, X2, Y0, Y1, Y2],
    loops,
    params = BatchNormParams
);
const BWD_FINALIZE: &Kernel = kernel!(
    FILE,
    "bn_finalize_bwd",
    [X0, X2, Y0, Y1, Y2],
    loops,
    params = BatchNormParams
);
const BWD_DX: &Kernel = kernel!(
    FILE,
    "bn_dx_bwd",
    [X0, X1, X2, Y0],
    params = BatchNormParams
);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![
        STATS_PARTIAL,
        STATS_REDUCE,
        STATS_FINALIZE,
        EVAL_PREP,
        NORM_FWD,
        BWD_PARTIAL,
        BWD_REDUCE,
        BWD_FINALIZE,
        BWD_DX,
    ]
}

const OP: &str = "batch_norm";

/// The kernels' parameters.
fn params(p: &Plan) -> BatchNormParams {
    let m = p.m();
    let unbiased = if m > 1 {
        m as f64 / (m - 1) as f64
    } else {
        1.0
    };
    BatchNormParams {
        n: p.n as u32,
        c: p.c as u32,
        l: p.l as u32,
        blocks: p.blocks as u32,
        block: p.block as u32,
        flags: p.flags,
        eps: p.eps,
        momentum: p.momentum,
        unbiased: unbiased as f32,
        numel: p.numel() as u32,
        m: m as u32,
        inv_m: (1.0 / m.max(1) as f64) as f32,
    }
}

/// The declared work of the per-block kernels (the fused ones take a whole channel).
fn block_work(p: &Plan) -> Work {
    Work {
        serial: p.block.min(p.m()).div_ceil(THREADS).max(1) as u64,
        reduced: (p.c * p.m()) as u64,
        ..Default::default()
    }
}

/// The declared work of the kernels that combine a channel's block results.
fn finalize_work(p: &Plan) -> Work {
    Work {
        serial: p.blocks.div_ceil(THREADS) as u64,
        reduced: (p.c * p.blocks) as u64,
        ..Default::default()
    }
}

/// The buffer of `t`, or `or` when there is none.
fn buf_or<'a>(t: Option<&'a Storage>, or: &'a GpuBuffer) -> Result<&'a GpuBuffer> {
    t.map_or(Ok(or), |t| t.gpu(OP))
}

impl BatchNorm for Arc<GpuContext> {
    fn batch_norm_stats(&self, x: &Storage, ch: BnChannels, p: &Plan) -> Result<Storage> {
        let xb = x.gpu(OP)?;
        if !p.training() {
            let (Some(rm), Some(rv)) = (ch.running_mean, ch.running_var) else {
                return arg_err(OP, "evaluation mode needs running_mean and running_var");
            };
            let (rm, rv) = (rm.gpu(OP)?, rv.gpu(OP)?);
            let (w, b) = (buf_or(ch.weight, rm)?, buf_or(ch.bias, rm)?);
            let stats = gpu_alloc(self, 4 * p.c)?;
            self.launch(
                EVAL_PREP,
                &params(p),
                &[rm, rv, w, b, &stats],
                groups_1d(p.c),
            );
            return Ok(Storage::new_gpu(stats));
        }
        let (w, b) = (buf_or(ch.weight, xb)?, buf_or(ch.bias, xb)?);
        let stats = gpu_alloc(self, 4 * p.c)?;
        // Writable slots the call has no tensor for get small scratch buffers (a buffer must
        // not be bound twice where one binding writes).
        let scratch: Vec<GpuBuffer> = (0..3).map(|_| gpu_alloc(self, 1)).collect::<Result<_>>()?;
        let rm = buf_or(ch.running_mean, &scratch[0])?;
        let rv = buf_or(ch.running_var, &scratch[1])?;
        let count = buf_or(ch.count, &scratch[2])?;
        if p.blocks == 1 {
            self.launch_with(
                STATS_REDUCE,
                &params(p),
                &[xb, w, b, &stats, rm, rv, count],
                groups_rows(p.c),
                block_work(p),
            );
        } else {
            let partials = gpu_alloc(self, 3 * p.c * p.blocks)?;
            self.launch_with(
                STATS_PARTIAL,
                &params(p),
                &[xb, &partials],
                groups_rows(p.c * p.blocks),
                block_work(p),
            );
            self.launch_with(
                STATS_FINALIZE,
                &params(p),
                &[&partials, w, b, &stats, rm, rv, count],
                groups_rows(p.c),
                finalize_work(p),
            );
        }
        Ok(Storage::new_gpu(stats))
    }

    fn batch_norm(&self, x: &Storage, stats: &Storage, p: &Plan) -> Result<Storage> {
        let bufs = [x.gpu(OP)?, stats.gpu(OP)?];
        let y = gpu_alloc(self, p.numel())?;
        self.launch(
            NORM_FWD,
            &params(p),
            &[bufs[0], bufs[1], &y],
            groups_1d(p.numel()),
        );
        Ok(Storage::new_gpu(y))
    }

    fn batch_norm_backward(
        &self,
        x: &Storage,
        stats: &Storage,
        g: &Storage,
        p: &Plan,
        need: [bool; 3],
    ) -> Result<[Option<Storage>; 3]> {
        let [need_dx, need_dw, need_db] = need;
        let (xb, gb, sb) = (x.gpu(OP)?, g.gpu(OP)?, stats.gpu(OP)?);
        let training = p.training();
        let sums_needed = need_dw || need_db || (need_dx && training);
        let (coef, dw, db) = if sums_needed {
            let (coef, dw, db) = (
                gpu_alloc(self, 4 * p.c)?,
                gpu_alloc(self, p.c)?,
                gpu_alloc(self, p.c)?,
            );
            if p.blocks == 1 {
                self.launch_with(
                    BWD_REDUCE,
                    &params(p),
                    &[xb, gb, sb, &coef, &dw, &db],
                    groups_rows(p.c),
                    block_work(p),
                );
            } else {
                let partials = gpu_alloc(self, 2 * p.c * p.blocks)?;
                self.launch_with(
                    BWD_PARTIAL,
                    &params(p),
                    &[xb, gb, sb, &partials],
                    groups_rows(p.c * p.blocks),
                    block_work(p),
                );
                self.launch_with(
                    BWD_FINALIZE,
                    &params(p),
                    &[&partials, sb, &coef, &dw, &db],
                    groups_rows(p.c),
                    finalize_work(p),
                );
            }
            (
                Some(coef),
                need_dw.then(|| Storage::new_gpu(dw)),
                need_db.then(|| Storage::new_gpu(db)),
            )
        } else {
            // Evaluation mode, only dx: dx = scale g, read from the statistics.
            (None, None, None)
        };
        let dx = if need_dx {
            let out = gpu_alloc(self, p.numel())?;
            let coef = coef.as_ref().filter(|_| training).unwrap_or(sb);
            self.launch(
                BWD_DX,
                &params(p),
                &[xb, gb, coef, &out],
                groups_1d(p.numel()),
            );
            Some(Storage::new_gpu(out))
        } else {
            None
        };
        Ok([dx, dw, db])
    }
}
