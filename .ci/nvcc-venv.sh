#!/usr/bin/env bash
# Installs NVIDIA's CUDA 13.0 compiler from Python wheels into a virtual environment, so that a
# machine without a CUDA install can compile the project's kernels. Prints the nvcc path last.
# Usage: .ci/nvcc-venv.sh [VENV_DIR]      (default: $HOME/.cache/nvcc-13.0)
# Then:  export NVCC=$(.ci/nvcc-venv.sh | tail -n 1)
set -euo pipefail
venv=${1:-$HOME/.cache/nvcc-13.0}
if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
fi
# All five pinned together: unpinned, pip mixes in a newer NVVM whose PTX the 13.0 ptxas rejects.
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 \
  nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 >&2
nvcc=$(ls "$venv"/lib/python3*/site-packages/nvidia/cu13/bin/nvcc)
"$nvcc" --version | tail -n 1 >&2
echo "$nvcc"
