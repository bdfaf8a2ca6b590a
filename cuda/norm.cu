// The generic normalisation of src/ops/norm.rs (group / instance / layer norm, optional affine
// and SiLU) and its first-order backward. x is viewed as [rows = n*groups, m = cpg*inner]; row r
// belongs to group r % groups, and element k of a row to channel (r % groups)*cpg + k / inner.
// Statistics are kept in double (like the CPU kernel's f64 row_stats); element-wise passes are
// one thread per output element, grid-stride, 64-bit indices; the weight and bias gradients are
// block partials over (sample range, channel) summed in a second pass.
#include "common.cuh"

enum { NACT_NONE = 0, NACT_SILU = 1 };

// mean and 1/sqrt(var+eps) of each row, shifted by the row's first value as on the CPU.
// One block per row (grid-stride over rows); blockDim.x a multiple of 32.
template <typename T>
__device__ void norm_stats(i64 rows, i64 m, double eps, const T* x, double* mean, double* rstd) {
    __shared__ double scratch[32];
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * m;
        const double k0 = m > 0 ? (double)xr[0] : 0.0;
        double s1 = 0.0, s2 = 0.0;
        for (i64 i = threadIdx.x; i < m; i += blockDim.x) {
            const double d = (double)xr[i] - k0;
            s1 += d;
            s2 += d * d;
        }
        s1 = block_allsum(s1, scratch);
        s2 = block_allsum(s2, scratch);
        if (threadIdx.x == 0) {
            if (m == 0) {
                mean[r] = 0.0;
                rstd[r] = 1.0 / sqrt(eps);
            } else {
                const double mf = (double)m;
                const double var = fmax((s2 - s1 * s1 / mf) / mf, 0.0);
                mean[r] = k0 + s1 / mf;
                rstd[r] = 1.0 / sqrt(var + eps);
            }
        }
    }
}

template <typename T> __device__ __forceinline__ T norm_act(int act, T z) {
    return act == NACT_SILU ? z / ((T)1 + m_exp(-z)) : z;
}

// dL/dz of act at pre-activation z.
template <typename T> __device__ __forceinline__ T norm_dz(int act, T g, T z) {
    if (act != NACT_SILU) return g;
    const T s = (T)1 / ((T)1 + m_exp(-z));
    return g * s * ((T)1 + z * ((T)1 - s));
}

// y = act(x*a + s), a = w*rstd, s = b - mean*rstd*w (affine) or a = rstd, s = -mean*rstd.
template <typename T>
__device__ void norm_apply(i64 total, i64 m, i64 inner, i64 cpg, i64 groups, int affine, int act,
                           const T* x, const T* w, const T* b, const double* mean, const double* rstd,
                           T* y) {
    GRID_STRIDE(i, total) {
        const i64 r = i / m;
        const i64 c = (r % groups) * cpg + (i % m) / inner;
        const double mu = mean[r], rs = rstd[r];
        double a = rs, s = -mu * rs;
        if (affine) {
            const double wc = (double)w[c];
            a = wc * rs;
            s = (double)b[c] - mu * rs * wc;
        }
        y[i] = norm_act<T>(act, x[i] * (T)a + (T)s);
    }
}

// Per row: mean over the row of gz*w and of gz*w*xhat (gz = dL/dz).
template <typename T>
__device__ void norm_bwd_rows(i64 rows, i64 m, i64 inner, i64 cpg, i64 groups, int act, const T* x,
                              const T* w, const T* b, const T* g, const double* mean,
                              const double* rstd, double* mg, double* mgx) {
    __shared__ double scratch[32];
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const double mu = mean[r], rs = rstd[r];
        double sg = 0.0, sgx = 0.0;
        for (i64 k = threadIdx.x; k < m; k += blockDim.x) {
            const i64 c = (r % groups) * cpg + k / inner;
            const double wc = (double)w[c], bc = (double)b[c];
            const double xh = ((double)x[r * m + k] - mu) * rs;
            const double gz = (double)norm_dz<T>(act, g[r * m + k], (T)(xh * wc + bc));
            sg += gz * wc;
            sgx += gz * wc * xh;
        }
        sg = block_allsum(sg, scratch);
        sgx = block_allsum(sgx, scratch);
        if (threadIdx.x == 0) {
            const double mf = m > 0 ? (double)m : 1.0;
            mg[r] = sg / mf;
            mgx[r] = sgx / mf;
        }
    }
}

// gx = rstd * (gz*w - mean(gz*w) - xhat*mean(gz*w*xhat)), one thread per element.
template <typename T>
__device__ void norm_bwd_dx(i64 total, i64 m, i64 inner, i64 cpg, i64 groups, int act, const T* x,
                            const T* w, const T* b, const T* g, const double* mean,
                            const double* rstd, const double* mg, const double* mgx, T* gx) {
    GRID_STRIDE(i, total) {
        const i64 r = i / m;
        const i64 c = (r % groups) * cpg + (i % m) / inner;
        const double wc = (double)w[c], bc = (double)b[c], rs = rstd[r];
        const double xh = ((double)x[i] - mean[r]) * rs;
        const double gz = (double)norm_dz<T>(act, g[i], (T)(xh * wc + bc));
        gx[i] = (T)(rs * (gz * wc - mg[r] - xh * mgx[r]));
    }
}

