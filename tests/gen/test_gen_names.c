/* Unit tests of protoc-gen-duct's name helpers (gen/names.c): protoc-c's
 * spellings that the stubs must reproduce, duct's own scheme and its
 * escapes (docs/CODEGEN.md) of C and C++ keywords, and the method id
 * checks; and of the comment wrapping the emitters use (gen/util.c). */
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

/* C++ includes the same .duct.h, so no handler field may be a C++
 * keyword either. The list is C++20's ([lex.key], both tables: keywords
 * and the alternative operator spellings), written out here rather than
 * taken from names.c, so a word dropped there fails here. */
static void test_cxx_keywords(void **state) {
  static const char *const cxx20[] = {
      "alignas", "alignof", "asm", "auto", "bool", "break", "case", "catch",
      "char", "char8_t", "char16_t", "char32_t", "class", "concept",
      "const", "consteval", "constexpr", "constinit", "const_cast",
      "continue", "co_await", "co_return", "co_yield", "decltype",
      "default", "delete", "do", "double", "dynamic_cast", "else", "enum",
      "explicit", "export", "extern", "false", "float", "for", "friend",
      "goto", "if", "inline", "int", "long", "mutable", "namespace", "new",
      "noexcept", "nullptr", "operator", "private", "protected", "public",
      "register", "reinterpret_cast", "requires", "return", "short",
      "signed", "sizeof", "static", "static_assert", "static_cast",
      "struct", "switch", "template", "this", "thread_local", "throw",
      "true", "try", "typedef", "typeid", "typename", "union", "unsigned",
      "using", "virtual", "void", "volatile", "wchar_t", "while",
      /* alternative tokens */
      "and", "and_eq", "bitand", "bitor", "compl", "not", "not_eq", "or",
      "or_eq", "xor", "xor_eq"};
  (void)state;
  for (size_t i = 0; i < sizeof cxx20 / sizeof cxx20[0]; i++) {
    /* A proto method may be spelled in lower case too; its snake case is
     * then the word itself. */
    assert_true(gen_is_reserved_member(cxx20[i]));
    assert_string_equal(gen_member_name(arena, cxx20[i]),
                        gen_sprintf(arena, "%s_", cxx20[i]));
  }
  /* The usual CamelCase spellings, as in tests/protos/cxx_keywords.proto
   * (and its golden header). */
  assert_string_equal(gen_member_name(arena, "Delete"), "delete_");
  assert_string_equal(gen_member_name(arena, "New"), "new_");
  assert_string_equal(gen_member_name(arena, "Class"), "class_");
  assert_string_equal(gen_member_name(arena, "Template"), "template_");
  assert_string_equal(gen_member_name(arena, "This"), "this_");
  assert_string_equal(gen_member_name(arena, "Operator"), "operator_");
  assert_string_equal(gen_member_name(arena, "Namespace"), "namespace_");
  /* Keywords with '_' or a digit are reached through CamelToLower. */
  assert_string_equal(gen_member_name(arena, "Char8T"), "char8_t_");
  assert_string_equal(gen_member_name(arena, "CoAwait"), "co_await_");
  assert_string_equal(gen_member_name(arena, "StaticCast"), "static_cast_");
  assert_string_equal(gen_member_name(arena, "AndEq"), "and_eq_");
  /* Escaped names stay one-to-one: "Delete_" is not "Delete". */
  assert_string_equal(gen_member_name(arena, "Delete_"), "delete__");
  /* Contextual words are identifiers as members: not escaped. */
  assert_string_equal(gen_member_name(arena, "Final"), "final");
  assert_string_equal(gen_member_name(arena, "Override"), "override");
  assert_string_equal(gen_member_name(arena, "Import"), "import");
  assert_string_equal(gen_member_name(arena, "Module"), "module");
  /* Nor are words that merely contain a keyword. */
  assert_string_equal(gen_member_name(arena, "DeleteAll"), "delete_all");
  assert_string_equal(gen_member_name(arena, "Newest"), "newest");
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

/* The wrapping of generated comments (gen_buf_comment): at 80 columns,
 * list items continued under their text, '~' kept together, room left
 * for the closing star-slash. */
static void test_comment_wrap(void **state) {
  (void)state;
  gen_buf b;
  gen_buf_init(&b, arena);
  gen_buf_comment(&b, "",
                  "Starts the call on channel `ch`, and this sentence is "
                  "long enough to wrap.\n"
                  "  req    borrowed: packed and sent before this returns, "
                  "which takes more words.\n"
                  "  DUCT_OK with *msg a new message that the caller frees "
                  "with x__free_unpacked(*msg,~alloc);\n"
                  "\n"
                  "These last words fit in eighty columns but not with the "
                  "closing mark: xxxxx");
  assert_string_equal(
      b.text,
      "/* Starts the call on channel `ch`, and this sentence is long enough "
      "to wrap.\n"
      " *   req    borrowed: packed and sent before this returns, which takes "
      "more\n"
      " *          words.\n"
      " *   DUCT_OK with *msg a new message that the caller frees with\n"
      " *     x__free_unpacked(*msg, alloc);\n"
      " *\n"
      " * These last words fit in eighty columns but not with the closing "
      "mark:\n"
      " * xxxxx */\n");

  gen_buf_init(&b, arena);
  gen_buf_comment(&b, "  ", "/x.Y/Z, server streaming: short.");
  assert_string_equal(b.text, "  /* /x.Y/Z, server streaming: short. */\n");
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
      cmocka_unit_test(test_cxx_keywords),
      cmocka_unit_test(test_method_id_matches_runtime),
      cmocka_unit_test(test_check_ids),
      cmocka_unit_test(test_comment_wrap),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
