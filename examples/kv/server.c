/* kv-server ADDRESS [--no-reflection]: serves the
 * duct.examples.kv.KeyValue service (Put, Get, Delete, List, and Watch, a
 * stream of changes) (proto/examples/kv.proto), and server reflection
 * unless --no-reflection (docs/GUIDE.md, "Reflection"), until SIGINT/SIGTERM (Ctrl-C on Windows), then
 * stops gracefully and exits 0. Exit 2 if the address cannot be served
 * (for example another server holds it), 64 for bad usage. */
#include <stdio.h>
#include <string.h>

#include <duct/duct.h>

#include "examples/kv.duct.h"
#include "store.h"

/* Handlers get the store through duct_ctx_user; replies are built in the
 * call's memory (duct_ctx_alloc), which duct frees after sending. */

static duct_code kv_put(duct_ctx *ctx, const Duct__Examples__Kv__PutRequest *req,
                        Duct__Examples__Kv__PutReply *reply) {
  int rc = kv_store_put(duct_ctx_user(ctx), req->key, req->value);
  if (rc < 0)
    return duct_ctx_fail(ctx, DUCT_RESOURCE_EXHAUSTED, "out of memory storing '%s'", req->key);
  reply->replaced = rc == 1;
  return DUCT_OK;
}

typedef struct copy_arg {
  duct_ctx *ctx;
  char *out;
} copy_arg;

static int copy_value(void *arg, const char *value) {
  copy_arg *c = arg;
  c->out = duct_ctx_strdup(c->ctx, value);
  return c->out ? 0 : -1;
}

static duct_code kv_get(duct_ctx *ctx, const Duct__Examples__Kv__GetRequest *req,
                        Duct__Examples__Kv__GetReply *reply) {
  copy_arg c = {ctx, NULL};
  int rc = kv_store_get(duct_ctx_user(ctx), req->key, copy_value, &c);
  if (rc == -1)
    return duct_ctx_fail(ctx, DUCT_NOT_FOUND, "key '%s' not found", req->key);
  if (rc != 0)
    return duct_ctx_fail(ctx, DUCT_RESOURCE_EXHAUSTED, "out of memory reading '%s'", req->key);
  reply->value = c.out;
  return DUCT_OK;
}

static duct_code kv_delete(duct_ctx *ctx, const Duct__Examples__Kv__DeleteRequest *req,
                           Duct__Examples__Kv__DeleteReply *reply) {
  (void)reply;
  if (kv_store_del(duct_ctx_user(ctx), req->key) != 0)
    return duct_ctx_fail(ctx, DUCT_NOT_FOUND, "key '%s' not found", req->key);
  return DUCT_OK;
}

typedef struct list_arg {
  duct_ctx *ctx;
  Duct__Examples__Kv__ListReply *reply;
} list_arg;

static int add_key(void *arg, size_t i, size_t n, const char *key) {
  list_arg *l = arg;
  if (i == 0) {
    l->reply->keys = duct_ctx_alloc(l->ctx, n * sizeof *l->reply->keys);
    if (!l->reply->keys)
      return -1;
  }
  if (!(l->reply->keys[i] = duct_ctx_strdup(l->ctx, key)))
    return -1;
  l->reply->n_keys = i + 1;
  return 0;
}

static duct_code kv_list(duct_ctx *ctx, const Duct__Examples__Kv__ListRequest *req,
                         Duct__Examples__Kv__ListReply *reply) {
  (void)req;
  list_arg l = {ctx, reply};
  size_t n = kv_store_list(duct_ctx_user(ctx), add_key, &l);
  if (reply->n_keys != n)
    return duct_ctx_fail(ctx, DUCT_RESOURCE_EXHAUSTED, "out of memory listing %zu keys", n);
  return DUCT_OK;
}

/* A watch: the stream is kept after the handler returns (no thread of
 * the server's waits with it) and gets an event from whichever thread
 * changes the store. Its record lives in the call's memory, which duct
 * keeps until the stream is finished and no callback of it runs. */
typedef struct watch {
  kv_store *store;
  duct_stream *out;
  unsigned long id;
} watch;

