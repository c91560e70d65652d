/* tests/e2e/test_streams.c - streams, async calls and cancellation across
 * processes (protocol version 2): every method kind end to end, order,
 * back-pressure, cancel at every stage, clients that die, a stop with
 * many open subscriptions, and many async calls on one channel. The
 * server is duct-probe-server in a child process; its GetStats reports
 * what its handlers saw. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#else
#include <poll.h>
#endif

#include "e2e_util.h"
#include "sysinfo.h"
#include "runtime/sys.h"
#include "runtime/wire.h"

/* Polls the server's Stats until pred holds or timeout_ms passes (a
 * deadline, for what happens in another process). */
static Duct__Test__Stats *stats_until(duct_channel *ch, int (*pred)(const Duct__Test__Stats *, void *),
                                      void *arg, int timeout_ms) {
  int64_t until = duct__now_ms() + timeout_ms;
  for (;;) {
    Duct__Test__Stats *st = e2e_stats(ch);
    if (pred(st, arg) || duct__now_ms() >= until)
      return st;
    duct__test__stats__free_unpacked(st, NULL);
    duct__mutex m;
    duct__cond c;
    duct__mutex_init(&m);
    duct__cond_init(&c);
    duct__mutex_lock(&m);
    duct__cond_wait(&c, &m, duct__now_ms() + 20); /* a pause between polls */
    duct__mutex_unlock(&m);
    duct__cond_destroy(&c);
    duct__mutex_destroy(&m);
  }
}

static duct_test_probe_range_stream *start_range(duct_channel *ch, uint64_t count, uint32_t size,
                                                 int timeout_ms, uint32_t deadline_ms) {
  Duct__Test__RangeRequest r = DUCT__TEST__RANGE_REQUEST__INIT;
  r.count = count;
  r.size = size;
  r.timeout_ms = timeout_ms;
  duct_call_opts o = {.deadline_ms = deadline_ms};
  duct_test_probe_range_stream *st;
  assert_int_equal(duct_test_probe_range(ch, &r, &o, &st), DUCT_OK);
  return st;
}

/* Receives `count` messages and checks each is the next n with `size`
 * bytes of padding. */
static void read_range(duct_test_probe_range_stream *st, uint64_t from, uint64_t count,
                       uint32_t size) {
  for (uint64_t i = from; i < from + count; i++) {
    Duct__Test__Seq *m = NULL;
    assert_int_equal(duct_test_probe_range_recv(st, &m, 30000), DUCT_OK);
    assert_non_null(m);
    if (m->n != i)
      fail_msg("message %llu arrived as %llu", (unsigned long long)i, (unsigned long long)m->n);
    assert_int_equal(m->pad.len, size);
    for (size_t k = 0; k < m->pad.len; k += 997)
      assert_int_equal(m->pad.data[k], 'x');
    duct__test__seq__free_unpacked(m, NULL);
  }
}

static void range_ends_ok(duct_test_probe_range_stream *st) {
  Duct__Test__Seq *m = (Duct__Test__Seq *)1;
  assert_int_equal(duct_test_probe_range_recv(st, &m, 30000), DUCT_OK);
  assert_null(m); /* the end */
  duct_status s;
  assert_int_equal(duct_test_probe_range_finish(st, &s), DUCT_OK);
  assert_int_equal(s.code, DUCT_OK);
}

static void test_server_stream_100k_in_order(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  duct_test_probe_range_stream *st = start_range(f->ch, 100000, 16, -1, 0);
  read_range(st, 0, 100000, 16);
  range_ends_ok(st);
  /* Large messages (fragmented) in order too, on the same channel. */
  st = start_range(f->ch, 40, 300 * 1024, -1, 0);
  read_range(st, 0, 40, 300 * 1024);
  range_ends_ok(st);
  e2e_stop_probe(f);
}

static void test_client_stream_sum(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  duct_test_probe_sum_stream *st;
  assert_int_equal(duct_test_probe_sum(f->ch, NULL, &st), DUCT_OK);
  uint64_t sum = 0;
  for (uint64_t i = 0; i < 50000; i++) {
    Duct__Test__Seq m = DUCT__TEST__SEQ__INIT;
    m.n = i;
    sum += i;
    assert_int_equal(duct_test_probe_sum_send(st, &m, 30000), DUCT_OK);
  }
  assert_int_equal(duct_test_probe_sum_close_send(st), DUCT_OK);
  Duct__Test__SumReply *reply = NULL;
  duct_status s;
  assert_int_equal(duct_test_probe_sum_finish(st, &reply, &s), DUCT_OK);
  assert_non_null(reply);
  assert_int_equal(reply->count, 50000);
  assert_int_equal(reply->sum, sum);
  assert_true(reply->in_order);
  duct__test__sum_reply__free_unpacked(reply, NULL);
  e2e_stop_probe(f);
}

