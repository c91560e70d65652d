#!/usr/bin/env bash
# Installs what duct needs on Debian 12 and unpacks the source packages the
# Windows cross build compiles (protobuf-c's runtime and cmocka).
# Idempotent: does nothing when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(cmake make pkg-config protobuf-c-compiler libprotobuf-c-dev libprotobuf-dev
      protobuf-compiler libcmocka-dev gcc-mingw-w64-x86-64 wine64 clang
      libclang-rt-14-dev dpkg-dev valgrind)
SRC_DIR=.deps/src

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
have_src() { compgen -G "$SRC_DIR/protobuf-c-[0-9]*/protobuf-c/protobuf-c.c" >/dev/null &&
             compgen -G "$SRC_DIR/cmocka-[0-9]*/src/cmocka.c" >/dev/null; }

if [ ${#missing[@]} -eq 0 ] && have_src; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "duct needs these Debian packages, and this script installs them only as root:" >&2
  [ ${#missing[@]} -eq 0 ] || echo "  sudo apt-get install -y ${missing[*]}" >&2
  have_src || echo "  and the sources for the Windows build (needs a deb-src line in apt's sources):
  mkdir -p $SRC_DIR && (cd $SRC_DIR && apt-get source protobuf-c cmocka)" >&2
  echo "Run those, or run this script as root, then try again." >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
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

echo "deps: apt-get update"
apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  # With recommends: that is the set the test suite is run against.
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! have_src; then
  echo "deps: apt-get source protobuf-c cmocka -> $SRC_DIR"
  mkdir -p "$SRC_DIR"
  (cd "$SRC_DIR" && apt-get source -qq protobuf-c cmocka >/dev/null 2>&1) || {
    echo "deps: apt-get source failed; check that a deb-src entry exists" >&2; exit 1; }
fi
echo "deps: all present"
