/* The frame codec against docs/PROTOCOL.md: byte-exact golden headers,
 * every malformed-header row, fragmentation at its boundaries and the
 * reassembler's limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/frame.h"
#include "runtime/session.h"
#include "runtime/wire.h"

#define ROOM (DUCT__DEFAULT_MAX_FRAME - DUCT__HEADER_SIZE)

static duct__frame req(uint32_t call, uint32_t len) {
  duct__frame f = {DUCT__VERSION, DUCT__REQUEST, 0, call, 0xA1B2C3D4u, 0, 250, len};
  return f;
}

/* A header followed by len payload bytes, as one transport message. */
static uint8_t *message(const duct__frame *f, size_t len) {
  uint8_t *m = calloc(1, DUCT__HEADER_SIZE + len);
  assert_non_null(m);
  duct__frame_encode(f, m);
  return m;
}

/* The stream window (docs/PROTOCOL.md, "Flow control"): a sender may
 * overdraw by one message, a receiver refuses more and grants credit back
 * in quarter-window batches. */
static void test_flow_window(void **state) {
  (void)state;
  duct__flow rx;
  duct__flow_init(&rx);
  size_t msg = 1000; /* costs 1032 */
  unsigned fits = 0;
  while (duct__flow_arrived(&rx, msg))
    fits++;
  /* Outstanding reached the window with the last one: 254 messages leave
   * 256 KiB - 254 * 1032 = 132 bytes, so one more went (the overdraw). */
  assert_int_equal(fits, DUCT__STREAM_WINDOW / DUCT__STREAM_COST(msg) + 1);
  uint64_t granted = 0;
  unsigned grants = 0;
  for (unsigned i = 0; i < fits; i++) {
    uint32_t g = duct__flow_taken(&rx, msg);
    if (g) {
      assert_true(g >= DUCT__STREAM_WINDOW / 4);
      granted += g;
      grants++;
    }
  }
  /* A CREDIT per quarter window taken, not one per message. */
  unsigned per = (unsigned)((DUCT__STREAM_WINDOW / 4 + DUCT__STREAM_COST(msg) - 1) /
                            DUCT__STREAM_COST(msg));
  assert_int_equal(grants, fits / per);
  assert_true(granted <= (uint64_t)fits * DUCT__STREAM_COST(msg));
  /* After the grants, the receiver takes messages again. */
  assert_true(duct__flow_arrived(&rx, msg));
  /* One message larger than the whole window still goes, alone. */
  duct__flow big;
  duct__flow_init(&big);
  assert_true(duct__flow_arrived(&big, 4u * 1024 * 1024));
  assert_false(duct__flow_arrived(&big, 1));
}

/* Control frames as the wire module writes them decode as themselves. */
static void test_control_frames(void **state) {
  (void)state;
  uint8_t m[DUCT__CTL_MSG_MAX];
  const uint8_t types[] = {DUCT__CANCEL, DUCT__HALF_CLOSE, DUCT__CREDIT};
  for (size_t i = 0; i < sizeof types; i++) {
    size_t n = duct__wire_ctl(m, types[i], 77, 5000);
    duct__frame f;
    const char *why;
    assert_int_equal(duct__frame_decode(m, n, &f, &why), DUCT_OK);
    assert_int_equal(f.type, types[i]);
    assert_int_equal(f.call_id, 77);
    assert_int_equal(f.version, types[i] == DUCT__CANCEL ? 1 : 2);
    if (types[i] == DUCT__CREDIT)
      assert_int_equal(duct__credit_value(m + DUCT__HEADER_SIZE), 5000);
  }
}

static void test_golden_request_bytes(void **state) {
  (void)state;
  duct__frame f = {1, DUCT__REQUEST, DUCT__FLAG_MORE, 0x01020304u, 0x11223344u,
                   0, 0x0000EA60u, 0x00010000u - 32};
  static const uint8_t want[32] = {
      'D', 'U', 'C', 'T', 1, 2, 0x01, 0x00,
      0x04, 0x03, 0x02, 0x01, 0x44, 0x33, 0x22, 0x11,
      0, 0, 0, 0, 0x60, 0xEA, 0, 0,
      0xE0, 0xFF, 0, 0, 0, 0, 0, 0};
  uint8_t got[32];
  duct__frame_encode(&f, got);
  assert_memory_equal(got, want, sizeof want);
}

