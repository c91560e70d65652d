/* gen/model.c - turns protoc's descriptors into protoc-gen-duct's model
 * (gen.h): resolves the C names of message types as protoc-c spells them,
 * names duct's own functions (names.h), computes method ids, and rejects
 * what duct cannot generate (ids that collide). */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"
#include "names.h"

/* protobuf-c's file options travel as extension 1019 of FileOptions
 * (protobuf-c/protobuf-c.proto). */
#define PB_C_FILE_EXTENSION 1019

void gen_error(gen_ctx *ctx, const char *file, const char *fmt, ...) {
  va_list ap;
  gen_buf_printf(&ctx->errors, "%s%s: ", ctx->errors.len ? "\n" : "", file);
  va_start(ap, fmt);
  gen_buf_vprintf(&ctx->errors, fmt, ap);
  va_end(ap);
}

static const char *package_of(const gen_fdp *fdp) {
  return fdp->package ? fdp->package : "";
}

const char *gen_c_package(gen_ctx *ctx, const gen_fdp *fdp) {
  const char *found = NULL;
  if (fdp->options == NULL)
    return NULL;
  /* protobuf-c does not know the extension, so it keeps the bytes as an
   * unknown field; they are a ProtobufCFileOptions message. Repeated
   * occurrences merge, so the last c_package wins, as in protoc-c. */
  const ProtobufCMessage *base = &fdp->options->base;
  for (unsigned i = 0; i < base->n_unknown_fields; i++) {
    const ProtobufCMessageUnknownField *u = &base->unknown_fields[i];
    if (u->tag != PB_C_FILE_EXTENSION ||
        u->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED)
      continue;
    /* protobuf-c keeps an unknown field's bytes as they were after the
     * tag, so a length-prefixed one still starts with its varint length. */
    size_t skip = 0;
    while (skip < u->len && (u->data[skip] & 0x80))
      skip++;
    if (skip >= u->len)
      continue;
    skip++;
    Duct__Plugin__ProtobufCFileOptions *o =
        duct__plugin__protobuf_cfile_options__unpack(NULL, u->len - skip,
                                                      u->data + skip);
    if (o == NULL)
      continue;
    if (o->c_package != NULL)
      found = gen_strdup(ctx->arena, o->c_package);
    duct__plugin__protobuf_cfile_options__free_unpacked(o, NULL);
  }
  return found;
}

const gen_fdp *gen_find_file(const gen_ctx *ctx, const char *name) {
  for (size_t i = 0; i < ctx->req->n_proto_file; i++)
    if (strcmp(ctx->req->proto_file[i]->name, name) == 0)
      return ctx->req->proto_file[i];
  return NULL;
}

typedef struct type_list {
  gen_type *v;
  size_t n, cap;
} type_list;

/* Adds message `d` (full name `full`, no leading dot) and its nested
 * messages. */
static void add_message(gen_ctx *ctx, type_list *l,
                        const Google__Protobuf__DescriptorProto *d,
                        const char *full, const char *package,
                        const char *c_pkg, const char *stem, int top_level) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    gen_type *v = gen_alloc(ctx->arena, cap * sizeof *v);
    if (l->n)
      memcpy(v, l->v, l->n * sizeof *v);
    l->v = v;
    l->cap = cap;
  }
  gen_type *t = &l->v[l->n++];
  t->full = gen_sprintf(ctx->arena, ".%s", full);
  t->c_name = gen_c_type_name(ctx->arena, full, package, c_pkg);
  t->c_lower = gen_c_lower_name(ctx->arena, full, package, c_pkg);
  t->top_level = top_level;
  t->stem = stem;
  for (size_t i = 0; i < d->n_nested_type; i++) {
    const Google__Protobuf__DescriptorProto *n = d->nested_type[i];
    add_message(ctx, l, n, gen_sprintf(ctx->arena, "%s.%s", full, n->name),
                package, c_pkg, stem, 0);
  }
}

static int by_full(const void *a, const void *b) {
  return strcmp(((const gen_type *)a)->full, ((const gen_type *)b)->full);
}

