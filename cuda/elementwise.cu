// Elementwise kernels: unary functions (one kernel, the op chosen by a code), broadcasting binary
// ops through strides, where, fill, and the strided copies that make views contiguous. The codes
// come from the table in elementwise_ops.cuh, which build.rs also turns into the Rust enums.
#include "common.cuh"

#define BS_UNARY(name) U_##name,
#define BS_BINARY(name)
enum UnaryCode {
#include "elementwise_ops.cuh"
};
#undef BS_UNARY
#undef BS_BINARY
#define BS_UNARY(name)
#define BS_BINARY(name) B_##name,
enum BinaryCode {
#include "elementwise_ops.cuh"
};
#undef BS_UNARY
#undef BS_BINARY

template <typename T> __device__ __forceinline__ T unary_apply(int op, T x, T p, T q) {
    const T one = (T)1, zero = (T)0;
    switch (op) {
    case U_Neg: return -x;
    case U_Exp: return m_exp(x);
    case U_Log: return m_log(x);
    case U_Sqrt: return m_sqrt(x);
    case U_Rsqrt: return one / m_sqrt(x);
    case U_Recip: return one / x;
    case U_Sqr: return x * x;
    case U_Sin: return m_sin(x);
    case U_Cos: return m_cos(x);
    case U_Abs: return m_abs(x);
    case U_Tanh: return m_tanh(x);
    case U_Sigmoid: return one / (one + m_exp(-x));
    case U_Erf: return m_erf(x);
    case U_Relu: return x > zero ? x : zero;
    case U_Silu: return x / (one + m_exp(-x));
    case U_Gelu: return (T)0.5 * x * (one + m_erf(x * (T)0.70710678118654752440));
    case U_Softplus: return x > (T)20 ? x : m_max(x, zero) + m_log(one + m_exp(-m_abs(x)));
    case U_Powf: return m_pow(x, p);
    case U_LeakyRelu: return x > zero ? x : x * p;
    case U_Clamp: return m_min(m_max(x, p), q);
    case U_Affine: return x * p + q;
    case U_StepPos: return x > zero ? one : zero;
    case U_Sign: return x > zero ? one : (x < zero ? -one : zero);
    case U_InRange: return (x >= p && x <= q) ? one : zero;
    case U_Ge: return x >= p ? one : zero;
    case U_LeakyDeriv: return x > zero ? one : p;
    case U_GeluDeriv:
        return (T)0.5 * (one + m_erf(x * (T)0.70710678118654752440))
            + x * m_exp((T)-0.5 * x * x) * (T)0.39894228040143267794;
    default: return x;
    }
}

template <typename T> __device__ __forceinline__ T binary_apply(int op, T a, T b) {
    switch (op) {
    case B_Add: return a + b;
    case B_Sub: return a - b;
    case B_Mul: return a * b;
    case B_Div: return a / b;
    case B_Max: return m_max(a, b);
    case B_Min: return m_min(a, b);
    case B_GeMask: return a >= b ? (T)1 : (T)0;
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
