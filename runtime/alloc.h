/* runtime/alloc.h - every allocation duct's library makes goes through
 * these, so duct_set_allocator can count them (bench/) or fail the Nth
 * one (tests/fault/). Internal. */
#ifndef DUCT_RUNTIME_ALLOC_H
#define DUCT_RUNTIME_ALLOC_H

#include <stddef.h>

void *duct__malloc(size_t n);
void *duct__calloc(size_t count, size_t size);
void *duct__realloc(void *p, size_t n);
void duct__free(void *p);

#endif
