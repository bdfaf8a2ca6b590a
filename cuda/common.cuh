// Shared helpers for brainsynth's kernels: 64-bit grid-stride loops, by-value shape structs, math
// overloads that pick the float or double function explicitly, and block reductions.
#pragma once

typedef long long i64;

// Up to 8 dimensions travel by value as kernel parameters (no device-side metadata buffers).
#define MAX_DIMS 8
struct Dims {
    i64 d[MAX_DIMS];
};

// Marks an index-map entry that reads zero (u32::MAX on the Rust side).
#define MAP_ZERO 0xFFFFFFFFu

#define GRID_STRIDE(i, n) \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (i64)(n); i += (i64)blockDim.x * gridDim.x)

// Offset of flat row-major index `i` of `shape` (rank dims) in a tensor with `strides`.
__device__ __forceinline__ i64 strided_offset(i64 i, int rank, const Dims& shape, const Dims& strides) {
    i64 off = 0;
    for (int d = rank - 1; d >= 0; --d) {
        i64 s = shape.d[d];
        i64 c = i % s;
        i /= s;
        off += c * strides.d[d];
    }
    return off;
}

#define MATH1(name, f32fn, f64fn)                                  \
    __device__ __forceinline__ float name(float x) { return f32fn(x); } \
    __device__ __forceinline__ double name(double x) { return f64fn(x); }
MATH1(m_exp, expf, exp)
MATH1(m_log, logf, log)
MATH1(m_sqrt, sqrtf, sqrt)
MATH1(m_sin, sinf, sin)
MATH1(m_cos, cosf, cos)
MATH1(m_abs, fabsf, fabs)
MATH1(m_tanh, tanhf, tanh)
MATH1(m_erf, erff, erf)
#undef MATH1
__device__ __forceinline__ float m_pow(float x, float p) { return powf(x, p); }
__device__ __forceinline__ double m_pow(double x, double p) { return pow(x, p); }
__device__ __forceinline__ float m_max(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double m_max(double a, double b) { return fmax(a, b); }
__device__ __forceinline__ float m_min(float a, float b) { return fminf(a, b); }
__device__ __forceinline__ double m_min(double a, double b) { return fmin(a, b); }
__device__ __forceinline__ bool m_isnan(float x) { return isnan(x); }
__device__ __forceinline__ bool m_isnan(double x) { return isnan(x); }
template <typename T> __device__ __forceinline__ T m_inf();
template <> __device__ __forceinline__ float m_inf<float>() { return __int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double m_inf<double>() { return __longlong_as_double(0x7ff0000000000000LL); }

template <typename T> __device__ __forceinline__ T m_nan();
template <> __device__ __forceinline__ float m_nan<float>() { return __int_as_float(0x7fc00000); }
template <> __device__ __forceinline__ double m_nan<double>() { return __longlong_as_double(0x7ff8000000000000LL); }

template <typename T> __device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}
template <typename T> __device__ __forceinline__ T warp_allsum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
template <typename T> __device__ __forceinline__ T warp_allmax(T v) {
    for (int o = 16; o > 0; o >>= 1) v = m_max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
// `scratch` holds 32 values; the call synchronises, so it may be reused right after.
template <typename T> __device__ T block_allsum(T v, T* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    T t = (T)0;
    if (warp == 0) {
        t = lane < nwarps ? scratch[lane] : (T)0;
        t = warp_sum(t);
        if (lane == 0) scratch[0] = t;
    }
    __syncthreads();
    return scratch[0];
}
