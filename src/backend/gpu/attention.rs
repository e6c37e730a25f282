//! The GPU backend's fused scaled-dot-product attention: one forward dispatch (output
//! and log-sum-exp, the scores never stored) and three backward dispatches
//! (`D = rowsum(dO o O)`, then dQ, then dK and dV, each recomputing the weights from the
//! log-sum-exp). Hardware adapters run the tiled kernels of `shaders/attention.wgsl`
//! (keys and values staged in workgroup memory, one row per thread); software adapters
//! run the generated row kernels of [`super::attention_rows`] (several rows per thread,
//! no workgroup memory), the same math laid out for CPU SIMD lanes.

use std::sync::Arc;

use super::attention_rows::{Pass, Variant};
use super::kernels::{gpu_alloc, groups_1d, groups_rows, shader};
use super::params::{params, Params};
use super::{slot, ExtraSlot, GpuBuffer, GpuContext, Kernel, ShaderFile, Work};
use crate::backend::attention::AttentionGeometry;
use crate::backend::{wrong_backend, Attention, Storage};
use crate::error::Result;

pub(crate) const FILE: ShaderFile = shader(
    "attention",
    concat!(
        include_str!("../../../shaders/attention_common.wgsl"),
        include_str!("../../../shaders/attention.wgsl")
    ),
)
.with_params(&[&AttentionParams::INFO]);

/// Query (or key) rows one workgroup owns, one per thread.
const ROWS: usize = 128;
/// The largest head dimension: private rows of 32 `vec4`s.
const HEAD_LIMIT: usize = 128;
/// `vec4`s in each of the two workgroup tiles (2 x 8 KiB: WebGPU's default 16 KiB).
const TILE_VEC4S: usize = 512;
/// The most keys (queries) in a tile: the kernels' private score array.
const TILE_MAX: usize = 32;

params! {
    /// One attention call: sizes, the mask's layout and the dropout key.
    pub(crate) struct AttentionParams as at {
        /// Batch-heads.
        bh: u32,
        /// Query rows.
        l: u32,
        /// Keys.
        s: u32,
        /// Head dimension of queries and keys.
        e: u32,
        /// Head dimension of values.
        ev: u32,
        /// Row blocks per batch-head (of queries, or of keys for dK/dV).
        blocks: u32,
        /// 1 for a causal mask.
        causal: u32,
        /// 0 no mask, 1 additive, 2 boolean (0 excludes).
        mask_kind: u32,
        /// Batch-heads sharing one mask block.
        m_repeat: u32,
        /// Distinct mask blocks.
        m_blocks: u32,
        /// Elements between mask blocks.
        m_block: u32,
        /// Elements between mask rows.
        m_row: u32,
        /// Elements between mask columns.
        m_col: u32,
        /// The factor of `q k^T`.
        scale: f32,
        /// 1 when dropout is on.
        dropout: u32,
        /// Dropout's keep threshold on the top 24 bits.
        threshold: u32,
        /// `1 / (1 - p)`.
        drop_scale: f32,
        /// Generator seed, low word.
        seed_lo: u32,
        /// Generator seed, high word.
        seed_hi: u32,
        /// Draw offset, low word.
        offset_lo: u32,
        /// Draw offset, high word.
        offset_hi: u32,
        /// Offset of the queries' first row.
        q_off: u32,
        /// Batch-heads per outer step of the queries.
        q_heads: u32,
        /// Elements between outer steps of the queries.
        q_batch: u32,
        /// Elements between heads of the queries.
        q_head: u32,
        /// Elements between rows of the queries.
        q_row: u32,
        /// Offset of the keys' first row.
        k_off: u32,
        /// Batch-heads per outer step of the keys.
        k_heads: u32,
        /// Elements between outer steps of the keys.
        k_batch: u32,
        /// Elements between heads of the keys.
        k_head: u32,
        /// Elements between rows of the keys.
        k_row: u32,
        /// Offset of the values' first row.
        v_off: u32,
        /// Batch-heads per outer step of the values.
        v_heads: u32,
        /// Elements between outer steps of the values.
        v_batch: u32,
        /// Elements between heads of the values.
        v_head: u32,
        /// Elements between rows of the values.
        v_row: u32,
        /// Offset of the output (and its gradient)' first row.
        o_off: u32,
        /// Batch-heads per outer step of the output (and its gradient).
        o_heads: u32,
        /// Elements between outer steps of the output (and its gradient).
        o_batch: u32,
        /// Elements between heads of the output (and its gradient).
        o_head: u32,
        /// Elements between rows of the output (and its gradient).
        o_row: u32,
        /// 1: dV is written into dK's buffer (bound once: WebGPU refuses one buffer at
        /// two bindings when one is writable).
        dv_in_dk: u32,
        /// Padding.
        _pad1: u32,
        /// Padding.
        _pad2: u32,
    }
}

