#!/usr/bin/env bash
# Command-line tools the tests use besides Python: Debian's docker-compose client, which validates
# docker-compose.yml without a Docker engine. Installed only where apt-get can run as root; the
# compose validation test skips (saying why) elsewhere.
set -euo pipefail
if command -v docker-compose >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "tools: installing docker-compose (apt)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
else
  echo "tools: docker-compose not found and apt-get unavailable; the compose validation test will skip"
fi
