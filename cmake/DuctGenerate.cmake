# duct_generate(<target> PROTOS <file>... [IMPORT_DIRS <dir>...]
#               [DUCT_ONLY <file>...] [OUT_DIR <dir>] [COMPILE_ONLY])
#
# Runs protoc-c and protoc-gen-duct on the PROTOS and adds the generated C
# to <target> (any target that compiles C; an OBJECT library works):
# <name>.pb-c.c for every file, <name>.duct.c for every file that declares
# a service. The output directory goes on <target>'s include path (PUBLIC)
# and <target> links duct::duct (PUBLIC) for duct_call_unary and
# duct_server_add. Sources are regenerated when a .proto or the plugin
# changes. docs/CODEGEN.md has the details.
#
# The same function serves duct's own build, a project that added duct
# with add_subdirectory, and one that found it with find_package(duct):
# each publishes the plugin's path (global property DUCT_GEN_PLUGIN) and
# duct's header folders (DUCT_INCLUDE_DIRS) before calling it.
#
#   PROTOS       .proto files, relative to the current source directory or
#                absolute. Each must lie in one of the import directories;
#                its path below that directory names the outputs
#                (IMPORT_DIRS protos, PROTOS protos/a/b.proto -> a/b.duct.h).
#   IMPORT_DIRS  protoc's -I directories, searched in order. The current
#                source directory and the system's protobuf directory (for
#                google/protobuf/*.proto and protobuf-c/protobuf-c.proto)
#                are always searched last. Imports are only resolved: list
#                an imported file in PROTOS too if its C is not built
#                elsewhere (well-known types included).
#   DUCT_ONLY    files among PROTOS whose protoc-c .pb-c.c is not compiled:
#                for files that hold only services, whose protoc-c service
#                code cannot compile (method names that are C keywords, a
#                method Init, an empty service). duct's stubs include only
#                the headers that define their message types.
#   OUT_DIR      where to generate; default
#                ${CMAKE_CURRENT_BINARY_DIR}/duct_gen/<target>.
#   COMPILE_ONLY instead of linking duct::duct, take only its headers and
#                protobuf-c's, so the target compiles without waiting for
#                (or needing) the runtime library: for compile tests.
#
# Whether a file declares a service is read from the .proto when CMake
# configures (a line starting with `service Name`); a change to the file
# re-runs the configure step.

# protoc reads the well-known types and protobuf-c's options from here. It
# is the build machine's, also in a cross build.
find_path(DUCT_PROTOBUF_PROTO_DIR google/protobuf/descriptor.proto
  PATHS /usr/include /usr/local/include NO_CMAKE_FIND_ROOT_PATH)

# protoc and protoc-c always run on the build machine.
find_program(DUCT_PROTOC protoc)
find_program(DUCT_PROTOC_C protoc-c)
if(NOT DUCT_PROTOC OR NOT DUCT_PROTOC_C)
  message(FATAL_ERROR "duct_generate needs protoc and protoc-c on the build "
    "machine: apt-get install protobuf-compiler protobuf-c-compiler")
endif()

