//! Bidirectional recurrent layers: PyTorch's own bidirectional LSTM, GRU and RNN state
//! dicts load under PyTorch's parameter names and give PyTorch's outputs, final states
//! and gradients (`tests/fixtures/make_torch_birnn_fixture.py` wrote the file); the
//! reverse direction against the forward one on a flipped sequence; the state's shape
//! checks; and an empty batch.

mod common;

use wgrad::nn::*;
use wgrad::ops::rnn::{rnn_layer, rnn_layer_reverse, LayerWeights, RnnMode};
use wgrad::prelude::*;

/// The fixture's tensors, on `dev`.
fn fixture(dev: &Device) -> Vec<(String, Tensor)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch_birnn.safetensors");
    wgrad::io::read_safetensors(&path, dev).unwrap()
}

fn get(file: &[(String, Tensor)], name: &str) -> Tensor {
    file.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} missing from the fixture"))
        .1
        .clone()
}

fn close(got: &Tensor, want: &Tensor, tol: f64, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    common::assert_close(
        &common::vec_f32(got),
        &common::vec_f32(want),
        tol,
        tol,
        what,
    );
}

/// Loads the fixture's `name` model into `layer`, runs it from the fixture's initial
/// states and compares everything PyTorch recorded.
fn check_against_pytorch(dev: &Device, name: &str, layer: &Recurrent, module: &dyn Module) {
    let file = fixture(dev);
    let prefix = format!("{name}.");
    let state: Vec<(String, Tensor)> = file
        .iter()
        .filter_map(|(n, t)| n.strip_prefix(&prefix).map(|k| (k.to_string(), t.clone())))
        .filter(|(k, _)| k.contains("_l") && !k.starts_with("grad."))
        .collect();
    // PyTorch's names and shapes (the file stores them sorted by name) ...
    let mut ours: Vec<(String, Vec<usize>)> = module
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec()))
        .collect();
    let order: Vec<String> = ours.iter().map(|(n, _)| n.clone()).collect();
    ours.sort();
    let mut theirs: Vec<(String, Vec<usize>)> = state
        .iter()
        .map(|(n, t)| (n.clone(), t.shape().to_vec()))
        .collect();
    theirs.sort();
    assert_eq!(ours, theirs, "{name}: parameter names and shapes");
    // ... in the order of PyTorch's state_dict: per layer, forward then `_reverse`.
    let layers = order.len() / 8;
    let want: Vec<String> = (0..layers)
        .flat_map(|l| {
            ["", "_reverse"].into_iter().flat_map(move |sfx| {
                ["weight_ih", "weight_hh", "bias_ih", "bias_hh"].map(|p| format!("{p}_l{l}{sfx}"))
            })
        })
        .collect();
    assert_eq!(order, want, "{name}: parameter order");
    module.load_state_dict(&state).unwrap();
    let f = |k: &str| get(&file, &format!("{name}.{k}"));
    let x = f("x").requires_grad_(true).unwrap();
    let h0 = f("h0").requires_grad_(true).unwrap();
    let lstm = name == "lstm";
    let c0 = lstm.then(|| f("c0").requires_grad_(true).unwrap());
    let start = RecurrentState {
        h: h0.clone(),
        c: c0.clone(),
    };
    let (out, fin) = layer.forward_with_state(&x, Some(&start)).unwrap();
    let tol = if dev.is_gpu() { 2e-5 } else { 1e-5 };
    close(&out, &f("out"), tol, &format!("{name} output"));
    close(&fin.h, &f("h_n"), tol, &format!("{name} h_n"));
    if lstm {
        close(fin.c.as_ref().unwrap(), &f("c_n"), tol, "lstm c_n");
    }
    out.sum().unwrap().backward().unwrap();
    close(
        &x.grad().unwrap(),
        &f("dx"),
        tol,
        &format!("{name} d input"),
    );
    close(&h0.grad().unwrap(), &f("dh0"), tol, &format!("{name} d h0"));
    if let Some(c0) = &c0 {
        close(&c0.grad().unwrap(), &f("dc0"), tol, "lstm d c0");
    }
    for (pname, p) in module.named_parameters() {
        let want = f(&format!("grad.{pname}"));
        close(
            &p.grad().unwrap(),
            &want,
            4.0 * tol,
            &format!("{name} d {pname}"),
        );
    }
}

