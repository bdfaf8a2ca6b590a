//! Procedural BraTS-like cases: skull-stripped brains with a glioma, written as real NIfTI-1 files
//! (`.nii.gz`) in the BraTS folder layout, fully determined by a seed.
//!
//! Each subject has its own anatomy and tumour:
//!
//! * brain: an egg-shaped ellipsoid (wider posteriorly, flatter below) with a bumpy boundary,
//!   random size, aspect and in-plane rotation; a thin CSF rim, sulci (a ridged noise network)
//!   and the interhemispheric fissure;
//! * grey matter: a cortical ribbon whose inner boundary is folded by noise (gyri), plus deep grey
//!   nuclei (thalami, basal ganglia);
//! * CSF spaces: lateral ventricles (bodies diverging posteriorly, atria) and the third ventricle,
//!   of random size;
//! * tumour in either hemisphere at a random position, size, orientation and irregular shape
//!   (a perturbed ellipsoid): a necrotic core inside an enhancing rim (most), a solid enhancing
//!   tumour with non-enhancing patches, or a non-enhancing tumour without enhancement; surrounded
//!   by oedema that spreads through white matter and fades towards its border; mild mass effect;
//! * unlabelled look-alikes: small FLAIR-bright white-matter lesions and T1ce-bright vessels;
//! * per sequence contrast (T1: WM > GM > CSF; T1ce: T1 plus bright enhancing tumour; T2:
//!   CSF > GM > WM; FLAIR: CSF dark, oedema bright), tissue texture, a small partial-volume blur,
//!   a smooth multiplicative bias field and Rician noise inside the brain.
//!
//! Volumes are `int16`, labels `uint8` (0, 1, 2, 4; 0, 1, 2, 3 with 2023 naming), voxel spacing is
//! the BraTS field of view (240 × 240 × 155 mm) divided by the dimensions.

use std::path::{Path, PathBuf};

use ndarray::{Array3, ShapeBuilder};
use nifti::NiftiHeader;
use nifti::writer::WriterOptions;

use crate::data::annotation::{BACKGROUND, CORE, EDEMA, ENHANCING};
use crate::data::nifti_case::{Case, Naming};
use crate::io::atomic::{commit_temp, temp_path_for};
use crate::rng::SplitMix64;
use crate::{Error, Result};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct PhantomConfig {
    /// Volume size `[nx, ny, nz]` (default 120 × 120 × 78: BraTS at half resolution; slices are
    /// padded to 128 and can be downscaled to exactly 64).
    pub dims: [usize; 3],
    /// Number of subjects (default 24).
    pub subjects: usize,
    /// Seed; the same seed gives the same files (default 0).
    pub seed: u64,
    /// File naming (default BraTS 2020: `<id>_t1.nii.gz` …).
    pub naming: Naming,
    /// Subject ids are `<prefix>_001`, `<prefix>_002`, … (default `Phantom`).
    pub prefix: String,
}

impl Default for PhantomConfig {
    fn default() -> Self {
        PhantomConfig {
            dims: [120, 120, 78],
            subjects: 24,
            seed: 0,
            naming: Naming::Brats2020,
            prefix: "Phantom".into(),
        }
    }
}

impl PhantomConfig {
    /// Subject id of subject `i` (0-based).
    pub fn subject_id(&self, i: usize) -> String {
        format!("{}_{:03}", self.prefix, i + 1)
    }

