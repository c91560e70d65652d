/* client/mux.c - async unary calls and streams. They share one connection
 * per channel (protocol version 2 multiplexes calls by call id), read by a
 * thread of the channel's own (the reader), so a caller never has to be
 * there when its reply arrives. A second thread (the dispatcher) runs
 * completion callbacks and ends calls whose deadline passes. Blocking
 * unary calls keep their pool of one-call connections (channel.c): there a
 * call is one TransactNamedPipe, which a shared connection cannot be.
 *
 * Locks: a link's tx_mu (one message at a time goes out, whole, with call
 * ids increasing on the wire) may be held while taking mx->mu, never the
 * other way round. mx->mu guards every call's state, the call table, the
 * completion queue and the deadline list. No lock is held across a
 * callback. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/chan.h"
#include "runtime/alloc.h"
#include "runtime/frame.h"
#include "runtime/utf8.h"
#include "runtime/wire.h"

#define NBUCKET 1024u /* call ids count up, so id % NBUCKET spreads them */

typedef struct mlink mlink;

/* A message of the server's stream waiting for recv; bytes follow. */
typedef struct rxn {
  struct rxn *next;
  size_t cap;
  size_t len;
} rxn;

/* One async call or stream (a duct_client_stream is the same object). */
struct duct_call {
  struct duct__mux *mx;
  mlink *ml;
  const duct_method *m;
  uint32_t id;
  int stream;       /* 0: an async unary call */
  int64_t deadline; /* absolute; -1 none */
  ProtobufCAllocator *alloc;
  duct_done_cb done;
  void *user;
  /* The handle's (streams; async calls with `out`), the table's until the
   * end and then the completion queue's (async calls), and a thread's
   * while it works on the call outside the lock. */
  atomic_int refs;
  /* Under mx->mu: */
  int ended;
  duct_code code;
  char *text; /* the end's message (malloc'd), NULL for OK */
  ProtobufCMessage *reply;
  int in_table, timed, close_sent;
  rxn *rxhead, *rxtail;
  duct__flow rx, tx;
  duct__cond cv; /* streams: recv, send and finish wait here */
  struct duct_call *hnext, *hprev; /* bucket chain */
  struct duct_call *tnext, *tprev; /* mx->timed, by deadline */
  struct duct_call *qnext;         /* mx->qhead */
};

struct duct_client_stream {
  struct duct_call c;
};

struct mlink {
  struct duct__mux *mx;
  clink *k;
  atomic_int refs; /* the mux's while current, and one per call */
  duct__thread reader;
  duct__mutex tx_mu;
  uint8_t *txbuf; /* under tx_mu: messages are packed here */
  size_t txcap;
  uint32_t next_id; /* under tx_mu */
  int dead;         /* under mx->mu: no new call may use it */
  rxn *spare;       /* under mx->mu: taken messages' nodes, for reuse */
  size_t spare_bytes;
  struct duct_call *buckets[NBUCKET]; /* under mx->mu */
};

struct duct__mux {
  duct_channel *ch;
  duct__mutex mu;
  duct__cond cv; /* the dispatcher's work; a connection attempt ended */
  mlink *ml;     /* the current connection, or NULL */
  int connecting;
  struct duct_call *qhead, *qtail; /* completions waiting for their callback */
  struct duct_call *timed, *timed_tail; /* calls with a deadline, soonest first */
  duct__thread disp;
  int closing;
  int manual;
  duct__notifier nt; /* manual: ready while completions wait */
};

/* ---- links ---- */

static void ml_unref(mlink *ml) {
  if (atomic_fetch_sub(&ml->refs, 1) != 1)
    return;
  duct__clink_free(ml->k);
  while (ml->spare) {
    rxn *n = ml->spare;
    ml->spare = n->next;
    duct__free(n);
  }
  duct__free(ml->txbuf);
  duct__mutex_destroy(&ml->tx_mu);
  duct__free(ml);
}

/* Marks ml unusable and wakes its reader, which then ends every call on
 * it. Any thread. */
static void ml_kill(mlink *ml) {
  struct duct__mux *mx = ml->mx;
  duct__mutex_lock(&mx->mu);
  ml->dead = 1;
  duct__mutex_unlock(&mx->mu);
  ml->k->t->link_shutdown(ml->k->l);
}

typedef struct sink_arg {
  mlink *ml;
  int64_t deadline;
} sink_arg;

static duct_code ml_sink(void *arg, const duct__iov *iov, int n, int last) {
  sink_arg *a = arg;
  (void)last;
  return a->ml->k->t->link_send(a->ml->k->l, iov, n, a->deadline);
}

/* Under tx_mu: room to pack a message of len bytes. 0 when out of memory:
 * nothing was sent and the connection is still in step. */
static int ml_room(mlink *ml, size_t len) {
  if (DUCT__HEADER_SIZE + len > ml->txcap) {
    uint8_t *nb = duct__realloc(ml->txbuf, DUCT__HEADER_SIZE + len);
    if (!nb)
      return 0;
    ml->txbuf = nb;
    ml->txcap = DUCT__HEADER_SIZE + len;
  }
  return 1;
}