void gen_index_types(gen_ctx *ctx) {
  type_list l = {0};
  for (size_t f = 0; f < ctx->req->n_proto_file; f++) {
    const gen_fdp *fdp = ctx->req->proto_file[f];
    const char *pkg = package_of(fdp);
    const char *c_pkg = gen_c_package(ctx, fdp);
    const char *stem = gen_strip_proto(ctx->arena, fdp->name);
    for (size_t i = 0; i < fdp->n_message_type; i++) {
      const char *name = fdp->message_type[i]->name;
      const char *full =
          pkg[0] ? gen_sprintf(ctx->arena, "%s.%s", pkg, name) : name;
      add_message(ctx, &l, fdp->message_type[i], full, pkg, c_pkg, stem, 1);
    }
  }
  if (l.n)
    qsort(l.v, l.n, sizeof *l.v, by_full);
  ctx->types = l.v;
  ctx->n_types = l.n;
}

static const gen_type *find_type(const gen_ctx *ctx, const char *full) {
  gen_type key = {.full = full};
  if (ctx->n_types == 0)
    return NULL;
  return bsearch(&key, ctx->types, ctx->n_types, sizeof key, by_full);
}

const char *gen_kind_enum(gen_kind k) {
  static const char *const names[] = {"DUCT_UNARY", "DUCT_SERVER_STREAMING",
                                      "DUCT_CLIENT_STREAMING",
                                      "DUCT_BIDI_STREAMING"};
  return names[k];
}

const char *gen_kind_words(gen_kind k) {
  static const char *const words[] = {"unary", "server streaming",
                                      "client streaming",
                                      "bidirectional streaming"};
  return words[k];
}

/* Fills one method; 0 on success. Every problem is reported (not just the
 * first), so a user fixing a file sees them all at once. */
static int build_method(gen_ctx *ctx, const gen_fdp *fdp,
                        const gen_service *s,
                        const Google__Protobuf__MethodDescriptorProto *md,
                        gen_method *m) {
  gen_arena *a = ctx->arena;
  int rc = 0;
  m->name = md->name;
  m->full_name = gen_sprintf(a, "/%s/%s", s->full_name, md->name);
  m->id = gen_method_id(m->full_name);
  m->kind = md->client_streaming && md->server_streaming ? GEN_BIDI_STREAMING
            : md->client_streaming                       ? GEN_CLIENT_STREAMING
            : md->server_streaming                       ? GEN_SERVER_STREAMING
                                                         : GEN_UNARY;
  m->member = gen_member_name(a, md->name);
  m->client_fn = gen_sprintf(a, "%s_%s", s->prefix, m->member);
  m->invoke_fn = gen_sprintf(a, "%s__invoke", m->client_fn);
  /* The suffixed names are built on the method's plain snake case, not on
   * the escaped member: no keyword ends in a suffix, so Delete gives
   * ..._delete_send rather than ..._delete__send, a name C++ reserves
   * (it has a double underscore). What the suffixes cannot keep apart (a
   * method Get and a method GetAsync) check.c reports. */
  const char *base =
      gen_sprintf(a, "%s_%s", s->prefix, gen_camel_to_lower(a, md->name));
  if (m->kind == GEN_UNARY) {
    m->async_fn = gen_sprintf(a, "%s_async", base);
  } else {
    m->stream_t = gen_sprintf(a, "%s_stream", base);
    m->cancel_fn = gen_sprintf(a, "%s_cancel", base);
    m->finish_fn = gen_sprintf(a, "%s_finish", base);
  }
  if (GEN_SENDS_STREAM(m->kind)) {
    m->send_fn = gen_sprintf(a, "%s_send", base);
    m->close_send_fn = gen_sprintf(a, "%s_close_send", base);
  }
  if (GEN_RECVS_STREAM(m->kind))
    m->recv_fn = gen_sprintf(a, "%s_recv", base);
  m->input = find_type(ctx, md->input_type);
  m->output = find_type(ctx, md->output_type);
  if (m->input == NULL || m->output == NULL) {
    /* protoc resolves every type before calling a plugin, so this means a
     * request that is not protoc's. */
    gen_error(ctx, fdp->name, "method %s.%s: type %s is not in the request",
              s->full_name, md->name,
              m->input == NULL ? md->input_type : md->output_type);
    rc = -1;
  }
  return rc;
}

