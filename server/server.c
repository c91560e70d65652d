/* duct_server: the platform-neutral half of the server. The transport
 * (runtime/posix or runtime/win) accepts connections, runs the worker
 * threads and hands over whole messages; this file speaks the protocol on
 * them: HELLO, reassembly, dispatch by method id, deadlines, authorization,
 * replies, limits and the graceful stop. */
#include "duct/server.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/arena.h"
#include "runtime/conn.h"
#include "runtime/frame.h"
#include "runtime/log.h"
#include "runtime/session.h"
#include "runtime/sys.h"
#include "runtime/transport.h"
#include "runtime/wire.h"
#include "runtime/alloc.h"
#include "server/internal.h"

#define DEFAULT_MAX_CONNECTIONS 1024u
#define DEFAULT_IDLE_TIMEOUT_MS 10000u
/* Accepted option ranges (duct/server.h, docs/GUIDE.md). A max_message_size
 * under 1 KiB is refused rather than obeyed: it is nearly always a unit
 * mistake (KiB meant, bytes given), and would make ordinary calls fail
 * with RESOURCE_EXHAUSTED in a way that looks like a bug. client/channel.c
 * uses the same floor. */
#define MIN_MAX_MESSAGE 1024u
#define MAX_WORKERS 1024
/* The arena block kept per connection: most calls fit in it, so they
 * allocate nothing. */
#define ARENA_KEEP (16u * 1024u)
/* Memory budgets (duct/server.h): all partly received messages together,
 * and one call's arena as a multiple of max_message_size. */
#define DEFAULT_MAX_PARTIAL_MEMORY ((size_t)64 * 1024 * 1024)
#define CALL_MEMORY_FACTOR 4u
#define MIN_CALL_MEMORY ((size_t)1024 * 1024)
/* The smallest frame a client may ask for in its HELLO: below this a
 * reply would take a frame (and a system call) per handful of bytes. */
#define MIN_PEER_FRAME 4096u

typedef struct entry {
  const duct_method *m;
  const void *handlers;
  void *user;
} entry;

typedef struct sconn sconn;

struct duct_server {
  const duct__transport_ops *t;
  duct_server_opts o;
  duct__logger log;
  entry *methods; /* sorted by id once started, for bsearch */
  size_t n_methods;
  duct__listener *l;
  duct__mutex mu; /* for cv */
  duct__cond cv;  /* signalled when the last call ends while stopping */
  int started, stopped;
  duct__budget partial; /* all partly received requests together */
  size_t call_memory;   /* one call's arena cap */
  size_t queue_cap;     /* bytes one connection may have queued */
  /* Read by every call, so atomics rather than `mu`: a call touches no lock
   * that its own connection does not need. */
  atomic_int stopping;
  atomic_int inflight; /* calls between dispatch and reply */
};

/* The server's record of one connection (the transport's duct__conn holds
 * the lifecycle, the idle clock and the send queue). Touched only by the
 * connection's owner, one message at a time. */
struct sconn {
  duct_server *s;
  duct__conn *c;
  duct_peer peer;
  duct__session sess; /* HELLO, limits, reassembly (runtime/session.h) */
  duct__arena arena;
};

struct duct_ctx {
  sconn *sc;
  const entry *e;
  int64_t deadline; /* absolute, duct__now_ms scale; -1 none */
  char *message;    /* set by duct_ctx_fail, in the arena */
};

/* ---- in a handler ---- */

void *duct_ctx_user(const duct_ctx *ctx) { return ctx->e->user; }
const duct_peer *duct_ctx_peer(const duct_ctx *ctx) { return &ctx->sc->peer; }
const duct_method *duct_ctx_method(const duct_ctx *ctx) { return ctx->e->m; }
ProtobufCAllocator *duct_ctx_allocator(duct_ctx *ctx) { return &ctx->sc->arena.pc; }
void *duct_ctx_alloc(duct_ctx *ctx, size_t size) {
  return duct__arena_alloc(&ctx->sc->arena, size);
}

int64_t duct_ctx_remaining_ms(const duct_ctx *ctx) {
  if (ctx->deadline < 0)
    return -1;
  int64_t left = ctx->deadline - duct__now_ms();
  return left > 0 ? left : 0;
}

