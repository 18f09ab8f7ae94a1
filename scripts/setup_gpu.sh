#!/usr/bin/env bash
# Install openrlhf-act with OpenRLHF 0.11.2's GPU stack on a CUDA node (or in docker/Dockerfile).
#
#   bash scripts/setup_gpu.sh             into the current Python (PYTHON, default python3), e.g. NVIDIA's image
#   bash scripts/setup_gpu.sh VENV_DIR    into a virtual environment there (created when missing)
#
# OpenRLHF's own order (its dockerfile/Dockerfile): vLLM, DeepSpeed and transformers first, so one resolver
# picks the PyTorch/CUDA build; then flash-attn 2.8.3 with --no-build-isolation (a source-only package whose
# build imports torch, so `pip install openrlhf[vllm]` fails under build isolation); then OpenRLHF with
# --no-deps after its other requirements; then this project, built from this checkout (it is not on PyPI).
# Needs: Linux x86_64, Python 3.10-3.12, the CUDA toolkit's nvcc (CUDA_HOME or PATH) matching torch's CUDA:
# flash-attn compiles its kernels here (tens of minutes; MAX_JOBS bounds the parallel compiles, about
# 4-8 GB of RAM each) and DeepSpeed's fused Adam and CPU Adam are prebuilt here (DS_BUILD_FUSED_ADAM=1,
# DS_BUILD_CPU_ADAM=1), so no node JIT-compiles them at the first step. Environment:
#   EXTRAS=envs               this project's extras (envs: ScienceWorld, ALFWorld, TextWorld; "" for none)
#   MAX_JOBS=8                parallel compile jobs for flash-attn and DeepSpeed
#   TORCH_CUDA_ARCH_LIST      GPU architectures to build DeepSpeed's ops for (default "8.0 9.0": A100, H100)
#   UNINSTALL_CONFLICTS=auto  1: uninstall what NVIDIA's PyTorch image ships and OpenRLHF's install breaks
#                             (xgboost transformer_engine torchao flash_attn pynvml opencv-python-headless);
#                             auto: only when installing into the current Python
# The versions below are OpenRLHF 0.11.2's pins (its Requires-Dist and [vllm] extra); tests/test_gpu_install.py
# holds them to setup.cfg's extras and to the installed OpenRLHF's metadata.
set -euo pipefail
cd "$(dirname "$0")/.."

OPENRLHF_VERSION=0.11.2
VLLM_VERSION=0.29.0
DEEPSPEED_VERSION=0.19.6
TRANSFORMERS_VERSION=5.15.0
RAY_VERSION=2.55.0
FLASH_ATTN_VERSION=2.8.3
# OpenRLHF 0.11.2's Requires-Dist other than the pins above (torch comes with vLLM).
OPENRLHF_OTHER_REQUIREMENTS=(
    accelerate aiohttp bitsandbytes datasets einops "grpcio>=1.74.0" "huggingface-hub>=1.0.0" isort jsonlines
    loralib optimum "optree>=0.15.0" packaging peft pylatexenc "pynvml>=12.0.0" sympy tensorboard torchdata
    torchmetrics tqdm transformers-stream-generator wandb wheel
)

die() {
    printf 'setup_gpu.sh: error: %s\n' "$*" >&2
    exit 2
}
step() {
    printf '\n== setup_gpu.sh: %s\n' "$*" >&2
}

PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS-envs}
export MAX_JOBS=${MAX_JOBS:-8}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0 9.0}
UNINSTALL_CONFLICTS=${UNINSTALL_CONFLICTS:-auto}
if (($# > 1)); then
    die "usage: bash scripts/setup_gpu.sh [VENV_DIR]"
fi
if [[ $UNINSTALL_CONFLICTS == auto ]]; then
    UNINSTALL_CONFLICTS=$((1 - $#))
fi

# ---- What the builds need, checked before anything is installed.
[[ $(uname -sm) == "Linux x86_64" ]] || die "OpenRLHF's GPU stack installs on Linux x86_64; this is $(uname -sm)"
if [[ -n ${CUDA_HOME:-} && -x $CUDA_HOME/bin/nvcc ]]; then
    NVCC=$CUDA_HOME/bin/nvcc
else
    NVCC=$(command -v nvcc || true)
fi
[[ -n $NVCC ]] || die "nvcc not found (set CUDA_HOME or put the CUDA toolkit's bin/ on PATH): flash-attn \
$FLASH_ATTN_VERSION and DeepSpeed's Adam ops compile CUDA code at install; NVIDIA's PyTorch image has it (docker/Dockerfile)"
export CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$NVCC")")}
if (($# == 1)); then
    [[ -x $1/bin/python ]] || "$PYTHON" -m venv "$1"
    PYTHON=$1/bin/python
fi
"$PYTHON" -c 'import sys; assert (3, 10) <= sys.version_info[:2] <= (3, 12)' 2>/dev/null ||
    die "$PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())'); OpenRLHF $OPENRLHF_VERSION ships wheels for 3.10-3.12"
PIP=("$PYTHON" -m pip --disable-pip-version-check)
printf 'setup_gpu.sh: %s, %s, MAX_JOBS=%s, TORCH_CUDA_ARCH_LIST=%s\n' "$("$PYTHON" -V)" \
    "$("$NVCC" --version | tail -n 1)" "$MAX_JOBS" "$TORCH_CUDA_ARCH_LIST" >&2

CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT

if [[ $UNINSTALL_CONFLICTS == 1 ]]; then
    step "uninstalling what NVIDIA's PyTorch image ships and OpenRLHF's stack replaces (as OpenRLHF's Dockerfile does)"
    "${PIP[@]}" uninstall -y xgboost transformer_engine torchao flash_attn pynvml opencv-python-headless || true
fi

step "1/5 vLLM $VLLM_VERSION, transformers $TRANSFORMERS_VERSION, Ray $RAY_VERSION (vLLM picks the PyTorch/CUDA build)"
"${PIP[@]}" install --upgrade pip setuptools wheel ninja packaging
"${PIP[@]}" install "vllm==$VLLM_VERSION" "transformers==$TRANSFORMERS_VERSION" "ray[default]==$RAY_VERSION"
TORCH_VERSION=$("$PYTHON" -c 'import torch; print(torch.__version__)')
"$PYTHON" -c 'import sys, torch; sys.exit(torch.version.cuda is None)' ||
    die "vLLM installed torch $TORCH_VERSION without CUDA; the GPU stack needs a CUDA build"
printf 'torch==%s\nvllm==%s\ntransformers==%s\nray==%s\n' "$TORCH_VERSION" "$VLLM_VERSION" "$TRANSFORMERS_VERSION" \
    "$RAY_VERSION" >"$CONSTRAINTS"

step "2/5 DeepSpeed $DEEPSPEED_VERSION with fused Adam and CPU Adam prebuilt (against torch $TORCH_VERSION)"
DS_BUILD_FUSED_ADAM=1 DS_BUILD_CPU_ADAM=1 "${PIP[@]}" install --no-build-isolation --no-cache-dir \
    -c "$CONSTRAINTS" "deepspeed==$DEEPSPEED_VERSION"
printf 'deepspeed==%s\n' "$DEEPSPEED_VERSION" >>"$CONSTRAINTS"

step "3/5 flash-attn $FLASH_ATTN_VERSION --no-build-isolation (compiles against torch $TORCH_VERSION; the longest step)"
"${PIP[@]}" install --no-build-isolation -c "$CONSTRAINTS" "flash-attn==$FLASH_ATTN_VERSION"
printf 'flash-attn==%s\n' "$FLASH_ATTN_VERSION" >>"$CONSTRAINTS"

step "4/5 OpenRLHF $OPENRLHF_VERSION: its other requirements, then OpenRLHF itself with --no-deps"
"${PIP[@]}" install -c "$CONSTRAINTS" "${OPENRLHF_OTHER_REQUIREMENTS[@]}"
"${PIP[@]}" install --no-deps "openrlhf==$OPENRLHF_VERSION"

step "5/5 openrlhf-act from this checkout${EXTRAS:+ [$EXTRAS]}"
"${PIP[@]}" install -c "$CONSTRAINTS" ".${EXTRAS:+[$EXTRAS]}"

step "checking the installed stack"
"$PYTHON" - <<'EOF'
import importlib.metadata as metadata

import flash_attn  # OpenRLHF's models import it at module load: every stage needs it
import openrlhf.models  # noqa: F401
import torch
from deepspeed.git_version_info import installed_ops

missing = [op for op in ("fused_adam", "cpu_adam") if not installed_ops.get(op)]
if missing:
    raise SystemExit(f"DeepSpeed was built without {missing}: the first step would JIT-compile them")
print(
    f"ready: torch {torch.__version__} (CUDA {torch.version.cuda}), flash-attn {flash_attn.__version__}, "
    + ", ".join(f"{name} {metadata.version(name)}" for name in ("vllm", "deepspeed", "openrlhf", "openrlhf-act"))
)
print("next: openrlhf-act recipe check --cluster 1x8 (docs/gpu.md)")
EOF
