# Finds protobuf-c (runtime library and protoc-c) and cmocka, and exposes
# them as the targets duct::protobuf-c and duct::cmocka.
#
# Native builds use Debian's packages (libprotobuf-c-dev, libcmocka-dev).
# The mingw-w64 cross build compiles both from Debian's source packages,
# which `scripts/deps.sh --windows` unpacks with `apt-get source` into
# DUCT_DEPS_SRC; protobuf-c's runtime is then installed with duct (and
# exported as duct::protobuf-c), so a consumer's cross build needs no
# source package of its own. No third-party source is committed here.

# duct's own tree, also when duct is a subdirectory of another project.
set(DUCT_DEPS_SRC "${PROJECT_SOURCE_DIR}/.deps/src" CACHE PATH
    "Where scripts/deps.sh --windows unpacked the protobuf-c and cmocka source packages")

if(CMAKE_CROSSCOMPILING)
  file(GLOB _pbc_dir LIST_DIRECTORIES true "${DUCT_DEPS_SRC}/protobuf-c-[0-9]*")
  file(GLOB _cm_dir LIST_DIRECTORIES true "${DUCT_DEPS_SRC}/cmocka-[0-9]*")
  if(NOT _pbc_dir OR (DUCT_TESTS AND NOT _cm_dir))
    message(FATAL_ERROR "The Windows build compiles protobuf-c (and cmocka for "
      "the tests) from Debian's source packages, and they are not in "
      "DUCT_DEPS_SRC (${DUCT_DEPS_SRC}). Fetch them with\n"
      "  bash ${PROJECT_SOURCE_DIR}/scripts/deps.sh --windows\n"
      "or point -DDUCT_DEPS_SRC=<dir> at a folder holding protobuf-c-<version>/ "
      "(and cmocka-<version>/ for the tests) from `apt-get source protobuf-c cmocka`.")
  endif()
  list(GET _pbc_dir 0 _pbc_dir)

  add_library(duct_protobuf_c STATIC ${_pbc_dir}/protobuf-c/protobuf-c.c)
  target_include_directories(duct_protobuf_c SYSTEM PUBLIC
    $<BUILD_INTERFACE:${_pbc_dir}> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_compile_options(duct_protobuf_c PRIVATE -w)
  set_target_properties(duct_protobuf_c PROPERTIES OUTPUT_NAME protobuf-c
                        EXPORT_NAME protobuf-c)
  set(DUCT_PROTOBUF_C_HEADER ${_pbc_dir}/protobuf-c/protobuf-c.h)
  add_library(duct::protobuf-c ALIAS duct_protobuf_c)

  if(_cm_dir)
    list(GET _cm_dir 0 _cm_dir)
    # cmocka's own build probes these with configure checks; mingw-w64 has
    # them all, so they are stated here instead of generating a config.h.
    add_library(duct_cmocka STATIC ${_cm_dir}/src/cmocka.c)
    target_include_directories(duct_cmocka SYSTEM PUBLIC ${_cm_dir}/include)
    target_compile_definitions(duct_cmocka PRIVATE HAVE_SIGNAL_H HAVE_INTTYPES_H
      HAVE_MALLOC_H HAVE_STRUCT_TIMESPEC HAVE_GCC_THREAD_LOCAL_STORAGE
      HAVE_SNPRINTF HAVE_VSNPRINTF HAVE_CLOCK_GETTIME)
    target_compile_options(duct_cmocka PRIVATE -w)
    add_library(duct::cmocka ALIAS duct_cmocka)
  endif()
else()
  find_path(DUCT_PROTOBUF_C_INCLUDE_DIR protobuf-c/protobuf-c.h)
  find_library(DUCT_PROTOBUF_C_LIBRARY protobuf-c)
  if(NOT DUCT_PROTOBUF_C_INCLUDE_DIR OR NOT DUCT_PROTOBUF_C_LIBRARY)
    message(FATAL_ERROR "protobuf-c not found: apt-get install libprotobuf-c-dev "
      "(scripts/deps.sh installs every dependency)")
  endif()
  add_library(duct::protobuf-c UNKNOWN IMPORTED GLOBAL)
  set_target_properties(duct::protobuf-c PROPERTIES IMPORTED_LOCATION ${DUCT_PROTOBUF_C_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${DUCT_PROTOBUF_C_INCLUDE_DIR})
  if(DUCT_TESTS)
    find_path(DUCT_CMOCKA_INCLUDE_DIR cmocka.h)
    find_library(DUCT_CMOCKA_LIBRARY cmocka)
    if(NOT DUCT_CMOCKA_INCLUDE_DIR OR NOT DUCT_CMOCKA_LIBRARY)
      message(FATAL_ERROR "cmocka not found: apt-get install libcmocka-dev "
        "(or configure with -DDUCT_TESTS=OFF)")
    endif()
    add_library(duct::cmocka UNKNOWN IMPORTED)
    set_target_properties(duct::cmocka PROPERTIES IMPORTED_LOCATION ${DUCT_CMOCKA_LIBRARY}
      INTERFACE_INCLUDE_DIRECTORIES ${DUCT_CMOCKA_INCLUDE_DIR})
  endif()
endif()

# json-c, for the command-line tool's proto3 JSON (cli/json.c; the choice
# is in docs/DECISIONS.md), as the target duct::json-c. Only the CLI, its
# tests and its fuzz target need it, so a build without DUCT_CLI does not.
# Natively it is Debian's libjson-c-dev. The cross build compiles Debian's
# source package with json-c's own CMake (ExternalProject: its configure
# checks must run for the target, which a plain add_library of its files
# would skip) and installs it into the build tree; the include folder is
# the install prefix's, so `#include <json-c/json.h>` reads the same in
# both builds. Imported targets' include folders are system folders, so
# json-c's headers give no warnings under duct's flags.
if(DUCT_CLI)
  if(CMAKE_CROSSCOMPILING)
    file(GLOB _jc_dir LIST_DIRECTORIES true "${DUCT_DEPS_SRC}/json-c-[0-9]*")
    if(NOT _jc_dir)
      message(FATAL_ERROR "The Windows build of the duct tool compiles json-c "
        "from Debian's source package, and it is not in DUCT_DEPS_SRC "
        "(${DUCT_DEPS_SRC}). Fetch it with\n"
        "  bash ${PROJECT_SOURCE_DIR}/scripts/deps.sh --windows\n"
        "or configure with -DDUCT_CLI=OFF.")
    endif()
    list(GET _jc_dir 0 _jc_dir)
    include(ExternalProject)
    set(_jc_prefix ${PROJECT_BINARY_DIR}/json-c)
    set(_jc_lib ${_jc_prefix}/lib/${CMAKE_STATIC_LIBRARY_PREFIX}json-c${CMAKE_STATIC_LIBRARY_SUFFIX})
    ExternalProject_Add(duct_json_c_build
      SOURCE_DIR ${_jc_dir}
      BINARY_DIR ${PROJECT_BINARY_DIR}/json-c-build
      INSTALL_DIR ${_jc_prefix}
      CMAKE_ARGS -DCMAKE_TOOLCHAIN_FILE=${CMAKE_TOOLCHAIN_FILE}
                 -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF
                 -DBUILD_TESTING=OFF -DBUILD_APPS=OFF -DDISABLE_WERROR=ON
                 -DCMAKE_INSTALL_PREFIX=<INSTALL_DIR> -DCMAKE_INSTALL_LIBDIR=lib
      BUILD_BYPRODUCTS ${_jc_lib}
      EXCLUDE_FROM_ALL ON)
    # CMake refuses an imported target whose include folder does not exist
    # yet; json-c's install fills it at build time.
    file(MAKE_DIRECTORY ${_jc_prefix}/include)
    add_library(duct::json-c STATIC IMPORTED GLOBAL)
    set_target_properties(duct::json-c PROPERTIES IMPORTED_LOCATION ${_jc_lib}
      INTERFACE_INCLUDE_DIRECTORIES ${_jc_prefix}/include)
    add_dependencies(duct::json-c duct_json_c_build)
  else()
    find_path(DUCT_JSON_C_INCLUDE_DIR json-c/json.h)
    find_library(DUCT_JSON_C_LIBRARY json-c)
    if(NOT DUCT_JSON_C_INCLUDE_DIR OR NOT DUCT_JSON_C_LIBRARY)
      message(FATAL_ERROR "json-c not found (the duct tool's JSON needs it): "
        "apt-get install libjson-c-dev (scripts/deps.sh installs every "
        "dependency), or configure with -DDUCT_CLI=OFF")
    endif()
    add_library(duct::json-c UNKNOWN IMPORTED GLOBAL)
    set_target_properties(duct::json-c PROPERTIES IMPORTED_LOCATION ${DUCT_JSON_C_LIBRARY}
      INTERFACE_INCLUDE_DIRECTORIES ${DUCT_JSON_C_INCLUDE_DIR})
  endif()
endif()
