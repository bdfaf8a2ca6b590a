// Fused window attention for Swin: O = softmax(scale * Q K^T + bias[h] + mask[b mod nW]) V, one
// block per (window, head), N <= 64 tokens and head dim D <= 64, so every lane of a warp owns
// at most two keys and two feature columns. K and V live in shared memory; each warp takes query
// rows in turn. The forward also writes the row log-sum-exp, from which the backward recomputes
// the probabilities instead of storing them.
//   q, k, v, o: [B, H, N, D]; bias: [H, N, N] or null; mask: [nW, N, N] or null; lse: [B, H, N].
#include "common.cuh"

#define WA_WARPS 8
#define WA_MAXN 64

template <typename T>
__device__ void wa_fwd(i64 B, int H, int N, int D, double scale_d, const T* q, const T* k, const T* v,
                       const T* bias, const T* mask, i64 nW, T* o, T* lse) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* Ks = (T*)smem_raw;              // [N][D + 1]
    T* Vs = Ks + N * (D + 1);          // [N][D + 1]
    T* qrow = Vs + N * (D + 1);        // [WA_WARPS][D]
    T* prow = qrow + WA_WARPS * D;     // [WA_WARPS][N]
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const T scale = (T)scale_d;
    T* qr = qrow + warp * D;
    T* pr = prow + warp * N;
    for (i64 bh = blockIdx.x; bh < B * H; bh += gridDim.x) {
        const i64 b = bh / H;
        const int h = (int)(bh % H);
        const i64 base = bh * N * D;
        for (int e = threadIdx.x; e < N * D; e += blockDim.x) {
            int j = e / D, d = e % D;
            Ks[j * (D + 1) + d] = k[base + e];
            Vs[j * (D + 1) + d] = v[base + e];
        }
        __syncthreads();
        for (int i = warp; i < N; i += WA_WARPS) {
            for (int d = lane; d < D; d += 32) qr[d] = q[base + (i64)i * D + d];
            __syncwarp();
            T s[2];
            T mx = -m_inf<T>();
#pragma unroll
            for (int t = 0; t < 2; ++t) {
                const int j = lane + 32 * t;
                s[t] = -m_inf<T>();
                if (j < N) {
                    T acc = (T)0;
                    for (int d = 0; d < D; ++d) acc += qr[d] * Ks[j * (D + 1) + d];
                    acc *= scale;
                    if (bias) acc += bias[((i64)h * N + i) * N + j];
                    if (mask) acc += mask[((b % nW) * N + i) * N + j];
                    s[t] = acc;
                    mx = m_max(mx, acc);
                }
            }
            mx = warp_allmax(mx);
            T e0 = (lane < N) ? m_exp(s[0] - mx) : (T)0;
            T e1 = (lane + 32 < N) ? m_exp(s[1] - mx) : (T)0;
            const T sum = warp_allsum(e0 + e1);
            if (lane < N) pr[lane] = e0 / sum;
            if (lane + 32 < N) pr[lane + 32] = e1 / sum;
            __syncwarp();
            for (int d = lane; d < D; d += 32) {
                T acc = (T)0;
                for (int j = 0; j < N; ++j) acc += pr[j] * Vs[j * (D + 1) + d];
                o[base + (i64)i * D + d] = acc;
            }
            if (lane == 0) lse[bh * N + i] = mx + m_log(sum);
            __syncwarp();
        }
        __syncthreads();
    }
}

