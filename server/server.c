/* duct_server: the platform-neutral half of the server. The transport
 * (runtime/posix or runtime/win) accepts connections, runs the worker
 * threads and hands over whole messages; server/ speaks the protocol on
 * them (server/core.h lists its files). This file is the server's
 * lifecycle: its options and their limits, adding services (the method
 * table dispatch.c looks requests up in), listening, starting, the
 * graceful stop and freeing. */
#include "duct/server.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/alloc.h"
#include "runtime/arena.h"
#include "runtime/frame.h"
#include "runtime/log.h"
#include "runtime/sys.h"
#include "runtime/transport.h"
#include "server/core.h"
#include "server/internal.h"

#define DEFAULT_MAX_CONNECTIONS 1024u
#define DEFAULT_IDLE_TIMEOUT_MS 10000u
#define DEFAULT_MAX_CALLS 1024u
/* Accepted option ranges (duct/server.h, docs/GUIDE.md). A max_message_size
 * under 1 KiB is refused rather than obeyed: it is nearly always a unit
 * mistake (KiB meant, bytes given), and would make ordinary calls fail
 * with RESOURCE_EXHAUSTED in a way that looks like a bug. client/channel.c
 * uses the same floor. */
#define MIN_MAX_MESSAGE 1024u
#define MAX_WORKERS 1024
/* Memory budgets (duct/server.h): all partly received messages together,
 * and one call's arena as a multiple of max_message_size. */
#define DEFAULT_MAX_PARTIAL_MEMORY ((size_t)64 * 1024 * 1024)
#define CALL_MEMORY_FACTOR 4u
#define MIN_CALL_MEMORY ((size_t)1024 * 1024)

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
  if (!d.max_calls_per_connection)
    d.max_calls_per_connection = DEFAULT_MAX_CALLS;
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
  /* Reflection is on unless refused: a client learns nothing from it that
   * the .proto files would not tell, and the authorize hook still decides
   * who may call it (docs/GUIDE.md, "Reflection"). Added first, so it
   * lists first. */
  if (!d.disable_reflection) {
    duct_code rc = duct__reflection_register(s);
    if (rc != DUCT_OK) {
      duct_server_free(s);
      return rc;
    }
  }
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
    int callable = m->kind == DUCT_UNARY ? m->invoke != NULL
                   : m->kind <= DUCT_BIDI_STREAMING && m->invoke_stream != NULL;
    if (!m->name || !m->input || !m->output || !callable || m->id == 0 ||
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
  /* Both tables grow before either changes, so a failure leaves the
   * server as it was. */
  const duct_service **svcs =
      duct__realloc(s->services, (s->n_services + 1) * sizeof *svcs);
  if (!svcs)
    return DUCT_RESOURCE_EXHAUSTED;
  s->services = svcs;
  entry *grown = duct__realloc(s->methods, (s->n_methods + svc->n_methods) * sizeof *grown);
  if (!grown && svc->n_methods)
    return DUCT_RESOURCE_EXHAUSTED;
  s->methods = grown;
  s->services[s->n_services++] = svc;
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
  duct_code rc = s->t->listen(address, &lo, &duct__srv_callbacks, s, &s->l, &err);
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
  duct__srv_goaway_nowait(s, c, DUCT_UNAVAILABLE, "the server is stopping");
  s->t->conn_close(c, DUCT_UNAVAILABLE, "the server is stopping");
}

static void count_queued(duct__conn *c, void *arg) {
  if (atomic_load(&c->q_since))
    ++*(int *)arg;
}

static int is_stream(duct_ctx *x, void *arg) {
  (void)arg;
  return x->kind != DUCT_UNARY;
}

/* Every connection, each with a reference, for a walk without s->mu. */
static sconn **all_conns(duct_server *s, size_t *n) {
  sconn **all = NULL;
  size_t cap = 0;
  return duct__srv_conns_snapshot(s, &all, &cap, n);
}

