//! Batch normalisation (PyTorch's semantics) and `Flatten`: normalised outputs in
//! training mode, running statistics by PyTorch's formulas (unbiased variance in the
//! running estimate), evaluation with the running statistics, f64 gradients against
//! finite differences, the GPU against the CPU, and buffers that are saved, moved and
//! loaded but never trained.

mod common;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wgrad::nn::*;
use wgrad::prelude::*;

/// Per-channel statistics of `x` (`[N, C, ...]`) computed on the host in f64:
/// (mean, biased variance, unbiased variance).
fn channel_stats(x: &[f64], shape: &[usize]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (n, c) = (shape[0], shape[1]);
    let inner: usize = shape[2..].iter().product();
    let count = (n * inner) as f64;
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for ch in 0..c {
        let vals =
            || (0..n).flat_map(move |i| (0..inner).map(move |j| x[(i * c + ch) * inner + j]));
        mean[ch] = vals().sum::<f64>() / count;
        var[ch] = vals().map(|v| (v - mean[ch]).powi(2)).sum::<f64>() / count;
    }
    let unbiased = var.iter().map(|v| v * count / (count - 1.0)).collect();
    (mean, var, unbiased)
}

/// Random values with a different offset and spread per channel.
fn channel_data(shape: &[usize], seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let c = shape[1];
    let inner: usize = shape[2..].iter().product();
    (0..shape.iter().product::<usize>())
        .map(|i| {
            let ch = (i / inner) % c;
            let u: f64 = rng.random_range(-1.0..1.0);
            u * (1.0 + ch as f64) + 3.0 * ch as f64 - 1.0
        })
        .collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn set(p: &Option<Parameter>, v: &[f64]) {
    let t = p.as_ref().unwrap().tensor();
    let src = match t.dtype() {
        DType::F64 => Tensor::from_vec(v.to_vec(), t.shape(), t.device()),
        _ => Tensor::from_vec(f32s(v), t.shape(), t.device()),
    };
    t.copy_from(&src.unwrap()).unwrap();
}

fn host(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().unwrap()
}

#[test]
fn training_mode_normalises_each_channel_then_scales_and_shifts() {
    let dev = Device::cpu();
    let gamma = [2.0, 0.5, -1.5];
    let beta = [1.0, -1.0, 0.25];
    for shape in [vec![16, 3], vec![6, 3, 5], vec![4, 3, 5, 6]] {
        let bn: Box<dyn Module> = if shape.len() == 4 {
            let bn = BatchNorm2d::new(&dev, 3);
            set(&bn.weight, &gamma);
            set(&bn.bias, &beta);
            Box::new(bn)
        } else {
            let bn = BatchNorm1d::new(&dev, 3);
            set(&bn.weight, &gamma);
            set(&bn.bias, &beta);
            Box::new(bn)
        };
        let xv = channel_data(&shape, 1);
        let x = Tensor::from_vec(f32s(&xv), &shape, &dev).unwrap();
        let y = bn.forward(&x).unwrap();
        assert_eq!(y.shape(), shape.as_slice());
        let (mean, var, _) = channel_stats(&host(&y), &shape);
        let (_, xvar, _) = channel_stats(&xv, &shape);
        for c in 0..3 {
            assert!(
                (mean[c] - beta[c]).abs() < 1e-5,
                "{shape:?} mean[{c}] {}",
                mean[c]
            );
            // Biased variance of the output: gamma^2 var / (var + eps).
            let want = gamma[c] * gamma[c] * xvar[c] / (xvar[c] + 1e-5);
            assert!(
                (var[c] - want).abs() < 1e-4,
                "{shape:?} var[{c}] {} want {want}",
                var[c]
            );
        }
    }
}

/// Runs three batches through `bn` and checks the running statistics after the first
/// and the third against PyTorch's update, computed here on the host.
fn check_running_statistics<const D: usize>(bn: &BatchNorm<D>, shape: &[usize]) {
    let dev = Device::cpu();
    let m = bn.momentum;
    let c = shape[1];
    let (mut rm, mut rv) = (vec![0.0; c], vec![1.0; c]);
    for batch in 1..=3u64 {
        let xv = channel_data(shape, 10 + batch);
        let x = Tensor::from_vec(f32s(&xv), shape, &dev).unwrap();
        bn.forward(&x).unwrap();
        let (mean, _, unbiased) = channel_stats(&xv, shape);
        for ch in 0..c {
            rm[ch] = (1.0 - m) * rm[ch] + m * mean[ch];
            rv[ch] = (1.0 - m) * rv[ch] + m * unbiased[ch];
        }
        if batch == 1 || batch == 3 {
            let what = format!("{shape:?} after {batch} batches");
            common::assert_close(
                &host(&bn.running_mean()),
                &rm,
                1e-5,
                1e-5,
                &format!("running_mean {what}"),
            );
            common::assert_close(
                &host(&bn.running_var()),
                &rv,
                1e-5,
                1e-5,
                &format!("running_var {what}"),
            );
            assert_eq!(bn.num_batches_tracked().item().unwrap(), batch as f64);
            assert!(!bn.running_mean().requires_grad() && !bn.running_var().requires_grad());
        }
    }
}

#[test]
fn running_statistics_follow_pytorchs_formulas_after_one_and_three_batches() {
    let dev = Device::cpu();
    check_running_statistics(&BatchNorm2d::new(&dev, 3), &[4, 3, 5, 6]);
    check_running_statistics(&BatchNorm1d::new(&dev, 3), &[9, 3]);
    let opts = BatchNormOptions {
        momentum: 0.3,
        ..Default::default()
    };
    check_running_statistics(
        &BatchNorm1d::with_options(&dev, 3, opts).unwrap(),
        &[7, 3, 4],
    );

    // One batch from the initial (0, 1), by hand: x = 1, 2, 4, 9 has mean 4, biased
    // variance 9.5 and unbiased variance 38/3; the unbiased one moves running_var.
    let bn = BatchNorm2d::new(&dev, 1);
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 4.0, 9.0], &[4, 1, 1, 1], &dev).unwrap();
    bn.forward(&x).unwrap();
    common::assert_close(
        &host(&bn.running_mean()),
        &[0.4],
        1e-6,
        1e-6,
        "running_mean",
    );
    common::assert_close(
        &host(&bn.running_var()),
        &[0.9 + 0.1 * 38.0 / 3.0],
        1e-6,
        1e-6,
        "running_var",
    );
}

