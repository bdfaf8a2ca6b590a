// General fused attention of src/ops/attention.rs for sizes the window kernel does not take:
// out[b] = softmax(q[b]·k[b]^T·scale + bias[b % heads] + mask[(b / heads) % windows])·v[b].
// Two simple passes: one thread per (b, query row) writes that row's probabilities to P
// [batch, nq, nk] (max-shifted exp, sum in double as on the CPU), then one thread per output
// element (b, i, e) takes P[b, i, :]·v[b, :, e]. 64-bit indices throughout.
#include "common.cuh"

template <typename T>
__device__ void attn_probs(i64 batch, i64 nq, i64 nk, i64 d, i64 heads, i64 windows, double scale_d,
                           const T* q, const T* k, const T* bias, const T* mask, T* P) {
    const T scale = (T)scale_d;
    GRID_STRIDE(row, batch * nq) {
        const i64 b = row / nq, i = row % nq;
        const i64 hb = b % heads, wb = (b / heads) % windows;
        const T* qr = q + (b * nq + i) * d;
        T* pr = P + row * nk;
        T mx = -m_inf<T>();
        for (i64 j = 0; j < nk; ++j) {
            const T* kr = k + (b * nk + j) * d;
            T acc = (T)0;
            for (i64 e = 0; e < d; ++e) acc += qr[e] * kr[e];
            T y = acc * scale;
            if (bias) y += bias[(hb * nq + i) * nk + j];
            if (mask) y += mask[(wb * nq + i) * nk + j];
            pr[j] = y;
            if (y > mx) mx = y;
        }
        double sum = 0.0;
        for (i64 j = 0; j < nk; ++j) {
            const T e = m_exp(pr[j] - mx);
            pr[j] = e;
            sum += (double)e;
        }
        const T inv = (T)(1.0 / sum);
        for (i64 j = 0; j < nk; ++j) pr[j] = pr[j] * inv;
    }
}

template <typename T>
__device__ void attn_pv(i64 batch, i64 nq, i64 nk, i64 dv, const T* P, const T* v, T* out) {
    GRID_STRIDE(o, batch * nq * dv) {
        const i64 e = o % dv, row = o / dv, b = row / nq;
        const T* pr = P + row * nk;
        const T* vb = v + b * nk * dv;
        T acc = (T)0;
        for (i64 j = 0; j < nk; ++j) acc += pr[j] * vb[j * dv + e];
        out[o] = acc;
    }
}

#define INSTANTIATE(T, S)                                                                           \
    extern "C" __global__ void attn_probs_##S(i64 batch, i64 nq, i64 nk, i64 d, i64 heads,          \
                                              i64 windows, double scale, const T* q, const T* k,    \
                                              const T* bias, const T* mask, T* P) {                 \
        attn_probs<T>(batch, nq, nk, d, heads, windows, scale, q, k, bias, mask, P);                \
    }                                                                                               \
    extern "C" __global__ void attn_pv_##S(i64 batch, i64 nq, i64 nk, i64 dv, const T* P,           \
                                           const T* v, T* out) {                                    \
        attn_pv<T>(batch, nq, nk, dv, P, v, out);                                                   \
    }

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
