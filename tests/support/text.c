#include "text.h"

#include <stdio.h>

void test_slurp(const char *path, char *out, size_t cap) {
  out[0] = '\0';
  FILE *f = fopen(path, "rb");
  if (!f)
    return;
  size_t got = fread(out, 1, cap - 1, f);
  out[got] = '\0';
  fclose(f);
  char *w = out;
  for (char *r = out; *r; r++)
    if (*r != '\r')
      *w++ = *r;
  *w = '\0';
}
