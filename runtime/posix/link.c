/* The client side of the POSIX transport: one connected AF_UNIX
 * SOCK_SEQPACKET socket per duct__link. One thread may send while
 * another receives (a channel's reader thread and its senders): a socket
 * is full duplex, sendmsg and recvmsg on one descriptor from two threads
 * are independent, and what the two share here (broken, shut) is atomic.
 *
 * Every send and every receive with a deadline is non-blocking
 * (MSG_DONTWAIT) and waits in a poll() bounded by the call's deadline, so
 * a deadline holds even against a server that stops reading or never
 * answers. After a deadline or a too-large message the
 * link is marked broken (transport.h: the link is then unusable).
 *
 * duct__link_shutdown is shutdown(SHUT_RDWR): a recvmsg blocked without a
 * deadline returns 0 (end of file), a poll for either direction returns
 * POLLHUP, and the sendmsg that follows fails with EPIPE, so whoever is
 * blocked returns at once, with DUCT_UNAVAILABLE (shut is checked before
 * any other reading of a failure). The descriptor stays open until
 * duct__link_close, so its number cannot be reused under a thread still
 * inside a call.
 *
 * A new link checks who serves the address before it is handed out
 * (check_server): the same user, root, or the user the channel options
 * name. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "posix.h"
#include "sys.h"
#include "transport.h"
#include "runtime/alloc.h"

struct duct__link {
  int fd;
  uint32_t peer_pid;
  /* Unusable (a deadline passed, a message was too large, the peer left):
   * set by the sending or the receiving thread, seen by both. */
  atomic_int broken;
  atomic_int shut; /* duct__link_shutdown was called */
};

/* What a failed call returns: after a shutdown, always UNAVAILABLE,
 * whatever the system said (EPIPE, end of file, a poll that ended). */
static duct_code failed(duct__link *l, duct_code rc) {
  return atomic_load(&l->shut) ? DUCT_UNAVAILABLE : rc;
}

static void sleep_ms(int ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

/* Reads the expected server user (duct__link_opts.expect_user): a uid in
 * decimal, as duct_peer.user writes it. -1 when none is named. */
static duct_code expected_uid(const duct__link_opts *o, long long *uid,
                              duct__err *err) {
  *uid = -1;
  if (!o || !o->expect_user || !o->expect_user[0])
    return DUCT_OK;
  const char *s = o->expect_user;
  unsigned long long v = 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    v = v * 10 + (unsigned)(*s - '0');
    if (v >= (uid_t)-1)
      break; /* (uid_t)-1 is "no user" to the system; larger is no uid */
  }
  if (*s != '\0' || s == o->expect_user)
    return duct__posix_failf(err, DUCT_INVALID_ARGUMENT,
                             "expect_server_user \"%.40s\" is not a user id; "
                             "on this system it is a uid in decimal, e.g. "
                             "\"0\"", o->expect_user);
  *uid = (long long)v;
  return DUCT_OK;
}

/* Who is serving on fd: the uid that created the listening socket, as the
 * kernel recorded it at connect (SO_PEERCRED; not something the server
 * says about itself). Checked before anything is sent, so a call's
 * contents never reach another user who got hold of the address: a /tmp
 * directory swapped between our lstat and our connect, or a socket path
 * in a directory others can write. */
static duct_code check_server(int fd, const char *path, long long want,
                              uint32_t *pid, duct__err *err) {
  struct ucred cr;
  socklen_t crlen = sizeof cr;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0) {
    char sys[128];
    duct__posix_strerror(errno, sys, sizeof sys);
    return duct__posix_failf(err, DUCT_PERMISSION_DENIED,
                             "cannot tell who serves %s (SO_PEERCRED: %s); "
                             "refusing to send to it", path, sys);
  }
  *pid = (uint32_t)cr.pid;
  uid_t me = geteuid();
  if (want >= 0 ? (long long)cr.uid == want : cr.uid == me || cr.uid == 0)
    return DUCT_OK;
  if (want >= 0)
    return duct__posix_failf(err, DUCT_PERMISSION_DENIED,
                             "server at %s runs as uid %lu; expected uid %lld "
                             "(expect_server_user)",
                             path, (unsigned long)cr.uid, want);
  return duct__posix_failf(err, DUCT_PERMISSION_DENIED,
                           "server at %s runs as uid %lu; expected uid %lu "
                           "(this process) or root",
                           path, (unsigned long)cr.uid, (unsigned long)me);
}

duct_code duct__link_open(const char *address, int64_t deadline_ms,
                          duct__link **out, duct__err *err) {
  return duct__link_open_opts(address, NULL, deadline_ms, out, err);
}

