/* Hostile local peers against a real server process (duct-probe-server):
 * each test is one finding of the core review that a peer could use to
 * starve, bloat or stall a server, and checks the bound that now holds.
 * The same file runs on Linux and, in the windows preset, under Wine. Not
 * run under valgrind: the point is volume. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "e2e_util.h"
#include "sysinfo.h"
#include "runtime/sys.h"
#include "runtime/wire.h"

#define MiB (1024u * 1024u)

static uint32_t method_id(const char *name) {
  for (size_t i = 0; i < duct_test_probe_service.n_methods; i++)
    if (strstr(duct_test_probe_service.methods[i].name, name))
      return duct_test_probe_service.methods[i].id;
  fail_msg("no method %s", name);
  return 0;
}

/* A packed Blob of `len` bytes of a pattern, for raw requests. */
static uint8_t *packed_blob(size_t len, uint32_t tag, size_t *out_len) {
  uint8_t *data = malloc(len);
  assert_non_null(data);
  for (size_t i = 0; i < len; i++)
    data[i] = (uint8_t)(i * 7 + 3);
  Duct__Test__Blob b = DUCT__TEST__BLOB__INIT;
  b.data.data = data;
  b.data.len = len;
  b.tag = tag;
  *out_len = duct__test__blob__get_packed_size(&b);
  uint8_t *out = malloc(*out_len);
  assert_non_null(out);
  duct__test__blob__pack(&b, out);
  free(data);
  return out;
}

/* Reads a whole RESPONSE (all fragments) off a raw link and returns its
 * payload; *code is its status. */
static uint8_t *raw_response(duct__link *l, size_t *len, uint32_t *code, int timeout_ms) {
  static uint8_t buf[DUCT__DEFAULT_MAX_FRAME];
  uint8_t *all = NULL;
  size_t n = 0;
  for (;;) {
    duct_code rc;
    duct__frame f = e2e_raw_read(l, buf, sizeof buf, timeout_ms, &rc);
    assert_int_equal(rc, DUCT_OK);
    assert_int_equal(f.type, DUCT__RESPONSE);
    all = realloc(all, n + f.payload_len + 1);
    assert_non_null(all);
    memcpy(all + n, buf + DUCT__HEADER_SIZE, f.payload_len);
    n += f.payload_len;
    *code = f.status;
    if (!(f.flags & DUCT__FLAG_MORE))
      break;
  }
  *len = n;
  return all;
}

/* Finding 1: a reply used to be written fragment by fragment with a
 * blocking send on the worker, so one peer per worker that asked for a
 * big reply and read it slowly stopped the server. Now the reply waits in
 * its connection's queue and the workers serve everyone else. */
static void test_slow_readers_do_not_pin_workers(void **state) {
  (void)state;
  const char *extra[] = {"--workers", "2", "--idle-ms", "20000"};
  fixture *f = e2e_start_probe(NULL, extra, 4, 1);
  enum { SLOW = 4 }; /* twice the workers */
  size_t plen;
  uint8_t *payload = packed_blob(2 * MiB, 9, &plen);
  duct__link *slow[SLOW];
  for (int i = 0; i < SLOW; i++) {
    slow[i] = e2e_raw_connect(f->address, DUCT__DEFAULT_MAX_FRAME);
    e2e_raw_request(slow[i], 1, method_id("/Echo"), payload, plen, DUCT__DEFAULT_MAX_FRAME);
  }
  /* None of them reads. Legitimate calls each get a 3 s deadline: with
   * the workers stuck on the slow peers they would all expire. */
  for (int i = 0; i < 10; i++) {
    Duct__Test__Blob *reply;
    duct_status st;
    Duct__Test__Blob req = DUCT__TEST__BLOB__INIT;
    req.tag = (uint32_t)i;
    duct_call_opts o = {.deadline_ms = 3000, .status = &st};
    assert_int_equal(duct_test_probe_echo(f->ch, &req, &reply, &o), DUCT_OK);
    assert_int_equal(reply->tag, (uint32_t)i);
    duct__test__blob__free_unpacked(reply, NULL);
  }
  /* The slow readers lose nothing: each whole reply is there, intact. */
  for (int i = 0; i < SLOW; i++) {
    size_t len;
    uint32_t code;
    uint8_t *got = raw_response(slow[i], &len, &code, 10000);
    assert_int_equal(code, DUCT_OK);
    assert_int_equal(len, plen);
    assert_memory_equal(got, payload, plen);
    free(got);
    duct__link_close(slow[i]);
  }
  free(payload);
  e2e_stop_probe(f);
}

