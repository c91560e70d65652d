# Fails unless ACTUAL equals EXPECTED byte for byte; shows a diff.
# Refresh the golden files: cmake --build <dir> --target gen_golden_refresh
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${EXPECTED} ${ACTUAL}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  execute_process(COMMAND diff -u ${EXPECTED} ${ACTUAL} OUTPUT_VARIABLE d)
  message(FATAL_ERROR "${ACTUAL} differs from the golden ${EXPECTED}:\n${d}\n"
    "If the change is intended: cmake --build <build dir> --target gen_golden_refresh")
endif()
