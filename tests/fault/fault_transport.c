/* tests/fault/fault_transport.c - see fault_transport.h.
 *
 * Every member delegates to duct__platform_transport's member of the same
 * name, never to the platform's functions by name, so the wrapper follows
 * the table if a platform's functions are renamed or split.
 *
 * What each injected fault means, written against the table's contract
 * (runtime/transport.h), not against how a platform happens to implement
 * it:
 *
 * client link_send:  fail = not sent, the link is broken (UNAVAILABLE);
 *                    truncate = the first half goes out as one message;
 *                    stall = the send never completes: DEADLINE_EXCEEDED at
 *                    the caller's deadline (the contract's answer, after
 *                    which the caller must close the link).
 * client link_recv:  fail = the link breaks; truncate = the message arrives
 *                    cut in half; stall = nothing arrives before the
 *                    deadline.
 *                    A stall ends early, with UNAVAILABLE, when the link
 *                    is shut down (link_shutdown's contract); with no
 *                    deadline (a channel's reader) only then.
 * client transact:   two events: the request (as link_send) and the reply
 *                    (as link_recv; a failed or stalled reply is decided
 *                    after the real reply came, so the server has done its
 *                    part and the client alone sees the fault).
 * server conn_send:  fail = the connection is gone (UNAVAILABLE): the
 *                    wrapper closes it, as a send that fails on a real
 *                    transport means it is closing;
 *                    truncate = the first half is sent;
 *                    stall = the message is LOST and the op reports
 *                    success. The bytes never reach the peer, whose own
 *                    deadline must end its call.
 *
 * Why a lost frame and not one withheld for a while: conn_send no longer
 * blocks (core v2): DUCT_OK means written or accepted onto the
 * connection's queue, to be written as the peer drains it; before, it
 * meant written, after waiting up to a send timeout. "Reported sent, never delivered" is what a peer observes of
 * a stalled send under both: the server's side sees success either way,
 * the client waits for its deadline. Holding the bytes back and releasing
 * them later would instead depend on when the transport writes, tie up a
 * worker (blocking) or a queue slot (queued) in the wrapper, and deliver
 * frames after the client had already given up on the link. Either way
 * the wrapper never blocks a server worker. */
#include "fault_transport.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "runtime/sys.h"

/* The real transport underneath. */
#define REAL (&duct__platform_transport)

static struct {
  duct__mutex mu;
  duct__cond cv; /* a server send returned; wakes waiters to re-check */
  int kind, side;
  int type;       /* 0: every frame event; else only sends of this type */
  long at;        /* fault the at-th frame event on `side` (0-based) */
  long events[2]; /* frame events so far, per side */
  int fired;
  long server_sends; /* server sends returned (any outcome) */
  long server_send_errors;
  long server_closes; /* closed() reported with a reason other than OK */
  long server_open;   /* opened and not yet closed */
  int stalled_forever; /* a stall met an op with no deadline */
  struct shim *shims;  /* one per live listener */
  struct shut_link *shut; /* links shut down and not yet closed */
} fx;

/* A link that was shut down: a stall on it must end (the real link needs
 * no record; its own calls see the shutdown). */
typedef struct shut_link {
  duct__link *l;
  struct shut_link *next;
} shut_link;

/* Under fx.mu. */
static int is_shut(const duct__link *l) {
  for (shut_link *p = fx.shut; p; p = p->next)
    if (p->l == l)
      return 1;
  return 0;
}

void fault_transport_init(void) {
  duct__mutex_init(&fx.mu);
  duct__cond_init(&fx.cv);
  fx.kind = FAULT_NONE;
}

/* The type of the frame a send carries (its header is in the first
 * piece); 0 for a receive. */
static int type_of(const duct__iov *iov, int n) {
  return n > 0 && iov[0].len > 5 ? ((const uint8_t *)iov[0].base)[5] : 0;
}

/* Counts one frame event on `side` (a send of a frame of `type`, or a
 * receive: 0); returns the fault to inject, if any. */
static int fault_event(int side, int type) {
  duct__mutex_lock(&fx.mu);
  int k = FAULT_NONE;
  if (!fx.type || fx.type == type) {
    if (fx.kind != FAULT_NONE && fx.side == side && fx.events[side] == fx.at) {
      k = fx.kind;
      fx.fired = 1;
    }
    fx.events[side]++;
  }
  duct__mutex_unlock(&fx.mu);
  return k;
}

