# Toolchain file: cross-compile duct for 64-bit Windows with Debian's
# mingw-w64 (package gcc-mingw-w64-x86-64). Tests run under Wine through
# CMAKE_CROSSCOMPILING_EMULATOR, which the `windows` preset sets.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(CMAKE_C_COMPILER x86_64-w64-mingw32-gcc)
set(CMAKE_RC_COMPILER x86_64-w64-mingw32-windres)
# Appended, so a consumer can add its own Windows prefixes with
# -DCMAKE_FIND_ROOT_PATH=... (docs/USING.md).
list(APPEND CMAKE_FIND_ROOT_PATH /usr/x86_64-w64-mingw32)
# Programs (protoc, protoc-c) come from the build machine; libraries and
# headers only from the target's sysroot.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