// gw[c] = sum gz*xhat, gb[c] = sum gz over the samples and the channel's inner positions, in
// two passes (as group_norm.cu's per-sample partials and sum_rows): one thread per channel
// would leave all but C threads of the GPU idle over n*inner terms each.
// Pass 1: block (p, c) sums the terms of channel c over samples [p*spp, min(n, (p+1)*spp)) into
// pw/pb[p*C + c] (spp = 1 for instance norm's large images, many samples for layer norm's one
// value per sample). Grid-stride over the parts*C blocks.
template <typename T>
__device__ void norm_bwd_wb_part(i64 n, i64 C, i64 inner, i64 cpg, i64 groups, i64 spp, int act,
                                 const T* x, const T* w, const T* b, const T* g, const double* mean,
                                 const double* rstd, double* pw, double* pb) {
    __shared__ double scratch[32];
    const i64 m = cpg * inner;
    const i64 parts = (n + spp - 1) / spp;
    for (i64 item = blockIdx.x; item < parts * C; item += gridDim.x) {
        const i64 p = item / C, c = item % C;
        const i64 grp = c / cpg, ci = c % cpg;
        const double wc = (double)w[c], bc = (double)b[c];
        const i64 s0 = p * spp, s1 = s0 + spp < n ? s0 + spp : n;
        const i64 len = (s1 - s0) * inner;
        double sw = 0.0, sb = 0.0;
        for (i64 j = threadIdx.x; j < len; j += blockDim.x) {
            const i64 r = (s0 + j / inner) * groups + grp;
            const i64 i = r * m + ci * inner + j % inner;
            const double xh = ((double)x[i] - mean[r]) * rstd[r];
            const double gz = (double)norm_dz<T>(act, g[i], (T)(xh * wc + bc));
            sw += gz * xh;
            sb += gz;
        }
        sw = block_allsum(sw, scratch);
        sb = block_allsum(sb, scratch);
        if (threadIdx.x == 0) {
            pw[item] = sw;
            pb[item] = sb;
        }
    }
}

// Pass 2: gw[c], gb[c] = the sums of channel c's partials in part order (deterministic). gw and
// gb are the C values after gx in the output buffer.
template <typename T>
__device__ void norm_bwd_wb_sum(i64 parts, i64 C, const double* pw, const double* pb, T* gw, T* gb) {
    GRID_STRIDE(c, C) {
        double sw = 0.0, sb = 0.0;
        for (i64 p = 0; p < parts; ++p) {
            sw += pw[p * C + c];
            sb += pb[p * C + c];
        }
        gw[c] = (T)sw;
        gb[c] = (T)sb;
    }
}

template <typename T> __device__ void cast_from_f64(i64 n, const double* src, T* dst) {
    GRID_STRIDE(i, n) { dst[i] = (T)src[i]; }
}

#define INSTANTIATE(T, S)                                                                          \
    extern "C" __global__ void norm_stats_##S(i64 rows, i64 m, double eps, const T* x, double* mean, \
                                              double* rstd) {                                      \
        norm_stats<T>(rows, m, eps, x, mean, rstd);                                                \
    }                                                                                              \
    extern "C" __global__ void norm_apply_##S(i64 total, i64 m, i64 inner, i64 cpg, i64 groups,    \
                                              int affine, int act, const T* x, const T* w,         \
                                              const T* b, const double* mean, const double* rstd,  \
                                              T* y) {                                              \
        norm_apply<T>(total, m, inner, cpg, groups, affine, act, x, w, b, mean, rstd, y);          \
    }                                                                                              \
    extern "C" __global__ void norm_bwd_rows_##S(i64 rows, i64 m, i64 inner, i64 cpg, i64 groups,  \
                                                 int act, const T* x, const T* w, const T* b,      \
                                                 const T* g, const double* mean,                   \
                                                 const double* rstd, double* mg, double* mgx) {    \
        norm_bwd_rows<T>(rows, m, inner, cpg, groups, act, x, w, b, g, mean, rstd, mg, mgx);       \
    }                                                                                              \
    extern "C" __global__ void norm_bwd_dx_##S(i64 total, i64 m, i64 inner, i64 cpg, i64 groups,   \
                                               int act, const T* x, const T* w, const T* b,        \
                                               const T* g, const double* mean, const double* rstd, \
                                               const double* mg, const double* mgx, T* gx) {       \
        norm_bwd_dx<T>(total, m, inner, cpg, groups, act, x, w, b, g, mean, rstd, mg, mgx, gx);    \
    }                                                                                              \
    extern "C" __global__ void norm_bwd_wb_part_##S(i64 n, i64 C, i64 inner, i64 cpg, i64 groups,  \
                                                    i64 spp, int act, const T* x, const T* w,       \
                                                    const T* b, const T* g, const double* mean,     \
                                                    const double* rstd, double* pw, double* pb) {   \
        norm_bwd_wb_part<T>(n, C, inner, cpg, groups, spp, act, x, w, b, g, mean, rstd, pw, pb);    \
    }                                                                                              \
    extern "C" __global__ void norm_bwd_wb_sum_##S(i64 parts, i64 C, const double* pw,             \
                                                   const double* pb, T* gw, T* gb) {               \
        norm_bwd_wb_sum<T>(parts, C, pw, pb, gw, gb);                                              \
    }                                                                                              \
    extern "C" __global__ void cast_from_f64_##S(i64 n, const double* src, T* dst) {              \
        cast_from_f64<T>(n, src, dst);                                                             \
    }

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
