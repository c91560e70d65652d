/* protoc-gen-duct - the protoc plugin that writes duct's typed stubs.
 *
 *   protoc --plugin=protoc-gen-duct=<path> --duct_out=<dir> x.proto
 *
 * protoc writes a CodeGeneratorRequest to stdin and reads a
 * CodeGeneratorResponse from stdout (proto/duct/plugin.proto). For each
 * file to generate that has services, the response carries <name>.duct.h
 * and <name>.duct.c, to sit beside protoc-c's <name>.pb-c.h/.c. Anything
 * that cannot be generated goes back in the response's `error`, which
 * protoc prints and fails on; the exit status is then still 0, as the
 * protocol asks. docs/CODEGEN.md describes the output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#endif

typedef Duct__Plugin__CodeGeneratorResponse gen_response;
typedef Duct__Plugin__CodeGeneratorResponse__File gen_out_file;

static unsigned char *read_all(FILE *in, size_t *len) {
  size_t cap = 1 << 16, n = 0;
  unsigned char *p = malloc(cap);
  while (p != NULL) {
    n += fread(p + n, 1, cap - n, in);
    if (n < cap)
      break;
    unsigned char *q = realloc(p, cap * 2);
    if (q == NULL)
      free(p);
    p = q;
    cap *= 2;
  }
  *len = n;
  return p;
}

static void add_file(gen_ctx *ctx, gen_response *res, const char *name,
                     char *content) {
  gen_out_file *f = gen_alloc(ctx->arena, sizeof *f);
  duct__plugin__code_generator_response__file__init(f);
  f->name = (char *)name;
  f->content = content;
  res->file[res->n_file++] = f;
}

/* Generates every requested file into `res`. On any error no file is
 * returned at all: protoc fails the run, and half a set of stubs would only
 * hide the message. */
static void generate(gen_ctx *ctx, gen_response *res) {
  const gen_request *req = ctx->req;
  if (req->parameter != NULL && req->parameter[0] != '\0') {
    gen_error(ctx, "protoc-gen-duct", "unknown parameter '%s' (none exist)",
              req->parameter);
    return;
  }
  gen_index_types(ctx);
  res->file = gen_alloc(ctx->arena,
                        (2 * req->n_file_to_generate + 1) * sizeof *res->file);
  for (size_t i = 0; i < req->n_file_to_generate; i++) {
    const gen_fdp *fdp = gen_find_file(ctx, req->file_to_generate[i]);
    gen_file f;
    if (fdp == NULL) {
      gen_error(ctx, req->file_to_generate[i], "not in the request");
      continue;
    }
    if (fdp->n_service == 0)
      continue; /* nothing to call: protoc-c's output is all there is */
    if (gen_build_file(ctx, fdp, &f) != 0 || gen_check_names(ctx, &f) != 0)
      continue;
    add_file(ctx, res, gen_sprintf(ctx->arena, "%s.duct.h", f.stem),
             gen_emit_header(ctx, &f));
    add_file(ctx, res, gen_sprintf(ctx->arena, "%s.duct.c", f.stem),
             gen_emit_source(ctx, &f));
  }
  if (ctx->errors.len > 0) {
    res->n_file = 0;
    res->error = ctx->errors.text;
  }
}

static const char usage[] =
    "usage: protoc --plugin=protoc-gen-duct=PATH --duct_out=DIR FILE.proto\n"
    "       protoc-gen-duct --version | --help\n"
    "protoc-gen-duct is run by protoc: it reads a CodeGeneratorRequest on\n"
    "stdin and writes <name>.duct.h and <name>.duct.c for every file with a\n"
    "service (docs/CODEGEN.md).\n";

int main(int argc, char **argv) {
  /* protoc runs plugins without arguments; any argument is a person. */
  if (argc > 1) {
    if (strcmp(argv[1], "--version") == 0) {
      printf("protoc-gen-duct %s\n", DUCT_GEN_VERSION);
      return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
      fputs(usage, stdout);
      return 0;
    }
    fprintf(stderr, "protoc-gen-duct: unknown argument '%s'\n%s", argv[1],
            usage);
    return 2;
  }
#ifdef _WIN32
  /* The protocol is binary: no CRLF translation on either stream. */
  _setmode(_fileno(stdin), _O_BINARY);
  _setmode(_fileno(stdout), _O_BINARY);
#endif
  size_t len;
  unsigned char *in = read_all(stdin, &len);
  if (in == NULL || ferror(stdin)) {
    fputs("protoc-gen-duct: cannot read the request from stdin\n", stderr);
    free(in);
    return 1;
  }
  gen_request *req =
      duct__plugin__code_generator_request__unpack(NULL, len, in);
  free(in);
  if (req == NULL) {
    fputs("protoc-gen-duct: stdin is not a CodeGeneratorRequest; this "
          "program is run by protoc (--plugin=protoc-gen-duct=...)\n",
          stderr);
    return 1;
  }

  gen_ctx ctx = {.arena = gen_arena_new(), .req = req};
  gen_buf_init(&ctx.errors, ctx.arena);
  gen_response res = DUCT__PLUGIN__CODE_GENERATOR_RESPONSE__INIT;
  res.has_supported_features = 1;
  res.supported_features =
      DUCT__PLUGIN__CODE_GENERATOR_RESPONSE__FEATURE__FEATURE_PROTO3_OPTIONAL;
  generate(&ctx, &res);

  size_t out_len =
      duct__plugin__code_generator_response__get_packed_size(&res);
  unsigned char *out = malloc(out_len ? out_len : 1);
  int rc = 0;
  if (out == NULL) {
    fputs("protoc-gen-duct: out of memory\n", stderr);
    rc = 1;
  } else {
    duct__plugin__code_generator_response__pack(&res, out);
    if (fwrite(out, 1, out_len, stdout) != out_len || fflush(stdout) != 0) {
      fputs("protoc-gen-duct: cannot write the response to stdout\n",
            stderr);
      rc = 1;
    }
  }
  free(out);
  duct__plugin__code_generator_request__free_unpacked(req, NULL);
  gen_arena_free(ctx.arena);
  return rc;
}
