/* duct-probe-server: the helper process of the end-to-end tests.
 *   duct-probe-server ADDRESS [--max-message N] [--idle-ms N] [--workers N]
 *       [--max-connections N] [--max-partial BYTES] [--max-call-memory BYTES]
 *       [--drain-ms N] [--max-calls N] [--as-uid N]
 *     serves duct.test.Probe until its Shutdown method is called, then
 *     stops with a drain of --drain-ms (5000) and exits 0; exit 2 if it cannot listen, 3 if
 *     duct did not free all its memory (counted through duct_set_allocator);
 *     --as-uid N (POSIX, as root) first becomes user N, exit 4 if it cannot.
 *   duct-probe-server --client ADDRESS MS
 *     calls Sleep(MS) on ADDRESS and exits 0 (a client to kill mid-call).
 *   duct-probe-server --stream-client ADDRESS
 *     opens a Subscribe and a Range it never reads, then waits to be
 *     killed (a client that dies mid-stream). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <duct/duct.h>

#include "probe.duct.h"
#include "runtime/sys.h"
#include "sysinfo.h"

static duct__mutex mu;
static duct__cond cv;
static unsigned sleeping, last_auth_pid, last_auth_uid, forbidden_runs;
static int last_auth_has_uid;
static char last_auth_user[256];
static int shutdown_requested;
/* Streams and cancellation, as Stats reports them. */
static unsigned cancels, subs_open, backpressure, stream_cancelled, sleep_cancelled,
    handlers_done;

/* duct's memory, counted: Stats reports it (the load test checks it stays
 * flat) and main checks it all comes back when the server is freed. A
 * header before each block remembers its size. */
static atomic_ullong live_blocks, live_bytes;
#define HDR 16

static void *count_malloc(void *user, size_t n) {
  (void)user;
  unsigned char *p = malloc(HDR + n);
  if (!p)
    return NULL;
  memcpy(p, &n, sizeof n);
  atomic_fetch_add(&live_blocks, 1);
  atomic_fetch_add(&live_bytes, n);
  return p + HDR;
}

static void count_free(void *user, void *q) {
  (void)user;
  if (!q)
    return;
  unsigned char *p = (unsigned char *)q - HDR;
  size_t n;
  memcpy(&n, p, sizeof n);
  atomic_fetch_sub(&live_blocks, 1);
  atomic_fetch_sub(&live_bytes, n);
  free(p);
}

static void *count_realloc(void *user, void *q, size_t n) {
  if (!q)
    return count_malloc(user, n);
  unsigned char *p = (unsigned char *)q - HDR;
  size_t old;
  memcpy(&old, p, sizeof old);
  unsigned char *np = realloc(p, HDR + n);
  if (!np)
    return NULL;
  memcpy(np, &n, sizeof n);
  atomic_fetch_add(&live_bytes, n);
  atomic_fetch_sub(&live_bytes, old);
  return np + HDR;
}

static duct_code echo(duct_ctx *ctx, const Duct__Test__Blob *req, Duct__Test__Blob *reply) {
  (void)ctx;
  reply->data = req->data; /* the request outlives the reply's packing */
  reply->tag = req->tag;
  return DUCT_OK;
}

/* Runs on the thread that sees the cancel: wakes Sleep(watch_cancel). */
static void count_cancel(duct_ctx *ctx, void *user) {
  (void)ctx;
  (void)user;
  duct__mutex_lock(&mu);
  cancels++;
  duct__cond_broadcast(&cv);
  duct__mutex_unlock(&mu);
}

static duct_code do_sleep(duct_ctx *ctx, const Duct__Test__SleepRequest *req,
                          Duct__Test__SleepReply *reply) {
  reply->remaining_ms = duct_ctx_remaining_ms(ctx);
  if (req->watch_cancel)
    duct_ctx_on_cancel(ctx, count_cancel, NULL);
  duct__mutex_lock(&mu);
  sleeping++;
  int64_t until = duct__now_ms() + req->ms;
  /* Nothing but the clock (or, if asked, a cancel) ends this wait: it
   * models a slow handler. */
  while (duct__now_ms() < until && !(req->watch_cancel && duct_ctx_cancelled(ctx)))
    duct__cond_wait(&cv, &mu, until);
  sleeping--;
  int cancelled = req->watch_cancel && duct_ctx_cancelled(ctx);
  sleep_cancelled += cancelled;
  duct__mutex_unlock(&mu);
  return cancelled ? DUCT_CANCELLED : DUCT_OK;
}

static void stream_gone(void) {
  duct__mutex_lock(&mu);
  stream_cancelled++;
  duct__mutex_unlock(&mu);
}