typedef struct chat_sender {
  duct__thread t;
  duct_test_probe_chat_stream *st;
  uint64_t count;
  duct_code rc;
} chat_sender;

static void chat_send_all(void *arg) {
  chat_sender *c = arg;
  c->rc = DUCT_OK;
  for (uint64_t i = 0; i < c->count && c->rc == DUCT_OK; i++) {
    Duct__Test__Seq m = DUCT__TEST__SEQ__INIT;
    uint8_t pad[100];
    memset(pad, 'x', sizeof pad);
    m.n = i;
    m.pad.data = pad;
    m.pad.len = i % 7 == 0 ? sizeof pad : 0;
    c->rc = duct_test_probe_chat_send(c->st, &m, 30000);
  }
  if (c->rc == DUCT_OK)
    c->rc = duct_test_probe_chat_close_send(c->st);
}

static void test_bidi_both_ways_at_once(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  chat_sender c = {.count = 20000};
  assert_int_equal(duct_test_probe_chat(f->ch, NULL, &c.st), DUCT_OK);
  /* One thread sends while this one receives: with both windows far
   * smaller than 20,000 messages, this only finishes if each side reads
   * while it writes. */
  assert_int_equal(duct__thread_start(&c.t, chat_send_all, &c), DUCT_OK);
  for (uint64_t i = 0; i < c.count; i++) {
    Duct__Test__Seq *m = NULL;
    assert_int_equal(duct_test_probe_chat_recv(c.st, &m, 30000), DUCT_OK);
    assert_non_null(m);
    assert_int_equal(m->n, i);
    assert_int_equal(m->pad.len, i % 7 == 0 ? 100 : 0);
    duct__test__seq__free_unpacked(m, NULL);
  }
  duct__thread_join(&c.t);
  assert_int_equal(c.rc, DUCT_OK);
  Duct__Test__Seq *m = (Duct__Test__Seq *)1;
  assert_int_equal(duct_test_probe_chat_recv(c.st, &m, 30000), DUCT_OK);
  assert_null(m);
  duct_status s;
  assert_int_equal(duct_test_probe_chat_finish(c.st, &s), DUCT_OK);
  /* Meanwhile the same channel serves other calls. */
  e2e_echo_ok(f->ch);
  e2e_stop_probe(f);
}

static int died_noticed(const Duct__Test__Stats *st, void *arg) {
  (void)arg;
  return st->subscriptions == 0 && st->stream_cancelled >= 1;
}

static int client_streaming(const Duct__Test__Stats *st, void *arg) {
  (void)arg;
  return st->subscriptions == 1 && st->backpressure >= 1;
}

static void test_client_dies_mid_stream(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  const char *args[] = {"--stream-client", f->address};
  test_proc *client = e2e_spawn("duct-probe-server", args, 2);
  /* The client has a subscription, and a Range whose sender is blocked
   * on the client's window. */
  Duct__Test__Stats *st = stats_until(f->ch, client_streaming, NULL, START_MS);
  assert_true(client_streaming(st, NULL));
  duct__test__stats__free_unpacked(st, NULL);
  test_proc_kill(client);
  assert_true(test_proc_wait(client, 10000) != -1);
  e2e_reap(client);
  /* Both of its streams are told: the subscription's cancel callback
   * ran, the Range handler's send returned CANCELLED. */
  st = stats_until(f->ch, died_noticed, NULL, 10000);
  assert_true(died_noticed(st, NULL));
  duct__test__stats__free_unpacked(st, NULL);
  e2e_echo_ok(f->ch);
  e2e_stop_probe(f); /* exit 0: every block of the dead streams was freed */
}

typedef struct subs_arg {
  uint32_t want;
  uint32_t max_threads;
} subs_arg;

/* All subscriptions open, and their handlers' threads gone (each ran on a
 * thread that ends once the handler has kept its stream; on a loaded
 * machine the last ones end a little after the streams are counted). */
