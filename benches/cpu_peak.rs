//! The machine's f32 fused-multiply-add peak, measured: the ceiling that the CPU
//! backend's products and training steps are compared with (docs/benchmarks.md). Each
//! of `WGRAD_NUM_THREADS` threads (default: all cores) runs independent chains of
//! vector FMAs (AVX-512 where the CPU has it, else AVX2 with FMA, else scalar
//! multiply-adds) for about a second; no memory is touched, so the rate is the FMA
//! units' throughput at the clock the cores hold under that load.
//!
//! ```sh
//! cargo bench -p wgrad-benches --bench cpu_peak
//! ```

use std::time::Instant;

/// Independent accumulators per thread: enough to cover the FMA latency (4 cycles) on
/// two pipes.
const CHAINS: usize = 12;

/// FLOPs done by `reps` rounds of the chosen kernel, and the kernel's name.
fn kernel(reps: u64) -> (f64, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked above).
            let s = unsafe { x86::avx512(reps) };
            std::hint::black_box(s);
            return (
                (reps * CHAINS as u64 * 16 * 2) as f64,
                "AVX-512 (16 f32 lanes)",
            );
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            let s = unsafe { x86::avx2(reps) };
            std::hint::black_box(s);
            return (
                (reps * CHAINS as u64 * 8 * 2) as f64,
                "AVX2 + FMA (8 f32 lanes)",
            );
        }
    }
    let mut acc = [1.0f32; CHAINS];
    for _ in 0..reps {
        for a in &mut acc {
            *a = std::hint::black_box(*a) * 0.999_999 + 1e-7;
        }
    }
    std::hint::black_box(acc);
    ((reps * CHAINS as u64 * 2) as f64, "scalar")
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::CHAINS;
    use std::arch::x86_64::*;

    /// `reps` rounds of `CHAINS` independent 16-lane FMAs.
    ///
    /// # Safety
    /// Only on a CPU with AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512(reps: u64) -> f32 {
        let (m, c) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..reps {
            for a in &mut acc {
                *a = _mm512_fmadd_ps(*a, m, c);
            }
        }
        acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
    }

    /// `reps` rounds of `CHAINS` independent 8-lane FMAs.
    ///
    /// # Safety
    /// Only on a CPU with AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(reps: u64) -> f32 {
        let (m, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for _ in 0..reps {
            for a in &mut acc {
                *a = _mm256_fmadd_ps(*a, m, c);
            }
        }
        let mut out = [0.0f32; 8];
        let sum = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
        _mm256_storeu_ps(out.as_mut_ptr(), sum);
        out.iter().sum()
    }
}

fn main() {
    let threads = std::env::var("WGRAD_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // Size the rounds to about a second on one thread.
    let probe = 1u64 << 20;
    let t = Instant::now();
    let (_, name) = kernel(probe);
    let reps = (probe as f64 / t.elapsed().as_secs_f64()).max(1.0) as u64;
    let mut best = [0.0f64; 2];
    for (i, n) in [1, threads].into_iter().enumerate() {
        for _ in 0..3 {
            let start = Instant::now();
            let flops: f64 = std::thread::scope(|s| {
                let hs: Vec<_> = (0..n).map(|_| s.spawn(move || kernel(reps).0)).collect();
                hs.into_iter()
                    .map(|h| h.join().expect("a peak thread"))
                    .sum()
            });
            best[i] = best[i].max(flops / start.elapsed().as_secs_f64() / 1e9);
        }
    }
    println!("f32 FMA peak, measured with {name} (best of 3 runs of about 1 s):");
    println!("  1 thread:  {:.1} GFLOP/s", best[0]);
    println!("  {threads} threads: {:.1} GFLOP/s", best[1]);
    println!(
        "  (per thread: {:.2} GHz at 32 FLOP per cycle, two 256-bit FMA pipes; {:.2} GHz at 64)",
        best[0] / 32.0,
        best[0] / 64.0
    );
}
