// Kernels that break CUDA's rules on purpose, compiled only for the emulator (module
// "selftest"): the unit tests in src/backend/cuda/driver_emu.rs check that each is reported.
// One correct kernel (a warp and block sum) checks that the collectives compute what CUDA does.
#include "../common.cuh"

// Threads below `split` wait at a barrier the others never reach (they exit).
extern "C" __global__ void selftest_divergent_barrier(int split, int* out) {
    if ((int)threadIdx.x < split) __syncthreads();
    out[threadIdx.x] = 1;
}

// Odd and even threads wait at two different barriers.
extern "C" __global__ void selftest_mismatched_barrier(int* out) {
    if (threadIdx.x & 1) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1;
}

// Lane 31 exits while the others shuffle with a full mask.
extern "C" __global__ void selftest_shfl_missing_lane(int* out) {
    int v = threadIdx.x;
    if (threadIdx.x % 32 != 31) v = __shfl_down_sync(0xffffffffu, v, 1);
    out[threadIdx.x] = v;
}

// Lanes 0..15 shuffle with lanes 16..31, which their mask leaves out.
extern "C" __global__ void selftest_shfl_outside_mask(int* out) {
    int v = threadIdx.x;
    if (threadIdx.x < 16) v = __shfl_xor_sync(0x0000ffffu, v, 16);
    out[threadIdx.x] = v;
}

// Lane 0 waits for a shuffle that names lanes waiting at __syncthreads: nobody can go on.
extern "C" __global__ void selftest_deadlock(int* out) {
    int v = threadIdx.x;
    if (threadIdx.x == 0) v = __shfl_sync(0xffffffffu, v, 3);
    __syncthreads();
    out[threadIdx.x] = v;
}

// Writes byte `at` of the dynamic shared memory.
extern "C" __global__ void selftest_dyn_smem_write(int at, int* out) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    if (threadIdx.x == 0) smem_raw[at] = 1;
    out[threadIdx.x] = 1;
}

// Correct: out[b] = sum of x over block b (warp shuffles, then shared memory), and out[nb + b]
// the value of lane 5's shuffle-up by 3 in warp 0 (lane 2's x).
extern "C" __global__ void selftest_block_sum(const double* x, double* out) {
    __shared__ double scratch[32];
    double v = x[blockIdx.x * blockDim.x + threadIdx.x];
    double up = __shfl_up_sync(0xffffffffu, v, 3);
    double s = block_allsum(v, scratch);
    if (threadIdx.x == 0) out[blockIdx.x] = s;
    if (threadIdx.x == 5) out[gridDim.x + blockIdx.x] = up;
}
