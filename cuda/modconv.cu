// StyleGAN2's modulated convolution, fused: y[n, o] = d[n, o] * sum_i,k w[o, i, k] (s[n, i] x[n, i])
// with d[n, o] = 1 / sqrt(sum_i,k (w[o, i, k] s[n, i])^2 + eps). Instead of building a weight per
// sample, the style scales the input inside the implicit-GEMM loader and d scales the output in
// the store, so all samples share one weight tile. groups must be 1.
// Backward (t[n, o] = sum_p dy y / d, wsq[o, i] = sum_k w^2, gd = conv_bwd_data(dy * d, w)):
//   dx = s gd;  ds = sum_p x gd - s sum_o t d^3 wsq;  dw = conv_bwd_weight(x s, dy d) - w sum_n t d^3 s^2.
#include "gemm_tile.cuh"

// d[n, o]; one thread per (n, o).
template <typename T>
__device__ void demod(i64 N, i64 Cout, i64 Cin, i64 KK, double eps, const T* w, const T* s, T* d) {
    GRID_STRIDE(e, N * Cout) {
        const i64 n = e / Cout, o = e % Cout;
        double acc = 0.0;
        for (i64 i = 0; i < Cin; ++i) {
            double wsq = 0.0;
            for (i64 k = 0; k < KK; ++k) {
                double v = (double)w[(o * Cin + i) * KK + k];
                wsq += v * v;
            }
            double si = (double)s[n * Cin + i];
            acc += si * si * wsq;
        }
        d[e] = (T)(1.0 / sqrt(acc + eps));
    }
}

template <typename T> struct MW {  // W[m][k]
    const T* w; i64 K;
    __device__ T operator()(i64 m, i64 k) const { return w[m * K + k]; }
};
template <typename T> struct MX {  // im2col(x * s)[k = (ci, ky, kx)][p = (n, oy, ox)]
    const T* x; const T* s; ConvGeom g;
    __device__ T operator()(i64 k, i64 p) const {
        i64 kk = g.kh * g.kw, ci = k / kk, r = k - ci * kk, ky = r / g.kw, kx = r - ky * g.kw;
        i64 ohw = g.oh * g.ow, n = p / ohw, q = p - n * ohw, oy = q / g.ow, ox = q - oy * g.ow;
        i64 src = conv_src(g, oy, ox, ky, kx);
        return src < 0 ? (T)0 : x[(n * g.cin + ci) * g.h * g.w + src] * s[n * g.cin + ci];
    }
};
template <typename T> struct MStore {  // y = acc * d
    T* y; const T* d; ConvGeom g;
    __device__ void operator()(i64 o, i64 p, T v) const {
        i64 ohw = g.oh * g.ow, n = p / ohw, q = p - n * ohw;
        y[(n * g.cout + o) * ohw + q] = d ? v * d[n * g.cout + o] : v;
    }
};
template <typename T> struct MWt {  // W^T: [ci][k = (co, ky, kx)]
    const T* w; ConvGeom g;
    __device__ T operator()(i64 ci, i64 k) const {
        i64 kk = g.kh * g.kw, co = k / kk, r = k - co * kk;
        return w[(co * g.cin + ci) * kk + r];
    }
};
template <typename T> struct MDy {  // (dy * d) gathered: [k = (co, ky, kx)][p = (n, y, x)]
    const T* dy; const T* d; ConvGeom g;
    __device__ T operator()(i64 k, i64 p) const {
        i64 kk = g.kh * g.kw, co = k / kk, r = k - co * kk, ky = r / g.kw, kx = r - ky * g.kw;
        i64 hw = g.h * g.w, n = p / hw, q = p - n * hw, y = q / g.w, x = q - y * g.w;
        i64 at = conv_dst(g, y, x, ky, kx);
        if (at < 0) return (T)0;
        T v = dy[(n * g.cout + co) * g.oh * g.ow + at];
        return d ? v * d[n * g.cout + co] : v;
    }
};
template <typename T> struct MGdStore {
    T* gd; ConvGeom g;
    __device__ void operator()(i64 ci, i64 p, T v) const {
        i64 hw = g.h * g.w, n = p / hw, q = p - n * hw;
        gd[(n * g.cin + ci) * hw + q] = v;
    }
};
template <typename T> struct MDyRow {  // (dy * d): [o][p = (n, oy, ox)]
    const T* dy; const T* d; ConvGeom g;
    __device__ T operator()(i64 o, i64 p) const {
        i64 ohw = g.oh * g.ow, n = p / ohw, q = p - n * ohw;
        T v = dy[(n * g.cout + o) * ohw + q];
        return d ? v * d[n * g.cout + o] : v;
    }
};
template <typename T> struct MXt {  // im2col(x * s)^T: [p][k]
    MX<T> b;
    __device__ T operator()(i64 p, i64 k) const { return b(k, p); }
};
template <typename T> struct MAtomicStore {
    T* dw; i64 K;
    __device__ void operator()(i64 o, i64 k, T v) const { atomicAdd(&dw[o * K + k], v); }
};