void fault_arm(int kind, int side, long at) { fault_arm_type(kind, side, 0, at); }

void fault_arm_type(int kind, int side, int type, long at) {
  duct__mutex_lock(&fx.mu);
  fx.kind = kind;
  fx.side = side;
  fx.type = type;
  fx.at = at;
  fx.events[0] = fx.events[1] = 0;
  fx.fired = 0;
  duct__mutex_unlock(&fx.mu);
}

int fault_disarm(void) {
  duct__mutex_lock(&fx.mu);
  fx.kind = FAULT_NONE;
  int fired = fx.fired;
  duct__mutex_unlock(&fx.mu);
  return fired;
}

long fault_event_count(int side) {
  duct__mutex_lock(&fx.mu);
  long n = fx.events[side];
  duct__mutex_unlock(&fx.mu);
  return n;
}

int fault_stalled_forever(void) {
  duct__mutex_lock(&fx.mu);
  int f = fx.stalled_forever;
  duct__mutex_unlock(&fx.mu);
  return f;
}

void fault_server_send_counts(long *sends, long *errors) {
  duct__mutex_lock(&fx.mu);
  *sends = fx.server_sends;
  *errors = fx.server_send_errors;
  duct__mutex_unlock(&fx.mu);
}

int fault_wait_server_closes(long closes, int timeout_ms) {
  int64_t until = duct__now_ms() + timeout_ms;
  duct__mutex_lock(&fx.mu);
  while (fx.server_closes <= closes && duct__now_ms() < until)
    duct__cond_wait(&fx.cv, &fx.mu, until);
  int ok = fx.server_closes > closes;
  duct__mutex_unlock(&fx.mu);
  return ok;
}

int fault_wait_server_idle(int timeout_ms) {
  int64_t until = duct__now_ms() + timeout_ms;
  duct__mutex_lock(&fx.mu);
  while (fx.server_open > 0 && duct__now_ms() < until)
    duct__cond_wait(&fx.cv, &fx.mu, until);
  int ok = fx.server_open == 0;
  duct__mutex_unlock(&fx.mu);
  return ok;
}

long fault_server_closes(void) {
  duct__mutex_lock(&fx.mu);
  long n = fx.server_closes;
  duct__mutex_unlock(&fx.mu);
  return n;
}

int fault_wait_server_sends(long sends, long errors, int timeout_ms) {
  int64_t until = duct__now_ms() + timeout_ms;
  duct__mutex_lock(&fx.mu);
  while ((fx.server_sends <= sends || (errors >= 0 && fx.server_send_errors <= errors)) &&
         duct__now_ms() < until)
    duct__cond_wait(&fx.cv, &fx.mu, until);
  int ok = fx.server_sends > sends && (errors < 0 || fx.server_send_errors > errors);
  duct__mutex_unlock(&fx.mu);
  return ok;
}

/* A peer that stops answering: nothing completes until the deadline, which
 * the wait sleeps towards on a condition variable (woken to re-check the
 * clock and whether l was shut down), then the contract's
 * DEADLINE_EXCEEDED; UNAVAILABLE if l is shut down first. An operation
 * with no deadline waits for the shutdown alone (a channel's reader
 * does, and is woken by it when its channel closes or gives up on the
 * connection), but for at most 20 s: if those pass, nothing would ever
 * have ended it, and the test fails on it. */
static duct_code stall_until(duct__link *l, int64_t deadline_ms) {
  duct__mutex_lock(&fx.mu);
  int forever = deadline_ms < 0;
  if (forever)
    deadline_ms = duct__now_ms() + 20000;
  while (!is_shut(l) && duct__now_ms() < deadline_ms)
    duct__cond_wait(&fx.cv, &fx.mu, deadline_ms);
  duct_code rc = is_shut(l) ? DUCT_UNAVAILABLE : DUCT_DEADLINE_EXCEEDED;
  if (forever && rc == DUCT_DEADLINE_EXCEEDED)
    fx.stalled_forever = 1;
  duct__mutex_unlock(&fx.mu);
  return rc;
}

/* The first half of a message, as pieces: a message that arrives shorter
 * than it was sent (what a broken peer or transport would deliver). */
