#!/usr/bin/env bash
# Command-line tools the tests use besides Python, from Debian's packages:
# - docker-compose: validates docker-compose.yml without a Docker engine;
# - chromium: the headless browser the dashboard tests drive with Playwright (Playwright's own
#   browser download is not used: its CDN may be unreachable, and Debian's build works).
# Installed only where apt-get can run as root; the tests that need them skip (saying why)
# elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
# LLaMA-Factory's wheel alone (no dependencies: it pins older datasets/transformers than ours);
# tests/test_hub_export.py imports its dataset loader from it to read our dataset_info.json.
if ! ls .venv/wheels/llamafactory-*.whl >/dev/null 2>&1; then
  .venv/bin/python -m pip download -q --no-deps "llamafactory==0.9.5" -d .venv/wheels
fi
missing=()
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "tools: installing ${missing[*]} (apt)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "tools: ${missing[*]} not found and apt-get unavailable; the tests that need them will skip"
fi
