/* End-to-end tests: a real server in a child process (duct-probe-server,
 * kv-server), real connections, generated stubs. The same file runs on
 * Linux and, in the windows preset, under Wine. Raw-protocol attacks use
 * the internal transport directly, as a hostile peer would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <duct/duct.h>

#include "examples/kv.duct.h"
#include "probe.duct.h"
#include "runtime/frame.h"
#include "runtime/sys.h"
#include "runtime/transport.h"
#include "runtime/wire.h"
#include "sysinfo.h"
#include "tests/support/proc.h"
#include "e2e_util.h"

/* Waits (bounded) until the server reports `n` Sleep handlers running:
 * the event that a call is in progress on the server. */
static void wait_sleeping(duct_channel *ch, unsigned n) {
  int64_t until = duct__now_ms() + 20000;
  for (;;) {
    Duct__Test__Stats *s = e2e_stats(ch);
    unsigned now = s->sleeping;
    duct__test__stats__free_unpacked(s, NULL);
    if (now == n)
      return;
    if (duct__now_ms() > until)
      fail_msg("server never reached %u sleeping handlers (has %u)", n, now);
  }
}

/* ---- a call in a thread ---- */

typedef struct sleeper {
  duct_channel *ch;
  uint32_t ms, deadline_ms;
  duct_code rc;
  int64_t elapsed;
  duct__thread t;
} sleeper;

static void sleeper_run(void *arg) {
  sleeper *s = arg;
  Duct__Test__SleepRequest req = DUCT__TEST__SLEEP_REQUEST__INIT;
  Duct__Test__SleepReply *reply;
  req.ms = s->ms;
  duct_call_opts o = {.deadline_ms = s->deadline_ms};
  int64_t t0 = duct__now_ms();
  s->rc = duct_test_probe_sleep(s->ch, &req, &reply, &o);
  s->elapsed = duct__now_ms() - t0;
  if (s->rc == DUCT_OK)
    duct__test__sleep_reply__free_unpacked(reply, NULL);
}

/* ---- tests ---- */

static void test_kv_every_call_shape(void **state) {
  (void)state;
  char address[128];
  snprintf(address, sizeof address, "%s", test_address("kv"));
  const char *args[] = {address};
  test_proc *p = e2e_spawn("kv-server", args, 1);
  duct_channel *ch;
  duct_channel_opts co = {.connect_timeout_ms = START_MS};
  assert_int_equal(duct_channel_open(address, &co, &ch), DUCT_OK);

  const char *keys[] = {"pear", "apple", "fig"};
  for (int i = 0; i < 3; i++) {
    Duct__Examples__Kv__PutRequest req = DUCT__EXAMPLES__KV__PUT_REQUEST__INIT;
    Duct__Examples__Kv__PutReply *reply;
    req.key = (char *)keys[i];
    req.value = (char *)"v1";
    assert_int_equal(duct_examples_kv_key_value_put(ch, &req, &reply, NULL), DUCT_OK);
    assert_false(reply->replaced);
    duct__examples__kv__put_reply__free_unpacked(reply, NULL);
  }
  Duct__Examples__Kv__PutRequest put = DUCT__EXAMPLES__KV__PUT_REQUEST__INIT;
  Duct__Examples__Kv__PutReply *put_reply;
  put.key = (char *)"fig";
  put.value = (char *)"v2";
  assert_int_equal(duct_examples_kv_key_value_put(ch, &put, &put_reply, NULL), DUCT_OK);
  assert_true(put_reply->replaced);
  duct__examples__kv__put_reply__free_unpacked(put_reply, NULL);

  Duct__Examples__Kv__GetRequest get = DUCT__EXAMPLES__KV__GET_REQUEST__INIT;
  Duct__Examples__Kv__GetReply *got;
  get.key = (char *)"fig";
  assert_int_equal(duct_examples_kv_key_value_get(ch, &get, &got, NULL), DUCT_OK);
  assert_string_equal(got->value, "v2");
  duct__examples__kv__get_reply__free_unpacked(got, NULL);

  Duct__Examples__Kv__ListRequest list = DUCT__EXAMPLES__KV__LIST_REQUEST__INIT;
  Duct__Examples__Kv__ListReply *keys_reply;
  assert_int_equal(duct_examples_kv_key_value_list(ch, &list, &keys_reply, NULL), DUCT_OK);
  assert_int_equal(keys_reply->n_keys, 3);
  assert_string_equal(keys_reply->keys[0], "apple");
  assert_string_equal(keys_reply->keys[2], "pear");
  duct__examples__kv__list_reply__free_unpacked(keys_reply, NULL);

  Duct__Examples__Kv__DeleteRequest del = DUCT__EXAMPLES__KV__DELETE_REQUEST__INIT;
  Duct__Examples__Kv__DeleteReply *del_reply;
  del.key = (char *)"apple";
  assert_int_equal(duct_examples_kv_key_value_delete_(ch, &del, &del_reply, NULL), DUCT_OK);
  duct__examples__kv__delete_reply__free_unpacked(del_reply, NULL);
  duct_status st;
  duct_call_opts o = {.status = &st};
  assert_int_equal(duct_examples_kv_key_value_delete_(ch, &del, &del_reply, &o), DUCT_NOT_FOUND);
  assert_null(del_reply);
  get.key = (char *)"apple";
  assert_int_equal(duct_examples_kv_key_value_get(ch, &get, &got, &o), DUCT_NOT_FOUND);
  assert_string_equal(st.message, "key 'apple' not found");

  duct_channel_close(ch);
  e2e_reap(p);
}