static int truncate_iov(const duct__iov *iov, int n, duct__iov out[2]) {
  size_t total = 0;
  for (int i = 0; i < n; i++)
    total += iov[i].len;
  size_t keep = total / 2;
  int k = 0;
  for (int i = 0; i < n && i < 2 && keep; i++) {
    out[k] = iov[i];
    if (out[k].len > keep)
      out[k].len = keep;
    keep -= out[k].len;
    k++;
  }
  return k;
}

/* ---- server side ---- */

/* The callbacks are wrapped too, only to see each connection's closed()
 * and its reason (the one thing a peer cannot tell the test: whether the
 * server gave up on it, e.g. a reply left unread past the idle timeout,
 * without reading from it first). One shim per listener, one wrapper per
 * connection, both from plain malloc, so duct's allocator hook in the fault
 * suite never counts them. Nothing else changes: every callback is the
 * core's own, called with the core's own state. */
typedef struct shim {
  duct__srv_cb cb;        /* what the real transport calls */
  const duct__srv_cb *to; /* the core's */
  void *core;
  duct__listener *l;
  struct wconn *conns;    /* every wrapper made, freed with the shim */
  struct shim *next;
} shim;

/* A wrapper lives as long as its listener, not only until closed(): run()
 * and drained() may come after closed(), and a core holding the
 * connection may still ask conn_want_drained, whose answer the real table
 * delivers through the wrapper (transport.h). listener_free returns only
 * once every connection is freed and every callback has returned, so the
 * shim frees its wrappers then. */
typedef struct wconn {
  shim *sh;
  void *state; /* the core's, from its open() */
  struct wconn *next; /* the shim's, under fx.mu */
} wconn;

static void *w_open(void *core, duct__conn *c, const duct_peer *peer) {
  shim *sh = core;
  wconn *w = malloc(sizeof *w);
  if (!w)
    return NULL; /* refused before the core saw it: no closed() owed */
  w->sh = sh;
  w->state = sh->to->open(sh->core, c, peer);
  if (!w->state) {
    free(w);
    return NULL;
  }
  duct__mutex_lock(&fx.mu);
  fx.server_open++;
  w->next = sh->conns;
  sh->conns = w;
  duct__mutex_unlock(&fx.mu);
  return w;
}

static int w_message(void *state, const uint8_t *msg, size_t len) {
  wconn *w = state;
  return w->sh->to->message(w->state, msg, len);
}

/* Reads into place pass through, so the suite's fragmented calls take
 * the transport's in-place path as a server without the shim does. */
static uint8_t *w_rx_slot(void *state, size_t *room) {
  wconn *w = state;
  return w->sh->to->rx_slot(w->state, room);
}

static int w_message_placed(void *state, const uint8_t *hdr, size_t len) {
  wconn *w = state;
  return w->sh->to->message_placed(w->state, hdr, len);
}

static void w_run(void *state) {
  wconn *w = state;
  w->sh->to->run(w->state);
}

static void w_drained(void *state) {
  wconn *w = state;
  w->sh->to->drained(w->state);
}

static void w_closed(void *state, duct_code why, const char *detail) {
  wconn *w = state;
  w->sh->to->closed(w->state, why, detail);
  duct__mutex_lock(&fx.mu);
  fx.server_open--;
  if (why != DUCT_OK)
    fx.server_closes++;
  duct__cond_broadcast(&fx.cv);
  duct__mutex_unlock(&fx.mu);
}

static void w_evict(void *state, const char *why) {
  wconn *w = state;
  w->sh->to->evict(w->state, why);
}

static void w_violation(void *state, duct_code code, const char *why) {
  wconn *w = state;
  w->sh->to->violation(w->state, code, why);
}

static void w_tick(void *core) {
  shim *sh = core;
  sh->to->tick(sh->core);
}

