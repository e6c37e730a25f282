//! `nll_loss` and `binary_cross_entropy` (tensor methods and the `NLLLoss` / `BCELoss`
//! modules) against plain `f64` loops written from PyTorch's definitions, on both devices:
//! class weights, an ignored class, every reduction, empty batches, and probabilities of
//! exactly 0 and 1 (the logs clamped at -100, PyTorch's gradient formula).

mod common;

use common::{assert_close, test_device, vec_f32};
use wgrad::nn::{BCELoss, NLLLoss, Reduction};
use wgrad::prelude::*;

fn t(v: &[f32], shape: &[usize], dev: &Device) -> Tensor {
    Tensor::from_slice(v, shape, dev).unwrap()
}

fn leaf(v: &[f32], shape: &[usize], dev: &Device) -> Tensor {
    t(v, shape, dev).requires_grad_(true).unwrap()
}

fn idx(v: &[u32], dev: &Device) -> Tensor {
    Tensor::from_slice(v, &[v.len()], dev).unwrap()
}

const N: usize = 5;
const C: usize = 4;
const LOGP: [f32; N * C] = [
    -0.3, -1.7, -2.2, -4.0, //
    -1.1, -0.4, -3.3, -2.5, //
    -2.0, -2.0, -0.9, -1.2, //
    -0.7, -3.1, -1.5, -0.2, //
    -5.0, -0.1, -2.8, -3.6,
];
const TARGET: [u32; N] = [0, 2, 2, 3, 1];
const WEIGHT: [f32; C] = [0.5, 2.0, 1.5, 3.0];

/// PyTorch's per-sample losses and the weighted mean's divisor, from the definition.
fn nll_reference(weight: Option<&[f32]>, ignore: Option<u32>) -> (Vec<f64>, f64) {
    let mut per = Vec::new();
    let mut divisor = 0.0;
    for (i, &k) in TARGET.iter().enumerate() {
        if Some(k) == ignore {
            per.push(0.0);
            continue;
        }
        let w = weight.map_or(1.0, |w| w[k as usize] as f64);
        per.push(-w * LOGP[i * C + k as usize] as f64);
        divisor += w;
    }
    (per, divisor)
}

test_device!(
    /// Unweighted: the mean, the sum and per-sample losses, and the gradient `-1 / N` at
    /// each target (0 elsewhere).
    nll_loss_plain_cpu,
    nll_loss_plain_gpu,
    |dev| {
        let x = leaf(&LOGP, &[N, C], &dev);
        let target = idx(&TARGET, &dev);
        let (per, _) = nll_reference(None, None);
        let mean = x.nll_loss(&target).unwrap();
        let want = per.iter().sum::<f64>() / N as f64;
        assert_close(&[mean.item().unwrap()], &[want], 1e-6, 1e-6, "mean");
        let sum = x.nll_loss_with(&target, None, None, Reduction::Sum).unwrap();
        assert_close(&[sum.item().unwrap()], &[per.iter().sum::<f64>()], 1e-5, 1e-6, "sum");
        let none = NLLLoss::default().reduction(Reduction::None);
        let got: Vec<f64> = none
            .forward(&x, &target)
            .unwrap()
            .to_f64_vec()
            .unwrap();
        assert_close(&got, &per, 1e-6, 1e-6, "none");
        mean.backward().unwrap();
        let mut want = vec![0.0f32; N * C];
        for (i, &k) in TARGET.iter().enumerate() {
            want[i * C + k as usize] = -1.0 / N as f32;
        }
        assert_close(&vec_f32(&x.grad().unwrap()), &want, 1e-7, 1e-6, "grad");
    }
);

