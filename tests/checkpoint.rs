//! Checkpoints: a run stopped, saved, loaded into a fresh model and continued ends
//! bit-identical to the uninterrupted run (dropout, momentum SGD and Adam, a schedule, on
//! both devices); saves are atomic (a failing writer, a full tmpfs); a checkpoint that
//! does not fit, or a damaged file, changes nothing; optimizer state crosses devices.

mod common;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use wgrad::io::{load_checkpoint, save_checkpoint, Checkpoint};
use wgrad::nn::{Dropout, Linear, Module, ReLU, Sequential};
use wgrad::optim::{CosineAnnealingLR, Scheduled, StatefulScheduler, StepLR};
use wgrad::prelude::*;

/// A fresh directory of its own for one test.
fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgrad-ckpt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn mlp(dev: &Device, hidden: usize) -> Sequential {
    Sequential::new()
        .add(Linear::new(dev, 6, hidden))
        .add(ReLU)
        .add(Dropout::new(0.3))
        .add(Linear::new(dev, hidden, 3))
}

fn values(ts: &[Tensor]) -> Vec<Vec<u32>> {
    ts.iter()
        .map(|t| {
            t.to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        })
        .collect()
}

/// One training step on batch `step` (fixed inputs and labels).
fn train_step(model: &Sequential, opt: &mut dyn Optimizer, dev: &Device, step: usize) {
    let x = Tensor::randn_seeded(&[8, 6], 1000 + step as u64, dev).unwrap();
    let labels: Vec<u32> = (0..8).map(|i| ((i + step) % 3) as u32).collect();
    let y = Tensor::from_vec(labels, &[8], dev).unwrap();
    let loss = model.forward(&x).unwrap().cross_entropy(&y).unwrap();
    opt.zero_grad();
    loss.backward().unwrap();
    opt.step().unwrap();
}

type MakeOpt = fn(Vec<Tensor>, f64) -> Box<dyn Optimizer>;

fn sgd(p: Vec<Tensor>, lr: f64) -> Box<dyn Optimizer> {
    Box::new(
        Sgd::new(p, lr)
            .momentum(0.9)
            .nesterov(true)
            .weight_decay(1e-3),
    )
}

fn adam(p: Vec<Tensor>, lr: f64) -> Box<dyn Optimizer> {
    Box::new(Adam::new(p, lr).weight_decay(1e-3))
}

const STEPS_PER_EPOCH: usize = 2;

/// Trains steps `from..to`, stepping the schedule after every epoch.
fn train(
    model: &Sequential,
    opt: &mut dyn Optimizer,
    sched: &mut Scheduled<CosineAnnealingLR>,
    dev: &Device,
    from: usize,
    to: usize,
) {
    for step in from..to {
        train_step(model, opt, dev, step);
        if (step + 1) % STEPS_PER_EPOCH == 0 {
            sched.step(opt);
        }
    }
}

const COSINE: CosineAnnealingLR = CosineAnnealingLR {
    t_max: 2,
    eta_min: 1e-3,
};

/// The parameters after `n` steps without a stop.
fn uninterrupted(dev: &Device, make: MakeOpt, lr: f64, n: usize) -> Vec<Vec<u32>> {
    dev.manual_seed(7);
    let model = mlp(dev, 16);
    let mut opt = make(model.parameters(), lr);
    let mut sched = Scheduled::new(COSINE, opt.as_ref());
    train(&model, opt.as_mut(), &mut sched, dev, 0, n);
    values(&model.parameters())
}

