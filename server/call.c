/* server/call.c - calls. One object per call (struct duct_ctx, also the
 * duct_stream of a streaming call), what a handler asks of it
 * (duct_ctx_*), how it ends (decided once, under the connection's mu, then
 * sent: the handler's reply, an error, or what a cancel tells the
 * client), and cancellation: the client's CANCEL, its disconnect, a
 * deadline (the transport's tick), a stop. Receiving the request and
 * running the handler are dispatch.c's; streams are stream.c's. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/arena.h"
#include "runtime/frame.h"
#include "runtime/utf8.h"
#include "server/core.h"

/* The arena block kept per connection: most calls fit in it, so they
 * allocate nothing. */
#define ARENA_KEEP (16u * 1024u)

/* ---- in a handler ---- */

void *duct_ctx_user(const duct_ctx *ctx) { return ctx->e->user; }
const duct_peer *duct_ctx_peer(const duct_ctx *ctx) { return &ctx->sc->peer; }
const duct_method *duct_ctx_method(const duct_ctx *ctx) { return ctx->e->m; }
ProtobufCAllocator *duct_ctx_allocator(duct_ctx *ctx) { return &ctx->arena.pc; }
void *duct_ctx_alloc(duct_ctx *ctx, size_t size) { return duct__arena_alloc(&ctx->arena, size); }
int duct_ctx_cancelled(const duct_ctx *ctx) { return atomic_load(&ctx->cancelled); }

int64_t duct_ctx_remaining_ms(const duct_ctx *ctx) {
  if (ctx->deadline < 0)
    return -1;
  int64_t left = ctx->deadline - duct__now_ms();
  return left > 0 ? left : 0;
}

char *duct_ctx_strdup(duct_ctx *ctx, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = duct_ctx_alloc(ctx, n);
  if (d)
    memcpy(d, s, n);
  return d;
}

duct_code duct_ctx_fail(duct_ctx *ctx, duct_code code, const char *fmt, ...) {
  char buf[DUCT__MAX_ERROR_TEXT + 1];
  va_list ap;
  va_start(ap, fmt);
  duct__utf8_vformat(buf, sizeof buf, fmt, ap); /* cut between characters */
  va_end(ap);
  ctx->message = duct_ctx_strdup(ctx, buf);
  return code;
}

/* ---- a call's life ---- */

duct_ctx *duct__srv_call_new(sconn *sc) {
  duct__mutex_lock(&sc->mu);
  duct_ctx *x = sc->spare;
  sc->spare = NULL;
  duct__mutex_unlock(&sc->mu);
  if (!x) {
    if (!(x = duct__calloc(1, sizeof *x)))
      return NULL;
    duct__cond_init(&x->cv);
    duct__arena_init(&x->arena, ARENA_KEEP);
    duct__arena_set_limit(&x->arena, sc->s->call_memory);
  }
  duct__cond c = x->cv;
  duct__arena a = x->arena;
  memset(x, 0, sizeof *x);
  x->cv = c;
  x->arena = a;
  x->arena.pc.allocator_data = &x->arena; /* moved: point back at it */
  x->sc = sc;
  x->deadline = -1;
  atomic_init(&x->refs, 1);
  atomic_init(&x->cancelled, 0);
  duct__flow_init(&x->rx);
  duct__flow_init(&x->tx);
  sconn_ref(sc);
  return x;
}

void duct__srv_call_unref(duct_ctx *x) {
  if (atomic_fetch_sub(&x->refs, 1) != 1)
    return;
  sconn *sc = x->sc;
  for (rxnode *n = x->rxhead, *next; n; n = next) {
    next = n->next;
    duct__free(n);
  }
  duct__arena_reset(&x->arena);
  duct__mutex_lock(&sc->mu);
  if (x->prev || sc->calls == x) {
    if (x->prev)
      x->prev->next = x->next;
    else
      sc->calls = x->next;
    if (x->next)
      x->next->prev = x->prev;
  }
  if (!sc->spare && !sc->closed) {
    sc->spare = x; /* the next call allocates nothing */
    x = NULL;
  }
  duct__mutex_unlock(&sc->mu);
  if (x) {
    duct__arena_free(&x->arena);
    duct__cond_destroy(&x->cv);
    duct__free(x);
  }
  duct__srv_conn_unref(sc);
}

/* Under sc->mu: an open call by id. */
duct_ctx *duct__srv_call_find(sconn *sc, uint32_t id) {
  for (duct_ctx *x = sc->calls; x; x = x->next)
    if (x->id == id && !x->finished)
      return x;
  return NULL;
}

/* Under sc->mu: decides the call's end; 1 for the one caller that does. */
static int end_locked(duct_ctx *x) {
  if (x->finished)
    return 0;
  x->finished = 1;
  x->sc->nopen--;
  duct__cond_broadcast(&x->cv);
  return 1;
}

/* After the end decided by end_locked has been sent: the connection no
 * longer counts the call. Not before: a stop that saw no call and nothing
 * queued in between would close the connection under the reply. */