/* Under tx_mu: sends msg (NULL: an empty payload) as frames from tmpl.
 * DUCT_RESOURCE_EXHAUSTED, with nothing sent, when there is no memory to
 * pack it (ml_room). A failure of the transport, part way or not, leaves
 * the connection out of step: it is killed. */
static duct_code ml_send_locked(mlink *ml, const duct__frame *tmpl, const ProtobufCMessage *msg,
                                size_t len, int64_t deadline) {
  if (!ml_room(ml, len))
    return DUCT_RESOURCE_EXHAUSTED;
  if (msg)
    protobuf_c_message_pack(msg, ml->txbuf + DUCT__HEADER_SIZE);
  sink_arg a = {ml, deadline};
  duct_code rc =
      duct__session_send(&ml->k->sess, tmpl, ml->txbuf + DUCT__HEADER_SIZE, len,
                         DUCT__SINK_DONE, ml_sink, &a);
  if (rc != DUCT_OK)
    ml_kill(ml);
  return rc;
}

/* How long a CANCEL may wait for the transport. A control frame is a few
 * bytes: it waits only when the server has stopped reading and the
 * connection is backed up. */
#define CANCEL_SEND_MS 1000

/* Sends a control frame of call `id`, waiting for the transport until
 * `deadline` (-1: no limit). Never without one where a caller has a limit
 * to keep: a CREDIT or HALF_CLOSE waits until its call's deadline (the
 * call ends then anyway), a CANCEL at most CANCEL_SEND_MS (whoever
 * cancels wants out, and the dispatcher, which cancels calls at their
 * deadlines, must never wait long: every callback and deadline of the
 * channel waits with it). A frame that could not go by then leaves the
 * connection out of step: it is killed, and its calls end UNAVAILABLE. */
static void ml_ctl(mlink *ml, uint8_t type, uint32_t id, uint32_t credit, int64_t deadline) {
  uint8_t msg[DUCT__CTL_MSG_MAX];
  duct__iov iov = {msg, duct__wire_ctl(msg, type, id, credit)};
  duct__mutex_lock(&ml->tx_mu);
  if (ml->k->t->link_send(ml->k->l, &iov, 1, deadline) != DUCT_OK)
    ml_kill(ml);
  duct__mutex_unlock(&ml->tx_mu);
}

/* Nodes for stream messages are kept for reuse, up to the stream window's
 * worth per connection: allocating and freeing one per message made
 * glibc hand large blocks back to the kernel and fault them in again, one
 * madvise and sixteen page faults per 64 KiB message. */
#define RX_SPARE_MAX ((size_t)DUCT__STREAM_WINDOW * 2)

/* Under mx->mu: a node for len bytes. */
static rxn *rxn_take(mlink *ml, size_t len) {
  for (rxn **pp = &ml->spare; *pp; pp = &(*pp)->next)
    if ((*pp)->cap >= len) {
      rxn *n = *pp;
      *pp = n->next;
      ml->spare_bytes -= n->cap;
      return n;
    }
  size_t cap = 256;
  while (cap < len)
    cap *= 2;
  rxn *n = duct__malloc(sizeof *n + cap);
  if (n)
    n->cap = cap;
  return n;
}

/* Under mx->mu: a taken message's node goes back. */
static void rxn_give(mlink *ml, rxn *n) {
  if (ml->spare_bytes + n->cap > RX_SPARE_MAX) {
    duct__free(n);
    return;
  }
  n->next = ml->spare;
  ml->spare = n;
  ml->spare_bytes += n->cap;
}

static int64_t cancel_by(void) { return duct__now_ms() + CANCEL_SEND_MS; }

/* ---- calls ---- */

static void call_unref(struct duct_call *c) {
  if (atomic_fetch_sub(&c->refs, 1) != 1)
    return;
  for (rxn *n = c->rxhead, *next; n; n = next) {
    next = n->next;
    duct__free(n);
  }
  if (c->reply)
    protobuf_c_message_free_unpacked(c->reply, c->alloc);
  duct__free(c->text);
  if (c->stream)
    duct__cond_destroy(&c->cv);
  ml_unref(c->ml);
  duct__free(c);
}

/* Under mx->mu. */
static struct duct_call *find_call(mlink *ml, uint32_t id) {
  for (struct duct_call *c = ml->buckets[id % NBUCKET]; c; c = c->hnext)
    if (c->id == id)
      return c;
  return NULL;
}

/* Under mx->mu: ends c once with code and text (copied; NULL: the code's
 * own words), taking it out of the table and the deadline list. An async
 * call moves to the completion queue with the table's reference. */
static void end_locked(struct duct_call *c, duct_code code, const char *text) {
  struct duct__mux *mx = c->mx;
  if (c->ended)
    return;
  c->ended = 1;
  c->code = code;
  if (code != DUCT_OK) {
    if (!text || !text[0])
      text = duct_code_message(code);
    size_t n = strlen(text) + 1;
    if ((c->text = duct__malloc(n)))
      memcpy(c->text, text, n);
  }
  if (c->in_table) {
    struct duct_call **head = &c->ml->buckets[c->id % NBUCKET];
    if (c->hprev)
      c->hprev->hnext = c->hnext;
    else
      *head = c->hnext;
    if (c->hnext)
      c->hnext->hprev = c->hprev;
    c->in_table = 0;
  }
  if (c->timed) {
    if (c->tprev)
      c->tprev->tnext = c->tnext;
    else
      mx->timed = c->tnext;
    if (c->tnext)
      c->tnext->tprev = c->tprev;
    else
      mx->timed_tail = c->tprev;
    c->timed = 0;
  }
  if (c->stream) {
    duct__cond_broadcast(&c->cv);
    return;
  }
  c->qnext = NULL;
  if (mx->qtail)
    mx->qtail->qnext = c;
  else
    mx->qhead = c;
  mx->qtail = c;
  if (mx->manual)
    duct__notifier_set(&mx->nt);
  else
    duct__cond_broadcast(&mx->cv);
}

