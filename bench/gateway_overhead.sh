#!/usr/bin/env bash
# Gateway overhead: the same closed-loop load (`cortex bench serve`) against one replica reached directly
# and through the gateway, interleaved in one run so that both see the same machine. Reports the
# throughput ratio at 8 streaming clients and the p50 latency each adds for short requests (1 client,
# 1 token: the latency is mostly the path, not the model).
# Usage: bench/gateway_overhead.sh [MODEL]   (default: the demo 124M model of examples/text-generator)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cortex="$root/build/src/cli/cortex"
model="$(realpath "${1:-$root/examples/text-generator/model}")"
[ -e "$model" ] || { echo "no model at $model (run scripts/demo.sh, or pass one)" >&2; exit 2; }
export CORTEX_HOME="$(mktemp -d)"
export CORTEX_GATEWAY_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
project="$CORTEX_HOME/project"
mkdir -p "$project"
cat >"$project/cortex.yaml" <<YAML
- kind: deployment
  name: bench
- kind: api
  name: generator
  model: $model
YAML
trap '"$cortex" cluster down >/dev/null 2>&1 || true; rm -rf "$CORTEX_HOME"' EXIT
"$cortex" deploy --wait "$project" >/dev/null
replica="$("$cortex" get generator -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["replicas"][0]["endpoint"])')"
gateway="http://127.0.0.1:$CORTEX_GATEWAY_PORT"
"$cortex" bench serve --url "$gateway" --model generator --clients 2 --requests 2 --max-tokens 8 >/dev/null  # warm-up
ROOT="$root" python3 - "$replica" "$gateway" <<'PY'
import json, subprocess, sys, os
replica, gateway = sys.argv[1], sys.argv[2]
def bench(url, clients, requests, tokens):
    out = subprocess.run([os.path.join(os.environ["ROOT"], "build/src/cli/cortex"), "bench", "serve", "--url", url,
                          "--model", "generator", "--clients", str(clients), "--requests", str(requests),
                          "--max-tokens", str(tokens), "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)
rounds = int(os.environ.get("ROUNDS", "4"))
ratios, added = [], []
for i in range(rounds):  # interleaved, alternating which goes first, so that drift hits both alike
    order = (("direct", replica), ("gateway", gateway)) if i % 2 == 0 else (("gateway", gateway), ("direct", replica))
    t, l = {}, {}
    for name, url in order:
        t[name] = bench(url, 8, 4, 32)["tokens_per_second"]
        l[name] = bench(url, 1, 40, 1)["latency_p50_s"]
    ratios.append(t["gateway"] / t["direct"])
    added.append((l["gateway"] - l["direct"]) * 1000)
    print(f"round {i + 1}: throughput direct {t['direct']:.1f} gateway {t['gateway']:.1f} tok/s (ratio {ratios[-1]:.3f}); "
          f"p50 latency direct {l['direct'] * 1000:.2f} gateway {l['gateway'] * 1000:.2f} ms")
median = lambda v: sorted(v)[len(v) // 2]
print(f"median over {rounds} rounds: gateway/direct throughput {median(ratios):.3f} (8 clients x 32 tokens), "
      f"added p50 latency {median(added):.2f} ms (1 client x 1 token)")
PY
