//! Half-precision tensors (`F16`, `BF16`): PyTorch's rounding on both devices, every
//! 16-bit pattern and a sweep of f32 bit patterns identical on the GPU and the CPU,
//! readback, device moves, gradients through the conversions and through math, files,
//! and the errors for mixed dtypes and in-place updates. `tests/half_registry.rs` runs
//! every op of the registry in both half types.

mod common;

use wgrad::half::{bf16, f16};
use wgrad::prelude::*;

/// f32 inputs and the bits PyTorch 2.15 gives for them
/// (`torch.tensor(v).half().view(torch.int16)`, and `.bfloat16()`): ties to even, the
/// f16 overflow at 65520, subnormals of both types, an f32 subnormal, infinities. The
/// tie cases are exact binary fractions, written out in full.
#[allow(clippy::excessive_precision)]
const TABLE: &[(f32, u16, u16)] = &[
    (0.1, 0x2e66, 0x3dcd),
    (1.0 / 3.0, 0x3555, 0x3eab),
    (65504.0, 0x7bff, 0x4780),
    (65520.0, 0x7c00, 0x4780),
    (1e-8, 0x0000, 0x322c),
    (6e-8, 0x0001, 0x3381),
    (1.0009765625, 0x3c01, 0x3f80),
    (1.00048828125, 0x3c00, 0x3f80),
    (-7e4, 0xfc00, 0xc789),
    (1e30, 0x7c00, 0x714a),
    (f32::INFINITY, 0x7c00, 0x7f80),
    (-0.0, 0x8000, 0x8000),
    (3.0e-5, 0x01f7, 0x37fc),
    (1.00390625, 0x3c04, 0x3f80),
    (1.01171875, 0x3c0c, 0x3f82),
    (3.389_531_4e38, 0x7c00, 0x7f7f),
    (3.4e38, 0x7c00, 0x7f80),
    (1e-40, 0x0000, 0x0001),
    (2.980_232_2e-8, 0x0000, 0x3300),
    (4.470_348_4e-8, 0x0001, 0x3340),
];

fn bits16(t: &Tensor) -> Vec<u16> {
    match t.dtype() {
        DType::F16 => t
            .to_vec::<f16>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect(),
        _ => t
            .to_vec::<bf16>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect(),
    }
}

common::test_device!(
    /// The rounding table, and NaN staying NaN.
    rounding_matches_pytorch_cpu,
    rounding_matches_pytorch_gpu,
    |dev| {
        let mut values: Vec<f32> = TABLE.iter().map(|r| r.0).collect();
        values.push(f32::NAN);
        let x = Tensor::from_vec(values.clone(), &[values.len()], &dev).unwrap();
        let (h, b) = (x.half().unwrap(), x.bfloat16().unwrap());
        assert_eq!((h.dtype(), b.dtype()), (DType::F16, DType::BF16));
        let (hb, bb) = (bits16(&h), bits16(&b));
        for (i, &(v, want_h, want_b)) in TABLE.iter().enumerate() {
            assert_eq!(hb[i], want_h, "f16 of {v:e}: {:#06x}", hb[i]);
            assert_eq!(bb[i], want_b, "bf16 of {v:e}: {:#06x}", bb[i]);
        }
        let n = values.len() - 1;
        assert!(f16::from_bits(hb[n]).is_nan() && bf16::from_bits(bb[n]).is_nan());
        // Back to f32 exactly (the largest f16 and a subnormal), f64 and u32 too.
        let back = h.float().unwrap().to_vec::<f32>().unwrap();
        assert_eq!(back[2], 65504.0);
        assert_eq!(back[5], 2f32.powi(-24));
        assert!(back[n].is_nan());
        assert_eq!(h.to_f64_vec().unwrap()[6], 1.0009765625);
        let small = Tensor::from_vec(vec![2.5f32, 7.0], &[2], &dev).unwrap();
        let as_u32 = small.half().unwrap().to_dtype(DType::U32).unwrap();
        assert_eq!(as_u32.to_vec::<u32>().unwrap(), [2, 7]);
        let from_u32 = as_u32.bfloat16().unwrap();
        assert_eq!(from_u32.to_f64_vec().unwrap(), [2.0, 7.0]);
        // f16 to bf16 through f32: 65504 is 65536 in bf16.
        let hb16 = h.bfloat16().unwrap().to_f64_vec().unwrap();
        assert_eq!(hb16[2], 65536.0);
    }
);

