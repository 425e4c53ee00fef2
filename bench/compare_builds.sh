#!/usr/bin/env bash
# Compares builds on a shared, noisy machine: runs `cortex bench` with each of two or more cortex binaries
# in turn, ROUNDS times over, and prints for every weight type and test each binary's figure, its fraction
# of the limit, and each binary's fraction over the first's. Decode tests are measured beside limits read
# between their own steps, so each run's fraction is its own and a binary's is the mean of its runs';
# prompt tests are set beside the best limit of the binary's runs. On a machine shared with other tenants
# absolute figures move 10-30 % within minutes, and only runs taken in turn, many times, tell a change of
# a few percent from the machine's state.
# Usage: bench/compare_builds.sh [-n ROUNDS] [--serve CLIENTS] CORTEX_A CORTEX_B [...] [-- OPTIONS...]
#   ROUNDS (default 3): how many times each binary runs. OPTIONS go to every `cortex bench` run
#   (default: --rounds 1), e.g. -- --dtype q8_0 --batch-sizes 8,16 --prompt-lengths 0 --decode-tokens 0
#   --serve CLIENTS (comma-separated client counts, e.g. 8,32): compare servers instead. Each round
#   starts `cortex serve OPTIONS --port PORT` with each binary in turn (OPTIONS must name the model:
#   -- --model PATH [--dtype ...]), warms it with one short request per client, runs `cortex bench serve`
#   at each client count (REQUESTS per client, default 3, of MAX_TOKENS tokens, default 64) and stops
#   it; the table gives each binary's best aggregate tok/s and their ratio. PORT: default 18090.
set -euo pipefail
usage() {
  echo "usage: $0 [-n ROUNDS] [--serve CLIENTS] CORTEX_A CORTEX_B [...] [-- OPTIONS...]" >&2
  exit 2
}
rounds=3
clients=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n | --serve)
      [ $# -ge 2 ] || usage
      if [ "$1" = -n ]; then rounds="$2"; else clients="$2"; fi
      shift 2
      ;;
    *) break ;;
  esac
done
bins=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  bins+=("$1")
  shift
