//! Direct 3×3 convolution (stride 1, padding 1, no dilation, one group) in f32 with AVX-512:
//! the convs of U-Nets, and — through the flipped weight — their stride-1 backward-data.
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
                for r in 0..h {
                    let src = &x[((s * cin + ci) * h + r) * wd..][..wd];
                    xp[ci * plane + (r + 1) * pw + 1..][..wd].copy_from_slice(src);
                }
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
