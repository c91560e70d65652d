/* The server side of the POSIX transport: an AF_UNIX SOCK_SEQPACKET
 * listening socket and `workers` threads sharing one epoll set.
 *
 * Threading. Every fd in the epoll set except the wake eventfd is armed
 * with EPOLLONESHOT, so an event is handed to exactly one worker and the
 * fd stays disarmed until that worker re-arms it with EPOLL_CTL_MOD:
 *   - a connection is re-armed only after message() returns, so one
 *     connection is served by one worker at a time (transport.h);
 *   - the timerfd is re-armed only after tick() returns, so there is
 *     exactly one tick at a time, from whichever worker is free;
 *   - the listening socket is re-armed right after one accept4, so
 *     accepting is spread over the workers.
 * The wake eventfd is level-triggered and never read: once written (by
 * duct__listener_free) every worker sees it on its next epoll_wait.
 *
 * Lifetime of a connection. A duct__conn is refcounted. The listener's
 * list holds one reference from accept until closed() has returned; each
 * duct__conn_send and duct__conn_close holds one while it runs, so a
 * sender blocked in poll() on another thread never sees freed memory. The
 * fd is closed only when the last reference goes, so it cannot be reused
 * by another open() under a concurrent send or shutdown.
 *
 * Closing. duct__conn_close (any thread) records why in close_req and
 * calls shutdown(SHUT_RDWR). The kernel then reports EPOLLIN|EPOLLHUP for
 * the fd: at once if it is armed, or on re-arm if a worker is in
 * message() (EPOLL_CTL_MOD re-checks readiness). The worker that gets the
 * event sees close_req and finishes the connection: it removes the fd
 * from epoll, calls closed() exactly once, and drops the list's
 * reference. A peer hang-up is seen the same way, as recv() returning 0
 * or failing. Nothing but the owning worker ever calls closed(), so it
 * cannot race with message(). */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "posix.h"
#include "sys.h"
#include "transport.h"
#include "runtime/alloc.h"

#define TICK_MS 100
/* Messages one worker reads from one connection before re-arming it, so a
 * chatty client cannot hold a worker while others wait. */
#define READ_BUDGET 16

/* What an epoll event's data.ptr points at: every source starts with its
 * kind, so the worker can tell them apart without a lookup. */
enum src_kind { SRC_LISTEN = 1, SRC_WAKE, SRC_TIMER, SRC_CONN };

/* Why a close was asked for; the first request wins. */
enum close_reason { CLOSE_NONE = 0, CLOSE_LOCAL, CLOSE_STOPPING };

struct duct__conn {
  enum src_kind kind; /* SRC_CONN; first member */
  duct__listener *l;
  int fd;
  atomic_int refs;
  atomic_int close_req; /* enum close_reason */
  /* Held around each EPOLL_CTL_ADD/MOD that arms the fd, and taken (and
   * dropped) by the worker that receives the next event before it
   * touches the connection. The kernel already orders the two (the event
   * cannot fire before it is armed), but the arming thread is still
   * inside epoll_ctl when another worker may already run, finish and
   * free the connection; the lock makes that hand-over a happens-before
   * edge that holds in the C memory model and that ThreadSanitizer can
   * see (it does not model EPOLL_CTL_MOD). Uncontended in practice. */
  duct__mutex arm_mu;
  duct__mutex send_mu; /* serializes senders; one message per sendmsg */
  void *state;         /* the core's, from open() */
  duct_peer peer;
  char user[24];
  duct__conn *prev, *next; /* in l->conns, under l->mu */
};

typedef struct worker {
  duct__listener *l;
  duct__thread thread;
  uint8_t *buf; /* max_frame bytes: message() borrows it */
} worker;

struct duct__listener {
  duct__srv_cb cb;
  void *core;
  duct__listen_opts o;
  char path[DUCT__POSIX_PATH_MAX];
  dev_t dev; /* the socket file we bound, to unlink only our own */
  ino_t ino;
  int sockbuf;