/* Cancels the open calls of every connection that `pick` chooses; their
 * clients are told UNAVAILABLE. */
static void cancel_all(duct_server *s, int (*pick)(duct_ctx *, void *)) {
  size_t n;
  sconn **all = all_conns(s, &n);
  for (size_t i = 0; i < n; i++) {
    duct__srv_cancel_calls(all[i], pick, NULL, BY_STOP);
    duct__srv_conn_unref(all[i]);
  }
  duct__free(all);
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
  /* Set `stopping`, then look at each connection's in_call: on_request
   * (dispatch.c) does the opposite (both sequentially consistent), so every
   * call is either refused there or seen here. */
  atomic_store(&s->stopping, 1);
  /* Streams have no end a stop could wait for (a subscription runs until
   * told): they end now, their clients told UNAVAILABLE, their handlers
   * cancelled. Unary calls get the drain to finish. */
  cancel_all(s, is_stream);
  /* No lock is held while saying GOAWAY, and the GOAWAY never waits. */
  s->t->listener_each(s->l, stop_idle, s);

  duct__mutex_lock(&s->mu);
  while (atomic_load(&s->inflight) > 0 && duct__now_ms() < until)
    duct__cond_wait(&s->cv, &s->mu, until);
  duct__mutex_unlock(&s->mu);
  int abandoned = atomic_load(&s->inflight);
  if (abandoned) {
    /* Past the drain: the handlers still running are cancelled (those
     * that watch duct_ctx_cancelled return now) and their late replies
     * dropped. */
    duct__log(&s->log, DUCT_LOG_WARN,
              "stop: %d handler(s) still running after %d ms; cancelling their calls",
              abandoned, drain_ms);
    cancel_all(s, NULL);
  }
  /* Replies and final statuses may be taken by their clients. Nothing
   * signals an emptied queue to the server, so this looks every 10 ms,
   * within the same drain. */
  int queued = 0;
  for (;;) {
    queued = 0;
    s->t->listener_each(s->l, count_queued, &queued);
    if (!queued || duct__now_ms() >= until)
      break;
    duct__mutex_lock(&s->mu);
    int64_t next = duct__now_ms() + 10;
    duct__cond_wait(&s->cv, &s->mu, next < until ? next : until);
    duct__mutex_unlock(&s->mu);
  }
  if (queued)
    duct__log(&s->log, DUCT_LOG_WARN,
              "stop: %d client(s) had not read their replies after %d ms; closing",
              queued, drain_ms);
  /* Closes every connection and joins the workers (unary handlers still
   * running finish first); then the stream handlers' own threads. */
  s->t->listener_free(s->l);
  s->l = NULL;
  duct__mutex_lock(&s->mu);
  while (atomic_load(&s->inflight) > 0)
    duct__cond_wait(&s->cv, &s->mu, -1);
  duct__mutex_unlock(&s->mu);
  s->stopped = 1;
  return DUCT_OK;
}

void duct_server_free(duct_server *s) {
  if (!s)
    return;
  if (s->l)
    duct_server_stop(s, 0);
  /* Connections whose streams the application never finished: their
   * handles end here (duct/server.h). */
  while (s->conns) {
    sconn *sc = s->conns;
    s->conns = sc->snext;
    while (sc->calls) {
      duct_ctx *x = sc->calls;
      sc->calls = x->next;
      for (rxnode *n = x->rxhead, *next; n; n = next) {
        next = n->next;
        duct__free(n);
      }
      duct__arena_free(&x->arena);
      duct__cond_destroy(&x->cv);
      duct__free(x);
    }
    duct__srv_conn_free(sc);
  }
  duct__free(s->methods);
  duct__free(s->services);
  duct__free(s->tick_all);
  duct__cond_destroy(&s->cv);
  duct__mutex_destroy(&s->mu);
  duct__free(s);
}
