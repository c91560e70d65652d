/* gen/util.c - the plugin's arena and text buffer (see util.h). */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Blocks are chained; each allocation is rounded up so every pointer
 * handed out is aligned for any object (max_align_t). */
typedef struct block {
  struct block *next;
  size_t used, cap;
  _Alignas(max_align_t) unsigned char data[];
} block;

struct gen_arena {
  block *head;
};

static void oom(void) {
  fputs("protoc-gen-duct: out of memory\n", stderr);
  exit(1);
}

gen_arena *gen_arena_new(void) {
  gen_arena *a = calloc(1, sizeof *a);
  if (a == NULL)
    oom();
  return a;
}

void gen_arena_free(gen_arena *a) {
  if (a == NULL)
    return;
  for (block *b = a->head, *next; b != NULL; b = next) {
    next = b->next;
    free(b);
  }
  free(a);
}

void *gen_alloc(gen_arena *a, size_t size) {
  const size_t align = _Alignof(max_align_t);
  size = (size + align - 1) / align * align;
  if (size == 0)
    size = align;
  block *b = a->head;
  if (b == NULL || b->cap - b->used < size) {
    /* A big request gets a block of its own; small ones share 64 KiB. */
    size_t cap = size > 65536 ? size : 65536;
    b = malloc(sizeof *b + cap);
    if (b == NULL)
      oom();
    b->used = 0;
    b->cap = cap;
    b->next = a->head;
    a->head = b;
  }
  void *p = b->data + b->used;
  b->used += size;
  memset(p, 0, size);
  return p;
}

char *gen_strndup(gen_arena *a, const char *s, size_t n) {
  char *p = gen_alloc(a, n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

char *gen_strdup(gen_arena *a, const char *s) {
  return gen_strndup(a, s, strlen(s));
}

char *gen_sprintf(gen_arena *a, const char *fmt, ...) {
  gen_buf b;
  va_list ap;
  gen_buf_init(&b, a);
  va_start(ap, fmt);
  gen_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  return b.text;
}

void gen_buf_init(gen_buf *b, gen_arena *a) {
  b->arena = a;
  b->len = 0;
  b->cap = 64;
  b->text = gen_alloc(a, b->cap);
}

/* Grows to hold `extra` more bytes and the terminator. The old copy stays
 * in the arena until the end: the plugin's output is small, and this keeps
 * the arena a bump allocator. */
static void reserve(gen_buf *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap)
    return;
  size_t cap = b->cap * 2;
  while (cap < b->len + extra + 1)
    cap *= 2;
  char *t = gen_alloc(b->arena, cap);
  memcpy(t, b->text, b->len + 1);
  b->text = t;
  b->cap = cap;
}

void gen_buf_puts(gen_buf *b, const char *s) {
  size_t n = strlen(s);
  reserve(b, n);
  memcpy(b->text + b->len, s, n + 1);
  b->len += n;
}

void gen_buf_vprintf(gen_buf *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0)
    oom(); /* only an encoding error or ENOMEM can fail here */
  reserve(b, (size_t)n);
  vsnprintf(b->text + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
}

void gen_buf_printf(gen_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  gen_buf_vprintf(b, fmt, ap);
  va_end(ap);
}

void gen_buf_params(gen_buf *b, const char *indent, const char *head,
                    const char *const *params, size_t n, const char *tail) {
  size_t col = strlen(indent) + strlen(head);
  /* Align under the '(' unless that leaves too little room; then indent
   * continuation lines by four. */
  size_t cont = col <= 40 ? col : strlen(indent) + 4;
  size_t line = col;
  gen_buf_puts(b, indent);
  gen_buf_puts(b, head);
  for (size_t i = 0; i < n; i++) {
    size_t w = strlen(params[i]) + (i + 1 < n ? 1 : strlen(tail));
    if (i > 0) {
      if (line + 1 + w > 80) {
        gen_buf_printf(b, "\n%*s", (int)cont, "");
        line = cont;
      } else {
        gen_buf_puts(b, " ");
        line += 1;
      }
    }
    gen_buf_puts(b, params[i]);
    line += strlen(params[i]);
    if (i + 1 < n) {
      gen_buf_puts(b, ",");
      line += 1;
    }
  }
  gen_buf_puts(b, tail);
}

/* Appends the n bytes of word at p, its '~' turned into spaces. */
static void put_word(gen_buf *b, const char *p, size_t n) {
  char *w = gen_strndup(b->arena, p, n);
  for (char *q = w; *q; q++)
    if (*q == '~')
      *q = ' ';
  gen_buf_puts(b, w);
}

/* One line of gen_buf_comment's text, [p, end), wrapped. `first` says
 * whether it opens the comment (slash-star rather than " *"), `last`
 * whether the closing star-slash follows it, which the last word must
 * leave room for. */
static void comment_line(gen_buf *b, const char *indent, const char *p,
                         const char *end, int first, int last) {
  const size_t width = 80, lead = strlen(indent) + 3;
  size_t spaces = 0;
  while (p + spaces < end && p[spaces] == ' ')
    spaces++;
  gen_buf_printf(b, "%s%s", indent, first ? "/*" : " *");
  if (spaces == (size_t)(end - p))
    return; /* a blank line: no trailing space */
  gen_buf_puts(b, " ");
  /* The continuation column: after the label's run of two spaces or
   * more, if the label has one, else two columns into the item. */
  size_t cont = spaces ? spaces + 2 : 0;
  if (spaces) {
    const char *q = p + spaces;
    while (q < end && *q != ' ')
      q++;
    const char *t = q;
    while (t < end && *t == ' ')
      t++;
    if (t - q >= 2 && t < end)
      cont = (size_t)(t - p);
  }
  /* Words are written with the spacing the text has (the item's leading
   * spaces, the label's run) until one has to move to a new line. */
  size_t col = lead;
  const char *q = p;
  while (q < end) {
    const char *ws = q;
    while (q < end && *q == ' ')
      q++;
    const char *word = q;
    while (q < end && *q != ' ')
      q++;
    size_t gap = (size_t)(word - ws), n = (size_t)(q - word);
    if (n == 0)
      break; /* trailing spaces */
    const char *rest = q;
    while (rest < end && *rest == ' ')
      rest++;
    size_t limit = last && rest == end ? width - 3 : width;
    if (word != p + spaces && col + gap + n > limit) {
      gen_buf_printf(b, "\n%s *%*s", indent, (int)cont + 1, "");
      col = lead + cont;
      gap = 0;
    }
    gen_buf_printf(b, "%*s", (int)gap, "");
    put_word(b, word, n);
    col += gap + n;
  }
}

void gen_buf_comment(gen_buf *b, const char *indent, const char *text) {
  const char *p = text;
  for (int first = 1;; first = 0) {
    const char *nl = strchr(p, '\n');
    const char *end = nl ? nl : p + strlen(p);
    if (!first)
      gen_buf_puts(b, "\n");
    comment_line(b, indent, p, end, first, nl == NULL);
    if (nl == NULL)
      break;
    p = nl + 1;
  }
  gen_buf_puts(b, " */\n");
}