static void test_header_round_trip(void **state) {
  (void)state;
  const duct__frame cases[] = {
      {1, DUCT__REQUEST, 0, 1, 1, 0, 0, 0},
      {1, DUCT__REQUEST, DUCT__FLAG_MORE, 0xFFFFFFFFu, 0xFFFFFFFFu, 0, 0xFFFFFFFFu, 5},
      {1, DUCT__RESPONSE, 0, 7, 9, DUCT_NOT_FOUND, 0, 12},
      {1, DUCT__RESPONSE, DUCT__FLAG_MORE, 7, 9, DUCT_OK, 0, 3},
      {1, DUCT__CANCEL, 0, 42, 0, 0, 0, 0},
      {1, DUCT__GOAWAY, 0, 0, 0, DUCT_UNAVAILABLE, 0, 8},
      {1, DUCT__HELLO, 0, 0, 0, 0, 0, DUCT__HELLO_SIZE},
      {2, DUCT__STREAM_DATA, DUCT__FLAG_MORE, 3, 0, 0, 0, 9},
      {2, DUCT__STREAM_DATA, 0, 3, 0, 0, 0, 0},
      {2, DUCT__HALF_CLOSE, 0, 3, 0, 0, 0, 0},
      {2, DUCT__CREDIT, 0, 3, 0, 0, 0, DUCT__CREDIT_SIZE},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint8_t *m = message(&cases[i], cases[i].payload_len);
    if (cases[i].type == DUCT__CREDIT)
      duct__credit_encode(m + DUCT__HEADER_SIZE, 65536);
    duct__frame got;
    const char *why;
    assert_int_equal(duct__frame_decode(m, DUCT__HEADER_SIZE + cases[i].payload_len,
                                        &got, &why), DUCT_OK);
    assert_null(why);
    assert_memory_equal(&got, &cases[i], sizeof got);
    free(m);
  }
}

/* Each malformed case: bytes to patch into a valid header, expected code. */
typedef struct {
  const char *name;
  duct__frame f;
  size_t extra;     /* bytes actually present after the header */
  int patch_at;     /* -1: none */
  uint8_t patch_val;
  duct_code want;
} bad_case;

