/* duct_server: the platform-neutral half of the server. The transport
 * (runtime/posix or runtime/win) accepts connections, runs the worker
 * threads and hands over whole messages; this file speaks the protocol on
 * them: HELLO, reassembly, dispatch by method id, deadlines, authorization,
 * replies, limits and the graceful stop. */
#include "duct/server.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/arena.h"
#include "runtime/conn.h"
#include "runtime/frame.h"
#include "runtime/log.h"
#include "runtime/session.h"
#include "runtime/sys.h"
#include "runtime/conn.h"
#include "runtime/transport.h"
#include "runtime/wire.h"
#include "runtime/alloc.h"
#include "server/internal.h"

#define DEFAULT_MAX_CONNECTIONS 1024u
#define DEFAULT_IDLE_TIMEOUT_MS 10000u
#define DEFAULT_MAX_CALLS 1024u
/* The packing buffer kept per connection whatever the messages, and how
 * many messages in a row may use under a quarter of a larger one before
 * it is given back. */
#define TX_KEEP (64u * 1024u)
#define TX_SLACK 8u
/* Packing buffers per connection: two the send queue may borrow from
 * (one is being written by the queue while the next message is packed in
 * the other), and one never lent, for when the queue holds both (a slow
 * reader: its messages are copied, and nothing is allocated per message). */
#define TX_LENT 2
#define TX_BUFS 3
/* Accepted option ranges (duct/server.h, docs/GUIDE.md). A max_message_size
 * under 1 KiB is refused rather than obeyed: it is nearly always a unit
 * mistake (KiB meant, bytes given), and would make ordinary calls fail
 * with RESOURCE_EXHAUSTED in a way that looks like a bug. client/channel.c
 * uses the same floor. */
#define MIN_MAX_MESSAGE 1024u
#define MAX_WORKERS 1024
/* The arena block kept per connection: most calls fit in it, so they
 * allocate nothing. */
#define ARENA_KEEP (16u * 1024u)
/* Memory budgets (duct/server.h): all partly received messages together,
 * and one call's arena as a multiple of max_message_size. */
#define DEFAULT_MAX_PARTIAL_MEMORY ((size_t)64 * 1024 * 1024)
#define CALL_MEMORY_FACTOR 4u
#define MIN_CALL_MEMORY ((size_t)1024 * 1024)
/* The smallest frame a client may ask for in its HELLO: below this a
 * reply would take a frame (and a system call) per handful of bytes. */
#define MIN_PEER_FRAME 4096u

typedef struct entry {
  const duct_method *m;
  const void *handlers;
  void *user;
} entry;

typedef struct sconn sconn;

struct duct_server {
  const duct__transport_ops *t;
  duct_server_opts o;
  duct__logger log;
  entry *methods; /* sorted by id once started, for bsearch */
  size_t n_methods;
  /* Every service added, in order: what reflection lists (reflection.c).
   * Fixed once the server listens, so handlers read it without a lock. */
  const duct_service **services;
  size_t n_services;
  duct__listener *l;
  duct__mutex mu; /* cv, conns */
  duct__cond cv;  /* the last call ends while stopping; a thread ends */
  int started, stopped;
  duct__budget partial; /* all partly received requests together */
  size_t call_memory;   /* one call's arena cap */
  size_t queue_cap;     /* bytes one connection may have queued */
  sconn *conns;         /* every sconn not yet freed, under mu */
  /* The tick's snapshot of conns, kept from tick to tick (one runs at a
   * time) so that a steady server allocates nothing per tick either. */
  sconn **tick_all;
  size_t tick_cap;
  /* Read by every call, so atomics rather than `mu`: a call touches no lock
   * that its own connection does not need. */
  atomic_int stopping;
  atomic_int inflight; /* handlers running (workers and stream threads) */
};

/* Why a call was cancelled; what its client is told. */
enum cancel_why {
  BY_CLIENT = 1, /* its CANCEL: answered with CANCEL */
  BY_GONE,       /* the connection ended: nothing can be said */
  BY_DEADLINE,   /* RESPONSE DEADLINE_EXCEEDED */
  BY_STOP,       /* RESPONSE UNAVAILABLE */
  BY_TOO_LARGE,  /* a stream message over max_message_size: RESOURCE_EXHAUSTED */
  BY_NO_MEMORY,  /* no memory to keep a stream message: RESOURCE_EXHAUSTED */
};

/* One message of a client's stream, waiting for duct_stream_recv. */
typedef struct rxnode {
  struct rxnode *next;
  size_t len; /* the packed message follows */
} rxnode;

/* One call. duct_ctx is the call itself and a duct_stream is the same
 * object seen by stream functions, so a handle needs no second lookup.
 * Lifetime: `refs` (the handler running, the application's hold after
 * duct_stream_keep, a thread inside a callback); the call stays on its
 * connection's list until freed, its end (`finished`) is decided once. */
struct duct_ctx {
  sconn *sc;
  const entry *e;
  uint32_t id;
  duct_method_kind kind;
  int64_t deadline; /* absolute, duct__now_ms scale; -1 none */
  char *message;    /* set by duct_ctx_fail, in the arena */
  duct__arena arena;
  ProtobufCMessage *req, *reply;
  atomic_int refs;
  atomic_int cancelled;
  int kept, released; /* the handler's thread only, then the holder's */
  /* Under sc->mu: */
  int finished;       /* the end is decided: nothing more is sent */
  int half_closed;    /* the client's stream ended */
  duct_cancel_cb on_cancel;
  void *cancel_user;
  duct_stream_cb on_writable;
  void *writable_user;
  rxnode *rxhead, *rxtail;
  duct__flow rx, tx;
  duct__cond cv;      /* recv and send wait here */
  struct duct_ctx *prev, *next; /* sc->calls */
  struct duct_ctx *run_next;    /* sc->runq */
};

struct duct_stream {
  struct duct_ctx ctx;
};

/* A packing buffer; the loan's references are the connection's own hold
 * and one per queued frame that points into it (runtime/conn.h). */
typedef struct txb {
  duct__loan loan;
  size_t cap;
  unsigned slack; /* messages in a row that used < 1/4 of a large one */
  uint8_t data[];
} txb;

static void txb_release(duct__loan *loan) { duct__free(loan); }

static int txb_lent(const txb *b) {
  return atomic_load_explicit(&b->loan.refs, memory_order_acquire) > 1;
}

/* The server's record of one connection (the transport's duct__conn holds
 * the lifecycle, the idle clock and the send queue). The receive state is
 * the owner's (message() is never concurrent for a connection); calls
 * run on other threads and share the rest under `mu`. */
struct sconn {
  duct_server *s;
  duct__conn *c; /* NULL once the connection ended (under mu and tx_mu) */
  duct_peer peer;
  char user[192];
  duct__session sess; /* HELLO, limits, reassembly (runtime/session.h) */
  int placed;         /* the message being handled was received in place */
  atomic_int refs;    /* the connection's, and one per call */
  duct__mutex mu;     /* calls, runq, spare, each call's state */
  duct__mutex tx_mu;  /* one message at a time goes out, whole */
  /* Under tx_mu: replies and stream messages are packed in one of these
   * (tx_room), the one in use being txcur. */
  struct txb *tx[TX_BUFS];
  struct txb *txcur;
  struct duct_ctx *calls;  /* not yet freed, newest first */
  uint32_t nopen;          /* of those, not finished */
  uint32_t nlive;          /* registered and their end not yet sent */
  int goaway_sent;         /* the stop's GOAWAY after the last reply */
  struct duct_ctx *runq, *runq_tail; /* unary calls waiting for run() */
  struct duct_ctx *spare;  /* a freed call kept for the next one */
  int closed;
  int drain_pending;    /* conn_want_drained asked; on_drained owed */
  sconn *snext, *sprev; /* s->conns */
};

/* ---- connection references ---- */

static void sconn_free(sconn *sc) {
  duct__free(sc->spare ? (duct__arena_free(&sc->spare->arena),
                          duct__cond_destroy(&sc->spare->cv), sc->spare)
                       : NULL);
  for (int i = 0; i < TX_BUFS; i++)
    if (sc->tx[i])
      duct__loan_drop(&sc->tx[i]->loan); /* the queue may still hold it */
  duct__mutex_destroy(&sc->mu);
  duct__mutex_destroy(&sc->tx_mu);
  duct__free(sc);
}

