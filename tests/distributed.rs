//! Data-parallel training. Always: the sampler's shards, the loader over a
//! shard, and `DistributedDataParallel` in a single process. With the `mpi` feature
//! (as `tools/test.sh` and CI build): `mpirun` launches `examples/ddp_digits` (built
//! by `cargo test`) at 2 and 4 ranks, whose parameters after k steps must equal one
//! process's with the whole batch, on the CPU and on the GPU; a rank that panics must
//! end the job within seconds; and the binary must run without `mpirun` as one rank.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use wgrad::data::{DataLoader, Dataset, InMemoryDataset};
use wgrad::distributed::{Collective, DistributedDataParallel, DistributedSampler, SingleProcess};
use wgrad::prelude::*;

#[test]
fn the_shards_are_disjoint_equal_and_cover_every_example() {
    for (len, world) in [(10, 3), (12, 4), (1797, 2), (7, 8), (100, 1)] {
        for epoch in 0..3 {
            let shards: Vec<Vec<usize>> = (0..world)
                .map(|r| {
                    DistributedSampler::new(len, world, r)
                        .unwrap()
                        .shuffle(9)
                        .indices(epoch)
                })
                .collect();
            let per = len.div_ceil(world);
            assert!(shards.iter().all(|s| s.len() == per), "{len} over {world}");
            let all: HashSet<usize> = shards.iter().flatten().copied().collect();
            assert_eq!(all.len(), len, "every example, {len} over {world}");
            assert!(all.iter().all(|&i| i < len));
            // Padding repeats only as many as needed to even out the shards.
            assert_eq!(shards.iter().map(Vec::len).sum::<usize>(), per * world);
            if len >= world {
                // Without padding the shards are disjoint.
                let dl: Vec<Vec<usize>> = (0..world)
                    .map(|r| {
                        let s = DistributedSampler::new(len, world, r).unwrap();
                        s.drop_last(true).shuffle(9).indices(epoch)
                    })
                    .collect();
                let flat: Vec<usize> = dl.iter().flatten().copied().collect();
                let set: HashSet<usize> = flat.iter().copied().collect();
                assert_eq!(set.len(), flat.len(), "disjoint, {len} over {world}");
                assert_eq!(flat.len(), len / world * world);
            }
        }
    }
    // PyTorch's layout, unshuffled: 10 over 3 pads with 0 and 1, rank r takes r::3.
    let s = |r| DistributedSampler::new(10, 3, r).unwrap().indices(0);
    assert_eq!(s(0), [0, 3, 6, 9]);
    assert_eq!(s(1), [1, 4, 7, 0]);
    assert_eq!(s(2), [2, 5, 8, 1]);
    // Shuffled: the same on every rank for an epoch, another order the next epoch.
    let a = DistributedSampler::new(50, 2, 0).unwrap().shuffle(3);
    assert_eq!(a.indices(4), a.clone().indices(4));
    assert_ne!(a.indices(4), a.indices(5));
    assert!(DistributedSampler::new(10, 2, 2).is_err());
    assert!(DistributedSampler::new(10, 0, 0).is_err());
}

#[test]
fn a_loader_over_a_shard_yields_that_shard() {
    let n = 23;
    let features: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let labels: Vec<u32> = (0..n as u32).collect();
    let data: Arc<dyn Dataset> =
        Arc::new(InMemoryDataset::classification(features, &[1], labels).unwrap());
    let mut seen = HashSet::new();
    for rank in 0..3 {
        let sampler = DistributedSampler::new(n, 3, rank).unwrap().shuffle(1);
        let want = sampler.indices(0);
        let mut loader = DataLoader::new(data.clone(), 4, &Device::cpu())
            .distributed(sampler)
            .unwrap();
        assert_eq!(loader.len(), 2, "8 examples in batches of 4");
        let got: Vec<u32> = loader
            .epoch()
            .flat_map(|b| b.unwrap().y.to_vec::<u32>().unwrap())
            .collect();
        assert_eq!(got, want.iter().map(|&i| i as u32).collect::<Vec<_>>());
        seen.extend(got);
    }
    assert_eq!(seen.len(), n);
    // A sampler for another data set is refused, also one whose first epoch would fit.
    for len in [100, n + 2] {
        let wrong = DistributedSampler::new(len, 2, 0).unwrap().shuffle(2);
        assert!(DataLoader::new(data.clone(), 4, &Device::cpu())
            .distributed(wrong)
            .is_err());
    }
}

/// Rank 0 of 2 in one process: `other(call, buf)` adds the other rank's part to the
/// `call`-th all-reduce; broadcasts keep this rank's values.
struct FakePair {
    calls: std::sync::atomic::AtomicUsize,
    other: fn(usize, &mut [f32]),
}

impl Collective for FakePair {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        2
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (self.other)(call, buf);
        Ok(())
    }
    fn broadcast(&self, _buf: &mut [f32], _root: usize) -> Result<()> {
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn describe(&self) -> String {
        "a fake pair".into()
    }
}

