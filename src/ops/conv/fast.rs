//! Fast CPU convolution: im2col + GEMM on cache-sized tiles, over our worker threads.
//!
//! The output pixels of all samples form the GEMM's column space. It is cut into tiles whose
//! unfolded columns [Cin/groups·kh·kw, tile] stay in L2: a piece of one sample when a sample has
//! many pixels, a block of whole samples when it has few (deep 4×4 or 8×8 layers), so the GEMM
//! always sees a few hundred columns. Tasks are (group, tile) pairs handed to workers one at a
//! time; each GEMM inside runs serially (one level of threads).
//!
//! - forward: y\[tile\] = W_g · cols(tile); 1×1 stride-1 unpadded convs use x itself as cols.
//! - backward-data: with stride 1 it is a forward conv of dy with the flipped, transposed weight
//!   (padding d·(k−1)−p), so it shares the forward path; otherwise (stride > 1, padding past the
//!   kernel's reach, thin inputs) cols = W_gᵀ·dy per tile and col2im adds them into dx, one
//!   (sample, group) per task so no two tasks touch the same dx.
//! - backward-weight: dW_g += dy(tile) · cols(tile)ᵀ, split by blocks of input channels (and,
//!   for thin layers, fixed runs of tiles whose partial dW are summed in order), so the sum's
//!   order does not depend on which worker took which task.

use super::reference::ConvGeom;
use crate::backend::cpu::fast::{SyncConst, SyncPtr, gemm_raw, par_tasks};
use crate::backend::cpu::{par_chunks_mut, worker_threads};
use crate::tensor::StorageElem;

/// Unfolded columns per tile should fit in this many bytes, so they are still in L2 when the
/// GEMM packs them (measured on the 2 MiB-L2 machine: 256 KiB beat 128 KiB, 512 KiB, 1 MiB and
/// 4 MiB by 5–20 %; with MIN_COLS the floor, wide layers get somewhat larger tiles).
const COLS_BYTES: usize = 256 << 10;
/// Fewer columns than this and the GEMM spends its time packing the weight.
const MIN_COLS: usize = 256;

/// A tile: samples s0..s1, each contributing its pixels p0..p1 (several samples only with the
/// full pixel range).
#[derive(Clone, Copy, Debug)]
struct Tile {
    s0: usize,
    s1: usize,
    p0: usize,
    p1: usize,
}

impl Tile {
    fn len(&self) -> usize {
        self.p1 - self.p0
    }
    fn cols(&self) -> usize {
        (self.s1 - self.s0) * self.len()
    }
    fn single(&self) -> bool {
        self.s1 == self.s0 + 1
    }
}

/// How the n·p output columns are cut into tiles.
#[derive(Clone, Copy, Debug)]
struct Tiles {
    n: usize,
    p: usize,
    /// pieces per sample (1 when tiles hold whole samples)
    pieces: usize,
    /// samples per tile (1 when samples are cut into pieces)
    per_tile: usize,
}

impl Tiles {
    fn new(n: usize, p: usize, k: usize, elem: usize) -> Tiles {
        let threads = worker_threads();
        let total = n * p;
        let target = (COLS_BYTES / (k * elem).max(1))
            .max(MIN_COLS)
            // at least two tiles per thread where there is enough work, to even out the load
            .min(total.div_ceil(2 * threads).max(MIN_COLS / 2))
            .max(1);
        if p >= target {
            Tiles {
                n,
                p,
                pieces: p.div_ceil(target),
                per_tile: 1,
            }
        } else {
            Tiles {
                n,
                p,
                pieces: 1,
                per_tile: (target / p.max(1)).max(1),
            }
        }
    }
    fn count(&self) -> usize {
        self.n.div_ceil(self.per_tile) * self.pieces
    }
    fn tile(&self, t: usize) -> Tile {
        let (block, piece) = (t / self.pieces, t % self.pieces);
        let s0 = block * self.per_tile;
        Tile {
            s0,
            s1: (s0 + self.per_tile).min(self.n),
            p0: piece * self.p / self.pieces,
            p1: (piece + 1) * self.p / self.pieces,
        }
    }
}

/// `v` as f32 values when T is f32 (the direct kernels' element type).
fn as_f32<T: StorageElem>(v: &[T]) -> Option<&[f32]> {
    // SAFETY: T is f32 (checked), so the slice is viewed as itself.
    (T::DTYPE == crate::DType::F32)
        .then(|| unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<f32>(), v.len()) })
}

