//! The CPU reference of the optimizers' updates and of gradient clipping: the kernels'
//! arithmetic in `f32` (clipping also in `f64`), one parameter after another in list
//! order, in place.

use super::elementwise::CpuBackend;
use super::CpuData;
use crate::backend::optim::{
    adagrad_clr, bias_corrections, AdadeltaStep, AdagradStep, AdamStep, RmspropStep, SgdStep,
};
use crate::backend::{
    AdadeltaSlot, AdagradSlot, AdamSlot, Grad, Guard, Optim, RmspropSlot, SgdSlot, Storage,
};
use crate::error::{arg_err, Error, Result};

fn not_f32<T>(op: &'static str) -> Result<T> {
    Err(Error::DType {
        op,
        msg: "optimizers update f32 tensors".into(),
    })
}

impl Optim for CpuBackend {
    fn sgd_step(&self, slots: &[SgdSlot], hp: &SgdStep, guard: Option<&Guard>) -> Result<()> {
        let _span = super::profile::span("sgd_step");
        let Some(steps) = guarded_steps(guard)? else {
            return Ok(());
        };
        for (k, s) in slots.iter().enumerate() {
            let first = match &steps {
                Some(st) => s.buf.is_some() && st.count(k) == 0,
                None => s.first,
            };
            sgd_cpu(&SgdSlot { first, ..*s }, hp)?;
        }
        Ok(())
    }

    fn adam_step(&self, slots: &[AdamSlot], hp: &AdamStep, guard: Option<&Guard>) -> Result<()> {
        let _span = super::profile::span("adam_step");
        let Some(steps) = guarded_steps(guard)? else {
            return Ok(());
        };
        for (k, s) in slots.iter().enumerate() {
            let t = steps.as_ref().map_or(s.t, |st| st.count(k) + 1);
            adam_cpu(&AdamSlot { t, ..*s }, hp)?;
        }
        Ok(())
    }

    fn adagrad_step(
        &self,
        slots: &[AdagradSlot],
        hp: &AdagradStep,
        guard: Option<&Guard>,
    ) -> Result<()> {
        let _span = super::profile::span("adagrad_step");
        let Some(steps) = guarded_steps(guard)? else {
            return Ok(());
        };
        for (k, s) in slots.iter().enumerate() {
            let t = steps.as_ref().map_or(s.t, |st| st.count(k) + 1);
            adagrad_cpu(&AdagradSlot { t, ..*s }, hp)?;
        }
        Ok(())
    }

    fn rmsprop_step(
        &self,
        slots: &[RmspropSlot],
        hp: &RmspropStep,
        guard: Option<&Guard>,
    ) -> Result<()> {
        let _span = super::profile::span("rmsprop_step");
        if guarded_steps(guard)?.is_none() {
            return Ok(());
        }
        for s in slots {
            rmsprop_cpu(s, hp)?;
        }
        Ok(())
    }

    fn adadelta_step(
        &self,
        slots: &[AdadeltaSlot],
        hp: &AdadeltaStep,
        guard: Option<&Guard>,
    ) -> Result<()> {
        let _span = super::profile::span("adadelta_step");
        if guarded_steps(guard)?.is_none() {
            return Ok(());
        }
        for s in slots {
            adadelta_cpu(s, hp)?;
        }
        Ok(())
    }

    fn count_steps(&self, guard: &Guard) -> Result<()> {
        let _span = super::profile::span("count_steps");
        let op = "count_steps";
        if found_inf(guard)? {
            return Ok(());
        }
        let all = f32s(guard.all, op)?;
        let mut steps = guard.steps.cpu(op)?.write();
        let CpuData::F32(steps) = &mut *steps else {
            return not_f32(op);
        };
        for &i in all.iter().take(guard.n_all) {
            match steps.get_mut(i as usize) {
                Some(c) => *c += 1.0,
                None => return arg_err(op, "a step index past the counts"),
            }
        }
        Ok(())
    }