static void sconn_ref(sconn *sc) { atomic_fetch_add(&sc->refs, 1); }

/* The last reference is dropped under s->mu, so a walk of s->conns (the
 * tick, a stop) never takes a reference on a connection being freed. */
static void sconn_unref(sconn *sc) {
  int one = 1;
  if (atomic_load(&sc->refs) > 1 && atomic_fetch_sub(&sc->refs, 1) > 1)
    return;
  duct_server *s = sc->s;
  duct__mutex_lock(&s->mu);
  if (!atomic_compare_exchange_strong(&sc->refs, &one, 0)) {
    atomic_fetch_sub(&sc->refs, 1);
    duct__mutex_unlock(&s->mu);
    return;
  }
  if (sc->sprev)
    sc->sprev->snext = sc->snext;
  else
    s->conns = sc->snext;
  if (sc->snext)
    sc->snext->sprev = sc->sprev;
  duct__mutex_unlock(&s->mu);
  sconn_free(sc);
}

/* Under s->mu: a reference unless the connection is being freed. */
static int sconn_try_ref(sconn *sc) {
  int n = atomic_load(&sc->refs);
  while (n > 0)
    if (atomic_compare_exchange_weak(&sc->refs, &n, n + 1))
      return 1;
  return 0;
}

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

/* ---- sending ---- */

/* Under tx_mu. */
static duct_code sc_send(void *arg, const duct__iov *iov, int n, int last) {
  sconn *sc = arg;
  (void)last;
  return sc->c ? sc->s->t->conn_send(sc->c, iov, n) : DUCT_UNAVAILABLE;
}

/* Under tx_mu: a frame of the message packed in sc->txcur. A lendable
 * buffer is lent to the queue, so the part of a reply the socket does
 * not take at once (most of a 1 MiB one) is written later from where it
 * was packed, not from a copy. */
static duct_code sc_send_packed(void *arg, const duct__iov *iov, int n, int last) {
  sconn *sc = arg;
  const duct__transport_ops *t = sc->s->t;
  if (sc->c && t->conn_send_lent && sc->txcur != sc->tx[TX_BUFS - 1])
    return t->conn_send_lent(sc->c, iov, n, &sc->txcur->loan);
  return sc_send(arg, iov, n, last);
}

static int send_msg(sconn *sc, const uint8_t *msg, size_t n) {
  duct__iov iov = {msg, n};
  duct__mutex_lock(&sc->tx_mu);
  duct_code rc = sc_send(sc, &iov, 1, 1);
  duct__mutex_unlock(&sc->tx_mu);
  return rc == DUCT_OK ? 0 : -1;
}

static int send_text(sconn *sc, uint8_t type, uint32_t call, uint32_t method,
                     duct_code code, const char *text) {
  uint8_t msg[DUCT__TEXT_MSG_MAX];
  return send_msg(sc, msg, duct__wire_text(msg, type, call, method, code, text));
}

static int send_ctl(sconn *sc, uint8_t type, uint32_t call, uint32_t credit) {
  uint8_t msg[DUCT__CTL_MSG_MAX];
  return send_msg(sc, msg, duct__wire_ctl(msg, type, call, credit));
}

/* A GOAWAY that never waits: for connections this thread does not own. */
static void goaway_nowait(duct_server *s, duct__conn *c, duct_code code, const char *text) {
  uint8_t msg[DUCT__TEXT_MSG_MAX];
  size_t n = duct__wire_text(msg, DUCT__GOAWAY, 0, 0, code, text);
  duct__iov iov = {msg, n};
  s->t->conn_send_nowait(c, &iov, 1);
}

/* Ends a connection for a protocol violation: one log line naming the
 * peer and the rule, a GOAWAY telling the peer the same (best effort). */
static int violation(sconn *sc, duct_code code, const char *why) {
  duct__log(&sc->s->log, DUCT_LOG_WARN, "closing connection from pid %u (user %s): %s",
            (unsigned)sc->peer.pid, sc->peer.user, why);
  send_text(sc, DUCT__GOAWAY, 0, 0, code, why);
  return -1;
}

/* Under tx_mu: room for a packed message of n bytes after a header, in
 * the first buffer the queue is not reading (sc->txcur; returns its
 * bytes). Buffers are kept between messages (a steady stream of replies
 * allocates nothing), and one is given back after TX_SLACK messages in a
 * row that used under a quarter of it, as the arena does. */
static uint8_t *tx_room(sconn *sc, size_t n) {
  size_t need = DUCT__HEADER_SIZE + n;
  int i = 0;
  while (i < TX_LENT && sc->tx[i] && txb_lent(sc->tx[i]))
    i++;
  txb *b = sc->tx[i];
  if (b && b->cap > TX_KEEP && need < b->cap / 4) {
    if (++b->slack >= TX_SLACK) {
      duct__loan_drop(&b->loan);
      b = sc->tx[i] = NULL;
    }
  } else if (b) {
    b->slack = 0;
  }
  if (!b || need > b->cap) {
    /* Not lent (or it is tx[TX_LENT]), so ours alone to move. */
    txb *nb = duct__realloc(b, sizeof *nb + need);
    if (!nb)
      return NULL;
    if (!b) {
      atomic_init(&nb->loan.refs, 1);
      nb->loan.release = txb_release;
      nb->slack = 0;
    }
    nb->cap = need;
    b = sc->tx[i] = nb;
  }
  sc->txcur = b;
  return b->data;
}

/* ---- calls ---- */

static duct_ctx *call_new(sconn *sc) {
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

static void call_ref(duct_ctx *x) { atomic_fetch_add(&x->refs, 1); }

static void call_unref(duct_ctx *x) {
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
  sconn_unref(sc);
}

/* Under sc->mu: an open call by id. */
static duct_ctx *find_call(sconn *sc, uint32_t id) {
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
    send_text(sc, DUCT__RESPONSE, x->id, mid, code, code != DUCT_OK ? text : NULL);
    return;
  }
  duct__frame tmpl = {DUCT__VERSION, DUCT__RESPONSE, 0, x->id, mid, DUCT_OK, 0, 0};
  duct__mutex_lock(&sc->tx_mu);
  duct__session_send(&sc->sess, &tmpl, payload, len, DUCT__SINK_KEEPS, sc_send, sc);
  duct__mutex_unlock(&sc->tx_mu);
}