static int subs_open(const Duct__Test__Stats *st, void *arg) {
  const subs_arg *a = arg;
  return st->subscriptions == a->want && st->threads <= a->max_threads;
}

static void test_stop_with_1000_subscriptions(void **state) {
  (void)state;
  const char *extra[] = {"--drain-ms", "3000"};
  fixture *f = e2e_start_probe(NULL, extra, 2, 1);
  Duct__Test__Stats *before = e2e_stats(f->ch);
  enum { N = 1000 };
  duct_test_probe_subscribe_stream **subs = calloc(N, sizeof *subs);
  assert_non_null(subs);
  /* On a channel of their own: e2e_stop_probe closes f->ch. */
  duct_channel_opts co = {.connect_timeout_ms = START_MS};
  duct_channel *ch;
  assert_int_equal(duct_channel_open(f->address, &co, &ch), DUCT_OK);
  Duct__Test__Empty e = DUCT__TEST__EMPTY__INIT;
  for (int i = 0; i < N; i++)
    assert_int_equal(duct_test_probe_subscribe(ch, &e, NULL, &subs[i]), DUCT_OK);
  /* Idle subscriptions hold no thread of the server's: a few may still be
   * on their way out when the last stream is counted, none after that. */
  subs_arg want = {N, before->threads + 8};
  Duct__Test__Stats *st = stats_until(f->ch, subs_open, &want, 30000);
  assert_int_equal(st->subscriptions, N);
  assert_true(st->threads <= before->threads + 8);
  duct__test__stats__free_unpacked(st, NULL);
  duct__test__stats__free_unpacked(before, NULL);
  /* One event reaches all of them. */
  Duct__Test__Seq ev = DUCT__TEST__SEQ__INIT;
  ev.n = 42;
  Duct__Test__Empty *ok;
  assert_int_equal(duct_test_probe_publish(f->ch, &ev, &ok, NULL), DUCT_OK);
  duct__test__empty__free_unpacked(ok, NULL);
  for (int i = 0; i < N; i++) {
    Duct__Test__Seq *m = NULL;
    assert_int_equal(duct_test_probe_subscribe_recv(subs[i], &m, 30000), DUCT_OK);
    assert_non_null(m);
    assert_int_equal(m->n, 42);
    duct__test__seq__free_unpacked(m, NULL);
  }
  /* The stop ends every subscription cleanly and well within its drain. */
  int64_t t0 = duct__now_ms();
  e2e_stop_probe(f);
  int64_t took = duct__now_ms() - t0;
  assert_true(took < 3000);
  for (int i = 0; i < N; i++) {
    Duct__Test__Seq *m = (Duct__Test__Seq *)1;
    assert_int_equal(duct_test_probe_subscribe_recv(subs[i], &m, 10000), DUCT_OK);
    assert_null(m);
    duct_status s;
    assert_int_equal(duct_test_probe_subscribe_finish(subs[i], &s), DUCT_UNAVAILABLE);
    assert_non_null(strstr(s.message, "stopping"));
  }
  free(subs);
  duct_channel_close(ch);
}

static int backpressured(const Duct__Test__Stats *st, void *arg) {
  (void)arg;
  return st->backpressure >= 1;
}

static void test_slow_consumer_backpressure(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  Duct__Test__Stats *idle = e2e_stats(f->ch);
  /* 2,000 messages of 16 KiB (31 MiB) to a reader that reads nothing for
   * now: the producer's sends must report back-pressure... */
  duct_test_probe_range_stream *st = start_range(f->ch, 2000, 16 * 1024, 0, 0);
  Duct__Test__Stats *s1 = stats_until(f->ch, backpressured, NULL, 20000);
  assert_true(backpressured(s1, NULL));
  /* ...and the server holds no more than the stream's window and one
   * connection's queue, not the 31 MiB. */
  assert_true(s1->live_bytes < idle->live_bytes + 12u * 1024 * 1024);
  duct__test__stats__free_unpacked(s1, NULL);
  duct__test__stats__free_unpacked(idle, NULL);
  /* Then everything arrives, in order. */
  read_range(st, 0, 2000, 16 * 1024);
  range_ends_ok(st);
  e2e_stop_probe(f);
}

static int sleep_cancelled(const Duct__Test__Stats *st, void *arg) {
  return st->sleep_cancelled >= *(uint32_t *)arg;
}

