#!/usr/bin/env bash
# Replica memory: two `cortex serve` processes of one GGUF model, each given the same load, then each
# process's memory from /proc: its RSS split into the model file's mapped pages and the rest (anonymous:
# KV cache, scratch activations, code and libraries), and how the model's pages are shared (Pss is RSS
# with each shared page divided among the processes that map it: two replicas sharing every weight page
# show Pss ≈ half the file).
# Usage: bench/replica_memory.sh [MODEL.gguf|MODEL_FOLDER] [DTYPE] [KV_CACHE_DTYPE]
#   default model: a random GPT-2 124M written as a Q8_0 GGUF file (once, under $CORTEX_HOME/models);
#   DTYPE (f32|f16|q8_0) is passed as --dtype: a type other than the file's converts on load, into the
#   converted-weights file under $CORTEX_HOME/cache/converted that the first replica writes and both map
#   (its pages count as the weights' here), or with CONVERTED_CACHE=off into memory of each process's own.
#   KV_CACHE_DTYPE (f32|f16) is passed as --kv-cache-dtype.
#   CORTEX=path/to/cortex picks the binary (default: build/src/cli/cortex).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cortex="${CORTEX:-$root/build/src/cli/cortex}"
home="${CORTEX_HOME:-$HOME/.cortex}"
model="${1:-$home/models/random-gpt2-124M-q8_0.gguf}"
dtype="${2:-}"
kv_dtype="${3:-}"
if [ ! -e "$model" ]; then
  mkdir -p "$(dirname "$model")"
  "$cortex" model random --shape 124M --format gguf --dtype q8_0 --out "$model" >/dev/null
fi
model="$(realpath "$model")"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for i in 1 2; do
  "$cortex" serve --model "$model" ${dtype:+--dtype "$dtype"} ${CONVERTED_CACHE:+--converted-cache "$CONVERTED_CACHE"} ${kv_dtype:+--kv-cache-dtype "$kv_dtype"} --port 0 --port-file "$work/port$i" --threads 1 \
    --max-concurrency 8 2>"$work/log$i" &
  pids+=($!)
done
for i in 1 2; do
  for _ in $(seq 600); do
    if [ -s "$work/port$i" ] && curl -sf "http://127.0.0.1:$(cat "$work/port$i")/readyz" >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
done
# The same load on each: 8 concurrent requests of 64 tokens (8 sequences of ~70 positions in the cache).
for i in 1 2; do
  "$cortex" bench serve --url "http://127.0.0.1:$(cat "$work/port$i")" --clients 8 --requests 1 \
    --max-tokens 64 >/dev/null
done
"$cortex" model info --model "$model" >"$work/info.json"
# The KV cache's type as the replica reports it (without --kv-cache-dtype it follows the weights' type).
kv_dtype="$(curl -sf "http://127.0.0.1:$(cat "$work/port1")/signature" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["model"]["kv_cache_dtype"])')"
INFO="$work/info.json" MODEL="$model" CONVERTED="$home/cache/converted/" KV_DTYPE="$kv_dtype" python3 - "${pids[@]}" <<'PY'
import json, math, os, sys

info = json.load(open(os.environ["INFO"]))
# The KV cache the load needs at most: 8 sequences of 2 prompt + 64 generated positions, in blocks of
# BLOCK positions (KvCache::kBlockTokens) × layers × (key, value) × n_embd values of 4 bytes (2 for an
# F16 cache); blocks once allocated stay with the process.
BLOCK = 64
value_bytes = 2 if os.environ["KV_DTYPE"] == "f16" else 4
block_mb = info["n_layer"] * 2 * BLOCK * info["n_embd"] * value_bytes / 2**20
blocks = math.ceil(66 / BLOCK)
kv_mb = 8 * blocks * block_mb

model = os.environ["MODEL"]
if os.path.isdir(model):  # a Hugging Face folder: its weights file
    model = os.path.join(model, "model.safetensors")
file_mb = os.path.getsize(model) / 2**20

def weights(path):
    return path == model or (path.startswith(os.environ["CONVERTED"]) and path.endswith(".weights"))

def smaps(pid):
    """The weights' mappings (the model file's and a converted-weights file's, summed over their entries)
    and the whole process (smaps_rollup), in MiB."""
    fields, mapping, current = {}, {}, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and "-" in parts[0] and ":" in parts[3]:  # a mapping's header line
                current = parts[5] if len(parts) > 5 else ""
            elif weights(current) and parts[0].endswith(":") and len(parts) == 3 and parts[2] == "kB":
                mapping[parts[0][:-1]] = mapping.get(parts[0][:-1], 0) + int(parts[1]) / 1024
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0][:-1]] = int(parts[1]) / 1024
    return mapping, fields

print(f"model {model}: {file_mb:.1f} MiB")
print(f"{'replica':>8} {'RSS':>8} {'weights':>8} {'other':>8} {'weights':>10} {'weights':>10} {'PSS':>8}")
print(f"{'':>8} {'':>8} {'mapped':>8} {'':>8} {'shared':>10} {'Pss':>10} {'total':>8}   (MiB)")
for pid in sys.argv[1:]:
    m, r = smaps(pid)
    rss, mapped = r["Rss"], m.get("Rss", 0)
    shared = m.get("Shared_Clean", 0) + m.get("Shared_Dirty", 0)
    print(f"{pid:>8} {rss:8.1f} {mapped:8.1f} {rss - mapped:8.1f} {shared:10.1f} {m.get('Pss', 0):10.1f} "
          f"{r['Pss']:8.1f}")
print(f"{os.environ['KV_DTYPE']} KV cache for this load: at most {kv_mb:.1f} MiB (8 sequences x {blocks} blocks of "
      f"{block_mb:.3f} MiB); other minus that: the process's own overhead")
print("weights mapped: the resident pages of the model file and of its converted-weights file in the"
      " process; other: RSS minus them (KV cache, activations, code); weights shared: of those pages, the"
      " ones another process maps too.")
PY
