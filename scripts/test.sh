#!/usr/bin/env bash
# Runs every test duct has: native, asan (ASan+UBSan), tsan
# (ThreadSanitizer: unit, transport, e2e, fault, load), windows (mingw-w64
# build, tests under Wine) and the bounded fuzz runs. Installs missing
# dependencies first (scripts/deps.sh). Stops at the first failing preset.
set -euo pipefail
cd "$(dirname "$0")/.."

presets=(default asan tsan windows fuzz)
[ $# -gt 0 ] && presets=("$@")
# The Windows sources are fetched only when the windows preset runs.
case " ${presets[*]} " in
  *" windows "*) bash scripts/deps.sh --windows ;;
  *) bash scripts/deps.sh ;;
esac
for p in "${presets[@]}"; do
  echo "=== preset $p: configure, build, test"
  cmake --preset "$p" >/dev/null
  cmake --build --preset "$p" -- --no-print-directory
  if [ "$p" = windows ]; then
    # One wineserver for the whole run (see cmake/wine-run.sh).
    cmake/wine-run.sh --server-start
    trap 'cmake/wine-run.sh --server-stop' EXIT
    ctest --preset "$p"
    cmake/wine-run.sh --server-stop
    trap - EXIT
  else
    ctest --preset "$p"
  fi
done
echo "=== all presets passed: ${presets[*]}"