/* Under mx->mu: c joins its link's table and, with a deadline, the
 * deadline list (kept in order; calls mostly arrive in deadline order,
 * so the walk from the tail is short). */
static void register_locked(struct duct_call *c) {
  struct duct__mux *mx = c->mx;
  struct duct_call **head = &c->ml->buckets[c->id % NBUCKET];
  c->hprev = NULL;
  c->hnext = *head;
  if (*head)
    (*head)->hprev = c;
  *head = c;
  c->in_table = 1;
  if (c->deadline < 0)
    return;
  struct duct_call *after = mx->timed_tail;
  while (after && after->deadline > c->deadline)
    after = after->tprev;
  c->tprev = after;
  c->tnext = after ? after->tnext : mx->timed;
  if (c->tnext)
    c->tnext->tprev = c;
  else
    mx->timed_tail = c;
  if (after)
    after->tnext = c;
  else
    mx->timed = c;
  c->timed = 1;
  if (mx->timed == c)
    duct__cond_broadcast(&mx->cv); /* a sooner deadline for the dispatcher */
}

/* ---- the reader ---- */

/* The connection ended: every call still on it ends with code/text. */
static void ml_end_all(mlink *ml, duct_code code, const char *text) {
  struct duct__mux *mx = ml->mx;
  duct__mutex_lock(&mx->mu);
  ml->dead = 1;
  for (unsigned i = 0; i < NBUCKET; i++)
    while (ml->buckets[i])
      end_locked(ml->buckets[i], code, text);
  duct__mutex_unlock(&mx->mu);
}

/* One whole message (RESPONSE or STREAM_DATA) for call m->hdr.call_id.
 * Returns 0, or -1 with why set for a protocol violation. */
static int on_message(mlink *ml, const duct__msg *m, duct_code rc, const char **why) {
  struct duct__mux *mx = ml->mx;
  duct__mutex_lock(&mx->mu);
  struct duct_call *c = find_call(ml, m->hdr.call_id);
  if (!c) {
    duct__mutex_unlock(&mx->mu);
    return 0; /* a call that ended here first (cancel, deadline): dropped */
  }
  if (m->hdr.type == DUCT__STREAM_DATA) {
    if (!c->stream || c->m->kind == DUCT_CLIENT_STREAMING) {
      duct__mutex_unlock(&mx->mu);
      *why = "STREAM_DATA on a call that receives no stream";
      return -1;
    }
    if (!duct__flow_arrived(&c->rx, m->len)) {
      duct__mutex_unlock(&mx->mu);
      *why = "STREAM_DATA beyond the stream's credit";
      return -1;
    }
    rxn *n = rc == DUCT_OK ? rxn_take(ml, m->len) : NULL;
    if (!n) {
      end_locked(c, DUCT_RESOURCE_EXHAUSTED,
                 rc == DUCT_OK ? "out of memory for a stream message"
                               : "a stream message exceeds this client's maximum message size");
      duct__mutex_unlock(&mx->mu);
      return 0;
    }
    n->next = NULL;
    n->len = m->len;
    if (m->len)
      memcpy(n + 1, m->data, m->len);
    if (c->rxtail)
      c->rxtail->next = n;
    else
      c->rxhead = n;
    c->rxtail = n;
    duct__cond_broadcast(&c->cv);
    duct__mutex_unlock(&mx->mu);
    return 0;
  }
  /* RESPONSE OK: the reply of an async call or a client-streaming call;
   * empty for the other streams. */
  if (rc != DUCT_OK) {
    char text[96];
    snprintf(text, sizeof text, "reply exceeds this client's maximum message size of %u",
             (unsigned)mx->ch->o.max_message_size);
    end_locked(c, rc, text);
    duct__mutex_unlock(&mx->mu);
    return 0;
  }
  int wants_reply = !c->stream || c->m->kind == DUCT_CLIENT_STREAMING;
  atomic_fetch_add(&c->refs, 1);
  duct__mutex_unlock(&mx->mu);
  /* Unpacked outside the lock: other calls go on meanwhile. */
  ProtobufCMessage *r = NULL;
  if (wants_reply)
    r = protobuf_c_message_unpack(c->m->output, c->alloc, m->len, m->data);
  duct__mutex_lock(&mx->mu);
  if (wants_reply && !r) {
    char text[160];
    snprintf(text, sizeof text, "reply does not parse as %s", c->m->output->name);
    end_locked(c, DUCT_INTERNAL, text);
  } else if (!c->ended) {
    c->reply = r;
    r = NULL;
    end_locked(c, DUCT_OK, NULL);
  }
  duct__mutex_unlock(&mx->mu);
  if (r)
    protobuf_c_message_free_unpacked(r, c->alloc);
  call_unref(c);
  return 0;
}

