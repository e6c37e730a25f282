//! Recurrent layers: PyTorch's equations by hand for small LSTM and GRU layers with
//! known weights, the cells against the layers, a 10,000-step backward, steady-state
//! LSTM training on the GPU, truncated BPTT, and a safetensors round trip with
//! PyTorch's key names.

mod common;

use wgrad::nn::*;
use wgrad::optim::{Adam, Optimizer};
use wgrad::prelude::*;

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `W v` for a row-major `[rows, cols]` matrix.
fn mv(w: &[f64], v: &[f64], rows: usize) -> Vec<f64> {
    let cols = v.len();
    (0..rows)
        .map(|r| (0..cols).map(|c| w[r * cols + c] * v[c]).sum())
        .collect()
}

/// Deterministic "known" values in [-1, 1).
fn known(n: usize, salt: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 37 + salt * 11) % 23) as f32 / 11.5) - 1.0)
        .collect()
}

/// Sets every parameter of `m` to known values, returning them (as f64) by name.
fn set_known(m: &dyn Module) -> Vec<(String, Vec<f64>)> {
    m.named_parameters()
        .into_iter()
        .enumerate()
        .map(|(k, (name, t))| {
            let v = known(t.numel(), k + 1);
            let dev = t.device().clone();
            t.copy_from(&Tensor::from_vec(v.clone(), t.shape(), &dev).unwrap())
                .unwrap();
            (name, v.into_iter().map(f64::from).collect())
        })
        .collect()
}

fn get<'a>(p: &'a [(String, Vec<f64>)], name: &str) -> &'a [f64] {
    &p.iter().find(|(n, _)| n == name).unwrap().1
}

common::test_device!(
    an_lstm_gives_pytorchs_equations_by_hand_cpu,
    an_lstm_gives_pytorchs_equations_by_hand_gpu,
    |dev| {
        let (t_len, b, i, h) = (3, 2, 3, 2);
        let lstm = LSTM::new(&dev, i, h);
        let p = set_known(&lstm);
        let names: Vec<String> = lstm
            .named_parameters()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
        );
        let xs: Vec<f32> = known(t_len * b * i, 9);
        let x = Tensor::from_vec(xs.clone(), &[t_len, b, i], &dev).unwrap();
        let (out, state) = lstm.forward_with_state(&x, None).unwrap();
        let (wih, whh) = (get(&p, "weight_ih_l0"), get(&p, "weight_hh_l0"));
        let (bih, bhh) = (get(&p, "bias_ih_l0"), get(&p, "bias_hh_l0"));
        let mut want = Vec::new();
        let mut last = (vec![], vec![]);
        for n in 0..b {
            let (mut hv, mut cv) = (vec![0.0; h], vec![0.0; h]);
            let mut outs = Vec::new();
            for t in 0..t_len {
                let xv: Vec<f64> = (0..i).map(|k| xs[(t * b + n) * i + k] as f64).collect();
                let a: Vec<f64> = mv(wih, &xv, 4 * h)
                    .iter()
                    .zip(mv(whh, &hv, 4 * h))
                    .enumerate()
                    .map(|(r, (u, v))| u + v + bih[r] + bhh[r])
                    .collect();
                for j in 0..h {
                    let (ig, fg) = (sig(a[j]), sig(a[h + j]));
                    let (gg, og) = (a[2 * h + j].tanh(), sig(a[3 * h + j]));
                    cv[j] = fg * cv[j] + ig * gg;
                    hv[j] = og * cv[j].tanh();
                }
                outs.push(hv.clone());
            }
            want.push(outs);
            last.0.extend(hv.clone());
            last.1.extend(cv.clone());
        }
        let got = common::vec_f32(&out);
        for t in 0..t_len {
            for n in 0..b {
                for j in 0..h {
                    let g = got[(t * b + n) * h + j] as f64;
                    assert!(
                        (g - want[n][t][j]).abs() < 1e-5,
                        "{} t {t} n {n} j {j}",
                        dev.name()
                    );
                }
            }
        }
        let to64 = |t: &Tensor| {
            common::vec_f32(t)
                .into_iter()
                .map(f64::from)
                .collect::<Vec<_>>()
        };
        common::assert_close(&to64(&state.h), &last.0, 1e-5, 0.0, "final h");
        common::assert_close(
            &to64(state.c.as_ref().unwrap()),
            &last.1,
            1e-5,
            0.0,
            "final c",
        );
    }
);

