//! Which kernel of the matmul family computes a product, and over how many K splits.
//!
//! The family (`shaders/matmul.wgsl`): register-tiled kernels with 128 x 128 tiles (8 x 8
//! outputs per thread) and 64 x 64 tiles (4 x 4), and a small-tile kernel (16 or 32 rows
//! by 16 or 32 columns, 2 or 4 by 2 or 4 outputs per thread, no staging) for products with
//! few rows or columns. Any of them can split K into chunks whose partial products a
//! reduction pass adds (split-K). On a software adapter (lavapipe and the like, which
//! run a workgroup's threads as one CPU thread's SIMD lanes) the block kernels join
//! them: large register blocks per thread, operands read straight from memory as vec4s,
//! because there every load instruction costs tens of multiply-adds.
//!
//! The rule, for a product of `batches` matrices `M x K` by `K x N`:
//! 1. Candidates are each kernel with each split count whose chunk is at least
//!    [`MIN_K_CHUNK`] (one split always), whose (batch, split) pairs fit grid z (the tiles
//!    fold into x and y, so any M and N fit), and whose partial
//!    buffer fits in one binding. No workgroup loops over more than [`MAX_K_PER_GROUP`]
//!    values of k (drivers stop long shader loops); a single split over a longer K runs
//!    its chunks one after another, each adding to the result (passes). Below that bound
//!    a single split is one dispatch however few its workgroups: passes on the same
//!    workgroups would fill the GPU no better than one longer loop, only add dispatches
//!    and re-read the output. Whether a long loop on few workgroups is worth splitting
//!    is the model's to weigh (3.), which charges it its low fill.
//! 2. Candidates that waste at most a quarter of their arithmetic on partial tiles
//!    ([`MIN_USEFUL`]) are preferred; without any, the least wasteful ones compete.
//! 3. Among those, the lowest modelled time wins, on a reference GPU of the H100 class
//!    (or, on a software adapter, at the rates measured on lavapipe, `software_rate`):
//!    executed FLOPs at the kernel's rate, slowed in proportion when the grid has fewer
//!    workgroups than it takes to fill the GPU ([`FULL_GROUPS`] on hardware, one per CPU
//!    thread on a software adapter), plus, with splits, one dependent dispatch and the
//!    partials' memory traffic.
//!
//! The model only ranks candidates; its constants are estimates, documented here so they
//! can be tuned on hardware (`examples/gpu_vs_cpu` prints each product's choice).

pub use crate::backend::matmul::MatmulKernel;

impl MatmulKernel {
    /// Output tile (rows, columns) and the depth to which K is padded per split.
    pub(crate) fn tile(self) -> (usize, usize, usize) {
        match self {
            MatmulKernel::Tile128 => (128, 128, 8),
            MatmulKernel::Tile64 => (64, 64, 16),
            MatmulKernel::Small32x32 => (32, 32, 1),
            MatmulKernel::Small16x32 => (16, 32, 1),
            MatmulKernel::Small32x16 => (32, 16, 1),
            MatmulKernel::Small16x16 | MatmulKernel::Naive | MatmulKernel::Auto => (16, 16, 1),
            MatmulKernel::Block64 => (64, 64, 1),
            MatmulKernel::Block32 => (32, 32, 1),
            MatmulKernel::Block16x64 => (16, 64, 1),
            MatmulKernel::Block64x16 => (64, 16, 1),
            MatmulKernel::Block16 => (16, 16, 1),
        }
    }

    /// Outputs per thread (rows, columns) of a block kernel.
    pub(crate) fn block(self) -> Option<(usize, usize)> {
        let (bm, bn, _) = self.tile();
        self.is_block().then_some((bm / 4, bn / 4))
    }

    /// Relative arithmetic rate on a large GPU (per executed FLOP). The small-tile
    /// kernels read their operands from global memory (L1), so their rate follows the
    /// multiply-adds per load: 1 for 2 x 2 outputs per thread, 4/3 for 2 x 4, 2 for 4 x 4.
    fn rate(self) -> f64 {
        match self {
            MatmulKernel::Tile128 => 1.0,
            MatmulKernel::Tile64 => 0.65,
            MatmulKernel::Small32x32 => 0.4,
            MatmulKernel::Small16x32 | MatmulKernel::Small32x16 => 0.3,
            MatmulKernel::Small16x16 => 0.25,
            MatmulKernel::Naive | MatmulKernel::Auto => 0.1,
            // Never planned on hardware (256 accumulators per thread spill).
            MatmulKernel::Block64
            | MatmulKernel::Block32
            | MatmulKernel::Block16x64
            | MatmulKernel::Block64x16
            | MatmulKernel::Block16 => 0.05,
        }
    }