pub(super) const MASK: ExtraSlot = ExtraSlot {
    binding: slot::FIRST_EXTRA,
    read_only: true,
};
pub(super) const DOUT: ExtraSlot = ExtraSlot {
    binding: slot::FIRST_EXTRA + 1,
    read_only: true,
};
pub(super) const STATS: ExtraSlot = ExtraSlot {
    binding: slot::FIRST_EXTRA + 2,
    read_only: true,
};

const fn attention_kernel(
    entry: &'static str,
    slots: &'static [u32],
    extra: &'static [ExtraSlot],
    overrides: &'static [&'static str],
) -> Kernel {
    Kernel {
        file: &FILE,
        entry,
        slots,
        extra,
        overrides,
        loops: true,
        params: AttentionParams::INFO.name,
    }
}

/// The tiled kernels' override constants: the head dimensions in vec4s, the tile
/// ([`tile`]) and whether rows are read as aligned vec4s ([`vec_rows`]).
const OVERRIDES: &[&str] = &["HD4", "HV4", "KT", "VEC"];

const ATTENTION_FWD: &Kernel = &attention_kernel(
    "attention_fwd",
    &[slot::X0V, slot::X1V, slot::X2V, slot::Y0, slot::Y1],
    &[MASK],
    OVERRIDES,
);
const ATTENTION_DELTA_BWD: &Kernel = &attention_kernel(
    "attention_delta_bwd",
    &[slot::X0, slot::X1, slot::X2, slot::Y0],
    &[],
    &[],
);
const ATTENTION_DQ_BWD: &Kernel = &attention_kernel(
    "attention_dq_bwd",
    &[slot::X0V, slot::X1V, slot::X2V, slot::Y0],
    &[MASK, DOUT, STATS],
    OVERRIDES,
);
const ATTENTION_DKV_BWD: &Kernel = &attention_kernel(
    "attention_dkv_bwd",
    &[slot::X0V, slot::X1V, slot::X2V, slot::Y0, slot::Y1],
    &[MASK, DOUT, STATS],
    OVERRIDES,
);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![
        ATTENTION_FWD,
        ATTENTION_DELTA_BWD,
        ATTENTION_DQ_BWD,
        ATTENTION_DKV_BWD,
    ]
}

