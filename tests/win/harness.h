/* tests/win/harness.h - a small test core for the Windows transport
 * tests: it records what the transport delivers and answers according to
 * a mode, signalling Win32 events so tests wait on events, not sleeps. */
#ifndef DUCT_TESTS_WIN_HARNESS_H
#define DUCT_TESTS_WIN_HARNESS_H

#include <windows.h>

#include <process.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/conn.h"
#include "runtime/sys.h"
#include "runtime/transport.h"

enum tmode {
  T_ECHO,   /* send each message back */
  T_SILENT, /* never answer */
  T_BIG,    /* answer with big_len bytes of pattern */
  T_DOUBLE, /* send each message back twice */
  T_FLOOD,  /* answer with 64 sends of 64 KiB, stopping at a failure */
};

typedef struct tcore {
  enum tmode mode;
  size_t big_len;
  HANDLE opened, closed, got_msg, ticked, sent;
  volatile LONG nopen, nclosed, nmsg, nticks, nviolations;
  uint32_t peer_pid;
  char peer_user[192];
  int peer_user_null;
  duct_code why;
  duct_code violation_code;
  size_t last_len;
  duct_code send_rc;
  duct__conn *last_conn;
} tcore;

typedef struct tconn {
  tcore *core;
  duct__conn *c;
} tconn;

static inline void *t_open(void *core, duct__conn *c, const duct_peer *p) {
  tcore *t = core;
  tconn *tc = calloc(1, sizeof *tc);
  tc->core = t;
  tc->c = c;
  t->peer_pid = p->pid;
  t->peer_user_null = p->user == NULL;
  if (p->user != NULL)
    snprintf(t->peer_user, sizeof t->peer_user, "%s", p->user);
  t->last_conn = c;
  /* No HELLO in this core: the wait for it (conn.c counts it as a partial
   * message) ends here, so the idle timeout applies only to the queue. */
  atomic_store(&c->partial_since, 0);
  InterlockedIncrement(&t->nopen);
  SetEvent(t->opened);
  return tc;
}

static inline uint8_t t_pattern(size_t i) { return (uint8_t)(i * 7 + 3); }

static inline int t_message(void *state, const uint8_t *msg, size_t len) {
  tconn *tc = state;
  tcore *t = tc->core;
  t->last_len = len;
  InterlockedIncrement(&t->nmsg);
  duct__iov iov = {msg, len};
  switch (t->mode) {
  case T_ECHO:
    t->send_rc = duct__conn_send(tc->c, &iov, 1);
    break;
  case T_DOUBLE:
    t->send_rc = duct__conn_send(tc->c, &iov, 1);
    if (t->send_rc == DUCT_OK)
      t->send_rc = duct__conn_send(tc->c, &iov, 1);
    SetEvent(t->sent);
    break;
  case T_BIG: {
    uint8_t *b = malloc(t->big_len);
    for (size_t i = 0; i < t->big_len; i++)
      b[i] = t_pattern(i);
    /* Two pieces, to exercise gathering. */
    duct__iov two[2] = {{b, 10}, {b + 10, t->big_len - 10}};
    t->send_rc = duct__conn_send(tc->c, two, 2);
    free(b);
    break;
  }
  case T_FLOOD: {
    static uint8_t chunk[65536];
    duct__iov c = {chunk, sizeof chunk};
    for (int i = 0; i < 64; i++)
      if ((t->send_rc = duct__conn_send(tc->c, &c, 1)) != DUCT_OK)
        break;
    SetEvent(t->sent);
    break;
  }
  case T_SILENT:
    break;
  }
  SetEvent(t->got_msg);
  return 0;
}

static inline void t_closed(void *state, duct_code why, const char *detail) {
  tconn *tc = state;
  tcore *t = tc->core;
  (void)detail;
  t->why = why;
  free(tc);
  InterlockedIncrement(&t->nclosed);
  SetEvent(t->closed);
}

static inline void t_tick(void *core) {
  tcore *t = core;
  InterlockedIncrement(&t->nticks);
  SetEvent(t->ticked);
}

/* A message over max_frame: the transport tells the core before closing. */
static inline void t_violation(void *state, duct_code code, const char *why) {
  tconn *tc = state;
  (void)why;
  tc->core->violation_code = code;
  InterlockedIncrement(&tc->core->nviolations);
}

static const duct__srv_cb t_cb = {.open = t_open,
                                  .message = t_message,
                                  .closed = t_closed,
                                  .violation = t_violation,
                                  .tick = t_tick};

static inline void t_init(tcore *t, enum tmode mode) {
  memset(t, 0, sizeof *t);
  t->mode = mode;
  t->opened = CreateEventW(NULL, FALSE, FALSE, NULL);
  t->closed = CreateEventW(NULL, FALSE, FALSE, NULL);
  t->got_msg = CreateEventW(NULL, FALSE, FALSE, NULL);
  t->ticked = CreateEventW(NULL, FALSE, FALSE, NULL);
  t->sent = CreateEventW(NULL, FALSE, FALSE, NULL);
}

static inline void t_fini(tcore *t) {
  CloseHandle(t->opened);
  CloseHandle(t->closed);
  CloseHandle(t->got_msg);
  CloseHandle(t->ticked);
  CloseHandle(t->sent);
}

static inline duct__listen_opts t_opts(void) {
  duct__listen_opts o;
  memset(&o, 0, sizeof o);
  o.workers = 2;
  o.max_frame = 65536;
  o.max_connections = 1024;
  /* What duct_server uses for a 64 KiB max message (server/server.c). */
  o.queue_cap = 2 * 65536 + 65536;
  o.idle_timeout_ms = 10000;
  return o;
}

/* A pipe name no other test (or test run) uses. */
static inline const char *t_name(char *buf, size_t cap, const char *what) {
  static volatile LONG seq;
  snprintf(buf, cap, "duct-test-%s-%lu-%ld", what,
           (unsigned long)GetCurrentProcessId(), InterlockedIncrement(&seq));
  return buf;
}

static inline int64_t t_deadline(int64_t ms) { return duct__now_ms() + ms; }

#endif
