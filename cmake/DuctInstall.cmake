# What `cmake --install` puts into a prefix, and the .deb `cpack -G DEB`
# makes of it (docs/USING.md lists the layout):
#   include/duct/*.h            public headers (and duct/version.h)
#   lib/libduct.a (or .so)      the library
#   bin/protoc-gen-duct         the protoc plugin (a native build's)
#   bin/duct                    the command-line tool (cli/, when DUCT_CLI)
#   lib/cmake/duct/             ductConfig.cmake, ductConfigVersion.cmake,
#                               the exported targets, DuctGenerate.cmake,
#                               the mingw-w64 toolchain file
#   lib/pkgconfig/duct.pc
#   share/doc/duct/             the guides
# A Windows (mingw-w64) install also carries the protobuf-c runtime duct
# compiled (lib/libprotobuf-c.a, include/protobuf-c/protobuf-c.h, exported
# as duct::protobuf-c) and the build machine's protoc-gen-duct in
# libexec/duct/, so a consumer's cross build needs nothing else of duct's.
include(CMakePackageConfigHelpers)

set(DUCT_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/duct)

install(TARGETS ${DUCT_LIBRARY_TARGET} EXPORT ductTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/duct DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")
install(FILES ${PROJECT_BINARY_DIR}/include/duct/version.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/duct)

if(CMAKE_CROSSCOMPILING)
  install(TARGETS duct_protobuf_c EXPORT ductTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(FILES ${DUCT_PROTOBUF_C_HEADER}
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/protobuf-c)
  get_property(_plugin GLOBAL PROPERTY DUCT_GEN_PLUGIN)
  install(PROGRAMS ${_plugin} DESTINATION ${CMAKE_INSTALL_LIBEXECDIR}/duct)
  set(DUCT_CONFIG_HOST_PLUGIN ${CMAKE_INSTALL_LIBEXECDIR}/duct/protoc-gen-duct)
else()
  install(TARGETS protoc-gen-duct EXPORT ductTargets
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  set(DUCT_CONFIG_HOST_PLUGIN "")
endif()

install(EXPORT ductTargets NAMESPACE duct:: DESTINATION ${DUCT_CMAKE_DIR})
configure_package_config_file(cmake/ductConfig.cmake.in
  ${PROJECT_BINARY_DIR}/ductConfig.cmake
  INSTALL_DESTINATION ${DUCT_CMAKE_DIR}
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR)
# 0.x: a minor release may change the API, so only patch releases of the
# same minor version are compatible; from 1.0 on, the same major version.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(_compat SameMinorVersion)
else()
  set(_compat SameMajorVersion)
endif()
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ductConfigVersion.cmake
  COMPATIBILITY ${_compat})
install(FILES ${PROJECT_BINARY_DIR}/ductConfig.cmake
              ${PROJECT_BINARY_DIR}/ductConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/DuctGenerate.cmake
              ${PROJECT_SOURCE_DIR}/cmake/mingw-w64.cmake
  DESTINATION ${DUCT_CMAKE_DIR})

# pkg-config: paths relative to the .pc file, so an unpacked .deb or a
# moved prefix still works.
set(_pcdir ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
file(RELATIVE_PATH DUCT_PC_TO_PREFIX /${_pcdir} /)
string(REGEX REPLACE "/$" "" DUCT_PC_TO_PREFIX "${DUCT_PC_TO_PREFIX}")
if(CMAKE_CROSSCOMPILING)
  # The Windows prefix carries protobuf-c itself; mingw has no .pc for it.
  set(DUCT_PC_REQUIRES "")
  set(DUCT_PC_LIBS "-lduct -lprotobuf-c -ladvapi32 -static")
  set(DUCT_PC_LIBS_PRIVATE "")
  set(DUCT_PC_PLUGIN "\${prefix}/${DUCT_CONFIG_HOST_PLUGIN}")
else()
  set(DUCT_PC_REQUIRES "libprotobuf-c")
  set(DUCT_PC_LIBS "-lduct")
  set(DUCT_PC_LIBS_PRIVATE "-pthread")
  set(DUCT_PC_PLUGIN "\${bindir}/protoc-gen-duct")
endif()
configure_file(cmake/duct.pc.in ${PROJECT_BINARY_DIR}/duct.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/duct.pc DESTINATION ${_pcdir})

install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}
  FILES_MATCHING PATTERN "*.md" PATTERN "*.png")

# ---- cpack -G DEB ----
set(CPACK_PACKAGE_NAME libduct-dev)
set(CPACK_PACKAGE_VENDOR "duct")
set(CPACK_PACKAGE_CONTACT "duct developers <duct@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "RPC for services on one host: library, headers, protoc plugin")
set(CPACK_PACKAGE_DESCRIPTION
    "duct carries protobuf-described calls between processes on one host over AF_UNIX SOCK_SEQPACKET sockets (Linux) or message-mode named pipes (Windows). This package has the static library, the headers, protoc-gen-duct, the CMake package (find_package(duct)) and duct.pc.")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
# The plugin's own shared-library needs come from dpkg-shlibdeps; a
# consumer's build needs protobuf-c's headers and library, protoc and
# protoc-c (duct_generate runs both) and the well-known .proto files.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libprotobuf-c-dev, protobuf-c-compiler, protobuf-compiler, libprotobuf-dev")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "cmake (>= 3.25), pkg-config")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
include(CPack)
