/* find_collision: finds two method names of one service whose FNV-1a 32
 * ids (docs/PROTOCOL.md) are equal, by brute force, so that
 * tests/protos/bad/collision.proto can hold a real collision.
 *
 *   cc -O2 -o find_collision find_collision.c && ./find_collision Collide
 *
 * prints the two method names and their id. The birthday bound makes this quick: among 2^17
 * names of 32 bits, a collision is all but certain. Not built by CMake:
 * its one result is checked in, and the test of that result is what fails
 * when the generator's check breaks. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t fnv1a(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++) {
    h ^= (uint8_t)*s;
    h *= 16777619u;
  }
  return h;
}

/* Method i's name: "M" and 8 letters drawn from i by a 64-bit mixer.
 * Names that differ only in a decimal suffix barely collide under FNV-1a
 * (the last bytes map almost one-to-one), so the letters are scrambled. */
static void method_name(uint32_t i, char out[16]) {
  uint64_t x = i * 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  out[0] = 'M';
  for (int k = 1; k <= 8; k++) {
    out[k] = (char)('a' + x % 26);
    x /= 26;
  }
  out[9] = '\0';
}

typedef struct entry {
  uint32_t id;
  uint32_t n;
} entry;

static int by_id(const void *a, const void *b) {
  uint32_t x = ((const entry *)a)->id, y = ((const entry *)b)->id;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  const char *svc = argc > 1 ? argv[1] : "collide.Collide";
  enum { N = 1u << 18 };
  entry *e = malloc(N * sizeof *e);
  char name[256], m[16];
  if (!e)
    return 1;
  for (uint32_t i = 0; i < N; i++) {
    method_name(i, m);
    snprintf(name, sizeof name, "/%s/%s", svc, m);
    e[i].id = fnv1a(name);
    e[i].n = i;
  }
  qsort(e, N, sizeof *e, by_id);
  for (uint32_t i = 1; i < N; i++) {
    if (e[i].id == e[i - 1].id) {
      char a[16], b[16];
      method_name(e[i - 1].n, a);
      method_name(e[i].n, b);
      printf("%s %s 0x%08x\n", a, b, e[i].id);
      free(e);
      return 0;
    }
  }
  free(e);
  return 1;
}
