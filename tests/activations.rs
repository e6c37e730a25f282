//! GELU (exact and tanh), SiLU and Mish against PyTorch's values, on both devices and
//! in the tails; and as modules, fused into the layer before them in a `Sequential`.

mod common;

use wgrad::nn::{Act, GeluApproximate, Linear, Mish, SiLU, GELU};
use wgrad::prelude::*;

const XS: [f64; 9] = [-12.0, -6.0, -3.0, -1.0, -0.25, 0.0, 0.5, 2.0, 7.0];

/// (name, values, gradients) at `XS` in float64: SiLU and Mish from PyTorch 2.x; the
/// GELUs from their formulas in Python's float64 without cancellation (`x Phi(x)` through
/// `math.erfc`, and `x sigmoid(2u)` for the tanh form). PyTorch agrees with those to
/// 1e-10 relative except in the tails, where its `1 + erf(..)` and `1 + tanh(u)` cancel:
/// -0.0 at -12 for both, and 1.3e-10 and 3e-7 relative off at -6.
#[allow(clippy::type_complexity)]
const TORCH: [(&str, [f64; 9], [f64; 9]); 4] = [
    (
        "gelu",
        [
            -2.1317785344932424e-32,
            -5.919525870226207e-09,
            -0.004049694094890287,
            -0.15865525393145707,
            -0.10032341857926907,
            0.0,
            0.34573123063700656,
            1.9544997361036416,
            6.999999999991041,
        ],
        [
            -2.5578956616748956e-31,
            -3.5468709453902015e-08,
            -0.011945647204183927,
            -0.08331547058768629,
            0.30462664511636395,
            0.5,
            0.8674951246561629,
            1.085231801078197,
            1.0000000000626632,
        ],
    ),
    (
        "gelu_tanh",
        [
            -1.6359854493534714e-61,
            -8.439646700762311e-11,
            -0.0036373920817730195,
            -0.15880800939172326,
            -0.100324649298315,
            0.0,
            0.34571400982514394,
            1.9545976940877752,
            6.999999999999998,
        ],
        [
            -5.290403352522528e-60,
            -7.709973930953707e-10,
            -0.011584166630969728,
            -0.08296408384578255,
            0.30464590484893955,
            0.5,
            0.8673699035346424,
            1.086099256623618,
            1.0000000000000187,
        ],
    ),
    (
        "silu",
        [
            -7.373009522657661e-05,
            -0.014835738939808647,
            -0.14227761953270035,
            -0.2689414213699951,
            -0.10945587477855048,
            0.0,
            0.3112296656009273,
            1.7615941559557646,
            6.993622641639196,
        ],
        [
            -6.758546761378339e-05,
            -0.012326432591525513,
            -0.08810410601516962,
            0.07232948812851325,
            0.37628997842980233,
            0.5,
            0.7399611873026519,
            1.0907842487848955,
            1.0054604970664518,
        ],
    ),
    (
        "mish",
        [
            -7.373032173186587e-05,
            -0.014854080479424995,
            -0.1456474612756246,
            -0.30340146137410895,
            -0.129926963679141,
            0.0,
            0.3752452113048951,
            1.9439589595339946,
            6.999988379809741,
        ],
        [
            -6.758590174613773e-05,
            -0.01235996793178131,
            -0.09339311453232084,
            0.059216755877395014,
            0.43981560172180506,
            0.6,
            0.8864243753577272,
            1.0693179342794896,
            1.000021559160889,
        ],
    ),
];

fn apply(name: &str, x: &Tensor) -> Tensor {
    match name {
        "gelu" => x.gelu(),
        "gelu_tanh" => x.gelu_tanh(),
        "silu" => x.silu(),
        "mish" => x.mish(),
        _ => unreachable!(),
    }
    .unwrap()
}

common::test_device!(
    new_activations_match_torch_in_f32_cpu,
    new_activations_match_torch_in_f32_gpu,
    |dev| {
        for (name, want_y, want_g) in TORCH {
            let xs: Vec<f32> = XS.iter().map(|&v| v as f32).collect();
            let x = Tensor::from_vec(xs, &[9], &dev)
                .unwrap()
                .requires_grad_(true)
                .unwrap();
            let y = apply(name, &x);
            y.sum().unwrap().backward().unwrap();
            let what = format!("{dev:?} {name}");
            // f32: a few ulp of the value, and 1e-7 absolute for the tails (where
            // PyTorch's own float32 GELU rounds to 0).
            let got_y: Vec<f64> = common::vec_f32(&y).iter().map(|&v| v as f64).collect();
            let got_g: Vec<f64> = common::vec_f32(&x.grad().unwrap())
                .iter()
                .map(|&v| v as f64)
                .collect();
            common::assert_close(&got_y, &want_y, 1e-7, 4e-6, &what);
            common::assert_close(&got_g, &want_g, 1e-7, 4e-6, &format!("{what} gradient"));
        }
    }
);