static int build_service(gen_ctx *ctx, const gen_fdp *fdp, const char *c_pkg,
                         const Google__Protobuf__ServiceDescriptorProto *sd,
                         gen_service *s) {
  gen_arena *a = ctx->arena;
  const char *pkg = package_of(fdp);
  int rc = 0;
  s->full_name = pkg[0] ? gen_sprintf(a, "%s.%s", pkg, sd->name) : sd->name;
  s->prefix = gen_service_prefix(a, c_pkg, sd->name);
  s->service_var = gen_sprintf(a, "%s_service", s->prefix);
  s->handlers_t = gen_sprintf(a, "%s_handlers", s->prefix);
  s->register_fn = gen_sprintf(a, "%s_register", s->prefix);
  s->methods_var = gen_sprintf(a, "%s__methods", s->prefix);
  s->n_methods = sd->n_method;
  s->methods = gen_alloc(a, (sd->n_method + 1) * sizeof *s->methods);
  for (size_t i = 0; i < sd->n_method; i++)
    if (build_method(ctx, fdp, s, sd->method[i], &s->methods[i]) != 0)
      rc = -1;
  return rc;
}

/* Method ids must be unique across the file (docs/PROTOCOL.md): a server
 * hosting the file's services would otherwise refuse to start. */
static int check_ids(gen_ctx *ctx, const gen_file *f) {
  size_t n = 0, k = 0, first = 0, second = 0;
  for (size_t i = 0; i < f->n_services; i++)
    n += f->services[i].n_methods;
  uint32_t *ids = gen_alloc(ctx->arena, (n + 1) * sizeof *ids);
  const gen_method **ms = gen_alloc(ctx->arena, (n + 1) * sizeof *ms);
  for (size_t i = 0; i < f->n_services; i++)
    for (size_t j = 0; j < f->services[i].n_methods; j++) {
      ms[k] = &f->services[i].methods[j];
      ids[k++] = f->services[i].methods[j].id;
    }
  switch (gen_check_ids(ids, n, &first, &second)) {
  case 0:
    return 0;
  case 1:
    gen_error(ctx, f->proto,
              "method %s has id 0, which the protocol reserves; rename it",
              ms[first]->full_name);
    return -1;
  default:
    gen_error(ctx, f->proto,
              "methods %s and %s have the same id 0x%08x (FNV-1a 32 of the "
              "name, docs/PROTOCOL.md); rename one of them",
              ms[first]->full_name, ms[second]->full_name, ids[first]);
    return -1;
  }
}

const char *gen_strip_proto(gen_arena *a, const char *name) {
  size_t n = strlen(name);
  /* protoc-c's StripProto: ".protodevel" or ".proto" comes off. */
  if (n > 11 && strcmp(name + n - 11, ".protodevel") == 0)
    return gen_strndup(a, name, n - 11);
  if (n > 6 && strcmp(name + n - 6, ".proto") == 0)
    return gen_strndup(a, name, n - 6);
  return name;
}

static void add_include(gen_file *f, const gen_type *t, size_t cap) {
  if (t == NULL)
    return;
  for (size_t i = 0; i < f->n_includes; i++)
    if (strcmp(f->includes[i], t->stem) == 0)
      return;
  assert(f->n_includes < cap);
  (void)cap; /* for NDEBUG builds */
  f->includes[f->n_includes++] = t->stem;
}

int gen_build_file(gen_ctx *ctx, const gen_fdp *fdp, gen_file *f) {
  gen_arena *a = ctx->arena;
  int rc = 0;
  memset(f, 0, sizeof *f);
  f->fdp = fdp;
  f->proto = fdp->name;
  f->stem = gen_strip_proto(a, fdp->name);
  const char *c_package = gen_c_package(ctx, fdp);
  f->c_pkg = c_package ? c_package : package_of(fdp);
  f->n_services = fdp->n_service;
  f->services = gen_alloc(a, (fdp->n_service + 1) * sizeof *f->services);
  for (size_t i = 0; i < fdp->n_service; i++)
    if (build_service(ctx, fdp, f->c_pkg, fdp->service[i],
                      &f->services[i]) != 0)
      rc = -1;
  if (rc == 0)
    rc = check_ids(ctx, f);
  if (rc != 0)
    return rc;
  size_t cap = 0;
  for (size_t i = 0; i < f->n_services; i++)
    cap += 2 * f->services[i].n_methods;
  f->includes = gen_alloc(a, (cap + 1) * sizeof *f->includes);
  for (size_t i = 0; i < f->n_services; i++)
    for (size_t j = 0; j < f->services[i].n_methods; j++) {
      add_include(f, f->services[i].methods[j].input, cap);
      add_include(f, f->services[i].methods[j].output, cap);
    }
  return 0;
}
