// CUDA's device-side vocabulary for a host C++17 compiler, so that the unchanged cuda/*.cu files
// run on the CPU under the emulator in runtime.cpp (cargo feature `cuda-emu`). build.rs includes
// this header first, then each kernel file inside `namespace k_<file> { ... }`.
//
// Conventions (as CUDA's programming guide defines them; the emulator checks what it can):
// - every CUDA thread is a fiber; `threadIdx` etc. read the running fiber's coordinates;
// - `__syncthreads`, `__syncwarp` and the `__shfl_*_sync` collectives are scheduling points: a
//   fiber runs until it reaches one, and the collective completes once every thread it names has
//   arrived (mismatched or divergent barriers, missing lanes and deadlock are reported as errors);
// - `__shared__` variables are per OS thread (the blocks of one launch run one after another on
//   the launching thread); dynamic shared memory (`extern __shared__`) is defined by build.rs's
//   wrapper, filled with NaN bytes before each block and checked for writes past the launch size;
// - atomics are plain read-modify-writes: fibers switch only at collectives, so none interleaves.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cmath>
#include <type_traits>
#include <utility>

struct uint3 {
    unsigned x, y, z;
};
typedef uint3 dim3;

// Function and variable qualifiers. `__shared__` is thread-local storage with static duration:
// one copy per OS thread, shared by the fibers (threads) of the block it runs.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ thread_local

// One kernel of the registry build.rs generates: launched by name with a cuLaunchKernel-style
// argument array.
struct BsEmuKernel {
    const char* module;
    const char* name;
    void (*invoke)(void**);
    unsigned char* (*dyn_smem)();  // this OS thread's dynamic shared memory, or null
    size_t dyn_smem_cap;
};

namespace bs_emu {
// Coordinates of the running fiber and its launch (set by the scheduler before each switch).
extern __thread uint3 t_thread_idx;
extern __thread uint3 t_block_idx;
extern __thread uint3 t_block_dim;
extern __thread uint3 t_grid_dim;

void syncthreads(const char* file, int line);
void syncwarp(unsigned mask, const char* file, int line);
// Kinds of warp shuffle, as in CUDA: idx (absolute lane), up, down, xor.
enum ShflKind { SHFL_IDX = 0, SHFL_UP = 1, SHFL_DOWN = 2, SHFL_XOR = 3 };
// Exchanges 8 raw bytes with the lanes of `mask`; returns the bytes of the source lane.
uint64_t shfl(int kind, unsigned mask, uint64_t bits, int arg, int width, const char* file, int line);

// Calls a kernel with the arguments of a cuLaunchKernel-style array (a pointer to each value).
template <typename... A, size_t... I>
inline void invoke_with(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...);
}
template <typename... A>
inline void invoke_args(void (*f)(A...), void** args) {
    invoke_with(f, args, std::index_sequence_for<A...>{});
}
template <auto F>
void invoke(void** args) {
    invoke_args(F, args);
}
}  // namespace bs_emu

#define threadIdx (bs_emu::t_thread_idx)
#define blockIdx (bs_emu::t_block_idx)
#define blockDim (bs_emu::t_block_dim)
#define gridDim (bs_emu::t_grid_dim)

// Collectives name their call site (GCC's __builtin_FILE/LINE in default arguments) so that a
// mismatch can be reported as "file:line".
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    bs_emu::syncthreads(file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
    bs_emu::syncwarp(mask, file, line);
}

template <typename T>
inline T bs_emu_shfl(int kind, unsigned mask, T v, int arg, int width, const char* file, int line) {
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "a shuffle moves a scalar");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    bits = bs_emu::shfl(kind, mask, bits, arg, width, file, line);
    T out;
    memcpy(&out, &bits, sizeof(T));
    return out;
}
#define BS_EMU_SHFL(fn, kind, argty)                                                                 \
    template <typename T>                                                                            \
    inline T fn(unsigned mask, T v, argty a, int width = 32, const char* file = __builtin_FILE(),    \
                int line = __builtin_LINE()) {                                                       \
        return bs_emu_shfl(kind, mask, v, (int)a, width, file, line);                                \
    }
BS_EMU_SHFL(__shfl_sync, bs_emu::SHFL_IDX, int)
BS_EMU_SHFL(__shfl_up_sync, bs_emu::SHFL_UP, unsigned)
BS_EMU_SHFL(__shfl_down_sync, bs_emu::SHFL_DOWN, unsigned)
BS_EMU_SHFL(__shfl_xor_sync, bs_emu::SHFL_XOR, int)
#undef BS_EMU_SHFL

// Atomics: no fiber switch can happen inside one, so a plain update is atomic here.
template <typename T>
inline T atomicAdd(T* p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}
template <typename T>
inline T atomicMax(T* p, T v) {
    T old = *p;
    *p = old < v ? v : old;
    return old;
}

// Bit casts and fast-math spellings the kernels use.
inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, 4);
    return f;
}
inline int __float_as_int(float f) {
    int i;
    memcpy(&i, &f, 4);
    return i;
}
inline double __longlong_as_double(long long i) {
    double d;
    memcpy(&d, &i, 8);
    return d;
}
inline long long __double_as_longlong(double d) {
    long long i;
    memcpy(&i, &d, 8);
    return i;
}
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