common::test_device!(
    a_gru_gives_pytorchs_equations_by_hand_cpu,
    a_gru_gives_pytorchs_equations_by_hand_gpu,
    |dev| {
        let (t_len, b, i, h) = (4, 1, 2, 3);
        let gru = GRU::new(&dev, i, h);
        let p = set_known(&gru);
        let xs: Vec<f32> = known(t_len * b * i, 4);
        let x = Tensor::from_vec(xs.clone(), &[t_len, b, i], &dev).unwrap();
        let h0v = known(h, 2);
        let h0 = Tensor::from_vec(h0v.clone(), &[1, b, h], &dev).unwrap();
        let state = RecurrentState { h: h0, c: None };
        let (out, _) = gru.forward_with_state(&x, Some(&state)).unwrap();
        let (wih, whh) = (get(&p, "weight_ih_l0"), get(&p, "weight_hh_l0"));
        let (bih, bhh) = (get(&p, "bias_ih_l0"), get(&p, "bias_hh_l0"));
        let mut hv: Vec<f64> = h0v.iter().map(|&v| v as f64).collect();
        let got = common::vec_f32(&out);
        for t in 0..t_len {
            let xv: Vec<f64> = (0..i).map(|k| xs[t * i + k] as f64).collect();
            let gi: Vec<f64> = mv(wih, &xv, 3 * h)
                .iter()
                .zip(bih)
                .map(|(a, b)| a + b)
                .collect();
            let gh: Vec<f64> = mv(whh, &hv, 3 * h)
                .iter()
                .zip(bhh)
                .map(|(a, b)| a + b)
                .collect();
            let next: Vec<f64> = (0..h)
                .map(|j| {
                    let r = sig(gi[j] + gh[j]);
                    let z = sig(gi[h + j] + gh[h + j]);
                    let n = (gi[2 * h + j] + r * gh[2 * h + j]).tanh();
                    (1.0 - z) * n + z * hv[j]
                })
                .collect();
            hv = next;
            for j in 0..h {
                assert!(
                    (got[t * h + j] as f64 - hv[j]).abs() < 1e-5,
                    "{} t {t}",
                    dev.name()
                );
            }
        }
    }
);

/// Cells share the layers' math: an LSTMCell/GRUCell/RNNCell stepped by hand over a
/// sequence matches the layer with the same weights.
#[test]
fn cells_stepped_by_hand_match_the_layers() {
    let dev = Device::cpu();
    let x = Tensor::randn_seeded(&[5, 2, 3], 7, &dev).unwrap();
    let lstm = LSTM::new(&dev, 3, 4);
    let cell = LSTMCell::new(&dev, 3, 4);
    for ((_, a), (_, b)) in lstm.named_parameters().iter().zip(cell.named_parameters()) {
        b.copy_from(a).unwrap();
    }
    let gru = GRU::new(&dev, 3, 4);
    let gcell = GRUCell::new(&dev, 3, 4);
    for ((_, a), (_, b)) in gru.named_parameters().iter().zip(gcell.named_parameters()) {
        b.copy_from(a).unwrap();
    }
    let rnn = RNN::new(&dev, 3, 4);
    let rcell = RNNCell::new(&dev, 3, 4);
    for ((_, a), (_, b)) in rnn.named_parameters().iter().zip(rcell.named_parameters()) {
        b.copy_from(a).unwrap();
    }
    let (want_l, want_g, want_r) = (
        lstm.forward(&x).unwrap(),
        gru.forward(&x).unwrap(),
        rnn.forward(&x).unwrap(),
    );
    let (mut hc, mut hg, mut hr): (Option<(Tensor, Tensor)>, Option<Tensor>, Option<Tensor>) =
        (None, None, None);
    for t in 0..5 {
        let xt = x.narrow(0, t, 1).unwrap().squeeze(0).unwrap();
        let next = cell.step(&xt, hc.as_ref().map(|(h, c)| (h, c))).unwrap();
        hc = Some(next);
        hg = Some(gcell.step(&xt, hg.as_ref()).unwrap());
        hr = Some(rcell.step(&xt, hr.as_ref()).unwrap());
        for (got, want) in [
            (&hc.as_ref().unwrap().0, &want_l),
            (hg.as_ref().unwrap(), &want_g),
            (hr.as_ref().unwrap(), &want_r),
        ] {
            let w = want.narrow(0, t, 1).unwrap().squeeze(0).unwrap();
            common::assert_close(
                &common::vec_f32(got),
                &common::vec_f32(&w),
                1e-5,
                0.0,
                "cell vs layer",
            );
        }
    }
}

/// Backpropagation through 10,000 steps: one graph node per layer, so no deep recursion
/// and no stack overflow; the gradient reaches the first input.
#[test]
fn a_ten_thousand_step_sequence_backpropagates_on_the_cpu() {
    let dev = Device::cpu();
    dev.manual_seed(3);
    let lstm = LSTM::new(&dev, 2, 3);
    let x = Tensor::randn_seeded(&[10_000, 1, 2], 5, &dev)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let out = lstm.forward(&x).unwrap();
    out.sum().unwrap().backward().unwrap();
    let gx = x.grad().unwrap();
    assert_eq!(gx.shape(), [10_000, 1, 2]);
    assert!(common::vec_f32(&gx).iter().all(|v| v.is_finite()));
    let gw = lstm.named_parameters()[1].1.grad().unwrap();
    assert!(common::vec_f32(&gw).iter().any(|&v| v != 0.0));
}

