# Runs protoc with protoc-gen-duct on PROTO and passes only if protoc fails
# and its output contains every '|'-separated EXPECT text and no REJECT
# text. Run by ctest (tests/gen).
file(MAKE_DIRECTORY ${OUT})
execute_process(
  COMMAND ${PROTOC} -I${IMPORT} --plugin=protoc-gen-duct=${PLUGIN}
          --duct_out=${OUT} ${PROTO}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "protoc-gen-duct accepted ${PROTO}; it must refuse it")
endif()
string(REPLACE "|" ";" expect "${EXPECT}")
foreach(e IN LISTS expect)
  string(FIND "${out}" "${e}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "missing from protoc's output: '${e}'\noutput:\n${out}")
  endif()
endforeach()
if(REJECT)
  string(FIND "${out}" "${REJECT}" at)
  if(NOT at EQUAL -1)
    message(FATAL_ERROR "protoc's output names '${REJECT}', which is fine:\n${out}")
  endif()
endif()
message(STATUS "protoc refused ${PROTO} as expected:\n${out}")
