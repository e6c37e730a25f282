//! PyTorch's semantics for NaN, empty tensors and tiny results, on both devices: an
//! accurate `softplus` (and binary cross-entropy on logits), NaN propagating through the
//! activations, reductions, pools and softmax losses, NaN means of empty tensors, and
//! `BCEWithLogitsLoss`'s `pos_weight`. Every expected value below came from PyTorch 2.x
//! (`torch` on the CPU, float32 unless it says float64), printed and pasted.

mod common;

use wgrad::nn::*;
use wgrad::ops::matmul::Act;
use wgrad::prelude::*;
use wgrad::GpuOptions;

const NAN: f32 = f32::NAN;

fn t(data: &[f32], shape: &[usize], dev: &Device) -> Tensor {
    Tensor::from_slice(data, shape, dev).unwrap()
}

fn leaf(data: &[f32], shape: &[usize], dev: &Device) -> Tensor {
    t(data, shape, dev).requires_grad_(true).unwrap()
}

/// Equal within `tol`, NaN where `want` is NaN (and only there).
fn same(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() {
            assert!(g.is_nan(), "{what}[{i}]: got {g}, want NaN");
        } else {
            assert!(
                (g - w).abs() <= tol * w.abs().max(1.0),
                "{what}[{i}]: got {g}, want {w}"
            );
        }
    }
}

fn grad(x: &Tensor) -> Vec<f32> {
    common::vec_f32(&x.grad().expect("a gradient"))
}

// ---------------------------------------------------------------- 1. softplus

const SOFTPLUS_Z: [f64; 10] = [
    -100.0, -80.0, -30.0, -17.0, -16.6, -5.0, 0.0, 5.0, 20.0, 100.0,
];
/// torch.nn.functional.softplus on float64.
const SOFTPLUS_F64: [f64; 10] = [
    3.720075976020836e-44,
    1.804851387845415e-35,
    9.357622968839737e-14,
    4.139937633089748e-08,
    6.176061144861704e-08,
    0.006715348489118068,
    std::f64::consts::LN_2, // torch: 0.6931471805599453
    5.006715348489118,
    20.000000002061153,
    100.0,
];
/// The same with beta = 2, threshold = 5 (float64).
const SOFTPLUS_B2_F64: [f64; 10] = [
    6.919482633683688e-88,
    1.6287442661037606e-70,
    4.37825538134826e-27,
    8.569542157710058e-16,
    1.9071866810425313e-15,
    2.2699449608432323e-05,
    0.34657359027997264,
    5.0,
    20.0,
    100.0,
];

/// The worst relative error against `want` where `want` is a normal f32; below that
/// (f32's subnormals and underflow, e.g. softplus(-100) = 3.7e-44) the result must be
/// within the smallest normal of it: 0, or the subnormal the CPU rounds to.
fn softplus_error(got: &[f32], want: &[f64], what: &str) -> f64 {
    let mut worst = 0.0f64;
    for ((&g, &w), z) in got.iter().zip(want).zip(SOFTPLUS_Z) {
        if w < f32::MIN_POSITIVE as f64 {
            assert!(
                (g as f64 - w).abs() <= f32::MIN_POSITIVE as f64,
                "{what}({z}): got {g:e}, want {w:e} (below f32's normals)"
            );
        } else {
            let rel = (g as f64 - w).abs() / w;
            assert!(
                rel < 1e-5,
                "{what}({z}): got {g:e}, want {w:e}, relative error {rel:e}"
            );
            worst = worst.max(rel);
        }
    }
    worst
}

