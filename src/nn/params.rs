//! The parameter store: named trainable tensors and non-trainable buffers, created through
//! path scopes (`synthesis.b64.conv0.weight`), initialised deterministically from one seed, kept in
//! creation order, and shared by the layers (which hold clones of the same tensors), the optimisers
//! and the checkpoint code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::rngs::StdRng;

use super::init::Init;
use crate::tensor::{DType, Device, Tensor};
use crate::{Error, Result};

/// Per-parameter settings the optimisers read at every step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamAttrs {
    /// Multiplies the optimiser's learning rate for this parameter.
    pub lr_mult: f64,
    /// Whether the optimiser's weight decay applies (off for norms, biases, position tables).
    pub weight_decay: bool,
    /// Frozen parameters are skipped by optimisers and left out of `trainable()`.
    pub frozen: bool,
}

impl Default for ParamAttrs {
    fn default() -> Self {
        ParamAttrs {
            lr_mult: 1.0,
            weight_decay: true,
            frozen: false,
        }
    }
}

/// One named parameter: a variable tensor (shared with the layer that uses it) and its attributes.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub tensor: Tensor,
    pub attrs: ParamAttrs,
}

struct Inner {
    seed: u64,
    dtype: DType,
    params: Vec<Param>,
    buffers: Vec<(String, Tensor)>,
    /// name → (is_buffer, index)
    index: HashMap<String, (bool, usize)>,
    /// Where new parameters and buffers are placed (see `ParamStore::set_device`).
    device: Device,
}

/// Named parameters and buffers of one model. Cloning gives another handle to the same store.
#[derive(Clone)]
pub struct ParamStore {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for ParamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.lock();
        write!(
            f,
            "ParamStore{{{} params, {} buffers, seed {}}}",
            g.params.len(),
            g.buffers.len(),
            g.seed
        )
    }
}

/// FNV-1a, so a parameter's initial values depend on the seed and its name only (not on the
/// order in which layers happen to be built).
fn name_hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Names are dot-separated paths; '/' is reserved for checkpoint sections.
fn check_component(op: &'static str, part: &str) -> Result<()> {
    if part.is_empty()
        || part.contains('/')
        || part.starts_with('.')
        || part.ends_with('.')
        || part.contains("..")
    {
        return Err(Error::invalid(
            op,
            format!(
                "name part {part:?} must be non-empty, without '/', leading/trailing or double dots"
            ),
        ));
    }
    Ok(())
}

impl ParamStore {
    /// An empty f32 store whose initial values derive from `seed`.
    pub fn new(seed: u64) -> ParamStore {
        ParamStore::with_dtype(seed, DType::F32)
    }

