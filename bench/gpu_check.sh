#!/usr/bin/env bash
# The trainer's GPU check: one table of real tokens/s, MFU and peak memory for the Qwen2.5-0.5B
# and 1.5B shapes, cgd.train (packed varlen, eager and compiled) vs the stock padded loop, all in
# the same run. Random init from a config: nothing is downloaded. About 5 minutes on one H100/H200
# (bounded at 8 by the timeout below); without a GPU it runs the tiny shape on CPU as a smoke test.
#
#   bash bench/gpu_check.sh            # GPU 0 (CUDA_VISIBLE_DEVICES to pick another)
#   bash bench/gpu_check.sh --shape tiny --device cpu   # any bench option overrides the defaults
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$PY" - <<'PYEOF'
import importlib.util, torch, transformers
cuda = torch.cuda.is_available()
print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
      f"CUDA {torch.version.cuda if cuda else 'none'}, "
      f"GPU {torch.cuda.get_device_name() if cuda else 'none'}, "
      f"flash-attn {'yes' if importlib.util.find_spec('flash_attn') else 'no'}, "
      f"torch varlen {'yes' if importlib.util.find_spec('torch.nn.attention.varlen') else 'no'}")
PYEOF
if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  defaults=(--shape 0.5b,1.5b --device cuda --steps 6 --warmup-steps 2
            --loops stock,ours,ours+compile --micro-batch-rows 2)
else
  echo "no CUDA device: CPU fallback (tiny shape, correctness smoke test, no figures to report)"
  defaults=(--shape tiny --device cpu --steps 2 --warmup-steps 1 --tokens-per-step 2048
            --loops stock,ours)
fi
exec timeout 470 "$PY" bench/train_throughput.py "${defaults[@]}" "$@"
