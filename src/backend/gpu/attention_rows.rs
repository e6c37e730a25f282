//! The fused attention kernels for software adapters (lavapipe, SwiftShader, WARP),
//! generated per variant as straight-line WGSL.
//!
//! On a software adapter a workgroup runs as a loop over SIMD lanes of one CPU core, so
//! what costs is memory traffic per arithmetic operation, not occupancy: a load at an
//! address every thread of the workgroup shares is one scalar load and a broadcast, and
//! a private array indexed in a loop is memory written per lane. These kernels therefore
//! give each thread `R` rows (queries, or keys for dK/dV) held as named values, and
//! stream the other side four rows at a time straight from the storage buffers at
//! uniform addresses: each element read feeds `R` lanes' worth of products. No workgroup
//! memory and no barriers. The code is written out for the variant's head dimensions,
//! rows per thread and features (causal, mask, dropout), so a pipeline compiles only
//! what it runs and LLVM sees no loop over registers; the compile time grows with
//! `R x head_dim` (see [`rows_per_thread`]).
//!
//! The math is the tiled kernels' (`shaders/attention.wgsl`): the online softmax with a
//! running maximum and sum, the log-sum-exp saved per query row, and a backward that
//! recomputes the weights from it (a dQ pass and a dK/dV pass, each gradient row with
//! one owner). A score that is masked out is `-inf`; a row that sees no key keeps the
//! maximum `-inf` and writes a zero output and a log-sum-exp of `+inf`.

use std::fmt::Write;
use std::sync::OnceLock;

use super::attention::{AttentionParams, DOUT, MASK, STATS};
use super::kernels::shader_with;
use super::params::Params;
use super::{slot, ExtraSlot, Generated, Kernel, ShaderFile};

pub(crate) const FILE: ShaderFile = shader_with(
    "attention_rows",
    include_str!("../../../shaders/attention_common.wgsl"),
    Generated::PerVariant(variant_text, general_text),
)
.with_params(&[&AttentionParams::INFO]);

const fn rows_kernel(
    entry: &'static str,
    slots: &'static [u32],
    extra: &'static [ExtraSlot],
) -> Kernel {
    Kernel {
        file: &FILE,
        entry,
        slots,
        extra,
        // The variant is in the generated text, not in override constants.
        overrides: &[],
        loops: true,
        params: AttentionParams::INFO.name,
    }
}

pub(crate) const FWD: &Kernel = &rows_kernel(
    "attention_rows_fwd",
    &[slot::X0V, slot::X1V, slot::X2V, slot::Y0, slot::Y1],
    &[MASK],
);
pub(crate) const DQ: &Kernel = &rows_kernel(
    "attention_rows_dq_bwd",
    &[slot::X0V, slot::X1V, slot::X2V, slot::Y0],
    &[MASK, DOUT, STATS],
);
pub(crate) const DKV: &Kernel = &rows_kernel(
    "attention_rows_dkv_bwd",
    &[slot::X0V, slot::X1V, slot::X2V, slot::Y0, slot::Y1],
    &[MASK, DOUT, STATS],
);

/// The kernels of this file, for the entry-point test.
pub(crate) fn kernels() -> Vec<&'static Kernel> {
    vec![FWD, DQ, DKV]
}

/// The pass a kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    Forward,
    Dq,
    Dkv,
}

impl Pass {
    pub(crate) fn kernel(self) -> &'static Kernel {
        match self {
            Pass::Forward => FWD,
            Pass::Dq => DQ,
            Pass::Dkv => DKV,
        }
    }

    fn of(k: &Kernel) -> Pass {
        match k.entry {
            "attention_rows_dq_bwd" => Pass::Dq,
            "attention_rows_dkv_bwd" => Pass::Dkv,
            _ => Pass::Forward,
        }
    }

    /// `vec4` registers one row of the pass holds: its operand rows and accumulators.
    fn row_vec4s(self, hd4: usize, hv4: usize) -> usize {
        match self {
            Pass::Forward => hd4 + hv4,
            Pass::Dq => 2 * hd4 + hv4,
            Pass::Dkv => 2 * (hd4 + hv4),
        }
    }
}