/// The GPU widens every f16 and bf16 bit pattern to the same f32 bits as the CPU, and
/// rounds a sweep of f32 bit patterns (every exponent, with low mantissa bits that make
/// ties and near-ties) to the same 16 bits.
#[test]
fn every_bit_pattern_agrees_between_devices() {
    let gpu = common::gpu();
    let all: Vec<u16> = (0..=u16::MAX).collect();
    for dtype in [DType::F16, DType::BF16] {
        let make = |dev: &Device| match dtype {
            DType::F16 => {
                let v: Vec<f16> = all.iter().map(|&b| f16::from_bits(b)).collect();
                Tensor::from_vec(v, &[all.len()], dev).unwrap()
            }
            _ => {
                let v: Vec<bf16> = all.iter().map(|&b| bf16::from_bits(b)).collect();
                Tensor::from_vec(v, &[all.len()], dev).unwrap()
            }
        };
        let want = make(&Device::cpu())
            .float()
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let got = make(&gpu).float().unwrap().to_vec::<f32>().unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{dtype:?} {i:#06x}: GPU {g:e}, CPU {w:e}"
            );
        }
    }
    let mut sweep: Vec<u32> = Vec::new();
    for sign in [0u32, 1 << 31] {
        for e in 0..=255u32 {
            for low in [
                0u32, 1, 0xfff, 0x1000, 0x1001, 0x2000, 0x3000, 0x7fff, 0x8000, 0x8001, 0x1_8000,
                0x7f_ffff, 0x40_1000, 0x3f_f000,
            ] {
                sweep.push(sign | e << 23 | low);
            }
        }
    }
    let values: Vec<f32> = sweep.iter().map(|&b| f32::from_bits(b)).collect();
    for dtype in [DType::F16, DType::BF16] {
        let on = |dev: &Device| {
            let x = Tensor::from_vec(values.clone(), &[values.len()], dev).unwrap();
            bits16(&x.to_dtype(dtype).unwrap())
        };
        let (want, got) = (on(&Device::cpu()), on(&gpu));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let nan = |b: u16| match dtype {
                DType::F16 => f16::from_bits(b).is_nan(),
                _ => bf16::from_bits(b).is_nan(),
            };
            assert!(
                g == w || (nan(*g) && nan(*w)),
                "{dtype:?} of {:#010x}: GPU {g:#06x}, CPU {w:#06x}",
                sweep[i]
            );
        }
    }
}

common::test_device!(
    /// Odd and empty counts, moves between devices with the bits unchanged, `item`,
    /// and the u32 route.
    storage_round_trips_cpu,
    storage_round_trips_gpu,
    |dev| {
        for n in [0usize, 1, 3, 8] {
            let v: Vec<f16> = (0..n).map(|i| f16::from_f32(i as f32 * 0.3 - 1.0)).collect();
            let t = Tensor::from_vec(v.clone(), &[n], &dev).unwrap();
            assert_eq!(t.to_vec::<f16>().unwrap(), v);
            let there = t.to(&Device::cpu()).unwrap().to(&dev).unwrap();
            assert_eq!(there.to_vec::<f16>().unwrap(), v);
            assert_eq!(there.dtype(), DType::F16);
        }
        let one = Tensor::from_vec(vec![bf16::from_f32(-2.5)], &[], &dev).unwrap();
        assert_eq!(one.item().unwrap(), -2.5);
        assert!(one.to_vec::<f32>().is_err(), "the dtype is bf16");
        let zeros = Tensor::zeros(&[3], &dev).unwrap().half().unwrap();
        assert_eq!(bits16(&zeros), [0, 0, 0]);
    }
);

