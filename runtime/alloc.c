#include "alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "duct/service.h"

/* Set once before duct is used (duct_set_allocator's contract), so plain
 * reads are enough on the hot path. */
static duct_allocator hooks;

void duct_set_allocator(const duct_allocator *a) {
  if (a && a->malloc && a->realloc && a->free)
    hooks = *a;
  else
    memset(&hooks, 0, sizeof hooks);
}

void *duct__malloc(size_t n) {
  return hooks.malloc ? hooks.malloc(hooks.user, n) : malloc(n);
}

void *duct__calloc(size_t count, size_t size) {
  if (size && count > SIZE_MAX / size)
    return NULL;
  void *p = duct__malloc(count * size);
  if (p)
    memset(p, 0, count * size);
  return p;
}

void *duct__realloc(void *p, size_t n) {
  return hooks.realloc ? hooks.realloc(hooks.user, p, n) : realloc(p, n);
}

void duct__free(void *p) {
  if (hooks.free)
    hooks.free(hooks.user, p);
  else
    free(p);
}
