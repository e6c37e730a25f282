//! The GPU scheduler: deferred dispatch, one submit per readback, the flush bound, the
//! pipeline cache, and a training loop that allocates nothing after its first step.

mod common;

use wgrad::prelude::*;

#[test]
fn dispatches_wait_until_a_readback_and_then_go_in_one_submit() {
    let _serial = common::exclusive();
    let dev = common::gpu();
    let x = Tensor::rand_seeded(&[100], 1, &dev).unwrap();
    let mut y = x.clone();
    dev.sync().unwrap();
    let before = dev.counters();
    for _ in 0..10 {
        y = y.relu().unwrap().add(&x).unwrap();
    }
    let mid = dev.counters();
    assert_eq!(mid.submits, before.submits, "recording submits nothing");
    assert_eq!(mid.dispatches, before.dispatches + 20);
    let _ = y.to_vec::<f32>().unwrap();
    assert_eq!(
        dev.counters().submits,
        before.submits + 1,
        "one readback, one submit"
    );
}

#[test]
fn a_long_recording_flushes_at_the_size_bound() {
    let _serial = common::exclusive();
    let dev = common::gpu();
    let x = Tensor::rand_seeded(&[8], 2, &dev).unwrap();
    dev.sync().unwrap();
    let before = dev.counters().submits;
    let mut y = x.clone();
    for _ in 0..(wgrad::backend::gpu::MAX_PENDING + 10) {
        y = y.add(&x).unwrap();
    }
    assert!(
        dev.counters().submits > before,
        "the scheduler flushed by itself"
    );
    let v = y.to_vec::<f32>().unwrap();
    let x0 = x.to_vec::<f32>().unwrap();
    let n = (wgrad::backend::gpu::MAX_PENDING + 11) as f32;
    assert!(
        (v[0] - n * x0[0]).abs() < 1e-3 * n,
        "{} vs {}",
        v[0],
        n * x0[0]
    );
}

#[test]
fn pipelines_are_compiled_once() {
    let _serial = common::exclusive();
    let dev = common::gpu();
    let x = Tensor::rand_seeded(&[16], 3, &dev).unwrap();
    let _ = x.tanh().unwrap().to_vec::<f32>().unwrap();
    let before = dev.counters().pipelines_created;
    let _ = x.tanh().unwrap().tanh().unwrap().to_vec::<f32>().unwrap();
    assert_eq!(dev.counters().pipelines_created, before);
}

#[test]
fn an_uploaded_buffer_reused_while_work_is_pending_keeps_queue_order() {
    let _serial = common::exclusive();
    // a's buffer is freed while its kernel is still pending, then reused by an upload:
    // the upload must land after the pending work that read the old contents.
    let dev = common::gpu();
    let a = Tensor::from_vec(vec![1.0f32; 64], &[64], &dev).unwrap();
    let b = a.mul_scalar(3.0).unwrap();
    drop(a);
    let c = Tensor::from_vec(vec![5.0f32; 64], &[64], &dev).unwrap();
    let d = b.add(&c).unwrap();
    assert!(d.to_vec::<f32>().unwrap().iter().all(|&v| v == 8.0));
}

/// One step of a small two-layer network: forward, backward, SGD update, loss readback.
fn step(dev: &Device, params: &[Tensor], step: u64) -> f64 {
    let x: Vec<f32> = (0..16 * 8)
        .map(|i| ((i as u64 * 7 + step) % 13) as f32 / 13.0)
        .collect();
    let t: Vec<u32> = (0..16).map(|i| ((i as u64 + step) % 4) as u32).collect();
    let x = Tensor::from_vec(x, &[16, 8], dev).unwrap();
    let t = Tensor::from_vec(t, &[16], dev).unwrap();
    let h = x
        .matmul(&params[0])
        .unwrap()
        .add(&params[1])
        .unwrap()
        .relu()
        .unwrap();
    let logits = h.matmul(&params[2]).unwrap().add(&params[3]).unwrap();
    let loss = logits.cross_entropy(&t).unwrap();
    loss.backward().unwrap();
    no_grad(|| {
        for p in params {
            let g = p.grad().unwrap();
            p.copy_from(&p.sub(&g.mul_scalar(0.1).unwrap()).unwrap())
                .unwrap();
            p.zero_grad();
        }
    });
    loss.item().unwrap()
}

#[test]
fn steady_state_training_creates_no_buffers_pipelines_or_bind_groups() {
    let _serial = common::exclusive();
    let dev = common::gpu();
    let shapes: [&[usize]; 4] = [&[8, 16], &[16], &[16, 4], &[4]];
    let params: Vec<Tensor> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Tensor::randn_seeded(s, 10 + i as u64, &dev)
                .unwrap()
                .mul_scalar(0.3)
                .unwrap()
                .requires_grad_(true)
                .unwrap()
        })
        .collect();
    let first = step(&dev, &params, 0);
    let warm = dev.counters();
    let mut last = first;
    for s in 1..=50 {
        last = step(&dev, &params, s);
    }
    let after = dev.counters();
    assert_eq!(
        after.buffers_created, warm.buffers_created,
        "new buffers after warm-up"
    );
    assert_eq!(
        after.pipelines_created, warm.pipelines_created,
        "new pipelines after warm-up"
    );
    assert_eq!(
        after.bind_groups_created, warm.bind_groups_created,
        "new bind groups after warm-up"
    );
    assert_eq!(after.peak_bytes, warm.peak_bytes, "peak memory grew");
    assert_eq!(
        after.submits - warm.submits,
        100,
        "two submits per step: the forward when backward() starts, the rest with the loss \
         readback"
    );
    assert!(last.is_finite() && first.is_finite());
}
