/* Windows transport: what only message-mode named pipes have. Each test
 * runs a listener and links in this one process (under Wine in CI), and
 * waits on events with generous timeouts, so a hang fails the test
 * instead of stalling it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"
#include "runtime/frame.h"

#define WAIT_MS 10000

typedef struct server {
  tcore t;
  duct__listener *l;
  char name[96];
} server;

static void server_up(server *s, enum tmode mode, duct__listen_opts *o) {
  duct__err err = {{0}};
  duct__listen_opts d = t_opts();
  t_init(&s->t, mode);
  t_name(s->name, sizeof s->name, "tr");
  assert_int_equal(duct__listen(s->name, o ? o : &d, &t_cb, &s->t, &s->l, &err),
                   DUCT_OK);
  assert_int_equal(duct__listener_start(s->l), DUCT_OK);
}

static void server_down(server *s) {
  duct__listener_free(s->l);
  t_fini(&s->t);
}

static duct__link *connect_to(server *s) {
  duct__link *k = NULL;
  duct__err err = {{0}};
  assert_int_equal(duct__link_open(s->name, t_deadline(WAIT_MS), &k, &err),
                   DUCT_OK);
  return k;
}

/* One round trip; the peer on each side is this process. */
static void test_echo_and_peer_identity(void **state) {
  (void)state;
  server s;
  server_up(&s, T_ECHO, NULL);
  duct__link *k = connect_to(&s);
  assert_int_equal(duct__link_peer_pid(k), GetCurrentProcessId());

  uint8_t buf[64];
  size_t len = 0;
  duct__iov iov[2] = {{"hel", 3}, {"lo", 2}};
  assert_int_equal(duct__link_transact(k, iov, 2, buf, sizeof buf, &len,
                                       t_deadline(WAIT_MS)),
                   DUCT_OK);
  assert_int_equal(len, 5);
  assert_memory_equal(buf, "hello", 5);
  assert_int_equal(s.t.nopen, 1);
  assert_int_equal(s.t.peer_pid, GetCurrentProcessId());
  assert_false(s.t.peer_user_null);
  /* The client's SID, as the server saw it: a SID string, or "" where the
   * system would not say (see docs/WINDOWS.md). */
  if (s.t.peer_user[0] != '\0')
    assert_memory_equal(s.t.peer_user, "S-1-", 4);
  print_message("peer user as seen by the server: \"%s\"\n", s.t.peer_user);

  /* A second round trip on the same link, with link_send + link_recv. */
  duct__iov one = {"again", 5};
  assert_int_equal(duct__link_send(k, &one, 1, t_deadline(WAIT_MS)), DUCT_OK);
  assert_int_equal(duct__link_recv(k, buf, sizeof buf, &len,
                                   t_deadline(WAIT_MS)),
                   DUCT_OK);
  assert_int_equal(len, 5);
  assert_memory_equal(buf, "again", 5);

  /* The client leaves: closed(DUCT_OK) once. */
  duct__link_close(k);
  assert_int_equal(WaitForSingleObject(s.t.closed, WAIT_MS), WAIT_OBJECT_0);
  assert_int_equal(s.t.why, DUCT_OK);
  assert_int_equal(s.t.nclosed, 1);
  /* tick() runs about every 100 ms. */
  assert_int_equal(WaitForSingleObject(s.t.ticked, WAIT_MS), WAIT_OBJECT_0);
  server_down(&s);
  assert_int_equal(s.t.nclosed, 1);
}

/* ---- many clients at once ---- */

#define NCLIENTS 32

typedef struct crowd {
  server *s;
  HANDLE go;
  volatile LONG ok, busy, failed;
  duct_code first_fail;
  char fail_text[256];
} crowd;

static unsigned __stdcall crowd_client(void *arg) {
  crowd *c = arg;
  WaitForSingleObject(c->go, INFINITE);
  duct__link *k = NULL;
  duct__err err = {{0}};
  duct_code rc = duct__link_open(c->s->name, t_deadline(WAIT_MS), &k, &err);
  if (rc == DUCT_OK) {
    uint8_t buf[32];
    size_t len = 0;
    duct__iov iov = {"ping", 4};
    rc = duct__link_transact(k, &iov, 1, buf, sizeof buf, &len,
                             t_deadline(WAIT_MS));
    if (rc == DUCT_OK && (len != 4 || memcmp(buf, "ping", 4) != 0))
      rc = DUCT_DATA_LOSS;
    duct__link_close(k);
  }
  if (rc == DUCT_OK) {
    InterlockedIncrement(&c->ok);
  } else {
    if (InterlockedIncrement(&c->failed) == 1) {
      c->first_fail = rc;
      snprintf(c->fail_text, sizeof c->fail_text, "%s", err.text);
    }
  }
  return 0;
}

