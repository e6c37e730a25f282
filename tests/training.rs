//! Small models learn; seeded runs repeat exactly; steady-state training allocates nothing.

mod common;

use std::sync::Arc;

use wgrad::data::{DataLoader, InMemoryDataset};
use wgrad::nn::*;
use wgrad::optim::{Adam, Optimizer, Sgd};
use wgrad::prelude::*;

fn xor_data(dev: &Device) -> (Tensor, Tensor) {
    let x = Tensor::from_vec(
        vec![0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0],
        &[4, 2],
        dev,
    )
    .unwrap();
    let y = Tensor::from_vec(vec![0u32, 1, 1, 0], &[4], dev).unwrap();
    (x, y)
}

common::test_device!(
    a_two_layer_mlp_learns_xor_on_both_devices_cpu,
    a_two_layer_mlp_learns_xor_on_both_devices_gpu,
    |dev| {
        let _serial = common::exclusive();
        dev.manual_seed(3);
        let model = Sequential::new()
            .add(Linear::new(&dev, 2, 8))
            .add(Tanh)
            .add(Linear::new(&dev, 8, 2));
        let mut opt = Adam::new(model.parameters(), 0.05);
        let (x, y) = xor_data(&dev);
        for _ in 0..300 {
            opt.zero_grad();
            model
                .forward(&x)
                .unwrap()
                .cross_entropy(&y)
                .unwrap()
                .backward()
                .unwrap();
            opt.step().unwrap();
        }
        let pred = model
            .forward(&x)
            .unwrap()
            .argmax(1, false)
            .unwrap()
            .to_vec::<u32>()
            .unwrap();
        assert_eq!(pred, vec![0, 1, 1, 0], "{dev:?}: XOR after 300 steps");
    }
);

/// Losses of a short seeded run with dropout and shuffling.
fn seeded_run(dev: &Device, seed: u64) -> Vec<f64> {
    dev.manual_seed(seed);
    let n = 64;
    let feats: Vec<f32> = (0..n * 4)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0)
        .collect();
    let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
    let ds = Arc::new(InMemoryDataset::classification(feats, &[4], labels).unwrap());
    let mut loader = DataLoader::new(ds, 16, dev).shuffle(seed);
    let model = Sequential::new()
        .add(Linear::new(dev, 4, 32))
        .add(ReLU)
        .add(Dropout::new(0.3))
        .add(Linear::new(dev, 32, 3));
    let mut opt = Sgd::new(model.parameters(), 0.1).momentum(0.9);
    let mut losses = Vec::new();
    for _ in 0..3 {
        for b in loader.epoch() {
            let b = b.unwrap();
            opt.zero_grad();
            let loss = model.forward(&b.x).unwrap().cross_entropy(&b.y).unwrap();
            loss.backward().unwrap();
            opt.step().unwrap();
            losses.push(loss.item().unwrap());
        }
    }
    losses
}

common::test_device!(
    a_seeded_run_repeats_bit_for_bit_on_the_same_device_cpu,
    a_seeded_run_repeats_bit_for_bit_on_the_same_device_gpu,
    |dev| {
        let _serial = common::exclusive();
        let a = seeded_run(&dev, 11);
        let b = seeded_run(&dev, 11);
        assert_eq!(a, b, "{dev:?}");
        assert_ne!(
            a,
            seeded_run(&dev, 12),
            "{dev:?}: another seed, another run"
        );
    }
);

#[test]
fn steady_state_training_with_adam_and_dropout_creates_nothing_new() {
    let _serial = common::exclusive();
    let dev = common::gpu();
    dev.manual_seed(5);
    let model = Sequential::new()
        .add(Linear::new(&dev, 8, 32))
        .add(ReLU)
        .add(Dropout::new(0.5))
        .add(Linear::new(&dev, 32, 4));
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let step = |opt: &mut Adam, s: usize| {
        let x: Vec<f32> = (0..16 * 8).map(|i| ((i + s) % 11) as f32 / 11.0).collect();
        let y: Vec<u32> = (0..16).map(|i| ((i + s) % 4) as u32).collect();
        let x = Tensor::from_vec(x, &[16, 8], &dev).unwrap();
        let y = Tensor::from_vec(y, &[16], &dev).unwrap();
        opt.zero_grad();
        let loss = model.forward(&x).unwrap().cross_entropy(&y).unwrap();
        loss.backward().unwrap();
        opt.step().unwrap();
        loss.item().unwrap()
    };
    step(&mut opt, 0);
    let warm = dev.counters();
    step(&mut opt, 1);
    // Adam creates its moment buffers in the first step, which shifts which pooled
    // buffers the second step gets; from then on every step binds the same buffers.
    let warm2 = dev.counters();
    for s in 2..=30 {
        assert!(step(&mut opt, s).is_finite());
    }
    let after = dev.counters();
    assert_eq!(after.buffers_created, warm.buffers_created, "buffers");
    assert_eq!(after.pipelines_created, warm.pipelines_created, "pipelines");
    assert_eq!(after.peak_bytes, warm.peak_bytes, "peak bytes");
    assert_eq!(
        after.bind_groups_created, warm2.bind_groups_created,
        "bind groups"
    );
    assert_eq!(
        after.submits - warm.submits,
        60,
        "two submits per step: the forward as backward() starts, the rest with the loss"
    );
}

#[test]
fn the_loader_shuffles_by_seed_and_keeps_every_example_once() {
    let dev = Device::cpu();
    let ds = Arc::new(
        InMemoryDataset::classification(
            (0..10).map(|v| v as f32).collect(),
            &[1],
            (0..10).collect(),
        )
        .unwrap(),
    );
    let order = |seed: u64| -> Vec<u32> {
        let mut l = DataLoader::new(ds.clone(), 3, &dev).shuffle(seed);
        l.epoch()
            .flat_map(|b| b.unwrap().y.to_vec::<u32>().unwrap())
            .collect()
    };
    let a = order(1);
    assert_eq!(a, order(1));
    assert_ne!(a, order(2));
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..10).collect::<Vec<u32>>());
    let mut l = DataLoader::new(ds.clone(), 3, &dev).drop_last(true);
    assert_eq!(l.len(), 3);
    assert_eq!(l.epoch().count(), 3);
    // Features and labels stay paired.
    for b in DataLoader::new(ds, 4, &dev).shuffle(9).epoch() {
        let b = b.unwrap();
        let x = b.x.to_vec::<f32>().unwrap();
        let y = b.y.to_vec::<u32>().unwrap();
        assert!(x.iter().zip(&y).all(|(a, b)| *a as u32 == *b));
    }
}

#[test]
fn the_bundled_digits_load_with_their_labels() {
    let ds = wgrad::data::digits::load().unwrap();
    assert_eq!(ds.len(), 1797);
    assert_eq!(ds.feature_shape(), vec![64]);
    assert!(ds.features().iter().all(|v| (0.0..=1.0).contains(v)));
    let labels = ds.labels().unwrap();
    assert!((0..10).all(|d| labels.iter().filter(|&&l| l == d).count() > 150));
    let err = wgrad::data::digits::load_from("/no/such/file.csv.gz").unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
}
