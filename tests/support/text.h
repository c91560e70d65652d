/* tests/support/text.h - reading what a child program wrote. */
#ifndef DUCT_TEST_TEXT_H
#define DUCT_TEST_TEXT_H

#include <stddef.h>

/* The file's contents, NUL-terminated and cut to cap - 1 bytes, with every
 * CR dropped: Windows programs write CRLF, and the tests compare lines,
 * not line ends. Empty if the file cannot be read. */
void test_slurp(const char *path, char *out, size_t cap);

#endif