typedef struct hammer {
  duct_channel *ch;
  int id, calls, bad;
  duct__thread t;
} hammer;

static void hammer_run(void *arg) {
  hammer *h = arg;
  for (int i = 0; i < h->calls; i++) {
    char msg[64];
    int n = snprintf(msg, sizeof msg, "thread %d call %d", h->id, i);
    Duct__Test__Blob *reply;
    duct_status st;
    uint32_t tag = (uint32_t)(h->id * 100000 + i);
    if (e2e_echo(h->ch, (const uint8_t *)msg, (size_t)n, tag, &reply, &st) != DUCT_OK) {
      h->bad++;
      continue;
    }
    /* Every reply must be this request's, never another thread's. */
    if (reply->tag != tag || reply->data.len != (size_t)n || memcmp(reply->data.data, msg, (size_t)n))
      h->bad++;
    duct__test__blob__free_unpacked(reply, NULL);
  }
}

static void test_8_threads_1000_calls_one_channel(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  hammer h[8];
  for (int i = 0; i < 8; i++) {
    h[i] = (hammer){f->ch, i, 1000, 0, {{0}}};
    assert_int_equal(duct__thread_start(&h[i].t, hammer_run, &h[i]), DUCT_OK);
  }
  int bad = 0;
  for (int i = 0; i < 8; i++) {
    duct__thread_join(&h[i].t);
    bad += h[i].bad;
  }
  assert_int_equal(bad, 0);
  e2e_stop_probe(f);
}

static void test_deadline_exceeded_then_usable(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  sleeper s = {f->ch, 2000, 300, DUCT_OK, 0, {{0}}};
  sleeper_run(&s);
  assert_int_equal(s.rc, DUCT_DEADLINE_EXCEEDED);
  assert_true(s.elapsed >= 250);
  assert_true(s.elapsed < 1800); /* returned at the deadline, not after the handler */
  e2e_echo_ok(f->ch);                /* the channel still works */
  /* The server saw the deadline: a handler reports what is left. */
  Duct__Test__SleepRequest req = DUCT__TEST__SLEEP_REQUEST__INIT;
  Duct__Test__SleepReply *reply;
  duct_call_opts o = {.deadline_ms = 10000};
  assert_int_equal(duct_test_probe_sleep(f->ch, &req, &reply, &o), DUCT_OK);
  assert_true(reply->remaining_ms > 0 && reply->remaining_ms <= 10000);
  duct__test__sleep_reply__free_unpacked(reply, NULL);
  o.deadline_ms = 0;
  assert_int_equal(duct_test_probe_sleep(f->ch, &req, &reply, &o), DUCT_OK);
  assert_int_equal(reply->remaining_ms, -1);
  duct__test__sleep_reply__free_unpacked(reply, NULL);
  e2e_stop_probe(f);
}