common::test_device!(
    softplus_is_accurate_for_every_argument_cpu,
    softplus_is_accurate_for_every_argument_gpu,
    |dev| {
        let z: Vec<f32> = SOFTPLUS_Z.iter().map(|&v| v as f32).collect();
        let x = t(&z, &[z.len()], &dev);
        let y = common::vec_f32(&x.softplus(1.0, 20.0).unwrap());
        let e1 = softplus_error(&y, &SOFTPLUS_F64, &format!("{dev:?} softplus"));
        // beta 2, threshold 5 (compared with beta x).
        let y2 = common::vec_f32(&x.softplus(2.0, 5.0).unwrap());
        let e2 = softplus_error(&y2, &SOFTPLUS_B2_F64, &format!("{dev:?} softplus beta 2"));
        // A sweep through both branches of the GPU's log1p (e^-|z| above and below
        // 0.4142, i.e. |z| = 0.88) against float64, down to where e^z leaves f32's normals.
        let sweep: Vec<f32> = (0..=430).map(|i| -87.0 + i as f32 * 0.25).collect();
        let y = common::vec_f32(&t(&sweep, &[sweep.len()], &dev).softplus(1.0, 20.0).unwrap());
        let mut e3 = 0.0f64;
        for (&z, &g) in sweep.iter().zip(&y) {
            let z = z as f64;
            let w = z.max(0.0) + (-z.abs()).exp().ln_1p();
            let rel = (g as f64 - w).abs() / w;
            assert!(rel < 1e-5, "{dev:?} softplus({z}): got {g:e}, want {w:e}");
            e3 = e3.max(rel);
        }
        println!(
            "{dev:?}: worst relative error {e1:.2e} (beta 1), {e2:.2e} (beta 2), {e3:.2e} (sweep)"
        );
    }
);

common::test_device!(
    bce_with_logits_keeps_its_digits_for_large_logits_cpu,
    bce_with_logits_keeps_its_digits_for_large_logits_gpu,
    |dev| {
        // Float64 values of -(y log sigma(x) + (1 - y) log(1 - sigma(x))) (softplus(-x) for
        // y = 1, softplus(x) for y = 0). torch's own float32 and float64 results at x = -30,
        // y = 0 are 0 and 9.237e-14: its (1 - y) x + softplus(-x) cancels there.
        let x = [-100.0, -30.0, 0.0, 30.0, 100.0, -17.0, 17.0];
        let y = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0];
        let want = [
            100.0,
            9.357622968839737e-14,
            std::f64::consts::LN_2, // torch: 0.6931471805599453
            9.357622968839737e-14,
            100.0,
            4.139937633089748e-08,
            4.139937633089748e-08,
        ];
        let loss = BCEWithLogitsLoss {
            reduction: Reduction::None,
            pos_weight: None,
        }
        .forward(&t(&x, &[7], &dev), &t(&y, &[7], &dev))
        .unwrap();
        for (i, (&g, &w)) in common::vec_f32(&loss).iter().zip(&want).enumerate() {
            let rel = (g as f64 - w).abs() / w;
            assert!(rel < 1e-5, "{dev:?} bce[{i}]: got {g:e}, want {w:e}");
        }
    }
);

// ---------------------------------------------------------------- 2. NaN propagation

common::test_device!(
    activations_propagate_nan_as_torch_cpu,
    activations_propagate_nan_as_torch_gpu,
    |dev| {
        let x = [1.0, NAN, -2.0, NAN, 3.0];
        // (forward, gradient of the sum) from torch.
        let cases: [(&str, [f32; 5], [f32; 5]); 5] = [
            ("relu", [1.0, NAN, 0.0, NAN, 3.0], [1.0, 1.0, 0.0, 1.0, 1.0]),
            (
                "leaky_relu",
                [1.0, NAN, -0.2, NAN, 3.0],
                [1.0, 0.1, 0.1, 0.1, 1.0],
            ),
            (
                "tanh",
                [0.7615942, NAN, -0.9640276, NAN, 0.9950548],
                [0.4199743, NAN, 0.07065082, NAN, 0.009865982],
            ),
            (
                "sigmoid",
                [0.7310586, NAN, 0.11920292, NAN, 0.95257413],
                [0.19661193, NAN, 0.10499358, NAN, 0.045176655],
            ),
            (
                "softplus",
                [1.3132616, NAN, 0.126928, NAN, 3.0485873],
                [0.7310586, NAN, 0.11920292, NAN, 0.95257413],
            ),
        ];
        for (name, want_y, want_g) in cases {
            let xt = leaf(&x, &[5], &dev);
            let y = match name {
                "relu" => xt.relu(),
                "leaky_relu" => xt.leaky_relu(0.1),
                "tanh" => xt.tanh(),
                "sigmoid" => xt.sigmoid(),
                _ => xt.softplus(1.0, 20.0),
            }
            .unwrap();
            same(
                &common::vec_f32(&y),
                &want_y,
                1e-5,
                &format!("{dev:?} {name}"),
            );
            y.sum().unwrap().backward().unwrap();
            same(&grad(&xt), &want_g, 1e-5, &format!("{dev:?} {name} grad"));
        }
        // prelu with slope 0.25: [1, nan, -0.5, nan, 3].
        let w = t(&[0.25], &[1], &dev);
        let y = t(&x, &[5], &dev).prelu(&w).unwrap();
        same(
            &common::vec_f32(&y),
            &[1.0, NAN, -0.5, NAN, 3.0],
            1e-6,
            "prelu",
        );
        // relu(-0.0) is -0.0 in torch.
        let z = common::vec_f32(&t(&[-0.0], &[1], &dev).relu().unwrap());
        assert!(
            z[0] == 0.0 && z[0].is_sign_negative(),
            "{dev:?} relu(-0) = {}",
            z[0]
        );
    }
);