/* Ends the call with `code` unless something ended it first. 1 if this did. */
static int call_end(duct_ctx *x, duct_code code, const char *text, uint8_t *payload,
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
static void call_cancel(duct_ctx *x, enum cancel_why why) {
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
      send_ctl(sc, DUCT__CANCEL, x->id, 0);
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
  call_unref(x);
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

/* Wakes duct_server_stop when the last handler ends during a stop. The
 * decrement comes before the read of `stopping` (both sequentially
 * consistent), so a stop that began earlier always sees the decrement or
 * gets this broadcast. Nothing of `s` is touched after the unlock: a
 * stream thread may be the last user of the server. */
static void call_done(duct_server *s) {
  if (atomic_fetch_sub(&s->inflight, 1) == 1 && atomic_load(&s->stopping)) {
    duct__mutex_lock(&s->mu);
    duct__cond_broadcast(&s->cv);
    duct__mutex_unlock(&s->mu);
  }
}

/* ---- streams ---- */

static duct_ctx *ctx_of(duct_stream *st) { return &st->ctx; }

duct_ctx *duct_stream_ctx(duct_stream *st) { return ctx_of(st); }

void duct_stream_keep(duct_stream *st) {
  duct_ctx *x = ctx_of(st);
  if (!x->kept) {
    x->kept = 1;
    call_ref(x); /* the holder's, released by duct_stream_finish */
  }
}

void duct_stream_on_writable(duct_stream *st, duct_stream_cb cb, void *user) {
  duct_ctx *x = ctx_of(st);
  duct__mutex_lock(&x->sc->mu);
  x->on_writable = cb;
  x->writable_user = user;
  duct__mutex_unlock(&x->sc->mu);
}

/* Under sc->mu: whether a stream message may go now. The connection's
 * queue counts too: many streams on one connection must not pile up past
 * what one slow reader may make the server hold. */
static int may_send(duct_ctx *x) {
  sconn *sc = x->sc;
  return x->tx.avail > 0 && (!sc->c || sc->s->t->conn_queued(sc->c) < sc->s->queue_cap / 2);
}

duct_code duct_stream_send(duct_stream *st, const ProtobufCMessage *msg, int timeout_ms) {
  duct_ctx *x = ctx_of(st);
  sconn *sc = x->sc;
  if (!msg || msg->descriptor != x->e->m->output ||
      (x->kind != DUCT_SERVER_STREAMING && x->kind != DUCT_BIDI_STREAMING))
    return DUCT_FAILED_PRECONDITION;
  size_t len = protobuf_c_message_get_packed_size(msg);
  if (len > sc->sess.peer_max_message)
    return DUCT_RESOURCE_EXHAUSTED;
  int64_t until = timeout_ms < 0 ? -1 : duct__now_ms() + timeout_ms;
  duct__mutex_lock(&sc->mu);
  for (;;) {
    if (atomic_load(&x->cancelled) || (x->finished && !x->kept)) {
      duct__mutex_unlock(&sc->mu);
      return DUCT_CANCELLED;
    }
    if (x->finished) {
      duct__mutex_unlock(&sc->mu);
      return DUCT_FAILED_PRECONDITION;
    }
    if (may_send(x))
      break;
    if (x->tx.avail > 0 && sc->c && !sc->drain_pending) {
      /* The connection's queue, not the client's window, is full: ask to
       * hear when it empties (on_drained). drained() may run inside the
       * request, so no lock of ours is held across it. */
      duct__conn *c = sc->c;
      sc->drain_pending = 1;
      sconn_ref(sc); /* on_drained's */
      duct__conn_ref(c);
      duct__mutex_unlock(&sc->mu);
      sc->s->t->conn_want_drained(c);
      duct__conn_unref(c);
      duct__mutex_lock(&sc->mu);
      continue;
    }
    if (timeout_ms == 0 ||
        (duct__cond_wait(&x->cv, &sc->mu, until) && until >= 0 && duct__now_ms() >= until)) {
      duct__mutex_unlock(&sc->mu);
      return DUCT_RESOURCE_EXHAUSTED;
    }
  }
  x->tx.avail -= (int64_t)DUCT__STREAM_COST(len);
  duct__mutex_unlock(&sc->mu);

  duct_code rc = DUCT_OK;
  duct__mutex_lock(&sc->tx_mu);
  uint8_t *buf = tx_room(sc, len);
  if (!buf)
    rc = DUCT_RESOURCE_EXHAUSTED;
  if (rc == DUCT_OK) {
    protobuf_c_message_pack(msg, buf + DUCT__HEADER_SIZE);
    duct__frame tmpl = {2, DUCT__STREAM_DATA, 0, x->id, 0, 0, 0, 0};
    rc = duct__session_send(&sc->sess, &tmpl, buf + DUCT__HEADER_SIZE, len, DUCT__SINK_KEEPS,
                            sc_send_packed, sc);
  }
  duct__mutex_unlock(&sc->tx_mu);
  return rc == DUCT_OK ? DUCT_OK : DUCT_CANCELLED;
}

duct_code duct_stream_recv(duct_stream *st, ProtobufCMessage **msg, int timeout_ms) {
  duct_ctx *x = ctx_of(st);
  sconn *sc = x->sc;
  if (msg)
    *msg = NULL;
  if (!msg || (x->kind != DUCT_CLIENT_STREAMING && x->kind != DUCT_BIDI_STREAMING))
    return DUCT_FAILED_PRECONDITION;
  int64_t until = timeout_ms < 0 ? -1 : duct__now_ms() + timeout_ms;
  duct__mutex_lock(&sc->mu);
  while (!x->rxhead) {
    if (atomic_load(&x->cancelled) || x->finished) {
      duct__mutex_unlock(&sc->mu);
      return DUCT_CANCELLED;
    }
    if (x->half_closed) {
      duct__mutex_unlock(&sc->mu);
      return DUCT_OK;
    }
    if (timeout_ms == 0 ||
        (duct__cond_wait(&x->cv, &sc->mu, until) && until >= 0 && duct__now_ms() >= until)) {
      duct__mutex_unlock(&sc->mu);
      return DUCT_DEADLINE_EXCEEDED;
    }
  }
  rxnode *n = x->rxhead;
  x->rxhead = n->next;
  if (!x->rxhead)
    x->rxtail = NULL;
  uint32_t grant = duct__flow_taken(&x->rx, n->len);
  duct__mutex_unlock(&sc->mu);
  if (grant)
    send_ctl(sc, DUCT__CREDIT, x->id, grant);
  *msg = protobuf_c_message_unpack(x->e->m->input, NULL, n->len, (const uint8_t *)(n + 1));
  duct__free(n);
  return *msg ? DUCT_OK : DUCT_INVALID_ARGUMENT;
}

duct_code duct_stream_finish(duct_stream *st, duct_code code, const char *message) {
  duct_ctx *x = ctx_of(st);
  if ((unsigned)code >= DUCT_CODE_COUNT)
    code = DUCT_UNKNOWN;
  char text[DUCT__MAX_ERROR_TEXT + 1];
  if (message)
    duct__utf8_format(text, sizeof text, "%s", message);
  int won = call_end(x, code, message ? text : NULL, NULL, 0);
  if (x->kept && !x->released) {
    x->released = 1;
    call_unref(x);
  }
  return won ? DUCT_OK : DUCT_FAILED_PRECONDITION;
}

/* ---- dispatch ---- */

static int by_id(const void *key, const void *elem) {
  uint32_t id = *(const uint32_t *)key, other = ((const entry *)elem)->m->id;
  return id < other ? -1 : id > other;
}

static const entry *find_method(const duct_server *s, uint32_t id) {
  return bsearch(&id, s->methods, s->n_methods, sizeof *s->methods, by_id);
}

/* Packs a handler's reply into the call's arena and ends the call with
 * it (or with the reason it cannot be sent). */
static void end_with_reply(duct_ctx *x, duct_code code) {
  sconn *sc = x->sc;
  duct_server *s = sc->s;
  char why[160];
  if (code != DUCT_OK) {
    if ((unsigned)code >= DUCT_CODE_COUNT)
      code = DUCT_UNKNOWN; /* a handler returned something that is no code */
    call_end(x, code, x->message, NULL, 0);
    return;
  }
  if (!x->reply) {
    call_end(x, DUCT_OK, NULL, NULL, 0); /* a stream's clean end */
    return;
  }
  size_t n = protobuf_c_message_get_packed_size(x->reply);
  if (n > sc->sess.peer_max_message) {
    snprintf(why, sizeof why, "reply of %zu bytes exceeds the client's limit of %u", n,
             (unsigned)sc->sess.peer_max_message);
    call_end(x, DUCT_RESOURCE_EXHAUSTED, why, NULL, 0);
    return;
  }
  /* A reply must fit the connection's send queue with its headers, in
   * case the client reads it slowly. */
  if (n + duct__frag_count(n, sc->sess.peer_max_frame) * DUCT__HEADER_SIZE > s->queue_cap) {
    snprintf(why, sizeof why, "reply of %zu bytes exceeds the server's send limit of %zu", n,
             s->queue_cap);
    call_end(x, DUCT_RESOURCE_EXHAUSTED, why, NULL, 0);
    return;
  }
  uint8_t *buf = duct__arena_alloc(&x->arena, DUCT__HEADER_SIZE + n);
  if (!buf) {
    call_end(x, DUCT_RESOURCE_EXHAUSTED, "out of memory for the reply", NULL, 0);
    return;
  }
  protobuf_c_message_pack(x->reply, buf + DUCT__HEADER_SIZE);
  call_end(x, DUCT_OK, NULL, buf + DUCT__HEADER_SIZE, n);
}

/* Ends a unary call with its handler's reply and lets go of the call
 * (the handler's reference) before the reply leaves: the reply is packed
 * into the connection's buffer, so the call goes back to the spare first
 * and the client's next call, which may arrive the moment the reply has,
 * finds it there and allocates nothing. */
static void send_unary_reply(duct_ctx *x, duct_code code) {
  sconn *sc = x->sc;
  size_t n = code == DUCT_OK ? protobuf_c_message_get_packed_size(x->reply) : 0;
  if (code != DUCT_OK || n > sc->sess.peer_max_message ||
      n + duct__frag_count(n, sc->sess.peer_max_frame) * DUCT__HEADER_SIZE > sc->s->queue_cap) {
    end_with_reply(x, code); /* says why, from the call's memory */
    call_unref(x);
    return;
  }
  duct__mutex_lock(&sc->tx_mu);
  uint8_t *buf = tx_room(sc, n);
  if (!buf) {
    duct__mutex_unlock(&sc->tx_mu);
    call_end(x, DUCT_RESOURCE_EXHAUSTED, "out of memory for the reply", NULL, 0);
    call_unref(x);
    return;
  }
  protobuf_c_message_pack(x->reply, buf + DUCT__HEADER_SIZE);
  duct__frame tmpl = {DUCT__VERSION, DUCT__RESPONSE, 0, x->id, x->e->m->id, DUCT_OK, 0, 0};
  duct__mutex_lock(&sc->mu);
  int won = end_locked(x);
  duct__mutex_unlock(&sc->mu);
  call_unref(x);
  if (won) {
    duct__session_send(&sc->sess, &tmpl, buf + DUCT__HEADER_SIZE, n, DUCT__SINK_KEEPS,
                       sc_send_packed, sc);
    sc_gone(sc);
  }
  duct__mutex_unlock(&sc->tx_mu);
}

/* After the handler of the connection's last open call during a stop:
 * tell the client why the connection ends so its next call reconnects
 * elsewhere. duct_server_stop closes it once this is written. */
static void goaway_if_last(sconn *sc) {
  if (!atomic_load(&sc->s->stopping))
    return;
  /* Last means every call's end has been sent, not only decided: a
   * GOAWAY between a call's end and its reply would reach the client
   * first. */
  duct__mutex_lock(&sc->mu);
  int last = sc->nlive == 0 && !sc->goaway_sent;
  sc->goaway_sent |= last;
  duct__mutex_unlock(&sc->mu);
  if (last)
    send_text(sc, DUCT__GOAWAY, 0, 0, DUCT_UNAVAILABLE, "the server is stopping");
}

/* A unary call, on the worker that read it, after its connection was
 * re-armed (so its CANCEL or its client's disconnect is seen meanwhile). */
static void on_run(void *state) {
  sconn *sc = state;
  duct_server *s = sc->s;
  duct__mutex_lock(&sc->mu);
  duct_ctx *x = sc->runq;
  if (x && !(sc->runq = x->run_next))
    sc->runq_tail = NULL;
  duct__mutex_unlock(&sc->mu);
  if (!x)
    return;
  duct_code code = x->e->m->invoke(x->e->handlers, x, x->req, x->reply);
  sconn_ref(sc); /* x's reference may be the last */
  send_unary_reply(x, code);
  goaway_if_last(sc);
  sconn_unref(sc);
  call_done(s);
}

/* call_done for a stream's own thread: nothing joins it, so the last
 * touch of `s` must be the unlock that lets duct_server_stop (which reads
 * `inflight` under the same lock) go on and free it. */
static void thread_done(duct_server *s) {
  duct__mutex_lock(&s->mu);
  if (atomic_fetch_sub(&s->inflight, 1) == 1 && atomic_load(&s->stopping))
    duct__cond_broadcast(&s->cv);
  duct__mutex_unlock(&s->mu);
}

/* A streaming call's handler, on a thread of its own (duct/server.h says
 * why). */
static void stream_main(void *arg) {
  duct_ctx *x = arg;
  duct_server *s = x->sc->s;
  const duct_method *m = x->e->m;
  duct_code code = m->invoke_stream(x->e->handlers, x,
                                    x->kind == DUCT_SERVER_STREAMING ? x->req : NULL,
                                    (duct_stream *)(void *)x,
                                    x->kind == DUCT_CLIENT_STREAMING ? x->reply : NULL);
  if (!x->kept)
    end_with_reply(x, code);
  call_unref(x);
  thread_done(s);
}

/* Unpacks the request into the call's arena. On failure, fills why. */
static duct_code unpack_request(duct_ctx *x, const uint8_t *data, size_t len, char *why,
                                size_t cap) {
  duct_server *s = x->sc->s;
  const duct_method *m = x->e->m;
  x->req = protobuf_c_message_unpack(m->input, &x->arena.pc, len, data);
  if (x->req)
    return DUCT_OK;
  /* protobuf-c says NULL for both; only the arena knows which it was. */
  if (x->arena.over_limit) {
    snprintf(why, cap,
             "unpacking the request needs more than the %zu bytes one call may "
             "use (max_call_memory)", s->call_memory);
    duct__log(&s->log, DUCT_LOG_WARN, "refusing %s from pid %u: %s", m->name,
              (unsigned)x->sc->peer.pid, why);
    return DUCT_RESOURCE_EXHAUSTED;
  }
  if (x->arena.out_of_memory) {
    snprintf(why, cap, "out of memory unpacking the request");
    return DUCT_RESOURCE_EXHAUSTED;
  }
  snprintf(why, cap, "request does not parse as %s", m->input->name);
  return DUCT_INVALID_ARGUMENT;
}

/* A whole request arrived: a new call. Returns what message() returns. */
static int on_request(sconn *sc, const duct__msg *m, int64_t started, duct_code rc,
                      const char *exhausted) {
  duct_server *s = sc->s;
  const duct__frame *h = &m->hdr;
  char why[200];
  const char *text = why;
  duct_code code;
  duct_ctx *x = NULL;
  int v1 = sc->sess.version < 2;

  duct__mutex_lock(&sc->mu);
  int dup = find_call(sc, h->call_id) != NULL;
  int full = sc->nopen >= s->o.max_calls_per_connection;
  duct__mutex_unlock(&sc->mu);
  if (dup)
    return violation(sc, DUCT_INTERNAL, "REQUEST for a call id that is still open");

  if (atomic_load(&s->stopping)) {
    text = "the server is stopping";
    code = DUCT_UNAVAILABLE;
    goto fail;
  }
  if (rc == DUCT_RESOURCE_EXHAUSTED) {
    if (sc->sess.rx.budget && strstr(exhausted, "budget")) {
      snprintf(why, sizeof why, "the server's memory for partly received requests "
               "(max_partial_memory, %zu bytes) is in use; try again", s->partial.limit);
      duct__log(&s->log, DUCT_LOG_WARN, "refusing a request from pid %u: %s",
                (unsigned)sc->peer.pid, why);
    } else {
      snprintf(why, sizeof why, "request exceeds the server's maximum message size of %u bytes",
               (unsigned)s->o.max_message_size);
    }
    code = rc;
    goto fail;
  }
  if (h->deadline_ms && duct__now_ms() >= started + h->deadline_ms) {
    text = "the deadline expired before the call started";
    code = DUCT_DEADLINE_EXCEEDED;
    goto fail;
  }
  const entry *e = find_method(s, h->method_id);
  if (!e) {
    snprintf(why, sizeof why, "no method with id 0x%08x on this server", (unsigned)h->method_id);
    code = DUCT_UNIMPLEMENTED;
    goto fail;
  }
  if (s->o.authorize) {
    code = s->o.authorize(s->o.authorize_user, &sc->peer, e->m);
    if (code != DUCT_OK) {
      snprintf(why, sizeof why, "%s refused for pid %u (user %s)", e->m->name,
               (unsigned)sc->peer.pid, sc->peer.user);
      goto fail;
    }
  }
  if (e->m->kind != DUCT_UNARY && v1) {
    snprintf(why, sizeof why, "%s is a streaming method; streams need protocol version 2",
             e->m->name);
    code = DUCT_UNIMPLEMENTED;
    goto fail;
  }
  if (full) {
    snprintf(why, sizeof why, "this connection already has %u calls open "
             "(max_calls_per_connection)", (unsigned)s->o.max_calls_per_connection);
    code = DUCT_RESOURCE_EXHAUSTED;
    goto fail;
  }
  if (!(x = call_new(sc))) {
    text = "out of memory for the call";
    code = DUCT_RESOURCE_EXHAUSTED;
    goto fail;
  }
  x->e = e;
  x->id = h->call_id;
  x->kind = e->m->kind;
  if (h->deadline_ms)
    x->deadline = started + h->deadline_ms;
  if (x->kind == DUCT_UNARY || x->kind == DUCT_SERVER_STREAMING) {
    code = unpack_request(x, m->data, m->len, why, sizeof why);
    if (code != DUCT_OK)
      goto fail;
  } else if (m->len) {
    snprintf(why, sizeof why, "%s takes its requests as a stream; the REQUEST must be empty",
             e->m->name);
    code = DUCT_INVALID_ARGUMENT;
    goto fail;
  }
  if (x->kind == DUCT_UNARY || x->kind == DUCT_CLIENT_STREAMING) {
    x->reply = duct__arena_alloc(&x->arena, e->m->output->sizeof_message);
    if (!x->reply) {
      text = "out of memory for the reply";
      code = DUCT_RESOURCE_EXHAUSTED;
      goto fail;
    }
    protobuf_c_message_init(e->m->output, x->reply);
  }

  /* Announce the call, then look at `stopping`: duct_server_stop does the
   * opposite (sets `stopping`, then looks at in_call and the calls), so
   * with these sequentially consistent operations at least one side sees
   * the other: either this call is refused here, or stop lets it finish. */
  atomic_fetch_add(&s->inflight, 1);
  duct__mutex_lock(&sc->mu);
  x->next = sc->calls;
  if (sc->calls)
    sc->calls->prev = x;
  sc->calls = x;
  sc->nopen++;
  sc->nlive++;
  if (atomic_fetch_add(&sc->c->in_call, 1) > 0)
    atomic_store(&sc->c->multiplexed, 1);
  duct__mutex_unlock(&sc->mu);
  if (atomic_load(&s->stopping)) {
    call_end(x, DUCT_UNAVAILABLE, "the server is stopping", NULL, 0);
    call_unref(x);
    call_done(s);
    return v1 ? 1 : 0;
  }
  if (x->kind == DUCT_UNARY) {
    duct__mutex_lock(&sc->mu);
    if (sc->runq_tail)
      sc->runq_tail->run_next = x;
    else
      sc->runq = x;
    sc->runq_tail = x;
    duct__mutex_unlock(&sc->mu);
    return 2; /* re-arm, then on_run */
  }
  if (duct__thread_start_detached(stream_main, x) != DUCT_OK) {
    duct__log(&s->log, DUCT_LOG_WARN, "no thread for a stream of %s", e->m->name);
    call_end(x, DUCT_RESOURCE_EXHAUSTED, "the server could not start a thread for the stream",
             NULL, 0);
    call_unref(x);
    call_done(s);
  }
  return 0;

fail:
  if (x)
    call_unref(x);
  /* A version 1 client waits for this answer and sends nothing before it. */
  return send_text(sc, DUCT__RESPONSE, h->call_id, h->method_id, code, text) == 0 ? (v1 ? 1 : 0)
                                                                              : -1;
}

/* A whole message of a client's stream arrived. */
static int on_stream_data(sconn *sc, const duct__msg *m, duct_code rc) {
  rxnode *n = NULL;
  enum cancel_why lost = BY_TOO_LARGE;
  if (rc == DUCT_OK && !(n = duct__malloc(sizeof *n + m->len))) {
    rc = DUCT_RESOURCE_EXHAUSTED;
    lost = BY_NO_MEMORY;
  }
  duct__mutex_lock(&sc->mu);
  duct_ctx *x = find_call(sc, m->hdr.call_id);
  const char *bad = NULL;
  duct_code bad_code = DUCT_INTERNAL;
  if (x && (x->half_closed ||
            (x->kind != DUCT_CLIENT_STREAMING && x->kind != DUCT_BIDI_STREAMING))) {
    bad = "STREAM_DATA on a call that takes none (or after its HALF_CLOSE)";
  } else if (x && !duct__flow_arrived(&x->rx, m->len)) {
    bad = "STREAM_DATA beyond the stream's credit";
    bad_code = DUCT_RESOURCE_EXHAUSTED;
  }
  if (!x || bad || rc != DUCT_OK) {
    /* Too large to keep (or no memory): the call fails, as a unary one
     * would. It is cancelled, not just ended: its handler, or the holder
     * of a kept stream, must hear of it (duct_ctx_cancelled, the cancel
     * and writable callbacks) as of any other end it did not choose; a
     * kept stream is only ever released by its holder. A call that ended
     * may still get what its client sent before it heard: dropped. */
    int lose = x && !bad && rc != DUCT_OK;
    if (lose)
      call_ref(x);
    duct__mutex_unlock(&sc->mu);
    duct__free(n);
    if (bad)
      return violation(sc, bad_code, bad);
    if (lose) {
      call_cancel(x, lost);
      call_unref(x);
    }
    return 0;
  }
  n->next = NULL;
  n->len = m->len;
  if (m->len)
    memcpy(n + 1, m->data, m->len);
  if (x->rxtail)
    x->rxtail->next = n;
  else
    x->rxhead = n;
  x->rxtail = n;
  duct__cond_broadcast(&x->cv);
  duct__mutex_unlock(&sc->mu);
  return 0;
}

/* CANCEL, HALF_CLOSE and CREDIT: control frames of one call. */
static int on_control(sconn *sc, const duct__frame *f, const uint8_t *payload) {
  duct__mutex_lock(&sc->mu);
  duct_ctx *x = find_call(sc, f->call_id);
  if (!x) {
    duct__mutex_unlock(&sc->mu);
    return 0; /* a call that has ended: crossed in flight */
  }
  if (f->type == DUCT__CANCEL) {
    duct__mutex_unlock(&sc->mu);
    call_ref(x);
    call_cancel(x, BY_CLIENT);
    call_unref(x);
    return 0;
  }
  if (f->type == DUCT__HALF_CLOSE) {
    x->half_closed = 1;
    duct__cond_broadcast(&x->cv);
    duct__mutex_unlock(&sc->mu);
    return 0;
  }
  /* CREDIT */
  x->tx.avail += duct__credit_value(payload);
  duct_stream_cb wcb = NULL;
  void *wu = x->writable_user;
  if (may_send(x) && x->on_writable) {
    wcb = x->on_writable;
    x->on_writable = NULL;
    call_ref(x);
  }
  duct__cond_broadcast(&x->cv);
  duct__mutex_unlock(&sc->mu);
  if (wcb) {
    wcb((duct_stream *)(void *)x, wu);
    call_unref(x);
  }
  return 0;
}

static void set_partial(sconn *sc, int64_t since) { atomic_store(&sc->c->partial_since, since); }

static int on_hello(sconn *sc, const duct__frame *f, const uint8_t *payload) {
  char why[DUCT__MAX_ERROR_TEXT];
  duct_code rc = duct__session_hello(&sc->sess, payload, f->payload_len, MIN_PEER_FRAME,
                                     "client", why, sizeof why);
  if (rc != DUCT_OK)
    return violation(sc, rc, why);
  uint8_t msg[DUCT__HELLO_MSG_SIZE];
  duct__wire_hello(msg, DUCT__DEFAULT_MAX_FRAME, sc->s->o.max_message_size);
  if (send_msg(sc, msg, sizeof msg) != 0)
    return -1;
  set_partial(sc, 0);
  return 0;
}

/* Called by the transport with one whole message; one at a time per
 * connection, so the receive state needs no lock. */
static int decoded(sconn *sc, const uint8_t *msg, size_t len, const uint8_t *payload);

/* The fragments of a large message after its first are received straight
 * into its reassembly buffer (a scatter read, where the transport can):
 * the free end of that buffer is offered here. */
static uint8_t *on_rx_slot(void *state, size_t *room) {
  sconn *sc = state;
  return sc->sess.hello_done ? duct__reasm_slot(&sc->sess.rx, room) : NULL;
}

static int on_message_placed(void *state, const uint8_t *hdr, size_t len) {
  sconn *sc = state;
  sc->placed = 1;
  size_t room = 0;
  uint8_t *slot = duct__reasm_slot(&sc->sess.rx, &room);
  int r = decoded(sc, hdr, len, slot);
  sc->placed = 0;
  return r;
}

static int on_message(void *state, const uint8_t *msg, size_t len) {
  return decoded(state, msg, len, msg + DUCT__HEADER_SIZE);
}

/* A message whose header is at msg (len bytes in all) and whose payload
 * is at `payload`: right after the header, or, placed, at the slot. */
static int decoded(sconn *sc, const uint8_t *msg, size_t len, const uint8_t *payload) {
  duct_server *s = sc->s;
  duct__frame f;
  const char *why;
  duct_code rc = duct__frame_decode(msg, len, &f, &why);
  if (rc != DUCT_OK) {
    if (rc == DUCT_FAILED_PRECONDITION) {
      char text[96];
      snprintf(text, sizeof text,
               "protocol version %u is not supported; this server speaks %u..%u", f.version,
               DUCT__VERSION, DUCT__VERSION_MAX);
      return violation(sc, rc, text);
    }
    return violation(sc, rc, why);
  }
  if (!sc->sess.hello_done)
    return f.type == DUCT__HELLO ? on_hello(sc, &f, payload)
                                 : violation(sc, DUCT_INTERNAL, "first frame is not HELLO");
  int v2 = sc->sess.version >= 2;
  switch (f.type) {
  case DUCT__REQUEST:
    break;
  case DUCT__STREAM_DATA:
    if (!v2)
      return violation(sc, DUCT_INTERNAL, "a version 2 frame on a version 1 connection");
    break;
  case DUCT__CANCEL:
    /* Version 1 runs each call before reading the next frame, so its
     * CANCEL names a call already answered: nothing to do. */
    return v2 ? on_control(sc, &f, payload) : 0;
  case DUCT__HALF_CLOSE:
  case DUCT__CREDIT:
    if (!v2)
      return violation(sc, DUCT_INTERNAL, "a version 2 frame on a version 1 connection");
    return on_control(sc, &f, payload);
  case DUCT__GOAWAY:
    duct__log(&s->log, DUCT_LOG_DEBUG, "pid %u said goodbye", (unsigned)sc->peer.pid);
    return -1;
  case DUCT__HELLO:
    return violation(sc, DUCT_INTERNAL, "second HELLO");
  default:
    return violation(sc, DUCT_INTERNAL, "a client may not send this frame type");
  }

  int was_partial = sc->sess.rx.active;
  int64_t now = duct__now_ms();
  duct__msg m;
  rc = sc->placed ? duct__reasm_feed_placed(&sc->sess.rx, &f, &m, &why)
                  : duct__reasm_feed(&sc->sess.rx, &f, payload, &m, &why);
  if (rc == DUCT_INTERNAL)
    return violation(sc, rc, why);
  if (!m.done) {
    if (!was_partial)
      set_partial(sc, now);
    return 0;
  }
  /* The deadline clock starts when the request's first frame arrived. */
  int64_t started = now;
  if (was_partial) {
    started = atomic_load(&sc->c->partial_since);
    set_partial(sc, 0);
  }
  if (m.hdr.type == DUCT__STREAM_DATA)
    return on_stream_data(sc, &m, rc);
  return on_request(sc, &m, started, rc, why);
}

static void *on_open(void *core, duct__conn *c, const duct_peer *peer) {
  duct_server *s = core;
  if (atomic_load(&s->stopping))
    return NULL;
  sconn *sc = duct__calloc(1, sizeof *sc);
  if (!sc) {
    duct__log(&s->log, DUCT_LOG_ERROR, "out of memory accepting pid %u", (unsigned)peer->pid);
    return NULL;
  }
  sc->s = s;
  sc->c = c;
  duct__conn_ref(c); /* until the connection ends: calls send through it */
  sc->peer = *peer;
  snprintf(sc->user, sizeof sc->user, "%s", peer->user);
  sc->peer.user = sc->user; /* outlives the connection, with the calls */
  atomic_init(&sc->refs, 1);
  duct__mutex_init(&sc->mu);
  duct__mutex_init(&sc->tx_mu);
  duct__session_init(&sc->sess, s->o.max_message_size, &s->partial);
  duct__mutex_lock(&s->mu);
  sc->snext = s->conns;
  if (s->conns)
    s->conns->sprev = sc;
  s->conns = sc;
  duct__mutex_unlock(&s->mu);
  return sc;
}

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
static void cancel_calls(sconn *sc, int (*pick)(duct_ctx *, void *), void *arg,
                         enum cancel_why why) {
  duct_ctx *batch[64];
  size_t n;
  /* Each round cancels what it took (cancelled calls are not taken
   * again), so this ends. */
  while ((n = open_calls(sc, pick, arg, batch, 64)) > 0)
    for (size_t i = 0; i < n; i++) {
      call_cancel(batch[i], why);
      call_unref(batch[i]);
    }
}

static void on_closed(void *state, duct_code why, const char *detail) {
  sconn *sc = state;
  duct_server *s = sc->s;
  /* Ends the server decided on (timeouts, caps) are worth a warning; a
   * peer leaving or the server stopping is routine. */
  int notable = why == DUCT_DEADLINE_EXCEEDED || why == DUCT_RESOURCE_EXHAUSTED;
  if (why != DUCT_OK)
    duct__log(&s->log, notable ? DUCT_LOG_WARN : DUCT_LOG_DEBUG,
              "connection from pid %u (user %s) ended: %s%s%s", (unsigned)sc->peer.pid,
              sc->peer.user, duct_code_name(why), detail ? ": " : "", detail ? detail : "");
  /* Nothing more can be sent: calls still open are cancelled (their
   * handlers see it), and the connection is let go even while handles to
   * its streams live on. */
  duct__mutex_lock(&sc->mu);
  sc->closed = 1;
  duct__mutex_unlock(&sc->mu);
  cancel_calls(sc, NULL, NULL, BY_GONE);
  duct__mutex_lock(&sc->tx_mu); /* tx_mu before mu, as in send_unary_reply */
  duct__mutex_lock(&sc->mu);
  duct__conn *c = sc->c;
  sc->c = NULL;
  duct__mutex_unlock(&sc->mu);
  duct__mutex_unlock(&sc->tx_mu);
  duct__conn_unref(c);
  duct__session_free(&sc->sess);
  sconn_unref(sc);
}

/* A connection is closed to admit a new one at max_connections: it was
 * idle, so its client loses nothing but is told why. Any thread: only the
 * connection itself (not the owner's sconn) is touched. */
static void on_evict(void *state, const char *why) {
  sconn *sc = state;
  duct__log(&sc->s->log, DUCT_LOG_INFO, "closing connection from pid %u: %s",
            (unsigned)sc->peer.pid, why);
  goaway_nowait(sc->s, sc->c, DUCT_RESOURCE_EXHAUSTED, why);
}

/* The transport refuses a frame itself (over max_frame): say so, as for
 * any other violation. */
static void on_violation(void *state, duct_code code, const char *why) {
  sconn *sc = state;
  duct__log(&sc->s->log, DUCT_LOG_WARN, "closing connection from pid %u (user %s): %s",
            (unsigned)sc->peer.pid, sc->peer.user, why);
  goaway_nowait(sc->s, sc->c, code, why);
}

/* The connection's queue emptied: streams that waited for it may send. */
static void on_drained(void *state) {
  sconn *sc = state;
  duct_ctx *batch[64];
  duct_stream_cb cbs[64];
  void *users[64];
  size_t n = 0;
  duct__mutex_lock(&sc->mu);
  sc->drain_pending = 0;
  for (duct_ctx *x = sc->calls; x; x = x->next) {
    duct__cond_broadcast(&x->cv);
    if (n < 64 && x->on_writable && may_send(x)) {
      cbs[n] = x->on_writable;
      users[n] = x->writable_user;
      x->on_writable = NULL;
      call_ref(x);
      batch[n++] = x;
    }
  }
  duct__mutex_unlock(&sc->mu);
  for (size_t i = 0; i < n; i++) {
    cbs[i]((duct_stream *)(void *)batch[i], users[i]);
    call_unref(batch[i]);
  }
  sconn_unref(sc); /* the reference taken when it was asked for */
}

/* Every connection, each with a reference, for a walk without s->mu. */
/* A referenced snapshot of the connections, into *buf (*cap entries),
 * grown when there are more; NULL (*n = 0) without memory. */
static sconn **snapshot_conns(duct_server *s, sconn ***buf, size_t *cap, size_t *n) {
  duct__mutex_lock(&s->mu);
  size_t k = 0, count = 0;
  for (sconn *sc = s->conns; sc; sc = sc->snext)
    count++;
  if (count > *cap) {
    sconn **nb = duct__realloc(*buf, count * sizeof *nb);
    if (nb) {
      *buf = nb;
      *cap = count;
    }
  }
  for (sconn *sc = s->conns; *buf && sc && k < *cap; sc = sc->snext)
    if (sconn_try_ref(sc))
      (*buf)[k++] = sc;
  duct__mutex_unlock(&s->mu);
  *n = k;
  return *buf;
}

static sconn **all_conns(duct_server *s, size_t *n) {
  sconn **all = NULL;
  size_t cap = 0;
  return snapshot_conns(s, &all, &cap, n);
}

static int past_deadline(duct_ctx *x, void *now) {
  return x->deadline >= 0 && *(int64_t *)now >= x->deadline;
}

/* About every 100 ms: calls whose deadline passed are cancelled, and
 * their clients told DEADLINE_EXCEEDED. */
static void on_tick(void *core) {
  duct_server *s = core;
  int64_t now = duct__now_ms();
  size_t n;
  sconn **all = snapshot_conns(s, &s->tick_all, &s->tick_cap, &n);
  for (size_t i = 0; i < n; i++) {
    cancel_calls(all[i], past_deadline, &now, BY_DEADLINE);
    sconn_unref(all[i]);
  }
}

static const duct__srv_cb callbacks = {.open = on_open,
                                       .message = on_message,
                                       .rx_slot = on_rx_slot,
                                       .message_placed = on_message_placed,
                                       .closed = on_closed,
                                       .evict = on_evict,
                                       .violation = on_violation,
                                       .tick = on_tick,
                                       .run = on_run,
                                       .drained = on_drained};

/* ---- lifecycle ---- */

/* Copies s for a log line with control characters shown as '?', so an
 * address given by mistake cannot break or forge log lines. */
static const char *printable(char *buf, size_t cap, const char *s) {
  size_t i = 0;
  for (; s[i] && i + 1 < cap; i++)
    buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
  buf[i] = '\0';
  return buf;
}

duct_code duct_server_new(const duct_server_opts *o, duct_server **out) {
  return duct__server_new_with(o, &duct__platform_transport, out);
}

duct_code duct__server_new_with(const duct_server_opts *o,
                                const duct__transport_ops *t,
                                duct_server **out) {
  duct_server_opts d = {0};
  if (o)
    d = *o;
  /* No server yet: refusals go to the log the options name. */
  duct__logger lg = {d.log, d.log_user};
  if (!out) {
    duct__log(&lg, DUCT_LOG_ERROR, "duct_server_new: out is NULL");
    return DUCT_INVALID_ARGUMENT;
  }
  *out = NULL;
  if (d.workers < 0 || d.workers > MAX_WORKERS) {
    duct__log(&lg, DUCT_LOG_ERROR,
              "duct_server_new: option workers = %d is out of range; accepted: 0 "
              "(one per core) or 1..%d",
              d.workers, MAX_WORKERS);
    return DUCT_INVALID_ARGUMENT;
  }
  if (d.max_message_size && d.max_message_size < MIN_MAX_MESSAGE) {
    duct__log(&lg, DUCT_LOG_ERROR,
              "duct_server_new: option max_message_size = %u is out of range; "
              "accepted: 0 (4 MiB) or %u..4294967295 bytes",
              (unsigned)d.max_message_size, MIN_MAX_MESSAGE);
    return DUCT_INVALID_ARGUMENT;
  }
  if (!d.workers)
    d.workers = duct__cpu_count();
  if (!d.max_connections)
    d.max_connections = DEFAULT_MAX_CONNECTIONS;
  if (!d.max_calls_per_connection)
    d.max_calls_per_connection = DEFAULT_MAX_CALLS;
  if (!d.max_message_size)
    d.max_message_size = DUCT__DEFAULT_MAX_MESSAGE;
  if (!d.idle_timeout_ms)
    d.idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
  if (!d.max_partial_memory)
    d.max_partial_memory = DEFAULT_MAX_PARTIAL_MEMORY;
  if (d.max_partial_memory < d.max_message_size) {
    duct__log(&lg, DUCT_LOG_ERROR,
              "duct_server_new: option max_partial_memory = %zu is out of range; "
              "accepted: 0 (64 MiB) or at least max_message_size (%u)",
              d.max_partial_memory, (unsigned)d.max_message_size);
    return DUCT_INVALID_ARGUMENT;
  }
  if (d.max_call_memory && d.max_call_memory < MIN_CALL_MEMORY) {
    duct__log(&lg, DUCT_LOG_ERROR,
              "duct_server_new: option max_call_memory = %zu is out of range; "
              "accepted: 0 (4 x max_message_size) or at least %zu bytes",
              d.max_call_memory, MIN_CALL_MEMORY);
    return DUCT_INVALID_ARGUMENT;
  }
  if (!d.max_call_memory) {
    d.max_call_memory = (size_t)d.max_message_size * CALL_MEMORY_FACTOR;
    if (d.max_call_memory < MIN_CALL_MEMORY)
      d.max_call_memory = MIN_CALL_MEMORY;
  }
  duct_server *s = duct__calloc(1, sizeof *s);
  if (!s)
    return DUCT_RESOURCE_EXHAUSTED;
  s->t = t;
  s->o = d;
  atomic_init(&s->partial.used, 0);
  s->partial.limit = d.max_partial_memory;
  s->call_memory = d.max_call_memory;
  /* Room for one whole reply of the largest size a request may have, with
   * its frame headers, and some: replies past it are refused up front. */
  s->queue_cap = (size_t)d.max_message_size * 2 + 64u * 1024u;
  s->log.cb = d.log;
  s->log.user = d.log_user;
  duct__mutex_init(&s->mu);
  duct__cond_init(&s->cv);
  /* Reflection is on unless refused: a client learns nothing from it that
   * the .proto files would not tell, and the authorize hook still decides
   * who may call it (docs/GUIDE.md, "Reflection"). Added first, so it
   * lists first. */
  if (!d.disable_reflection) {
    duct_code rc = duct__reflection_register(s);
    if (rc != DUCT_OK) {
      duct_server_free(s);
      return rc;
    }
  }
  *out = s;
  return DUCT_OK;
}

const duct_service *const *duct__server_services(const duct_server *s, size_t *n) {
  *n = s->n_services;
  return s->services;
}

duct_code duct_server_add(duct_server *s, const duct_service *svc, const void *handlers,
                          void *user) {
  if (!s || !svc || !handlers || (svc->n_methods && !svc->methods))
    return DUCT_INVALID_ARGUMENT;
  if (s->started || s->l)
    return DUCT_FAILED_PRECONDITION;
  for (size_t i = 0; i < svc->n_methods; i++) {
    const duct_method *m = &svc->methods[i];
    int callable = m->kind == DUCT_UNARY ? m->invoke != NULL
                   : m->kind <= DUCT_BIDI_STREAMING && m->invoke_stream != NULL;
    if (!m->name || !m->input || !m->output || !callable || m->id == 0 ||
        m->id != duct__method_id(m->name)) {
      /* A hand-written or stale descriptor would route calls wrongly. */
      duct__log(&s->log, DUCT_LOG_ERROR, "service %s: method %s has a bad descriptor",
                svc->name, m->name ? m->name : "(null)");
      return DUCT_INVALID_ARGUMENT;
    }
    for (size_t j = 0; j < s->n_methods; j++) {
      if (s->methods[j].m->id == m->id) {
        duct__log(&s->log, DUCT_LOG_ERROR, "method id 0x%08x of %s is already taken by %s",
                  (unsigned)m->id, m->name, s->methods[j].m->name);
        return DUCT_ALREADY_EXISTS;
      }
    }
    for (size_t j = 0; j < i; j++) {
      if (svc->methods[j].id == m->id)
        return DUCT_ALREADY_EXISTS;
    }
  }
  /* Both tables grow before either changes, so a failure leaves the
   * server as it was. */
  const duct_service **svcs =
      duct__realloc(s->services, (s->n_services + 1) * sizeof *svcs);
  if (!svcs)
    return DUCT_RESOURCE_EXHAUSTED;
  s->services = svcs;
  entry *grown = duct__realloc(s->methods, (s->n_methods + svc->n_methods) * sizeof *grown);
  if (!grown && svc->n_methods)
    return DUCT_RESOURCE_EXHAUSTED;
  s->methods = grown;
  s->services[s->n_services++] = svc;
  for (size_t i = 0; i < svc->n_methods; i++) {
    entry e = {&svc->methods[i], handlers, user};
    /* Insertion keeps the table sorted by id for bsearch. */
    size_t k = s->n_methods++;
    while (k > 0 && s->methods[k - 1].m->id > e.m->id) {
      s->methods[k] = s->methods[k - 1];
      k--;
    }
    s->methods[k] = e;
  }
  return DUCT_OK;
}

duct_code duct_server_listen(duct_server *s, const char *address) {
  if (!s)
    return DUCT_INVALID_ARGUMENT;
  if (!address) {
    duct__log(&s->log, DUCT_LOG_ERROR, "cannot listen: the address is NULL");
    return DUCT_INVALID_ARGUMENT;
  }
  if (s->l || s->stopped)
    return DUCT_FAILED_PRECONDITION;
  duct__listen_opts lo = {
      .workers = s->o.workers,
      .max_frame = DUCT__DEFAULT_MAX_FRAME,
      .max_connections = s->o.max_connections,
      .idle_timeout_ms = s->o.idle_timeout_ms,
      .queue_cap = s->queue_cap,
      .allow_group = s->o.allow_group,
      .sddl = s->o.sddl,
      .null_dacl = s->o.null_dacl_i_understand_anyone_can_connect,
      .allow_remote = s->o.allow_remote_clients,
  };
  duct__err err = {{0}};
  duct_code rc = s->t->listen(address, &lo, &callbacks, s, &s->l, &err);
  if (rc != DUCT_OK) {
    s->l = NULL;
    /* Refused addresses included: the transport's text says what the
     * address looks like and what to write instead. */
    char shown[200];
    duct__log(&s->log, DUCT_LOG_ERROR, "cannot listen on %s: %s",
              printable(shown, sizeof shown, address),
              err.text[0] ? err.text : duct_code_message(rc));
  }
  return rc;
}

duct_code duct_server_start(duct_server *s) {
  if (!s)
    return DUCT_INVALID_ARGUMENT;
  if (!s->l || s->started)
    return DUCT_FAILED_PRECONDITION;
  duct_code rc = s->t->listener_start(s->l);
  if (rc == DUCT_OK)
    s->started = 1;
  return rc;
}

/* Stop, for each connection: one with no call running, nothing half
 * received and no reply waiting to be read is told GOAWAY and closed now
 * (never waiting on it); the others get the drain to finish. Touches only
 * the duct__conn: its sconn belongs to the owner thread. */
static void stop_idle(duct__conn *c, void *arg) {
  duct_server *s = arg;
  if (atomic_load(&c->in_call) || atomic_load(&c->partial_since) ||
      atomic_load(&c->q_since))
    return;
  goaway_nowait(s, c, DUCT_UNAVAILABLE, "the server is stopping");
  s->t->conn_close(c, DUCT_UNAVAILABLE, "the server is stopping");
}

static void count_queued(duct__conn *c, void *arg) {
  if (atomic_load(&c->q_since))
    ++*(int *)arg;
}

static int is_stream(duct_ctx *x, void *arg) {
  (void)arg;
  return x->kind != DUCT_UNARY;
}

/* Cancels the open calls of every connection that `pick` chooses; their
 * clients are told UNAVAILABLE. */
static void cancel_all(duct_server *s, int (*pick)(duct_ctx *, void *)) {
  size_t n;
  sconn **all = all_conns(s, &n);
  for (size_t i = 0; i < n; i++) {
    cancel_calls(all[i], pick, NULL, BY_STOP);
    sconn_unref(all[i]);
  }
  duct__free(all);
}

duct_code duct_server_stop(duct_server *s, int drain_ms) {
  if (!s)
    return DUCT_INVALID_ARGUMENT;
  if (s->stopped)
    return DUCT_OK;
  if (!s->l) {
    s->stopped = 1;
    return DUCT_OK;
  }
  int64_t until = duct__now_ms() + (drain_ms > 0 ? drain_ms : 0);
  s->t->listener_stop_accepting(s->l);
  /* Set `stopping`, then look at each connection's in_call: on_request
   * does the opposite (both sequentially consistent), so every call is
   * either refused there or seen here. */
  atomic_store(&s->stopping, 1);
  /* Streams have no end a stop could wait for (a subscription runs until
   * told): they end now, their clients told UNAVAILABLE, their handlers
   * cancelled. Unary calls get the drain to finish. */
  cancel_all(s, is_stream);
  /* No lock is held while saying GOAWAY, and the GOAWAY never waits. */
  s->t->listener_each(s->l, stop_idle, s);

  duct__mutex_lock(&s->mu);
  while (atomic_load(&s->inflight) > 0 && duct__now_ms() < until)
    duct__cond_wait(&s->cv, &s->mu, until);
  duct__mutex_unlock(&s->mu);
  int abandoned = atomic_load(&s->inflight);
  if (abandoned) {
    /* Past the drain: the handlers still running are cancelled (those
     * that watch duct_ctx_cancelled return now) and their late replies
     * dropped. */
    duct__log(&s->log, DUCT_LOG_WARN,
              "stop: %d handler(s) still running after %d ms; cancelling their calls",
              abandoned, drain_ms);
    cancel_all(s, NULL);
  }
  /* Replies and final statuses may be taken by their clients. Nothing
   * signals an emptied queue to the server, so this looks every 10 ms,
   * within the same drain. */
  int queued = 0;
  for (;;) {
    queued = 0;
    s->t->listener_each(s->l, count_queued, &queued);
    if (!queued || duct__now_ms() >= until)
      break;
    duct__mutex_lock(&s->mu);
    int64_t next = duct__now_ms() + 10;
    duct__cond_wait(&s->cv, &s->mu, next < until ? next : until);
    duct__mutex_unlock(&s->mu);
  }
  if (queued)
    duct__log(&s->log, DUCT_LOG_WARN,
              "stop: %d client(s) had not read their replies after %d ms; closing",
              queued, drain_ms);
  /* Closes every connection and joins the workers (unary handlers still
   * running finish first); then the stream handlers' own threads. */
  s->t->listener_free(s->l);
  s->l = NULL;
  duct__mutex_lock(&s->mu);
  while (atomic_load(&s->inflight) > 0)
    duct__cond_wait(&s->cv, &s->mu, -1);
  duct__mutex_unlock(&s->mu);
  s->stopped = 1;
  return DUCT_OK;
}

void duct_server_free(duct_server *s) {
  if (!s)
    return;
  if (s->l)
    duct_server_stop(s, 0);
  /* Connections whose streams the application never finished: their
   * handles end here (duct/server.h). */
  while (s->conns) {
    sconn *sc = s->conns;
    s->conns = sc->snext;
    while (sc->calls) {
      duct_ctx *x = sc->calls;
      sc->calls = x->next;
      for (rxnode *n = x->rxhead, *next; n; n = next) {
        next = n->next;
        duct__free(n);
      }
      duct__arena_free(&x->arena);
      duct__cond_destroy(&x->cv);
      duct__free(x);
    }
    sconn_free(sc);
  }
  duct__free(s->methods);
  duct__free(s->services);
  duct__free(s->tick_all);
  duct__cond_destroy(&s->cv);
  duct__mutex_destroy(&s->mu);
  duct__free(s);
}
