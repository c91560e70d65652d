/* tests/fuzz/fake_transport.c - see fake_transport.h. Implements both
 * halves of runtime/transport.h in memory, as static functions reached
 * only through the one table at the bottom (fake_transport).
 *
 * One mutex (mu) guards everything the fake keeps: the script and its
 * cursor, every link's state and the checks' view of each connection.
 * Sends come from several threads (a server's stream handlers, a
 * channel's reader, dispatcher and callers), so the checks take it too.
 * The fuzz preset is clang on Linux only: pthreads directly. */
#include "fake_transport.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/conn.h"
#include "runtime/frame.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER; /* a link's reader state changed */

/* ---- checks on what duct sends ---- */

enum { SIDE_SERVER, SIDE_CLIENT };

/* What one connection's sender may send, as its peer's HELLO set it. */
typedef struct peer_view {
  int seen_peer_hello; /* the peer's first message was looked at */
  int version;         /* 0 until the HELLOs agreed; then 1 or 2 */
  uint32_t max_frame;  /* the peer's, capped at duct's default (session.c) */
  int hello_out;       /* this side sent its HELLO */
} peer_view;

/* The peer's first message: when it is a HELLO this side accepts
 * (session.c's rules, with the side's floor for max_frame), the version
 * both speak and the frames the peer takes. Anything else leaves the view
 * unagreed, and then only HELLO and GOAWAY may go out. */
static void view_peer_first(peer_view *v, const uint8_t *msg, size_t len, uint32_t min_frame) {
  if (v->seen_peer_hello)
    return;
  v->seen_peer_hello = 1;
  duct__frame f;
  duct__hello h;
  const char *why;
  if (duct__frame_decode(msg, len, &f, &why) != DUCT_OK || f.type != DUCT__HELLO ||
      duct__hello_decode(msg + DUCT__HEADER_SIZE, f.payload_len, &h, &why) != DUCT_OK)
    return;
  if (h.min_version > DUCT__VERSION_MAX || h.max_version < DUCT__VERSION ||
      h.max_frame < min_frame)
    return;
  v->version = h.max_version < DUCT__VERSION_MAX ? h.max_version : DUCT__VERSION_MAX;
  v->max_frame = h.max_frame < DUCT__DEFAULT_MAX_FRAME ? h.max_frame : DUCT__DEFAULT_MAX_FRAME;
}

/* Gathers the pieces into one buffer (so ASan checks every byte the core
 * points at) and insists it is a well-formed frame that this side may
 * send on this connection: the core must never put a malformed frame on
 * the wire, whatever it was fed. Under mu. */
static void check_outgoing(peer_view *v, int side, const duct__iov *iov, int n) {
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
  static int verbose = -1; /* DUCT_FUZZ_VERBOSE: show what goes out */
  if (verbose < 0)
    verbose = getenv("DUCT_FUZZ_VERBOSE") != NULL;
  if (verbose)
    fprintf(stderr, "[%s sends] type %u call %u status %u flags %u, %u bytes\n",
            side == SIDE_SERVER ? "server" : "client", f.type, (unsigned)f.call_id,
            (unsigned)f.status, f.flags, (unsigned)f.payload_len);
  switch (f.type) {
  case DUCT__HELLO:
    if (v->hello_out++) /* once, first */
      abort();
    return;
  case DUCT__GOAWAY:
    return; /* either side, at any time (a refused HELLO included) */
  case DUCT__REQUEST:
  case DUCT__HALF_CLOSE:
    if (side != SIDE_CLIENT)
      abort();
    break;
  case DUCT__RESPONSE:
    if (side != SIDE_SERVER)
      abort();
    break;
  default:
    break;
  }
  /* Calls only after the HELLOs agreed, in frames the peer takes. */
  if (!v->version || !v->hello_out || len > v->max_frame)
    abort();
  int v2_only = f.type == DUCT__STREAM_DATA || f.type == DUCT__HALF_CLOSE ||
                f.type == DUCT__CREDIT || (f.type == DUCT__CANCEL && side == SIDE_SERVER);
  if (v2_only && v->version < 2)
    abort();
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
  atomic_int closed;
  peer_view view;         /* under mu */
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
  atomic_init(&f->closed, 0);
  f->next = live_conns;
  live_conns = f;
  return &f->base;
}