#[test]
fn new_activations_match_torch_in_f64_on_the_cpu() {
    for (name, want_y, want_g) in TORCH {
        let x = Tensor::from_vec(XS.to_vec(), &[9], &Device::cpu())
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let y = apply(name, &x);
        y.sum().unwrap().backward().unwrap();
        let got_y = y.to_vec::<f64>().unwrap();
        let got_g = x.grad().unwrap().to_vec::<f64>().unwrap();
        common::assert_close(&got_y, &want_y, 1e-20, 1e-10, name);
        common::assert_close(&got_g, &want_g, 1e-20, 1e-10, &format!("{name} gradient"));
    }
    // No cancellation in the exact GELU's tail: -12 Phi(-12) = -2.1318e-32.
    let x = Tensor::from_vec(vec![-12.0f64], &[1], &Device::cpu()).unwrap();
    let y = x.gelu().unwrap().to_vec::<f64>().unwrap()[0];
    assert!((y / -2.131_778_534_493_242e-32 - 1.0).abs() < 1e-12, "{y}");
}

common::test_device!(
    gelu_keeps_its_tail_in_f32_cpu,
    gelu_keeps_its_tail_in_f32_gpu,
    |dev| {
        // x Phi(x) for x = -5, -8, -10: relative accuracy where `1 + erf` would be 0.
        let want = [-1.433_257_859e-6f64, -4.976_768_459e-15, -7.619_853_024e-23];
        let x = Tensor::from_vec(vec![-5.0f32, -8.0, -10.0], &[3], &dev).unwrap();
        let got = common::vec_f32(&x.gelu().unwrap());
        for (g, w) in got.iter().zip(want) {
            assert!(
                ((*g as f64) / w - 1.0).abs() < 2e-5,
                "{dev:?}: {got:?} vs {want:?}"
            );
        }
    }
);

common::test_device!(
    nan_passes_through_the_new_activations_cpu,
    nan_passes_through_the_new_activations_gpu,
    |dev| {
        let x = Tensor::from_vec(vec![f32::NAN, 1.0], &[2], &dev).unwrap();
        for (name, ..) in TORCH {
            let y = common::vec_f32(&apply(name, &x));
            assert!(y[0].is_nan() && y[1].is_finite(), "{dev:?} {name}: {y:?}");
        }
    }
);

/// `Linear` then each new activation module in a `Sequential`: the same values and
/// gradients as the layer and the op unfused; on the GPU the pair is one dispatch
/// forward (the fused product, which also saves the pre-activation).
#[test]
fn sequential_fuses_the_new_activations() {
    let _serial = common::exclusive();
    type Make = fn() -> Box<dyn Module>;
    let modules: [(Act, Make); 4] = [
        (Act::Gelu, || Box::new(GELU::default())),
        (Act::GeluTanh, || {
            Box::new(GELU {
                approximate: GeluApproximate::Tanh,
            })
        }),
        (Act::Silu, || Box::new(SiLU)),
        (Act::Mish, || Box::new(Mish)),
    ];
    for dev in [Device::cpu(), common::gpu()] {
        for (act, make) in &modules {
            let layer = Linear::new(&dev, 5, 7);
            let (w, b) = (layer.weight.tensor(), layer.bias.as_ref().unwrap().tensor());
            let x = Tensor::randn_seeded(&[6, 5], 3, &dev).unwrap();
            let mut seq = Sequential::new().add(layer);
            seq.push(make());
            let fused = seq.forward(&x).unwrap();
            fused.sum().unwrap().backward().unwrap();
            let (gw, gb) = (
                common::vec_f32(&w.grad().unwrap()),
                common::vec_f32(&b.grad().unwrap()),
            );
            // The same arithmetic as separate ops on detached copies.
            let w2 = w.detach().requires_grad_(true).unwrap();
            let b2 = b.detach().requires_grad_(true).unwrap();
            let plain = act
                .op()
                .map(|op| x.linear(&w2).unwrap().add(&b2).unwrap().unary(op).unwrap())
                .unwrap();
            plain.sum().unwrap().backward().unwrap();
            let what = format!("{dev:?} {act:?}");
            common::assert_close(
                &common::vec_f32(&fused),
                &common::vec_f32(&plain),
                1e-5,
                1e-5,
                &what,
            );
            common::assert_close(
                &gw,
                &common::vec_f32(&w2.grad().unwrap()),
                1e-5,
                1e-5,
                &what,
            );
            common::assert_close(
                &gb,
                &common::vec_f32(&b2.grad().unwrap()),
                1e-5,
                1e-5,
                &what,
            );
            if dev.is_gpu() {
                let (_, profile) = dev.profile(|| seq.forward(&x).unwrap()).unwrap();
                let names: Vec<&str> = profile
                    .dispatches
                    .iter()
                    .map(|d| d.kernel.as_str())
                    .collect();
                assert_eq!(names.len(), 1, "{what}: {names:?}");
                assert!(names[0].starts_with("matmul_"), "{what}: {names:?}");
            }
        }
    }
}