/// `vec4` registers per thread the row count aims at: beyond it lavapipe's compile time
/// grows faster than the kernel speeds up (first-call compile of the forward at
/// head_dim 64: 1.4 / 1.9 / 2.8 / 7 s at 1 / 2 / 4 / 8 rows per thread).
const REGISTER_BUDGET: usize = 128;
/// The most rows a thread owns.
const MAX_ROWS: usize = 4;

/// Rows per thread for a pass: as many as [`REGISTER_BUDGET`] holds, 1 to [`MAX_ROWS`]
/// (4 for the forward and 2 for the backward passes at head_dim 64).
fn rows_per_thread(pass: Pass, hd4: usize, hv4: usize) -> usize {
    (REGISTER_BUDGET / pass.row_vec4s(hd4, hv4).max(1)).clamp(1, MAX_ROWS)
}

/// One generated kernel: the pass's head dimensions in `vec4`s, rows per thread,
/// threads per workgroup, aligned `vec4` rows, and the features it tests for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Variant {
    pub hd4: usize,
    pub hv4: usize,
    pub r: usize,
    pub aw: usize,
    pub vec: bool,
    pub causal: bool,
    pub mask: bool,
    pub dropout: bool,
}

impl Variant {
    /// The variant of `pass` for `rows` rows per batch-head (queries, or keys for
    /// dK/dV): threads enough for the rows, 8 to 64 a workgroup.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        pass: Pass,
        (e, ev): (usize, usize),
        rows: usize,
        vec: bool,
        causal: bool,
        mask: bool,
        dropout: bool,
    ) -> Variant {
        let (hd4, hv4) = (e.div_ceil(4).max(1), ev.div_ceil(4).max(1));
        let r = rows_per_thread(pass, hd4, hv4);
        let aw = rows.div_ceil(r).next_power_of_two().clamp(8, 64);
        Variant {
            hd4,
            hv4,
            r,
            aw,
            vec,
            causal,
            mask,
            dropout,
        }
    }

    /// Rows one workgroup owns.
    pub(crate) fn block(&self) -> usize {
        self.r * self.aw
    }

    /// The launch's words ([`super::Work::overrides`]): they key the pipeline and the
    /// generated text.
    pub(crate) fn words(&self) -> [u32; 6] {
        let flags = self.causal as u32 | (self.mask as u32) << 1 | (self.dropout as u32) << 2;
        [
            self.hd4 as u32,
            self.hv4 as u32,
            self.r as u32,
            self.aw as u32,
            self.vec as u32,
            flags,
        ]
    }

    fn from_words(w: &[u32; 6]) -> Variant {
        Variant {
            hd4: w[0].max(1) as usize,
            hv4: w[1].max(1) as usize,
            r: w[2].max(1) as usize,
            aw: w[3].max(1) as usize,
            vec: w[4] != 0,
            causal: w[5] & 1 != 0,
            mask: w[5] & 2 != 0,
            dropout: w[5] & 4 != 0,
        }
    }
}

fn variant_text(k: &Kernel, words: &[u32; 6]) -> String {
    generate(Pass::of(k), &Variant::from_words(words))
}

/// Every kernel at one small variant with every feature, for validation and the
/// entry-point test.
fn general_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let v = Variant {
            hd4: 2,
            hv4: 1,
            r: 2,
            aw: 8,
            vec: false,
            causal: true,
            mask: true,
            dropout: true,
        };
        [Pass::Forward, Pass::Dq, Pass::Dkv]
            .iter()
            .map(|&p| generate(p, &v))
            .collect()
    })
}

/// The WGSL of one pass at one variant.
pub(crate) fn generate(pass: Pass, v: &Variant) -> String {
    let mut g = Gen {
        v: *v,
        s: String::new(),
    };
    match pass {
        Pass::Forward => g.forward(),
        Pass::Dq => g.dq(),
        Pass::Dkv => g.dkv(),
    }
    g.s
}