test_device!(
    /// Class weights and an ignored class under each reduction: the mean divides by the
    /// weights of the samples not ignored, ignored samples lose 0 and get no gradient.
    nll_loss_weights_and_ignore_index_cpu,
    nll_loss_weights_and_ignore_index_gpu,
    |dev| {
        let target = idx(&TARGET, &dev);
        let w = t(&WEIGHT, &[C], &dev);
        for ignore in [None, Some(2u32), Some(0)] {
            for weighted in [false, true] {
                let weight = weighted.then_some(&WEIGHT[..]);
                let (per, divisor) = nll_reference(weight, ignore);
                let what = format!("weighted {weighted}, ignore {ignore:?}");
                for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                    let x = leaf(&LOGP, &[N, C], &dev);
                    let mut loss = NLLLoss::default().reduction(reduction);
                    if weighted {
                        loss = loss.weight(w.clone());
                    }
                    if let Some(k) = ignore {
                        loss = loss.ignore_index(k);
                    }
                    let out = loss.forward(&x, &target).unwrap();
                    // The gradient at [i, t_i]: -w_t (over the divisor for the mean);
                    // for `None`, of the sum of the per-sample losses.
                    let scale = match reduction {
                        Reduction::Mean => 1.0 / divisor,
                        _ => 1.0,
                    };
                    let want: Vec<f64> = match reduction {
                        Reduction::Mean => vec![per.iter().sum::<f64>() / divisor],
                        Reduction::Sum => vec![per.iter().sum::<f64>()],
                        Reduction::None => per.clone(),
                    };
                    let got = out.to_f64_vec().unwrap();
                    assert_close(&got, &want, 1e-5, 1e-6, &format!("{what} {reduction:?}"));
                    out.sum().unwrap().backward().unwrap();
                    let mut gwant = vec![0.0f64; N * C];
                    for (i, &k) in TARGET.iter().enumerate() {
                        if Some(k) != ignore {
                            let wk = weight.map_or(1.0, |w| w[k as usize] as f64);
                            gwant[i * C + k as usize] = -wk * scale;
                        }
                    }
                    let g = x.grad().unwrap().to_f64_vec().unwrap();
                    assert_close(&g, &gwant, 1e-6, 1e-5, &format!("{what} {reduction:?} grad"));
                }
            }
        }
    }
);

test_device!(
    /// An ignored sample whose log-probability is -inf still loses exactly 0, and a batch
    /// whose samples are all ignored has a NaN mean (0 / 0) and a sum of 0, as PyTorch.
    nll_loss_ignored_samples_are_exactly_zero_cpu,
    nll_loss_ignored_samples_are_exactly_zero_gpu,
    |dev| {
        let x = t(&[f32::NEG_INFINITY, -1.0, -0.5, -2.0], &[2, 2], &dev);
        let target = idx(&[0, 1], &dev);
        let per = x
            .nll_loss_with(&target, None, Some(0), Reduction::None)
            .unwrap();
        assert_eq!(vec_f32(&per), [0.0, 2.0]);
        let all = idx(&[1, 1], &dev);
        let mean = x.nll_loss_with(&all, None, Some(1), Reduction::Mean).unwrap();
        assert!(mean.item().unwrap().is_nan());
        let sum = x.nll_loss_with(&all, None, Some(1), Reduction::Sum).unwrap();
        assert_eq!(sum.item().unwrap(), 0.0);
    }
);

test_device!(
    /// An empty batch: the mean is NaN (as `cross_entropy`'s and PyTorch's), weighted or
    /// not, the sum 0 and the per-sample losses empty.
    nll_loss_of_an_empty_batch_cpu,
    nll_loss_of_an_empty_batch_gpu,
    |dev| {
        let x = Tensor::zeros(&[0, 3], &dev).unwrap();
        let target = Tensor::from_vec(Vec::<u32>::new(), &[0], &dev).unwrap();
        let w = t(&[1.0, 2.0, 3.0], &[3], &dev);
        assert!(x.nll_loss(&target).unwrap().item().unwrap().is_nan());
        assert!(x.cross_entropy(&target).unwrap().item().unwrap().is_nan());
        let weighted = x
            .nll_loss_with(&target, Some(&w), Some(1), Reduction::Mean)
            .unwrap();
        assert!(weighted.item().unwrap().is_nan());
        let sum = x.nll_loss_with(&target, Some(&w), None, Reduction::Sum).unwrap();
        assert_eq!(sum.item().unwrap(), 0.0);
        let none = x.nll_loss_with(&target, None, None, Reduction::None).unwrap();
        assert_eq!(none.shape(), [0]);
    }
);

