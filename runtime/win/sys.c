/* runtime/win/sys.c - runtime/sys.h on Win32: SRW locks and condition
 * variables (Vista+), _beginthreadex threads, the performance counter as
 * the monotonic clock, a manual-reset event as the notifier. mingw-w64's win32 thread model has no pthreads, and
 * duct does not want them anyway. */
#include <assert.h>
#include <process.h>
#include <stdlib.h>

#include "runtime/sys.h"
#include "runtime/win/win.h"
#include "runtime/alloc.h"

static_assert(sizeof(SRWLOCK) <= sizeof(duct__mutex),
              "SRWLOCK must fit duct__mutex");
static_assert(sizeof(CONDITION_VARIABLE) <= sizeof(duct__cond),
              "CONDITION_VARIABLE must fit duct__cond");
static_assert(sizeof(HANDLE) <= sizeof(duct__thread),
              "a thread HANDLE must fit duct__thread");
static_assert(sizeof(HANDLE) <= sizeof(intptr_t),
              "an event HANDLE must fit duct__notifier");

#define SRW(m) ((SRWLOCK *)(void *)&(m)->s)
#define CV(c) ((CONDITION_VARIABLE *)(void *)&(c)->s)

void duct__mutex_init(duct__mutex *m) { InitializeSRWLock(SRW(m)); }
/* An SRW lock owns no kernel object: nothing to destroy. */
void duct__mutex_destroy(duct__mutex *m) { (void)m; }
void duct__mutex_lock(duct__mutex *m) { AcquireSRWLockExclusive(SRW(m)); }
void duct__mutex_unlock(duct__mutex *m) { ReleaseSRWLockExclusive(SRW(m)); }

void duct__cond_init(duct__cond *c) { InitializeConditionVariable(CV(c)); }
void duct__cond_destroy(duct__cond *c) { (void)c; }
void duct__cond_signal(duct__cond *c) { WakeConditionVariable(CV(c)); }
void duct__cond_broadcast(duct__cond *c) { WakeAllConditionVariable(CV(c)); }

int duct__cond_wait(duct__cond *c, duct__mutex *m, int64_t deadline_ms) {
  DWORD ms = INFINITE;
  if (deadline_ms >= 0) {
    int64_t left = deadline_ms - duct__now_ms();
    if (left <= 0)
      return 1;
    /* INFINITE is 0xFFFFFFFF: stay below it for finite waits. */
    ms = left >= (int64_t)INFINITE ? INFINITE - 1 : (DWORD)left;
  }
  if (SleepConditionVariableSRW(CV(c), SRW(m), ms, 0))
    return 0;
  /* ERROR_TIMEOUT is the only documented failure; treat anything else as a
   * spurious wakeup, which callers must handle anyway. */
  return GetLastError() == ERROR_TIMEOUT ? 1 : 0;
}

typedef struct thread_start {
  void (*fn)(void *);
  void *arg;
} thread_start;

/* _beginthreadex rather than CreateThread: the C runtime then sets up its
 * per-thread state for threads that call into it. */
static unsigned __stdcall thread_main(void *p) {
  thread_start ts = *(thread_start *)p;
  duct__free(p);
  ts.fn(ts.arg);
  return 0;
}

duct_code duct__thread_start(duct__thread *t, void (*fn)(void *), void *arg) {
  thread_start *ts = duct__malloc(sizeof *ts);
  if (ts == NULL)
    return DUCT_RESOURCE_EXHAUSTED;
  ts->fn = fn;
  ts->arg = arg;
  uintptr_t h = _beginthreadex(NULL, 0, thread_main, ts, 0, NULL);
  if (h == 0) {
    duct__free(ts);
    return DUCT_RESOURCE_EXHAUSTED;
  }
  t->s.p = (void *)h;
  return DUCT_OK;
}

void duct__thread_join(duct__thread *t) {
  HANDLE h = (HANDLE)t->s.p;
  WaitForSingleObject(h, INFINITE);
  CloseHandle(h);
  t->s.p = NULL;
}

duct_code duct__thread_start_detached(void (*fn)(void *), void *arg) {
  thread_start *ts = duct__malloc(sizeof *ts);
  if (ts == NULL)
    return DUCT_RESOURCE_EXHAUSTED;
  ts->fn = fn;
  ts->arg = arg;
  uintptr_t h = _beginthreadex(NULL, 0, thread_main, ts, 0, NULL);
  if (h == 0) {
    duct__free(ts);
    return DUCT_RESOURCE_EXHAUSTED;
  }
  /* Closing the handle does not stop the thread; the system frees the
   * thread object when both the handle is closed and the thread has
   * returned (_endthreadex, implied by returning from thread_main). */
  CloseHandle((HANDLE)h);
  return DUCT_OK;
}

/* ---- the notifier: a manual-reset event, signalled while set ---- */

duct_code duct__notifier_init(duct__notifier *n) {
  /* Manual reset: it stays signalled for every wait until cleared, as the
   * eventfd stays readable on POSIX; an auto-reset event would be
   * cleared by whichever wait saw it first. */
  HANDLE h = CreateEventW(NULL, TRUE, FALSE, NULL);
  if (h == NULL) {
    duct_code rc = duct__win_code(GetLastError()); /* out of memory: EXHAUSTED */
    return rc == DUCT_RESOURCE_EXHAUSTED ? rc : DUCT_UNAVAILABLE;
  }
  n->s.i = (intptr_t)h;
  return DUCT_OK;
}

void duct__notifier_destroy(duct__notifier *n) {
  CloseHandle((HANDLE)n->s.i);
  n->s.i = 0;
}

void duct__notifier_set(duct__notifier *n) { SetEvent((HANDLE)n->s.i); }
void duct__notifier_clear(duct__notifier *n) { ResetEvent((HANDLE)n->s.i); }
intptr_t duct__notifier_handle(const duct__notifier *n) { return n->s.i; }

int64_t duct__now_ms(void) {
  /* The performance counter is monotonic and far finer than
   * GetTickCount64's 10-16 ms steps, which matter for short deadlines.
   * The frequency is fixed at boot, so it is read once. */
  static LONG64 freq;
  LARGE_INTEGER now;
  if (freq == 0) {
    LARGE_INTEGER f;
    QueryPerformanceFrequency(&f);
    InterlockedExchange64(&freq, f.QuadPart);
  }
  QueryPerformanceCounter(&now);
  int64_t q = now.QuadPart / freq, r = now.QuadPart % freq;
  return q * 1000 + r * 1000 / freq;
}

int duct__cpu_count(void) {
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  return si.dwNumberOfProcessors >= 1 ? (int)si.dwNumberOfProcessors : 1;
}

uint32_t duct__getpid(void) { return (uint32_t)GetCurrentProcessId(); }