static int streams_cancelled(const Duct__Test__Stats *st, void *arg) {
  return st->stream_cancelled >= *(uint32_t *)arg;
}

typedef struct done_box {
  duct__mutex mu;
  duct__cond cv;
  int n;
  duct_code code;
  char message[DUCT_STATUS_MESSAGE_MAX + 1];
  uint32_t bad; /* replies that did not match their request */
} done_box;

static void box_init(done_box *b) {
  memset(b, 0, sizeof *b);
  duct__mutex_init(&b->mu);
  duct__cond_init(&b->cv);
}

static void box_wait(done_box *b, int n, int timeout_ms) {
  int64_t until = duct__now_ms() + timeout_ms;
  duct__mutex_lock(&b->mu);
  while (b->n < n && duct__now_ms() < until)
    duct__cond_wait(&b->cv, &b->mu, until);
  int got = b->n;
  duct__mutex_unlock(&b->mu);
  assert_int_equal(got, n);
}

static void box_free(done_box *b) {
  duct__cond_destroy(&b->cv);
  duct__mutex_destroy(&b->mu);
}

static void sleep_done(void *user, duct_code code, ProtobufCMessage *reply, const duct_status *st) {
  done_box *b = user;
  if (reply)
    duct__test__sleep_reply__free_unpacked((Duct__Test__SleepReply *)reply, NULL);
  duct__mutex_lock(&b->mu);
  b->code = code;
  snprintf(b->message, sizeof b->message, "%s", st->message);
  b->n++;
  duct__cond_broadcast(&b->cv);
  duct__mutex_unlock(&b->mu);
}

