#!/usr/bin/env bash
# Builds duct (native preset) and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake --preset default >/dev/null
cmake --build --preset default >/dev/null
./build/default/bin/duct-frame-demo
