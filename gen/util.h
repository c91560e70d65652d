/* gen/util.h - memory and text helpers for protoc-gen-duct.
 *
 * The plugin is a short-lived filter: it reads one request, writes one
 * response and exits. Every string it builds lives in one arena that is
 * freed at the end, so no emitter has to track ownership, and the asan and
 * fuzz builds (which run the plugin under LeakSanitizer) see no leaks. Out
 * of memory is reported and ends the process: there is nothing to recover. */
#ifndef DUCT_GEN_UTIL_H
#define DUCT_GEN_UTIL_H

#include <stdarg.h>
#include <stddef.h>

#if defined(__GNUC__)
#define GEN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define GEN_PRINTF(f, a)
#endif

typedef struct gen_arena gen_arena;

gen_arena *gen_arena_new(void);
void gen_arena_free(gen_arena *a); /* NULL is allowed */
void *gen_alloc(gen_arena *a, size_t size);             /* zeroed */
char *gen_strdup(gen_arena *a, const char *s);
char *gen_strndup(gen_arena *a, const char *s, size_t n);
char *gen_sprintf(gen_arena *a, const char *fmt, ...) GEN_PRINTF(2, 3);

/* A growing text buffer in the arena; text is always NUL-terminated. */
typedef struct gen_buf {
  gen_arena *arena;
  char *text;
  size_t len, cap;
} gen_buf;

void gen_buf_init(gen_buf *b, gen_arena *a);
void gen_buf_puts(gen_buf *b, const char *s);
void gen_buf_printf(gen_buf *b, const char *fmt, ...) GEN_PRINTF(2, 3);
void gen_buf_vprintf(gen_buf *b, const char *fmt, va_list ap);

/* Writes a declaration head, its parameters and a tail, wrapping at 80
 * columns with continuation lines aligned after the '(' so long generated
 * prototypes stay readable: head "duct_code f(", params {"int a", ...},
 * tail ");\n". `indent` is the text before head on its line ("" or "  "). */
void gen_buf_params(gen_buf *b, const char *indent, const char *head,
                    const char *const *params, size_t n, const char *tail);

/* Writes `text` as a C block comment (slash-star to star-slash and a
 * newline), each line starting with `indent` and wrapped at 80 columns. The generated comments name
 * types and functions of any length, so they are wrapped here rather
 * than by hand. In `text`:
 *  - '\n' ends a line; an empty line is a blank comment line;
 *  - a line that starts with spaces is a list item; its continuation
 *    lines are aligned on the text after its label when the label is
 *    followed by two spaces or more ("  req    borrowed: ..."), else two
 *    columns in;
 *  - '~' is a space that is never broken ("(const~ProtobufCMessage~*)m").
 * Words are never split: one longer than the line stays whole. */
void gen_buf_comment(gen_buf *b, const char *indent, const char *text);

#endif /* DUCT_GEN_UTIL_H */