static void test_many_clients_at_once(void **state) {
  (void)state;
  server s;
  server_up(&s, T_ECHO, NULL);
  crowd c;
  memset(&c, 0, sizeof c);
  c.s = &s;
  c.go = CreateEventW(NULL, TRUE, FALSE, NULL);
  HANDLE th[NCLIENTS];
  for (int i = 0; i < NCLIENTS; i++)
    th[i] = (HANDLE)_beginthreadex(NULL, 0, crowd_client, &c, 0, NULL);
  SetEvent(c.go); /* all at once */
  assert_int_equal(WaitForMultipleObjects(NCLIENTS, th, TRUE, 30000),
                   WAIT_OBJECT_0);
  for (int i = 0; i < NCLIENTS; i++)
    CloseHandle(th[i]);
  CloseHandle(c.go);
  if (c.failed)
    print_error("first failure: %s: %s\n", duct_code_name(c.first_fail),
                c.fail_text);
  assert_int_equal(c.failed, 0);
  assert_int_equal(c.ok, NCLIENTS);
  server_down(&s);
  assert_int_equal(s.t.nclosed, NCLIENTS);
}

/* ---- ERROR_MORE_DATA, both directions ---- */

/* 64 KiB to a server whose first read is 4 KiB: the read fails with
 * ERROR_MORE_DATA and continues; the whole message arrives. Written before
 * the server reads (the pipe holds it), so the first read may complete
 * synchronously with ERROR_MORE_DATA - the packet must still come. */
static void test_big_message_to_server(void **state) {
  (void)state;
  server s;
  server_up(&s, T_ECHO, NULL);
  duct__link *k = connect_to(&s);
  size_t n = 65536;
  uint8_t *out = malloc(n), *in = malloc(n);
  for (size_t i = 0; i < n; i++)
    out[i] = t_pattern(i);
  for (int round = 0; round < 3; round++) {
    size_t len = 0;
    duct__iov iov = {out, n};
    if (round == 0) {
      assert_int_equal(duct__link_transact(k, &iov, 1, in, n, &len,
                                           t_deadline(WAIT_MS)),
                       DUCT_OK);
    } else {
      assert_int_equal(duct__link_send(k, &iov, 1, t_deadline(WAIT_MS)),
                       DUCT_OK);
      assert_int_equal(duct__link_recv(k, in, n, &len, t_deadline(WAIT_MS)),
                       DUCT_OK);
    }
    assert_int_equal(len, n);
    assert_memory_equal(in, out, n);
    assert_int_equal(s.t.last_len, n);
  }
  duct__link_close(k);
  free(out);
  free(in);
  server_down(&s);
}

/* One byte over max_frame: the server closes the connection with
 * RESOURCE_EXHAUSTED and never delivers a part of it. */
static void test_oversize_message_closes_connection(void **state) {
  (void)state;
  server s;
  server_up(&s, T_ECHO, NULL);
  duct__link *k = connect_to(&s);
  uint8_t buf[16];
  size_t len;
  duct__iov hi = {"hi", 2};
  assert_int_equal(duct__link_transact(k, &hi, 1, buf, sizeof buf, &len,
                                       t_deadline(WAIT_MS)),
                   DUCT_OK);
  size_t n = 65537;
  uint8_t *big = calloc(1, n);
  duct__iov iov = {big, n};
  assert_int_equal(duct__link_send(k, &iov, 1, t_deadline(WAIT_MS)), DUCT_OK);
  assert_int_equal(WaitForSingleObject(s.t.closed, WAIT_MS), WAIT_OBJECT_0);
  assert_int_equal(s.t.why, DUCT_RESOURCE_EXHAUSTED);
  assert_int_equal(s.t.nmsg, 1); /* only "hi" */
  /* The core was told why before the connection went. */
  assert_int_equal(s.t.nviolations, 1);
  assert_int_equal(s.t.violation_code, DUCT_RESOURCE_EXHAUSTED);
  /* The client sees the connection gone. */
  assert_int_equal(duct__link_recv(k, buf, sizeof buf, &len,
                                   t_deadline(WAIT_MS)),
                   DUCT_UNAVAILABLE);
  duct__link_close(k);
  free(big);
  server_down(&s);
}

/* A reply larger than the client's buffer: RESOURCE_EXHAUSTED, nothing
 * truncated handed back - both for TransactNamedPipe and for ReadFile. */
static void test_reply_larger_than_cap(void **state) {
  (void)state;
  server s;
  server_up(&s, T_BIG, NULL);
  s.t.big_len = 65536;
  uint8_t buf[1000];
  for (int via_recv = 0; via_recv < 2; via_recv++) {
    duct__link *k = connect_to(&s);
    size_t len = 12345;
    duct__iov iov = {"x", 1};
    duct_code rc;
    if (via_recv) {
      assert_int_equal(duct__link_send(k, &iov, 1, t_deadline(WAIT_MS)),
                       DUCT_OK);
      rc = duct__link_recv(k, buf, sizeof buf, &len, t_deadline(WAIT_MS));
    } else {
      rc = duct__link_transact(k, &iov, 1, buf, sizeof buf, &len,
                               t_deadline(WAIT_MS));
    }
    assert_int_equal(rc, DUCT_RESOURCE_EXHAUSTED);
    assert_int_equal(len, 0);
    assert_int_equal(s.t.send_rc, DUCT_OK);
    /* The link is out of step and says so. */
    assert_int_equal(duct__link_recv(k, buf, sizeof buf, &len,
                                     t_deadline(100)),
                     DUCT_UNAVAILABLE);
    duct__link_close(k);
  }
  server_down(&s);
}

