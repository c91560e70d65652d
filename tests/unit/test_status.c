/* duct_code names and messages come from one list; these tests check that
 * every code has a distinct name and a message, and that the numbers are
 * gRPC's (users compare them against gRPC documentation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "duct/status.h"
#include "duct/version.h"

static void test_codes_match_grpc(void **state) {
  (void)state;
  assert_int_equal(DUCT_OK, 0);
  assert_int_equal(DUCT_CANCELLED, 1);
  assert_int_equal(DUCT_DEADLINE_EXCEEDED, 4);
  assert_int_equal(DUCT_PERMISSION_DENIED, 7);
  assert_int_equal(DUCT_RESOURCE_EXHAUSTED, 8);
  assert_int_equal(DUCT_UNIMPLEMENTED, 12);
  assert_int_equal(DUCT_INTERNAL, 13);
  assert_int_equal(DUCT_UNAVAILABLE, 14);
  assert_int_equal(DUCT_UNAUTHENTICATED, 16);
}

static void test_names_distinct_and_messages_present(void **state) {
  (void)state;
  for (int a = 0; a < DUCT_CODE_COUNT; a++) {
    assert_string_not_equal(duct_code_name(a), "UNKNOWN_CODE");
    assert_string_not_equal(duct_code_message(a), "unknown status code");
    assert_true(strlen(duct_code_message(a)) > 1);
    for (int b = a + 1; b < DUCT_CODE_COUNT; b++)
      assert_string_not_equal(duct_code_name(a), duct_code_name(b));
  }
  assert_string_equal(duct_code_name(DUCT_DEADLINE_EXCEEDED), "DEADLINE_EXCEEDED");
  assert_string_equal(duct_code_name(DUCT_OK), "OK");
}

static void test_out_of_range(void **state) {
  (void)state;
  assert_string_equal(duct_code_name(DUCT_CODE_COUNT), "UNKNOWN_CODE");
  assert_string_equal(duct_code_name(-1), "UNKNOWN_CODE");
  assert_string_equal(duct_code_message(1000), "unknown status code");
}

/* The library and its header agree, and the parts make up the string. */
static void test_version(void **state) {
  (void)state;
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", DUCT_VERSION_MAJOR, DUCT_VERSION_MINOR,
           DUCT_VERSION_PATCH);
  assert_string_equal(DUCT_VERSION_STRING, want);
  assert_string_equal(duct_version_string(), DUCT_VERSION_STRING);
  assert_int_equal(duct_version(), DUCT_VERSION_NUMBER);
  assert_int_equal(DUCT_VERSION_NUMBER, (DUCT_VERSION_MAJOR << 16) |
                                            (DUCT_VERSION_MINOR << 8) | DUCT_VERSION_PATCH);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_version),
      cmocka_unit_test(test_codes_match_grpc),
      cmocka_unit_test(test_names_distinct_and_messages_present),
      cmocka_unit_test(test_out_of_range),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
