#!/usr/bin/env bash
# Prepares a run on a GPU machine that has a driver but no Rust toolchain: builds the CUDA
# parity tests, benches and the brainsynth program here (release, kernels compiled by nvcc from
# pinned wheels) into .devicebin/ with a script to run there. On the GPU machine, from the
# repository root:
#     bash .devicebin/run.sh            # tests, `brainsynth audit-kernels`, then the benches and
#                                       # `brainsynth bench-kernels`; logs go to $OUT (or
#                                       # .devicebin/out)
#     bash .devicebin/run.sh tests      # tests and the audit only
# Set ANCHORS=path/to/torch_kernels.py to also send PyTorch's side-by-side script along.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.devicebin/' .gitignore 2>/dev/null || grep -qx '/.devicebin/' .git/info/exclude 2>/dev/null \
  || echo '/.devicebin/' >> "$(git rev-parse --git-path info/exclude)"
if [[ -z ${NVCC:-} ]]; then
  NVCC=$(bash .ci/nvcc-venv.sh | tail -n 1)
fi
export NVCC
rm -rf .devicebin && mkdir -p .devicebin

# copy the executables cargo reports (test binaries named cuda_*, the bench) as .devicebin/<name>
pick() { python3 -c 'import json, shutil, sys
kind = sys.argv[1]
for l in sys.stdin:
    m = json.loads(l)
    exe, t = m.get("executable"), m.get("target", {})
    if not exe: continue
    test = kind == "test" and m.get("profile", {}).get("test") and t["name"].startswith("cuda_")
    bench = kind == "bench" and t["kind"] == ["bench"]
    binary = kind == "bin" and t["kind"] == ["bin"] and t["name"] == "brainsynth"
    if test or bench or binary: shutil.copy(exe, ".devicebin/" + t["name"])' "$1"; }

cargo test --release --features cuda --test cuda_parity --test cuda_parity_models --test cuda_allocator \
  --test cuda_upload_cache --test cuda_generators --no-run --message-format=json | pick test
cargo bench --features cuda --bench cuda_kernels --no-run --message-format=json | pick bench
cargo build --release --features cuda --bin brainsynth --message-format=json | pick bin
strip --strip-debug .devicebin/cuda_* .devicebin/brainsynth 2>/dev/null || true
if [[ -n ${ANCHORS:-} ]]; then cp "$ANCHORS" .devicebin/; fi

cat > .devicebin/run.sh <<'RUN'
#!/usr/bin/env bash
# Runs on the GPU machine; builds nothing. Writes logs under $OUT and prints a summary last.
set -uo pipefail
out=${OUT:-.devicebin/out}; mkdir -p "$out"
nvidia-smi -L | tee "$out/gpu.txt"
status=0
# a GPU is expected here: any skip fails, and every launch is checked where it happens
export BRAINSYNTH_REQUIRE_GPU=1 BRAINSYNTH_CUDA_SYNC=1
for t in .devicebin/cuda_parity .devicebin/cuda_parity_models .devicebin/cuda_allocator .devicebin/cuda_upload_cache .devicebin/cuda_generators; do
  "$t" --test-threads=1 2>&1 | tee -a "$out/tests.log" || status=1
done
# the same op cases as the parity tests, as users run them: one row per op, exit 1 on a failure
.devicebin/brainsynth audit-kernels 2>&1 | tee "$out/audit.log" || status=1
if [[ ${1:-all} != tests ]]; then
  .devicebin/brainsynth bench-kernels 2>&1 | tee "$out/bench-kernels.log" || status=1
  .devicebin/cuda_kernels --bench --noplot 2>&1 | tee "$out/bench.log"
  if [[ -f .devicebin/torch_kernels.py ]]; then python3 .devicebin/torch_kernels.py 2>&1 | tee "$out/torch.log"; fi
fi
echo "== summary"
grep -E '^test result|FAILED|panicked' "$out/tests.log"
grep -E 'FAIL|within tolerance|^error' "$out/audit.log"
[[ -f $out/bench-kernels.log ]] && cat "$out/bench-kernels.log"
skipped=$(grep -c '^skipping\|\.\.\. skipping' "$out/tests.log" || true)
[[ $skipped == 0 ]] || { echo "$skipped tests skipped: no usable GPU (see tests.log)"; status=1; }
# one line per bench: name and median (shapes as in the anchors' table, joined by x)
[[ -f $out/bench.log ]] && awk '/^(conv3x3|modconv|gn_silu|winattn)\//{name=$1} /time:/{sub(/.*\[/, ""); split($0, a, " "); print name, a[3], a[4]}' "$out/bench.log"
exit $status
RUN
chmod +x .devicebin/run.sh
du -sh .devicebin
echo "send the working tree with .devicebin/ and run: bash .devicebin/run.sh"
