//! The tensor: shared storage, a strided view of it, and (when gradients are needed) the op
//! that made it.

pub mod device;
pub mod dtype;
pub mod shape;
pub mod storage;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use device::Device;
pub use dtype::{DType, Float};
pub use shape::Layout;
pub use storage::{CpuStorage, Kernel, StorageElem};

#[cfg(feature = "cuda")]
use crate::backend::cuda::CudaStorage;

use crate::autograd::{self, GradFn};
use crate::{Error, Result};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// An n-dimensional array of f32 or f64 with optional autograd history. Cloning is cheap
/// (reference counted); views share storage.
#[derive(Clone)]
pub struct Tensor(Arc<Inner>);

struct Inner {
    id: u64,
    /// Host memory; empty (of the right dtype) for a tensor on a GPU.
    storage: Arc<RwLock<CpuStorage>>,
    /// Device memory of a tensor on a GPU.
    #[cfg(feature = "cuda")]
    cuda: Option<Arc<CudaStorage>>,
    layout: Layout,
    device: Device,
    /// A leaf whose gradient is wanted (a parameter, or an input of `grad`).
    variable: bool,
    grad_fn: Option<Arc<dyn GradFn>>,
    /// Gradient accumulated by `backward()` (variables only).
    grad: Mutex<Option<Tensor>>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor{{shape: {:?}, dtype: {}, device: {}",
            self.shape(),
            self.dtype().name(),
            self.device()
        )?;
        if let Some(g) = &self.0.grad_fn {
            write!(f, ", grad_fn: {}", g.name())?;
        }
        if self.elem_count() <= 16
            && let Ok(v) = self.to_vec_f64()
        {
            write!(f, ", data: {v:?}")?;
        }
        write!(f, "}}")
    }
}

impl Tensor {
    // ---- construction -------------------------------------------------------------------------

