//! Layer, RMS and group normalisation: PyTorch's outputs and gradients (from
//! `tests/fixtures/make_torch_norm_fixture.py`), NaN staying in its row, errors for bad
//! arguments, empty batches, and the GPU's dispatch counts. The registry
//! (`src/ops/registry/row_norm.rs`) holds the finite-difference and GPU-vs-CPU cases.

mod common;

use wgrad::nn::{GroupNorm, GroupNormOptions, LayerNorm, Module, RMSNorm, Sequential};
use wgrad::prelude::*;

/// The fixture's tensors on `dev`.
fn fixture(dev: &Device) -> impl Fn(&str) -> Tensor {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch_norm.safetensors");
    let file = wgrad::io::read_safetensors(&path, dev).unwrap();
    move |name: &str| {
        file.iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} missing from the fixture"))
            .1
            .clone()
    }
}

#[track_caller]
fn close(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes differ");
    common::assert_close(
        &got.to_vec::<f32>().unwrap(),
        &want.to_vec::<f32>().unwrap(),
        2e-5,
        1e-4,
        what,
    );
}

/// `sum(y * proj)` backward, then each tensor's gradient against PyTorch's.
#[track_caller]
fn check_grads(get: &dyn Fn(&str) -> Tensor, prefix: &str, y: &Tensor, with: &[(&str, &Tensor)]) {
    close(
        y,
        &get(&format!("{prefix}_out")),
        &format!("{prefix} output"),
    );
    y.mul(&get(&format!("{prefix}_proj")))
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    for (name, t) in with {
        close(
            &t.grad().unwrap(),
            &get(&format!("{prefix}_d{name}")),
            &format!("{prefix} d{name}"),
        );
    }
}

common::test_device!(
    /// PyTorch's state_dict of Sequential(Linear, LayerNorm, ReLU, Linear) loads into the
    /// same wgrad Sequential (names `1.weight`, `1.bias`), which gives PyTorch's output.
    a_pytorch_layernorm_mlp_loads_and_gives_its_outputs_cpu,
    a_pytorch_layernorm_mlp_loads_and_gives_its_outputs_gpu,
    |dev| {
        let get = fixture(&dev);
        let mlp = Sequential::new()
            .add(Linear::new(&dev, 6, 10))
            .add(LayerNorm::new(&dev, &[10]).unwrap())
            .add(ReLU)
            .add(Linear::new(&dev, 10, 3));
        let names: Vec<String> = mlp.state_dict().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
        );
        let state: Vec<(String, Tensor)> = names
            .iter()
            .map(|n| (n.clone(), get(&format!("mlp.{n}"))))
            .collect();
        mlp.load_state_dict(&state).unwrap();
        close(&mlp.forward(&get("mlp_x")).unwrap(), &get("mlp_out"), "mlp output");
    }
);

common::test_device!(
    /// LayerNorm over two trailing dimensions, RMSNorm with PyTorch's default eps, and
    /// GroupNorm (2 groups, and 6 groups without affine: instance norm) give PyTorch's
    /// outputs and the gradients of the input, weight and bias.
    norm_layers_give_pytorchs_outputs_and_gradients_cpu,
    norm_layers_give_pytorchs_outputs_and_gradients_gpu,
    |dev| {
        let get = fixture(&dev);
        let leaf = |name: &str| get(name).requires_grad_(true).unwrap();

        let ln = LayerNorm::new(&dev, &[3, 4]).unwrap();
        let state = [
            ("weight".to_string(), get("ln_weight")),
            ("bias".to_string(), get("ln_bias")),
        ];
        ln.load_state_dict(&state).unwrap();
        let x = leaf("ln_x");
        let y = ln.forward(&x).unwrap();
        let (w, b) = (ln.weight.as_ref().unwrap().tensor(), ln.bias.as_ref().unwrap().tensor());
        check_grads(&get, "ln", &y, &[("x", &x), ("weight", &w), ("bias", &b)]);

        let rms = RMSNorm::new(&dev, &[5]).unwrap();
        assert_eq!(rms.eps, None);
        rms.load_state_dict(&[("weight".to_string(), get("rms_weight"))]).unwrap();
        let x = leaf("rms_x");
        let y = rms.forward(&x).unwrap();
        let w = rms.weight.as_ref().unwrap().tensor();
        check_grads(&get, "rms", &y, &[("x", &x), ("weight", &w)]);

        let gn = GroupNorm::new(&dev, 2, 6).unwrap();
        let state = [
            ("weight".to_string(), get("gn_weight")),
            ("bias".to_string(), get("gn_bias")),
        ];
        gn.load_state_dict(&state).unwrap();
        let x = leaf("gn_x");
        let y = gn.forward(&x).unwrap();
        let (w, b) = (gn.weight.as_ref().unwrap().tensor(), gn.bias.as_ref().unwrap().tensor());
        check_grads(&get, "gn", &y, &[("x", &x), ("weight", &w), ("bias", &b)]);

        let options = GroupNormOptions { affine: false, ..Default::default() };
        let instance = GroupNorm::with_options(&dev, 6, 6, options).unwrap();
        assert!(instance.parameters().is_empty());
        close(&instance.forward(&get("gn_x")).unwrap(), &get("in_out"), "instance norm");
    }
);

