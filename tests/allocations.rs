//! The CPU backend's small-matrix paths allocate nothing per step: a recurrent layer's
//! forward and backward make no more heap allocations over 64 time steps than over 4
//! (the GEMM library's own packing buffers aside: it allocates them per call), and
//! attention as many over 512 batch-heads as over 256 (a few per thread at most), and a
//! fused convolution as many over 64 images as over 16. Counted by a global allocator
//! that wraps the system's, in this test binary only; each case runs a few times first
//! so the buffer pool holds what it reuses.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use wgrad::nn::{Act, Module, GRU, LSTM, RNN};
use wgrad::ops::conv2d::ConvOptions;
use wgrad::prelude::*;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
}

/// Counts an allocation unless the GEMM library makes it (its packing buffers, one or
/// two per product call; see `wgrad::backend::cpu::in_gemm`).
fn count() {
    if !wgrad::backend::cpu::in_gemm() {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations made by the last of five runs of `f` (the others warm the pool).
/// The tests in this file run one at a time (each takes the lock), so no other test's
/// allocations are counted.
fn allocations(f: impl Fn()) -> usize {
    for _ in 0..4 {
        f();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    f();
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A forward and backward of `layer` over `steps` steps of a `[8, steps, 16]` input.
fn recurrent_step(layer: &dyn Module, steps: usize, dev: &Device) {
    let x = Tensor::randn_seeded(&[8, steps, 16], 1, dev)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let y = layer.forward(&x).unwrap();
    y.sum().unwrap().backward().unwrap();
}

#[test]
fn recurrent_layers_allocate_nothing_per_time_step() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::cpu();
    let options = wgrad::nn::RecurrentOptions {
        batch_first: true,
        ..Default::default()
    };
    let layers: Vec<(&str, Box<dyn Module>)> = vec![
        (
            "rnn",
            Box::new(RNN::with_options(&dev, 16, 32, false, options).unwrap()),
        ),
        (
            "lstm",
            Box::new(LSTM::with_options(&dev, 16, 32, options).unwrap()),
        ),
        (
            "gru",
            Box::new(GRU::with_options(&dev, 16, 32, options).unwrap()),
        ),
    ];
    for (name, layer) in &layers {
        let short = allocations(|| recurrent_step(layer.as_ref(), 4, &dev));
        let long = allocations(|| recurrent_step(layer.as_ref(), 64, &dev));
        // The same or fewer: a longer sequence's buffers pass the pool's size floor.
        assert!(
            long <= short,
            "{name}: {short} allocations over 4 steps, {long} over 64"
        );
    }
}

#[test]
fn attention_allocates_per_thread_not_per_head() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::cpu();
    let run = |heads: usize| {
        let qkv: Vec<Tensor> = (0..3)
            .map(|i| {
                Tensor::randn_seeded(&[heads, 64, 32], i, &dev)
                    .unwrap()
                    .requires_grad_(true)
                    .unwrap()
            })
            .collect();
        let y = qkv[0]
            .scaled_dot_product_attention(&qkv[1], &qkv[2], None, 0.0, true, None)
            .unwrap();
        y.sum().unwrap().backward().unwrap();
    };
    let (fewer, more) = (allocations(|| run(256)), allocations(|| run(512)));
    // Both split over every thread; each thread's scratch blocks are its own.
    let slack = 8 * std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        more <= fewer + slack,
        "{fewer} allocations for 256 heads, {more} for 512"
    );
}

#[test]
fn fused_convolutions_allocate_per_thread_not_per_image() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::cpu();
    let w = Tensor::randn_seeded(&[16, 8, 3, 3], 1, &dev)
        .unwrap()
        .requires_grad_(true)
        .unwrap();
    let o = ConvOptions {
        padding: (1, 1),
        ..ConvOptions::default()
    };
    let run = |n: usize| {
        let x = Tensor::randn_seeded(&[n, 8, 16, 16], 2, &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap();
        let y = x.conv2d_act(&w, None, o, Act::Relu).unwrap();
        y.sum().unwrap().backward().unwrap();
    };
    let (fewer, more) = (allocations(|| run(32)), allocations(|| run(64)));
    let slack = 8 * std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        more <= fewer + slack,
        "{fewer} allocations for 32 images, {more} for 64"
    );
}