// t[n, o] = sum_p dy * y / d: one block per (n, o).
template <typename T> __device__ void mc_t(i64 N, i64 Cout, i64 P, const T* dy, const T* y, const T* d, T* t) {
    __shared__ double scratch[32];
    for (i64 no = blockIdx.x; no < N * Cout; no += gridDim.x) {
        double acc = 0.0;
        for (i64 p = threadIdx.x; p < P; p += blockDim.x) acc += (double)dy[no * P + p] * (double)y[no * P + p];
        acc = block_allsum(acc, scratch);
        if (threadIdx.x == 0) t[no] = (T)(acc / (double)d[no]);
    }
}

// wsq[o, i] = sum_k w[o, i, k]^2
template <typename T> __device__ void mc_wsq(i64 Cout, i64 Cin, i64 KK, const T* w, T* wsq) {
    GRID_STRIDE(e, Cout * Cin) {
        double acc = 0.0;
        for (i64 k = 0; k < KK; ++k) {
            double v = (double)w[e * KK + k];
            acc += v * v;
        }
        wsq[e] = (T)acc;
    }
}

// dx = s gd and ds = sum_p x gd - [demod] s sum_o t d^3 wsq: one block per (n, i).
template <typename T>
__device__ void mc_dx_ds(i64 N, i64 Cin, i64 P, i64 Cout, int demodulate, const T* x, const T* s, const T* gd,
                         const T* t, const T* d, const T* wsq, T* dx, T* ds) {
    __shared__ double scratch[32];
    for (i64 ni = blockIdx.x; ni < N * Cin; ni += gridDim.x) {
        const i64 n = ni / Cin, i = ni % Cin;
        const T si = s[ni];
        double acc = 0.0;
        for (i64 p = threadIdx.x; p < P; p += blockDim.x) {
            const T g = gd[ni * P + p];
            acc += (double)x[ni * P + p] * (double)g;
            dx[ni * P + p] = g * si;
        }
        double corr = 0.0;
        if (demodulate) {
            for (i64 o = threadIdx.x; o < Cout; o += blockDim.x) {
                double dd = (double)d[n * Cout + o];
                corr += (double)t[n * Cout + o] * dd * dd * dd * (double)wsq[o * Cin + i];
            }
        }
        acc = block_allsum(acc, scratch);
        corr = block_allsum(corr, scratch);
        if (threadIdx.x == 0) ds[ni] = (T)(acc - (double)si * corr);
    }
}

// dw[o, i, k] -= w[o, i, k] sum_n t[n, o] d[n, o]^3 s[n, i]^2: one thread per (o, i).
template <typename T>
__device__ void mc_dw_demod(i64 N, i64 Cout, i64 Cin, i64 KK, const T* w, const T* s, const T* t, const T* d, T* dw) {
    GRID_STRIDE(e, Cout * Cin) {
        const i64 o = e / Cin, i = e % Cin;
        double c = 0.0;
        for (i64 n = 0; n < N; ++n) {
            double dd = (double)d[n * Cout + o], si = (double)s[n * Cin + i];
            c += (double)t[n * Cout + o] * dd * dd * dd * si * si;
        }
        for (i64 k = 0; k < KK; ++k) dw[e * KK + k] -= (T)((double)w[e * KK + k] * c);
    }
}

