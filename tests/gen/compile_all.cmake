# Compiles every file listed in LIST with CC and duct's strictest flags;
# fails on the first warning or error. Run by ctest (tests/gen).
#   -DCC=<compiler> -DLIST=<file, one source a line> -DINCS=<dirs, '|'-separated>
#   -DEXTRA_INC=<dir or empty>
file(STRINGS ${LIST} sources)
string(REPLACE "|" ";" incs "${INCS}")
set(flags -std=c11 -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes
          -Wmissing-prototypes -Wvla -Werror -fsyntax-only)
foreach(i IN LISTS incs EXTRA_INC)
  if(i)
    list(APPEND flags -I${i})
  endif()
endforeach()
if(NOT sources)
  message(FATAL_ERROR "no sources listed in ${LIST}")
endif()
set(n 0)
foreach(s IN LISTS sources)
  execute_process(COMMAND ${CC} ${flags} ${s} RESULT_VARIABLE rc
                  OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0 OR out)
    message(FATAL_ERROR "${CC} on ${s}:\n${out}")
  endif()
  math(EXPR n "${n} + 1")
endforeach()
message(STATUS "${CC}: ${n} generated files compile cleanly")
