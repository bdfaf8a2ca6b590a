#!/usr/bin/env bash
# The CUDA part of CI, on a machine without a GPU:
# 1. the kernels on the CPU emulator (feature `cuda-emu`, no nvcc): lints, the emulator's
#    self-tests and every CUDA test for real, under two thread/block orders (forward and
#    shuffled), with skips turned into failures and a synchronised check after every launch;
#    then `brainsynth audit-kernels` (the same op cases, as users run them) in a third order
#    (reverse) and `brainsynth bench-kernels` on one op (a smoke run: emulator timings mean
#    nothing);
# 2. nvcc from pinned wheels (unless NVCC is set), lints and test builds with the `cuda` feature
#    (build.rs compiles every kernel), a check that each cuda/*.cu became PTX and a cubin, and
#    the parity tests, which skip with their reason (no driver here).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== clippy --features cuda-emu"
cargo clippy --features cuda-emu --all-targets -- -D warnings
for order in forward shuffle; do
  echo "== CUDA tests on the emulator, $order order"
  BRAINSYNTH_EMU_ORDER=$order BRAINSYNTH_REQUIRE_GPU=1 BRAINSYNTH_CUDA_SYNC=1 \
    cargo test --release --features cuda-emu --lib backend::cuda
  BRAINSYNTH_EMU_ORDER=$order BRAINSYNTH_REQUIRE_GPU=1 BRAINSYNTH_CUDA_SYNC=1 \
    cargo test --release --features cuda-emu --test cuda_parity --test cuda_parity_models --test cuda_allocator \
      --test cuda_smem_limit --test cuda_upload_cache --test cuda_kernel_cmds --test cuda_generators
done
echo "== brainsynth audit-kernels and bench-kernels on the emulator, reverse order"
BRAINSYNTH_EMU_ORDER=reverse BRAINSYNTH_CUDA_SYNC=1 \
  cargo run --release --features cuda-emu --bin brainsynth -- audit-kernels
BRAINSYNTH_EMU_ORDER=reverse cargo run --release --features cuda-emu --bin brainsynth -- bench-kernels --op winattn

if [[ -z ${NVCC:-} ]]; then
  NVCC=$(bash .ci/nvcc-venv.sh | tail -n 1)
fi
export NVCC

echo "== clippy --features cuda"
cargo clippy --features cuda --all-targets -- -D warnings

echo "== test build --features cuda"
cargo test --features cuda --no-run

echo "== every kernel file compiled to PTX (compute_80) and cubin"
out=$(ls -td target/debug/build/brainsynth-*/out/ | while read -r d; do [[ -f $d/cuda_modules.rs ]] && echo "$d" && break; done)
for cu in cuda/*.cu; do
  stem=$(basename "$cu" .cu)
  for ext in ptx cubin; do
    [[ -s $out/$stem.$ext ]] || { echo "missing $out/$stem.$ext"; exit 1; }
  done
  grep -q '^\.target sm_80' "$out/$stem.ptx" || { echo "$stem.ptx does not target sm_80"; exit 1; }
done

echo "== CUDA parity tests (they skip, printing why, when no GPU is present)"
cargo test --features cuda --test cuda_parity -- --nocapture --test-threads=1 2>&1 | grep -E 'skipping|test result'
cargo test --features cuda --test cuda_parity_models -- --nocapture --test-threads=1 2>&1 | grep -E 'skipping|test result'

echo "== CUDA benches build"
cargo bench --features cuda --bench cuda_kernels --no-run

echo "== registers, spills and shared memory per kernel (ptxas -v, sm_90)"
for cu in cuda/*.cu; do
  "$NVCC" -std=c++17 -Icuda -arch=sm_90 --cubin -o /dev/null -Xptxas -v "$cu" 2>&1 \
    | awk '/Compiling entry function/{split($0, a, "\047"); name=a[2]} /Used [0-9]+ registers/{print name ": " $0} /spill/ && !/0 bytes spill stores, 0 bytes spill loads/{print name ": " $0}' \
    | sed 's/ptxas info *: //'
done