static void test_cancel_at_every_stage(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  duct_status s;
  uint32_t want = 1;

  /* 1. A stream cancelled before its first message. */
  duct_test_probe_range_stream *st = start_range(f->ch, 1000000000, 1024, -1, 0);
  duct_test_probe_range_cancel(st);
  assert_int_equal(duct_test_probe_range_finish(st, &s), DUCT_CANCELLED);
  Duct__Test__Stats *x = stats_until(f->ch, streams_cancelled, &want, 10000);
  assert_true(streams_cancelled(x, &want)); /* the handler's send said CANCELLED */
  duct__test__stats__free_unpacked(x, NULL);

  /* 2. Mid-stream, after 100 messages. */
  st = start_range(f->ch, 1000000000, 16, -1, 0);
  read_range(st, 0, 100, 16);
  duct_test_probe_range_cancel(st);
  Duct__Test__Seq *m = (Duct__Test__Seq *)1;
  /* What arrived before the cancel may still be read; then the end. */
  do {
    if (m != (Duct__Test__Seq *)1)
      duct__test__seq__free_unpacked(m, NULL);
    assert_int_equal(duct_test_probe_range_recv(st, &m, 10000), DUCT_OK);
  } while (m);
  assert_int_equal(duct_test_probe_range_finish(st, &s), DUCT_CANCELLED);
  want = 2;
  x = stats_until(f->ch, streams_cancelled, &want, 10000);
  assert_true(streams_cancelled(x, &want));
  duct__test__stats__free_unpacked(x, NULL);

  /* 3. After the server ended the stream: the end stands. */
  st = start_range(f->ch, 5, 16, -1, 0);
  read_range(st, 0, 5, 16);
  m = (Duct__Test__Seq *)1;
  assert_int_equal(duct_test_probe_range_recv(st, &m, 10000), DUCT_OK);
  assert_null(m);
  duct_test_probe_range_cancel(st);
  assert_int_equal(duct_test_probe_range_finish(st, &s), DUCT_OK);

  /* 4. A client stream cancelled mid-upload: the handler's recv says so. */
  duct_test_probe_sum_stream *up;
  assert_int_equal(duct_test_probe_sum(f->ch, NULL, &up), DUCT_OK);
  for (uint64_t i = 0; i < 100; i++) {
    Duct__Test__Seq q = DUCT__TEST__SEQ__INIT;
    q.n = i;
    assert_int_equal(duct_test_probe_sum_send(up, &q, 10000), DUCT_OK);
  }
  duct_test_probe_sum_cancel(up);
  Duct__Test__SumReply *r = NULL;
  assert_int_equal(duct_test_probe_sum_finish(up, &r, &s), DUCT_CANCELLED);
  assert_null(r);
  want = 3;
  x = stats_until(f->ch, streams_cancelled, &want, 10000);
  assert_true(streams_cancelled(x, &want));
  duct__test__stats__free_unpacked(x, NULL);

  /* 5. An async unary call whose handler is running: it sees the cancel
   * (its callback runs, its wait ends) and the client's callback says
   * CANCELLED at once. */
  done_box b;
  box_init(&b);
  Duct__Test__SleepRequest sr = DUCT__TEST__SLEEP_REQUEST__INIT;
  sr.ms = 60000;
  sr.watch_cancel = 1;
  duct_call *call;
  assert_int_equal(duct_test_probe_sleep_async(f->ch, &sr, NULL, sleep_done, &b, &call), DUCT_OK);
  Duct__Test__Stats *y;
  int64_t until = duct__now_ms() + 10000;
  for (;;) { /* until its handler runs */
    y = e2e_stats(f->ch);
    if (y->sleeping == 1 || duct__now_ms() > until)
      break;
    duct__test__stats__free_unpacked(y, NULL);
  }
  assert_int_equal(y->sleeping, 1);
  duct__test__stats__free_unpacked(y, NULL);
  duct_call_cancel(call);
  box_wait(&b, 1, 10000);
  assert_int_equal(b.code, DUCT_CANCELLED);
  duct_call_release(call);
  want = 1;
  x = stats_until(f->ch, sleep_cancelled, &want, 10000);
  assert_true(sleep_cancelled(x, &want));
  duct__test__stats__free_unpacked(x, NULL);

  /* 6. A deadline ends a stream: the client hears DEADLINE_EXCEEDED, the
   * server cancels the subscription. */
  Duct__Test__Empty e = DUCT__TEST__EMPTY__INIT;
  duct_test_probe_subscribe_stream *sub;
  duct_call_opts o = {.deadline_ms = 300};
  assert_int_equal(duct_test_probe_subscribe(f->ch, &e, &o, &sub), DUCT_OK);
  m = (Duct__Test__Seq *)1;
  assert_int_equal(duct_test_probe_subscribe_recv(sub, &m, 10000), DUCT_OK);
  assert_null(m);
  assert_int_equal(duct_test_probe_subscribe_finish(sub, &s), DUCT_DEADLINE_EXCEEDED);
  subs_arg none = {0};
  x = stats_until(f->ch, subs_open, &none, 10000);
  assert_int_equal(x->subscriptions, 0);
  duct__test__stats__free_unpacked(x, NULL);

  /* 7. A late reply is dropped, never delivered to a later call: the
   * cancelled Sleep's id is retired, the next calls get their own. */
  for (int i = 0; i < 20; i++)
    e2e_echo_ok(f->ch);
  box_free(&b);
  e2e_stop_probe(f);
}

typedef struct echo_box {
  done_box b;
  uint8_t data[64];
} echo_box;

static void echo_done(void *user, duct_code code, ProtobufCMessage *reply, const duct_status *st) {
  (void)st;
  echo_box *e = user;
  Duct__Test__Blob *r = (Duct__Test__Blob *)reply;
  uintptr_t bad = code != DUCT_OK || !r || r->data.len != sizeof e->data ||
                  memcmp(r->data.data, e->data, sizeof e->data) != 0;
  if (r)
    duct__test__blob__free_unpacked(r, NULL);
  duct__mutex_lock(&e->b.mu);
  e->b.bad += (uint32_t)bad;
  e->b.n++;
  duct__cond_broadcast(&e->b.cv);
  duct__mutex_unlock(&e->b.mu);
}

/* Each call carries its own tag in its data; a reply delivered to the
 * wrong call would not match. */
static void tagged_echo_done(void *user, duct_code code, ProtobufCMessage *reply,
                             const duct_status *st);

typedef struct tag_ctx {
  echo_box *box;
  uint32_t tag;
} tag_ctx;

static void tagged_echo_done(void *user, duct_code code, ProtobufCMessage *reply,
                             const duct_status *st) {
  (void)st;
  tag_ctx *t = user;
  Duct__Test__Blob *r = (Duct__Test__Blob *)reply;
  int bad = code != DUCT_OK || !r || r->tag != t->tag || r->data.len != 4 ||
            memcmp(r->data.data, &t->tag, 4) != 0;
  if (r)
    duct__test__blob__free_unpacked(r, NULL);
  duct__mutex_lock(&t->box->b.mu);
  t->box->b.bad += (uint32_t)bad;
  t->box->b.n++;
  duct__cond_broadcast(&t->box->b.cv);
  duct__mutex_unlock(&t->box->b.mu);
}