// dbias (if not null) must be zeroed by the caller: windows of one head add into it atomically.
template <typename T>
__device__ void wa_bwd(i64 B, int H, int N, int D, double scale_d, const T* q, const T* k, const T* v,
                       const T* bias, const T* mask, i64 nW, const T* o, const T* lse, const T* dout,
                       T* dq, T* dk, T* dv, T* dbias) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* Ks = (T*)smem_raw;              // [N][D + 1]
    T* Vs = Ks + N * (D + 1);          // [N][D + 1]
    T* P = Vs + N * (D + 1);           // [N][N + 1]
    T* dS = P + N * (N + 1);           // [N][N + 1]
    T* qrow = dS + N * (N + 1);        // [WA_WARPS][D]
    T* drow = qrow + WA_WARPS * D;     // [WA_WARPS][D]
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const T scale = (T)scale_d;
    T* qr = qrow + warp * D;
    T* dr = drow + warp * D;
    for (i64 bh = blockIdx.x; bh < B * H; bh += gridDim.x) {
        const i64 b = bh / H;
        const int h = (int)(bh % H);
        const i64 base = bh * N * D;
        for (int e = threadIdx.x; e < N * D; e += blockDim.x) {
            int j = e / D, d = e % D;
            Ks[j * (D + 1) + d] = k[base + e];
            Vs[j * (D + 1) + d] = v[base + e];
        }
        __syncthreads();
        // Phase 1, a warp per query row i: P, dS, and dQ.
        for (int i = warp; i < N; i += WA_WARPS) {
            T di = (T)0;
            for (int d = lane; d < D; d += 32) {
                const i64 at = base + (i64)i * D + d;
                qr[d] = q[at];
                dr[d] = dout[at];
                di += dout[at] * o[at];
            }
            di = warp_allsum(di);  // D_i = dO_i . O_i = sum_j P_ij dP_ij
            __syncwarp();
            const T li = lse[bh * N + i];
#pragma unroll
            for (int t = 0; t < 2; ++t) {
                const int j = lane + 32 * t;
                if (j < N) {
                    T sc = (T)0, dp = (T)0;
                    for (int d = 0; d < D; ++d) {
                        sc += qr[d] * Ks[j * (D + 1) + d];
                        dp += dr[d] * Vs[j * (D + 1) + d];
                    }
                    sc *= scale;
                    if (bias) sc += bias[((i64)h * N + i) * N + j];
                    if (mask) sc += mask[((b % nW) * N + i) * N + j];
                    const T p = m_exp(sc - li);
                    const T ds = p * (dp - di);
                    P[i * (N + 1) + j] = p;
                    dS[i * (N + 1) + j] = ds;
                    if (dbias) atomicAdd(&dbias[((i64)h * N + i) * N + j], ds);
                }
            }
            __syncwarp();
            for (int d = lane; d < D; d += 32) {
                T acc = (T)0;
                for (int j = 0; j < N; ++j) acc += dS[i * (N + 1) + j] * Ks[j * (D + 1) + d];
                dq[base + (i64)i * D + d] = acc * scale;
            }
            __syncwarp();
        }
        __syncthreads();
        // Phase 2, a warp per key row j: dK_j = scale sum_i dS_ij Q_i, dV_j = sum_i P_ij dO_i.
        for (int j = warp; j < N; j += WA_WARPS) {
            for (int d = lane; d < D; d += 32) {
                T ak = (T)0, av = (T)0;
                for (int i = 0; i < N; ++i) {
                    const i64 at = base + (i64)i * D + d;
                    ak += dS[i * (N + 1) + j] * q[at];
                    av += P[i * (N + 1) + j] * dout[at];
                }
                dk[base + (i64)j * D + d] = ak * scale;
                dv[base + (i64)j * D + d] = av;
            }
        }
        __syncthreads();
    }
}

#define INSTANTIATE(T, S)                                                                             \
    extern "C" __global__ void __launch_bounds__(WA_WARPS * 32)                                       \
        win_attn_fwd_##S(i64 B, int H, int N, int D, double scale, const T* q, const T* k, const T* v, \
                         const T* bias, const T* mask, i64 nW, T* o, T* lse) {                        \
        wa_fwd<T>(B, H, N, D, scale, q, k, v, bias, mask, nW, o, lse);                                \
    }                                                                                                 \
    extern "C" __global__ void __launch_bounds__(WA_WARPS * 32) win_attn_bwd_##S(                     \
        i64 B, int H, int N, int D, double scale, const T* q, const T* k, const T* v, const T* bias,  \
        const T* mask, i64 nW, const T* o, const T* lse, const T* dout, T* dq, T* dk, T* dv,         \
        T* dbias) {                                                                                   \
        wa_bwd<T>(B, H, N, D, scale, q, k, v, bias, mask, nW, o, lse, dout, dq, dk, dv, dbias);       \
    }

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