#[test]
fn evaluation_mode_uses_the_running_statistics_and_leaves_them_alone() {
    let dev = Device::cpu();
    let shape = [4, 3, 5, 6];
    let bn = BatchNorm2d::new(&dev, 3);
    let gamma = [1.5, -0.5, 2.0];
    let beta = [0.5, 0.0, -2.0];
    set(&bn.weight, &gamma);
    set(&bn.bias, &beta);
    for seed in 0..3 {
        let x = Tensor::from_vec(f32s(&channel_data(&shape, seed)), &shape, &dev).unwrap();
        bn.forward(&x).unwrap();
    }
    bn.eval();
    assert!(!bn.is_training());
    let rm = host(&bn.running_mean());
    let rv = host(&bn.running_var());
    let xv = channel_data(&shape, 99);
    let x = Tensor::from_vec(f32s(&xv), &shape, &dev).unwrap();
    let y = host(&bn.forward(&x).unwrap());
    let inner = 30;
    let want: Vec<f64> = xv
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let c = (i / inner) % 3;
            (v - rm[c]) / (rv[c] + 1e-5).sqrt() * gamma[c] + beta[c]
        })
        .collect();
    common::assert_close(&y, &want, 1e-5, 1e-5, "eval output");
    // A batch of one is fine in evaluation mode, and nothing moves.
    let one = Tensor::from_vec(f32s(&xv[..90]), &[1, 3, 5, 6], &dev).unwrap();
    bn.forward(&one).unwrap();
    assert_eq!(host(&bn.running_mean()), rm);
    assert_eq!(host(&bn.running_var()), rv);
    assert_eq!(bn.num_batches_tracked().item().unwrap(), 3.0);
    // Back to training: batch statistics again.
    bn.train();
    let y = host(&bn.forward(&x).unwrap());
    let (mean, _, _) = channel_stats(&y, &shape);
    common::assert_close(&mean, &beta, 1e-5, 1e-5, "training mean");
}

/// `sum(forward(x) * r)` of a fresh f64 layer with the given weight and bias.
fn bn_loss_f64(
    x: &[f64],
    shape: &[usize],
    w: &[f64],
    b: &[f64],
    r: &[f64],
    training: bool,
) -> (f64, Vec<f64>, Vec<f64>, Vec<f64>) {
    let dev = Device::cpu();
    let opts = BatchNormOptions {
        dtype: DType::F64,
        ..Default::default()
    };
    let bn = BatchNorm2d::with_options(&dev, shape[1], opts).unwrap();
    set(&bn.weight, w);
    set(&bn.bias, b);
    if !training {
        // Running statistics that are not the batch's.
        let c = shape[1];
        let rm: Vec<f64> = (0..c).map(|i| 0.3 * i as f64 - 0.2).collect();
        let rv: Vec<f64> = (0..c).map(|i| 0.5 + i as f64).collect();
        bn.running_mean()
            .copy_from(&Tensor::from_vec(rm, &[c], &dev).unwrap())
            .unwrap();
        bn.running_var()
            .copy_from(&Tensor::from_vec(rv, &[c], &dev).unwrap())
            .unwrap();
        bn.eval();
    }
    let xt = Tensor::from_vec(x.to_vec(), shape, &dev)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let rt = Tensor::from_vec(r.to_vec(), shape, &dev).unwrap();
    let loss = bn.forward(&xt).unwrap().mul(&rt).unwrap().sum().unwrap();
    assert_eq!(loss.dtype(), DType::F64);
    loss.backward().unwrap();
    let g = |t: &Tensor| host(&t.grad().unwrap());
    (
        loss.item().unwrap(),
        g(&xt),
        g(&bn.weight.as_ref().unwrap().tensor()),
        g(&bn.bias.as_ref().unwrap().tensor()),
    )
}