static void reader_main(void *arg) {
  mlink *ml = arg;
  struct duct__mux *mx = ml->mx;
  clink *k = ml->k;
  duct_code code = DUCT_UNAVAILABLE;
  char text[DUCT__MAX_ERROR_TEXT + 64];
  snprintf(text, sizeof text, "the connection to the server broke");
  for (;;) {
    size_t len = 0;
    duct_code rc = k->t->link_recv(k->l, k->rxbuf, DUCT__DEFAULT_MAX_FRAME, &len, -1);
    if (rc != DUCT_OK) {
      if (rc == DUCT_RESOURCE_EXHAUSTED) {
        code = DUCT_INTERNAL;
        snprintf(text, sizeof text, "the server sent a frame larger than this client accepts");
      }
      break;
    }
    duct__frame f;
    const char *why = NULL;
    rc = duct__frame_decode(k->rxbuf, len, &f, &why);
    const uint8_t *payload = k->rxbuf + DUCT__HEADER_SIZE;
    if (rc == DUCT_OK) {
      switch (f.type) {
      case DUCT__GOAWAY:
        code = f.status ? (duct_code)f.status : DUCT_UNAVAILABLE;
        duct__payload_text(text, sizeof text, payload, f.payload_len);
        goto out;
      case DUCT__CREDIT:
      case DUCT__CANCEL: {
        duct__mutex_lock(&mx->mu);
        struct duct_call *c = find_call(ml, f.call_id);
        if (c && f.type == DUCT__CREDIT) {
          c->tx.avail += duct__credit_value(payload);
          duct__cond_broadcast(&c->cv);
        } else if (c) {
          end_locked(c, DUCT_CANCELLED, "the server cancelled the call");
        }
        duct__mutex_unlock(&mx->mu);
        continue;
      }
      case DUCT__RESPONSE:
        if (f.status != DUCT_OK) {
          char t[DUCT__MAX_ERROR_TEXT + 1];
          duct__payload_text(t, sizeof t, payload, f.payload_len);
          duct__mutex_lock(&mx->mu);
          struct duct_call *c = find_call(ml, f.call_id);
          if (c)
            end_locked(c, (duct_code)f.status, t);
          duct__mutex_unlock(&mx->mu);
          continue;
        }
        /* fall through */
      case DUCT__STREAM_DATA: {
        duct__msg m;
        rc = duct__reasm_feed(&k->sess.rx, &f, payload, &m, &why);
        if (rc == DUCT_INTERNAL)
          break;
        if (!m.done || on_message(ml, &m, rc, &why) == 0)
          continue;
        rc = DUCT_INTERNAL;
        break;
      }
      default:
        rc = DUCT_INTERNAL;
        why = "the server sent a frame type a client never receives";
        break;
      }
    }
    code = rc == DUCT_FAILED_PRECONDITION ? rc : DUCT_INTERNAL;
    snprintf(text, sizeof text, "server sent a malformed frame: %s", why ? why : "?");
    duct__log(&mx->ch->log, DUCT_LOG_WARN, "%s: %s", mx->ch->address, text);
    break;
  }
out:
  ml_end_all(ml, code, text);
}

/* ---- the mux ---- */

/* Runs an ended async call's callback (no lock held) and drops the
 * completion queue's reference. */
static void run_done(struct duct_call *c) {
  duct_status st;
  st.code = c->code;
  duct__utf8_format(st.message, sizeof st.message, "%s", c->text ? c->text : "");
  ProtobufCMessage *r = c->reply;
  c->reply = NULL; /* the callback's now */
  c->done(c->user, c->code, r, &st);
  call_unref(c);
}

/* The dispatcher: ends calls whose deadline passed (telling the server),
 * and runs completion callbacks unless the application dispatches. */
static void disp_main(void *arg) {
  struct duct__mux *mx = arg;
  duct__mutex_lock(&mx->mu);
  for (;;) {
    int64_t now = duct__now_ms();
    if (mx->timed && mx->timed->deadline <= now) {
      struct duct_call *c = mx->timed;
      mlink *ml = c->ml;
      uint32_t id = c->id;
      end_locked(c, DUCT_DEADLINE_EXCEEDED, "the deadline expired before the call ended");
      atomic_fetch_add(&ml->refs, 1);
      duct__mutex_unlock(&mx->mu);
      ml_ctl(ml, DUCT__CANCEL, id, 0, cancel_by()); /* the server stops working on it */
      ml_unref(ml);
      duct__mutex_lock(&mx->mu);
      continue;
    }
    if (!mx->manual && mx->qhead) {
      struct duct_call *c = mx->qhead;
      if (!(mx->qhead = c->qnext))
        mx->qtail = NULL;
      duct__mutex_unlock(&mx->mu);
      run_done(c);
      duct__mutex_lock(&mx->mu);
      continue;
    }
    if (mx->closing)
      break;
    duct__cond_wait(&mx->cv, &mx->mu, mx->timed ? mx->timed->deadline : -1);
  }
  duct__mutex_unlock(&mx->mu);
}