    fn validate(&self) -> Result<()> {
        if self.dims.iter().any(|&d| !(8..=1024).contains(&d)) {
            return Err(Error::invalid(
                "phantom",
                format!("dimensions {:?} must each be between 8 and 1024", self.dims),
            ));
        }
        if self.subjects == 0 || self.subjects > 9999 {
            return Err(Error::invalid(
                "phantom",
                "subjects must be between 1 and 9999",
            ));
        }
        if self.prefix.is_empty() || self.prefix.contains(['/', '\\']) {
            return Err(Error::invalid(
                "phantom",
                "prefix must be a plain non-empty name",
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Smooth noise.

/// Value noise on a lattice covering brain units [-1.6, 1.6]³, trilinear with smoothstep, in
/// [-1, 1].
struct Noise {
    cells: usize,
    vals: Vec<f32>,
}

impl Noise {
    fn new(rng: &mut SplitMix64, cells: usize) -> Self {
        let n = cells + 2;
        let vals = (0..n * n * n)
            .map(|_| rng.uniform(-1.0, 1.0) as f32)
            .collect();
        Noise { cells, vals }
    }

    fn at(&self, p: [f32; 3]) -> f32 {
        let n = self.cells + 2;
        let mut i = [0usize; 3];
        let mut f = [0f32; 3];
        for a in 0..3 {
            let t = ((p[a] + 1.6) / 3.2).clamp(0.0, 1.0) * self.cells as f32;
            let fl = t.floor().min(self.cells as f32);
            i[a] = fl as usize;
            let fr = t - fl;
            f[a] = fr * fr * (3.0 - 2.0 * fr);
        }
        let idx = |x: usize, y: usize, z: usize| self.vals[x + n * (y + n * z)];
        let mut acc = 0.0;
        for dz in 0..2 {
            let wz = if dz == 0 { 1.0 - f[2] } else { f[2] };
            for dy in 0..2 {
                let wy = if dy == 0 { 1.0 - f[1] } else { f[1] };
                for dx in 0..2 {
                    let wx = if dx == 0 { 1.0 - f[0] } else { f[0] };
                    acc += wx * wy * wz * idx(i[0] + dx, i[1] + dy, i[2] + dz);
                }
            }
        }
        acc
    }
}

/// Two octaves of value noise.
struct Fbm(Noise, Noise);

impl Fbm {
    fn new(rng: &mut SplitMix64, cells: usize) -> Self {
        Fbm(Noise::new(rng, cells), Noise::new(rng, cells * 2 + 1))
    }
    fn at(&self, p: [f32; 3]) -> f32 {
        (self.0.at(p) + 0.45 * self.1.at(p)) / 1.2
    }
}

// ---------------------------------------------------------------------------------------------
// Tissues and their contrasts.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tissue {
    Outside,
    Csf,
    Gm,
    DeepGm,
    Wm,
}

/// Mean intensity (T1, T1ce, T2, FLAIR) of each tissue, before subject jitter.
fn tissue_contrast(t: Tissue) -> [f32; 4] {
    match t {
        Tissue::Outside => [0.0; 4],
        Tissue::Csf => [0.13, 0.13, 1.00, 0.08],
        Tissue::Gm => [0.54, 0.52, 0.55, 0.60],
        Tissue::DeepGm => [0.62, 0.60, 0.46, 0.54],
        Tissue::Wm => [0.78, 0.74, 0.36, 0.46],
    }
}

const NECROSIS: [f32; 4] = [0.24, 0.22, 0.92, 0.50];
const ENHANCING_TISSUE: [f32; 4] = [0.50, 1.05, 0.62, 0.72];
const NONENHANCING: [f32; 4] = [0.42, 0.42, 0.84, 0.86];
const OEDEMA: [f32; 4] = [0.47, 0.45, 0.80, 0.95];
const WM_LESION: [f32; 4] = [0.55, 0.53, 0.74, 0.86];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TumourKind {
    /// Necrotic core inside an enhancing rim.
    Necrotic,
    /// Solid enhancing tumour with non-enhancing patches.
    Solid,
    /// Non-enhancing tumour, no enhancement.
    NonEnhancing,
}

struct Blob {
    c: [f32; 3],
    r: f32,
}

/// Everything random about one subject.
struct Subject {
    // geometry: voxel → brain units
    fov_mm: [f32; 3],
    centre_mm: [f32; 3],
    axes_mm: [f32; 4], // ax, ay, az_up, az_down
    rot: (f32, f32),   // cos, sin of the in-plane rotation
    posterior_widening: f32,
    vent_scale: f32,
    // noise fields
    bound: Fbm,
    gyri: Fbm,
    sulci: Noise,
    texture: Fbm,
    tumour_shape: Fbm,
    oedema_shape: Fbm,
    tumour_texture: Fbm,
    bias: [Noise; 4],
    bias_strength: f32,
    // tumour
    kind: TumourKind,
    tc: [f32; 3],
    tr: f32,
    t_axes: [f32; 3],
    t_rot: (f32, f32),
    necrosis: f32,
    oedema_factor: f32,
    oedema_gain: f32,
    mass: f32,
    // look-alikes
    lesions: Vec<Blob>,
    vessels: Vec<Blob>,
    // contrast
    gain: [f32; 4],
    jitter: [[f32; 4]; 5],
    noise_sigma: f32,
}

impl Subject {
    fn new(seed: u64, index: usize) -> Self {
        let mut g = SplitMix64::derive(seed, index as u64);
        let scale = g.uniform(0.90, 1.05) as f32;
        let angle = g.uniform(-0.16, 0.16) as f32;
        let side = if g.chance(0.5) { 1.0 } else { -1.0 };
        let kind = match g.next_f64() {
            x if x < 0.55 => TumourKind::Necrotic,
            x if x < 0.8 => TumourKind::Solid,
            _ => TumourKind::NonEnhancing,
        };
        let tr = g.uniform(0.13, 0.30) as f32;
        let tc = [
            side * g.uniform(0.22, 0.52) as f32,
            g.uniform(-0.55, 0.5) as f32,
            g.uniform(-0.15, 0.45) as f32,
        ];
        let ta = g.uniform(0.0, std::f64::consts::PI) as f32;
        let mut jitter = [[1.0f32; 4]; 5];
        for row in &mut jitter {
            for v in row.iter_mut() {
                *v = g.uniform(0.93, 1.07) as f32;
            }
        }
        let oedema_factor = match kind {
            TumourKind::NonEnhancing => g.uniform(1.15, 1.6),
            _ => g.uniform(1.35, 2.3),
        } as f32;
        let n_lesions = g.below(4) as usize;
        let lesions = (0..n_lesions)
            .map(|_| Blob {
                c: [
                    g.uniform(-0.45, 0.45) as f32,
                    g.uniform(-0.5, 0.5) as f32,
                    g.uniform(0.0, 0.5) as f32,
                ],
                r: g.uniform(0.03, 0.065) as f32,
            })
            .collect();
        let n_vessels = 3 + g.below(6) as usize;
        let vessels = (0..n_vessels)
            .map(|_| {
                let th = g.uniform(0.0, std::f64::consts::TAU);
                let rad = g.uniform(0.55, 0.9);
                Blob {
                    c: [
                        (rad * th.cos()) as f32,
                        (rad * th.sin()) as f32,
                        g.uniform(-0.3, 0.5) as f32,
                    ],
                    r: g.uniform(0.015, 0.03) as f32,
                }
            })
            .collect();
        Subject {
            fov_mm: [240.0, 240.0, 155.0],
            centre_mm: [
                g.uniform(-4.0, 4.0) as f32,
                g.uniform(-6.0, 6.0) as f32,
                g.uniform(0.0, 10.0) as f32,
            ],
            axes_mm: [
                76.0 * scale * g.uniform(0.95, 1.05) as f32,
                94.0 * scale,
                66.0 * scale,
                52.0 * scale,
            ],
            rot: (angle.cos(), angle.sin()),
            posterior_widening: g.uniform(0.04, 0.12) as f32,
            vent_scale: g.uniform(0.75, 1.5) as f32,
            bound: Fbm::new(&mut g, 5),
            gyri: Fbm::new(&mut g, 9),
            sulci: Noise::new(&mut g, 17),
            texture: Fbm::new(&mut g, 16),
            tumour_shape: Fbm::new(&mut g, 5),
            oedema_shape: Fbm::new(&mut g, 6),
            tumour_texture: Fbm::new(&mut g, 14),
            bias: [
                Noise::new(&mut g, 2),
                Noise::new(&mut g, 2),
                Noise::new(&mut g, 2),
                Noise::new(&mut g, 2),
            ],
            bias_strength: g.uniform(0.08, 0.22) as f32,
            kind,
            tc,
            tr,
            t_axes: [
                g.uniform(0.8, 1.25) as f32,
                g.uniform(0.8, 1.25) as f32,
                g.uniform(0.8, 1.25) as f32,
            ],
            t_rot: (ta.cos(), ta.sin()),
            necrosis: g.uniform(0.35, 0.68) as f32,
            oedema_factor,
            oedema_gain: g.uniform(0.75, 1.0) as f32,
            mass: g.uniform(0.1, 0.3) as f32,
            lesions,
            vessels,
            gain: [
                g.uniform(600.0, 1200.0) as f32,
                g.uniform(700.0, 1500.0) as f32,
                g.uniform(900.0, 2500.0) as f32,
                g.uniform(500.0, 1100.0) as f32,
            ],
            jitter,
            noise_sigma: g.uniform(0.012, 0.032) as f32,
        }
    }

    /// Brain units of voxel (i, j, k) in a volume of `dims`.
    fn brain_coords(&self, dims: [usize; 3], i: usize, j: usize, k: usize) -> [f32; 3] {
        let mm = |a: usize, v: usize| {
            ((v as f32 + 0.5) / dims[a] as f32 - 0.5) * self.fov_mm[a] - self.centre_mm[a]
        };
        // j grows posteriorly, k superiorly (BraTS orientation).
        let (x, y, z) = (mm(0, i), mm(1, j), mm(2, k));
        let (c, s) = self.rot;
        let xr = c * x - s * y;
        let yr = s * x + c * y;
        let v = yr / self.axes_mm[1];
        let u = xr / (self.axes_mm[0] * (1.0 + self.posterior_widening * v));
        let w = if z >= 0.0 {
            z / self.axes_mm[2]
        } else {
            z / self.axes_mm[3]
        };
        [u, v, w]
    }

    /// Tissue at brain-units point `p` (anatomy at `q`, the mass-effect-displaced point).
    fn tissue(&self, p: [f32; 3], q: [f32; 3]) -> (Tissue, f32) {
        let r = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
        if r > 1.12 {
            return (Tissue::Outside, 0.0);
        }
        let rb = r / (1.0 + 0.045 * self.bound.at(p));
        if rb > 1.0 {
            return (Tissue::Outside, 0.0);
        }
        let depth = 1.0 - rb;
        if depth < 0.018 {
            return (Tissue::Csf, depth);
        }
        // Sulci: thin sheets where the noise crosses zero, reaching in from the surface; the grey
        // matter wraps around them and white matter reaches up into the gyri between them.
        let ridge = 1.0 - self.sulci.at(p).abs();
        let gyral = 0.03 * self.gyri.at(p);
        if depth < 0.22 && ridge > 0.90 + depth * 0.3 {
            return (Tissue::Csf, depth);
        }
        // Interhemispheric fissure: anterior, posterior and high.
        if q[0].abs() < 0.016 && (q[1].abs() > 0.32 || q[2] > 0.42) {
            return (Tissue::Csf, depth);
        }
        // Ventricles.
        let vs = self.vent_scale;
        for s in [-1.0f32, 1.0] {
            let (ca, sa) = (0.22f32.cos(), (s * 0.22).sin());
            let dx = q[0] - s * 0.11 * vs.sqrt();
            let dy = q[1] + 0.05;
            let lx = ca * dx + sa * dy;
            let ly = -sa * dx + ca * dy;
            let body = (lx / (0.08 * vs)).powi(2)
                + (ly / 0.40).powi(2)
                + ((q[2] - 0.17) / (0.12 * vs.sqrt())).powi(2);
            let atrium = ((q[0] - s * 0.22) / (0.08 * vs)).powi(2)
                + ((q[1] - 0.33) / 0.12).powi(2)
                + ((q[2] - 0.10) / 0.10).powi(2);
            if body < 1.0 || atrium < 1.0 {
                return (Tissue::Csf, depth);
            }
        }
        if q[0].abs() < 0.018 * vs && q[1] > -0.08 && q[1] < 0.18 && q[2] > -0.2 && q[2] < 0.08 {
            return (Tissue::Csf, depth);
        }
        // Deep grey nuclei.
        for s in [-1.0f32, 1.0] {
            let thal = ((q[0] - s * 0.15) / 0.11).powi(2)
                + ((q[1] - 0.08) / 0.15).powi(2)
                + ((q[2] + 0.02) / 0.13).powi(2);
            let bg = ((q[0] - s * 0.27) / 0.08).powi(2)
                + ((q[1] + 0.12) / 0.19).powi(2)
                + ((q[2] - 0.05) / 0.14).powi(2);
            if thal < 1.0 || bg < 1.0 {
                return (Tissue::DeepGm, depth);
            }
        }
        // Cortical ribbon with a folded inner boundary.
        let wm_depth = 0.075 + gyral + 0.2 * ridge.powi(3);
        if depth < wm_depth {
            (Tissue::Gm, depth)
        } else {
            (Tissue::Wm, depth)
        }
    }

    /// Label and four intensities (before blur, bias and noise) at brain-units point `p`.
    fn voxel(&self, p: [f32; 3]) -> (u8, [f32; 4], bool) {
        let d = [p[0] - self.tc[0], p[1] - self.tc[1], p[2] - self.tc[2]];
        let d2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
        // Mass effect: anatomy near the tumour is sampled closer to its centre (pushed outward).
        let sigma2 = (2.2 * self.tr) * (2.2 * self.tr);
        let m = self.mass * (-d2 / sigma2).exp();
        let q = [
            self.tc[0] + d[0] * (1.0 - m),
            self.tc[1] + d[1] * (1.0 - m),
            self.tc[2] + d[2] * (1.0 - m),
        ];
        let (tissue, _) = self.tissue(p, q);
        if tissue == Tissue::Outside {
            return (BACKGROUND, [0.0; 4], false);
        }
        let ti = tissue as usize;
        let base = tissue_contrast(tissue);
        let tex = 1.0 + 0.045 * self.texture.at(p);
        let mut val = [0f32; 4];
        for (s, v) in val.iter_mut().enumerate() {
            *v = base[s] * self.jitter[ti][s] * tex;
        }
        // Look-alike lesions in white matter (FLAIR/T2 bright, not labelled).
        if tissue == Tissue::Wm {
            for b in &self.lesions {
                let e = dist(p, b.c) / b.r;
                if e < 1.0 {
                    let a = 1.0 - e * e;
                    for s in 0..4 {
                        val[s] += a * (WM_LESION[s] - val[s]);
                    }
                }
            }
        }
        // Vessels: bright on T1ce only.
        if matches!(tissue, Tissue::Gm | Tissue::Csf) {
            for b in &self.vessels {
                let e = dist(p, b.c) / b.r;
                if e < 1.0 {
                    val[1] += (1.0 - e * e) * (0.95 - val[1]);
                }
            }
        }
        // Tumour.
        let mut label = BACKGROUND;
        let reach = self.tr * self.oedema_factor * 1.6;
        if d2 < reach * reach {
            let (c, s) = self.t_rot;
            let lx = (c * d[0] - s * d[1]) / self.t_axes[0];
            let ly = (s * d[0] + c * d[1]) / self.t_axes[1];
            let lz = d[2] / self.t_axes[2];
            let rt = (lx * lx + ly * ly + lz * lz).sqrt() / self.tr;
            let rt = rt * (1.0 + 0.4 * self.tumour_shape.at(p));
            let tt = 1.0 + 0.12 * self.tumour_texture.at(p);
            if rt < 1.0 {
                let (l, look) = match self.kind {
                    TumourKind::Necrotic => {
                        let inner = self.necrosis * (1.0 + 0.25 * self.tumour_texture.at(q));
                        if rt < inner {
                            (CORE, NECROSIS)
                        } else {
                            (ENHANCING, ENHANCING_TISSUE)
                        }
                    }
                    TumourKind::Solid => {
                        if self.tumour_texture.at([p[2], p[0], p[1]]) > 0.35 {
                            (CORE, NONENHANCING)
                        } else {
                            (ENHANCING, ENHANCING_TISSUE)
                        }
                    }
                    TumourKind::NonEnhancing => (CORE, NONENHANCING),
                };
                label = l;
                for s in 0..4 {
                    val[s] = look[s] * tt * self.jitter[4][s];
                }
            } else if tissue != Tissue::Csf {
                let re = d2.sqrt() / (self.tr * self.oedema_factor)
                    * (1.0 + 0.3 * self.oedema_shape.at(p));
                let limit = if tissue == Tissue::Gm { 0.8 } else { 1.0 };
                if re < limit {
                    label = EDEMA;
                    // Strong near the tumour, fading towards the border.
                    let a = self.oedema_gain * (0.3 + 0.7 * (1.0 - re * re).max(0.0));
                    for s in 0..4 {
                        let target = OEDEMA[s] * tt;
                        val[s] += a * (target - val[s]);
                    }
                }
            }
        }
        (label, val, true)
    }
}

fn dist(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// Separable 3-tap blur along each axis (weights w, 1 − 2w, w), in place.
fn blur3(data: &mut [f32], dims: [usize; 3], w: f32) {
    let strides = [1, dims[0], dims[0] * dims[1]];
    let mut tmp = data.to_vec();
    for a in 0..3 {
        let st = strides[a];
        let n = dims[a];
        tmp.copy_from_slice(data);
        for (i, out) in data.iter_mut().enumerate() {
            let pos = (i / st) % n;
            let l = if pos > 0 { tmp[i - st] } else { tmp[i] };
            let r = if pos + 1 < n { tmp[i + st] } else { tmp[i] };
            *out = w * l + (1.0 - 2.0 * w) * tmp[i] + w * r;
        }
    }
}

/// Generate subject `index` (0-based) of `cfg` in memory, as [`read_case`](crate::data::read_case)
/// would return it after reading the files (`files` are the paths the files would have under a
/// folder named after the subject).
pub fn phantom_case(cfg: &PhantomConfig, index: usize) -> Result<Case> {
    cfg.validate()?;
    let (labels, vols) = render(cfg, index);
    let id = cfg.subject_id(index);
    let files = file_names(&id, cfg.naming).map(PathBuf::from);
    Ok(Case {
        id,
        dims: cfg.dims,
        sequences: vols.map(|v| v.iter().map(|&x| x as f32).collect()),
        labels,
        naming: cfg.naming,
        files,
    })
}

fn file_names(id: &str, naming: Naming) -> [String; 5] {
    naming.suffixes().map(|s| format!("{id}/{id}{s}.nii.gz"))
}

/// Labels (0, 1, 2, 4) and the four int16 volumes, x fastest.
fn render(cfg: &PhantomConfig, index: usize) -> (Vec<u8>, [Vec<i16>; 4]) {
    let sub = Subject::new(cfg.seed, index);
    let dims = cfg.dims;
    let n = dims[0] * dims[1] * dims[2];
    let mut labels = vec![0u8; n];
    let mut mask = vec![false; n];
    let mut vals: [Vec<f32>; 4] = std::array::from_fn(|_| vec![0f32; n]);
    let mut coords = vec![[0f32; 3]; n];
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let idx = i + dims[0] * (j + dims[1] * k);
                let p = sub.brain_coords(dims, i, j, k);
                coords[idx] = p;
                let (l, v, inside) = sub.voxel(p);
                labels[idx] = l;
                mask[idx] = inside;
                for s in 0..4 {
                    vals[s][idx] = v[s];
                }
            }
        }
    }
    let mut g = SplitMix64::derive(cfg.seed ^ 0x05EE_D0FA_015E, index as u64);
    let out = std::array::from_fn(|s| {
        let v = &mut vals[s];
        blur3(v, dims, 0.18);
        v.iter()
            .enumerate()
            .map(|(idx, &x)| {
                if !mask[idx] {
                    return 0i16;
                }
                let bias = (sub.bias_strength * sub.bias[s].at(coords[idx])).exp();
                let sig = sub.noise_sigma;
                let a = x * bias + sig * g.normal() as f32;
                let b = sig * g.normal() as f32;
                let r = (a * a + b * b).sqrt();
                (r * sub.gain[s]).round().clamp(1.0, 32000.0) as i16
            })
            .collect()
    });
    (labels, out)
}

/// Write `cfg.subjects` cases under `dir` (created if needed), one folder per subject with five
/// `.nii.gz` files each. Returns the case folders. Each file is written atomically.
pub fn write_phantom_cases(dir: impl AsRef<Path>, cfg: &PhantomConfig) -> Result<Vec<PathBuf>> {
    cfg.validate()?;
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = Vec::with_capacity(cfg.subjects);
    for i in 0..cfg.subjects {
        out.push(write_phantom_case(dir, cfg, i)?);
    }
    Ok(out)
}

/// Write subject `index` of `cfg` under `dir`; returns its case folder.
pub fn write_phantom_case(dir: &Path, cfg: &PhantomConfig, index: usize) -> Result<PathBuf> {
    cfg.validate()?;
    let id = cfg.subject_id(index);
    let case_dir = dir.join(&id);
    std::fs::create_dir_all(&case_dir).map_err(|e| Error::io(&case_dir, e))?;
    let (mut labels, vols) = render(cfg, index);
    if cfg.naming == Naming::Brats2023 {
        for l in &mut labels {
            if *l == ENHANCING {
                *l = 3;
            }
        }
    }
    let header = reference_header(cfg.dims);
    let suffixes = cfg.naming.suffixes();
    for (s, vol) in vols.iter().enumerate() {
        let path = case_dir.join(format!("{id}{}.nii.gz", suffixes[s]));
        write_nifti_gz(&path, cfg.dims, vol, &header)?;
    }
    let path = case_dir.join(format!("{id}{}.nii.gz", suffixes[4]));
    write_nifti_gz(&path, cfg.dims, &labels, &header)?;
    Ok(case_dir)
}

/// A header with BraTS-like geometry: 240 × 240 × 155 mm field of view, LPS-style affine.
fn reference_header(dims: [usize; 3]) -> NiftiHeader {
    let sp = [
        240.0 / dims[0] as f32,
        240.0 / dims[1] as f32,
        155.0 / dims[2] as f32,
    ];
    let mut h = NiftiHeader {
        pixdim: [1.0, sp[0], sp[1], sp[2], 1.0, 1.0, 1.0, 1.0],
        xyzt_units: 2, // millimetres
        sform_code: 1,
        qform_code: 0,
        srow_x: [-sp[0], 0.0, 0.0, 0.0],
        srow_y: [0.0, -sp[1], 0.0, 239.0],
        srow_z: [0.0, 0.0, sp[2], 0.0],
        ..NiftiHeader::default()
    };
    let _ = h.set_description_str("brainsynth phantom");
    h
}

/// Write one 3-D volume (x fastest) as `.nii.gz`, atomically.
fn write_nifti_gz<T>(path: &Path, dims: [usize; 3], data: &[T], header: &NiftiHeader) -> Result<()>
where
    T: nifti::DataElement + bytemuck::Pod,
{
    let arr = Array3::from_shape_vec((dims[0], dims[1], dims[2]).f(), data.to_vec())
        .map_err(|e| Error::invalid("phantom", e.to_string()))?;
    let tmp = temp_path_for(path, ".nii.gz");
    let res = WriterOptions::new(&tmp)
        .reference_header(header)
        .write_nifti(&arr);
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::format(path, format!("cannot write NIfTI ({e})")));
    }
    commit_temp(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> PhantomConfig {
        PhantomConfig {
            dims: [48, 48, 32],
            subjects: 3,
            seed: 11,
            ..Default::default()
        }
    }

    #[test]
    fn deterministic_and_varied() {
        let cfg = small();
        let a = phantom_case(&cfg, 0).unwrap();
        let b = phantom_case(&cfg, 0).unwrap();
        let c = phantom_case(&cfg, 1).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.labels, c.labels);
        assert!(a.labels.contains(&EDEMA));
    }

