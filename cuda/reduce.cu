// Sum and max over any set of axes. Sums accumulate in double (as the CPU reference).
// - `sum_*`/`max_*`: one block per output element, its threads striding over the reduced
//   elements, then a shared-memory tree.
// - Few outputs over many elements (a loss: one output) would leave all but a few SMs idle, so
//   `*_split_*` gives each output `parts` blocks, each reducing one chunk of its elements into a
//   partial (double for sums), and `*_parts_*` combines each output's partials, in a fixed order
//   (a tree over the part index), so results stay bit-identical run to run.
#include "common.cuh"

#define RED_THREADS 256

template <typename T> __device__ __forceinline__ T max_nan(T a, T b) {
    return (m_isnan(a) || m_isnan(b)) ? (m_isnan(a) ? a : b) : (b > a ? b : a);
}

// Combine one value per thread in a fixed tree order; every thread gets the result.
// blockDim.x a power of two, at most RED_THREADS. Ends with a barrier: `buf` may be reused.
template <typename A, bool IS_MAX> __device__ A block_combine(A v, A* buf) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) {
            const A a = buf[threadIdx.x], b = buf[threadIdx.x + w];
            buf[threadIdx.x] = IS_MAX ? max_nan(a, b) : a + b;
        }
        __syncthreads();
    }
    const A r = buf[0];
    __syncthreads();
    return r;
}

// This thread's share of elements [r0, r1) of the output at `base`: its sum (double) or its
// max (NaN if any was NaN, -inf if none).
template <typename T, bool IS_MAX>
__device__ void thread_range(i64 base, i64 r0, i64 r1, int rrank, const Dims& rshape,
                             const Dims& rstride, const T* x, double& s, T& m) {
    s = 0.0;
    m = -m_inf<T>();
    bool nan = false;
    for (i64 r = r0 + threadIdx.x; r < r1; r += blockDim.x) {
        const T v = x[base + strided_offset(r, rrank, rshape, rstride)];
        if (IS_MAX) {
            if (m_isnan(v)) nan = true;
            else if (v > m) m = v;
        } else {
            s += (double)v;
        }
    }
    if (IS_MAX && nan) m = m_nan<T>();
}

// kept dims (shape, input strides) enumerate outputs in row-major order; reduced dims
// (shape, input strides) enumerate the elements each output combines.
template <typename T, bool IS_MAX>
__device__ void reduce(i64 out_len, i64 red_len, int krank, Dims kshape, Dims kstride, int rrank,
                       Dims rshape, Dims rstride, const T* x, T* y) {
    __shared__ double ssum[RED_THREADS];
    __shared__ T smax[RED_THREADS];
    for (i64 o = blockIdx.x; o < out_len; o += gridDim.x) {
        const i64 base = strided_offset(o, krank, kshape, kstride);
        double s;
        T m;
        thread_range<T, IS_MAX>(base, 0, red_len, rrank, rshape, rstride, x, s, m);
        if (IS_MAX) {
            m = block_combine<T, true>(m, smax);
            if (threadIdx.x == 0) y[o] = red_len > 0 ? m : (T)0;
        } else {
            s = block_combine<double, false>(s, ssum);
            if (threadIdx.x == 0) y[o] = (T)s;
        }
    }
}

