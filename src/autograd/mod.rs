//! Reverse-mode automatic differentiation. Each op that sees an input requiring a
//! gradient records a [`Node`]: its backward function (which owns the values it saved)
//! and edges to its inputs' nodes. `backward()` walks the nodes in reverse topological
//! order without recursion, accumulates gradients, and drops each backward function
//! (freeing its saved values) as soon as it has run.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Turns the gradient of an op's output into gradients of its inputs (one per input,
/// `None` where that input needs none).
pub(crate) type BackwardFn = Box<dyn FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

pub(crate) enum Edge {
    /// The input needs no gradient.
    Skip,
    /// The input is a leaf whose `.grad()` accumulates.
    Leaf(Tensor),
    /// The input was produced by another op.
    Node(Arc<Node>),
}

/// One recorded op in the graph.
pub struct Node {
    name: &'static str,
    backward: Mutex<Option<BackwardFn>>,
    edges: Vec<Edge>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.name)
    }
}

impl Node {
    /// The op that recorded this node (`mul`, `matmul`, ...).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl Drop for Node {
    // Dropping a long chain recursively would overflow the stack: unlink it iteratively.
    fn drop(&mut self) {
        let mut stack: Vec<Arc<Node>> = Vec::new();
        let take = |edges: &mut Vec<Edge>, stack: &mut Vec<Arc<Node>>| {
            for e in edges.drain(..) {
                if let Edge::Node(n) = e {
                    stack.push(n);
                }
            }
        };
        take(&mut self.edges, &mut stack);
        while let Some(n) = stack.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(n) {
                take(&mut inner.edges, &mut stack);
            }
        }
    }
}

thread_local! {
    static NO_GRAD_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// True unless inside a [`no_grad`] scope on this thread.
pub fn is_grad_enabled() -> bool {
    NO_GRAD_DEPTH.with(|d| d.get() == 0)
}

/// While alive, ops on this thread record no graph. Prefer [`no_grad`]. Not `Send`:
/// it must drop on the thread that made it.
pub struct NoGradGuard(std::marker::PhantomData<*const ()>);

impl NoGradGuard {
    /// Enters a no-grad scope until the guard drops.
    pub fn new() -> Self {
        NO_GRAD_DEPTH.with(|d| d.set(d.get() + 1));
        NoGradGuard(std::marker::PhantomData)
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        NO_GRAD_DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// Runs `f` without recording a graph (evaluation, parameter updates).
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}

/// Attaches a node to a freshly made output when grad mode is on and an input needs a
/// gradient; otherwise returns the output untouched (and drops `backward` at once).
pub(crate) fn record(
    mut out: Tensor,
    name: &'static str,
    inputs: &[&Tensor],
    backward: impl FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
) -> Tensor {
    if !is_grad_enabled() || !inputs.iter().any(|t| t.requires_grad()) {
        return out;
    }
    let edges = inputs
        .iter()
        .map(|t| match (&t.0.grad_fn, t.requires_grad()) {
            (_, false) => Edge::Skip,
            (Some(n), true) => Edge::Node(n.clone()),
            (None, true) => Edge::Leaf((*t).clone()),
        })
        .collect();
    let node = Arc::new(Node {
        name,
        backward: Mutex::new(Some(Box::new(backward))),
        edges,
    });
    if Arc::get_mut(&mut out.0).is_none() {
        // The output shares its handle (an op that returned a view of an intermediate):
        // give the node its own handle to the same storage.
        out = out.detach();
    }
    let inner = Arc::get_mut(&mut out.0).expect("a fresh handle is unique");
    inner.requires_grad = true;
    inner.grad_fn = Some(node);
    out
}

fn accumulate(slot: &mut Option<Tensor>, g: Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        None => g,
        Some(old) => old.add(&g)?,
    });
    Ok(())
}

/// Backpropagates `grad` (the gradient of some scalar with respect to `root`).
pub(crate) fn run_backward(root: &Tensor, grad: Tensor) -> Result<()> {
    // The forward pass goes to the GPU now, to run while the backward is recorded.
    if let crate::device::Device::Gpu(g) = root.device() {
        g.submit();
    }
    let _guard = NoGradGuard::new();
    let Some(root_node) = root.0.grad_fn.clone() else {
        if root.requires_grad() {
            let mut slot = root.0.grad.lock().unwrap_or_else(|e| e.into_inner());
            return accumulate(&mut slot, grad);
        }
        return Err(Error::Autograd(
            "backward() on a tensor that does not require grad; call requires_grad_(true) on the inputs"
                .into(),
        ));
    };
    // Iterative depth-first post-order, then reversed: every node comes before its inputs.
    let key = |n: &Arc<Node>| Arc::as_ptr(n) as usize;
    let mut order: Vec<Arc<Node>> = Vec::new();
    let mut visited: HashSet<usize> = HashSet::new();
    visited.insert(key(&root_node));
    let mut stack: Vec<(Arc<Node>, usize)> = vec![(root_node.clone(), 0)];
    while let Some((node, next)) = stack.last_mut() {
        if *next < node.edges.len() {
            let child = match &node.edges[*next] {
                Edge::Node(c) if !visited.contains(&key(c)) => Some(c.clone()),
                _ => None,
            };
            *next += 1;
            if let Some(c) = child {
                visited.insert(key(&c));
                stack.push((c, 0));
            }
        } else {
            let (node, _) = stack.pop().expect("stack is not empty");
            order.push(node);
        }
    }
    let mut grads: HashMap<usize, Tensor> = HashMap::new();
    grads.insert(key(&root_node), grad);
    for node in order.iter().rev() {
        let Some(g) = grads.remove(&key(node)) else {
            // No gradient reached this node: its saved values will never be used.
            drop(
                node.backward
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take(),
            );
            continue;
        };
        let f = node
            .backward
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| {
                Error::Autograd(format!(
                    "backward through `{}` a second time: its saved values were freed by the first backward",
                    node.name
                ))
            })?;
        let input_grads = f(&g)?;
        debug_assert_eq!(input_grads.len(), node.edges.len(), "{}", node.name);
        for (edge, ig) in node.edges.iter().zip(input_grads) {
            let Some(ig) = ig else { continue };
            match edge {
                Edge::Skip => {}
                Edge::Leaf(t) => {
                    if ig.shape() != t.shape() {
                        return Err(Error::Autograd(format!(
                            "`{}` gave a gradient of shape {:?} for an input of shape {:?} \
                             (a bug in wgrad: please report it)",
                            node.name,
                            ig.shape(),
                            t.shape()
                        )));
                    }
                    let mut slot = t.0.grad.lock().unwrap_or_else(|e| e.into_inner());
                    accumulate(&mut slot, ig)?;
                }
                Edge::Node(n) => {
                    let mut slot = grads.remove(&key(n));
                    accumulate(&mut slot, ig)?;
                    grads.insert(key(n), slot.expect("just accumulated"));
                }
            }
        }
    }
    Ok(())
}