  int epfd;
  enum src_kind listen_src, wake_src, timer_src;
  int wakefd, timerfd;
  duct__mutex tick_mu;

  /* accept_mu orders accept4 + re-arm against stop_accepting closing the
   * fd, so an fd number is never used after close. */
  duct__mutex accept_mu;
  int lfd; /* -1 once stopped */
  int accept_paused; /* left disarmed after EMFILE; the tick re-arms */

  /* mu guards the connection list, the count and `freeing`; cv is
   * signalled when the count drops to 0 while freeing. */
  duct__mutex mu;
  duct__cond cv;
  duct__conn *conns;
  uint32_t nconns;    /* in the list */
  uint32_t finishing; /* out of the list, closed() not yet returned */
  int freeing;

  worker *w;
  int nstarted;
};

/* ---- connections ---- */

static void conn_ref(duct__conn *c) {
  atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

static void conn_unref(duct__conn *c) {
  if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
    return;
  close(c->fd);
  duct__mutex_destroy(&c->send_mu);
  duct__mutex_destroy(&c->arm_mu);
  duct__free(c);
}

/* Records a close request and wakes whoever owns the fd. shutdown on an
 * AF_UNIX socket marks both directions shut, which the kernel reports as
 * EPOLLIN|EPOLLRDHUP|EPOLLHUP, and makes a blocked send() fail with EPIPE. */
static void request_close(duct__conn *c, int reason) {
  int none = CLOSE_NONE;
  atomic_compare_exchange_strong(&c->close_req, &none, reason);
  shutdown(c->fd, SHUT_RDWR);
}

void duct__conn_close(duct__conn *c) {
  conn_ref(c);
  request_close(c, CLOSE_LOCAL);
  conn_unref(c);
}

duct_code duct__conn_send(duct__conn *c, const duct__iov *iov, int n) {
  struct iovec v[8];
  if (n < 0 || n > 8)
    return DUCT_INVALID_ARGUMENT;
  for (int i = 0; i < n; i++) {
    v[i].iov_base = (void *)iov[i].base;
    v[i].iov_len = iov[i].len;
  }
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = v;
  m.msg_iovlen = (size_t)n;

  size_t total = 0;
  for (int i = 0; i < n; i++)
    total += iov[i].len;
  int grown = 0;

  conn_ref(c);
  duct__mutex_lock(&c->send_mu);
  int64_t deadline = duct__now_ms() + c->l->o.send_timeout_ms;
  duct_code rc = DUCT_OK;
  for (;;) {
    if (atomic_load(&c->close_req) != CLOSE_NONE) {
      rc = DUCT_UNAVAILABLE;
      break;
    }
    /* One sendmsg is one SOCK_SEQPACKET message: it is queued whole or
     * not at all, never partly. MSG_NOSIGNAL: a gone peer is EPIPE, not
     * a SIGPIPE that would kill the user's process. */
    if (sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
      break;
    int e = errno;
    if (e == EINTR)
      continue;
    if (e == EMSGSIZE && !grown) {
      grown = 1;
      if (duct__posix_grow_sndbuf(c->fd, total))
        continue;
    }
    if (e == EAGAIN || e == EWOULDBLOCK) {
      /* The peer is not reading and our send buffer is full. */
      struct pollfd p = {.fd = c->fd, .events = POLLOUT};
      int ms = duct__posix_poll_ms(deadline);
      if (ms == 0) {
        rc = DUCT_DEADLINE_EXCEEDED;
        break;
      }
      if (poll(&p, 1, ms) < 0 && errno != EINTR) {
        rc = duct__posix_code(errno);
        break;
      }
      continue; /* writable, hung up, or timed out: sendmsg tells */
    }
    rc = duct__posix_code(e); /* EPIPE, ECONNRESET: UNAVAILABLE; EMSGSIZE */
    break;
  }
  duct__mutex_unlock(&c->send_mu);
  conn_unref(c);
  return rc;
}

/* Under l->mu. */
static void list_remove(duct__listener *l, duct__conn *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    l->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  l->nconns--;
}

/* Under l->mu: tells duct__listener_free when the last connection is
 * done. */
static void wake_freeing(duct__listener *l) {
  if (l->freeing && l->nconns == 0 && l->finishing == 0)
    duct__cond_broadcast(&l->cv);
}

/* The last word on a connection, only ever from the worker that holds its
 * event: out of epoll, closed() once, drop the list's reference. */
static void conn_finish(duct__conn *c, duct_code why, const char *detail) {
  duct__listener *l = c->l;
  int reason = atomic_load(&c->close_req);
  /* A close that was asked for explains the end better than the recv()
   * result it caused (a local shutdown reads as end-of-file). */
  if (reason == CLOSE_LOCAL) {
    why = DUCT_CANCELLED;
    detail = "connection closed by the server";
  } else if (reason == CLOSE_STOPPING) {
    why = DUCT_UNAVAILABLE;
    detail = "the server is stopping";
  }
  epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  /* Fail any sender still blocked on this connection right away. */
  shutdown(c->fd, SHUT_RDWR);
  /* The slot is free for a new client as soon as this one is out of the
   * list; duct__listener_free also waits on `finishing`, so it returns
   * only after the last closed() has. */
  duct__mutex_lock(&l->mu);
  list_remove(l, c);
  l->finishing++;
  duct__mutex_unlock(&l->mu);

  l->cb.closed(c->state, why, detail);

  duct__mutex_lock(&l->mu);
  l->finishing--;
  wake_freeing(l);
  duct__mutex_unlock(&l->mu);
  conn_unref(c);
}

/* Arms c for its next event (op: EPOLL_CTL_ADD or MOD). On success the
 * connection may be in another worker's hands before this returns; on
 * failure it is still ours and is finished here. */
static void conn_arm(duct__conn *c, int op) {
  struct epoll_event ev;
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
  ev.data.ptr = c;
  duct__mutex_lock(&c->arm_mu);
  int rc = epoll_ctl(c->l->epfd, op, c->fd, &ev);
  int e = errno;
  duct__mutex_unlock(&c->arm_mu);
  if (rc != 0) {
    char sys[128], d[192];
    duct__posix_strerror(e, sys, sizeof sys);
    snprintf(d, sizeof d, "epoll_ctl: %s", sys);
    conn_finish(c, DUCT_UNAVAILABLE, d);
  }
}

/* Reads up to READ_BUDGET messages and hands each to message(). */
static void conn_readable(worker *w, duct__conn *c) {
  duct__listener *l = w->l;
  /* Wait out the arming thread's epoll_ctl (see arm_mu). */
  duct__mutex_lock(&c->arm_mu);
  duct__mutex_unlock(&c->arm_mu);
  for (int budget = READ_BUDGET; budget > 0; budget--) {
    if (atomic_load(&c->close_req) != CLOSE_NONE) {
      conn_finish(c, DUCT_CANCELLED, NULL);
      return;
    }
    struct iovec v = {.iov_base = w->buf, .iov_len = l->o.max_frame};
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    /* MSG_TRUNC makes recvmsg return the message's real length even when
     * it is longer than the buffer (Linux, AF_UNIX datagram and seqpacket
     * sockets); the excess is discarded by the kernel, so a too-large
     * message can only be refused, never read later. */
    ssize_t n = recvmsg(c->fd, &m, MSG_TRUNC | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      int e = errno;
      if (e == EINTR) {
        budget++;
        continue;
      }
      if (e == EAGAIN || e == EWOULDBLOCK)
        break;
      char sys[128], d[192];
      duct__posix_strerror(e, sys, sizeof sys);
      snprintf(d, sizeof d, "recv: %s", sys);
      conn_finish(c, duct__posix_code(e), d);
      return;
    }
    if (n == 0) {
      /* End of file. A zero-length SOCK_SEQPACKET message would read the
       * same, but duct never sends one (a frame is at least 32 bytes), so
       * 0 is taken as the peer's orderly close. */
      conn_finish(c, DUCT_OK, "the peer closed the connection");
      return;
    }
    if ((size_t)n > l->o.max_frame || (m.msg_flags & MSG_TRUNC)) {
      char d[128];
      snprintf(d, sizeof d, "message of %zd bytes exceeds max_frame %lu", n,
               (unsigned long)l->o.max_frame);
      conn_finish(c, DUCT_RESOURCE_EXHAUSTED, d);
      return;
    }
    int r = l->cb.message(c->state, w->buf, (size_t)n);
    if (r < 0) {
      conn_finish(c, DUCT_CANCELLED,
                  "the server closed the connection after a message");
      return;
    }
    if (r > 0)
      break; /* a reply went out: the next recvmsg would be EAGAIN */
  }
  conn_arm(c, EPOLL_CTL_MOD);
}

/* ---- accepting ---- */

/* Under accept_mu, with lfd open. */
static void arm_listener(duct__listener *l) {
  struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT,
                           .data.ptr = &l->listen_src};
  epoll_ctl(l->epfd, EPOLL_CTL_MOD, l->lfd, &ev);
}

static void listener_readable(worker *w) {
  duct__listener *l = w->l;
  duct__mutex_lock(&l->accept_mu);
  if (l->lfd < 0) {
    duct__mutex_unlock(&l->accept_mu);
    return;
  }
  int fd = accept4(l->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  int e = fd < 0 ? errno : 0;
  if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
    /* Out of descriptors or memory: the connection stays in the backlog
     * and the socket stays readable, so re-arming now would spin every
     * worker on it. The next tick re-arms instead (a 100 ms back-off). */
    l->accept_paused = 1;
  } else {
    arm_listener(l);
  }
  duct__mutex_unlock(&l->accept_mu);
  if (fd < 0)
    return; /* EAGAIN: another worker took it; the core is not involved */

  duct__conn *c = duct__calloc(1, sizeof *c);
  struct ucred cr;
  socklen_t crlen = sizeof cr;
  if (!c || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0) {
    duct__free(c);
    close(fd);
    return;
  }
  c->kind = SRC_CONN;
  c->l = l;
  c->fd = fd;
  atomic_init(&c->refs, 1);
  atomic_init(&c->close_req, CLOSE_NONE);
  duct__mutex_init(&c->send_mu);
  duct__mutex_init(&c->arm_mu);
  /* SO_PEERCRED is the peer's credentials at connect() time, which is
   * what a socket's authorization should be based on. */
  snprintf(c->user, sizeof c->user, "%lu", (unsigned long)cr.uid);
  c->peer.pid = (uint32_t)cr.pid;
  c->peer.uid = (uint32_t)cr.uid;
  c->peer.gid = (uint32_t)cr.gid;
  c->peer.has_uid = 1;
  c->peer.user = c->user;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &l->sockbuf, sizeof l->sockbuf);

  /* Into the list before open(), so duct__listener_free can close a
   * connection whose open() is still running. */
  duct__mutex_lock(&l->mu);
  int refuse = l->freeing ||
               (l->o.max_connections && l->nconns >= l->o.max_connections);
  if (!refuse) {
    c->next = l->conns;
    if (l->conns)
      l->conns->prev = c;
    l->conns = c;
    l->nconns++;
  }
  duct__mutex_unlock(&l->mu);
  if (refuse) {
    conn_unref(c); /* over the limit: the client sees end-of-file */
    return;
  }

  void *state = l->cb.open(l->core, c, &c->peer);
  if (!state) {
    /* Refused by the core: gone without closed(). */
    duct__mutex_lock(&l->mu);
    list_remove(l, c);
    wake_freeing(l);
    duct__mutex_unlock(&l->mu);
    conn_unref(c);
    return;
  }
  c->state = state;
  conn_arm(c, EPOLL_CTL_ADD);
}