    fn clip_grad_norm(&self, grads: &[Grad], distinct: &[Grad], max_norm: f64) -> Result<Storage> {
        let _span = super::profile::span("clip_grad_norm");
        clip_cpu(grads, distinct, max_norm)
    }
}

/// A copy of an `f32` storage's values.
fn f32s(s: &Storage, op: &'static str) -> Result<Vec<f32>> {
    match &*s.cpu(op)?.read() {
        CpuData::F32(v) => Ok(v.clone()),
        _ => not_f32(op),
    }
}

/// True when a guard's scaler state flags a non-finite gradient.
fn found_inf(guard: &Guard) -> Result<bool> {
    let st = f32s(guard.found, "found_inf")?;
    Ok(st.get(2).is_some_and(|&f| f != 0.0))
}

/// A guarded step's step counts, per slot.
struct SlotCounts {
    steps: Vec<f32>,
    live: Vec<f32>,
}

impl SlotCounts {
    /// Slot `k`'s parameter's count of steps taken.
    fn count(&self, k: usize) -> u64 {
        let i = self.live.get(k).copied().unwrap_or(0.0) as usize;
        self.steps.get(i).copied().unwrap_or(0.0) as u64
    }
}

/// `None` when a guarded step is skipped; otherwise the step counts of a guarded step
/// (`Some(None)` for a step without a guard).
fn guarded_steps(guard: Option<&Guard>) -> Result<Option<Option<SlotCounts>>> {
    let Some(g) = guard else {
        return Ok(Some(None));
    };
    if found_inf(g)? {
        return Ok(None);
    }
    Ok(Some(Some(SlotCounts {
        steps: f32s(g.steps, "step")?,
        live: f32s(g.live, "step")?,
    })))
}

/// The CPU reference of one parameter's SGD step (the kernels' arithmetic, in f32).
fn sgd_cpu(it: &SgdSlot, hp: &SgdStep) -> Result<()> {
    let op = "sgd_step";
    let g = it.grad.cpu(op)?.read();
    let mut p = it.param.cpu(op)?.write();
    let (CpuData::F32(g), CpuData::F32(p)) = (&*g, &mut *p) else {
        return not_f32(op);
    };
    let (lr, wd) = (hp.lr as f32, hp.weight_decay as f32);
    match it.buf.filter(|_| hp.momentum != 0.0) {
        None => {
            for (p, &g) in p.iter_mut().zip(g) {
                *p -= lr * (g + wd * *p);
            }
        }
        Some(b) => {
            let mut b = b.cpu(op)?.write();
            let CpuData::F32(b) = &mut *b else {
                return not_f32(op);
            };
            let (mom, damp) = (hp.momentum as f32, 1.0 - hp.dampening as f32);
            for ((p, b), &g) in p.iter_mut().zip(b.iter_mut()).zip(g) {
                let g = g + wd * *p;
                let bi = if it.first { g } else { mom * *b + damp * g };
                *b = bi;
                let d = if hp.nesterov { g + mom * bi } else { bi };
                *p -= lr * d;
            }
        }
    }
    Ok(())
}

/// The CPU reference of one parameter's Adam step (the kernel's arithmetic, in f32).
fn adam_cpu(it: &AdamSlot, hp: &AdamStep) -> Result<()> {
    let op = "adam_step";
    let (bc1, bc2) = bias_corrections(hp, it.t);
    let g = it.grad.cpu(op)?.read();
    let mut p = it.param.cpu(op)?.write();
    let mut m = it.m.cpu(op)?.write();
    let mut v = it.v.cpu(op)?.write();
    let (CpuData::F32(g), CpuData::F32(p), CpuData::F32(m), CpuData::F32(v)) =
        (&*g, &mut *p, &mut *m, &mut *v)
    else {
        return not_f32(op);
    };
    let (lr, b1, b2) = (hp.lr as f32, hp.beta1 as f32, hp.beta2 as f32);
    let (eps, wd) = (hp.eps as f32, hp.weight_decay as f32);
    for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        let (mut pi, mut gi) = (*p, g);
        if hp.decoupled {
            pi *= 1.0 - lr * wd;
        } else {
            gi += wd * pi;
        }
        let mi = b1 * *m + (1.0 - b1) * gi;
        let vi = b2 * *v + (1.0 - b2) * gi * gi;
        *m = mi;
        *v = vi;
        *p = pi - lr * (mi / bc1) / ((vi / bc2).sqrt() + eps);
    }
    Ok(())
}

