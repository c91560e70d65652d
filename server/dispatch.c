/* server/dispatch.c - the server as the transport sees it: the
 * callbacks it calls on its worker threads (runtime/transport.h). A
 * connection opens (its record, struct sconn, is made here; its
 * references are sconn.c's), its messages arrive (HELLO, frame decoding,
 * reassembly, scatter reads into the reassembly buffer), a REQUEST is
 * checked (limits, method id, authorization, unpacking) and becomes a
 * call, whose handler runs on the worker after the re-arm (unary, the
 * run queue) or on a thread of its own (streams); STREAM_DATA and the
 * control frames go to their call; the connection closes. Call objects
 * and their ends are call.c's, streams stream.c's. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/arena.h"
#include "runtime/frame.h"
#include "runtime/wire.h"
#include "server/core.h"

/* The smallest frame a client may ask for in its HELLO: below this a
 * reply would take a frame (and a system call) per handful of bytes. */
#define MIN_PEER_FRAME 4096u

/* ---- running handlers ---- */

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
    duct__srv_send_text(sc, DUCT__GOAWAY, 0, 0, DUCT_UNAVAILABLE, "the server is stopping");
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
  duct__srv_send_unary_reply(x, code);
  goaway_if_last(sc);
  duct__srv_conn_unref(sc);
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
    duct__srv_end_with_reply(x, code);
  duct__srv_call_unref(x);
  thread_done(s);
}

/* ---- messages ---- */

static int by_id(const void *key, const void *elem) {
  uint32_t id = *(const uint32_t *)key, other = ((const entry *)elem)->m->id;
  return id < other ? -1 : id > other;
}

static const entry *find_method(const duct_server *s, uint32_t id) {
  return bsearch(&id, s->methods, s->n_methods, sizeof *s->methods, by_id);
}

/* Ends a connection for a protocol violation: one log line naming the
 * peer and the rule, a GOAWAY telling the peer the same (best effort). */
static int violation(sconn *sc, duct_code code, const char *why) {
  duct__log(&sc->s->log, DUCT_LOG_WARN, "closing connection from pid %u (user %s): %s",
            (unsigned)sc->peer.pid, sc->peer.user, why);
  duct__srv_send_text(sc, DUCT__GOAWAY, 0, 0, code, why);
  return -1;
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
  int dup = duct__srv_call_find(sc, h->call_id) != NULL;
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
  if (!(x = duct__srv_call_new(sc))) {
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
    duct__srv_call_end(x, DUCT_UNAVAILABLE, "the server is stopping", NULL, 0);
    duct__srv_call_unref(x);
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
    duct__srv_call_end(x, DUCT_RESOURCE_EXHAUSTED,
                       "the server could not start a thread for the stream", NULL, 0);
    duct__srv_call_unref(x);
    call_done(s);
  }
  return 0;

fail:
  if (x)
    duct__srv_call_unref(x);
  /* A version 1 client waits for this answer and sends nothing before it. */
  return duct__srv_send_text(sc, DUCT__RESPONSE, h->call_id, h->method_id, code, text) == 0
             ? (v1 ? 1 : 0)
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
  duct_ctx *x = duct__srv_call_find(sc, m->hdr.call_id);
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
      duct__srv_call_cancel(x, lost);
      duct__srv_call_unref(x);
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
  duct_ctx *x = duct__srv_call_find(sc, f->call_id);
  if (!x) {
    duct__mutex_unlock(&sc->mu);
    return 0; /* a call that has ended: crossed in flight */
  }
  if (f->type == DUCT__CANCEL) {
    duct__mutex_unlock(&sc->mu);
    call_ref(x);
    duct__srv_call_cancel(x, BY_CLIENT);
    duct__srv_call_unref(x);
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
  if (duct__srv_may_send(x) && x->on_writable) {
    wcb = x->on_writable;
    x->on_writable = NULL;
    call_ref(x);
  }
  duct__cond_broadcast(&x->cv);
  duct__mutex_unlock(&sc->mu);
  if (wcb) {
    wcb((duct_stream *)(void *)x, wu);
    duct__srv_call_unref(x);
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
  if (duct__srv_send_msg(sc, msg, sizeof msg) != 0)
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

/* ---- a connection opens and ends ---- */

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
  duct__srv_cancel_calls(sc, NULL, NULL, BY_GONE);
  duct__mutex_lock(&sc->tx_mu); /* tx_mu before mu, as in send_unary_reply */
  duct__mutex_lock(&sc->mu);
  duct__conn *c = sc->c;
  sc->c = NULL;
  duct__mutex_unlock(&sc->mu);
  duct__mutex_unlock(&sc->tx_mu);
  duct__conn_unref(c);
  duct__session_free(&sc->sess);
  duct__srv_conn_unref(sc);
}

/* A connection is closed to admit a new one at max_connections: it was
 * idle, so its client loses nothing but is told why. Any thread: only the
 * connection itself (not the owner's sconn) is touched. */
static void on_evict(void *state, const char *why) {
  sconn *sc = state;
  duct__log(&sc->s->log, DUCT_LOG_INFO, "closing connection from pid %u: %s",
            (unsigned)sc->peer.pid, why);
  duct__srv_goaway_nowait(sc->s, sc->c, DUCT_RESOURCE_EXHAUSTED, why);
}

/* The transport refuses a frame itself (over max_frame): say so, as for
 * any other violation. */
static void on_violation(void *state, duct_code code, const char *why) {
  sconn *sc = state;
  duct__log(&sc->s->log, DUCT_LOG_WARN, "closing connection from pid %u (user %s): %s",
            (unsigned)sc->peer.pid, sc->peer.user, why);
  duct__srv_goaway_nowait(sc->s, sc->c, code, why);
}

const duct__srv_cb duct__srv_callbacks = {.open = on_open,
                                          .message = on_message,
                                          .rx_slot = on_rx_slot,
                                          .message_placed = on_message_placed,
                                          .closed = on_closed,
                                          .evict = on_evict,
                                          .violation = on_violation,
                                          .tick = duct__srv_tick,
                                          .run = on_run,
                                          .drained = duct__srv_drained};