static duct_code get_mux(duct_channel *ch, struct duct__mux **out) {
  duct__mutex_lock(&ch->mu);
  struct duct__mux *mx = ch->mx;
  if (!mx && (mx = duct__calloc(1, sizeof *mx))) {
    mx->ch = ch;
    mx->manual = ch->o.manual_dispatch != 0;
    duct__mutex_init(&mx->mu);
    duct__cond_init(&mx->cv);
    if ((!mx->manual || duct__notifier_init(&mx->nt) == DUCT_OK) &&
        duct__thread_start(&mx->disp, disp_main, mx) == DUCT_OK) {
      ch->mx = mx;
    } else {
      if (mx->manual)
        duct__notifier_destroy(&mx->nt);
      duct__cond_destroy(&mx->cv);
      duct__mutex_destroy(&mx->mu);
      duct__free(mx);
      mx = NULL;
    }
  }
  duct__mutex_unlock(&ch->mu);
  *out = mx;
  return mx ? DUCT_OK : DUCT_RESOURCE_EXHAUSTED;
}

/* Retires a connection: wakes and joins its reader (which ends the calls
 * left on it), then drops the mux's reference. */
static void ml_retire(mlink *ml) {
  ml->k->t->link_shutdown(ml->k->l);
  duct__thread_join(&ml->reader);
  ml_unref(ml);
}

/* The shared connection, opened if need be; a reference for the caller. */
static duct_code get_link(struct duct__mux *mx, int64_t deadline, mlink **out, char *msg,
                          size_t cap) {
  duct_channel *ch = mx->ch;
  duct__mutex_lock(&mx->mu);
  for (;;) {
    if (mx->closing) {
      duct__mutex_unlock(&mx->mu);
      snprintf(msg, cap, "the channel is closing");
      return DUCT_CANCELLED;
    }
    if (mx->ml && !mx->ml->dead) {
      atomic_fetch_add(&mx->ml->refs, 1);
      *out = mx->ml;
      duct__mutex_unlock(&mx->mu);
      return DUCT_OK;
    }
    if (!mx->connecting)
      break;
    if (duct__cond_wait(&mx->cv, &mx->mu, deadline) && deadline >= 0 &&
        duct__now_ms() >= deadline) {
      duct__mutex_unlock(&mx->mu);
      snprintf(msg, cap, "the deadline expired while connecting");
      return DUCT_DEADLINE_EXCEEDED;
    }
  }
  mlink *old = mx->ml;
  mx->ml = NULL;
  mx->connecting = 1;
  duct__mutex_unlock(&mx->mu);
  if (old)
    ml_retire(old);

  int64_t by = duct__now_ms() + ch->o.connect_timeout_ms;
  if (deadline >= 0 && deadline < by)
    by = deadline;
  clink *k = NULL;
  mlink *ml = NULL;
  duct_code rc = duct__clink_new(ch, by, &k, msg, cap);
  if (rc == DUCT_OK && k->sess.version < 2) {
    rc = DUCT_FAILED_PRECONDITION;
    snprintf(msg, cap, "the server at %s speaks protocol version %d; async calls and streams "
             "need version 2", ch->address, k->sess.version);
  }
  if (rc == DUCT_OK && !(ml = duct__calloc(1, sizeof *ml))) {
    rc = DUCT_RESOURCE_EXHAUSTED;
    snprintf(msg, cap, "out of memory");
  }
  if (rc == DUCT_OK) {
    ml->mx = mx;
    ml->k = k;
    ml->next_id = 1;
    atomic_init(&ml->refs, 2); /* the mux's and the caller's */
    duct__mutex_init(&ml->tx_mu);
    if (duct__thread_start(&ml->reader, reader_main, ml) != DUCT_OK) {
      duct__mutex_destroy(&ml->tx_mu);
      duct__free(ml);
      ml = NULL;
      rc = DUCT_RESOURCE_EXHAUSTED;
      snprintf(msg, cap, "no thread to read the connection");
    }
  }
  if (rc != DUCT_OK)
    duct__clink_free(k);
  duct__mutex_lock(&mx->mu);
  mx->connecting = 0;
  mx->ml = ml;
  duct__cond_broadcast(&mx->cv);
  duct__mutex_unlock(&mx->mu);
  *out = ml;
  return rc;
}

void duct__mux_free(struct duct__mux *mx) {
  if (!mx)
    return;
  duct__mutex_lock(&mx->mu);
  mx->closing = 1;
  mlink *ml = mx->ml;
  mx->ml = NULL;
  duct__cond_broadcast(&mx->cv);
  duct__mutex_unlock(&mx->mu);
  if (ml)
    ml_retire(ml); /* calls still open end with UNAVAILABLE */
  duct__thread_join(&mx->disp);
  /* With manual dispatch, completions not dispatched yet still run: each
   * started call's callback runs exactly once (duct/client.h). */
  while (mx->qhead) {
    struct duct_call *c = mx->qhead;
    mx->qhead = c->qnext;
    run_done(c);
  }
  if (mx->manual)
    duct__notifier_destroy(&mx->nt);
  duct__cond_destroy(&mx->cv);
  duct__mutex_destroy(&mx->mu);
  duct__free(mx);
}