static void sc_gone(sconn *sc) {
  duct__mutex_lock(&sc->mu);
  sc->nlive--;
  if (sc->c)
    atomic_fetch_sub(&sc->c->in_call, 1);
  duct__mutex_unlock(&sc->mu);
}

/* Sends the call's final status: its reply (payload at buf +
 * DUCT__HEADER_SIZE, len bytes) or an error text. */
static void send_end(duct_ctx *x, duct_code code, const char *text, uint8_t *payload,
                     size_t len) {
  sconn *sc = x->sc;
  uint32_t mid = x->e ? x->e->m->id : 0;
  if (code != DUCT_OK || !payload) {
    if (code != DUCT_OK && !text)
      text = duct_code_message(code);
    duct__srv_send_text(sc, DUCT__RESPONSE, x->id, mid, code, code != DUCT_OK ? text : NULL);
    return;
  }
  duct__frame tmpl = {DUCT__VERSION, DUCT__RESPONSE, 0, x->id, mid, DUCT_OK, 0, 0};
  duct__mutex_lock(&sc->tx_mu);
  duct__session_send(&sc->sess, &tmpl, payload, len, DUCT__SINK_KEEPS, duct__srv_send, sc);
  duct__mutex_unlock(&sc->tx_mu);
}

/* Ends the call with `code` unless something ended it first. 1 if this did. */
int duct__srv_call_end(duct_ctx *x, duct_code code, const char *text, uint8_t *payload,
                       size_t len) {
  duct__mutex_lock(&x->sc->mu);
  int won = end_locked(x);
  duct__mutex_unlock(&x->sc->mu);
  if (won) {
    send_end(x, code, text, payload, len);
    sc_gone(x->sc);
  }
  return won;
}

/* Cancels a call once: its waiters wake, its callbacks run (on this
 * thread, no lock held) and its client is told what `why` says. */
void duct__srv_call_cancel(duct_ctx *x, enum cancel_why why) {
  sconn *sc = x->sc;
  duct__mutex_lock(&sc->mu);
  if (x->finished && why != BY_GONE) {
    duct__mutex_unlock(&sc->mu);
    return;
  }
  int first = !atomic_exchange(&x->cancelled, 1);
  int ended = end_locked(x);
  duct_cancel_cb cb = first ? x->on_cancel : NULL;
  void *cu = x->cancel_user;
  duct_stream_cb wcb = first ? x->on_writable : NULL;
  void *wu = x->writable_user;
  x->on_cancel = NULL;
  x->on_writable = NULL;
  duct__cond_broadcast(&x->cv);
  call_ref(x);
  duct__mutex_unlock(&sc->mu);
  if (ended) {
    if (why == BY_CLIENT)
      duct__srv_send_ctl(sc, DUCT__CANCEL, x->id, 0);
    else if (why == BY_DEADLINE)
      send_end(x, DUCT_DEADLINE_EXCEEDED, "the call's deadline passed", NULL, 0);
    else if (why == BY_STOP)
      send_end(x, DUCT_UNAVAILABLE, "the server is stopping", NULL, 0);
    else if (why == BY_TOO_LARGE)
      send_end(x, DUCT_RESOURCE_EXHAUSTED,
               "a stream message exceeds the server's maximum message size", NULL, 0);
    else if (why == BY_NO_MEMORY)
      send_end(x, DUCT_RESOURCE_EXHAUSTED, "out of memory for a stream message", NULL, 0);
    sc_gone(x->sc);
  }
  if (cb)
    cb(x, cu);
  if (wcb)
    wcb((duct_stream *)(void *)x, wu);
  duct__srv_call_unref(x);
}

void duct_ctx_on_cancel(duct_ctx *ctx, duct_cancel_cb cb, void *user) {
  duct__mutex_lock(&ctx->sc->mu);
  int now = atomic_load(&ctx->cancelled);
  if (!now) {
    ctx->on_cancel = cb;
    ctx->cancel_user = user;
  }
  duct__mutex_unlock(&ctx->sc->mu);
  if (now && cb)
    cb(ctx, user);
}

/* ---- replies ---- */

/* Packs a handler's reply into the call's arena and ends the call with
 * it (or with the reason it cannot be sent). */