common::test_device!(
    /// A NaN poisons its own row of a layer norm and no other, as in PyTorch.
    a_nan_stays_in_its_row_cpu,
    a_nan_stays_in_its_row_gpu,
    |dev| {
        let get = fixture(&dev);
        let y = get("nan_x").layer_norm(&[4], None, None, 1e-5).unwrap();
        let got = y.to_vec::<f32>().unwrap();
        let want = get("nan_out").to_vec::<f32>().unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(i / 4 == 1, w.is_nan(), "PyTorch's row {} at {i}", i / 4);
            if w.is_nan() {
                assert!(g.is_nan(), "element {i}: got {g}, PyTorch NaN");
            } else {
                assert!((g - w).abs() <= 1e-5 + 1e-4 * w.abs(), "element {i}: {g} vs {w}");
            }
        }
        // Group norm and its input gradient: a NaN in sample 1, group 0 (channels 0
        // and 1) makes that group NaN and leaves every other group as without it.
        let mut v: Vec<f32> = (0..24).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let clean = Tensor::from_vec(v.clone(), &[2, 4, 3], &dev).unwrap();
        v[12 + 4] = f32::NAN;
        let x = Tensor::from_vec(v, &[2, 4, 3], &dev).unwrap().requires_grad_(true).unwrap();
        let y = x.group_norm(2, None, None, 1e-5).unwrap();
        y.mul(&clean).unwrap().sum().unwrap().backward().unwrap();
        let want = clean.group_norm(2, None, None, 1e-5).unwrap().to_vec::<f32>().unwrap();
        let dx = x.grad().unwrap().to_vec::<f32>().unwrap();
        for (i, (g, w)) in y.to_vec::<f32>().unwrap().iter().zip(&want).enumerate() {
            let poisoned = (12..18).contains(&i);
            assert_eq!(g.is_nan(), poisoned, "output {i}: {g}");
            assert_eq!(dx[i].is_nan(), poisoned, "input gradient {i}: {}", dx[i]);
            if !poisoned {
                assert!((g - w).abs() <= 1e-6, "output {i}: {g} vs {w}");
            }
        }
    }
);

common::test_device!(
    /// Empty batches give empty outputs and zero weight gradients, as PyTorch; a zero
    /// trailing size gives an empty output too.
    empty_batches_give_empty_results_cpu,
    empty_batches_give_empty_results_gpu,
    |dev| {
        let x = Tensor::zeros(&[0, 4], &dev).unwrap().requires_grad_(true).unwrap();
        let w = Tensor::ones(&[4], &dev).unwrap().requires_grad_(true).unwrap();
        let y = x.layer_norm(&[4], Some(&w), None, 1e-5).unwrap();
        assert_eq!(y.shape(), [0, 4]);
        y.sum().unwrap().backward().unwrap();
        assert_eq!(x.grad().unwrap().shape(), [0, 4]);
        assert_eq!(w.grad().unwrap().to_vec::<f32>().unwrap(), [0.0; 4]);
        let x = Tensor::zeros(&[0, 4, 3], &dev).unwrap();
        assert_eq!(x.group_norm(2, None, None, 1e-5).unwrap().shape(), [0, 4, 3]);
        let x = Tensor::zeros(&[3, 0], &dev).unwrap();
        assert_eq!(x.rms_norm(&[0], None, None).unwrap().shape(), [3, 0]);
    }
);