static void test_unknown_method(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  const duct_method nope = {"/duct.test.Probe/Nope", duct__method_id("/duct.test.Probe/Nope"),
                            &duct__test__blob__descriptor, &duct__test__blob__descriptor, NULL,
                            DUCT_UNARY, NULL};
  Duct__Test__Blob req = DUCT__TEST__BLOB__INIT;
  ProtobufCMessage *reply;
  duct_status st;
  duct_call_opts o = {.status = &st};
  assert_int_equal(duct_call_unary(f->ch, &nope, &req.base, &reply, &o), DUCT_UNIMPLEMENTED);
  assert_null(reply);
  assert_non_null(strstr(st.message, "no method"));
  e2e_echo_ok(f->ch);
  e2e_stop_probe(f);
}

static void test_handler_error_carries_message(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  Duct__Test__FailRequest req = DUCT__TEST__FAIL_REQUEST__INIT;
  Duct__Test__Empty *reply;
  duct_status st;
  duct_call_opts o = {.status = &st};
  req.code = DUCT_NOT_FOUND;
  req.message = (char *)"no such widget: \xc3\xa9t\xc3\xa9";
  assert_int_equal(duct_test_probe_fail(f->ch, &req, &reply, &o), DUCT_NOT_FOUND);
  assert_int_equal(st.code, DUCT_NOT_FOUND);
  assert_string_equal(st.message, "no such widget: \xc3\xa9t\xc3\xa9");
  /* A handler returning something that is not a code is reported UNKNOWN. */
  req.code = 99;
  assert_int_equal(duct_test_probe_fail(f->ch, &req, &reply, &o), DUCT_UNKNOWN);
  e2e_stop_probe(f);
}

static void test_server_killed_mid_call(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  duct_channel *watch;
  duct_channel_opts co = {.connect_timeout_ms = 2000};
  assert_int_equal(duct_channel_open(f->address, &co, &watch), DUCT_OK);
  sleeper s = {f->ch, 60000, 30000, DUCT_OK, 0, {{0}}};
  assert_int_equal(duct__thread_start(&s.t, sleeper_run, &s), DUCT_OK);
  wait_sleeping(watch, 1);
  test_proc_kill(f->server);
  duct__thread_join(&s.t);
  assert_int_equal(s.rc, DUCT_UNAVAILABLE);
  assert_true(s.elapsed < 20000); /* well before the deadline: no hang */
  duct_channel_close(watch);
  /* The next call tries to reconnect, finds no server and says so within
   * its deadline (the channel's 20 s connect timeout does not apply). */
  Duct__Test__Blob req = DUCT__TEST__BLOB__INIT, *reply;
  duct_call_opts o = {.deadline_ms = 1000};
  int64_t t0 = duct__now_ms();
  assert_int_equal(duct_test_probe_echo(f->ch, &req, &reply, &o), DUCT_UNAVAILABLE);
  assert_true(duct__now_ms() - t0 < 5000);
  test_proc_wait(f->server, 15000);
  duct_channel_close(f->ch);
  e2e_reap(f->server);
  free(f);
}

static void test_client_killed_mid_call(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  const char *args[] = {"--client", f->address, "1500"};
  test_proc *client = e2e_spawn("duct-probe-server", args, 3);
  wait_sleeping(f->ch, 1);
  test_proc_kill(client);
  test_proc_wait(client, 15000);
  e2e_reap(client);
  e2e_echo_ok(f->ch); /* served while the dead client's handler still runs */
  wait_sleeping(f->ch, 0); /* the handler finished; its reply had nowhere to go */
  e2e_echo_ok(f->ch);
  e2e_stop_probe(f);
}