char *duct_ctx_strdup(duct_ctx *ctx, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = duct_ctx_alloc(ctx, n);
  if (d)
    memcpy(d, s, n);
  return d;
}

duct_code duct_ctx_fail(duct_ctx *ctx, duct_code code, const char *fmt, ...) {
  char buf[DUCT__MAX_ERROR_TEXT + 1];
  va_list ap;
  va_start(ap, fmt);
  duct__utf8_vformat(buf, sizeof buf, fmt, ap); /* cut between characters */
  va_end(ap);
  ctx->message = duct_ctx_strdup(ctx, buf);
  return code;
}

/* ---- sending ---- */

static int send_text(sconn *sc, uint8_t type, uint32_t call, uint32_t method,
                     duct_code code, const char *text) {
  uint8_t msg[DUCT__TEXT_MSG_MAX];
  size_t n = duct__wire_text(msg, type, call, method, code, text);
  duct__iov iov = {msg, n};
  return sc->s->t->conn_send(sc->c, &iov, 1) == DUCT_OK ? 0 : -1;
}

/* A GOAWAY that never waits: for connections this thread does not own. */
static void goaway_nowait(duct_server *s, duct__conn *c, duct_code code, const char *text) {
  uint8_t msg[DUCT__TEXT_MSG_MAX];
  size_t n = duct__wire_text(msg, DUCT__GOAWAY, 0, 0, code, text);
  duct__iov iov = {msg, n};
  s->t->conn_send_nowait(c, &iov, 1);
}

/* Ends a connection for a protocol violation: one log line naming the
 * peer and the rule, a GOAWAY telling the peer the same (best effort). */
static int violation(sconn *sc, duct_code code, const char *why) {
  duct__log(&sc->s->log, DUCT_LOG_WARN, "closing connection from pid %u (user %s): %s",
            (unsigned)sc->peer.pid, sc->peer.user, why);
  send_text(sc, DUCT__GOAWAY, 0, 0, code, why);
  return -1;
}

static duct_code reply_sink(void *ctx, const duct__iov *iov, int n, int last) {
  sconn *sc = ctx;
  (void)last;
  return sc->s->t->conn_send(sc->c, iov, n);
}

/* Sends a packed reply as RESPONSE frames. `payload` has header room. */
static int send_reply(sconn *sc, const duct__frame *req, uint8_t *payload, size_t len) {
  duct__frame tmpl = {DUCT__VERSION, DUCT__RESPONSE, 0, req->call_id, req->method_id,
                      DUCT_OK, 0, 0};
  return duct__session_send(&sc->sess, &tmpl, payload, len, reply_sink, sc) == DUCT_OK ? 0 : -1;
}

/* ---- dispatch ---- */

static int by_id(const void *key, const void *elem) {
  uint32_t id = *(const uint32_t *)key, other = ((const entry *)elem)->m->id;
  return id < other ? -1 : id > other;
}

static const entry *find_method(const duct_server *s, uint32_t id) {
  return bsearch(&id, s->methods, s->n_methods, sizeof *s->methods, by_id);
}

/* Runs one complete request and answers it. Returns -1 only when the
 * connection must close (the reply could not be sent). */
