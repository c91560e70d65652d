/* bench/peers/peers_internal.h - what the peers share: child processes
 * and scratch paths (peers_common.c). */
#ifndef DUCT_BENCH_PEERS_INTERNAL_H
#define DUCT_BENCH_PEERS_INTERNAL_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Starts argv[0] with argv, inheriting stdio. -1 (after a message on
 * stderr) on failure. */
pid_t peer_spawn(const char *const *argv);
/* Waits up to timeout_ms for pid to exit, then kills it. Returns its exit
 * code, -1 if it had to be killed or died by a signal. */
int peer_reap(pid_t pid, int timeout_ms);
/* "<dir>/duct-bench-<tag>-<what>" in buf: a socket or file path short
 * enough for sockaddr_un. */
void peer_path(char *buf, size_t cap, const char *tag, const char *what);
/* Milliseconds on a monotonic clock, and a pause of ms milliseconds. */
long long peer_now_ms(void);
void peer_sleep_ms(int ms);

#ifdef __cplusplus
}
#endif

#endif