    /// Relative rate on a software adapter, measured on lavapipe (Mesa 22.3, 2 threads)
    /// with the workloads' products: there the rate follows the multiply-adds per load
    /// instruction, so the block kernels lead.
    fn software_rate(self) -> f64 {
        match self {
            MatmulKernel::Block64 => 1.9,
            MatmulKernel::Block32 => 1.25,
            MatmulKernel::Block16x64 | MatmulKernel::Block64x16 => 1.05,
            MatmulKernel::Block16 => 0.6,
            other => other.rate(),
        }
    }

    /// True for the block kernels (software adapters).
    pub fn is_block(self) -> bool {
        matches!(
            self,
            MatmulKernel::Block64
                | MatmulKernel::Block32
                | MatmulKernel::Block16x64
                | MatmulKernel::Block64x16
                | MatmulKernel::Block16
        )
    }

    /// True for the small-tile kernels.
    pub fn is_small(self) -> bool {
        matches!(
            self,
            MatmulKernel::Small16x16
                | MatmulKernel::Small16x32
                | MatmulKernel::Small32x16
                | MatmulKernel::Small32x32
        )
    }
}

/// No workgroup loops over more values of k than this (drivers stop or kill long shader
/// loops: lavapipe after 65,535 iterations): longer products split K, or a single split
/// runs in passes.
pub const MAX_K_PER_GROUP: usize = 8192;
/// A split count tried besides [`SPLITS`]: the fewest splits whose chunks are at most this
/// long (many short loops, which fill a large GPU when K is very long).
const SHORT_CHUNK: usize = 1024;
/// Split chunks are at least this long (and a multiple of `K_ALIGN`).
pub const MIN_K_CHUNK: usize = 128;
/// Split chunks are multiples of this: every slice depth, and whole vec4s.
const K_ALIGN: usize = 16;
/// The share of executed FLOPs that must be useful for a candidate to be preferred (a
/// quarter of wasted arithmetic at most).
pub const MIN_USEFUL: f64 = 0.75;
pub use crate::backend::gpu::FULL_GROUPS;
/// Reference GPU: sustained FP32 FLOPs per ns of the best kernel, bytes per ns of memory,
/// and ns per dependent dispatch.
const PEAK_FLOP_PER_NS: f64 = 50e3;
const BYTES_PER_NS: f64 = 3e3;
const DISPATCH_NS: f64 = 4e3;
/// Split counts tried.
const SPLITS: [usize; 14] = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128];
/// Workgroups a grid dimension may hold (z carries at most this many (batch, split) pairs
/// per launch; the output tiles fold into x and y).
pub(crate) const MAX_GROUPS: usize = 65_535;

/// A product's dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProductShape {
    /// Rows of the result.
    pub m: usize,
    /// Columns of the result.
    pub n: usize,
    /// The inner dimension.
    pub k: usize,
    /// Matrices in the batch.
    pub batches: usize,
    /// True when the batch is summed into fewer outputs afterwards (the weight gradient
    /// of a broadcast operand): that reduction pass happens with or without splits.
    pub summing: bool,
}

/// How a product runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulPlan {
    /// The kernel.
    pub kernel: MatmulKernel,
    /// Parallel splits of K (1: none); their partial products are summed after.
    pub splits: usize,
    /// Values of k per split (or per pass).
    pub k_chunk: usize,
    /// Launches one after another, each adding its chunk of K to the result: a single
    /// split whose K is longer than [`MAX_K_PER_GROUP`] runs this way (the planner
    /// weighs it against splits, whose partials need memory and a reduction pass).
    pub passes: usize,
    /// FLOPs the product needs.
    pub useful_flops: u64,
    /// FLOPs the threads execute.
    pub executed_flops: u64,
}

impl MatmulPlan {
    /// Useful over executed FLOPs.
    pub fn useful_fraction(&self) -> f64 {
        if self.executed_flops == 0 {
            1.0
        } else {
            self.useful_flops as f64 / self.executed_flops as f64
        }
    }
}

