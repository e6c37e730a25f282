//! `amp::GradScaler`: PyTorch's semantics on both devices. An overflow skips the step,
//! leaving parameters and optimizer state bit-identical, and halves the scale; 2,000
//! clean steps double it; unscaled gradients are the scaled ones over the scale; the
//! state dict resumes exactly; misuse is an error.

mod common;

use wgrad::amp::GradScaler;
use wgrad::prelude::*;

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// A parameter `[5]` and an Adam optimizer, with a first clean step taken through the
/// scaler so that the optimizer has state.
fn setup(dev: &Device) -> (Tensor, Adam, GradScaler) {
    let p = Tensor::randn_seeded(&[5], 1, dev)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let mut opt = Adam::new(vec![p.clone()], 0.1);
    let mut scaler = GradScaler::new();
    let loss = p.mul(&p).unwrap().sum().unwrap();
    scaler.scale(&loss).unwrap().backward().unwrap();
    scaler.step(&mut opt).unwrap();
    scaler.update().unwrap();
    (p, opt, scaler)
}

common::test_device!(
    /// An infinite gradient: the step is skipped (parameter and Adam's moments and
    /// step count unchanged to the bit), the scale halves and the count restarts; a
    /// NaN does the same; the next clean step steps.
    overflow_skips_the_step_and_backs_off_cpu,
    overflow_skips_the_step_and_backs_off_gpu,
    |dev| {
        let (p, mut opt, mut scaler) = setup(&dev);
        assert_eq!(scaler.get_scale().unwrap(), 65536.0);
        for bad in [f32::INFINITY, f32::NAN] {
            let before_p = bits(&p);
            let before_state: Vec<(String, Vec<f64>)> = opt
                .state_dict()
                .tensors
                .iter()
                .map(|(n, t)| (n.clone(), t.to_f64_vec().unwrap()))
                .collect();
            let before_scale = scaler.get_scale().unwrap();
            opt.zero_grad();
            let loss = p.mul(&p).unwrap().sum().unwrap();
            scaler.scale(&loss).unwrap().backward().unwrap();
            // Poison one element of the scaled gradient.
            let mut g = p.grad().unwrap().to_vec::<f32>().unwrap();
            g[2] = bad;
            p.set_grad(Some(Tensor::from_vec(g, &[5], &dev).unwrap()));
            scaler.step(&mut opt).unwrap();
            scaler.update().unwrap();
            assert_eq!(bits(&p), before_p, "{bad}: parameter unchanged");
            let after: Vec<(String, Vec<f64>)> = opt
                .state_dict()
                .tensors
                .iter()
                .map(|(n, t)| (n.clone(), t.to_f64_vec().unwrap()))
                .collect();
            assert_eq!(after, before_state, "{bad}: optimizer state unchanged");
            assert_eq!(scaler.get_scale().unwrap(), before_scale * 0.5);
            let st = scaler.state_dict().unwrap();
            let tracker = st.scalars.iter().find(|(n, _)| n == "_growth_tracker").unwrap();
            assert_eq!(tracker.1, wgrad::optim::Scalar::U64(0));
        }
        opt.zero_grad();
        let loss = p.mul(&p).unwrap().sum().unwrap();
        scaler.scale(&loss).unwrap().backward().unwrap();
        let before = bits(&p);
        scaler.step(&mut opt).unwrap();
        assert_ne!(bits(&p), before);
    }
);

common::test_device!(
    /// `unscale_` divides the gradients by the scale (exactly: powers of two), and
    /// `growth_interval` clean steps multiply the scale by the growth factor.
    unscaling_and_growth_cpu,
    unscaling_and_growth_gpu,
    |dev| {
        let p = Tensor::from_vec(vec![1.5f32, -2.0, 0.25], &[3], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let mut opt = Sgd::new(vec![p.clone()], 0.0);
        let mut scaler = GradScaler::new().init_scale(8.0).growth_interval(3);
        for step in 1..=7 {
            opt.zero_grad();
            let loss = p.mul(&p).unwrap().sum().unwrap();
            scaler.scale(&loss).unwrap().backward().unwrap();
            let scale = scaler.get_scale().unwrap() as f32;
            let scaled = p.grad().unwrap().to_vec::<f32>().unwrap();
            assert_eq!(scaled, [3.0 * scale, -4.0 * scale, 0.5 * scale]);
            scaler.unscale_(&opt).unwrap();
            assert_eq!(p.grad().unwrap().to_vec::<f32>().unwrap(), [3.0, -4.0, 0.5]);
            assert!(scaler.unscale_(&opt).is_err(), "twice before update");
            scaler.step(&mut opt).unwrap();
            scaler.update().unwrap();
            let want = 8.0 * 2f64.powi(step / 3);
            assert_eq!(scaler.get_scale().unwrap(), want, "after step {step}");
        }
    }
);

/// PyTorch's defaults: 2,000 clean steps double the initial 2^16 once.
#[test]
fn two_thousand_clean_steps_double_the_scale() {
    let dev = Device::cpu();
    let p = Tensor::ones(&[2], &dev)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let mut opt = Sgd::new(vec![p.clone()], 1e-6);
    let mut scaler = GradScaler::new();
    for step in 1..=2001 {
        opt.zero_grad();
        scaler.scale(&p.sum().unwrap()).unwrap().backward().unwrap();
        scaler.step(&mut opt).unwrap();
        scaler.update().unwrap();
        let want = if step >= 2000 { 131072.0 } else { 65536.0 };
        if step % 500 == 0 || step >= 1999 {
            assert_eq!(scaler.get_scale().unwrap(), want, "step {step}");
        }
    }
}

/// The state dict has PyTorch's names, and a scaler loaded from it continues exactly as
/// the original (the next growth at the same step), on another device too.
#[test]
fn the_state_dict_resumes_exactly() {
    let run = |scaler: &mut GradScaler, dev: &Device, steps: usize| -> Vec<f64> {
        let p = Tensor::ones(&[2], dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let mut opt = Sgd::new(vec![p.clone()], 1e-6);
        (0..steps)
            .map(|_| {
                opt.zero_grad();
                scaler.scale(&p.sum().unwrap()).unwrap().backward().unwrap();
                scaler.step(&mut opt).unwrap();
                scaler.update().unwrap();
                scaler.get_scale().unwrap()
            })
            .collect()
    };
    let cpu = Device::cpu();
    let mut a = GradScaler::new().growth_interval(4).init_scale(2.0);
    run(&mut a, &cpu, 3);
    let st = a.state_dict().unwrap();
    let names: Vec<&str> = st.scalars.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "scale",
            "growth_factor",
            "backoff_factor",
            "growth_interval",
            "_growth_tracker"
        ]
    );
    let rest_a = run(&mut a, &cpu, 6);
    for dev in common::devices() {
        let mut b = GradScaler::new();
        b.load_state_dict(&st).unwrap();
        assert_eq!(run(&mut b, &dev, 6), rest_a, "resumed on {}", dev.name());
    }
    assert_eq!(rest_a[0], 4.0, "the fourth clean step grows the scale");
    // A damaged state dict changes nothing.
    let mut c = GradScaler::new();
    let mut bad = st.clone();
    bad.scalars.retain(|(n, _)| n != "_growth_tracker");
    assert!(c.load_state_dict(&bad).is_err());
    assert_eq!(c.get_scale().unwrap(), 65536.0);
}

