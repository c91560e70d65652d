/* fuzz-server: the server's whole request path on bytes from a hostile
 * peer: HELLO (versions 1 and 2), frame decode, reassembly, method lookup,
 * authorization, unpacking into the generated types of duct.test.Probe,
 * the handler, and the reply's packing and fragmentation; and version 2's
 * streams: REQUESTs of every method kind, STREAM_DATA (fragmented too),
 * HALF_CLOSE, CREDIT and CANCEL for open, ended and unknown calls, many
 * calls at once, stream windows overrun, kept streams and cancel
 * callbacks. The library's server (server/), as linked into every
 * program, runs on the in-memory transport's table (fake_transport.c,
 * through duct__server_new_with), one connection per input.
 *
 * Streaming handlers run on threads of their own, as in every program,
 * in step with the harness (see "streams" below), so a run is the same
 * every time; every thread is done before an input's run returns: the
 * connection's end cancels every call, each handler returns or its holder
 * finishes its kept stream, and duct_server_stop waits for the last of
 * them.
 *
 * Checks: every frame the server sends is well formed and allowed on the
 * connection (the fake aborts otherwise); a denied method's handler never
 * runs; every kept stream's holder learns its end (the subscription list
 * is empty once the server is freed); ASan/UBSan/LSan report the rest. */
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <duct/duct.h>

#include "fake_transport.h"
#include "probe.duct.h"
#include "runtime/conn.h"
#include "runtime/sys.h"
#include "server/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static duct__mutex mu; /* subs and every wait below */
static duct__cond cv;

static duct_code echo(duct_ctx *ctx, const Duct__Test__Blob *req, Duct__Test__Blob *reply) {
  (void)ctx;
  reply->data = req->data;
  reply->tag = req->tag;
  return DUCT_OK;
}

/* A cancel callback with nothing to wake: it runs on whichever thread
 * sees the cancel (here, for a unary call, only if the call was cancelled
 * before the handler registered it). */
static void noted_cancel(duct_ctx *ctx, void *user) {
  (void)ctx;
  (void)user;
}

/* Does not sleep: the fuzzer wants the path, not the wait. */
static duct_code do_sleep(duct_ctx *ctx, const Duct__Test__SleepRequest *req,
                          Duct__Test__SleepReply *reply) {
  if (req->watch_cancel)
    duct_ctx_on_cancel(ctx, noted_cancel, NULL);
  reply->remaining_ms = duct_ctx_remaining_ms(ctx);
  return duct_ctx_cancelled(ctx) ? DUCT_CANCELLED : DUCT_OK;
}

static duct_code fail(duct_ctx *ctx, const Duct__Test__FailRequest *req, Duct__Test__Empty *reply) {
  (void)reply;
  return duct_ctx_fail(ctx, (duct_code)req->code, "%s", req->message ? req->message : "");
}

static duct_code stats(duct_ctx *ctx, const Duct__Test__Empty *req, Duct__Test__Stats *reply) {
  (void)ctx;
  (void)req;
  reply->sleeping = 1;
  return DUCT_OK;
}

/* Builds a reply from call memory, as real handlers do. */
static duct_code whoami(duct_ctx *ctx, const Duct__Test__Empty *req, Duct__Test__PeerInfo *reply) {
  (void)req;
  const duct_peer *p = duct_ctx_peer(ctx);
  reply->pid = p->pid;
  reply->user = duct_ctx_strdup(ctx, p->user);
  return reply->user ? DUCT_OK : DUCT_RESOURCE_EXHAUSTED;
}

static duct_code do_shutdown(duct_ctx *ctx, const Duct__Test__Empty *req, Duct__Test__Empty *reply) {
  (void)ctx;
  (void)req;
  (void)reply;
  return DUCT_OK;
}

/* The hook must keep this from ever running. */
static duct_code forbidden(duct_ctx *ctx, const Duct__Test__Empty *req, Duct__Test__Empty *reply) {
  (void)ctx;
  (void)req;
  (void)reply;
  abort();
}

/* ---- streams, in step with the harness ----
 *
 * Streaming handlers run on threads of their own, as in every program.
 * To keep a run the same every time (a finding must reproduce), they
 * never wait inside duct: each receives with a timeout of 0 and sends
 * with a timeout of 0, and when nothing more can be done it waits here
 * for the harness's next step (step_wait). After each message the harness
 * starts a step and waits until the server has settled (settle): every
 * open call is either kept or has a handler waiting for the next step.
 * So a handler sees each message before the next arrives, whatever the
 * scheduler does. Blocking sends and receives (duct's own waits) are the
 * end-to-end tests' business. */

static uint64_t step_gen; /* under mu: the harness's step */
static int acked;         /* handlers waiting in step_wait for the next step */
static int kept_open;     /* kept streams not yet finished */