/// What the plan must respect and aim for on one adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlanLimits {
    /// The adapter's largest storage binding (partial products must fit in one).
    pub max_binding: u64,
    /// Workgroups that keep the adapter busy: [`FULL_GROUPS`] for a hardware GPU, one per
    /// CPU thread for a software rasteriser (lavapipe runs a workgroup per thread).
    pub full_groups: usize,
    /// Plan for a software adapter: the block kernels compete, at software rates.
    pub software: bool,
}

fn chunk_for(k: usize, splits: usize) -> usize {
    k.div_ceil(splits).next_multiple_of(K_ALIGN)
}

/// FLOPs executed by `kernel` over `splits` chunks of `chunk` (the last one shorter).
fn executed(kernel: MatmulKernel, s: &ProductShape, splits: usize, chunk: usize) -> u64 {
    let (bm, bn, bk) = kernel.tile();
    let k_exec = if splits == 1 {
        s.k.next_multiple_of(bk)
    } else {
        (splits - 1) * chunk + (s.k - (splits - 1) * chunk).next_multiple_of(bk)
    };
    let (m, n) = if kernel == MatmulKernel::Naive {
        (s.m, s.n) // threads outside the matrix return at once
    } else {
        (s.m.next_multiple_of(bm), s.n.next_multiple_of(bn))
    };
    2 * (m * n * k_exec * s.batches) as u64
}

/// Builds the plan for one kernel and split count, or `None` when it does not fit. One
/// split whose k range is longer than [`MAX_K_PER_GROUP`] runs as passes one after
/// another; a shorter one is one dispatch.
fn candidate(
    kernel: MatmulKernel,
    s: &ProductShape,
    splits: usize,
    limits: &PlanLimits,
) -> Option<MatmulPlan> {
    // The tiles fold into x and y (`ops::groups_rows`); z holds (batch, split) pairs.
    if splits > MAX_GROUPS {
        return None;
    }
    let useful_flops = 2 * (s.m * s.n * s.k * s.batches) as u64;
    let chunk = if splits == 1 {
        s.k
    } else {
        chunk_for(s.k, splits)
    };
    let splits = s.k.div_ceil(chunk.max(1)).max(1);
    if splits > 1 {
        // The pool rounds buffers up to a power of two.
        let partial_bytes = ((splits * s.batches * s.m * s.n * 4) as u64).next_power_of_two();
        if partial_bytes > limits.max_binding {
            return None;
        }
    }
    let (k_chunk, passes) = if chunk <= MAX_K_PER_GROUP {
        (chunk, 1)
    } else if splits == 1 {
        (MAX_K_PER_GROUP, s.k.div_ceil(MAX_K_PER_GROUP))
    } else {
        return None;
    };
    Some(MatmulPlan {
        kernel,
        splits,
        k_chunk,
        passes,
        useful_flops,
        executed_flops: executed(kernel, s, splits, k_chunk),
    })
}

/// Modelled time of a plan on the reference GPU, in ns. A grid of fewer workgroups than
/// fill the device runs at that share of the rate, so one long k loop on a few
/// workgroups costs what it does: each workgroup's whole chunk at one workgroup's pace.
fn modelled_ns(p: &MatmulPlan, s: &ProductShape, limits: &PlanLimits) -> f64 {
    let (bm, bn, _) = p.kernel.tile();
    let groups = s.m.div_ceil(bm) * s.n.div_ceil(bn) * s.batches * p.splits;
    let fill = (groups as f64 / limits.full_groups.max(1) as f64).min(1.0);
    let rate = if limits.software {
        p.kernel.software_rate()
    } else {
        p.kernel.rate()
    };
    let mut ns = p.executed_flops as f64 / (PEAK_FLOP_PER_NS * rate * fill);
    if p.splits > 1 || s.summing {
        ns += DISPATCH_NS + (p.splits * s.batches * s.m * s.n * 8) as f64 / BYTES_PER_NS;
    }
    ns + (p.passes - 1) as f64 * DISPATCH_NS
}

/// Plans already made: a training step asks for the same shapes every step, and
/// weighing every candidate takes a few microseconds of recording time.
type PlanKey = (ProductShape, MatmulKernel, usize, PlanLimits);
static PLANS: std::sync::Mutex<Option<std::collections::HashMap<PlanKey, Option<MatmulPlan>>>> =
    std::sync::Mutex::new(None);
/// Plans kept at most (the memo starts over past this).
const PLANS_KEPT: usize = 4096;