    pub(crate) fn from_storage(
        storage: CpuStorage,
        shape: &[usize],
        grad_fn: Option<Arc<dyn GradFn>>,
    ) -> Tensor {
        debug_assert_eq!(storage.len(), shape::elem_count(shape));
        Tensor(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            storage: Arc::new(RwLock::new(storage)),
            #[cfg(feature = "cuda")]
            cuda: None,
            layout: Layout::contiguous(shape),
            device: Device::Cpu,
            variable: false,
            grad_fn,
            grad: Mutex::new(None),
        }))
    }

    /// A new view of the same storage (no history); callers attach history with `autograd::record`.
    pub(crate) fn view_of(&self, layout: Layout) -> Tensor {
        Tensor(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            storage: self.0.storage.clone(),
            #[cfg(feature = "cuda")]
            cuda: self.0.cuda.clone(),
            layout,
            device: self.0.device,
            variable: false,
            grad_fn: None,
            grad: Mutex::new(None),
        }))
    }

    /// The same data with history attached (used by `autograd::record`).
    pub(crate) fn with_grad_fn(&self, grad_fn: Arc<dyn GradFn>) -> Tensor {
        Tensor(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            storage: self.0.storage.clone(),
            #[cfg(feature = "cuda")]
            cuda: self.0.cuda.clone(),
            layout: self.0.layout.clone(),
            device: self.0.device,
            variable: false,
            grad_fn: Some(grad_fn),
            grad: Mutex::new(None),
        }))
    }

    pub fn from_vec<T: StorageElem>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        if data.len() != shape::elem_count(shape) {
            return Err(Error::shape(
                "from_vec",
                format!(
                    "{} values cannot fill shape {shape:?} ({} elements)",
                    data.len(),
                    shape::elem_count(shape)
                ),
            ));
        }
        Ok(Tensor::from_storage(T::wrap(data), shape, None))
    }

    pub fn from_slice<T: StorageElem>(data: &[T], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape)
    }

    /// Values given as f64, stored as `dtype`.
    pub fn from_f64s(data: &[f64], shape: &[usize], dtype: DType) -> Result<Tensor> {
        match dtype {
            DType::F32 => {
                Tensor::from_vec(data.iter().map(|&v| v as f32).collect::<Vec<_>>(), shape)
            }
            DType::F64 => Tensor::from_vec(data.to_vec(), shape),
        }
    }

    pub fn full(value: f64, shape: &[usize], dtype: DType) -> Tensor {
        let n = shape::elem_count(shape);
        let s = match dtype {
            DType::F32 => CpuStorage::F32(vec![value as f32; n]),
            DType::F64 => CpuStorage::F64(vec![value; n]),
        };
        Tensor::from_storage(s, shape, None)
    }
    pub fn zeros(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::full(0.0, shape, dtype)
    }
    pub fn ones(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::full(1.0, shape, dtype)
    }
    pub fn scalar(value: f64, dtype: DType) -> Tensor {
        Tensor::full(value, &[], dtype)
    }
    /// Zeros of this tensor's shape and dtype, on its device.
    pub fn zeros_like(&self) -> Tensor {
        self.full_like(0.0)
    }
    /// Ones of this tensor's shape and dtype, on its device.
    pub fn ones_like(&self) -> Tensor {
        self.full_like(1.0)
    }
    /// `v` everywhere, in this tensor's shape and dtype, on its device. (On a GPU that cannot
    /// allocate, the result is a CPU tensor and the next op reports the device mismatch.)
    pub fn full_like(&self, v: f64) -> Tensor {
        #[cfg(feature = "cuda")]
        if let Some(c) = &self.0.cuda
            && let Ok(s) =
                crate::backend::cuda::ops::fill(c.backend(), self.dtype(), self.elem_count(), v)
        {
            return Tensor::from_cuda(s, self.shape());
        }
        Tensor::full(v, self.shape(), self.dtype())
    }
    /// 0, 1, ..., n-1.
    pub fn arange(n: usize, dtype: DType) -> Tensor {
        let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
        Tensor::from_f64s(&v, &[n], dtype).expect("length matches by construction")
    }

    /// Standard normal values from a seeded generator.
    pub fn randn(shape: &[usize], dtype: DType, rng: &mut impl rand::Rng) -> Tensor {
        use rand::RngExt;
        let n = shape::elem_count(shape);
        let v: Vec<f64> = (0..n)
            .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
            .collect();
        Tensor::from_f64s(&v, shape, dtype).expect("length matches by construction")
    }

    /// Uniform values in [lo, hi) from a seeded generator.
    pub fn rand_uniform(
        shape: &[usize],
        lo: f64,
        hi: f64,
        dtype: DType,
        rng: &mut impl rand::Rng,
    ) -> Tensor {
        use rand::RngExt;
        let n = shape::elem_count(shape);
        let v: Vec<f64> = (0..n)
            .map(|_| lo + (hi - lo) * rng.random::<f64>())
            .collect();
        Tensor::from_f64s(&v, shape, dtype).expect("length matches by construction")
    }

    // ---- facts ---------------------------------------------------------------------------------

    pub fn id(&self) -> u64 {
        self.0.id
    }
    pub fn shape(&self) -> &[usize] {
        &self.0.layout.shape
    }
    pub fn dims(&self) -> &[usize] {
        &self.0.layout.shape
    }
    pub fn rank(&self) -> usize {
        self.0.layout.shape.len()
    }
    pub fn dim(&self, ax: isize) -> Result<usize> {
        Ok(self.shape()[shape::axis("dim", ax, self.rank())?])
    }
    pub fn elem_count(&self) -> usize {
        self.0.layout.elem_count()
    }
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }
    pub fn dtype(&self) -> DType {
        self.0
            .storage
            .read()
            .map(|s| s.dtype())
            .unwrap_or(DType::F32)
    }
    pub fn device(&self) -> Device {
        self.0.device
    }
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }
    pub fn grad_fn(&self) -> Option<&Arc<dyn GradFn>> {
        self.0.grad_fn.as_ref()
    }
    pub fn is_variable(&self) -> bool {
        self.0.variable
    }
    /// True when gradients flow to or through this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.variable || self.0.grad_fn.is_some()
    }

    // ---- autograd handles ----------------------------------------------------------------------

    /// A leaf sharing this tensor's data whose gradient `backward()` accumulates.
    pub fn variable(&self) -> Tensor {
        let base = self.contiguous_detached();
        Tensor(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            storage: base.0.storage.clone(),
            #[cfg(feature = "cuda")]
            cuda: base.0.cuda.clone(),
            layout: base.0.layout.clone(),
            device: base.0.device,
            variable: true,
            grad_fn: None,
            grad: Mutex::new(None),
        }))
    }

    /// Same data, no history.
    pub fn detach(&self) -> Tensor {
        if !self.requires_grad() {
            return self.clone();
        }
        self.view_of(self.0.layout.clone())
    }

    /// Gradient accumulated by `backward()`, if any.
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.lock().ok().and_then(|g| g.clone())
    }
    pub fn set_grad(&self, g: Option<Tensor>) {
        if let Ok(mut slot) = self.0.grad.lock() {
            *slot = g;
        }
    }
    pub fn zero_grad(&self) {
        self.set_grad(None)
    }

    /// Backpropagate from a scalar, accumulating into every variable it depends on.
    pub fn backward(&self) -> Result<()> {
        autograd::backward(self)
    }

    // ---- data access ---------------------------------------------------------------------------

    pub(crate) fn storage_read(&self) -> RwLockReadGuard<'_, CpuStorage> {
        self.0.storage.read().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn storage_write(&self) -> RwLockWriteGuard<'_, CpuStorage> {
        self.0.storage.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A contiguous copy without history (or self when already contiguous from offset 0).
    pub(crate) fn contiguous_detached(&self) -> Tensor {
        let l = &self.0.layout;
        #[cfg(feature = "cuda")]
        if let Some(c) = &self.0.cuda {
            if l.is_contiguous() && l.offset == 0 && c.len() == l.elem_count() {
                return self.detach();
            }
            // Allocation failure here surfaces at the op that reads the result: keep the view,
            // whose kernels then see a length mismatch, rather than panic.
            return match crate::backend::cuda::ops::strided_copy(c.backend(), c, l) {
                Ok(s) => Tensor::from_cuda(s, &l.shape),
                Err(_) => self.detach(),
            };
        }
        let full =
            l.is_contiguous() && l.offset == 0 && self.storage_read().len() == l.elem_count();
        if full {
            return self.detach();
        }
        let src = self.storage_read();
        let out = match &*src {
            CpuStorage::F32(v) => CpuStorage::F32(l.gather_from(v)),
            CpuStorage::F64(v) => CpuStorage::F64(l.gather_from(v)),
        };
        Tensor::from_storage(out, &l.shape, None)
    }

    /// Run a kernel over the contiguous data of `inputs`; the result has `out_shape`.
    pub(crate) fn run_kernel<K: Kernel>(
        op: &'static str,
        inputs: &[&Tensor],
        out_shape: &[usize],
        k: &K,
    ) -> Result<Tensor> {
        let device = inputs.first().map(|t| t.device()).unwrap_or(Device::Cpu);
        if let Some(t) = inputs.iter().find(|t| t.device() != device) {
            return Err(Error::Device {
                op,
                msg: format!(
                    "inputs are on {device} and {}: move them to one device with to_device",
                    t.device()
                ),
            });
        }
        if device != Device::Cpu {
            return Tensor::run_kernel_device(op, inputs, out_shape, k);
        }
        // contiguous views (with any offset) are sliced below, only strided ones are copied
        let contig: Vec<Tensor> = crate::profile::timed("(strided copy)", || {
            inputs
                .iter()
                .map(|t| {
                    if t.is_contiguous() {
                        (*t).clone()
                    } else {
                        t.contiguous_detached()
                    }
                })
                .collect()
        });
        let guards: Vec<_> = contig.iter().map(|t| t.storage_read()).collect();
        let dtype = guards.first().map(|g| g.dtype()).unwrap_or(DType::F32);
        if let Some(g) = guards.iter().find(|g| g.dtype() != dtype) {
            return Err(Error::DType {
                op,
                msg: format!("{} and {}", dtype.name(), g.dtype().name()),
            });
        }
        let out = match dtype {
            DType::F32 => {
                let xs: Vec<&[f32]> = guards
                    .iter()
                    .zip(&contig)
                    .map(|(g, t)| {
                        &f32::slice(g).unwrap_or(&[])
                            [t.0.layout.offset..t.0.layout.offset + t.elem_count()]
                    })
                    .collect();
                CpuStorage::F32(crate::profile::timed(&profile_key(op, inputs), || {
                    k.run(&xs)
                })?)
            }
            DType::F64 => {
                let xs: Vec<&[f64]> = guards
                    .iter()
                    .zip(&contig)
                    .map(|(g, t)| {
                        &f64::slice(g).unwrap_or(&[])
                            [t.0.layout.offset..t.0.layout.offset + t.elem_count()]
                    })
                    .collect();
                CpuStorage::F64(crate::profile::timed(&profile_key(op, inputs), || {
                    k.run(&xs)
                })?)
            }
        };
        if out.len() != shape::elem_count(out_shape) {
            return Err(Error::shape(
                op,
                format!(
                    "kernel produced {} values for shape {out_shape:?}",
                    out.len()
                ),
            ));
        }
        Ok(Tensor::from_storage(out, out_shape, None))
    }

    #[cfg(feature = "cuda")]
    fn run_kernel_device<K: Kernel>(
        op: &'static str,
        inputs: &[&Tensor],
        out_shape: &[usize],
        k: &K,
    ) -> Result<Tensor> {
        let contig: Vec<Tensor> = inputs
            .iter()
            .map(|t| t.contiguous_device())
            .collect::<Result<_>>()?;
        let mut storages = Vec::with_capacity(contig.len());
        for t in &contig {
            match &t.0.cuda {
                Some(c) if c.len() == t.elem_count() => storages.push(c.clone()),
                _ => {
                    return Err(Error::Cuda(format!(
                        "{op}: could not make an input contiguous on {}",
                        t.device()
                    )));
                }
            }
        }
        let dtype = storages[0].dtype();
        if let Some(s) = storages.iter().find(|s| s.dtype() != dtype) {
            return Err(Error::DType {
                op,
                msg: format!("{} and {}", dtype.name(), s.dtype().name()),
            });
        }
        let be = storages[0].backend().clone();
        let refs: Vec<&CudaStorage> = storages.iter().map(|s| s.as_ref()).collect();
        let n = shape::elem_count(out_shape);
        let out = k.cuda(op, &refs, n, &be)?;
        if out.len() != n {
            return Err(Error::shape(
                op,
                format!(
                    "GPU kernel produced {} values for shape {out_shape:?}",
                    out.len()
                ),
            ));
        }
        Ok(Tensor::from_cuda(out, out_shape))
    }

    #[cfg(not(feature = "cuda"))]
    fn run_kernel_device<K: Kernel>(
        op: &'static str,
        inputs: &[&Tensor],
        _out_shape: &[usize],
        _k: &K,
    ) -> Result<Tensor> {
        let d = inputs.first().map(|t| t.device()).unwrap_or(Device::Cpu);
        Err(Error::Device {
            op,
            msg: format!(
                "{d} is not available: this build has no GPU backend (build with --features cuda)"
            ),
        })
    }

    /// A tensor over device storage (no history).
    #[cfg(feature = "cuda")]
    pub(crate) fn from_cuda(s: CudaStorage, shape: &[usize]) -> Tensor {
        debug_assert_eq!(s.len(), shape::elem_count(shape));
        let device = s.device();
        Tensor(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            storage: Arc::new(RwLock::new(CpuStorage::zeros(s.dtype(), 0))),
            cuda: Some(Arc::new(s)),
            layout: Layout::contiguous(shape),
            device,
            variable: false,
            grad_fn: None,
            grad: Mutex::new(None),
        }))
    }

    /// The device storage behind a GPU tensor (shared by its views; mind the layout).
    #[cfg(feature = "cuda")]
    pub fn cuda_storage(&self) -> Option<&Arc<CudaStorage>> {
        self.0.cuda.as_ref()
    }

    /// All values as f64, in row-major order.
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        self.check_cpu("to_vec")?;
        let t = self.contiguous_detached();
        let s = t.storage_read();
        let r = t.0.layout.offset..t.0.layout.offset + t.elem_count();
        Ok(match &*s {
            CpuStorage::F32(v) => v[r].iter().map(|&x| x as f64).collect(),
            CpuStorage::F64(v) => v[r].to_vec(),
        })
    }
    /// All values as f32, in row-major order.
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        self.check_cpu("to_vec")?;
        let t = self.contiguous_detached();
        let s = t.storage_read();
        let r = t.0.layout.offset..t.0.layout.offset + t.elem_count();
        Ok(match &*s {
            CpuStorage::F32(v) => v[r].to_vec(),
            CpuStorage::F64(v) => v[r].iter().map(|&x| x as f32).collect(),
        })
    }
    /// All values as `T`, in row-major order (a plain copy when the dtype is already `T`).
    pub fn to_vec_of<T: StorageElem>(&self) -> Result<Vec<T>> {
        self.check_cpu("to_vec")?;
        let t = self.contiguous_detached();
        let s = t.storage_read();
        let r = t.0.layout.offset..t.0.layout.offset + t.elem_count();
        if let Some(v) = T::slice(&s) {
            return Ok(v[r].to_vec());
        }
        Ok(match &*s {
            CpuStorage::F32(v) => v[r].iter().map(|&x| T::from_f64(x as f64)).collect(),
            CpuStorage::F64(v) => v[r].iter().map(|&x| T::from_f64(x)).collect(),
        })
    }
    /// The value of a one-element tensor.
    pub fn item(&self) -> Result<f64> {
        if self.elem_count() != 1 {
            return Err(Error::shape(
                "item",
                format!("needs one element, shape is {:?}", self.shape()),
            ));
        }
        // one scalar read back from a GPU (e.g. a loss or a gradient norm)
        Ok(self.to_device(Device::Cpu)?.to_vec_f64()?[0])
    }

    fn check_cpu(&self, op: &'static str) -> Result<()> {
        if self.device() != Device::Cpu {
            return Err(Error::Device {
                op,
                msg: format!(
                    "copy the tensor to the cpu first (it is on {})",
                    self.device()
                ),
            });
        }
        Ok(())
    }

    /// Copy to a device (the only host↔device transfer besides `assign` from host data).
    /// Gradients flow back across the copy. Without the `cuda` feature only the CPU exists.
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        #[cfg(feature = "cuda")]
        {
            let out = self.copy_to_device(device)?;
            let from = self.device();
            Ok(autograd::record(out, &[self], || {
                Arc::new(ToDeviceBackward {
                    x: self.clone(),
                    from,
                })
            }))
        }
        #[cfg(not(feature = "cuda"))]
        Err(Error::Device {
            op: "to_device",
            msg: format!(
                "{device} is not available: this build has no GPU backend (build with --features cuda)"
            ),
        })
    }

    /// Overwrite this tensor's values with `src` (same shape), in place and without history:
    /// how optimisers and checkpoint loading update parameters.
    pub fn assign(&self, src: &Tensor) -> Result<()> {
        if src.shape() != self.shape() {
            return Err(Error::shape(
                "assign",
                format!("{:?} into {:?}", src.shape(), self.shape()),
            ));
        }
        #[cfg(feature = "cuda")]
        if let Some(dst) = &self.0.cuda {
            return self.assign_device(dst, src);
        }
        // a host tensor takes a device tensor's values through a copy to the host (a no-op
        // for a host source)
        let vals = src.to_device(Device::Cpu)?.to_vec_f64()?;
        let l = self.0.layout.clone();
        let mut dst = self.storage_write();
        let mut k = 0;
        match &mut *dst {
            CpuStorage::F32(v) => l.for_each_index(|i| {
                v[i] = vals[k] as f32;
                k += 1;
            }),
            CpuStorage::F64(v) => l.for_each_index(|i| {
                v[i] = vals[k];
                k += 1;
            }),
        }
        Ok(())
    }

    /// Mutable access to the values of a contiguous tensor of element type `T` (optimisers).
    pub fn update_data<T: StorageElem, R>(&self, f: impl FnOnce(&mut [T]) -> R) -> Result<R> {
        self.check_cpu("update_data")?;
        let l = self.0.layout.clone();
        if !l.is_contiguous() {
            return Err(Error::invalid("update_data", "tensor is not contiguous"));
        }
        let mut s = self.storage_write();
        let dt = s.dtype();
        let v = T::slice_mut(&mut s).ok_or(Error::DType {
            op: "update_data",
            msg: format!(
                "tensor is {}, access asked for {}",
                dt.name(),
                T::DTYPE.name()
            ),
        })?;
        Ok(f(&mut v[l.offset..l.offset + l.elem_count()]))
    }
}

