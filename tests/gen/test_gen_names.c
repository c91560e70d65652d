/* Unit tests of protoc-gen-duct's name helpers (gen/names.c): protoc-c's
 * spellings that the stubs must reproduce, duct's own scheme and its
 * escapes (docs/CODEGEN.md), and the method id checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "names.h"
#include "runtime/frame.h"

static gen_arena *arena;

static int setup(void **state) {
  (void)state;
  arena = gen_arena_new();
  return 0;
}

static int teardown(void **state) {
  (void)state;
  gen_arena_free(arena);
  return 0;
}

/* protoc-c's CamelToLower and ToCamel, including their odd corners, which
 * the stubs must match exactly or they name types that do not exist. */
static void test_protoc_c_spellings(void **state) {
  (void)state;
  assert_string_equal(gen_camel_to_lower(arena, "AddRequest"), "add_request");
  assert_string_equal(gen_camel_to_lower(arena, "HTTPRequest"), "httprequest");
  assert_string_equal(gen_camel_to_lower(arena, "ProtobufCFileOptions"),
                      "protobuf_cfile_options");
  assert_string_equal(gen_camel_to_lower(arena, "Foo_Bar"), "foo__bar");
  assert_string_equal(gen_to_camel(arena, "add_request"), "AddRequest");
  assert_string_equal(gen_to_camel(arena, "_x"), "X");
  assert_string_equal(gen_c_type_name(arena, "demo.Outer.Inner", "demo", NULL),
                      "Demo__Outer__Inner");
  assert_string_equal(gen_c_lower_name(arena, "a.b_c.Msg", "a.b_c", NULL),
                      "a__b_c__msg");
  /* c_package replaces the package, or is prepended when there is none. */
  assert_string_equal(gen_c_type_name(arena, "orig.Thing", "orig", "renamed"),
                      "Renamed__Thing");
  assert_string_equal(gen_c_lower_name(arena, "Thing", "", "x.y"),
                      "x__y__thing");
  assert_string_equal(gen_c_type_name(arena, "Ping", "", NULL), "Ping");
}

static void test_duct_scheme(void **state) {
  (void)state;
  assert_string_equal(gen_service_prefix(arena, "demo", "Calculator"),
                      "demo_calculator");
  assert_string_equal(gen_service_prefix(arena, "kw.v1", "WordsAgain"),
                      "kw_v1_words_again");
  assert_string_equal(gen_service_prefix(arena, "", "Clock"), "clock");
  assert_string_equal(gen_member_name(arena, "Add"), "add");
  assert_string_equal(gen_member_name(arena, "GetThing"), "get_thing");
  /* Escapes: duct's service-level words, keywords, standard macros. */
  assert_string_equal(gen_member_name(arena, "Register"), "register_");
  assert_string_equal(gen_member_name(arena, "Service"), "service_");
  assert_string_equal(gen_member_name(arena, "Handlers"), "handlers_");
  assert_string_equal(gen_member_name(arena, "Case"), "case_");
  assert_string_equal(gen_member_name(arena, "Default"), "default_");
  assert_string_equal(gen_member_name(arena, "Errno"), "errno_");
  /* Not reserved: protoc-c's words never meet duct's single-'_' names. */
  assert_string_equal(gen_member_name(arena, "Init"), "init");
  assert_string_equal(gen_member_name(arena, "Free"), "free");
  /* A name that already ends in '_' is escaped too, so "Register" and
   * "Register_" stay apart (register_ and register__). */
  assert_string_equal(gen_member_name(arena, "Register_"), "register__");
  assert_true(gen_is_reserved_member("while"));
  assert_false(gen_is_reserved_member("add"));
}

static void test_method_id_matches_runtime(void **state) {
  static const char *const names[] = {"/demo.Calculator/Add", "/x/y", "",
                                      "/kw.v1.Words/Register"};
  (void)state;
  /* The value docs/PROTOCOL.md gives. */
  assert_int_equal(gen_method_id("/demo.Calculator/Add"), 0x80e9e08du);
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    assert_int_equal(gen_method_id(names[i]), duct__method_id(names[i]));
  /* The pair in tests/protos/bad/collision.proto does collide. */
  assert_int_equal(gen_method_id("/collide.Collide/Mcitdbgfn"),
                   gen_method_id("/collide.Collide/Msatrnnvi"));
}

static void test_check_ids(void **state) {
  size_t a = 99, b = 99;
  (void)state;
  const uint32_t ok[] = {1, 2, 3};
  assert_int_equal(gen_check_ids(ok, 3, &a, &b), 0);
  assert_int_equal(gen_check_ids(ok, 0, &a, &b), 0);
  const uint32_t zero[] = {5, 0, 7};
  assert_int_equal(gen_check_ids(zero, 3, &a, &b), 1);
  assert_int_equal(a, 1);
  const uint32_t dup[] = {5, 6, 7, 6, 5};
  assert_int_equal(gen_check_ids(dup, 5, &a, &b), 2);
  assert_int_equal(a, 1);
  assert_int_equal(b, 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_protoc_c_spellings),
      cmocka_unit_test(test_duct_scheme),
      cmocka_unit_test(test_method_id_matches_runtime),
      cmocka_unit_test(test_check_ids),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
