//! Every CUDA op against the CPU reference kernels on fresh random inputs: forward, backward
//! (autograd on the device against autograd on the CPU) and, where the GAN regularisers need it
//! (R1, path length: conv, modulated conv, upfirdn, bias + leaky ReLU, minibatch std, norms), the
//! second order. The op list lives here once: the parity tests (`tests/cuda_parity*.rs`) run it
//! group by group, and `brainsynth audit-kernels` runs all of it on a user's GPU.
//!
//! Each case gives one [`Row`]: the largest relative error ‖device − cpu‖/‖cpu‖ over its forward
//! output and every gradient, against a tolerance of 1e-5 in f32 and 1e-12 in f64. Backward
//! passes are checked on ⟨f(x), w⟩ with a projection w fixed per op name; second order on
//! ⟨∂L/∂x₀, u⟩. An op that fails on the device is a failed row carrying its error. While a group
//! runs, the CPU side of the calling thread uses the reference kernels (plain loops).

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::autograd::{GradOptions, grad_with};
use crate::backend::cpu::{self, CpuKernels};
use crate::ops::attention::{attention, shifted_window_mask, window_attention};
use crate::ops::modconv::{ModConvParams, modulated_conv2d};
use crate::ops::norm::{group_norm, group_norm_silu, instance_norm, layer_norm};
use crate::ops::resize::{adaptive_avg_pool2d, avg_pool2d, resize_bilinear, resize_nearest};
use crate::ops::stylegan::{Act, bias_act, minibatch_stddev};
use crate::ops::upfirdn::{setup_filter, upfirdn2d};
use crate::ops::{Binary, Conv2dParams, Unary};
use crate::tensor::{DType, Device, Tensor};
use crate::{Error, Result};

/// Largest relative error allowed in `dt`.
pub fn tolerance(dt: DType) -> f64 {
    match dt {
        DType::F32 => 1e-5,
        DType::F64 => 1e-12,
    }
}

/// One op's verdict.
#[derive(Clone, Debug)]
pub struct Row {
    /// The op and its case (shapes, options, dtype).
    pub op: String,
    pub dtype: DType,
    /// 1: forward and gradients; 2: also the gradients of a gradient.
    pub order: u8,
    /// Largest relative error over everything compared (NaN if any value was NaN).
    pub rel_err: f64,
    /// Which output had it ("forward", "grad of input 1", ...).
    pub worst: String,
    pub tol: f64,
    /// The error an op returned instead of a result.
    pub failure: Option<String>,
}

impl Row {
    fn new(op: &str, dtype: DType, order: u8) -> Row {
        Row {
            op: op.to_string(),
            dtype,
            order,
            rel_err: 0.0,
            worst: String::new(),
            tol: tolerance(dtype),
            failure: None,
        }
    }

    /// Keep the largest error seen and where (the first NaN sticks).
    fn record(&mut self, part: &str, e: f64) {
        if !self.rel_err.is_nan() && (e.is_nan() || e > self.rel_err) {
            self.rel_err = e;
            self.worst = part.to_string();
        }
    }

    /// Within tolerance and no error (a NaN error fails).
    pub fn passed(&self) -> bool {
        self.failure.is_none() && self.rel_err < self.tol
    }
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.passed() { "pass" } else { "FAIL" };
        let tol = format!("{:.0e}", self.tol);
        let (err, what) = match &self.failure {
            Some(e) => ("-".to_string(), e.as_str()),
            None => (format!("{:.2e}", self.rel_err), self.worst.as_str()),
        };
        write!(
            f,
            "{:<60} {:>3} {err:>9} {tol:>7}  {verdict}  {what}",
            self.op, self.order
        )
    }
}

/// The header line of [`Row`]'s display.
pub fn header() -> String {
    format!(
        "{:<60} {:>3} {:>9} {:>7}  {:<4}  worst output",
        "op", "ord", "rel err", "tol", "ok"
    )
}

/// A named set of cases (one parity test each).
#[derive(Clone, Copy)]
pub struct Group {
    pub name: &'static str,
    run: fn(&mut Auditor) -> Result<()>,
}

