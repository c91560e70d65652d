/* tests/unit/test_pack.c - packing in pieces (runtime/pack.h) and sending
 * them as frames (duct__session_send_pieces): the bytes on the wire are
 * exactly protobuf-c's packing, large `bytes` fields are sent from the
 * message's own memory (not copied), and a message that would need too
 * many pieces is refused so that the caller packs it whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pieces.pb-c.h"
#include "runtime/frame.h"
#include "runtime/pack.h"
#include "runtime/session.h"
#include "runtime/wire.h"

#define BIG (DUCT__GATHER_MIN + 1000)

static uint8_t *filled(size_t n, unsigned seed) {
  uint8_t *p = malloc(n);
  assert_non_null(p);
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)(i * 31 + seed);
  return p;
}

/* The pieces, end to end, are protobuf-c's packing of m. */
static void assert_same_bytes(const ProtobufCMessage *m, const duct__gather *g, int n) {
  size_t len = protobuf_c_message_get_packed_size(m);
  uint8_t *want = malloc(len), *got = malloc(len);
  assert_non_null(want);
  assert_non_null(got);
  protobuf_c_message_pack(m, want);
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    assert_true(off + g->piece[i].len <= len);
    memcpy(got + off, g->piece[i].base, g->piece[i].len);
    off += g->piece[i].len;
  }
  assert_int_equal(off, len);
  assert_memory_equal(got, want, len);
  free(want);
  free(got);
}

static int points_into(const duct__gather *g, int n, const uint8_t *data) {
  for (int i = 0; i < n; i++)
    if (g->piece[i].base == data)
      return 1;
  return 0;
}

/* Two large fields among small ones: five pieces (copied, b1, copied,
 * b2, copied), the large ones in place; the small b3 and the nested
 * message are copied. */
static void test_large_fields_in_place(void **state) {
  (void)state;
  Duct__Test__Pieces__Parts inner = DUCT__TEST__PIECES__PARTS__INIT, m = DUCT__TEST__PIECES__PARTS__INIT;
  uint8_t *b1 = filled(BIG, 1), *b2 = filled(BIG * 2, 2), small[100];
  memset(small, 7, sizeof small);
  inner.a = 9;
  m.a = 300;
  m.b1 = (ProtobufCBinaryData){BIG, b1};
  m.s = "between";
  m.b2 = (ProtobufCBinaryData){BIG * 2, b2};
  m.b3 = (ProtobufCBinaryData){sizeof small, small};
  m.inner = &inner;
  assert_true(duct__gather_worth(&m.base));
  size_t len = protobuf_c_message_get_packed_size(&m.base);
  uint8_t *scratch = malloc(len);
  duct__gather g;
  int n = duct__gather_pack(&g, &m.base, len, scratch);
  assert_int_equal(n, 5);
  assert_true(points_into(&g, n, b1));
  assert_true(points_into(&g, n, b2));
  assert_true(g.used < 300); /* only the small parts were copied */
  assert_same_bytes(&m.base, &g, n);
  free(scratch);
  free(b1);
  free(b2);
}

/* Four large fields need nine pieces: refused (0), to be packed whole. */
static void test_too_many_pieces(void **state) {
  (void)state;
  Duct__Test__Pieces__Parts m = DUCT__TEST__PIECES__PARTS__INIT;
  uint8_t *b = filled(BIG, 3);
  m.a = 1;
  m.b1 = m.b2 = m.b3 = m.b4 = (ProtobufCBinaryData){BIG, b};
  size_t len = protobuf_c_message_get_packed_size(&m.base);
  uint8_t *scratch = malloc(len);
  duct__gather g;
  assert_int_equal(duct__gather_pack(&g, &m.base, len, scratch), 0);
  free(scratch);
  free(b);
}