common::test_device!(
    /// A 2-layer bidirectional LSTM (`[T, B, I]`) loads PyTorch's state dict and gives
    /// its output, `h_n`, `c_n` and the gradients of `sum(output)`.
    a_pytorch_bidirectional_lstm_loads_and_matches_cpu,
    a_pytorch_bidirectional_lstm_loads_and_matches_gpu,
    |dev| {
        let opts = RecurrentOptions {
            num_layers: 2,
            bidirectional: true,
            ..Default::default()
        };
        let lstm = LSTM::with_options(&dev, 3, 4, opts).unwrap();
        check_against_pytorch(&dev, "lstm", &lstm, &lstm);
    }
);

common::test_device!(
    /// A 2-layer bidirectional GRU with `batch_first` matches PyTorch's.
    a_pytorch_bidirectional_gru_loads_and_matches_cpu,
    a_pytorch_bidirectional_gru_loads_and_matches_gpu,
    |dev| {
        let opts = RecurrentOptions {
            num_layers: 2,
            bidirectional: true,
            batch_first: true,
            ..Default::default()
        };
        let gru = GRU::with_options(&dev, 3, 4, opts).unwrap();
        check_against_pytorch(&dev, "gru", &gru, &gru);
    }
);

common::test_device!(
    /// A 1-layer bidirectional tanh RNN with `batch_first` matches PyTorch's.
    a_pytorch_bidirectional_rnn_loads_and_matches_cpu,
    a_pytorch_bidirectional_rnn_loads_and_matches_gpu,
    |dev| {
        let opts = RecurrentOptions {
            bidirectional: true,
            batch_first: true,
            ..Default::default()
        };
        let rnn = RNN::with_options(&dev, 3, 4, false, opts).unwrap();
        check_against_pytorch(&dev, "rnn", &rnn, &rnn);
    }
);

/// `x` `[T, ...]` with its steps in reverse order.
fn flip(x: &Tensor) -> Tensor {
    let t = x.shape()[0] as u32;
    let idx = Tensor::from_vec(
        (0..t).rev().collect::<Vec<u32>>(),
        &[t as usize],
        x.device(),
    )
    .unwrap();
    x.index_select(0, &idx).unwrap()
}

common::test_device!(
    /// The reverse direction is the forward recurrence over the flipped sequence, its
    /// output flipped back, for every cell; and so are the gradients of every input.
    the_reverse_direction_is_the_forward_one_on_the_flipped_sequence_cpu,
    the_reverse_direction_is_the_forward_one_on_the_flipped_sequence_gpu,
    |dev| {
        let (t, b, i, h) = (4, 2, 3, 5);
        for (k, mode) in [RnnMode::Tanh, RnnMode::Relu, RnnMode::Lstm, RnnMode::Gru]
            .into_iter()
            .enumerate()
        {
            let g = mode.gates();
            let lstm = mode == RnnMode::Lstm;
            let r = |shape: &[usize], s: u64| {
                Tensor::randn_seeded(shape, 10 * k as u64 + s, &dev)
                    .unwrap()
                    .mul_scalar(0.5)
                    .unwrap()
            };
            let x = r(&[t, b, i], 1);
            let (w_ih, w_hh, b_ih, b_hh) = (r(&[g * h, i], 2), r(&[g * h, h], 3), r(&[g * h], 4), r(&[g * h], 5));
            let (h0, c0) = (r(&[b, h], 6), r(&[b, h], 7));
            let run = |reverse: bool| {
                let leaves: Vec<Tensor> = [&x, &w_ih, &w_hh, &b_ih, &b_hh, &h0, &c0]
                    .iter()
                    .map(|t| t.detach().requires_grad_(true).unwrap())
                    .collect();
                let [x, w_ih, w_hh, b_ih, b_hh, h0, c0] = &leaves[..] else {
                    unreachable!()
                };
                let w = LayerWeights {
                    w_ih,
                    w_hh,
                    b_ih: Some(b_ih),
                    b_hh: Some(b_hh),
                };
                let c0 = lstm.then_some(c0);
                let (out, h_n, c_n) = if reverse {
                    rnn_layer_reverse(mode, x, w, h0, c0).unwrap()
                } else {
                    let (out, h_n, c_n) = rnn_layer(mode, &flip(x), w, h0, c0).unwrap();
                    (flip(&out), h_n, c_n)
                };
                // A loss that weighs every step and the final states differently.
                let weights = Tensor::randn_seeded(&[t, b, h], 99, out.device()).unwrap();
                let mut loss = out.mul(&weights).unwrap().sum().unwrap();
                loss = loss.add(&h_n.mul_scalar(2.0).unwrap().sum().unwrap()).unwrap();
                if let Some(c) = &c_n {
                    loss = loss.add(&c.mul_scalar(3.0).unwrap().sum().unwrap()).unwrap();
                }
                loss.backward().unwrap();
                let mut got = vec![out, h_n];
                got.extend(c_n);
                let n = if lstm { 7 } else { 6 };
                got.extend(leaves[..n].iter().map(|l| l.grad().unwrap()));
                got
            };
            let (rev, flipped) = (run(true), run(false));
            for (j, (a, e)) in rev.iter().zip(&flipped).enumerate() {
                close(a, e, 2e-5, &format!("{mode:?} result {j}"));
            }
        }
    }
);

