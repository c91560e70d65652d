#!/bin/sh
# CMAKE_CROSSCOMPILING_EMULATOR for the `windows` preset: runs one .exe
# under Wine, quietly, in a Wine prefix private to the build tree.
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
exec "$wine" "$@"