/* One streaming handler, in its call's memory: the cancel callback may
 * still run after the handler returned, until the call is freed. */
typedef struct hstate {
  struct hstate *next, **pprev; /* live handlers, under mu */
  int acked;                    /* counted in `acked` */
  int cancelled;
} hstate;
static hstate *live;

/* The cancel callback every streaming handler registers: runs on
 * whichever thread sees the cancel, and ends the handler's wait. */
static void h_cancelled(duct_ctx *ctx, void *user) {
  (void)ctx;
  hstate *h = user;
  duct__mutex_lock(&mu);
  h->cancelled = 1;
  if (h->acked) {
    h->acked = 0;
    acked--;
  }
  duct__cond_broadcast(&cv);
  duct__mutex_unlock(&mu);
}

static hstate *h_enter(duct_ctx *ctx) {
  hstate *h = duct_ctx_alloc(ctx, sizeof *h);
  if (!h)
    return NULL;
  memset(h, 0, sizeof *h);
  duct__mutex_lock(&mu);
  h->next = live;
  if (live)
    live->pprev = &h->next;
  h->pprev = &live;
  live = h;
  duct__mutex_unlock(&mu);
  duct_ctx_on_cancel(ctx, h_cancelled, h); /* runs now if already cancelled */
  return h;
}

static void h_leave(duct_ctx *ctx, hstate *h) {
  duct_ctx_on_cancel(ctx, NULL, NULL);
  duct__mutex_lock(&mu);
  *h->pprev = h->next;
  if (h->next)
    h->next->pprev = h->pprev;
  if (h->acked)
    acked--;
  h->acked = 0;
  duct__mutex_unlock(&mu);
}

/* Nothing more to do now: wait for the harness's next step, or a cancel.
 * Returns 1 once the call is cancelled: a send refused for a reason that
 * does not go away (a message over the client's limit) must not be tried
 * again for ever. */
static int step_wait(hstate *h) {
  duct__mutex_lock(&mu);
  if (!h->cancelled) {
    uint64_t my = step_gen;
    h->acked = 1;
    acked++;
    duct__cond_broadcast(&cv);
    while (step_gen == my && !h->cancelled)
      duct__cond_wait(&cv, &mu, -1);
    if (h->acked) {
      h->acked = 0;
      acked--;
    }
  }
  int cancelled = h->cancelled;
  duct__mutex_unlock(&mu);
  return cancelled;
}

/* The harness, after each message: a new step, then waits until every
 * open call of the connection is kept or has its handler waiting again.
 * What is left between those states (a thread not yet started, a handler
 * at work, a returned handler whose end the server is sending) tells the
 * harness nothing when it ends, so it yields until the counts agree. */
static void settle(duct__conn *c) {
  duct__mutex_lock(&mu);
  step_gen++;
  for (hstate *h = live; h; h = h->next)
    h->acked = 0;
  acked = 0;
  duct__cond_broadcast(&cv);
  while (atomic_load(&c->in_call) != acked + kept_open) {
    duct__mutex_unlock(&mu);
    sched_yield();
    duct__mutex_lock(&mu);
  }
  duct__mutex_unlock(&mu);
}

/* Registered when a send found no room: it runs (with no user data, so
 * never after its handler is gone) on a CREDIT, or when the call is
 * cancelled; the handler's retry comes with the next step. */
static void writable(duct_stream *st, void *user) {
  (void)st;
  (void)user;
}

/* Server-streaming: count messages of size bytes (bounded, so one input
 * costs little), as the client's credit allows; timeout_ms >= 0 also
 * registers on_writable when out of room. */
static duct_code range(duct_ctx *ctx, const Duct__Test__RangeRequest *req, duct_stream *out) {
  Duct__Test__Seq m = DUCT__TEST__SEQ__INIT;
  uint64_t count = req->count < 64 ? req->count : 64;
  size_t size = req->size < 16384 ? req->size : 16384;
  m.pad.len = size;
  m.pad.data = size ? duct_ctx_alloc(ctx, size) : NULL;
  hstate *h = h_enter(ctx);
  if ((size && !m.pad.data) || !h)
    return duct_ctx_fail(ctx, DUCT_RESOURCE_EXHAUSTED, "no memory for the stream");
  if (size)
    memset(m.pad.data, 'x', size);
  duct_code rc = DUCT_OK;
  while (m.n < count) {
    rc = duct_stream_send(out, &m.base, 0);
    if (rc == DUCT_OK) {
      m.n++;
      continue;
    }
    if (rc != DUCT_RESOURCE_EXHAUSTED)
      break;
    if (req->timeout_ms >= 0)
      duct_stream_on_writable(out, writable, NULL);
    if (step_wait(h)) {
      rc = DUCT_CANCELLED;
      break;
    }
    rc = DUCT_OK;
  }
  duct_stream_on_writable(out, NULL, NULL);
  h_leave(ctx, h);
  return rc;
}

