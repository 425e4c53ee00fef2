#!/usr/bin/env bash
# The whole test suite: a release build with every test, then a build under AddressSanitizer and
# UndefinedBehaviorSanitizer running every test again. Run scripts/setup.sh once first.
# Options (environment): JOBS (default: all cores), SANITIZE=0 to skip the sanitizer pass.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
jobs="${JOBS:-$(nproc)}"

run_suite() {
  local dir="$1"; shift
  cmake -S "$root" -B "$dir" -G Ninja "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  (cd "$dir" && ctest --output-on-failure -j "$jobs" --timeout 1200)
}

echo "== release build and tests (build/)"
run_suite "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo

if [ "${SANITIZE:-1}" != 0 ]; then
  echo "== AddressSanitizer + UndefinedBehaviorSanitizer build and tests (build-asan/)"
  # OpenBLAS's own threads are not instrumented; leak checking stays on for our code.
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  run_suite "$root/build-asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCORTEX_SANITIZE=ON
fi