static void test_malformed_headers(void **state) {
  (void)state;
  const bad_case cases[] = {
      {"bad magic", {1, 2, 0, 1, 1, 0, 0, 0}, 0, 0, 'X', DUCT_INTERNAL},
      {"version 3", {3, 2, 0, 1, 1, 0, 0, 0}, 0, -1, 0, DUCT_FAILED_PRECONDITION},
      {"REQUEST as version 2", {2, 2, 0, 1, 1, 0, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"STREAM_DATA as version 1", {1, 6, 0, 1, 0, 0, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"STREAM_DATA call 0", {2, 6, 0, 0, 0, 0, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"STREAM_DATA method", {2, 6, 0, 1, 1, 0, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"STREAM_DATA status", {2, 6, 0, 1, 0, 1, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"HALF_CLOSE payload", {2, 7, 0, 1, 0, 0, 0, 1}, 1, -1, 0, DUCT_INTERNAL},
      {"HALF_CLOSE call 0", {2, 7, 0, 0, 0, 0, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"CREDIT short", {2, 8, 0, 1, 0, 0, 0, 3}, 3, -1, 0, DUCT_INTERNAL},
      {"CREDIT zero", {2, 8, 0, 1, 0, 0, 0, 4}, 4, -1, 0, DUCT_INTERNAL},
      {"CREDIT MORE", {2, 8, 1, 1, 0, 0, 0, 4}, 4, 32, 1, DUCT_INTERNAL},
      {"type 9", {2, 9, 0, 1, 0, 0, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"version 0", {0, 2, 0, 1, 1, 0, 0, 0}, 0, -1, 0, DUCT_FAILED_PRECONDITION},
      {"reserved byte", {1, 2, 0, 1, 1, 0, 0, 0}, 0, 31, 1, DUCT_INTERNAL},
      {"reserved flag", {1, 2, 2, 1, 1, 0, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"high flag", {1, 2, 0x8000, 1, 1, 0, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"len too big", {1, 2, 0, 1, 1, 0, 0, 5}, 4, -1, 0, DUCT_INTERNAL},
      {"len too small", {1, 2, 0, 1, 1, 0, 0, 3}, 4, -1, 0, DUCT_INTERNAL},
      {"type 0", {1, 0, 0, 1, 1, 0, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"type 6 (streaming)", {1, 6, 0, 1, 1, 0, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"type 255", {1, 255, 0, 1, 1, 0, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"HELLO call id", {1, 1, 0, 1, 0, 0, 0, 16}, 16, -1, 0, DUCT_INTERNAL},
      {"HELLO short", {1, 1, 0, 0, 0, 0, 0, 8}, 8, -1, 0, DUCT_INTERNAL},
      {"HELLO MORE", {1, 1, 1, 0, 0, 0, 0, 16}, 16, -1, 0, DUCT_INTERNAL},
      {"REQUEST call 0", {1, 2, 0, 0, 1, 0, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"REQUEST method 0", {1, 2, 0, 1, 0, 0, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"REQUEST status", {1, 2, 0, 1, 1, 3, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"RESPONSE call 0", {1, 3, 0, 0, 1, 0, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"RESPONSE status 17", {1, 3, 0, 1, 1, 17, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"RESPONSE deadline", {1, 3, 0, 1, 1, 0, 5, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"error RESPONSE MORE", {1, 3, 1, 1, 1, 5, 0, 4}, 4, -1, 0, DUCT_INTERNAL},
      {"error text 1025", {1, 3, 0, 1, 1, 5, 0, 1025}, 1025, -1, 0, DUCT_INTERNAL},
      {"CANCEL call 0", {1, 4, 0, 0, 0, 0, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"CANCEL payload", {1, 4, 0, 1, 0, 0, 0, 1}, 1, -1, 0, DUCT_INTERNAL},
      {"CANCEL method", {1, 4, 0, 1, 1, 0, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"GOAWAY call", {1, 5, 0, 1, 0, 14, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"GOAWAY status 99", {1, 5, 0, 0, 0, 99, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
      {"GOAWAY text 1025", {1, 5, 0, 0, 0, 14, 0, 1025}, 1025, -1, 0, DUCT_INTERNAL},
      {"empty MORE", {1, 2, 1, 1, 1, 0, 0, 0}, 0, -1, 0, DUCT_INTERNAL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const bad_case *c = &cases[i];
    uint8_t *m = message(&c->f, c->extra);
    if (c->patch_at >= 0)
      m[c->patch_at] = c->patch_val;
    duct__frame got;
    const char *why = NULL;
    duct_code rc = duct__frame_decode(m, DUCT__HEADER_SIZE + c->extra, &got, &why);
    if (rc != c->want)
      fail_msg("case '%s': got %s, want %s", c->name, duct_code_name(rc),
               duct_code_name(c->want));
    assert_non_null(why);
    free(m);
  }
}

static void test_short_frames(void **state) {
  (void)state;
  duct__frame f = req(1, 0), got;
  uint8_t m[DUCT__HEADER_SIZE];
  const char *why;
  duct__frame_encode(&f, m);
  for (size_t len = 0; len < DUCT__HEADER_SIZE; len++)
    assert_int_equal(duct__frame_decode(m, len, &got, &why), DUCT_INTERNAL);
  assert_int_equal(duct__frame_decode(m, sizeof m, &got, &why), DUCT_OK);
}

static void test_hello(void **state) {
  (void)state;
  duct__hello h = {1, 1, DUCT__DEFAULT_MAX_FRAME, DUCT__DEFAULT_MAX_MESSAGE}, got;
  uint8_t p[DUCT__HELLO_SIZE];
  const char *why;
  duct__hello_encode(&h, p);
  assert_int_equal(duct__hello_decode(p, sizeof p, &got, &why), DUCT_OK);
  assert_memory_equal(&got, &h, sizeof h);
  assert_int_equal(duct__hello_decode(p, sizeof p - 1, &got, &why), DUCT_INTERNAL);

  duct__hello bad_range = {2, 1, DUCT__DEFAULT_MAX_FRAME, 1};
  duct__hello_encode(&bad_range, p);
  assert_int_equal(duct__hello_decode(p, sizeof p, &got, &why), DUCT_INTERNAL);
  duct__hello tiny = {1, 1, DUCT__HEADER_SIZE, 1};
  duct__hello_encode(&tiny, p);
  assert_int_equal(duct__hello_decode(p, sizeof p, &got, &why), DUCT_INTERNAL);
  duct__hello_encode(&h, p);
  p[15] = 1;
  assert_int_equal(duct__hello_decode(p, sizeof p, &got, &why), DUCT_INTERNAL);
}

static void test_method_id_is_fnv1a(void **state) {
  (void)state;
  /* Published FNV-1a 32-bit test vectors. */
  assert_int_equal(duct__method_id(""), 0x811c9dc5u);
  assert_int_equal(duct__method_id("a"), 0xe40c292cu);
  assert_int_equal(duct__method_id("foobar"), 0xbf9cf968u);
  assert_int_not_equal(duct__method_id("/demo.Calculator/Add"),
                       duct__method_id("/demo.Calculator/Sub"));
}

/* Splits a payload of len bytes into frames and feeds them back through
 * decode and reassembly; the message must come out byte for byte. */
static void round_trip(size_t len, size_t max_frame, size_t want_frames) {
  uint8_t *payload = malloc(len ? len : 1);
  assert_non_null(payload);
  for (size_t i = 0; i < len; i++)
    payload[i] = (uint8_t)(i * 131 + 7);
  duct__frame tmpl = req(77, 0);
  size_t n = duct__frag_count(len, max_frame);
  assert_int_equal(n, want_frames);

  duct__reasm r;
  duct__reasm_init(&r, 0);
  uint8_t *wire = malloc(max_frame);
  assert_non_null(wire);
  for (size_t i = 0; i < n; i++) {
    duct__frame fh, got;
    size_t off;
    const char *why;
    duct__frag_at(&tmpl, len, max_frame, i, &fh, &off);
    assert_true(DUCT__HEADER_SIZE + fh.payload_len <= max_frame);
    assert_int_equal(!!(fh.flags & DUCT__FLAG_MORE), i + 1 < n);
    duct__frame_encode(&fh, wire);
    memcpy(wire + DUCT__HEADER_SIZE, payload + off, fh.payload_len);
    assert_int_equal(duct__frame_decode(wire, DUCT__HEADER_SIZE + fh.payload_len,
                                        &got, &why), DUCT_OK);
    duct__msg m;
    assert_int_equal(duct__reasm_feed(&r, &got, wire + DUCT__HEADER_SIZE, &m, &why),
                     DUCT_OK);
    assert_int_equal(m.done, i + 1 == n);
    if (m.done) {
      assert_int_equal(m.len, len);
      assert_int_equal(m.hdr.payload_len, len);
      assert_int_equal(m.hdr.call_id, 77);
      assert_int_equal(m.hdr.flags, 0);
      if (len)
        assert_memory_equal(m.data, payload, len);
    }
  }
  duct__reasm_free(&r);
  free(wire);
  free(payload);
}

static void test_fragment_boundaries(void **state) {
  (void)state;
  round_trip(0, DUCT__DEFAULT_MAX_FRAME, 1);
  round_trip(1, DUCT__DEFAULT_MAX_FRAME, 1);
  round_trip(ROOM - 1, DUCT__DEFAULT_MAX_FRAME, 1);
  round_trip(ROOM, DUCT__DEFAULT_MAX_FRAME, 1);
  round_trip(ROOM + 1, DUCT__DEFAULT_MAX_FRAME, 2);
  round_trip(2 * ROOM, DUCT__DEFAULT_MAX_FRAME, 2);
  round_trip(3 * ROOM + 1, DUCT__DEFAULT_MAX_FRAME, 4);
  round_trip(3u * 1024 * 1024, DUCT__DEFAULT_MAX_FRAME, (3u * 1024 * 1024 + ROOM - 1) / ROOM);
  /* The smallest frame a peer may announce: one payload byte each. */
  round_trip(5, DUCT__MIN_MAX_FRAME, 5);
}

static void test_single_frame_not_copied(void **state) {
  (void)state;
  duct__reasm r;
  duct__reasm_init(&r, 0);
  uint8_t payload[10] = {1, 2, 3};
  duct__frame f = req(1, sizeof payload);
  duct__msg m;
  const char *why;
  assert_int_equal(duct__reasm_feed(&r, &f, payload, &m, &why), DUCT_OK);
  assert_true(m.done);
  assert_ptr_equal(m.data, payload);
  assert_null(r.buf);
  duct__reasm_free(&r);
}

/* Feeds `frames` fragments of `each` bytes (the last without MORE). */
static duct_code feed_n(duct__reasm *r, uint32_t call, size_t frames, size_t each,
                        duct__msg *m) {
  static uint8_t chunk[ROOM];
  duct_code rc = DUCT_OK;
  const char *why;
  for (size_t i = 0; i < frames; i++) {
    duct__frame f = req(call, (uint32_t)each);
    f.flags = i + 1 < frames ? DUCT__FLAG_MORE : 0;
    rc = duct__reasm_feed(r, &f, chunk, m, &why);
    if (rc != DUCT_OK)
      return rc;
    assert_int_equal(m->done, i + 1 == frames);
  }
  return rc;
}

static void test_reassembly_limit(void **state) {
  (void)state;
  duct__reasm r;
  duct__msg m;
  duct__reasm_init(&r, 3000);
  /* Exactly at the limit: accepted. */
  assert_int_equal(feed_n(&r, 1, 3, 1000, &m), DUCT_OK);
  assert_int_equal(m.len, 3000);
  /* One byte over, spread over fragments: the last fragment reports it,
   * nothing before it does, and nothing past the limit was kept. */
  assert_int_equal(feed_n(&r, 2, 2, 1000, &m), DUCT_OK);
  duct__frame f = req(3, 1000);
  const char *why;
  static uint8_t chunk[1001];
  f.flags = DUCT__FLAG_MORE;
  assert_int_equal(duct__reasm_feed(&r, &f, chunk, &m, &why), DUCT_OK);
  assert_int_equal(duct__reasm_feed(&r, &f, chunk, &m, &why), DUCT_OK);
  assert_true(r.cap <= 3000);
  f.flags = 0;
  f.payload_len = 1001;
  assert_int_equal(duct__reasm_feed(&r, &f, chunk, &m, &why), DUCT_RESOURCE_EXHAUSTED);
  assert_true(m.done);
  assert_int_equal(m.hdr.call_id, 3);
  assert_non_null(why);
  /* The connection stays usable: the next message goes through. */
  assert_int_equal(feed_n(&r, 4, 2, 10, &m), DUCT_OK);
  assert_int_equal(m.len, 20);
  /* A single frame over the limit. */
  duct__reasm_free(&r);
  duct__reasm_init(&r, 100);
  f = req(5, 101);
  assert_int_equal(duct__reasm_feed(&r, &f, chunk, &m, &why), DUCT_RESOURCE_EXHAUSTED);
  assert_true(m.done);
  duct__reasm_free(&r);
}

static void test_memory_follows_bytes_not_claims(void **state) {
  (void)state;
  duct__reasm r;
  duct__msg m;
  duct__reasm_init(&r, DUCT__DEFAULT_MAX_MESSAGE);
  static uint8_t chunk[ROOM];
  duct__frame f = req(9, ROOM);
  f.flags = DUCT__FLAG_MORE;
  const char *why;
  assert_int_equal(duct__reasm_feed(&r, &f, chunk, &m, &why), DUCT_OK);
  assert_true(r.cap <= DUCT__DEFAULT_MAX_FRAME);
  for (int i = 0; i < 6; i++)
    assert_int_equal(duct__reasm_feed(&r, &f, chunk, &m, &why), DUCT_OK);
  f.flags = 0;
  assert_int_equal(duct__reasm_feed(&r, &f, chunk, &m, &why), DUCT_OK);
  assert_int_equal(m.len, 8 * (size_t)ROOM);
  /* The buffer is kept while large messages keep coming, and released
   * after a run of messages that do not need it. */
  f = req(10, 4);
  assert_int_equal(duct__reasm_feed(&r, &f, chunk, &m, &why), DUCT_OK);
  assert_non_null(r.buf);
  for (int i = 0; i < 16; i++)
    assert_int_equal(duct__reasm_feed(&r, &f, chunk, &m, &why), DUCT_OK);
  assert_null(r.buf);
  duct__reasm_free(&r);
}

/* Fragments received in place (duct__reasm_slot, a transport's scatter
 * read) build the same message as fragments fed from elsewhere, without a
 * copy, and what is not the next fragment is handled as if fed. */
static void test_reasm_in_place(void **state) {
  (void)state;
  duct__reasm r;
  duct__msg m;
  const char *why;
  size_t room;
  static uint8_t chunk[1000];
  duct__reasm_init(&r, 0);
  /* No message in progress: no slot. */
  assert_null(duct__reasm_slot(&r, &room));
  duct__frame f = req(7, 1000);
  f.flags = DUCT__FLAG_MORE;
  for (size_t i = 0; i < sizeof chunk; i++)
    chunk[i] = (uint8_t)i;
  assert_int_equal(duct__reasm_feed(&r, &f, chunk, &m, &why), DUCT_OK);
  /* The first fragment grew the buffer past its bytes: the next ones land
   * where they belong. */
  for (int k = 1; k < 4; k++) {
    uint8_t *slot = duct__reasm_slot(&r, &room);
    assert_non_null(slot);
    assert_ptr_equal(slot, r.buf + (size_t)k * 1000);
    assert_true(room >= 1000);
    for (size_t i = 0; i < 1000; i++)
      slot[i] = (uint8_t)(i + (size_t)k);
    if (k == 3)
      f.flags = 0;
    assert_int_equal(duct__reasm_feed_placed(&r, &f, &m, &why), DUCT_OK);
  }
  assert_true(m.done);
  assert_int_equal(m.len, 4000);
  assert_int_equal(m.hdr.call_id, 7);
  for (size_t k = 0; k < 4; k++)
    for (size_t i = 0; i < 1000; i += 97)
      assert_int_equal(m.data[k * 1000 + i], (uint8_t)(i + k));
  /* Another call's fragment at the slot: the same violation as fed. */
  f.flags = DUCT__FLAG_MORE;
  assert_int_equal(duct__reasm_feed(&r, &f, chunk, &m, &why), DUCT_OK);
  duct__frame other = req(8, 16);
  other.flags = DUCT__FLAG_MORE;
  assert_non_null(duct__reasm_slot(&r, &room));
  assert_int_equal(duct__reasm_feed_placed(&r, &other, &m, &why), DUCT_INTERNAL);
  assert_non_null(why);
  /* Past max_message the slot is refused, and a message being dropped
   * has none. */
  duct__reasm_free(&r);
  duct__reasm_init(&r, 1500);
  f = req(9, 1000);
  f.flags = DUCT__FLAG_MORE;
  assert_int_equal(duct__reasm_feed(&r, &f, chunk, &m, &why), DUCT_OK);
  uint8_t *slot = duct__reasm_slot(&r, &room);
  assert_non_null(slot);
  assert_int_equal(room, 500);
  assert_int_equal(duct__reasm_feed(&r, &f, chunk, &m, &why), DUCT_OK); /* over: dropped */
  assert_null(duct__reasm_slot(&r, &room));
  duct__reasm_free(&r);
}

/* A slot comes with the DUCT__HEADER_SIZE bytes before it in the same
 * buffer (a transport may borrow them for the header, runtime/win): none
 * while fewer bytes of the message have arrived, whatever room is free. */
static void test_reasm_slot_leaves_header_room(void **state) {
  (void)state;
  duct__reasm r;
  duct__msg m;
  const char *why;
  size_t room = 0;
  static uint8_t chunk[DUCT__HEADER_SIZE];
  duct__reasm_init(&r, 0);
  duct__frame f = req(3, 1);
  f.flags = DUCT__FLAG_MORE;
  assert_int_equal(duct__reasm_feed(&r, &f, chunk, &m, &why), DUCT_OK);
  /* One byte in, 64 KiB free: still no slot. */
  assert_true(r.cap - r.len > 1000);
  assert_null(duct__reasm_slot(&r, &room));
  f.payload_len = DUCT__HEADER_SIZE - 2;
  assert_int_equal(duct__reasm_feed(&r, &f, chunk, &m, &why), DUCT_OK);
  assert_int_equal(r.len, DUCT__HEADER_SIZE - 1);
  assert_null(duct__reasm_slot(&r, &room));
  /* Exactly a header's worth before it: offered. */
  f.payload_len = 1;
  assert_int_equal(duct__reasm_feed(&r, &f, chunk, &m, &why), DUCT_OK);
  uint8_t *slot = duct__reasm_slot(&r, &room);
  assert_ptr_equal(slot, r.buf + DUCT__HEADER_SIZE);
  assert_int_equal(room, r.cap - DUCT__HEADER_SIZE);
  duct__reasm_free(&r);
}

static void test_interleaved_fragments_rejected(void **state) {
  (void)state;
  duct__reasm r;
  duct__msg m;
  const char *why;
  static uint8_t chunk[16];
  duct__reasm_init(&r, 0);
  duct__frame a = req(1, 16), b = req(2, 16);
  a.flags = b.flags = DUCT__FLAG_MORE;
  assert_int_equal(duct__reasm_feed(&r, &a, chunk, &m, &why), DUCT_OK);
  assert_int_equal(duct__reasm_feed(&r, &b, chunk, &m, &why), DUCT_INTERNAL);
  assert_non_null(why);

  /* Same call id but a changed method, deadline or type is no continuation. */
  duct__frame changed[3] = {a, a, a};
  changed[0].method_id ^= 1;
  changed[1].deadline_ms += 1;
  changed[2].type = DUCT__RESPONSE;
  for (int i = 0; i < 3; i++) {
    assert_int_equal(duct__reasm_feed(&r, &a, chunk, &m, &why), DUCT_OK);
    assert_int_equal(duct__reasm_feed(&r, &changed[i], chunk, &m, &why), DUCT_INTERNAL);
  }
  /* After a violation the reassembler starts clean. */
  assert_int_equal(feed_n(&r, 5, 3, 16, &m), DUCT_OK);
  assert_int_equal(m.len, 48);
  duct__reasm_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_golden_request_bytes),
      cmocka_unit_test(test_header_round_trip),
      cmocka_unit_test(test_flow_window),
      cmocka_unit_test(test_control_frames),
      cmocka_unit_test(test_malformed_headers),
      cmocka_unit_test(test_short_frames),
      cmocka_unit_test(test_hello),
      cmocka_unit_test(test_method_id_is_fnv1a),
      cmocka_unit_test(test_fragment_boundaries),
      cmocka_unit_test(test_single_frame_not_copied),
      cmocka_unit_test(test_reassembly_limit),
      cmocka_unit_test(test_memory_follows_bytes_not_claims),
      cmocka_unit_test(test_interleaved_fragments_rejected),
      cmocka_unit_test(test_reasm_in_place),
      cmocka_unit_test(test_reasm_slot_leaves_header_room),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
