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

#[track_caller]
fn close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w} (tolerance {tol})"
        );
    }
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
    let m = bn.momentum as f64;
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
            close(
                &host(&bn.running_mean()),
                &rm,
                1e-5,
                &format!("running_mean {what}"),
            );
            close(
                &host(&bn.running_var()),
                &rv,
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
    close(&host(&bn.running_mean()), &[0.4], 1e-6, "running_mean");
    close(
        &host(&bn.running_var()),
        &[0.9 + 0.1 * 38.0 / 3.0],
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
    close(&y, &want, 1e-5, "eval output");
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
    close(&mean, &beta, 1e-5, "training mean");
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
        .requires_grad_(true);
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
        close(&dx, &fd_x, 1e-6, &format!("{mode} dL/dx"));
        close(&dw, &fd_w, 1e-6, &format!("{mode} dL/dweight"));
        close(&db, &fd_b, 1e-6, &format!("{mode} dL/dbias"));
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
                .affine(1.0 + step as f32, step as f32)
                .unwrap()
                .requires_grad_(true);
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
                .requires_grad_(true);
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
        common::assert_close(g, c, 2e-5 * scale, name);
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
    close(&mean, &[0.0, 0.0], 1e-5, "mean");
    close(&var, &[1.0, 1.0], 1e-3, "var");
    bn.reset_running_stats().unwrap();
    assert_eq!(host(&bn.running_mean()), [0.0, 0.0]);
    assert_eq!(host(&bn.running_var()), [1.0, 1.0]);
    assert_eq!(bn.num_batches_tracked().item().unwrap(), 0.0);
}

#[test]
fn flatten_keeps_the_batch_dimension_like_torch() {
    for dev in common::devices() {
        let x = Tensor::randn_seeded(&[2, 3, 4, 5], 4, &dev)
            .unwrap()
            .requires_grad_(true);
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
}

/// PyTorch's own BatchNorm2d state (num_batches_tracked stored as int64) loads, and the
/// layer then gives PyTorch's eval and train outputs and running statistics, on each
/// device (`tests/fixtures/make_torch_bn_fixture.py` wrote the file).
#[test]
fn a_pytorch_batchnorm_state_dict_loads_and_matches_its_outputs() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch_bn.safetensors");
    for dev in common::devices() {
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
            "eval output",
        );
        bn.train();
        let y = bn.forward(&x).unwrap();
        common::assert_close(
            &y.to_vec::<f32>().unwrap(),
            &get("train_out").to_vec::<f32>().unwrap(),
            1e-5,
            "train output",
        );
        common::assert_close(
            &bn.running_mean().to_vec::<f32>().unwrap(),
            &get("running_mean_after").to_vec::<f32>().unwrap(),
            1e-5,
            "running mean",
        );
        common::assert_close(
            &bn.running_var().to_vec::<f32>().unwrap(),
            &get("running_var_after").to_vec::<f32>().unwrap(),
            1e-5,
            "running var",
        );
        assert_eq!(bn.num_batches_tracked().to_vec::<f32>().unwrap(), vec![4.0]);
    }
}
