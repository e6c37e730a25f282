//! Modules: names, modes, devices, and every module's forward and backward on the GPU
//! against the CPU (same seed, so the same initial weights and dropout masks).

mod common;

use wgrad::nn::*;
use wgrad::prelude::*;

fn every_module(dev: &Device) -> Sequential {
    dev.manual_seed(42);
    Sequential::new()
        .add(Linear::new(dev, 6, 16))
        .add(Sigmoid)
        .add(Linear::new(dev, 16, 16))
        .add(Tanh)
        .add(Linear::new(dev, 16, 16))
        .add(ReLU)
        .add(Softplus {
            beta: 2.0,
            threshold: 5.0,
        })
        .add(LeakyReLU(0.1))
        .add(NoisyReLU::new(0.3))
        .add(Linear::new(dev, 16, 8))
        .add(PReLU::new(dev, 1, 0.25))
        .add(Dropout::new(0.25))
        .add(Linear::new(dev, 8, 3))
}

#[test]
fn every_module_matches_the_cpu_on_the_gpu_forward_and_backward() {
    let _serial = common::exclusive();
    let mut results = Vec::new();
    for dev in common::devices() {
        let m = every_module(&dev);
        let x = Tensor::randn_seeded(&[5, 6], 7, &dev).unwrap();
        let t = Tensor::from_vec(vec![0u32, 1, 2, 1, 0], &[5], &dev).unwrap();
        let loss = m.forward(&x).unwrap().cross_entropy(&t).unwrap();
        loss.backward().unwrap();
        let grads: Vec<(String, Vec<f32>)> = m
            .named_parameters()
            .into_iter()
            .map(|(n, p)| {
                (
                    n,
                    p.grad()
                        .expect("every parameter gets a gradient")
                        .to_vec::<f32>()
                        .unwrap(),
                )
            })
            .collect();
        results.push((loss.item().unwrap(), grads));
    }
    let (cpu, gpu) = (&results[0], &results[1]);
    assert!(
        (cpu.0 - gpu.0).abs() < 1e-5,
        "loss: cpu {} gpu {}",
        cpu.0,
        gpu.0
    );
    for ((name, c), (_, g)) in cpu.1.iter().zip(&gpu.1) {
        common::assert_close(g, c, 1e-5, 1e-3, &format!("{name}: gpu vs cpu"));
    }
    assert!(
        cpu.1.iter().any(|(n, _)| n == "10.weight"),
        "PReLU's slope is a parameter"
    );
}

#[test]
fn nested_modules_get_pytorch_state_dict_names() {
    let _serial = common::exclusive();
    struct AutoEncoder {
        encoder: Sequential,
        decoder: Sequential,
    }
    impl Module for AutoEncoder {
        fn forward(&self, x: &Tensor) -> wgrad::Result<Tensor> {
            self.decoder.forward(&self.encoder.forward(x)?)
        }
        fn children(&self) -> Vec<(String, &dyn Module)> {
            vec![
                ("encoder".into(), &self.encoder),
                ("decoder".into(), &self.decoder),
            ]
        }
    }
    let dev = Device::cpu();
    let ae = AutoEncoder {
        encoder: Sequential::new()
            .add(Linear::new(&dev, 8, 4))
            .add(ReLU)
            .add(Linear::new(&dev, 4, 2)),
        decoder: Sequential::new().add(Linear::new(&dev, 2, 8)),
    };
    let names: Vec<String> = ae.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "encoder.0.weight",
            "encoder.0.bias",
            "encoder.2.weight",
            "encoder.2.bias",
            "decoder.0.weight",
            "decoder.0.bias"
        ]
    );
    assert_eq!(ae.num_parameters(), 8 * 4 + 4 + 4 * 2 + 2 + 2 * 8 + 8);
}

#[test]
fn eval_mode_turns_dropout_and_noise_off() {
    let _serial = common::exclusive();
    let dev = Device::cpu();
    let m = Sequential::new()
        .add(Dropout::new(0.5))
        .add(NoisyReLU::new(1.0));
    let x = Tensor::from_vec(vec![1.0f32, -1.0, 2.0, 0.5], &[4], &dev).unwrap();
    m.eval();
    assert_eq!(
        m.forward(&x).unwrap().to_vec::<f32>().unwrap(),
        vec![1.0, 0.0, 2.0, 0.5]
    );
    m.train();
    let big = Tensor::ones(&[10_000], &dev).unwrap();
    let y = Sequential::new()
        .add(Dropout::new(0.5))
        .forward(&big)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let kept = y.iter().filter(|&&v| v != 0.0).count();
    assert!((4_700..5_300).contains(&kept), "about half kept: {kept}");
    assert!(
        y.iter().all(|&v| v == 0.0 || v == 2.0),
        "kept values scaled by 1 / (1 - p)"
    );
}

#[test]
fn linear_uses_pytorchs_layout_and_initialisation_bounds() {
    let _serial = common::exclusive();
    let dev = Device::cpu();
    let l = Linear::new(&dev, 100, 7);
    assert_eq!(l.weight.tensor().shape(), &[7, 100]);
    let bound = 1.0 / 10.0;
    let w = l.weight.tensor().to_vec::<f32>().unwrap();
    assert!(w.iter().all(|v| v.abs() <= bound));
    assert!(
        w.iter().any(|v| v.abs() > 0.9 * bound),
        "uses the whole range"
    );
    // y = x W^T + b with known numbers.
    let l = Linear::from_tensors(
        Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], &dev).unwrap(),
        Some(Tensor::from_vec(vec![0.5f32, -0.5], &[2], &dev).unwrap()),
    );
    let x = Tensor::from_vec(vec![1.0f32, 0.0, -1.0], &[1, 3], &dev).unwrap();
    assert_eq!(
        l.forward(&x).unwrap().to_vec::<f32>().unwrap(),
        vec![-1.5, -2.5]
    );
}

#[test]
fn a_module_moves_between_devices() {
    let _serial = common::exclusive();
    let gpu = common::gpu();
    let cpu = Device::cpu();
    let m = Sequential::new().add(Linear::new(&cpu, 3, 2));
    let x = Tensor::ones(&[1, 3], &cpu).unwrap();
    let y_cpu = m.forward(&x).unwrap().to_vec::<f32>().unwrap();
    m.to_device(&gpu).unwrap();
    assert!(m
        .parameters()
        .iter()
        .all(|p| p.device().is_gpu() && p.requires_grad()));
    let y_gpu = m
        .forward(&x.to(&gpu).unwrap())
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    common::assert_close(&y_gpu, &y_cpu, 1e-6, 0.0, "same function after the move");
}

#[test]
fn init_helpers_follow_pytorchs_formulas() {
    let _serial = common::exclusive();
    let dev = Device::cpu();
    assert_eq!(init::fans(&[16, 3, 3, 3]), (27, 144));
    let w = init::kaiming_normal(&[256, 512], &dev)
        .to_vec::<f32>()
        .unwrap();
    let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
    assert!((std - (2.0f32 / 512.0).sqrt()).abs() < 0.003, "std {std}");
    let b = (6.0f32 / (100.0 + 50.0)).sqrt();
    let w = init::xavier_uniform(&[50, 100], 1.0, &dev)
        .to_vec::<f32>()
        .unwrap();
    assert!(w.iter().all(|v| v.abs() <= b) && w.iter().any(|v| v.abs() > 0.95 * b));
    let t = Tensor::ones(&[3], &dev).unwrap();
    init::zeros_(&t).unwrap();
    assert_eq!(t.to_vec::<f32>().unwrap(), vec![0.0; 3]);
}
