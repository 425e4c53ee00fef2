#!/usr/bin/env bash
# Sets cortex beside llama.cpp on this machine, on the same GGUF files: each round runs llama.cpp's own
# benchmarks and `cortex bench` in turn for every weight type, and prints for every test both engines'
# median tok/s and the median of the rounds' ratios (cortex / llama.cpp, each round's pair measured
# seconds to a minute apart: on a shared machine absolute figures move 10-30 % within minutes, and
# single-stream decode, bound by the bandwidth the machine gives at the moment, the most), with the
# lowest and highest of them.
#
# The tests, alike in both engines (2 threads unless THREADS is set, F16 KV cache, llama.cpp's default):
#   pp512    a 512-token prompt             llama-bench -p 512      cortex bench --prompt-lengths 512
#            (half the model's positions if it has fewer than 512: 128 for the tiny shape)
#   tg128    128 single-stream decode steps llama-bench -n 128      cortex bench --decode-tokens 128
#   batch32  32 sequences (BATCH), 16-token prompts, 64 decode steps: llama-batched-bench -npp 16 -ntg 64
#            -npl 32 (its S_TG, generated tokens over generation time) and cortex bench --batch-sizes 32
# With --serve CLIENTS (comma-separated, e.g. 8,32), servers too: llama-server with one slot per client
# (-np CLIENTS, 1024 positions each: its best case) and `cortex serve`, each started in turn on the same
# file, warmed with one short request per client, then `cortex bench serve` (REQUESTS per client, default
# 3, of MAX_TOKENS tokens, default 64; llama.cpp's /completion and our /v1/completions, both streamed).
#
# llama.cpp: built once into LLAMA_CPP_DIR (default ~/.cache/cortex/llama.cpp, ~5 minutes on two cores)
# from the llama.cpp source that the npm package node-llama-cpp carries (NODE_LLAMA_CPP_VERSION, default
# 3.22.1), for this machine's CPU (GGML_NATIVE), with llama-bench, llama-batched-bench and llama-server.
# The models: `cortex model random --format gguf` (GPT-2 124M by default, SHAPE), written once per type.
#
# Usage: bench/beside_llama_cpp.sh [-n ROUNDS] [--types f32,f16,q8_0] [--serve CLIENTS] CORTEX
#   ROUNDS: default 3. PORT: default 18091. SHAPE: tiny, 124M, 355M, 774M or 1.5B.
set -euo pipefail
usage() {
  echo "usage: $0 [-n ROUNDS] [--types f32,f16,q8_0] [--serve CLIENTS] CORTEX" >&2
  exit 2
}
rounds=3
types="f32,f16,q8_0"
clients=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n | --types | --serve)
      [ $# -ge 2 ] || usage
      case "$1" in -n) rounds="$2" ;; --types) types="$2" ;; --serve) clients="$2" ;; esac
      shift 2
      ;;
    -*) usage ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || usage
