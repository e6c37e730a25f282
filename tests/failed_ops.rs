//! A failed op leaves nothing behind: every check runs before anything is recorded, so
//! after an op returns an error the device's next `sync()` succeeds and the device goes
//! on working. Ops that do not cut their work past the binding limit return `Ok` and
//! report `OutOfMemory` at the next readback or `sync` (a documented deferred error):
//! only those may leave an error for `sync`.

mod common;

use wgrad::ops::conv2d::ConvOptions;
use wgrad::ops::registry::check::{draw, make_inputs};
use wgrad::ops::registry::registry;
use wgrad::prelude::*;

/// 4 KiB (1,024 f32s): the binding cap of these tests.
const CAP: u64 = 4 << 10;

fn capped() -> Device {
    capped_at(CAP)
}

fn capped_at(cap: u64) -> Device {
    Device::gpu_with(wgrad::GpuOptions {
        max_binding: Some(cap),
        ..wgrad::GpuOptions::from_env()
    })
    .unwrap()
}

/// The device still computes: a small product reads back right.
fn still_works(dev: &Device, what: &str) {
    let y = Tensor::ones(&[4, 4], dev)
        .unwrap()
        .matmul(&Tensor::ones(&[4, 2], dev).unwrap())
        .and_then(|y| y.to_vec::<f32>())
        .unwrap_or_else(|e| panic!("{what}: the device no longer works: {e}"));
    assert_eq!(y, vec![4.0; 8], "{what}");
}

/// What one op did, checked: an error leaves `sync` clean; a success may leave only a
/// deferred `OutOfMemory` (a dispatch over the binding limit that was skipped).
fn check(what: &str, r: &Result<Tensor>, dev: &Device) -> bool {
    let synced = dev.sync();
    match (r, &synced) {
        (Err(e), Err(s)) => panic!("{what}: returned {e} but left {s} for the next sync"),
        (Ok(_), Err(s)) => assert!(
            matches!(s, Error::OutOfMemory { .. }),
            "{what}: the only deferred error is OutOfMemory, got {s}"
        ),
        _ => {}
    }
    still_works(dev, what);
    synced.is_err()
}

/// Every registry op (its largest case) on a GPU whose bindings are capped at 4 KiB
/// (inputs of more than 1,024 elements are too large for one binding) and at 256 bytes
/// (almost every input is). Forward, then backward where the forward succeeded.
#[test]
fn after_any_registry_op_sync_is_clean_unless_the_op_deferred_its_error() {
    for cap in [CAP, 256] {
        every_op_under(cap);
    }
}

fn every_op_under(cap: u64) {
    let dev = capped_at(cap);
    let (mut cases, mut over, mut deferred, mut failed) = (0, 0, 0, 0);
    for entry in registry() {
        // One case per op: the one with the most input elements (the likeliest to be
        // over the cap), which keeps the test fast.
        let largest = entry.cases.iter().enumerate().max_by_key(|(_, c)| {
            c.inputs
                .iter()
                .map(|i| i.shape.iter().product::<usize>())
                .sum::<usize>()
        });
        if let Some((k, case)) = largest {
            let what = format!("{} {}", entry.name, case.label);
            let (values, _) = draw(&entry, k);
            let inputs = make_inputs(case, &values, DType::F32, &dev, entry.differentiable)
                .unwrap_or_else(|e| panic!("{what}: inputs: {e}"));
            cases += 1;
            over += inputs.iter().any(|t| t.numel() as u64 * 4 > cap) as usize;
            let r = (case.run)(&inputs, &dev);
            failed += r.is_err() as usize;
            deferred += check(&what, &r, &dev) as usize;
            if let (Ok(y), true) = (&r, entry.differentiable) {
                if y.requires_grad() {
                    let b = y.sum().and_then(|s| s.backward()).map(|_| y.clone());
                    failed += b.is_err() as usize;
                    deferred += check(&format!("{what} backward"), &b, &dev) as usize;
                }
            }
        }
    }
    eprintln!(
        "cap {cap} B: {cases} ops, {over} with an input over the cap: {failed} errors returned, \
         {deferred} deferred"
    );
    assert!(over > 0, "some inputs must be over the cap");
}

/// Convolutions whose arguments are wrong only in a part checked late once (the bias):
/// they used to launch the columns first, whose dispatch, over the binding limit, was
/// skipped and reported at the next `sync`.
#[test]
fn a_convolution_with_a_bad_bias_launches_nothing() {
    let dev = capped();
    let x = Tensor::ones(&[2, 3, 20, 20], &dev).unwrap();
    let w = Tensor::ones(&[4, 3, 3, 3], &dev).unwrap();
    let wt = Tensor::ones(&[3, 4, 3, 3], &dev).unwrap();
    let bad = Tensor::ones(&[5], &dev).unwrap();
    let o = ConvOptions::default();
    let act = wgrad::ops::matmul::Act::Relu;
    type Op<'a> = Box<dyn Fn() -> Result<Tensor> + 'a>;
    let ops: [(&str, Op); 3] = [
        ("conv2d", Box::new(|| x.conv2d(&w, Some(&bad), o))),
        (
            "conv_transpose2d",
            Box::new(|| x.conv_transpose2d(&wt, Some(&bad), o)),
        ),
        (
            "conv2d_act",
            Box::new(|| x.conv2d_act(&w, Some(&bad), o, act)),
        ),
    ];
    for (what, op) in ops {
        let before = dev.counters().dispatches;
        let r = op();
        assert!(matches!(r, Err(Error::Shape { .. })), "{what}: {r:?}");
        assert_eq!(dev.counters().dispatches, before, "{what} launched work");
        check(what, &r, &dev);
    }
}