#[test]
fn bad_arguments_are_errors_that_name_the_op() {
    let dev = Device::cpu();
    let x = Tensor::ones(&[2, 6, 3], &dev).unwrap();
    let err = |r: Result<Tensor>| r.unwrap_err().to_string();
    // normalized_shape must be the trailing dimensions.
    let e = err(x.layer_norm(&[6], None, None, 1e-5));
    assert!(e.contains("layer_norm") && e.contains("trailing"), "{e}");
    assert!(err(x.layer_norm(&[], None, None, 1e-5)).contains("at least one"));
    assert!(err(x.rms_norm(&[2, 6, 3, 1], None, None)).contains("rms_norm"));
    // Weight and bias of the wrong shape or type.
    let w5 = Tensor::ones(&[5], &dev).unwrap();
    let e = err(x.layer_norm(&[3], Some(&w5), None, 1e-5));
    assert!(e.contains("weight") && e.contains("[3]"), "{e}");
    let e = err(x.group_norm(2, None, Some(&w5), 1e-5));
    assert!(e.contains("bias") && e.contains("[6]"), "{e}");
    let w64 = Tensor::from_vec(vec![1.0f64; 3], &[3], &dev).unwrap();
    assert!(err(x.rms_norm(&[3], Some(&w64), None)).contains("F64"));
    // Groups that do not divide the channels, no groups, a rank-1 input.
    let e = err(x.group_norm(4, None, None, 1e-5));
    assert!(
        e.contains("group_norm") && e.contains("num_groups = 4"),
        "{e}"
    );
    assert!(x.group_norm(0, None, None, 1e-5).is_err());
    assert!(Tensor::ones(&[6], &dev)
        .unwrap()
        .group_norm(1, None, None, 1e-5)
        .is_err());
    // eps.
    assert!(err(x.layer_norm(&[3], None, None, -1.0)).contains("eps"));
    assert!(x.rms_norm(&[3], None, Some(f64::NAN)).is_err());
    // Integer input.
    let xi = Tensor::from_vec(vec![1u32; 4], &[2, 2], &dev).unwrap();
    assert!(xi.layer_norm(&[2], None, None, 1e-5).is_err());
    // The modules check their settings too.
    assert!(GroupNorm::new(&dev, 4, 6).is_err());
    assert!(GroupNorm::new(&dev, 0, 6).is_err());
    assert!(LayerNorm::new(&dev, &[]).is_err());
    assert!(RMSNorm::new(&dev, &[]).is_err());
    // A module given the wrong input.
    let ln = LayerNorm::new(&dev, &[4]).unwrap();
    assert!(ln
        .forward(&x)
        .unwrap_err()
        .to_string()
        .contains("layer_norm"));
}

#[test]
fn module_defaults_and_parameter_names_are_pytorchs() {
    let dev = Device::cpu();
    let ln = LayerNorm::new(&dev, &[2, 3]).unwrap();
    assert_eq!(ln.eps, 1e-5);
    assert_eq!(ln.normalized_shape(), [2, 3]);
    assert_eq!(
        ln.weight
            .as_ref()
            .unwrap()
            .tensor()
            .to_vec::<f32>()
            .unwrap(),
        [1.0; 6]
    );
    assert_eq!(
        ln.bias.as_ref().unwrap().tensor().to_vec::<f32>().unwrap(),
        [0.0; 6]
    );
    let no_bias = LayerNorm::with_options(
        &dev,
        &[4],
        wgrad::nn::LayerNormOptions {
            bias: false,
            ..Default::default()
        },
    )
    .unwrap();
    let names: Vec<String> = no_bias.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight"]);
    let gn = GroupNorm::new(&dev, 3, 6).unwrap();
    assert_eq!((gn.num_groups(), gn.num_channels(), gn.eps), (3, 6, 1e-5));
    let names: Vec<String> = gn.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight", "bias"]);
    // RMSNorm's eps None is finfo(dtype).eps of the input's type.
    let x = Tensor::from_vec(vec![1e-4f32, -1e-4], &[1, 2], &dev).unwrap();
    let got = x
        .rms_norm(&[2], None, None)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let want = 1e-4 / (1e-8 + f32::EPSILON as f64).sqrt();
    assert!(
        (got[0] as f64 - want).abs() < 1e-6 * want,
        "{got:?} vs {want}"
    );
}