common::test_device!(
    /// An initial state with `num_layers` instead of `2 * num_layers` states is an error
    /// naming the expected shape, for `h` and an LSTM's `c`; nothing runs.
    a_bidirectional_state_of_the_wrong_size_is_an_error_cpu,
    a_bidirectional_state_of_the_wrong_size_is_an_error_gpu,
    |dev| {
        let opts = RecurrentOptions {
            num_layers: 2,
            bidirectional: true,
            ..Default::default()
        };
        let lstm = LSTM::with_options(&dev, 3, 4, opts).unwrap();
        let x = Tensor::zeros(&[5, 2, 3], &dev).unwrap();
        let short = Tensor::zeros(&[2, 2, 4], &dev).unwrap();
        let full = Tensor::zeros(&[4, 2, 4], &dev).unwrap();
        for (h, c, which) in [(&short, &full, "h"), (&full, &short, "c")] {
            let state = RecurrentState {
                h: h.clone(),
                c: Some(c.clone()),
            };
            let msg = lstm.forward_with_state(&x, Some(&state)).unwrap_err().to_string();
            assert!(
                msg.contains(&format!("state {which} [2, 2, 4]"))
                    && msg.contains("expected [4, 2, 4]")
                    && msg.contains("2 * num_layers"),
                "{msg}"
            );
        }
        // The zero state has the bidirectional layout.
        assert_eq!(lstm.zero_state(2, &dev).unwrap().h.shape(), [4, 2, 4]);
        assert_eq!(lstm.num_directions(), 2);
        dev.sync().unwrap();
    }
);

