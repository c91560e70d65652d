/* runtime/utf8.c - cutting text at a character boundary (utf8.h). */
#include "utf8.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The number of bytes a character starting with lead byte b takes, or 0
 * if b cannot start one (a continuation byte 10xxxxxx, or 0xF8..0xFF). */
static size_t seq_len(unsigned char b) {
  if (b < 0x80)
    return 1;
  if (b < 0xC0)
    return 0;
  if (b < 0xE0)
    return 2;
  if (b < 0xF0)
    return 3;
  if (b < 0xF8)
    return 4;
  return 0;
}

size_t duct__utf8_cut(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  /* Find the start of the last character: back over at most three
   * continuation bytes. Looking only before n is what lets this work on
   * text vsnprintf has already cut, where the byte at n is gone. */
  size_t i = n;
  while (i > 0 && n - i < 4 && (u[i - 1] & 0xC0) == 0x80)
    i--;
  if (i == 0 || n - i >= 4)
    return n; /* no lead byte within reach: not UTF-8, leave it */
  size_t want = seq_len(u[i - 1]);
  if (want == 0)
    return n; /* not a lead byte: not UTF-8, leave it */
  /* The character starts at i - 1 and has n - (i - 1) bytes before n. */
  return n - (i - 1) < want ? i - 1 : n;
}

int duct__utf8_valid(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    size_t k = seq_len(u[i]);
    if (k == 0 || k > n - i)
      return 0;
    uint32_t c = k == 1 ? u[i] : (uint32_t)(u[i] & (0x7F >> k));
    for (size_t j = 1; j < k; j++) {
      if ((u[i + j] & 0xC0) != 0x80)
        return 0;
      c = c << 6 | (u[i + j] & 0x3F);
    }
    /* The shortest form only, no UTF-16 surrogates, Unicode's range. */
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min[k] || (c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF)
      return 0;
    i += k;
  }
  return 1;
}

size_t duct__utf8_vformat(char *buf, size_t cap, const char *fmt, va_list ap) {
  int r = vsnprintf(buf, cap, fmt, ap);
  if (r < 0) {
    buf[0] = '\0'; /* an encoding error: nothing sensible to keep */
    return 0;
  }
  size_t n = (size_t)r < cap ? (size_t)r : cap - 1;
  /* Applied even when it fitted: a %s argument may itself have been cut
   * mid-character somewhere else. */
  n = duct__utf8_cut(buf, n);
  buf[n] = '\0';
  return n;
}

size_t duct__utf8_format(char *buf, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t n = duct__utf8_vformat(buf, cap, fmt, ap);
  va_end(ap);
  return n;
}