#[test]
fn gradients_match_finite_differences_in_f64() {
    let shape = [3, 2, 2, 3];
    let n: usize = shape.iter().product();
    let x = channel_data(&shape, 5);
    let mut rng = StdRng::seed_from_u64(6);
    let r: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let w = vec![1.3, -0.7];
    let b = vec![0.2, 0.9];
    let h = 1e-6;
    for training in [true, false] {
        let (_, dx, dw, db) = bn_loss_f64(&x, &shape, &w, &b, &r, training);
        let numeric = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
        let fd_x: Vec<f64> = (0..n)
            .map(|i| {
                numeric(&|d| {
                    let mut xp = x.clone();
                    xp[i] += d;
                    bn_loss_f64(&xp, &shape, &w, &b, &r, training).0
                })
            })
            .collect();
        let fd_w: Vec<f64> = (0..2)
            .map(|i| {
                numeric(&|d| {
                    let mut wp = w.clone();
                    wp[i] += d;
                    bn_loss_f64(&x, &shape, &wp, &b, &r, training).0
                })
            })
            .collect();
        let fd_b: Vec<f64> = (0..2)
            .map(|i| {
                numeric(&|d| {
                    let mut bp = b.clone();
                    bp[i] += d;
                    bn_loss_f64(&x, &shape, &w, &bp, &r, training).0
                })
            })
            .collect();
        let mode = if training { "train" } else { "eval" };
        common::assert_close(&dx, &fd_x, 1e-6, 1e-6, &format!("{mode} dL/dx"));
        common::assert_close(&dw, &fd_w, 1e-6, 1e-6, &format!("{mode} dL/dweight"));
        common::assert_close(&db, &fd_b, 1e-6, 1e-6, &format!("{mode} dL/dbias"));
        // In training mode the gradient through the batch statistics matters: each
        // channel's dL/dx sums to zero (the mean is subtracted).
        if training {
            for c in 0..2 {
                let s: f64 = (0..3)
                    .flat_map(|i| (0..6).map(move |j| (i * 2 + c) * 6 + j))
                    .map(|k| dx[k])
                    .sum();
                assert!(s.abs() < 1e-9, "channel {c}: sum of dL/dx {s}");
            }
        }
    }
}

#[test]
fn the_gpu_matches_the_cpu_forward_backward_and_running_statistics() {
    let _serial = common::exclusive();
    let shape = [8, 4, 6, 5];
    let xv = f32s(&channel_data(&shape, 21));
    let rv: Vec<f32> = (0..xv.len())
        .map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.5)
        .collect();
    let mut results = Vec::new();
    for dev in common::devices() {
        let bn = BatchNorm2d::new(&dev, 4);
        set(&bn.weight, &[1.5, -0.5, 2.0, 0.7]);
        set(&bn.bias, &[0.5, 0.0, -2.0, 0.1]);
        let r = Tensor::from_vec(rv.clone(), &shape, &dev).unwrap();
        let mut out = Vec::new();
        for step in 0..2 {
            let x = Tensor::from_vec(xv.clone(), &shape, &dev)
                .unwrap()
                .affine(1.0 + step as f64, step as f64)
                .unwrap()
                .requires_grad_(true)
                .unwrap();
            let y = bn.forward(&x).unwrap();
            y.mul(&r).unwrap().sum().unwrap().backward().unwrap();
            out.push(common::vec_f32(&y));
            out.push(common::vec_f32(&x.grad().unwrap()));
        }
        for p in bn.parameters() {
            out.push(common::vec_f32(&p.grad().unwrap()));
        }
        out.push(common::vec_f32(&bn.running_mean()));
        out.push(common::vec_f32(&bn.running_var()));
        out.push(common::vec_f32(&bn.num_batches_tracked()));
        bn.eval();
        let x = Tensor::from_vec(xv.clone(), &shape, &dev).unwrap();
        out.push(common::vec_f32(&bn.forward(&x).unwrap()));
        // BatchNorm1d on [N, C] and [N, C, L] too.
        let bn1 = BatchNorm1d::new(&dev, 4);
        for s in [vec![30, 4], vec![6, 4, 5]] {
            let x = Tensor::from_vec(xv[..120].to_vec(), &s, &dev)
                .unwrap()
                .requires_grad_(true)
                .unwrap();
            let y = bn1.forward(&x).unwrap();
            y.mul(&y).unwrap().sum().unwrap().backward().unwrap();
            out.push(common::vec_f32(&y));
            out.push(common::vec_f32(&x.grad().unwrap()));
        }
        out.push(common::vec_f32(&bn1.running_var()));
        results.push(out);
    }
    let names = [
        "y step 0",
        "dx step 0",
        "y step 1",
        "dx step 1",
        "dweight",
        "dbias",
        "running_mean",
        "running_var",
        "num_batches_tracked",
        "eval y",
        "1d [N, C] y",
        "1d [N, C] dx",
        "1d [N, C, L] y",
        "1d [N, C, L] dx",
        "1d running_var",
    ];
    assert_eq!(results[0].len(), names.len());
    for ((c, g), name) in results[0].iter().zip(&results[1]).zip(names) {
        let scale = c.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        common::assert_close(g, c, 2e-5 * scale, 0.0, name);
    }
}

