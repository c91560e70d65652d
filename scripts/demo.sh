#!/usr/bin/env bash
# Builds duct (native preset) and runs the demo: the kv example service.
# Starts kv-server, makes calls with kv-client, shows the results, then
# stops the server with SIGTERM (a graceful stop) and checks it exited 0.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
echo "demo: building (preset default)"
cmake --preset default >/dev/null
cmake --build --preset default >/dev/null
bin=build/default/bin
addr="duct-demo-$$"

"$bin/kv-server" "$addr" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT

run() {
  echo "\$ kv-client $addr $*"
  "$bin/kv-client" "$addr" "$@"
}
# The first call waits (connect with retry) until the server is listening.
run put language C
run put transport "SOCK_SEQPACKET on Linux, named pipes on Windows"
run put language "C11"
run get language
run list
run del transport
set +e
run get transport
echo "(exit code $?: the key is gone)"
set -e

kill -TERM "$server"
wait "$server"
echo "kv-server stopped gracefully (exit code $?)"
trap - EXIT
