# The protoc-gen-duct target itself, for gen/CMakeLists.txt in either of
# its host modes. Expects DUCT_GEN_PBC_TARGET (the protobuf-c library to
# link) and DUCT_PROTOC_C.

get_filename_component(_duct_root ${CMAKE_CURRENT_LIST_DIR}/.. ABSOLUTE)

# descriptor.proto comes with libprotobuf-dev; it is searched outside any
# cross sysroot, since it is read by the host's protoc-c.
find_path(DUCT_PROTOBUF_PROTO_DIR google/protobuf/descriptor.proto
  PATHS /usr/include /usr/local/include NO_CMAKE_FIND_ROOT_PATH)
if(NOT DUCT_PROTOBUF_PROTO_DIR)
  message(FATAL_ERROR "google/protobuf/descriptor.proto not found: "
    "apt-get install libprotobuf-dev")
endif()

# The plugin decodes protoc's messages with protobuf-c, so it needs C code
# for descriptor.proto and for duct's own proto/duct/plugin.proto.
set(_pb ${CMAKE_CURRENT_BINARY_DIR}/pb)
set(_pb_src ${_pb}/google/protobuf/descriptor.pb-c.c ${_pb}/duct/plugin.pb-c.c)
set(_pb_hdr ${_pb}/google/protobuf/descriptor.pb-c.h ${_pb}/duct/plugin.pb-c.h)
add_custom_command(
  OUTPUT ${_pb_src} ${_pb_hdr}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${_pb}
  COMMAND ${DUCT_PROTOC_C} -I${DUCT_PROTOBUF_PROTO_DIR} -I${_duct_root}/proto
          --c_out=${_pb} google/protobuf/descriptor.proto duct/plugin.proto
  DEPENDS ${DUCT_PROTOBUF_PROTO_DIR}/google/protobuf/descriptor.proto
          ${_duct_root}/proto/duct/plugin.proto
  COMMENT "protoc-c: descriptor.proto and plugin.proto for protoc-gen-duct"
  VERBATIM)

# protoc-c's output is kept apart from duct's warning flags: it is not
# duct's code to fix.
add_library(duct_gen_pb OBJECT ${_pb_src})
target_include_directories(duct_gen_pb PUBLIC ${_pb})
target_link_libraries(duct_gen_pb PUBLIC ${DUCT_GEN_PBC_TARGET})

add_executable(protoc-gen-duct
  main.c
  model.c
  check.c
  names.c
  util.c
  emit_file.c
  emit_service.c
  emit_method.c
  emit_files.c
  # Method ids come from the runtime's own hash, so the generator and the
  # server can never disagree on one.
  ${CMAKE_CURRENT_LIST_DIR}/../runtime/frame.c
  ${CMAKE_CURRENT_LIST_DIR}/../runtime/alloc.c)
target_include_directories(protoc-gen-duct PRIVATE ${CMAKE_CURRENT_LIST_DIR}/..
                           ${CMAKE_CURRENT_LIST_DIR}/../include)
target_link_libraries(protoc-gen-duct PRIVATE duct_gen_pb ${DUCT_GEN_PBC_TARGET})
duct_warnings(protoc-gen-duct)
target_compile_definitions(protoc-gen-duct PRIVATE DUCT_GEN_VERSION="${DUCT_GEN_VERSION}")