static int run_call(sconn *sc, const duct__frame *h, const uint8_t *data, size_t len,
                    int64_t started) {
  duct_server *s = sc->s;
  duct_ctx ctx = {sc, NULL, -1, NULL};
  duct_code code;
  char why[160];
  const char *text = NULL;

  if (h->deadline_ms) {
    ctx.deadline = started + h->deadline_ms;
    if (duct__now_ms() >= ctx.deadline) {
      text = "the deadline expired before the call started";
      code = DUCT_DEADLINE_EXCEEDED;
      goto fail;
    }
  }
  ctx.e = find_method(s, h->method_id);
  if (!ctx.e) {
    snprintf(why, sizeof why, "no method with id 0x%08x on this server",
             (unsigned)h->method_id);
    text = why;
    code = DUCT_UNIMPLEMENTED;
    goto fail;
  }
  const duct_method *m = ctx.e->m;
  if (s->o.authorize) {
    code = s->o.authorize(s->o.authorize_user, &sc->peer, m);
    if (code != DUCT_OK) {
      snprintf(why, sizeof why, "%s refused for pid %u (user %s)", m->name,
               (unsigned)sc->peer.pid, sc->peer.user);
      text = why;
      goto fail;
    }
  }
  ProtobufCMessage *req = protobuf_c_message_unpack(m->input, &sc->arena.pc, len, data);
  if (!req) {
    /* protobuf-c says NULL for both; only the arena knows which it was. */
    if (sc->arena.over_limit) {
      snprintf(why, sizeof why,
               "unpacking the request needs more than the %zu bytes one call may "
               "use (max_call_memory)", s->call_memory);
      duct__log(&s->log, DUCT_LOG_WARN, "refusing %s from pid %u: %s", m->name,
                (unsigned)sc->peer.pid, why);
      text = why;
      code = DUCT_RESOURCE_EXHAUSTED;
    } else if (sc->arena.out_of_memory) {
      text = "out of memory unpacking the request";
      code = DUCT_RESOURCE_EXHAUSTED;
    } else {
      snprintf(why, sizeof why, "request does not parse as %s", m->input->name);
      text = why;
      code = DUCT_INVALID_ARGUMENT;
    }
    goto fail;
  }
  ProtobufCMessage *reply = duct__arena_alloc(&sc->arena, m->output->sizeof_message);
  if (!reply) {
    text = "out of memory for the reply";
    code = DUCT_RESOURCE_EXHAUSTED;
    goto fail;
  }
  protobuf_c_message_init(m->output, reply);

  code = m->invoke(ctx.e->handlers, &ctx, req, reply);
  if (code != DUCT_OK) {
    if ((unsigned)code >= DUCT_CODE_COUNT)
      code = DUCT_UNKNOWN; /* a handler returned something that is no code */
    text = ctx.message;
    goto fail;
  }
  size_t n = protobuf_c_message_get_packed_size(reply);
  if (n > sc->sess.peer_max_message) {
    snprintf(why, sizeof why, "reply of %zu bytes exceeds the client's limit of %u",
             n, (unsigned)sc->sess.peer_max_message);
    text = why;
    code = DUCT_RESOURCE_EXHAUSTED;
    goto fail;
  }
  /* A reply must fit the connection's send queue with its headers, in
   * case the client reads it slowly. */
  if (n + duct__frag_count(n, sc->sess.peer_max_frame) * DUCT__HEADER_SIZE > s->queue_cap) {
    snprintf(why, sizeof why, "reply of %zu bytes exceeds the server's send limit of %zu",
             n, s->queue_cap);
    text = why;
    code = DUCT_RESOURCE_EXHAUSTED;
    goto fail;
  }
  uint8_t *buf = duct__arena_alloc(&sc->arena, DUCT__HEADER_SIZE + n);
  if (!buf) {
    text = "out of memory for the reply";
    code = DUCT_RESOURCE_EXHAUSTED;
    goto fail;
  }
  protobuf_c_message_pack(reply, buf + DUCT__HEADER_SIZE);
  return send_reply(sc, h, buf + DUCT__HEADER_SIZE, n);

fail:
  return send_text(sc, DUCT__RESPONSE, h->call_id, h->method_id, code,
                   text ? text : duct_code_message(code));
}

static void set_partial(sconn *sc, int64_t since) { atomic_store(&sc->c->partial_since, since); }

/* Wakes duct_server_stop when the last call in flight ends during a stop.
 * The decrement comes before the read of `stopping` (both sequentially
 * consistent), so a stop that began earlier always sees the decrement or
 * gets this broadcast; its wait is bounded by the drain time regardless. */
static void call_done(duct_server *s) {
  if (atomic_fetch_sub(&s->inflight, 1) == 1 && atomic_load(&s->stopping)) {
    duct__mutex_lock(&s->mu);
    duct__cond_broadcast(&s->cv);
    duct__mutex_unlock(&s->mu);
  }
}

static int on_hello(sconn *sc, const duct__frame *f, const uint8_t *payload) {
  char why[DUCT__MAX_ERROR_TEXT];
  duct_code rc = duct__session_hello(&sc->sess, payload, f->payload_len, MIN_PEER_FRAME,
                                     "client", why, sizeof why);
  if (rc != DUCT_OK)
    return violation(sc, rc, why);
  uint8_t msg[DUCT__HELLO_MSG_SIZE];
  duct__wire_hello(msg, DUCT__DEFAULT_MAX_FRAME, sc->s->o.max_message_size);
  duct__iov iov = {msg, sizeof msg};
  if (sc->s->t->conn_send(sc->c, &iov, 1) != DUCT_OK)
    return -1;
  set_partial(sc, 0);
  return 0;
}

