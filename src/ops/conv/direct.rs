//! Direct 3×3 convolution (stride 1, padding 1, no dilation, one group) in f32 with AVX-512:
//! the convs of U-Nets, and — through the flipped weight — their stride-1 backward-data; and
//! the backward-weight of the same convs on the same padded grid (`conv3x3_backward_weight`).
//!
//! im2col + GEMM writes every input pixel nine times into the column matrix and the GEMM then
//! packs that matrix again; with few output channels (32, 64) those passes cost as much as the
//! arithmetic. Here each sample is copied once into a zero-bordered plane per channel, of row
//! pitch W+2, and outputs are computed over that padded grid: output q = y·(W+2) + x reads
//! input q + ky·(W+2) + kx for tap (ky, kx), so every tap is one unaligned vector load with no
//! bounds checks (the two border columns of each row are computed and thrown away). A
//! micro-kernel keeps MR output channels × NV vectors of 16 positions in registers and runs
//! over all input channels and taps: per (channel, tap) NV loads, MR broadcasts, MR·NV FMAs.
//!
//! Falls back (returns false) when the shape does not fit or the CPU lacks AVX-512; results
//! are tested against the reference loops in tests/conv_direct.rs.

use super::reference::ConvGeom;
use crate::backend::cpu::fast::{SyncPtr, par_tasks};
use crate::backend::cpu::worker_threads;

/// Output channels per micro-kernel call.
const MR: usize = 6;
/// Vectors of 16 positions per micro-kernel call, at most.
const NV: usize = 4;
const LANES: usize = 16;

/// True when this kernel handles `g` on this CPU.
pub fn applies(g: &ConvGeom) -> bool {
    g.kh == 3
        && g.kw == 3
        && g.stride == (1, 1)
        && g.pad == (1, 1)
        && g.dil == (1, 1)
        && g.groups == 1
        && g.oh == g.h
        && g.ow == g.w
        && g.cin > 0
        && g.cout > 0
        && avx512()
}

fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// y = conv3x3(x, w) for [n, cin, h, w] x and [cout, cin, 3, 3] w, into `y` [n, cout, h, w].
/// Returns false (leaving `y` alone) when [`applies`] is false.
pub fn conv3x3(x: &[f32], w: &[f32], g: &ConvGeom, y: &mut [f32]) -> bool {
    if !applies(g) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        run(x, w, g, y);
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, w, y);
        false
    }
}

#[cfg(target_arch = "x86_64")]
fn run(x: &[f32], w: &[f32], g: &ConvGeom, y: &mut [f32]) {
    let (h, wd, cin, cout) = (g.h, g.w, g.cin, g.cout);
    let pw = wd + 2;
    let plane = (h + 2) * pw;
    // outputs over the padded grid, rounded up to whole vectors
    let nq = h * pw;
    let nqr = nq.div_ceil(LANES) * LANES;
    // the last channel's reads run past its plane by at most the rounding plus two rows
    let xlen = cin * plane + (nqr - nq) + 2 * pw + 2 + LANES;
    let offs: [usize; 9] = std::array::from_fn(|t| (t / 3) * pw + t % 3);
    // weights as [block][ci][tap][MR], zero-filled past cout
    let blocks = cout.div_ceil(MR);
    let mut wp = vec![0f32; blocks * cin * 9 * MR];
    for co in 0..cout {
        for ci in 0..cin {
            for t in 0..9 {
                wp[((co / MR * cin + ci) * 9 + t) * MR + co % MR] = w[(co * cin + ci) * 9 + t];
            }
        }
    }
    // tasks: (sample, run of channel blocks), at least two per worker where possible
    let threads = worker_threads();
    let per_sample = (2 * threads).div_ceil(g.n).clamp(1, blocks);
    let chunk = blocks.div_ceil(per_sample);
    let yp = SyncPtr(y.as_mut_ptr());
    par_tasks(
        g.n * per_sample,
        || (Vec::<f32>::new(), Vec::<f32>::new()),
        |(xp, out): &mut (Vec<f32>, Vec<f32>), task| {
            let (s, part) = (task / per_sample, task % per_sample);
            let (b0, b1) = (part * chunk, ((part + 1) * chunk).min(blocks));
            if b0 >= b1 {
                return;
            }
            xp.clear();
            xp.resize(xlen, 0.0);
            for ci in 0..cin {
                let src = &x[(s * cin + ci) * h * wd..][..h * wd];
                pad_channel(src, h, wd, &mut xp[ci * plane..]);
            }
            out.resize(MR * nqr, 0.0);
            for b in b0..b1 {
                let m = MR.min(cout - b * MR);
                let wb = &wp[b * cin * 9 * MR..][..cin * 9 * MR];
                let mut q = 0;
                while q < nqr {
                    let nv = NV.min((nqr - q) / LANES);
                    // SAFETY: reads of xp stay below xlen (see above), writes of `out` below
                    // MR·nqr; the CPU has AVX-512 (checked by `applies`).
                    unsafe { dispatch(m, nv, &xp[q..], cin, plane, &offs, wb, &mut out[q..], nqr) };
                    q += nv * LANES;
                }
                for mm in 0..m {
                    let co = b * MR + mm;
                    for r in 0..h {
                        // SAFETY: rows of (sample s, channel co) belong to this task alone.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                out[mm * nqr + r * pw..].as_ptr(),
                                yp.get().add(((s * cout + co) * h + r) * wd),
                                wd,
                            )
                        };
                    }
                }
            }
        },
    );
}

