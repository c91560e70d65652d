#!/usr/bin/env bash
# The consumer tests (label `consumer`): a project outside duct's tree
# (project/) built from scratch against duct as docs/USING.md says, then
# run (a server and a client making real calls). One step per ctest test:
#
#   consumer.sh install     cmake --install of this build into a fresh prefix
#   consumer.sh package     find_package(duct) against that prefix
#   consumer.sh pkgconfig   pkg-config + plain protoc against that prefix
#   consumer.sh subdir      add_subdirectory(duct's source tree)
#   consumer.sh shared      duct built with BUILD_SHARED_LIBS=ON: only duct_
#                           symbols exported, and the consumer runs with it
#   consumer.sh deb         cpack -G DEB: contents and dependencies checked,
#                           unpacked with dpkg -x, the consumer built on it
#
# Environment (set by tests/consumer/CMakeLists.txt): DUCT_SRC, DUCT_BUILD,
# WORK (this build's scratch folder), CROSS (1 in the windows preset).
# In the windows preset each build is a mingw-w64 cross build and the
# programs run under Wine.
set -euo pipefail
step=$1
here=$(cd "$(dirname "$0")" && pwd)
: "${DUCT_SRC:?}" "${DUCT_BUILD:?}" "${WORK:?}" "${CROSS:=0}"
prefix=$WORK/prefix
emu=
cross_args=()
if [ "$CROSS" = 1 ]; then
  emu=$DUCT_SRC/cmake/wine-run.sh
fi
fail() { echo "consumer.sh $step: $*" >&2; exit 1; }
# Builds project/ in $1 with extra configure arguments, then runs it.
build_and_run() {
  local dir=$1; shift
  rm -rf "$dir"
  cmake -S "$here/project" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
  cmake --build "$dir" -j2
  sh "$here/run.sh" "$dir" $emu
}
# Every path an install must hold, relative to a prefix.
check_layout() {
  local p=$1 lib=$1/lib v
  for f in include/duct/duct.h include/duct/status.h include/duct/service.h \
           include/duct/client.h include/duct/server.h include/duct/version.h \
           lib/cmake/duct/ductConfig.cmake lib/cmake/duct/ductConfigVersion.cmake \
           lib/cmake/duct/ductTargets.cmake lib/cmake/duct/DuctGenerate.cmake \
           lib/pkgconfig/duct.pc; do
    [ -f "$p/$f" ] || fail "$p/$f is missing"
  done
  if [ "$CROSS" = 1 ]; then
    for f in lib/libduct.a lib/libprotobuf-c.a include/protobuf-c/protobuf-c.h; do
      [ -f "$p/$f" ] || fail "$p/$f is missing"
    done
    [ -x "$p/libexec/duct/protoc-gen-duct" ] || fail "no host plugin in $p/libexec/duct"
    [ -f "$p/bin/duct.exe" ] || fail "no duct.exe (the command-line tool) in $p/bin"
  else
    [ -f "$lib/libduct.a" ] || [ -f "$lib/libduct.so" ] || fail "no libduct in $lib"
    [ -x "$p/bin/protoc-gen-duct" ] || fail "no $p/bin/protoc-gen-duct"
    v=$("$p/bin/protoc-gen-duct" --version)
    grep -qx "protoc-gen-duct [0-9.]*" <<<"$v" ||
      fail "protoc-gen-duct --version"
    [ -x "$p/bin/duct" ] || fail "no $p/bin/duct (the command-line tool)"
    v=$("$p/bin/duct" --version)
    grep -qx "duct [0-9.]*" <<<"$v" || fail "duct --version printed: $v"
  fi
}
package_args() {
  if [ "$CROSS" = 1 ]; then
    # In a cross build find_package searches only the target's sysroot;
    # duct_DIR names the package directly (docs/USING.md).
    echo "-DCMAKE_TOOLCHAIN_FILE=$1/lib/cmake/duct/mingw-w64.cmake -Dduct_DIR=$1/lib/cmake/duct"
  else
    echo "-DCMAKE_PREFIX_PATH=$1"
  fi
}

