# Compiles duct's public headers and the generated headers as C++, the way
# a C++ program includes them; fails on the first warning or error. Run by
# ctest (gen_compile_cxx in tests/gen).
#   -DCXX=<C++ compiler>
#   -DLIST=<file, one generated header a line>
#   -DINCS=<include dirs, '|'-separated; duct/*.h in any of them are the
#          public headers (the source tree's include/ and the build's,
#          which holds configured ones)>
#   -DUSE=<a hand-written .cpp that uses the stubs, compiled last>
#   -DOUT=<directory for the .cpp files written here>
#
# Written at each run into OUT: one translation unit per header, holding
# that header alone (so each is self-contained in C++), and all.cpp,
# holding every header at once (so they coexist: no clashing names or
# guards). Then USE. Headers are included in the order listed.
file(STRINGS ${LIST} generated)
string(REPLACE "|" ";" incs "${INCS}")
set(flags -std=c++17 -Wall -Wextra -Wpedantic -Werror -fsyntax-only)
set(public)
foreach(i IN LISTS incs)
  # The compiler's own directories are searched anyway, and -I on them
  # would break libstdc++'s #include_next of the C headers.
  if(i AND NOT i MATCHES "^/usr(/local)?/include/?$")
    list(APPEND flags -I${i})
    file(GLOB hs RELATIVE ${i} ${i}/duct/*.h)
    list(APPEND public ${hs})
  endif()
endforeach()
list(REMOVE_DUPLICATES public)
list(SORT public)
# duct/duct.h is the one include users are told to write: first, so all.cpp
# also checks that it pulls in the rest in a usable order.
list(REMOVE_ITEM public duct/duct.h)
list(PREPEND public duct/duct.h)
if(NOT EXISTS ${USE})
  message(FATAL_ERROR "${USE} does not exist")
endif()
if(NOT generated)
  message(FATAL_ERROR "no generated headers listed in ${LIST}")
endif()
foreach(h IN LISTS generated)
  if(NOT EXISTS ${h})
    message(FATAL_ERROR "${h} does not exist (is gen_corpus built?)")
  endif()
endforeach()

set(lines)
foreach(h IN LISTS public)
  list(APPEND lines "#include <${h}>")
endforeach()
foreach(h IN LISTS generated)
  list(APPEND lines "#include \"${h}\"")
endforeach()

file(MAKE_DIRECTORY ${OUT})
set(units)
set(n 0)
foreach(line IN LISTS lines)
  math(EXPR n "${n} + 1")
  set(u ${OUT}/header_${n}.cpp)
  file(WRITE ${u} "// Written by compile_cxx.cmake: one header alone in C++.\n${line}\n")
  list(APPEND units ${u})
endforeach()
string(REPLACE ";" "\n" all "${lines}")
file(WRITE ${OUT}/all.cpp
  "// Written by compile_cxx.cmake: every header in one C++ unit.\n${all}\n")
list(APPEND units ${OUT}/all.cpp ${USE})

foreach(u IN LISTS units)
  execute_process(COMMAND ${CXX} ${flags} ${u} RESULT_VARIABLE rc
                  OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0 OR out)
    set(what)
    if(NOT u STREQUAL USE)
      file(READ ${u} what)
    endif()
    message(FATAL_ERROR "${CXX} on ${u}:\n${what}${out}")
  endif()
endforeach()
list(LENGTH public np)
list(LENGTH generated ng)
message(STATUS "${CXX}: ${np} public and ${ng} generated headers compile "
               "cleanly as C++17, alone and together, and ${USE} with them")