/// Copy one channel `src` [h, w] into the interior of its zero-bordered plane `dst` (row pitch
/// w + 2; the borders are left as they are).
#[cfg(target_arch = "x86_64")]
fn pad_channel(src: &[f32], h: usize, w: usize, dst: &mut [f32]) {
    for r in 0..h {
        dst[(r + 1) * (w + 2) + 1..][..w].copy_from_slice(&src[r * w..][..w]);
    }
}

/// Call the micro-kernel instance for `m` channels and `nv` vectors.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn dispatch(
    m: usize,
    nv: usize,
    xp: &[f32],
    cin: usize,
    plane: usize,
    offs: &[usize; 9],
    wb: &[f32],
    out: &mut [f32],
    ld: usize,
) {
    macro_rules! go {
        ($($m:literal),*) => {
            match (m, nv) {
                $(
                    ($m, 4) => unsafe { micro::<$m, 4>(xp.as_ptr(), cin, plane, offs, wb.as_ptr(), out.as_mut_ptr(), ld) },
                    ($m, 3) => unsafe { micro::<$m, 3>(xp.as_ptr(), cin, plane, offs, wb.as_ptr(), out.as_mut_ptr(), ld) },
                    ($m, 2) => unsafe { micro::<$m, 2>(xp.as_ptr(), cin, plane, offs, wb.as_ptr(), out.as_mut_ptr(), ld) },
                    ($m, 1) => unsafe { micro::<$m, 1>(xp.as_ptr(), cin, plane, offs, wb.as_ptr(), out.as_mut_ptr(), ld) },
                )*
                _ => unreachable!("m in 1..=MR and nv in 1..=NV by construction"),
            }
        };
    }
    go!(1, 2, 3, 4, 5, 6)
}

/// out[mm][j·16 ..] = Σ over channels and taps of wb[ci][t][mm] · xp[ci·plane + offs[t] + j·16 ..]
/// for mm < M, j < V.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro<const M: usize, const V: usize>(
    xp: *const f32,
    cin: usize,
    plane: usize,
    offs: &[usize; 9],
    wb: *const f32,
    out: *mut f32,
    ld: usize,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); V]; M];
    for ci in 0..cin {
        // SAFETY (whole body): the caller guarantees every address is inside its buffer.
        let base = unsafe { xp.add(ci * plane) };
        let wc = unsafe { wb.add(ci * 9 * MR) };
        for (t, &off) in offs.iter().enumerate() {
            let mut v = [_mm512_setzero_ps(); V];
            for (j, vj) in v.iter_mut().enumerate() {
                *vj = unsafe { _mm512_loadu_ps(base.add(off + j * LANES)) };
            }
            for (mm, row) in acc.iter_mut().enumerate() {
                let b = _mm512_set1_ps(unsafe { *wc.add(t * MR + mm) });
                for (a, &vj) in row.iter_mut().zip(&v) {
                    *a = _mm512_fmadd_ps(vj, b, *a);
                }
            }
        }
    }
    for (mm, row) in acc.iter().enumerate() {
        for (j, &a) in row.iter().enumerate() {
            unsafe { _mm512_storeu_ps(out.add(mm * ld + j * LANES), a) };
        }
    }
}