static void test_async_10000_in_flight(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  enum { N = 10000 };
  echo_box box;
  box_init(&box.b);
  tag_ctx *tags = calloc(N, sizeof *tags);
  assert_non_null(tags);
  for (uint32_t i = 0; i < N; i++) {
    tags[i].box = &box;
    tags[i].tag = i;
    Duct__Test__Blob req = DUCT__TEST__BLOB__INIT;
    req.tag = i;
    req.data.data = (uint8_t *)&tags[i].tag;
    req.data.len = 4;
    assert_int_equal(
        duct_test_probe_echo_async(f->ch, &req, NULL, tagged_echo_done, &tags[i], NULL), DUCT_OK);
  }
  box_wait(&box.b, N, 120000);
  assert_int_equal(box.b.bad, 0);
  free(tags);
  box_free(&box.b);
  e2e_stop_probe(f);
}

/* With manual_dispatch, completions wait for the application's loop: the
 * channel's event becomes ready and duct_channel_dispatch runs them here. */
static void test_async_manual_dispatch(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  duct_channel_opts co = {.connect_timeout_ms = START_MS, .manual_dispatch = 1};
  duct_channel *ch;
  assert_int_equal(duct_channel_open(f->address, &co, &ch), DUCT_OK);
  echo_box box;
  box_init(&box.b);
  memset(box.data, 7, sizeof box.data);
  for (int i = 0; i < 100; i++) {
    Duct__Test__Blob req = DUCT__TEST__BLOB__INIT;
    req.data.data = box.data;
    req.data.len = sizeof box.data;
    assert_int_equal(duct_test_probe_echo_async(ch, &req, NULL, echo_done, &box, NULL), DUCT_OK);
  }
  intptr_t ev = duct_channel_event(ch);
  assert_true(ev != -1);
  int64_t until = duct__now_ms() + 30000;
  int ran = 0;
  while (ran < 100 && duct__now_ms() < until) {
#ifdef _WIN32
    WaitForSingleObject((HANDLE)ev, 1000);
#else
    struct pollfd p = {(int)ev, POLLIN, 0};
    poll(&p, 1, 1000);
#endif
    ran += duct_channel_dispatch(ch);
  }
  assert_int_equal(ran, 100);
  assert_int_equal(box.b.n, 100); /* each ran in dispatch, on this thread */
  assert_int_equal(box.b.bad, 0);
  assert_int_equal(duct_channel_dispatch(ch), 0);
  duct_channel_close(ch);
  box_free(&box.b);
  e2e_stop_probe(f);
}

/* A handler that watches cancellation no longer keeps a stop waiting past
 * its drain: the stop cancels it when the drain ends. */
static void test_stop_cancels_running_handler(void **state) {
  (void)state;
  const char *extra[] = {"--drain-ms", "500"};
  fixture *f = e2e_start_probe(NULL, extra, 2, 1);
  done_box b;
  box_init(&b);
  Duct__Test__SleepRequest sr = DUCT__TEST__SLEEP_REQUEST__INIT;
  sr.ms = 60000;
  sr.watch_cancel = 1;
  duct_channel_opts co = {.connect_timeout_ms = START_MS};
  duct_channel *ch;
  assert_int_equal(duct_channel_open(f->address, &co, &ch), DUCT_OK);
  assert_int_equal(duct_test_probe_sleep_async(ch, &sr, NULL, sleep_done, &b, NULL), DUCT_OK);
  int64_t until = duct__now_ms() + 10000;
  for (;;) {
    Duct__Test__Stats *y = e2e_stats(f->ch);
    int sleeping = y->sleeping;
    duct__test__stats__free_unpacked(y, NULL);
    if (sleeping == 1 || duct__now_ms() > until)
      break;
  }
  int64_t t0 = duct__now_ms();
  e2e_stop_probe(f);
  assert_true(duct__now_ms() - t0 < 3000); /* not the handler's 60 s */
  box_wait(&b, 1, 10000);
  assert_int_equal(b.code, DUCT_UNAVAILABLE);
  assert_non_null(strstr(b.message, "stopping"));
  duct_channel_close(ch);
  box_free(&b);
}

