/* bench/raw_posix.c - the raw floor on Linux: AF_UNIX SOCK_SEQPACKET,
 * blocking send()/recv(), one thread per connection. Only system calls;
 * no duct code. Socket buffers are sized as duct sizes them
 * (runtime/posix/address.c: four 64 KiB messages plus overhead), so a
 * multi-message request meets the same flow control. */
#define _GNU_SOURCE
#include "raw.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SOCKBUF (4 * 65536 + 16384)

struct raw_client {
  int fd;
};

const char *raw_transport(void) { return "posix"; }

uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void raw_address(char *buf, size_t cap) {
  const char *dir = getenv("XDG_RUNTIME_DIR");
  if (!dir || !*dir)
    dir = "/tmp";
  snprintf(buf, cap, "%s/duct-bench-raw-%ld.sock", dir, (long)getpid());
}

static int make_addr(const char *path, struct sockaddr_un *sa) {
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sa->sun_path)
    return -1;
  memcpy(sa->sun_path, path, strlen(path) + 1);
  return 0;
}

static void set_sndbuf(int fd) {
  int b = SOCKBUF;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &b, sizeof b);
}

static const char *server_path;

/* One-way mode (raw.h): the messages go out back to back from two buffers
 * laid out once (a first fragment, whose sequence number is rewritten per
 * message, and the others), so the server does nothing but send. */
static int serve_oneway(int fd, uint8_t *buf, size_t len) {
  uint32_t count;
  size_t sizes[RAW_MAX_FRAGS], end;
  int n;
  if (raw_oneway_parse(buf, len, &count, sizes, &n, &end) != 0)
    return -1;
  uint8_t *first = buf, *rest = buf + RAW_MAX_MSG;
  raw_fill(first, RAW_MAX_MSG, 0);
  raw_fill(rest, RAW_MAX_MSG, 0);
  first[0] = rest[0] = 'D';
  for (uint64_t seq = 1; seq <= count; seq++) {
    memcpy(first + 1, &seq, 8);
    for (int i = 0; i < n; i++)
      if (send(fd, i ? rest : first, sizes[i], MSG_NOSIGNAL) != (ssize_t)sizes[i])
        return -1;
  }
  rest[0] = 'E';
  return send(fd, rest, end, MSG_NOSIGNAL) == (ssize_t)end ? 0 : -1;
}

static void *serve(void *arg) {
  int fd = (int)(intptr_t)arg;
  uint8_t *buf = malloc(RAW_MAX_REQUEST);
  size_t sizes[64];
  while (buf) {
    size_t off = 0;
    int n = 0;
    for (;;) {
      if (n == 64 || off + RAW_MAX_MSG > RAW_MAX_REQUEST)
        goto out;
      ssize_t r = recv(fd, buf + off, RAW_MAX_MSG, 0);
      if (r <= 0)
        goto out;
      if (buf[off] == 'Q') {
        unlink(server_path);
        _exit(0);
      }
      if (n == 0 && buf[0] == 'S') {
        if (serve_oneway(fd, buf, (size_t)r) != 0)
          goto out;
        n = -1; /* nothing to echo */
        break;
      }
      sizes[n++] = (size_t)r;
      off += (size_t)r;
      if (buf[off - (size_t)r] == 'L')
        break;
    }
    off = 0;
    for (int i = 0; i < n; i++) { /* n is -1 after a one-way run */
      if (send(fd, buf + off, sizes[i], MSG_NOSIGNAL) != (ssize_t)sizes[i])
        goto out;
      off += sizes[i];
    }
  }
out:
  free(buf);
  close(fd);
  return NULL;
}

int raw_server_main(const char *addr) {
  struct sockaddr_un sa;
  server_path = addr;
  if (make_addr(addr, &sa) != 0)
    return 2;
  unlink(addr);
  int lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 64) != 0) {
    perror("raw server");
    return 2;
  }
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR)
        continue;
      return 1;
    }
    set_sndbuf(fd);
    pthread_t t;
    if (pthread_create(&t, NULL, serve, (void *)(intptr_t)fd) != 0)
      close(fd);
    else
      pthread_detach(t);
  }
}

raw_client *raw_connect(const char *addr, int timeout_ms) {
  struct sockaddr_un sa;
  if (make_addr(addr, &sa) != 0)
    return NULL;
  uint64_t until = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
  for (;;) {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
      return NULL;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
      raw_client *c = malloc(sizeof *c);
      if (!c) {
        close(fd);
        return NULL;
      }
      set_sndbuf(fd);
      c->fd = fd;
      return c;
    }
    close(fd);
    if (bench_now_ns() > until)
      return NULL;
    usleep(2000); /* the server process is still starting */
  }
}

int raw_echo(raw_client *c, const uint8_t *tx, const size_t *sizes, int n, uint8_t *rx) {
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    if (send(c->fd, tx + off, sizes[i], MSG_NOSIGNAL) != (ssize_t)sizes[i])
      return -1;
    off += sizes[i];
  }
  off = 0;
  for (int i = 0; i < n; i++) {
    ssize_t r = recv(c->fd, rx + off, RAW_MAX_MSG, 0);
    if (r != (ssize_t)sizes[i])
      return -1;
    off += sizes[i];
  }
  return 0;
}

long raw_oneway(raw_client *c, uint32_t count, const size_t *sizes, int n, size_t end_size,
                uint8_t *rx) {
  uint8_t req[13 + 4 * RAW_MAX_FRAGS];
  size_t len = raw_oneway_request(req, count, sizes, n, end_size);
  if (send(c->fd, req, len, MSG_NOSIGNAL) != (ssize_t)len)
    return -1;
  long bad = 0;
  for (uint64_t seq = 1; seq <= count; seq++) {
    int ok = 1, full = seq % RAW_FULL_CHECK == 0;
    for (int i = 0; i < n; i++) {
      ssize_t r = recv(c->fd, rx, RAW_MAX_MSG, 0);
      if (r <= 0)
        return -1;
      ok &= raw_frag_ok(rx, (size_t)r, sizes[i], i, seq, full);
    }
    bad += !ok;
  }
  /* A lost or extra message shows here at the latest: the stream is out
   * of step with its end. */
  ssize_t r = recv(c->fd, rx, RAW_MAX_MSG, 0);
  return r == (ssize_t)end_size && rx[0] == 'E' ? bad : -1;
}

void raw_close(raw_client *c, int quit_server) {
  if (!c)
    return;
  if (quit_server) {
    uint8_t q = 'Q';
    send(c->fd, &q, 1, MSG_NOSIGNAL);
  }
  close(c->fd);
  free(c);
}
