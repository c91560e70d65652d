cmake_minimum_required(VERSION 3.25)
# Runs `duct-bench --smoke` (under EMULATOR if set) and checks that it
# exits 0 and prints exactly one well-formed line per case:
#   cmake -DBENCH=<exe> [-DEMULATOR=<runner>] -P check_output.cmake
# Only the format is checked, never a timing: benchmarks are not tests.
execute_process(COMMAND ${EMULATOR} ${BENCH} --smoke
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc
                TIMEOUT 100)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "duct-bench --smoke failed (${rc}):\n${out}\n${err}")
endif()
string(REPLACE "\r" "" out "${out}")
string(REPLACE "\n" ";" lines "${out}")
set(num "[0-9]+[.]?[0-9]*")
set(re "^bench transport=(posix|npipe) payload=([0-9]+) clients=([0-9]+) calls=[0-9]+ "
       "raw_p50_us=${num} duct_p50_us=${num} p50_ratio=${num} "
       "raw_calls_per_s=${num} duct_calls_per_s=${num} throughput_ratio=${num}"
       "( [a-z0-9_]+=[^ ]+)*$")
string(CONCAT re ${re})
set(seen "")
foreach(line IN LISTS lines)
  if(line STREQUAL "")
    continue()
  endif()
  if(NOT line MATCHES "${re}")
    message(FATAL_ERROR "malformed line: '${line}'")
  endif()
  list(APPEND seen "${CMAKE_MATCH_2}/${CMAKE_MATCH_3}")
  if(NOT line MATCHES " server_allocs_per_call=${num}( |$)")
    message(FATAL_ERROR "no server_allocs_per_call in '${line}'")
  endif()
endforeach()
foreach(want 16/1 16/4 1024/1 1024/4 65536/1 65536/4 1048576/1 1048576/4)
  if(NOT want IN_LIST seen)
    message(FATAL_ERROR "no line for payload/clients ${want}:\n${out}")
  endif()
endforeach()
list(LENGTH seen n)
if(NOT n EQUAL 8)
  message(FATAL_ERROR "expected 8 lines, got ${n}:\n${out}")
endif()
message(STATUS "duct-bench --smoke: ${n} well-formed lines")