duct_code duct__link_open_opts(const char *address, const duct__link_opts *o,
                               int64_t deadline_ms, duct__link **out,
                               duct__err *err) {
  char path[DUCT__POSIX_PATH_MAX], dir[DUCT__POSIX_PATH_MAX];
  int is_name;
  *out = NULL;
  if (err)
    err->text[0] = '\0';
  duct_code rc = duct__posix_resolve(address, path, dir, &is_name, err);
  if (rc != DUCT_OK)
    return rc;
  long long want;
  rc = expected_uid(o, &want, err);
  if (rc != DUCT_OK)
    return rc;
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path) + 1);

  int backoff = 1;
  for (;;) {
    if (is_name) {
      /* duct's own directory must be ours, as the server checks: in /tmp
       * another user could create /tmp/duct-<uid> first and serve our
       * names from it. Absent is fine: the server may not be up yet. */
      struct stat st;
      if (lstat(dir, &st) == 0 && (!S_ISDIR(st.st_mode) || st.st_uid != geteuid()))
        return duct__posix_failf(err, DUCT_PERMISSION_DENIED,
                                 "socket directory %s is not a directory "
                                 "owned by us (uid %lu); refusing to connect",
                                 dir, (unsigned long)geteuid());
    }
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
      return duct__posix_fail(err, errno, "socket(AF_UNIX, SOCK_SEQPACKET)",
                              NULL);
    /* An AF_UNIX connect completes at once when the server's backlog has
     * room (before accept), so non-blocking connect never returns
     * EINPROGRESS here; a full backlog is EAGAIN. */
    int e = 0;
    while (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
      e = errno;
      if (e != EINTR)
        break;
      e = 0;
    }
    if (e == 0) {
      uint32_t pid = 0;
      rc = check_server(fd, path, want, &pid, err);
      if (rc != DUCT_OK) {
        close(fd);
        return rc;
      }
      /* From here on the socket blocks and every call that must not says
       * MSG_DONTWAIT: a receive without a deadline is then a single
       * blocking recvmsg instead of poll + recvmsg. */
      int fl = fcntl(fd, F_GETFL);
      if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
      duct__link *l = duct__calloc(1, sizeof *l);
      if (!l) {
        close(fd);
        return duct__posix_failf(err, DUCT_RESOURCE_EXHAUSTED, "out of memory");
      }
      l->fd = fd;
      l->peer_pid = pid;
      int buf = duct__posix_sockbuf(65536);
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
      *out = l;
      return DUCT_OK;
    }
    close(fd);
    char what[DUCT__POSIX_PATH_MAX + 32];
    snprintf(what, sizeof what, "connect %s", path);
    /* Absent (ENOENT), stale or starting (ECONNREFUSED) or busy (EAGAIN):
     * the server may be on its way, so retry until the deadline. Anything
     * else will not get better by waiting. */
    if (e != ENOENT && e != ECONNREFUSED && e != EAGAIN)
      return duct__posix_fail(err, e, what, NULL);
    int left = duct__posix_poll_ms(deadline_ms);
    if (left == 0) {
      char sys[128];
      duct__posix_strerror(e, sys, sizeof sys);
      return duct__posix_failf(err, DUCT_UNAVAILABLE,
                               "no duct server at %s (connect: %s)", path, sys);
    }
    sleep_ms(left >= 0 && left < backoff ? left : backoff);
    if (backoff < 50)
      backoff *= 2;
  }
}

/* Waits for `events` until the deadline: 1 when ready (or hung up, which
 * the next call reports), 0 on timeout. */
static int wait_fd(int fd, short events, int64_t deadline_ms) {
  for (;;) {
    struct pollfd p = {.fd = fd, .events = events};
    int r = poll(&p, 1, duct__posix_poll_ms(deadline_ms));
    if (r > 0)
      return 1;
    if (r == 0)
      return 0;
    if (errno != EINTR)
      return 1; /* let the system call that follows report it */
  }
}

