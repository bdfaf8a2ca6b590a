// Sum and max over any set of axes: one block per output element, its threads striding over the
// reduced elements, then a shared-memory tree. Sums accumulate in double (as the CPU reference).
#include "common.cuh"

#define RED_THREADS 256

// kept dims (shape, input strides) enumerate outputs in row-major order; reduced dims
// (shape, input strides) enumerate the elements each output combines.
template <typename T, bool IS_MAX>
__device__ void reduce(i64 out_len, i64 red_len, int krank, Dims kshape, Dims kstride, int rrank,
                       Dims rshape, Dims rstride, const T* x, T* y) {
    __shared__ double ssum[RED_THREADS];
    __shared__ T smax[RED_THREADS];
    for (i64 o = blockIdx.x; o < out_len; o += gridDim.x) {
        const i64 base = strided_offset(o, krank, kshape, kstride);
        double s = 0.0;
        T m = -m_inf<T>();
        bool nan = false;
        for (i64 r = threadIdx.x; r < red_len; r += blockDim.x) {
            T v = x[base + strided_offset(r, rrank, rshape, rstride)];
            if (IS_MAX) {
                if (m_isnan(v)) nan = true;
                else if (v > m) m = v;
            } else {
                s += (double)v;
            }
        }
        if (IS_MAX && nan) m = m_nan<T>();
        if (IS_MAX) smax[threadIdx.x] = m; else ssum[threadIdx.x] = s;
        __syncthreads();
        for (int w = blockDim.x / 2; w > 0; w >>= 1) {
            if (threadIdx.x < w) {
                if (IS_MAX) {
                    T a = smax[threadIdx.x], b = smax[threadIdx.x + w];
                    smax[threadIdx.x] = (m_isnan(a) || m_isnan(b)) ? (m_isnan(a) ? a : b) : (b > a ? b : a);
                } else {
                    ssum[threadIdx.x] += ssum[threadIdx.x + w];
                }
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            if (IS_MAX) y[o] = red_len > 0 ? smax[0] : (T)0;
            else y[o] = (T)ssum[0];
        }
        __syncthreads();
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
    }

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