/* Kept streams (Subscribe, and Chat when asked): a list no thread waits
 * with; Publish sends to each. Each holder finishes its stream when the
 * call is cancelled, which must happen for every one of them. */
typedef struct sub {
  struct sub *next;
  duct_stream *st;
} sub;
static sub *subs;

static void sub_cancelled(duct_ctx *ctx, void *user) {
  (void)ctx;
  sub *me = user;
  int found = 0;
  duct__mutex_lock(&mu);
  for (sub **pp = &subs; *pp; pp = &(*pp)->next)
    if (*pp == me) {
      *pp = me->next;
      found = 1;
      break;
    }
  duct__mutex_unlock(&mu);
  if (!found)
    return;
  duct_stream_finish(me->st, DUCT_CANCELLED, "unsubscribed");
  duct__mutex_lock(&mu);
  kept_open--;
  duct__mutex_unlock(&mu);
}

static duct_code keep(duct_ctx *ctx, duct_stream *st) {
  sub *me = duct_ctx_alloc(ctx, sizeof *me); /* lives until the stream is finished */
  if (!me)
    return DUCT_RESOURCE_EXHAUSTED;
  me->st = st;
  duct_stream_keep(st);
  duct__mutex_lock(&mu);
  me->next = subs;
  subs = me;
  kept_open++;
  duct__mutex_unlock(&mu);
  duct_ctx_on_cancel(ctx, sub_cancelled, me); /* runs now if already cancelled */
  return DUCT_OK;
}

static duct_code subscribe(duct_ctx *ctx, const Duct__Test__Empty *req, duct_stream *out) {
  (void)req;
  return keep(ctx, out);
}

/* Unary, on the connection's worker: sends to every kept stream without
 * waiting (those of this connection included). */
static duct_code publish(duct_ctx *ctx, const Duct__Test__Seq *req, Duct__Test__Empty *reply) {
  (void)ctx;
  (void)reply;
  duct__mutex_lock(&mu);
  for (sub *s = subs; s; s = s->next)
    (void)duct_stream_send(s->st, &req->base, 0);
  duct__mutex_unlock(&mu);
  return DUCT_OK;
}

/* Client-streaming: sums what arrives until the client's HALF_CLOSE. */
static duct_code sum(duct_ctx *ctx, duct_stream *in, Duct__Test__SumReply *reply) {
  hstate *h = h_enter(ctx);
  if (!h)
    return DUCT_RESOURCE_EXHAUSTED;
  reply->in_order = 1;
  duct_code rc;
  for (;;) {
    ProtobufCMessage *pm;
    rc = duct_stream_recv(in, &pm, 0);
    if (rc == DUCT_DEADLINE_EXCEEDED) {
      step_wait(h); /* nothing yet */
      continue;
    }
    if (rc != DUCT_OK || !pm)
      break; /* an error, or the end: the reply goes */
    Duct__Test__Seq *m = (Duct__Test__Seq *)pm;
    reply->in_order = reply->in_order && m->n == reply->count;
    reply->count++;
    reply->sum += m->n;
    duct__test__seq__free_unpacked(m, NULL);
  }
  h_leave(ctx, h);
  return rc;
}

/* Bidirectional: echoes each message, a send that finds no room waiting
 * for the next step (with on_writable registered). A message whose
 * padding starts with 'k' makes the handler keep the stream and return
 * (the rest of the client's stream is then held, unread, until the window
 * is full); 'e' ends the call early with an error, before the client's
 * HALF_CLOSE. */
static duct_code chat(duct_ctx *ctx, duct_stream *st) {
  hstate *h = h_enter(ctx);
  if (!h)
    return DUCT_RESOURCE_EXHAUSTED;
  ProtobufCMessage *pending = NULL; /* an echo waiting for room */
  duct_code rc;
  for (;;) {
    if (pending) {
      rc = duct_stream_send(st, pending, 0);
      if (rc == DUCT_RESOURCE_EXHAUSTED) {
        duct_stream_on_writable(st, writable, NULL);
        if (step_wait(h)) {
          rc = DUCT_CANCELLED;
          break;
        }
        continue;
      }
      duct__test__seq__free_unpacked((Duct__Test__Seq *)pending, NULL);
      pending = NULL;
      if (rc != DUCT_OK)
        break;
    }
    rc = duct_stream_recv(st, &pending, 0);
    if (rc == DUCT_DEADLINE_EXCEEDED) {
      step_wait(h);
      continue;
    }
    if (rc != DUCT_OK || !pending)
      break;
    Duct__Test__Seq *m = (Duct__Test__Seq *)pending;
    char how = m->pad.len ? (char)m->pad.data[0] : 0;
    if (how == 'k' || how == 'e') {
      duct__test__seq__free_unpacked(m, NULL);
      duct_stream_on_writable(st, NULL, NULL);
      h_leave(ctx, h);
      return how == 'k' ? keep(ctx, st)
                        : duct_ctx_fail(ctx, DUCT_FAILED_PRECONDITION, "ended early");
    }
  }
  if (pending)
    duct__test__seq__free_unpacked((Duct__Test__Seq *)pending, NULL);
  duct_stream_on_writable(st, NULL, NULL);
  h_leave(ctx, h);
  return rc;
}