/// Truncated BPTT: the state carried into the next chunk is detached, so the second
/// chunk's backward leaves the first chunk's input without a gradient.
#[test]
fn truncated_bptt_stops_at_the_detached_state() {
    let dev = Device::cpu();
    let lstm = LSTM::new(&dev, 2, 3);
    let a = Tensor::randn_seeded(&[4, 1, 2], 1, &dev)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let b = Tensor::randn_seeded(&[4, 1, 2], 2, &dev)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let (_, s) = lstm.forward_with_state(&a, None).unwrap();
    let (out, _) = lstm.forward_with_state(&b, Some(&s.detach())).unwrap();
    out.sum().unwrap().backward().unwrap();
    assert!(a.grad().is_none());
    assert!(b.grad().is_some());
    // Without the detach the gradient flows back into the first chunk.
    let (out, _) = lstm.forward_with_state(&b, Some(&s)).unwrap();
    out.sum().unwrap().backward().unwrap();
    assert!(a.grad().is_some());
}

#[test]
fn steady_state_lstm_training_on_the_gpu_creates_no_new_buffers() {
    let _serial = common::exclusive();
    let dev = common::gpu();
    dev.manual_seed(1);
    let emb = Embedding::new(&dev, 11, 6);
    let lstm = LSTM::with_options(
        &dev,
        6,
        8,
        RecurrentOptions {
            num_layers: 2,
            dropout: 0.2,
            ..Default::default()
        },
    )
    .unwrap();
    let head = Linear::new(&dev, 8, 11);
    let mut params = emb.parameters();
    params.extend(lstm.parameters());
    params.extend(head.parameters());
    let mut opt = Adam::new(params, 1e-2);
    let step = |opt: &mut Adam, s: usize| {
        let idx: Vec<u32> = (0..5 * 3).map(|i| ((i * 7 + s) % 11) as u32).collect();
        let tgt: Vec<u32> = (0..5 * 3).map(|i| ((i * 7 + s + 1) % 11) as u32).collect();
        let idx = Tensor::from_vec(idx, &[5, 3], &dev).unwrap();
        let tgt = Tensor::from_vec(tgt, &[15], &dev).unwrap();
        opt.zero_grad();
        let out = lstm.forward(&emb.forward(&idx).unwrap()).unwrap();
        let logits = head.forward(&out.reshape(&[15, 8]).unwrap()).unwrap();
        let loss = logits.cross_entropy(&tgt).unwrap();
        loss.backward().unwrap();
        opt.step().unwrap();
        loss.item().unwrap()
    };
    let first = step(&mut opt, 0);
    step(&mut opt, 1);
    let warm = dev.counters();
    let mut last = first;
    for s in 2..=40 {
        last = step(&mut opt, s);
        assert!(last.is_finite());
    }
    let after = dev.counters();
    assert_eq!(after.buffers_created, warm.buffers_created, "buffers");
    assert_eq!(after.pipelines_created, warm.pipelines_created, "pipelines");
    assert!(last < first, "the loss fell: {first} -> {last}");
}

#[test]
fn an_lstm_round_trips_through_safetensors_with_pytorchs_names() {
    let dev = Device::cpu();
    let opts = RecurrentOptions {
        num_layers: 2,
        ..Default::default()
    };
    let a = LSTM::with_options(&dev, 3, 5, opts).unwrap();
    let names: Vec<String> = a.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "weight_ih_l0",
            "weight_hh_l0",
            "bias_ih_l0",
            "bias_hh_l0",
            "weight_ih_l1",
            "weight_hh_l1",
            "bias_ih_l1",
            "bias_hh_l1"
        ]
    );
    let shapes: Vec<Vec<usize>> = a
        .named_parameters()
        .iter()
        .map(|(_, t)| t.shape().to_vec())
        .collect();
    assert_eq!(shapes[0], [20, 3]);
    assert_eq!(shapes[4], [20, 5]);
    let path = std::env::temp_dir().join(format!("wgrad_lstm_{}.safetensors", std::process::id()));
    wgrad::io::save(&a, &path).unwrap();
    let b = LSTM::with_options(&dev, 3, 5, opts).unwrap();
    wgrad::io::load(&b, &path).unwrap();
    let x = Tensor::randn_seeded(&[4, 2, 3], 3, &dev).unwrap();
    assert_eq!(
        common::vec_f32(&a.forward(&x).unwrap()),
        common::vec_f32(&b.forward(&x).unwrap())
    );
    std::fs::remove_file(&path).ok();
}