/// Output channels per backward-weight micro-kernel call: M·9 accumulators + M dy vectors +
/// one input vector fill AVX-512's 32 registers at M = 3.
const BW_M: usize = 3;
/// Narrower images leave im2col + GEMM faster: the two border columns of each row are work
/// thrown away and the lane sums are loaded and stored per few vectors (measured, 2 threads:
/// (n, cin, cout, hw) = (16, 256, 256, 8) 23.5 ms direct against 12.6 ms GEMM; at 16×16
/// 40.5 against 50.7 ms).
const BW_MIN_W: usize = 16;
/// Input channels per backward-weight task, at most: their lane sums (cout·9·64 bytes each)
/// and one sample's padded dy share L2.
const BW_CHUNK: usize = 4;
/// Padded dy of this many bytes at most is held at once (samples are taken in groups).
const BW_DY_BYTES: usize = 64 << 20;

/// dW = conv2d backward-weight for the geometry [`applies`] accepts: x [n, cin, h, w] and
/// dy [n, cout, h, w] into `dw` [cout, cin, 3, 3]. Returns false (leaving `dw` alone) when
/// [`applies`] is false or the image is narrower than 16 pixels.
///
/// The same padded grid as the forward: dy is laid on it with zeros in the two border columns
/// of each row (and past the last row), so dW[co, ci, t] = Σ_q dy[co, q]·xp[ci, q + offs\[t\]]
/// over whole vectors of q with no bounds checks. Each (co, ci, tap) keeps 16 lane sums that
/// run over a group of samples in order and are then added up lane by lane into dW (groups in
/// order); every dW element is computed by one task in that fixed order, so the result does
/// not depend on the thread count or on timing. The border positions multiply input values by
/// dy's zeros, so an infinite input can make NaN dW elements that the reference leaves finite
/// (any loss through such an input is non-finite anyway).
pub fn conv3x3_backward_weight(x: &[f32], dy: &[f32], g: &ConvGeom, dw: &mut [f32]) -> bool {
    if !applies(g) || g.w < BW_MIN_W {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        run_backward_weight(x, dy, g, dw);
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, dy, dw);
        false
    }
}