// Block b is part b % parts of output b / parts: elements [p*chunk, min(red_len, (p+1)*chunk)).
// Writes psum[b] (sums) or pmax[b] (max); the other pointer is unused.
template <typename T, bool IS_MAX>
__device__ void reduce_split(i64 out_len, i64 red_len, i64 parts, i64 chunk, int krank, Dims kshape,
                             Dims kstride, int rrank, Dims rshape, Dims rstride, const T* x,
                             double* psum, T* pmax) {
    __shared__ double ssum[RED_THREADS];
    __shared__ T smax[RED_THREADS];
    for (i64 b = blockIdx.x; b < out_len * parts; b += gridDim.x) {
        const i64 o = b / parts, p = b % parts;
        const i64 base = strided_offset(o, krank, kshape, kstride);
        const i64 r0 = p * chunk, r1 = r0 + chunk < red_len ? r0 + chunk : red_len;
        double s;
        T m;
        thread_range<T, IS_MAX>(base, r0, r1, rrank, rshape, rstride, x, s, m);
        if (IS_MAX) {
            m = block_combine<T, true>(m, smax);
            if (threadIdx.x == 0) pmax[b] = m;
        } else {
            s = block_combine<double, false>(s, ssum);
            if (threadIdx.x == 0) psum[b] = s;
        }
    }
}

// y[o] = the combination of partials [o*parts, (o+1)*parts); one block per output.
template <typename T, bool IS_MAX>
__device__ void reduce_parts(i64 out_len, i64 parts, const double* psum, const T* pmax, T* y) {
    __shared__ double ssum[RED_THREADS];
    __shared__ T smax[RED_THREADS];
    for (i64 o = blockIdx.x; o < out_len; o += gridDim.x) {
        double s = 0.0;
        T m = -m_inf<T>();
        for (i64 p = threadIdx.x; p < parts; p += blockDim.x) {
            if (IS_MAX) m = max_nan(m, pmax[o * parts + p]);
            else s += psum[o * parts + p];
        }
        if (IS_MAX) {
            m = block_combine<T, true>(m, smax);
            if (threadIdx.x == 0) y[o] = m;
        } else {
            s = block_combine<double, false>(s, ssum);
            if (threadIdx.x == 0) y[o] = (T)s;
        }
    }
}

// blockDim.x must be a power of two, at most RED_THREADS.
#define INSTANTIATE(T, S)                                                                               \
    extern "C" __global__ void sum_##S(i64 out_len, i64 red_len, int krank, Dims kshape, Dims kstride, \
                                       int rrank, Dims rshape, Dims rstride, const T* x, T* y) {        \
        reduce<T, false>(out_len, red_len, krank, kshape, kstride, rrank, rshape, rstride, x, y);        \
    }                                                                                                   \
    extern "C" __global__ void max_##S(i64 out_len, i64 red_len, int krank, Dims kshape, Dims kstride, \
                                       int rrank, Dims rshape, Dims rstride, const T* x, T* y) {        \
        reduce<T, true>(out_len, red_len, krank, kshape, kstride, rrank, rshape, rstride, x, y);         \
    }                                                                                                   \
    extern "C" __global__ void sum_split_##S(i64 out_len, i64 red_len, i64 parts, i64 chunk,           \
                                             int krank, Dims kshape, Dims kstride, int rrank,          \
                                             Dims rshape, Dims rstride, const T* x, double* part) {    \
        reduce_split<T, false>(out_len, red_len, parts, chunk, krank, kshape, kstride, rrank, rshape,  \
                               rstride, x, part, (T*)0);                                               \
    }                                                                                                   \
    extern "C" __global__ void max_split_##S(i64 out_len, i64 red_len, i64 parts, i64 chunk,           \
                                             int krank, Dims kshape, Dims kstride, int rrank,          \
                                             Dims rshape, Dims rstride, const T* x, T* part) {         \
        reduce_split<T, true>(out_len, red_len, parts, chunk, krank, kshape, kstride, rrank, rshape,   \
                              rstride, x, (double*)0, part);                                           \
    }                                                                                                   \
    extern "C" __global__ void sum_parts_##S(i64 out_len, i64 parts, const double* part, T* y) {       \
        reduce_parts<T, false>(out_len, parts, part, (const T*)0, y);                                  \
    }                                                                                                   \
    extern "C" __global__ void max_parts_##S(i64 out_len, i64 parts, const T* part, T* y) {            \
        reduce_parts<T, true>(out_len, parts, (const double*)0, part, y);                              \
    }

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
