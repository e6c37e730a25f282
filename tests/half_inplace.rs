//! In-place updates and optimizer steps on half-precision tensors: computed in `f32` and
//! rounded once into the tensor's own storage, as PyTorch's (its "opmath" type), on both
//! devices and in both half types.

mod common;

use wgrad::optim::Optimizer;
use wgrad::prelude::*;

const HALVES: [DType; 2] = [DType::F16, DType::BF16];

fn bits(t: &Tensor) -> Vec<u32> {
    t.float()
        .unwrap()
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// `x` rounded to `dtype` and back: the values a half tensor holds.
fn rounded(x: &Tensor, dtype: DType) -> Tensor {
    x.to_dtype(dtype).unwrap().float().unwrap()
}

type Update = fn(&Tensor, &Tensor, &Tensor) -> wgrad::Result<()>;

fn updates() -> Vec<(&'static str, Update)> {
    vec![
        ("add_", |x, a, _| x.add_(a).map(|_| ())),
        ("sub_", |x, a, _| x.sub_(a).map(|_| ())),
        ("mul_", |x, a, _| x.mul_(a).map(|_| ())),
        ("div_", |x, a, _| x.div_(a).map(|_| ())),
        ("add_scaled_", |x, a, _| x.add_scaled_(a, -0.3).map(|_| ())),
        ("addcmul_", |x, a, b| x.addcmul_(a, b, 0.7).map(|_| ())),
        ("addcdiv_", |x, a, b| x.addcdiv_(a, b, 0.7).map(|_| ())),
        ("mul_scalar_", |x, _, _| x.mul_scalar_(1.3).map(|_| ())),
        ("div_scalar_", |x, _, _| x.div_scalar_(3.0).map(|_| ())),
        ("add_scalar_", |x, _, _| x.add_scalar_(0.1).map(|_| ())),
        ("sqrt_", |x, _, _| {
            x.abs()
                .and_then(|y| x.copy_(&y))
                .and_then(|x| x.sqrt_())
                .map(|_| ())
        }),
        ("lerp_", |x, a, _| x.lerp_(a, 0.25).map(|_| ())),
        ("maximum_", |x, a, _| x.maximum_(a).map(|_| ())),
        ("copy_", |x, a, _| x.copy_(a).map(|_| ())),
        ("aliased add_", |x, _, _| x.add_(x).map(|_| ())),
    ]
}

common::test_device!(
    /// Each in-place update of a half tensor equals the `f32` update of its values,
    /// rounded once, to the bit; the tensor keeps its dtype and storage.
    half_inplace_updates_round_once_cpu,
    half_inplace_updates_round_once_gpu,
    |dev| {
        for dtype in HALVES {
            for (what, f) in updates() {
                let make = |seed: u64, shape: &[usize]| {
                    Tensor::randn_seeded(shape, seed, &dev)
                        .unwrap()
                        .add_scalar(2.5)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap()
                };
                let (x, a, b) = (make(1, &[5, 3]), make(2, &[5, 3]), make(3, &[3]));
                let (x32, a32, b32) = (x.float().unwrap(), a.float().unwrap(), b.float().unwrap());
                let handle = x.clone();
                f(&x, &a, &b).unwrap();
                f(&x32, &a32, &b32).unwrap();
                assert_eq!(x.dtype(), dtype, "{what}");
                assert_eq!(bits(&handle), bits(&rounded(&x32, dtype)), "{what} {dtype:?}");
            }
            // Operands of another dtype are an error naming both.
            let x = Tensor::ones(&[2], &dev).unwrap().to_dtype(dtype).unwrap();
            let msg = x.add_(&Tensor::ones(&[2], &dev).unwrap()).unwrap_err().to_string();
            assert!(msg.contains("F32") && msg.contains(&format!("{dtype:?}")), "{msg}");
        }
    }
);

type Make = fn(Vec<Tensor>) -> Box<dyn Optimizer>;

fn optimizers() -> Vec<(&'static str, Make)> {
    vec![
        ("sgd momentum", |p| {
            Box::new(Sgd::new(p, 0.1).momentum(0.9).weight_decay(0.01))
        }),
        ("adam", |p| Box::new(Adam::new(p, 0.01))),
        ("adamw", |p| Box::new(AdamW::new(p, 0.01))),
        ("adagrad", |p| Box::new(Adagrad::new(p, 0.1).lr_decay(0.1))),
        ("rmsprop centered", |p| {
            Box::new(RMSprop::new(p, 0.01).centered(true).momentum(0.5))
        }),
        ("adadelta", |p| Box::new(Adadelta::new(p, 1.0))),
    ]
}

common::test_device!(
    /// An optimizer over half parameters (with an `f32` one beside them) follows the
    /// `f32` optimizer whose parameters and states are rounded to the half type after
    /// every step, to the bit; its states are half tensors.
    optimizers_step_half_parameters_cpu,
    optimizers_step_half_parameters_gpu,
    |dev| {
        for dtype in HALVES {
            for (what, make) in optimizers() {
                let init = |seed: u64, shape: &[usize]| Tensor::randn_seeded(shape, seed, &dev).unwrap();
                let shapes: [&[usize]; 3] = [&[4, 3], &[7], &[2]];
                let ph: Vec<Tensor> = shapes
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let t = init(i as u64, s);
                        let t = if i < 2 { t.to_dtype(dtype).unwrap() } else { t };
                        t.requires_grad_(true).unwrap()
                    })
                    .collect();
                let p32: Vec<Tensor> = ph
                    .iter()
                    .map(|p| p.float().unwrap().detach().requires_grad_(true).unwrap())
                    .collect();
                let (mut oh, mut o32) = (make(ph.clone()), make(p32.clone()));
                for step in 0..3 {
                    for (i, (h, f)) in ph.iter().zip(&p32).enumerate() {
                        let g = init(100 + 10 * step + i as u64, h.shape());
                        let gh = g.to_dtype(h.dtype()).unwrap();
                        f.set_grad(Some(gh.float().unwrap()));
                        h.set_grad(Some(gh));
                    }
                    oh.step().unwrap();
                    o32.step().unwrap();
                    // The half run's rounding, applied to the f32 run's half tensors.
                    let st = o32.state_dict();
                    let state = st.tensors.iter().map(|(n, t)| (n.clone(), t.clone()));
                    let params = p32.iter().enumerate().map(|(i, p)| (format!("p{i}"), p.clone()));
                    for (name, t) in params.chain(state) {
                        let i: usize = name
                            .trim_start_matches("state.")
                            .trim_start_matches('p')
                            .split('.')
                            .next()
                            .unwrap()
                            .parse()
                            .unwrap();
                        if i < 2 && t.shape() == ph[i].shape() {
                            no_grad(|| t.copy_(&rounded(&t, dtype)).map(|_| ())).unwrap();
                        }
                    }
                    for (i, (h, f)) in ph.iter().zip(&p32).enumerate() {
                        assert_eq!(bits(h), bits(f), "{what} {dtype:?} step {step} param {i}");
                    }
                }
                let st = oh.state_dict();
                for (name, t) in &st.tensors {
                    if name.starts_with("state.0.") && t.numel() > 1 {
                        assert_eq!(t.dtype(), dtype, "{what}: {name}");
                    }
                }
            }
        }
    }
);
