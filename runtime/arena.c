/* Bump allocator in blocks. protobuf-c calls duct__free() on the allocator for
 * each field when it gives up half way through an unpack; that is a no-op
 * here, since the reset reclaims everything at once. */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include "runtime/alloc.h"

#define ALIGN 16u
/* Resets in a row that leave a block above `keep` mostly unused before it
 * is released (arena.h). */
#define ARENA_SLACK 2u

struct duct__arena_block {
  duct__arena_block *next;
  size_t size; /* usable bytes after the header */
  size_t used;
  /* Data follows, aligned by the header's padding below. */
};

/* Header size rounded up so the data starts 16-byte aligned. */
#define HDR ((sizeof(duct__arena_block) + ALIGN - 1) & ~(size_t)(ALIGN - 1))

static void *pc_alloc(void *data, size_t n) { return duct__arena_alloc(data, n); }
static void pc_free(void *data, void *p) { (void)data; (void)p; }

void duct__arena_init(duct__arena *a, size_t keep) {
  a->pc.alloc = pc_alloc;
  a->pc.free = pc_free;
  a->pc.allocator_data = a;
  a->head = NULL;
  a->keep = keep < 1024 ? 1024 : keep;
  a->next = a->keep;
  a->slack = 0;
  a->out_of_memory = 0;
  a->limit = a->total = 0;
  a->over_limit = 0;
}

void duct__arena_set_limit(duct__arena *a, size_t limit) { a->limit = limit; }

void *duct__arena_alloc(duct__arena *a, size_t n) {
  size_t need = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
  if (need < n) {
    a->out_of_memory = 1; /* overflow */
    return NULL;
  }
  duct__arena_block *b = a->head;
  if (!b || b->size - b->used < need) {
    /* Blocks double from the kept size, so a large message costs a few
     * allocations, not one per field. */
    size_t size = a->head ? a->head->size * 2 : a->next;
    if (size < need)
      size = need;
    if (a->limit && size > a->limit - a->total) {
      /* Past the call's cap: the last block may still fit what is asked. */
      if (need > a->limit - a->total) {
        a->out_of_memory = a->over_limit = 1;
        return NULL;
      }
      size = a->limit - a->total;
    }
    b = size > SIZE_MAX - HDR ? NULL : duct__malloc(HDR + size);
    if (!b) {
      a->out_of_memory = 1;
      return NULL;
    }
    a->total += size;
    b->size = size;
    b->used = 0;
    b->next = a->head;
    a->head = b;
  }
  void *p = (char *)b + HDR + b->used;
  b->used += need;
  return p;
}

void duct__arena_reset(duct__arena *a) {
  duct__arena_block *b = a->head;
  a->out_of_memory = a->over_limit = 0;
  a->total = 0;
  if (!b)
    return;
  if (b->next) {
    /* This call outgrew its block: hand back all of them and size the
     * next first block for the whole call, so the next call of this size
     * fits in one block (one allocation now, none from then on). */
    size_t used = 0;
    while (a->head) {
      duct__arena_block *next = a->head->next;
      used += a->head->used;
      duct__free(a->head);
      a->head = next;
    }
    a->next = used > a->keep ? used + used / 8 : a->keep;
    a->slack = 0;
    return;
  }
  /* One block. A big one that this call barely used counts towards
   * giving it back; one that is being used stays. */
  if (b->size > a->keep) {
    if (b->used >= b->size / 4) {
      a->slack = 0;
    } else if (++a->slack >= ARENA_SLACK) {
      duct__free(b);
      a->head = NULL;
      a->next = a->keep;
      a->slack = 0;
      return;
    }
  }
  b->used = 0;
  a->total = b->size; /* the kept block counts against the next call */
}

void duct__arena_free(duct__arena *a) {
  while (a->head) {
    duct__arena_block *next = a->head->next;
    duct__free(a->head);
    a->head = next;
  }
}
