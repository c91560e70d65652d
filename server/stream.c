/* server/stream.c - streams: what a streaming handler (or the holder of
 * a kept stream) does with its duct_stream, and flow control. A message
 * goes out when the client's window has credit and the connection's send
 * queue has room; the client's messages wait here for duct_stream_recv,
 * which gives their credit back. The stream's call object, its end and
 * its cancellation are call.c's. */
#include <stdatomic.h>
#include <stdint.h>

#include "runtime/alloc.h"
#include "runtime/frame.h"
#include "runtime/utf8.h"
#include "server/core.h"

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
int duct__srv_may_send(duct_ctx *x) {
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
    if (duct__srv_may_send(x))
      break;
    if (x->tx.avail > 0 && sc->c && !sc->drain_pending) {
      /* The connection's queue, not the client's window, is full: ask to
       * hear when it empties (duct__srv_drained). drained() may run inside the
       * request, so no lock of ours is held across it. */
      duct__conn *c = sc->c;
      sc->drain_pending = 1;
      sconn_ref(sc); /* duct__srv_drained's */
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
  uint8_t *buf = duct__srv_tx_room(sc, len);
  if (!buf)
    rc = DUCT_RESOURCE_EXHAUSTED;
  if (rc == DUCT_OK) {
    protobuf_c_message_pack(msg, buf + DUCT__HEADER_SIZE);
    duct__frame tmpl = {2, DUCT__STREAM_DATA, 0, x->id, 0, 0, 0, 0};
    rc = duct__session_send(&sc->sess, &tmpl, buf + DUCT__HEADER_SIZE, len, DUCT__SINK_KEEPS,
                            duct__srv_send_packed, sc);
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
    duct__srv_send_ctl(sc, DUCT__CREDIT, x->id, grant);
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
  int won = duct__srv_call_end(x, code, message ? text : NULL, NULL, 0);
  if (x->kept && !x->released) {
    x->released = 1;
    duct__srv_call_unref(x);
  }
  return won ? DUCT_OK : DUCT_FAILED_PRECONDITION;
}

/* The connection's queue emptied: streams that waited for it may send. */
void duct__srv_drained(void *state) {
  sconn *sc = state;
  duct_ctx *batch[64];
  duct_stream_cb cbs[64];
  void *users[64];
  size_t n = 0;
  duct__mutex_lock(&sc->mu);
  sc->drain_pending = 0;
  for (duct_ctx *x = sc->calls; x; x = x->next) {
    duct__cond_broadcast(&x->cv);
    if (n < 64 && x->on_writable && duct__srv_may_send(x)) {
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
    duct__srv_call_unref(batch[i]);
  }
  duct__srv_conn_unref(sc); /* the reference taken when it was asked for */
}