/* Only singular top-level fields count as worth it. */
static void test_worth(void **state) {
  (void)state;
  Duct__Test__Pieces__Parts inner = DUCT__TEST__PIECES__PARTS__INIT, m = DUCT__TEST__PIECES__PARTS__INIT;
  uint8_t *b = filled(BIG, 4);
  ProtobufCBinaryData r[1] = {{BIG, b}};
  assert_false(duct__gather_worth(&m.base));
  m.n_r = 1;
  m.r = r;
  inner.b1 = (ProtobufCBinaryData){BIG, b};
  m.inner = &inner;
  assert_false(duct__gather_worth(&m.base));
  m.b4 = (ProtobufCBinaryData){DUCT__GATHER_MIN - 1, b};
  assert_false(duct__gather_worth(&m.base));
  m.b4.len = DUCT__GATHER_MIN;
  assert_true(duct__gather_worth(&m.base));
  /* The repeated and nested large fields are pieces too. */
  size_t len = protobuf_c_message_get_packed_size(&m.base);
  uint8_t *scratch = malloc(len);
  duct__gather g;
  int n = duct__gather_pack(&g, &m.base, len, scratch);
  assert_true(n > 0);
  assert_same_bytes(&m.base, &g, n);
  free(scratch);
  free(b);
}

typedef struct wire {
  uint8_t *buf;
  size_t len;
  int frames, most_pieces;
} wire;

static duct_code collect(void *ctx, const duct__iov *iov, int n, int last) {
  wire *w = ctx;
  (void)last;
  size_t at = w->len;
  for (int i = 0; i < n; i++) {
    memcpy(w->buf + w->len, iov[i].base, iov[i].len);
    w->len += iov[i].len;
  }
  /* Each frame decodes as one, with the length it says. */
  duct__frame f;
  const char *why;
  assert_int_equal(duct__frame_decode(w->buf + at, w->len - at, &f, &why), DUCT_OK);
  w->frames++;
  if (n > w->most_pieces)
    w->most_pieces = n;
  return DUCT_OK;
}

/* The frames of a message in pieces are byte for byte the frames of the
 * same message packed whole (duct__session_send), over frame boundaries
 * that fall inside pieces and between them. */
static void test_frames_match_whole(void **state) {
  (void)state;
  Duct__Test__Pieces__Parts m = DUCT__TEST__PIECES__PARTS__INIT;
  uint8_t *b1 = filled(150000, 5), *b2 = filled(70000, 6);
  m.a = 77;
  m.b1 = (ProtobufCBinaryData){150000, b1};
  m.s = "x";
  m.b2 = (ProtobufCBinaryData){70000, b2};
  size_t len = protobuf_c_message_get_packed_size(&m.base);
  uint8_t *scratch = malloc(len), *whole = malloc(DUCT__HEADER_SIZE + len);
  duct__gather g;
  int n = duct__gather_pack(&g, &m.base, len, scratch);
  assert_true(n >= 3);
  protobuf_c_message_pack(&m.base, whole + DUCT__HEADER_SIZE);

  duct__session sess;
  duct__session_init(&sess, 1u << 24, NULL);
  duct__frame tmpl = {DUCT__VERSION, DUCT__REQUEST, 0, 3, 1, 0, 0, 0};
  size_t frames = duct__frag_count(len, sess.peer_max_frame);
  size_t cap = len + frames * DUCT__HEADER_SIZE;
  wire a = {malloc(cap), 0, 0, 0}, b = {malloc(cap), 0, 0, 0};
  assert_int_equal(duct__session_send_pieces(&sess, &tmpl, g.piece, n, len, collect, &a), DUCT_OK);
  assert_int_equal(duct__session_send(&sess, &tmpl, whole + DUCT__HEADER_SIZE, len,
                                      DUCT__SINK_DONE, collect, &b),
                   DUCT_OK);
  assert_int_equal(a.frames, (int)frames);
  assert_int_equal(a.len, b.len);
  assert_memory_equal(a.buf, b.buf, a.len);
  assert_true(a.most_pieces <= 1 + DUCT__GATHER_PIECES);
  duct__session_free(&sess);
  free(a.buf);
  free(b.buf);
  free(scratch);
  free(whole);
  free(b1);
  free(b2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_large_fields_in_place),
      cmocka_unit_test(test_too_many_pieces),
      cmocka_unit_test(test_worth),
      cmocka_unit_test(test_frames_match_whole),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
