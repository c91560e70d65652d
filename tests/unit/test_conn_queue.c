/* tests/unit/test_conn_queue.c - the send queue's loans (runtime/conn.h,
 * duct__conn_send_lent): a message the system does not take at once is
 * written later from the lender's memory, whole and in order, with its
 * header put back in front of it; the loan is held exactly while the
 * queue points into it, and given back when the connection goes.
 *
 * A fake platform stands in for the system: its try_write takes messages
 * while `open` says so and records each as one contiguous piece, as a
 * WriteFile or a SOCK_SEQPACKET send would carry it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/conn.h"
#include "runtime/frame.h"
#include "runtime/session.h"
#include "runtime/wire.h"

#define MAX_OUT 64

typedef struct fake {
  duct__conn base; /* first, as conn.c expects */
  int open;        /* try_write takes messages */
  int armed;       /* want_write was asked */
  int destroyed;
  int n_out;
  uint8_t out[MAX_OUT][DUCT__HEADER_SIZE + 256];
  size_t out_len[MAX_OUT];
} fake;

static int f_try_write(duct__conn *c, const duct__iov *iov, int n, duct_code *err) {
  fake *f = (fake *)c;
  (void)err;
  if (!f->open)
    return 0;
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    assert_true(off + iov[i].len <= sizeof f->out[0]);
    memcpy(f->out[f->n_out] + off, iov[i].base, iov[i].len);
    off += iov[i].len;
  }
  f->out_len[f->n_out++] = off;
  return 1;
}

static void f_want_write(duct__conn *c) {
  fake *f = (fake *)c;
  f->armed = 1;
  c->writing = 1;
}

static void f_abort(duct__conn *c) { (void)c; }
static void f_destroy(duct__conn *c) { ((fake *)c)->destroyed = 1; }

static const duct__conn_io fake_io = {f_try_write, f_want_write, f_abort, f_destroy};

static void *cb_open(void *core, duct__conn *c, const duct_peer *p) {
  (void)core, (void)c, (void)p;
  return NULL;
}
static int cb_message(void *st, const uint8_t *m, size_t n) {
  (void)st, (void)m, (void)n;
  return 0;
}
static void cb_closed(void *st, duct_code code, const char *d) { (void)st, (void)code, (void)d; }

typedef struct lender {
  duct__loan loan;
  int released;
  uint8_t buf[DUCT__HEADER_SIZE + 200];
} lender;

static void lender_release(duct__loan *loan) { ((lender *)loan)->released++; }

typedef struct rig {
  duct__conn_set set;
  fake f;
  lender ln;
} rig;

static int setup(void **state) {
  static rig r;
  memset(&r, 0, sizeof r);
  duct__srv_cb cb;
  memset(&cb, 0, sizeof cb);
  cb.open = cb_open;
  cb.message = cb_message;
  cb.closed = cb_closed;
  duct__conn_set_opts o = {0, 1000, 1u << 20};
  duct__conn_set_init(&r.set, &fake_io, &cb, NULL, &o);
  duct__conn_init(&r.f.base, &r.set);
  atomic_init(&r.ln.loan.refs, 1);
  r.ln.loan.release = lender_release;
  for (size_t i = 0; i < sizeof r.ln.buf; i++)
    r.ln.buf[i] = (uint8_t)(i * 7 + 1);
  *state = &r;
  return 0;
}

static int teardown(void **state) {
  rig *r = *state;
  if (!r->f.destroyed)
    duct__conn_unref(&r->f.base);
  assert_true(r->f.destroyed);
  duct__conn_set_destroy(&r->set);
  return 0;
}

static int refs(const lender *ln) { return atomic_load(&ln->loan.refs); }

typedef struct sink_arg {
  duct__conn *c;
  duct__loan *loan;
} sink_arg;

static duct_code lend_sink(void *arg, const duct__iov *iov, int n, int last) {
  sink_arg *a = arg;
  (void)last;
  return duct__conn_send_lent(a->c, iov, n, a->loan);
}

