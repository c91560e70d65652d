/* runtime/utf8.c: text is cut between characters, never inside one, by
 * the one helper every cut goes through (duct__wire_text, the client's
 * duct_status, duct_ctx_fail). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/utf8.h"
#include "runtime/wire.h"

/* One character of each length, as bytes. */
static const char *const chars[] = {"a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};

/* Every cut of "<pad> C <tail>" for every character C of 1..4 bytes and
 * every position: the result is where C starts when the cut falls inside
 * C, and the cut itself otherwise. */
static void test_cut_every_position(void **state) {
  (void)state;
  for (size_t c = 0; c < 4; c++) {
    for (size_t pad = 0; pad < 5; pad++) {
      char s[32];
      size_t k = strlen(chars[c]);
      memset(s, 'p', pad);
      memcpy(s + pad, chars[c], k);
      memcpy(s + pad + k, "tail", 5);
      size_t len = strlen(s);
      for (size_t n = 0; n <= len; n++) {
        size_t want = n > pad && n < pad + k ? pad : n;
        assert_int_equal(duct__utf8_cut(s, n), want);
        assert_true(duct__utf8_valid(s, duct__utf8_cut(s, n)));
      }
    }
  }
}

/* Only s[0..n) is read: the same answers on a buffer that ends at n. */
static void test_cut_reads_nothing_past_n(void **state) {
  (void)state;
  char s[3] = {'x', (char)0xE2, (char)0x82};    /* "x" and 2 of 3 bytes */
  assert_int_equal(duct__utf8_cut(s, 3), 1);
  char t[4] = {(char)0xE2, (char)0x82, (char)0xAC, 'y'};
  assert_int_equal(duct__utf8_cut(t, 3), 3);    /* whole: kept */
  assert_int_equal(duct__utf8_cut(t, 0), 0);
}

/* Bytes that are not UTF-8 are left as they are, never eaten further. */
static void test_cut_leaves_non_utf8_alone(void **state) {
  (void)state;
  const char stray[] = "ab\x80\x80\x80\x80\x80";  /* continuation bytes only */
  assert_int_equal(duct__utf8_cut(stray, 7), 7);
  const char bad_lead[] = "ab\xff";
  assert_int_equal(duct__utf8_cut(bad_lead, 3), 3);
  const char latin1[] = "caf\xe9";                  /* Latin-1 e-acute */
  assert_int_equal(duct__utf8_cut(latin1, 4), 3);   /* looks like a cut lead */
}

static void test_valid(void **state) {
  (void)state;
  assert_true(duct__utf8_valid("", 0));
  assert_true(duct__utf8_valid("h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 12));
  assert_false(duct__utf8_valid("\xc3", 1));             /* incomplete */
  assert_false(duct__utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
  assert_false(duct__utf8_valid("\xed\xa0\x80", 3));     /* a surrogate */
  assert_false(duct__utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
  assert_false(duct__utf8_valid("\x80", 1));
}

/* vsnprintf's cut is corrected; a text that fits is untouched. */
static void test_format(void **state) {
  (void)state;
  char buf[8];
  /* "ab" + the euro sign twice is 8 bytes; 7 fit, the second euro does
   * not fit whole. */
  assert_int_equal(duct__utf8_format(buf, sizeof buf, "ab%s%s", chars[2], chars[2]), 5);
  assert_string_equal(buf, "ab\xe2\x82\xac");
  assert_int_equal(duct__utf8_format(buf, sizeof buf, "%d", 1234567), 7);
  assert_string_equal(buf, "1234567");
  assert_int_equal(duct__utf8_format(buf, 1, "%s", "abc"), 0);
  assert_string_equal(buf, "");
  /* An argument already cut elsewhere loses its half character too. */
  assert_int_equal(duct__utf8_format(buf, sizeof buf, "%s", "a\xf0\x9f"), 1);
}

/* The wire's text frames go through the same cut: 2000 bytes of 2-, 3-
 * and 4-byte characters become at most 1024 bytes of whole ones. */
static void test_wire_text_cut(void **state) {
  (void)state;
  for (size_t c = 1; c < 4; c++) {
    char text[2001];
    size_t k = strlen(chars[c]), n = 1;
    text[0] = 'x';
    while (n + k <= 2000) {
      memcpy(text + n, chars[c], k);
      n += k;
    }
    text[n] = '\0';
    uint8_t msg[DUCT__TEXT_MSG_MAX];
    size_t len = duct__wire_text(msg, DUCT__RESPONSE, 1, 2, DUCT_INTERNAL, text) -
                 DUCT__HEADER_SIZE;
    assert_true(len <= DUCT__MAX_ERROR_TEXT);
    assert_true(len > DUCT__MAX_ERROR_TEXT - k);  /* nothing more than needed */
    assert_int_equal((len - 1) % k, 0);             /* whole characters */
    assert_memory_equal(msg + DUCT__HEADER_SIZE, text, len);
    assert_true(duct__utf8_valid((const char *)msg + DUCT__HEADER_SIZE, len));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cut_every_position),
      cmocka_unit_test(test_cut_reads_nothing_past_n),
      cmocka_unit_test(test_cut_leaves_non_utf8_alone),
      cmocka_unit_test(test_valid),
      cmocka_unit_test(test_format),
      cmocka_unit_test(test_wire_text_cut),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
