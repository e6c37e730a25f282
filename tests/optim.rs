//! Each optimizer's step against the textbook update written out by hand (in f64), on
//! both devices; Adam's bias correction over several steps; schedules; clipping.

mod common;

use wgrad::optim::{
    clip_grad_norm, Adam, AdamW, CosineAnnealingLR, LrScheduler, Optimizer, Scheduled, Sgd, StepLR,
};
use wgrad::prelude::*;
use wgrad::GpuOptions;

const P0: [f64; 3] = [1.0, -2.0, 0.5];
const GRADS: [[f64; 3]; 4] = [
    [0.5, 0.25, -1.0],
    [-0.2, 0.1, 0.3],
    [0.1, -0.4, 0.0],
    [0.7, 0.2, -0.1],
];

/// Runs `opt` for the four gradients above and returns the parameter after each step.
fn run(dev: &Device, make: impl Fn(Vec<Tensor>) -> Box<dyn Optimizer>) -> Vec<Vec<f64>> {
    let p0: Vec<f32> = P0.iter().map(|&v| v as f32).collect();
    let p = Tensor::from_vec(p0, &[3], dev)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let mut opt = make(vec![p.clone()]);
    GRADS
        .iter()
        .map(|g| {
            let g: Vec<f32> = g.iter().map(|&v| v as f32).collect();
            p.set_grad(Some(Tensor::from_vec(g, &[3], dev).unwrap()));
            opt.step().unwrap();
            p.to_f64_vec().unwrap()
        })
        .collect()
}

fn check(got: &[Vec<f64>], want: &[Vec<f64>], what: &str) {
    for (s, (g, w)) in got.iter().zip(want).enumerate() {
        common::assert_close(g, w, 2e-6, 0.0, &format!("{what}: step {}", s + 1));
    }
}

/// torch.optim.SGD's update, written out.
fn sgd_reference(lr: f64, momentum: f64, dampening: f64, wd: f64, nesterov: bool) -> Vec<Vec<f64>> {
    let mut p = P0.to_vec();
    let mut buf = [0.0; 3];
    let mut out = Vec::new();
    for (t, g) in GRADS.iter().enumerate() {
        for i in 0..3 {
            let mut d = g[i] + wd * p[i];
            if momentum != 0.0 {
                buf[i] = if t == 0 {
                    d
                } else {
                    momentum * buf[i] + (1.0 - dampening) * d
                };
                d = if nesterov {
                    d + momentum * buf[i]
                } else {
                    buf[i]
                };
            }
            p[i] -= lr * d;
        }
        out.push(p.clone());
    }
    out
}

/// Adam (Kingma and Ba, with PyTorch's placement of eps) and AdamW, written out.
fn adam_reference(lr: f64, b1: f64, b2: f64, eps: f64, wd: f64, decoupled: bool) -> Vec<Vec<f64>> {
    let mut p = P0.to_vec();
    let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
    let mut out = Vec::new();
    for (t, g) in GRADS.iter().enumerate() {
        let t = (t + 1) as i32;
        for i in 0..3 {
            let mut gi = g[i];
            if decoupled {
                p[i] *= 1.0 - lr * wd;
            } else {
                gi += wd * p[i];
            }
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            let m_hat = m[i] / (1.0 - b1.powi(t));
            let v_hat = v[i] / (1.0 - b2.powi(t));
            p[i] -= lr * m_hat / (v_hat.sqrt() + eps);
        }
        out.push(p.clone());
    }
    out
}

common::test_device!(
    sgd_matches_the_textbook_update_cpu,
    sgd_matches_the_textbook_update_gpu,
    |dev| {
        let _serial = common::exclusive();
        check(
            &run(&dev, |p| Box::new(Sgd::new(p, 0.1))),
            &sgd_reference(0.1, 0.0, 0.0, 0.0, false),
            "plain",
        );
        check(
            &run(&dev, |p| Box::new(Sgd::new(p, 0.1).momentum(0.9))),
            &sgd_reference(0.1, 0.9, 0.0, 0.0, false),
            "momentum",
        );
        check(
            &run(&dev, |p| {
                Box::new(
                    Sgd::new(p, 0.05)
                        .momentum(0.9)
                        .nesterov(true)
                        .weight_decay(0.01),
                )
            }),
            &sgd_reference(0.05, 0.9, 0.0, 0.01, true),
            "nesterov + weight decay",
        );
        check(
            &run(&dev, |p| {
                Box::new(Sgd::new(p, 0.1).momentum(0.5).dampening(0.3))
            }),
            &sgd_reference(0.1, 0.5, 0.3, 0.0, false),
            "dampening",
        );
    }
);

