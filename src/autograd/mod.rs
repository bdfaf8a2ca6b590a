//! Reverse-mode autograd over recorded ops. Every backward rule is written with differentiable
//! tensor ops, so with `create_graph` the gradient is itself recorded and can be differentiated
//! again (WGAN-GP, R1, path-length regularisation).

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::tensor::Tensor;
use crate::{Error, Result};

/// The backward rule of one recorded op.
pub trait GradFn: Send + Sync {
    fn name(&self) -> &'static str;
    /// The op's tensor inputs, in the order `backward` answers for them.
    fn inputs(&self) -> Vec<Tensor>;
    /// Gradients for the inputs given the gradient of the output. `needs[i]` says whether input
    /// i's gradient is wanted; return `None` where it is not (this is how an inner `grad` skips
    /// weight gradients).
    fn backward(&self, out: &Tensor, grad: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>>;
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Restores the previous grad mode when dropped.
pub struct GradModeGuard(bool);
impl Drop for GradModeGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.0));
    }
}

/// Set grad mode for the guard's lifetime.
pub fn set_grad_enabled(enabled: bool) -> GradModeGuard {
    let prev = GRAD_ENABLED.with(|g| g.replace(enabled));
    GradModeGuard(prev)
}

/// No op is recorded while the returned guard lives.
pub fn no_grad_guard() -> GradModeGuard {
    set_grad_enabled(false)
}

/// Run `f` without recording history.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _g = no_grad_guard();
    f()
}

/// Attach history to `out` when grad mode is on and some input needs gradients.
pub fn record(out: Tensor, inputs: &[&Tensor], make: impl FnOnce() -> Arc<dyn GradFn>) -> Tensor {
    if is_grad_enabled() && inputs.iter().any(|t| t.requires_grad()) {
        out.with_grad_fn(make())
    } else {
        out
    }
}

/// Tensors reachable from `roots` through recorded ops, inputs before the ops that use them.
fn topo_order(roots: &[Tensor]) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    // iterative post-order DFS: (tensor, children pushed?)
    let mut stack: Vec<(Tensor, bool)> = roots.iter().rev().map(|t| (t.clone(), false)).collect();
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !seen.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(f) = t.grad_fn() {
            for i in f.inputs().into_iter().rev() {
                if !seen.contains(&i.id()) && i.requires_grad() {
                    stack.push((i, false));
                }
            }
        }
    }
    order
}

/// Core walk: gradients of `outputs` (seeded with `seeds`) flowing to the tensors in `targets`.
fn walk(
    outputs: &[Tensor],
    seeds: Vec<Tensor>,
    targets: &HashSet<u64>,
    create_graph: bool,
) -> Result<HashMap<u64, Tensor>> {
    let order = topo_order(outputs);
    // reaches[id]: some target is at or below this tensor, so its gradient is worth computing.
    let mut reaches: HashMap<u64, bool> = HashMap::new();
    for t in &order {
        let r = targets.contains(&t.id())
            || t.grad_fn().is_some_and(|f| {
                f.inputs()
                    .iter()
                    .any(|i| reaches.get(&i.id()).copied().unwrap_or(false))
            });
        reaches.insert(t.id(), r);
    }
    let _mode = set_grad_enabled(create_graph);
    let mut grads: HashMap<u64, Tensor> = HashMap::new();
    for (o, s) in outputs.iter().zip(seeds) {
        accumulate(&mut grads, o.id(), s)?;
    }
    for t in order.iter().rev() {
        let Some(f) = t.grad_fn() else { continue };
        if !reaches.get(&t.id()).copied().unwrap_or(false) {
            continue;
        }
        let g = if targets.contains(&t.id()) {
            grads.get(&t.id()).cloned()
        } else {
            grads.remove(&t.id())
        };
        let Some(g) = g else { continue };
        let inputs = f.inputs();
        let needs: Vec<bool> = inputs
            .iter()
            .map(|i| reaches.get(&i.id()).copied().unwrap_or(false))
            .collect();
        if !needs.iter().any(|&n| n) {
            continue;
        }
        let gs = f.backward(t, &g, &needs)?;
        for ((inp, gi), need) in inputs.iter().zip(gs).zip(needs) {
            let Some(gi) = gi else { continue };
            if !need {
                continue;
            }
            if gi.shape() != inp.shape() {
                return Err(Error::Autograd(format!(
                    "backward of {} gave a gradient of shape {:?} for an input of shape {:?}",
                    f.name(),
                    gi.shape(),
                    inp.shape()
                )));
            }
            accumulate(&mut grads, inp.id(), gi)?;
        }
    }
    Ok(grads)
}

