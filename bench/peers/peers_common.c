/* bench/peers/peers_common.c - child processes and paths for the peers.
 * duct-bench's own helper (tests/support/proc_posix.c) is linked into the
 * executable, not into this shared library, so the few lines it takes are
 * repeated here with posix_spawn. */
#define _GNU_SOURCE
#include "peers.h"
#include "peers_internal.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

pid_t peer_spawn(const char *const *argv) {
  pid_t pid;
  /* posix_spawn's argv is not const-qualified for historical reasons; it
   * does not write to it. */
  int rc = posix_spawn(&pid, argv[0], NULL, NULL, (char *const *)argv, environ);
  if (rc != 0) {
    fprintf(stderr, "duct-bench: cannot start %s: %s\n", argv[0], strerror(rc));
    return -1;
  }
  return pid;
}

int peer_reap(pid_t pid, int timeout_ms) {
  long long end = peer_now_ms() + timeout_ms;
  int st;
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (r < 0 && errno != EINTR)
      return -1;
    if (peer_now_ms() >= end)
      break;
    peer_sleep_ms(5);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  return -1;
}

void peer_path(char *buf, size_t cap, const char *tag, const char *what) {
  /* /tmp rather than TMPDIR: a long TMPDIR would overflow sun_path's 108
   * bytes. */
  snprintf(buf, cap, "/tmp/duct-bench-%s-%s", tag, what);
}

long long peer_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void peer_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ---- the table ---- */

#ifdef DUCT_PEER_GRPC
extern const bench_peer bench_peer_grpc;
#endif
#ifdef DUCT_PEER_SDBUS
extern const bench_peer bench_peer_sdbus;
#endif

const bench_peer *bench_peers(int *n, const char *const **missing) {
  /* A peer that was not built keeps its name, so --peers can say what is
   * skipped and what to install for it. */
  static bench_peer table[2] = {{.name = "grpc-uds"}, {.name = "sdbus"}};
  static const char *const why[2] = {
      "not built: install libgrpc++-dev protobuf-compiler-grpc (scripts/deps.sh --peers) and "
      "configure again",
      "not built: install libsystemd-dev dbus-daemon (scripts/deps.sh --peers) and configure "
      "again"};
#ifdef DUCT_PEER_GRPC
  table[0] = bench_peer_grpc;
#endif
#ifdef DUCT_PEER_SDBUS
  table[1] = bench_peer_sdbus;
#endif
  *n = 2;
  *missing = why;
  return table;
}
