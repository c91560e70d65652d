# The library as others see it, once runtime/, server/ and client/ have
# added their files to duct_runtime:
#  - duct::duct, the target a consumer links (in-tree alias; the installed
#    package exports the same name);
#  - with BUILD_SHARED_LIBS=ON, a shared libduct.so that exports only the
#    public duct_ names (cmake/duct.map), built from the same sources.
#    duct's own tests and examples keep linking the static duct_runtime:
#    they reach internal duct__ functions that the shared library hides;
#  - the header folders and the library duct_generate() uses.

if(WIN32)
  # The Windows programs a consumer links are self-contained .exe files,
  # as duct's own are: no libgcc or winpthread DLL to ship, none for Wine
  # to miss (docs/USING.md).
  target_link_options(duct_runtime INTERFACE -static -static-libgcc)
endif()

if(BUILD_SHARED_LIBS)
  if(WIN32)
    message(FATAL_ERROR "BUILD_SHARED_LIBS: the Windows build of duct is "
      "static only (a DLL would need export annotations on every public "
      "function). Configure without it.")
  endif()
  get_target_property(_srcs duct_runtime SOURCES)
  get_target_property(_dir duct_runtime SOURCE_DIR)
  # Relative paths are the source folder's; generator expressions (the
  # reflection objects, server/CMakeLists.txt) stay as they are.
  list(TRANSFORM _srcs PREPEND ${_dir}/ REGEX "^[^/$]")
  add_library(duct_shared SHARED ${_srcs})
  set(_so ${PROJECT_VERSION_MAJOR})
  if(_so EQUAL 0)
    set(_so ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
  endif()
  set_target_properties(duct_shared PROPERTIES OUTPUT_NAME duct EXPORT_NAME duct
    VERSION ${PROJECT_VERSION} SOVERSION ${_so})
  # The version script exports exactly the names that start with "duct_"
  # and a letter: duct__ internals stay local. (Not -fvisibility=hidden
  # as well: a hidden symbol cannot be exported by the script.)
  target_link_options(duct_shared PRIVATE
    -Wl,--version-script=${PROJECT_SOURCE_DIR}/cmake/duct.map -Wl,--no-undefined)
  set_property(TARGET duct_shared APPEND PROPERTY LINK_DEPENDS
               ${PROJECT_SOURCE_DIR}/cmake/duct.map)
  target_include_directories(duct_shared
    PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
           $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/include>
           $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    PRIVATE ${PROJECT_SOURCE_DIR}/runtime ${PROJECT_SOURCE_DIR}
            ${PROJECT_BINARY_DIR}/duct_gen/reflection)
  find_package(Threads REQUIRED)
  target_link_libraries(duct_shared PUBLIC duct::protobuf-c Threads::Threads)
  duct_warnings(duct_shared)
  add_library(duct::duct ALIAS duct_shared)
  set(DUCT_LIBRARY_TARGET duct_shared)
else()
  add_library(duct::duct ALIAS duct_runtime)
  set(DUCT_LIBRARY_TARGET duct_runtime)
endif()

set_property(GLOBAL PROPERTY DUCT_INCLUDE_DIRS
  ${PROJECT_SOURCE_DIR}/include ${PROJECT_BINARY_DIR}/include)