/* Called by the transport with one whole message; one at a time per
 * connection, so the receive state needs no lock. */
static int on_message(void *state, const uint8_t *msg, size_t len) {
  sconn *sc = state;
  duct_server *s = sc->s;
  duct__frame f;
  const char *why;
  duct_code rc = duct__frame_decode(msg, len, &f, &why);
  if (rc != DUCT_OK) {
    if (rc == DUCT_FAILED_PRECONDITION) {
      char text[96];
      snprintf(text, sizeof text, "protocol version %u is not supported; this server speaks %u",
               f.version, DUCT__VERSION);
      return violation(sc, rc, text);
    }
    return violation(sc, rc, why);
  }
  const uint8_t *payload = msg + DUCT__HEADER_SIZE;
  if (!sc->sess.hello_done)
    return f.type == DUCT__HELLO ? on_hello(sc, &f, payload)
                                 : violation(sc, DUCT_INTERNAL, "first frame is not HELLO");

  switch (f.type) {
  case DUCT__REQUEST:
    break;
  case DUCT__CANCEL:
    /* Calls run to completion inside this callback, so a CANCEL always
     * names a call that is already answered (or never started): nothing
     * to do. */
    return 0;
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
  rc = duct__reasm_feed(&sc->sess.rx, &f, payload, &m, &why);
  if (rc == DUCT_INTERNAL)
    return violation(sc, rc, why);
  const char *exhausted = rc == DUCT_RESOURCE_EXHAUSTED ? why : NULL;
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
  /* Announce the call, then look at `stopping`: duct_server_stop does the
   * opposite (sets `stopping`, then looks at `in_call`), so with these
   * sequentially consistent operations at least one side sees the other:
   * either this call is refused here, or stop lets it finish. */
  atomic_fetch_add(&s->inflight, 1);
  atomic_store(&sc->c->in_call, 1);
  int stopping = atomic_load(&s->stopping);
  if (stopping) {
    atomic_store(&sc->c->in_call, 0);
    call_done(s);
  }

  int r;
  if (stopping) {
    r = send_text(sc, DUCT__RESPONSE, m.hdr.call_id, m.hdr.method_id, DUCT_UNAVAILABLE,
                  "the server is stopping");
  } else if (rc == DUCT_RESOURCE_EXHAUSTED) {
    char text[160];
    if (sc->sess.rx.budget && strstr(exhausted, "budget")) {
      snprintf(text, sizeof text, "the server's memory for partly received requests "
               "(max_partial_memory, %zu bytes) is in use; try again",
               s->partial.limit);
      duct__log(&s->log, DUCT_LOG_WARN, "refusing a request from pid %u: %s",
                (unsigned)sc->peer.pid, text);
    } else {
      snprintf(text, sizeof text, "request exceeds the server's maximum message size of %u bytes",
               (unsigned)s->o.max_message_size);
    }
    r = send_text(sc, DUCT__RESPONSE, m.hdr.call_id, m.hdr.method_id, rc, text);
  } else {
    r = run_call(sc, &m.hdr, m.data, m.len, started);
  }
  duct__arena_reset(&sc->arena);

  if (!stopping) {
    atomic_store(&sc->c->in_call, 0);
    call_done(s);
  }
  stopping = atomic_load(&s->stopping);
  if (stopping && r == 0) {
    /* Answered the last call this connection gets: tell the client why
     * the connection ends so its next call reconnects elsewhere. The
     * connection stays until the reply and this are written (or the
     * drain ends): duct_server_stop closes it. */
    send_text(sc, DUCT__GOAWAY, 0, 0, DUCT_UNAVAILABLE, "the server is stopping");
  }
  /* Answered: the client now waits for this reply (one call in flight per
   * connection), so the transport need not look for another message. */
  return r == 0 ? 1 : r;
}

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
  sc->peer = *peer;
  duct__session_init(&sc->sess, s->o.max_message_size, &s->partial);
  duct__arena_init(&sc->arena, ARENA_KEEP);
  duct__arena_set_limit(&sc->arena, s->call_memory);
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
  duct__session_free(&sc->sess);
  duct__arena_free(&sc->arena);
  duct__free(sc);
}