#[test]
fn buffers_are_saved_moved_and_loaded_but_never_trained() {
    let dev = Device::cpu();
    dev.manual_seed(3);
    let model = Sequential::new()
        .add(Linear::new(&dev, 4, 3))
        .add(BatchNorm1d::new(&dev, 3))
        .add(ReLU);
    let params: Vec<String> = model
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(params, ["0.weight", "0.bias", "1.weight", "1.bias"]);
    assert_eq!(model.parameters().len(), 4);
    assert_eq!(model.num_parameters(), 12 + 3 + 3 + 3);
    let buffers: Vec<String> = model.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        buffers,
        ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    );
    // PyTorch's state_dict order: each module's parameters, then its buffers.
    let keys: Vec<String> = model.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        keys,
        [
            "0.weight",
            "0.bias",
            "1.weight",
            "1.bias",
            "1.running_mean",
            "1.running_var",
            "1.num_batches_tracked"
        ]
    );

    // Train a little: an optimizer built from parameters() steps without touching the
    // buffers (which only the forward changes).
    let x = Tensor::randn_seeded(&[8, 4], 1, &dev).unwrap();
    let t = Tensor::from_vec(vec![0u32, 1, 2, 0, 1, 2, 0, 1], &[8], &dev).unwrap();
    let mut opt = Sgd::new(model.parameters(), 0.1);
    for _ in 0..2 {
        opt.zero_grad();
        model
            .forward(&x)
            .unwrap()
            .cross_entropy(&t)
            .unwrap()
            .backward()
            .unwrap();
        opt.step().unwrap();
    }
    let state: Vec<(String, Vec<f32>)> = model
        .state_dict()
        .into_iter()
        .map(|(n, t)| (n, common::vec_f32(&t)))
        .collect();
    assert_eq!(state[6].1, [2.0], "num_batches_tracked");
    assert!(state[4].1.iter().any(|&v| v != 0.0), "running_mean moved");

    // A safetensors round trip restores the buffers into a fresh model.
    let path = std::env::temp_dir().join(format!("wgrad-bn-{}.safetensors", std::process::id()));
    wgrad::io::save(&model, &path).unwrap();
    let fresh = Sequential::new()
        .add(Linear::new(&dev, 4, 3))
        .add(BatchNorm1d::new(&dev, 3))
        .add(ReLU);
    wgrad::io::load(&fresh, &path).unwrap();
    for ((n, a), (_, b)) in state.iter().zip(fresh.state_dict()) {
        assert_eq!(a, &common::vec_f32(&b), "{n}");
    }
    model.eval();
    fresh.eval();
    assert_eq!(
        common::vec_f32(&model.forward(&x).unwrap()),
        common::vec_f32(&fresh.forward(&x).unwrap())
    );

    // All or nothing: a state without a buffer is refused and changes nothing.
    let before = fresh.state_dict();
    let mut partial = model.state_dict();
    partial.retain(|(n, _)| n != "1.running_var");
    partial[0].1 = Tensor::zeros(&[3, 4], &dev).unwrap();
    let err = fresh.load_state_dict(&partial).unwrap_err().to_string();
    assert!(err.contains("missing key 1.running_var"), "{err}");
    for ((n, a), (_, b)) in before.iter().zip(fresh.state_dict()) {
        assert_eq!(common::vec_f32(a), common::vec_f32(&b), "{n} changed");
    }
    let mut extra = model.state_dict();
    extra.push(("1.running_std".into(), Tensor::zeros(&[3], &dev).unwrap()));
    let err = fresh.load_state_dict(&extra).unwrap_err().to_string();
    assert!(err.contains("unexpected key 1.running_std"), "{err}");

    // Moving the model moves its buffers.
    let gpu = common::gpu();
    fresh.to_device(&gpu).unwrap();
    for (n, t) in fresh.state_dict() {
        assert!(t.device().is_gpu(), "{n} stayed on the CPU");
    }
    let xg = x.to(&gpu).unwrap();
    common::assert_close(
        &common::vec_f32(&fresh.forward(&xg).unwrap()),
        &common::vec_f32(&model.forward(&x).unwrap()),
        1e-5,
        0.0,
        "eval on the GPU after to_device",
    );
    // ...and loading into a GPU model copies the buffers in place.
    fresh.load_state_dict(&before).unwrap();
    assert!(fresh.named_buffers()[1].1.device().is_gpu());
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dev = Device::cpu();
    let bn2 = BatchNorm2d::new(&dev, 3);
    let bn1 = BatchNorm1d::new(&dev, 3);
    let err = |r: Result<Tensor>| r.unwrap_err().to_string();

    let e = err(bn2.forward(&Tensor::zeros(&[2, 3, 4], &dev).unwrap()));
    assert!(
        e.contains("BatchNorm2d") && e.contains("[N, C, H, W]") && e.contains("[2, 3, 4]"),
        "{e}"
    );
    let e = err(bn1.forward(&Tensor::zeros(&[2, 3, 4, 5], &dev).unwrap()));
    assert!(
        e.contains("BatchNorm1d") && e.contains("[N, C]") && e.contains("[N, C, L]"),
        "{e}"
    );
    let e = err(bn2.forward(&Tensor::zeros(&[2, 4, 5, 5], &dev).unwrap()));
    assert!(e.contains("4 channels") && e.contains("built for 3"), "{e}");
    let e = err(bn1.forward(&Tensor::zeros(&[1, 3], &dev).unwrap()));
    assert!(e.contains("more than 1 value per channel"), "{e}");
    let x64 = Tensor::from_vec(vec![0.0f64; 6], &[2, 3], &dev).unwrap();
    let e = err(bn1.forward(&x64));
    assert!(e.contains("F64") && e.contains("F32"), "{e}");
    assert_eq!(
        bn1.num_batches_tracked().item().unwrap(),
        0.0,
        "failed calls track nothing"
    );

    let bad = |o: BatchNormOptions| {
        BatchNorm2d::with_options(&dev, 3, o)
            .unwrap_err()
            .to_string()
    };
    let e = bad(BatchNormOptions {
        momentum: 1.5,
        ..Default::default()
    });
    assert!(e.contains("momentum"), "{e}");
    let e = bad(BatchNormOptions {
        dtype: DType::U32,
        ..Default::default()
    });
    assert!(e.contains("U32"), "{e}");
    let e = BatchNorm1d::with_options(&dev, 0, Default::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("num_features"), "{e}");
}