#[test]
fn adam_and_adamw_match_the_textbook_update_with_bias_correction() {
    let _serial = common::exclusive();
    for dev in common::devices() {
        check(
            &run(&dev, |p| Box::new(Adam::new(p, 0.1))),
            &adam_reference(0.1, 0.9, 0.999, 1e-8, 0.0, false),
            "adam",
        );
        check(
            &run(&dev, |p| {
                Box::new(Adam::new(p, 0.01).betas(0.8, 0.99).weight_decay(0.1))
            }),
            &adam_reference(0.01, 0.8, 0.99, 1e-8, 0.1, false),
            "adam + L2",
        );
        check(
            &run(&dev, |p| Box::new(AdamW::new(p, 0.1))),
            &adam_reference(0.1, 0.9, 0.999, 1e-8, 0.01, true),
            "adamw",
        );
    }
    // Without the bias correction the first Adam step would move p[0] by
    // lr * m / sqrt(v) = 0.1 * 0.05 / sqrt(0.00025) = 0.316, not by lr = 0.1.
    let first = adam_reference(0.1, 0.9, 0.999, 1e-8, 0.0, false)[0][0];
    assert!((P0[0] - first - 0.1).abs() < 1e-6);
}

#[test]
fn parameters_without_gradients_are_left_alone() {
    let _serial = common::exclusive();
    let dev = Device::cpu();
    let a = Tensor::ones(&[2], &dev)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let b = Tensor::ones(&[2], &dev)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let mut opt = Adam::new(vec![a.clone(), b.clone()], 0.1);
    a.set_grad(Some(Tensor::ones(&[2], &dev).unwrap()));
    opt.step().unwrap();
    assert_eq!(b.to_vec::<f32>().unwrap(), vec![1.0, 1.0]);
    assert!(a.to_vec::<f32>().unwrap()[0] < 1.0);
    opt.zero_grad();
    assert!(a.grad().is_none());
}

#[test]
fn schedules_follow_pytorchs_formulas() {
    let _serial = common::exclusive();
    let step = StepLR {
        step_size: 3,
        gamma: 0.5,
    };
    let lrs: Vec<f64> = (0..7).map(|e| step.lr_at(0.8, e)).collect();
    assert_eq!(lrs, vec![0.8, 0.8, 0.8, 0.4, 0.4, 0.4, 0.2]);
    let cos = CosineAnnealingLR {
        t_max: 10,
        eta_min: 0.0,
    };
    assert!((cos.lr_at(1.0, 5) - 0.5).abs() < 1e-6);
    assert!(cos.lr_at(1.0, 10).abs() < 1e-6);
    let p = Tensor::ones(&[1], &Device::cpu())
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let mut opt = Sgd::new(vec![p], 0.8);
    let mut sched = Scheduled::new(step, &opt);
    for _ in 0..3 {
        sched.step(&mut opt);
    }
    assert_eq!(opt.lr(), 0.4);
}

common::test_device!(
    clipping_scales_gradients_to_the_global_norm_without_a_readback_cpu,
    clipping_scales_gradients_to_the_global_norm_without_a_readback_gpu,
    |dev| {
        let _serial = common::exclusive();
        let a = Tensor::ones(&[2], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let b = Tensor::ones(&[1], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        a.set_grad(Some(
            Tensor::from_vec(vec![3.0f32, 0.0], &[2], &dev).unwrap(),
        ));
        b.set_grad(Some(Tensor::from_vec(vec![4.0f32], &[1], &dev).unwrap()));
        dev.sync().unwrap();
        let submits = dev.counters().submits;
        let norm = clip_grad_norm(&[a.clone(), b.clone()], 1.0)
            .unwrap()
            .unwrap();
        assert_eq!(
            dev.counters().submits,
            submits,
            "clipping records work, reads nothing"
        );
        assert!((norm.item().unwrap() - 5.0).abs() < 1e-5);
        common::assert_close(
            &a.grad().unwrap().to_vec::<f32>().unwrap(),
            &[0.6, 0.0],
            1e-5,
            0.0,
            "a",
        );
        common::assert_close(
            &b.grad().unwrap().to_vec::<f32>().unwrap(),
            &[0.8],
            1e-5,
            0.0,
            "b",
        );
        // Below the limit nothing changes.
        clip_grad_norm(&[a.clone(), b.clone()], 10.0).unwrap();
        common::assert_close(
            &b.grad().unwrap().to_vec::<f32>().unwrap(),
            &[0.8],
            1e-5,
            0.0,
            "b unchanged",
        );
    }
);

/// Element counts of the parameter lists below: one past a workgroup (300), one of a
/// single element, a matrix, and sizes around the 256-thread workgroup.
const SIZES: [&[usize]; 6] = [&[300], &[1], &[16, 9], &[256], &[257], &[5]];

/// `shapes` as parameters drawn from `seed` (the same values on every device), each with
/// a gradient drawn afresh for step `step`.
fn seeded_params(shapes: &[&[usize]], seed: u64, dev: &Device) -> Vec<Tensor> {
    shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Tensor::randn_seeded(s, seed + i as u64, &Device::cpu())
                .unwrap()
                .to(dev)
                .unwrap()
                .requires_grad_(true)
                .unwrap()
        })
        .collect()
}

