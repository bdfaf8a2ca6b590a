// Index-map gathers and their adjoint scatter-add, concatenation and zero padding along one axis.
#include "common.cuh"

// y[i] = x[map[i]], or 0 where map[i] == MAP_ZERO.
template <typename T> __device__ void gather(i64 n, const unsigned* map, const T* x, T* y) {
    GRID_STRIDE(i, n) {
        unsigned j = map[i];
        y[i] = j == MAP_ZERO ? (T)0 : x[j];
    }
}

// y[map[i]] += x[i] (y zeroed by the caller). Atomic: several i may share a target.
template <typename T> __device__ void scatter_add(i64 n, const unsigned* map, const T* x, T* y) {
    GRID_STRIDE(i, n) {
        unsigned j = map[i];
        if (j != MAP_ZERO) atomicAdd(&y[j], x[i]);
    }
}

// One input of a concatenation: x is [outer, in_row], written at column col_off of y [outer, out_row].
template <typename T> __device__ void cat_copy(i64 outer, i64 in_row, i64 out_row, i64 col_off, const T* x, T* y) {
    GRID_STRIDE(i, outer * in_row) {
        i64 o = i / in_row, c = i - o * in_row;
        y[o * out_row + col_off + c] = x[i];
    }
}

// y [outer, before + size + after, inner] = x [outer, size, inner] with zeros around.
template <typename T>
__device__ void pad_axis(i64 outer, i64 before, i64 size, i64 after, i64 inner, const T* x, T* y) {
    i64 len = before + size + after;
    GRID_STRIDE(i, outer * len * inner) {
        i64 k = i % inner;
        i64 j = (i / inner) % len;
        i64 o = i / (inner * len);
        i64 s = j - before;
        y[i] = (s >= 0 && s < size) ? x[(o * size + s) * inner + k] : (T)0;
    }
}

#define INSTANTIATE(T, S)                                                                             \
    extern "C" __global__ void gather_##S(i64 n, const unsigned* map, const T* x, T* y) {            \
        gather<T>(n, map, x, y);                                                                      \
    }                                                                                                 \
    extern "C" __global__ void scatter_add_##S(i64 n, const unsigned* map, const T* x, T* y) {       \
        scatter_add<T>(n, map, x, y);                                                                 \
    }                                                                                                 \
    extern "C" __global__ void cat_copy_##S(i64 outer, i64 in_row, i64 out_row, i64 col_off,         \
                                            const T* x, T* y) {                                       \
        cat_copy<T>(outer, in_row, out_row, col_off, x, y);                                           \
    }                                                                                                 \
    extern "C" __global__ void pad_axis_##S(i64 outer, i64 before, i64 size, i64 after, i64 inner,   \
                                            const T* x, T* y) {                                       \
        pad_axis<T>(outer, before, size, after, inner, x, y);                                         \
    }

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