/* A connection is closed to admit a new one at max_connections: it was
 * idle, so its client loses nothing but is told why. Any thread: only the
 * connection itself (not the owner's sconn) is touched. */
static void on_evict(void *state, const char *why) {
  sconn *sc = state;
  duct__log(&sc->s->log, DUCT_LOG_INFO, "closing connection from pid %u: %s",
            (unsigned)sc->peer.pid, why);
  goaway_nowait(sc->s, sc->c, DUCT_RESOURCE_EXHAUSTED, why);
}

/* The transport refuses a frame itself (over max_frame): say so, as for
 * any other violation. */
static void on_violation(void *state, duct_code code, const char *why) {
  sconn *sc = state;
  duct__log(&sc->s->log, DUCT_LOG_WARN, "closing connection from pid %u (user %s): %s",
            (unsigned)sc->peer.pid, sc->peer.user, why);
  goaway_nowait(sc->s, sc->c, code, why);
}

static const duct__srv_cb callbacks = {.open = on_open,
                                       .message = on_message,
                                       .closed = on_closed,
                                       .evict = on_evict,
                                       .violation = on_violation};

/* ---- lifecycle ---- */

/* Copies s for a log line with control characters shown as '?', so an
 * address given by mistake cannot break or forge log lines. */
static const char *printable(char *buf, size_t cap, const char *s) {
  size_t i = 0;
  for (; s[i] && i + 1 < cap; i++)
    buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
  buf[i] = '\0';
  return buf;
}

duct_code duct_server_new(const duct_server_opts *o, duct_server **out) {
  return duct__server_new_with(o, &duct__platform_transport, out);
}

duct_code duct__server_new_with(const duct_server_opts *o,
                                const duct__transport_ops *t,
                                duct_server **out) {
  duct_server_opts d = {0};
  if (o)
    d = *o;
  /* No server yet: refusals go to the log the options name. */
  duct__logger lg = {d.log, d.log_user};
  if (!out) {
    duct__log(&lg, DUCT_LOG_ERROR, "duct_server_new: out is NULL");
    return DUCT_INVALID_ARGUMENT;
  }
  *out = NULL;
  if (d.workers < 0 || d.workers > MAX_WORKERS) {
    duct__log(&lg, DUCT_LOG_ERROR,
              "duct_server_new: option workers = %d is out of range; accepted: 0 "
              "(one per core) or 1..%d",
              d.workers, MAX_WORKERS);
    return DUCT_INVALID_ARGUMENT;
  }
  if (d.max_message_size && d.max_message_size < MIN_MAX_MESSAGE) {
    duct__log(&lg, DUCT_LOG_ERROR,
              "duct_server_new: option max_message_size = %u is out of range; "
              "accepted: 0 (4 MiB) or %u..4294967295 bytes",
              (unsigned)d.max_message_size, MIN_MAX_MESSAGE);
    return DUCT_INVALID_ARGUMENT;
  }
  if (!d.workers)
    d.workers = duct__cpu_count();
  if (!d.max_connections)
    d.max_connections = DEFAULT_MAX_CONNECTIONS;
  if (!d.max_message_size)
    d.max_message_size = DUCT__DEFAULT_MAX_MESSAGE;
  if (!d.idle_timeout_ms)
    d.idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
  if (!d.max_partial_memory)
    d.max_partial_memory = DEFAULT_MAX_PARTIAL_MEMORY;
  if (d.max_partial_memory < d.max_message_size) {
    duct__log(&lg, DUCT_LOG_ERROR,
              "duct_server_new: option max_partial_memory = %zu is out of range; "
              "accepted: 0 (64 MiB) or at least max_message_size (%u)",
              d.max_partial_memory, (unsigned)d.max_message_size);
    return DUCT_INVALID_ARGUMENT;
  }
  if (d.max_call_memory && d.max_call_memory < MIN_CALL_MEMORY) {
    duct__log(&lg, DUCT_LOG_ERROR,
              "duct_server_new: option max_call_memory = %zu is out of range; "
              "accepted: 0 (4 x max_message_size) or at least %zu bytes",
              d.max_call_memory, MIN_CALL_MEMORY);
    return DUCT_INVALID_ARGUMENT;
  }
  if (!d.max_call_memory) {
    d.max_call_memory = (size_t)d.max_message_size * CALL_MEMORY_FACTOR;
    if (d.max_call_memory < MIN_CALL_MEMORY)
      d.max_call_memory = MIN_CALL_MEMORY;
  }
  duct_server *s = duct__calloc(1, sizeof *s);
  if (!s)
    return DUCT_RESOURCE_EXHAUSTED;
  s->t = t;
  s->o = d;
  atomic_init(&s->partial.used, 0);
  s->partial.limit = d.max_partial_memory;
  s->call_memory = d.max_call_memory;
  /* Room for one whole reply of the largest size a request may have, with
   * its frame headers, and some: replies past it are refused up front. */
  s->queue_cap = (size_t)d.max_message_size * 2 + 64u * 1024u;
  s->log.cb = d.log;
  s->log.user = d.log_user;
  duct__mutex_init(&s->mu);
  duct__cond_init(&s->cv);
  *out = s;
  return DUCT_OK;
}