fn params(g: &AttentionGeometry, rows: usize, block: usize) -> AttentionParams {
    let mut p = AttentionParams {
        bh: g.bh as u32,
        l: g.l as u32,
        s: g.s as u32,
        e: g.e as u32,
        ev: g.ev as u32,
        blocks: rows.div_ceil(block).max(1) as u32,
        causal: g.causal as u32,
        m_repeat: 1,
        m_blocks: 1,
        scale: g.scale as f32,
        drop_scale: 1.0,
        ..Default::default()
    };
    let words = |l: &crate::backend::attention::RowLayout| {
        [l.off, l.heads, l.batch, l.head, l.row].map(|v| v as u32)
    };
    [p.q_off, p.q_heads, p.q_batch, p.q_head, p.q_row] = words(&g.layouts[0]);
    [p.k_off, p.k_heads, p.k_batch, p.k_head, p.k_row] = words(&g.layouts[1]);
    [p.v_off, p.v_heads, p.v_batch, p.v_head, p.v_row] = words(&g.layouts[2]);
    [p.o_off, p.o_heads, p.o_batch, p.o_head, p.o_row] = words(&g.layouts[3]);
    if let Some(m) = g.mask {
        p.mask_kind = if m.boolean { 2 } else { 1 };
        p.m_repeat = m.repeat as u32;
        p.m_blocks = m.blocks as u32;
        p.m_block = m.block as u32;
        p.m_row = m.row as u32;
        p.m_col = m.col as u32;
    }
    if let Some(d) = g.dropout {
        let [seed_lo, seed_hi, offset_lo, offset_hi] = d.key.gpu_params();
        p.dropout = 1;
        p.threshold = d.threshold;
        p.drop_scale = d.scale as f32;
        (p.seed_lo, p.seed_hi, p.offset_lo, p.offset_hi) = (seed_lo, seed_hi, offset_lo, offset_hi);
    }
    p
}

/// Keys (or queries) per workgroup tile: as many rows of `hd4` and `hv4` vec4s as the
/// tiles hold, rounded down to a multiple of 8 (the forward takes keys eight at a time),
/// at most [`TILE_MAX`]: 32 at head_dim 64, 16 at 128. Fewer, larger tiles mean fewer
/// barrier pairs.
fn tile(hd4: usize, hv4: usize) -> usize {
    (TILE_VEC4S / hd4.max(hv4).max(1)).min(TILE_MAX) / 8 * 8
}

/// Whether every row of q, k, v and the output (and its gradient) starts on a `vec4` and
/// both head dimensions are multiples of 4, so the kernels load rows as aligned `vec4`s.
fn vec_rows(g: &AttentionGeometry) -> bool {
    g.e.is_multiple_of(4)
        && g.ev.is_multiple_of(4)
        && g.layouts.iter().all(|l| {
            [l.off, l.batch, l.head, l.row]
                .iter()
                .all(|v| v.is_multiple_of(4))
        })
}

/// How one pass of a call is launched: its kernel, the rows a workgroup owns, and the
/// override values (the tiled kernels' constants, or a row kernel's variant).
struct Launch {
    kernel: &'static Kernel,
    block: usize,
    overrides: [u32; 6],
}

/// The launch of `pass` on this device: on a software adapter (unless
/// [`super::GpuOptions::software_kernels`] is off) the generated row kernels of
/// [`super::attention_rows`], elsewhere the tiled kernels of `shaders/attention.wgsl`.
fn launch(ctx: &GpuContext, pass: Pass, g: &AttentionGeometry) -> Launch {
    if ctx.is_software() && ctx.options().software_kernels {
        let rows = if pass == Pass::Dkv { g.s } else { g.l };
        let v = Variant::new(
            pass,
            (g.e, g.ev),
            rows,
            vec_rows(g),
            g.causal,
            g.mask.is_some(),
            g.dropout.is_some(),
        );
        return Launch {
            kernel: pass.kernel(),
            block: v.block(),
            overrides: v.words(),
        };
    }
    let (hd4, hv4) = (g.e.div_ceil(4), g.ev.div_ceil(4));
    Launch {
        kernel: match pass {
            Pass::Forward => ATTENTION_FWD,
            Pass::Dq => ATTENTION_DQ_BWD,
            Pass::Dkv => ATTENTION_DKV_BWD,
        },
        block: ROWS,
        overrides: [
            hd4 as u32,
            hv4 as u32,
            tile(hd4, hv4) as u32,
            vec_rows(g) as u32,
            0,
            0,
        ],
    }
}

impl Launch {
    /// The parameters of a launch over `rows` rows per batch-head.
    fn params(&self, g: &AttentionGeometry, rows: usize) -> AttentionParams {
        params(g, rows, self.block)
    }

    /// Its workgroups.
    fn groups(&self, g: &AttentionGeometry, rows: usize) -> [u32; 3] {
        groups_rows(g.bh * rows.div_ceil(self.block).max(1))
    }

