/* gen/check.c - proves, for one file, that every C name protoc-gen-duct
 * emits is distinct from every other one and from the names protoc-c emits
 * for the file and everything it includes, and that none is a C or C++
 * keyword.
 *
 * The naming scheme (docs/CODEGEN.md) avoids clashes by construction for
 * ordinary proto names; this check covers the rest (identifiers with
 * underscores in odd places, two services whose snake-case names run
 * together, a method named like another's plus one of the suffixes:
 * GetAsync beside a unary Get, ChatSend beside a streaming Chat), so a
 * clash is a generation error naming both sides instead of a compile
 * error in generated code. The stream types are typedef names and struct
 * tags of one spelling, so checking them among the ordinary identifiers
 * covers the tags too. */
#include <stdlib.h>
#include <string.h>

#include "gen.h"
#include "names.h"

typedef struct entry {
  const char *name;
  const char *what; /* "the client function of /demo.S/M" */
  int ours;         /* emitted by protoc-gen-duct */
  size_t seq;       /* order of adding: file order, for stable reports */
} entry;

typedef struct entries {
  gen_arena *arena;
  entry *v;
  size_t n, cap;
} entries;

static void add(entries *e, const char *name, const char *what, int ours) {
  if (e->n == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 256;
    entry *v = gen_alloc(e->arena, cap * sizeof *v);
    if (e->n)
      memcpy(v, e->v, e->n * sizeof *v);
    e->v = v;
    e->cap = cap;
  }
  e->v[e->n] = (entry){name, what, ours, e->n};
  e->n++;
}

/* protoc-c's names for a message and its nested messages and enums
 * (protoc-c/c_message.cc, c_enum.cc): the type, its closure type, and the
 * functions and descriptor named <lower>__<suffix>. */
static void add_message(entries *e, const char *file, const char *full,
                        const char *pkg, const char *c_pkg,
                        const Google__Protobuf__DescriptorProto *d) {
  static const char *const fns[] = {"init", "get_packed_size", "pack",
                                    "pack_to_buffer", "unpack",
                                    "free_unpacked", "descriptor"};
  gen_arena *a = e->arena;
  const char *what = gen_sprintf(a, "protoc-c's names for %s (%s)", full, file);
  const char *c = gen_c_type_name(a, full, pkg, c_pkg);
  const char *lc = gen_c_lower_name(a, full, pkg, c_pkg);
  add(e, c, what, 0);
  add(e, gen_sprintf(a, "%s_Closure", c), what, 0);
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
    add(e, gen_sprintf(a, "%s__%s", lc, fns[i]), what, 0);
  for (size_t i = 0; i < d->n_enum_type; i++) {
    const char *ef = gen_sprintf(a, "%s.%s", full, d->enum_type[i]->name);
    add(e, gen_c_type_name(a, ef, pkg, c_pkg), what, 0);
    add(e, gen_sprintf(a, "%s__descriptor", gen_c_lower_name(a, ef, pkg, c_pkg)),
        what, 0);
  }
  for (size_t i = 0; i < d->n_nested_type; i++)
    add_message(e, file,
                gen_sprintf(a, "%s.%s", full, d->nested_type[i]->name), pkg,
                c_pkg, d->nested_type[i]);
}

/* protoc-c's names for one file's top-level entities (c_file.cc,
 * c_service.cc). Services matter most: protoc-c emits
 * <lower>__<method>, <lower>__init and <lower>__descriptor for each. */
static void add_protoc_c_file(gen_ctx *ctx, entries *e, const gen_fdp *fdp) {
  gen_arena *a = ctx->arena;
  const char *pkg = fdp->package ? fdp->package : "";
  const char *c_pkg = gen_c_package(ctx, fdp);
#define FULL(n) (pkg[0] ? gen_sprintf(a, "%s.%s", pkg, (n)) : (n))
  for (size_t i = 0; i < fdp->n_message_type; i++)
    add_message(e, fdp->name, FULL(fdp->message_type[i]->name), pkg, c_pkg,
                fdp->message_type[i]);
  for (size_t i = 0; i < fdp->n_enum_type; i++) {
    const char *full = FULL(fdp->enum_type[i]->name);
    const char *what = gen_sprintf(a, "protoc-c's names for enum %s", full);
    add(e, gen_c_type_name(a, full, pkg, c_pkg), what, 0);
    add(e,
        gen_sprintf(a, "%s__descriptor", gen_c_lower_name(a, full, pkg, c_pkg)),
        what, 0);
  }
  for (size_t i = 0; i < fdp->n_service; i++) {
    const Google__Protobuf__ServiceDescriptorProto *sd = fdp->service[i];
    const char *full = FULL(sd->name);
    const char *what = gen_sprintf(a, "protoc-c's names for service %s", full);
    const char *c = gen_c_type_name(a, full, pkg, c_pkg);
    const char *lc = gen_c_lower_name(a, full, pkg, c_pkg);
    add(e, gen_sprintf(a, "%s_Service", c), what, 0);
    add(e, gen_sprintf(a, "%s_ServiceDestroy", c), what, 0);
    add(e, gen_sprintf(a, "%s__init", lc), what, 0);
    add(e, gen_sprintf(a, "%s__descriptor", lc), what, 0);
    add(e, gen_sprintf(a, "%s__method_descriptors", lc), what, 0);
    add(e, gen_sprintf(a, "%s__method_indices_by_name", lc), what, 0);
    for (size_t j = 0; j < sd->n_method; j++)
      add(e,
          gen_sprintf(a, "%s__%s", lc,
                      gen_camel_to_lower(a, sd->method[j]->name)),
          what, 0);
  }
#undef FULL
}

