/* The kv example's storage: a thread-safe map of strings, independent of
 * duct, so the server file shows only what duct asks of a service. */
#ifndef KV_STORE_H
#define KV_STORE_H

#include <stddef.h>

typedef struct kv_store kv_store;

kv_store *kv_store_new(void);
void kv_store_free(kv_store *s);
/* Returns 1 if the key had a value (replaced), 0 if new, -1 without memory. */
int kv_store_put(kv_store *s, const char *key, const char *value);
/* Copies the value with copy(arg, value) under the lock. 0 if found and
 * copied, -1 if the key has no value, -2 if copy failed. */
int kv_store_get(kv_store *s, const char *key,
                 int (*copy)(void *arg, const char *value), void *arg);
/* 0 if deleted, -1 if the key had no value. */
int kv_store_del(kv_store *s, const char *key);
/* Calls each(arg, key) for every key in sorted order; stops on non-zero.
 * Returns the number of keys. */
size_t kv_store_list(kv_store *s, int (*each)(void *arg, size_t i, size_t n, const char *key),
                     void *arg);

/* Watching: fn(arg, key, value) runs under the store's lock, in the order
 * of the changes, for each change to a key starting with `prefix` (value
 * NULL: deleted). It must not call into the store; returning non-zero
 * removes the watcher (fn is not called for it again, and arg is not
 * touched after that return). */
typedef int (*kv_watch_fn)(void *arg, const char *key, const char *value);
/* Returns the watcher's id (never 0), or 0 without memory. prefix is copied. */
unsigned long kv_store_watch(kv_store *s, const char *prefix, kv_watch_fn fn, void *arg);
/* 1 if the watcher was there and is now removed (fn never runs for it
 * again), 0 if it was gone already. */
int kv_store_unwatch(kv_store *s, unsigned long id);

#endif