#define INSTANTIATE(T, S)                                                                            \
    extern "C" __global__ void modconv_demod_##S(i64 N, i64 Cout, i64 Cin, i64 KK, double eps,       \
                                                 const T* w, const T* s, T* d) {                     \
        demod<T>(N, Cout, Cin, KK, eps, w, s, d);                                                    \
    }                                                                                                \
    extern "C" __global__ void __launch_bounds__(TILE_THREADS)                                       \
        modconv_fwd_##S(ConvGeom g, const T* x, const T* w, const T* s, const T* d, T* y) {          \
        i64 K = g.cin * g.kh * g.kw;                                                                 \
        gemm_tile<T>(g.cout, g.n * g.oh * g.ow, 0, K, (i64)blockIdx.y * TILE_M,                      \
                     (i64)blockIdx.x * TILE_N, MW<T>{w, K}, MX<T>{x, s, g}, MStore<T>{y, d, g});     \
    }                                                                                                \
    extern "C" __global__ void __launch_bounds__(TILE_THREADS)                                       \
        modconv_bwd_data_##S(ConvGeom g, const T* dy, const T* w, const T* d, T* gd) {               \
        gemm_tile<T>(g.cin, g.n * g.h * g.w, 0, g.cout * g.kh * g.kw, (i64)blockIdx.y * TILE_M,      \
                     (i64)blockIdx.x * TILE_N, MWt<T>{w, g}, MDy<T>{dy, d, g}, MGdStore<T>{gd, g});  \
    }                                                                                                \
    extern "C" __global__ void __launch_bounds__(TILE_THREADS) modconv_bwd_weight_##S(               \
        ConvGeom g, i64 chunk, const T* x, const T* s, const T* dy, const T* d, T* dw) {             \
        i64 P = g.n * g.oh * g.ow, kb = (i64)blockIdx.z * chunk;                                     \
        i64 ke = kb + chunk < P ? kb + chunk : P;                                                    \
        if (kb >= ke) return;                                                                        \
        i64 K = g.cin * g.kh * g.kw;                                                                 \
        gemm_tile<T>(g.cout, K, kb, ke, (i64)blockIdx.y * TILE_M, (i64)blockIdx.x * TILE_N,          \
                     MDyRow<T>{dy, d, g}, MXt<T>{MX<T>{x, s, g}}, MAtomicStore<T>{dw, K});           \
    }                                                                                                \
    extern "C" __global__ void modconv_t_##S(i64 N, i64 Cout, i64 P, const T* dy, const T* y,        \
                                             const T* d, T* t) {                                     \
        mc_t<T>(N, Cout, P, dy, y, d, t);                                                            \
    }                                                                                                \
    extern "C" __global__ void modconv_wsq_##S(i64 Cout, i64 Cin, i64 KK, const T* w, T* wsq) {      \
        mc_wsq<T>(Cout, Cin, KK, w, wsq);                                                            \
    }                                                                                                \
    extern "C" __global__ void modconv_dx_ds_##S(i64 N, i64 Cin, i64 P, i64 Cout, int demodulate,    \
                                                 const T* x, const T* s, const T* gd, const T* t,    \
                                                 const T* d, const T* wsq, T* dx, T* ds) {           \
        mc_dx_ds<T>(N, Cin, P, Cout, demodulate, x, s, gd, t, d, wsq, dx, ds);                       \
    }                                                                                                \
    extern "C" __global__ void modconv_dw_demod_##S(i64 N, i64 Cout, i64 Cin, i64 KK, const T* w,    \
                                                    const T* s, const T* t, const T* d, T* dw) {     \
        mc_dw_demod<T>(N, Cout, Cin, KK, w, s, t, d, dw);                                            \
    }

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