#[test]
fn wrong_shapes_are_clear_errors() {
    let dev = Device::cpu();
    let lstm = LSTM::new(&dev, 3, 4);
    let err = lstm
        .forward(&Tensor::zeros(&[5, 2, 4], &dev).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected [T, B, 3]"), "{err}");
    let bad = RecurrentState {
        h: Tensor::zeros(&[2, 2, 4], &dev).unwrap(),
        c: Some(Tensor::zeros(&[2, 2, 4], &dev).unwrap()),
    };
    let err = lstm
        .forward_with_state(&Tensor::zeros(&[5, 2, 3], &dev).unwrap(), Some(&bad))
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected [1, 2, 4]"), "{err}");
    assert!(LSTM::with_options(
        &dev,
        3,
        4,
        RecurrentOptions {
            dropout: 1.0,
            ..Default::default()
        }
    )
    .is_err());
}

/// The recurrent layers' dispatch budgets on the GPU: per time step forward and backward
/// together, an Elman layer takes 2 dispatches (one fused product each way), an LSTM or
/// a GRU 4 (a product and a cell kernel each way), plus a fixed few per layer.
#[test]
fn recurrent_layers_take_a_few_dispatches_per_step() {
    let dev = Device::gpu_with(wgrad::GpuOptions::from_env()).unwrap();
    let (t, b, i, h) = (16usize, 4usize, 5usize, 8usize);
    for (name, per_step, fixed) in [("rnn", 2usize, 16usize), ("lstm", 4, 24), ("gru", 4, 16)] {
        dev.manual_seed(3);
        let layer: Box<dyn Module> = match name {
            "rnn" => Box::new(RNN::new(&dev, i, h)),
            "lstm" => Box::new(LSTM::new(&dev, i, h)),
            _ => Box::new(GRU::new(&dev, i, h)),
        };
        let x = Tensor::randn_seeded(&[t, b, i], 4, &dev).unwrap();
        let run = || {
            let y = layer.forward(&x).unwrap();
            y.sum().unwrap().backward().unwrap();
            dev.sync().unwrap();
        };
        run();
        let before = dev.counters().dispatches;
        run();
        let used = (dev.counters().dispatches - before) as usize;
        println!("{name}: {used} dispatches for {t} steps forward and backward");
        assert!(
            used <= per_step * t + fixed,
            "{name}: {used} dispatches for {t} steps (budget {})",
            per_step * t + fixed
        );
    }
}

common::test_device!(
    empty_batches_and_zero_hidden_sizes_run_forward_and_backward_cpu,
    empty_batches_and_zero_hidden_sizes_run_forward_and_backward_gpu,
    |dev| {
        // Keeps the buffer counts of the steady-state test its own.
        let _serial = common::exclusive();
        use wgrad::ops::rnn::{rnn_layer, LayerWeights, RnnMode};
        for mode in [RnnMode::Tanh, RnnMode::Relu, RnnMode::Lstm, RnnMode::Gru] {
            for &(t, b, i, h) in &[(3usize, 0usize, 2usize, 3usize), (2, 2, 3, 0), (2, 2, 0, 3)] {
                let g = mode.gates();
                let p = |shape: &[usize]| {
                    let n = shape.iter().product();
                    Tensor::from_vec(vec![0.25f32; n], shape, &dev)
                        .unwrap()
                        .requires_grad_(true)
                        .unwrap()
                };
                let (x, w_ih, w_hh) = (p(&[t, b, i]), p(&[g * h, i]), p(&[g * h, h]));
                let (b_ih, b_hh, h0) = (p(&[g * h]), p(&[g * h]), p(&[b, h]));
                let c0 = (mode == RnnMode::Lstm).then(|| p(&[b, h]));
                let w = LayerWeights {
                    w_ih: &w_ih,
                    w_hh: &w_hh,
                    b_ih: Some(&b_ih),
                    b_hh: Some(&b_hh),
                };
                let (y, h_last, c_last) = rnn_layer(mode, &x, w, &h0, c0.as_ref()).unwrap();
                assert_eq!(y.shape(), [t, b, h], "{mode:?} {t} {b} {i} {h}");
                assert_eq!(h_last.shape(), [b, h]);
                assert_eq!(c_last.is_some(), mode == RnnMode::Lstm);
                y.sum().unwrap().backward().unwrap();
                for (name, p) in [("w_hh", &w_hh), ("b_ih", &b_ih), ("x", &x)] {
                    let grad = p.grad().expect(name);
                    assert_eq!(grad.shape(), p.shape(), "{mode:?} {name}");
                    assert!(grad.to_vec::<f32>().unwrap().iter().all(|v| v.is_finite()));
                }
                dev.sync().unwrap();
            }
        }
    }
);