fn set_grads(params: &[Tensor], step: u64, skip: Option<usize>) {
    for (i, p) in params.iter().enumerate() {
        if skip == Some(i) {
            p.set_grad(None);
            continue;
        }
        let g = Tensor::randn_seeded(p.shape(), 1000 * step + i as u64, &Device::cpu())
            .unwrap()
            .to(p.device())
            .unwrap();
        p.set_grad(Some(g));
    }
}

fn flat(ts: &[Tensor]) -> Vec<f32> {
    ts.iter().flat_map(|t| t.to_vec::<f32>().unwrap()).collect()
}

type Make = fn(Vec<Tensor>) -> Box<dyn Optimizer>;

/// Every optimizer and option, as the multi-tensor kernels run them.
const OPTIMIZERS: [(&str, Make); 8] = [
    ("sgd", |p| Box::new(Sgd::new(p, 0.1))),
    ("sgd + weight decay", |p| {
        Box::new(Sgd::new(p, 0.1).weight_decay(0.05))
    }),
    ("sgd + momentum", |p| {
        Box::new(Sgd::new(p, 0.1).momentum(0.9))
    }),
    ("sgd + momentum + dampening + weight decay", |p| {
        Box::new(
            Sgd::new(p, 0.05)
                .momentum(0.8)
                .dampening(0.3)
                .weight_decay(0.01),
        )
    }),
    ("sgd + nesterov", |p| {
        Box::new(
            Sgd::new(p, 0.05)
                .momentum(0.9)
                .nesterov(true)
                .weight_decay(0.02),
        )
    }),
    ("adam", |p| Box::new(Adam::new(p, 0.01))),
    ("adam + L2", |p| {
        Box::new(Adam::new(p, 0.02).betas(0.8, 0.99).weight_decay(0.1))
    }),
    ("adamw", |p| {
        Box::new(AdamW::new(p, 0.01).weight_decay(0.05))
    }),
];

/// Four steps of `make` over `shapes` on `dev`; parameter `skip` has no gradient on the
/// second step (it then misses a step: its Adam step count and its momentum buffer's
/// first step differ from the others').
fn trajectory(dev: &Device, make: Make, shapes: &[&[usize]], skip: usize) -> Vec<f32> {
    let params = seeded_params(shapes, 7, dev);
    let mut opt = make(params.clone());
    for step in 0..4u64 {
        set_grads(&params, step, (step == 1).then_some(skip));
        opt.step().unwrap();
    }
    flat(&params)
}

#[test]
fn every_optimizer_matches_the_cpu_on_the_gpu_for_parameters_of_many_sizes() {
    let _serial = common::exclusive();
    let gpu = common::gpu();
    for (what, make) in OPTIMIZERS {
        // The first parameter joins on step 2: with momentum its buffer starts then.
        let want = trajectory(&Device::cpu(), make, &SIZES, 0);
        let got = trajectory(&gpu, make, &SIZES, 0);
        common::assert_close(&got, &want, 2e-5, 0.0, what);
    }
}