duct_code duct_server_add(duct_server *s, const duct_service *svc, const void *handlers,
                          void *user) {
  if (!s || !svc || !handlers || (svc->n_methods && !svc->methods))
    return DUCT_INVALID_ARGUMENT;
  if (s->started || s->l)
    return DUCT_FAILED_PRECONDITION;
  for (size_t i = 0; i < svc->n_methods; i++) {
    const duct_method *m = &svc->methods[i];
    if (!m->name || !m->input || !m->output || !m->invoke || m->id == 0 ||
        m->id != duct__method_id(m->name)) {
      /* A hand-written or stale descriptor would route calls wrongly. */
      duct__log(&s->log, DUCT_LOG_ERROR, "service %s: method %s has a bad descriptor",
                svc->name, m->name ? m->name : "(null)");
      return DUCT_INVALID_ARGUMENT;
    }
    for (size_t j = 0; j < s->n_methods; j++) {
      if (s->methods[j].m->id == m->id) {
        duct__log(&s->log, DUCT_LOG_ERROR, "method id 0x%08x of %s is already taken by %s",
                  (unsigned)m->id, m->name, s->methods[j].m->name);
        return DUCT_ALREADY_EXISTS;
      }
    }
    for (size_t j = 0; j < i; j++) {
      if (svc->methods[j].id == m->id)
        return DUCT_ALREADY_EXISTS;
    }
  }
  entry *grown = duct__realloc(s->methods, (s->n_methods + svc->n_methods) * sizeof *grown);
  if (!grown && svc->n_methods)
    return DUCT_RESOURCE_EXHAUSTED;
  s->methods = grown;
  for (size_t i = 0; i < svc->n_methods; i++) {
    entry e = {&svc->methods[i], handlers, user};
    /* Insertion keeps the table sorted by id for bsearch. */
    size_t k = s->n_methods++;
    while (k > 0 && s->methods[k - 1].m->id > e.m->id) {
      s->methods[k] = s->methods[k - 1];
      k--;
    }
    s->methods[k] = e;
  }
  return DUCT_OK;
}

duct_code duct_server_listen(duct_server *s, const char *address) {
  if (!s)
    return DUCT_INVALID_ARGUMENT;
  if (!address) {
    duct__log(&s->log, DUCT_LOG_ERROR, "cannot listen: the address is NULL");
    return DUCT_INVALID_ARGUMENT;
  }
  if (s->l || s->stopped)
    return DUCT_FAILED_PRECONDITION;
  duct__listen_opts lo = {
      .workers = s->o.workers,
      .max_frame = DUCT__DEFAULT_MAX_FRAME,
      .max_connections = s->o.max_connections,
      .idle_timeout_ms = s->o.idle_timeout_ms,
      .queue_cap = s->queue_cap,
      .allow_group = s->o.allow_group,
      .sddl = s->o.sddl,
      .null_dacl = s->o.null_dacl_i_understand_anyone_can_connect,
      .allow_remote = s->o.allow_remote_clients,
  };
  duct__err err = {{0}};
  duct_code rc = s->t->listen(address, &lo, &callbacks, s, &s->l, &err);
  if (rc != DUCT_OK) {
    s->l = NULL;
    /* Refused addresses included: the transport's text says what the
     * address looks like and what to write instead. */
    char shown[200];
    duct__log(&s->log, DUCT_LOG_ERROR, "cannot listen on %s: %s",
              printable(shown, sizeof shown, address),
              err.text[0] ? err.text : duct_code_message(rc));
  }
  return rc;
}