/* ---- workers ---- */

static void tick_due(duct__listener *l) {
  uint64_t expirations;
  /* EPOLLONESHOT already makes ticks one at a time; tick_mu, held until
   * the re-arm is done, makes consecutive ticks on different workers
   * ordered for the core's unlocked tick state (see arm_mu). */
  duct__mutex_lock(&l->tick_mu);
  /* Reading clears the timerfd; EAGAIN (nothing due) cannot happen after
   * a oneshot event but is harmless. */
  if (read(l->timerfd, &expirations, sizeof expirations) > 0 && l->cb.tick)
    l->cb.tick(l->core);
  duct__mutex_lock(&l->accept_mu);
  if (l->accept_paused && l->lfd >= 0)
    arm_listener(l);
  l->accept_paused = 0;
  duct__mutex_unlock(&l->accept_mu);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT,
                           .data.ptr = &l->timer_src};
  epoll_ctl(l->epfd, EPOLL_CTL_MOD, l->timerfd, &ev);
  duct__mutex_unlock(&l->tick_mu);
}

static void worker_main(void *arg) {
  worker *w = arg;
  duct__listener *l = w->l;
  for (;;) {
    /* One event per wait: the next ready connection goes to the next free
     * worker instead of queueing behind this one's batch. */
    struct epoll_event ev;
    int n = epoll_wait(l->epfd, &ev, 1, -1);
    if (n <= 0)
      continue; /* EINTR */
    enum src_kind *k = ev.data.ptr;
    switch (*k) {
    case SRC_WAKE:
      return;
    case SRC_TIMER:
      tick_due(l);
      break;
    case SRC_LISTEN:
      listener_readable(w);
      break;
    case SRC_CONN:
      conn_readable(w, (duct__conn *)(void *)k);
      break;
    }
  }
}

