#!/usr/bin/env bash
# The main job: the seed's walkthrough. Builds cortex, writes the demo model (a GPT-2 124M with random
# weights and the real GPT-2 vocabulary; no real weights can be downloaded here) into the example project,
# deploys examples/text-generator, waits until it is live, and queries it with the seed's curl.
# With a real GPT-2 (Hugging Face folder or GGUF file), pass its path as the first argument.
# The API keeps running afterwards: `cortex delete generator` or `cortex cluster down` stop it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$root/build" -j "$(nproc)" --target cortex
export PATH="$root/build/src/cli:$PATH"
project="$root/examples/text-generator"
if [ -n "${1:-}" ]; then
  # A copy of the example whose model is the one given.
  model="$(realpath "$1")"
  project="$(mktemp -d)"
  sed "s|^  model: model\$|  model: $model|" "$root/examples/text-generator/cortex.yaml" >"$project/cortex.yaml"
elif [ ! -f "$project/model/model.safetensors" ]; then
  cortex model random --shape 124M --seed 1 --out "$project/model"
fi
port="${CORTEX_GATEWAY_PORT:-8888}"
cd "$project"
run() { echo "\$ $*"; "$@"; }
run cortex deploy --wait
run cortex get
body='{"samples": [{"text": "machine learning"}]}'
echo "\$ curl http://localhost:$port/text/generator -X POST -H \"Content-Type: application/json\" -d '$body'"
curl -sS "http://localhost:$port/text/generator" -X POST -H "Content-Type: application/json" -d "$body"
echo
run cortex get generator
