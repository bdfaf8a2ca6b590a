// 2-D convolution (any kernel size, stride, padding, dilation, groups) as three implicit GEMMs
// on the shared tile in gemm_tile.cuh:
//   forward          Y[g]  (cog x N*oh*ow)  = W[g] (cog x cig*kh*kw) . im2col(X)
//   backward-data    dX[g] (cig x N*h*w)    = W[g]^T . col2im-gather(dY)
//   backward-weight  dW[g] (cog x cig*kh*kw) = dY[g] . im2col(X)^T, split over N*oh*ow, atomics
// Grid: x = column tiles, y = row tiles, z = group * splits + split.
#include "gemm_tile.cuh"

template <typename T> struct FwdA {  // W[g*cog + m][k]
    const T* w; i64 row0, K;
    __device__ T operator()(i64 m, i64 k) const { return w[(row0 + m) * K + k]; }
};
template <typename T> struct FwdB {  // im2col(X)[k = (ci, ky, kx)][p = (n, oy, ox)]
    const T* x; ConvGeom g; i64 c0;
    __device__ T operator()(i64 k, i64 p) const {
        i64 kk = g.kh * g.kw, ci = k / kk, r = k - ci * kk, ky = r / g.kw, kx = r - ky * g.kw;
        i64 ohw = g.oh * g.ow, n = p / ohw, q = p - n * ohw, oy = q / g.ow, ox = q - oy * g.ow;
        i64 s = conv_src(g, oy, ox, ky, kx);
        return s < 0 ? (T)0 : x[((n * g.cin + c0 + ci) * g.h * g.w) + s];
    }
};
template <typename T> struct FwdStore {
    T* y; ConvGeom g; i64 c0;
    __device__ void operator()(i64 m, i64 p, T v) const {
        i64 ohw = g.oh * g.ow, n = p / ohw, q = p - n * ohw;
        y[(n * g.cout + c0 + m) * ohw + q] = v;
    }
};

template <typename T> struct DataA {  // W^T: [ci][k = (co, ky, kx)]
    const T* w; ConvGeom g; i64 co0, cig;
    __device__ T operator()(i64 ci, i64 k) const {
        i64 kk = g.kh * g.kw, co = k / kk, r = k - co * kk;
        return w[((co0 + co) * cig + ci) * kk + r];
    }
};
template <typename T> struct DataB {  // dY gathered: [k = (co, ky, kx)][p = (n, y, x)]
    const T* dy; ConvGeom g; i64 co0;
    __device__ T operator()(i64 k, i64 p) const {
        i64 kk = g.kh * g.kw, co = k / kk, r = k - co * kk, ky = r / g.kw, kx = r - ky * g.kw;
        i64 hw = g.h * g.w, n = p / hw, q = p - n * hw, y = q / g.w, x = q - y * g.w;
        i64 d = conv_dst(g, y, x, ky, kx);
        return d < 0 ? (T)0 : dy[(n * g.cout + co0 + co) * g.oh * g.ow + d];
    }
};
template <typename T> struct DataStore {
    T* dx; ConvGeom g; i64 ci0;
    __device__ void operator()(i64 m, i64 p, T v) const {
        i64 hw = g.h * g.w, n = p / hw, q = p - n * hw;
        dx[(n * g.cin + ci0 + m) * hw + q] = v;
    }
};

template <typename T> struct WgtA {  // dY[g]: [co][p = (n, oy, ox)]
    const T* dy; ConvGeom g; i64 co0;
    __device__ T operator()(i64 co, i64 p) const {
        i64 ohw = g.oh * g.ow, n = p / ohw, q = p - n * ohw;
        return dy[(n * g.cout + co0 + co) * ohw + q];
    }
};
template <typename T> struct WgtB {  // im2col(X)^T: [p][k = (ci, ky, kx)]
    FwdB<T> b;
    __device__ T operator()(i64 p, i64 k) const { return b(k, p); }
};
template <typename T> struct WgtStore {  // dW zeroed by the caller; splits add partial sums
    T* dw; i64 row0, K;
    __device__ void operator()(i64 m, i64 k, T v) const { atomicAdd(&dw[(row0 + m) * K + k], v); }
};

template <typename T> __device__ void conv_fwd(ConvGeom g, const T* x, const T* w, T* y) {
    i64 gi = blockIdx.z, cig = g.cin / g.groups, cog = g.cout / g.groups;
    i64 K = cig * g.kh * g.kw, N = g.n * g.oh * g.ow;
    FwdA<T> a{w, gi * cog, K};
    FwdB<T> b{x, g, gi * cig};
    FwdStore<T> st{y, g, gi * cog};
    gemm_tile<T>(cog, N, 0, K, (i64)blockIdx.y * TILE_M, (i64)blockIdx.x * TILE_N, a, b, st);
}

template <typename T> __device__ void conv_bwd_data(ConvGeom g, const T* dy, const T* w, T* dx) {
    i64 gi = blockIdx.z, cig = g.cin / g.groups, cog = g.cout / g.groups;
    i64 K = cog * g.kh * g.kw, N = g.n * g.h * g.w;
    DataA<T> a{w, g, gi * cog, cig};
    DataB<T> b{dy, g, gi * cog};
    DataStore<T> st{dx, g, gi * cig};
    gemm_tile<T>(cig, N, 0, K, (i64)blockIdx.y * TILE_M, (i64)blockIdx.x * TILE_N, a, b, st);
}

// blockIdx.z = group * splits + split; each split reduces `chunk` (a multiple of TILE_K) pixels.
template <typename T>
__device__ void conv_bwd_weight(ConvGeom g, i64 splits, i64 chunk, const T* x, const T* dy, T* dw) {
    i64 gi = blockIdx.z / splits, sp = blockIdx.z % splits;
    i64 cig = g.cin / g.groups, cog = g.cout / g.groups;
    i64 K = cig * g.kh * g.kw, P = g.n * g.oh * g.ow;
    i64 kb = sp * chunk, ke = kb + chunk < P ? kb + chunk : P;
    if (kb >= ke) return;
    WgtA<T> a{dy, g, gi * cog};
    WgtB<T> b{FwdB<T>{x, g, gi * cig}};
    WgtStore<T> st{dw, gi * cog, K};
    gemm_tile<T>(cog, K, kb, ke, (i64)blockIdx.y * TILE_M, (i64)blockIdx.x * TILE_N, a, b, st);
}

#define INSTANTIATE(T, S)                                                                          \
    extern "C" __global__ void __launch_bounds__(TILE_THREADS)                                     \
        conv2d_fwd_##S(ConvGeom g, const T* x, const T* w, T* y) { conv_fwd<T>(g, x, w, y); }       \
    extern "C" __global__ void __launch_bounds__(TILE_THREADS)                                     \
        conv2d_bwd_data_##S(ConvGeom g, const T* dy, const T* w, T* dx) {                          \
        conv_bwd_data<T>(g, dy, w, dx);                                                            \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(TILE_THREADS) conv2d_bwd_weight_##S(              \
        ConvGeom g, i64 splits, i64 chunk, const T* x, const T* dy, T* dw) {                       \
        conv_bwd_weight<T>(g, splits, chunk, x, dy, dw);                                           \
    }

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