common::test_device!(
    fused_activations_propagate_nan_as_torch_cpu,
    fused_activations_propagate_nan_as_torch_gpu,
    |dev| {
        // relu/tanh/sigmoid/leaky(F.linear(x, I, b)) with b = [nan, 0.5], from torch.
        let cases = [
            (Act::Relu, [NAN, 0.0, NAN, 0.0]),
            (Act::Tanh, [NAN, -0.46211717, NAN, -0.9866143]),
            (Act::Sigmoid, [NAN, 0.37754068, NAN, 0.07585818]),
            (Act::LeakyRelu(0.1), [NAN, -0.05, NAN, -0.25]),
        ];
        for (act, want) in cases {
            let x = leaf(&[1.0, -1.0, 2.0, -3.0], &[2, 2], &dev);
            let w = leaf(&[1.0, 0.0, 0.0, 1.0], &[2, 2], &dev);
            let b = leaf(&[NAN, 0.5], &[2], &dev);
            let y = x.linear_act(&w, Some(&b), act).unwrap();
            same(
                &common::vec_f32(&y),
                &want,
                1e-5,
                &format!("{dev:?} {act:?}"),
            );
            if act == Act::Relu {
                // A NaN output passes the gradient (threshold_backward), from torch.
                y.sum().unwrap().backward().unwrap();
                same(&grad(&x), &[1.0, 0.0, 1.0, 0.0], 1e-6, "relu dx");
                same(&grad(&w), &[3.0, -4.0, 0.0, 0.0], 1e-6, "relu dW");
                same(&grad(&b), &[2.0, 0.0], 1e-6, "relu db");
            }
        }
    }
);

