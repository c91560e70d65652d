/* runtime/arena.h - the per-call arena. A server connection unpacks each
 * request into it, the handler builds its reply in it, and the whole call's
 * memory goes away in one reset. The first block is kept across calls, so
 * a steady stream of small calls allocates nothing. Internal. */
#ifndef DUCT_RUNTIME_ARENA_H
#define DUCT_RUNTIME_ARENA_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

typedef struct duct__arena_block duct__arena_block;

typedef struct duct__arena {
  ProtobufCAllocator pc; /* allocator_data points back at the arena */
  duct__arena_block *head; /* newest block first; the last one is kept */
  size_t keep;             /* size of the block kept across resets */
} duct__arena;

/* keep: bytes of the block that survives resets (allocated lazily). */
void duct__arena_init(duct__arena *a, size_t keep);
/* 16-byte aligned memory, or NULL without memory. */
void *duct__arena_alloc(duct__arena *a, size_t n);
/* Frees everything but the kept block, which is emptied. */
void duct__arena_reset(duct__arena *a);
void duct__arena_free(duct__arena *a);

#endif