/// Four streamed rows: the name of their loaded `vec4`s, the name of their bases, and
/// the loader of their binding.
type Stream = (&'static str, &'static str, fn(&Gen, &str, usize) -> String);

/// The text being written and its variant. Names: `r` a thread's row, `c` one of the
/// four streamed rows, `d` a `vec4` of the head dimension.
struct Gen {
    v: Variant,
    s: String,
}

macro_rules! w {
    ($g:expr, $($arg:tt)*) => {{
        let _ = writeln!($g.s, $($arg)*);
    }};
}

impl Gen {
    /// `vec4` `d` of the row at `base` of a binding: an aligned load, or the checked
    /// scalar loader of attention_common.wgsl.
    fn load(&self, binding: &str, checked: &str, base: &str, d: usize, len: &str) -> String {
        if self.v.vec {
            format!("{binding}[({base} >> 2u) + {d}u]")
        } else {
            format!("{checked}({base}, {d}u, {len})")
        }
    }

    fn q(&self, base: &str, d: usize) -> String {
        self.load("x0v", "at_q4s", base, d, "at.e")
    }

    fn k(&self, base: &str, d: usize) -> String {
        self.load("x1v", "at_k4s", base, d, "at.e")
    }

    fn val(&self, base: &str, d: usize) -> String {
        self.load("x2v", "at_v4s", base, d, "at.ev")
    }

    fn dout(&self, base: &str, d: usize) -> String {
        self.load("at_dout", "at_do4s", base, d, "at.ev")
    }

    /// The entry point's head and the thread's rows: `n{r}` (unclamped index), `live{r}`,
    /// `c{r}` (clamped to the last row, for loads); `bh` clamped likewise, `b0` the
    /// block's first row. `len` is the owned rows' count (`at.l` or `at.s`).
    fn head(&mut self, entry: &str, len: &str) {
        let (r, aw) = (self.v.r, self.v.aw);
        w!(self, "@compute @workgroup_size({aw})");
        w!(
            self,
            "fn {entry}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,"
        );
        w!(self, "        @builtin(local_invocation_index) t: u32) {{");
        w!(self, "    let blk = row_id(wid, nwg);");
        w!(self, "    let valid = blk < at.bh * at.blocks;");
        w!(self, "    let bh = min(blk / at.blocks, at.bh - 1u);");
        w!(self, "    let b0 = (blk % at.blocks) * {}u;", r * aw);
        w!(self, "    let ninf = at_neg_inf();");
        for r in 0..r {
            w!(self, "    let n{r} = b0 + {}u + t;", r * aw);
            w!(self, "    let live{r} = valid && n{r} < {len};");
            w!(self, "    let c{r} = min(n{r}, {len} - 1u);");
        }
    }

    /// The streamed rows' indices from `x0`: `jv` (unclamped, a vec4), `in4` (which
    /// exist: below `len`), `j{c}` clamped.
    fn stream_rows(&mut self, x0: &str, len: &str) {
        w!(
            self,
            "        let jv = vec4<u32>({x0}) + vec4<u32>(0u, 1u, 2u, 3u);"
        );
        w!(self, "        let in4 = jv < vec4<u32>({len});");
        for c in 0..4 {
            w!(self, "        let j{c} = min({x0} + {c}u, {len} - 1u);");
        }
    }

