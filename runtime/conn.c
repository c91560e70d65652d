/* runtime/conn.c - the shared connection lifecycle (conn.h). */
#include "runtime/conn.h"

#include <stdio.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/frame.h"

_Static_assert(DUCT__CONN_HEAD_MAX >= DUCT__HEADER_SIZE, "a frame header is lent with its slice");

/* Nodes kept for reuse after the queue empties are at most what the last
 * burst needed, and never more than this: a steady stream of 1 MiB
 * replies to a slow-ish reader then allocates nothing, and an idle
 * connection holds at most this much. */
#define SPARE_MAX ((size_t)2 * 1024 * 1024)
/* Bursts in a row that need under half the spares before they are cut:
 * how much a reader drains before the queue fills varies from call to
 * call, so a few small bursts say little. */
#define SPARE_SLACK 16u

/* A queued message: its bytes follow the header, or, lent, lie at `lent`
 * in the loan's memory with the first `headlen` bytes kept in head. */
struct duct__qnode {
  duct__qnode *next;
  size_t len, cap;
  duct__loan *loan;
  uint8_t *lent;
  size_t headlen;
  uint8_t head[DUCT__CONN_HEAD_MAX];
};

static uint8_t *qdata(duct__qnode *q) { return (uint8_t *)(q + 1); }

void duct__loan_drop(duct__loan *loan) {
  if (atomic_fetch_sub_explicit(&loan->refs, 1, memory_order_acq_rel) == 1)
    loan->release(loan);
}

/* The message at q as one piece, ready to write. A lent one gets its head
 * back in front of the lent bytes here, not when it was queued: until
 * the messages before it are written, those bytes are still the tail of
 * the one before (duct__conn_send_lent). Only the queue's head is ever
 * written, so that one is always done. */
static const uint8_t *qbytes(duct__qnode *q) {
  if (!q->loan)
    return qdata(q);
  memcpy(q->lent - q->headlen, q->head, q->headlen);
  return q->lent - q->headlen;
}

void duct__conn_set_init(duct__conn_set *s, const duct__conn_io *io,
                         const duct__srv_cb *cb, void *core,
                         const duct__conn_set_opts *o) {
  memset(s, 0, sizeof *s);
  s->io = io;
  s->cb = *cb;
  s->core = core;
  s->o = *o;
  duct__mutex_init(&s->mu);
  duct__cond_init(&s->cv);
}

void duct__conn_set_destroy(duct__conn_set *s) {
  duct__cond_destroy(&s->cv);
  duct__mutex_destroy(&s->mu);
}

void duct__conn_init(duct__conn *c, duct__conn_set *set) {
  c->set = set;
  atomic_init(&c->refs, 1);
  atomic_init(&c->close_code, 0);
  atomic_init(&c->ended, 0);
  int64_t now = duct__now_ms();
  atomic_init(&c->last_active, now);
  /* Waiting for HELLO counts as a partial message for the idle timeout. */
  atomic_init(&c->partial_since, now);
  atomic_init(&c->in_call, 0);
  atomic_init(&c->multiplexed, 0);
  atomic_init(&c->q_since, 0);
  c->peer.user = c->user;
  duct__mutex_init(&c->mu);
}

