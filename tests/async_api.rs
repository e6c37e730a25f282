//! The async API, which the browser needs because nothing may block there:
//! on native it must give exactly what the blocking API gives, report the same errors,
//! and share the same default device.

mod common;

use pollster::block_on;
use wgrad::nn::{Linear, Module, ReLU, Sequential};
use wgrad::optim::{Optimizer, Sgd};
use wgrad::prelude::*;

#[test]
fn gpu_async_opens_the_same_default_device() {
    let a = block_on(Device::gpu_async()).unwrap();
    let b = common::gpu();
    assert_eq!(a, b, "one default GPU per process");
}

common::test_device!(
    async_readbacks_give_the_sync_values_cpu,
    async_readbacks_give_the_sync_values_gpu,
    |dev| {
        let x = Tensor::randn_seeded(&[37, 19], 5, &dev).unwrap();
        let y = x
            .tanh()
            .unwrap()
            .matmul(&x.transpose(0, 1).unwrap())
            .unwrap();
        let sync: Vec<f32> = y.to_vec().unwrap();
        let asynced: Vec<f32> = block_on(y.to_vec_async()).unwrap();
        assert_eq!(sync, asynced, "{dev:?}");
        let s = y.sum().unwrap();
        assert_eq!(s.item().unwrap(), block_on(s.item_async()).unwrap());
        let f64s = block_on(y.to_f64_vec_async()).unwrap();
        assert_eq!(f64s, y.to_f64_vec().unwrap());
        let idx = Tensor::from_slice(&[3u32, 1, 4], &[3], &dev).unwrap();
        assert_eq!(block_on(idx.to_vec_async::<u32>()).unwrap(), [3, 1, 4]);
        // Wrong element type and wrong size are the same errors.
        assert!(matches!(
            block_on(y.to_vec_async::<u32>()),
            Err(Error::DType { .. })
        ));
        assert!(matches!(block_on(y.item_async()), Err(Error::Shape { .. })));
        block_on(dev.sync_async()).unwrap();
    }
);

#[test]
fn an_async_training_loop_matches_the_sync_one_step_for_step() {
    let dev = common::gpu();
    let run = |use_async: bool| -> Vec<f64> {
        dev.manual_seed(7);
        let model = Sequential::new()
            .add(Linear::new(&dev, 8, 16))
            .add(ReLU)
            .add(Linear::new(&dev, 16, 3));
        let mut opt = Sgd::new(model.parameters(), 0.1);
        let x = Tensor::randn_seeded(&[32, 8], 1, &dev).unwrap();
        let t =
            Tensor::from_vec((0..32u32).map(|i| i % 3).collect::<Vec<_>>(), &[32], &dev).unwrap();
        (0..5)
            .map(|_| {
                opt.zero_grad();
                let loss = model.forward(&x).unwrap().cross_entropy(&t).unwrap();
                loss.backward().unwrap();
                opt.step().unwrap();
                if use_async {
                    block_on(loss.item_async()).unwrap()
                } else {
                    loss.item().unwrap()
                }
            })
            .collect()
    };
    let (sync, asynced) = (run(false), run(true));
    assert_eq!(sync, asynced);
    assert!(sync[4] < sync[0], "it trains: {sync:?}");
}

#[test]
fn async_reads_report_device_errors_like_sync_ones() {
    // A GPU of its own: the flag is reported at the device's next readback, which on
    // the shared default GPU could be another test's.
    let dev = Device::gpu_with(wgrad::GpuOptions::from_env()).unwrap();
    // An out-of-range index found on the device comes back at the async readback.
    let table = Tensor::ones(&[4, 2], &dev).unwrap();
    let bad = Tensor::from_slice(&[0u32, 9], &[2], &dev).unwrap();
    let rows = table.index_select(0, &bad).unwrap();
    assert!(
        matches!(
            block_on(rows.to_vec_async::<f32>()),
            Err(Error::Argument { .. })
        ),
        "the flag rides in the async readback"
    );
    // And through sync_async; the device works on afterwards.
    let _ = table.index_select(0, &bad).unwrap();
    assert!(matches!(
        block_on(dev.sync_async()),
        Err(Error::Argument { .. })
    ));
    let ok = table.index_select(0, &Tensor::from_slice(&[1u32], &[1], &dev).unwrap());
    assert_eq!(
        block_on(ok.unwrap().to_vec_async::<f32>()).unwrap(),
        [1.0, 1.0]
    );
}