/* ---- deadlines ---- */

/* The server never answers: the pending TransactNamedPipe is cancelled at
 * the deadline. */
static void test_transact_deadline_cancels(void **state) {
  (void)state;
  server s;
  server_up(&s, T_SILENT, NULL);
  duct__link *k = connect_to(&s);
  uint8_t buf[64];
  size_t len;
  duct__iov iov = {"anyone?", 7};
  int64_t t0 = duct__now_ms();
  assert_int_equal(duct__link_transact(k, &iov, 1, buf, sizeof buf, &len,
                                       t0 + 300),
                   DUCT_DEADLINE_EXCEEDED);
  int64_t took = duct__now_ms() - t0;
  assert_true(took >= 250);  /* not before the deadline (timer slack) */
  assert_true(took < 5000);  /* and not much after it */
  assert_int_equal(WaitForSingleObject(s.t.got_msg, WAIT_MS), WAIT_OBJECT_0);
  /* recv too. */
  t0 = duct__now_ms();
  assert_int_equal(duct__link_recv(k, buf, sizeof buf, &len, t0 + 200),
                   DUCT_DEADLINE_EXCEEDED);
  assert_true(duct__now_ms() - t0 < 5000);
  duct__link_close(k);
  server_down(&s);
}

/* A client that never reads. Sends never wait for a peer (core v2): what
 * the pipe does not take is queued, so the handler returns at once; the
 * send that would pass the queue's cap fails with RESOURCE_EXHAUSTED and
 * the connection is closed. One worker: that worker is free again at once
 * and serves the next client, which no write of the first one blocks. */
static void test_slow_reader_hits_queue_cap(void **state) {
  (void)state;
  server s;
  duct__listen_opts o = t_opts();
  o.workers = 1;
  o.idle_timeout_ms = 60000; /* so only the cap can end it within WAIT_MS */
  server_up(&s, T_FLOOD, &o);
  duct__link *k = connect_to(&s);
  duct__iov iov = {"go", 2};
  assert_int_equal(duct__link_send(k, &iov, 1, t_deadline(WAIT_MS)), DUCT_OK);
  assert_int_equal(WaitForSingleObject(s.t.sent, WAIT_MS), WAIT_OBJECT_0);
  assert_int_equal(s.t.send_rc, DUCT_RESOURCE_EXHAUSTED);
  assert_int_equal(WaitForSingleObject(s.t.closed, WAIT_MS), WAIT_OBJECT_0);
  assert_int_equal(s.t.why, DUCT_RESOURCE_EXHAUSTED);

  /* The one worker serves another client. */
  duct__link *k2 = connect_to(&s);
  uint8_t *buf = malloc(65536);
  size_t len = 0;
  assert_int_equal(duct__link_send(k2, &iov, 1, t_deadline(WAIT_MS)), DUCT_OK);
  assert_int_equal(duct__link_recv(k2, buf, 65536, &len, t_deadline(WAIT_MS)),
                   DUCT_OK);
  assert_int_equal(len, 65536);
  duct__link_close(k2);

  /* What reached the first client's pipe before the close is whole, then
   * the pipe is gone. */
  duct_code rc;
  int got = 0;
  while ((rc = duct__link_recv(k, buf, 65536, &len, t_deadline(WAIT_MS))) ==
         DUCT_OK) {
    assert_int_equal(len, 65536);
    got++;
  }
  assert_int_equal(rc, DUCT_UNAVAILABLE);
  assert_true(got < 64);
  free(buf);
  duct__link_close(k);
  server_down(&s);
}

/* A client that never reads what fits in the queue: the replies wait in
 * the queue, not in a worker, and the connection is closed with
 * DEADLINE_EXCEEDED once they have waited idle_timeout_ms (this replaces
 * the old per-send timeout). */
static void test_unread_reply_deadline(void **state) {
  (void)state;
  server s;
  duct__listen_opts o = t_opts();
  o.queue_cap = 8u << 20; /* all 64 x 64 KiB fit */
  o.idle_timeout_ms = 300;
  server_up(&s, T_FLOOD, &o);
  duct__link *k = connect_to(&s);
  duct__iov iov = {"go", 2};
  int64_t t0 = duct__now_ms();
  assert_int_equal(duct__link_send(k, &iov, 1, t_deadline(WAIT_MS)), DUCT_OK);
  assert_int_equal(WaitForSingleObject(s.t.sent, WAIT_MS), WAIT_OBJECT_0);
  assert_int_equal(s.t.send_rc, DUCT_OK);
  assert_int_equal(WaitForSingleObject(s.t.closed, WAIT_MS), WAIT_OBJECT_0);
  assert_int_equal(s.t.why, DUCT_DEADLINE_EXCEEDED);
  assert_true(duct__now_ms() - t0 >= 250); /* not before the deadline */
  duct__link_close(k);
  server_down(&s);
}