/* A new call on the shared connection: registered, then its REQUEST sent
 * (payload `req`, or empty), so no answer can miss it. An async call
 * (done set) that fails to send is still started: its callback reports
 * it. A stream that fails to send is not: the code says why. */
static duct_code start_call(duct_channel *ch, const duct_method *m, const ProtobufCMessage *req,
                            const duct_call_opts *o, duct_done_cb done, void *user, int handle,
                            struct duct_call **out, char *msg, size_t cap) {
  int64_t start = duct__now_ms();
  int64_t deadline = o && o->deadline_ms ? start + o->deadline_ms : -1;
  struct duct__mux *mx;
  if (get_mux(ch, &mx) != DUCT_OK) {
    snprintf(msg, cap, "out of memory");
    return DUCT_RESOURCE_EXHAUSTED;
  }
  mlink *ml;
  duct_code rc = get_link(mx, deadline, &ml, msg, cap);
  if (rc != DUCT_OK)
    return rc;
  size_t len = req ? protobuf_c_message_get_packed_size(req) : 0;
  if (len > ml->k->sess.peer_max_message) {
    snprintf(msg, cap, "request of %zu bytes exceeds the server's maximum message size of %u",
             len, (unsigned)ml->k->sess.peer_max_message);
    ml_unref(ml);
    return DUCT_RESOURCE_EXHAUSTED;
  }
  struct duct_call *c = duct__calloc(1, sizeof *c);
  if (!c) {
    ml_unref(ml);
    snprintf(msg, cap, "out of memory");
    return DUCT_RESOURCE_EXHAUSTED;
  }
  c->mx = mx;
  c->ml = ml; /* the caller's reference, now the call's */
  c->m = m;
  c->stream = done == NULL;
  c->deadline = deadline;
  c->alloc = o ? o->allocator : NULL;
  c->done = done;
  c->user = user;
  /* Streams: the handle's. Async calls: the table's, and the handle's. */
  atomic_init(&c->refs, 1 + (done && handle));
  duct__flow_init(&c->rx);
  duct__flow_init(&c->tx);
  if (c->stream)
    duct__cond_init(&c->cv);

  uint32_t remaining = 0;
  if (deadline >= 0) {
    int64_t left = deadline - duct__now_ms();
    remaining = left > 0 ? (uint32_t)left : 1;
  }
  /* This function's own reference while it still looks at c: once the
   * REQUEST is out, or its send failed and killed the connection, the
   * reader may end the call, and the dispatcher run an async call's
   * callback and free it (the table's reference is all it has without a
   * handle). */
  atomic_fetch_add(&c->refs, 1);
  duct__mutex_lock(&ml->tx_mu);
  c->id = ml->next_id++;
  if (!ml->next_id)
    ml->next_id = 1;
  duct__mutex_lock(&mx->mu);
  int dead = ml->dead;
  if (!dead)
    register_locked(c);
  duct__mutex_unlock(&mx->mu);
  duct__frame tmpl = {DUCT__VERSION, DUCT__REQUEST, 0, c->id, m->id, 0, remaining, 0};
  rc = dead ? DUCT_UNAVAILABLE : ml_send_locked(ml, &tmpl, req, len, deadline);
  duct__mutex_unlock(&ml->tx_mu);
  if (rc != DUCT_OK) {
    snprintf(msg, cap, "%s: %s", m->name,
             rc == DUCT_DEADLINE_EXCEEDED    ? "the deadline expired while sending the request"
             : rc == DUCT_RESOURCE_EXHAUSTED ? "out of memory packing the request"
                                             : "the connection to the server broke");
    duct__mutex_lock(&mx->mu);
    if (dead && !c->stream)
      c->in_table = 0; /* never registered: end_locked queues it all the same */
    end_locked(c, rc, msg); /* unless the reader ended it first */
    duct__mutex_unlock(&mx->mu);
    if (c->stream) {
      call_unref(c); /* ours */
      call_unref(c); /* the handle's: the stream was not started */
      return rc;
    }
  }
  *out = c;
  call_unref(c); /* ours; *out is only used when the caller holds a handle */
  return DUCT_OK;
}

/* ---- async unary calls ---- */

duct_code duct_call_async(duct_channel *ch, const duct_method *m, const ProtobufCMessage *req,
                          const duct_call_opts *opts, duct_done_cb done, void *user,
                          duct_call **out) {
  if (out)
    *out = NULL;
  if (!ch || !m || !req || !done || m->kind != DUCT_UNARY || req->descriptor != m->input) {
    duct__log(&ch->log, DUCT_LOG_ERROR, "duct_call_async: %s",
              !m || !req || !done ? "missing argument"
              : m->kind != DUCT_UNARY ? "not a unary method (use duct_client_stream_start)"
                                      : "the request is not the method's input type");
    return DUCT_INVALID_ARGUMENT;
  }
  char msg[512];
  struct duct_call *c;
  duct_code rc = start_call(ch, m, req, opts, done, user, out != NULL, &c, msg, sizeof msg);
  if (rc != DUCT_OK) {
    duct__log(&ch->log, DUCT_LOG_DEBUG, "async call not started: %s", msg);
    return rc;
  }
  if (out)
    *out = c;
  return DUCT_OK;
}