/// Every group, in the order `audit-kernels` prints them.
pub const GROUPS: &[Group] = &[
    Group {
        name: "unary",
        run: unary,
    },
    Group {
        name: "binary",
        run: binary,
    },
    Group {
        name: "views",
        run: views,
    },
    Group {
        name: "reduce",
        run: reduce,
    },
    Group {
        name: "matmul",
        run: matmul,
    },
    Group {
        name: "conv",
        run: conv,
    },
    Group {
        name: "conv_anchor",
        run: conv_anchor,
    },
    Group {
        name: "fused_group_norm",
        run: fused_group_norm,
    },
    Group {
        name: "fused_window_attention",
        run: fused_window_attention,
    },
    Group {
        name: "fused_modconv",
        run: fused_modconv,
    },
    Group {
        name: "norms",
        run: norms,
    },
    Group {
        name: "attention",
        run: attention_ops,
    },
    Group {
        name: "resampling",
        run: resampling,
    },
    Group {
        name: "stylegan",
        run: stylegan,
    },
];

/// The rows of group `name` on `device` with inputs drawn from `seed` (the same seed gives the
/// same inputs). An error only for a group that does not exist.
pub fn run_group(device: Device, seed: u64, name: &str) -> Result<Vec<Row>> {
    let g = GROUPS.iter().find(|g| g.name == name).ok_or_else(|| {
        Error::invalid(
            "audit",
            format!(
                "no op group {name}; the groups are {}",
                GROUPS.iter().map(|g| g.name).collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    let _reference = cpu::use_kernels(CpuKernels::Reference);
    let mut a = Auditor {
        device,
        rng: StdRng::seed_from_u64(seed ^ hash(g.name)),
        rows: Vec::new(),
    };
    if let Err(e) = (g.run)(&mut a) {
        let mut row = Row::new(&format!("{} (preparing inputs)", g.name), DType::F32, 1);
        row.failure = Some(e.to_string());
        a.rows.push(row);
    }
    Ok(a.rows)
}

/// FNV-1a of a name: fixed per name on every machine.
fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Runs cases and collects their rows.
pub struct Auditor {
    device: Device,
    rng: StdRng,
    rows: Vec<Row>,
}

const DTYPES: [DType; 2] = [DType::F32, DType::F64];

/// A pseudo-random tensor fixed by `name` (the projection of a backward check).
fn projection(name: &str, like: &Tensor) -> Tensor {
    let mut r = StdRng::seed_from_u64(hash(name));
    Tensor::randn(like.shape(), like.dtype(), &mut r)
}

/// Gradients of every input, zeros for unused ones (a linear op's second order is zero).
fn grad(out: Tensor, inputs: &[Tensor], create_graph: bool) -> Result<Vec<Tensor>> {
    grad_with(
        &[out],
        None,
        inputs,
        GradOptions {
            create_graph,
            allow_unused: true,
        },
    )
}

/// ‖dev − cpu‖ / ‖cpu‖ (absolute when the reference is zero).
fn rel_err(dev: &Tensor, cpu: &Tensor) -> Result<f64> {
    if dev.shape() != cpu.shape() {
        return Err(Error::shape(
            "audit",
            format!(
                "the device gave shape {:?}, the cpu {:?}",
                dev.shape(),
                cpu.shape()
            ),
        ));
    }
    let g = dev.to_device(Device::Cpu)?.to_vec_f64()?;
    let c = cpu.to_vec_f64()?;
    let diff = g
        .iter()
        .zip(&c)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt();
    let norm = c.iter().map(|b| b * b).sum::<f64>().sqrt();
    Ok(if norm == 0.0 { diff } else { diff / norm })
}

/// `e` with the side it happened on, for a failed row.
fn on(side: &'static str) -> impl Fn(Error) -> Error {
    move |e| Error::Cuda(format!("{side}: {e}"))
}

impl Auditor {
    fn randn(&mut self, shape: &[usize], dt: DType) -> Tensor {
        Tensor::randn(shape, dt, &mut self.rng)
    }

    /// Values in [0.5, 2): the domain of log, sqrt, rsqrt, powf, and positive styles.
    fn positive(&mut self, shape: &[usize], dt: DType) -> Tensor {
        Tensor::rand_uniform(shape, 0.5, 2.0, dt, &mut self.rng)
    }

    fn to_dev(&self, ts: &[Tensor]) -> Result<Vec<Tensor>> {
        ts.iter().map(|t| t.to_device(self.device)).collect()
    }

    fn push(&mut self, mut row: Row, r: Result<()>) {
        if let Err(e) = r {
            row.failure = Some(e.to_string());
        }
        self.rows.push(row);
    }

    /// Forward and first-order gradients of `f` on the device against the CPU.
    fn check(&mut self, name: &str, inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) {
        self.check_order(name, inputs, false, f)
    }

    /// As [`Auditor::check`], and the gradients of ⟨∂L/∂x₀, u⟩ with respect to every input.
    fn check_second(
        &mut self,
        name: &str,
        inputs: &[Tensor],
        f: impl Fn(&[Tensor]) -> Result<Tensor>,
    ) {
        self.check_order(name, inputs, true, f)
    }

    fn check_order(
        &mut self,
        name: &str,
        inputs: &[Tensor],
        second: bool,
        f: impl Fn(&[Tensor]) -> Result<Tensor>,
    ) {
        let dt = inputs.first().map(|t| t.dtype()).unwrap_or(DType::F32);
        let label = format!("{name} {}", dt.name());
        let mut row = Row::new(&label, dt, if second { 2 } else { 1 });
        let r = self.autograd(&mut row, name, inputs, second, &f);
        self.push(row, r);
    }

    fn autograd(
        &self,
        row: &mut Row,
        name: &str,
        inputs: &[Tensor],
        second: bool,
        f: &impl Fn(&[Tensor]) -> Result<Tensor>,
    ) -> Result<()> {
        let cpu_vars: Vec<Tensor> = inputs.iter().map(|t| t.variable()).collect();
        let dev_vars: Vec<Tensor> = self.to_dev(inputs)?.iter().map(|t| t.variable()).collect();
        let y_cpu = f(&cpu_vars).map_err(on("on the cpu"))?;
        let y_dev = f(&dev_vars)?;
        row.record("forward", rel_err(&y_dev, &y_cpu)?);
        let w = projection(name, &y_cpu);
        let l_cpu = y_cpu.mul(&w)?.sum_all()?;
        let l_dev = y_dev.mul(&w.to_device(self.device)?)?.sum_all()?;
        let g_cpu = grad(l_cpu, &cpu_vars, second).map_err(on("backward on the cpu"))?;
        let g_dev = grad(l_dev, &dev_vars, second).map_err(on("backward"))?;
        for (i, (g, c)) in g_dev.iter().zip(&g_cpu).enumerate() {
            row.record(&format!("grad of input {i}"), rel_err(g, c)?);
        }
        if !second {
            return Ok(());
        }
        let u = projection(&format!("{name} second"), &g_cpu[0]);
        let s_cpu = g_cpu[0].mul(&u)?.sum_all()?;
        let s_dev = g_dev[0].mul(&u.to_device(self.device)?)?.sum_all()?;
        let h_cpu = grad(s_cpu, &cpu_vars, false).map_err(on("second order on the cpu"))?;
        let h_dev = grad(s_dev, &dev_vars, false).map_err(on("second order"))?;
        for (i, (g, c)) in h_dev.iter().zip(&h_cpu).enumerate() {
            row.record(&format!("2nd-order grad of input {i}"), rel_err(g, c)?);
        }
        Ok(())
    }
}

fn unary(a: &mut Auditor) -> Result<()> {
    let all = [
        Unary::Neg,
        Unary::Exp,
        Unary::Log,
        Unary::Sqrt,
        Unary::Rsqrt,
        Unary::Recip,
        Unary::Sqr,
        Unary::Sin,
        Unary::Cos,
        Unary::Abs,
        Unary::Tanh,
        Unary::Sigmoid,
        Unary::Erf,
        Unary::Relu,
        Unary::Silu,
        Unary::Gelu,
        Unary::Softplus,
        Unary::Powf(1.7),
        Unary::LeakyRelu(0.2),
        Unary::Clamp(-0.5, 0.7),
        Unary::Affine(1.3, -0.4),
        Unary::StepPos,
        Unary::Sign,
        Unary::InRange(-0.3, 0.4),
        Unary::Ge(0.1),
        Unary::LeakyDeriv(0.2),
        Unary::GeluDeriv,
    ];
    for dt in DTYPES {
        for op in all {
            let pos = matches!(
                op,
                Unary::Log | Unary::Sqrt | Unary::Rsqrt | Unary::Recip | Unary::Powf(_)
            );
            let x = if pos {
                a.positive(&[3, 257], dt)
            } else {
                a.randn(&[3, 257], dt)
            };
            a.check(&format!("{op:?}"), &[x], |v| v[0].unary(op));
        }
    }
    Ok(())
}

fn binary(a: &mut Auditor) -> Result<()> {
    let shapes: [(&[usize], &[usize]); 5] = [
        (&[4, 5, 6], &[4, 5, 6]),
        (&[4, 5, 6], &[6]),
        (&[4, 1, 6], &[1, 5, 1]),
        (&[2, 3, 4, 5], &[]),
        (&[3, 1], &[2, 1, 3, 4]),
    ];
    let ops = [
        Binary::Add,
        Binary::Sub,
        Binary::Mul,
        Binary::Div,
        Binary::Max,
        Binary::Min,
        Binary::GeMask,
    ];
    for dt in DTYPES {
        for (sa, sb) in shapes {
            for op in ops {
                let x = a.randn(sa, dt);
                let y = if op == Binary::Div {
                    a.positive(sb, dt)
                } else {
                    a.randn(sb, dt)
                };
                a.check(&format!("{op:?} {sa:?} {sb:?}"), &[x, y], |v| {
                    v[0].binary(&v[1], op)
                });
            }
        }
    }
    Ok(())
}

fn views(a: &mut Auditor) -> Result<()> {
    let dt = DType::F32;
    let c = a.randn(&[4, 1, 6], dt).unary(Unary::StepPos)?;
    let cg = c.to_device(a.device)?;
    let (x, y) = (a.randn(&[4, 5, 6], dt), a.randn(&[5, 1], dt));
    let dev = a.device;
    a.check("where", &[x, y], |v| {
        let cond = if v[0].device() == dev { &cg } else { &c };
        Tensor::where_cond(cond, &v[0], &v[1])
    });
    let t = a.randn(&[3, 4, 5], dt);
    let ins = [t.clone(), a.randn(&[3, 4, 5], dt), a.randn(&[5], dt)];
    a.check("lerp", &ins, |v| v[0].lerp(&v[1], &v[2]));
    let one = std::slice::from_ref(&t);
    a.check("permute+contiguous", one, |v| {
        v[0].permute(&[2, 0, 1])?.contiguous()?.exp()
    });
    a.check("narrow", one, |v| v[0].narrow(1, 1, 2)?.sqr());
    a.check("transpose·matmul", one, |v| {
        v[0].transpose(1, 2)?.matmul(&v[0])
    });
    let b = a.randn(&[4, 1], dt);
    a.check("broadcast_as", &[b], |v| {
        v[0].broadcast_as(&[3, 4, 5])?.sin()
    });
    let ins = [t.clone(), a.randn(&[3, 2, 5], dt)];
    a.check("cat", &ins, |v| Tensor::cat(v, 1));
    let ins = [t.clone(), a.randn(&[3, 4, 5], dt)];
    a.check("stack", &ins, |v| Tensor::stack(v, 0));
    a.check("pad_axis", one, |v| v[0].pad_axis(2, 2, 1));
    a.check("pad2d zero", one, |v| v[0].pad2d((1, 2, 0, 3), false));
    a.check("pad2d reflect", one, |v| v[0].pad2d((2, 1, 3, 2), true));
    a.check("flip", one, |v| v[0].flip(&[0, 2]));
    a.check("roll", one, |v| v[0].roll(-2, 2));
    a.check("index_select with repeats", one, |v| {
        v[0].index_select(1, &[3, 0, 3, 1])
    });
    let map = std::sync::Arc::new(vec![7u32, 0, crate::ops::view::ZERO, 7, 59, 3]);
    a.check("gather_map/scatter_add_map", one, |v| {
        v[0].gather_map(map.clone(), &[2, 3])?
            .scatter_add_map(map.clone(), &[3, 4, 5])
    });
    Ok(())
}

fn reduce(a: &mut Auditor) -> Result<()> {
    for dt in DTYPES {
        let x = a.randn(&[5, 6, 7, 8], dt);
        let one = std::slice::from_ref(&x);
        let axes: [&[isize]; 6] = [&[0], &[3], &[1, 2], &[0, 3], &[0, 1, 2, 3], &[-2]];
        for ax in axes {
            a.check(&format!("sum {ax:?}"), one, |v| v[0].sum_axes(ax, false));
            a.check(&format!("max {ax:?}"), one, |v| v[0].max_axes(ax, true));
        }
        a.check("mean [1]", one, |v| v[0].mean_axes(&[1], true));
        a.check("var [2, 3]", one, |v| v[0].var_axes(&[2, 3], false, true));
        a.check("logsumexp [3]", one, |v| v[0].logsumexp(&[3], false));
        a.check("softmax -1", one, |v| v[0].softmax(-1));
        a.check("log_softmax 1", one, |v| v[0].log_softmax(1));
        let long = a.randn(&[3, 100_000], dt);
        a.check("sum of long rows [3, 100000]", &[long], |v| {
            v[0].sum_axes(&[1], false)
        });
        // a loss-like full reduction, large enough to be split across blocks
        let full = a.randn(&[300_000], dt);
        a.check("sum_all [300000]", &[full], |v| v[0].sum_all());
    }
    Ok(())
}

fn matmul(a: &mut Auditor) -> Result<()> {
    for dt in DTYPES {
        let ins = [a.randn(&[37, 53], dt), a.randn(&[53, 29], dt)];
        a.check("matmul 2d", &ins, |v| v[0].matmul(&v[1]));
        let ins = [a.randn(&[3, 17, 20], dt), a.randn(&[3, 20, 9], dt)];
        a.check("matmul batched", &ins, |v| v[0].matmul(&v[1]));
        let ins = [a.randn(&[2, 1, 5, 6], dt), a.randn(&[4, 6, 3], dt)];
        a.check("matmul broadcast batch", &ins, |v| v[0].matmul(&v[1]));
        let ins = [
            a.randn(&[4, 7, 12], dt),
            a.randn(&[10, 12], dt),
            a.randn(&[10], dt),
        ];
        a.check("linear", &ins, |v| v[0].linear(&v[1], Some(&v[2])));
    }
    Ok(())
}

fn conv(a: &mut Auditor) -> Result<()> {
    let cases: [(&[usize], &[usize], Conv2dParams); 6] = [
        (&[2, 5, 9, 8], &[7, 5, 3, 3], Conv2dParams::same(3)),
        (
            &[2, 4, 10, 11],
            &[6, 4, 3, 3],
            Conv2dParams::same(3).with_stride(2),
        ),
        (
            &[1, 6, 9, 9],
            &[6, 2, 3, 3],
            Conv2dParams::same(3).with_groups(3),
        ),
        (
            &[2, 3, 12, 10],
            &[4, 3, 5, 3],
            Conv2dParams {
                stride: (2, 1),
                padding: (2, 1),
                dilation: (1, 2),
                groups: 1,
            },
        ),
        (&[3, 70, 6, 6], &[66, 70, 1, 1], Conv2dParams::default()),
        (
            &[1, 8, 8, 8],
            &[8, 1, 3, 3],
            Conv2dParams::same(3).with_groups(8),
        ),
    ];
    for dt in DTYPES {
        for (xs, ws, p) in cases {
            let ins = [a.randn(xs, dt), a.randn(ws, dt)];
            a.check(&format!("conv2d {xs:?} {ws:?} {p:?}"), &ins, |v| {
                v[0].conv2d(&v[1], p)
            });
        }
        let ins = [a.randn(&[2, 4, 5, 6], dt), a.randn(&[4, 3, 4, 4], dt)];
        a.check("conv_transpose2d stride 2", &ins, |v| {
            v[0].conv_transpose2d(&v[1], Conv2dParams::same(3).with_stride(2), (1, 1))
        });
        // second order through the three conv primitives, as R1 needs
        let ins = [a.randn(&[2, 3, 7, 7], dt), a.randn(&[4, 3, 3, 3], dt)];
        a.check_second("conv2d 3x3", &ins, |v| {
            v[0].conv2d(&v[1], Conv2dParams::same(3))
        });
    }
    Ok(())
}

fn conv_anchor(a: &mut Auditor) -> Result<()> {
    // the first layer of the anchors' smallest conv: 5 channels in, 64 out, 64x64; the
    // reference loops are slow at this size, and the fast CPU kernels are tested against them
    let _fast = cpu::use_kernels(CpuKernels::Fast);
    let ins = [
        a.randn(&[2, 5, 64, 64], DType::F32),
        a.randn(&[64, 5, 3, 3], DType::F32),
    ];
    a.check("conv3x3 5->64 at 64x64", &ins, |v| {
        v[0].conv2d(&v[1], Conv2dParams::same(3))
    });
    Ok(())
}

/// The diffusion U-Net's norm through `ops::norm`: on a GPU the fused kernels of
/// cuda/group_norm.cu, forward and (first order) their backward; one case also at second order
/// (the recorded rule).
fn fused_group_norm(a: &mut Auditor) -> Result<()> {
    for dt in DTYPES {
        for (shape, groups, silu) in [
            ([2, 8, 5, 7], 4, true),
            ([3, 6, 33, 17], 3, false),
            ([1, 32, 16, 16], 32, true),
        ] {
            let x = a.randn(&shape, dt).affine(2.0, 0.7)?;
            let ins = [x, a.randn(&[shape[1]], dt), a.randn(&[shape[1]], dt)];
            let name = format!(
                "group_norm{} {shape:?} /{groups}",
                if silu { "_silu" } else { "" }
            );
            a.check(&name, &ins, |v| {
                let (w, b) = (Some(&v[1]), Some(&v[2]));
                if silu {
                    group_norm_silu(&v[0], groups, w, b, 1e-5)
                } else {
                    group_norm(&v[0], groups, w, b, 1e-5)
                }
            });
        }
        let ins = [
            a.randn(&[2, 8, 4, 5], dt),
            a.randn(&[8], dt),
            a.randn(&[8], dt),
        ];
        a.check_second("group_norm_silu [2, 8, 4, 5] /4", &ins, |v| {
            group_norm_silu(&v[0], 4, Some(&v[1]), Some(&v[2]), 1e-5)
        });
    }
    Ok(())
}

/// Swin's window attention through `ops::attention`: on a GPU the fused kernels of
/// cuda/window_attention.cu, forward and (first order) backward, at the window sizes of the
/// models (7×7 windows, N = 49) and the kernels' limit (N = dim = 64).
fn fused_window_attention(a: &mut Auditor) -> Result<()> {
    for dt in DTYPES {
        for (b, h, n, d, nw, with_mask) in [
            (4, 3, 49, 32, 2, true),
            (2, 2, 64, 64, 1, false),
            (3, 1, 7, 5, 3, true),
        ] {
            let ins = [
                a.randn(&[b, h, n, d], dt),
                a.randn(&[b, h, n, d], dt),
                a.randn(&[b, h, n, d], dt),
                a.randn(&[h, n, n], dt),
            ];
            let mask = a
                .randn(&[nw, n, n], dt)
                .unary(Unary::StepPos)?
                .affine(-100.0, 0.0)?;
            let m_dev = mask.to_device(a.device)?;
            let dev = a.device;
            let scale = 1.0 / (d as f64).sqrt();
            let name = format!("window_attention [{b}, {h}, {n}, {d}] nW {nw} mask {with_mask}");
            a.check(&name, &ins, |t| {
                let m = if t[0].device() == dev { &m_dev } else { &mask };
                window_attention(&t[0], &t[1], &t[2], &t[3], with_mask.then_some(m), scale)
            });
        }
    }
    Ok(())
}

/// StyleGAN2's modulated conv without resampling through `ops::modconv`: on a GPU the fused
/// kernels of cuda/modconv.cu, forward and (first order) backward; second order is in the
/// `stylegan` group.
fn fused_modconv(a: &mut Auditor) -> Result<()> {
    for dt in DTYPES {
        for (n, cin, cout, hw, k, demod) in [
            (2, 8, 12, 9, 3, true),
            (3, 5, 4, 6, 1, false),
            (1, 70, 66, 5, 3, true),
        ] {
            let ins = [
                a.randn(&[n, cin, hw, hw], dt),
                a.randn(&[cout, cin, k, k], dt),
                a.positive(&[n, cin], dt),
            ];
            let p = ModConvParams::same(k).demodulate(demod);
            let name =
                format!("modulated_conv2d [{n}, {cin}, {hw}, {hw}] -> {cout} k{k} demod {demod}");
            a.check(&name, &ins, |v| {
                modulated_conv2d(&v[0], &v[1], &v[2], None, None, p)
            });
        }
    }
    Ok(())
}

fn norms(a: &mut Auditor) -> Result<()> {
    for dt in DTYPES {
        // an offset mean, so a naive one-pass variance would lose digits
        let x = a.randn(&[2, 6, 5, 7], dt).add_scalar(3.0)?;
        let (w, b) = (a.randn(&[6], dt), a.randn(&[6], dt));
        let (lw, lb) = (a.randn(&[7], dt), a.randn(&[7], dt));
        let affine = [x.clone(), w, b];
        let plain = std::slice::from_ref(&x);
        let last = [x.clone(), lw, lb];
        a.check_second("group_norm affine /3", &affine, |v| {
            group_norm(&v[0], 3, Some(&v[1]), Some(&v[2]), 1e-5)
        });
        a.check_second("group_norm plain /2", plain, |v| {
            group_norm(&v[0], 2, None, None, 1e-5)
        });
        a.check_second("group_norm_silu /3", &affine, |v| {
            group_norm_silu(&v[0], 3, Some(&v[1]), Some(&v[2]), 1e-5)
        });
        a.check_second("instance_norm affine", &affine, |v| {
            instance_norm(&v[0], Some(&v[1]), Some(&v[2]), 1e-8)
        });
        a.check_second("instance_norm plain", plain, |v| {
            instance_norm(&v[0], None, None, 1e-8)
        });
        // layer norm over the last dim (Swin) and over the last two
        a.check_second("layer_norm last dim", &last, |v| {
            layer_norm(&v[0], &[7], Some(&v[1]), Some(&v[2]), 1e-5)
        });
        a.check_second("layer_norm two dims", plain, |v| {
            layer_norm(&v[0], &[5, 7], None, None, 1e-5)
        });
        // the weight and bias gradients in several partial sums per channel: 2 samples of
        // 32x32 per block (instance norm), 2048 tokens per block (layer norm over the last dim)
        let ins = [
            a.randn(&[5, 3, 32, 32], dt),
            a.randn(&[3], dt),
            a.randn(&[3], dt),
        ];
        a.check("instance_norm affine [5, 3, 32, 32]", &ins, |v| {
            instance_norm(&v[0], Some(&v[1]), Some(&v[2]), 1e-5)
        });
        let ins = [
            a.randn(&[4200, 7], dt),
            a.randn(&[7], dt),
            a.randn(&[7], dt),
        ];
        a.check("layer_norm [4200, 7]", &ins, |v| {
            layer_norm(&v[0], &[7], Some(&v[1]), Some(&v[2]), 1e-5)
        });
    }
    Ok(())
}

fn attention_ops(a: &mut Auditor) -> Result<()> {
    for dt in DTYPES {
        // Swin windows: 2 images × 4 windows of 4×4 tokens, 3 heads, d 8 → the window kernel
        let (bw, heads, tok, d) = (8, 3, 16, 8);
        let ins = [
            a.randn(&[bw, heads, tok, d], dt),
            a.randn(&[bw, heads, tok, d], dt),
            a.randn(&[bw, heads, tok, d], dt),
            a.randn(&[heads, tok, tok], dt),
        ];
        let mask = shifted_window_mask(8, 8, 4, 2, dt)?;
        let m_dev = mask.to_device(a.device)?;
        let dev = a.device;
        a.check("window_attention shifted", &ins, |t| {
            let m = if t[0].device() == dev { &m_dev } else { &mask };
            window_attention(&t[0], &t[1], &t[2], &t[3], Some(m), 0.35)
        });
        a.check("window_attention plain", &ins, |t| {
            window_attention(&t[0], &t[1], &t[2], &t[3], None, 0.35)
        });
        // 70 queries, 66 keys, dv ≠ d: beyond the window kernel → the general kernel
        let ins = [
            a.randn(&[2, 3, 70, 12], dt),
            a.randn(&[2, 3, 66, 12], dt),
            a.randn(&[2, 3, 66, 5], dt),
        ];
        a.check("attention general", &ins, |t| {
            attention(&t[0], &t[1], &t[2], 0.3)
        });
        // square but small: the window kernel through plain attention
        let ins = [
            a.randn(&[2, 20, 9], dt),
            a.randn(&[2, 20, 9], dt),
            a.randn(&[2, 20, 9], dt),
        ];
        a.check("attention small", &ins, |t| {
            attention(&t[0], &t[1], &t[2], 0.3)
        });
    }
    Ok(())
}

fn resampling(a: &mut Auditor) -> Result<()> {
    for dt in DTYPES {
        let xs = [a.randn(&[2, 3, 9, 12], dt)];
        a.check("resize_nearest up", &xs, |v| {
            resize_nearest(&v[0], (17, 25))
        });
        a.check("resize_nearest down", &xs, |v| {
            resize_nearest(&v[0], (4, 5))
        });
        a.check("resize_bilinear up", &xs, |v| {
            resize_bilinear(&v[0], (20, 23))
        });
        a.check("resize_bilinear down", &xs, |v| {
            resize_bilinear(&v[0], (5, 7))
        });
        a.check("avg_pool2d", &xs, |v| {
            avg_pool2d(&v[0], (3, 2), (2, 2), (1, 0))
        });
        a.check("adaptive_avg_pool2d", &xs, |v| {
            adaptive_avg_pool2d(&v[0], (4, 5))
        });
        // StyleGAN-style FIR: a separable 8-tap filter and a 2-D 4×4 one, up and down
        let taps8 = [1.0, 3.0, 5.0, 7.0, 7.0, 5.0, 3.0, 1.0];
        let sep = setup_filter(&taps8, &[8], true, false, 1.0, Some(true), dt)?;
        let taps4 = [1.0, 3.0, 3.0, 1.0];
        let f2 = setup_filter(&taps4, &[4], true, false, 1.0, Some(false), dt)?;
        for (fname, f) in [("separable", &sep), ("2-D", &f2)] {
            let k = f.shape()[0] as isize;
            let fd = f.to_device(a.device)?;
            let dev = a.device;
            let pick = |t: &Tensor| if t.device() == dev { &fd } else { f };
            a.check(&format!("upfirdn2d up 2 {fname}"), &xs, |v| {
                let p = (k + 1) / 2 + 1;
                upfirdn2d(
                    &v[0],
                    pick(&v[0]),
                    (2, 2),
                    (1, 1),
                    (p, p - 1, p, p - 1),
                    4.0,
                    false,
                )
            });
            a.check(&format!("upfirdn2d down 2 {fname}"), &xs, |v| {
                let p = (k - 2) / 2;
                upfirdn2d(&v[0], pick(&v[0]), (1, 1), (2, 2), (p, p, p, p), 1.0, false)
            });
            a.check(&format!("upfirdn2d cropped {fname}"), &xs, |v| {
                upfirdn2d(
                    &v[0],
                    pick(&v[0]),
                    (2, 1),
                    (1, 2),
                    (-1, 3, 2, -1),
                    1.0,
                    true,
                )
            });
        }
    }
    Ok(())
}

/// The StyleGAN2 layers whose second order R1 and the path-length penalty differentiate.
fn stylegan(a: &mut Auditor) -> Result<()> {
    for dt in DTYPES {
        let ins = [a.randn(&[2, 6, 5, 5], dt), a.randn(&[6], dt)];
        a.check_second("bias_act lrelu 0.2, clamp 256", &ins, |v| {
            bias_act(&v[0], Some(&v[1]), 1, Act::Lrelu(0.2), None, Some(256.0))
        });
        // groups of 4 (NVlabs' default): with 2, a group's std is |a − b|/2, and its second
        // derivative (1/std³) amplifies rounding past f64's tolerance where a and b are close
        let ins = [a.randn(&[8, 6, 3, 3], dt)];
        a.check_second("minibatch_stddev group 4, 2 channels", &ins, |v| {
            minibatch_stddev(&v[0], 4, 2)
        });
        let f = setup_filter(&[1.0, 3.0, 3.0, 1.0], &[4], true, false, 1.0, None, dt)?;
        let fd = f.to_device(a.device)?;
        let dev = a.device;
        // the filter on the side of the checked inputs (it is not one of them)
        let pick = |t: &Tensor| if t.device() == dev { &fd } else { &f };
        let ins = [a.randn(&[2, 3, 6, 6], dt)];
        a.check_second("upfirdn2d up 2 [1,3,3,1]", &ins, |v| {
            upfirdn2d(&v[0], pick(&v[0]), (2, 2), (1, 1), (2, 1, 2, 1), 4.0, false)
        });
        let ins = [
            a.randn(&[2, 4, 6, 6], dt),
            a.randn(&[5, 4, 3, 3], dt),
            a.positive(&[2, 4], dt),
        ];
        for fused_form in [true, false] {
            let p = ModConvParams::same(3).fused(fused_form);
            a.check_second(
                &format!("modulated_conv2d 3x3 demod, fused {fused_form}"),
                &ins,
                |v| modulated_conv2d(&v[0], &v[1], &v[2], None, None, p),
            );
        }
        let p = ModConvParams {
            up: 2,
            padding: 1,
            ..ModConvParams::same(3)
        };
        a.check_second("modulated_conv2d 3x3 up 2", &ins, |v| {
            modulated_conv2d(&v[0], &v[1], &v[2], None, Some(pick(&v[0])), p)
        });
    }
    Ok(())
}