/* A server refuses a client whose frames are under 4096 bytes
 * (server/dispatch.c's MIN_PEER_FRAME). */
void fake_conn_incoming(duct__conn *c, const uint8_t *msg, size_t len) {
  pthread_mutex_lock(&mu);
  view_peer_first(&((fake_conn *)c)->view, msg, len, 4096);
  pthread_mutex_unlock(&mu);
}

int fake_conn_closed(const duct__conn *c) { return atomic_load(&((const fake_conn *)c)->closed); }

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

/* From any thread: a stream handler sends on its own. */
static duct_code f_conn_send(duct__conn *c, const duct__iov *iov, int n) {
  fake_conn *f = (fake_conn *)c;
  pthread_mutex_lock(&mu);
  check_outgoing(&f->view, SIDE_SERVER, iov, n);
  pthread_mutex_unlock(&mu);
  return atomic_load(&f->closed) ? DUCT_UNAVAILABLE : DUCT_OK;
}

static void f_conn_send_nowait(duct__conn *c, const duct__iov *iov, int n) {
  pthread_mutex_lock(&mu);
  check_outgoing(&((fake_conn *)c)->view, SIDE_SERVER, iov, n);
  pthread_mutex_unlock(&mu);
}

static void f_conn_close(duct__conn *c, duct_code why, const char *detail) {
  atomic_store(&((fake_conn *)c)->closed, 1);
  duct__conn_close(c, why, detail); /* the reason, for duct__conn_closing */
}

static size_t f_conn_queued(duct__conn *c) { return duct__conn_queued(c); }

/* Needs c->state: the harness sets it to what open() returned. */
static void f_conn_want_drained(duct__conn *c) { duct__conn_want_drained(c); }

/* ---- client side ---- */

/* Everything under mu. */
struct duct__link {
  peer_view view;
  int broken;        /* a message too large for the reader's buffer */
  int shut;          /* link_shutdown: every operation fails from now on */
  int reader;        /* a reader thread reads it (fake_expect_reader) */
  int reader_in;     /* that thread waits in link_recv for a message */
  int reader_gone;   /* that thread has ended */
  unsigned grants;   /* messages fake_pump handed over, not yet taken */
  struct duct__link *next; /* live links, newest first */
};

static const uint8_t *const *script;
static const size_t *script_lens;
static size_t script_n, script_at;
static duct__link *links;
static int expect_reader;
/* The thread that set the script reads without waiting for a pump. */
static _Thread_local int is_driver;

/* A reader thread's end, seen through a thread-specific value whose
 * destructor runs as the thread exits: the reader (client/mux.c) returns
 * after its last link_recv, and fake_pump must not wait for it to come
 * back. The link outlives its reader: mux.c joins the reader before it
 * closes the link. */
static pthread_key_t reader_key;
static pthread_once_t reader_key_once = PTHREAD_ONCE_INIT;