/* ---- closing ---- */

static void test_conn_close_from_another_thread(void **state) {
  (void)state;
  server s;
  server_up(&s, T_SILENT, NULL);
  duct__link *k = connect_to(&s);
  duct__iov iov = {"hello", 5};
  assert_int_equal(duct__link_send(k, &iov, 1, t_deadline(WAIT_MS)), DUCT_OK);
  assert_int_equal(WaitForSingleObject(s.t.got_msg, WAIT_MS), WAIT_OBJECT_0);
  duct__conn_close(s.t.last_conn, DUCT_CANCELLED, "closed by the test");
  assert_int_equal(WaitForSingleObject(s.t.closed, WAIT_MS), WAIT_OBJECT_0);
  assert_int_equal(s.t.why, DUCT_CANCELLED);
  uint8_t buf[8];
  size_t len;
  assert_int_equal(duct__link_recv(k, buf, sizeof buf, &len,
                                   t_deadline(WAIT_MS)),
                   DUCT_UNAVAILABLE);
  duct__link_close(k);
  server_down(&s);
  assert_int_equal(s.t.nclosed, 1);
}

static void test_listener_free_closes_everyone(void **state) {
  (void)state;
  server s;
  server_up(&s, T_ECHO, NULL);
  duct__link *k[3];
  for (int i = 0; i < 3; i++) {
    k[i] = connect_to(&s);
    uint8_t buf[8];
    size_t len;
    duct__iov iov = {"hi", 2};
    assert_int_equal(duct__link_transact(k[i], &iov, 1, buf, sizeof buf, &len,
                                         t_deadline(WAIT_MS)),
                     DUCT_OK);
  }
  /* One more that connected but never spoke. */
  duct__link *quiet = connect_to(&s);
  while (s.t.nopen < 4)
    assert_int_equal(WaitForSingleObject(s.t.opened, WAIT_MS), WAIT_OBJECT_0);
  duct__listener_stop_accepting(s.l);
  server_down(&s);
  assert_int_equal(s.t.nopen, 4);
  assert_int_equal(s.t.nclosed, 4);
  assert_int_equal(s.t.why, DUCT_UNAVAILABLE);
  for (int i = 0; i < 3; i++) {
    uint8_t buf[8];
    size_t len;
    assert_int_equal(duct__link_recv(k[i], buf, sizeof buf, &len,
                                     t_deadline(WAIT_MS)),
                     DUCT_UNAVAILABLE);
    duct__link_close(k[i]);
  }
  duct__link_close(quiet);
}

/* A listener that never started still frees cleanly, with a client
 * connected to it. */
static void test_free_without_start(void **state) {
  (void)state;
  tcore t;
  t_init(&t, T_ECHO);
  char name[96];
  duct__listener *l;
  duct__err err = {{0}};
  duct__listen_opts o = t_opts();
  t_name(name, sizeof name, "nostart");
  assert_int_equal(duct__listen(name, &o, &t_cb, &t, &l, &err), DUCT_OK);
  duct__link *k = NULL;
  assert_int_equal(duct__link_open(name, t_deadline(WAIT_MS), &k, &err),
                   DUCT_OK);
  duct__listener_free(l);
  duct__link_close(k);
  assert_int_equal(t.nopen, 0);
  t_fini(&t);
}

/* ---- TransactNamedPipe with unread data in the pipe ---- */

/* The server answers twice. The second answer sits unread in the pipe,
 * so Windows refuses the next TransactNamedPipe (ERROR_PIPE_BUSY); the
 * link then writes and reads the next message, as POSIX does. */
static void test_transact_with_unread_data(void **state) {
  (void)state;
  server s;
  server_up(&s, T_DOUBLE, NULL);
  duct__link *k = connect_to(&s);
  uint8_t buf[16];
  size_t len;
  duct__iov a = {"A", 1}, b = {"B", 1};
  assert_int_equal(duct__link_transact(k, &a, 1, buf, sizeof buf, &len,
                                       t_deadline(WAIT_MS)),
                   DUCT_OK);
  assert_memory_equal(buf, "A", 1);
  assert_int_equal(WaitForSingleObject(s.t.sent, WAIT_MS), WAIT_OBJECT_0);
  /* Sent means queued; the second "A" is in the pipe once its write's
   * packet has emptied the queue. Nothing signals that, so look. */
  int64_t until = t_deadline(WAIT_MS);
  while (duct__conn_has_queue(s.t.last_conn) && duct__now_ms() < until)
    SwitchToThread();
  assert_false(duct__conn_has_queue(s.t.last_conn));
  assert_int_equal(duct__link_transact(k, &b, 1, buf, sizeof buf, &len,
                                       t_deadline(WAIT_MS)),
                   DUCT_OK);
  assert_int_equal(len, 1);
  assert_memory_equal(buf, "A", 1); /* the older message comes first */
  for (int i = 0; i < 2; i++) {
    assert_int_equal(duct__link_recv(k, buf, sizeof buf, &len,
                                     t_deadline(WAIT_MS)),
                     DUCT_OK);
    assert_memory_equal(buf, "B", 1);
  }
  duct__link_close(k);
  server_down(&s);
}