static void handler_done(void) {
  duct__mutex_lock(&mu);
  handlers_done++;
  duct__cond_broadcast(&cv);
  duct__mutex_unlock(&mu);
}

/* Sends n = 0..count-1; a send refused for want of room is counted (the
 * back-pressure the tests look for) and then waits without limit. */
static duct_code range(duct_ctx *ctx, const Duct__Test__RangeRequest *req, duct_stream *out) {
  Duct__Test__Seq m = DUCT__TEST__SEQ__INIT;
  m.pad.len = req->size;
  m.pad.data = req->size ? duct_ctx_alloc(ctx, req->size) : NULL;
  if (req->size && !m.pad.data)
    return duct_ctx_fail(ctx, DUCT_RESOURCE_EXHAUSTED, "no memory for the padding");
  if (req->size)
    memset(m.pad.data, 'x', req->size);
  duct_code rc = DUCT_OK;
  for (uint64_t i = 0; i < req->count && rc == DUCT_OK; i++) {
    m.n = i;
    rc = duct_stream_send(out, (const ProtobufCMessage *)&m, req->timeout_ms);
    if (rc == DUCT_RESOURCE_EXHAUSTED) {
      duct__mutex_lock(&mu);
      backpressure++;
      duct__mutex_unlock(&mu);
      rc = duct_stream_send(out, (const ProtobufCMessage *)&m, -1);
    }
  }
  if (rc != DUCT_OK)
    stream_gone();
  handler_done();
  return rc;
}

/* Subscriptions: kept streams in a list; no thread waits with them. */
typedef struct sub {
  struct sub *next;
  duct_stream *out;
} sub;
static sub *subs;

static void sub_cancelled(duct_ctx *ctx, void *user) {
  sub *me = user;
  int found = 0;
  duct__mutex_lock(&mu);
  cancels++;
  for (sub **pp = &subs; *pp; pp = &(*pp)->next)
    if (*pp == me) {
      *pp = me->next;
      found = 1;
      subs_open--;
      break;
    }
  duct__mutex_unlock(&mu);
  (void)ctx;
  if (found)
    duct_stream_finish(me->out, DUCT_CANCELLED, NULL);
}

static duct_code subscribe(duct_ctx *ctx, const Duct__Test__Empty *req, duct_stream *out) {
  (void)req;
  sub *me = duct_ctx_alloc(ctx, sizeof *me); /* lives until the stream is finished */
  if (!me)
    return DUCT_RESOURCE_EXHAUSTED;
  me->out = out;
  duct_stream_keep(out);
  duct__mutex_lock(&mu);
  me->next = subs;
  subs = me;
  subs_open++;
  duct__mutex_unlock(&mu);
  duct_ctx_on_cancel(ctx, sub_cancelled, me);
  return DUCT_OK;
}

static duct_code publish(duct_ctx *ctx, const Duct__Test__Seq *req, Duct__Test__Empty *reply) {
  (void)ctx;
  (void)reply;
  duct__mutex_lock(&mu);
  for (sub *s = subs; s; s = s->next)
    if (duct_stream_send(s->out, (const ProtobufCMessage *)req, 0) != DUCT_OK)
      backpressure++;
  duct__mutex_unlock(&mu);
  return DUCT_OK;
}

static duct_code sum(duct_ctx *ctx, duct_stream *in, Duct__Test__SumReply *reply) {
  (void)ctx;
  reply->in_order = 1;
  for (;;) {
    ProtobufCMessage *pm;
    duct_code rc = duct_stream_recv(in, &pm, -1);
    if (rc != DUCT_OK) {
      stream_gone();
      handler_done();
      return rc;
    }
    if (!pm)
      break;
    Duct__Test__Seq *m = (Duct__Test__Seq *)pm;
    reply->in_order = reply->in_order && m->n == reply->count;
    reply->count++;
    reply->sum += m->n;
    duct__test__seq__free_unpacked(m, NULL);
  }
  handler_done();
  return DUCT_OK;
}

static duct_code chat(duct_ctx *ctx, duct_stream *st) {
  (void)ctx;
  for (;;) {
    ProtobufCMessage *pm;
    duct_code rc = duct_stream_recv(st, &pm, -1);
    if (rc == DUCT_OK && !pm)
      break;
    if (rc == DUCT_OK) {
      rc = duct_stream_send(st, pm, -1);
      duct__test__seq__free_unpacked((Duct__Test__Seq *)pm, NULL);
    }
    if (rc != DUCT_OK) {
      stream_gone();
      handler_done();
      return rc;
    }
  }
  handler_done();
  return DUCT_OK;
}