    pub fn with_dtype(seed: u64, dtype: DType) -> ParamStore {
        ParamStore {
            inner: Arc::new(Mutex::new(Inner {
                seed,
                dtype,
                params: Vec::new(),
                buffers: Vec::new(),
                index: HashMap::new(),
                device: Device::Cpu,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The scope with an empty path.
    pub fn root(&self) -> Scope {
        Scope {
            store: self.clone(),
            parts: Vec::new(),
            path: String::new(),
            attrs: ParamAttrs::default(),
        }
    }

    pub fn seed(&self) -> u64 {
        self.lock().seed
    }
    pub fn dtype(&self) -> DType {
        self.lock().dtype
    }

    /// The generator that initialises parameter `name`.
    pub fn rng_for(&self, name: &str) -> StdRng {
        crate::rng::std_rng(self.seed() ^ name_hash(name))
    }

    /// Every parameter in creation order.
    pub fn params(&self) -> Vec<Param> {
        self.lock().params.clone()
    }
    /// Parameters that are not frozen, in creation order.
    pub fn trainable(&self) -> Vec<Param> {
        self.lock()
            .params
            .iter()
            .filter(|p| !p.attrs.frozen)
            .cloned()
            .collect()
    }
    /// The tensors of `trainable()`.
    pub fn trainable_tensors(&self) -> Vec<Tensor> {
        self.trainable().into_iter().map(|p| p.tensor).collect()
    }
    /// Buffers in creation order.
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        self.lock().buffers.clone()
    }
    /// Parameters then buffers, each in creation order: what a checkpoint holds.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let g = self.lock();
        g.params
            .iter()
            .map(|p| (p.name.clone(), p.tensor.clone()))
            .chain(g.buffers.iter().cloned())
            .collect()
    }

    pub fn param(&self, name: &str) -> Option<Param> {
        let g = self.lock();
        match g.index.get(name) {
            Some(&(false, i)) => Some(g.params[i].clone()),
            _ => None,
        }
    }
    pub fn buffer(&self, name: &str) -> Option<Tensor> {
        let g = self.lock();
        match g.index.get(name) {
            Some(&(true, i)) => Some(g.buffers[i].1.clone()),
            _ => None,
        }
    }
    /// A parameter's or buffer's tensor.
    pub fn get(&self, name: &str) -> Option<Tensor> {
        let g = self.lock();
        g.index.get(name).map(|&(buf, i)| {
            if buf {
                g.buffers[i].1.clone()
            } else {
                g.params[i].tensor.clone()
            }
        })
    }

    /// Change one parameter's attributes.
    pub fn set_attrs(&self, name: &str, attrs: ParamAttrs) -> Result<()> {
        let mut g = self.lock();
        match g.index.get(name).copied() {
            Some((false, i)) => {
                g.params[i].attrs = attrs;
                Ok(())
            }
            _ => Err(Error::invalid(
                "set_attrs",
                format!("no parameter named {name:?}"),
            )),
        }
    }

    /// Freeze or unfreeze every parameter under `prefix` (a path; "" means all). Returns how
    /// many parameters it touched.
    pub fn set_frozen(&self, prefix: &str, frozen: bool) -> usize {
        let mut g = self.lock();
        let mut n = 0;
        for p in g.params.iter_mut() {
            let under = prefix.is_empty()
                || p.name == prefix
                || (p.name.starts_with(prefix) && p.name[prefix.len()..].starts_with('.'));
            if under {
                p.attrs.frozen = frozen;
                n += 1;
            }
        }
        n
    }

    /// Forget accumulated gradients.
    pub fn zero_grad(&self) {
        for p in self.lock().params.iter() {
            p.tensor.zero_grad();
        }
    }

    /// Number of parameter elements (frozen included), as `sum(p.numel())` in PyTorch.
    pub fn num_params(&self) -> usize {
        self.lock()
            .params
            .iter()
            .map(|p| p.tensor.elem_count())
            .sum()
    }
    /// Number of trainable (not frozen) parameter elements.
    pub fn num_trainable(&self) -> usize {
        self.lock()
            .params
            .iter()
            .filter(|p| !p.attrs.frozen)
            .map(|p| p.tensor.elem_count())
            .sum()
    }
    /// Number of named parameters (tensors, not elements).
    pub fn len(&self) -> usize {
        self.lock().params.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert_param(&self, name: String, tensor: Tensor, attrs: ParamAttrs) -> Result<Tensor> {
        let mut g = self.lock();
        if g.index.contains_key(&name) {
            return Err(Error::invalid(
                "param",
                format!("{name:?} is already defined in this store"),
            ));
        }
        let i = g.params.len();
        g.index.insert(name.clone(), (false, i));
        g.params.push(Param {
            name,
            tensor: tensor.clone(),
            attrs,
        });
        Ok(tensor)
    }

    fn insert_buffer(&self, name: String, tensor: Tensor) -> Result<Tensor> {
        let mut g = self.lock();
        if g.index.contains_key(&name) {
            return Err(Error::invalid(
                "buffer",
                format!("{name:?} is already defined in this store"),
            ));
        }
        let i = g.buffers.len();
        g.index.insert(name.clone(), (true, i));
        g.buffers.push((name, tensor.clone()));
        Ok(tensor)
    }
}

/// A path inside a store: creates parameters and buffers named `path.leaf`, and hands the
/// attributes it carries (lr multiplier, weight decay, frozen) to the parameters it creates.
#[derive(Clone, Debug)]
pub struct Scope {
    store: ParamStore,
    /// path components as given (checked when a name is made, so `sub` stays infallible)
    parts: Vec<String>,
    path: String,
    attrs: ParamAttrs,
}

impl Scope {
    /// The scope one level down: `path.name`.
    pub fn sub(&self, name: impl AsRef<str>) -> Scope {
        let name = name.as_ref();
        let mut parts = self.parts.clone();
        parts.push(name.to_string());
        Scope {
            store: self.store.clone(),
            parts,
            path: self.join(name),
            attrs: self.attrs,
        }
    }

    /// The full name of `leaf` in this scope.
    pub fn join(&self, leaf: &str) -> String {
        if self.path.is_empty() {
            leaf.to_string()
        } else {
            format!("{}.{leaf}", self.path)
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn store(&self) -> &ParamStore {
        &self.store
    }
    pub fn dtype(&self) -> DType {
        self.store.dtype()
    }
    pub fn attrs(&self) -> ParamAttrs {
        self.attrs
    }

    /// Parameters created below this scope get learning-rate multiplier `m`.
    pub fn with_lr_mult(&self, m: f64) -> Scope {
        let mut s = self.clone();
        s.attrs.lr_mult = m;
        s
    }
    /// Parameters created below this scope are exempt from weight decay.
    pub fn no_weight_decay(&self) -> Scope {
        let mut s = self.clone();
        s.attrs.weight_decay = false;
        s
    }
    /// Parameters created below this scope start frozen.
    pub fn frozen(&self) -> Scope {
        let mut s = self.clone();
        s.attrs.frozen = true;
        s
    }

    fn full_name(&self, op: &'static str, leaf: &str) -> Result<String> {
        for part in self.parts.iter().map(|s| s.as_str()).chain([leaf]) {
            check_component(op, part)?;
        }
        Ok(self.join(leaf))
    }

    /// A trainable tensor `path.name` of `shape`, drawn with `init` from the store's seed.
    pub fn param(&self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        self.param_with(name, shape, init, self.attrs)
    }

    /// As `param`, with explicit attributes.
    pub fn param_with(
        &self,
        name: &str,
        shape: &[usize],
        init: Init,
        attrs: ParamAttrs,
    ) -> Result<Tensor> {
        let full = self.full_name("param", name)?;
        let mut rng = self.store.rng_for(&full);
        let vals = init.sample(shape, &mut rng)?;
        let t = self
            .store
            .place(Tensor::from_f64s(&vals, shape, self.dtype())?)?
            .variable();
        self.store.insert_param(full, t, attrs)
    }

    /// A non-trainable tensor `path.name` holding `value` (a private contiguous copy), saved in
    /// checkpoints; update it with `Tensor::assign`.
    pub fn buffer(&self, name: &str, value: &Tensor) -> Result<Tensor> {
        let full = self.full_name("buffer", name)?;
        // a fresh storage, so later `assign`s do not write into the caller's tensor
        let t = Tensor::from_f64s(&value.to_vec_f64()?, value.shape(), value.dtype())?;
        let t = self.store.place(t)?;
        self.store.insert_buffer(full, t)
    }

    /// A buffer of the store's dtype filled by `init`.
    pub fn buffer_init(&self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let full = self.full_name("buffer", name)?;
        let mut rng = self.store.rng_for(&full);
        let vals = init.sample(shape, &mut rng)?;
        let t = self
            .store
            .place(Tensor::from_f64s(&vals, shape, self.dtype())?)?;
        self.store.insert_buffer(full, t)
    }
}

// ---- device placement ---------------------------------------------------------------------------

impl ParamStore {
    /// Place the parameters and buffers created from now on on `device` (call it before building
    /// a model to train that model there; initial values are drawn on the host as before, so a
    /// model built on the GPU starts from the same values as on the CPU).
    pub fn set_device(&self, device: Device) {
        self.lock().device = device;
    }

    /// Where new parameters and buffers are placed.
    pub fn device(&self) -> Device {
        self.lock().device
    }

    fn place(&self, t: Tensor) -> Result<Tensor> {
        let d = self.device();
        if d == Device::Cpu {
            Ok(t)
        } else {
            t.to_device(d)
        }
    }
}
