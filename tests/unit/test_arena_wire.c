/* The per-call arena (alignment, growth, reuse without allocation) and
 * the message builders shared by server and client. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/arena.h"
#include "runtime/session.h"
#include "runtime/wire.h"

static void test_arena_alignment_and_growth(void **state) {
  (void)state;
  duct__arena a;
  duct__arena_init(&a, 4096);
  for (size_t n = 1; n < 3000; n += 37) {
    uint8_t *p = duct__arena_alloc(&a, n);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 16, 0);
    memset(p, 0xAB, n); /* ASan flags an overrun of the block */
  }
  uint8_t *big = duct__arena_alloc(&a, 1u << 20);
  assert_non_null(big);
  memset(big, 1, 1u << 20);
  duct__arena_free(&a);
}

static void test_arena_reset_keeps_first_block(void **state) {
  (void)state;
  duct__arena a;
  duct__arena_init(&a, 4096);
  void *first = duct__arena_alloc(&a, 100);
  duct__arena_reset(&a);
  assert_non_null(a.head);
  /* Memory is handed out again from the start of the kept block. */
  assert_ptr_equal(duct__arena_alloc(&a, 100), first);
  duct__arena_free(&a);
}

static void test_arena_grown_call_gets_one_block(void **state) {
  (void)state;
  duct__arena a;
  duct__arena_init(&a, 4096);
  (void)duct__arena_alloc(&a, 100);
  (void)duct__arena_alloc(&a, 10000); /* a second block */
  duct__arena_reset(&a);
  /* The next call of the same shape fits in one block, which is kept:
   * every later call gets the very same memory. */
  char *p = duct__arena_alloc(&a, 100);
  char *q = duct__arena_alloc(&a, 10000);
  assert_ptr_equal(q, p + 112); /* one block: 100 rounded up to 16 */
  for (int call = 0; call < 3; call++) {
    duct__arena_reset(&a);
    assert_ptr_equal(duct__arena_alloc(&a, 100), p);
    assert_ptr_equal(duct__arena_alloc(&a, 10000), q);
  }
  duct__arena_free(&a);
}

static void test_arena_oversized_first_block_not_kept(void **state) {
  (void)state;
  duct__arena a;
  duct__arena_init(&a, 4096);
  (void)duct__arena_alloc(&a, 100000);
  duct__arena_reset(&a);
  /* Kept while calls use it... */
  assert_non_null(a.head);
  /* ...and released after a short run of calls that do not. */
  int released = 0;
  for (int i = 0; i < 16 && !released; i++) {
    (void)duct__arena_alloc(&a, 100);
    duct__arena_reset(&a);
    released = a.head == NULL;
  }
  assert_true(released);
  assert_int_equal(a.next, a.keep); /* the next call starts small again */
  duct__arena_free(&a);
}

static void test_arena_as_protobuf_allocator(void **state) {
  (void)state;
  duct__arena a;
  duct__arena_init(&a, 1024);
  void *p = a.pc.alloc(a.pc.allocator_data, 64);
  assert_non_null(p);
  a.pc.free(a.pc.allocator_data, p); /* a no-op, never a double free */
  duct__arena_free(&a);
}

static void test_text_frames(void **state) {
  (void)state;
  uint8_t msg[DUCT__TEXT_MSG_MAX];
  size_t n = duct__wire_text(msg, DUCT__RESPONSE, 7, 9, DUCT_NOT_FOUND, "no key");
  duct__frame f;
  const char *why;
  assert_int_equal(duct__frame_decode(msg, n, &f, &why), DUCT_OK);
  assert_int_equal(f.status, DUCT_NOT_FOUND);
  assert_int_equal(f.payload_len, 6);
  assert_memory_equal(msg + DUCT__HEADER_SIZE, "no key", 6);

  /* 1023 ASCII bytes then a 3-byte character: the cut lands before it. */
  char text[1100];
  memset(text, 'a', 1023);
  memcpy(text + 1023, "\xe2\x82\xac", 3);
  text[1026] = '\0';
  n = duct__wire_text(msg, DUCT__GOAWAY, 0, 0, DUCT_UNAVAILABLE, text);
  assert_int_equal(n, DUCT__HEADER_SIZE + 1023);
  assert_int_equal(duct__frame_decode(msg, n, &f, &why), DUCT_OK);
}

static void test_hello_message(void **state) {
  (void)state;
  uint8_t msg[DUCT__HELLO_MSG_SIZE];
  duct__wire_hello(msg, 65536, 12345);
  duct__frame f;
  duct__hello h;
  const char *why;
  assert_int_equal(duct__frame_decode(msg, sizeof msg, &f, &why), DUCT_OK);
  assert_int_equal(f.type, DUCT__HELLO);
  assert_int_equal(duct__hello_decode(msg + DUCT__HEADER_SIZE, f.payload_len, &h, &why), DUCT_OK);
  assert_int_equal(h.max_frame, 65536);
  assert_int_equal(h.max_message, 12345);
}

