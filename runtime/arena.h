/* runtime/arena.h - the per-call arena. A server connection unpacks each
 * request into it, the handler builds its reply in it, and the whole call's
 * memory goes away in one reset. A block is kept across calls, so a
 * steady stream of calls allocates nothing. Internal. */
#ifndef DUCT_RUNTIME_ARENA_H
#define DUCT_RUNTIME_ARENA_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

typedef struct duct__arena_block duct__arena_block;

typedef struct duct__arena {
  ProtobufCAllocator pc; /* allocator_data points back at the arena */
  duct__arena_block *head; /* newest block first; the last one is kept */
  size_t keep;             /* smallest block kept across resets */
  size_t next;             /* size of the next first block (>= keep) */
  unsigned slack;          /* resets in a row that used < 1/4 of a big block */
  /* The most block memory one call may hold (0: no limit), and what it
   * holds now. A request can make protobuf-c allocate far more than its
   * own size (a 4 MiB message of 2-byte unknown fields needs ~150 MB of
   * bookkeeping), so the server caps each call. */
  size_t limit, total;
  unsigned char over_limit; /* the failure was the limit, not the system */
  /* An allocation failed since the last reset: lets a caller tell "out of
   * memory" from "does not parse" when protobuf-c's unpack returns NULL. */
  unsigned char out_of_memory;
} duct__arena;

/* keep: bytes of the block that survives resets (allocated lazily).
 * limit: the most a call may hold (0: none). */
void duct__arena_init(duct__arena *a, size_t keep);
void duct__arena_set_limit(duct__arena *a, size_t limit);
/* 16-byte aligned memory, or NULL without memory. */
void *duct__arena_alloc(duct__arena *a, size_t n);
/* Empties the arena for the next call. The memory of a call that needed
 * several blocks is handed back and the next call gets one block as big
 * as all of them, which is then kept: a steady stream of calls of one size
 * allocates nothing, large or small. A block larger than `keep` is
 * released after ARENA_SLACK resets in a row that used under a quarter of
 * it. */
void duct__arena_reset(duct__arena *a);
void duct__arena_free(duct__arena *a);

#endif
