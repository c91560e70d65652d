#!/usr/bin/env bash
# Installs what duct needs on Debian 12 and, with --windows, unpacks the
# source packages the Windows cross build compiles (protobuf-c's runtime,
# cmocka and json-c) into .deps/src.
#
#   scripts/deps.sh             the packages (native build, tests, demo)
#   scripts/deps.sh --windows   the packages and the Windows sources
#   scripts/deps.sh --peers     the packages and the benchmark's peers
#                               (libgrpc++-dev protobuf-compiler-grpc
#                               libsystemd-dev dbus-daemon), for
#                               `duct-bench --peers` (docs/BENCHMARKS.md);
#                               nothing else needs them, CI never installs them
#
# Idempotent: does nothing when everything is already there. Root is
# needed only to install what is missing: with every package present, any
# user can build and test. It never downloads anything but Debian's
# packages and source packages.
set -euo pipefail
cd "$(dirname "$0")/.."

want_src=0
want_peers=0
for a in "$@"; do
  case "$a" in
    --windows) want_src=1 ;;
    --peers) want_peers=1 ;;
    *) echo "usage: scripts/deps.sh [--windows] [--peers]" >&2; exit 2 ;;
  esac
done

PKGS=(cmake make pkg-config gcc g++ protobuf-c-compiler libprotobuf-c-dev
      libprotobuf-dev protobuf-compiler libcmocka-dev libjson-c-dev gcc-mingw-w64-x86-64
      wine64 clang libclang-rt-14-dev dpkg-dev valgrind)
# Opt-in only: the default set is what CI installs, and the peers are not
# part of it (bench/peers builds nothing without them).
if [ "$want_peers" = 1 ]; then
  PKGS+=(libgrpc++-dev protobuf-compiler-grpc libsystemd-dev dbus-daemon)
fi
SRC_DIR=.deps/src

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
have_src() { compgen -G "$SRC_DIR/protobuf-c-[0-9]*/protobuf-c/protobuf-c.c" >/dev/null &&
             compgen -G "$SRC_DIR/cmocka-[0-9]*/src/cmocka.c" >/dev/null &&
             compgen -G "$SRC_DIR/json-c-[0-9]*/json_tokener.c" >/dev/null; }
need_src() { [ "$want_src" = 1 ] && ! have_src; }
# apt-get source needs no root, only apt lists that include source packages.
fetch_src() {
  echo "deps: apt-get source protobuf-c cmocka json-c -> $SRC_DIR"
  mkdir -p "$SRC_DIR"
  (cd "$SRC_DIR" && apt-get source -qq protobuf-c cmocka json-c >/dev/null 2>&1)
}

if [ ${#missing[@]} -eq 0 ] && ! need_src; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  if [ ${#missing[@]} -eq 0 ]; then
    # Only the Windows sources are missing: try as this user first.
    fetch_src && have_src && { echo "deps: all present"; exit 0; }
    echo "duct's Windows build needs Debian's source packages of protobuf-c, cmocka and json-c," >&2
    echo "and apt has no source lists yet. As root, run once:" >&2
    echo "  sudo bash scripts/deps.sh --windows" >&2
    echo "(it adds deb-src entries beside apt's binary ones and fetches the sources)," >&2
    echo "or, if deb-src entries exist: sudo apt-get update && (mkdir -p $SRC_DIR && cd $SRC_DIR && apt-get source protobuf-c cmocka json-c)" >&2
    exit 1
  fi
  echo "duct needs these Debian packages, and this script installs them only as root:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  [ "$want_src" = 0 ] || echo "then, for the Windows build: bash scripts/deps.sh --windows" >&2
  echo "Run that (or this script as root), then try again." >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if need_src; then
  # `apt-get source` needs a deb-src entry; Debian's container images ship
  # only binary ones, so mirror each deb822 binary source as a deb-src one.
  if ! grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deps: adding deb-src entries (/etc/apt/sources.list.d/duct-deb-src.sources)"
    out=/etc/apt/sources.list.d/duct-deb-src.sources
    : > "$out"
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -e "$f" ] && [ "$f" != "$out" ] && sed 's/^Types: *deb$/Types: deb-src/' "$f" >> "$out" && echo >> "$out"
    done
    if [ -f /etc/apt/sources.list ]; then
      sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > /etc/apt/sources.list.d/duct-deb-src.list
    fi
  fi
fi

echo "deps: apt-get update"
apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  # With recommends: that is the set the test suite is run against.
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if need_src; then
  fetch_src || { echo "deps: apt-get source failed; check that a deb-src entry exists" >&2; exit 1; }
fi
echo "deps: all present"
