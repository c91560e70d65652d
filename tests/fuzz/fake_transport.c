/* tests/fuzz/fake_transport.c - see fake_transport.h. Implements both
 * halves of runtime/transport.h in memory. */
#include "fake_transport.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/frame.h"

/* ---- checks on what duct sends ---- */

/* Gathers the pieces into one buffer (so ASan checks every byte the core
 * points at) and insists it is a well-formed frame: the core must never
 * put a malformed frame on the wire, whatever it was fed. */
static void check_outgoing(const duct__iov *iov, int n) {
  if (n < 1 || n > 2)
    abort();
  size_t len = 0;
  for (int i = 0; i < n; i++)
    len += iov[i].len;
  if (len > DUCT__DEFAULT_MAX_FRAME)
    abort();
  uint8_t *m = malloc(len ? len : 1);
  if (!m)
    abort();
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    if (iov[i].len)
      memcpy(m + off, iov[i].base, iov[i].len);
    off += iov[i].len;
  }
  duct__frame f;
  const char *why;
  if (duct__frame_decode(m, len, &f, &why) != DUCT_OK)
    abort();
  free(m);
}

size_t fake_split(const uint8_t *data, size_t size, const uint8_t **msgs, size_t *lens,
                  size_t max) {
  size_t n = 0;
  while (size >= 2 && n < max) {
    size_t len = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2;
    size -= 2;
    if (len > size)
      len = size;
    msgs[n] = data;
    lens[n++] = len;
    data += len;
    size -= len;
  }
  return n;
}

/* ---- server side ---- */

struct duct__listener {
  const duct__srv_cb *cb;
  void *core;
};

struct duct__conn {
  int closed;
};

static duct__listener *the_listener;

const duct__srv_cb *fake_srv_callbacks(void) { return the_listener ? the_listener->cb : NULL; }
void *fake_srv_core(void) { return the_listener ? the_listener->core : NULL; }

duct__conn *fake_conn_new(void) { return calloc(1, sizeof(duct__conn)); }
int fake_conn_closed(const duct__conn *c) { return c->closed; }
void fake_conn_free(duct__conn *c) { free(c); }

duct_code duct__listen(const char *address, const duct__listen_opts *o,
                       const duct__srv_cb *cb, void *core, duct__listener **out,
                       duct__err *err) {
  (void)address;
  (void)o;
  (void)err;
  duct__listener *l = calloc(1, sizeof *l);
  if (!l)
    return DUCT_RESOURCE_EXHAUSTED;
  l->cb = cb;
  l->core = core;
  the_listener = l;
  *out = l;
  return DUCT_OK;
}

duct_code duct__listener_start(duct__listener *l) {
  (void)l;
  return DUCT_OK;
}

void duct__listener_stop_accepting(duct__listener *l) { (void)l; }

/* The harness closes its connections itself before stopping the server. */
void duct__listener_free(duct__listener *l) {
  if (l == the_listener)
    the_listener = NULL;
  free(l);
}

duct_code duct__conn_send(duct__conn *c, const duct__iov *iov, int n) {
  check_outgoing(iov, n);
  return c->closed ? DUCT_UNAVAILABLE : DUCT_OK;
}

void duct__conn_close(duct__conn *c) { c->closed = 1; }

/* ---- client side ---- */

struct duct__link {
  int broken;
};

static const uint8_t *const *script;
static const size_t *script_lens;
static size_t script_n, script_at;

void fake_script_set(const uint8_t *const *msgs, const size_t *lens, size_t n) {
  script = msgs;
  script_lens = lens;
  script_n = n;
  script_at = 0;
}

int fake_script_done(void) { return script_at >= script_n; }

duct_code duct__link_open_opts(const char *address, const duct__link_opts *o,
                               int64_t deadline_ms, duct__link **out, duct__err *err) {
  (void)address;
  (void)o; /* the in-memory "server" is no user at all: nothing to check */
  (void)deadline_ms;
  (void)err;
  /* Nothing left to say: the "server" is gone. */
  if (fake_script_done())
    return DUCT_UNAVAILABLE;
  *out = calloc(1, sizeof **out);
  return *out ? DUCT_OK : DUCT_RESOURCE_EXHAUSTED;
}

duct_code duct__link_send(duct__link *l, const duct__iov *iov, int n, int64_t deadline_ms) {
  (void)deadline_ms;
  check_outgoing(iov, n);
  return l->broken ? DUCT_UNAVAILABLE : DUCT_OK;
}

duct_code duct__link_recv(duct__link *l, uint8_t *buf, size_t cap, size_t *len,
                          int64_t deadline_ms) {
  (void)deadline_ms;
  if (l->broken || fake_script_done())
    return DUCT_UNAVAILABLE;
  size_t n = script_lens[script_at];
  const uint8_t *m = script[script_at++];
  if (n > cap) {
    /* What the real transports report; the link is unusable afterwards. */
    l->broken = 1;
    return DUCT_RESOURCE_EXHAUSTED;
  }
  if (n)
    memcpy(buf, m, n);
  *len = n;
  return DUCT_OK;
}

duct_code duct__link_transact(duct__link *l, const duct__iov *iov, int n, uint8_t *buf,
                              size_t cap, size_t *len, int64_t deadline_ms) {
  duct_code rc = duct__link_send(l, iov, n, deadline_ms);
  return rc != DUCT_OK ? rc : duct__link_recv(l, buf, cap, len, deadline_ms);
}

void duct__link_close(duct__link *l) { free(l); }

uint32_t duct__link_peer_pid(const duct__link *l) {
  (void)l;
  return 4321;
}