    /// `vis{r}` and the additive terms into `x{r}` for thread row `r`'s four scores,
    /// queries `qi` and keys `kj` given as expressions of `r` and `c` (clamped indices:
    /// the mask is read at them); `in4` marks the streamed rows that exist. Masked
    /// scores become `-inf`.
    fn visibility(
        &mut self,
        r: usize,
        qi: &dyn Fn(usize, usize) -> String,
        kj: &dyn Fn(usize, usize) -> String,
    ) {
        w!(self, "        var vis{r} = in4;");
        if self.v.causal {
            let k = (0..4).map(|c| kj(r, c)).collect::<Vec<_>>().join(", ");
            let q = (0..4).map(|c| qi(r, c)).collect::<Vec<_>>().join(", ");
            w!(
                self,
                "        vis{r} = vis{r} & (vec4<u32>({k}) <= vec4<u32>({q}));"
            );
        }
        if self.v.mask {
            for c in 0..4 {
                w!(
                    self,
                    "        let bb{r}_{c} = at_bias(bh, {}, {});",
                    qi(r, c),
                    kj(r, c)
                );
            }
            w!(
                self,
                "        x{r} = x{r} + vec4<f32>(bb{r}_0.y, bb{r}_1.y, bb{r}_2.y, bb{r}_3.y);"
            );
            w!(
                self,
                "        vis{r} = vis{r} & (vec4<f32>(bb{r}_0.x, bb{r}_1.x, bb{r}_2.x, bb{r}_3.x) != vec4<f32>(0.0));"
            );
        }
        w!(
            self,
            "        x{r} = select(vec4<f32>(ninf), x{r}, vis{r});"
        );
    }

    /// The dropout factors of thread row `r`'s four weights (`z{r}`), for Philox rows
    /// `row(r, c)` and keys `col(r, c)`.
    fn keep(
        &mut self,
        r: usize,
        row: &dyn Fn(usize, usize) -> String,
        col: &dyn Fn(usize, usize) -> String,
    ) {
        let z = (0..4)
            .map(|c| format!("at_keep({}, {})", row(r, c), col(r, c)))
            .collect::<Vec<_>>()
            .join(", ");
        w!(self, "        let z{r} = vec4<f32>({z});");
    }

    /// Writes the `n4` `vec4` accumulators `{acc}_{d}` (`acc` names a thread row's,
    /// `dq0`) times `factor` to the `len` floats of the row at `base` of `target` (the
    /// last `vec4` checked unless rows are aligned).
    fn store(&mut self, target: &str, base: &str, acc: &str, n4: usize, len: &str, factor: &str) {
        for d in 0..n4 {
            w!(self, "        {{ let o = {acc}_{d} * {factor};");
            for c in 0..4 {
                let e = 4 * d + c;
                if self.v.vec || d + 1 < n4 {
                    w!(self, "          {target}[{base} + {e}u] = o[{c}];");
                } else {
                    w!(
                        self,
                        "          if ({e}u < {len}) {{ {target}[{base} + {e}u] = o[{c}]; }}"
                    );
                }
            }
            w!(self, "        }}");
        }
    }

