#!/usr/bin/env bash
# Builds duct (native preset) and runs the demo: the kv example service.
# Starts kv-server, starts a watcher (kv-client watch, a server stream) in
# the background, makes calls with kv-client, lists the server's methods
# and makes one call with the duct tool, shows the results and what
# the watcher saw, then stops the server with SIGTERM (a graceful stop,
# which also ends the watch) and checks both exited 0.
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

# A watcher: one line per change under "lang", streamed by the server.
watch_out=$(mktemp)
"$bin/kv-client" "$addr" watch lang >"$watch_out" 2>&1 &
watcher=$!
trap 'kill "$server" "$watcher" 2>/dev/null || true; rm -f "$watch_out"' EXIT
# It is in place once it sees a change: put a marker until it does.
for _ in $(seq 100); do
  "$bin/kv-client" "$addr" put lang-ready yes >/dev/null
  grep -q "put lang-ready" "$watch_out" && break
done
echo "\$ kv-client $addr watch lang   (in the background)"

run put transport "SOCK_SEQPACKET on Linux, named pipes on Windows"
run put language "C11"
run put languages "C, C++"
run get language
run list

# The duct tool: what the server offers (it describes itself), and a call
# written as JSON, with no code generated for it.
echo "\$ duct list $addr"
"$bin/duct" list "$addr"
echo "\$ duct call $addr duct.examples.kv.KeyValue/Get '{\"key\": \"language\"}'"
"$bin/duct" call "$addr" duct.examples.kv.KeyValue/Get '{"key": "language"}'
run del transport
set +e
run get transport
echo "(exit code $?: the key is gone)"
set -e

kill -TERM "$server"
wait "$server"
echo "kv-server stopped gracefully (exit code $?)"
wait "$watcher"
echo "the watcher saw (exit code $?):"
sed 's/^/  /' "$watch_out"
rm -f "$watch_out"
trap - EXIT