duct_code duct__link_send(duct__link *l, const duct__iov *iov, int n,
                          int64_t deadline_ms) {
  struct iovec v[8];
  if (atomic_load(&l->broken) || atomic_load(&l->shut))
    return DUCT_UNAVAILABLE;
  if (n < 0 || n > 8)
    return DUCT_INVALID_ARGUMENT;
  size_t total = 0;
  for (int i = 0; i < n; i++) {
    v[i].iov_base = (void *)iov[i].base;
    v[i].iov_len = iov[i].len;
    total += iov[i].len;
  }
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = v;
  m.msg_iovlen = (size_t)n;
  int grown = 0;
  for (;;) {
    /* MSG_NOSIGNAL: a server that went away is EPIPE, never SIGPIPE. */
    if (sendmsg(l->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
      return DUCT_OK;
    int e = errno;
    if (e == EINTR)
      continue;
    if (e == EMSGSIZE && !grown) {
      /* Larger than the send buffer: a SOCK_SEQPACKET message must fit it
       * whole, so grow the buffer once before giving up. */
      grown = 1;
      if (duct__posix_grow_sndbuf(l->fd, total))
        continue;
    }
    if (e == EAGAIN || e == EWOULDBLOCK) {
      if (wait_fd(l->fd, POLLOUT, deadline_ms))
        continue;
      atomic_store(&l->broken, 1);
      return failed(l, DUCT_DEADLINE_EXCEEDED);
    }
    if (e != EMSGSIZE)
      atomic_store(&l->broken, 1);
    return failed(l, duct__posix_code(e));
  }
}

duct_code duct__link_recv(duct__link *l, uint8_t *buf, size_t cap,
                          size_t *len, int64_t deadline_ms) {
  return duct__link_recv_into(l, buf, cap, NULL, 0, len, deadline_ms);
}

duct_code duct__link_recv_into(duct__link *l, uint8_t *buf, size_t head_cap, uint8_t *tail,
                               size_t tail_cap, size_t *len, int64_t deadline_ms) {
  if (atomic_load(&l->broken) || atomic_load(&l->shut))
    return DUCT_UNAVAILABLE;
  size_t cap = head_cap + (tail ? tail_cap : 0);
  for (;;) {
    struct iovec v[2] = {{.iov_base = buf, .iov_len = head_cap},
                         {.iov_base = tail, .iov_len = tail_cap}};
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = v;
    m.msg_iovlen = tail ? 2 : 1;
    /* MSG_TRUNC: the return value is the message's full length, so a
     * message longer than cap is detected, never silently cut. */
    /* Without a deadline, block in recvmsg itself (one system call);
     * with one, poll bounds the wait below. Either way a shutdown ends
     * the wait (end of file). */
    int wait = deadline_ms < 0 ? 0 : MSG_DONTWAIT;
    ssize_t r = recvmsg(l->fd, &m, MSG_TRUNC | wait | MSG_CMSG_CLOEXEC);
    if (r > 0) {
      if ((size_t)r > cap || (m.msg_flags & MSG_TRUNC)) {
        atomic_store(&l->broken, 1); /* the rest of that message is gone */
        return DUCT_RESOURCE_EXHAUSTED;
      }
      *len = (size_t)r;
      return DUCT_OK;
    }
    if (r == 0) {
      /* End of file: the server closed, or we shut the link down (duct
       * never sends an empty message, which would read the same). */
      atomic_store(&l->broken, 1);
      return DUCT_UNAVAILABLE;
    }
    int e = errno;
    if (e == EINTR)
      continue;
    if (e == EAGAIN || e == EWOULDBLOCK) {
      if (wait_fd(l->fd, POLLIN, deadline_ms))
        continue;
      atomic_store(&l->broken, 1);
      return failed(l, DUCT_DEADLINE_EXCEEDED);
    }
    atomic_store(&l->broken, 1);
    return failed(l, duct__posix_code(e));
  }
}

duct_code duct__link_transact(duct__link *l, const duct__iov *iov, int n,
                              uint8_t *buf, size_t cap, size_t *len,
                              int64_t deadline_ms) {
  duct_code rc = duct__link_send(l, iov, n, deadline_ms);
  if (rc != DUCT_OK)
    return rc;
  /* The reply is rarely there yet: with a deadline, wait first rather
   * than spend a recvmsg on EAGAIN; without one, recvmsg blocks. */
  if (deadline_ms >= 0 && !wait_fd(l->fd, POLLIN, deadline_ms)) {
    atomic_store(&l->broken, 1);
    return failed(l, DUCT_DEADLINE_EXCEEDED);
  }
  return duct__link_recv(l, buf, cap, len, deadline_ms);
}

void duct__link_shutdown(duct__link *l) {
  /* The flag first, so a thread woken by the shutdown reads it. */
  atomic_store(&l->shut, 1);
  shutdown(l->fd, SHUT_RDWR);
}

void duct__link_close(duct__link *l) {
  if (!l)
    return;
  close(l->fd);
  duct__free(l);
}

uint32_t duct__link_peer_pid(const duct__link *l) { return l ? l->peer_pid : 0; }