/// Two ranks that always hold the same gradients: the other adds what this one has.
/// Averaging then gives the gradients back exactly, so the whole bucket path (join,
/// readback, reduce, scale, upload, copy back) must leave training unchanged.
fn twins() -> Arc<dyn Collective> {
    Arc::new(FakePair {
        calls: Default::default(),
        other: |_, buf| buf.iter_mut().for_each(|v| *v *= 2.0),
    })
}

/// A partner that used every parameter but had zero gradients: the first all-reduce
/// of a sync (the "has a gradient" flags) gets its ones, the others its zeros.
fn peer() -> Arc<dyn Collective> {
    Arc::new(FakePair {
        calls: Default::default(),
        other: |call, buf| {
            if call == 0 {
                buf.iter_mut().for_each(|v| *v += 1.0);
            }
        },
    })
}

common::test_device!(
    ddp_over_identical_ranks_trains_exactly_as_the_plain_model_cpu,
    ddp_over_identical_ranks_trains_exactly_as_the_plain_model_gpu,
    |dev| {
        let build = || {
            dev.manual_seed(4);
            Sequential::new()
                .add(Linear::new(&dev, 5, 7))
                .add(Tanh)
                .add(Linear::new(&dev, 7, 3))
        };
        let x = Tensor::randn_seeded(&[6, 5], 2, &dev).unwrap();
        let y = Tensor::from_vec(vec![0u32, 1, 2, 2, 1, 0], &[6], &dev).unwrap();
        let plain = build();
        let comm = twins();
        let ddp = DistributedDataParallel::new(build(), comm)
            .unwrap()
            .bucket_cap_mb(0.0); // a bucket per tensor
        let mut o1 = Sgd::new(plain.parameters(), 0.1).momentum(0.9);
        let mut o2 = Sgd::new(ddp.parameters(), 0.1).momentum(0.9);
        for _ in 0..4 {
            o1.zero_grad();
            plain
                .forward(&x)
                .unwrap()
                .cross_entropy(&y)
                .unwrap()
                .backward()
                .unwrap();
            o1.step().unwrap();
            o2.zero_grad();
            let loss = ddp.forward(&x).unwrap().cross_entropy(&y).unwrap();
            ddp.backward(&loss).unwrap();
            o2.step().unwrap();
        }
        for (a, b) in plain.parameters().iter().zip(ddp.parameters()) {
            assert_eq!(
                a.to_vec::<f32>().unwrap(),
                b.to_vec::<f32>().unwrap(),
                "{dev:?}"
            );
        }
        let s = ddp.stats();
        assert_eq!(
            (s.calls, s.buckets),
            (4, 16),
            "{dev:?}: four tensors, four steps"
        );
        // A single process moves nothing: its mean gradient is its gradient.
        let alone = DistributedDataParallel::new(build(), Arc::new(SingleProcess)).unwrap();
        alone
            .forward(&x)
            .unwrap()
            .sum()
            .unwrap()
            .backward()
            .unwrap();
        alone.sync_gradients().unwrap();
        assert_eq!(alone.stats().buckets, 0);
        // PyTorch's names under the wrapper.
        let names: Vec<String> = ddp.named_parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[0], "module.0.weight");
    }
);

#[test]
fn unused_parameters_keep_no_gradient_unless_another_rank_used_them() {
    let dev = Device::cpu();
    // The second layer is never used.
    struct Half(Linear, Linear);
    impl Module for Half {
        fn forward(&self, x: &Tensor) -> Result<Tensor> {
            self.0.forward(x)
        }
        fn children(&self) -> Vec<(String, &dyn Module)> {
            vec![("a".into(), &self.0 as &dyn Module), ("b".into(), &self.1)]
        }
    }
    let x = Tensor::ones(&[3, 2], &dev).unwrap();
    let half = || Half(Linear::new(&dev, 2, 2), Linear::new(&dev, 2, 2));
    // Unused on every rank: no gradient, as in one process (the optimizer skips it).
    let ddp = DistributedDataParallel::new(half(), twins()).unwrap();
    ddp.backward(&ddp.forward(&x).unwrap().sum().unwrap())
        .unwrap();
    let p = ddp.parameters();
    assert!(p[0].grad().is_some() && p[2].grad().is_none() && p[3].grad().is_none());
    // Used on the other rank: zeros here, so that both ranks reduce the same buckets.
    let ddp = DistributedDataParallel::new(half(), peer()).unwrap();
    ddp.backward(&ddp.forward(&x).unwrap().sum().unwrap())
        .unwrap();
    let g = ddp.parameters()[2].grad().expect("a zero gradient");
    assert!(g.to_vec::<f32>().unwrap().iter().all(|&v| v == 0.0));
}