void duct__conn_ref(duct__conn *c) {
  atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

static void free_nodes(duct__qnode *q) {
  while (q) {
    duct__qnode *next = q->next;
    if (q->loan)
      duct__loan_drop(q->loan);
    duct__free(q);
    q = next;
  }
}

void duct__conn_unref(duct__conn *c) {
  if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
    return;
  free_nodes(c->qhead);
  free_nodes(c->spare);
  duct__mutex_destroy(&c->mu);
  c->set->io->destroy(c);
}

/* ---- closing ---- */

/* Records the first reason; returns 1 for the caller that set it. */
static int set_reason(duct__conn *c, duct_code code, const char *detail) {
  int none = 0;
  duct__mutex_lock(&c->mu);
  int won = atomic_compare_exchange_strong(&c->close_code, &none, (int)code + 1);
  if (won)
    snprintf(c->close_detail, sizeof c->close_detail, "%s", detail ? detail : "");
  duct__mutex_unlock(&c->mu);
  return won;
}

void duct__conn_close(duct__conn *c, duct_code code, const char *detail) {
  /* Once the reason is visible, the owner may end and free c at any
   * moment: hold a reference until the wake-up is done. */
  duct__conn_ref(c);
  set_reason(c, code, detail);
  c->set->io->abort(c);
  duct__conn_unref(c);
}

int duct__conn_closing(const duct__conn *c) { return atomic_load(&c->close_code) != 0; }

/* Under s->mu: wakes duct__conn_set_close_all after the last one. */
static void wake_freeing(duct__conn_set *s) {
  if (s->freeing && s->n == 0 && s->finishing == 0)
    duct__cond_broadcast(&s->cv);
}

static void list_remove(duct__conn_set *s, duct__conn *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    s->head = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  s->n--;
}

void duct__conn_end(duct__conn *c, duct_code why, const char *detail) {
  duct__conn_set *s = c->set;
  set_reason(c, why, detail);
  /* closed() exactly once, whoever gets here first. */
  if (atomic_exchange(&c->ended, 1))
    return;
  duct__mutex_lock(&s->mu);
  list_remove(s, c);
  s->finishing++;
  duct__mutex_unlock(&s->mu);

  /* The detail was written before close_code became visible to us (both
   * under c->mu), and is never written again. */
  duct__mutex_lock(&c->mu);
  duct_code code = (duct_code)(atomic_load(&c->close_code) - 1);
  char text[sizeof c->close_detail];
  memcpy(text, c->close_detail, sizeof text);
  /* A want_drained still waiting is answered now: for the core this queue
   * will never drain (whatever a platform still writes after the end is
   * not the core's business). From here on close_code is set, so a later
   * want_drained answers at once. */
  int drained = c->drain_wanted;
  c->drain_wanted = 0;
  duct__mutex_unlock(&c->mu);
  if (drained)
    s->cb.drained(c->state);
  s->cb.closed(c->state, code, text[0] ? text : NULL);

  duct__mutex_lock(&s->mu);
  s->finishing--;
  wake_freeing(s);
  duct__mutex_unlock(&s->mu);
  duct__conn_unref(c);
}

/* ---- admission ---- */

static int idle(duct__conn *c) {
  return !atomic_load(&c->close_code) && !atomic_load(&c->in_call) &&
         !atomic_load(&c->partial_since) && !atomic_load(&c->q_since);
}

int duct__conn_admit(duct__conn *c) {
  duct__conn_set *s = c->set;
  duct__conn *victim = NULL;
  duct__mutex_lock(&s->mu);
  if (s->freeing) {
    duct__mutex_unlock(&s->mu);
    return 0;
  }
  if (s->o.max_connections && s->n >= s->o.max_connections) {
    /* Full: the connection that has been idle longest makes room. One
     * with a call running, a message half received or a reply still
     * queued is never chosen. */
    /* The list is newest first, so `<=` settles a tie on the clock's
     * millisecond in favour of the older connection. */
    for (duct__conn *o = s->head; o; o = o->next)
      if (idle(o) && (!victim || atomic_load(&o->last_active) <=
                                     atomic_load(&victim->last_active)))
        victim = o;
    if (!victim) {
      duct__mutex_unlock(&s->mu);
      return 0;
    }
    duct__conn_ref(victim);
  }
  /* Into the list before open(), so close_all can reach a connection
   * whose open() is still running. The victim still counts until its
   * owner ends it, so the set may briefly hold one more than the cap. */
  c->next = s->head;
  if (s->head)
    s->head->prev = c;
  s->head = c;
  s->n++;
  duct__mutex_unlock(&s->mu);

  if (victim) {
    char d[128];
    int64_t quiet = duct__now_ms() - atomic_load(&victim->last_active);
    snprintf(d, sizeof d,
             "max_connections (%u) reached: closed the longest-idle connection "
             "(idle %lld ms) to admit a new one",
             (unsigned)s->o.max_connections, (long long)quiet);
    if (s->cb.evict)
      s->cb.evict(victim->state, d);
    duct__conn_close(victim, DUCT_RESOURCE_EXHAUSTED, d);
    duct__conn_unref(victim);
  }

  c->state = s->cb.open(s->core, c, &c->peer);
  if (!c->state) {
    /* Refused by the core: gone without closed(). */
    atomic_store(&c->ended, 1);
    duct__mutex_lock(&s->mu);
    list_remove(s, c);
    wake_freeing(s);
    duct__mutex_unlock(&s->mu);
    return 0;
  }
  return 1;
}

/* ---- sending ---- */

static size_t iov_len(const duct__iov *iov, int n) {
  size_t len = 0;
  for (int i = 0; i < n; i++)
    len += iov[i].len;
  return len;
}

/* Under c->mu. A node big enough for len: the smallest spare one kept
 * from an earlier burst that fits (so a reply's short last frame does not
 * take a node its full frames need), else a new one. */
static duct__qnode *take_node(duct__conn *c, size_t len) {
  /* Powers of two from 256 bytes: few sizes, so spares fit later
   * messages of similar length (a full frame is exactly 64 KiB). */
  size_t cap = 256;
  while (cap < len)
    cap *= 2;
  /* Every node's cap is such a power, so one of exactly `cap` is the best
   * fit and ends the search: a stream of small messages leaves thousands
   * of spares, and a walk over all of them per message cost more than
   * the message's sendmsg (docs/BENCHMARKS.md, "Streams and async
   * calls"). */
  duct__qnode **best = NULL;
  for (duct__qnode **pp = &c->spare; *pp; pp = &(*pp)->next)
    if ((*pp)->cap >= len && (!best || (*pp)->cap < (*best)->cap)) {
      best = pp;
      if ((*pp)->cap == cap)
        break;
    }
  duct__qnode *q = NULL;
  if (best) {
    q = *best;
    *best = q->next;
    c->spare_bytes -= q->cap;
  } else if ((q = duct__malloc(sizeof *q + cap)) != NULL) {
    q->cap = cap;
  }
  if (q) {
    q->next = NULL;
    q->loan = NULL;
    c->burst_bytes += q->cap;
  }
  return q;
}

/* Under c->mu: a written node goes to the spares. Returns 1 when that
 * emptied the queue and a want_drained was waiting (now taken): the
 * caller calls drained() once it has let go of c->mu. */
static int drop_head(duct__conn *c) {
  duct__qnode *q = c->qhead;
  int drained = 0;
  c->qhead = q->next;
  if (!c->qhead) {
    c->qtail = NULL;
    atomic_store(&c->q_since, 0);
    drained = c->drain_wanted;
    c->drain_wanted = 0;
  } else {
    /* The peer took a message: its deadline runs from here. A stream's
     * queue may never empty while a slow reader keeps up with it; what
     * the idle timeout cuts off is a peer that takes nothing. */
    atomic_store(&c->q_since, duct__now_ms());
  }
  c->queued -= q->len;
  if (q->loan) {
    duct__loan_drop(q->loan);
    q->loan = NULL;
  }
  q->next = c->spare;
  c->spare = q;
  c->spare_bytes += q->cap;
  return drained;
}

/* drained(), with no lock held; the caller holds a reference on c. */
static void call_drained(duct__conn *c) {
  c->set->cb.drained(c->state);
}

/* Under c->mu, when a message is about to be queued on an empty queue (a
 * burst begins): the spares are cut to the most a recent burst used
 * (capped at SPARE_MAX), so bursts of a similar size reuse them all; after
 * SPARE_SLACK bursts in a row that needed under half of that, to what the
 * last one used (the arena's rule, arena.c, with more patience). Done
 * here, not when the last write completes, so what a connection holds
 * depends on the messages it sent, not on when a completion was seen. */
static void burst_begin(duct__conn *c) {
  size_t used = c->burst_bytes < SPARE_MAX ? c->burst_bytes : SPARE_MAX;
  c->burst_bytes = 0;
  if (used >= c->spare_keep) {
    c->spare_keep = used;
    c->spare_slack = 0;
  } else if (used < c->spare_keep / 2 && ++c->spare_slack >= SPARE_SLACK) {
    c->spare_keep = used;
    c->spare_slack = 0;
  }
  while (c->spare && c->spare_bytes > c->spare_keep) {
    duct__qnode *p = c->spare;
    c->spare = p->next;
    c->spare_bytes -= p->cap;
    duct__free(p);
  }
}

static duct_code send_any(duct__conn *c, const duct__iov *iov, int n, duct__loan *loan) {
  const duct__conn_io *io = c->set->io;
  size_t len = iov_len(iov, n);
  duct_code err = DUCT_OK;
  duct__mutex_lock(&c->mu);
  if (atomic_load(&c->close_code)) {
    duct__mutex_unlock(&c->mu);
    return DUCT_UNAVAILABLE;
  }
  if (!c->qhead && !c->writing && io->try_write) {
    /* The clock is read before the write: once the peer has the message
     * it may act on it, and a later reading (this thread preempted after
     * the write) would make this connection look newer than ones the peer
     * opened since, to admission. */
    int64_t now = duct__now_ms();
    int r = io->try_write(c, iov, n, &err);
    if (r != 0) {
      duct__mutex_unlock(&c->mu);
      if (r > 0) {
        atomic_store(&c->last_active, now);
        return DUCT_OK;
      }
      duct__conn_close(c, err, "write failed");
      return err;
    }
  }
  if (len > c->set->o.queue_cap - c->queued || len > c->set->o.queue_cap) {
    size_t queued = c->queued;
    duct__mutex_unlock(&c->mu);
    char d[160];
    snprintf(d, sizeof d,
             "the peer does not read: %zu bytes queued, %zu more would pass the "
             "cap of %zu",
             queued, len, c->set->o.queue_cap);
    duct__conn_close(c, DUCT_RESOURCE_EXHAUSTED, d);
    return DUCT_RESOURCE_EXHAUSTED;
  }
  if (!c->qhead)
    burst_begin(c);
  duct__qnode *q = take_node(c, loan ? 0 : len);
  if (!q) {
    duct__mutex_unlock(&c->mu);
    duct__conn_close(c, DUCT_RESOURCE_EXHAUSTED, "out of memory queueing a message");
    return DUCT_RESOURCE_EXHAUSTED;
  }
  if (loan) {
    /* The casts: the lender's contract (conn.h) makes these bytes, and
     * the head's room before them, the queue's to write. */
    q->headlen = n == 2 ? iov[0].len : 0;
    memcpy(q->head, iov[0].base, q->headlen);
    q->lent = (uint8_t *)(uintptr_t)iov[n - 1].base;
    q->loan = loan;
    atomic_fetch_add_explicit(&loan->refs, 1, memory_order_relaxed);
  } else {
    size_t off = 0;
    for (int i = 0; i < n; i++) {
      if (iov[i].len)
        memcpy(qdata(q) + off, iov[i].base, iov[i].len);
      off += iov[i].len;
    }
  }
  q->len = len;
  atomic_store(&c->last_active, duct__now_ms());
  int was_empty = !c->qhead;
  if (c->qtail)
    c->qtail->next = q;
  else
    c->qhead = q;
  c->qtail = q;
  c->queued += len;
  if (was_empty)
    atomic_store(&c->q_since, duct__now_ms());
  /* Normally a write is owed as soon as the queue is non-empty; if arming
   * it failed before (out of memory or descriptors), this is the retry. */
  if (!c->writing)
    io->want_write(c);
  duct__mutex_unlock(&c->mu);
  return DUCT_OK;
}

duct_code duct__conn_send(duct__conn *c, const duct__iov *iov, int n) {
  return send_any(c, iov, n, NULL);
}

duct_code duct__conn_send_lent(duct__conn *c, const duct__iov *iov, int n, duct__loan *loan) {
  /* Anything else is a bug of the caller's; copying is always correct. */
  int ok = n == 1 || (n == 2 && iov[0].len <= DUCT__CONN_HEAD_MAX);
  return send_any(c, iov, n, ok ? loan : NULL);
}

void duct__conn_send_nowait(duct__conn *c, const duct__iov *iov, int n) {
  const duct__conn_io *io = c->set->io;
  duct_code err;
  duct__mutex_lock(&c->mu);
  if (!atomic_load(&c->close_code) && !c->qhead && !c->writing) {
    if (io->try_write) {
      io->try_write(c, iov, n, &err);
      duct__mutex_unlock(&c->mu);
      return;
    }
  }
  duct__mutex_unlock(&c->mu);
  /* Without try_write (Windows) there is no write that does not wait for
   * the pipe to take the buffer, so the goodbye is queued like any send;
   * the close that follows it still lets it drain (runtime/win/server.c,
   * read_end). */
  if (!io->try_write)
    duct__conn_send(c, iov, n);
}

size_t duct__conn_queued(duct__conn *c) {
  duct__mutex_lock(&c->mu);
  size_t n = c->queued;
  duct__mutex_unlock(&c->mu);
  return n;
}

void duct__conn_want_drained(duct__conn *c) {
  if (!c->set->cb.drained)
    return;
  duct__mutex_lock(&c->mu);
  /* Closing: the queue will not be written for the core any more, and
   * duct__conn_end may already have passed the point where it answers. */
  int now = !c->qhead || atomic_load(&c->close_code);
  if (!now)
    c->drain_wanted = 1;
  duct__mutex_unlock(&c->mu);
  if (now)
    call_drained(c);
}

int duct__conn_flush(duct__conn *c) {
  const duct__conn_io *io = c->set->io;
  int drained = 0, rc;
  duct__mutex_lock(&c->mu);
  c->writing = 0; /* the arming that fired is spent */
  /* Closing: the socket is shut down (abort), so a write could only fail;
   * whatever is queued is dropped with the connection. */
  while (c->qhead && !atomic_load(&c->close_code)) {
    duct__iov v = {qbytes(c->qhead), c->qhead->len};
    duct_code err = DUCT_OK;
    int64_t now = duct__now_ms(); /* before the write: see duct__conn_send */
    int r = io->try_write(c, &v, 1, &err);
    if (r == 0)
      break;
    if (r < 0) {
      duct__mutex_unlock(&c->mu);
      duct__conn_close(c, err, "write failed");
      return -1;
    }
    drained |= drop_head(c);
    atomic_store(&c->last_active, now);
  }
  rc = !c->qhead;
  /* More than the system would take: watch again. Decided under c->mu,
   * with c->writing, so a send that queues meanwhile either sees the
   * watch owed or arms it itself; nothing is ever left unwatched. */
  if (c->qhead && !atomic_load(&c->close_code))
    io->want_write(c);
  duct__mutex_unlock(&c->mu);
  if (drained)
    call_drained(c);
  return rc;
}

int duct__conn_has_queue(duct__conn *c) {
  duct__mutex_lock(&c->mu);
  int r = c->qhead != NULL;
  duct__mutex_unlock(&c->mu);
  return r;
}

const uint8_t *duct__conn_head(duct__conn *c, size_t *len) {
  if (!c->qhead)
    return NULL;
  *len = c->qhead->len;
  return qbytes(c->qhead);
}

void duct__conn_wrote(duct__conn *c, int ok) {
  int drained = 0;
  duct__mutex_lock(&c->mu);
  c->writing = 0;
  if (c->qhead) {
    /* last_active was stamped when the message was queued: a completion
     * is seen only after the peer may already have acted on it. */
    if (ok)
      drained = drop_head(c);
    if (ok && c->qhead && !atomic_load(&c->close_code))
      c->set->io->want_write(c);
  }
  duct__mutex_unlock(&c->mu);
  if (drained)
    call_drained(c);
  if (!ok)
    duct__conn_close(c, DUCT_UNAVAILABLE, "write failed");
}

/* ---- timeouts and the whole set ---- */

typedef struct tick_arg {
  int64_t now, limit;
} tick_arg;

static void tick_one(duct__conn *c, void *arg) {
  const tick_arg *t = arg;
  char d[160];
  int64_t since = atomic_load(&c->partial_since);
  /* The exchange fails if the message completed meanwhile, so a call that
   * has just started is never cut off. */
  if (since && t->now - since > t->limit &&
      atomic_compare_exchange_strong(&c->partial_since, &since, 0)) {
    snprintf(d, sizeof d, "a message (or the HELLO) stalled for over %lld ms",
             (long long)t->limit);
    duct__conn_close(c, DUCT_DEADLINE_EXCEEDED, d);
    return;
  }
  since = atomic_load(&c->q_since);
  if (since && t->now - since > t->limit) {
    snprintf(d, sizeof d, "the peer took no queued message for over %lld ms",
             (long long)t->limit);
    duct__conn_close(c, DUCT_DEADLINE_EXCEEDED, d);
  }
}

void duct__conn_set_tick(duct__conn_set *s) {
  tick_arg t = {duct__now_ms(), s->o.idle_timeout_ms};
  /* Under the set's lock: closing only records a reason and wakes the
   * owner (no I/O, no call into the core), and nothing is allocated, so a
   * tick works even when memory does not. */
  duct__mutex_lock(&s->mu);
  for (duct__conn *c = s->head; c && t.limit > 0; c = c->next)
    tick_one(c, &t);
  duct__mutex_unlock(&s->mu);
  if (s->cb.tick)
    s->cb.tick(s->core);
}

void duct__conn_set_each(duct__conn_set *s, void (*fn)(duct__conn *c, void *arg),
                         void *arg) {
  /* A snapshot with references, so fn runs with no lock held. Without
   * memory for the snapshot, fn runs under the lock instead (it must then
   * not call back into the set; the server's use, a best-effort GOAWAY,
   * does not). */
  duct__mutex_lock(&s->mu);
  size_t n = s->n, k = 0;
  duct__conn **all = n ? duct__malloc(n * sizeof *all) : NULL;
  if (!all) {
    for (duct__conn *c = s->head; c; c = c->next)
      fn(c, arg);
    duct__mutex_unlock(&s->mu);
    return;
  }
  for (duct__conn *c = s->head; c && k < n; c = c->next) {
    duct__conn_ref(c);
    all[k++] = c;
  }
  duct__mutex_unlock(&s->mu);
  for (size_t i = 0; i < k; i++) {
    fn(all[i], arg);
    duct__conn_unref(all[i]);
  }
  duct__free(all);
}

void duct__conn_set_close_all(duct__conn_set *s, int owners_run) {
  duct__mutex_lock(&s->mu);
  s->freeing = 1;
  for (duct__conn *c = s->head; c; c = c->next)
    duct__conn_close(c, DUCT_UNAVAILABLE, "the server is stopping");
  /* The owners deliver closed() for each; wait for the last. Without
   * owner threads there can be no connections (only they accept). */
  while (owners_run && (s->n > 0 || s->finishing > 0))
    duct__cond_wait(&s->cv, &s->mu, -1);
  duct__mutex_unlock(&s->mu);
}
