cmake_minimum_required(VERSION 3.25)
# Runs `duct-bench --smoke` (under EMULATOR if set) and checks that it
# exits 0 and prints exactly one well-formed line per case:
#   cmake -DBENCH=<exe> [-DEMULATOR=<runner>] -P check_output.cmake
# Only the format is checked, never a timing: benchmarks are not tests.
# Three kinds of line: unary (no mode=), mode=stream, mode=async.
execute_process(COMMAND ${EMULATOR} ${BENCH} --smoke
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc
                TIMEOUT 100)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "duct-bench --smoke failed (${rc}):\n${out}\n${err}")
endif()
string(REPLACE "\r" "" out "${out}")
string(REPLACE "\n" ";" lines "${out}")
set(num "[0-9]+[.]?[0-9]*")
set(tail "( [a-z0-9_]+=[^ ]+)*$")
string(CONCAT unary_re
       "^bench transport=(posix|npipe) payload=([0-9]+) clients=([0-9]+) calls=[0-9]+ "
       "raw_p50_us=${num} duct_p50_us=${num} p50_ratio=${num} "
       "raw_calls_per_s=${num} duct_calls_per_s=${num} throughput_ratio=${num}" ${tail})
string(CONCAT stream_re
       "^bench transport=(posix|npipe) mode=stream payload=([0-9]+) messages=[0-9]+ "
       "raw_msgs_per_s=${num} duct_msgs_per_s=${num} msgs_ratio=${num} "
       "server_allocs_per_msg=${num} client_allocs_per_msg=${num}" ${tail})
string(CONCAT async_re
       "^bench transport=(posix|npipe) mode=async payload=(16) in_flight=(64) calls=[0-9]+ "
       "duct_calls_per_s=${num} raw_calls_per_s=${num} throughput_ratio=${num} "
       "sync1_calls_per_s=${num} sync4_calls_per_s=${num} duct_p50_us=${num} "
       "duct_p99_us=${num} server_allocs_per_call=${num} client_allocs_per_call=${num}" ${tail})
set(seen "")
foreach(line IN LISTS lines)
  if(line STREQUAL "")
    continue()
  endif()
  if(line MATCHES " mode=stream ")
    if(NOT line MATCHES "${stream_re}")
      message(FATAL_ERROR "malformed stream line: '${line}'")
    endif()
    list(APPEND seen "stream/${CMAKE_MATCH_2}")
  elseif(line MATCHES " mode=async ")
    if(NOT line MATCHES "${async_re}")
      message(FATAL_ERROR "malformed async line: '${line}'")
    endif()
    list(APPEND seen "async/${CMAKE_MATCH_2}/${CMAKE_MATCH_3}")
  else()
    if(NOT line MATCHES "${unary_re}")
      message(FATAL_ERROR "malformed line: '${line}'")
    endif()
    list(APPEND seen "${CMAKE_MATCH_2}/${CMAKE_MATCH_3}")
    if(NOT line MATCHES " server_allocs_per_call=${num}( |$)")
      message(FATAL_ERROR "no server_allocs_per_call in '${line}'")
    endif()
  endif()
  # Every line says how many checks failed; --smoke exits non-zero then
  # too, but the line names the case.
  if(NOT line MATCHES " errors=0( |$)")
    message(FATAL_ERROR "errors in '${line}'")
  endif()
endforeach()
set(want_lines 16/1 16/4 1024/1 1024/4 65536/1 65536/4 1048576/1 1048576/4
    stream/16 stream/1024 stream/65536 async/16/64)
foreach(want IN LISTS want_lines)
  if(NOT want IN_LIST seen)
    message(FATAL_ERROR "no line for ${want}:\n${out}")
  endif()
endforeach()
list(LENGTH seen n)
list(LENGTH want_lines n_want)
if(NOT n EQUAL n_want)
  message(FATAL_ERROR "expected ${n_want} lines, got ${n}:\n${out}")
endif()
message(STATUS "duct-bench --smoke: ${n} well-formed lines")
