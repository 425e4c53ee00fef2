#!/usr/bin/env bash
# Compares builds on a shared, noisy machine: runs `cortex bench` with each of two or more cortex binaries
# in turn, ROUNDS times over, and prints for every weight type and test each binary's best tok/s and best
# fraction of the limit, and each binary's best fraction over the first's. Each run measures the
# machine's limits beside its tests, so the fraction is what compares across runs; on a machine shared
# with other tenants absolute figures move 10-30 % within minutes, and only runs taken in turn, many
# times, tell a change of a few percent from the machine's state.
# Usage: bench/compare_builds.sh [-n ROUNDS] CORTEX_A CORTEX_B [...] [-- BENCH_OPTIONS...]
#   ROUNDS (default 3): how many times each binary runs. BENCH_OPTIONS go to every `cortex bench` run
#   (default: --rounds 1), e.g. -- --dtype q8_0 --batch-sizes 8,16 --prompt-lengths 0 --decode-tokens 0
set -euo pipefail
rounds=3
if [ "${1:-}" = "-n" ]; then
  rounds="$2"
  shift 2
fi
bins=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  bins+=("$1")
  shift
done
[ "${1:-}" = "--" ] && shift
opts=("$@")
[ ${#opts[@]} -eq 0 ] && opts=(--rounds 1)
if [ ${#bins[@]} -lt 2 ] || ! [[ "$rounds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [-n ROUNDS] CORTEX_A CORTEX_B [...] [-- BENCH_OPTIONS...]" >&2
  exit 2
fi
for b in "${bins[@]}"; do
  [ -x "$b" ] || { echo "$b: not an executable" >&2; exit 2; }
done
command -v jq >/dev/null || { echo "jq is needed (scripts/setup.sh installs it)" >&2; exit 2; }

results="$(mktemp)"
trap 'rm -f "$results"' EXIT
for ((r = 1; r <= rounds; ++r)); do
  for i in "${!bins[@]}"; do
    echo "round $r/$rounds: ${bins[$i]}" >&2
    # One object per weight type (an array of them when there are several).
    "${bins[$i]}" bench --json "${opts[@]}" |
      jq -r --arg i "$i" 'if type == "array" then .[] else . end | .dtype as $d | .figures[] |
                          "\($i) \($d) \(.name) \(.tokens_per_second) \(.fraction_of_limit)"' >>"$results"
  done
done

printf '%s\n' "${bins[@]}" | awk '{ printf "build %c: %s\n", 65 + NR - 1, $0 }'
awk -v n="${#bins[@]}" -v rounds="$rounds" '
  {
    key = $2 " " $3
    if (!(key in seen)) { seen[key] = 1; order[++keys] = key }
    k = $1 SUBSEP key
    if (!(k in tps) || $4 > tps[k]) tps[k] = $4
    if (!(k in frac) || $5 > frac[k]) frac[k] = $5
  }
  END {
    printf "best of %d runs each: tok/s (fraction of the limit)\n", rounds
    printf "%-6s %-8s", "type", "test"
    for (i = 0; i < n; ++i) printf " %20s", "build " sprintf("%c", 65 + i)
    for (i = 1; i < n; ++i) printf " %9s", sprintf("%c / A", 65 + i)
    printf "\n"
    for (j = 1; j <= keys; ++j) {
      split(order[j], part, " ")
      printf "%-6s %-8s", part[1], part[2]
      for (i = 0; i < n; ++i) {
        k = i SUBSEP order[j]
        printf " %20s", (k in tps) ? sprintf("%.1f (%.0f%%)", tps[k], 100 * frac[k]) : "-"
      }
      for (i = 1; i < n; ++i) {
        k = i SUBSEP order[j]; a = 0 SUBSEP order[j]
        printf " %9s", (k in frac && a in frac && frac[a] > 0) ? sprintf("%.2fx", frac[k] / frac[a]) : "-"
      }
      printf "\n"
    }
  }' "$results"
