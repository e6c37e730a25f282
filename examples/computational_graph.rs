//! The lecture's worked example of backpropagation on a computational graph:
//!
//! ```text
//! f(x, y, z) = (x + y) * z        at x = -2, y = 5, z = -4
//!
//!   x ──┐
//!       (+) ── q ──┐
//!   y ──┘          (*) ── f
//!   z ─────────────┘
//! ```
//!
//! It prints the forward pass (q = x + y = 3, f = q z = -12), the local gradient of each
//! node (dq/dx = 1, dq/dy = 1, df/dq = z, df/dz = q), and then the chain rule's results
//! df/dx = df/dq * dq/dx = -4, df/dy = -4, df/dz = 3. The local gradient df/dq and the
//! final gradients are not typed in: they are computed by the engine's `backward()` and
//! read back with `.grad()`, first on the CPU backend and then on the GPU.
//!
//! Run it with
//!
//! ```text
//! cargo run --release --example computational_graph
//! ```
//!
//! It exits non-zero if the engine's numbers are wrong or if no GPU adapter is found.

use wgrad::prelude::*;

/// The engine's answers on one device: f, df/dx, df/dy, df/dz.
struct Answer {
    f: f64,
    dx: f64,
    dy: f64,
    dz: f64,
}

fn run(dev: &Device) -> Result<Answer> {
    println!("== on {} ==", dev.name());

    // The inputs are leaves of the graph: we want gradients with respect to them.
    let x = Tensor::scalar(-2.0, dev)?.requires_grad_(true)?;
    let y = Tensor::scalar(5.0, dev)?.requires_grad_(true)?;
    let z = Tensor::scalar(-4.0, dev)?.requires_grad_(true)?;

    // Forward pass, one node at a time.
    let q = x.add(&y)?;
    let f = q.mul(&z)?;
    println!("forward:");
    println!(
        "  q = x + y = {} + {} = {}",
        x.item()?,
        y.item()?,
        q.item()?
    );
    println!(
        "  f = q * z = {} * {} = {}",
        q.item()?,
        z.item()?,
        f.item()?
    );

    // Local gradients: each node only knows the derivative of its output w.r.t. its inputs.
    //   the add node:  dq/dx = 1, dq/dy = 1
    //   the mul node:  df/dq = z, df/dz = q
    // To see the engine compute df/dq, cut the graph at q: make a copy of q that is a
    // leaf of its own, and backpropagate through the mul node alone.
    let q_leaf = q.detach().requires_grad_(true)?;
    let f2 = q_leaf.mul(&z.detach())?;
    f2.backward()?;
    let df_dq = q_leaf.grad().expect("q_leaf requires a gradient").item()?;
    println!("local gradients:");
    println!("  dq/dx = 1, dq/dy = 1  (add passes its gradient through)");
    println!("  df/dq = z = {df_dq:<8}  (mul: each input's gradient is the other input;");
    println!(
        "  df/dz = q = {:<8}   df/dq above came from backward() on q_leaf)",
        q.item()?
    );

    // Backward pass over the whole graph: the engine applies the chain rule for us.
    f.backward()?;
    let grad = |t: &Tensor| -> Result<f64> { t.grad().expect("a leaf requiring grad").item() };
    let (dx, dy, dz) = (grad(&x)?, grad(&y)?, grad(&z)?);
    println!("chain rule (from backward()):");
    println!("  df/dx = df/dq * dq/dx = {df_dq} * 1 = {dx}");
    println!("  df/dy = df/dq * dq/dy = {df_dq} * 1 = {dy}");
    println!("  df/dz = q = {dz}");
    println!();

    Ok(Answer {
        f: f.item()?,
        dx,
        dy,
        dz,
    })
}

fn check(device: &str, a: &Answer) -> anyhow::Result<()> {
    let expected = [
        ("f", a.f, -12.0),
        ("df/dx", a.dx, -4.0),
        ("df/dy", a.dy, -4.0),
        ("df/dz", a.dz, 3.0),
    ];
    for (what, got, want) in expected {
        if got != want {
            anyhow::bail!("{device}: {what} = {got}, expected {want}");
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cpu = run(&Device::cpu())?;
    check("cpu", &cpu)?;

    let gpu_dev = match Device::gpu() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("no GPU: {e}");
            eprintln!(
                "On Debian/Ubuntu, `sudo apt-get install mesa-vulkan-drivers libvulkan1` \
                 installs lavapipe, a software Vulkan GPU that is enough to run this example."
            );
            std::process::exit(1);
        }
    };
    let gpu = run(&gpu_dev)?;
    check("gpu", &gpu)?;

    println!("ok: f = -12, df/dx = -4, df/dy = -4, df/dz = 3 on the CPU and on the GPU");
    Ok(())
}