/// [`as_f32`] for a mutable slice.
fn as_f32_mut<T: StorageElem>(v: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: as in `as_f32`.
    (T::DTYPE == crate::DType::F32)
        .then(|| unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<f32>(), v.len()) })
}

/// 1×1, stride 1, no padding: the columns are the input itself.
fn pointwise(g: &ConvGeom) -> bool {
    g.kh == 1 && g.kw == 1 && g.stride == (1, 1) && g.pad == (0, 0)
}

/// Unfold output pixels p0..p1 of `channels` input channels `xg` [channels, h, w] of one
/// sample into `cols[r * ld + off ..]` for each row r = (c, ky, kx); zeros where the window
/// leaves the image.
#[allow(clippy::too_many_arguments)]
fn im2col<T: StorageElem>(
    xg: &[T],
    channels: usize,
    g: &ConvGeom,
    p0: usize,
    p1: usize,
    cols: &mut [T],
    ld: usize,
    off: usize,
) {
    let zero = T::zero();
    for c in 0..channels {
        let xc = &xg[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let r = (c * g.kh + ky) * g.kw + kx;
                let dst = &mut cols[r * ld + off..r * ld + off + (p1 - p0)];
                let shift = (kx * g.dil.1) as isize - g.pad.1 as isize;
                let mut p = p0;
                while p < p1 {
                    let (oy, ox0) = (p / g.ow, p % g.ow);
                    let ox1 = g.ow.min(ox0 + (p1 - p));
                    let d = &mut dst[p - p0..p - p0 + (ox1 - ox0)];
                    p += ox1 - ox0;
                    let iy = (oy * g.stride.0 + ky * g.dil.0) as isize - g.pad.0 as isize;
                    if iy < 0 || iy as usize >= g.h {
                        d.fill(zero);
                        continue;
                    }
                    let src = &xc[iy as usize * g.w..(iy as usize + 1) * g.w];
                    if g.stride.1 == 1 {
                        // ix = ox + shift is inside for ox in [-shift, w - shift)
                        let lo = (-shift).clamp(ox0 as isize, ox1 as isize) as usize;
                        let hi = (g.w as isize - shift).clamp(lo as isize, ox1 as isize) as usize;
                        d[..lo - ox0].fill(zero);
                        if hi > lo {
                            // (an empty range may sit left of the image: no index then)
                            d[lo - ox0..hi - ox0].copy_from_slice(
                                &src[(lo as isize + shift) as usize
                                    ..(hi as isize + shift) as usize],
                            );
                        }
                        d[hi - ox0..].fill(zero);
                    } else {
                        for (i, v) in d.iter_mut().enumerate() {
                            let ix = ((ox0 + i) * g.stride.1) as isize + shift;
                            *v = if ix < 0 || ix as usize >= g.w {
                                zero
                            } else {
                                src[ix as usize]
                            };
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of `im2col`: add columns for output pixels p0..p1 back into `xg` [cig, h, w].
fn col2im<T: StorageElem>(cols: &[T], g: &ConvGeom, p0: usize, p1: usize, ld: usize, xg: &mut [T]) {
    let cig = g.cin / g.groups;
    for c in 0..cig {
        let xc = &mut xg[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let r = (c * g.kh + ky) * g.kw + kx;
                let row = &cols[r * ld..r * ld + (p1 - p0)];
                let shift = (kx * g.dil.1) as isize - g.pad.1 as isize;
                let mut p = p0;
                while p < p1 {
                    let (oy, ox0) = (p / g.ow, p % g.ow);
                    let ox1 = g.ow.min(ox0 + (p1 - p));
                    let s = &row[p - p0..p - p0 + (ox1 - ox0)];
                    p += ox1 - ox0;
                    let iy = (oy * g.stride.0 + ky * g.dil.0) as isize - g.pad.0 as isize;
                    if iy < 0 || iy as usize >= g.h {
                        continue;
                    }
                    let dst = &mut xc[iy as usize * g.w..(iy as usize + 1) * g.w];
                    for (i, &v) in s.iter().enumerate() {
                        let ix = ((ox0 + i) * g.stride.1) as isize + shift;
                        if ix >= 0 && (ix as usize) < g.w {
                            dst[ix as usize] += v;
                        }
                    }
                }
            }
        }
    }
}

/// Fill `cols` [k, tile.cols()] with the unfolded input channels `c0..c1` of group `gi` over
/// `tile` (k = (c1 − c0)·kh·kw).
fn fill_cols<T: StorageElem>(
    x: &[T],
    g: &ConvGeom,
    gi: usize,
    (c0, c1): (usize, usize),
    tile: Tile,
    cols: &mut Vec<T>,
) {
    let cig = g.cin / g.groups;
    let (k, hw, ncols, len) = ((c1 - c0) * g.kh * g.kw, g.h * g.w, tile.cols(), tile.len());
    cols.resize(k * ncols, T::zero());
    for s in tile.s0..tile.s1 {
        let xg = &x[(s * g.cin + gi * cig + c0) * hw..][..(c1 - c0) * hw];
        let off = (s - tile.s0) * len;
        if pointwise(g) {
            for r in 0..k {
                cols[r * ncols + off..][..len].copy_from_slice(&xg[r * hw + tile.p0..][..len]);
            }
        } else {
            im2col(xg, c1 - c0, g, tile.p0, tile.p1, cols, ncols, off);
        }
    }
}

/// Columns of input channels `c0..c1` of group `gi` over `tile` as a GEMM operand (pointer,
/// strides of the [k, cols] matrix): x itself for a pointwise conv on one sample, else
/// unfolded into `cols`.
fn columns<T: StorageElem>(
    x: &[T],
    g: &ConvGeom,
    gi: usize,
    (c0, c1): (usize, usize),
    tile: Tile,
    cols: &mut Vec<T>,
) -> (*const T, (isize, isize)) {
    if pointwise(g) && tile.single() {
        let cig = g.cin / g.groups;
        let hw = g.h * g.w;
        (
            x[(tile.s0 * g.cin + gi * cig + c0) * hw + tile.p0..].as_ptr(),
            (hw as isize, 1),
        )
    } else {
        fill_cols(x, g, gi, (c0, c1), tile, cols);
        (cols.as_ptr(), (tile.cols() as isize, 1))
    }
}

/// conv2d forward.
pub fn conv2d<T: StorageElem>(x: &[T], w: &[T], g: &ConvGeom) -> Vec<T> {
    let mut y = vec![T::zero(); g.n * g.cout * g.oh * g.ow];
    forward_into(x, w, g, &mut y);
    y
}

fn forward_into<T: StorageElem>(x: &[T], w: &[T], g: &ConvGeom, y: &mut [T]) {
    if super::direct::applies(g)
        && let (Some(x32), Some(w32), Some(y32)) = (as_f32(x), as_f32(w), as_f32_mut(y))
        && super::direct::conv3x3(x32, w32, g, y32)
    {
        return;
    }
    let (cig, cog) = (g.cin / g.groups, g.cout / g.groups);
    let (k, p) = (cig * g.kh * g.kw, g.oh * g.ow);
    let tiles = Tiles::new(g.n, p, k, size_of::<T>());
    let yp = SyncPtr(y.as_mut_ptr());
    par_tasks(
        g.groups * tiles.count(),
        || (Vec::new(), Vec::new()),
        |(cols, out): &mut (Vec<T>, Vec<T>), task| {
            let (gi, tile) = (task % g.groups, tiles.tile(task / g.groups));
            let ncols = tile.cols();
            let (b, sb) = columns(x, g, gi, (0, cig), tile, cols);
            let wg = w[gi * cog * k..].as_ptr();
            let yrow = |s: usize| (s * g.cout + gi * cog) * p;
            if tile.single() {
                // SAFETY: rows gi·cog.. of sample s0, pixels p0..p1 of y belong to this task
                // alone; operands are in bounds by construction.
                unsafe {
                    gemm_raw(
                        cog,
                        k,
                        ncols,
                        wg,
                        (k as isize, 1),
                        b,
                        sb,
                        yp.get().add(yrow(tile.s0) + tile.p0),
                        (p as isize, 1),
                        false,
                    )
                };
            } else {
                out.resize(cog * ncols, T::zero());
                // SAFETY: `out` is this worker's own [cog, ncols] buffer.
                unsafe {
                    gemm_raw(
                        cog,
                        k,
                        ncols,
                        wg,
                        (k as isize, 1),
                        b,
                        sb,
                        out.as_mut_ptr(),
                        (ncols as isize, 1),
                        false,
                    )
                };
                for s in tile.s0..tile.s1 {
                    for co in 0..cog {
                        let src = &out[co * ncols + (s - tile.s0) * p..][..p];
                        // SAFETY: whole rows of samples s0..s1 in group gi belong to this task.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                src.as_ptr(),
                                yp.get().add(yrow(s) + co * p),
                                p,
                            )
                        };
                    }
                }
            }
        },
    );
}

/// The weight of the stride-1 backward-data conv: [cin, cout/groups, kh, kw] with each group's
/// in/out channels swapped and the taps reversed.
fn flip_transpose<T: StorageElem>(w: &[T], g: &ConvGeom) -> Vec<T> {
    let (cig, cog, kk) = (g.cin / g.groups, g.cout / g.groups, g.kh * g.kw);
    let mut out = vec![T::zero(); w.len()];
    for gi in 0..g.groups {
        for co in 0..cog {
            for ci in 0..cig {
                let src = &w[((gi * cog + co) * cig + ci) * kk..][..kk];
                let dst = &mut out[((gi * cig + ci) * cog + co) * kk..][..kk];
                for (d, &s) in dst.iter_mut().zip(src.iter().rev()) {
                    *d = s;
                }
            }
        }
    }
    out
}

/// conv2d backward-data (the transposed convolution of dy).
pub fn conv2d_backward_data<T: StorageElem>(dy: &[T], w: &[T], g: &ConvGeom) -> Vec<T> {
    let mut dx = vec![T::zero(); g.n * g.cin * g.h * g.w];
    let reach = (g.dil.0 * (g.kh - 1), g.dil.1 * (g.kw - 1));
    let (cig, cog) = (g.cin / g.groups, g.cout / g.groups);
    // The flipped conv's GEMM has cig rows: a thin input (an image's 5 channels) would leave
    // most of the 16-row micro-kernel idle, so it takes col2im's cig·kh·kw rows instead.
    let thin = cig < 16 && cig < cog;
    if g.stride == (1, 1) && g.pad.0 <= reach.0 && g.pad.1 <= reach.1 && !thin {
        let flipped = ConvGeom {
            cin: g.cout,
            h: g.oh,
            w: g.ow,
            cout: g.cin,
            oh: g.h,
            ow: g.w,
            pad: (reach.0 - g.pad.0, reach.1 - g.pad.1),
            ..*g
        };
        forward_into(dy, &flip_transpose(w, g), &flipped, &mut dx);
        return dx;
    }
    let (k, p, hw) = (cig * g.kh * g.kw, g.oh * g.ow, g.h * g.w);
    let piece = (COLS_BYTES / (k * size_of::<T>()).max(1))
        .max(MIN_COLS)
        .min(p)
        .max(1);
    let dxp = SyncPtr(dx.as_mut_ptr());
    par_tasks(g.n * g.groups, Vec::new, |cols: &mut Vec<T>, task| {
        let (s, gi) = (task / g.groups, task % g.groups);
        // SAFETY: each task owns the contiguous dx block of its (sample, group).
        let dxg = unsafe {
            std::slice::from_raw_parts_mut(dxp.get().add((s * g.cin + gi * cig) * hw), cig * hw)
        };
        let dyg = &dy[(s * g.cout + gi * cog) * p..][..cog * p];
        let wg = w[gi * cog * k..].as_ptr();
        for p0 in (0..p).step_by(piece) {
            let p1 = (p0 + piece).min(p);
            cols.resize(k * (p1 - p0), T::zero());
            // cols = W_gᵀ · dy[:, p0..p1], with W_g [cog, k] read transposed
            // SAFETY: all operands in bounds; `cols` is this worker's own.
            unsafe {
                gemm_raw(
                    k,
                    cog,
                    p1 - p0,
                    wg,
                    (1, k as isize),
                    dyg[p0..].as_ptr(),
                    (p as isize, 1),
                    cols.as_mut_ptr(),
                    ((p1 - p0) as isize, 1),
                    false,
                )
            };
            col2im(cols, g, p0, p1, p1 - p0, dxg);
        }
    });
    dx
}

/// Columns of dW one backward-weight GEMM writes, at least: fewer and the GEMM spends its
/// time packing dy.
const BW_MIN_COLS: usize = 64;

/// conv2d backward-weight: dW_g = Σ over tiles of dy(tile) · cols(tile)ᵀ.
///
/// The sum over tiles is split so that its order never depends on thread timing: a task owns
/// a block of dW's columns (a run of input channels; those rows of cols are all it unfolds)
/// and adds the tiles of one lane — a fixed run of consecutive tiles — in order into that
/// lane's copy of dW. Lanes are only added where channel blocks alone leave threads idle
/// (thin layers, whose dW is small), and their copies are summed in lane order at the end.
/// The result depends on the thread count (through the tiles and lanes) but not on which
/// thread ran what or when.
pub fn conv2d_backward_weight<T: StorageElem>(x: &[T], dy: &[T], g: &ConvGeom) -> Vec<T> {
    let (cig, cog, taps) = (g.cin / g.groups, g.cout / g.groups, g.kh * g.kw);
    let (k, p) = (cig * taps, g.oh * g.ow);
    let wlen = g.cout * k;
    if T::DTYPE == crate::DType::F32 && super::direct::applies(g) {
        let mut dw = vec![T::zero(); wlen];
        if let (Some(x32), Some(dy32), Some(dw32)) = (as_f32(x), as_f32(dy), as_f32_mut(&mut dw))
            && super::direct::conv3x3_backward_weight(x32, dy32, g, dw32)
        {
            return dw;
        }
    }
    if wlen == 0 || g.n * p == 0 {
        return vec![T::zero(); wlen];
    }
    // channel blocks of at least BW_MIN_COLS columns, evened out
    let blocks = cig.div_ceil(BW_MIN_COLS.div_ceil(taps).min(cig));
    let cblock = cig.div_ceil(blocks);
    let blocks = cig.div_ceil(cblock);
    let tiles = Tiles::new(g.n, p, cblock * taps, size_of::<T>());
    let count = tiles.count();
    let threads = worker_threads();
    // about two tasks per thread, as many lanes as that takes (one on a single thread)
    let lanes = if threads == 1 {
        1
    } else {
        (2 * threads).div_ceil(g.groups * blocks).clamp(1, count)
    };
    let per_lane = count.div_ceil(lanes);
    let lanes = count.div_ceil(per_lane);
    let mut dw = vec![T::zero(); lanes * wlen];
    let dwp = SyncPtr(dw.as_mut_ptr());
    let dyp = SyncConst(dy.as_ptr());
    par_tasks(
        g.groups * blocks * lanes,
        || (Vec::new(), Vec::new()),
        |(cols, dyt): &mut (Vec<T>, Vec<T>), task| {
            let (lane, cb, gi) = (task % lanes, task / lanes % blocks, task / lanes / blocks);
            let (c0, c1) = (cb * cblock, ((cb + 1) * cblock).min(cig));
            let dyrow = |s: usize| (s * g.cout + gi * cog) * p;
            for t in lane * per_lane..((lane + 1) * per_lane).min(count) {
                let tile = tiles.tile(t);
                let (ncols, len) = (tile.cols(), tile.len());
                // A = dy over the tile [cog, ncols]
                let (a, sa) = if tile.single() {
                    (
                        // SAFETY: in bounds: rows of sample s0 from pixel p0
                        unsafe { dyp.get().add(dyrow(tile.s0) + tile.p0) },
                        (p as isize, 1),
                    )
                } else {
                    dyt.resize(cog * ncols, T::zero());
                    for s in tile.s0..tile.s1 {
                        for co in 0..cog {
                            dyt[co * ncols + (s - tile.s0) * len..][..len]
                                .copy_from_slice(&dy[dyrow(s) + co * p..][..len]);
                        }
                    }
                    (dyt.as_ptr(), (ncols as isize, 1))
                };
                // B = colsᵀ [ncols, kb] for channels c0..c1
                let (b, (r, c)) = columns(x, g, gi, (c0, c1), tile, cols);
                // SAFETY: rows gi·cog.., columns c0·taps..c1·taps of lane `lane`'s copy of dW
                // belong to this task alone; operands in bounds.
                unsafe {
                    gemm_raw(
                        cog,
                        ncols,
                        (c1 - c0) * taps,
                        a,
                        sa,
                        b,
                        (c, r),
                        dwp.get().add(lane * wlen + gi * cog * k + c0 * taps),
                        (k as isize, 1),
                        true,
                    )
                };
            }
        },
    );
    if lanes > 1 {
        let (total, rest) = dw.split_at_mut(wlen);
        let rest = &*rest;
        par_chunks_mut(total, 1 << 14, |start, chunk| {
            for l in 0..lanes - 1 {
                let part = &rest[l * wlen + start..][..chunk.len()];
                for (d, &v) in chunk.iter_mut().zip(part) {
                    *d += v;
                }
            }
        });
        dw.truncate(wlen);
    }
    dw
}
