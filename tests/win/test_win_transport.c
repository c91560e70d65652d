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
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