done
[ "${1:-}" = "--" ] && shift
opts=("$@")
[ ${#opts[@]} -eq 0 ] && [ -z "$clients" ] && opts=(--rounds 1)
if [ ${#bins[@]} -lt 2 ] || ! [[ "$rounds" =~ ^[1-9][0-9]*$ ]] ||
  { [ -n "$clients" ] && ! [[ "$clients" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]]; }; then
  usage
fi
for b in "${bins[@]}"; do
  [ -x "$b" ] || { echo "$b: not an executable" >&2; exit 2; }
done
command -v jq >/dev/null || { echo "jq is needed (scripts/setup.sh installs it)" >&2; exit 2; }
port="${PORT:-18090}"
server=""

# Appends "BUILD TYPE TEST TOK/S LIMIT" lines for build $1's run of `cortex bench`.
bench_engine() {
  # One object per weight type (an array of them when there are several).
  "${bins[$1]}" bench --json "${opts[@]}" |
    jq -r --arg i "$1" 'if type == "array" then .[] else . end | .dtype as $d | .figures[] |
                        "\($i) \($d) \(.name) \(.tokens_per_second) \(.limit_tokens_per_second // "-")"' >>"$results"
}

# Appends "BUILD serve cCLIENTS TOK/S -" lines for a server of build $1 at each client count.
bench_server() {
  local bin="${bins[$1]}" url="http://127.0.0.1:$port" c
  if curl -s -o /dev/null "$url/"; then
    echo "port $port already answers: another server runs there (set PORT)" >&2
    return 1
  fi
  "$bin" serve "${opts[@]}" --port "$port" >"$results.server.log" 2>&1 &
  server=$!
  for ((t = 0; t < 240; ++t)); do
    kill -0 "$server" 2>/dev/null || { cat "$results.server.log" >&2; return 1; }
    curl -sf "$url/readyz" >/dev/null 2>&1 && break
    sleep 0.5
  done
  curl -sf "$url/readyz" >/dev/null || { echo "$bin serve: not ready after 120 s" >&2; return 1; }
  for c in ${clients//,/ }; do
    "$bin" bench serve --url "$url" --clients "$c" --requests 1 --max-tokens 8 >/dev/null
    "$bin" bench serve --url "$url" --clients "$c" --requests "${REQUESTS:-3}" --max-tokens "${MAX_TOKENS:-64}" \
      --json | jq -r --arg i "$1" 'if .failed > 0 then error("\(.failed) of \(.requests) requests failed")
                                   else "\($i) serve c\(.clients) \(.tokens_per_second) -" end' >>"$results"
  done
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
}

results="$(mktemp)"
trap 'if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
      rm -f "$results" "$results.server.log"' EXIT
for ((r = 1; r <= rounds; ++r)); do
  for i in "${!bins[@]}"; do
    echo "round $r/$rounds: ${bins[$i]}" >&2
    if [ -n "$clients" ]; then bench_server "$i"; else bench_engine "$i"; fi
  done
done

printf '%s\n' "${bins[@]}" | awk '{ printf "build %c: %s\n", 65 + NR - 1, $0 }'
awk -v n="${#bins[@]}" -v rounds="$rounds" '
  {
    key = $2 " " $3
    if (!(key in seen)) { seen[key] = 1; order[++keys] = key }
    k = $1 SUBSEP key
    if ($3 ~ /^(tg|batch)/ && $5 != "-") {
      # A decode test: its limits were measured between its own steps, so the fraction of each run
      # is its own; the figures of a build are the means of those of its runs.
      decode[k] = 1; runs[k]++; sum_tps[k] += $4; sum_frac[k] += ($5 > 0 ? $4 / $5 : 0)
      next
    }
    if (!(k in tps) || $4 > tps[k]) tps[k] = $4
    if ($5 != "-" && (!(k in limit) || $5 > limit[k])) limit[k] = $5
  }
  END {
    # Prompt tests: the best tok/s over the best limit, each the best of the runs of a build (as the
    # bench takes both as the best of its rounds): the best of the fractions of the runs would pick the
    # run whose test met a faster moment of the machine than its limit did.
    for (k in limit) frac[k] = limit[k] > 0 ? tps[k] / limit[k] : 0
    for (k in decode) { tps[k] = sum_tps[k] / runs[k]; frac[k] = sum_frac[k] / runs[k] }
    printf "%d runs each: decode tests, the mean tok/s (and the mean fraction, each run over its own limit); prompt tests, the best tok/s (over the best limit); B / A: of the fractions (of tok/s for a server)\n", rounds
    printf "%-6s %-8s", "type", "test"
    for (i = 0; i < n; ++i) printf " %20s", "build " sprintf("%c", 65 + i)
    for (i = 1; i < n; ++i) printf " %9s", sprintf("%c / A", 65 + i)
    printf "\n"
    for (j = 1; j <= keys; ++j) {
      split(order[j], part, " ")
      printf "%-6s %-8s", part[1], part[2]
      for (i = 0; i < n; ++i) {
        k = i SUBSEP order[j]
        cell = "-"
        if (k in frac) cell = sprintf("%.1f (%.0f%%)", tps[k], 100 * frac[k])
        else if (k in tps) cell = sprintf("%.1f", tps[k])
        printf " %20s", cell
      }
      for (i = 1; i < n; ++i) {
        k = i SUBSEP order[j]; a = 0 SUBSEP order[j]
        ratio = -1
        if ((k in frac) && (a in frac) && frac[a] > 0) ratio = frac[k] / frac[a]
        else if (!(k in frac) && (k in tps) && (a in tps) && tps[a] > 0) ratio = tps[k] / tps[a]
        printf " %9s", (ratio >= 0 ? sprintf("%.2fx", ratio) : "-")
      }
      printf "\n"
    }
  }' "$results"
