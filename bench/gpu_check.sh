#!/usr/bin/env bash
# The trainer's GPU check: real tokens/s, MFU, peak memory and the attention kernel that ran, for
# the Qwen2.5-0.5B and 1.5B shapes, cgd.train (packed varlen, eager and compiled) vs the stock
# padded loop, all in one run. Random init from a config: nothing is downloaded. About 5 minutes
# on one H100/H200, bounded at 8 by the timeout below. Each row is printed as soon as it is
# measured (a timeout keeps what was done), and OUT_DIR gets <shape>.json with every figure.
#
#   bash bench/gpu_check.sh [OUT_DIR]                 # GPU 0 (CUDA_VISIBLE_DEVICES picks another)
#   bash bench/gpu_check.sh OUT --shape tiny --device cpu   # bench options override the defaults
#
# It cannot pass by accident: it exits non-zero when a GPU is visible but torch has no CUDA, when
# any loop fails, or when a shape is unknown. Without a GPU it runs the tiny shape on the CPU as a
# smoke test and says so (no figures to report).
#
# Python: PYTHON if set, else .venv/bin/python, else `python3` only if it imports what the bench
# needs. On a machine with no registry (the lent GPU machines), use its own CUDA torch and
# transformers and add our pure-Python dependencies from wheels carried along:
#   pip install --no-deps pydantic pydantic-settings pydantic-core typing-inspection \
#       annotated-types safetensors tokenizers peft pyyaml && pip install --no-deps -e .
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/out/gpu_check}
[ $# -gt 0 ] && shift
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3
fi
if ! "$PY" -c 'import torch, transformers, peft, pydantic, cgd.train.loop' 2>/dev/null; then
  echo "gpu_check: $PY cannot import torch, transformers, peft, pydantic and cgd.train;" \
       "install them (see the comment at the top of $0) or set PYTHON" >&2
  exit 2
fi
# A GPU is visible: nvidia-smi lists one, /dev/nvidia0 exists, or CGD_GPU_VISIBLE=1 says so.
gpu_visible=0
if [ "${CGD_GPU_VISIBLE:-}" = "1" ] || [ -e /dev/nvidia0 ] \
   || { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; }; then
  gpu_visible=1
fi
"$PY" - <<'PYEOF'
import importlib.util, torch, transformers
cuda = torch.cuda.is_available()
print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
      f"CUDA {torch.version.cuda if cuda else 'none'}, "
      f"GPU {torch.cuda.get_device_name() if cuda else 'none'}, "
      f"flash-attn {'yes' if importlib.util.find_spec('flash_attn') else 'no'}, "
      f"torch varlen {'yes' if importlib.util.find_spec('torch.nn.attention.varlen') else 'no'}",
      flush=True)
PYEOF
if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  defaults=(--shape 0.5b,1.5b --device cuda --steps 6 --warmup-steps 2
            --loops stock,ours,ours+compile --micro-batch-rows 2)
elif [ "$gpu_visible" = "1" ]; then
  echo "gpu_check: a GPU is visible but torch $("$PY" -c 'import torch; print(torch.__version__)')" \
       "has no CUDA: install a CUDA build of torch (or set PYTHON to one); nothing measured" >&2
  exit 3
else
  echo "no GPU: CPU fallback (tiny shape, correctness smoke test, no figures to report)"
  defaults=(--shape tiny --device cpu --steps 2 --warmup-steps 1 --tokens-per-step 2048
            --loops stock,ours)
fi
exec timeout 470 "$PY" bench/train_throughput.py "${defaults[@]}" --json-dir "$OUT" "$@"
