/* runtime/sys.h - the few operating-system services the shared code needs
 * (threads, locks, a monotonic clock, a notifier an application's event
 * loop can wait on), implemented once per platform in runtime/posix/sys.c
 * and runtime/win/sys.c. Internal. */
#ifndef DUCT_RUNTIME_SYS_H
#define DUCT_RUNTIME_SYS_H

#include <stddef.h>
#include <stdint.h>

#include "duct/status.h"

/* Opaque storage big enough for either platform's primitive, so shared
 * code can embed locks in its structs without platform headers. Checked
 * with static_assert in each platform's sys.c. */
typedef struct duct__mutex { union { void *p; uint64_t u[8]; } s; } duct__mutex;
typedef struct duct__cond { union { void *p; uint64_t u[8]; } s; } duct__cond;
typedef struct duct__thread { union { void *p; uint64_t u; } s; } duct__thread;
typedef struct duct__notifier { union { void *p; intptr_t i; uint64_t u; } s; } duct__notifier;

void duct__mutex_init(duct__mutex *m);
void duct__mutex_destroy(duct__mutex *m);
void duct__mutex_lock(duct__mutex *m);
void duct__mutex_unlock(duct__mutex *m);

void duct__cond_init(duct__cond *c);
void duct__cond_destroy(duct__cond *c);
void duct__cond_signal(duct__cond *c);
void duct__cond_broadcast(duct__cond *c);
/* Waits until signalled or until the monotonic time deadline_ms
 * (duct__now_ms scale; -1 = forever). Returns 0 if signalled (or
 * spuriously woken), 1 on timeout. */
int duct__cond_wait(duct__cond *c, duct__mutex *m, int64_t deadline_ms);

/* Starts fn(arg) on a new thread. DUCT_RESOURCE_EXHAUSTED if the system
 * refuses. */
duct_code duct__thread_start(duct__thread *t, void (*fn)(void *), void *arg);
void duct__thread_join(duct__thread *t);
/* Starts fn(arg) on a new thread that nobody joins: its resources are
 * freed when fn returns. The caller must make sure that whatever fn uses
 * outlives it (fn signals its own end if anyone needs to know).
 * DUCT_RESOURCE_EXHAUSTED if the system refuses; fn then never runs. */
duct_code duct__thread_start_detached(void (*fn)(void *), void *arg);

/* A notifier: a flag another thread sets and an application's own event
 * loop waits on through a system handle (duct/client.h's async calls),
 * so duct needs no thread of its own in that loop.
 *   POSIX:   an eventfd (EFD_NONBLOCK | EFD_CLOEXEC), readable while set;
 *            poll/epoll/select it for reading.
 *   Windows: a manual-reset event HANDLE, signalled while set; wait on it
 *            with WaitForMultipleObjects or MsgWaitForMultipleObjects.
 * set and clear are safe from any thread. To lose no wake-up, the waiting
 * side clears before it looks at what the notifier announces, and the
 * setting side sets after it has published it. */
/* DUCT_RESOURCE_EXHAUSTED (out of descriptors or handles) or
 * DUCT_UNAVAILABLE when the system refuses; n is then not initialized. */
duct_code duct__notifier_init(duct__notifier *n);
/* Closes the handle. n must be initialized and no longer waited on. */
void duct__notifier_destroy(duct__notifier *n);
/* Makes n ready (readable / signalled). Idempotent: setting a set
 * notifier changes nothing, and one clear undoes any number of sets. */
void duct__notifier_set(duct__notifier *n);
/* Makes n not ready. Clearing a clear notifier changes nothing. */
void duct__notifier_clear(duct__notifier *n);
/* The system handle to wait on: the eventfd's descriptor (POSIX) or the
 * event HANDLE cast to intptr_t (Windows). Owned by n: do not close it. */
intptr_t duct__notifier_handle(const duct__notifier *n);

/* Milliseconds on a monotonic clock (arbitrary origin). */
int64_t duct__now_ms(void);
/* Online processor count, at least 1. */
int duct__cpu_count(void);
/* This process's id. */
uint32_t duct__getpid(void);

/* Runs the program argv[0] (searched on PATH when it has no directory)
 * with argv, inheriting this process's standard handles, and waits for
 * it. DUCT_OK with *exit_code set; DUCT_NOT_FOUND if there is no such
 * program; DUCT_INTERNAL if the system refused to start it or it died by
 * a signal (*exit_code -1); DUCT_UNIMPLEMENTED if it was started but
 * cannot be waited for (Wine starting a Unix program). For tools (the
 * duct CLI runs protoc); never used by the library's own paths. */
duct_code duct__spawn_wait(const char *const *argv, int *exit_code);
/* Makes a new, empty file for a child program to overwrite and writes its
 * path to buf (at least 260 bytes on Windows): in $TMPDIR (or /tmp) on
 * POSIX, in GetTempPath's folder on Windows. The caller removes it. 0, or
 * -1 when no file can be made. */
int duct__temp_file(char *buf, size_t cap);

#endif /* DUCT_RUNTIME_SYS_H */