#[test]
fn more_parameters_than_one_dispatch_binds_run_in_chunks_with_the_same_results() {
    let _serial = common::exclusive();
    let gpu = common::gpu();
    // 40 parameters: more than any adapter's single dispatch takes (26 at most).
    let shapes: Vec<&[usize]> = (0..40).map(|i| SIZES[i % SIZES.len()]).collect();
    for (what, make) in [OPTIMIZERS[4], OPTIMIZERS[7]] {
        let want = trajectory(&Device::cpu(), make, &shapes, 33);
        let got = trajectory(&gpu, make, &shapes, 33);
        common::assert_close(&got, &want, 2e-5, 0.0, what);
        let params = seeded_params(&shapes, 3, &gpu);
        set_grads(&params, 0, None);
        let mut opt = make(params.clone());
        gpu.sync().unwrap();
        let before = gpu.counters().dispatches;
        opt.step().unwrap();
        let n = gpu.counters().dispatches - before;
        assert!(
            (2..=40).contains(&n),
            "{what}: 40 parameters in {n} dispatches"
        );
    }
    // Clipping over the 40 gradients.
    let (pc, pg) = (
        seeded_params(&shapes, 9, &Device::cpu()),
        seeded_params(&shapes, 9, &gpu),
    );
    set_grads(&pc, 5, None);
    set_grads(&pg, 5, None);
    let nc = clip_grad_norm(&pc, 2.0).unwrap().unwrap().item().unwrap();
    let ng = clip_grad_norm(&pg, 2.0).unwrap().unwrap().item().unwrap();
    assert!((nc - ng).abs() <= 1e-5 * nc, "norm {ng} vs {nc}");
    let grads = |ps: &[Tensor]| flat(&ps.iter().map(|p| p.grad().unwrap()).collect::<Vec<_>>());
    common::assert_close(&grads(&pg), &grads(&pc), 1e-6, 0.0, "clipped gradients");
}

/// The MLP of the shared workloads (784-256-128-10), one forward and backward.
fn mlp_with_gradients(dev: &Device) -> Vec<Tensor> {
    dev.manual_seed(3);
    let model = Sequential::new()
        .add(Linear::new(dev, 784, 256))
        .add(ReLU)
        .add(Linear::new(dev, 256, 128))
        .add(ReLU)
        .add(Linear::new(dev, 128, 10));
    let x = Tensor::randn_seeded(&[8, 784], 1, dev).unwrap();
    let y = Tensor::from_vec((0..8u32).map(|i| i % 10).collect(), &[8], dev).unwrap();
    let loss = model.forward(&x).unwrap().cross_entropy(&y).unwrap();
    loss.backward().unwrap();
    model.parameters()
}

#[test]
fn one_step_of_six_parameters_is_one_dispatch_and_clipping_three() {
    let _serial = common::exclusive();
    let gpu = common::gpu();
    let params = mlp_with_gradients(&gpu);
    assert_eq!(params.len(), 6);
    for (what, make) in OPTIMIZERS {
        let mut opt = make(params.clone());
        for step in 0..2 {
            gpu.sync().unwrap();
            let before = gpu.counters().dispatches;
            opt.step().unwrap();
            assert_eq!(
                gpu.counters().dispatches - before,
                1,
                "{what}, step {step}: one dispatch for all six parameters"
            );
        }
    }
    gpu.sync().unwrap();
    let before = gpu.counters();
    let norm = clip_grad_norm(&params, 0.1).unwrap().unwrap();
    let after = gpu.counters();
    assert_eq!(after.dispatches - before.dispatches, 3, "clipping");
    assert_eq!(after.submits, before.submits, "clipping reads nothing back");
    assert!(norm.item().unwrap() > 0.1);
    let total: f64 = params
        .iter()
        .flat_map(|p| p.grad().unwrap().to_f64_vec().unwrap())
        .map(|g| g * g)
        .sum();
    assert!(
        (total.sqrt() - 0.1).abs() < 1e-5,
        "clipped norm {}",
        total.sqrt()
    );
}

