/* client/chan.h - the channel's parts that the blocking calls
 * (channel.c) and the multiplexed calls and streams (mux.c) share, and
 * the links both use (link.c). Internal. */
#ifndef DUCT_CLIENT_CHAN_H
#define DUCT_CLIENT_CHAN_H

#include "duct/client.h"
#include "runtime/log.h"
#include "runtime/session.h"
#include "runtime/sys.h"
#include "runtime/transport.h"

typedef struct clink {
  const duct__transport_ops *t; /* the channel's, for link_free */
  duct__link *l;
  struct clink *next; /* in the idle list */
  uint32_t next_call;
  duct__session sess; /* HELLO, limits, reassembly (runtime/session.h) */
  uint8_t *rxbuf; /* one transport message */
  uint8_t *txbuf; /* packed request with header room, grown as needed */
  size_t txcap;
  int no_scatter; /* the transport said it has no link_recv_into */
} clink;

struct duct_channel {
  const duct__transport_ops *t;
  char *address;
  char *expect_user; /* a copy of o.expect_server_user, or NULL */
  duct_channel_opts o;
  duct__logger log;
  duct__mutex mu;
  duct__cond cv;  /* a link came back or a slot opened */
  struct duct__mux *mx; /* async calls and streams (mux.c); NULL until used */
  clink *idle;    /* links ready for a call */
  uint32_t open;  /* links in existence, idle or busy */
};

/* link.c: connects and exchanges HELLOs. On failure msg says why. */
duct_code duct__clink_new(duct_channel *ch, int64_t deadline, clink **out, char *msg,
                          size_t msgcap);
void duct__clink_free(clink *k);
/* Copies a text payload (error RESPONSE, GOAWAY) into buf as a string,
 * cut between characters if it does not fit. */
void duct__payload_text(char *buf, size_t cap, const uint8_t *p, size_t n);
/* mux.c: ends the multiplexed connection and its threads (channel close). */
void duct__mux_free(struct duct__mux *mx);

#endif