    /// Its declared work: `len` rows streamed past each thread. No FLOP counts: the
    /// profile's useful-over-executed figure is the matrix products' (declaring
    /// attention's useful work without its executed work pushed a workload's figure
    /// past 100%).
    fn work(&self, len: usize) -> Work {
        Work {
            overrides: self.overrides,
            serial: len.max(1) as u64,
            ..Default::default()
        }
    }
}

fn gpu(s: &Storage) -> Result<&GpuBuffer> {
    match s {
        Storage::Gpu(b) => Ok(b),
        _ => wrong_backend("scaled_dot_product_attention"),
    }
}

impl Attention for Arc<GpuContext> {
    fn attention_head_limit(&self) -> usize {
        HEAD_LIMIT
    }

    fn attention(
        &self,
        [q, k, v]: [&Storage; 3],
        mask: Option<&Storage>,
        g: &AttentionGeometry,
    ) -> Result<(Storage, Storage)> {
        // Half sources (inference) are read as they are; native f16 ones give a native
        // f16 output.
        let (ins, io) = super::half_io::inputs("scaled_dot_product_attention", &[q, k, v])?;
        let (q, k, v) = (ins[0], ins[1], ins[2]);
        // Without a mask the mask binding holds q, which the kernel never reads.
        let m = match mask {
            Some(m) => gpu(m)?,
            None => q,
        };
        let (out, io) = super::half_io::output(self, io, g.bh * g.l * g.ev)?;
        let lse = gpu_alloc(self, g.bh * g.l)?;
        let fwd = launch(self, Pass::Forward, g);
        let bufs = [
            q,
            k,
            v,
            out.buffer("scaled_dot_product_attention")?,
            &lse,
            m,
        ];
        let work = Work {
            io,
            ..fwd.work(g.s)
        };
        self.launch_with(
            fwd.kernel,
            &fwd.params(g, g.l),
            &bufs,
            fwd.groups(g, g.l),
            work,
        );
        Ok((out, Storage::Gpu(Arc::new(lse))))
    }

    fn attention_backward(
        &self,
        [q, k, v]: [&Storage; 3],
        mask: Option<&Storage>,
        [out, lse, dout]: [&Storage; 3],
        g: &AttentionGeometry,
        [dq, dk, dv]: [&Storage; 3],
    ) -> Result<()> {
        let (q, k, v) = (gpu(q)?, gpu(k)?, gpu(v)?);
        let (out, lse, dout) = (gpu(out)?, gpu(lse)?, gpu(dout)?);
        let (dq, dk, dv) = (gpu(dq)?, gpu(dk)?, gpu(dv)?);
        let m = match mask {
            Some(m) => gpu(m)?,
            None => q,
        };
        let rows = g.bh * g.l;
        let stats = gpu_alloc(self, 2 * rows)?;
        let delta = Work {
            serial: g.ev.max(1) as u64,
            ..Default::default()
        };
        self.launch_with(
            ATTENTION_DELTA_BWD,
            &params(g, g.l, ROWS),
            &[out, dout, lse, &stats],
            groups_1d(rows),
            delta,
        );
        let dq_pass = launch(self, Pass::Dq, g);
        self.launch_with(
            dq_pass.kernel,
            &dq_pass.params(g, g.l),
            &[q, k, v, dq, m, dout, &stats],
            dq_pass.groups(g, g.l),
            dq_pass.work(g.s),
        );
        let dkv = launch(self, Pass::Dkv, g);
        let mut p = dkv.params(g, g.s);
        // One buffer for dK and dV (a packed projection's gradient) is bound once; the
        // second binding then holds the log-sum-exp, which this kernel neither reads
        // (it reads the statistics) nor writes.
        let shared = std::ptr::eq(dk, dv);
        p.dv_in_dk = shared as u32;
        let dv = if shared { lse } else { dv };
        self.launch_with(
            dkv.kernel,
            &p,
            &[q, k, v, dk, dv, m, dout, &stats],
            dkv.groups(g, g.s),
            dkv.work(g.l),
        );
        Ok(())
    }
}