/* ---- connecting ---- */

static void test_connect_errors(void **state) {
  (void)state;
  duct__link *k = NULL;
  duct__err err = {{0}};
  char name[96];
  assert_int_equal(duct__link_open("", 0, &k, &err), DUCT_INVALID_ARGUMENT);
  assert_int_equal(duct__link_open("a\\b", 0, &k, &err), DUCT_INVALID_ARGUMENT);
  assert_int_equal(duct__link_open("\\\\.\\pipe\\", 0, &k, &err),
                   DUCT_INVALID_ARGUMENT);
  assert_int_equal(duct__link_open("\\\\host\\pipe\\x", 0, &k, &err),
                   DUCT_INVALID_ARGUMENT);
  char longname[400];
  memset(longname, 'n', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  assert_int_equal(duct__link_open(longname, 0, &k, &err),
                   DUCT_INVALID_ARGUMENT);
  assert_int_equal(duct__link_open("bad\xff\xfe utf8", 0, &k, &err),
                   DUCT_INVALID_ARGUMENT);
  /* Nobody there: retried until the deadline, then UNAVAILABLE. */
  t_name(name, sizeof name, "nobody");
  int64_t t0 = duct__now_ms();
  assert_int_equal(duct__link_open(name, t0 + 200, &k, &err),
                   DUCT_UNAVAILABLE);
  assert_true(duct__now_ms() - t0 >= 150);
  assert_non_null(strstr(err.text, "no duct server at \\\\.\\pipe\\"));
  assert_null(k);
}

typedef struct late {
  const char *name;
  HANDLE trying;
  duct_code rc;
} late;

static unsigned __stdcall late_client(void *arg) {
  late *c = arg;
  duct__link *k = NULL;
  duct__err err;
  SetEvent(c->trying);
  c->rc = duct__link_open(c->name, t_deadline(WAIT_MS), &k, &err);
  duct__link_close(k);
  return 0;
}

/* A client that starts before the server waits for it. */
static void test_client_waits_for_server(void **state) {
  (void)state;
  server s;
  tcore *t = &s.t;
  t_init(t, T_ECHO);
  t_name(s.name, sizeof s.name, "late");
  late c = {s.name, CreateEventW(NULL, TRUE, FALSE, NULL), DUCT_UNKNOWN};
  HANDLE th = (HANDLE)_beginthreadex(NULL, 0, late_client, &c, 0, NULL);
  WaitForSingleObject(c.trying, INFINITE);
  duct__err err;
  duct__listen_opts o = t_opts();
  assert_int_equal(duct__listen(s.name, &o, &t_cb, t, &s.l, &err), DUCT_OK);
  assert_int_equal(duct__listener_start(s.l), DUCT_OK);
  assert_int_equal(WaitForSingleObject(th, WAIT_MS), WAIT_OBJECT_0);
  CloseHandle(th);
  CloseHandle(c.trying);
  assert_int_equal(c.rc, DUCT_OK);
  server_down(&s);
}

/* ---- reads into place (rx_slot) ----
 *
 * A core that takes messages as the server core takes the fragments of a
 * large message: the first message's bytes after its header are copied
 * to `area` (its reassembly buffer), then it offers the free end of area
 * as the slot, and what a read into place delivers is taken where it
 * landed. The transport reads such a message from DUCT__HEADER_SIZE bytes
 * before the slot, over the end of what area holds, and must have put
 * those bytes back before any callback: `want` mirrors what area must
 * hold, and every callback checks it. closed() poisons area, as a core
 * freeing its buffer would, so a transport that writes there after
 * closed() shows up in the final check. Messages carry a pattern of their
 * index, and every message is logged as the core saw it. */

#define PF 4096 /* these listeners' max_frame */
#define PH DUCT__HEADER_SIZE
#define PROOM (PF - PH) /* the least room a slot is used with */
#define PGUARD 64
#define PMAX 16

enum pkind { P_MSG = 1, P_PLACED = 2 };

typedef struct pcore {
  size_t area_cap; /* then PGUARD guard bytes */
  uint8_t *area, *want;
  size_t held; /* bytes of area in use: the slot is area + held */
  int ret2_first; /* message() of the first message returns 2 */
  duct__conn *c;
  HANDLE got, closed, offered, run_go;
  volatile LONG nmsg, nbroken, nclosed, nviolations, seq;
  LONG seq_offer, seq_run; /* order of the first offer and of run() */
  int run_saw_next;
  enum pkind kind[PMAX];
  uint8_t *log[PMAX]; /* each message as the core saw it */
  size_t len[PMAX];
  duct_code why;
} pcore;

static uint8_t p_byte(int k, size_t i) { return (uint8_t)(k * 37 + i * 11 + 5); }

static uint8_t *p_make(int k, size_t len) {
  uint8_t *m = malloc(len + 1);
  for (size_t i = 0; i < len; i++)
    m[i] = p_byte(k, i);
  return m;
}

static void p_check(pcore *p) {
  if (memcmp(p->area, p->want, p->held) != 0)
    InterlockedIncrement(&p->nbroken);
}

static void p_log(pcore *p, enum pkind kind, const uint8_t *hdr, const uint8_t *rest,
                  size_t len) {
  LONG i = p->nmsg;
  if (i < PMAX) {
    size_t head = len < PH ? len : PH;
    p->kind[i] = kind;
    p->len[i] = len;
    p->log[i] = malloc(len + 1);
    memcpy(p->log[i], hdr, head);
    if (len > head)
      memcpy(p->log[i] + head, rest, len - head);
  }
  InterlockedIncrement(&p->nmsg);
  SetEvent(p->got);
}

static void *p_open(void *core, duct__conn *c, const duct_peer *peer) {
  pcore *p = core;
  (void)peer;
  p->c = c;
  atomic_store(&c->partial_since, 0); /* no HELLO here */
  return p;
}

static uint8_t *p_slot(void *state, size_t *room) {
  pcore *p = state;
  p_check(p);
  if (p->held < PH || p->held >= p->area_cap)
    return NULL;
  *room = p->area_cap - p->held;
  if (p->seq_offer == 0)
    p->seq_offer = InterlockedIncrement(&p->seq);
  SetEvent(p->offered);
  return p->area + p->held;
}

static int p_message(void *state, const uint8_t *msg, size_t len) {
  pcore *p = state;
  p_check(p);
  int first = p->nmsg == 0;
  if (len >= PH && len - PH <= p->area_cap - p->held) {
    memcpy(p->area + p->held, msg + PH, len - PH);
    memcpy(p->want + p->held, msg + PH, len - PH);
    p->held += len - PH;
  }
  p_log(p, P_MSG, msg, msg + PH, len);
  return first && p->ret2_first ? 2 : 0;
}

static int p_placed(void *state, const uint8_t *hdr, size_t len) {
  pcore *p = state;
  p_check(p);
  uint8_t *at = p->area + p->held;
  if (len < PH || len - PH > p->area_cap - p->held) {
    InterlockedIncrement(&p->nbroken); /* not what the slot could take */
    return -1;
  }
  memcpy(p->want + p->held, at, len - PH);
  p->held += len - PH;
  p_log(p, P_PLACED, hdr, at, len);
  SetEvent(p->run_go);
  return 0;
}

/* With ret2_first: the read was re-armed before this, so the next
 * message arrives (on the other worker) while it waits. */
static void p_run(void *state) {
  pcore *p = state;
  p->seq_run = InterlockedIncrement(&p->seq);
  p->run_saw_next = WaitForSingleObject(p->run_go, WAIT_MS) == WAIT_OBJECT_0;
}

static void p_closed(void *state, duct_code why, const char *detail) {
  pcore *p = state;
  (void)detail;
  p_check(p);
  p->why = why;
  memset(p->area, 0xDD, p->area_cap);
  InterlockedIncrement(&p->nclosed);
  SetEvent(p->closed);
}

static void p_violation(void *state, duct_code code, const char *why) {
  pcore *p = state;
  (void)why;
  (void)code;
  p_check(p);
  InterlockedIncrement(&p->nviolations);
}

static const duct__srv_cb p_cb = {.open = p_open,
                                  .message = p_message,
                                  .rx_slot = p_slot,
                                  .message_placed = p_placed,
                                  .run = p_run,
                                  .closed = p_closed,
                                  .violation = p_violation};

typedef struct pserver {
  pcore p;
  duct__listener *l;
  char name[96];
  duct__link *k;
} pserver;

static void p_up(pserver *s, size_t area_cap) {
  pcore *p = &s->p;
  memset(s, 0, sizeof *s);
  p->area_cap = area_cap;
  p->area = malloc(area_cap + PGUARD);
  p->want = malloc(area_cap);
  memset(p->area, 0xEE, area_cap + PGUARD);
  p->got = CreateEventW(NULL, FALSE, FALSE, NULL);
  p->closed = CreateEventW(NULL, TRUE, FALSE, NULL);
  p->offered = CreateEventW(NULL, FALSE, FALSE, NULL);
  p->run_go = CreateEventW(NULL, FALSE, FALSE, NULL);
  duct__listen_opts o = t_opts();
  o.max_frame = PF;
  duct__err err = {{0}};
  t_name(s->name, sizeof s->name, "place");
  assert_int_equal(duct__listen(s->name, &o, &p_cb, p, &s->l, &err), DUCT_OK);
  assert_int_equal(duct__listener_start(s->l), DUCT_OK);
  assert_int_equal(duct__link_open(s->name, t_deadline(WAIT_MS), &s->k, &err), DUCT_OK);
}

static void p_send(pserver *s, int k, size_t len) {
  uint8_t *m = p_make(k, len);
  duct__iov iov = {m, len};
  assert_int_equal(duct__link_send(s->k, &iov, 1, t_deadline(WAIT_MS)), DUCT_OK);
  free(m);
}

static void p_wait_msgs(pserver *s, LONG n) {
  while (s->p.nmsg < n)
    assert_int_equal(WaitForSingleObject(s->p.got, WAIT_MS), WAIT_OBJECT_0);
}

/* Message i of the log is message k of the pattern, len bytes, of `kind`. */
static void p_expect(pserver *s, int i, int k, size_t len, enum pkind kind) {
  uint8_t *m = p_make(k, len);
  assert_int_equal(s->p.len[i], len);
  assert_int_equal(s->p.kind[i], kind);
  assert_memory_equal(s->p.log[i], m, len);
  free(m);
}

/* area holds the bytes after the header of each of the n messages in ks
 * (lengths lens), and nothing was ever seen broken. */
static void p_expect_area(pserver *s, const int *ks, const size_t *lens, int n) {
  size_t at = 0;
  for (int i = 0; i < n; i++) {
    uint8_t *m = p_make(ks[i], lens[i]);
    assert_memory_equal(s->p.area + at, m + PH, lens[i] - PH);
    at += lens[i] - PH;
    free(m);
  }
  assert_int_equal(s->p.held, at);
  assert_int_equal(s->p.nbroken, 0);
}

/* Frees the listener (if the test has not), then checks that nothing was
 * written into area after closed() poisoned it, nor past its end. */
static void p_down(pserver *s) {
  if (s->k != NULL)
    duct__link_close(s->k);
  if (s->l != NULL)
    duct__listener_free(s->l);
  pcore *p = &s->p;
  assert_int_equal(p->nclosed, 1);
  assert_int_equal(p->nbroken, 0);
  for (size_t i = 0; i < p->area_cap; i++)
    if (p->area[i] != 0xDD)
      fail_msg("area[%u] written after closed()", (unsigned)i);
  for (size_t i = 0; i < PGUARD; i++)
    assert_int_equal(p->area[p->area_cap + i], 0xEE);
  for (int i = 0; i < PMAX; i++)
    free(p->log[i]);
  free(p->area);
  free(p->want);
  CloseHandle(p->got);
  CloseHandle(p->closed);
  CloseHandle(p->offered);
  CloseHandle(p->run_go);
}

/* The messages after the first land in the core's buffer, header
 * included in the read, and the bytes under the header are the core's
 * again when it hears of it. A slot is used down to exactly the room of
 * a max_frame message, and the read then ends exactly at the buffer's
 * end (the guard stays). Once the buffer is full, messages come to
 * message() again. */
static void test_reads_into_place(void **state) {
  (void)state;
  pserver s;
  p_up(&s, 4 * PROOM);
  for (int k = 0; k < 4; k++)
    p_send(&s, k, PF);
  p_send(&s, 4, 200);
  p_wait_msgs(&s, 5);
  p_expect(&s, 0, 0, PF, P_MSG);
  for (int k = 1; k < 4; k++)
    p_expect(&s, k, k, PF, P_PLACED);
  p_expect(&s, 4, 4, 200, P_MSG);
  int ks[] = {0, 1, 2, 3};
  size_t lens[] = {PF, PF, PF, PF};
  p_expect_area(&s, ks, lens, 4);
  for (size_t i = 0; i < PGUARD; i++)
    assert_int_equal(s.p.area[s.p.area_cap + i], 0xEE);
  /* The peer leaves: an orderly end, while a read is pending. */
  duct__link_close(s.k);
  s.k = NULL;
  assert_int_equal(WaitForSingleObject(s.p.closed, WAIT_MS), WAIT_OBJECT_0);
  assert_int_equal(s.p.why, DUCT_OK);
  p_down(&s);
}

/* A slot one byte short of a max_frame message is not used, even for a
 * message that would fit it: what does not fit must be refused as over
 * max_frame, never land past the slot. */
static void test_small_slot_not_used(void **state) {
  (void)state;
  pserver s;
  p_up(&s, 2 * PROOM - 1);
  p_send(&s, 0, PF);
  p_send(&s, 1, 1000);
  p_wait_msgs(&s, 2);
  p_expect(&s, 0, 0, PF, P_MSG);
  p_expect(&s, 1, 1, 1000, P_MSG);
  int ks[] = {0, 1};
  size_t lens[] = {PF, 1000};
  p_expect_area(&s, ks, lens, 2);
  p_down(&s);
}

/* Messages no longer than a header on a read into place lie wholly in the
 * borrowed bytes: they come to message() intact, and the core's bytes are
 * back. Exactly a header is an empty message into place. */
static void test_short_messages_into_place(void **state) {
  (void)state;
  pserver s;
  p_up(&s, 4 * PROOM);
  p_send(&s, 0, PF);
  p_send(&s, 1, 5);
  p_send(&s, 2, PF);
  p_send(&s, 3, PH);
  p_send(&s, 4, PH - 1);
  p_send(&s, 5, 1);
  p_send(&s, 6, 300);
  p_wait_msgs(&s, 7);
  p_expect(&s, 0, 0, PF, P_MSG);
  p_expect(&s, 1, 1, 5, P_MSG);
  p_expect(&s, 2, 2, PF, P_PLACED);
  p_expect(&s, 3, 3, PH, P_PLACED);
  p_expect(&s, 4, 4, PH - 1, P_MSG);
  p_expect(&s, 5, 5, 1, P_MSG);
  p_expect(&s, 6, 6, 300, P_PLACED);
  int ks[] = {0, 2, 3, 6};
  size_t lens[] = {PF, PF, PH, 300};
  p_expect_area(&s, ks, lens, 4);
  p_down(&s);
}

/* A message over max_frame on a read into place, with room in the slot
 * for all of it: refused (violation(), then RESOURCE_EXHAUSTED), never
 * delivered, and what the core held is intact when it is told. */
static void test_oversize_into_place(void **state) {
  (void)state;
  pserver s;
  p_up(&s, 4 * PROOM);
  p_send(&s, 0, PF);
  p_wait_msgs(&s, 1);
  p_send(&s, 1, PF + 1);
  assert_int_equal(WaitForSingleObject(s.p.closed, WAIT_MS), WAIT_OBJECT_0);
  assert_int_equal(s.p.why, DUCT_RESOURCE_EXHAUSTED);
  assert_int_equal(s.p.nviolations, 1);
  assert_int_equal(s.p.nmsg, 1);
  assert_int_equal(s.p.nbroken, 0);
  p_down(&s);
}

/* A read into place pending when the connection ends (closed by the
 * core, by the peer, or by the listener stopping): the core's bytes are
 * back by closed(), and nothing touches them after it. */
static void test_end_while_reading_into_place(void **state) {
  (void)state;
  duct_code whys[3] = {DUCT_CANCELLED, DUCT_OK, DUCT_UNAVAILABLE};
  for (int how = 0; how < 3; how++) {
    pserver s;
    p_up(&s, 4 * PROOM);
    p_send(&s, 0, PF);
    p_wait_msgs(&s, 1);
    /* The next read asked for the slot; let its ReadFile be issued. */
    assert_int_equal(WaitForSingleObject(s.p.offered, WAIT_MS), WAIT_OBJECT_0);
    Sleep(50);
    if (how == 0) {
      duct__conn_close(s.p.c, DUCT_CANCELLED, "closed by the test");
    } else if (how == 1) {
      duct__link_close(s.k);
      s.k = NULL;
    } else {
      duct__listener_free(s.l);
      s.l = NULL;
    }
    assert_int_equal(WaitForSingleObject(s.p.closed, WAIT_MS), WAIT_OBJECT_0);
    assert_int_equal(s.p.why, whys[how]);
    assert_int_equal(s.p.nmsg, 1);
    p_down(&s);
  }
}

/* message() returns 2: the next read (into place) is armed before run(),
 * on the thread that delivered the message, and the next message comes
 * to the other worker while run() works. */
static void test_read_into_place_before_run(void **state) {
  (void)state;
  pserver s;
  p_up(&s, 4 * PROOM);
  s.p.ret2_first = 1;
  p_send(&s, 0, PF);
  p_wait_msgs(&s, 1);
  p_send(&s, 1, PF);
  p_wait_msgs(&s, 2);
  p_expect(&s, 0, 0, PF, P_MSG);
  p_expect(&s, 1, 1, PF, P_PLACED);
  int ks[] = {0, 1};
  size_t lens[] = {PF, PF};
  p_expect_area(&s, ks, lens, 2);
  duct__listener_free(s.l); /* waits for run() */
  s.l = NULL;
  assert_true(s.p.run_saw_next);
  assert_true(s.p.seq_offer != 0 && s.p.seq_offer < s.p.seq_run);
  p_down(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_echo_and_peer_identity),
      cmocka_unit_test(test_many_clients_at_once),
      cmocka_unit_test(test_big_message_to_server),
      cmocka_unit_test(test_oversize_message_closes_connection),
      cmocka_unit_test(test_reply_larger_than_cap),
      cmocka_unit_test(test_transact_deadline_cancels),
      cmocka_unit_test(test_slow_reader_hits_queue_cap),
      cmocka_unit_test(test_unread_reply_deadline),
      cmocka_unit_test(test_conn_close_from_another_thread),
      cmocka_unit_test(test_listener_free_closes_everyone),
      cmocka_unit_test(test_free_without_start),
      cmocka_unit_test(test_transact_with_unread_data),
      cmocka_unit_test(test_connect_errors),
      cmocka_unit_test(test_client_waits_for_server),
      cmocka_unit_test(test_reads_into_place),
      cmocka_unit_test(test_small_slot_not_used),
      cmocka_unit_test(test_short_messages_into_place),
      cmocka_unit_test(test_oversize_into_place),
      cmocka_unit_test(test_end_while_reading_into_place),
      cmocka_unit_test(test_read_into_place_before_run),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
