/* runtime/sys.h - the few operating-system services the shared code needs
 * (threads, locks, a monotonic clock), implemented once per platform in
 * runtime/posix/sys.c and runtime/win/sys.c. Internal. */
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
duct_code duct__thread_start_detached(void (*fn)(void *), void *arg);
typedef struct duct__notifier { union { void *p; uint64_t u[2]; } s; } duct__notifier;
duct_code duct__notifier_init(duct__notifier *n);
void duct__notifier_destroy(duct__notifier *n);
void duct__notifier_set(duct__notifier *n);
void duct__notifier_clear(duct__notifier *n);
intptr_t duct__notifier_handle(const duct__notifier *n);

/* Milliseconds on a monotonic clock (arbitrary origin). */
int64_t duct__now_ms(void);
/* Online processor count, at least 1. */
int duct__cpu_count(void);
/* This process's id. */
uint32_t duct__getpid(void);

#endif /* DUCT_RUNTIME_SYS_H */
