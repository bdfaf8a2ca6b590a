// A tiled GEMM body for implicit-GEMM convolutions: C[m, n] = sum_k A(m, k) * B(k, n) over one
// block's 64x64 tile and a k range, where A and B are functors that compute their element on the
// fly (im2col without the buffer) and return 0 outside the problem, and `store` writes C.
// 256 threads; thread (ty, tx) owns rows ty + 16 i and columns tx + 16 j (i, j < 4), so shared
// reads are broadcast (A) or consecutive (B).
#pragma once
#include "common.cuh"

#define TILE_M 64
#define TILE_N 64
#define TILE_K 16
#define TILE_THREADS 256

template <typename T, typename LA, typename LB, typename ST>
__device__ __forceinline__ void gemm_tile(i64 M, i64 N, i64 k_begin, i64 k_end, i64 m0, i64 n0,
                                          const LA& la, const LB& lb, const ST& store) {
    __shared__ T As[TILE_K][TILE_M + 1];
    __shared__ T Bs[TILE_K][TILE_N + 1];
    const int tid = threadIdx.x;
    const int tx = tid % 16, ty = tid / 16;
    T acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = (T)0;

    for (i64 k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        // A tile: consecutive threads take consecutive k (rows of A are contiguous in k).
        for (int e = tid; e < TILE_M * TILE_K; e += TILE_THREADS) {
            int mm = e / TILE_K, kk = e % TILE_K;
            i64 m = m0 + mm, k = k0 + kk;
            As[kk][mm] = (m < M && k < k_end) ? la(m, k) : (T)0;
        }
        // B tile: consecutive threads take consecutive n (neighbouring output pixels).
        for (int e = tid; e < TILE_K * TILE_N; e += TILE_THREADS) {
            int kk = e / TILE_N, nn = e % TILE_N;
            i64 k = k0 + kk, n = n0 + nn;
            Bs[kk][nn] = (n < N && k < k_end) ? lb(k, n) : (T)0;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TILE_K; ++kk) {
            T a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            i64 m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
            if (m < M && n < N) store(m, n, acc[i][j]);
        }
}

// Convolution geometry, all 64-bit so the Rust #[repr(C)] mirror has no padding questions.
struct ConvGeom {
    i64 n, cin, h, w, cout, kh, kw, oh, ow;
    i64 sh, sw, ph, pw, dh, dw, groups;
};

// Input pixel read by output (oy, ox) at tap (ky, kx), or -1 when it falls in the padding.
__device__ __forceinline__ i64 conv_src(const ConvGeom& g, i64 oy, i64 ox, i64 ky, i64 kx) {
    i64 y = oy * g.sh + ky * g.dh - g.ph;
    i64 x = ox * g.sw + kx * g.dw - g.pw;
    if (y < 0 || x < 0 || y >= g.h || x >= g.w) return -1;
    return y * g.w + x;
}

// Output pixel that reads input (y, x) at tap (ky, kx), or -1 (the adjoint of conv_src).
__device__ __forceinline__ i64 conv_dst(const ConvGeom& g, i64 y, i64 x, i64 ky, i64 kx) {
    i64 ty = y + g.ph - ky * g.dh;
    i64 tx = x + g.pw - kx * g.dw;
    if (ty < 0 || tx < 0 || ty % g.sh != 0 || tx % g.sw != 0) return -1;
    i64 oy = ty / g.sh, ox = tx / g.sw;
    if (oy >= g.oh || ox >= g.ow) return -1;
    return oy * g.ow + ox;
}