/* ---- listening ---- */

/* Tries to connect to path: tells a live server (connect succeeds, or the
 * backlog is full) from a stale socket file (ECONNREFUSED). Returns the
 * errno of connect, 0 for a live listener. */
static int probe(const struct sockaddr_un *sa) {
  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0)
    return errno;
  int e = connect(s, (const struct sockaddr *)sa, sizeof *sa) == 0 ? 0 : errno;
  close(s);
  return e == EAGAIN ? 0 : e;
}

static duct_code bind_socket(duct__listener *l, int fd, duct__err *err) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, l->path, strlen(l->path) + 1);
  char what[DUCT__POSIX_PATH_MAX + 16];
  snprintf(what, sizeof what, "bind %s", l->path);
  /* Two tries: the second after removing a stale socket file. */
  for (int attempt = 0;; attempt++) {
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
      return DUCT_OK;
    int e = errno;
    if (e != EADDRINUSE || attempt > 0)
      return duct__posix_fail(err, e, what, NULL);
    struct stat st;
    if (lstat(l->path, &st) != 0)
      continue; /* vanished meanwhile: bind again */
    if (!S_ISSOCK(st.st_mode))
      return duct__posix_fail(err, e, what,
                              " (the path is not a socket; not replacing it)");
    int pe = probe(&sa);
    if (pe == 0)
      return duct__posix_fail(err, e, what, " (a live server holds it)");
    if (pe == EPROTOTYPE)
      return duct__posix_fail(err, e, what,
                              " (a socket of another kind listens there)");
    if (pe != ECONNREFUSED && pe != ENOENT)
      return duct__posix_fail(err, pe, what, " (probing the existing socket)");
    /* Stale: a server died without removing it. Remove that same file
     * only; a narrow race with a second server doing the same remains
     * (README.md). */
    struct stat st2;
    if (lstat(l->path, &st2) == 0 && st2.st_ino == st.st_ino &&
        st2.st_dev == st.st_dev && unlink(l->path) != 0 && errno != ENOENT)
      return duct__posix_fail(err, errno, what, " (removing a stale socket)");
  }
}