/// Arguments that cannot work are errors before any work: shapes, dtypes, a weight of the
/// wrong length, an ignored class of `C` or more, and (on the CPU, where the targets are
/// readable) a target out of range.
#[test]
fn nll_loss_bad_arguments_are_errors() {
    let dev = Device::cpu();
    let x = t(&LOGP, &[N, C], &dev);
    let target = idx(&TARGET, &dev);
    let r = x.nll_loss(&idx(&[0, 1], &dev));
    assert!(matches!(r, Err(Error::Shape { .. })), "{r:?}");
    let r = x.reshape(&[N * C]).unwrap().nll_loss(&target);
    assert!(matches!(r, Err(Error::Shape { .. })), "{r:?}");
    let r = x.nll_loss(&t(&[0.0; N], &[N], &dev));
    assert!(r.is_err());
    let r = x.nll_loss_with(
        &target,
        Some(&t(&[1.0; 3], &[3], &dev)),
        None,
        Reduction::Mean,
    );
    assert!(matches!(r, Err(Error::Shape { .. })), "{r:?}");
    let r = x.nll_loss_with(&target, None, Some(C as u32), Reduction::Mean);
    assert!(matches!(r, Err(Error::Argument { .. })), "{r:?}");
    let r = x.nll_loss(&idx(&[0, 1, 4, 0, 1], &dev));
    match r {
        Err(Error::Argument { op, msg }) => {
            assert_eq!(op, "nll_loss");
            assert!(msg.contains("target 4"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    // Every sample of the ignored class: nothing counts, the sum is 0.
    let ok = x.nll_loss_with(&idx(&[3, 3, 3, 3, 3], &dev), None, Some(3), Reduction::Sum);
    assert_eq!(ok.unwrap().item().unwrap(), 0.0);
}

/// On the GPU the targets are not read back: an out-of-range target is reported by the
/// next readback (the deferred index error of `gather`), and the device works afterwards.
#[test]
fn nll_loss_out_of_range_target_is_a_deferred_error_on_the_gpu() {
    // A GPU of its own: the flag is reported at the device's next readback.
    let dev = Device::gpu_with(wgrad::GpuOptions::from_env()).unwrap();
    let x = t(&LOGP, &[N, C], &dev);
    let r = x
        .nll_loss(&idx(&[0, 1, 4, 0, 1], &dev))
        .and_then(|l| l.item());
    assert!(matches!(r, Err(Error::Argument { .. })), "{r:?}");
    let ok = x.nll_loss(&idx(&TARGET, &dev)).unwrap().item().unwrap();
    assert!(ok.is_finite());
}

/// PyTorch's binary cross-entropy per element with its logs clamped at -100, and its
/// gradients: `w (p - y) / max((1 - p) p, 1e-12)` for `p`, `w (log(1 - p) - log p)`
/// (clamped) for `y`, the unweighted loss for `w`.
fn bce_reference(p: f64, y: f64, w: f64) -> (f64, f64, f64, f64) {
    let lp = if p > 0.0 { p.ln().max(-100.0) } else { -100.0 };
    let l1p = if p < 1.0 {
        (1.0 - p).ln().max(-100.0)
    } else {
        -100.0
    };
    let unweighted = -(y * lp + (1.0 - y) * l1p);
    let dp = w * (p - y) / ((1.0 - p) * p).max(1e-12);
    (w * unweighted, dp, w * (l1p - lp), unweighted)
}

const P: [f32; 8] = [0.0, 0.0, 1.0, 1.0, 0.25, 0.9, 0.5, 0.0];
const Y: [f32; 8] = [0.0, 1.0, 0.0, 1.0, 1.0, 0.3, 0.0, 0.5];

test_device!(
    /// Probabilities of exactly 0 and 1 give finite losses (100 per certain mistake) and
    /// PyTorch's gradients (1e12 in size where the certainty is wrong, 0 where it is
    /// right), with soft targets and a weight broadcast over the rows, each reduction.
    binary_cross_entropy_values_and_gradients_cpu,
    binary_cross_entropy_values_and_gradients_gpu,
    |dev| {
        let shape = [2, 4];
        let wv = [0.5f32, 1.0, 2.0, 3.0];
        for weighted in [false, true] {
            for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                let p = leaf(&P, &shape, &dev);
                let y = leaf(&Y, &shape, &dev);
                let w = leaf(&wv, &[4], &dev);
                let mut loss = BCELoss::default().reduction(reduction);
                if weighted {
                    loss = loss.weight(w.clone());
                }
                let out = loss.forward(&p, &y).unwrap();
                let refs: Vec<_> = (0..8)
                    .map(|i| {
                        let wi = if weighted { wv[i % 4] as f64 } else { 1.0 };
                        bce_reference(P[i] as f64, Y[i] as f64, wi)
                    })
                    .collect();
                let per: Vec<f64> = refs.iter().map(|r| r.0).collect();
                let scale = if reduction == Reduction::Mean { 1.0 / 8.0 } else { 1.0 };
                let want = match reduction {
                    Reduction::Mean => vec![per.iter().sum::<f64>() / 8.0],
                    Reduction::Sum => vec![per.iter().sum::<f64>()],
                    Reduction::None => per.clone(),
                };
                let what = format!("weighted {weighted} {reduction:?}");
                assert_close(&out.to_f64_vec().unwrap(), &want, 1e-5, 1e-6, &what);
                out.sum().unwrap().backward().unwrap();
                let dp: Vec<f64> = refs.iter().map(|r| r.1 * scale).collect();
                let dy: Vec<f64> = refs.iter().map(|r| r.2 * scale).collect();
                let gp = p.grad().unwrap().to_f64_vec().unwrap();
                let gy = y.grad().unwrap().to_f64_vec().unwrap();
                assert_close(&gp, &dp, 1e-5, 1e-5, &format!("{what} dp"));
                assert_close(&gy, &dy, 1e-5, 1e-5, &format!("{what} dy"));
                if weighted {
                    let mut dw = [0.0f64; 4];
                    for (i, r) in refs.iter().enumerate() {
                        dw[i % 4] += r.3 * scale;
                    }
                    let gw = w.grad().unwrap().to_f64_vec().unwrap();
                    assert_close(&gw, &dw, 1e-5, 1e-5, &format!("{what} dw"));
                } else {
                    assert!(w.grad().is_none());
                }
            }
        }
        // The tensor method is the unweighted mean.
        let m = t(&P, &shape, &dev)
            .binary_cross_entropy(&t(&Y, &shape, &dev))
            .unwrap()
            .item()
            .unwrap();
        let want: f64 = (0..8)
            .map(|i| bce_reference(P[i] as f64, Y[i] as f64, 1.0).0)
            .sum::<f64>()
            / 8.0;
        assert_close(&[m], &[want], 1e-5, 1e-6, "method");
    }
);

test_device!(
    /// An empty input has a NaN mean, as PyTorch's.
    binary_cross_entropy_of_an_empty_input_cpu,
    binary_cross_entropy_of_an_empty_input_gpu,
    |dev| {
        let p = Tensor::zeros(&[0, 3], &dev).unwrap();
        assert!(p.binary_cross_entropy(&p).unwrap().item().unwrap().is_nan());
        let s = p
            .binary_cross_entropy_with(&p, None, Reduction::Sum)
            .unwrap();
        assert_eq!(s.item().unwrap(), 0.0);
    }
);

/// Shapes that differ, a weight that does not broadcast to the input and mixed dtypes are
/// errors.
#[test]
fn binary_cross_entropy_bad_arguments_are_errors() {
    let dev = Device::cpu();
    let p = t(&P, &[2, 4], &dev);
    let r = p.binary_cross_entropy(&t(&Y, &[8], &dev));
    assert!(matches!(r, Err(Error::Shape { .. })), "{r:?}");
    let r = p.binary_cross_entropy_with(&p, Some(&t(&[1.0; 2], &[2], &dev)), Reduction::Mean);
    assert!(r.is_err(), "{r:?}");
    let r =
        p.binary_cross_entropy_with(&p, Some(&t(&[1.0; 16], &[2, 2, 4], &dev)), Reduction::Mean);
    assert!(matches!(r, Err(Error::Shape { .. })), "{r:?}");
    let r = p.binary_cross_entropy(&idx(&[0; 8], &dev).reshape(&[2, 4]).unwrap());
    assert!(matches!(r, Err(Error::DType { .. })), "{r:?}");
}
