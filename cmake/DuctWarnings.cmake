# Warning flags for duct's own targets (third-party code compiled in the
# cross build does not get them). duct_warnings(<target>) applies them.
function(duct_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic
    -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla)
  if(DUCT_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