duct_code duct__listen(const char *address, const duct__listen_opts *o,
                       const duct__srv_cb *cb, void *core,
                       duct__listener **out, duct__err *err) {
  char dir[DUCT__POSIX_PATH_MAX];
  int is_name = 0;
  *out = NULL;
  if (err)
    err->text[0] = '\0';
  if (!o || !cb || o->workers < 1 || o->max_frame < 1)
    return duct__posix_failf(err, DUCT_INVALID_ARGUMENT,
                             "listen %s: workers must be >= 1 and max_frame > 0",
                             address ? address : "(null)");
  duct__listener *l = duct__calloc(1, sizeof *l);
  if (!l)
    return duct__posix_failf(err, DUCT_RESOURCE_EXHAUSTED, "out of memory");
  l->cb = *cb;
  l->core = core;
  l->o = *o;
  l->o.sddl = NULL; /* borrowed pointers are not kept */
  l->lfd = l->epfd = l->wakefd = l->timerfd = -1;
  l->listen_src = SRC_LISTEN;
  l->wake_src = SRC_WAKE;
  l->timer_src = SRC_TIMER;
  l->sockbuf = duct__posix_sockbuf(o->max_frame);
  duct__mutex_init(&l->accept_mu);
  duct__mutex_init(&l->tick_mu);
  duct__mutex_init(&l->mu);
  duct__cond_init(&l->cv);

  duct_code rc = duct__posix_resolve(address, l->path, dir, &is_name, err);
  if (rc == DUCT_OK)
    rc = duct__posix_prepare_dir(dir, is_name, o->allow_group ? 0750u : 0700u,
                                 err);
  if (rc != DUCT_OK)
    goto fail;

  l->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (l->lfd < 0) {
    rc = duct__posix_fail(err, errno, "socket(AF_UNIX, SOCK_SEQPACKET)", NULL);
    goto fail;
  }
  rc = bind_socket(l, l->lfd, err);
  if (rc != DUCT_OK)
    goto fail;
  struct stat st;
  if (lstat(l->path, &st) == 0) {
    l->dev = st.st_dev;
    l->ino = st.st_ino;
  }
  char what[DUCT__POSIX_PATH_MAX + 16];
  snprintf(what, sizeof what, "chmod %s", l->path);
  /* connect() needs write permission on the socket file, which bind()
   * created with the umask's mode (often 0755: nobody else may connect,
   * not even the group). Set it to match the directory's policy. This is
   * done before listen(), while a connect would be refused anyway, so
   * there is no moment with looser access. */
  if (chmod(l->path, o->allow_group ? 0660 : 0600) != 0) {
    rc = duct__posix_fail(err, errno, what, NULL);
    goto fail;
  }
  snprintf(what, sizeof what, "listen %s", l->path);
  if (listen(l->lfd, SOMAXCONN) != 0) {
    rc = duct__posix_fail(err, errno, what, NULL);
    goto fail;
  }
  l->epfd = epoll_create1(EPOLL_CLOEXEC);
  l->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  l->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (l->epfd < 0 || l->wakefd < 0 || l->timerfd < 0) {
    rc = duct__posix_fail(err, errno, what, " (creating the event loop)");
    goto fail;
  }
  struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT,
                           .data.ptr = &l->listen_src};
  struct epoll_event wev = {.events = EPOLLIN, .data.ptr = &l->wake_src};
  struct epoll_event tev = {.events = EPOLLIN | EPOLLONESHOT,
                            .data.ptr = &l->timer_src};
  if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->lfd, &ev) != 0 ||
      epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &wev) != 0 ||
      epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->timerfd, &tev) != 0) {
    rc = duct__posix_fail(err, errno, what, " (epoll_ctl)");
    goto fail;
  }
  *out = l;
  return DUCT_OK;