#[test]
fn f64_parameters_are_refused() {
    let dev = Device::cpu();
    // A model holding an f64 parameter (the CPU allows them): refused with a message.
    struct F64Model(wgrad::nn::Parameter);
    impl Module for F64Model {
        fn forward(&self, x: &Tensor) -> Result<Tensor> {
            Ok(x.clone())
        }
        fn local_parameters(&self) -> Vec<(&'static str, &wgrad::nn::Parameter)> {
            vec![("w", &self.0)]
        }
    }
    let w = Tensor::from_vec(vec![1.0f64, 2.0], &[2], &dev).unwrap();
    let model = F64Model(wgrad::nn::Parameter::new(w));
    assert!(matches!(
        DistributedDataParallel::new(model, Arc::new(SingleProcess)),
        Err(Error::Distributed(_))
    ));
}

#[cfg(feature = "mpi")]
mod mpi {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};
    use std::time::{Duration, Instant};

    /// `examples/ddp_digits`, which `cargo test` builds next to the test binaries.
    fn example() -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap().parent().unwrap();
        let bin = dir.join("examples").join("ddp_digits");
        assert!(
            bin.exists(),
            "{} is missing (cargo test builds it)",
            bin.display()
        );
        bin
    }

    /// Runs `ranks` copies of the example under mpirun (0: without mpirun), killed
    /// after `limit`; returns the output and the time taken.
    fn run(ranks: usize, args: &[&str], env: &[(&str, &str)], limit: u64) -> (Output, Duration) {
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", &limit.to_string()]);
        if ranks > 0 {
            cmd.args([
                "mpirun",
                "--allow-run-as-root",
                "--oversubscribe",
                "--mca",
                "btl",
                "self,vader",
                "-np",
                &ranks.to_string(),
            ]);
        }
        cmd.arg(example()).args(args);
        // Without mpirun: a single rank, even where no ssh is installed.
        cmd.env("OMPI_MCA_ess_singleton_isolated", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let start = Instant::now();
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("mpirun could not start ({e}); install openmpi-bin"));
        (out, start.elapsed())
    }

    fn ok(out: &Output, what: &str) -> String {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{what} failed ({}):\n{text}",
            out.status
        );
        text
    }

    /// The parameters rank 0 saved, by name.
    fn params(path: &Path) -> Vec<(String, Vec<f32>)> {
        let model = wgrad::io::read_safetensors(path, &wgrad::Device::cpu()).unwrap();
        model
            .into_iter()
            .map(|(n, t)| (n, t.to_vec::<f32>().unwrap()))
            .collect()
    }

    fn equivalence(ranks: &[usize], device: &str) {
        let dir = std::env::temp_dir().join(format!("wgrad-ddp-{}-{device}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let env = [("WGRAD_DDP_DEVICE", device)];
        let file = |r: usize| dir.join(format!("params-{r}.safetensors"));
        let steps = ["--check-steps", "8", "--global-batch", "64", "--out"];
        let one = file(1);
        let mut args = steps.to_vec();
        args.push(one.to_str().unwrap());
        ok(&run(0, &args, &env, 300).0, "one process");
        let want = params(&one);
        for &r in ranks {
            let path = file(r);
            let mut args = steps.to_vec();
            args.push(path.to_str().unwrap());
            ok(&run(r, &args, &env, 300).0, &format!("{r} ranks"));
            let got = params(&path);
            assert_eq!(got.len(), want.len());
            for ((n, g), (_, w)) in got.iter().zip(&want) {
                let worst = g
                    .iter()
                    .zip(w)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                // f32 sums in another order: rounding, not a different computation.
                assert!(worst <= 1e-5, "{device}, {r} ranks, {n}: off by {worst}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn two_and_four_ranks_equal_one_process_with_the_whole_batch_on_the_cpu() {
        equivalence(&[2, 4], "cpu");
    }

    #[test]
    fn two_and_four_ranks_sharing_the_gpu_equal_one_process() {
        equivalence(&[2, 4], "gpu");
    }

    #[test]
    fn a_rank_that_panics_ends_the_job_within_seconds() {
        let args = ["--epochs", "3", "--panic-at-step", "5", "--panic-rank", "1"];
        let (out, took) = run(2, &args, &[("WGRAD_DDP_DEVICE", "cpu")], 60);
        assert!(!out.status.success(), "the job must fail");
        assert_ne!(out.status.code(), Some(124), "timed out: the job hung");
        assert!(took < Duration::from_secs(20), "took {took:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("panics at step 5"), "{err}");
    }

    #[test]
    fn the_binary_runs_without_mpirun_as_one_rank() {
        let (out, _) = run(0, &["--epochs", "2"], &[("WGRAD_DDP_DEVICE", "cpu")], 120);
        let text = ok(&out, "without mpirun");
        assert!(text.contains("MPI, rank 0 of 1"), "{text}");
        assert!(text.contains("rank 0 of 1:"), "{text}");
    }
}