#[test]
fn steady_state_steps_with_clipping_create_nothing() {
    let _serial = common::exclusive();
    // A device of its own: its buffer pool starts empty, so the buffers the steps get
    // (and hence their bind groups) settle into the same cycle whatever other tests left
    // in the shared device's pool. The gradients are made while the previous step's are
    // still held, so the steps alternate between two sets of gradient buffers, which
    // settle after three steps.
    let gpu = Device::gpu_with(GpuOptions::from_env()).unwrap();
    let params = seeded_params(&SIZES, 11, &gpu);
    let mut sgd = Sgd::new(params.clone(), 0.05).momentum(0.9);
    let mut adam = AdamW::new(params.clone(), 0.01);
    let step = |sgd: &mut Sgd, adam: &mut Adam, s: u64| {
        set_grads(&params, s, None);
        let norm = clip_grad_norm(&params, 1.0).unwrap().unwrap();
        sgd.step().unwrap();
        adam.step().unwrap();
        norm.item().unwrap()
    };
    for s in 0..3 {
        step(&mut sgd, &mut adam, s);
    }
    let warm = gpu.counters();
    for s in 3..13 {
        assert!(step(&mut sgd, &mut adam, s).is_finite());
    }
    let after = gpu.counters();
    assert_eq!(after.buffers_created, warm.buffers_created, "buffers");
    assert_eq!(after.pipelines_created, warm.pipelines_created, "pipelines");
    assert_eq!(
        after.bind_groups_created, warm.bind_groups_created,
        "bind groups"
    );
    assert_eq!(after.peak_bytes, warm.peak_bytes, "peak memory");
    assert_eq!(
        after.dispatches - warm.dispatches,
        10 * 5,
        "per step: 3 for clipping, 1 per optimizer (uploads are copies)"
    );
}