/* Adds `fdp` and, once each, every file it imports, directly or not: the
 * generated .pb-c.h includes them all. */
static void add_closure(gen_ctx *ctx, entries *e, const gen_fdp *fdp,
                        const gen_fdp **seen, size_t *n_seen) {
  for (size_t i = 0; i < *n_seen; i++)
    if (seen[i] == fdp)
      return;
  seen[(*n_seen)++] = fdp;
  add_protoc_c_file(ctx, e, fdp);
  for (size_t i = 0; i < fdp->n_dependency; i++) {
    const gen_fdp *dep = gen_find_file(ctx, fdp->dependency[i]);
    if (dep != NULL)
      add_closure(ctx, e, dep, seen, n_seen);
  }
}

static int by_name(const void *a, const void *b) {
  const entry *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  /* duct's own first within a run, so reports read "ours collides with";
   * then file order: qsort is not stable, and without a last key the
   * order of two equal names (two of duct's own that clash) would be the
   * C library's choice, and so would the error message. */
  if (c != 0)
    return c;
  if (x->ours != y->ours)
    return y->ours - x->ours;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Adds one of a method's names, if its kind generates it. */
static void add_method_name(entries *e, const char *name, const char *role,
                            const gen_method *m) {
  if (name != NULL)
    add(e, name, gen_sprintf(e->arena, "the %s of %s", role, m->full_name),
        1);
}

int gen_check_names(gen_ctx *ctx, const gen_file *f) {
  gen_arena *a = ctx->arena;
  entries e = {.arena = a};
  for (size_t i = 0; i < f->n_services; i++) {
    const gen_service *s = &f->services[i];
    add(&e, s->service_var,
        gen_sprintf(a, "the service descriptor of %s", s->full_name), 1);
    add(&e, s->handlers_t,
        gen_sprintf(a, "the handler table type of %s", s->full_name), 1);
    add(&e, s->register_fn,
        gen_sprintf(a, "the register function of %s", s->full_name), 1);
    add(&e, s->methods_var,
        gen_sprintf(a, "the method array of %s", s->full_name), 1);
    for (size_t j = 0; j < s->n_methods; j++) {
      const gen_method *m = &s->methods[j];
      add_method_name(&e, m->client_fn, "client function", m);
      add_method_name(&e, m->invoke_fn, "invoke trampoline", m);
      add_method_name(&e, m->async_fn, "async function", m);
      add_method_name(&e, m->stream_t, "stream type", m);
      add_method_name(&e, m->send_fn, "send function", m);
      add_method_name(&e, m->close_send_fn, "close_send function", m);
      add_method_name(&e, m->recv_fn, "recv function", m);
      add_method_name(&e, m->cancel_fn, "cancel function", m);
      add_method_name(&e, m->finish_fn, "finish function", m);
    }
  }
  size_t n_ours = e.n;
  const gen_fdp **seen =
      gen_alloc(a, (ctx->req->n_proto_file + 1) * sizeof *seen);
  size_t n_seen = 0;
  add_closure(ctx, &e, f->fdp, seen, &n_seen);

  int rc = 0;
  for (size_t i = 0; i < n_ours; i++) {
    /* File-scope names starting with '_' are reserved to the C
     * implementation; they arise only from packages or services whose
     * names start with '_'. */
    if (e.v[i].name[0] == '_') {
      gen_error(ctx, f->proto,
                "generated name '%s' (%s) starts with '_', which C reserves; "
                "rename the package or service",
                e.v[i].name, e.v[i].what);
      rc = -1;
    }
    /* A keyword with an '_' in it can still come out whole: with no
     * package, service Static and method Cast make the client function
     * static_cast (C++), Thread and Local thread_local (C23). Only
     * <svc>_<member> of a file without a package can: every other name
     * has a part too many or a suffix no keyword has. */
    if (gen_is_reserved_member(e.v[i].name)) {
      gen_error(ctx, f->proto,
                "generated name '%s' (%s) is a C or C++ keyword; rename the "
                "method or service, or give the file a package",
                e.v[i].name, e.v[i].what);
      rc = -1;
    }
  }
  qsort(e.v, e.n, sizeof *e.v, by_name);
  for (size_t i = 1; i < e.n; i++) {
    const entry *x = &e.v[i - 1], *y = &e.v[i];
    /* Clashes among protoc-c's own names are protoc-c's to report. */
    if (strcmp(x->name, y->name) != 0 || !x->ours)
      continue;
    gen_error(ctx, f->proto,
              "generated name '%s' (%s) collides with %s; rename one of "
              "them (docs/CODEGEN.md explains the naming scheme)",
              x->name, x->what, y->what);
    rc = -1;
  }
  return rc;
}
