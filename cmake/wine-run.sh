#!/bin/sh
# CMAKE_CROSSCOMPILING_EMULATOR for the `windows` preset: runs one .exe
# under Wine, quietly, in a Wine prefix private to the build tree.
#
#   wine-run.sh PROGRAM.exe ARGS...   run one program
#   wine-run.sh --server-start        keep one wineserver up until --server-stop
#   wine-run.sh --server-stop
# By default a wineserver exits a few seconds after its last client; a
# program started just as it exits can fail at once with no output, which
# made a test fail now and then. scripts/test.sh therefore keeps one server
# up for the whole Windows test run.
#
# Creating a prefix takes several seconds and must not race, so the first
# caller creates it under a lock and the others wait for it.
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
: "${WINEPREFIX:=$here/build/windows/wineprefix}"
export WINEPREFIX
export WINEDEBUG="${WINEDEBUG:--all}"
# No Mono or Gecko install prompts: duct's tests need neither.
export WINEDLLOVERRIDES="${WINEDLLOVERRIDES:-mscoree,mshtml=}"
wine=$(command -v wine64 || true)
[ -n "$wine" ] || [ ! -x /usr/lib/wine/wine64 ] || wine=/usr/lib/wine/wine64
if [ -z "$wine" ]; then
  echo "wine-run: wine64 not found; install it with: apt-get install wine64" >&2
  exit 127
fi
mkdir -p "$WINEPREFIX"
if [ ! -f "$WINEPREFIX/.duct-ready" ]; then
  (
    flock 9
    if [ ! -f "$WINEPREFIX/.duct-ready" ]; then
      "$wine" wineboot --init >/dev/null 2>&1 || true
      touch "$WINEPREFIX/.duct-ready"
    fi
  ) 9>"$WINEPREFIX.lock"
fi
wineserver=$(command -v wineserver || true)
[ -n "$wineserver" ] || wineserver=/usr/lib/wine/wineserver64
case "${1:-}" in
  --server-start)
    # Replace a server that will exit on its own (e.g. wineboot's) with a
    # persistent one; detached, with no inherited output, so ctest never
    # waits on it.
    "$wineserver" -k </dev/null >/dev/null 2>&1 || true
    "$wineserver" -p </dev/null >/dev/null 2>&1
    # Wine's own services (services.exe, winedevice.exe, ...) start with the
    # first program and live as long as the server. Start them here, with
    # no inherited output: started by a test, they would hold that test's
    # output pipe open and ctest would wait for it forever.
    "$wine" wineboot </dev/null >/dev/null 2>&1 || true
    exit 0 ;;
  --server-stop)
    "$wineserver" -k </dev/null >/dev/null 2>&1 || true
    exit 0 ;;
esac
exec "$wine" "$@"
