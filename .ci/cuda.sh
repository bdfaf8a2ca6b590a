#!/usr/bin/env bash
# The CUDA part of CI, on a machine without a GPU: nvcc from pinned wheels (unless NVCC is set),
# lints and test builds with the `cuda` feature (build.rs compiles every kernel), a check that
# each cuda/*.cu became PTX and a cubin, and the parity tests, which skip with their reason.
set -euo pipefail
cd "$(dirname "$0")/.."
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
