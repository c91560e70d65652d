/* gen/gen.h - protoc-gen-duct's model of what it generates, shared by the
 * model builder (model.c), the name check (check.c) and the emitters
 * (emit_file.c, emit_service.c, emit_method.c).
 *
 * The flow follows protoc-gen-c's: main.c decodes the request; for each
 * file to generate, model.c resolves every name the output needs and
 * rejects what duct cannot generate (id collisions), check.c proves the
 * names unique, and the emitters print the two files from the model.
 * Emitters make no decisions about names. */
#ifndef DUCT_GEN_GEN_H
#define DUCT_GEN_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "duct/plugin.pb-c.h"
#include "util.h"

typedef Duct__Plugin__CodeGeneratorRequest gen_request;
typedef Google__Protobuf__FileDescriptorProto gen_fdp;

/* A message type as protoc-c names it. */
typedef struct gen_type {
  const char *full;    /* ".pkg.Outer.Inner", as method descriptors say */
  const char *c_name;  /* Pkg__Outer__Inner */
  const char *c_lower; /* pkg__outer__inner */
  int top_level;       /* protoc-c emits __free_unpacked for these only */
  const char *stem;    /* defining file without ".proto": "<stem>.pb-c.h" */
} gen_type;

/* A method's shape, from the .proto's `stream` keywords. The values are
 * duct_method_kind's (duct/service.h), which the method table spells out
 * by name (gen_kind_enum). */
typedef enum gen_kind {
  GEN_UNARY = 0,
  GEN_SERVER_STREAMING = 1,
  GEN_CLIENT_STREAMING = 2,
  GEN_BIDI_STREAMING = 3,
} gen_kind;

/* "DUCT_UNARY", ... and "unary", "server streaming", ... for `k`. */
const char *gen_kind_enum(gen_kind k);
const char *gen_kind_words(gen_kind k);

/* Whether the client sends a stream (client and bidirectional streaming)
 * and whether it receives one (server and bidirectional streaming). */
#define GEN_SENDS_STREAM(k) ((k) == GEN_CLIENT_STREAMING || (k) == GEN_BIDI_STREAMING)
#define GEN_RECVS_STREAM(k) ((k) == GEN_SERVER_STREAMING || (k) == GEN_BIDI_STREAMING)

/* A method's client names are client_fn and, per kind, <prefix>_<snake>
 * plus a suffix, <snake> being the method's snake case before any escape
 * (a method Delete: client_fn ..._delete_, stream type ..._delete_stream);
 * a name the kind does not generate is NULL. The examples are for a
 * method Add (unary) and a method Chat (bidirectional) of
 * demo.Calculator. */
typedef struct gen_method {
  const char *name;      /* "Add", as in the .proto */
  const char *full_name; /* "/demo.Calculator/Add": the wire name */
  uint32_t id;           /* FNV-1a 32 of full_name */
  gen_kind kind;
  const char *member;    /* "add": the handler table's field */
  const char *client_fn; /* "demo_calculator_add": the blocking call
                            (unary) or the call's start (streaming) */
  const char *invoke_fn; /* "demo_calculator_add__invoke" (file-static) */
  const char *async_fn;  /* unary: "demo_calculator_add_async" */
  /* streaming: the typed handle "demo_calculator_chat_stream" and the
   * functions that wrap duct_client_stream_*: _send and _close_send
   * (client, bidi), _recv (server, bidi), _cancel and _finish (all). */
  const char *stream_t;
  const char *send_fn, *close_send_fn, *recv_fn, *cancel_fn, *finish_fn;
  const gen_type *input, *output;
} gen_method;

typedef struct gen_service {
  const char *full_name;   /* "demo.Calculator" */
  const char *prefix;      /* "demo_calculator" */
  const char *service_var; /* "demo_calculator_service" */
  const char *handlers_t;  /* "demo_calculator_handlers" */
  const char *register_fn; /* "demo_calculator_register" */
  const char *methods_var; /* "demo_calculator__methods" (file-static) */
  /* The file-static duct_file of the service's .proto ("duct__file_0"),
   * set by gen_emit_files before the service is emitted. */
  const char *file_var;
  gen_method *methods;
  size_t n_methods;
} gen_service;

typedef struct gen_file {
  const gen_fdp *fdp;
  const char *proto;    /* "dir/calc.proto" */
  const char *stem;     /* "dir/calc" */
  const char *c_pkg;    /* the C package: c_package, else package, or "" */
  gen_service *services;
  size_t n_services;
  /* The .pb-c.h files that define the methods' message types, in order of
   * first use. The stubs include these, not necessarily the file's own:
   * a file holding only services needs nothing from its own .pb-c.h. */
  const char **includes;
  size_t n_includes;
} gen_file;

typedef struct gen_ctx {
  gen_arena *arena;
  const gen_request *req;
  gen_type *types; /* every message in the request, sorted by full name */
  size_t n_types;
  gen_buf errors;  /* one line per problem; empty when all is well */
} gen_ctx;

/* Appends one error line "<file>: <text>" to ctx->errors. */
void gen_error(gen_ctx *ctx, const char *file, const char *fmt, ...)
    GEN_PRINTF(3, 4);

/* model.c */
/* "dir/x.proto" -> "dir/x", as protoc-c's StripProto. */
const char *gen_strip_proto(gen_arena *a, const char *name);
void gen_index_types(gen_ctx *ctx);
const gen_fdp *gen_find_file(const gen_ctx *ctx, const char *name);
/* The c_package option protobuf-c reads from `fdp`, or NULL. */
const char *gen_c_package(gen_ctx *ctx, const gen_fdp *fdp);
/* Builds the model of `fdp`. Returns 0 and leaves errors in ctx->errors
 * when the file cannot be generated. */
int gen_build_file(gen_ctx *ctx, const gen_fdp *fdp, gen_file *out);

/* check.c: 0 when every name `f` generates is distinct from every other
 * and from what protoc-c generates for `f` and the files it imports;
 * otherwise reports each clash to ctx->errors and returns -1. */
int gen_check_names(gen_ctx *ctx, const gen_file *f);

/* emit_file.c, emit_service.c, emit_method.c */
char *gen_emit_header(gen_ctx *ctx, const gen_file *f);
char *gen_emit_source(gen_ctx *ctx, const gen_file *f);
/* Emits the embedded files of `f` (emit_files.c) and returns the name of
 * the generated file's own duct_file, for the services to point at. */
const char *gen_emit_files(gen_ctx *ctx, gen_buf *b, const gen_file *f);
void gen_emit_service_decls(gen_buf *b, const gen_service *s);
void gen_emit_service_defs(gen_buf *b, const gen_service *s);
void gen_emit_method_client_decl(gen_buf *b, const gen_service *s,
                                 const gen_method *m, size_t index);
void gen_emit_method_handler_field(gen_buf *b, const gen_method *m);
void gen_emit_method_invoke(gen_buf *b, const gen_service *s,
                            const gen_method *m);
void gen_emit_method_entry(gen_buf *b, const gen_method *m);
void gen_emit_method_client_def(gen_buf *b, const gen_service *s,
                                const gen_method *m, size_t index);

#endif /* DUCT_GEN_GEN_H */