/* Runs under the store's lock, in the order of the changes. A send never
 * waits here: a watcher whose window is full (it does not read) is ended
 * rather than slowing every writer. */
static int publish(void *arg, const char *key, const char *value) {
  watch *w = arg;
  Duct__Examples__Kv__Event ev = DUCT__EXAMPLES__KV__EVENT__INIT;
  ev.kind = value ? DUCT__EXAMPLES__KV__EVENT__KIND__PUT : DUCT__EXAMPLES__KV__EVENT__KIND__DELETE;
  ev.key = (char *)key;
  ev.value = (char *)(value ? value : "");
  duct_code rc = duct_stream_send(w->out, (const ProtobufCMessage *)&ev, 0);
  if (rc == DUCT_OK)
    return 0;
  if (rc == DUCT_RESOURCE_EXHAUSTED)
    duct_stream_finish(w->out, rc, "the watcher fell behind: it did not read its events");
  else
    duct_stream_finish(w->out, rc, NULL);
  return 1; /* the store forgets it; w is not touched again */
}

/* The client cancelled or left, or the server is stopping. The store
 * forgets the watch unless publish already ended it. */
static void watch_cancelled(duct_ctx *ctx, void *arg) {
  (void)ctx;
  watch *w = arg;
  if (kv_store_unwatch(w->store, w->id))
    duct_stream_finish(w->out, DUCT_CANCELLED, NULL);
}

static duct_code kv_watch(duct_ctx *ctx, const Duct__Examples__Kv__WatchRequest *req,
                          duct_stream *out) {
  watch *w = duct_ctx_alloc(ctx, sizeof *w);
  if (!w)
    return duct_ctx_fail(ctx, DUCT_RESOURCE_EXHAUSTED, "out of memory for a watch");
  w->store = duct_ctx_user(ctx);
  w->out = out;
  duct_stream_keep(out); /* before publish may finish it */
  w->id = kv_store_watch(w->store, req->prefix, publish, w);
  if (!w->id)
    return duct_stream_finish(out, DUCT_RESOURCE_EXHAUSTED, "out of memory for a watch");
  duct_ctx_on_cancel(ctx, watch_cancelled, w);
  return DUCT_OK;
}

static const duct_examples_kv_key_value_handlers handlers = {
    .put = kv_put,
    .get = kv_get,
    .delete_ = kv_delete,
    .list = kv_list,
    .watch = kv_watch,
};

int main(int argc, char **argv) {
  /* Reflection (`duct list ADDRESS`) is on unless asked off: the server
   * then answers its calls UNIMPLEMENTED, as one built without it would. */
  duct_server_opts opts = {0};
  if (argc == 3 && strcmp(argv[2], "--no-reflection") == 0)
    opts.disable_reflection = 1;
  else if (argc != 2) {
    fprintf(stderr,
            "usage: %s ADDRESS [--no-reflection]\n"
            "  --no-reflection  do not answer duct.reflection.v1.Reflection "
            "(duct list/describe)\n",
            argv[0]);
    return 64;
  }
  duct_stop_signals_catch();
  kv_store *store = kv_store_new();
  duct_server *s = NULL;
  duct_code rc = store ? duct_server_new(&opts, &s) : DUCT_RESOURCE_EXHAUSTED;
  if (rc == DUCT_OK)
    rc = duct_examples_kv_key_value_register(s, &handlers, store);
  if (rc == DUCT_OK)
    rc = duct_server_listen(s, argv[1]);
  if (rc == DUCT_OK)
    rc = duct_server_start(s);
  if (rc != DUCT_OK) {
    /* duct already logged the details (e.g. who holds the address). */
    fprintf(stderr, "kv-server: cannot serve %s: %s\n", argv[1], duct_code_message(rc));
    duct_server_free(s);
    kv_store_free(store);
    return 2;
  }
  fprintf(stderr, "kv-server: serving %s (Ctrl-C to stop)\n", argv[1]);
  duct_stop_signals_wait();
  fprintf(stderr, "kv-server: stopping\n");
  duct_server_stop(s, 5000);
  duct_server_free(s);
  kv_store_free(store);
  return 0;
}