static void test_frag_pieces(void **state) {
  (void)state;
  static uint8_t buf[DUCT__HEADER_SIZE + 200];
  uint8_t *payload = buf + DUCT__HEADER_SIZE;
  duct__frame tmpl = {DUCT__VERSION, DUCT__REQUEST, 0, 1, 5, 0, 0, 0};
  uint8_t hdr[DUCT__HEADER_SIZE];
  duct__iov iov[2];
  /* Single frame with header room: one contiguous piece, header in place. */
  assert_int_equal(duct__wire_frag(&tmpl, payload, 200, 65536, 0, 1, hdr, iov), 1);
  assert_ptr_equal(iov[0].base, buf);
  assert_int_equal(iov[0].len, DUCT__HEADER_SIZE + 200);
  /* Frames of 132 bytes (100 payload): two pieces each, header apart. */
  assert_int_equal(duct__wire_frag(&tmpl, payload, 200, 132, 1, 1, hdr, iov), 2);
  assert_ptr_equal(iov[1].base, payload + 100);
  assert_int_equal(iov[1].len, 100);
  duct__frame f;
  const char *why;
  uint8_t whole[132];
  memcpy(whole, hdr, DUCT__HEADER_SIZE);
  memcpy(whole + DUCT__HEADER_SIZE, iov[1].base, 100);
  assert_int_equal(duct__frame_decode(whole, sizeof whole, &f, &why), DUCT_OK);
  assert_int_equal(f.flags, 0); /* the last of two */
  /* The first of several frames also takes the room: one piece. */
  assert_int_equal(duct__wire_frag(&tmpl, payload, 200, 132, 0, 1, hdr, iov), 1);
  assert_ptr_equal(iov[0].base, buf);
  assert_int_equal(iov[0].len, 132);
}

typedef struct seen {
  int n;
  uint8_t frames[4][DUCT__HEADER_SIZE + 100];
  size_t len[4];
} seen;

static duct_code one_piece_sink(void *ctx, const duct__iov *iov, int n, int last) {
  seen *s = ctx;
  assert_int_equal(n, 1); /* DUCT__SINK_DONE: every frame is one piece */
  assert_true(s->n < 4 && iov[0].len <= sizeof s->frames[0]);
  memcpy(s->frames[s->n], iov[0].base, iov[0].len);
  s->len[s->n++] = iov[0].len;
  assert_int_equal(last, s->n == 3);
  return DUCT_OK;
}

/* DUCT__SINK_DONE puts each header in front of its slice, over the tail
 * of the slice before, and gives those bytes back: the frames are the
 * ones duct__wire_frag describes, and the payload is unchanged after. */
static void test_session_send_in_place(void **state) {
  (void)state;
  static uint8_t buf[DUCT__HEADER_SIZE + 250];
  uint8_t *payload = buf + DUCT__HEADER_SIZE;
  for (size_t i = 0; i < 250; i++)
    payload[i] = (uint8_t)(i * 13 + 5);
  uint8_t orig[250];
  memcpy(orig, payload, sizeof orig);
  duct__session sess;
  duct__session_init(&sess, 1u << 20, NULL);
  sess.peer_max_frame = DUCT__HEADER_SIZE + 100; /* 3 frames: 100, 100, 50 */
  duct__frame tmpl = {DUCT__VERSION, DUCT__REQUEST, 0, 4, 2, 0, 0, 0};
  seen s = {0};
  assert_int_equal(duct__session_send(&sess, &tmpl, payload, sizeof orig, DUCT__SINK_DONE,
                                      one_piece_sink, &s),
                   DUCT_OK);
  assert_int_equal(s.n, 3);
  for (int i = 0; i < 3; i++) {
    uint8_t hdr[DUCT__HEADER_SIZE];
    duct__iov iov[2];
    int k = duct__wire_frag(&tmpl, orig, sizeof orig, sess.peer_max_frame, (size_t)i, 0, hdr, iov);
    assert_int_equal(k, 2);
    assert_int_equal(s.len[i], DUCT__HEADER_SIZE + iov[1].len);
    assert_memory_equal(s.frames[i], hdr, DUCT__HEADER_SIZE);
    assert_memory_equal(s.frames[i] + DUCT__HEADER_SIZE, iov[1].base, iov[1].len);
  }
  assert_memory_equal(payload, orig, sizeof orig);
  duct__session_free(&sess);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_arena_alignment_and_growth),
      cmocka_unit_test(test_arena_reset_keeps_first_block),
      cmocka_unit_test(test_arena_grown_call_gets_one_block),
      cmocka_unit_test(test_arena_oversized_first_block_not_kept),
      cmocka_unit_test(test_arena_as_protobuf_allocator),
      cmocka_unit_test(test_text_frames),
      cmocka_unit_test(test_hello_message),
      cmocka_unit_test(test_frag_pieces),
      cmocka_unit_test(test_session_send_in_place),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