#[test]
fn without_affine_there_are_no_parameters_and_reset_restores_the_statistics() {
    let dev = Device::cpu();
    let bn = BatchNorm2d::with_options(
        &dev,
        2,
        BatchNormOptions {
            affine: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(bn.parameters().is_empty());
    assert_eq!(bn.named_buffers().len(), 3);
    let shape = [3, 2, 4, 4];
    let x = Tensor::from_vec(f32s(&channel_data(&shape, 2)), &shape, &dev).unwrap();
    let y = host(&bn.forward(&x).unwrap());
    let (mean, var, _) = channel_stats(&y, &shape);
    common::assert_close(&mean, &[0.0, 0.0], 1e-5, 1e-5, "mean");
    common::assert_close(&var, &[1.0, 1.0], 1e-3, 1e-3, "var");
    bn.reset_running_stats().unwrap();
    assert_eq!(host(&bn.running_mean()), [0.0, 0.0]);
    assert_eq!(host(&bn.running_var()), [1.0, 1.0]);
    assert_eq!(bn.num_batches_tracked().item().unwrap(), 0.0);
}

common::test_device!(
    flatten_keeps_the_batch_dimension_like_torch_cpu,
    flatten_keeps_the_batch_dimension_like_torch_gpu,
    |dev| {
        let x = Tensor::randn_seeded(&[2, 3, 4, 5], 4, &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let y = Flatten::new().forward(&x).unwrap();
        assert_eq!(y.shape(), &[2, 60]);
        assert_eq!(common::vec_f32(&y), common::vec_f32(&x));
        assert_eq!(
            Flatten::dims(1, 2).forward(&x).unwrap().shape(),
            &[2, 12, 5]
        );
        assert_eq!(Flatten::dims(0, -1).forward(&x).unwrap().shape(), &[120]);
        y.sum().unwrap().backward().unwrap();
        assert_eq!(x.grad().unwrap().shape(), &[2, 3, 4, 5]);
        // In a network: conv-style features into a linear layer.
        let net = Sequential::new()
            .add(BatchNorm2d::new(&dev, 3))
            .add(Flatten::default())
            .add(Linear::new(&dev, 60, 2));
        assert_eq!(net.forward(&x).unwrap().shape(), &[2, 2]);
    }
);

common::test_device!(
    /// PyTorch's own BatchNorm2d state (num_batches_tracked stored as int64) loads, and the
    /// layer then gives PyTorch's eval and train outputs and running statistics, on each
    /// device (`tests/fixtures/make_torch_bn_fixture.py` wrote the file).
    a_pytorch_batchnorm_state_dict_loads_and_matches_its_outputs_cpu,
    a_pytorch_batchnorm_state_dict_loads_and_matches_its_outputs_gpu,
    |dev| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/torch_bn.safetensors");
        let file = wgrad::io::read_safetensors(&path, &dev).unwrap();
        let get = |name: &str| {
            file.iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("{name} missing"))
                .1
                .clone()
        };
        assert_eq!(get("bn.num_batches_tracked").dtype(), DType::U32);
        let state: Vec<(String, Tensor)> = file
            .iter()
            .filter_map(|(n, t)| n.strip_prefix("bn.").map(|k| (k.to_string(), t.clone())))
            .collect();
        let bn = BatchNorm2d::with_options(
            &dev,
            3,
            BatchNormOptions {
                momentum: 0.2,
                ..Default::default()
            },
        )
        .unwrap();
        bn.load_state_dict(&state).unwrap();
        assert_eq!(bn.num_batches_tracked().to_vec::<f32>().unwrap(), vec![3.0]);
        let x = get("x");
        bn.eval();
        let y = bn.forward(&x).unwrap();
        common::assert_close(
            &y.to_vec::<f32>().unwrap(),
            &get("eval_out").to_vec::<f32>().unwrap(),
            1e-5,
            0.0,
            "eval output",
        );
        bn.train();
        let y = bn.forward(&x).unwrap();
        common::assert_close(
            &y.to_vec::<f32>().unwrap(),
            &get("train_out").to_vec::<f32>().unwrap(),
            1e-5,
            0.0,
            "train output",
        );
        common::assert_close(
            &bn.running_mean().to_vec::<f32>().unwrap(),
            &get("running_mean_after").to_vec::<f32>().unwrap(),
            1e-5,
            0.0,
            "running mean",
        );
        common::assert_close(
            &bn.running_var().to_vec::<f32>().unwrap(),
            &get("running_var_after").to_vec::<f32>().unwrap(),
            1e-5,
            0.0,
            "running var",
        );
        assert_eq!(bn.num_batches_tracked().to_vec::<f32>().unwrap(), vec![4.0]);
        }
);

/// Dispatches of one BatchNorm2d layer in training mode on the GPU (before the fused op:
/// 20 forward and 14 backward for `[4, 3, 5, 6]`, 22 and 17 for `[2, 2, 96, 96]`): at
/// most 3 for the forward (statistics, finalise with the running-statistics update,
/// normalise) and at most 3 for the backward, each bound checked on its own. Channels
/// that fit one workgroup take 2 each way.
#[test]
fn a_training_batchnorm2d_layer_takes_at_most_three_dispatches_each_way() {
    // A device of its own: other tests of this binary dispatch on the shared one
    // meanwhile, and would move its counters.
    let gpu = Device::gpu_with(wgrad::GpuOptions::from_env()).unwrap();
    // Small channels (one workgroup each: the fused two-dispatch path) and channels of
    // 2 x 96 x 96 = 18,432 values (past 16K: the multi-block path).
    for (shape, fused) in [([4usize, 3, 5, 6], true), ([2, 2, 96, 96], false)] {
        let bn = BatchNorm2d::new(&gpu, shape[1]);
        let n: usize = shape.iter().product();
        let x = Tensor::from_vec(f32s(&channel_data(&shape, 3)), &shape, &gpu)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let g = Tensor::from_vec(
            (0..n)
                .map(|i| ((i * 31) % 17) as f32 / 17.0 - 0.5)
                .collect(),
            &shape,
            &gpu,
        )
        .unwrap();
        gpu.sync().unwrap();
        let before = gpu.counters().dispatches;
        let y = bn.forward(&x).unwrap();
        let fwd = gpu.counters().dispatches - before;
        y.backward_with(&g).unwrap();
        let bwd = gpu.counters().dispatches - before - fwd;
        println!("BatchNorm2d {shape:?}: {fwd} dispatches forward, {bwd} backward");
        assert!(x.grad().is_some());
        for p in bn.parameters() {
            assert!(p.grad().is_some());
        }
        assert!(
            fwd <= 3,
            "{shape:?}: the training forward took {fwd} dispatches"
        );
        assert!(bwd <= 3, "{shape:?}: the backward took {bwd} dispatches");
        let want = if fused { 2 } else { 3 };
        assert_eq!((fwd, bwd), (want, want), "{shape:?}");
        assert_eq!(bn.num_batches_tracked().item().unwrap(), 1.0);
        // Evaluation: the running statistics into the same normalise kernel.
        bn.eval();
        let before = gpu.counters().dispatches;
        let _ = bn.forward(&x).unwrap();
        assert_eq!(gpu.counters().dispatches - before, 2, "{shape:?} eval");
    }
}

/// Per-channel outputs and gradients on the host in f64 (PyTorch's formulas), for a
/// layer with weight `w` and bias `b` and the output gradient `g`: (y, dx, dw, db).
fn reference_train(
    x: &[f64],
    shape: &[usize],
    w: &[f64],
    b: &[f64],
    g: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mean, var, _) = channel_stats(x, shape);
    let (c, inner) = (shape[1], shape[2..].iter().product::<usize>());
    let m = (shape[0] * inner) as f64;
    let ch = |i: usize| (i / inner) % c;
    let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
    let xhat: Vec<f64> = (0..x.len())
        .map(|i| (x[i] - mean[ch(i)]) * invstd[ch(i)])
        .collect();
    let y = (0..x.len())
        .map(|i| xhat[i] * w[ch(i)] + b[ch(i)])
        .collect();
    let (mut sg, mut sgx) = (vec![0.0; c], vec![0.0; c]);
    for i in 0..x.len() {
        sg[ch(i)] += g[i];
        sgx[ch(i)] += g[i] * xhat[i];
    }
    let dx = (0..x.len())
        .map(|i| {
            let k = ch(i);
            w[k] * invstd[k] * (g[i] - sg[k] / m - xhat[i] * sgx[k] / m)
        })
        .collect();
    (y, dx, sgx, sg)
}

