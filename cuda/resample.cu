// Resampling of src/ops/resize.rs and src/ops/upfirdn.rs, one thread per output element,
// mirroring the CPU kernels' tap order.
//  - axis_map: a sparse matrix in compressed rows applied along one axis of [outer, n, inner]:
//    out[o, i, e] = sum_{t in start[i]..start[i+1]} w[t] * x[o, idx[t], e] (the adjoint runs the
//    same kernel on the transposed matrix, built on the host).
//  - fir_pass: one separable upfirdn pass along an axis of `lines` lines of n_in entries of
//    `inner` values; fir_2d: the non-separable 2-D filter over planes.
#include "common.cuh"

template <typename T>
__device__ void axis_map(i64 outer, i64 n_src, i64 n_dst, i64 inner, const i64* start, const i64* idx,
                         const T* w, const T* x, T* out) {
    GRID_STRIDE(o, outer * n_dst * inner) {
        const i64 e = o % inner, i = (o / inner) % n_dst, b = o / (inner * n_dst);
        const T* xs = x + b * n_src * inner + e;
        T acc = (T)0;
        for (i64 t = start[i]; t < start[i + 1]; ++t) acc += w[t] * xs[idx[t] * inner];
        out[o] = acc;
    }
}

// Output i of an axis reads input ix0 + m with tap t0 + m*up for m in 0..count (tap_runs on the
// CPU): buffer position of tap t is i*down + t - p0, real samples sit at multiples of up.
struct TapRun {
    i64 t0, ix0, count;
};
__device__ __forceinline__ TapRun tap_run(i64 i, i64 n_in, i64 k, i64 up, i64 down, i64 p0) {
    const i64 base = i * down - p0;
    const i64 bpos = base > 0 ? base : 0;
    const i64 q0 = (bpos + up - 1) / up * up;
    TapRun r;
    r.t0 = q0 - base;
    r.ix0 = q0 / up;
    if (r.t0 >= k || r.ix0 >= n_in) {
        r.count = 0;
    } else {
        const i64 c = (k - r.t0 + up - 1) / up, left = n_in - r.ix0;
        r.count = c < left ? c : left;
    }
    return r;
}

template <typename T>
__device__ void fir_pass(i64 lines, i64 n_in, i64 n_out, i64 inner, const T* taps, i64 k, i64 up,
                         i64 down, i64 p0, const T* src, T* dst) {
    GRID_STRIDE(o, lines * n_out * inner) {
        const i64 e = o % inner, i = (o / inner) % n_out, l = o / (inner * n_out);
        const TapRun r = tap_run(i, n_in, k, up, down, p0);
        const T* s = src + l * n_in * inner + e;
        T acc = (T)0;
        for (i64 m = 0; m < r.count; ++m) acc += taps[r.t0 + m * up] * s[(r.ix0 + m) * inner];
        dst[o] = acc;
    }
}

template <typename T>
__device__ void fir_2d(i64 planes, i64 h, i64 w, i64 oh, i64 ow, const T* taps, i64 fh, i64 fw,
                       i64 upx, i64 upy, i64 downx, i64 downy, i64 px0, i64 py0, const T* x, T* out) {
    GRID_STRIDE(o, planes * oh * ow) {
        const i64 ox = o % ow, oy = (o / ow) % oh, p = o / (ow * oh);
        const TapRun ry = tap_run(oy, h, fh, upy, downy, py0);
        const TapRun rx = tap_run(ox, w, fw, upx, downx, px0);
        const T* xp = x + p * h * w;
        T acc = (T)0;
        for (i64 my = 0; my < ry.count; ++my) {
            const T* xrow = xp + (ry.ix0 + my) * w;
            const T* trow = taps + (ry.t0 + my * upy) * fw;
            for (i64 mx = 0; mx < rx.count; ++mx) acc += trow[rx.t0 + mx * upx] * xrow[rx.ix0 + mx];
        }
        out[o] = acc;
    }
}

#define INSTANTIATE(T, S)                                                                           \
    extern "C" __global__ void axis_map_##S(i64 outer, i64 n_src, i64 n_dst, i64 inner,             \
                                            const i64* start, const i64* idx, const T* w,           \
                                            const T* x, T* out) {                                   \
        axis_map<T>(outer, n_src, n_dst, inner, start, idx, w, x, out);                             \
    }                                                                                               \
    extern "C" __global__ void fir_pass_##S(i64 lines, i64 n_in, i64 n_out, i64 inner,              \
                                            const T* taps, i64 k, i64 up, i64 down, i64 p0,         \
                                            const T* src, T* dst) {                                 \
        fir_pass<T>(lines, n_in, n_out, inner, taps, k, up, down, p0, src, dst);                    \
    }                                                                                               \
    extern "C" __global__ void fir_2d_##S(i64 planes, i64 h, i64 w, i64 oh, i64 ow, const T* taps,  \
                                          i64 fh, i64 fw, i64 upx, i64 upy, i64 downx, i64 downy,   \
                                          i64 px0, i64 py0, const T* x, T* out) {                   \
        fir_2d<T>(planes, h, w, oh, ow, taps, fh, fw, upx, upy, downx, downy, px0, py0, x, out);    \
    }

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