static void test_request_over_max_message(void **state) {
  (void)state;
  const char *extra[] = {"--max-message", "100000"};
  fixture *f = e2e_start_probe(NULL, extra, 2, 1);
  size_t n = 150000;
  uint8_t *big = calloc(1, n);
  assert_non_null(big);
  Duct__Test__Blob *reply;
  duct_status st;
  /* The client knows the server's limit from HELLO and refuses locally. */
  assert_int_equal(e2e_echo(f->ch, big, n, 1, &reply, &st), DUCT_RESOURCE_EXHAUSTED);
  assert_non_null(strstr(st.message, "100000"));

  /* A peer that sends it anyway gets RESOURCE_EXHAUSTED from the server,
   * and the connection stays usable. */
  duct__link *l = e2e_raw_connect(f->address, DUCT__DEFAULT_MAX_FRAME);
  uint8_t buf[DUCT__DEFAULT_MAX_FRAME], hdr[DUCT__HEADER_SIZE];
  duct__frame tmpl = {DUCT__VERSION, DUCT__REQUEST, 0, 5, duct_test_probe_service.methods[0].id, 0, 0, 0};
  for (size_t i = 0; i < duct__frag_count(n, DUCT__DEFAULT_MAX_FRAME); i++) {
    duct__iov iov[2];
    int k = duct__wire_frag(&tmpl, big, n, DUCT__DEFAULT_MAX_FRAME, i, 0, hdr, iov);
    assert_int_equal(duct__link_send(l, iov, k, duct__now_ms() + 10000), DUCT_OK);
  }
  duct_code rc;
  duct__frame fr = e2e_raw_read(l, buf, sizeof buf, 10000, &rc);
  assert_int_equal(rc, DUCT_OK);
  assert_int_equal(fr.type, DUCT__RESPONSE);
  assert_int_equal(fr.call_id, 5);
  assert_int_equal(fr.status, DUCT_RESOURCE_EXHAUSTED);
  /* Same connection, next call: an empty Blob echo (payload 0 bytes). */
  tmpl.call_id = 6;
  duct__iov iov[2];
  int k = duct__wire_frag(&tmpl, big, 0, DUCT__DEFAULT_MAX_FRAME, 0, 0, hdr, iov);
  assert_int_equal(duct__link_send(l, iov, k, duct__now_ms() + 10000), DUCT_OK);
  fr = e2e_raw_read(l, buf, sizeof buf, 10000, &rc);
  assert_int_equal(rc, DUCT_OK);
  assert_int_equal(fr.call_id, 6);
  assert_int_equal(fr.status, DUCT_OK);
  duct__link_close(l);
  free(big);
  e2e_stop_probe(f);
}

static void test_garbage_closes_only_that_connection(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  /* Not a duct peer at all; then a "DUCT" magic with a version byte of
   * 0x20, which the server answers precisely. */
  static const char *garbage[] = {"GET / HTTP/1.1\r\n\r\n", "DUCT but not really a frame at all, no"};
  static const duct_code want[] = {DUCT_INTERNAL, DUCT_FAILED_PRECONDITION};
  for (int g = 0; g < 2; g++) {
    duct__link *l;
    duct__err err;
    uint8_t buf[DUCT__DEFAULT_MAX_FRAME];
    /* g == 0: garbage instead of HELLO; g == 1: garbage after HELLO. */
    if (g == 0)
      assert_int_equal(duct__link_open(f->address, duct__now_ms() + 10000, &l, &err), DUCT_OK);
    else
      l = e2e_raw_connect(f->address, DUCT__DEFAULT_MAX_FRAME);
    duct__iov iov = {garbage[g], strlen(garbage[g])};
    assert_int_equal(duct__link_send(l, &iov, 1, duct__now_ms() + 10000), DUCT_OK);
    duct_code rc;
    duct__frame fr = e2e_raw_read(l, buf, sizeof buf, 10000, &rc);
    assert_int_equal(rc, DUCT_OK);
    assert_int_equal(fr.type, DUCT__GOAWAY);
    assert_int_equal(fr.status, want[g]);
    e2e_raw_read(l, buf, sizeof buf, 10000, &rc);
    assert_int_equal(rc, DUCT_UNAVAILABLE); /* then the server hung up */
    duct__link_close(l);
    e2e_echo_ok(f->ch); /* everyone else is still served */
  }
  e2e_stop_probe(f);
}

/* A well-formed HELLO offering only protocol versions the server does not
 * speak is answered with GOAWAY FAILED_PRECONDITION naming the versions. */
