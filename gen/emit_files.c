/* gen/emit_files.c - the emitter for the embedded .proto files: in
 * <name>.duct.c, one static duct_file (duct/service.h) for the generated
 * file and one for each file it imports, directly or not, so a server can
 * answer reflection (docs/GUIDE.md, "Reflection") with no .proto at hand.
 *
 * Each file is emitted once per .duct.c, imports before importers, so a
 * file's `deps` array only points at files already defined. Two .duct.c
 * files that import the same file each carry a copy; the server treats
 * copies with one name as one file. */
#include <string.h>

#include "gen.h"

/* Bytes per line of a descriptor array: "0x0a, " is 6 columns, so 12 of
 * them after a 4-column indent end before column 80. */
#define BYTES_PER_LINE 12

typedef struct file_list {
  const gen_fdp **v;
  size_t n, cap;
} file_list;

static size_t index_of(const file_list *l, const char *name) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->v[i]->name, name) == 0)
      return i;
  return l->n;
}

/* Appends `fdp` after its imports (post-order), each file once. protoc
 * refuses import cycles, so the recursion ends; its depth is the longest
 * import chain. */
static void add_file(gen_ctx *ctx, file_list *l, const gen_fdp *fdp) {
  if (index_of(l, fdp->name) < l->n)
    return;
  for (size_t i = 0; i < fdp->n_dependency; i++) {
    const gen_fdp *dep = gen_find_file(ctx, fdp->dependency[i]);
    /* protoc sends every transitive import; a request without one is not
     * protoc's, and the file is then embedded without that dependency. */
    if (dep != NULL)
      add_file(ctx, l, dep);
  }
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 8;
    const gen_fdp **v = gen_alloc(ctx->arena, cap * sizeof *v);
    if (l->n)
      memcpy(v, l->v, l->n * sizeof *v);
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = fdp;
}

/* The symbols of one message, with its nested messages and enums. */
static void message_symbols(gen_buf *b, const Google__Protobuf__DescriptorProto *d,
                            const char *full) {
  gen_buf_printf(b, "    \"%s\",\n", full);
  for (size_t i = 0; i < d->n_nested_type; i++)
    message_symbols(b, d->nested_type[i],
                    gen_sprintf(b->arena, "%s.%s", full, d->nested_type[i]->name));
  for (size_t i = 0; i < d->n_enum_type; i++)
    gen_buf_printf(b, "    \"%s.%s\",\n", full, d->enum_type[i]->name);
}

/* "pkg.name", or "name" in a file without a package. */
static const char *qualify(gen_arena *a, const gen_fdp *fdp, const char *name) {
  if (fdp->package == NULL || fdp->package[0] == '\0')
    return name;
  return gen_sprintf(a, "%s.%s", fdp->package, name);
}

static void emit_one(gen_ctx *ctx, gen_buf *b, const file_list *l, size_t k) {
  const gen_fdp *fdp = l->v[k];
  gen_arena *a = ctx->arena;
  /* source_code_info (comments and spans) is for editors, not for
   * reflection, and is most of a commented file's size. A shallow copy
   * drops it without touching the request, which is freed as unpacked. */
  gen_fdp copy = *fdp;
  copy.source_code_info = NULL;
  size_t n = google__protobuf__file_descriptor_proto__get_packed_size(&copy);
  uint8_t *bytes = gen_alloc(a, n + 1);
  google__protobuf__file_descriptor_proto__pack(&copy, bytes);

  gen_buf_printf(b, "\n/* %s */\n", fdp->name);
  /* A uint8_t array rather than a string literal: -Wpedantic limits a
   * string literal to 4095 characters (-Woverlength-strings). */
  gen_buf_printf(b, "static const uint8_t duct__file_%zu_descriptor[%zu] = {", k, n);
  for (size_t i = 0; i < n; i++)
    gen_buf_printf(b, "%s0x%02x,", i % BYTES_PER_LINE ? " " : "\n    ", bytes[i]);
  gen_buf_puts(b, "\n};\n");

  gen_buf_printf(b, "static const char *const duct__file_%zu_symbols[] = {\n", k);
  for (size_t i = 0; i < fdp->n_message_type; i++)
    message_symbols(b, fdp->message_type[i], qualify(a, fdp, fdp->message_type[i]->name));
  for (size_t i = 0; i < fdp->n_enum_type; i++)
    gen_buf_printf(b, "    \"%s\",\n", qualify(a, fdp, fdp->enum_type[i]->name));
  for (size_t i = 0; i < fdp->n_service; i++) {
    const Google__Protobuf__ServiceDescriptorProto *sd = fdp->service[i];
    const char *svc = qualify(a, fdp, sd->name);
    gen_buf_printf(b, "    \"%s\",\n", svc);
    for (size_t j = 0; j < sd->n_method; j++)
      gen_buf_printf(b, "    \"%s.%s\",\n", svc, sd->method[j]->name);
  }
  gen_buf_puts(b, "    NULL,\n};\n");

  gen_buf_printf(b, "static const duct_file *const duct__file_%zu_deps[] = {\n", k);
  for (size_t i = 0; i < fdp->n_dependency; i++) {
    size_t d = index_of(l, fdp->dependency[i]);
    if (d < k)
      gen_buf_printf(b, "    &duct__file_%zu,\n", d);
  }
  gen_buf_puts(b, "    NULL,\n};\n");

  gen_buf_printf(b,
                 "static const duct_file duct__file_%zu = {\n"
                 "    .name = \"%s\",\n"
                 "    .descriptor = duct__file_%zu_descriptor,\n"
                 "    .size = sizeof duct__file_%zu_descriptor,\n"
                 "    .symbols = duct__file_%zu_symbols,\n"
                 "    .deps = duct__file_%zu_deps,\n"
                 "};\n",
                 k, fdp->name, k, k, k, k);
}

const char *gen_emit_files(gen_ctx *ctx, gen_buf *b, const gen_file *f) {
  file_list l = {0};
  add_file(ctx, &l, f->fdp);
  gen_buf_puts(b,
               "\n/* ==== embedded .proto files ====\n"
               " * The descriptors of this file and of every file it imports, "
               "for server\n"
               " * reflection (duct/service.h, duct_file). */\n");
  for (size_t k = 0; k < l.n; k++)
    emit_one(ctx, b, &l, k);
  /* The generated file is the last one added: it comes after its imports. */
  return gen_sprintf(ctx->arena, "duct__file_%zu", l.n - 1);
}
