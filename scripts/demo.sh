#!/usr/bin/env bash
# The main job: build cortex, write the demo model (a GPT-2 124M with random weights and the real GPT-2
# vocabulary; no real weights can be downloaded here) and continue a prompt with it.
# With a real GPT-2 (Hugging Face folder or GGUF file), pass its path as the first argument.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$root/build" -j "$(nproc)" --target cortex
cortex="$root/build/src/cli/cortex"
model="${1:-${CORTEX_HOME:-$HOME/.cortex}/models/demo-gpt2-124M}"
if [ -z "${1:-}" ] && [ ! -f "$model/model.safetensors" ]; then
  "$cortex" model random --shape 124M --seed 1 --out "$model"
fi
echo "\$ cortex generate --model $model --prompt \"machine learning\" -n 32"
"$cortex" generate --model "$model" --prompt "machine learning" -n 32 --seed 1