static void test_hello_version_mismatch(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  duct__link *l;
  duct__err err;
  assert_int_equal(duct__link_open(f->address, duct__now_ms() + 10000, &l, &err), DUCT_OK);
  uint8_t msg[DUCT__HELLO_MSG_SIZE], buf[DUCT__DEFAULT_MAX_FRAME];
  duct__frame hf = {DUCT__VERSION, DUCT__HELLO, 0, 0, 0, 0, 0, DUCT__HELLO_SIZE};
  duct__hello h = {3, 4, DUCT__DEFAULT_MAX_FRAME, DUCT__DEFAULT_MAX_MESSAGE};
  duct__frame_encode(&hf, msg);
  duct__hello_encode(&h, msg + DUCT__HEADER_SIZE);
  duct__iov iov = {msg, sizeof msg};
  size_t len;
  assert_int_equal(duct__link_transact(l, &iov, 1, buf, sizeof buf, &len, duct__now_ms() + 10000),
                   DUCT_OK);
  duct__frame fr;
  const char *why;
  assert_int_equal(duct__frame_decode(buf, len, &fr, &why), DUCT_OK);
  assert_int_equal(fr.type, DUCT__GOAWAY);
  assert_int_equal(fr.status, DUCT_FAILED_PRECONDITION);
  buf[len < sizeof buf ? len : sizeof buf - 1] = 0;
  assert_non_null(strstr((const char *)buf + DUCT__HEADER_SIZE, "3..4"));
  duct__link_close(l);
  e2e_echo_ok(f->ch);
  e2e_stop_probe(f);
}

static void test_authorization_hook(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  Duct__Test__Empty req = DUCT__TEST__EMPTY__INIT, *reply;
  duct_status st;
  duct_call_opts o = {.status = &st};
  assert_int_equal(duct_test_probe_forbidden(f->ch, &req, &reply, &o), DUCT_PERMISSION_DENIED);
  assert_non_null(strstr(st.message, "Forbidden"));
  /* Denied twice over, also on a fresh connection: the handler never ran. */
  duct_channel *other;
  duct_channel_opts co = {.connect_timeout_ms = START_MS};
  assert_int_equal(duct_channel_open(f->address, &co, &other), DUCT_OK);
  assert_int_equal(duct_test_probe_forbidden(other, &req, &reply, &o), DUCT_PERMISSION_DENIED);
  assert_null(reply);
  duct_channel_close(other);
  /* The hook saw the real peer, as the system reports it: this process's
   * pid and its user (the uid on POSIX, the token's SID on Windows). */
  char self[256];
  test_self_user(self, sizeof self);
  Duct__Test__Stats *s = e2e_stats(f->ch);
  assert_int_equal(s->forbidden_runs, 0);
  assert_int_equal(s->last_auth_pid, duct__getpid());
  assert_string_equal(s->last_auth_user, self);
  if (s->last_auth_has_uid)
    assert_int_equal(s->last_auth_uid, (uint32_t)strtoul(self, NULL, 10));
  duct__test__stats__free_unpacked(s, NULL);
  Duct__Test__PeerInfo *who;
  assert_int_equal(duct_test_probe_whoami(f->ch, &req, &who, NULL), DUCT_OK);
  assert_int_equal(who->pid, duct__getpid());
  assert_int_equal(who->server_pid, test_proc_pid(f->server));
  assert_string_equal(who->user, self);
  duct__test__peer_info__free_unpacked(who, NULL);
  e2e_stop_probe(f);
}

static void test_second_server_same_address_fails(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  const char *args[] = {f->address};
  test_proc *second = e2e_spawn("duct-probe-server", args, 1);
  assert_int_equal(test_proc_wait(second, 20000), 2);
  e2e_reap(second);
  e2e_echo_ok(f->ch); /* the first server was not disturbed */
  e2e_stop_probe(f);
}

static void test_3mib_round_trip(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  size_t n = 3u * 1024 * 1024;
  uint8_t *big = malloc(n);
  assert_non_null(big);
  for (size_t i = 0; i < n; i++)
    big[i] = (uint8_t)(i * 2654435761u >> 24);
  Duct__Test__Blob *reply;
  duct_status st;
  assert_int_equal(e2e_echo(f->ch, big, n, 3, &reply, &st), DUCT_OK);
  assert_int_equal(reply->data.len, n);
  assert_memory_equal(reply->data.data, big, n);
  duct__test__blob__free_unpacked(reply, NULL);
  free(big);
  e2e_stop_probe(f);
}