    fn forward(&mut self) {
        let Variant { hd4, hv4, r, .. } = self.v;
        self.head("attention_rows_fwd", "at.l");
        for r in 0..r {
            w!(self, "    let qb{r} = at_qrow(bh, c{r});");
            for d in 0..hd4 {
                w!(self, "    let q{r}_{d} = {};", self.q(&format!("qb{r}"), d));
            }
            for d in 0..hv4 {
                w!(self, "    var a{r}_{d} = vec4<f32>(0.0);");
            }
            w!(self, "    var m{r} = ninf;");
            w!(self, "    var l{r} = 0.0;");
        }
        w!(self, "    var kend = at.s;");
        if self.v.causal {
            // Keys past the block's last query are seen by none of its rows.
            w!(self, "    kend = min(at.s, b0 + {}u);", self.v.block());
        }
        w!(self, "    for (var j0 = 0u; j0 < kend; j0 = j0 + 4u) {{");
        self.stream_rows("j0", "at.s");
        for c in 0..4 {
            w!(self, "        let kb{c} = at_krow(bh, j{c});");
            w!(self, "        let vb{c} = at_vrow(bh, j{c});");
        }
        for r in 0..r {
            w!(self, "        var s{r} = vec4<f32>(0.0);");
        }
        self.dots(hd4, ("k", "kb", Gen::k), "q", "s");
        for r in 0..r {
            w!(self, "        var x{r} = s{r} * at.scale;");
            self.visibility(r, &|r, _| format!("c{r}"), &|_, c| format!("j{c}"));
            w!(
                self,
                "        let mn{r} = max(m{r}, max(max(x{r}.x, x{r}.y), max(x{r}.z, x{r}.w)));"
            );
            // The maximum in the exponents: 0 while the row has seen nothing (every
            // term is then exp(-inf) = 0, never inf - inf).
            w!(
                self,
                "        let ms{r} = select(mn{r}, 0.0, at_is_neg_inf(mn{r}));"
            );
            w!(self, "        let corr{r} = exp(m{r} - ms{r});");
            w!(self, "        var p{r} = exp(x{r} - vec4<f32>(ms{r}));");
            w!(
                self,
                "        l{r} = l{r} * corr{r} + dot(p{r}, vec4<f32>(1.0));"
            );
            w!(self, "        m{r} = mn{r};");
            if self.v.dropout {
                self.keep(r, &|r, _| format!("bh * at.l + n{r}"), &|_, c| {
                    format!("jv[{c}]")
                });
                w!(self, "        p{r} = p{r} * z{r};");
            }
        }
        self.accumulate(hv4, ("v", "vb", Gen::val), "p", "a", "corr");
        w!(self, "    }}");
        for r in 0..r {
            w!(self, "    if (live{r}) {{");
            w!(self, "        let row = bh * at.l + n{r};");
            w!(self, "        var inv = 0.0;");
            w!(self, "        if (at_is_neg_inf(m{r})) {{");
            w!(self, "            y1[row] = at_pos_inf();");
            w!(self, "        }} else {{");
            w!(self, "            inv = 1.0 / l{r};");
            w!(self, "            y1[row] = m{r} + log(l{r});");
            w!(self, "        }}");
            w!(self, "        let ob = at_orow(bh, n{r});");
            self.store("y0", "ob", &format!("a{r}"), hv4, "at.ev", "inv");
            w!(self, "    }}");
        }
        w!(self, "}}");
    }

    /// Opens a block loading `vec4` `d` of the four streamed rows at bases `{base}0..3`
    /// into `{name}0..3`.
    fn stream_load(&mut self, d: usize, (name, base, load): Stream) {
        let loads = (0..4)
            .map(|c| format!("let {name}{c} = {};", load(self, &format!("{base}{c}"), d)))
            .collect::<Vec<_>>()
            .join(" ");
        w!(self, "        {{ {loads}");
    }

    /// For each `vec4` `d` of `n4`, loads the four streamed rows' `vec4`s (`stream`: their
    /// name, base and loader) and adds their dot products with each thread row's
    /// `{own}{r}_{d}` to the `vec4` `{acc}{r}`.
    fn dots(&mut self, n4: usize, stream: Stream, own: &str, acc: &str) {
        let n = stream.0;
        for d in 0..n4 {
            self.stream_load(d, stream);
            for r in 0..self.v.r {
                let o = format!("{own}{r}_{d}");
                w!(self, "          {acc}{r} = {acc}{r} + vec4<f32>(dot({o}, {n}0), dot({o}, {n}1), dot({o}, {n}2), dot({o}, {n}3));");
            }
            w!(self, "        }}");
        }
    }

    /// For each `vec4` `d` of `n4`, loads the four streamed rows' `vec4`s and adds them,
    /// weighted by the `vec4` `{w}{r}`, to each thread row's `{acc}{r}_{d}` (first scaled
    /// by `{scale}{r}` unless `scale` is empty).
    fn accumulate(&mut self, n4: usize, stream: Stream, w: &str, acc: &str, scale: &str) {
        let n = stream.0;
        for d in 0..n4 {
            self.stream_load(d, stream);
            for r in 0..self.v.r {
                let a = format!("{acc}{r}_{d}");
                let old = match scale {
                    "" => a.clone(),
                    s => format!("{a} * {s}{r}"),
                };
                w!(self, "          {a} = {old} + {w}{r}.x * {n}0 + {w}{r}.y * {n}1 + {w}{r}.z * {n}2 + {w}{r}.w * {n}3;");
            }
            w!(self, "        }}");
        }
    }