    #[test]
    fn contrasts_per_sequence() {
        let cfg = small();
        let case = phantom_case(&cfg, 2).unwrap();
        let sub = Subject::new(cfg.seed, 2);
        // Mean per tissue from the noiseless model, sampled on the grid.
        let mut sums = [[0f64; 4]; 5];
        let mut counts = [0usize; 5];
        for k in 0..32 {
            for j in 0..48 {
                for i in 0..48 {
                    let p = sub.brain_coords(cfg.dims, i, j, k);
                    let (t, _) = sub.tissue(p, p);
                    let idx = i + 48 * (j + 48 * k);
                    if case.labels[idx] != 0 {
                        continue;
                    }
                    for (s, sum) in sums[t as usize].iter_mut().enumerate() {
                        *sum += case.sequences[s][idx] as f64 / sub.gain[s] as f64;
                    }
                    counts[t as usize] += 1;
                }
            }
        }
        let m = |t: Tissue, s: usize| sums[t as usize][s] / counts[t as usize].max(1) as f64;
        assert!(m(Tissue::Wm, 0) > m(Tissue::Gm, 0) && m(Tissue::Gm, 0) > m(Tissue::Csf, 0));
        assert!(m(Tissue::Csf, 2) > m(Tissue::Gm, 2) && m(Tissue::Gm, 2) > m(Tissue::Wm, 2));
        assert!(m(Tissue::Csf, 3) < m(Tissue::Wm, 3));
    }
}