fail:
  /* Also unlinks the socket file if we had bound it (l->ino is set). */
  duct__listener_free(l);
  return rc;
}

duct_code duct__listener_start(duct__listener *l) {
  l->w = duct__calloc((size_t)l->o.workers, sizeof *l->w);
  if (!l->w)
    return DUCT_RESOURCE_EXHAUSTED;
  for (int i = 0; i < l->o.workers; i++) {
    l->w[i].l = l;
    l->w[i].buf = duct__malloc(l->o.max_frame);
    if (!l->w[i].buf)
      return DUCT_RESOURCE_EXHAUSTED; /* listener_free cleans up */
  }
  struct itimerspec its = {
      .it_interval = {.tv_sec = 0, .tv_nsec = TICK_MS * 1000000L},
      .it_value = {.tv_sec = 0, .tv_nsec = TICK_MS * 1000000L}};
  timerfd_settime(l->timerfd, 0, &its, NULL);
  for (int i = 0; i < l->o.workers; i++) {
    if (duct__thread_start(&l->w[i].thread, worker_main, &l->w[i]) != DUCT_OK)
      return DUCT_RESOURCE_EXHAUSTED; /* the started ones run until free */
    l->nstarted++;
  }
  return DUCT_OK;
}

/* Unlinks the socket file if it is still the one we bound: after a stale
 * replacement by another server, the path is theirs. */
