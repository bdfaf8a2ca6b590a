// The emulator's runtime: runs one kernel launch on the calling OS thread, block after block,
// each CUDA thread of a block a fiber (started with ucontext, switched with _setjmp/_longjmp), and
// device memory as host memory with a guard page after each buffer. See cuda_emu.h for the
// conventions. Errors (a collective that cannot complete, a write past the dynamic shared memory
// the launch asked for) stop the launch and come back to Rust as a sentence.
//
// Orders (environment variable BRAINSYNTH_EMU_ORDER, read at each launch):
//   forward (default)  threads in index order, blocks in grid order;
//   reverse            threads in reverse order, blocks in reverse order;
//   shuffle            threads re-shuffled at every scheduling round, blocks shuffled
//                      (seeded by BRAINSYNTH_EMU_SEED, default 1, and the launch count).
// Running the same launch under two orders and comparing exposes shared-memory races: a missing
// barrier lets a fiber read what another has not written yet (or has overwritten already).

#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda_emu.h"

extern "C" const BsEmuKernel* const bs_emu_registry[];

namespace bs_emu {

__thread uint3 t_thread_idx;
__thread uint3 t_block_idx;
__thread uint3 t_block_dim;
__thread uint3 t_grid_dim;

namespace {

const size_t STACK_BYTES = 64 * 1024;
const size_t PAGE = 4096;

enum Wait { RUNNING, AT_BLOCK_BARRIER, AT_SYNCWARP, AT_SHFL };

struct Fiber {
    jmp_buf jb;
    ucontext_t uc;
    char* stack;  // STACK_BYTES above a guard page
    bool started, done;
    uint3 idx;
    int linear;
    Wait wait;
    const char* file;
    int line;
    unsigned mask;
    int kind, arg, width;
    uint64_t value, result;
};

struct Launch {
    const BsEmuKernel* k;
    void** args;
    std::vector<Fiber>* fibers;
    std::string error;
    bool failed;
};

__thread jmp_buf t_sched;
__thread Fiber* t_cur;
__thread Launch* t_launch;
__thread std::vector<Fiber>* t_fiber_pool;

std::string thread_name(const Fiber& f) {
    char b[160];
    snprintf(b, sizeof b, "thread (%u,%u,%u) of block (%u,%u,%u)", f.idx.x, f.idx.y, f.idx.z,
             t_block_idx.x, t_block_idx.y, t_block_idx.z);
    return b;
}

std::string site(const char* file, int line) {
    const char* base = strrchr(file, '/');
    return std::string(base ? base + 1 : file) + ":" + std::to_string(line);
}

// Records the first error of the launch; the scheduler stops at its next turn.
void fail(const std::string& msg) {
    if (!t_launch->failed) {
        t_launch->failed = true;
        t_launch->error = msg;
    }
}

// Back to the scheduler; returns when the scheduler resumes this fiber.
__attribute__((noinline)) void yield_fiber() {
    Fiber* f = t_cur;
    if (!_setjmp(f->jb)) _longjmp(t_sched, 1);
}

void fiber_main() {
    t_launch->k->invoke(t_launch->args);
    t_cur->done = true;
    t_cur->wait = RUNNING;
    _longjmp(t_sched, 1);
}

// Runs `f` until it reaches a collective or returns.
void resume(Fiber* f) {
    t_cur = f;
    t_thread_idx = f->idx;
    if (!_setjmp(t_sched)) {
        if (!f->started) {
            f->started = true;
            getcontext(&f->uc);
            f->uc.uc_stack.ss_sp = f->stack;
            f->uc.uc_stack.ss_size = STACK_BYTES;
            f->uc.uc_link = nullptr;
            makecontext(&f->uc, fiber_main, 0);
            setcontext(&f->uc);
        } else {
            _longjmp(f->jb, 1);
        }
    }
}

char* new_stack() {
    void* p = mmap(nullptr, STACK_BYTES + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    mprotect(p, PAGE, PROT_NONE);  // a stack overflow faults instead of corrupting a neighbour
    return (char*)p + PAGE;
}

struct Order {
    int mode = 0;  // 0 forward, 1 reverse, 2 shuffle
    uint64_t state = 1;
    uint64_t next() {  // splitmix64
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    void arrange(std::vector<int>& v) {
        for (size_t i = 0; i < v.size(); ++i) v[i] = (int)i;
        if (mode == 1) std::reverse(v.begin(), v.end());
        if (mode == 2)
            for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[next() % i]);
    }
};

std::atomic<uint64_t> g_launches{0};

Order order_from_env() {
    Order o;
    const char* m = getenv("BRAINSYNTH_EMU_ORDER");
    if (m && !strcmp(m, "reverse")) o.mode = 1;
    if (m && !strcmp(m, "shuffle")) o.mode = 2;
    const char* s = getenv("BRAINSYNTH_EMU_SEED");
    o.state = (s ? strtoull(s, nullptr, 10) : 1) * 1000003ull + g_launches.fetch_add(1);
    return o;
}

const char* wait_name(const Fiber& f) {
    switch (f.wait) {
        case AT_BLOCK_BARRIER: return "__syncthreads";
        case AT_SYNCWARP: return "__syncwarp";
        case AT_SHFL: return "a warp shuffle";
        default: return f.done ? "exit" : "running";
    }
}

// Source lane of a shuffle, CUDA's rules (a lane outside its width-segment keeps its value).
int shfl_source(const Fiber& f) {
    int lane = f.linear & 31, w = f.width, seg = lane & ~(w - 1);
    switch (f.kind) {
        case SHFL_IDX: return seg + (f.arg & (w - 1));
        case SHFL_UP: return lane - f.arg >= seg ? lane - f.arg : lane;
        case SHFL_DOWN: return lane + f.arg < seg + w ? lane + f.arg : lane;
        default: {
            int s = lane ^ f.arg;
            return s >= seg && s < seg + w ? s : lane;
        }
    }
}

// Completes the warp collectives whose lanes have all arrived; returns whether any completed.
bool release_warps(std::vector<Fiber>& fs, int nthreads) {
    bool any = false;
    for (int w0 = 0; w0 < nthreads; w0 += 32) {
        for (int l = 0; l < 32 && w0 + l < nthreads; ++l) {
            Fiber& f = fs[w0 + l];
            if (f.wait != AT_SYNCWARP && f.wait != AT_SHFL) continue;
            bool complete = true;
            for (int j = 0; j < 32; ++j) {
                if (!(f.mask >> j & 1u)) continue;
                if (w0 + j >= nthreads) {
                    fail(thread_name(f) + " at " + site(f.file, f.line) + " names lane " + std::to_string(j) +
                         " in its mask, which does not exist in a block of " + std::to_string(nthreads) + " threads");
                    return false;
                }
                Fiber& g = fs[w0 + j];
                if (g.done) {
                    fail(std::string(wait_name(f)) + " at " + site(f.file, f.line) + " by " + thread_name(f) +
                         " names lane " + std::to_string(j) + " in its mask, but that lane has exited");
                    return false;
                }
                if (g.wait == RUNNING || g.wait == AT_BLOCK_BARRIER) {
                    complete = false;
                    continue;
                }
                if (g.wait != f.wait || g.mask != f.mask || (f.wait == AT_SHFL && (g.kind != f.kind || g.line != f.line))) {
                    fail("mismatched warp collectives: " + thread_name(f) + " at " + wait_name(f) + " " +
                         site(f.file, f.line) + " (mask " + std::to_string(f.mask) + "), lane " + std::to_string(j) +
                         " at " + wait_name(g) + " " + site(g.file, g.line) + " (mask " + std::to_string(g.mask) + ")");
                    return false;
                }
            }
            if (!complete) continue;
            // Everyone named has arrived: shuffles read their source lane's value.
            for (int j = 0; j < 32; ++j) {
                if (!(f.mask >> j & 1u)) continue;
                Fiber& g = fs[w0 + j];
                if (g.wait == AT_SHFL) {
                    int s = shfl_source(g);
                    if (!(f.mask >> s & 1u)) {
                        fail(thread_name(g) + " shuffles from lane " + std::to_string(s) + " at " + site(g.file, g.line) +
                             ", which is not in the mask " + std::to_string(g.mask));
                        return false;
                    }
                    g.result = fs[w0 + s].value;
                }
            }
            for (int j = 0; j < 32; ++j)
                if (f.mask >> j & 1u) fs[w0 + j].wait = RUNNING;
            any = true;
        }
    }
    return any;
}

// Runs one block to completion; false when the launch failed.
bool run_block(std::vector<Fiber>& fs, int nthreads, Order& order) {
    for (int i = 0; i < nthreads; ++i) {
        Fiber& f = fs[i];
        f.started = f.done = false;
        f.wait = RUNNING;
        f.linear = i;
        f.idx = uint3{(unsigned)(i % t_block_dim.x), (unsigned)(i / t_block_dim.x % t_block_dim.y),
                      (unsigned)(i / (t_block_dim.x * t_block_dim.y))};
    }
    std::vector<int> seq(nthreads);
    order.arrange(seq);
    for (;;) {
        bool ran = false;
        for (int i : seq) {
            Fiber& f = fs[i];
            if (f.done || f.wait != RUNNING) continue;
            resume(&f);
            ran = true;
            if (t_launch->failed) return false;
        }
        if (order.mode == 2) order.arrange(seq);
        if (ran) continue;
        // Nobody can run: complete what can be completed, or report why nothing can.
        if (release_warps(fs, nthreads)) continue;
        if (t_launch->failed) return false;
        int done = 0, at_barrier = 0;
        const Fiber* first = nullptr;
        for (int i = 0; i < nthreads; ++i) {
            done += fs[i].done;
            if (fs[i].wait == AT_BLOCK_BARRIER) {
                at_barrier++;
                if (!first) first = &fs[i];
            }
        }
        if (done == nthreads) return true;
        if (at_barrier == nthreads) {
            for (int i = 0; i < nthreads; ++i)
                if (fs[i].line != first->line || strcmp(fs[i].file, first->file)) {
                    fail("mismatched __syncthreads: " + thread_name(*first) + " waits at " + site(first->file, first->line) +
                         ", " + thread_name(fs[i]) + " at " + site(fs[i].file, fs[i].line));
                    return false;
                }
            for (int i = 0; i < nthreads; ++i) fs[i].wait = RUNNING;
            continue;
        }
        // Divergence: some threads exited or wait for a warp collective that cannot complete.
        std::string who;
        int listed = 0;
        for (int i = 0; i < nthreads && listed < 4; ++i) {
            if (fs[i].done || fs[i].wait == AT_BLOCK_BARRIER) continue;
            who += (listed++ ? "; " : "") + thread_name(fs[i]) + " at " + wait_name(fs[i]) + " " + site(fs[i].file, fs[i].line);
        }
        if (first && done > 0 && !listed)
            fail("divergent __syncthreads: " + thread_name(*first) + " waits at " + site(first->file, first->line) +
                 " but " + std::to_string(done) + " thread(s) of the block have exited");
        else
            fail("deadlock: " + std::to_string(at_barrier) + " thread(s) wait at __syncthreads" +
                 (first ? " (" + site(first->file, first->line) + ")" : std::string()) + " while " + who);
        return false;
    }
}

}  // namespace

void syncthreads(const char* file, int line) {
    Fiber* f = t_cur;
    f->wait = AT_BLOCK_BARRIER;
    f->file = file;
    f->line = line;
    yield_fiber();
}

void syncwarp(unsigned mask, const char* file, int line) {
    Fiber* f = t_cur;
    if (!(mask >> (f->linear & 31) & 1u)) {
        fail("__syncwarp at " + site(file, line) + " by " + thread_name(*f) + " with mask " + std::to_string(mask) +
             ", which leaves out the calling lane");
        yield_fiber();
    }
    f->wait = AT_SYNCWARP;
    f->file = file;
    f->line = line;
    f->mask = mask;
    yield_fiber();
}

uint64_t shfl(int kind, unsigned mask, uint64_t bits, int arg, int width, const char* file, int line) {
    Fiber* f = t_cur;
    if (!(mask >> (f->linear & 31) & 1u)) {
        fail("warp shuffle at " + site(file, line) + " by " + thread_name(*f) + " with mask " + std::to_string(mask) +
             ", which leaves out the calling lane");
        yield_fiber();
    }
    if (width < 1 || width > 32 || (width & (width - 1))) {
        fail("warp shuffle at " + site(file, line) + " with width " + std::to_string(width) + " (must be a power of two up to 32)");
        yield_fiber();
    }
    f->wait = AT_SHFL;
    f->file = file;
    f->line = line;
    f->mask = mask;
    f->kind = kind;
    f->arg = arg;
    f->width = width;
    f->value = bits;
    yield_fiber();
    return f->result;
}

}  // namespace bs_emu

using namespace bs_emu;

namespace {
std::mutex g_alloc_mutex;
std::unordered_map<uintptr_t, std::pair<void*, size_t>> g_allocs;  // user pointer -> mapping
}  // namespace

extern "C" {

// `bytes` of emulated device memory, filled with NaN bytes, ending right below a PROT_NONE page
// (rounded to 256 bytes as the driver aligns), so reading or writing past the end faults.
void* bs_emu_alloc(size_t bytes) {
    size_t user = (bytes + 255) / 256 * 256;
    if (user == 0) user = 256;
    size_t body = (user + PAGE - 1) / PAGE * PAGE;
    void* m = mmap(nullptr, body + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    mprotect((char*)m + body, PAGE, PROT_NONE);
    char* p = (char*)m + (body - user);
    memset(p, 0xff, user);
    std::lock_guard<std::mutex> g(g_alloc_mutex);
    g_allocs[(uintptr_t)p] = {m, body + PAGE};
    return p;
}

void bs_emu_free(void* p) {
    std::pair<void*, size_t> m{nullptr, 0};
    {
        std::lock_guard<std::mutex> g(g_alloc_mutex);
        auto it = g_allocs.find((uintptr_t)p);
        if (it == g_allocs.end()) return;
        m = it->second;
        g_allocs.erase(it);
    }
    munmap(m.first, m.second);
}

// The kernel `name` of module `module`, or null.
const BsEmuKernel* bs_emu_find(const char* module, const char* name) {
    for (const BsEmuKernel* const* t = bs_emu_registry; *t; ++t)
        for (const BsEmuKernel* k = *t; k->name; ++k)
            if (!strcmp(k->module, module) && !strcmp(k->name, name)) return k;
    return nullptr;
}

// How many kernels the registry holds for `module`.
size_t bs_emu_module_kernels(const char* module) {
    size_t n = 0;
    for (const BsEmuKernel* const* t = bs_emu_registry; *t; ++t)
        for (const BsEmuKernel* k = *t; k->name; ++k) n += !strcmp(k->module, module);
    return n;
}

size_t bs_emu_dyn_smem_cap(const BsEmuKernel* k) { return k->dyn_smem ? k->dyn_smem_cap : 0; }

// Runs a launch to completion. Returns 0, or 1 with a sentence in `err`.
int bs_emu_launch(const BsEmuKernel* k, const unsigned* grid, const unsigned* block, unsigned smem, void** args,
                  char* err, size_t errlen) {
    auto report = [&](const std::string& m) {
        snprintf(err, errlen, "%s", m.c_str());
        return 1;
    };
    size_t nthreads = (size_t)block[0] * block[1] * block[2];
    if (nthreads == 0 || nthreads > 1024 || block[2] > 64)
        return report("block of " + std::to_string(block[0]) + "x" + std::to_string(block[1]) + "x" +
                      std::to_string(block[2]) + " threads: CUDA allows 1 to 1024 (z at most 64)");
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || grid[1] > 65535 || grid[2] > 65535)
        return report("grid of " + std::to_string(grid[0]) + "x" + std::to_string(grid[1]) + "x" + std::to_string(grid[2]) +
                      " blocks: each dimension must be at least 1 (y and z at most 65535)");
    unsigned char* dyn = k->dyn_smem ? k->dyn_smem() : nullptr;
    if (smem > 0 && smem > bs_emu_dyn_smem_cap(k) && dyn)
        return report(std::to_string(smem) + " bytes of dynamic shared memory asked, over the emulator's " +
                      std::to_string(k->dyn_smem_cap));
    if (!t_fiber_pool) t_fiber_pool = new std::vector<Fiber>();
    std::vector<Fiber>& fs = *t_fiber_pool;
    while (fs.size() < nthreads) {
        fs.emplace_back();
        fs.back().stack = new_stack();
        if (!fs.back().stack) {
            fs.pop_back();
            return report("cannot map a fiber stack for the emulator");
        }
    }
    Launch launch{k, args, &fs, std::string(), false};
    Launch* saved = t_launch;
    t_launch = &launch;
    Order order = order_from_env();
    t_block_dim = uint3{block[0], block[1], block[2]};
    t_grid_dim = uint3{grid[0], grid[1], grid[2]};
    size_t nblocks = (size_t)grid[0] * grid[1] * grid[2];
    std::vector<int> blocks;
    if (order.mode != 0) {
        blocks.resize(nblocks);
        order.arrange(blocks);
    }
    for (size_t b = 0; b < nblocks; ++b) {
        size_t id = order.mode != 0 ? (size_t)blocks[b] : b;
        t_block_idx = uint3{(unsigned)(id % grid[0]), (unsigned)(id / grid[0] % grid[1]), (unsigned)(id / ((size_t)grid[0] * grid[1]))};
        // Unwritten shared memory reads as NaN; bytes past the launch's size must stay untouched.
        if (dyn) memset(dyn, 0xff, k->dyn_smem_cap);
        bool ok = run_block(fs, (int)nthreads, order);
        if (ok && dyn)
            for (size_t i = smem; i < k->dyn_smem_cap; ++i)
                if (dyn[i] != 0xff) {
                    fail("block (" + std::to_string(t_block_idx.x) + "," + std::to_string(t_block_idx.y) + "," +
                         std::to_string(t_block_idx.z) + ") wrote dynamic shared memory at byte " + std::to_string(i) +
                         ", past the " + std::to_string(smem) + " bytes the launch asked for");
                    ok = false;
                    break;
                }
        if (!ok) break;
    }
    t_launch = saved;
    if (launch.failed) return report(launch.error);
    return 0;
}

}  // extern "C"
