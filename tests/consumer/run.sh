#!/bin/sh
# Runs a built consumer: starts inventory-server, waits for "ready", runs
# inventory-client (real calls, every field checked), stops the server.
#   run.sh BINDIR [EMULATOR]
# EMULATOR (cmake/wine-run.sh for Windows builds) runs each program.
set -eu
bin=$1 emu=${2:-}
exe=
[ -z "$emu" ] || exe=.exe
addr="duct-consumer-$$"
out=$(mktemp)
trap 'kill "$server" 2>/dev/null || true; rm -f "$out"' EXIT
$emu "$bin/inventory-server$exe" "$addr" >"$out" 2>&1 &
server=$!
# Wait for the server's own word that it listens; bounded, not a guess.
i=0
until grep -q ready "$out"; do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "run.sh: inventory-server exited early:"; cat "$out"; exit 1
  fi
  i=$((i + 1))
  [ $i -lt 600 ] || { echo "run.sh: no 'ready' from inventory-server in 60 s"; cat "$out"; exit 1; }
  sleep 0.1
done
cat "$out"
$emu "$bin/inventory-client$exe" "$addr"
echo "run.sh: client ok"
