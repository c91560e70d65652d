/* duct_stop_signals_catch/wait on POSIX. The handler only writes a byte
 * to a pipe (async-signal-safe); the waiting thread reads it. A pipe
 * rather than sigwait(): sigwait needs the signals blocked in every thread,
 * and the server's workers may already exist when main calls this. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "duct/server.h"

static int wake[2] = {-1, -1};

static void on_signal(int sig) {
  int saved = errno;
  char c = (char)sig;
  /* Non-blocking: a second signal while the byte is unread is a no-op. */
  (void)!write(wake[1], &c, 1);
  errno = saved;
}

duct_code duct_stop_signals_catch(void) {
  if (wake[0] < 0 && pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0)
    return DUCT_INTERNAL;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
    return DUCT_INTERNAL;
  return DUCT_OK;
}

void duct_stop_signals_wait(void) {
  if (wake[0] < 0 && duct_stop_signals_catch() != DUCT_OK)
    return;
  /* The read end is non-blocking (it shares the pipe's flags), so wait for
   * it to become readable first. */
  for (;;) {
    struct pollfd p = {wake[0], POLLIN, 0};
    if (poll(&p, 1, -1) > 0) {
      char c;
      if (read(wake[0], &c, 1) == 1)
        return;
    } else if (errno != EINTR) {
      return;
    }
  }
}

int duct_stop_signals_pending(void) {
  /* Looks without taking the byte, so a later wait still returns. */
  struct pollfd p = {wake[0], POLLIN, 0};
  return wake[0] >= 0 && poll(&p, 1, 0) > 0;
}
