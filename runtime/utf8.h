/* runtime/utf8.h - cutting text without cutting a character. Internal.
 *
 * Every message duct carries (a handler's error text, a status message, a
 * transport's diagnostic) is UTF-8 and has a byte limit somewhere. Where
 * it is cut to fit, it is cut between characters, so what arrives is
 * still valid UTF-8 if what was sent was. */
#ifndef DUCT_RUNTIME_UTF8_H
#define DUCT_RUNTIME_UTF8_H

#include <stdarg.h>
#include <stddef.h>

#include "duct/service.h" /* DUCT_PRINTF_FORMAT */

/* The length of the longest prefix of s[0..n) that does not end inside a
 * multi-byte character: n itself, or less when the last character that
 * starts before n needs bytes at or past n. Only s[0..n) is read, so this
 * works on the first n bytes of a longer text and on a buffer that
 * vsnprintf has already cut. Bytes that are not UTF-8 are left alone (the
 * cut never removes more than one incomplete character). */
size_t duct__utf8_cut(const char *s, size_t n);

/* 1 if s[0..n) is valid UTF-8 (no overlong forms, no surrogates, nothing
 * above U+10FFFF), else 0. For tests and diagnostics. */
int duct__utf8_valid(const char *s, size_t n);

/* vsnprintf into buf (cap >= 1 bytes), then, if the text did not fit or
 * ends in an incomplete character, shortened to the last whole character.
 * Always terminated. Returns the length written. */
size_t duct__utf8_vformat(char *buf, size_t cap, const char *fmt, va_list ap);
size_t duct__utf8_format(char *buf, size_t cap, const char *fmt, ...)
    DUCT_PRINTF_FORMAT(3, 4);

#endif