void duct__srv_end_with_reply(duct_ctx *x, duct_code code) {
  sconn *sc = x->sc;
  duct_server *s = sc->s;
  char why[160];
  if (code != DUCT_OK) {
    if ((unsigned)code >= DUCT_CODE_COUNT)
      code = DUCT_UNKNOWN; /* a handler returned something that is no code */
    duct__srv_call_end(x, code, x->message, NULL, 0);
    return;
  }
  if (!x->reply) {
    duct__srv_call_end(x, DUCT_OK, NULL, NULL, 0); /* a stream's clean end */
    return;
  }
  size_t n = protobuf_c_message_get_packed_size(x->reply);
  if (n > sc->sess.peer_max_message) {
    snprintf(why, sizeof why, "reply of %zu bytes exceeds the client's limit of %u", n,
             (unsigned)sc->sess.peer_max_message);
    duct__srv_call_end(x, DUCT_RESOURCE_EXHAUSTED, why, NULL, 0);
    return;
  }
  /* A reply must fit the connection's send queue with its headers, in
   * case the client reads it slowly. */
  if (n + duct__frag_count(n, sc->sess.peer_max_frame) * DUCT__HEADER_SIZE > s->queue_cap) {
    snprintf(why, sizeof why, "reply of %zu bytes exceeds the server's send limit of %zu", n,
             s->queue_cap);
    duct__srv_call_end(x, DUCT_RESOURCE_EXHAUSTED, why, NULL, 0);
    return;
  }
  uint8_t *buf = duct__arena_alloc(&x->arena, DUCT__HEADER_SIZE + n);
  if (!buf) {
    duct__srv_call_end(x, DUCT_RESOURCE_EXHAUSTED, "out of memory for the reply", NULL, 0);
    return;
  }
  protobuf_c_message_pack(x->reply, buf + DUCT__HEADER_SIZE);
  duct__srv_call_end(x, DUCT_OK, NULL, buf + DUCT__HEADER_SIZE, n);
}

/* Ends a unary call with its handler's reply and lets go of the call
 * (the handler's reference) before the reply leaves: the reply is packed
 * into the connection's buffer, so the call goes back to the spare first
 * and the client's next call, which may arrive the moment the reply has,
 * finds it there and allocates nothing. */
void duct__srv_send_unary_reply(duct_ctx *x, duct_code code) {
  sconn *sc = x->sc;
  size_t n = code == DUCT_OK ? protobuf_c_message_get_packed_size(x->reply) : 0;
  if (code != DUCT_OK || n > sc->sess.peer_max_message ||
      n + duct__frag_count(n, sc->sess.peer_max_frame) * DUCT__HEADER_SIZE > sc->s->queue_cap) {
    duct__srv_end_with_reply(x, code); /* says why, from the call's memory */
    duct__srv_call_unref(x);
    return;
  }
  duct__mutex_lock(&sc->tx_mu);
  uint8_t *buf = duct__srv_tx_room(sc, n);
  if (!buf) {
    duct__mutex_unlock(&sc->tx_mu);
    duct__srv_call_end(x, DUCT_RESOURCE_EXHAUSTED, "out of memory for the reply", NULL, 0);
    duct__srv_call_unref(x);
    return;
  }
  protobuf_c_message_pack(x->reply, buf + DUCT__HEADER_SIZE);
  duct__frame tmpl = {DUCT__VERSION, DUCT__RESPONSE, 0, x->id, x->e->m->id, DUCT_OK, 0, 0};
  duct__mutex_lock(&sc->mu);
  int won = end_locked(x);
  duct__mutex_unlock(&sc->mu);
  duct__srv_call_unref(x);
  if (won) {
    duct__session_send(&sc->sess, &tmpl, buf + DUCT__HEADER_SIZE, n, DUCT__SINK_KEEPS,
                       duct__srv_send_packed, sc);
    sc_gone(sc);
  }
  duct__mutex_unlock(&sc->tx_mu);
}

/* ---- cancelling many: a closed connection, deadlines, a stop ---- */

/* Calls of sc that are open and match `pick`, each with a reference, into
 * out (at most cap); returns how many. */
static size_t open_calls(sconn *sc, int (*pick)(duct_ctx *, void *), void *arg, duct_ctx **out,
                         size_t cap) {
  size_t n = 0;
  duct__mutex_lock(&sc->mu);
  for (duct_ctx *x = sc->calls; x && n < cap; x = x->next)
    if (!x->finished && !atomic_load(&x->cancelled) && (!pick || pick(x, arg))) {
      call_ref(x);
      out[n++] = x;
    }
  duct__mutex_unlock(&sc->mu);
  return n;
}

/* Cancels every open call of sc that `pick` chooses. */
void duct__srv_cancel_calls(sconn *sc, int (*pick)(duct_ctx *, void *), void *arg,
                            enum cancel_why why) {
  duct_ctx *batch[64];
  size_t n;
  /* Each round cancels what it took (cancelled calls are not taken
   * again), so this ends. */
  while ((n = open_calls(sc, pick, arg, batch, 64)) > 0)
    for (size_t i = 0; i < n; i++) {
      duct__srv_call_cancel(batch[i], why);
      duct__srv_call_unref(batch[i]);
    }
}

static int past_deadline(duct_ctx *x, void *now) {
  return x->deadline >= 0 && *(int64_t *)now >= x->deadline;
}

/* About every 100 ms: calls whose deadline passed are cancelled, and
 * their clients told DEADLINE_EXCEEDED. */
void duct__srv_tick(void *core) {
  duct_server *s = core;
  int64_t now = duct__now_ms();
  size_t n;
  sconn **all = duct__srv_conns_snapshot(s, &s->tick_all, &s->tick_cap, &n);
  for (size_t i = 0; i < n; i++) {
    duct__srv_cancel_calls(all[i], past_deadline, &now, BY_DEADLINE);
    duct__srv_conn_unref(all[i]);
  }
}