static duct_code fail(duct_ctx *ctx, const Duct__Test__FailRequest *req, Duct__Test__Empty *reply) {
  (void)reply;
  return duct_ctx_fail(ctx, (duct_code)req->code, "%s", req->message);
}

static duct_code stats(duct_ctx *ctx, const Duct__Test__Empty *req, Duct__Test__Stats *reply) {
  (void)req;
  duct__mutex_lock(&mu);
  reply->sleeping = sleeping;
  reply->last_auth_pid = last_auth_pid;
  reply->last_auth_uid = last_auth_uid;
  reply->last_auth_has_uid = last_auth_has_uid;
  reply->last_auth_user = duct_ctx_strdup(ctx, last_auth_user);
  reply->forbidden_runs = forbidden_runs;
  reply->cancels = cancels;
  reply->subscriptions = subs_open;
  reply->backpressure = backpressure;
  reply->stream_cancelled = stream_cancelled;
  reply->sleep_cancelled = sleep_cancelled;
  reply->handlers_done = handlers_done;
  duct__mutex_unlock(&mu);
  reply->threads = test_thread_count();
  reply->rss_kb = test_rss_kb();
  reply->live_blocks = atomic_load(&live_blocks);
  reply->live_bytes = atomic_load(&live_bytes);
  return DUCT_OK;
}

static duct_code whoami(duct_ctx *ctx, const Duct__Test__Empty *req, Duct__Test__PeerInfo *reply) {
  (void)req;
  const duct_peer *p = duct_ctx_peer(ctx);
  reply->pid = p->pid;
  reply->uid = p->uid;
  reply->has_uid = p->has_uid;
  reply->user = duct_ctx_strdup(ctx, p->user);
  reply->server_pid = duct__getpid();
  return DUCT_OK;
}

static duct_code do_shutdown(duct_ctx *ctx, const Duct__Test__Empty *req, Duct__Test__Empty *reply) {
  (void)ctx;
  (void)req;
  (void)reply;
  duct__mutex_lock(&mu);
  shutdown_requested = 1;
  duct__cond_broadcast(&cv);
  duct__mutex_unlock(&mu);
  return DUCT_OK;
}

static duct_code forbidden(duct_ctx *ctx, const Duct__Test__Empty *req, Duct__Test__Empty *reply) {
  (void)req;
  (void)reply;
  duct__mutex_lock(&mu);
  forbidden_runs++; /* the test reads this back: nothing may run when denied */
  duct__mutex_unlock(&mu);
  return duct_ctx_fail(ctx, DUCT_INTERNAL, "the authorization hook should have refused this");
}

static int deny_reflection; /* set by main before the server starts */

static duct_code authorize(void *user, const duct_peer *peer, const duct_method *m) {
  (void)user;
  duct__mutex_lock(&mu);
  last_auth_pid = peer->pid;
  last_auth_uid = peer->uid;
  last_auth_has_uid = peer->has_uid;
  snprintf(last_auth_user, sizeof last_auth_user, "%s", peer->user);
  duct__mutex_unlock(&mu);
  /* --deny-reflection: the hook refuses the built-in reflection service
   * like any of the application's own (test_reflection.c). */
  if (deny_reflection && !strncmp(m->name, "/duct.reflection.v1.Reflection/", 31))
    return DUCT_PERMISSION_DENIED;
  return strcmp(m->name, "/duct.test.Probe/Forbidden") ? DUCT_OK : DUCT_PERMISSION_DENIED;
}

static const duct_test_probe_handlers handlers = {
    .echo = echo, .sleep = do_sleep, .fail = fail, .get_stats = stats,
    .whoami = whoami, .shutdown = do_shutdown, .forbidden = forbidden,
    .range = range, .subscribe = subscribe, .publish = publish, .sum = sum, .chat = chat,
};

static int run_client(const char *address, unsigned ms) {
  duct_channel *ch;
  duct_channel_opts co = {.connect_timeout_ms = 20000};
  if (duct_channel_open(address, &co, &ch) != DUCT_OK)
    return 2;
  Duct__Test__SleepRequest req = DUCT__TEST__SLEEP_REQUEST__INIT;
  Duct__Test__SleepReply *reply;
  req.ms = ms;
  duct_code rc = duct_test_probe_sleep(ch, &req, &reply, NULL);
  if (rc == DUCT_OK)
    duct__test__sleep_reply__free_unpacked(reply, NULL);
  duct_channel_close(ch);
  return rc == DUCT_OK ? 0 : 3;
}

/* A client that opens a subscription and a Range it never reads, then
 * waits to be killed: the server must notice and free both. */