/// The parameters after `k` steps, a checkpoint, a fresh model (other initial values, other
/// learning rate, the generator elsewhere) restored from it, and steps `k..n`. With
/// `rng: false` the generator's state is put back to where it was before the load.
fn resumed(
    dev: &Device,
    make: MakeOpt,
    lr: f64,
    k: usize,
    n: usize,
    path: &Path,
    rng: bool,
) -> Vec<Vec<u32>> {
    dev.manual_seed(7);
    {
        let model = mlp(dev, 16);
        let mut opt = make(model.parameters(), lr);
        let mut sched = Scheduled::new(COSINE, opt.as_ref());
        train(&model, opt.as_mut(), &mut sched, dev, 0, k);
        let epoch = (k / STEPS_PER_EPOCH) as u64;
        save_checkpoint(
            path,
            &model,
            opt.as_ref(),
            Some(&sched),
            dev,
            k as u64,
            epoch,
        )
        .unwrap();
    }
    dev.manual_seed(99);
    let model = mlp(dev, 16);
    let mut opt = make(model.parameters(), lr * 3.0);
    let mut sched = Scheduled::new(COSINE, opt.as_ref());
    let handles = model.parameters();
    let before = dev.rng_state();
    let ck = load_checkpoint(path, &model, opt.as_mut(), Some(&mut sched), dev).unwrap();
    assert_eq!(
        (ck.step, ck.epoch),
        (k as u64, (k / STEPS_PER_EPOCH) as u64)
    );
    if !rng {
        dev.set_rng_state(before);
    }
    train(&model, opt.as_mut(), &mut sched, dev, ck.step as usize, n);
    // The handles taken before the load are the parameters that trained.
    assert_eq!(values(&handles), values(&model.parameters()));
    values(&model.parameters())
}

