/* runtime/sys.h's services that an application's own code meets: the
 * notifier its event loop waits on (an eventfd / a manual-reset event)
 * and detached threads. The notifier is checked the way an event loop
 * would see it, through the system's own wait (poll / WaitForSingleObject),
 * so this file, unlike the transport conformance test, needs the system's
 * headers; it runs natively and under Wine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#else
#include <poll.h>
#endif

#include "runtime/sys.h"

#define WAIT_MS 5000

/* Whether the notifier's handle is ready, waiting up to ms for it. */
static int ready(const duct__notifier *n, int ms) {
#ifdef _WIN32
  return WaitForSingleObject((HANDLE)duct__notifier_handle(n), (DWORD)ms) == WAIT_OBJECT_0;
#else
  struct pollfd p = {.fd = (int)duct__notifier_handle(n), .events = POLLIN};
  return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
#endif
}

static void test_notifier_set_clear(void **state) {
  (void)state;
  duct__notifier n;
  assert_int_equal(duct__notifier_init(&n), DUCT_OK);
  assert_false(ready(&n, 0));
  duct__notifier_clear(&n); /* clearing a clear one changes nothing */
  assert_false(ready(&n, 0));
  duct__notifier_set(&n);
  assert_true(ready(&n, 0));
  assert_true(ready(&n, 0)); /* stays ready for every wait until cleared */
  duct__notifier_set(&n);    /* idempotent */
  duct__notifier_set(&n);
  assert_true(ready(&n, 0));
  duct__notifier_clear(&n); /* one clear undoes any number of sets */
  assert_false(ready(&n, 0));
  duct__notifier_set(&n);
  assert_true(ready(&n, 0));
  duct__notifier_clear(&n);
  assert_false(ready(&n, 0));
  duct__notifier_destroy(&n);
}

/* Two notifiers are two handles. */
static void test_notifier_independent(void **state) {
  (void)state;
  duct__notifier a, b;
  assert_int_equal(duct__notifier_init(&a), DUCT_OK);
  assert_int_equal(duct__notifier_init(&b), DUCT_OK);
  assert_true(duct__notifier_handle(&a) != duct__notifier_handle(&b));
  duct__notifier_set(&a);
  assert_true(ready(&a, 0));
  assert_false(ready(&b, 0));
  duct__notifier_destroy(&a);
  duct__notifier_destroy(&b);
}

typedef struct shared {
  duct__mutex mu;
  duct__cond cv;
  int done;    /* published before the set */
  int after;   /* the thread's last touch of s, after the set */
  duct__notifier n;
} shared;

/* Runs on a detached thread: publishes, then sets (sys.h's order), then
 * says it is done with s, so the test may free what s holds. */
static void finish(void *p) {
  shared *s = p;
  duct__mutex_lock(&s->mu);
  s->done++;
  duct__mutex_unlock(&s->mu);
  duct__notifier_set(&s->n);
  duct__mutex_lock(&s->mu);
  s->after++;
  duct__cond_broadcast(&s->cv);
  duct__mutex_unlock(&s->mu);
}

/* A detached thread runs, and its set wakes a wait on the handle made in
 * another thread (the event loop's view). Many in a row: each thread's
 * resources go when it returns, so nothing piles up. */
#define N_DETACHED 64

static void test_detached_threads_notify(void **state) {
  (void)state;
  shared s;
  memset(&s, 0, sizeof s);
  duct__mutex_init(&s.mu);
  duct__cond_init(&s.cv);
  assert_int_equal(duct__notifier_init(&s.n), DUCT_OK);
  for (int i = 0; i < N_DETACHED; i++) {
    assert_int_equal(duct__thread_start_detached(finish, &s), DUCT_OK);
    assert_true(ready(&s.n, WAIT_MS));
    /* Clear, then look: what was published before the set is there. */
    duct__notifier_clear(&s.n);
    duct__mutex_lock(&s.mu);
    int done = s.done;
    duct__mutex_unlock(&s.mu);
    assert_int_equal(done, i + 1);
    assert_false(ready(&s.n, 0));
    /* Then wait until the thread no longer touches s. */
    int64_t dl = duct__now_ms() + WAIT_MS;
    duct__mutex_lock(&s.mu);
    while (s.after < i + 1 && duct__now_ms() < dl)
      duct__cond_wait(&s.cv, &s.mu, dl);
    int after = s.after;
    duct__mutex_unlock(&s.mu);
    assert_int_equal(after, i + 1);
  }
  duct__notifier_destroy(&s.n);
  duct__cond_destroy(&s.cv);
  duct__mutex_destroy(&s.mu);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_notifier_set_clear),
      cmocka_unit_test(test_notifier_independent),
      cmocka_unit_test(test_detached_threads_notify),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
