//! The first attention call's compile time on a software adapter, with Mesa's shader
//! cache off (a fresh machine's first run): the GPU attention kernels are generated per
//! head dimension as straight-line code on software adapters, and lavapipe's compile
//! time grows quickly with their size (a layout with eight rows per thread once took
//! 16-240 s per pipeline). The bound is generous; the time is printed.

mod common;

use std::time::Instant;

use wgrad::prelude::*;

#[test]
fn attention_at_head_dim_64_compiles_within_a_minute_on_a_fresh_machine() {
    // Before the driver loads: this binary holds this one test.
    std::env::set_var("MESA_SHADER_CACHE_DISABLE", "true");
    let dev = common::gpu();
    let make = |seed| {
        Tensor::randn_seeded(&[1, 2, 64, 64], seed, &dev)
            .unwrap()
            .requires_grad_(true)
            .unwrap()
    };
    let (q, k, v) = (make(1), make(2), make(3));
    // The sum and its backward compile first, outside the timed region.
    q.sum().unwrap().backward().unwrap();
    dev.sync().unwrap();
    let start = Instant::now();
    let out = q
        .scaled_dot_product_attention(&k, &v, None, 0.0, false, None)
        .unwrap();
    out.sum().unwrap().backward().unwrap();
    dev.sync().unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}: first attention step at head_dim 64 took {secs:.1} s",
        dev.name()
    );
    assert!(secs < 60.0, "{secs:.1} s");
}
