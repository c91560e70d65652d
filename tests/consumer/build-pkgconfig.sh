#!/bin/sh
# Builds the consumer without CMake: pkg-config and the two protoc
# commands of docs/USING.md, word for word.
#   build-pkgconfig.sh PREFIX OUTDIR [CC]
# PREFIX is an installed duct; CC defaults to cc (x86_64-w64-mingw32-gcc
# for the Windows prefix).
set -eu
prefix=$1 out=$2 cc=${3:-cc}
src=$(cd "$(dirname "$0")/project" && pwd)
export PKG_CONFIG_LIBDIR="$prefix/lib/pkgconfig"
[ "$cc" = cc ] && export PKG_CONFIG_LIBDIR="$PKG_CONFIG_LIBDIR:/usr/lib/x86_64-linux-gnu/pkgconfig:/usr/lib/pkgconfig:/usr/share/pkgconfig"
mkdir -p "$out"
set -x
pkg-config --modversion duct
plugin=$(pkg-config --variable=protoc_gen_duct duct)
protoc-c -I"$src/proto" --c_out="$out" inventory.proto
protoc -I"$src/proto" --plugin=protoc-gen-duct="$plugin" --duct_out="$out" inventory.proto
for prog in server client; do
  # shellcheck disable=SC2046 # pkg-config's output is meant to split
  "$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror -I"$out" $(pkg-config --cflags duct) \
    "$src/$prog.c" "$out/inventory.pb-c.c" "$out/inventory.duct.c" \
    $(pkg-config --libs duct) -o "$out/inventory-$prog"
done
