/* server/send.c - what the server sends on a connection. Replies and
 * stream messages are packed into one of the connection's buffers, which
 * the send queue borrows rather than copies (runtime/conn.h's loans), so
 * a large reply the socket does not take at once is written later from
 * where it was packed; errors, GOAWAY and control messages are small and
 * built on the stack. Everything here but the GOAWAY that never waits is
 * under, or takes, the connection's tx_mu: one message at a time goes
 * out, whole. */
#include <stdatomic.h>

#include "runtime/alloc.h"
#include "runtime/wire.h"
#include "server/core.h"

/* The packing buffer kept per connection whatever the messages, and how
 * many messages in a row may use under a quarter of a larger one before
 * it is given back. */
#define TX_KEEP (64u * 1024u)
#define TX_SLACK 8u

static void txb_release(duct__loan *loan) { duct__free(loan); }

static int txb_lent(const txb *b) {
  return atomic_load_explicit(&b->loan.refs, memory_order_acquire) > 1;
}

/* Under tx_mu. */
duct_code duct__srv_send(void *arg, const duct__iov *iov, int n, int last) {
  sconn *sc = arg;
  (void)last;
  return sc->c ? sc->s->t->conn_send(sc->c, iov, n) : DUCT_UNAVAILABLE;
}

/* Under tx_mu: a frame of the message packed in sc->txcur. A lendable
 * buffer is lent to the queue, so the part of a reply the socket does
 * not take at once (most of a 1 MiB one) is written later from where it
 * was packed, not from a copy. */
duct_code duct__srv_send_packed(void *arg, const duct__iov *iov, int n, int last) {
  sconn *sc = arg;
  const duct__transport_ops *t = sc->s->t;
  if (sc->c && t->conn_send_lent && sc->txcur != sc->tx[TX_BUFS - 1])
    return t->conn_send_lent(sc->c, iov, n, &sc->txcur->loan);
  return duct__srv_send(arg, iov, n, last);
}

int duct__srv_send_msg(sconn *sc, const uint8_t *msg, size_t n) {
  duct__iov iov = {msg, n};
  duct__mutex_lock(&sc->tx_mu);
  duct_code rc = duct__srv_send(sc, &iov, 1, 1);
  duct__mutex_unlock(&sc->tx_mu);
  return rc == DUCT_OK ? 0 : -1;
}

int duct__srv_send_text(sconn *sc, uint8_t type, uint32_t call, uint32_t method,
                        duct_code code, const char *text) {
  uint8_t msg[DUCT__TEXT_MSG_MAX];
  return duct__srv_send_msg(sc, msg, duct__wire_text(msg, type, call, method, code, text));
}

int duct__srv_send_ctl(sconn *sc, uint8_t type, uint32_t call, uint32_t credit) {
  uint8_t msg[DUCT__CTL_MSG_MAX];
  return duct__srv_send_msg(sc, msg, duct__wire_ctl(msg, type, call, credit));
}

/* A GOAWAY that never waits: for connections this thread does not own. */
void duct__srv_goaway_nowait(duct_server *s, duct__conn *c, duct_code code, const char *text) {
  uint8_t msg[DUCT__TEXT_MSG_MAX];
  size_t n = duct__wire_text(msg, DUCT__GOAWAY, 0, 0, code, text);
  duct__iov iov = {msg, n};
  s->t->conn_send_nowait(c, &iov, 1);
}

/* Under tx_mu: room for a packed message of n bytes after a header, in
 * the first buffer the queue is not reading (sc->txcur; returns its
 * bytes). Buffers are kept between messages (a steady stream of replies
 * allocates nothing), and one is given back after TX_SLACK messages in a
 * row that used under a quarter of it, as the arena does. */
uint8_t *duct__srv_tx_room(sconn *sc, size_t n) {
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