static void test_stalled_partial_message_disconnected(void **state) {
  (void)state;
  const char *extra[] = {"--idle-ms", "300"};
  fixture *f = e2e_start_probe(NULL, extra, 2, 1);
  duct__link *l = e2e_raw_connect(f->address, DUCT__DEFAULT_MAX_FRAME);
  static uint8_t payload[1000];
  duct__frame fr = {DUCT__VERSION, DUCT__REQUEST, DUCT__FLAG_MORE, 1,
                    duct_test_probe_service.methods[0].id, 0, 0, sizeof payload};
  uint8_t hdr[DUCT__HEADER_SIZE], buf[DUCT__DEFAULT_MAX_FRAME];
  duct__frame_encode(&fr, hdr);
  duct__iov iov[2] = {{hdr, sizeof hdr}, {payload, sizeof payload}};
  int64_t t0 = duct__now_ms();
  assert_int_equal(duct__link_send(l, iov, 2, duct__now_ms() + 10000), DUCT_OK);
  e2e_echo_ok(f->ch); /* others are served while this peer stalls */
  duct_code rc;
  e2e_raw_read(l, buf, sizeof buf, 15000, &rc);
  assert_int_equal(rc, DUCT_UNAVAILABLE);
  assert_true(duct__now_ms() - t0 >= 250);
  duct__link_close(l);
  e2e_echo_ok(f->ch);
  e2e_stop_probe(f);
}

static void test_many_idle_connections_do_not_block_others(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  /* 60 peers connect and say nothing, not even HELLO: each holds a
   * connection (a pipe instance on Windows) but no worker. */
  enum { IDLE = 60 };
  duct__link *idle[IDLE];
  for (int i = 0; i < IDLE; i++) {
    duct__err err;
    assert_int_equal(duct__link_open(f->address, duct__now_ms() + 10000, &idle[i], &err),
                     DUCT_OK);
  }
  e2e_echo_ok(f->ch);
  Duct__Test__Blob *reply;
  duct_status st;
  for (int i = 0; i < 20; i++) { /* and keep being served, more than once */
    assert_int_equal(e2e_echo(f->ch, (const uint8_t *)"abc", 3, (uint32_t)i, &reply, &st), DUCT_OK);
    assert_int_equal(reply->tag, (uint32_t)i);
    duct__test__blob__free_unpacked(reply, NULL);
  }
  for (int i = 0; i < IDLE; i++)
    duct__link_close(idle[i]);
  e2e_echo_ok(f->ch);
  e2e_stop_probe(f);
}

static void test_graceful_stop_drains(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  duct_channel *other;
  duct_channel_opts co = {.connect_timeout_ms = 2000};
  assert_int_equal(duct_channel_open(f->address, &co, &other), DUCT_OK);
  sleeper s = {other, 1000, 20000, DUCT_OK, 0, {{0}}};
  assert_int_equal(duct__thread_start(&s.t, sleeper_run, &s), DUCT_OK);
  wait_sleeping(f->ch, 1);
  e2e_stop_probe(f); /* Shutdown, then the server must exit 0 ... */
  duct__thread_join(&s.t);
  assert_int_equal(s.rc, DUCT_OK); /* ... after finishing the call in progress */
  duct_channel_close(other);
}

int main(int argc, char **argv) {
  (void)argc;
  e2e_init(argv[0]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_kv_every_call_shape, e2e_teardown),
      cmocka_unit_test_teardown(test_8_threads_1000_calls_one_channel, e2e_teardown),
      cmocka_unit_test_teardown(test_deadline_exceeded_then_usable, e2e_teardown),
      cmocka_unit_test_teardown(test_unknown_method, e2e_teardown),
      cmocka_unit_test_teardown(test_handler_error_carries_message, e2e_teardown),
      cmocka_unit_test_teardown(test_server_killed_mid_call, e2e_teardown),
      cmocka_unit_test_teardown(test_client_killed_mid_call, e2e_teardown),
      cmocka_unit_test_teardown(test_request_over_max_message, e2e_teardown),
      cmocka_unit_test_teardown(test_garbage_closes_only_that_connection, e2e_teardown),
      cmocka_unit_test_teardown(test_hello_version_mismatch, e2e_teardown),
      cmocka_unit_test_teardown(test_authorization_hook, e2e_teardown),
      cmocka_unit_test_teardown(test_second_server_same_address_fails, e2e_teardown),
      cmocka_unit_test_teardown(test_3mib_round_trip, e2e_teardown),
      cmocka_unit_test_teardown(test_stalled_partial_message_disconnected, e2e_teardown),
      cmocka_unit_test_teardown(test_many_idle_connections_do_not_block_others, e2e_teardown),
      cmocka_unit_test_teardown(test_graceful_stop_drains, e2e_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