/* What one frame of `payload` (len bytes, frames of max_frame) must look
 * like on the wire, built apart from the lender's buffer. */
static size_t expect_frame(const duct__frame *tmpl, const uint8_t *payload, size_t len,
                           uint32_t max_frame, size_t i, uint8_t *out) {
  uint8_t hdr[DUCT__HEADER_SIZE];
  duct__iov iov[2];
  int k = duct__wire_frag(tmpl, (uint8_t *)(uintptr_t)payload, len, max_frame, i, 0, hdr, iov);
  memcpy(out, iov[0].base, iov[0].len);
  if (k == 2)
    memcpy(out + iov[0].len, iov[1].base, iov[1].len);
  return iov[0].len + (k == 2 ? iov[1].len : 0);
}

/* A message of 5 frames (the last one short) lent while the system takes nothing: each is
 * queued pointing into the buffer (no copy: the loan is held once per
 * frame), and flushing writes each frame whole and in order, although
 * each frame's header lands on the tail of the frame before it. */
static void test_lent_fragments_written_whole(void **state) {
  rig *r = *state;
  duct__session sess;
  duct__session_init(&sess, 1u << 20, NULL);
  sess.peer_max_frame = DUCT__HEADER_SIZE + 48; /* 48 payload bytes a frame */
  size_t frames = duct__frag_count(200, sess.peer_max_frame);
  assert_int_equal(frames, 5);
  uint8_t *payload = r->ln.buf + DUCT__HEADER_SIZE;
  uint8_t orig[200];
  memcpy(orig, payload, sizeof orig);
  duct__frame tmpl = {DUCT__VERSION, DUCT__RESPONSE, 0, 9, 3, DUCT_OK, 0, 0};

  sink_arg a = {&r->f.base, &r->ln.loan};
  assert_int_equal(duct__session_send(&sess, &tmpl, payload, sizeof orig, DUCT__SINK_KEEPS,
                                      lend_sink, &a),
                   DUCT_OK);
  assert_int_equal(r->f.n_out, 0);
  assert_true(r->f.armed);
  assert_int_equal(refs(&r->ln), 1 + (int)frames);
  assert_int_equal(duct__conn_queued(&r->f.base), frames * DUCT__HEADER_SIZE + sizeof orig);

  r->f.open = 1;
  assert_int_equal(duct__conn_flush(&r->f.base), 1);
  assert_int_equal(r->f.n_out, (int)frames);
  for (size_t i = 0; i < frames; i++) {
    uint8_t want[DUCT__HEADER_SIZE + 48];
    size_t n = expect_frame(&tmpl, orig, sizeof orig, sess.peer_max_frame, i, want);
    assert_int_equal(r->f.out_len[i], n);
    assert_memory_equal(r->f.out[i], want, n);
  }
  assert_int_equal(refs(&r->ln), 1); /* every frame written: the buffer is free again */
  assert_int_equal(r->ln.released, 0);
  duct__session_free(&sess);
}

/* The same through duct__conn_head, as Windows writes the queue: one
 * contiguous piece per message with its header in front. */
static void test_head_is_contiguous(void **state) {
  rig *r = *state;
  uint8_t *slice = r->ln.buf + DUCT__HEADER_SIZE + 100;
  uint8_t hdr[DUCT__HEADER_SIZE];
  memset(hdr, 0xAB, sizeof hdr);
  duct__iov two[2] = {{hdr, sizeof hdr}, {slice, 50}};
  uint8_t want[DUCT__HEADER_SIZE + 50];
  memcpy(want, hdr, sizeof hdr);
  memcpy(want + sizeof hdr, slice, 50);
  assert_int_equal(duct__conn_send_lent(&r->f.base, two, 2, &r->ln.loan), DUCT_OK);
  memset(hdr, 0, sizeof hdr); /* the header was copied: the sender's may go */
  size_t len = 0;
  duct__mutex_lock(&r->f.base.mu);
  const uint8_t *at = duct__conn_head(&r->f.base, &len);
  duct__mutex_unlock(&r->f.base.mu);
  assert_ptr_equal(at, slice - DUCT__HEADER_SIZE); /* in place, not a copy */
  assert_int_equal(len, sizeof want);
  assert_memory_equal(at, want, sizeof want);
  duct__conn_wrote(&r->f.base, 1);
  assert_int_equal(refs(&r->ln), 1);
}