static int run_stream_client(const char *address) {
  duct_channel *ch;
  duct_channel_opts co = {.connect_timeout_ms = 20000};
  if (duct_channel_open(address, &co, &ch) != DUCT_OK)
    return 2;
  Duct__Test__Empty e = DUCT__TEST__EMPTY__INIT;
  Duct__Test__RangeRequest r = DUCT__TEST__RANGE_REQUEST__INIT;
  r.count = 1000000000;
  r.size = 1024;
  r.timeout_ms = 0;
  duct_test_probe_subscribe_stream *s1;
  duct_test_probe_range_stream *s2;
  if (duct_test_probe_subscribe(ch, &e, NULL, &s1) != DUCT_OK ||
      duct_test_probe_range(ch, &r, NULL, &s2) != DUCT_OK)
    return 3;
  duct__mutex_lock(&mu);
  for (;;)
    duct__cond_wait(&cv, &mu, -1);
}

int main(int argc, char **argv) {
  static const duct_allocator counting = {count_malloc, count_realloc, count_free, NULL};
  duct_set_allocator(&counting); /* before any other duct call */
  duct__mutex_init(&mu);
  duct__cond_init(&cv);
  if (argc == 4 && !strcmp(argv[1], "--client"))
    return run_client(argv[2], (unsigned)atoi(argv[3]));
  if (argc == 3 && !strcmp(argv[1], "--stream-client"))
    return run_stream_client(argv[2]);
  if (argc < 2) {
    fprintf(stderr, "usage: %s ADDRESS [--max-message N] [--idle-ms N] [--workers N]\n"
                    "  [--max-connections N] [--max-partial BYTES] [--max-call-memory BYTES]\n"
                    "  [--drain-ms N] [--max-calls N] [--no-reflection] [--deny-reflection]\n",
            argv[0]);
    return 64;
  }
  /* Room for test_hostile's 1,024 idle connections plus its own. */
  test_raise_fd_limit(4096);
  duct_server_opts o = {.authorize = authorize, .workers = 4};
  int drain_ms = 5000;
  for (int i = 2; i < argc; i++) {
    /* The two flags stand alone; every other option takes a value. */
    if (!strcmp(argv[i], "--no-reflection")) {
      o.disable_reflection = 1;
      continue;
    }
    if (!strcmp(argv[i], "--deny-reflection")) {
      deny_reflection = 1;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "duct-probe-server: %s needs a value\n", argv[i]);
      return 64;
    }
    const char *opt = argv[i++];
    unsigned v = (unsigned)atoi(argv[i]);
    if (!strcmp(opt, "--max-connections"))
      o.max_connections = v;
    else if (!strcmp(opt, "--max-partial"))
      o.max_partial_memory = v;
    else if (!strcmp(opt, "--max-call-memory"))
      o.max_call_memory = v;
    else if (!strcmp(opt, "--drain-ms"))
      drain_ms = (int)v;
    else if (!strcmp(opt, "--max-message"))
      o.max_message_size = v;
    else if (!strcmp(opt, "--idle-ms"))
      o.idle_timeout_ms = v;
    else if (!strcmp(opt, "--max-calls"))
      o.max_calls_per_connection = v;
    else if (!strcmp(opt, "--workers"))
      o.workers = (int)v;
    else if (!strcmp(opt, "--as-uid") && test_become_user(v) != 0) {
      /* A server of another user, for the client's identity check. */
      fprintf(stderr, "duct-probe-server: cannot become uid %u\n", v);
      return 4;
    }
  }
  duct_server *s;
  duct_code rc = duct_server_new(&o, &s);
  if (rc == DUCT_OK)
    rc = duct_test_probe_register(s, &handlers, NULL);
  if (rc == DUCT_OK)
    rc = duct_server_listen(s, argv[1]);
  if (rc == DUCT_OK)
    rc = duct_server_start(s);
  if (rc != DUCT_OK) {
    fprintf(stderr, "duct-probe-server: %s: %s\n", argv[1], duct_code_name(rc));
    duct_server_free(s);
    return 2;
  }
  duct__mutex_lock(&mu);
  while (!shutdown_requested)
    duct__cond_wait(&cv, &mu, -1);
  duct__mutex_unlock(&mu);
  rc = duct_server_stop(s, drain_ms);
  duct_server_free(s);
  /* Every block duct allocated is back: a leak fails the test that
   * stopped this server (it expects exit code 0), on every platform. */
  if (atomic_load(&live_blocks) != 0) {
    fprintf(stderr, "duct-probe-server: %llu block(s), %llu bytes never freed\n",
            (unsigned long long)atomic_load(&live_blocks),
            (unsigned long long)atomic_load(&live_bytes));
    return 3;
  }
  return rc == DUCT_OK ? 0 : 1;
}
