#!/usr/bin/env bash
# Model download throughput: one connection per file against several ranged connections, from s3rver on
# loopback behind the SigV4-checking front (tests/storage/sigv4_proxy.py). The front can limit each
# connection's rate (THROTTLE bytes/s, default 25 MB/s), as a remote store's per-connection bandwidth is
# limited; THROTTLE=0 measures loopback without a limit.
# Usage: bash bench/model_download.sh [MODEL_DIR]   (default: the 124M test model of build/)
# Needs: scripts/setup.sh, a release build in build/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
model="${1:-$root/build/test-models/124M}"
throttle="${THROTTLE:-25000000}"
cortex="$root/build/src/cli/cortex"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
s3_port=$(port)
mkdir -p "$work/data"
node "$root/.deps/node_modules/s3rver/bin/s3rver.js" -d "$work/data" -a 127.0.0.1 -p "$s3_port" --silent >/dev/null 2>&1 &
/usr/bin/python3 "$root/tests/storage/sigv4_proxy.py" --port-file "$work/front.port" \
  --upstream "127.0.0.1:$s3_port" --access-key AKIDBENCH --secret-key bench-secret --throttle "$throttle" \
  2>/dev/null &
for _ in $(seq 100); do [ -s "$work/front.port" ] && break; sleep 0.1; done
aws_s3rver=(env AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1
            /usr/bin/aws --endpoint-url "http://127.0.0.1:$s3_port")
"${aws_s3rver[@]}" s3 mb s3://bench >/dev/null
"${aws_s3rver[@]}" s3 cp --recursive --only-show-errors "$model" s3://bench/model/
bytes=$(du -sb "$model" | cut -f1)

export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$(cat "$work/front.port")"
echo "model: $model ($((bytes / 1000000)) MB); per-connection limit: ${throttle} bytes/s (0: none)"
for connections in 1 4 1 4; do
  export CORTEX_HOME="$work/home-$connections-$RANDOM" CORTEX_DOWNLOAD_CONNECTIONS=$connections
  start=$(date +%s.%N)
  "$cortex" pull s3://bench/model >/dev/null 2>&1
  end=$(date +%s.%N)
  python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'connections {sys.argv[3]}: {s:6.2f} s  {int(sys.argv[4])/s/1e6:7.1f} MB/s')" \
    "$start" "$end" "$connections" "$bytes"
done