cortex="$1"
[ -x "$cortex" ] || { echo "$cortex: not an executable" >&2; exit 2; }
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || usage
[[ "$types" =~ ^(f32|f16|q8_0)(,(f32|f16|q8_0))*$ ]] || usage
[ -z "$clients" ] || [[ "$clients" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || usage
for tool in jq npm git cmake curl; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (scripts/setup.sh installs it)" >&2; exit 2; }
done

dir="${LLAMA_CPP_DIR:-$HOME/.cache/cortex/llama.cpp}"
version="${NODE_LLAMA_CPP_VERSION:-3.22.1}"
threads="${THREADS:-2}"
shape="${SHAPE:-124M}"
port="${PORT:-18091}"
batch="${BATCH:-32}"
bin="$dir/build/bin"

# llama.cpp's tools, built from the source bundle in node-llama-cpp's npm package (the package's own
# install script, which would fetch prebuilt binaries, is not run).
if [ ! -x "$bin/llama-bench" ] || [ ! -x "$bin/llama-batched-bench" ] || [ ! -x "$bin/llama-server" ]; then
  echo "building llama.cpp (node-llama-cpp $version's source) in $dir" >&2
  mkdir -p "$dir/npm"
  npm install --prefix "$dir/npm" --no-audit --no-fund --silent --ignore-scripts --omit=optional \
    "node-llama-cpp@$version" >&2
  rm -rf "$dir/src" "$dir/build"
  git clone -q "$dir/npm/node_modules/node-llama-cpp/llama/gitRelease.bundle" "$dir/src" 2>/dev/null
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  cmake -S "$dir/src" -B "$dir/build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=ON >"$dir/cmake.log" 2>&1 || { cat "$dir/cmake.log" >&2; exit 1; }
  cmake --build "$dir/build" -j "$(nproc)" --target llama-bench llama-batched-bench llama-server \
    >"$dir/build.log" 2>&1 || { tail -30 "$dir/build.log" >&2; exit 1; }
fi

models="$dir/models"
mkdir -p "$models"
model() { echo "$models/gpt2-$shape-$1.gguf"; }
for t in ${types//,/ }; do
  [ -f "$(model "$t")" ] ||
    "$cortex" model random --shape "$shape" --format gguf --dtype "$t" --out "$(model "$t")" >&2
done

# The prompt test's length: 512 tokens, or half the positions of a shape that has fewer than 512.
n_ctx="$("$cortex" model info --model "$(model "${types%%,*}")" | jq .n_ctx)"
prompt=$((n_ctx < 512 ? n_ctx / 2 : 512))

results="$(mktemp)"
server=""
stop_server() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
  fi
}
trap 'stop_server; rm -f "$results" "$results.log"' EXIT

# Appends "ROUND ENGINE TYPE TEST TOK/S" lines.
bench_engines() {
  local r="$1" t="$2" m
  m="$(model "$t")"
  "$bin/llama-bench" -m "$m" -t "$threads" -p "$prompt" -n 128 -r 1 -o json 2>"$results.log" |
    jq -r --arg r "$r" --arg t "$t" '.[] | "\($r) llama.cpp \($t) \(if .n_gen > 0 then "tg\(.n_gen)"
                                      else "pp\(.n_prompt)" end) \(.avg_ts)"' >>"$results" ||
    { cat "$results.log" >&2; exit 1; }
  "$bin/llama-batched-bench" -m "$m" -t "$threads" -c $((batch * 128)) -b 2048 -ub 512 -npp 16 -ntg 64 -npl "$batch" \
    --output-format jsonl 2>"$results.log" |
    jq -r --arg r "$r" --arg t "$t" 'select(.speed_tg != null) | "\($r) llama.cpp \($t) batch\(.pl) \(.speed_tg)"' \
      >>"$results" || { cat "$results.log" >&2; exit 1; }
  "$cortex" bench --model "$m" --threads "$threads" --kv-cache-dtype f16 --prompt-lengths "$prompt" \
    --decode-tokens 128 --batch-sizes "$batch" --batch-steps 64 --rounds 1 --json |
    jq -r --arg r "$r" --arg t "$t" '.figures[] | "\($r) cortex \($t) \(.name) \(.tokens_per_second)"' >>"$results"
}

# start_server READY_PATH COMMAND...: runs COMMAND (a server on $port) in the background and waits until
# READY_PATH answers.
start_server() {
  local ready="$1"
  shift
  if curl -s "http://127.0.0.1:$port/" >/dev/null 2>&1; then
    echo "port $port already answers: another server runs there (set PORT)" >&2
    exit 1
  fi
  "$@" >"$results.log" 2>&1 &
  server=$!
  for _ in $(seq 240); do
    kill -0 "$server" 2>/dev/null || { cat "$results.log" >&2; exit 1; }
    curl -sf "http://127.0.0.1:$port$ready" >/dev/null 2>&1 && return
    sleep 0.5
  done
  echo "$1: $ready not answering after 120 s" >&2
  exit 1
}

# Appends "ROUND ENGINE TYPE serveC TOK/S" lines (and "... ttftC SECONDS") for one server at $c clients.
bench_server() {
  local r="$1" engine="$2" t="$3" c="$4" api="$5"
  local url="http://127.0.0.1:$port"
  "$cortex" bench serve --url "$url" --api "$api" --clients "$c" --requests 1 --max-tokens 8 >/dev/null
  "$cortex" bench serve --url "$url" --api "$api" --clients "$c" --requests "${REQUESTS:-3}" \
    --max-tokens "${MAX_TOKENS:-64}" --json |
    jq -r --arg r "$r" --arg e "$engine" --arg t "$t" --arg c "$c" \
      'if .failed > 0 then error("\(.failed) requests failed") else
       "\($r) \($e) \($t) serve\($c) \(.tokens_per_second)\n\($r) \($e) \($t) ttft\($c) \(.ttft_p50_s)" end' \
      >>"$results"
}

for r in $(seq "$rounds"); do
  for t in ${types//,/ }; do
    echo "round $r/$rounds: $t" >&2
    bench_engines "$r" "$t"
    for c in ${clients//,/ }; do
      start_server /health "$bin/llama-server" -m "$(model "$t")" -t "$threads" -np "$c" -c $((c * 1024)) \
        --host 127.0.0.1 --port "$port"
      bench_server "$r" llama.cpp "$t" "$c" llama
      stop_server
      start_server /readyz "$cortex" serve --model "$(model "$t")" --threads "$threads" --kv-cache-dtype f16 \
        --port "$port"
      bench_server "$r" cortex "$t" "$c" openai
      stop_server
    done
  done
done

printf "%d rounds, %s threads, GPT-2 %s, F16 KV cache; the medians of the rounds (TTFT: time to the first\n" \
  "$rounds" "$threads" "$shape"
printf "streamed token, p50 of a run's requests, seconds); cortex / llama.cpp: the median of the rounds' ratios\n"
printf "(tok/s: above 1 is cortex faster; TTFT: below 1 is cortex sooner), and the lowest and highest of them\n\n"
awk '
  function median(list,    a, n, i, j, x) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { key = $3 " " $4; v[$2, key] = v[$2, key] " " $5; val[$1, $2, key] = $5
    if (!(key in seen)) { seen[key] = 1; order[++n] = key }
    rounds[$1] = 1 }
  END {
    printf "%-6s %-9s %12s %12s %18s  %s\n", "type", "test", "llama.cpp", "cortex", "cortex / llama.cpp", "rounds"
    for (i = 1; i <= n; i++) {
      key = order[i]; ratios = ""; lo = ""; hi = ""
      for (r in rounds)
        if (((r, "llama.cpp", key) in val) && ((r, "cortex", key) in val) && val[r, "llama.cpp", key] > 0) {
          x = val[r, "cortex", key] / val[r, "llama.cpp", key]
          ratios = ratios " " x
          if (lo == "" || x < lo) lo = x
          if (hi == "" || x > hi) hi = x
        }
      split(key, k, " ")
      f = k[2] ~ /^ttft/ ? "%12.3f" : "%12.1f"
      a = v["llama.cpp", key] == "" ? sprintf("%12s", "-") : sprintf(f, median(v["llama.cpp", key]))
      b = v["cortex", key] == "" ? sprintf("%12s", "-") : sprintf(f, median(v["cortex", key]))
      c = ratios == "" ? sprintf("%18s", "-") : sprintf("%17.2fx  %.2f-%.2f", median(ratios), lo, hi)
      printf "%-6s %-9s %s %s %s\n", k[1], k[2], a, b, c
    }
  }' "$results"