function(duct_generate target)
  cmake_parse_arguments(G "COMPILE_ONLY" "OUT_DIR" "PROTOS;IMPORT_DIRS;DUCT_ONLY" ${ARGN})
  if(G_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "duct_generate(${target}): unknown arguments ${G_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT G_PROTOS)
    message(FATAL_ERROR "duct_generate(${target}): PROTOS is empty")
  endif()
  get_property(plugin GLOBAL PROPERTY DUCT_GEN_PLUGIN)
  get_property(plugin_deps GLOBAL PROPERTY DUCT_GEN_PLUGIN_DEPENDS)
  if(NOT plugin)
    message(FATAL_ERROR "duct_generate(${target}): protoc-gen-duct is not "
      "defined yet; call duct_generate after add_subdirectory(duct) or "
      "find_package(duct)")
  endif()
  if(NOT G_OUT_DIR)
    set(G_OUT_DIR ${CMAKE_CURRENT_BINARY_DIR}/duct_gen/${target})
  endif()

  set(dirs)
  foreach(d IN LISTS G_IMPORT_DIRS)
    get_filename_component(d ${d} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    list(APPEND dirs ${d})
  endforeach()
  list(APPEND dirs ${CMAKE_CURRENT_SOURCE_DIR})
  if(DUCT_PROTOBUF_PROTO_DIR)
    list(APPEND dirs ${DUCT_PROTOBUF_PROTO_DIR})
  endif()
  list(REMOVE_DUPLICATES dirs)
  set(iflags)
  foreach(d IN LISTS dirs)
    list(APPEND iflags -I${d})
  endforeach()

  set(duct_only)
  foreach(p IN LISTS G_DUCT_ONLY)
    get_filename_component(p ${p} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    list(APPEND duct_only ${p})
  endforeach()

  set(abs_protos)
  set(rel_protos)
  set(outputs)
  set(sources)
  foreach(p IN LISTS G_PROTOS)
    get_filename_component(abs ${p} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    if(NOT EXISTS ${abs})
      message(FATAL_ERROR "duct_generate(${target}): ${abs} does not exist")
    endif()
    # The name protoc knows the file by: its path below the first import
    # directory that holds it.
    set(rel)
    foreach(d IN LISTS dirs)
      string(LENGTH "${d}/" n)
      string(SUBSTRING "${abs}" 0 ${n} head)
      if(head STREQUAL "${d}/")
        string(SUBSTRING "${abs}" ${n} -1 rel)
        break()
      endif()
    endforeach()
    if(NOT rel)
      message(FATAL_ERROR "duct_generate(${target}): ${abs} is in none of "
        "the import directories (${dirs}); add its root to IMPORT_DIRS")
    endif()
    string(REGEX REPLACE "\\.proto$" "" stem "${rel}")
    list(APPEND abs_protos ${abs})
    list(APPEND rel_protos ${rel})
    list(APPEND outputs ${G_OUT_DIR}/${stem}.pb-c.c ${G_OUT_DIR}/${stem}.pb-c.h)
    if(NOT abs IN_LIST duct_only)
      list(APPEND sources ${G_OUT_DIR}/${stem}.pb-c.c)
    endif()
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${abs})
    file(STRINGS ${abs} svc REGEX "^[ \t]*service[ \t]+[A-Za-z_]")
    if(svc)
      list(APPEND outputs ${G_OUT_DIR}/${stem}.duct.c ${G_OUT_DIR}/${stem}.duct.h)
      list(APPEND sources ${G_OUT_DIR}/${stem}.duct.c)
    endif()
  endforeach()

  string(REPLACE ";" " " names "${rel_protos}")
  add_custom_command(
    OUTPUT ${outputs}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${G_OUT_DIR}
    COMMAND ${DUCT_PROTOC_C} ${iflags} --c_out=${G_OUT_DIR} ${rel_protos}
    COMMAND ${DUCT_PROTOC} ${iflags} --plugin=protoc-gen-duct=${plugin}
            --duct_out=${G_OUT_DIR} ${rel_protos}
    DEPENDS ${abs_protos} ${plugin_deps}
    COMMENT "duct_generate(${target}): ${names}"
    VERBATIM)
  target_sources(${target} PRIVATE ${sources})
  target_include_directories(${target} PUBLIC ${G_OUT_DIR})
  if(G_COMPILE_ONLY)
    get_property(incs GLOBAL PROPERTY DUCT_INCLUDE_DIRS)
    target_include_directories(${target} PUBLIC ${incs})
    target_link_libraries(${target} PUBLIC duct::protobuf-c)
  else()
    # duct's own tests and examples link the static library even in a
    # shared build (cmake/DuctLibrary.cmake); everyone else duct::duct.
    get_property(lib GLOBAL PROPERTY DUCT_GEN_LINK)
    if(NOT lib)
      set(lib duct::duct)
    endif()
    target_link_libraries(${target} PUBLIC ${lib})
  endif()
  # For callers that want the list (tests compile it with other compilers).
  set_property(TARGET ${target} APPEND PROPERTY DUCT_GENERATED_SOURCES ${sources})
endfunction()