/// Dispatches on the GPU: one forward, and a backward of one (only the input's gradient)
/// or two (with the weight's and bias's), for rows shorter and longer than a workgroup's
/// 256 threads and for group norm.
#[test]
fn the_gpu_forward_is_one_dispatch_and_the_backward_at_most_two() {
    let gpu = Device::gpu_with(wgrad::GpuOptions::from_env()).unwrap();
    for (name, params) in [
        ("layer_norm", true),
        ("layer_norm", false),
        ("rms_norm", true),
        ("group_norm", true),
    ] {
        let x = Tensor::randn_seeded(&[4, 6, 300], 7, &gpu)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let affine = if name == "group_norm" { 6 } else { 300 };
        let w = Tensor::ones(&[affine], &gpu)
            .unwrap()
            .requires_grad_(params)
            .unwrap();
        let b = Tensor::zeros(&[affine], &gpu)
            .unwrap()
            .requires_grad_(params)
            .unwrap();
        let g = Tensor::randn_seeded(&[4, 6, 300], 8, &gpu).unwrap();
        gpu.sync().unwrap();
        let before = gpu.counters().dispatches;
        let y = match name {
            "layer_norm" => x.layer_norm(&[300], Some(&w), Some(&b), 1e-5),
            "rms_norm" => x.rms_norm(&[300], Some(&w), None),
            _ => x.group_norm(3, Some(&w), Some(&b), 1e-5),
        }
        .unwrap();
        let fwd = gpu.counters().dispatches - before;
        y.backward_with(&g).unwrap();
        let bwd = gpu.counters().dispatches - before - fwd;
        println!("{name} (parameters trained: {params}): {fwd} forward, {bwd} backward");
        assert_eq!(fwd, 1, "{name}");
        assert_eq!(bwd, if params { 2 } else { 1 }, "{name} params {params}");
        assert!(x.grad().is_some());
        assert_eq!(w.grad().is_some(), params);
    }
}

/// Per-row f64 reference of a layer norm without affine parameters.
fn reference_rows(x: &[f32], d: usize) -> Vec<f64> {
    x.chunks(d)
        .flat_map(|row| {
            let n = row.len() as f64;
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            let rstd = 1.0 / (var + 1e-5).sqrt();
            row.iter().map(move |&v| (v as f64 - mean) * rstd)
        })
        .collect()
}

common::test_device!(
    /// Rows longer than one workgroup reduces (16,384 elements) go through the composed
    /// path and still give the normalised rows (mean 3, spread 0.5: no cancellation).
    rows_past_16k_elements_are_normalised_cpu,
    rows_past_16k_elements_are_normalised_gpu,
    |dev| {
        let d = 16_500;
        let x: Vec<f32> = (0..2 * d)
            .map(|i| 3.0 + 0.5 * (((i * 7919) % 1000) as f32 / 500.0 - 1.0))
            .collect();
        let xt = Tensor::from_vec(x.clone(), &[2, d], &dev).unwrap();
        let got = xt.layer_norm(&[d], None, None, 1e-5).unwrap().to_vec::<f32>().unwrap();
        let want = reference_rows(&x, d);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((*g as f64 - w).abs() < 1e-4, "element {i}: {g} vs {w}");
        }
    }
);

/// `n` values in [-1, 1) that repeat with period `modulus` (`i * step % modulus`): an
/// input without the symmetry that could hide a wrong reduction.
fn wave(n: usize, step: usize, modulus: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * step) % modulus) as f32 / ((modulus / 2) as f32) - 1.0)
        .collect()
}