// ---- GPU storage (feature `cuda`) -------------------------------------------------------------

#[cfg(feature = "cuda")]
impl Tensor {
    /// A contiguous device copy (or self), or the reason it could not be made.
    pub(crate) fn contiguous_device(&self) -> Result<Tensor> {
        let c = self.0.cuda.as_ref().ok_or_else(|| Error::Device {
            op: "contiguous",
            msg: "not a GPU tensor".into(),
        })?;
        let l = &self.0.layout;
        if l.is_contiguous() && l.offset == 0 && c.len() == l.elem_count() {
            return Ok(self.detach());
        }
        let s = crate::backend::cuda::ops::strided_copy(c.backend(), c, l)?;
        Ok(Tensor::from_cuda(s, &l.shape))
    }

    fn copy_to_device(&self, device: Device) -> Result<Tensor> {
        match (self.device(), device) {
            (Device::Cpu, Device::Cuda(i)) => {
                let be = crate::backend::cuda::backend(i)?;
                let t = self.contiguous_detached();
                let s = t.storage_read();
                let r = t.0.layout.offset..t.0.layout.offset + t.elem_count();
                let d = match &*s {
                    CpuStorage::F32(v) => be.htod(&v[r])?,
                    CpuStorage::F64(v) => be.htod(&v[r])?,
                };
                Ok(Tensor::from_cuda(d, self.shape()))
            }
            (Device::Cuda(_), Device::Cpu) => {
                let t = self.contiguous_device()?;
                let c =
                    t.0.cuda
                        .as_ref()
                        .ok_or_else(|| Error::Cuda("lost device storage".into()))?;
                let be = c.backend();
                let s = match c.dtype() {
                    DType::F32 => CpuStorage::F32(be.dtoh::<f32>(c)?),
                    DType::F64 => CpuStorage::F64(be.dtoh::<f64>(c)?),
                };
                Ok(Tensor::from_storage(s, self.shape(), None))
            }
            (Device::Cuda(_), Device::Cuda(_)) => {
                self.copy_to_device(Device::Cpu)?.copy_to_device(device)
            }
            (Device::Cpu, Device::Cpu) => Ok(self.detach()),
        }
    }