/* Finding 1, second half: a HELLO asking for 33-byte frames would make
 * every reply a frame per payload byte. Refused, with the reason. */
static void test_tiny_frames_refused(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  duct__link *l;
  duct__err err;
  assert_int_equal(duct__link_open(f->address, duct__now_ms() + START_MS, &l, &err), DUCT_OK);
  uint8_t hello[DUCT__HELLO_MSG_SIZE], buf[DUCT__DEFAULT_MAX_FRAME];
  duct__wire_hello(hello, 33, DUCT__DEFAULT_MAX_MESSAGE);
  duct__iov iov = {hello, sizeof hello};
  size_t len;
  assert_int_equal(duct__link_transact(l, &iov, 1, buf, sizeof buf, &len, duct__now_ms() + 10000),
                   DUCT_OK);
  duct__frame fr;
  const char *why;
  assert_int_equal(duct__frame_decode(buf, len, &fr, &why), DUCT_OK);
  assert_int_equal(fr.type, DUCT__GOAWAY);
  assert_int_equal(fr.status, DUCT_FAILED_PRECONDITION);
  buf[len < sizeof buf ? len : sizeof buf - 1] = '\0';
  assert_non_null(strstr((char *)buf + DUCT__HEADER_SIZE, "4096"));
  duct__link_close(l);
  e2e_echo_ok(f->ch);
  e2e_stop_probe(f);
}

/* Finding 2: stop used to ignore its drain and send GOAWAY with blocking
 * sends under the server lock; peers with full buffers made a 5 s stop
 * take 40 s. Now it returns within the drain (plus a little) whatever the
 * peers do. */
static void test_stop_within_drain_with_full_buffers(void **state) {
  (void)state;
  enum { DRAIN_MS = 1000, SLOW = 4 };
  const char *extra[] = {"--drain-ms", "1000", "--idle-ms", "60000"};
  fixture *f = e2e_start_probe(NULL, extra, 4, 1);
  size_t plen;
  uint8_t *payload = packed_blob(2 * MiB, 1, &plen);
  duct__link *slow[SLOW];
  for (int i = 0; i < SLOW; i++) {
    slow[i] = e2e_raw_connect(f->address, DUCT__DEFAULT_MAX_FRAME);
    e2e_raw_request(slow[i], 1, method_id("/Echo"), payload, plen, DUCT__DEFAULT_MAX_FRAME);
  }
  /* The replies are being held for readers that never come. */
  e2e_echo_ok(f->ch);
  Duct__Test__Empty req = DUCT__TEST__EMPTY__INIT, *reply;
  int64_t t0 = duct__now_ms();
  assert_int_equal(duct_test_probe_shutdown(f->ch, &req, &reply, NULL), DUCT_OK);
  duct__test__empty__free_unpacked(reply, NULL);
  /* Exit 0 also means duct gave back every block it held for them. */
  assert_int_equal(test_proc_wait(f->server, 15000), 0);
  int64_t took = duct__now_ms() - t0;
  printf("stop with %d unread 2 MiB replies and a %d ms drain took %lld ms\n", SLOW,
         DRAIN_MS, (long long)took);
  assert_true(took <= DRAIN_MS + 2000);
  for (int i = 0; i < SLOW; i++)
    duct__link_close(slow[i]);
  duct_channel_close(f->ch);
  e2e_reap(f->server);
  free(f);
  free(payload);
}

/* Finding 3: each connection could hold a partial message of up to
 * max_message_size for the idle timeout (300 connections: 1 GB). Now all
 * partial messages together stay within max_partial_memory, and a request
 * past it is refused with a clear status while the server keeps serving. */
