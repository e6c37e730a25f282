//! Optimizer steps and gradient clipping.

use super::*;

/// SGD (plain and Nesterov), Adam, AdamW, Adagrad, RMSprop and Adadelta steps, and clipping by the global norm.
pub(super) fn entries() -> Vec<OpEntry> {
    let mut ops = Vec::new();
    use Domain::*;
    // Optimizer kernels: three steps from the same parameters and gradients must leave
    // the same parameters on both devices. Inputs come in (parameter, gradient) pairs; a
    // case with several pairs updates them all in one dispatch.
    use crate::optim::{clip_grad_norm, Adadelta, Adagrad, Adam, AdamW, Optimizer, RMSprop, Sgd};
    fn flat_cat(ts: &[Tensor]) -> Result<Tensor> {
        let flat: Vec<Tensor> = ts
            .iter()
            .map(|t| t.reshape(&[t.numel()]))
            .collect::<Result<_>>()?;
        Tensor::cat(&flat.iter().collect::<Vec<_>>(), 0)
    }
    fn three_steps(x: &[Tensor], make: fn(Vec<Tensor>) -> Box<dyn Optimizer>) -> Result<Tensor> {
        let params: Vec<Tensor> = x
            .chunks(2)
            .map(|pair| pair[0].mul_scalar(1.0)?.requires_grad_(true))
            .collect::<Result<_>>()?;
        let mut opt = make(params.clone());
        for k in 0..3 {
            for (p, pair) in params.iter().zip(x.chunks(2)) {
                p.set_grad(Some(pair[1].mul_scalar(1.0 - 0.25 * k as f64)?));
            }
            opt.step()?;
        }
        flat_cat(&params)
    }
    let shapes: &[&[&[usize]]] = &[&[&[7]], &[&[3, 65]], &[&[257]], &[&[300], &[1], &[4, 5]]];
    let pairs = |s: &[&[usize]]| -> Vec<InputSpec> {
        s.iter()
            .flat_map(|s| [spec(s, Any), spec(s, Any)])
            .collect()
    };
    for (name, kernels, make) in [
        (
            "sgd_step",
            &["sgd_momentum_multi_step"] as &'static [&'static str],
            (|p| Box::new(Sgd::new(p, 0.1).momentum(0.9).weight_decay(0.01)) as Box<dyn Optimizer>)
                as fn(Vec<Tensor>) -> Box<dyn Optimizer>,
        ),
        ("sgd_nesterov_step", &["sgd_momentum_multi_step"], |p| {
            Box::new(
                Sgd::new(p, 0.05)
                    .momentum(0.8)
                    .nesterov(true)
                    .dampening(0.0),
            )
        }),
        ("sgd_plain_step", &["sgd_multi_step"], |p| {
            Box::new(Sgd::new(p, 0.1).weight_decay(0.05))
        }),
        ("adam_step", &["adam_multi_step"], |p| {
            Box::new(Adam::new(p, 0.01).weight_decay(0.1))
        }),
        ("adamw_step", &["adam_multi_step"], |p| {
            Box::new(AdamW::new(p, 0.01))
        }),
        ("adagrad_step", &["adagrad_multi_step"], |p| {
            Box::new(
                Adagrad::new(p, 0.05)
                    .lr_decay(0.1)
                    .weight_decay(0.02)
                    .initial_accumulator_value(0.1),
            )
        }),
        ("rmsprop_step", &["rmsprop_multi_step"], |p| {
            Box::new(RMSprop::new(p, 0.01).weight_decay(0.05))
        }),
        (
            "rmsprop_momentum_step",
            &["rmsprop_momentum_multi_step"],
            |p| Box::new(RMSprop::new(p, 0.01).alpha(0.9).momentum(0.8)),
        ),
        (
            "rmsprop_centered_step",
            &["rmsprop_centered_multi_step"],
            |p| Box::new(RMSprop::new(p, 0.01).centered(true)),
        ),
        (
            "rmsprop_centered_momentum_step",
            &["rmsprop_centered_momentum_multi_step"],
            |p| Box::new(RMSprop::new(p, 0.01).centered(true).momentum(0.9)),
        ),
        ("adadelta_step", &["adadelta_multi_step"], |p| {
            Box::new(Adadelta::new(p, 1.0).rho(0.8).weight_decay(0.01))
        }),
    ] {
        ops.push(OpEntry {
            name,
            differentiable: false,
            kernels,
            cases: shapes
                .iter()
                .map(|s| case(format!("{s:?}"), pairs(s), move |x, _| three_steps(x, make)))
                .collect(),
        });
    }
    // Clipping: the norm, then the clipped gradients, of gradients given as inputs.
    ops.push(OpEntry {
        name: "clip_grad_norm",
        differentiable: false,
        kernels: &["clip_sumsq_step", "clip_norm_step", "clip_scale_step"],
        cases: [
            (&[&[7][..]][..], 0.5f64),
            (&[&[3, 65], &[1], &[2000]], 1.0),
            (&[&[5], &[4, 4]], 1e3),
        ]
        .iter()
        .map(|&(s, max_norm)| {
            let specs: Vec<InputSpec> = s.iter().map(|s| spec(s, Any)).collect();
            case(format!("{s:?} max {max_norm}"), specs, move |x, _| {
                let params: Vec<Tensor> = x
                    .iter()
                    .map(|g| {
                        let p = g.zeros_like()?.requires_grad_(true)?;
                        p.set_grad(Some(g.mul_scalar(1.0)?));
                        Ok(p)
                    })
                    .collect::<Result<_>>()?;
                let norm = clip_grad_norm(&params, max_norm)?.expect("gradients");
                let mut out = vec![norm];
                out.extend(params.iter().map(|p| p.grad().expect("gradient")));
                flat_cat(&out)
            })
        })
        .collect(),
    });
    // The gradient scaler: scaled gradients unscaled in place (one of them with an
    // infinity and a NaN in some cases), then two updates of the scale; the unscaled
    // gradients and the state [scale, growth_tracker, found_inf] after each call.
    ops.push(OpEntry {
        name: "grad_scaler",
        differentiable: false,
        kernels: &["amp_unscale_step", "amp_update_step"],
        cases: [
            (&[&[7][..]][..], false),
            (&[&[3, 65], &[1], &[300]], false),
            (&[&[5], &[4, 4]], true),
        ]
        .iter()
        .map(|&(s, overflow)| {
            let specs: Vec<InputSpec> = s.iter().map(|s| spec(s, Any)).collect();
            case(
                format!("{s:?} overflow {overflow}"),
                specs,
                move |x, dev| {
                    let params: Vec<Tensor> = x
                        .iter()
                        .enumerate()
                        .map(|(i, g)| {
                            let p = g.zeros_like()?.requires_grad_(true)?;
                            let mut g = g.mul_scalar(1024.0)?;
                            if overflow && i == 1 {
                                // g / 0: infinities where g != 0 (and NaN where it is 0).
                                g = g.div(&g.mul_scalar(0.0)?)?;
                            }
                            p.set_grad(Some(g));
                            Ok(p)
                        })
                        .collect::<Result<_>>()?;
                    let opt = Sgd::new(params.clone(), 0.1);
                    let mut scaler = crate::amp::GradScaler::new()
                        .init_scale(1024.0)
                        .growth_interval(1);
                    scaler.scale(&Tensor::zeros(&[], dev)?)?;
                    scaler.unscale_(&opt)?;
                    // The overflowed gradient itself stays non-finite: not compared.
                    let mut out: Vec<Tensor> = params
                        .iter()
                        .enumerate()
                        .filter(|&(i, _)| !(overflow && i == 1))
                        .map(|(_, p)| p.grad().expect("gradient"))
                        .collect();
                    // The flag, then the state after one update and after a second one.
                    out.push(scaler.state_tensor().expect("made by scale"));
                    scaler.update()?;
                    out.push(scaler.state_tensor().expect("made by scale"));
                    scaler.update()?;
                    out.push(scaler.state_tensor().expect("made by scale"));
                    flat_cat(&out)
                },
            )
        })
        .collect(),
    });
    // Guarded steps (the optimizer decides on the device whether the scaler found an
    // overflow): three Adam steps through the scaler, the second one overflowed in some
    // cases; the parameters, then the scaler's state.
    ops.push(OpEntry {
        name: "scaled_adam_step",
        differentiable: false,
        kernels: &["adam_multi_step", "count_steps_step"],
        cases: [(&shapes[0], false), (&shapes[3], true), (&shapes[1], true)]
            .iter()
            .map(|&(s, overflow)| {
                case(
                    format!("{s:?} overflow {overflow}"),
                    pairs(s),
                    move |x, _| {
                        let params: Vec<Tensor> = x
                            .chunks(2)
                            .map(|pair| pair[0].mul_scalar(1.0)?.requires_grad_(true))
                            .collect::<Result<_>>()?;
                        let mut opt = Adam::new(params.clone(), 0.01);
                        let mut scaler = crate::amp::GradScaler::new().init_scale(4.0);
                        for k in 0..3 {
                            let dev = params[0].device();
                            scaler.scale(&Tensor::zeros(&[], dev)?)?;
                            for (i, (p, pair)) in params.iter().zip(x.chunks(2)).enumerate() {
                                let mut g = pair[1].mul_scalar(4.0)?;
                                if overflow && k == 1 && i == 0 {
                                    g = g.div(&g.mul_scalar(0.0)?)?;
                                }
                                p.set_grad(Some(g));
                            }
                            scaler.step(&mut opt)?;
                            scaler.update()?;
                        }
                        let mut out = params;
                        out.push(scaler.state_tensor().expect("made by scale"));
                        flat_cat(&out)
                    },
                )
            })
            .collect(),
    });
    ops
}