duct_code duct_server_start(duct_server *s) {
  if (!s)
    return DUCT_INVALID_ARGUMENT;
  if (!s->l || s->started)
    return DUCT_FAILED_PRECONDITION;
  duct_code rc = s->t->listener_start(s->l);
  if (rc == DUCT_OK)
    s->started = 1;
  return rc;
}

/* Stop, for each connection: one with no call running, nothing half
 * received and no reply waiting to be read is told GOAWAY and closed now
 * (never waiting on it); the others get the drain to finish. Touches only
 * the duct__conn: its sconn belongs to the owner thread. */
static void stop_idle(duct__conn *c, void *arg) {
  duct_server *s = arg;
  if (atomic_load(&c->in_call) || atomic_load(&c->partial_since) ||
      atomic_load(&c->q_since))
    return;
  goaway_nowait(s, c, DUCT_UNAVAILABLE, "the server is stopping");
  s->t->conn_close(c, DUCT_UNAVAILABLE, "the server is stopping");
}

static void count_queued(duct__conn *c, void *arg) {
  if (atomic_load(&c->q_since))
    ++*(int *)arg;
}

duct_code duct_server_stop(duct_server *s, int drain_ms) {
  if (!s)
    return DUCT_INVALID_ARGUMENT;
  if (s->stopped)
    return DUCT_OK;
  if (!s->l) {
    s->stopped = 1;
    return DUCT_OK;
  }
  int64_t until = duct__now_ms() + (drain_ms > 0 ? drain_ms : 0);
  s->t->listener_stop_accepting(s->l);
  /* Set `stopping`, then look at each connection's in_call: on_message
   * does the opposite, so every call is either refused there or seen here
   * (both sequentially consistent). No lock is held while saying GOAWAY,
   * and the GOAWAY never waits for a peer. */
  atomic_store(&s->stopping, 1);
  s->t->listener_each(s->l, stop_idle, s);

  /* Calls in flight may finish until the drain ends... */
  duct__mutex_lock(&s->mu);
  while (atomic_load(&s->inflight) > 0 && duct__now_ms() < until)
    duct__cond_wait(&s->cv, &s->mu, until);
  duct__mutex_unlock(&s->mu);
  int abandoned = atomic_load(&s->inflight);
  /* ...and their replies may be taken by their clients. Nothing signals
   * an emptied queue to the server, so this looks every 10 ms, within the
   * same drain. */
  int queued = 0;
  while (!abandoned) {
    queued = 0;
    s->t->listener_each(s->l, count_queued, &queued);
    if (!queued || duct__now_ms() >= until)
      break;
    duct__mutex_lock(&s->mu);
    int64_t next = duct__now_ms() + 10;
    duct__cond_wait(&s->cv, &s->mu, next < until ? next : until);
    duct__mutex_unlock(&s->mu);
  }
  if (abandoned)
    duct__log(&s->log, DUCT_LOG_WARN,
              "stop: %d call(s) still running after %d ms; closing their "
              "connections (their handlers are waited for)", abandoned, drain_ms);
  else if (queued)
    duct__log(&s->log, DUCT_LOG_WARN,
              "stop: %d client(s) had not read their replies after %d ms; closing",
              queued, drain_ms);
  /* Closes every connection and joins the workers: handlers still running
   * finish first, nothing else waits on a peer. */
  s->t->listener_free(s->l);
  s->l = NULL;
  s->stopped = 1;
  return DUCT_OK;
}

void duct_server_free(duct_server *s) {
  if (!s)
    return;
  if (s->l)
    duct_server_stop(s, 0);
  duct__free(s->methods);
  duct__cond_destroy(&s->cv);
  duct__mutex_destroy(&s->mu);
  duct__free(s);
}