common::test_device!(
    max_and_argmax_propagate_nan_as_torch_cpu,
    max_and_argmax_propagate_nan_as_torch_gpu,
    |dev| {
        // Full reduction: NaN; the gradient goes to the first NaN (torch splits it
        // evenly between equal maxima, [0, 0.5, 0, 0.5]; wgrad routes to one, as with ties).
        let x = leaf(&[1.0, NAN, 2.0, NAN], &[4], &dev);
        let m = x.max().unwrap();
        assert!(m.item().unwrap().is_nan(), "{dev:?} max");
        m.backward().unwrap();
        same(&grad(&x), &[0.0, 1.0, 0.0, 0.0], 0.0, "max grad");
        // Along a dim: values, the first NaN's index and the gradient, from torch.
        let a = [1.0, NAN, 2.0, NAN, 3.0, 1.0, 0.0, 2.0, NAN, 5.0, NAN, 1.0];
        let x = leaf(&a, &[3, 4], &dev);
        let (v, i) = x.max_dim_with_indices(1, false).unwrap();
        same(&common::vec_f32(&v), &[NAN, 3.0, NAN], 0.0, "max dim 1");
        assert_eq!(
            i.to_vec::<u32>().unwrap(),
            [1, 0, 0],
            "{dev:?} indices dim 1"
        );
        v.sum().unwrap().backward().unwrap();
        let want = [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
        same(&grad(&x), &want, 0.0, "max dim 1 grad");
        // Down the columns (the GPU's column path): torch.argmax(dim=0).
        let am = t(&a, &[3, 4], &dev).argmax(0, false).unwrap();
        assert_eq!(
            am.to_vec::<u32>().unwrap(),
            [2, 0, 2, 0],
            "{dev:?} argmax dim 0"
        );
    }
);

#[test]
fn long_reductions_propagate_nan_on_every_path() {
    // 40,000 elements per row: several workgroups and a second pass on the GPU. Row 0
    // holds NaN at 30,000 and 35,000 (its max is NaN at 30,000), row 1 none, row 2 one
    // at position 3.
    let n = 40_000;
    let mut data: Vec<f32> = (0..3 * n).map(|i| ((i * 7919) % 1000) as f32).collect();
    data[30_000] = NAN;
    data[35_000] = NAN;
    data[2 * n + 3] = NAN;
    data[n + 12_345] = 5000.0;
    let tree = Device::gpu_with(GpuOptions {
        subgroups: false,
        ..GpuOptions::from_env()
    })
    .unwrap();
    for dev in [Device::cpu(), common::gpu(), tree] {
        let x = t(&data, &[3, n], &dev);
        let (v, i) = x.max_dim_with_indices(1, false).unwrap();
        same(&common::vec_f32(&v), &[NAN, 5000.0, NAN], 0.0, "long max");
        assert_eq!(
            i.to_vec::<u32>().unwrap(),
            [30_000, 12_345, 3],
            "{dev:?} long argmax"
        );
        let full = x.max().unwrap().item().unwrap();
        assert!(full.is_nan(), "{dev:?} full max");
        let s = common::vec_f32(&x.sum_dim(&[1], false).unwrap());
        assert!(
            s[0].is_nan() && !s[1].is_nan() && s[2].is_nan(),
            "{dev:?} sums {s:?}"
        );
        assert!(x.mean().unwrap().item().unwrap().is_nan());
    }
}

common::test_device!(
    max_pool_propagates_nan_as_torch_cpu,
    max_pool_propagates_nan_as_torch_gpu,
    |dev| {
        let x = [
            1.0, NAN, 2.0, 3.0, NAN, 0.0, 4.0, 5.0, 6.0, 7.0, 8.0, NAN, 9.0, 1.0, 2.0, 3.0,
        ];
        // 2 x 2 (the CPU's unrolled loop): the window's last NaN gets the gradient.
        let p = leaf(&x, &[1, 1, 4, 4], &dev);
        let y = p.max_pool2d((2, 2), (2, 2), (0, 0)).unwrap();
        same(&common::vec_f32(&y), &[NAN, 5.0, 9.0, NAN], 0.0, "pool 2x2");
        y.sum().unwrap().backward().unwrap();
        let want = [
            0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0,
        ];
        same(&grad(&p), &want, 0.0, "pool 2x2 grad");
        // 3 x 3, stride 1, padding 1 (the general loop).
        let p = leaf(&x, &[1, 1, 4, 4], &dev);
        let y = p.max_pool2d((3, 3), (1, 1), (1, 1)).unwrap();
        let want = [
            NAN, NAN, NAN, 5.0, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, 9.0, 9.0, NAN, NAN,
        ];
        same(&common::vec_f32(&y), &want, 0.0, "pool 3x3");
        y.sum().unwrap().backward().unwrap();
        let want = [
            0.0, 1.0, 0.0, 0.0, 6.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 6.0, 2.0, 0.0, 0.0, 0.0,
        ];
        same(&grad(&p), &want, 0.0, "pool 3x3 grad");
    }
);

common::test_device!(
    softmax_and_cross_entropy_give_nan_rows_as_torch_cpu,
    softmax_and_cross_entropy_give_nan_rows_as_torch_gpu,
    |dev| {
        let x = [1.0, NAN, 2.0, 1.0, 2.0, 3.0];
        let s = common::vec_f32(&t(&x, &[2, 3], &dev).softmax(1).unwrap());
        let want = [NAN, NAN, NAN, 0.09003057, 0.24472848, 0.66524094];
        same(&s, &want, 1e-5, "softmax");
        let l = common::vec_f32(&t(&x, &[2, 3], &dev).log_softmax(1).unwrap());
        let want = [NAN, NAN, NAN, -2.407606, -1.407606, -0.40760595];
        same(&l, &want, 1e-5, "log_softmax");
        let tg = Tensor::from_vec(vec![0u32, 2], &[2], &dev).unwrap();
        let per = wgrad::ops::loss::cross_entropy_per_sample(&t(&x, &[2, 3], &dev), &tg).unwrap();
        same(&common::vec_f32(&per), &[NAN, 0.40760595], 1e-5, "ce none");
        let xl = leaf(&x, &[2, 3], &dev);
        let loss = xl.cross_entropy(&tg).unwrap();
        assert!(loss.item().unwrap().is_nan(), "{dev:?} ce mean");
        loss.backward().unwrap();
        let want = [NAN, NAN, NAN, 0.04501529, 0.12236425, -0.1673795];
        same(&grad(&xl), &want, 1e-5, "ce grad");
    }
);

// ---------------------------------------------------------------- 3. empty tensors

type LossFn<'a> = Box<dyn Fn(&Tensor) -> Result<Tensor> + 'a>;

common::test_device!(
    empty_means_and_mean_losses_are_nan_as_torch_cpu,
    empty_means_and_mean_losses_are_nan_as_torch_gpu,
    |dev| {
        let e = || {
            Tensor::zeros(&[0, 3], &dev)
                .unwrap()
                .requires_grad_(true)
                .unwrap()
        };
        let x = e();
        let m = x.mean().unwrap();
        assert!(m.item().unwrap().is_nan(), "{dev:?} mean of empty");
        m.backward().unwrap();
        assert_eq!(x.grad().unwrap().shape(), [0, 3]);
        assert_eq!(x.sum().unwrap().item().unwrap(), 0.0, "sum of empty");
        // mean(dim=0) of [0, 3] is [nan, nan, nan]; mean(dim=1) is empty.
        let m0 = common::vec_f32(&e().mean_dim(&[0], false).unwrap());
        same(&m0, &[NAN, NAN, NAN], 0.0, "mean dim 0");
        assert_eq!(e().mean_dim(&[1], false).unwrap().shape(), [0]);
        let targets = Tensor::from_vec(Vec::<u32>::new(), &[0], &dev).unwrap();
        let losses: Vec<(&str, LossFn)> = vec![
            ("mse", Box::new(|x| x.mse_loss(&x.detach()))),
            (
                "MSELoss",
                Box::new(|x| MSELoss::default().forward(x, &x.detach())),
            ),
            ("cross_entropy", Box::new(|x| x.cross_entropy(&targets))),
            (
                "label smoothing",
                Box::new(|x| {
                    CrossEntropyLoss {
                        reduction: Reduction::Mean,
                        label_smoothing: 0.1,
                    }
                    .forward(x, &targets)
                }),
            ),
            (
                "bce_with_logits",
                Box::new(|x| x.bce_with_logits(&x.detach(), None)),
            ),
            (
                "BCEWithLogitsLoss pos_weight",
                Box::new(|x| {
                    BCEWithLogitsLoss {
                        reduction: Reduction::Mean,
                        pos_weight: Some(Tensor::ones(&[3], x.device()).unwrap()),
                    }
                    .forward(x, &x.detach())
                }),
            ),
        ];
        for (name, f) in &losses {
            let x = e();
            let l = f(&x).unwrap();
            assert!(l.item().unwrap().is_nan(), "{dev:?} {name} of empty");
            l.backward().unwrap();
            assert_eq!(x.grad().unwrap().shape(), [0, 3], "{name}");
        }
        // Summed losses of nothing are 0.
        let s = BCEWithLogitsLoss {
            reduction: Reduction::Sum,
            pos_weight: None,
        }
        .forward(&e(), &e().detach())
        .unwrap();
        assert_eq!(s.item().unwrap(), 0.0, "{dev:?} summed bce");
    }
);

common::test_device!(
    max_of_empty_tensors_follows_torch_cpu,
    max_of_empty_tensors_follows_torch_gpu,
    |dev| {
        let x = Tensor::zeros(&[0, 3], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        // torch: "max(): Expected reduction dim to be specified for input.numel() == 0."
        assert!(matches!(x.max(), Err(Error::Shape { .. })), "{dev:?} max()");
        // torch: "Expected reduction dim 0 to have non-zero size."
        assert!(matches!(x.max_dim(&[0], false), Err(Error::Shape { .. })));
        assert!(matches!(x.argmax(0, false), Err(Error::Shape { .. })));
        // Over the non-empty dim: empty values and indices, and an empty gradient.
        let (v, i) = x.max_dim_with_indices(1, false).unwrap();
        assert_eq!((v.shape(), i.shape()), (&[0usize][..], &[0usize][..]));
        v.sum().unwrap().backward().unwrap();
        assert_eq!(x.grad().unwrap().shape(), [0, 3]);
    }
);

// ---------------------------------------------------------------- 4. pos_weight

common::test_device!(
    bce_with_logits_pos_weight_matches_torch_cpu,
    bce_with_logits_pos_weight_matches_torch_gpu,
    |dev| {
        let x = [0.5, -1.0, 2.0, -3.0, 0.25, -0.75];
        let y = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0];
        let pw = [2.0, 0.5, 3.0];
        // torch.nn.functional.binary_cross_entropy_with_logits(x, y, pos_weight=pw), float64.
        let none = [
            0.9481539683602134,
            0.3132616875182228,
            0.3807840331289175,
            0.048587351573742055,
            0.2879697099394218,
            3.4106130183446997,
        ];
        let (mean, sum) = (0.8982282948108695, 5.389369768865217);
        // d mean / dx from torch; d mean / d pos_weight = sum over rows of y softplus(-x) / 6
        // (torch refuses this gradient; the value is that formula in float64).
        let dx = [
            -0.1258468895993818,
            0.04482357022833252,
            -0.05960146101105882,
            0.00790431219626113,
            -0.03648529159285016,
            -0.3395893495876965,
        ];
        let dpw = [0.07901283069668445, 0.0959899033131406, 0.21063316952631206];
        let xt = leaf(&x, &[2, 3], &dev);
        let w = leaf(&pw, &[3], &dev);
        let loss = |reduction| BCEWithLogitsLoss {
            reduction,
            pos_weight: Some(w.clone()),
        };
        let yt = t(&y, &[2, 3], &dev);
        let per = loss(Reduction::None).forward(&xt, &yt).unwrap();
        same(
            &common::vec_f32(&per),
            &none.map(|v| v as f32),
            1e-5,
            "none",
        );
        let s = loss(Reduction::Sum).forward(&xt, &yt).unwrap();
        same(&common::vec_f32(&s), &[sum as f32], 1e-5, "sum");
        let m = loss(Reduction::Mean).forward(&xt, &yt).unwrap();
        same(&common::vec_f32(&m), &[mean as f32], 1e-5, "mean");
        let f = xt.bce_with_logits(&yt, Some(&w)).unwrap();
        same(&common::vec_f32(&f), &[mean as f32], 1e-5, "functional");
        m.backward().unwrap();
        same(&grad(&xt), &dx.map(|v| v as f32), 1e-5, "dx");
        same(&grad(&w), &dpw.map(|v| v as f32), 1e-5, "d pos_weight");
        // A weight that does not broadcast to the logits is a shape error.
        let bad = BCEWithLogitsLoss {
            reduction: Reduction::Mean,
            pos_weight: Some(t(&[1.0, 2.0], &[2], &dev)),
        };
        assert!(matches!(bad.forward(&xt, &yt), Err(Error::Shape { .. })));
    }
);

common::test_device!(
    maximum_minimum_and_recurrent_cells_propagate_nan_as_torch_cpu,
    maximum_minimum_and_recurrent_cells_propagate_nan_as_torch_gpu,
    |dev| {
        // torch.maximum / torch.minimum: NaN wins on either side.
        let a = t(&[1.0, NAN, 3.0, NAN], &[4], &dev);
        let b = t(&[NAN, 2.0, 1.0, NAN], &[4], &dev);
        let hi = common::vec_f32(&a.maximum(&b).unwrap());
        same(&hi, &[NAN, NAN, 3.0, NAN], 0.0, "maximum");
        let lo = common::vec_f32(&a.minimum(&b).unwrap());
        same(&lo, &[NAN, NAN, 1.0, NAN], 0.0, "minimum");
        // An LSTM step whose cell input is NaN (row 0) or saturated (row 1):
        // torch gives h = NaN and h = sigmoid(0) tanh(0.5 tanh(50)) = 0.23105858.
        let gates = t(&[0.0, 0.0, NAN, 0.0, 0.0, 0.0, 50.0, 0.0], &[2, 4], &dev);
        let c0 = t(&[0.0, 0.0], &[2, 1], &dev);
        let (h, c) = wgrad::ops::rnn::lstm_cell(&gates, &c0).unwrap();
        same(&common::vec_f32(&h), &[NAN, 0.231_058_58], 1e-6, "lstm h");
        same(&common::vec_f32(&c), &[NAN, 0.5], 1e-6, "lstm c");
        // A GRU step with a NaN candidate: h = (1 - z) n + z h_prev is NaN.
        let gi = t(&[0.0, 0.0, NAN], &[1, 3], &dev);
        let gh = t(&[0.0, 0.0, 0.0], &[1, 3], &dev);
        let h0 = t(&[1.0], &[1, 1], &dev);
        let h = wgrad::ops::rnn::gru_cell(&gi, &gh, &h0).unwrap();
        same(&common::vec_f32(&h), &[NAN], 0.0, "gru h");
    }
);
