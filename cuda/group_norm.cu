// Group normalisation with an optional fused SiLU, forward and backward. x is [N, C, HW]; the
// C/G channels of one group are contiguous, so one block owns one (sample, group) slice.
// Forward: one pass of Welford statistics (in double), then normalise, scale, shift, activate.
// Backward: per channel sums of dz and dz*xhat (partial dgamma/dbeta per sample, summed over
// samples by sum_rows), the group sums they give, then dx.
#include "common.cuh"

enum { ACT_IDENTITY = 0, ACT_SILU = 1 };

struct Welford {
    double n, mean, m2;
};
__device__ __forceinline__ Welford welford_merge(Welford a, Welford b) {
    double n = a.n + b.n;
    if (n == 0.0) return a;
    double delta = b.mean - a.mean;
    Welford r;
    r.n = n;
    r.mean = a.mean + delta * (b.n / n);
    r.m2 = a.m2 + b.m2 + delta * delta * (a.n * b.n / n);
    return r;
}

// Merge over the block; every thread gets the result. blockDim.x a multiple of 32.
__device__ Welford block_welford(Welford v) {
    __shared__ double sn[32], sm[32], s2[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        Welford u;
        u.n = __shfl_down_sync(0xffffffffu, v.n, o);
        u.mean = __shfl_down_sync(0xffffffffu, v.mean, o);
        u.m2 = __shfl_down_sync(0xffffffffu, v.m2, o);
        v = welford_merge(v, u);
    }
    __syncthreads();
    if (lane == 0) { sn[warp] = v.n; sm[warp] = v.mean; s2[warp] = v.m2; }
    __syncthreads();
    if (threadIdx.x == 0) {
        Welford t = {0.0, 0.0, 0.0};
        for (int w = 0; w < nwarps; ++w) {
            Welford u = {sn[w], sm[w], s2[w]};
            t = welford_merge(t, u);
        }
        sn[0] = t.n; sm[0] = t.mean; s2[0] = t.m2;
    }
    __syncthreads();
    Welford r = {sn[0], sm[0], s2[0]};
    return r;
}

template <typename T> __device__ __forceinline__ T sigmoid(T z) { return (T)1 / ((T)1 + m_exp(-z)); }

template <typename T>
__device__ void gn_fwd(i64 N, i64 C, i64 HW, i64 G, double eps, int act, const T* x, const T* gamma,
                       const T* beta, T* y, T* mean_out, T* rstd_out) {
    const i64 cpg = C / G, M = cpg * HW;
    for (i64 ng = blockIdx.x; ng < N * G; ng += gridDim.x) {
        const i64 n = ng / G, g = ng % G;
        const i64 base = (n * C + g * cpg) * HW;
        Welford w = {0.0, 0.0, 0.0};
        for (i64 i = threadIdx.x; i < M; i += blockDim.x) {
            double v = (double)x[base + i];
            w.n += 1.0;
            double d = v - w.mean;
            w.mean += d / w.n;
            w.m2 += d * (v - w.mean);
        }
        w = block_welford(w);
        const double var = M > 0 ? w.m2 / (double)M : 0.0;
        const T mean = (T)w.mean;
        const T rstd = (T)(1.0 / sqrt(var + eps));
        if (threadIdx.x == 0) { mean_out[ng] = mean; rstd_out[ng] = rstd; }
        for (i64 i = threadIdx.x; i < M; i += blockDim.x) {
            const i64 c = g * cpg + i / HW;
            T z = (x[base + i] - mean) * rstd * gamma[c] + beta[c];
            if (act == ACT_SILU) z = z * sigmoid(z);
            y[base + i] = z;
        }
    }
}

template <typename T>
__device__ void gn_bwd(i64 N, i64 C, i64 HW, i64 G, int act, const T* x, const T* gamma, const T* beta,
                       const T* mean_in, const T* rstd_in, const T* dy, T* dx, T* dgamma_part, T* dbeta_part) {
    __shared__ double scratch[32];
    const i64 cpg = C / G, M = cpg * HW;
    for (i64 ng = blockIdx.x; ng < N * G; ng += gridDim.x) {
        const i64 n = ng / G, g = ng % G;
        const i64 base = (n * C + g * cpg) * HW;
        const T mean = mean_in[ng], rstd = rstd_in[ng];
        double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;  // over the group, identical in every thread
        for (i64 cl = 0; cl < cpg; ++cl) {
            const i64 c = g * cpg + cl;
            const T gc = gamma[c], bc = beta[c];
            double a = 0.0, b = 0.0;
            for (i64 p = threadIdx.x; p < HW; p += blockDim.x) {
                const i64 i = base + cl * HW + p;
                const T xh = (x[i] - mean) * rstd;
                T dz = dy[i];
                if (act == ACT_SILU) {
                    const T z = xh * gc + bc, s = sigmoid(z);
                    dz = dz * s * ((T)1 + z * ((T)1 - s));
                }
                a += (double)dz;
                b += (double)dz * (double)xh;
            }
            a = block_allsum(a, scratch);
            b = block_allsum(b, scratch);
            if (threadIdx.x == 0) { dbeta_part[n * C + c] = (T)a; dgamma_part[n * C + c] = (T)b; }
            sum_dxhat += (double)gc * a;
            sum_dxhat_xhat += (double)gc * b;
        }
        const T m1 = (T)(sum_dxhat / (double)M), m2 = (T)(sum_dxhat_xhat / (double)M);
        for (i64 i = threadIdx.x; i < M; i += blockDim.x) {
            const i64 c = g * cpg + i / HW;
            const T gc = gamma[c];
            const T xh = (x[base + i] - mean) * rstd;
            T dz = dy[base + i];
            if (act == ACT_SILU) {
                const T z = xh * gc + beta[c], s = sigmoid(z);
                dz = dz * s * ((T)1 + z * ((T)1 - s));
            }
            dx[base + i] = rstd * (dz * gc - m1 - xh * m2);
        }
    }
}

// out[c] = sum_r part[r, c]
template <typename T> __device__ void sum_rows(i64 R, i64 C, const T* part, T* out) {
    GRID_STRIDE(c, C) {
        double s = 0.0;
        for (i64 r = 0; r < R; ++r) s += (double)part[r * C + c];
        out[c] = (T)s;
    }
}

#define INSTANTIATE(T, S)                                                                           \
    extern "C" __global__ void group_norm_fwd_##S(i64 N, i64 C, i64 HW, i64 G, double eps, int act,  \
                                                  const T* x, const T* gamma, const T* beta, T* y,  \
                                                  T* mean, T* rstd) {                               \
        gn_fwd<T>(N, C, HW, G, eps, act, x, gamma, beta, y, mean, rstd);                            \
    }                                                                                               \
    extern "C" __global__ void group_norm_bwd_##S(i64 N, i64 C, i64 HW, i64 G, int act, const T* x, \
                                                  const T* gamma, const T* beta, const T* mean,      \
                                                  const T* rstd, const T* dy, T* dx, T* dgamma_part, \
                                                  T* dbeta_part) {                                  \
        gn_bwd<T>(N, C, HW, G, act, x, gamma, beta, mean, rstd, dy, dx, dgamma_part, dbeta_part);   \
    }                                                                                               \
    extern "C" __global__ void sum_rows_##S(i64 R, i64 C, const T* part, T* out) {                 \
        sum_rows<T>(R, C, part, out);                                                               \
    }

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