/* ---- version 1 peers ---- */

/* A client that speaks only version 1 still makes unary calls, and is
 * told a streaming method needs version 2. */
static void test_v1_client_talks_unary(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  duct__link *l;
  duct__err err;
  assert_int_equal(duct__link_open(f->address, duct__now_ms() + START_MS, &l, &err), DUCT_OK);
  uint8_t hello[DUCT__HELLO_MSG_SIZE], buf[DUCT__DEFAULT_MAX_FRAME];
  duct__wire_hello(hello, DUCT__DEFAULT_MAX_FRAME, DUCT__DEFAULT_MAX_MESSAGE);
  hello[DUCT__HEADER_SIZE + 2] = 1; /* max_version 1 */
  duct__iov iov = {hello, sizeof hello};
  size_t len;
  assert_int_equal(duct__link_transact(l, &iov, 1, buf, sizeof buf, &len, duct__now_ms() + 10000),
                   DUCT_OK);
  duct__frame h;
  const char *why;
  assert_int_equal(duct__frame_decode(buf, len, &h, &why), DUCT_OK);
  assert_int_equal(h.type, DUCT__HELLO);
  assert_int_equal(buf[DUCT__HEADER_SIZE + 2], 2); /* the server speaks up to 2 */

  Duct__Test__Blob req = DUCT__TEST__BLOB__INIT;
  req.tag = 77;
  uint8_t packed[64];
  size_t n = duct__test__blob__pack(&req, packed);
  e2e_raw_request(l, 1, duct_test_probe_service.methods[0].id, packed, n, DUCT__DEFAULT_MAX_FRAME);
  duct_code rc;
  duct__frame r = e2e_raw_read(l, buf, sizeof buf, 10000, &rc);
  assert_int_equal(rc, DUCT_OK);
  assert_int_equal(r.type, DUCT__RESPONSE);
  assert_int_equal(r.version, 1);
  assert_int_equal(r.status, DUCT_OK);
  Duct__Test__Blob *got = duct__test__blob__unpack(NULL, r.payload_len, buf + DUCT__HEADER_SIZE);
  assert_non_null(got);
  assert_int_equal(got->tag, 77);
  duct__test__blob__free_unpacked(got, NULL);

  const duct_method *range = NULL;
  for (size_t i = 0; i < duct_test_probe_service.n_methods; i++)
    if (duct_test_probe_service.methods[i].kind == DUCT_SERVER_STREAMING)
      range = &duct_test_probe_service.methods[i];
  assert_non_null(range);
  Duct__Test__RangeRequest rr = DUCT__TEST__RANGE_REQUEST__INIT;
  n = duct__test__range_request__pack(&rr, packed);
  e2e_raw_request(l, 2, range->id, packed, n, DUCT__DEFAULT_MAX_FRAME);
  r = e2e_raw_read(l, buf, sizeof buf, 10000, &rc);
  assert_int_equal(rc, DUCT_OK);
  assert_int_equal(r.type, DUCT__RESPONSE);
  assert_int_equal(r.call_id, 2);
  assert_int_equal(r.status, DUCT_UNIMPLEMENTED);
  duct__link_close(l);
  e2e_stop_probe(f);
}

int main(int argc, char **argv) {
  (void)argc;
  e2e_init(argv[0]);
  test_raise_fd_limit(4096);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_server_stream_100k_in_order, e2e_teardown),
      cmocka_unit_test_teardown(test_client_stream_sum, e2e_teardown),
      cmocka_unit_test_teardown(test_bidi_both_ways_at_once, e2e_teardown),
      cmocka_unit_test_teardown(test_client_dies_mid_stream, e2e_teardown),
      cmocka_unit_test_teardown(test_stop_with_1000_subscriptions, e2e_teardown),
      cmocka_unit_test_teardown(test_slow_consumer_backpressure, e2e_teardown),
      cmocka_unit_test_teardown(test_cancel_at_every_stage, e2e_teardown),
      cmocka_unit_test_teardown(test_async_10000_in_flight, e2e_teardown),
      cmocka_unit_test_teardown(test_async_manual_dispatch, e2e_teardown),
      cmocka_unit_test_teardown(test_stop_cancels_running_handler, e2e_teardown),
      cmocka_unit_test_teardown(test_v1_client_talks_unary, e2e_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