common::test_device!(
    /// Gradients flow back through the conversions (as the identity, as PyTorch) and
    /// through math on half tensors (arriving in the half type); mixing dtypes and
    /// in-place updates of half tensors are clear errors naming the dtypes, not panics.
    gradients_and_errors_cpu,
    gradients_and_errors_gpu,
    |dev| {
        let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3], &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let h = x.half().unwrap();
        let y = h.float().unwrap().mul_scalar(2.0).unwrap().sum().unwrap();
        y.backward().unwrap();
        assert_eq!(x.grad().unwrap().to_vec::<f32>().unwrap(), [2.0, 2.0, 2.0]);
        // d/dh sum(h * h) = 2 h, in f16.
        let leaf = x.detach().half().unwrap().requires_grad_(true).unwrap();
        let s = leaf.mul(&leaf).unwrap().sum().unwrap();
        assert_eq!(s.dtype(), DType::F16);
        assert_eq!(s.item().unwrap(), 14.0);
        s.backward().unwrap();
        let g = leaf.grad().unwrap();
        assert_eq!(g.dtype(), DType::F16);
        assert_eq!(g.to_f64_vec().unwrap(), [2.0, 4.0, 6.0]);
        let f32s = Tensor::ones(&[3], &dev).unwrap();
        let msg = h.add(&f32s).unwrap_err().to_string();
        assert!(msg.contains("F16") && msg.contains("F32"), "{msg}");
        // In place: computed in f32, rounded once into the half storage.
        let hd = h.detach();
        hd.add_(&hd).unwrap();
        assert_eq!(hd.dtype(), DType::F16);
        assert_eq!(hd.to_f64_vec().unwrap(), [2.0, 4.0, 6.0]);
        let u = Tensor::from_vec(vec![1u32], &[1], &dev).unwrap();
        assert!(u.requires_grad_(true).is_err());
    }
);

/// PyTorch's `.half()` and `.bfloat16()` tensors from a safetensors file
/// (`tests/fixtures/make_torch_half_fixture.py`): the same bits as wgrad's conversion
/// of the f32 tensor beside them, on both devices; saving writes them back unchanged.
#[test]
fn pytorch_half_files_load_and_save() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch_half.safetensors");
    for dev in common::devices() {
        let file = wgrad::io::read_safetensors(&path, &dev).unwrap();
        let get = |n: &str| file.iter().find(|(k, _)| k == n).unwrap().1.clone();
        let x = get("x32");
        assert_eq!(get("x16").dtype(), DType::F16);
        assert_eq!(bits16(&get("x16")), bits16(&x.half().unwrap()));
        assert_eq!(bits16(&get("xb16")), bits16(&x.bfloat16().unwrap()));
        assert!(get("x16").to_f64_vec().unwrap()[0].is_infinite());
        let odd = get("odd16");
        assert_eq!(odd.shape(), [7]);
        assert!((odd.to_f64_vec().unwrap()[4] - 4.0 / 3.0).abs() < 1e-3);
        let out = std::env::temp_dir().join(format!(
            "wgrad-half-{}-{}.safetensors",
            std::process::id(),
            dev.name().len()
        ));
        wgrad::io::write_safetensors(&file, &out).unwrap();
        let again = wgrad::io::read_safetensors(&out, &Device::cpu()).unwrap();
        std::fs::remove_file(&out).ok();
        for (name, t) in &file {
            let back = &again.iter().find(|(k, _)| k == name).unwrap().1;
            assert_eq!(back.dtype(), t.dtype(), "{name}");
            assert_eq!(
                back.to_f64_vec().unwrap(),
                t.to_f64_vec().unwrap(),
                "{name}"
            );
        }
    }
}

