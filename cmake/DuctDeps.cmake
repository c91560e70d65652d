# Finds protobuf-c (runtime library and protoc-c) and cmocka, and exposes
# them as the targets duct::protobuf-c and duct::cmocka.
#
# Native builds use Debian's packages (libprotobuf-c-dev, libcmocka-dev).
# The mingw-w64 cross build compiles both from Debian's source packages,
# which scripts/deps.sh unpacks with `apt-get source` into DUCT_DEPS_SRC.
# No third-party source is committed to this repository.

set(DUCT_DEPS_SRC "${CMAKE_SOURCE_DIR}/.deps/src" CACHE PATH
    "Where scripts/deps.sh unpacked the protobuf-c and cmocka source packages")

if(CMAKE_CROSSCOMPILING)
  file(GLOB _pbc_dir LIST_DIRECTORIES true "${DUCT_DEPS_SRC}/protobuf-c-[0-9]*")
  file(GLOB _cm_dir LIST_DIRECTORIES true "${DUCT_DEPS_SRC}/cmocka-[0-9]*")
  if(NOT _pbc_dir OR NOT _cm_dir)
    message(FATAL_ERROR "protobuf-c and cmocka sources not found in ${DUCT_DEPS_SRC}. "
      "Run scripts/deps.sh (it runs `apt-get source protobuf-c cmocka` there).")
  endif()
  list(GET _pbc_dir 0 _pbc_dir)
  list(GET _cm_dir 0 _cm_dir)

  add_library(duct_protobuf_c STATIC ${_pbc_dir}/protobuf-c/protobuf-c.c)
  target_include_directories(duct_protobuf_c SYSTEM PUBLIC ${_pbc_dir})
  target_compile_options(duct_protobuf_c PRIVATE -w)

  # cmocka's own build probes these with configure checks; mingw-w64 has
  # them all, so they are stated here instead of generating a config.h.
  add_library(duct_cmocka STATIC ${_cm_dir}/src/cmocka.c)
  target_include_directories(duct_cmocka SYSTEM PUBLIC ${_cm_dir}/include)
  target_compile_definitions(duct_cmocka PRIVATE HAVE_SIGNAL_H HAVE_INTTYPES_H
    HAVE_MALLOC_H HAVE_STRUCT_TIMESPEC HAVE_GCC_THREAD_LOCAL_STORAGE
    HAVE_SNPRINTF HAVE_VSNPRINTF HAVE_CLOCK_GETTIME)
  target_compile_options(duct_cmocka PRIVATE -w)

  add_library(duct::protobuf-c ALIAS duct_protobuf_c)
  add_library(duct::cmocka ALIAS duct_cmocka)
else()
  find_path(PROTOBUF_C_INCLUDE_DIR protobuf-c/protobuf-c.h)
  find_library(PROTOBUF_C_LIBRARY protobuf-c)
  find_path(CMOCKA_INCLUDE_DIR cmocka.h)
  find_library(CMOCKA_LIBRARY cmocka)
  if(NOT PROTOBUF_C_INCLUDE_DIR OR NOT PROTOBUF_C_LIBRARY)
    message(FATAL_ERROR "protobuf-c not found: apt-get install libprotobuf-c-dev "
      "(scripts/deps.sh installs every dependency)")
  endif()
  add_library(duct::protobuf-c UNKNOWN IMPORTED)
  set_target_properties(duct::protobuf-c PROPERTIES IMPORTED_LOCATION ${PROTOBUF_C_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${PROTOBUF_C_INCLUDE_DIR})
  if(CMOCKA_INCLUDE_DIR AND CMOCKA_LIBRARY)
    add_library(duct::cmocka UNKNOWN IMPORTED)
    set_target_properties(duct::cmocka PROPERTIES IMPORTED_LOCATION ${CMOCKA_LIBRARY}
      INTERFACE_INCLUDE_DIRECTORIES ${CMOCKA_INCLUDE_DIR})
  elseif(DUCT_TESTS)
    message(FATAL_ERROR "cmocka not found: apt-get install libcmocka-dev "
      "(or configure with -DDUCT_TESTS=OFF)")
  endif()
endif()

# protoc and protoc-c always run on the build machine.
find_program(DUCT_PROTOC protoc REQUIRED)
find_program(DUCT_PROTOC_C protoc-c REQUIRED)
