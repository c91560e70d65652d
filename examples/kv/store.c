/* A sorted array under one mutex: the example's point is duct, not data
 * structures, and a sorted array makes List trivially ordered. */
#include "store.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/sys.h"

typedef struct pair {
  char *key;
  char *value;
} pair;

typedef struct watcher {
  struct watcher *next;
  unsigned long id;
  kv_watch_fn fn;
  void *arg;
  char prefix[]; /* NUL-terminated */
} watcher;

struct kv_store {
  duct__mutex mu;
  pair *items;
  size_t n, cap;
  watcher *watchers;
  unsigned long next_id;
};

/* Under the lock: tells the watchers whose prefix matches. */
static void notify(kv_store *s, const char *key, const char *value) {
  for (watcher **pp = &s->watchers; *pp;) {
    watcher *w = *pp;
    if (strncmp(key, w->prefix, strlen(w->prefix)) == 0 && w->fn(w->arg, key, value) != 0) {
      *pp = w->next;
      free(w);
      continue;
    }
    pp = &w->next;
  }
}

unsigned long kv_store_watch(kv_store *s, const char *prefix, kv_watch_fn fn, void *arg) {
  size_t n = strlen(prefix) + 1;
  watcher *w = malloc(sizeof *w + n);
  if (!w)
    return 0;
  memcpy(w->prefix, prefix, n);
  w->fn = fn;
  w->arg = arg;
  duct__mutex_lock(&s->mu);
  w->id = ++s->next_id;
  w->next = s->watchers;
  s->watchers = w;
  duct__mutex_unlock(&s->mu);
  return w->id;
}

int kv_store_unwatch(kv_store *s, unsigned long id) {
  duct__mutex_lock(&s->mu);
  watcher *found = NULL;
  for (watcher **pp = &s->watchers; *pp; pp = &(*pp)->next)
    if ((*pp)->id == id) {
      found = *pp;
      *pp = found->next;
      break;
    }
  duct__mutex_unlock(&s->mu);
  free(found);
  return found != NULL;
}

kv_store *kv_store_new(void) {
  kv_store *s = calloc(1, sizeof *s);
  if (s)
    duct__mutex_init(&s->mu);
  return s;
}

void kv_store_free(kv_store *s) {
  if (!s)
    return;
  for (size_t i = 0; i < s->n; i++) {
    free(s->items[i].key);
    free(s->items[i].value);
  }
  while (s->watchers) {
    watcher *w = s->watchers;
    s->watchers = w->next;
    free(w);
  }
  free(s->items);
  duct__mutex_destroy(&s->mu);
  free(s);
}

/* Index of key, or of where it would go (with *found = 0). */
static size_t find(const kv_store *s, const char *key, int *found) {
  size_t lo = 0, hi = s->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(s->items[mid].key, key);
    if (c == 0) {
      *found = 1;
      return mid;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = 0;
  return lo;
}

static char *dup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

int kv_store_put(kv_store *s, const char *key, const char *value) {
  char *v = dup(value);
  if (!v)
    return -1;
  duct__mutex_lock(&s->mu);
  int found;
  size_t i = find(s, key, &found);
  if (found) {
    free(s->items[i].value);
    s->items[i].value = v;
    notify(s, key, value);
    duct__mutex_unlock(&s->mu);
    return 1;
  }
  char *k = dup(key);
  if (k && s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 16;
    pair *grown = realloc(s->items, cap * sizeof *grown);
    if (grown) {
      s->items = grown;
      s->cap = cap;
    }
  }
  if (!k || s->n == s->cap) {
    duct__mutex_unlock(&s->mu);
    free(k);
    free(v);
    return -1;
  }
  memmove(&s->items[i + 1], &s->items[i], (s->n - i) * sizeof *s->items);
  s->items[i].key = k;
  s->items[i].value = v;
  s->n++;
  notify(s, key, value);
  duct__mutex_unlock(&s->mu);
  return 0;
}

int kv_store_get(kv_store *s, const char *key,
                 int (*copy)(void *arg, const char *value), void *arg) {
  duct__mutex_lock(&s->mu);
  int found;
  size_t i = find(s, key, &found);
  int rc = !found ? -1 : copy(arg, s->items[i].value) == 0 ? 0 : -2;
  duct__mutex_unlock(&s->mu);
  return rc;
}

int kv_store_del(kv_store *s, const char *key) {
  duct__mutex_lock(&s->mu);
  int found;
  size_t i = find(s, key, &found);
  if (found) {
    free(s->items[i].key);
    free(s->items[i].value);
    memmove(&s->items[i], &s->items[i + 1], (s->n - i - 1) * sizeof *s->items);
    s->n--;
    notify(s, key, NULL);
  }
  duct__mutex_unlock(&s->mu);
  return found ? 0 : -1;
}

size_t kv_store_list(kv_store *s, int (*each)(void *arg, size_t i, size_t n, const char *key),
                     void *arg) {
  duct__mutex_lock(&s->mu);
  size_t n = s->n;
  for (size_t i = 0; i < n; i++)
    if (each(arg, i, n, s->items[i].key) != 0)
      break;
  duct__mutex_unlock(&s->mu);
  return n;
}
