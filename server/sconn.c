/* server/sconn.c - a connection's references and the server's list of
 * them: the lowest layer of the server's files. Calls (call.c), streams
 * (stream.c), the transport's callbacks (dispatch.c) and the lifecycle
 * (server.c) each hold a connection's record, struct sconn, while they
 * use it, and the last of them frees it here; the tick and a stop walk
 * the list through a snapshot of references taken here. */
#include <stdatomic.h>
#include <stddef.h>

#include "runtime/alloc.h"
#include "runtime/arena.h"
#include "runtime/conn.h"
#include "server/core.h"

void duct__srv_conn_free(sconn *sc) {
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

/* The last reference is dropped under s->mu, so a walk of s->conns (the
 * tick, a stop) never takes a reference on a connection being freed. */
void duct__srv_conn_unref(sconn *sc) {
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
  duct__srv_conn_free(sc);
}

/* Under s->mu: a reference unless the connection is being freed. */
static int sconn_try_ref(sconn *sc) {
  int n = atomic_load(&sc->refs);
  while (n > 0)
    if (atomic_compare_exchange_weak(&sc->refs, &n, n + 1))
      return 1;
  return 0;
}

/* A referenced snapshot of the connections, into *buf (*cap entries),
 * grown when there are more; NULL (*n = 0) without memory. */
sconn **duct__srv_conns_snapshot(duct_server *s, sconn ***buf, size_t *cap, size_t *n) {
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
