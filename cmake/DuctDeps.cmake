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
