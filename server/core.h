/* server/core.h - the server's parts that its files share: the records of
 * the server, a connection and a call, and the functions one file offers
 * the others. Internal, like every duct__ name: the shared libduct's
 * version script (cmake/duct.map) exports none of them. What duct's own
 * tests may reach is server/internal.h, a different purpose.
 *
 * The files, one role each (duct/server.h is the public side of all):
 *   server.c    the server's lifecycle: options, new, add, listen,
 *               start, the graceful stop, free
 *   dispatch.c  what the transport calls: a connection opens and closes,
 *               its messages arrive (HELLO, decoding, reassembly), a
 *               request becomes a call and its handler runs
 *   call.c      calls: the call object, the handler's duct_ctx_*, a
 *               call's end (replies included), cancellation, deadlines
 *   stream.c    streams: duct_stream_*, credit and the send queue's room
 *   send.c      what goes out: packing buffers lent to the send queue,
 *               control and text messages, GOAWAY
 *   sconn.c     a connection's references and the server's list of them
 *               (the bottom: every other file uses it, it uses none)
 *   reflection.c  the built-in reflection service
 *
 * Locks: s->mu guards the server's list of connections; a connection's
 * tx_mu (one message at a time goes out, whole) may be held while taking
 * its mu (the calls and each call's state), never the other way round.
 * No lock is held across a handler's callback. */
#ifndef DUCT_SERVER_CORE_H
#define DUCT_SERVER_CORE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "duct/server.h"
#include "runtime/arena.h"
#include "runtime/conn.h"
#include "runtime/frame.h"
#include "runtime/log.h"
#include "runtime/session.h"
#include "runtime/sys.h"
#include "runtime/transport.h"

/* Packing buffers per connection: two the send queue may borrow from
 * (one is being written by the queue while the next message is packed in
 * the other), and one never lent, for when the queue holds both (a slow
 * reader: its messages are copied, and nothing is allocated per message). */
#define TX_LENT 2
#define TX_BUFS 3

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
   * (duct__srv_tx_room), the one in use being txcur. */
  struct txb *tx[TX_BUFS];
  struct txb *txcur;
  struct duct_ctx *calls;  /* not yet freed, newest first */
  uint32_t nopen;          /* of those, not finished */
  uint32_t nlive;          /* registered and their end not yet sent */
  int goaway_sent;         /* the stop's GOAWAY after the last reply */
  struct duct_ctx *runq, *runq_tail; /* unary calls waiting for run() */
  struct duct_ctx *spare;  /* a freed call kept for the next one */
  int closed;
  int drain_pending;    /* conn_want_drained asked; drained() owed */
  sconn *snext, *sprev; /* s->conns */
};

/* Taking a reference is one atomic add, on every call's path: inline here
 * for every file rather than a call into another. */
static inline void sconn_ref(sconn *sc) { atomic_fetch_add(&sc->refs, 1); }
static inline void call_ref(duct_ctx *x) { atomic_fetch_add(&x->refs, 1); }

/* The services added to `s`, in the order they were added (the
 * reflection service first, unless disabled); *n is their count. Borrowed
 * from the server and fixed once it listens. Inline, so that the
 * reflection service (reflection.c, which server.c registers) reads them
 * without a call back into server.c. */
static inline const duct_service *const *duct__server_services(const duct_server *s,
                                                               size_t *n) {
  *n = s->n_services;
  return (const duct_service *const *)s->services;
}

/* ---- dispatch.c: the transport's side ---- */

/* The transport's callbacks (runtime/transport.h), given to listen. */
extern const duct__srv_cb duct__srv_callbacks;

/* ---- sconn.c: connections ---- */

/* Drops a reference to sc; the last one unlinks it from s->conns and
 * frees it. */
void duct__srv_conn_unref(sconn *sc);
/* Frees sc and the spare call it keeps (the last reference, or
 * duct_server_free). */
void duct__srv_conn_free(sconn *sc);
/* A referenced snapshot of the connections, into *buf (*cap entries),
 * grown when there are more; NULL (*n = 0) without memory. */
sconn **duct__srv_conns_snapshot(duct_server *s, sconn ***buf, size_t *cap, size_t *n);

/* ---- call.c: calls ---- */

/* A new call on sc (its spare if it has one), holding a reference to sc;
 * NULL without memory. */
duct_ctx *duct__srv_call_new(sconn *sc);
void duct__srv_call_unref(duct_ctx *x);
/* Under sc->mu: an open call by id. */
duct_ctx *duct__srv_call_find(sconn *sc, uint32_t id);
/* Ends the call with `code` unless something ended it first. 1 if this did. */
int duct__srv_call_end(duct_ctx *x, duct_code code, const char *text, uint8_t *payload,
                       size_t len);
/* Cancels a call once; its client is told what `why` says. */
void duct__srv_call_cancel(duct_ctx *x, enum cancel_why why);
/* Ends a call with its handler's reply (a stream's handler, or a unary
 * reply that cannot go in the connection's buffer). */
void duct__srv_end_with_reply(duct_ctx *x, duct_code code);
/* Ends a unary call with its handler's reply and drops the handler's
 * reference to it. */
void duct__srv_send_unary_reply(duct_ctx *x, duct_code code);
/* Cancels every open call of sc that `pick` chooses (all if NULL). */
void duct__srv_cancel_calls(sconn *sc, int (*pick)(duct_ctx *, void *), void *arg,
                            enum cancel_why why);
/* The transport's tick: calls past their deadline are cancelled. */
void duct__srv_tick(void *core);

/* ---- stream.c: streams ---- */

/* Under sc->mu: whether a stream message may go now. */
int duct__srv_may_send(duct_ctx *x);
/* The transport's drained(): streams that waited for the queue may send. */
void duct__srv_drained(void *state);

/* ---- send.c: what goes out ---- */

/* duct__session_send's sinks, under tx_mu: one frame as it is, or one of
 * the message packed in sc->txcur, lent to the send queue. */
duct_code duct__srv_send(void *arg, const duct__iov *iov, int n, int last);
duct_code duct__srv_send_packed(void *arg, const duct__iov *iov, int n, int last);
/* One whole message (takes tx_mu); 0, or -1 if it could not go. */
int duct__srv_send_msg(sconn *sc, const uint8_t *msg, size_t n);
/* A text message (RESPONSE with an error, GOAWAY) or a control message
 * (CANCEL, CREDIT), as duct__srv_send_msg. */
int duct__srv_send_text(sconn *sc, uint8_t type, uint32_t call, uint32_t method,
                        duct_code code, const char *text);
int duct__srv_send_ctl(sconn *sc, uint8_t type, uint32_t call, uint32_t credit);
/* A GOAWAY that never waits: for connections this thread does not own. */
void duct__srv_goaway_nowait(duct_server *s, duct__conn *c, duct_code code, const char *text);
/* Under tx_mu: room for a packed message of n bytes after a header
 * (sc->txcur becomes its buffer); NULL without memory. */
uint8_t *duct__srv_tx_room(sconn *sc, size_t n);

#endif