    fn dq(&mut self) {
        let Variant { hd4, hv4, r, .. } = self.v;
        self.head("attention_rows_dq_bwd", "at.l");
        for r in 0..r {
            w!(self, "    let qb{r} = at_qrow(bh, c{r});");
            w!(self, "    let gb{r} = at_orow(bh, c{r});");
            for d in 0..hd4 {
                w!(self, "    let q{r}_{d} = {};", self.q(&format!("qb{r}"), d));
                w!(self, "    var dq{r}_{d} = vec4<f32>(0.0);");
            }
            for d in 0..hv4 {
                w!(
                    self,
                    "    let g{r}_{d} = {};",
                    self.dout(&format!("gb{r}"), d)
                );
            }
            w!(self, "    let lse{r} = at_stats[2u * (bh * at.l + c{r})];");
            w!(
                self,
                "    let del{r} = at_stats[2u * (bh * at.l + c{r}) + 1u];"
            );
        }
        w!(self, "    var kend = at.s;");
        if self.v.causal {
            w!(self, "    kend = min(at.s, b0 + {}u);", self.v.block());
        }
        w!(self, "    for (var j0 = 0u; j0 < kend; j0 = j0 + 4u) {{");
        self.stream_rows("j0", "at.s");
        for c in 0..4 {
            w!(self, "        let kb{c} = at_krow(bh, j{c});");
            w!(self, "        let vb{c} = at_vrow(bh, j{c});");
        }
        for r in 0..r {
            w!(self, "        var s{r} = vec4<f32>(0.0);");
            w!(self, "        var dp{r} = vec4<f32>(0.0);");
        }
        self.dots(hd4, ("k", "kb", Gen::k), "q", "s");
        self.dots(hv4, ("v", "vb", Gen::val), "g", "dp");
        for r in 0..r {
            w!(self, "        var x{r} = s{r} * at.scale;");
            self.visibility(r, &|r, _| format!("c{r}"), &|_, c| format!("j{c}"));
            w!(self, "        let p{r} = exp(x{r} - vec4<f32>(lse{r}));");
            if self.v.dropout {
                self.keep(r, &|r, _| format!("bh * at.l + n{r}"), &|_, c| {
                    format!("jv[{c}]")
                });
                w!(
                    self,
                    "        let ds{r} = p{r} * (dp{r} * z{r} - vec4<f32>(del{r}));"
                );
            } else {
                w!(
                    self,
                    "        let ds{r} = p{r} * (dp{r} - vec4<f32>(del{r}));"
                );
            }
        }
        self.accumulate(hd4, ("k", "kb", Gen::k), "ds", "dq", "");
        w!(self, "    }}");
        for r in 0..r {
            w!(self, "    if (live{r}) {{");
            w!(self, "        let ob = at_qrow(bh, n{r});");
            self.store("y0", "ob", &format!("dq{r}"), hd4, "at.e", "at.scale");
            w!(self, "    }}");
        }
        w!(self, "}}");
    }