/// Group norm whose channels hold more elements than one workgroup of the weight's
/// backward sums (2 x 8,200 > 16,384: two chunks per channel, added by the op) gives
/// the CPU's weight and bias gradients on the GPU.
#[test]
fn long_channels_sum_the_weight_gradient_in_chunks_on_both_devices() {
    let shape = [2usize, 2, 8200];
    let n: usize = shape.iter().product();
    let x: Vec<f32> = wave(n, 37, 101);
    let g: Vec<f32> = wave(n, 53, 89);
    let run = |dev: &Device| {
        let xt = Tensor::from_vec(x.clone(), &shape, dev).unwrap();
        let w = Tensor::from_vec(vec![0.5f32, -1.5], &[2], dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let b = Tensor::zeros(&[2], dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let y = xt.group_norm(2, Some(&w), Some(&b), 1e-5).unwrap();
        y.backward_with(&Tensor::from_vec(g.clone(), &shape, dev).unwrap())
            .unwrap();
        (
            w.grad().unwrap().to_vec::<f32>().unwrap(),
            b.grad().unwrap().to_vec::<f32>().unwrap(),
        )
    };
    let (cpu_w, cpu_b) = run(&Device::cpu());
    let (gpu_w, gpu_b) = run(&common::gpu());
    // Sums of 16,400 terms of size ~1 in another order: a looser absolute tolerance.
    common::assert_close(&gpu_w, &cpu_w, 2e-3, 1e-4, "dweight");
    common::assert_close(&gpu_b, &cpu_b, 2e-3, 1e-4, "dbias");
    // dbias is the plain sum of g over each channel.
    for (c, &got) in cpu_b.iter().enumerate() {
        let want: f64 = (0..2)
            .flat_map(|s| {
                let start = (s * 2 + c) * 8200;
                g[start..start + 8200].iter().map(|&v| v as f64)
            })
            .sum();
        assert!(
            (got as f64 - want).abs() < 1e-2,
            "dbias {c}: {got} vs {want}"
        );
    }
}

/// The weight's and bias's gradients of a layer norm over columns of up to 2,048 rows
/// (the transformer's 2,048 tokens of 128 features) take one dispatch, in tiles of 8
/// to 32 affine values that each workgroup sums whole (16 workgroups for 2,048 rows);
/// longer columns are summed in chunks that the op adds (two more dispatches). The
/// gradients agree with the CPU's either way.
#[test]
fn the_affine_gradients_of_up_to_2048_rows_take_one_dispatch() {
    let d = 128;
    let gpu = common::gpu();
    for (rows, affine_dispatches, groups) in [(1000, 1, 8), (2048, 1, 16), (2100, 3, 20)] {
        let n = rows * d;
        let x: Vec<f32> = wave(n, 37, 101);
        let g: Vec<f32> = wave(n, 53, 89);
        let run = |dev: &Device| {
            let xt = Tensor::from_vec(x.clone(), &[rows, d], dev).unwrap();
            let w = Tensor::ones(&[d], dev)
                .unwrap()
                .requires_grad_(true)
                .unwrap();
            let b = Tensor::zeros(&[d], dev)
                .unwrap()
                .requires_grad_(true)
                .unwrap();
            let y = xt.layer_norm(&[d], Some(&w), Some(&b), 1e-5).unwrap();
            let gt = Tensor::from_vec(g.clone(), &[rows, d], dev).unwrap();
            let (done, profile) = dev.profile(|| y.backward_with(&gt)).unwrap();
            done.unwrap();
            let grads = (
                w.grad().unwrap().to_vec::<f32>().unwrap(),
                b.grad().unwrap().to_vec::<f32>().unwrap(),
            );
            (grads, profile)
        };
        let ((cpu_w, cpu_b), _) = run(&Device::cpu());
        let ((gpu_w, gpu_b), profile) = run(&gpu);
        let kernels: Vec<&str> = profile
            .dispatches
            .iter()
            .map(|d| d.kernel.as_str())
            .collect();
        assert_eq!(kernels.len(), affine_dispatches, "{rows} rows: {kernels:?}");
        let affine = &profile.dispatches[0];
        assert_eq!(affine.kernel, "norm_affine_bwd", "{rows} rows: {kernels:?}");
        assert_eq!(affine.workgroups, groups, "{rows} rows");
        // Sums of up to 2,100 terms of size ~1 in another order.
        common::assert_close(&gpu_w, &cpu_w, 1e-3, 1e-4, "dweight");
        common::assert_close(&gpu_b, &cpu_b, 1e-3, 1e-4, "dbias");
    }
}

common::test_device!(
    /// Rows with mean 1000 and spread 0.3 keep their variance: the GPU's Welford
    /// statistics never form `E[x^2] - E[x]^2`, which in f32 would lose it entirely.
    a_large_mean_does_not_swamp_the_variance_cpu,
    a_large_mean_does_not_swamp_the_variance_gpu,
    |dev| {
        let d = 3000;
        let x: Vec<f32> = (0..3 * d)
            .map(|i| 1000.0 + 0.3 * (((i * 7919) % 1001) as f32 / 500.0 - 1.0))
            .collect();
        let xt = Tensor::from_vec(x.clone(), &[3, d], &dev).unwrap();
        let got = xt.layer_norm(&[d], None, None, 1e-5).unwrap().to_vec::<f32>().unwrap();
        // The mean rounded to f32 is off by up to 3e-5 (half an ulp of 1000); divided by
        // the spread (~0.17) that is ~2e-4 of the output. A variance from
        // E[x^2] - E[x]^2 in f32 would be off by more than itself.
        for (i, (g, w)) in got.iter().zip(reference_rows(&x, d)).enumerate() {
            assert!((*g as f64 - w).abs() < 2e-3, "element {i}: {g} vs {w}");
        }
    }
);

/// The registry's cases of the three norms, a row of 16,384 elements (the longest one
/// workgroup takes) and channels of 2 x 8,200 keep every norm dispatch to the GPU shape
/// rules of `tests/gpu_work.rs`: no thread loops over more than 1,024 elements (these
/// kernels: 64), no workgroup reduces more than 16K.
#[test]
fn every_norm_kernel_keeps_to_the_shape_rules() {
    let gpu = Device::gpu_with(wgrad::GpuOptions::from_env()).unwrap();
    let entries: Vec<_> = wgrad::ops::registry::registry()
        .into_iter()
        .filter(|e| ["layer_norm", "rms_norm", "group_norm"].contains(&e.name))
        .collect();
    assert_eq!(entries.len(), 3);
    let leaf = |shape: &[usize], seed: u64| {
        Tensor::randn_seeded(shape, seed, &gpu)
            .unwrap()
            .requires_grad_(true)
            .unwrap()
    };
    let (_, profile) = gpu
        .profile(|| {
            for entry in &entries {
                for case in &entry.cases {
                    let inputs: Vec<Tensor> = (case.inputs.iter().enumerate())
                        .map(|(i, s)| leaf(&s.shape, i as u64))
                        .collect();
                    let y = (case.run)(&inputs, &gpu).unwrap();
                    y.sum().unwrap().backward().unwrap();
                }
            }
            let (x, w) = (leaf(&[3, 16_384], 5), leaf(&[16_384], 6));
            let y = x.rms_norm(&[16_384], Some(&w), None).unwrap();
            y.sum().unwrap().backward().unwrap();
            // Rows of 8,200; channels of 2 x 8,200 summed in two chunks.
            let (x, w) = (leaf(&[2, 2, 8200], 7), leaf(&[2], 8));
            let y = x.group_norm(2, Some(&w), None, 1e-5).unwrap();
            y.sum().unwrap().backward().unwrap();
        })
        .unwrap();
    let norm: Vec<_> = profile
        .dispatches
        .iter()
        .filter(|d| d.kernel.starts_with("norm_"))
        .collect();
    for k in ["norm_fwd", "norm_bwd", "norm_affine_bwd"] {
        assert!(norm.iter().any(|d| d.kernel == k), "nothing launched {k}");
    }
    for d in norm {
        assert!(d.serial > 0, "{} declares no serial work", d.kernel);
        assert!(d.serial <= 64, "{} loops over {}", d.kernel, d.serial);
        assert!(
            d.reduced <= 16 * 1024 * d.workgroups,
            "{} reduces {} on {} workgroups",
            d.kernel,
            d.reduced,
            d.workgroups
        );
    }
}