/// The CPU reference of one parameter's Adagrad step (the kernel's arithmetic, in f32).
fn adagrad_cpu(it: &AdagradSlot, hp: &AdagradStep) -> Result<()> {
    let op = "adagrad_step";
    let clr = adagrad_clr(hp, it.t);
    let g = it.grad.cpu(op)?.read();
    let mut p = it.param.cpu(op)?.write();
    let mut s = it.sum.cpu(op)?.write();
    let (CpuData::F32(g), CpuData::F32(p), CpuData::F32(s)) = (&*g, &mut *p, &mut *s) else {
        return not_f32(op);
    };
    let (eps, wd) = (hp.eps as f32, hp.weight_decay as f32);
    for ((p, s), &g) in p.iter_mut().zip(s.iter_mut()).zip(g) {
        let gi = g + wd * *p;
        let si = *s + gi * gi;
        *s = si;
        *p -= clr * gi / (si.sqrt() + eps);
    }
    Ok(())
}

/// The CPU reference of one parameter's RMSprop step (the kernels' arithmetic, in f32).
fn rmsprop_cpu(it: &RmspropSlot, hp: &RmspropStep) -> Result<()> {
    let op = "rmsprop_step";
    let g = it.grad.cpu(op)?.read();
    let mut p = it.param.cpu(op)?.write();
    let mut v = it.square_avg.cpu(op)?.write();
    let mut b = match it.momentum_buffer.filter(|_| hp.momentum != 0.0) {
        Some(b) => Some(b.cpu(op)?.write()),
        None => None,
    };
    let mut a = match it.grad_avg.filter(|_| hp.centered) {
        Some(a) => Some(a.cpu(op)?.write()),
        None => None,
    };
    let (CpuData::F32(g), CpuData::F32(p), CpuData::F32(v)) = (&*g, &mut *p, &mut *v) else {
        return not_f32(op);
    };
    let mut b = match b.as_deref_mut() {
        Some(CpuData::F32(b)) => Some(b),
        Some(_) => return not_f32(op),
        None => None,
    };
    let mut a = match a.as_deref_mut() {
        Some(CpuData::F32(a)) => Some(a),
        Some(_) => return not_f32(op),
        None => None,
    };
    let (lr, alpha, eps) = (hp.lr as f32, hp.alpha as f32, hp.eps as f32);
    let (wd, mom) = (hp.weight_decay as f32, hp.momentum as f32);
    for i in 0..p.len() {
        let pi = p[i];
        let gi = g[i] + wd * pi;
        let vi = alpha * v[i] + (1.0 - alpha) * gi * gi;
        v[i] = vi;
        let avg = match a.as_deref_mut() {
            Some(a) => {
                let ai = alpha * a[i] + (1.0 - alpha) * gi;
                a[i] = ai;
                (vi - ai * ai).sqrt() + eps
            }
            None => vi.sqrt() + eps,
        };
        p[i] = match b.as_deref_mut() {
            Some(b) => {
                let bi = mom * b[i] + gi / avg;
                b[i] = bi;
                pi - lr * bi
            }
            None => pi - lr * gi / avg,
        };
    }
    Ok(())
}