static duct_code f_listen(const char *address, const duct__listen_opts *o,
                          const duct__srv_cb *cb, void *core, duct__listener **out,
                          duct__err *err) {
  shim *sh = calloc(1, sizeof *sh);
  if (!sh)
    return DUCT_RESOURCE_EXHAUSTED;
  sh->to = cb;
  sh->core = core;
  sh->cb.open = w_open;
  sh->cb.message = w_message;
  sh->cb.closed = w_closed;
  /* The optional ones stay absent when the core has none. */
  sh->cb.evict = cb->evict ? w_evict : NULL;
  sh->cb.violation = cb->violation ? w_violation : NULL;
  sh->cb.tick = cb->tick ? w_tick : NULL;
  sh->cb.run = cb->run ? w_run : NULL;
  sh->cb.drained = cb->drained ? w_drained : NULL;
  sh->cb.rx_slot = cb->rx_slot ? w_rx_slot : NULL;
  sh->cb.message_placed = cb->message_placed ? w_message_placed : NULL;
  duct_code rc = REAL->listen(address, o, &sh->cb, sh, out, err);
  if (rc != DUCT_OK) {
    free(sh);
    return rc;
  }
  sh->l = *out;
  duct__mutex_lock(&fx.mu);
  sh->next = fx.shims;
  fx.shims = sh;
  duct__mutex_unlock(&fx.mu);
  return DUCT_OK;
}

static duct_code f_listener_start(duct__listener *l) { return REAL->listener_start(l); }

static void f_listener_stop_accepting(duct__listener *l) { REAL->listener_stop_accepting(l); }

/* Every closed(), run() and drained() has returned when the real one
 * returns, and every connection is freed; then the shim and its wrappers
 * go. */
static void f_listener_free(duct__listener *l) {
  REAL->listener_free(l);
  duct__mutex_lock(&fx.mu);
  shim **p = &fx.shims;
  while (*p && (*p)->l != l)
    p = &(*p)->next;
  shim *sh = *p;
  if (sh)
    *p = sh->next;
  duct__mutex_unlock(&fx.mu);
  if (sh) {
    while (sh->conns) {
      wconn *w = sh->conns;
      sh->conns = w->next;
      free(w);
    }
  }
  free(sh);
}

static void f_listener_each(duct__listener *l, void (*fn)(duct__conn *c, void *arg), void *arg) {
  REAL->listener_each(l, fn, arg);
}

/* loan: NULL for conn_send, else conn_send_lent's (the same faults: a
 * lent frame that is truncated is sent as a copy). */
static duct_code server_send(duct__conn *c, const duct__iov *iov, int n, duct__loan *loan) {
  int k = fault_event(FAULT_SERVER, type_of(iov, n));
  duct_code rc;
  duct__iov cut[2];
  switch (k) {
  case FAULT_FAIL:
    /* As a real send fails: the connection is closing (conn.h's
     * duct__conn_send), so its peer sees it end, and the core's closed()
     * follows. */
    REAL->conn_close(c, DUCT_UNAVAILABLE, "fault injected: the connection broke");
    rc = DUCT_UNAVAILABLE;
    break;
  case FAULT_STALL: rc = DUCT_OK; break; /* lost: see the top of the file */
  case FAULT_TRUNCATE: rc = REAL->conn_send(c, cut, truncate_iov(iov, n, cut)); break;
  default:
    rc = loan ? REAL->conn_send_lent(c, iov, n, loan) : REAL->conn_send(c, iov, n);
    break;
  }
  duct__mutex_lock(&fx.mu);
  fx.server_sends++;
  if (rc != DUCT_OK)
    fx.server_send_errors++;
  duct__cond_broadcast(&fx.cv);
  duct__mutex_unlock(&fx.mu);
  return rc;
}

static duct_code f_conn_send(duct__conn *c, const duct__iov *iov, int n) {
  return server_send(c, iov, n, NULL);
}

static duct_code f_conn_send_lent(duct__conn *c, const duct__iov *iov, int n, duct__loan *loan) {
  return server_send(c, iov, n, loan);
}

/* A best-effort goodbye (GOAWAY at stop, eviction, a violation): passed
 * through and not a frame event, so arming counts exactly the frames of
 * calls, as conn_send's contract is the one the faults are about. */
static void f_conn_send_nowait(duct__conn *c, const duct__iov *iov, int n) {
  REAL->conn_send_nowait(c, iov, n);
}

static void f_conn_close(duct__conn *c, duct_code why, const char *detail) {
  REAL->conn_close(c, why, detail);
}

static size_t f_conn_queued(duct__conn *c) { return REAL->conn_queued(c); }

/* The answer comes back through w_drained. */
static void f_conn_want_drained(duct__conn *c) { REAL->conn_want_drained(c); }

/* ---- client side ---- */

static duct_code f_link_open(const char *address, const duct__link_opts *o, int64_t deadline_ms,
                             duct__link **out, duct__err *err) {
  return REAL->link_open(address, o, deadline_ms, out, err);
}

