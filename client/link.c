/* client/link.c - one connection of a channel (a "link", struct clink):
 * made (connect, then the HELLO exchange that settles versions and
 * limits) and freed. The blocking calls (channel.c) and the multiplexed
 * connection (mux.c) both stand on it; it knows neither. */
#include <stdio.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/frame.h"
#include "runtime/session.h"
#include "runtime/transport.h"
#include "runtime/utf8.h"
#include "runtime/wire.h"
#include "client/chan.h"

void duct__clink_free(clink *k) {
  if (!k)
    return;
  k->t->link_close(k->l);
  duct__session_free(&k->sess);
  duct__free(k->rxbuf);
  duct__free(k->txbuf);
  duct__free(k);
}

/* Copies a text payload (error RESPONSE, GOAWAY) into buf as a string,
 * cut between characters if it does not fit (it does: every caller's buf
 * holds DUCT__MAX_ERROR_TEXT, the protocol's limit). */
void duct__payload_text(char *buf, size_t cap, const uint8_t *p, size_t n) {
  if (n >= cap)
    n = duct__utf8_cut((const char *)p, cap - 1);
  memcpy(buf, p, n);
  buf[n] = '\0';
}

/* Connects and exchanges HELLOs. On failure msg says why. */
duct_code duct__clink_new(duct_channel *ch, int64_t deadline, clink **out, char *msg,
                          size_t msgcap) {
  clink *k = duct__calloc(1, sizeof *k);
  if (!k || !(k->rxbuf = duct__malloc(DUCT__DEFAULT_MAX_FRAME))) {
    duct__free(k);
    snprintf(msg, msgcap, "out of memory");
    return DUCT_RESOURCE_EXHAUSTED;
  }
  k->t = ch->t;
  duct__session_init(&k->sess, ch->o.max_message_size, NULL);
  k->next_call = 1;
  duct__err err = {{0}};
  /* The transport checks who the server is before anything is sent. */
  duct__link_opts lo = {ch->expect_user};
  duct_code rc = ch->t->link_open(ch->address, &lo, deadline, &k->l, &err);
  if (rc != DUCT_OK) {
    duct__utf8_format(msg, msgcap, "%s", err.text[0] ? err.text : duct_code_message(rc));
    k->l = NULL;
    duct__clink_free(k);
    return rc;
  }
  uint8_t hello[DUCT__HELLO_MSG_SIZE];
  duct__wire_hello(hello, DUCT__DEFAULT_MAX_FRAME, ch->o.max_message_size);
  duct__iov iov = {hello, sizeof hello};
  size_t len = 0;
  rc = k->t->link_transact(k->l, &iov, 1, k->rxbuf, DUCT__DEFAULT_MAX_FRAME, &len, deadline);
  duct__frame f;
  const char *why = NULL;
  if (rc != DUCT_OK) {
    duct__utf8_format(msg, msgcap, "HELLO exchange with %s failed: %s", ch->address,
                      duct_code_message(rc));
  } else if ((rc = duct__frame_decode(k->rxbuf, len, &f, &why)) != DUCT_OK) {
    duct__utf8_format(msg, msgcap, "server at %s sent a bad frame: %s", ch->address, why);
  } else if (f.type == DUCT__GOAWAY) {
    char text[DUCT__MAX_ERROR_TEXT + 1];
    duct__payload_text(text, sizeof text, k->rxbuf + DUCT__HEADER_SIZE, f.payload_len);
    rc = f.status ? (duct_code)f.status : DUCT_UNAVAILABLE;
    duct__utf8_format(msg, msgcap, "server refused the connection: %s", text);
  } else if (f.type != DUCT__HELLO) {
    rc = DUCT_INTERNAL;
    duct__utf8_format(msg, msgcap, "server at %s did not answer HELLO", ch->address);
  } else if ((rc = duct__session_hello(&k->sess, k->rxbuf + DUCT__HEADER_SIZE,
                                       f.payload_len, DUCT__MIN_MAX_FRAME, "server", msg,
                                       msgcap)) == DUCT_OK) {
    *out = k;
    return DUCT_OK;
  }
  duct__clink_free(k);
  return rc;
}