#[test]
fn misuse_is_an_error() {
    let dev = Device::cpu();
    let loss = Tensor::scalar(1.0, &dev).unwrap();
    for bad in [
        GradScaler::new().growth_factor(1.0),
        GradScaler::new().backoff_factor(1.5),
        GradScaler::new().init_scale(f64::INFINITY),
        GradScaler::new().growth_interval(0),
    ] {
        let mut bad = bad;
        assert!(bad.scale(&loss).is_err());
    }
    // Half gradients: mixed precision keeps f32 master weights.
    let h = Tensor::ones(&[2], &dev)
        .unwrap()
        .half()
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    h.float().unwrap().sum().unwrap().backward().unwrap();
    let opt = Sgd::new(vec![h], 0.1);
    let mut s = GradScaler::new();
    s.scale(&loss).unwrap();
    let msg = s.unscale_(&opt).unwrap_err().to_string();
    assert!(msg.contains("F16"), "{msg}");
    // Disabled: a pass-through.
    let mut off = GradScaler::new().enabled(false);
    assert_eq!(off.scale(&loss).unwrap().item().unwrap(), 1.0);
    assert_eq!(off.get_scale().unwrap(), 1.0);
    assert!(off.state_dict().unwrap().scalars.is_empty());
}

/// A checkpoint carries the scaler's state under PyTorch's names (`scaler.scale`,
/// `scaler._growth_tracker`, ...): training resumed from it follows the uninterrupted
/// run exactly, parameters and scale alike.
#[test]
fn checkpoints_resume_the_scaler_exactly() {
    let dev = Device::cpu();
    let x = Tensor::randn_seeded(&[8, 4], 3, &dev).unwrap();
    let labels = Tensor::from_vec(vec![0u32, 1, 1, 0, 1, 0, 0, 1], &[8], &dev).unwrap();
    let make = || {
        dev.manual_seed(11);
        let model = Linear::new(&dev, 4, 2);
        let opt = Adam::new(model.parameters(), 0.05);
        let scaler = GradScaler::new().init_scale(4.0).growth_interval(3);
        (model, opt, scaler)
    };
    let train = |model: &Linear, opt: &mut Adam, scaler: &mut GradScaler, steps: usize| {
        let mut scales = Vec::new();
        for _ in 0..steps {
            opt.zero_grad();
            let loss = wgrad::amp::autocast(&dev, DType::F16, || {
                model.forward(&x)?.cross_entropy(&labels)
            })
            .unwrap()
            .unwrap();
            scaler.scale(&loss).unwrap().backward().unwrap();
            scaler.step(opt).unwrap();
            scaler.update().unwrap();
            scales.push(scaler.get_scale().unwrap());
        }
        scales
    };
    let (model, mut opt, mut scaler) = make();
    train(&model, &mut opt, &mut scaler, 4);
    let path = std::env::temp_dir().join(format!("wgrad-scaler-{}.ckpt", std::process::id()));
    wgrad::io::Checkpoint::capture(&model, &opt, None, &dev, 4, 0)
        .unwrap()
        .with_scaler(&scaler)
        .unwrap()
        .save(&path)
        .unwrap();
    let want_scales = train(&model, &mut opt, &mut scaler, 5);
    let want = model.parameters()[0].to_vec::<f32>().unwrap();

    let (model2, mut opt2, mut scaler2) = make();
    let ck = wgrad::io::load_checkpoint(&path, &model2, &mut opt2, None, &dev).unwrap();
    let names: Vec<&str> = ck
        .scaler
        .as_ref()
        .unwrap()
        .scalars
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(
        names.contains(&"_growth_tracker") && names.contains(&"scale"),
        "{names:?}"
    );
    ck.restore_scaler(&mut scaler2).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(train(&model2, &mut opt2, &mut scaler2, 5), want_scales);
    assert_eq!(model2.parameters()[0].to_vec::<f32>().unwrap(), want);
    // A checkpoint without a scaler says so.
    let plain = wgrad::io::Checkpoint::capture(&model2, &opt2, None, &dev, 0, 0).unwrap();
    assert!(plain.restore_scaler(&mut scaler2).is_err());
}
