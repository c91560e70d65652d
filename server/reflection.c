/* server/reflection.c - the built-in duct.reflection.v1.Reflection service
 * (proto/duct/reflection.proto, docs/GUIDE.md "Reflection"): what the
 * server serves, and the .proto files that define it, read from the
 * duct_service tables and the duct_file descriptors protoc-gen-duct
 * embeds. Every answer points at that static data; the only memory a call
 * takes is its arena (the reply's arrays), freed with the call. */
#include <string.h>

#include "duct/reflection.duct.h"
#include "server/core.h"
#include "server/internal.h"

typedef Duct__Reflection__V1__ServiceInfo service_info;
typedef Duct__Reflection__V1__MethodInfo method_info;

/* The reply's fields are protobuf-c's `char *` and `uint8_t *`, but
 * packing only reads them: the static names and descriptors are pointed
 * at, never copied. */
static char *text(const char *s) { return (char *)(uintptr_t)s; }

static duct_code no_memory(duct_ctx *ctx) {
  return duct_ctx_fail(ctx, DUCT_RESOURCE_EXHAUSTED, "out of memory for the reflection reply");
}

static duct_code list_services(duct_ctx *ctx, const Duct__Reflection__V1__ListServicesRequest *req,
                               Duct__Reflection__V1__ListServicesReply *reply) {
  (void)req;
  size_t n;
  const duct_service *const *svcs = duct__server_services(duct_ctx_user(ctx), &n);
  /* The reflection service itself is always there, so n > 0. */
  service_info **infos = duct_ctx_alloc(ctx, n * (sizeof *infos + sizeof **infos));
  if (!infos)
    return no_memory(ctx);
  service_info *info = (service_info *)(void *)(infos + n);
  for (size_t i = 0; i < n; i++) {
    const duct_service *svc = svcs[i];
    service_info *si = &info[i];
    duct__reflection__v1__service_info__init(si);
    si->name = text(svc->name);
    si->has_descriptors = svc->file != NULL;
    if (svc->n_methods) {
      size_t k = svc->n_methods;
      method_info **ms = duct_ctx_alloc(ctx, k * (sizeof *ms + sizeof **ms));
      if (!ms)
        return no_memory(ctx);
      method_info *m = (method_info *)(void *)(ms + k);
      for (size_t j = 0; j < k; j++) {
        const duct_method *dm = &svc->methods[j];
        duct__reflection__v1__method_info__init(&m[j]);
        /* The wire name is "/pkg.Service/Method": the method's own name
         * follows the last '/'. */
        const char *slash = strrchr(dm->name, '/');
        m[j].name = text(slash ? slash + 1 : dm->name);
        /* MethodKind's values are duct_method_kind's, one for one. */
        m[j].kind = (Duct__Reflection__V1__MethodKind)dm->kind;
        m[j].input_type = text(dm->input->name);
        m[j].output_type = text(dm->output->name);
        ms[j] = &m[j];
      }
      si->n_methods = k;
      si->methods = ms;
    }
    infos[i] = si;
  }
  reply->n_services = n;
  reply->services = infos;
  return DUCT_OK;
}

/* A set of files, one per name, in the order found. Generated code embeds
 * a copy of an imported file in every .duct.c that imports it, so two
 * pointers may be one file: the name decides. */
typedef struct file_set {
  const duct_file **v;
  size_t n, cap;
} file_set;

static int has_file(const file_set *fs, const char *name) {
  for (size_t i = 0; i < fs->n; i++)
    if (strcmp(fs->v[i]->name, name) == 0)
      return 1;
  return 0;
}

/* Adds `f`, then its imports depth first, each once (the order of
 * FilesReply: a file before the files it imports). -1 without memory. The
 * recursion is as deep as the longest import chain, which protoc keeps
 * acyclic. */
static int add_reachable(duct_ctx *ctx, file_set *fs, const duct_file *f) {
  if (has_file(fs, f->name))
    return 0;
  if (fs->n == fs->cap) {
    /* Arena memory is not given back until the call ends; doubling keeps
     * what is left behind under the final size. */
    size_t cap = fs->cap ? fs->cap * 2 : 16;
    const duct_file **v = duct_ctx_alloc(ctx, cap * sizeof *v);
    if (!v)
      return -1;
    if (fs->n)
      memcpy(v, fs->v, fs->n * sizeof *v);
    fs->v = v;
    fs->cap = cap;
  }
  fs->v[fs->n++] = f;
  for (const duct_file *const *d = f->deps; d && *d; d++)
    if (add_reachable(ctx, fs, *d) != 0)
      return -1;
  return 0;
}

static int defines(const duct_file *f, const char *symbol) {
  for (const char *const *s = f->symbols; s && *s; s++)
    if (strcmp(*s, symbol) == 0)
      return 1;
  return 0;
}

static duct_code file_containing_symbol(duct_ctx *ctx,
                                        const Duct__Reflection__V1__SymbolRequest *req,
                                        Duct__Reflection__V1__FilesReply *reply) {
  const char *asked = req->symbol ? req->symbol : "";
  /* One leading '.' (a descriptor's type reference) or '/' (a wire name)
   * is accepted and dropped. */
  if (asked[0] == '.' || asked[0] == '/')
    asked++;
  if (asked[0] == '\0')
    return duct_ctx_fail(ctx, DUCT_INVALID_ARGUMENT, "the symbol is empty");
  /* "pkg.Svc/Method" is the method's wire spelling; files list it as
   * "pkg.Svc.Method". */
  char *symbol = duct_ctx_strdup(ctx, asked);
  if (!symbol)
    return no_memory(ctx);
  for (char *p = symbol; *p; p++)
    if (*p == '/')
      *p = '.';

  size_t n;
  const duct_service *const *svcs = duct__server_services(duct_ctx_user(ctx), &n);
  file_set all = {0};
  for (size_t i = 0; i < n; i++)
    if (svcs[i]->file && add_reachable(ctx, &all, svcs[i]->file) != 0)
      return no_memory(ctx);
  const duct_file *found = NULL;
  for (size_t i = 0; i < all.n && !found; i++)
    if (defines(all.v[i], symbol))
      found = all.v[i];
  if (!found)
    return duct_ctx_fail(ctx, DUCT_NOT_FOUND, "no symbol '%s' on this server", asked);

  file_set out = {0};
  if (add_reachable(ctx, &out, found) != 0)
    return no_memory(ctx);
  ProtobufCBinaryData *files = duct_ctx_alloc(ctx, out.n * sizeof *files);
  if (!files)
    return no_memory(ctx);
  for (size_t i = 0; i < out.n; i++) {
    files[i].len = out.v[i]->size;
    files[i].data = (uint8_t *)(uintptr_t)out.v[i]->descriptor;
  }
  reply->n_file_descriptor_proto = out.n;
  reply->file_descriptor_proto = files;
  return DUCT_OK;
}

static const duct_reflection_v1_reflection_handlers handlers = {
    .list_services = list_services,
    .file_containing_symbol = file_containing_symbol,
};

duct_code duct__reflection_register(duct_server *s) {
  return duct_reflection_v1_reflection_register(s, &handlers, s);
}