/// Channels of 3 x 80 x 80 = 19,200 values (more than one workgroup reduces: the
/// multi-block forward and backward) with a large offset against a small spread, where
/// `E[x^2] - E[x]^2` in f32 would lose the variance: both devices match the f64
/// reference, the running statistics included.
#[test]
fn long_channels_split_into_blocks_and_match_the_cpu_and_an_f64_reference() {
    let _serial = common::exclusive();
    let shape = [3usize, 2, 80, 80];
    let n: usize = shape.iter().product();
    let mut rng = StdRng::seed_from_u64(44);
    // Channel 0: mean 1000, spread 0.5; channel 1: mean -3, spread 2.
    let xv: Vec<f64> = (0..n)
        .map(|i| {
            let u: f64 = rng.random_range(-1.0..1.0);
            if (i / 6400) % 2 == 0 {
                1000.0 + 0.5 * u
            } else {
                -3.0 + 2.0 * u
            }
        })
        .map(|v| v as f32 as f64)
        .collect();
    let gv: Vec<f64> = (0..n)
        .map(|_| rng.random_range(-1.0f32..1.0) as f64)
        .collect();
    let (w, b) = ([1.5, -0.75], [0.25, 2.0]);
    let (y_ref, dx_ref, dw_ref, db_ref) = reference_train(&xv, &shape, &w, &b, &gv);
    let (mean, _, unbiased) = channel_stats(&xv, &shape);
    let mut results = Vec::new();
    for dev in common::devices() {
        let bn = BatchNorm2d::new(&dev, 2);
        set(&bn.weight, &w);
        set(&bn.bias, &b);
        let x = Tensor::from_vec(f32s(&xv), &shape, &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let y = bn.forward(&x).unwrap();
        y.backward_with(&Tensor::from_vec(f32s(&gv), &shape, &dev).unwrap())
            .unwrap();
        let what = |s: &str| format!("{s} on {}", dev.name());
        common::assert_close(&host(&y), &y_ref, 2e-4, 2e-4, &what("y"));
        common::assert_close(&host(&x.grad().unwrap()), &dx_ref, 2e-4, 2e-4, &what("dx"));
        let dw = host(&bn.weight.as_ref().unwrap().tensor().grad().unwrap());
        let db = host(&bn.bias.as_ref().unwrap().tensor().grad().unwrap());
        // Sums of 19,200 terms; channel 0's mean (1000) is rounded to f32 (half an ulp is
        // 3e-5, 1e-4 of xhat against a spread of 0.29) before it enters every xhat, so
        // sum(g xhat) carries about 1e-4 |sum g| ~ 1e-2 on either device.
        common::assert_close(&dw, &dw_ref, 5e-4, 5e-4, &what("dweight"));
        common::assert_close(&db, &db_ref, 1e-5, 1e-5, &what("dbias"));
        let rm: Vec<f64> = mean.iter().map(|m| 0.1 * m).collect();
        let rv: Vec<f64> = unbiased.iter().map(|v| 0.9 + 0.1 * v).collect();
        common::assert_close(
            &host(&bn.running_mean()),
            &rm,
            1e-6,
            1e-6,
            &what("running_mean"),
        );
        common::assert_close(
            &host(&bn.running_var()),
            &rv,
            1e-5,
            1e-5,
            &what("running_var"),
        );
        results.push((host(&y), host(&x.grad().unwrap())));
    }
    // The GPU against the CPU: channel 0's f32 means may differ by an ulp (6e-5 at
    // 1000, 2e-4 of xhat), channel 1's agree much more closely.
    for (k, (tol0, tol1)) in [(4e-4, 1e-5), (4e-4, 1e-5)].into_iter().enumerate() {
        let (g, c) = if k == 0 {
            (&results[1].0, &results[0].0)
        } else {
            (&results[1].1, &results[0].1)
        };
        let what = ["y: gpu vs cpu", "dx: gpu vs cpu"][k];
        for (i, (gv, cv)) in g.iter().zip(c.iter()).enumerate() {
            let tol = if (i / 6400) % 2 == 0 { tol0 } else { tol1 };
            assert!(
                (gv - cv).abs() <= tol * (1.0 + cv.abs()),
                "{what}[{i}]: {gv} vs {cv}"
            );
        }
    }
}

common::test_device!(
    /// Careless inputs on both devices: a batch of one value per channel in training mode
    /// and an empty batch are errors (nothing moves), a NaN poisons its channel only, and an
    /// empty batch in evaluation mode is an empty output.
    careless_inputs_error_or_propagate_nan_on_both_devices_cpu,
    careless_inputs_error_or_propagate_nan_on_both_devices_gpu,
    |dev| {
        let _serial = common::exclusive();
        let d = dev.name();
        let bn1 = BatchNorm1d::new(&dev, 3);
        let bn2 = BatchNorm2d::new(&dev, 3);
        let err = |r: Result<Tensor>| r.unwrap_err().to_string();
        let e = err(bn1.forward(&Tensor::zeros(&[1, 3], &dev).unwrap()));
        assert!(e.contains("more than 1 value per channel"), "{d}: {e}");
        let e = err(bn2.forward(&Tensor::zeros(&[1, 3, 1, 1], &dev).unwrap()));
        assert!(e.contains("more than 1 value per channel"), "{d}: {e}");
        let e = err(bn1.forward(&Tensor::zeros(&[0, 3], &dev).unwrap()));
        assert!(e.contains("more than 1 value per channel"), "{d}: {e}");
        let e = err(bn2.forward(&Tensor::zeros(&[0, 3, 4, 4], &dev).unwrap()));
        assert!(e.contains("more than 1 value per channel"), "{d}: {e}");
        // [1, C, L] with L > 1 is fine in training (L values per channel).
        bn1.forward(&Tensor::rand_seeded(&[1, 3, 4], 1, &dev).unwrap())
            .unwrap();
        assert_eq!(bn1.num_batches_tracked().item().unwrap(), 1.0, "{d}");
        assert_eq!(bn2.num_batches_tracked().item().unwrap(), 0.0, "{d}");
        assert_eq!(host(&bn2.running_mean()), [0.0; 3], "{d}");
        // The op itself refuses the same, and bad arguments.
        use wgrad::ops::batchnorm::{batch_norm, BatchNormArgs};
        let x = Tensor::zeros(&[1, 3], &dev).unwrap();
        let e = err(batch_norm(&x, &BatchNormArgs::default()));
        assert!(e.contains("more than 1 value per channel"), "{d}: {e}");
        let x = Tensor::rand_seeded(&[4, 3], 2, &dev).unwrap();
        let short = Tensor::zeros(&[2], &dev).unwrap();
        let e = err(batch_norm(
            &x,
            &BatchNormArgs {
                weight: Some(&short),
                ..Default::default()
            },
        ));
        assert!(e.contains("weight must be [3]"), "{d}: {e}");
        let e = err(batch_norm(
            &x,
            &BatchNormArgs {
                training: false,
                ..Default::default()
            },
        ));
        assert!(e.contains("running_mean"), "{d}: {e}");
        let stats = Tensor::zeros(&[3], &dev).unwrap();
        let e = err(batch_norm(
            &x,
            &BatchNormArgs {
                running_mean: Some(&stats),
                running_var: Some(&stats),
                ..Default::default()
            },
        ));
        assert!(e.contains("share storage"), "{d}: {e}");

        // NaN in channel 1 poisons channel 1's outputs, its gradients and its running
        // statistics, and nothing else.
        let shape = [4, 3, 2, 2];
        let mut xv = f32s(&channel_data(&shape, 8));
        xv[4 + 2] = f32::NAN; // n = 0, c = 1
        let x = Tensor::from_vec(xv, &shape, &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let y = bn2.forward(&x).unwrap();
        y.sum().unwrap().backward().unwrap();
        let (yv, dx) = (host(&y), host(&x.grad().unwrap()));
        for i in 0..yv.len() {
            let c = (i / 4) % 3;
            assert_eq!(yv[i].is_nan(), c == 1, "{d}: y[{i}] = {}", yv[i]);
            assert_eq!(dx[i].is_nan(), c == 1, "{d}: dx[{i}] = {}", dx[i]);
        }
        for t in [bn2.running_mean(), bn2.running_var()] {
            let v = host(&t);
            assert!(
                !v[0].is_nan() && v[1].is_nan() && !v[2].is_nan(),
                "{d}: {v:?}"
            );
        }
        let dw = host(&bn2.weight.as_ref().unwrap().tensor().grad().unwrap());
        assert!(
            !dw[0].is_nan() && dw[1].is_nan() && !dw[2].is_nan(),
            "{d}: {dw:?}"
        );
        // dbias = sum(g) does not involve x.
        let db = host(&bn2.bias.as_ref().unwrap().tensor().grad().unwrap());
        assert_eq!(db, [16.0; 3], "{d}");

        // An empty batch in evaluation mode is an empty output with empty gradients.
        bn2.eval();
        let x = Tensor::zeros(&[0, 3, 4, 4], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let y = bn2.forward(&x).unwrap();
        assert_eq!(y.shape(), &[0, 3, 4, 4]);
        y.sum().unwrap().backward().unwrap();
        assert_eq!(x.grad().unwrap().shape(), &[0, 3, 4, 4]);
        let db = host(&bn2.bias.as_ref().unwrap().tensor().grad().unwrap());
        assert_eq!(db, [16.0; 3], "{d}: an empty batch adds nothing to dbias");
        }
);

/// The registry's batch_norm cases (which `tests/gradcheck.rs` checks) reach every
/// batch-norm kernel, and a layer whose channels split into blocks keeps every dispatch
/// to the GPU shape rules of `tests/gpu_work.rs`: no thread loops over more than 1,024
/// elements, no workgroup reduces more than 16K.
#[test]
fn every_batchnorm_kernel_is_reached_and_keeps_to_the_shape_rules() {
    let gpu = Device::gpu_with(wgrad::GpuOptions::from_env()).unwrap();
    let entry = wgrad::ops::registry::registry()
        .into_iter()
        .find(|e| e.name == "batch_norm")
        .expect("a batch_norm registry entry");
    let (_, profile) = gpu
        .profile(|| {
            for case in &entry.cases {
                let inputs: Vec<Tensor> = case
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        Tensor::randn_seeded(&s.shape, i as u64, &gpu)
                            .unwrap()
                            .requires_grad_(true)
                            .unwrap()
                    })
                    .collect();
                (case.run)(&inputs, &gpu)
                    .unwrap()
                    .sum()
                    .unwrap()
                    .backward()
                    .unwrap();
            }
            // 4 x 1 x 128 x 128 = 65,536 values in one channel: blocks of 4,096.
            let bn = BatchNorm2d::new(&gpu, 1);
            let x = Tensor::randn_seeded(&[4, 1, 128, 128], 9, &gpu)
                .unwrap()
                .requires_grad_(true)
                .unwrap();
            bn.forward(&x).unwrap().sum().unwrap().backward().unwrap();
        })
        .unwrap();
    for k in entry.kernels {
        assert!(
            profile.dispatches.iter().any(|d| d.kernel == *k),
            "no registry case launches {k}"
        );
    }
    for d in profile
        .dispatches
        .iter()
        .filter(|d| d.kernel.starts_with("bn_"))
    {
        assert!(
            !d.loops || d.serial > 0,
            "{} declares no serial work",
            d.kernel
        );
        assert!(d.serial <= 1024, "{} loops over {}", d.kernel, d.serial);
        assert!(
            d.reduced <= 16 * 1024 * d.workgroups,
            "{} reduces {} on {} workgroups",
            d.kernel,
            d.reduced,
            d.workgroups
        );
    }
}
