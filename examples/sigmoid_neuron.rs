//! The lecture's sigmoid neuron, forward and backward:
//!
//! ```text
//! f(w, x) = sigma(w0 x0 + w1 x1 + w2),   sigma(a) = 1 / (1 + e^-a)
//! w = (2, -3, -3),  x = (-1, -2)
//! ```
//!
//! The weighted sum is 2 * -1 + -3 * -2 + -3 = 1, so f = sigma(1) ≈ 0.7311. The sigmoid's
//! local gradient is (1 - f) f ≈ 0.1966, and the chain rule gives
//! df/dw = (x0, x1, 1) * 0.1966 ≈ (-0.1966, -0.3932, 0.1966) and
//! df/dx = (w0, w1) * 0.1966 ≈ (0.3932, -0.5898).
//!
//! The neuron is built from tensors (the bias w2 pairs with a constant input 1) and the
//! gradients come from the engine's `backward()`, on the CPU and then on the GPU.
//!
//! ```text
//! cargo run --release --example sigmoid_neuron
//! ```
//!
//! It exits non-zero if a value is off by more than 1e-4 or if no GPU adapter is found.

use wgrad::prelude::*;

const TOL: f64 = 1e-4;

fn close(what: &str, got: &[f32], want: &[f64]) -> anyhow::Result<()> {
    for (g, w) in got.iter().zip(want) {
        if (*g as f64 - w).abs() > TOL {
            anyhow::bail!("{what} = {got:?}, expected {want:?}");
        }
    }
    Ok(())
}

fn run(dev: &Device) -> anyhow::Result<()> {
    println!("== on {} ==", dev.name());

    let w = Tensor::from_vec(vec![2.0f32, -3.0, -3.0], &[3], dev)?.requires_grad_(true)?;
    let x = Tensor::from_vec(vec![-1.0f32, -2.0], &[2], dev)?.requires_grad_(true)?;

    // Forward: append a constant 1 to x so that the bias is just the third weight.
    let one = Tensor::ones(&[1], dev)?;
    let xa = Tensor::cat(&[&x, &one], 0)?; // (x0, x1, 1)
    let dot = w.mul(&xa)?.sum()?; // w0 x0 + w1 x1 + w2
    let f = dot.sigmoid()?;
    let fv = f.item()?;
    println!("forward:  w . (x, 1) = {}", dot.item()?);
    println!("          f = sigma({}) = {fv:.4}", dot.item()?);

    // The sigmoid's local gradient, written in terms of its own output.
    let local = (1.0 - fv) * fv;
    println!("local:    dsigma/da = (1 - f) f = {local:.4}");

    // Backward: the engine multiplies that local gradient into each input's gradient.
    f.backward()?;
    let dw = w.grad().expect("w requires grad").to_vec::<f32>()?;
    let dx = x.grad().expect("x requires grad").to_vec::<f32>()?;
    println!(
        "backward: df/dw = ({:.4}, {:.4}, {:.4})",
        dw[0], dw[1], dw[2]
    );
    println!("          df/dx = ({:.4}, {:.4})", dx[0], dx[1]);
    println!(
        "check:    df/dw2 = (1 - f) f * 1 = {:.4}  (the bias's input is the constant 1)",
        dw[2]
    );
    println!();

    close("f", &[fv as f32], &[0.7311])?;
    close("(1 - f) f", &[local as f32], &[0.1966])?;
    close("df/dw", &dw, &[-0.1966, -0.3932, 0.1966])?;
    close("df/dx", &dx, &[0.3932, -0.5898])?;
    close("df/dw2 vs (1 - f) f", &[dw[2]], &[local])?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    run(&Device::cpu())?;
    match Device::gpu() {
        Ok(dev) => run(&dev)?,
        Err(e) => {
            eprintln!("no GPU: {e}");
            eprintln!(
                "On Debian/Ubuntu, `sudo apt-get install mesa-vulkan-drivers libvulkan1` \
                 installs lavapipe, a software Vulkan GPU that is enough to run this example."
            );
            std::process::exit(1);
        }
    }
    println!("ok: f ≈ 0.7311, df/dw ≈ (-0.1966, -0.3932, 0.1966), df/dx ≈ (0.3932, -0.5898) on both devices");
    Ok(())
}