/// A LayerNorm MLP that PyTorch saved after `.half()` loads into a model converted with
/// `to_dtype(F16)` and gives PyTorch's f16 outputs (each op rounds to f16 on both sides,
/// so within a few f16 ulps), on both devices; loading it into the f32 model is an error
/// naming the dtypes, and the model is unchanged.
#[test]
fn a_pytorch_half_model_loads_and_matches() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch_half_mlp.safetensors");
    for dev in common::devices() {
        let file = wgrad::io::read_safetensors(&path, &dev).unwrap();
        let get = |n: &str| file.iter().find(|(k, _)| k == n).unwrap().1.clone();
        let state: Vec<(String, Tensor)> = file
            .iter()
            .filter(|(k, _)| k != "input" && k != "output")
            .cloned()
            .collect();
        let model = Sequential::new()
            .add(Linear::new(&dev, 8, 16))
            .add(LayerNorm::new(&dev, &[16]).unwrap())
            .add(ReLU)
            .add(Linear::new(&dev, 16, 4));
        let before = model.parameters()[0].to_vec::<f32>().unwrap();
        assert!(
            model.load_state_dict(&state).is_err(),
            "f16 state into f32 parameters"
        );
        assert_eq!(model.parameters()[0].to_vec::<f32>().unwrap(), before);
        model.to_dtype(DType::F16).unwrap();
        model.load_state_dict(&state).unwrap();
        let y = model.forward(&get("input")).unwrap();
        assert_eq!(y.dtype(), DType::F16);
        let want = get("output").to_f64_vec().unwrap();
        let got = y.to_f64_vec().unwrap();
        common::assert_close(&got, &want, 4e-3, 4e-3, &format!("{} f16 MLP", dev.name()));
        model.to_dtype(DType::F32).unwrap();
        assert_eq!(
            model
                .forward(&get("input").float().unwrap())
                .unwrap()
                .dtype(),
            DType::F32
        );
    }
}

/// Layers made in a half dtype, initialised in place, run in it.
#[test]
fn layers_are_made_and_initialised_in_half() {
    let dev = Device::cpu();
    let norm = LayerNorm::with_options(
        &dev,
        &[4],
        wgrad::nn::LayerNormOptions {
            dtype: DType::BF16,
            ..Default::default()
        },
    )
    .unwrap();
    let x = Tensor::randn_seeded(&[2, 4], 1, &dev)
        .unwrap()
        .bfloat16()
        .unwrap();
    assert_eq!(norm.forward(&x).unwrap().dtype(), DType::BF16);
    let w = Tensor::zeros(&[3, 4], &dev).unwrap().half().unwrap();
    wgrad::nn::init::fill_(&w, wgrad::nn::init::kaiming_normal).unwrap();
    assert_eq!(w.dtype(), DType::F16);
    assert!(w.to_f64_vec().unwrap().iter().any(|&v| v != 0.0));
}

/// Identity paths keep the half dtype: dropout in evaluation or with p = 0 returns its
/// input, in f16 and under autocast.
#[test]
fn identity_paths_take_half_tensors() {
    let dev = Device::cpu();
    let h = Tensor::ones(&[4], &dev).unwrap().half().unwrap();
    assert_eq!(h.dropout(0.5, false).unwrap().dtype(), DType::F16);
    assert_eq!(h.dropout(0.0, true).unwrap().dtype(), DType::F16);
    assert_eq!(h.dropout(0.5, true).unwrap().dtype(), DType::F16);
    let y = wgrad::amp::autocast(&dev, DType::F16, || {
        let a = Tensor::ones(&[2, 3], &dev)?;
        a.matmul(&a.transpose(0, 1)?)?.dropout(0.0, true)
    })
    .unwrap()
    .unwrap();
    assert_eq!(y.dtype(), DType::F16);
}