case "$step" in
  install)
    rm -rf "$prefix"
    cmake --install "$DUCT_BUILD" --prefix "$prefix"
    check_layout "$prefix"
    # nm on the archive: the library holds duct's code, not a stub.
    # (Output captured first: with pipefail, grep -q closing the pipe early
    # would fail the pipeline through a SIGPIPE'd writer.)
    syms=$(nm "$prefix/lib/libduct.a")
    grep -q " T duct_channel_open" <<<"$syms" || fail "libduct.a has no duct_channel_open"
    # The version rule (docs/USING.md): this minor version is found, the
    # next minor and major versions are refused.
    v=$(sed -n 's/^Version: //p' "$prefix/lib/pkgconfig/duct.pc")
    IFS=. read -r major minor _ <<<"$v"
    for want in "$major.$minor:1" "$major.$((minor + 1)):0" "$((major + 1)).0:0"; do
      mkdir -p "$WORK/version"
      printf 'cmake_minimum_required(VERSION 3.25)\nproject(v C)\nfind_package(duct %s CONFIG QUIET)\nif(duct_FOUND)\n  message(STATUS "found")\nendif()\n' \
        "${want%%:*}" > "$WORK/version/CMakeLists.txt"
      found=0
      log=$(cmake -S "$WORK/version" -B "$WORK/version/b" -Dduct_DIR="$prefix/lib/cmake/duct" 2>&1)
      case "$log" in *"-- found"*) found=1 ;; esac
      rm -rf "$WORK/version/b"
      [ "$found" = "${want##*:}" ] || fail "find_package(duct ${want%%:*}) found=$found with duct $v installed"
    done
    ;;
  package)
    # shellcheck disable=SC2046
    build_and_run "$WORK/package" $(package_args "$prefix")
    ;;
  pkgconfig)
    cc=cc
    [ "$CROSS" = 1 ] && cc=x86_64-w64-mingw32-gcc
    rm -rf "$WORK/pkgconfig"
    # mingw-w64 gcc names its output inventory-*.exe itself.
    sh "$here/build-pkgconfig.sh" "$prefix" "$WORK/pkgconfig" "$cc"
    sh "$here/run.sh" "$WORK/pkgconfig" $emu
    ;;
  subdir)
    [ "$CROSS" = 1 ] && cross_args=(-DCMAKE_TOOLCHAIN_FILE="$DUCT_SRC/cmake/mingw-w64.cmake")
    build_and_run "$WORK/subdir" -DDUCT_FROM=subdir -DDUCT_SOURCE_DIR="$DUCT_SRC" "${cross_args[@]}"
    ;;
  shared)
    rm -rf "$WORK/shared-build" "$WORK/shared-prefix"
    cmake -S "$DUCT_SRC" -B "$WORK/shared-build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DBUILD_SHARED_LIBS=ON -DDUCT_TESTS=OFF -DDUCT_EXAMPLES=OFF -DDUCT_WERROR=ON
    cmake --build "$WORK/shared-build" -j2 --target duct_shared protoc-gen-duct duct_cli
    cmake --install "$WORK/shared-build" --prefix "$WORK/shared-prefix"
    check_layout "$WORK/shared-prefix"
    so=$WORK/shared-prefix/lib/libduct.so
    [ -f "$so" ] || fail "no $so"
    syms=$(nm -D --defined-only "$so" | awk '{print $3}')
    echo "exported: $(echo "$syms" | tr '\n' ' ')"
    bad=$(echo "$syms" | grep -v '^duct_[a-z]' || true)
    [ -z "$bad" ] || fail "libduct.so exports more than duct_ names: $bad"
    grep -qx duct_call_unary <<<"$syms" || fail "libduct.so lacks duct_call_unary"
    # The reflection service's generated stubs are duct's own, not API.
    leaked=$(grep '^duct_reflection_v1_' <<<"$syms" || true)
    [ -z "$leaked" ] || fail "libduct.so exports the reflection stubs: $leaked"
    build_and_run "$WORK/shared" -DCMAKE_PREFIX_PATH="$WORK/shared-prefix"
    libs=$(ldd "$WORK/shared/inventory-client")
    grep -q "$WORK/shared-prefix/lib/libduct.so" <<<"$libs" ||
      fail "inventory-client is not linked with the shared libduct: $libs"
    ;;
  deb)
    rm -rf "$WORK/deb" && mkdir -p "$WORK/deb"
    (cd "$WORK/deb" && cpack -G DEB --config "$DUCT_BUILD/CPackConfig.cmake")
    deb=$(ls "$WORK"/deb/*.deb)
    dpkg-deb -f "$deb" Package Version Depends
    list=$(dpkg-deb -c "$deb" | awk '{print $6}')
    for f in ./usr/include/duct/duct.h ./usr/include/duct/version.h ./usr/lib/libduct.a \
             ./usr/bin/protoc-gen-duct ./usr/bin/duct ./usr/lib/pkgconfig/duct.pc \
             ./usr/lib/cmake/duct/ductConfig.cmake ./usr/lib/cmake/duct/ductTargets.cmake \
             ./usr/lib/cmake/duct/DuctGenerate.cmake ./usr/share/doc/duct/USING.md; do
      grep -qx "$f" <<<"$list" || fail "$deb lacks $f"
    done
    deps=$(dpkg-deb -f "$deb" Depends)
    # libjson-c5: the duct tool's, found by shlibdeps.
    for d in libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libc6 libprotobuf-c1 libjson-c5; do
      grep -q "$d" <<<"$deps" || fail "Depends lacks $d: $deps"
    done
    root=$WORK/deb/root
    dpkg -x "$deb" "$root"
    check_layout "$root/usr"
    build_and_run "$WORK/deb/consumer" -DCMAKE_PREFIX_PATH="$root/usr"
    ;;
  *) fail "unknown step" ;;
esac
echo "consumer.sh $step: ok"
