/* gen/names.c - name mangling for protoc-gen-duct (see names.h and
 * docs/CODEGEN.md for the scheme and why it cannot collide). */
#include "names.h"

#include <string.h>
#include "runtime/frame.h"

/* ASCII-only case tests: protoc-c uses the C library's, which behave so in
 * the "C" locale protoc runs plugins under, and proto identifiers are
 * ASCII anyway ([A-Za-z_][A-Za-z0-9_]*). */
static int is_upper(char c) { return c >= 'A' && c <= 'Z'; }
static int is_lower(char c) { return c >= 'a' && c <= 'z'; }
static char lower(char c) { return is_upper(c) ? (char)(c - 'A' + 'a') : c; }
static char upper(char c) { return is_lower(c) ? (char)(c - 'a' + 'A') : c; }

char *gen_camel_to_lower(gen_arena *a, const char *name) {
  gen_buf b;
  int was_upper = 1; /* no '_' before a leading capital */
  gen_buf_init(&b, a);
  for (const char *p = name; *p; p++) {
    int up = is_upper(*p);
    char c[3] = {0};
    if (up && !was_upper) {
      c[0] = '_';
      c[1] = lower(*p);
    } else {
      c[0] = lower(*p);
    }
    gen_buf_puts(&b, c);
    was_upper = up;
  }
  return b.text;
}

char *gen_to_camel(gen_arena *a, const char *name) {
  gen_buf b;
  int next_upper = 1;
  gen_buf_init(&b, a);
  for (const char *p = name; *p; p++) {
    if (*p == '_') {
      next_upper = 1;
      continue;
    }
    char c[2] = {next_upper ? upper(*p) : *p, 0};
    gen_buf_puts(&b, c);
    next_upper = 0;
  }
  return b.text;
}

/* protoc-c's OverrideFullName: with c_package set, the package part of the
 * full name is replaced by it (and a '.' added when the file had none). */
static const char *override_full_name(gen_arena *a, const char *full,
                                      const char *package,
                                      const char *c_package) {
  if (c_package == NULL)
    return full;
  return gen_sprintf(a, "%s%s%s", c_package, package[0] ? "" : ".",
                     full + strlen(package));
}

/* Splits `full` at '.', skips empty parts, converts each with `conv` and
 * joins them with `sep`. */
static char *join_parts(gen_arena *a, const char *full, const char *sep,
                        char *(*conv)(gen_arena *, const char *)) {
  gen_buf b;
  gen_buf_init(&b, a);
  const char *p = full;
  while (*p) {
    const char *dot = strchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    if (n > 0) {
      if (b.len > 0)
        gen_buf_puts(&b, sep);
      gen_buf_puts(&b, conv(a, gen_strndup(a, p, n)));
    }
    p += n;
    if (*p == '.')
      p++;
  }
  return b.text;
}

char *gen_c_type_name(gen_arena *a, const char *full, const char *package,
                      const char *c_package) {
  return join_parts(a, override_full_name(a, full, package, c_package), "__",
                    gen_to_camel);
}

char *gen_c_lower_name(gen_arena *a, const char *full, const char *package,
                       const char *c_package) {
  return join_parts(a, override_full_name(a, full, package, c_package), "__",
                    gen_camel_to_lower);
}

char *gen_service_prefix(gen_arena *a, const char *pkg, const char *service) {
  /* Single '_' throughout, for readability (demo_calculator_add); protoc-c
   * joins with "__", so its names and these never take the same form for
   * a well-formed package (docs/CODEGEN.md has the argument), and
   * check.c verifies every file anyway. */
  char *p = join_parts(a, pkg, "_", gen_camel_to_lower);
  char *s = gen_camel_to_lower(a, service);
  return p[0] ? gen_sprintf(a, "%s_%s", p, s) : s;
}

/* Words a member name may not be: C11 keywords, the C23 ones (so the
 * output stays valid for newer compilers), the C++20 keywords (a C++
 * translation unit includes the same .duct.h, so a handler field named
 * `delete` or `class` would not compile there), lower-case macros that the
 * standard headers define (a struct member named errno would expand) and
 * duct's service-level words (a method Register would otherwise be named
 * like the register function). Searched linearly: it is short, and the
 * plugin looks up a few words per method. */
static const char *const reserved[] = {
    /* C11 */
    "auto", "break", "case", "char", "const", "continue", "default", "do",
    "double", "else", "enum", "extern", "float", "for", "goto", "if",
    "inline", "int", "long", "register", "restrict", "return", "short",
    "signed", "sizeof", "static", "struct", "switch", "typedef", "union",
    "unsigned", "void", "volatile", "while",
    /* C23 and the macros of <stdbool.h>, <stdalign.h>, <stdnoreturn.h>,
     * <assert.h>, <complex.h> */
    "alignas", "alignof", "bool", "constexpr", "false", "nullptr",
    "static_assert", "thread_local", "true", "typeof", "typeof_unqual",
    "noreturn", "complex", "imaginary",
    /* C++20 keywords that C does not have (the shared ones are above).
     * The alternative operator spellings (and, or, not, ...) are keywords
     * in C++ and macros of <iso646.h> in C, so they are out in both. asm
     * is a C++ keyword and a GNU C one. Contextual words (final, override,
     * import, module) are ordinary identifiers as member names and stay
     * allowed. */
    "asm", "catch", "char8_t", "char16_t", "char32_t", "class", "concept",
    "consteval", "constinit", "const_cast", "co_await", "co_return",
    "co_yield", "decltype", "delete", "dynamic_cast", "explicit", "export",
    "friend", "mutable", "namespace", "new", "noexcept", "operator",
    "private", "protected", "public", "reinterpret_cast", "requires",
    "static_cast", "template", "this", "throw", "try", "typeid",
    "typename", "using", "virtual", "wchar_t",
    "and", "and_eq", "bitand", "bitor", "compl", "not", "not_eq", "or",
    "or_eq", "xor", "xor_eq",
    /* object-like macros of the standard library */
    "errno", "stdin", "stdout", "stderr",
    /* duct's service-level names: <prefix>_<word> */
    "service", "handlers", "register",
};

int gen_is_reserved_member(const char *s) {
  for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
    if (strcmp(s, reserved[i]) == 0)
      return 1;
  return 0;
}

char *gen_member_name(gen_arena *a, const char *method) {
  char *s = gen_camel_to_lower(a, method);
  size_t n = strlen(s);
  if (gen_is_reserved_member(s) || (n > 0 && s[n - 1] == '_'))
    return gen_sprintf(a, "%s_", s);
  return s;
}

uint32_t gen_method_id(const char *full_name) { return duct__method_id(full_name); }

int gen_check_ids(const uint32_t *ids, size_t n, size_t *first,
                  size_t *second) {
  /* Quadratic, on purpose: a service has tens of methods, and reporting
   * the earliest pair in file order makes the error message stable. */
  for (size_t i = 0; i < n; i++) {
    if (ids[i] == 0) {
      *first = i;
      return 1;
    }
    for (size_t j = 0; j < i; j++) {
      if (ids[j] == ids[i]) {
        *first = j;
        *second = i;
        return 2;
      }
    }
  }
  return 0;
}