static void unlink_ours(duct__listener *l) {
  struct stat st;
  if (l->ino && lstat(l->path, &st) == 0 && st.st_ino == l->ino &&
      st.st_dev == l->dev)
    unlink(l->path);
  l->ino = 0;
}

void duct__listener_stop_accepting(duct__listener *l) {
  duct__mutex_lock(&l->accept_mu);
  if (l->lfd >= 0) {
    /* Unlink first so a client never finds a file nobody listens on. */
    unlink_ours(l);
    if (l->epfd >= 0)
      epoll_ctl(l->epfd, EPOLL_CTL_DEL, l->lfd, NULL);
    /* Closing the listening socket resets connections still in its
     * backlog; their clients see end-of-file or ECONNRESET. */
    close(l->lfd);
    l->lfd = -1;
  }
  duct__mutex_unlock(&l->accept_mu);
}

void duct__listener_free(duct__listener *l) {
  if (!l)
    return;
  duct__listener_stop_accepting(l);

  duct__mutex_lock(&l->mu);
  l->freeing = 1;
  for (duct__conn *c = l->conns; c; c = c->next)
    request_close(c, CLOSE_STOPPING);
  /* The workers deliver closed() for each; wait for the last. Without
   * workers there can be no connections (only workers accept). */
  while ((l->nconns > 0 || l->finishing > 0) && l->nstarted > 0)
    duct__cond_wait(&l->cv, &l->mu, -1);
  duct__mutex_unlock(&l->mu);

  if (l->nstarted > 0) {
    uint64_t one = 1;
    while (write(l->wakefd, &one, sizeof one) < 0 && errno == EINTR)
      ;
    for (int i = 0; i < l->nstarted; i++)
      duct__thread_join(&l->w[i].thread);
  }
  if (l->w) {
    for (int i = 0; i < l->o.workers; i++)
      duct__free(l->w[i].buf);
    duct__free(l->w);
  }
  if (l->epfd >= 0)
    close(l->epfd);
  if (l->wakefd >= 0)
    close(l->wakefd);
  if (l->timerfd >= 0)
    close(l->timerfd);
  duct__cond_destroy(&l->cv);
  duct__mutex_destroy(&l->mu);
  duct__mutex_destroy(&l->accept_mu);
  duct__mutex_destroy(&l->tick_mu);
  duct__free(l);
}
