/* Names and messages of duct_code, generated from DUCT_CODE_MAP so the
 * enum and its strings cannot drift apart. */
#include "duct/status.h"

#include <assert.h>

#define COUNT_ONE(name, value, msg) +1
static_assert(0 DUCT_CODE_MAP(COUNT_ONE) == DUCT_CODE_COUNT,
              "DUCT_CODE_COUNT must match DUCT_CODE_MAP");
#undef COUNT_ONE

const char *duct_code_name(int code) {
  switch (code) {
#define NAME_CASE(name, value, msg) case value: return #name;
    DUCT_CODE_MAP(NAME_CASE)
#undef NAME_CASE
  }
  return "UNKNOWN_CODE";
}

const char *duct_code_message(int code) {
  switch (code) {
#define MSG_CASE(name, value, msg) case value: return msg;
    DUCT_CODE_MAP(MSG_CASE)
#undef MSG_CASE
  }
  return "unknown status code";
}