/* A head longer than DUCT__CONN_HEAD_MAX cannot be put back in front:
 * the message is copied instead, and no loan is taken. */
static void test_long_head_copied(void **state) {
  rig *r = *state;
  duct__iov two[2] = {{r->ln.buf, DUCT__CONN_HEAD_MAX + 1}, {r->ln.buf + 100, 20}};
  assert_int_equal(duct__conn_send_lent(&r->f.base, two, 2, &r->ln.loan), DUCT_OK);
  assert_int_equal(refs(&r->ln), 1);
  uint8_t want[DUCT__CONN_HEAD_MAX + 1 + 20];
  memcpy(want, r->ln.buf, DUCT__CONN_HEAD_MAX + 1);
  memcpy(want + DUCT__CONN_HEAD_MAX + 1, r->ln.buf + 100, 20);
  memset(r->ln.buf, 0, sizeof r->ln.buf); /* a copy does not see this */
  r->f.open = 1;
  assert_int_equal(duct__conn_flush(&r->f.base), 1);
  assert_int_equal(r->f.n_out, 1);
  assert_int_equal(r->f.out_len[0], sizeof want);
  assert_memory_equal(r->f.out[0], want, sizeof want);
}

/* Written at once: nothing is queued and nothing is borrowed. */
static void test_written_at_once_not_lent(void **state) {
  rig *r = *state;
  r->f.open = 1;
  duct__iov one = {r->ln.buf, 40};
  assert_int_equal(duct__conn_send_lent(&r->f.base, &one, 1, &r->ln.loan), DUCT_OK);
  assert_int_equal(r->f.n_out, 1);
  assert_int_equal(refs(&r->ln), 1);
  assert_int_equal(duct__conn_queued(&r->f.base), 0);
}

/* The lender lets go first and the connection goes with frames still
 * queued: the loan is released exactly once, when the last frame that
 * pointed into it is dropped (no leak, no early free). */
static void test_loan_outlives_lender(void **state) {
  rig *r = *state;
  duct__iov one = {r->ln.buf, 40};
  assert_int_equal(duct__conn_send_lent(&r->f.base, &one, 1, &r->ln.loan), DUCT_OK);
  assert_int_equal(duct__conn_send_lent(&r->f.base, &one, 1, &r->ln.loan), DUCT_OK);
  assert_int_equal(refs(&r->ln), 3);
  duct__loan_drop(&r->ln.loan); /* the lender's own hold */
  assert_int_equal(r->ln.released, 0);
  duct__conn_unref(&r->f.base); /* the last reference: the queue is freed */
  assert_true(r->f.destroyed);
  assert_int_equal(r->ln.released, 1);
  assert_int_equal(refs(&r->ln), 0);
}

/* A closing connection takes nothing, lent or not. */
static void test_closing_refuses(void **state) {
  rig *r = *state;
  duct__conn_close(&r->f.base, DUCT_UNAVAILABLE, "test");
  duct__iov one = {r->ln.buf, 40};
  assert_int_equal(duct__conn_send_lent(&r->f.base, &one, 1, &r->ln.loan), DUCT_UNAVAILABLE);
  assert_int_equal(refs(&r->ln), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_lent_fragments_written_whole, setup, teardown),
      cmocka_unit_test_setup_teardown(test_head_is_contiguous, setup, teardown),
      cmocka_unit_test_setup_teardown(test_long_head_copied, setup, teardown),
      cmocka_unit_test_setup_teardown(test_written_at_once_not_lent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_loan_outlives_lender, setup, teardown),
      cmocka_unit_test_setup_teardown(test_closing_refuses, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