common::test_device!(
    /// An empty batch gives empty outputs and states of the bidirectional shapes, and
    /// backpropagates.
    a_bidirectional_layer_runs_an_empty_batch_cpu,
    a_bidirectional_layer_runs_an_empty_batch_gpu,
    |dev| {
        let opts = RecurrentOptions {
            num_layers: 2,
            bidirectional: true,
            batch_first: true,
            ..Default::default()
        };
        let gru = GRU::with_options(&dev, 3, 4, opts).unwrap();
        let x = Tensor::zeros(&[0, 5, 3], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let (out, state) = gru.forward_with_state(&x, None).unwrap();
        assert_eq!(out.shape(), [0, 5, 8]);
        assert_eq!(state.h.shape(), [4, 0, 4]);
        out.sum().unwrap().backward().unwrap();
        assert_eq!(x.grad().unwrap().shape(), [0, 5, 3]);
        let w = gru.named_parameters();
        let (_, w_rev) = w.iter().find(|(n, _)| n == "weight_hh_l1_reverse").unwrap();
        assert_eq!(common::vec_f32(&w_rev.grad().unwrap()), vec![0.0; 48]);
    }
);

/// On the GPU a bidirectional layer costs exactly the dispatches of its two directions
/// (each its own recurrence, kernel for kernel those of a unidirectional layer), plus
/// two copies joining their outputs and two scatters splitting the gradient: no
/// per-step flips or copies. (Its own device, so no other test's dispatches count.)
#[test]
fn a_bidirectional_layer_takes_twice_the_dispatches_plus_a_join() {
    let dev = Device::gpu_with(wgrad::GpuOptions::from_env()).unwrap();
    let (t, b, i, h) = (12usize, 3usize, 5usize, 8usize);
    for name in ["rnn", "lstm", "gru"] {
        let kernels = |bidirectional: bool| {
            let opts = RecurrentOptions {
                bidirectional,
                ..Default::default()
            };
            let layer: Box<dyn Module> = match name {
                "rnn" => Box::new(RNN::with_options(&dev, i, h, false, opts).unwrap()),
                "lstm" => Box::new(LSTM::with_options(&dev, i, h, opts).unwrap()),
                _ => Box::new(GRU::with_options(&dev, i, h, opts).unwrap()),
            };
            let x = Tensor::randn_seeded(&[t, b, i], 4, &dev).unwrap();
            let run = || {
                let y = layer.forward(&x).unwrap();
                y.sum().unwrap().backward().unwrap();
                dev.sync().unwrap();
            };
            run();
            let (_, profile) = dev.profile(run).unwrap();
            let mut count = std::collections::BTreeMap::<String, usize>::new();
            for d in &profile.dispatches {
                *count.entry(d.kernel.clone()).or_default() += 1;
            }
            count
        };
        let (one, mut two) = (kernels(false), kernels(true));
        println!("{name}: one way {one:?}\nboth ways {two:?}");
        let total = |m: &std::collections::BTreeMap<String, usize>| m.values().sum::<usize>();
        assert!(total(&one) > 2 * t, "{name}: {one:?}");
        for (kernel, n) in &one {
            let got = two.remove(kernel).unwrap_or(0);
            match kernel.as_str() {
                // The loss's sum and its backward are shared.
                "sum_fwd" | "sum_bwd" => assert_eq!(got, *n, "{name}: {kernel}"),
                // So are the zero states (one fill each for h and c), but not the
                // drivers' zeroed buffers.
                "fill_fwd" => assert!(*n <= got && got < 2 * n, "{name}: {kernel} {got}"),
                _ => assert_eq!(got, 2 * n, "{name}: {kernel}"),
            }
        }
        let join: std::collections::BTreeMap<String, usize> = [
            ("strided_copy_fwd".to_string(), 2),
            ("strided_scatter_fwd".to_string(), 2),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            two, join,
            "{name}: the dispatches besides the two directions'"
        );
    }
}

common::test_device!(
    /// Bidirectional with the other options: without biases only the weights exist
    /// (`weight_ih_l1_reverse` reads `2H` features); dropout between layers in training;
    /// and a final state feeds the next chunk (truncated BPTT).
    bidirectional_combines_with_the_other_options_cpu,
    bidirectional_combines_with_the_other_options_gpu,
    |dev| {
        let opts = RecurrentOptions {
            num_layers: 2,
            bias: false,
            dropout: 0.5,
            bidirectional: true,
            ..Default::default()
        };
        let lstm = LSTM::with_options(&dev, 3, 4, opts).unwrap();
        let names: Vec<(String, Vec<usize>)> = lstm
            .named_parameters()
            .into_iter()
            .map(|(n, t)| (n, t.shape().to_vec()))
            .collect();
        let want = [
            ("weight_ih_l0", [16, 3]),
            ("weight_hh_l0", [16, 4]),
            ("weight_ih_l0_reverse", [16, 3]),
            ("weight_hh_l0_reverse", [16, 4]),
            ("weight_ih_l1", [16, 8]),
            ("weight_hh_l1", [16, 4]),
            ("weight_ih_l1_reverse", [16, 8]),
            ("weight_hh_l1_reverse", [16, 4]),
        ]
        .map(|(n, s)| (n.to_string(), s.to_vec()));
        assert_eq!(names, want);
        lstm.train();
        let x = Tensor::randn_seeded(&[6, 2, 3], 5, &dev).unwrap();
        let (out, state) = lstm.forward_with_state(&x, None).unwrap();
        assert_eq!(out.shape(), [6, 2, 8]);
        let (next, next_state) = lstm
            .forward_with_state(&x, Some(&state.detach()))
            .unwrap();
        assert_eq!(next_state.c.unwrap().shape(), [4, 2, 4]);
        next.sum().unwrap().backward().unwrap();
        for (name, p) in lstm.named_parameters() {
            let g = common::vec_f32(&p.grad().unwrap());
            assert!(g.iter().all(|v| v.is_finite()), "{name}");
            assert!(g.iter().any(|&v| v != 0.0), "{name}: no gradient reached it");
        }
    }
);