#[cfg(target_arch = "x86_64")]
fn run_backward_weight(x: &[f32], dy: &[f32], g: &ConvGeom, dw: &mut [f32]) {
    let (n, h, wd, cin, cout) = (g.n, g.h, g.w, g.cin, g.cout);
    if n == 0 {
        dw.fill(0.0);
        return;
    }
    let pw = wd + 2;
    let plane = (h + 2) * pw;
    let nq = h * pw;
    let nqr = nq.div_ceil(LANES) * LANES;
    // reads reach q + offs[8] ≤ nqr − 1 + 2·pw + 2 ≤ plane + 16
    let xlen = plane + 2 * LANES;
    let offs: [usize; 9] = std::array::from_fn(|t| (t / 3) * pw + t % 3);
    let blocks = cout.div_ceil(BW_M);
    let coutp = blocks * BW_M;
    // input channels per task: a few, so that one sample's padded dy is read from L2 by all
    // of them (read once per channel it streamed through L3), and enough tasks per thread
    let chunk = (cin / (2 * worker_threads())).clamp(1, BW_CHUNK);
    // one task's lane sums [ci − c0][co (padded to blocks)][tap][lane]
    let acc_len = chunk * coutp * 9 * LANES;
    let per_sample = cout * nqr;
    let group = (BW_DY_BYTES / (4 * per_sample).max(1)).clamp(1, n);
    // only the interior of each row is ever written: borders and tails stay zero
    let mut dyp = vec![0f32; group * per_sample];
    dw.fill(0.0);
    let dwp = SyncPtr(dw.as_mut_ptr());
    for s0 in (0..n).step_by(group) {
        let s1 = (s0 + group).min(n);
        {
            let dp = SyncPtr(dyp.as_mut_ptr());
            par_tasks(
                (s1 - s0) * cout,
                || (),
                |_, row| {
                    let src = &dy[(s0 * cout + row) * h * wd..][..h * wd];
                    for r in 0..h {
                        // SAFETY: row `row` of dyp (nqr values) belongs to this task alone.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                src[r * wd..].as_ptr(),
                                dp.get().add(row * nqr + r * pw),
                                wd,
                            )
                        };
                    }
                },
            );
        }
        let dyp = &dyp;
        par_tasks(
            cin.div_ceil(chunk),
            || (vec![0f32; chunk * xlen], vec![0f32; acc_len]),
            |(xp, acc): &mut (Vec<f32>, Vec<f32>), task| {
                let (c0, c1) = (task * chunk, ((task + 1) * chunk).min(cin));
                acc.fill(0.0);
                for s in s0..s1 {
                    // a sample's dy stays in L2 while the chunk's channels run over it
                    for ci in c0..c1 {
                        let xc = &mut xp[(ci - c0) * xlen..][..xlen];
                        pad_channel(&x[(s * cin + ci) * h * wd..][..h * wd], h, wd, xc);
                        for b in 0..blocks {
                            let m = BW_M.min(cout - b * BW_M);
                            let d = &dyp[((s - s0) * cout + b * BW_M) * nqr..][..m * nqr];
                            let a = &mut acc[((ci - c0) * coutp + b * BW_M) * 9 * LANES..]
                                [..m * 9 * LANES];
                            // SAFETY: reads of d stay in its m rows, of xc below xlen (see
                            // above), the lane sums in `a`; the CPU has AVX-512 (checked by
                            // `applies`).
                            unsafe {
                                let (d, xc, a) = (d.as_ptr(), xc.as_ptr(), a.as_mut_ptr());
                                match m {
                                    1 => micro_bw::<1>(d, nqr, xc, &offs, a),
                                    2 => micro_bw::<2>(d, nqr, xc, &offs, a),
                                    _ => micro_bw::<3>(d, nqr, xc, &offs, a),
                                }
                            }
                        }
                    }
                }
                // this group's sums, lane by lane, added to dW (groups in order)
                for ci in c0..c1 {
                    for co in 0..cout {
                        for t in 0..9 {
                            let lanes = &acc[(((ci - c0) * coutp + co) * 9 + t) * LANES..][..LANES];
                            let sum = lanes.iter().fold(0.0, |s, &v| s + v);
                            // SAFETY: dW's input channels c0..c1 belong to this task alone.
                            unsafe { *dwp.get().add((co * cin + ci) * 9 + t) += sum };
                        }
                    }
                }
            },
        );
    }
}

/// acc[mm][t][lane] += Σ_j dy[mm·ld + j·16 + lane] · xp[offs[t] + j·16 + lane] over the ld/16
/// vectors j, for mm < M.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro_bw<const M: usize>(
    dy: *const f32,
    ld: usize,
    xp: *const f32,
    offs: &[usize; 9],
    acc: *mut f32,
) {
    use std::arch::x86_64::*;
    // SAFETY (whole body): the caller guarantees every address is inside its buffer.
    let mut a: [[__m512; 9]; M] = std::array::from_fn(|mm| {
        std::array::from_fn(|t| unsafe { _mm512_loadu_ps(acc.add((mm * 9 + t) * LANES)) })
    });
    let mut q = 0;
    while q < ld {
        let d: [__m512; M] =
            std::array::from_fn(|mm| unsafe { _mm512_loadu_ps(dy.add(mm * ld + q)) });
        for (t, &off) in offs.iter().enumerate() {
            let v = unsafe { _mm512_loadu_ps(xp.add(off + q)) };
            for mm in 0..M {
                a[mm][t] = _mm512_fmadd_ps(d[mm], v, a[mm][t]);
            }
        }
        q += LANES;
    }
    for (mm, row) in a.iter().enumerate() {
        for (t, &v) in row.iter().enumerate() {
            unsafe { _mm512_storeu_ps(acc.add((mm * 9 + t) * LANES), v) };
        }
    }
}