    fn assign_device(&self, dst: &Arc<CudaStorage>, src: &Tensor) -> Result<()> {
        let be = dst.backend();
        let dt = dst.dtype();
        let src = match src.device() {
            Device::Cpu => {
                let vals = src.to_vec_f64()?;
                let s = match dt {
                    DType::F32 => be.htod(&vals.iter().map(|&v| v as f32).collect::<Vec<_>>())?,
                    DType::F64 => be.htod(&vals)?,
                };
                Tensor::from_cuda(s, src.shape())
            }
            d if d == self.device() => src.contiguous_device()?,
            d => {
                return Err(Error::Device {
                    op: "assign",
                    msg: format!("source on {d}, destination on {}", self.device()),
                });
            }
        };
        let s = src
            .0
            .cuda
            .as_ref()
            .ok_or_else(|| Error::Cuda("lost device storage".into()))?;
        if s.dtype() != dt {
            return Err(Error::DType {
                op: "assign",
                msg: format!("{} into {} on the GPU", s.dtype().name(), dt.name()),
            });
        }
        crate::backend::cuda::ops::strided_assign(be, dst, &self.0.layout, s)
    }
}

/// The gradient of a device copy is the copy back.
#[cfg(feature = "cuda")]
struct ToDeviceBackward {
    x: Tensor,
    from: Device,
}

#[cfg(feature = "cuda")]
impl GradFn for ToDeviceBackward {
    fn name(&self) -> &'static str {
        "to_device"
    }
    fn inputs(&self) -> Vec<Tensor> {
        vec![self.x.clone()]
    }
    fn backward(&self, _o: &Tensor, g: &Tensor, _n: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.to_device(self.from)?)])
    }
}

/// The profile table's key for a kernel call: its name, and its input shapes when asked.
fn profile_key<'a>(op: &'a str, inputs: &[&Tensor]) -> std::borrow::Cow<'a, str> {
    if crate::profile::by_shape() {
        let shapes: Vec<_> = inputs.iter().map(|t| t.shape()).collect();
        format!("{op} {shapes:?}").into()
    } else {
        op.into()
    }
}
