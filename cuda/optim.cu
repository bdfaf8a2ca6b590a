// Elementwise optimiser updates of src/optim/{sgd,adam}.rs, in place, one thread per parameter
// element, with the CPU loops' arithmetic (hyper-parameters arrive as double and are rounded
// to T once, as T::from_f64 does on the CPU).
#include "common.cuh"

// SGD: g += wd*x; buf = first ? g : buf*mom + damp*g; g = nesterov ? g + mom*buf : buf;
// x -= lr*g (the momentum steps only when has_mom).
template <typename T>
__device__ void sgd_step(i64 n, T* x, const T* g, T* buf, double lr_d, double wd_d, double mom_d,
                         double damp_d, int has_wd, int has_mom, int nesterov, int first) {
    const T lr = (T)lr_d, wd = (T)wd_d, mom = (T)mom_d, damp = (T)damp_d;
    GRID_STRIDE(i, n) {
        T gi = g[i];
        if (has_wd) gi += wd * x[i];
        if (has_mom) {
            const T b = first ? gi : buf[i] * mom + damp * gi;
            buf[i] = b;
            gi = nesterov ? gi + mom * b : b;
        }
        x[i] = x[i] - lr * gi;
    }
}

// Adam / AdamW: decoupled: x *= decay, else g += wd*x (when has_wd); m += (1-b1)(g-m);
// v = v*b2 + (1-b2)*g*g; x -= step_size * m / (sqrt(v)/bc2_sqrt + eps).
template <typename T>
__device__ void adam_step(i64 n, T* x, const T* g, T* m, T* v, double b1_d, double b2_d, double eps_d,
                          double bc2_sqrt_d, double step_size_d, double decay_d, double wd_d,
                          int decoupled, int has_wd) {
    const T b1 = (T)b1_d, b2 = (T)b2_d, eps = (T)eps_d, bc2_sqrt = (T)bc2_sqrt_d;
    const T step_size = (T)step_size_d, decay = (T)decay_d, wd = (T)wd_d;
    GRID_STRIDE(i, n) {
        T gi = g[i];
        T xi = x[i];
        if (decoupled) {
            xi = xi * decay;
        } else if (has_wd) {
            gi += wd * xi;
        }
        const T mi = m[i] + ((T)1 - b1) * (gi - m[i]);
        const T vi = v[i] * b2 + ((T)1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        const T denom = m_sqrt(vi) / bc2_sqrt + eps;
        x[i] = xi - step_size * (mi / denom);
    }
}

#define INSTANTIATE(T, S)                                                                           \
    extern "C" __global__ void sgd_step_##S(i64 n, T* x, const T* g, T* buf, double lr, double wd,  \
                                            double mom, double damp, int has_wd, int has_mom,       \
                                            int nesterov, int first) {                              \
        sgd_step<T>(n, x, g, buf, lr, wd, mom, damp, has_wd, has_mom, nesterov, first);             \
    }                                                                                               \
    extern "C" __global__ void adam_step_##S(i64 n, T* x, const T* g, T* m, T* v, double b1,        \
                                             double b2, double eps, double bc2_sqrt,                \
                                             double step_size, double decay, double wd,             \
                                             int decoupled, int has_wd) {                           \
        adam_step<T>(n, x, g, m, v, b1, b2, eps, bc2_sqrt, step_size, decay, wd, decoupled,         \
                     has_wd);                                                                       \
    }

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