static void test_partial_messages_within_budget(void **state) {
  (void)state;
  enum { PEERS = 300, FRAGS = 4 };
  const size_t budget = 8 * MiB;
  const char *extra[] = {"--max-partial", "8388608", "--idle-ms", "60000"};
  fixture *f = e2e_start_probe(NULL, extra, 4, 1);
  Duct__Test__Stats *st = e2e_stats(f->ch);
  uint64_t before = st->live_bytes;
  duct__test__stats__free_unpacked(st, NULL);

  /* Each peer sends the first 4 frames (256 KiB) of a 4 MiB message and
   * stops: 75 MiB offered in all. */
  static uint8_t chunk[DUCT__DEFAULT_MAX_FRAME - DUCT__HEADER_SIZE];
  memset(chunk, 0x5a, sizeof chunk);
  duct__link **peers = calloc(PEERS, sizeof *peers);
  assert_non_null(peers);
  uint8_t hdr[DUCT__HEADER_SIZE];
  duct__frame fr = {DUCT__VERSION, DUCT__REQUEST, DUCT__FLAG_MORE, 1, method_id("/Echo"),
                    0, 0, sizeof chunk};
  duct__frame_encode(&fr, hdr);
  duct__iov iov[2] = {{hdr, sizeof hdr}, {chunk, sizeof chunk}};
  for (int i = 0; i < PEERS; i++) {
    peers[i] = e2e_raw_connect(f->address, DUCT__DEFAULT_MAX_FRAME);
    for (int k = 0; k < FRAGS; k++)
      assert_int_equal(duct__link_send(peers[i], iov, 2, duct__now_ms() + 10000), DUCT_OK);
  }
  /* GetStats is answered after every fragment above was read: each peer's
   * frames were sent before this call, on connections served in turn. A
   * few may still be in flight; they can only add, never exceed. */
  st = e2e_stats(f->ch);
  uint64_t held = st->live_bytes - before;
  duct__test__stats__free_unpacked(st, NULL);
  printf("%d peers offered %u MiB of partial messages; duct holds %llu KiB more\n", PEERS,
         (unsigned)(PEERS * FRAGS * sizeof chunk / MiB), (unsigned long long)(held / 1024));
  /* The budget plus each connection's own small bookkeeping. */
  assert_true(held <= budget + PEERS * 8 * 1024u);

  /* A legitimate large request meets the spent budget: a clear refusal. */
  size_t n = 3 * MiB;
  uint8_t *big = calloc(1, n);
  assert_non_null(big);
  Duct__Test__Blob *reply;
  duct_status ds;
  assert_int_equal(e2e_echo(f->ch, big, n, 1, &reply, &ds), DUCT_RESOURCE_EXHAUSTED);
  assert_non_null(strstr(ds.message, "max_partial_memory"));
  e2e_echo_ok(f->ch); /* small calls are still served */

  /* When the peers go, the memory comes back: the big request passes
   * again (each try is itself the event waited for, bounded). */
  for (int i = 0; i < PEERS; i++)
    duct__link_close(peers[i]);
  free(peers);
  int64_t until = duct__now_ms() + 20000;
  duct_code rc;
  while ((rc = e2e_echo(f->ch, big, n, 2, &reply, &ds)) == DUCT_RESOURCE_EXHAUSTED &&
         duct__now_ms() < until)
    ;
  assert_int_equal(rc, DUCT_OK);
  assert_int_equal(reply->data.len, n);
  duct__test__blob__free_unpacked(reply, NULL);
  free(big);
  e2e_stop_probe(f);
}

/* Finding 4: a 4 MiB request of 2-byte unknown fields made protobuf-c keep
 * ~150 MB. Now one call's memory is capped (max_call_memory): refused,
 * and the server's memory stays near the cap. */
