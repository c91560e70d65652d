/* tests/fuzz/fake_transport.c - see fake_transport.h. Implements both
 * halves of runtime/transport.h in memory, as static functions reached
 * only through the one table at the bottom (fake_transport). */
#include "fake_transport.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/conn.h"
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

/* The server core uses the shared connection directly (its idle-clock
 * fields, duct__conn_ref / unref: transport.h), so a fake connection is
 * a real duct__conn of a real set, embedded first as the platforms' are.
 * Nothing is ever queued on it (every send is "written" at once), so
 * conn.c's queue functions answer for an empty queue: conn_queued is 0,
 * and conn_want_drained calls drained() at once, from the caller. */
static void fk_want_write(duct__conn *c) { (void)c; }
static void fk_abort(duct__conn *c) { (void)c; }
/* The harness frees its connections itself (fake_conn_free). */
static void fk_destroy(duct__conn *c) { (void)c; }
static const duct__conn_io fake_io = {NULL, fk_want_write, fk_abort, fk_destroy};

struct duct__listener {
  const duct__srv_cb *cb;
  void *core;
  duct__conn_set set;
};

typedef struct fake_conn {
  duct__conn base;
  int closed;
  struct fake_conn *next; /* live ones, for listener_each */
} fake_conn;

static fake_conn *live_conns;

static duct__listener *the_listener;

const duct__srv_cb *fake_srv_callbacks(void) { return the_listener ? the_listener->cb : NULL; }
void *fake_srv_core(void) { return the_listener ? the_listener->core : NULL; }

duct__conn *fake_conn_new(void) {
  if (!the_listener)
    return NULL;
  fake_conn *f = calloc(1, sizeof *f);
  if (!f)
    return NULL;
  duct__conn_init(&f->base, &the_listener->set); /* refs 1: the harness's */
  f->next = live_conns;
  live_conns = f;
  return &f->base;
}

int fake_conn_closed(const duct__conn *c) { return ((const fake_conn *)c)->closed; }

void fake_conn_free(duct__conn *c) {
  fake_conn **p = &live_conns;
  while (*p && &(*p)->base != c)
    p = &(*p)->next;
  if (*p)
    *p = (*p)->next;
  duct__mutex_destroy(&c->mu);
  free(c);
}

static duct_code f_listen(const char *address, const duct__listen_opts *o,
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
  duct__conn_set_opts so = {0, 0, (size_t)1 << 30};
  duct__conn_set_init(&l->set, &fake_io, cb, core, &so);
  the_listener = l;
  *out = l;
  return DUCT_OK;
}

static duct_code f_listener_start(duct__listener *l) {
  (void)l;
  return DUCT_OK;
}

static void f_listener_stop_accepting(duct__listener *l) { (void)l; }

/* The harness closes its connections itself before stopping the server. */
static void f_listener_free(duct__listener *l) {
  if (l == the_listener)
    the_listener = NULL;
  duct__conn_set_destroy(&l->set);
  free(l);
}

static void f_listener_each(duct__listener *l, void (*fn)(duct__conn *c, void *arg), void *arg) {
  (void)l;
  for (fake_conn *f = live_conns; f; f = f->next)
    fn(&f->base, arg);
}

static duct_code f_conn_send(duct__conn *c, const duct__iov *iov, int n) {
  check_outgoing(iov, n);
  return ((fake_conn *)c)->closed ? DUCT_UNAVAILABLE : DUCT_OK;
}

static void f_conn_send_nowait(duct__conn *c, const duct__iov *iov, int n) {
  (void)c;
  check_outgoing(iov, n);
}

static void f_conn_close(duct__conn *c, duct_code why, const char *detail) {
  ((fake_conn *)c)->closed = 1;
  duct__conn_close(c, why, detail); /* the reason, for duct__conn_closing */
}

static size_t f_conn_queued(duct__conn *c) { return duct__conn_queued(c); }

/* Needs c->state: the harness sets it to what open() returned. */
static void f_conn_want_drained(duct__conn *c) { duct__conn_want_drained(c); }

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

static duct_code f_link_open(const char *address, const duct__link_opts *o,
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

static duct_code f_link_send(duct__link *l, const duct__iov *iov, int n, int64_t deadline_ms) {
  (void)deadline_ms;
  check_outgoing(iov, n);
  return l->broken ? DUCT_UNAVAILABLE : DUCT_OK;
}

static duct_code f_link_recv(duct__link *l, uint8_t *buf, size_t cap, size_t *len,
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

static duct_code f_link_transact(duct__link *l, const duct__iov *iov, int n, uint8_t *buf,
                              size_t cap, size_t *len, int64_t deadline_ms) {
  duct_code rc = f_link_send(l, iov, n, deadline_ms);
  return rc != DUCT_OK ? rc : f_link_recv(l, buf, cap, len, deadline_ms);
}

/* One thread per fuzz run: nobody is blocked to wake; later calls fail. */
static void f_link_shutdown(duct__link *l) { l->broken = 1; }

static void f_link_close(duct__link *l) { free(l); }

static uint32_t f_link_peer_pid(const duct__link *l) {
  (void)l;
  return 4321;
}

const duct__transport_ops fake_transport = {
    .name = "fake",
    .listen = f_listen,
    .listener_start = f_listener_start,
    .listener_stop_accepting = f_listener_stop_accepting,
    .listener_free = f_listener_free,
    .listener_each = f_listener_each,
    .conn_send = f_conn_send,
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