fn accumulate(grads: &mut HashMap<u64, Tensor>, id: u64, g: Tensor) -> Result<()> {
    let new = match grads.remove(&id) {
        Some(prev) => prev.add(&g)?,
        None => g,
    };
    grads.insert(id, new);
    Ok(())
}

/// How [`grad_with`] treats its inputs and the gradients it returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GradOptions {
    /// Record the gradient computation so the gradients can be differentiated again.
    pub create_graph: bool,
    /// Give zeros for an input the outputs do not depend on instead of an error (PyTorch's
    /// `allow_unused`). Off by default, so that a tensor someone forgot to make a `variable()`
    /// (or used under `no_grad`) is reported instead of training on silent zero gradients.
    pub allow_unused: bool,
}

/// Gradients of `outputs` with respect to `inputs`. `grad_outputs` seeds each output's gradient
/// (ones when `None`). With `create_graph` the returned gradients carry history and can be
/// differentiated again. Only paths that lead to `inputs` are walked, so asking for d/dx alone
/// does no weight-gradient work. An input the outputs do not depend on is an error; see
/// [`grad_with`] to allow it.
pub fn grad(
    outputs: &[Tensor],
    grad_outputs: Option<&[Tensor]>,
    inputs: &[Tensor],
    create_graph: bool,
) -> Result<Vec<Tensor>> {
    grad_with(
        outputs,
        grad_outputs,
        inputs,
        GradOptions {
            create_graph,
            allow_unused: false,
        },
    )
}

/// [`grad`] with options; with `allow_unused` an input the outputs do not depend on gets zeros.
pub fn grad_with(
    outputs: &[Tensor],
    grad_outputs: Option<&[Tensor]>,
    inputs: &[Tensor],
    opts: GradOptions,
) -> Result<Vec<Tensor>> {
    let seeds: Vec<Tensor> = match grad_outputs {
        Some(g) => {
            if g.len() != outputs.len() {
                return Err(Error::Autograd(format!(
                    "{} outputs but {} output gradients",
                    outputs.len(),
                    g.len()
                )));
            }
            for (o, s) in outputs.iter().zip(g) {
                if o.shape() != s.shape() {
                    return Err(Error::Autograd(format!(
                        "output of shape {:?} seeded with shape {:?}",
                        o.shape(),
                        s.shape()
                    )));
                }
            }
            g.to_vec()
        }
        None => outputs.iter().map(|o| o.ones_like()).collect(),
    };
    if !opts.allow_unused {
        // an input is used when the outputs reach it through recorded ops (or it is an output)
        let reached: HashSet<u64> = topo_order(outputs).iter().map(|t| t.id()).collect();
        if let Some((i, t)) = inputs
            .iter()
            .enumerate()
            .find(|(_, t)| !reached.contains(&t.id()))
        {
            let why = if t.requires_grad() {
                "the outputs were not computed from it"
            } else {
                "it does not require gradients (make it a variable(), and compute the outputs \
                 outside no_grad)"
            };
            return Err(Error::Autograd(format!(
                "grad: input {i} (shape {:?}) is not part of the graph of the outputs: {why}; \
                 pass allow_unused to get zeros for it",
                t.shape()
            )));
        }
    }
    let targets: HashSet<u64> = inputs.iter().map(|t| t.id()).collect();
    let mut grads = walk(outputs, seeds, &targets, opts.create_graph)?;
    Ok(inputs
        .iter()
        .map(|i| grads.remove(&i.id()).unwrap_or_else(|| i.zeros_like()))
        .collect())
}

/// `loss.backward()`: accumulate d loss / d v into `v.grad()` for every variable v it depends on.
pub fn backward(loss: &Tensor) -> Result<()> {
    if loss.elem_count() != 1 {
        return Err(Error::Autograd(format!(
            "backward() needs a one-element loss; this one has shape {:?} (use autograd::grad with grad_outputs)",
            loss.shape()
        )));
    }
    let vars: Vec<Tensor> = topo_order(std::slice::from_ref(loss))
        .into_iter()
        .filter(|t| t.is_variable())
        .collect();
    if vars.is_empty() {
        return Err(Error::Autograd(
            "backward(): the loss does not depend on any variable, so there is nothing to \
             differentiate (were the parameters made variables, and was the loss computed \
             outside no_grad?)"
                .into(),
        ));
    }
    let targets: HashSet<u64> = vars.iter().map(|t| t.id()).collect();
    let grads = walk(
        std::slice::from_ref(loss),
        vec![loss.ones_like()],
        &targets,
        false,
    )?;
    for v in vars {
        if let Some(g) = grads.get(&v.id()) {
            let g = g.detach();
            let total = match v.grad() {
                Some(prev) => no_grad(|| prev.add(&g))?,
                None => g,
            };
            v.set_grad(Some(total));
        }
    }
    Ok(())
}