/// The plan for `s` with `kernel` (or the planner's choice for `Auto`) and `splits`
/// (0: the planner's choice). `None` only when no candidate fits (one split always does).
pub fn plan(
    s: &ProductShape,
    kernel: MatmulKernel,
    splits: usize,
    limits: &PlanLimits,
) -> Option<MatmulPlan> {
    let key = (*s, kernel, splits, *limits);
    let mut memo = PLANS.lock().unwrap_or_else(|e| e.into_inner());
    let plans = memo.get_or_insert_with(Default::default);
    if let Some(p) = plans.get(&key) {
        return *p;
    }
    let p = weigh(s, kernel, splits, limits);
    if plans.len() >= PLANS_KEPT {
        plans.clear();
    }
    plans.insert(key, p);
    p
}

/// [`plan`] without the memo.
fn weigh(
    s: &ProductShape,
    kernel: MatmulKernel,
    splits: usize,
    limits: &PlanLimits,
) -> Option<MatmulPlan> {
    // The block kernels first: candidates on a software adapter only.
    const FAMILY: [MatmulKernel; 11] = [
        MatmulKernel::Block64,
        MatmulKernel::Block32,
        MatmulKernel::Block16x64,
        MatmulKernel::Block64x16,
        MatmulKernel::Block16,
        MatmulKernel::Tile128,
        MatmulKernel::Tile64,
        MatmulKernel::Small32x32,
        MatmulKernel::Small32x16,
        MatmulKernel::Small16x32,
        MatmulKernel::Small16x16,
    ];
    let kernels: &[MatmulKernel] = match kernel {
        MatmulKernel::Auto if limits.software => &FAMILY,
        MatmulKernel::Auto => &FAMILY[5..],
        forced => std::slice::from_ref(match forced {
            MatmulKernel::Tile128 => &MatmulKernel::Tile128,
            MatmulKernel::Tile64 => &MatmulKernel::Tile64,
            MatmulKernel::Small32x32 => &MatmulKernel::Small32x32,
            MatmulKernel::Small32x16 => &MatmulKernel::Small32x16,
            MatmulKernel::Small16x32 => &MatmulKernel::Small16x32,
            MatmulKernel::Small16x16 => &MatmulKernel::Small16x16,
            MatmulKernel::Block64 => &MatmulKernel::Block64,
            MatmulKernel::Block32 => &MatmulKernel::Block32,
            MatmulKernel::Block16x64 => &MatmulKernel::Block16x64,
            MatmulKernel::Block64x16 => &MatmulKernel::Block64x16,
            MatmulKernel::Block16 => &MatmulKernel::Block16,
            _ => &MatmulKernel::Naive,
        }),
    };
    // Besides the usual counts, the fewest splits that keep each chunk within a bound.
    let bounded = [s.k.div_ceil(SHORT_CHUNK), s.k.div_ceil(MAX_K_PER_GROUP)];
    let mut candidates: Vec<MatmulPlan> = Vec::new();
    for &kern in kernels {
        if splits > 0 {
            candidates.extend(
                candidate(kern, s, splits, limits).or_else(|| candidate(kern, s, 1, limits)),
            );
            continue;
        }
        for &n in SPLITS.iter().chain(&bounded) {
            if n == 1 || s.k / n >= MIN_K_CHUNK {
                candidates.extend(candidate(kern, s, n, limits));
            }
        }
    }
    let best_useful = candidates
        .iter()
        .map(|c| c.useful_fraction())
        .fold(0.0, f64::max);
    let bar = MIN_USEFUL.min(best_useful);
    candidates
        .into_iter()
        .filter(|c| c.useful_fraction() >= bar)
        .min_by(|a, b| {
            modelled_ns(a, s, limits)
                .partial_cmp(&modelled_ns(b, s, limits))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PlanLimits = PlanLimits {
        max_binding: 128 << 20,
        full_groups: FULL_GROUPS,
        software: false,
    };

    fn auto(m: usize, n: usize, k: usize, batches: usize) -> MatmulPlan {
        let s = ProductShape {
            m,
            n,
            k,
            batches,
            summing: false,
        };
        plan(&s, MatmulKernel::Auto, 0, &LIMITS).unwrap()
    }

    #[test]
    fn big_square_products_take_the_large_tile_without_splits() {
        let p = auto(4096, 4096, 4096, 1);
        assert_eq!(
            (p.kernel, p.splits, p.passes),
            (MatmulKernel::Tile128, 1, 1)
        );
    }

    #[test]
    fn a_long_k_with_a_small_output_splits() {
        // The cnn's final linear layer: 64 x 1568 by 1568 x 10.
        let p = auto(64, 10, 1568, 1);
        assert!(p.splits > 1, "{p:?}");
        assert!(p.k_chunk >= MIN_K_CHUNK && p.k_chunk.is_multiple_of(K_ALIGN));
    }

    #[test]
    fn skinny_products_take_a_small_tile() {
        // conv1's forward product per image: 16 x 9 by 9 x 784.
        let p = auto(16, 784, 9, 64);
        assert!(p.kernel.is_small(), "{p:?}");
        assert!(p.useful_fraction() > 0.95, "{p:?}");
    }

    #[test]
    fn no_group_loops_over_more_than_the_bounds() {
        for k in [1024, 1025, 8192, 8193, 70_000, 1 << 20] {
            let p = auto(4, 3, k, 1);
            assert!(p.k_chunk <= MAX_K_PER_GROUP, "{k}: {p:?}");
            assert!(p.splits * p.passes * p.k_chunk >= k);
            // On a large GPU a long K over one tile takes split-K: one loop over all of
            // it would leave the GPU idle (the model charges the low fill).
            assert!(p.splits > 1 && p.k_chunk <= SHORT_CHUNK, "{k}: {p:?}");
        }
        // The cnn's final linear layer splits its K of 1568 on a large GPU.
        let p = auto(64, 10, 1568, 1);
        assert!(p.k_chunk <= SHORT_CHUNK, "{p:?}");
        // A product that fills the GPU by itself loops over its K of 4096 in one dispatch;
        // past the watchdog bound, when its partials would not fit, the chunks run one
        // after another.
        let p = auto(4096, 4096, 4096, 1);
        assert_eq!((p.splits, p.passes, p.k_chunk), (1, 1, 4096), "{p:?}");
        let p = auto(4096, 4096, 40_000, 1);
        assert!(
            p.k_chunk <= MAX_K_PER_GROUP && p.passes * p.k_chunk >= 40_000,
            "{p:?}"
        );
    }

    #[test]
    fn a_single_split_is_one_dispatch_up_to_the_watchdog_bound() {
        // A forced single split (a fused product) never runs in passes below the bound,
        // however few its workgroups, and in the fewest passes above it.
        for (k, passes) in [(1024, 1), (2048, 1), (8192, 1), (8193, 2), (20_000, 3)] {
            let s = ProductShape {
                m: 64,
                n: 10,
                k,
                batches: 1,
                summing: false,
            };
            let p = plan(&s, MatmulKernel::Small32x16, 1, &LIMITS).unwrap();
            assert_eq!((p.splits, p.passes), (1, passes), "{k}: {p:?}");
            assert!(p.k_chunk <= MAX_K_PER_GROUP && p.passes * p.k_chunk >= k);
        }
    }

    #[test]
    fn the_transformers_weight_gradients_are_one_dispatch_on_lavapipe_and_split_on_a_large_gpu() {
        let software = PlanLimits {
            max_binding: 128 << 20,
            full_groups: 2,
            software: true,
        };
        let hardware = PlanLimits {
            max_binding: 2 << 30,
            ..LIMITS
        };
        // dW = x^T g over the 2048 tokens of a step: 128 x 128, 76 x 128 (the
        // vocabulary's projection), and the feed-forward's 128 x 512 and 512 x 128.
        for (m, n) in [(128, 128), (76, 128), (128, 512), (512, 128)] {
            let s = ProductShape {
                m,
                n,
                k: 2048,
                batches: 1,
                summing: false,
            };
            // Two CPU threads are kept busy by these grids: one loop over K, no splits
            // or passes.
            let sw = plan(&s, MatmulKernel::Auto, 0, &software).unwrap();
            assert_eq!(
                (sw.splits, sw.passes, sw.k_chunk),
                (1, 1, 2048),
                "{s:?}: {sw:?}"
            );
            // A large GPU is not filled by these few tiles: split-K, short loops.
            let hw = plan(&s, MatmulKernel::Auto, 0, &hardware).unwrap();
            assert!(hw.splits > 1 && hw.k_chunk <= SHORT_CHUNK, "{s:?}: {hw:?}");
        }
    }

    /// One product: M, N, K, batches, and whether the batch is summed.
    type Product = (usize, usize, usize, usize, bool);

    /// The products of the three shared benchmark workloads' training steps, as
    /// `tests/gpu_work.rs` records them.
    fn workload_products() -> [(&'static str, Vec<Product>); 3] {
        let mut rnn = vec![(1024, 128, 65, 1, false), (1024, 65, 128, 1, false)];
        rnn.extend(std::iter::repeat_n((32, 128, 128, 1, false), 64));
        rnn.extend([
            (1024, 128, 65, 1, false),
            (65, 128, 1024, 1, false),
            (128, 128, 1024, 1, false),
            (128, 65, 1024, 1, false),
        ]);
        [
            (
                "mlp",
                vec![
                    (128, 256, 784, 1, false),
                    (128, 128, 256, 1, false),
                    (128, 10, 128, 1, false),
                    (128, 128, 10, 1, false),
                    (10, 128, 128, 1, false),
                    (128, 256, 128, 1, false),
                    (128, 256, 128, 1, false),
                    (256, 784, 128, 1, false),
                ],
            ),
            (
                "cnn",
                vec![
                    (16, 784, 9, 64, false),
                    (32, 196, 144, 64, false),
                    (64, 10, 1568, 1, false),
                    (64, 1568, 10, 1, false),
                    (10, 1568, 64, 1, false),
                    (32, 144, 196, 64, true),
                    (144, 196, 32, 64, false),
                    (16, 9, 784, 64, true),
                ],
            ),
            ("rnn", rnn),
        ]
    }

    #[test]
    fn the_workloads_products_are_mostly_useful_on_a_large_gpu_too() {
        let hardware = PlanLimits {
            max_binding: 2 << 30,
            full_groups: FULL_GROUPS,
            software: false,
        };
        for (name, products) in workload_products() {
            let (mut useful, mut executed) = (0u64, 0u64);
            for (m, n, k, batches, summing) in products {
                let s = ProductShape {
                    m,
                    n,
                    k,
                    batches,
                    summing,
                };
                let p = plan(&s, MatmulKernel::Auto, 0, &hardware).unwrap();
                // The model keeps every loop short here, splitting K where tiles are few.
                assert!(p.k_chunk <= SHORT_CHUNK, "{name} {s:?}: {p:?}");
                useful += p.useful_flops;
                executed += p.executed_flops;
            }
            let share = useful as f64 / executed as f64;
            println!("{name}: {:.1}% useful on a large GPU", 100.0 * share);
            assert!(share >= 0.8, "{name}: {:.1}% useful", 100.0 * share);
        }
    }

    #[test]
    fn block_kernels_only_on_software_adapters() {
        let software = PlanLimits {
            max_binding: 128 << 20,
            full_groups: 2,
            software: true,
        };
        let hardware = PlanLimits {
            software: false,
            ..software
        };
        for (name, products) in workload_products() {
            for (m, n, k, batches, summing) in products {
                let s = ProductShape {
                    m,
                    n,
                    k,
                    batches,
                    summing,
                };
                let hw = plan(&s, MatmulKernel::Auto, 0, &hardware).unwrap();
                assert!(!hw.kernel.is_block(), "{name} {s:?}: {hw:?}");
                let sw = plan(&s, MatmulKernel::Auto, 0, &software).unwrap();
                // On lavapipe every product of the workloads is faster on a block kernel.
                assert!(sw.kernel.is_block(), "{name} {s:?}: {sw:?}");
                assert!(sw.useful_fraction() >= 0.5, "{name} {s:?}: {sw:?}");
            }
        }
        // The mlp's first layer takes the largest block.
        let s = ProductShape {
            m: 128,
            n: 256,
            k: 784,
            batches: 1,
            summing: false,
        };
        let p = plan(&s, MatmulKernel::Auto, 0, &software).unwrap();
        assert_eq!(
            (p.kernel, p.splits, p.useful_fraction()),
            (MatmulKernel::Block64, 1, 1.0)
        );
    }

    #[test]
    fn forced_kernels_and_splits_are_honoured() {
        let s = ProductShape {
            m: 33,
            n: 65,
            k: 300,
            batches: 2,
            summing: false,
        };
        let p = plan(&s, MatmulKernel::Tile64, 3, &LIMITS).unwrap();
        assert_eq!(
            (p.kernel, p.splits, p.k_chunk),
            (MatmulKernel::Tile64, 3, 112)
        );
    }
}