void duct_call_cancel(duct_call *c) {
  if (!c)
    return;
  struct duct__mux *mx = c->mx;
  duct__mutex_lock(&mx->mu);
  int was = c->ended;
  end_locked(c, DUCT_CANCELLED, "the call was cancelled");
  duct__mutex_unlock(&mx->mu);
  if (!was)
    ml_ctl(c->ml, DUCT__CANCEL, c->id, 0, cancel_by());
}

void duct_call_release(duct_call *c) {
  if (c)
    call_unref(c);
}

intptr_t duct_channel_event(duct_channel *ch) {
  struct duct__mux *mx;
  if (!ch || !ch->o.manual_dispatch || get_mux(ch, &mx) != DUCT_OK)
    return -1;
  return duct__notifier_handle(&mx->nt);
}

int duct_channel_dispatch(duct_channel *ch) {
  if (!ch || !ch->o.manual_dispatch)
    return 0;
  struct duct__mux *mx;
  if (get_mux(ch, &mx) != DUCT_OK)
    return 0;
  int ran = 0;
  duct__mutex_lock(&mx->mu);
  /* Cleared before the queue is looked at, under the same lock that
   * queues and sets: a completion queued after the last look sets it
   * again. */
  duct__notifier_clear(&mx->nt);
  while (mx->qhead) {
    struct duct_call *c = mx->qhead;
    if (!(mx->qhead = c->qnext))
      mx->qtail = NULL;
    duct__mutex_unlock(&mx->mu);
    run_done(c);
    ran++;
    duct__mutex_lock(&mx->mu);
  }
  duct__mutex_unlock(&mx->mu);
  return ran;
}

/* ---- streams ---- */

static struct duct_call *of(duct_client_stream *st) { return &st->c; }

duct_code duct_client_stream_start(duct_channel *ch, const duct_method *m,
                                   const ProtobufCMessage *req, const duct_call_opts *opts,
                                   duct_client_stream **out) {
  if (out)
    *out = NULL;
  int wants_req = m && m->kind == DUCT_SERVER_STREAMING;
  if (!ch || !m || !out || m->kind == DUCT_UNARY || (wants_req != (req != NULL)) ||
      (req && req->descriptor != m->input)) {
    if (ch)
      duct__log(&ch->log, DUCT_LOG_ERROR,
                "duct_client_stream_start: %s",
                !m || !out ? "missing argument"
                : m->kind == DUCT_UNARY ? "a unary method (use duct_call_unary)"
                : wants_req ? "a server-streaming method takes its request here"
                            : "this method takes its requests as a stream: req must be NULL");
    return DUCT_INVALID_ARGUMENT;
  }
  char msg[512];
  struct duct_call *c;
  duct_code rc = start_call(ch, m, req, opts, NULL, NULL, 0, &c, msg, sizeof msg);
  if (rc != DUCT_OK) {
    duct__log(&ch->log, DUCT_LOG_DEBUG, "stream not started: %s", msg);
    return rc;
  }
  *out = (duct_client_stream *)(void *)c;
  return DUCT_OK;
}

duct_code duct_client_stream_send(duct_client_stream *st, const ProtobufCMessage *msg,
                                  int timeout_ms) {
  struct duct_call *c = of(st);
  struct duct__mux *mx = c->mx;
  if (!msg || msg->descriptor != c->m->input ||
      (c->m->kind != DUCT_CLIENT_STREAMING && c->m->kind != DUCT_BIDI_STREAMING))
    return DUCT_FAILED_PRECONDITION;
  size_t len = protobuf_c_message_get_packed_size(msg);
  if (len > c->ml->k->sess.peer_max_message)
    return DUCT_RESOURCE_EXHAUSTED;
  int64_t until = timeout_ms < 0 ? -1 : duct__now_ms() + timeout_ms;
  duct__mutex_lock(&mx->mu);
  for (;;) {
    if (c->close_sent) {
      duct__mutex_unlock(&mx->mu);
      return DUCT_FAILED_PRECONDITION;
    }
    if (c->ended) {
      duct_code code = c->code == DUCT_OK ? DUCT_FAILED_PRECONDITION : c->code;
      duct__mutex_unlock(&mx->mu);
      return code;
    }
    if (c->tx.avail > 0)
      break;
    if (timeout_ms == 0 ||
        (duct__cond_wait(&c->cv, &mx->mu, until) && until >= 0 && duct__now_ms() >= until)) {
      duct__mutex_unlock(&mx->mu);
      return DUCT_RESOURCE_EXHAUSTED;
    }
  }
  c->tx.avail -= (int64_t)DUCT__STREAM_COST(len);
  duct__mutex_unlock(&mx->mu);
  duct__frame tmpl = {2, DUCT__STREAM_DATA, 0, c->id, 0, 0, 0, 0};
  duct__mutex_lock(&c->ml->tx_mu);
  int room = ml_room(c->ml, len);
  duct_code rc = room ? ml_send_locked(c->ml, &tmpl, msg, len, c->deadline)
                      : DUCT_RESOURCE_EXHAUSTED;
  duct__mutex_unlock(&c->ml->tx_mu);
  if (!room) {
    /* No memory to pack it: nothing went out and the call goes on, so the
     * stream is still usable, as after a send that found no room (not
     * UNAVAILABLE, which says the call has ended, while finish would
     * then report the server's end of a call that lost a message). */
    duct__mutex_lock(&mx->mu);
    c->tx.avail += (int64_t)DUCT__STREAM_COST(len);
    duct__mutex_unlock(&mx->mu);
    return DUCT_RESOURCE_EXHAUSTED;
  }
  return rc == DUCT_OK ? DUCT_OK : DUCT_UNAVAILABLE;
}