static duct_code authorize(void *user, const duct_peer *peer, const duct_method *m) {
  (void)user;
  (void)peer;
  return strcmp(m->name, "/duct.test.Probe/Forbidden") ? DUCT_OK : DUCT_PERMISSION_DENIED;
}

static const duct_test_probe_handlers handlers = {
    .echo = echo, .sleep = do_sleep, .fail = fail, .get_stats = stats,
    .whoami = whoami, .shutdown = do_shutdown, .forbidden = forbidden,
    .range = range, .subscribe = subscribe, .publish = publish, .sum = sum, .chat = chat,
};

/* Silent, unless DUCT_FUZZ_VERBOSE is set: then duct's log lines show
 * which paths an input takes (run the target on that one file). */
static void quiet(void *user, duct_log_level level, const char *line) {
  (void)user;
  static int verbose = -1;
  if (verbose < 0)
    verbose = getenv("DUCT_FUZZ_VERBOSE") != NULL;
  if (verbose)
    fprintf(stderr, "[duct %d] %s\n", (int)level, line);
}

#define MAX_MSGS 128

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int once;
  if (!once) {
    once = 1;
    duct__mutex_init(&mu);
    duct__cond_init(&cv);
  }
  const uint8_t *msgs[MAX_MSGS];
  size_t lens[MAX_MSGS];
  size_t n = fake_split(data, size, msgs, lens, MAX_MSGS);

  /* A small message limit so the fuzzer reaches RESOURCE_EXHAUSTED, and
   * few calls per connection so it reaches that limit too. */
  duct_server_opts o = {.workers = 1, .max_message_size = 20000, .authorize = authorize,
                        .log = quiet, .max_calls_per_connection = 8};
  duct_server *s;
  if (duct__server_new_with(&o, &fake_transport, &s) != DUCT_OK)
    abort();
  if (duct_test_probe_register(s, &handlers, NULL) != DUCT_OK ||
      duct_server_listen(s, "fuzz") != DUCT_OK || duct_server_start(s) != DUCT_OK)
    abort();
  const duct__srv_cb *cb = fake_srv_callbacks();
  void *core = fake_srv_core();

  duct_peer peer = {.pid = 1234, .uid = 1000, .gid = 1000, .has_uid = 1, .user = "1000"};
  duct__conn *c = fake_conn_new();
  void *state = cb->open(core, c, &peer);
  if (!state)
    abort();
  c->state = state; /* as admission does: conn_want_drained needs it */
  for (size_t i = 0; i < n && !fake_conn_closed(c); i++) {
    /* A copy exactly as long as the message, so reading past it is a
     * finding. */
    uint8_t *m = malloc(lens[i] ? lens[i] : 1);
    if (!m)
      abort();
    if (lens[i])
      memcpy(m, msgs[i], lens[i]);
    fake_conn_incoming(c, m, lens[i]);
    int r = cb->message(state, m, lens[i]);
    free(m);
    /* 1 means "answered, keep the connection" (transport.h); only a
     * negative result closes it. 2: the read is "re-armed" (the next
     * message would be delivered), then run() on this thread, once; the
     * message buffer is gone by then, as on a real transport. */
    if (r < 0)
      break;
    if (r == 2) {
      if (!cb->run)
        abort(); /* 2 is only for a core with run() */
      cb->run(state);
    }
    if (cb->tick) /* optional in the table's contract */
      cb->tick(core);
    if (!fake_conn_closed(c))
      settle(c);
  }
  /* The end cancels every open call: handlers waiting in recv or send
   * return, kept streams are finished by their cancel callbacks. */
  cb->closed(state, DUCT_OK, NULL);
  fake_conn_free(c);
  duct_server_stop(s, 0); /* waits for every handler's thread */
  duct_server_free(s);
  duct__mutex_lock(&mu);
  int left = subs != NULL;
  duct__mutex_unlock(&mu);
  if (left)
    abort(); /* a kept stream ended and its holder was never told */
  return 0;
}