#[test]
fn a_resumed_run_ends_bit_identical_to_the_uninterrupted_one_on_both_devices() {
    let _serial = common::exclusive();
    let dir = tmp_dir("resume");
    for dev in common::devices() {
        for (what, make, lr) in [("sgd", sgd as MakeOpt, 0.05), ("adam", adam, 0.01)] {
            // Stops mid-epoch (3) and at an epoch's end (4) of 7 steps.
            let n = 7;
            let want = uninterrupted(&dev, make, lr, n);
            for k in [3, 4] {
                let path = dir.join(format!("{what}-{k}-{}.safetensors", dev.is_gpu()));
                let got = resumed(&dev, make, lr, k, n, &path, true);
                assert!(
                    got == want,
                    "{what} on {dev:?}: stopping at step {k} changed the result"
                );
            }
            if !dev.is_gpu() {
                // The generator's state matters: without it the dropout masks differ.
                let path = dir.join(format!("{what}-norng.safetensors"));
                let got = resumed(&dev, make, lr, 3, n, &path, false);
                assert!(
                    got != want,
                    "{what}: dropout did not depend on the generator"
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A writer that writes half of the bytes and then fails as a full disk does.
fn half_then_enospc(f: &mut File, data: &[u8]) -> std::io::Result<()> {
    f.write_all(&data[..data.len() / 2])?;
    Err(std::io::Error::from_raw_os_error(28))
}

/// A small trained model, its optimizer and schedule on the CPU.
fn small_state(dev: &Device, hidden: usize) -> (Sequential, Box<dyn Optimizer>, Scheduled<StepLR>) {
    let model = mlp(dev, hidden);
    let mut opt = sgd(model.parameters(), 0.1);
    let sched = Scheduled::new(
        StepLR {
            step_size: 1,
            gamma: 0.5,
        },
        opt.as_ref(),
    );
    train_step(&model, opt.as_mut(), dev, 0);
    (model, opt, sched)
}

/// Checks that the checkpoint at `path` restores `model`'s parameters exactly.
fn assert_loads_as(path: &Path, model: &Sequential) {
    let dev = Device::cpu();
    let (fresh, mut opt, mut sched) = small_state(&dev, 16);
    load_checkpoint(path, &fresh, opt.as_mut(), Some(&mut sched), &dev).unwrap();
    assert_eq!(values(&fresh.parameters()), values(&model.parameters()));
}

/// The failing-writer variant of the disk-full checks: a save that fails midway returns
/// `Error::Io`, keeps the previous file (which still loads with identical values) and
/// leaves no temporary file; a failed save to a new path leaves no file at all.
fn failing_writer_checks(dir: &Path) {
    let dev = Device::cpu();
    let (model, opt, sched) = small_state(&dev, 16);
    let path = dir.join("ck.safetensors");
    save_checkpoint(&path, &model, opt.as_ref(), Some(&sched), &dev, 1, 0).unwrap();
    let old = std::fs::read(&path).unwrap();
    let (big, big_opt, big_sched) = small_state(&dev, 64);
    let ck = Checkpoint::capture(&big, big_opt.as_ref(), Some(&big_sched), &dev, 2, 1).unwrap();
    let err = ck.save_with(&path, &mut half_then_enospc).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), old, "the old file changed");
    assert_eq!(
        listing(dir),
        vec!["ck.safetensors"],
        "a temporary file remains"
    );
    assert_loads_as(&path, &model);

    // A new path: nothing is left behind.
    let fresh = dir.join("new.safetensors");
    assert!(ck.save_with(&fresh, &mut half_then_enospc).is_err());
    assert_eq!(listing(dir), vec!["ck.safetensors"]);
    // The plain writer seam too (write_safetensors and io::save go through it).
    let err = wgrad::io::write_atomic_with(&path, b"not a checkpoint", &mut |f, d| {
        f.write_all(&d[..3])?;
        Err(std::io::Error::other("injected"))
    })
    .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), old);
    assert_eq!(listing(dir), vec!["ck.safetensors"]);
}

#[test]
fn a_save_that_fails_midway_keeps_the_old_file_and_leaves_no_temporary() {
    let _serial = common::exclusive();
    let dir = tmp_dir("failing-writer");
    failing_writer_checks(&dir);
    // A save that succeeds leaves exactly the target (the temporary was renamed).
    let dev = Device::cpu();
    let (model, _, _) = small_state(&dev, 8);
    wgrad::io::save(&model, dir.join("model.safetensors")).unwrap();
    assert_eq!(listing(&dir), vec!["ck.safetensors", "model.safetensors"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Unmounts the directory when dropped (also when the test fails).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Mounts a 128 KiB tmpfs on `dir` when the test runs as root and may mount.
fn mount_small_tmpfs(dir: &Path) -> Option<Mounted> {
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=128k", "tmpfs"])
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mounted(dir.to_path_buf()))
}

#[test]
fn a_save_to_a_full_disk_is_an_io_error_and_keeps_the_old_checkpoint() {
    let _serial = common::exclusive();
    let dir = tmp_dir("disk-full");
    let Some(mounted) = mount_small_tmpfs(&dir) else {
        println!(
            "disk-full test: no tmpfs (not root, or mount refused); ran the failing-writer variant"
        );
        failing_writer_checks(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        return;
    };
    println!("disk-full test: ran on a 128 KiB tmpfs");
    let dev = Device::cpu();
    let (model, opt, sched) = small_state(&dev, 16);
    let path = dir.join("ck.safetensors");
    save_checkpoint(&path, &model, opt.as_ref(), Some(&sched), &dev, 1, 0).unwrap();
    let old = std::fs::read(&path).unwrap();
    // 40,000 parameters (156 KiB) do not fit, alone or with their momentum.
    let (big, big_opt, big_sched) = small_state(&dev, 4000);
    let err =
        save_checkpoint(&path, &big, big_opt.as_ref(), Some(&big_sched), &dev, 2, 1).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    let err = wgrad::io::save(&big, dir.join("big.safetensors")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), old, "the old file changed");
    assert_eq!(
        listing(&dir),
        vec!["ck.safetensors"],
        "a temporary file remains"
    );
    assert_loads_as(&path, &model);
    drop(mounted);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Everything a load could change: parameters, optimizer state, schedule, generator.
fn snapshot(
    model: &Sequential,
    opt: &dyn Optimizer,
    sched: &Scheduled<StepLR>,
    dev: &Device,
) -> String {
    let st = opt.state_dict();
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?}",
        values(&model.parameters()),
        values(
            &st.tensors
                .iter()
                .map(|(_, t)| t.clone())
                .collect::<Vec<_>>()
        ),
        st.scalars,
        sched.state_dict(),
        dev.rng_state(),
        opt.lr()
    )
}

#[test]
fn a_checkpoint_that_does_not_fit_or_is_damaged_changes_nothing() {
    let _serial = common::exclusive();
    let dir = tmp_dir("validation");
    let dev = Device::cpu();
    dev.manual_seed(3);
    let (model, opt, mut sched) = small_state(&dev, 16);
    let mut opt = opt;
    sched.step(opt.as_mut());
    let good = dir.join("good.safetensors");
    save_checkpoint(&good, &model, opt.as_ref(), Some(&sched), &dev, 5, 2).unwrap();

    // The targets: trained differently, so a partial load would show.
    dev.manual_seed(4);
    let (other_arch, mut other_opt, mut other_sched) = small_state(&dev, 12);
    let (same_arch, _, mut same_sched) = small_state(&dev, 16);
    let mut adam_opt = adam(same_arch.parameters(), 0.01);
    dev.manual_seed(11);
    let _ = Tensor::rand(&[3], &dev).unwrap();

    let expect_err = |path: &Path,
                      model: &Sequential,
                      opt: &mut dyn Optimizer,
                      sched: &mut Scheduled<StepLR>,
                      needles: &[&str]| {
        let before = snapshot(model, opt, sched, &dev);
        let err = load_checkpoint(path, model, opt, Some(sched), &dev)
            .unwrap_err()
            .to_string();
        for n in needles {
            assert!(err.contains(n), "expected {n:?} in: {err}");
        }
        assert_eq!(snapshot(model, opt, sched, &dev), before, "{err}");
    };

    // Another architecture: the model's keys have other shapes, and so has the state.
    expect_err(
        &good,
        &other_arch,
        other_opt.as_mut(),
        &mut other_sched,
        &[
            "model.0.weight: F32 [16, 6] in the checkpoint, F32 [12, 6] in the model",
            "optimizer.state.0.momentum_buffer: shape [16, 6]",
        ],
    );
    // The model fits but the optimizer does not (an SGD state for Adam).
    expect_err(
        &good,
        &same_arch,
        adam_opt.as_mut(),
        &mut same_sched,
        &[
            "missing key optimizer.state.0.exp_avg",
            "unexpected key optimizer.param_groups.0.momentum",
        ],
    );
    // A truncated file.
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    expect_err(
        &cut,
        &same_arch,
        adam_opt.as_mut(),
        &mut same_sched,
        &["not a valid safetensors file"],
    );
    // A model file is not a checkpoint.
    let plain = dir.join("plain.safetensors");
    wgrad::io::save(&model, &plain).unwrap();
    expect_err(
        &plain,
        &other_arch,
        other_opt.as_mut(),
        &mut other_sched,
        &["not a wgrad checkpoint"],
    );
    // A model key missing from the file, and a foreign one.
    let mut ck = Checkpoint::read(&good).unwrap();
    ck.model.remove(0);
    ck.model.push((
        "9.weight".into(),
        Tensor::zeros(&[2], &Device::cpu()).unwrap(),
    ));
    let renamed = dir.join("renamed.safetensors");
    ck.save(&renamed).unwrap();
    let (target, mut target_opt, mut target_sched) = small_state(&dev, 16);
    expect_err(
        &renamed,
        &target,
        target_opt.as_mut(),
        &mut target_sched,
        &["missing key model.0.bias", "unexpected key model.9.weight"],
    );
    // A schedule in the file but none given is refused too.
    let before = snapshot(&target, target_opt.as_ref(), &target_sched, &dev);
    let err = load_checkpoint(&good, &target, target_opt.as_mut(), None, &dev).unwrap_err();
    assert!(
        err.to_string().contains("unexpected key scheduler"),
        "{err}"
    );
    assert_eq!(
        snapshot(&target, target_opt.as_ref(), &target_sched, &dev),
        before
    );
    // And the good file loads into the right target.
    let ck = load_checkpoint(
        &good,
        &target,
        target_opt.as_mut(),
        Some(&mut target_sched),
        &dev,
    )
    .unwrap();
    assert_eq!((ck.step, ck.epoch), (5, 2));
    assert_eq!(values(&target.parameters()), values(&model.parameters()));
    assert_eq!(
        snapshot(&target, target_opt.as_ref(), &target_sched, &dev),
        snapshot(&model, opt.as_ref(), &sched, &dev)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn optimizer_state_saved_on_the_cpu_loads_onto_a_gpu_optimizer() {
    let _serial = common::exclusive();
    let (cpu, gpu) = (Device::cpu(), common::gpu());
    let dir = tmp_dir("cross-device");
    for (what, make) in [("sgd", sgd as MakeOpt), ("adam", adam)] {
        cpu.manual_seed(5);
        let model = mlp(&cpu, 8);
        let mut opt = make(model.parameters(), 0.05);
        let mut sched = Scheduled::new(COSINE, opt.as_ref());
        train(&model, opt.as_mut(), &mut sched, &cpu, 0, 3);
        let path = dir.join(format!("{what}.safetensors"));
        save_checkpoint(&path, &model, opt.as_ref(), Some(&sched), &cpu, 3, 1).unwrap();

        gpu.manual_seed(6);
        let g_model = mlp(&gpu, 8);
        let mut g_opt = make(g_model.parameters(), 0.5);
        let mut g_sched = Scheduled::new(COSINE, g_opt.as_ref());
        let state_handles: Vec<Tensor> = g_opt
            .state_dict()
            .tensors
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        load_checkpoint(&path, &g_model, g_opt.as_mut(), Some(&mut g_sched), &gpu).unwrap();
        // Exact copies, in the GPU optimizer's own tensors.
        let (c, g) = (opt.state_dict(), g_opt.state_dict());
        assert_eq!(c.scalars, g.scalars, "{what}");
        let names = |s: &wgrad::optim::OptimizerState| {
            s.tensors.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
        };
        assert_eq!(names(&c), names(&g), "{what}");
        let tensors = |s: &wgrad::optim::OptimizerState| {
            values(&s.tensors.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>())
        };
        assert_eq!(tensors(&c), tensors(&g), "{what}");
        assert_eq!(
            values(&state_handles),
            tensors(&g),
            "{what}: new state tensors"
        );
        assert!(g.tensors.iter().all(|(_, t)| t.device().is_gpu()));
        assert_eq!(values(&g_model.parameters()), values(&model.parameters()));
        assert_eq!(gpu.rng_state(), cpu.rng_state());
        assert_eq!(g_sched.state_dict(), sched.state_dict());
        // The next step on each device agrees up to rounding.
        train(&model, opt.as_mut(), &mut sched, &cpu, 3, 4);
        train(&g_model, g_opt.as_mut(), &mut g_sched, &gpu, 3, 4);
        for (a, b) in model.parameters().iter().zip(g_model.parameters()) {
            common::assert_close(
                &a.to_vec::<f32>().unwrap(),
                &b.to_vec::<f32>().unwrap(),
                1e-5,
                0.0,
                what,
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

common::test_device!(
    the_rng_state_round_trips_and_repeats_the_draws_cpu,
    the_rng_state_round_trips_and_repeats_the_draws_gpu,
    |dev| {
        let _serial = common::exclusive();
        dev.manual_seed(21);
        let _ = Tensor::rand(&[4], &dev).unwrap();
        let state = dev.rng_state();
        assert_eq!((state.seed, state.offset), (21, 1));
        let a = Tensor::rand(&[5], &dev).unwrap().to_vec::<f32>().unwrap();
        dev.manual_seed(1);
        dev.set_rng_state(state);
        let b = Tensor::rand(&[5], &dev).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(a, b);
    }
);

/// The scheduler trait object restores what `Scheduled::load_state_dict` does.
#[test]
fn a_schedule_resumes_its_rates() {
    let p = Tensor::ones(&[1], &Device::cpu())
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let mut opt = Sgd::new(vec![p.clone()], 0.1);
    let mut a = Scheduled::new(COSINE, &opt);
    a.step(&mut opt);
    let mut opt2 = Sgd::new(vec![p], 0.7);
    let mut b = Scheduled::new(COSINE, &opt2);
    (&mut b as &mut dyn StatefulScheduler)
        .load_scheduler_state(&a.scheduler_state())
        .unwrap();
    a.step(&mut opt);
    b.step(&mut opt2);
    assert_eq!(opt.lr(), opt2.lr());
    let bad = wgrad::optim::SchedulerState {
        base_lr: f64::NAN,
        last_epoch: 1,
    };
    assert!(matches!(
        b.load_state_dict(&bad),
        Err(Error::Argument { .. })
    ));
    assert_eq!(b.state_dict().last_epoch, 2);
}

#[cfg(unix)]
#[test]
fn a_save_through_a_symbolic_link_replaces_the_file_it_points_to() {
    let _serial = common::exclusive();
    let dir = tmp_dir("symlink");
    let dev = Device::cpu();
    let (model, _, _) = small_state(&dev, 8);
    let real = dir.join("real.safetensors");
    std::fs::write(&real, b"old").unwrap();
    let link = dir.join("link.safetensors");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    wgrad::io::save(&model, &link).unwrap();
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_ne!(std::fs::read(&real).unwrap(), b"old");
    assert_eq!(listing(&dir), vec!["link.safetensors", "real.safetensors"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