static void reader_ended(void *p) {
  duct__link *l = p;
  pthread_mutex_lock(&mu);
  l->reader_gone = 1;
  l->reader_in = 0;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

static void reader_key_make(void) {
  if (pthread_key_create(&reader_key, reader_ended) != 0)
    abort();
}

void fake_script_set(const uint8_t *const *msgs, const size_t *lens, size_t n) {
  pthread_mutex_lock(&mu);
  script = msgs;
  script_lens = lens;
  script_n = n;
  script_at = 0;
  expect_reader = 0;
  pthread_mutex_unlock(&mu);
  is_driver = 1;
}

int fake_script_done(void) {
  pthread_mutex_lock(&mu);
  int done = script_at >= script_n;
  pthread_mutex_unlock(&mu);
  return done;
}

void fake_expect_reader(int on) {
  pthread_mutex_lock(&mu);
  expect_reader = on;
  pthread_mutex_unlock(&mu);
}

int fake_pump(void) {
  pthread_mutex_lock(&mu);
  duct__link *l = links;
  while (l && !(l->reader && !l->reader_gone))
    l = l->next;
  if (!l) {
    pthread_mutex_unlock(&mu);
    return 0;
  }
  l->grants++;
  pthread_cond_broadcast(&cv);
  /* Dealt with: back waiting for the next one, or gone (an error, a
   * GOAWAY, a protocol violation, a shutdown: mux.c's reader returns). */
  while (!l->reader_gone && !(l->grants == 0 && l->reader_in))
    pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  return 1;
}

static duct_code f_link_open(const char *address, const duct__link_opts *o,
                             int64_t deadline_ms, duct__link **out, duct__err *err) {
  (void)address;
  (void)o; /* the in-memory "server" is no user at all: nothing to check */
  (void)deadline_ms;
  (void)err;
  pthread_mutex_lock(&mu);
  /* Nothing left to say: the "server" is gone. */
  duct_code rc = DUCT_UNAVAILABLE;
  if (script_at < script_n) {
    duct__link *l = calloc(1, sizeof *l);
    rc = DUCT_RESOURCE_EXHAUSTED;
    if (l) {
      l->next = links;
      links = l;
      *out = l;
      rc = DUCT_OK;
    }
  }
  pthread_mutex_unlock(&mu);
  return rc;
}

/* Under mu. */
static duct_code send_locked(duct__link *l, const duct__iov *iov, int n) {
  check_outgoing(&l->view, SIDE_CLIENT, iov, n);
  if (is_driver && expect_reader)
    l->reader = 1;
  return l->broken || l->shut ? DUCT_UNAVAILABLE : DUCT_OK;
}

static duct_code f_link_send(duct__link *l, const duct__iov *iov, int n, int64_t deadline_ms) {
  (void)deadline_ms;
  pthread_mutex_lock(&mu);
  duct_code rc = send_locked(l, iov, n);
  pthread_mutex_unlock(&mu);
  return rc;
}

/* Under mu: the next scripted message, for whoever may take it now. */
static duct_code take_locked(duct__link *l, uint8_t *buf, size_t cap, size_t *len) {
  if (l->broken || l->shut || script_at >= script_n)
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
  view_peer_first(&l->view, m, n, DUCT__MIN_MAX_FRAME);
  return DUCT_OK;
}

static duct_code recv_locked(duct__link *l, uint8_t *buf, size_t cap, size_t *len) {
  if (!is_driver) {
    /* A reader thread: it waits for the driver's pump, or a shutdown. */
    pthread_once(&reader_key_once, reader_key_make);
    if (!pthread_getspecific(reader_key))
      pthread_setspecific(reader_key, l);
    l->reader_in = 1;
    pthread_cond_broadcast(&cv);
    while (!l->grants && !l->shut)
      pthread_cond_wait(&cv, &mu);
    l->reader_in = 0;
    if (l->shut)
      return DUCT_UNAVAILABLE;
    l->grants--;
  }
  return take_locked(l, buf, cap, len);
}

static duct_code f_link_recv(duct__link *l, uint8_t *buf, size_t cap, size_t *len,
                             int64_t deadline_ms) {
  (void)deadline_ms;
  pthread_mutex_lock(&mu);
  duct_code rc = recv_locked(l, buf, cap, len);
  pthread_mutex_unlock(&mu);
  return rc;
}

static duct_code f_link_transact(duct__link *l, const duct__iov *iov, int n, uint8_t *buf,
                                 size_t cap, size_t *len, int64_t deadline_ms) {
  (void)deadline_ms;
  pthread_mutex_lock(&mu);
  duct_code rc = send_locked(l, iov, n);
  if (rc == DUCT_OK)
    rc = recv_locked(l, buf, cap, len);
  pthread_mutex_unlock(&mu);
  return rc;
}

/* The contract: whoever waits in a receive on l returns DUCT_UNAVAILABLE,
 * and so does every later operation. */
static void f_link_shutdown(duct__link *l) {
  pthread_mutex_lock(&mu);
  l->shut = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

static void f_link_close(duct__link *l) {
  pthread_mutex_lock(&mu);
  duct__link **p = &links;
  while (*p && *p != l)
    p = &(*p)->next;
  if (*p)
    *p = l->next;
  pthread_mutex_unlock(&mu);
  free(l);
}

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