/// The CPU reference of one parameter's Adadelta step (the kernel's arithmetic, in f32).
fn adadelta_cpu(it: &AdadeltaSlot, hp: &AdadeltaStep) -> Result<()> {
    let op = "adadelta_step";
    let g = it.grad.cpu(op)?.read();
    let mut p = it.param.cpu(op)?.write();
    let mut v = it.square_avg.cpu(op)?.write();
    let mut u = it.acc_delta.cpu(op)?.write();
    let (CpuData::F32(g), CpuData::F32(p), CpuData::F32(v), CpuData::F32(u)) =
        (&*g, &mut *p, &mut *v, &mut *u)
    else {
        return not_f32(op);
    };
    let (lr, rho) = (hp.lr as f32, hp.rho as f32);
    let (eps, wd) = (hp.eps as f32, hp.weight_decay as f32);
    for (((p, v), u), &g) in p.iter_mut().zip(v.iter_mut()).zip(u.iter_mut()).zip(g) {
        let gi = g + wd * *p;
        let vi = rho * *v + (1.0 - rho) * gi * gi;
        *v = vi;
        let delta = (*u + eps).sqrt() / (vi + eps).sqrt() * gi;
        *u = rho * *u + (1.0 - rho) * delta * delta;
        *p -= lr * delta;
    }
    Ok(())
}

/// The sum of squares of `v` in f64, over eight independent accumulators (which the
/// compiler vectorises; one running sum would serialise on the adds).
fn sum_squares<T: Copy + Into<f64>>(v: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            let x: f64 = x.into();
            *a += x * x;
        }
    }
    let tail: f64 = rest
        .iter()
        .map(|&x| {
            let x: f64 = x.into();
            x * x
        })
        .sum();
    acc.iter().sum::<f64>() + tail
}

/// The CPU reference of clipping: sums of squares accumulated in f64, then the norm and
/// the scale in the gradients' type with the kernels' formula (`scale > 1` is false for a
/// NaN, which therefore propagates as in PyTorch).
fn clip_cpu(grads: &[Grad], distinct: &[Grad], max_norm: f64) -> Result<Storage> {
    let op = "clip_grad_norm";
    let mut total = 0.0f64;
    let mut f64_grads = false;
    for g in grads {
        total += match &*g.storage.cpu(op)?.read() {
            CpuData::F32(v) => sum_squares(v),
            CpuData::F64(v) => {
                f64_grads = true;
                sum_squares(v)
            }
            CpuData::U32(_) => {
                return Err(Error::DType {
                    op,
                    msg: "u32 data reached a float kernel".into(),
                })
            }
        };
    }
    if f64_grads {
        let norm = total.sqrt();
        let mut scale = max_norm / (norm + 1e-6);
        if scale > 1.0 {
            scale = 1.0;
        }
        for g in distinct {
            if let CpuData::F64(v) = &mut *g.storage.cpu(op)?.write() {
                v.iter_mut().for_each(|x| *x *= scale);
            }
        }
        return Ok(Storage::new_cpu(CpuData::F64(vec![norm])));
    }
    let norm = total.sqrt() as f32;
    let mut scale = max_norm as f32 / (norm + 1e-6);
    if scale > 1.0 {
        scale = 1.0;
    }
    for g in distinct {
        if let CpuData::F32(v) = &mut *g.storage.cpu(op)?.write() {
            v.iter_mut().for_each(|x| *x *= scale);
        }
    }
    Ok(Storage::new_cpu(CpuData::F32(vec![norm])))
}

impl crate::backend::amp::Amp for CpuBackend {
    fn amp_unscale(&self, grads: &[Grad], state: &Storage) -> Result<()> {
        let _span = super::profile::span("amp_unscale");
        let op = "unscale_";
        let mut st = state.cpu(op)?.write();
        let CpuData::F32(st) = &mut *st else {
            return not_f32(op);
        };
        let inv = 1.0 / st[0];
        for g in grads {
            let mut d = g.storage.cpu(op)?.write();
            let CpuData::F32(v) = &mut *d else {
                return not_f32(op);
            };
            for x in v.iter_mut() {
                if !x.is_finite() {
                    st[2] = 1.0;
                }
                *x *= inv;
            }
        }
        Ok(())
    }

    fn amp_update(&self, state: &Storage, u: crate::backend::amp::ScaleUpdate) -> Result<()> {
        let _span = super::profile::span("amp_update");
        let mut st = state.cpu("update")?.write();
        let CpuData::F32(st) = &mut *st else {
            return not_f32("update");
        };
        crate::backend::amp::update_state(st, u);
        Ok(())
    }
}