static duct_code client_send(duct__link *l, const duct__iov *iov, int n, int64_t deadline_ms,
                             int k) {
  duct__iov cut[2];
  switch (k) {
  case FAULT_FAIL: return DUCT_UNAVAILABLE;
  case FAULT_STALL: return stall_until(l, deadline_ms);
  case FAULT_TRUNCATE:
    return REAL->link_send(l, cut, truncate_iov(iov, n, cut), deadline_ms);
  default: return REAL->link_send(l, iov, n, deadline_ms);
  }
}

static duct_code f_link_send(duct__link *l, const duct__iov *iov, int n, int64_t deadline_ms) {
  return client_send(l, iov, n, deadline_ms, fault_event(FAULT_CLIENT, type_of(iov, n)));
}

static duct_code f_link_recv(duct__link *l, uint8_t *buf, size_t cap, size_t *len,
                             int64_t deadline_ms) {
  int k = fault_event(FAULT_CLIENT, 0);
  if (k == FAULT_FAIL)
    return DUCT_UNAVAILABLE;
  if (k == FAULT_STALL)
    return stall_until(l, deadline_ms);
  duct_code rc = REAL->link_recv(l, buf, cap, len, deadline_ms);
  if (rc == DUCT_OK && k == FAULT_TRUNCATE)
    *len /= 2;
  return rc;
}

static duct_code f_link_transact(duct__link *l, const duct__iov *iov, int n, uint8_t *buf,
                                 size_t cap, size_t *len, int64_t deadline_ms) {
  int k = fault_event(FAULT_CLIENT, type_of(iov, n));
  if (k == FAULT_FAIL || k == FAULT_STALL)
    return client_send(l, iov, n, deadline_ms, k);
  duct__iov cut[2];
  if (k == FAULT_TRUNCATE) {
    n = truncate_iov(iov, n, cut);
    iov = cut;
  }
  int k2 = fault_event(FAULT_CLIENT, 0);
  duct_code rc = REAL->link_transact(l, iov, n, buf, cap, len, deadline_ms);
  if (rc != DUCT_OK)
    return rc;
  if (k2 == FAULT_FAIL)
    return DUCT_UNAVAILABLE; /* the reply came, then the link broke */
  if (k2 == FAULT_STALL)
    return stall_until(l, deadline_ms);
  if (k2 == FAULT_TRUNCATE)
    *len /= 2;
  return DUCT_OK;
}

static void f_link_shutdown(duct__link *l) {
  duct__mutex_lock(&fx.mu);
  shut_link *p = is_shut(l) ? NULL : malloc(sizeof *p);
  if (p) {
    p->l = l;
    p->next = fx.shut;
    fx.shut = p;
  }
  duct__cond_broadcast(&fx.cv); /* a stall on l ends */
  duct__mutex_unlock(&fx.mu);
  REAL->link_shutdown(l);
}

static void f_link_close(duct__link *l) {
  /* Forgotten before the real close: the address may be reused. */
  duct__mutex_lock(&fx.mu);
  shut_link **pp = &fx.shut;
  while (*pp && (*pp)->l != l)
    pp = &(*pp)->next;
  shut_link *p = *pp;
  if (p)
    *pp = p->next;
  duct__mutex_unlock(&fx.mu);
  free(p);
  REAL->link_close(l);
}

static uint32_t f_link_peer_pid(const duct__link *l) { return REAL->link_peer_pid(l); }

const duct__transport_ops fault_transport = {
    .name = "fault",
    .listen = f_listen,
    .listener_start = f_listener_start,
    .listener_stop_accepting = f_listener_stop_accepting,
    .listener_free = f_listener_free,
    .listener_each = f_listener_each,
    .conn_send = f_conn_send,
    .conn_send_lent = f_conn_send_lent,
    .conn_send_nowait = f_conn_send_nowait,
    .conn_close = f_conn_close,
    .conn_queued = f_conn_queued,
    .conn_want_drained = f_conn_want_drained,
    .link_open = f_link_open,
    .link_send = f_link_send,
    .link_recv = f_link_recv,
    .link_transact = f_link_transact,
    .link_shutdown = f_link_shutdown,
    .link_close = f_link_close,
    .link_peer_pid = f_link_peer_pid,
};
