/* runtime/sys.h on POSIX: pthreads, CLOCK_MONOTONIC, sysconf, and an
 * eventfd as the notifier. */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "posix.h"
#include "sys.h"
#include "runtime/alloc.h"

/* The opaque storage in sys.h must hold the pthread objects. */
static_assert(sizeof(pthread_mutex_t) <= sizeof(duct__mutex),
              "pthread_mutex_t does not fit duct__mutex");
static_assert(sizeof(pthread_cond_t) <= sizeof(duct__cond),
              "pthread_cond_t does not fit duct__cond");
static_assert(sizeof(pthread_t) <= sizeof(duct__thread),
              "pthread_t does not fit duct__thread");
static_assert(_Alignof(pthread_mutex_t) <= _Alignof(duct__mutex),
              "duct__mutex is under-aligned");
static_assert(_Alignof(pthread_cond_t) <= _Alignof(duct__cond),
              "duct__cond is under-aligned");

#define MU(m) ((pthread_mutex_t *)(void *)&(m)->s)
#define CV(c) ((pthread_cond_t *)(void *)&(c)->s)
#define TH(t) ((pthread_t *)(void *)&(t)->s)

/* With default attributes these calls fail only on misuse (a destroyed or
 * foreign object), which is a bug in duct: assert, do not report. */
void duct__mutex_init(duct__mutex *m) {
  int rc = pthread_mutex_init(MU(m), NULL);
  assert(rc == 0);
  (void)rc;
}

void duct__mutex_destroy(duct__mutex *m) { pthread_mutex_destroy(MU(m)); }

void duct__mutex_lock(duct__mutex *m) {
  int rc = pthread_mutex_lock(MU(m));
  assert(rc == 0);
  (void)rc;
}

void duct__mutex_unlock(duct__mutex *m) {
  int rc = pthread_mutex_unlock(MU(m));
  assert(rc == 0);
  (void)rc;
}

void duct__cond_init(duct__cond *c) {
  /* Deadlines are on the monotonic clock (duct__now_ms), so the condition
   * must time out on it too, or a wall-clock jump would stretch or cut
   * every wait. */
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  int rc = pthread_cond_init(CV(c), &a);
  assert(rc == 0);
  (void)rc;
  pthread_condattr_destroy(&a);
}

void duct__cond_destroy(duct__cond *c) { pthread_cond_destroy(CV(c)); }
void duct__cond_signal(duct__cond *c) { pthread_cond_signal(CV(c)); }
void duct__cond_broadcast(duct__cond *c) { pthread_cond_broadcast(CV(c)); }

int duct__cond_wait(duct__cond *c, duct__mutex *m, int64_t deadline_ms) {
  if (deadline_ms < 0) {
    pthread_cond_wait(CV(c), MU(m));
    return 0;
  }
  struct timespec ts;
  ts.tv_sec = (time_t)(deadline_ms / 1000);
  ts.tv_nsec = (long)(deadline_ms % 1000) * 1000000L;
  return pthread_cond_timedwait(CV(c), MU(m), &ts) == ETIMEDOUT ? 1 : 0;
}

/* pthreads wants void *(*)(void *); sys.h's thread function returns
 * nothing, so a small heap record carries fn and arg to a trampoline. */
typedef struct start_rec {
  void (*fn)(void *);
  void *arg;
} start_rec;

static void *trampoline(void *p) {
  start_rec r = *(start_rec *)p;
  duct__free(p);
  r.fn(r.arg);
  return NULL;
}

duct_code duct__thread_start(duct__thread *t, void (*fn)(void *), void *arg) {
  start_rec *r = duct__malloc(sizeof *r);
  if (!r)
    return DUCT_RESOURCE_EXHAUSTED;
  r->fn = fn;
  r->arg = arg;
  if (pthread_create(TH(t), NULL, trampoline, r) != 0) {
    duct__free(r);
    return DUCT_RESOURCE_EXHAUSTED;
  }
  return DUCT_OK;
}

void duct__thread_join(duct__thread *t) { pthread_join(*TH(t), NULL); }

duct_code duct__thread_start_detached(void (*fn)(void *), void *arg) {
  start_rec *r = duct__malloc(sizeof *r);
  if (!r)
    return DUCT_RESOURCE_EXHAUSTED;
  r->fn = fn;
  r->arg = arg;
  /* Detached from birth (an attribute, not pthread_detach afterwards), so
   * there is no moment at which a thread that already finished would
   * linger as a zombie waiting for a join. */
  pthread_attr_t a;
  pthread_t t;
  if (pthread_attr_init(&a) != 0) {
    duct__free(r);
    return DUCT_RESOURCE_EXHAUSTED;
  }
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&t, &a, trampoline, r);
  pthread_attr_destroy(&a);
  if (rc != 0) {
    duct__free(r);
    return DUCT_RESOURCE_EXHAUSTED;
  }
  return DUCT_OK;
}

/* ---- the notifier: an eventfd, readable while its counter is not 0 ---- */

duct_code duct__notifier_init(duct__notifier *n) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) {
    duct_code rc = duct__posix_code(errno); /* EMFILE: RESOURCE_EXHAUSTED */
    return rc == DUCT_RESOURCE_EXHAUSTED ? rc : DUCT_UNAVAILABLE;
  }
  n->s.i = fd;
  return DUCT_OK;
}

void duct__notifier_destroy(duct__notifier *n) {
  close((int)n->s.i);
  n->s.i = -1;
}

void duct__notifier_set(duct__notifier *n) {
  uint64_t one = 1;
  /* Adds 1 to the counter. It cannot overflow in practice (EAGAIN only
   * at 2^64 - 1 sets without a clear), and a set notifier stays set
   * whatever the count: repeated sets are harmless. */
  while (write((int)n->s.i, &one, sizeof one) < 0 && errno == EINTR)
    ;
}

void duct__notifier_clear(duct__notifier *n) {
  uint64_t v;
  /* Without EFD_SEMAPHORE one read takes the whole counter back to 0;
   * EAGAIN means it was 0 already. */
  while (read((int)n->s.i, &v, sizeof v) < 0 && errno == EINTR)
    ;
}

intptr_t duct__notifier_handle(const duct__notifier *n) { return n->s.i; }

int64_t duct__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int duct__cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : (n > 1024 ? 1024 : (int)n);
}

uint32_t duct__getpid(void) { return (uint32_t)getpid(); }
