// Elementwise kernels: unary functions (one kernel, the op chosen by a code that matches
// `Unary` on the Rust side), broadcasting binary ops through strides, where, fill, and the
// strided copies that make views contiguous.
#include "common.cuh"

// Codes shared with src/backend/cuda/ops.rs (unary_code).
enum {
    U_NEG = 0, U_EXP, U_LOG, U_SQRT, U_RSQRT, U_RECIP, U_SQR, U_SIN, U_COS, U_ABS, U_TANH,
    U_SIGMOID, U_ERF, U_RELU, U_SILU, U_GELU, U_SOFTPLUS, U_POWF, U_LEAKY, U_CLAMP, U_AFFINE,
    U_STEPPOS, U_SIGN, U_INRANGE, U_GE, U_LEAKYDERIV, U_GELUDERIV
};

template <typename T> __device__ __forceinline__ T unary_apply(int op, T x, T p, T q) {
    const T one = (T)1, zero = (T)0;
    switch (op) {
    case U_NEG: return -x;
    case U_EXP: return m_exp(x);
    case U_LOG: return m_log(x);
    case U_SQRT: return m_sqrt(x);
    case U_RSQRT: return one / m_sqrt(x);
    case U_RECIP: return one / x;
    case U_SQR: return x * x;
    case U_SIN: return m_sin(x);
    case U_COS: return m_cos(x);
    case U_ABS: return m_abs(x);
    case U_TANH: return m_tanh(x);
    case U_SIGMOID: return one / (one + m_exp(-x));
    case U_ERF: return m_erf(x);
    case U_RELU: return x > zero ? x : zero;
    case U_SILU: return x / (one + m_exp(-x));
    case U_GELU: return (T)0.5 * x * (one + m_erf(x * (T)0.70710678118654752440));
    case U_SOFTPLUS: return x > (T)20 ? x : m_max(x, zero) + m_log(one + m_exp(-m_abs(x)));
    case U_POWF: return m_pow(x, p);
    case U_LEAKY: return x > zero ? x : x * p;
    case U_CLAMP: return m_min(m_max(x, p), q);
    case U_AFFINE: return x * p + q;
    case U_STEPPOS: return x > zero ? one : zero;
    case U_SIGN: return x > zero ? one : (x < zero ? -one : zero);
    case U_INRANGE: return (x >= p && x <= q) ? one : zero;
    case U_GE: return x >= p ? one : zero;
    case U_LEAKYDERIV: return x > zero ? one : p;
    case U_GELUDERIV:
        return (T)0.5 * (one + m_erf(x * (T)0.70710678118654752440))
            + x * m_exp((T)-0.5 * x * x) * (T)0.39894228040143267794;
    default: return x;
    }
}

enum { B_ADD = 0, B_SUB, B_MUL, B_DIV, B_MAX, B_MIN, B_GE };

template <typename T> __device__ __forceinline__ T binary_apply(int op, T a, T b) {
    switch (op) {
    case B_ADD: return a + b;
    case B_SUB: return a - b;
    case B_MUL: return a * b;
    case B_DIV: return a / b;
    case B_MAX: return m_max(a, b);
    case B_MIN: return m_min(a, b);
    case B_GE: return a >= b ? (T)1 : (T)0;
    default: return a;
    }
}

template <typename T> __device__ void unary(i64 n, int op, double p, double q, const T* x, T* y) {
    const T tp = (T)p, tq = (T)q;
    GRID_STRIDE(i, n) y[i] = unary_apply(op, x[i], tp, tq);
}

// y[i] = a[offset_a(i)] op b[offset_b(i)] over the output shape; broadcast dims have stride 0.
template <typename T>
__device__ void binary(i64 n, int op, int rank, Dims shape, Dims sa, Dims sb, const T* a, const T* b, T* y) {
    GRID_STRIDE(i, n) {
        i64 rem = i, oa = 0, ob = 0;
        for (int d = rank - 1; d >= 0; --d) {
            i64 s = shape.d[d];
            i64 c = rem % s;
            rem /= s;
            oa += c * sa.d[d];
            ob += c * sb.d[d];
        }
        y[i] = binary_apply(op, a[oa], b[ob]);
    }
}

template <typename T> __device__ void where_(i64 n, const T* c, const T* a, const T* b, T* y) {
    GRID_STRIDE(i, n) y[i] = c[i] != (T)0 ? a[i] : b[i];
}

template <typename T> __device__ void fill(i64 n, double v, T* y) {
    const T t = (T)v;
    GRID_STRIDE(i, n) y[i] = t;
}

// Contiguous y from a strided view of x.
template <typename T>
__device__ void strided_copy(i64 n, int rank, Dims shape, Dims strides, i64 offset, const T* x, T* y) {
    GRID_STRIDE(i, n) y[i] = x[offset + strided_offset(i, rank, shape, strides)];
}

// A strided view of y takes the values of contiguous x (assign into a view).
template <typename T>
__device__ void strided_assign(i64 n, int rank, Dims shape, Dims strides, i64 offset, const T* x, T* y) {
    GRID_STRIDE(i, n) y[offset + strided_offset(i, rank, shape, strides)] = x[i];
}

#define INSTANTIATE(T, S)                                                                              \
    extern "C" __global__ void unary_##S(i64 n, int op, double p, double q, const T* x, T* y) {       \
        unary<T>(n, op, p, q, x, y);                                                                   \
    }                                                                                                  \
    extern "C" __global__ void binary_##S(i64 n, int op, int rank, Dims shape, Dims sa, Dims sb,      \
                                          const T* a, const T* b, T* y) {                             \
        binary<T>(n, op, rank, shape, sa, sb, a, b, y);                                                \
    }                                                                                                  \
    extern "C" __global__ void where_##S(i64 n, const T* c, const T* a, const T* b, T* y) {           \
        where_<T>(n, c, a, b, y);                                                                      \
    }                                                                                                  \
    extern "C" __global__ void fill_##S(i64 n, double v, T* y) { fill<T>(n, v, y); }                  \
    extern "C" __global__ void strided_copy_##S(i64 n, int rank, Dims shape, Dims strides, i64 offset, \
                                                const T* x, T* y) {                                    \
        strided_copy<T>(n, rank, shape, strides, offset, x, y);                                        \
    }                                                                                                  \
    extern "C" __global__ void strided_assign_##S(i64 n, int rank, Dims shape, Dims strides,          \
                                                  i64 offset, const T* x, T* y) {                      \
        strided_assign<T>(n, rank, shape, strides, offset, x, y);                                      \
    }

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