static void test_unknown_field_flood_bounded(void **state) {
  (void)state;
  const size_t cap = 16 * MiB; /* the default: 4 x 4 MiB */
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  Duct__Test__Stats *st = e2e_stats(f->ch);
  uint64_t before = st->live_bytes;
  duct__test__stats__free_unpacked(st, NULL);

  size_t n = 4 * MiB - 64;
  uint8_t *flood = malloc(n);
  assert_non_null(flood);
  for (size_t i = 0; i + 1 < n; i += 2) {
    flood[i] = 15 << 3; /* field 15, varint: unknown to Blob */
    flood[i + 1] = 0;
  }
  enum { PEERS = 2 };
  duct__link *l[PEERS];
  for (int i = 0; i < PEERS; i++) {
    l[i] = e2e_raw_connect(f->address, DUCT__DEFAULT_MAX_FRAME);
    e2e_raw_request(l[i], 3, method_id("/Echo"), flood, n, DUCT__DEFAULT_MAX_FRAME);
  }
  for (int i = 0; i < PEERS; i++) {
    size_t len;
    uint32_t code;
    uint8_t *text = raw_response(l[i], &len, &code, 20000);
    text[len] = '\0';
    assert_int_equal(code, DUCT_RESOURCE_EXHAUSTED);
    assert_non_null(strstr((char *)text, "max_call_memory"));
    free(text);
    duct__link_close(l[i]);
  }
  st = e2e_stats(f->ch);
  uint64_t held = st->live_bytes - before;
  duct__test__stats__free_unpacked(st, NULL);
  printf("after two unknown-field floods duct holds %llu KiB more\n",
         (unsigned long long)(held / 1024));
  /* At most each connection's arena kept at the cap plus its request. */
  assert_true(held <= PEERS * (cap + 5 * MiB));
  free(flood);
  e2e_echo_ok(f->ch);
  e2e_stop_probe(f);
}

/* Finding 5: 1,024 connections that said HELLO and then nothing filled
 * max_connections for good and a new client was turned away. Now the
 * longest-idle one makes room, told why. At the default limit (1,024)
 * where the system allows this process that many descriptors, else at 64. */
static void test_idle_connections_make_room(void **state) {
  (void)state;
  unsigned max = test_raise_fd_limit(4096) >= 2200 ? 1024 : 64;
  char maxs[16];
  snprintf(maxs, sizeof maxs, "%u", max);
  const char *extra[] = {"--max-connections", maxs};
  fixture *f = e2e_start_probe(NULL, extra, max == 1024 ? 0 : 2, 0);
  duct__link **idle = calloc(max, sizeof *idle);
  assert_non_null(idle);
  for (unsigned i = 0; i < max; i++)
    idle[i] = e2e_raw_connect(f->address, DUCT__DEFAULT_MAX_FRAME);
  /* Full of connections that said HELLO and then nothing. A new client: */
  duct_channel_opts co = {.connect_timeout_ms = START_MS};
  assert_int_equal(duct_channel_open(f->address, &co, &f->ch), DUCT_OK);
  e2e_echo_ok(f->ch);
  /* The first (longest idle) peer was told why it goes. */
  uint8_t buf[DUCT__DEFAULT_MAX_FRAME];
  duct_code rc;
  duct__frame fr = e2e_raw_read(idle[0], buf, sizeof buf - 1, 10000, &rc);
  assert_int_equal(rc, DUCT_OK);
  assert_int_equal(fr.type, DUCT__GOAWAY);
  assert_int_equal(fr.status, DUCT_RESOURCE_EXHAUSTED);
  buf[DUCT__HEADER_SIZE + fr.payload_len] = '\0';
  assert_non_null(strstr((char *)buf + DUCT__HEADER_SIZE, "max_connections"));
  printf("%u idle connections; a new client was served, the oldest told: %s\n", max,
         (char *)buf + DUCT__HEADER_SIZE);
  for (unsigned i = 0; i < max; i++)
    duct__link_close(idle[i]);
  free(idle);
  e2e_echo_ok(f->ch);
  e2e_stop_probe(f);
}

int main(int argc, char **argv) {
  (void)argc;
  e2e_init(argv[0]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_slow_readers_do_not_pin_workers, e2e_teardown),
      cmocka_unit_test_teardown(test_tiny_frames_refused, e2e_teardown),
      cmocka_unit_test_teardown(test_stop_within_drain_with_full_buffers, e2e_teardown),
      cmocka_unit_test_teardown(test_partial_messages_within_budget, e2e_teardown),
      cmocka_unit_test_teardown(test_unknown_field_flood_bounded, e2e_teardown),
      cmocka_unit_test_teardown(test_idle_connections_make_room, e2e_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