common::test_device!(
    clipping_a_non_finite_gradient_gives_a_non_finite_norm_as_pytorch_cpu,
    clipping_a_non_finite_gradient_gives_a_non_finite_norm_as_pytorch_gpu,
    |dev| {
        let _serial = common::exclusive();
        let a = Tensor::ones(&[3], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let b = Tensor::ones(&[300], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        b.set_grad(Some(Tensor::full(&[300], 0.5, &dev).unwrap()));
        // An infinite element: norm inf, scale max_norm / inf = 0, so the finite elements
        // become 0 and the infinite one inf * 0 = NaN (torch does the same).
        a.set_grad(Some(
            Tensor::from_vec(vec![1.0f32, f32::INFINITY, -2.0], &[3], &dev).unwrap(),
        ));
        let norm = clip_grad_norm(&[a.clone(), b.clone()], 1.0)
            .unwrap()
            .unwrap();
        assert_eq!(norm.item().unwrap(), f64::INFINITY, "{dev:?}");
        let ga = a.grad().unwrap().to_vec::<f32>().unwrap();
        assert_eq!(ga[0], 0.0, "{dev:?}");
        assert!(ga[1].is_nan(), "{dev:?}");
        assert_eq!(ga[2], -0.0, "{dev:?}");
        assert!(b
            .grad()
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .all(|&g| g == 0.0));
        // A NaN: the norm and every gradient become NaN.
        a.set_grad(Some(
            Tensor::from_vec(vec![1.0f32, f32::NAN, -2.0], &[3], &dev).unwrap(),
        ));
        b.set_grad(Some(Tensor::full(&[300], 0.5, &dev).unwrap()));
        let norm = clip_grad_norm(&[a.clone(), b.clone()], 1.0)
            .unwrap()
            .unwrap();
        assert!(norm.item().unwrap().is_nan(), "{dev:?}");
        for p in [&a, &b] {
            assert!(
                p.grad()
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap()
                    .iter()
                    .all(|g| g.is_nan()),
                "{dev:?}"
            );
        }
    }
);

common::test_device!(
    clipping_scales_a_shared_gradient_once_and_counts_it_per_parameter_cpu,
    clipping_scales_a_shared_gradient_once_and_counts_it_per_parameter_gpu,
    |dev| {
        let _serial = common::exclusive();
        let a = Tensor::ones(&[4], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let b = Tensor::ones(&[2, 2], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let g = Tensor::full(&[4], 1.0, &dev).unwrap();
        // b's gradient is a view of a's (same storage).
        a.set_grad(Some(g.clone()));
        b.set_grad(Some(g.reshape(&[2, 2]).unwrap()));
        let norm = clip_grad_norm(&[a.clone(), b.clone()], 1.0)
            .unwrap()
            .unwrap();
        assert!((norm.item().unwrap() - 8f64.sqrt()).abs() < 1e-6, "{dev:?}");
        let want = (1.0 / (8f64.sqrt() + 1e-6)) as f32;
        common::assert_close(&g.to_vec::<f32>().unwrap(), &[want; 4], 1e-6, 0.0, "shared");
    }
);

#[test]
fn optimizer_and_clipping_mistakes_are_errors() {
    let _serial = common::exclusive();
    let (cpu, gpu) = (Device::cpu(), common::gpu());
    // A gradient on another device.
    let p = Tensor::ones(&[3], &gpu)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    p.set_grad(Some(Tensor::ones(&[3], &cpu).unwrap()));
    assert!(matches!(
        Sgd::new(vec![p.clone()], 0.1).momentum(0.9).step(),
        Err(Error::DeviceMismatch { .. })
    ));
    assert!(matches!(
        Adam::new(vec![p.clone()], 0.1).step(),
        Err(Error::DeviceMismatch { .. })
    ));
    // Gradients on two devices.
    let q = Tensor::ones(&[2], &cpu)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    q.set_grad(Some(Tensor::ones(&[2], &cpu).unwrap()));
    p.set_grad(Some(Tensor::ones(&[3], &gpu).unwrap()));
    assert!(matches!(
        clip_grad_norm(&[p.clone(), q.clone()], 1.0),
        Err(Error::DeviceMismatch { .. })
    ));
    // A gradient of the wrong shape, or sharing the parameter's storage.
    p.set_grad(Some(Tensor::ones(&[4], &gpu).unwrap()));
    assert!(Sgd::new(vec![p.clone()], 0.1).step().is_err());
    for dev in [&cpu, &gpu] {
        let p = Tensor::ones(&[3], dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        p.set_grad(Some(no_grad(|| p.reshape(&[3]).unwrap())));
        assert!(Sgd::new(vec![p.clone()], 0.1).step().is_err(), "{dev:?}");
        assert!(Adam::new(vec![p.clone()], 0.1).step().is_err(), "{dev:?}");
    }
}

common::test_device!(
    a_parameter_listed_twice_is_updated_twice_as_in_sequence_cpu,
    a_parameter_listed_twice_is_updated_twice_as_in_sequence_gpu,
    |dev| {
        let _serial = common::exclusive();
        let p = Tensor::ones(&[3], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        p.set_grad(Some(Tensor::full(&[3], 1.0, &dev).unwrap()));
        Sgd::new(vec![p.clone(), p.clone()], 0.25).step().unwrap();
        common::assert_close(&p.to_vec::<f32>().unwrap(), &[0.5; 3], 1e-6, 0.0, "twice");
    }
);

/// One parameter with a gradient, on `dev`.
fn param_with_grad(dev: &Device) -> Tensor {
    let p = Tensor::from_vec(vec![1.0f32, -2.0, 0.5], &[3], dev)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    p.set_grad(Some(Tensor::full(&[3], 0.5, dev).unwrap()));
    p
}

/// `err` is an `Error::Argument` whose message contains `needle`.
fn assert_argument(err: Error, needle: &str) {
    match &err {
        Error::Argument { msg, .. } if msg.contains(needle) => {}
        _ => panic!("expected an argument error with {needle:?}, got {err}"),
    }
}

common::test_device!(
    hyper_parameters_outside_their_domain_are_argument_errors_before_any_update_cpu,
    hyper_parameters_outside_their_domain_are_argument_errors_before_any_update_gpu,
    |dev| {
        let _serial = common::exclusive();
        type Case = (&'static str, fn(Vec<Tensor>) -> Box<dyn Optimizer>);
        let cases: [Case; 13] = [
            ("Invalid learning rate: -0.1", |p| {
                Box::new(Sgd::new(p, -0.1))
            }),
            ("Invalid learning rate: NaN", |p| {
                Box::new(Sgd::new(p, f64::NAN).momentum(0.9))
            }),
            ("Invalid momentum value: -0.5", |p| {
                Box::new(Sgd::new(p, 0.1).momentum(-0.5))
            }),
            ("Invalid dampening value: 1.5", |p| {
                Box::new(Sgd::new(p, 0.1).momentum(0.9).dampening(1.5))
            }),
            ("Invalid weight_decay value: -1", |p| {
                Box::new(Sgd::new(p, 0.1).weight_decay(-1.0))
            }),
            (
                "Nesterov momentum requires a momentum and zero dampening",
                |p| Box::new(Sgd::new(p, 0.1).nesterov(true)),
            ),
            (
                "Nesterov momentum requires a momentum and zero dampening",
                |p| Box::new(Sgd::new(p, 0.1).momentum(0.9).dampening(0.1).nesterov(true)),
            ),
            ("Invalid learning rate: -0.001", |p| {
                Box::new(Adam::new(p, -1e-3))
            }),
            ("Invalid epsilon value: -0.00000001", |p| {
                Box::new(Adam::new(p, 1e-3).eps(-1e-8))
            }),
            ("Invalid beta parameter at index 0: 1", |p| {
                Box::new(Adam::new(p, 1e-3).betas(1.0, 0.999))
            }),
            ("Invalid beta parameter at index 1: -0.1", |p| {
                Box::new(Adam::new(p, 1e-3).betas(0.9, -0.1))
            }),
            ("Invalid weight_decay value: -0.01", |p| {
                Box::new(Adam::new(p, 1e-3).weight_decay(-0.01))
            }),
            ("Invalid learning rate: inf", |p| {
                Box::new(AdamW::new(p, f64::INFINITY))
            }),
        ];
        for (needle, make) in cases {
            let p = param_with_grad(&dev);
            let mut opt = make(vec![p.clone()]);
            let err = opt.step().unwrap_err();
            assert_argument(err, needle);
            assert_eq!(p.to_vec::<f32>().unwrap(), vec![1.0, -2.0, 0.5], "{needle}");
        }
        // The validate() methods say the same before any step.
        assert_argument(
            Sgd::new(vec![], 0.1).nesterov(true).validate().unwrap_err(),
            "Nesterov",
        );
        assert!(Sgd::new(vec![], 0.0)
            .momentum(0.9)
            .nesterov(true)
            .validate()
            .is_ok());
        assert!(Adam::new(vec![], 0.0)
            .betas(0.0, 0.0)
            .eps(0.0)
            .validate()
            .is_ok());
    }
);

common::test_device!(
    a_gradient_aliasing_its_own_parameter_is_an_argument_error_on_both_devices_cpu,
    a_gradient_aliasing_its_own_parameter_is_an_argument_error_on_both_devices_gpu,
    |dev| {
        let _serial = common::exclusive();
        type Make = fn(Vec<Tensor>) -> Box<dyn Optimizer>;
        let makes: [(&str, Make); 4] = [
            ("sgd", |p| Box::new(Sgd::new(p, 0.1))),
            ("sgd momentum", |p| Box::new(Sgd::new(p, 0.1).momentum(0.9))),
            ("adam", |p| Box::new(Adam::new(p, 0.1))),
            ("adamw", |p| Box::new(AdamW::new(p, 0.1))),
        ];
        let alias: [fn(&Tensor) -> Tensor; 2] = [
            |p| p.clone(),
            |p| no_grad(|| p.reshape(&[1, 3]).unwrap().reshape(&[3]).unwrap()),
        ];
        for (a, make_grad) in alias.iter().enumerate() {
            let other = param_with_grad(&dev);
            let p = param_with_grad(&dev);
            p.set_grad(Some(make_grad(&p)));
            for (what, make) in makes {
                let mut opt = make(vec![other.clone(), p.clone()]);
                let err = opt.step().unwrap_err();
                assert_argument(err, "shares the parameter's storage");
                assert_eq!(
                    flat(&[other.clone(), p.clone()]),
                    vec![1.0, -2.0, 0.5, 1.0, -2.0, 0.5],
                    "{what} on {dev:?}, alias {a}: nothing may change"
                );
            }
            let err = clip_grad_norm(&[other.clone(), p.clone()], 0.1).unwrap_err();
            assert_argument(err, "shares a parameter's storage");
            assert_eq!(other.grad().unwrap().to_vec::<f32>().unwrap(), vec![0.5; 3]);
            assert_eq!(p.to_vec::<f32>().unwrap(), vec![1.0, -2.0, 0.5]);
            p.set_grad(None); // breaks the cycle p -> grad -> p
        }
    }
);

#[test]
fn cosine_annealing_goes_on_past_t_max_as_pytorch() {
    let cos = CosineAnnealingLR {
        t_max: 3,
        eta_min: 0.001,
    };
    // torch.optim.lr_scheduler.CosineAnnealingLR(SGD(lr=0.1), T_max=3, eta_min=0.001).
    let want = [0.1, 0.07525, 0.02575, 0.001, 0.02575, 0.07525, 0.1];
    for (e, w) in want.iter().enumerate() {
        let got = cos.lr_at(0.1, e);
        assert!((got - w).abs() < 1e-6, "epoch {e}: {got} vs {w}");
    }
}

/// An optimizer state for two parameters `[3]` and `[2]` after two steps on `dev`.
fn trained(dev: &Device, make: fn(Vec<Tensor>) -> Box<dyn Optimizer>) -> Box<dyn Optimizer> {
    let ps = seeded_params(&[&[3], &[2]], 1, dev);
    let mut opt = make(ps.clone());
    for s in 0..2 {
        set_grads(&ps, s, None);
        opt.step().unwrap();
    }
    opt
}

#[test]
fn optimizer_state_uses_pytorchs_names_and_bad_states_change_nothing() {
    let _serial = common::exclusive();
    let cpu = Device::cpu();
    let sgd: fn(Vec<Tensor>) -> Box<dyn Optimizer> =
        |p| Box::new(Sgd::new(p, 0.1).momentum(0.9).nesterov(true));
    let adam: fn(Vec<Tensor>) -> Box<dyn Optimizer> = |p| Box::new(AdamW::new(p, 0.01));
    let names = |o: &dyn Optimizer| {
        let s = o.state_dict();
        let mut n: Vec<String> = s.tensors.iter().map(|(n, _)| n.clone()).collect();
        n.extend(s.scalars.iter().map(|(n, v)| format!("{n}={v}")));
        n
    };
    assert_eq!(
        names(trained(&cpu, sgd).as_ref()),
        [
            "state.0.momentum_buffer",
            "state.1.momentum_buffer",
            "param_groups.0.lr=0.1",
            "param_groups.0.momentum=0.9",
            "param_groups.0.dampening=0",
            "param_groups.0.weight_decay=0",
            "param_groups.0.nesterov=true",
            "state.0.started=true",
            "state.1.started=true"
        ]
    );
    assert_eq!(
        names(trained(&cpu, adam).as_ref()),
        [
            "state.0.exp_avg",
            "state.0.exp_avg_sq",
            "state.1.exp_avg",
            "state.1.exp_avg_sq",
            "param_groups.0.lr=0.01",
            "param_groups.0.betas.0=0.9",
            "param_groups.0.betas.1=0.999",
            "param_groups.0.eps=0.00000001",
            "param_groups.0.weight_decay=0.01",
            "param_groups.0.decoupled_weight_decay=true",
            "state.0.step=2",
            "state.1.step=2"
        ]
    );
    let dump = |o: &dyn Optimizer| {
        let s = o.state_dict();
        let t: Vec<Vec<f32>> = s.tensors.iter().map(|(_, t)| t.to_vec().unwrap()).collect();
        format!("{t:?} {:?} {}", s.scalars, o.lr())
    };
    for make in [sgd, adam] {
        let good = trained(&cpu, make).state_dict();
        let mut target = make(seeded_params(&[&[3], &[2]], 9, &cpu));
        let before = dump(target.as_ref());
        let mut bad_cases = Vec::new();
        // A missing tensor, a wrong shape, an extra parameter, a wrong kind, a bad value.
        let mut s = good.clone();
        let gone = s.tensors.remove(1).0;
        bad_cases.push((s, format!("missing key {gone}")));
        let mut s = good.clone();
        s.tensors[0].1 = Tensor::zeros(&[4], &cpu).unwrap();
        bad_cases.push((
            s,
            "shape [4] in the state, [3] for the parameter".to_string(),
        ));
        let mut s = good.clone();
        s.scalars
            .push(("state.2.started".into(), wgrad::optim::Scalar::Bool(true)));
        bad_cases.push((
            s,
            "the state is for 3 parameters, the optimizer has 2".into(),
        ));
        let mut s = good.clone();
        s.scalars[0].1 = wgrad::optim::Scalar::Bool(true);
        bad_cases.push((s, "param_groups.0.lr: expected a number, got true".into()));
        let mut s = good.clone();
        s.scalars[0].1 = wgrad::optim::Scalar::F64(-1.0);
        bad_cases.push((s, "Invalid learning rate: -1".into()));
        for (s, needle) in bad_cases {
            let err = target.load_state_dict(&s).unwrap_err().to_string();
            assert!(err.contains(&needle), "expected {needle:?} in {err}");
            assert_eq!(dump(target.as_ref()), before, "{err}");
        }
        let handles: Vec<Tensor> = target
            .state_dict()
            .tensors
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        target.load_state_dict(&good).unwrap();
        let after: Vec<Tensor> = target
            .state_dict()
            .tensors
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        assert_eq!(flat(&handles), flat(&after), "copied in place");
        assert_eq!(
            flat(&after),
            flat(
                &good
                    .tensors
                    .iter()
                    .map(|(_, t)| t.clone())
                    .collect::<Vec<_>>()
            )
        );
    }
}