    fn dkv(&mut self) {
        let Variant { hd4, hv4, r, .. } = self.v;
        self.head("attention_rows_dkv_bwd", "at.s");
        for r in 0..r {
            w!(self, "    let kb{r} = at_krow(bh, c{r});");
            w!(self, "    let vb{r} = at_vrow(bh, c{r});");
            for d in 0..hd4 {
                w!(self, "    let k{r}_{d} = {};", self.k(&format!("kb{r}"), d));
                w!(self, "    var dk{r}_{d} = vec4<f32>(0.0);");
            }
            for d in 0..hv4 {
                w!(
                    self,
                    "    let v{r}_{d} = {};",
                    self.val(&format!("vb{r}"), d)
                );
                w!(self, "    var dv{r}_{d} = vec4<f32>(0.0);");
            }
        }
        w!(self, "    var istart = 0u;");
        if self.v.causal {
            // Queries before the block's first key see none of its keys.
            w!(self, "    istart = b0;");
        }
        w!(
            self,
            "    for (var i0 = istart; i0 < at.l; i0 = i0 + 4u) {{"
        );
        self.stream_rows("i0", "at.l");
        for c in 0..4 {
            w!(self, "        let qb{c} = at_qrow(bh, j{c});");
            w!(self, "        let gb{c} = at_orow(bh, j{c});");
        }
        let stat = |o: usize| {
            (0..4)
                .map(|c| format!("at_stats[2u * (bh * at.l + j{c}) + {o}u]"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        w!(self, "        let lse4 = vec4<f32>({});", stat(0));
        w!(self, "        let del4 = vec4<f32>({});", stat(1));
        for r in 0..r {
            w!(self, "        var s{r} = vec4<f32>(0.0);");
            w!(self, "        var dp{r} = vec4<f32>(0.0);");
        }
        self.dots(hd4, ("q", "qb", Gen::q), "k", "s");
        self.dots(hv4, ("g", "gb", Gen::dout), "v", "dp");
        for r in 0..r {
            w!(self, "        var x{r} = s{r} * at.scale;");
            // Here the thread's row is a key and the streamed rows are queries.
            self.visibility(r, &|_, c| format!("j{c}"), &|r, _| format!("c{r}"));
            w!(self, "        let p{r} = exp(x{r} - lse4);");
            if self.v.dropout {
                self.keep(r, &|_, c| format!("bh * at.l + jv[{c}]"), &|r, _| {
                    format!("n{r}")
                });
                w!(self, "        let pz{r} = p{r} * z{r};");
                w!(self, "        let ds{r} = p{r} * (dp{r} * z{r} - del4);");
            } else {
                w!(self, "        let pz{r} = p{r};");
                w!(self, "        let ds{r} = p{r} * (dp{r} - del4);");
            }
        }
        self.accumulate(hv4, ("g", "gb", Gen::dout), "pz", "dv", "");
        self.accumulate(hd4, ("q", "qb", Gen::q), "ds", "dk", "");
        w!(self, "    }}");
        for r in 0..r {
            w!(self, "    if (live{r}) {{");
            w!(self, "        let kb = at_krow(bh, n{r});");
            self.store("y0", "kb", &format!("dk{r}"), hd4, "at.e", "at.scale");
            w!(self, "        let vb = at_vrow(bh, n{r});");
            w!(self, "        if (at.dv_in_dk != 0u) {{");
            self.store("y0", "vb", &format!("dv{r}"), hv4, "at.ev", "1.0");
            w!(self, "        }} else {{");
            self.store("y1", "vb", &format!("dv{r}"), hv4, "at.ev", "1.0");
            w!(self, "        }}");
            w!(self, "    }}");
        }
        w!(self, "}}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_per_thread_follow_the_register_budget() {
        assert_eq!(rows_per_thread(Pass::Forward, 16, 16), 4);
        assert_eq!(rows_per_thread(Pass::Dq, 16, 16), 2);
        assert_eq!(rows_per_thread(Pass::Dkv, 16, 16), 2);
        assert_eq!(rows_per_thread(Pass::Dkv, 32, 32), 1);
        assert_eq!(rows_per_thread(Pass::Forward, 1, 1), MAX_ROWS);
    }

    #[test]
    fn variants_round_trip_through_their_words() {
        let v = Variant::new(Pass::Dkv, (6, 64), 300, false, true, false, true);
        assert_eq!(Variant::from_words(&v.words()), v);
        assert_eq!(v.hd4, 2);
        assert_eq!(v.hv4, 16);
        assert_eq!(v.aw, 64);
    }
}