duct_code duct_client_stream_close_send(duct_client_stream *st) {
  struct duct_call *c = of(st);
  if (c->m->kind != DUCT_CLIENT_STREAMING && c->m->kind != DUCT_BIDI_STREAMING)
    return DUCT_FAILED_PRECONDITION;
  duct__mutex_lock(&c->mx->mu);
  int send = !c->close_sent && !c->ended;
  c->close_sent = 1;
  duct__mutex_unlock(&c->mx->mu);
  if (send)
    ml_ctl(c->ml, DUCT__HALF_CLOSE, c->id, 0, c->deadline);
  return DUCT_OK;
}

duct_code duct_client_stream_recv(duct_client_stream *st, ProtobufCMessage **msg,
                                  int timeout_ms) {
  struct duct_call *c = of(st);
  struct duct__mux *mx = c->mx;
  if (msg)
    *msg = NULL;
  if (!msg || (c->m->kind != DUCT_SERVER_STREAMING && c->m->kind != DUCT_BIDI_STREAMING))
    return DUCT_FAILED_PRECONDITION;
  int64_t until = timeout_ms < 0 ? -1 : duct__now_ms() + timeout_ms;
  duct__mutex_lock(&mx->mu);
  while (!c->rxhead) {
    if (c->ended) {
      duct__mutex_unlock(&mx->mu);
      return DUCT_OK; /* the end: finish says how */
    }
    if (timeout_ms == 0 ||
        (duct__cond_wait(&c->cv, &mx->mu, until) && until >= 0 && duct__now_ms() >= until)) {
      duct__mutex_unlock(&mx->mu);
      return DUCT_DEADLINE_EXCEEDED;
    }
  }
  rxn *n = c->rxhead;
  if (!(c->rxhead = n->next))
    c->rxtail = NULL;
  uint32_t grant = duct__flow_taken(&c->rx, n->len);
  int ended = c->ended;
  duct__mutex_unlock(&mx->mu);
  if (grant && !ended)
    ml_ctl(c->ml, DUCT__CREDIT, c->id, grant, c->deadline);
  *msg = protobuf_c_message_unpack(c->m->output, c->alloc, n->len, (const uint8_t *)(n + 1));
  duct__mutex_lock(&mx->mu);
  rxn_give(c->ml, n);
  duct__mutex_unlock(&mx->mu);
  if (!*msg) {
    duct__log(&mx->ch->log, DUCT_LOG_WARN, "%s: a stream message does not parse as %s",
              c->m->name, c->m->output->name);
    duct__mutex_lock(&mx->mu);
    int was = c->ended;
    end_locked(c, DUCT_INTERNAL, "a stream message did not parse");
    duct__mutex_unlock(&mx->mu);
    if (!was)
      ml_ctl(c->ml, DUCT__CANCEL, c->id, 0, cancel_by());
  }
  return DUCT_OK;
}

void duct_client_stream_cancel(duct_client_stream *st) {
  struct duct_call *c = of(st);
  duct__mutex_lock(&c->mx->mu);
  int was = c->ended;
  end_locked(c, DUCT_CANCELLED, "the call was cancelled");
  duct__mutex_unlock(&c->mx->mu);
  if (!was)
    ml_ctl(c->ml, DUCT__CANCEL, c->id, 0, cancel_by());
}

duct_code duct_client_stream_finish(duct_client_stream *st, ProtobufCMessage **reply,
                                    duct_status *status) {
  if (reply)
    *reply = NULL;
  if (!st)
    return DUCT_INVALID_ARGUMENT;
  struct duct_call *c = of(st);
  struct duct__mux *mx = c->mx;
  duct_client_stream_close_send(st);
  duct__mutex_lock(&mx->mu);
  while (!c->ended) {
    /* Messages still coming are dropped, and their credit given back so
     * the server is never left waiting for a reader that has gone. */
    uint32_t grant = 0;
    while (c->rxhead) {
      rxn *n = c->rxhead;
      c->rxhead = n->next;
      grant += duct__flow_taken(&c->rx, n->len);
      rxn_give(c->ml, n);
    }
    c->rxtail = NULL;
    if (grant) {
      duct__mutex_unlock(&mx->mu);
      ml_ctl(c->ml, DUCT__CREDIT, c->id, grant, c->deadline);
      duct__mutex_lock(&mx->mu);
      continue;
    }
    duct__cond_wait(&c->cv, &mx->mu, -1); /* the dispatcher ends it at its deadline */
  }
  duct_code code = c->code;
  if (status) {
    status->code = code;
    duct__utf8_format(status->message, sizeof status->message, "%s", c->text ? c->text : "");
  }
  if (reply && code == DUCT_OK && c->m->kind == DUCT_CLIENT_STREAMING) {
    *reply = c->reply;
    c->reply = NULL;
  }
  duct__mutex_unlock(&mx->mu);
  call_unref(c);
  return code;
}
