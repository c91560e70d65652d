/* The server side of the POSIX transport: an AF_UNIX SOCK_SEQPACKET
 * listening socket and `workers` threads sharing one epoll set. The
 * connection lifecycle, the set, admission, timeouts and the send queue
 * are runtime/conn.c's; this file arms, reads, writes and wakes.
 *
 * Threading. Every fd in the epoll set except the wake eventfd is armed
 * with EPOLLONESHOT, so an event is handed to exactly one worker and the
 * fd stays disarmed until that worker re-arms it with EPOLL_CTL_MOD:
 *   - a connection's read is re-armed only after message() returns, so
 *     message() is never called concurrently for one connection
 *     (transport.h). When message() returns 2 the read is re-armed before
 *     run() is called on the same worker, so the next messages (a CANCEL,
 *     another call) and the end of the connection are seen by other
 *     workers while run() works;
 *   - the timerfd is re-armed only after the tick, so there is exactly
 *     one tick at a time, from whichever worker is free;
 *   - the listening socket is re-armed right after one accept4, so
 *     accepting is spread over the workers.
 * The wake eventfd is level-triggered and never read: once written (by
 * duct__listener_free) every worker sees it on its next epoll_wait.
 *
 * The hold: a busy connection served by one thread. A worker that has
 * just answered a call keeps the connection and waits for its next
 * message in a blocking recvmsg (the socket is blocking, with an
 * SO_RCVTIMEO of HOLD_MS; every other read and write passes MSG_DONTWAIT),
 * and runs a unary handler without arming the read first. A client
 * calling again and again then costs the server one recvmsg and one
 * sendmsg per call, the raw floor, instead of epoll_wait + recvmsg +
 * epoll_ctl + sendmsg. Three limits keep it from costing anyone else:
 *   - at most workers - 1 workers hold at once, so one always waits in
 *     epoll_wait for the other connections (one worker: no hold at all);
 *   - a connection idle for HOLD_MS goes back to epoll;
 *   - a connection that has had two calls open at once (async calls,
 *     streams: duct__conn.multiplexed) is never held, so one call's
 *     handler cannot hold up the next call's, which another worker would
 *     run meanwhile.
 * While the handler runs, the connection is RS_RELEASED: nobody reads it
 * and it is not armed. The tick (every TICK_MS) arms a released
 * connection, so a handler that runs long still sees its CANCEL and its
 * client's end, at most a tick late; the holder, back from the handler,
 * finds it armed and leaves it to epoll. Otherwise the holder takes it
 * back (one compare-and-swap) and reads on.
 *
 * Writing, from any thread. A message is written with one non-blocking
 * sendmsg, under the connection's queue lock (c->mu), by whichever thread
 * sends it; when the socket's buffer is full (a peer that reads slowly)
 * it is queued (conn.c), and the queue is written by a write watch that
 * is armed independently of the read. epoll keys a registration by (open
 * file, fd number), so a dup() of the socket gets a registration of its
 * own in the same set: the read side is the socket's fd with EPOLLIN, the
 * write watch is the dup with EPOLLOUT, each EPOLLONESHOT, each with its
 * own event data (SRC_CONN, SRC_CONN_WRITE), and arming one never arms
 * the other. The dup is made the first time a message must be queued, so
 * a connection whose replies always fit the socket buffer costs one
 * descriptor, not two. Arming the watch (pc_want_write, under c->mu,
 * whenever the queue holds messages and no watch is armed: c->writing)
 * takes a reference on the connection; the worker that gets the watch's
 * event writes what the socket takes (duct__conn_flush, under c->mu),
 * arms it again (a new reference) while messages remain, and drops the
 * reference of the arming that fired. Only that event's handler drops
 * it, never anyone else: an armed watch can fire at any moment. It does
 * fire: after shutdown(SHUT_RDWR) the socket reports EPOLLHUP to every
 * registration, armed or armed later.
 *
 * Why this and not the alternatives: one registration with EPOLLIN |
 * EPOLLOUT can only be changed by whoever holds the disarmed fd (the
 * worker reading); a thread that re-armed it to add EPOLLOUT while a
 * worker is in message() would hand the read to a second worker. Waking
 * the reading worker instead (an eventfd, a flag seen on the next re-arm)
 * ties a stream's progress to a worker that may be in a long run() or
 * idle in a read that never comes. A writer thread per listener would
 * serialize every slow peer behind one thread. The dup costs one
 * descriptor per connection that ever queued, and nothing else.
 *
 * Closing. duct__conn_close (any thread) records the reason and calls
 * shutdown(SHUT_RDWR). The kernel then reports EPOLLIN|EPOLLHUP for the
 * socket: at once if the read is armed, or on re-arm if a worker holds it
 * (EPOLL_CTL_MOD re-checks readiness). The worker that gets the read
 * event ends the connection (conn.c reports closed() once); the write
 * watch never ends a connection, it only closes it (a failed write) and
 * lets the read side end it. The descriptors are closed only when the
 * last reference goes, so their numbers cannot be reused by a new
 * connection under someone still holding the old one, and
 * listener_free waits for that (live pconns, nlive) before it stops the
 * workers: an armed watch's event still needs a worker. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <fcntl.h>
#include <unistd.h>

#include "posix.h"
#include "sys.h"
#include "runtime/alloc.h"
#include "runtime/conn.h"
#include "runtime/frame.h"

#define TICK_MS 100
/* How long a worker holding a connection waits for its next message
 * before giving it back to epoll (SO_RCVTIMEO; the kernel rounds it up to
 * a clock tick). Short: a held worker serves no one else meanwhile. */
#define HOLD_MS 2
/* Messages one worker reads from one connection before re-arming it, so a
 * chatty client cannot hold a worker while others wait. */
#define READ_BUDGET 16

/* What an epoll event's data.ptr points at: every source starts with (or,
 * for a connection, holds) its kind, so the worker can tell them apart
 * without a lookup. */
enum src_kind { SRC_LISTEN = 1, SRC_WAKE, SRC_TIMER, SRC_CONN, SRC_CONN_WRITE };

/* Who reads a connection (the hold, above). */
enum read_state {
  RS_ARMED = 0, /* its read is armed in epoll, or is being armed */
  RS_OWNED,     /* a worker reads it */
  RS_RELEASED,  /* its holder runs a handler: neither read nor armed */
};

typedef struct pconn {
  duct__conn base; /* first: conn.c's view of it */
  enum src_kind kind; /* SRC_CONN; the read side's epoll data points here */
  enum src_kind wkind; /* SRC_CONN_WRITE; the write watch's points here */
  duct__listener *l;
  int fd;
  /* The write watch's descriptor, a dup of fd; -1 until a message was
   * first queued. Under base.mu (pc_want_write) until destroy. */
  int wfd;
  /* Held around each EPOLL_CTL_ADD/MOD that arms the fd, and taken (and
   * dropped) by the worker that receives the next event before it
   * touches the connection. The kernel already orders the two (the event
   * cannot fire before it is armed), but the arming thread is still
   * inside epoll_ctl when another worker may already run, finish and
   * free the connection; the lock makes that hand-over a happens-before
   * edge that holds in the C memory model and that ThreadSanitizer can
   * see (it does not model EPOLL_CTL_MOD). Uncontended in practice. */
  duct__mutex arm_mu;
  int grown; /* SO_SNDBUF was raised once for a large message */
  atomic_int rstate; /* enum read_state */
} pconn;

typedef struct worker {
  duct__listener *l;
  duct__thread thread;
  uint8_t *buf; /* max_frame bytes: message() borrows it */
  /* The connection this worker released to run a handler, for the tick
   * to arm if the handler runs long; NULL when none. Under rel_mu, which
   * also orders the holder's taking it back against the tick's arming. */
  duct__mutex rel_mu;
  pconn *released;
} worker;

struct duct__listener {
  duct__listen_opts o;
  char path[DUCT__POSIX_PATH_MAX];
  dev_t dev; /* the socket file we bound, to unlink only our own */
  ino_t ino;
  int sockbuf;
  duct__conn_set set;

  int epfd;
  enum src_kind listen_src, wake_src, timer_src;
  int wakefd, timerfd;
  duct__mutex tick_mu;

  /* accept_mu orders accept4 + re-arm against stop_accepting closing the
   * fd, so an fd number is never used after close. */
  duct__mutex accept_mu;
  int lfd; /* -1 once stopped */
  int accept_paused; /* left disarmed after EMFILE; the tick re-arms */

  worker *w;
  int nstarted;
  atomic_int holders; /* workers holding a connection (the hold) */

  /* pconns not yet freed. Not the set's count: a connection leaves the
   * set when it ends, but lives on while its write watch or the core
   * holds a reference, and the workers must still be there for the
   * watch's event. */
  duct__mutex live_mu;
  duct__cond live_cv; /* nlive reached 0 */
  uint32_t nlive;
};

/* ---- connections: what conn.c asks of this platform ---- */

static pconn *pc_of(duct__conn *c) { return (pconn *)(void *)c; }

static int pc_try_write(duct__conn *c, const duct__iov *iov, int n, duct_code *err) {
  pconn *pc = pc_of(c);
  struct iovec v[8];
  if (n < 1 || n > 8) {
    *err = DUCT_INVALID_ARGUMENT;
    return -1;
  }
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
  for (;;) {
    /* One sendmsg is one SOCK_SEQPACKET message: queued whole or not at
     * all, never partly. MSG_NOSIGNAL: a gone peer is EPIPE, not a
     * SIGPIPE that would kill the user's process. */
    if (sendmsg(pc->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
      return 1;
    int e = errno;
    if (e == EINTR)
      continue;
    if (e == EMSGSIZE && !pc->grown) {
      pc->grown = 1;
      if (duct__posix_grow_sndbuf(pc->fd, total))
        continue;
    }
    if (e == EAGAIN || e == EWOULDBLOCK)
      return 0; /* the peer's side is full: conn.c queues it */
    *err = duct__posix_code(e); /* EPIPE, ECONNRESET: UNAVAILABLE */
    return -1;
  }
}

/* The queue holds messages and no watch is armed (c->mu held, from any
 * thread): arm the write watch, making its descriptor the first time.
 * c->mu is what hands the connection over to the worker that gets the
 * watch's event (duct__conn_flush takes it first), so arm_mu is not
 * needed here. On failure the message stays queued (conn.h). */
static void pc_want_write(duct__conn *c) {
  pconn *pc = pc_of(c);
  int op = EPOLL_CTL_MOD;
  if (pc->wfd < 0) {
    /* A new descriptor for the same open socket: its own registration. */
    pc->wfd = fcntl(pc->fd, F_DUPFD_CLOEXEC, 0);
    if (pc->wfd < 0)
      return; /* EMFILE: the next send retries, the deadline ends it */
    op = EPOLL_CTL_ADD;
  }
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLONESHOT,
                           .data.ptr = &pc->wkind};
  c->writing = 1;
  /* The armed watch's reference, dropped by its event's handler. */
  duct__conn_ref(c);
  if (epoll_ctl(pc->l->epfd, op, pc->wfd, &ev) == 0)
    return;
  c->writing = 0;
  /* Never the last reference: whoever sends holds one too. */
  atomic_fetch_sub(&c->refs, 1);
  if (op == EPOLL_CTL_ADD) {
    close(pc->wfd);
    pc->wfd = -1;
  }
}

/* shutdown on an AF_UNIX socket marks both directions shut, which the
 * kernel reports as EPOLLIN|EPOLLRDHUP|EPOLLHUP to whoever waits. */
static void pc_abort(duct__conn *c) { shutdown(pc_of(c)->fd, SHUT_RDWR); }

static void pc_destroy(duct__conn *c) {
  pconn *pc = pc_of(c);
  duct__listener *l = pc->l;
  if (pc->wfd >= 0) {
    /* The watch is disarmed (its last event was handled: that handler
     * held the reference that just went). Take the registration out by
     * hand: it belongs to (socket, wfd), and epoll drops a registration
     * by itself only when the open socket goes, not when one of its two
     * descriptors is closed. */
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, pc->wfd, NULL);
    close(pc->wfd);
  }
  close(pc->fd);
  duct__mutex_destroy(&pc->arm_mu);
  duct__free(pc);
  duct__mutex_lock(&l->live_mu);
  if (--l->nlive == 0)
    duct__cond_broadcast(&l->live_cv);
  duct__mutex_unlock(&l->live_mu);
}

static const duct__conn_io pconn_io = {pc_try_write, pc_want_write, pc_abort,
                                       pc_destroy};

/* The last word on a connection, only ever from the worker that holds its
 * event: out of epoll, then conn.c reports closed() once. */
static void conn_finish(pconn *pc, duct_code why, const char *detail) {
  epoll_ctl(pc->l->epfd, EPOLL_CTL_DEL, pc->fd, NULL);
  shutdown(pc->fd, SHUT_RDWR);
  duct__conn_end(&pc->base, why, detail);
}

/* Arms pc's read for its next event (op: EPOLL_CTL_ADD or MOD). Writing
 * has its own watch (pc_want_write). On success the connection may be in
 * another worker's hands before this returns; on failure it is still
 * ours and is finished here. */
static void conn_arm(pconn *pc, int op) {
  struct epoll_event ev;
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
  ev.data.ptr = &pc->kind;
  duct__mutex_lock(&pc->arm_mu);
  int rc = epoll_ctl(pc->l->epfd, op, pc->fd, &ev);
  int e = errno;
  duct__mutex_unlock(&pc->arm_mu);
  if (rc != 0) {
    char sys[128], d[192];
    duct__posix_strerror(e, sys, sizeof sys);
    snprintf(d, sizeof d, "epoll_ctl: %s", sys);
    conn_finish(pc, DUCT_UNAVAILABLE, d);
  }
}

/* Whether this worker may hold pc (the hold, above). On 1 the caller
 * counts in l->holders until hold_end. */
static int hold_try(duct__listener *l, pconn *pc) {
  if (atomic_load(&pc->base.multiplexed))
    return 0;
  if (atomic_fetch_add(&l->holders, 1) < l->o.workers - 1)
    return 1;
  atomic_fetch_sub(&l->holders, 1);
  return 0;
}

static void hold_end(duct__listener *l) { atomic_fetch_sub(&l->holders, 1); }

/* run() on a held connection, its read released meanwhile (the hold).
 * Returns 1 if it is still this worker's afterwards, 0 if the tick armed
 * it because the handler ran long: then epoll has it, and it may already
 * be ended and freed by another worker. */
static int run_held(worker *w, pconn *pc) {
  void *state = pc->base.state;
  duct__conn_ref(&pc->base); /* for the compare-and-swap after run() */
  duct__mutex_lock(&w->rel_mu);
  atomic_store(&pc->rstate, RS_RELEASED);
  w->released = pc;
  duct__mutex_unlock(&w->rel_mu);
  w->l->set.cb.run(state);
  duct__mutex_lock(&w->rel_mu);
  w->released = NULL;
  int expect = RS_RELEASED;
  int mine = atomic_compare_exchange_strong(&pc->rstate, &expect, RS_OWNED);
  duct__mutex_unlock(&w->rel_mu);
  /* When mine, the set's reference keeps pc: only its reader ends it. */
  duct__conn_unref(&pc->base);
  return mine;
}

/* The tick: a connection released for a handler that is still running is
 * armed, so its next messages and its end are seen meanwhile. */
static void arm_released(duct__listener *l) {
  for (int i = 0; i < l->o.workers; i++) {
    worker *w = &l->w[i];
    pconn *pc = NULL;
    duct__mutex_lock(&w->rel_mu);
    int expect = RS_RELEASED;
    if (w->released && atomic_compare_exchange_strong(&w->released->rstate, &expect, RS_ARMED)) {
      pc = w->released;
      duct__conn_ref(&pc->base);
    }
    duct__mutex_unlock(&w->rel_mu);
    if (pc) {
      conn_arm(pc, EPOLL_CTL_MOD);
      duct__conn_unref(&pc->base);
    }
  }
}

/* One read event for pc: reads its messages and hands each to message().
 * Without the hold, up to READ_BUDGET of them, until one is answered or
 * none is left, then the read is armed again; holding, until the
 * connection is idle for HOLD_MS. */
static void conn_event(worker *w, pconn *pc) {
  duct__listener *l = w->l;
  int holding = 0;
  /* Wait out the arming thread's epoll_ctl (see arm_mu). */
  duct__mutex_lock(&pc->arm_mu);
  duct__mutex_unlock(&pc->arm_mu);
  atomic_store(&pc->rstate, RS_OWNED);
  for (int budget = READ_BUDGET;;) {
    if (duct__conn_closing(&pc->base)) {
      conn_finish(pc, DUCT_CANCELLED, NULL);
      goto ended;
    }
    /* A fragment that continues a message in progress is received
     * straight into its reassembly buffer: the header into ours, the
     * payload into the slot the core offers (when it has room for the
     * largest payload a frame can carry). */
    size_t room = 0, most = l->o.max_frame - DUCT__HEADER_SIZE;
    uint8_t *slot = l->set.cb.rx_slot ? l->set.cb.rx_slot(pc->base.state, &room) : NULL;
    if (room < most)
      slot = NULL;
    struct iovec v[2] = {{.iov_base = w->buf, .iov_len = l->o.max_frame}};
    if (slot) {
      v[0].iov_len = DUCT__HEADER_SIZE;
      v[1].iov_base = slot;
      v[1].iov_len = most;
    }
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = v;
    m.msg_iovlen = slot ? 2 : 1;
    /* MSG_TRUNC makes recvmsg return the message's real length even when
     * it is longer than the buffer (Linux, AF_UNIX datagram and seqpacket
     * sockets); the excess is discarded by the kernel, so a too-large
     * message can only be refused, never read later. Holding, the read
     * blocks (up to SO_RCVTIMEO). */
    int wait = holding ? 0 : MSG_DONTWAIT;
    ssize_t n = recvmsg(pc->fd, &m, MSG_TRUNC | wait | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      int e = errno;
      if (e == EINTR)
        continue;
      if (e == EAGAIN || e == EWOULDBLOCK)
        break; /* nothing left, or the hold's time is up */
      char sys[128], d[192];
      duct__posix_strerror(e, sys, sizeof sys);
      snprintf(d, sizeof d, "recv: %s", sys);
      conn_finish(pc, duct__posix_code(e), d);
      goto ended;
    }
    if (n == 0) {
      /* End of file. A zero-length SOCK_SEQPACKET message would read the
       * same, but duct never sends one (a frame is at least 32 bytes), so
       * 0 is taken as the peer's orderly close (or our own shutdown, whose
       * reason was recorded first). */
      conn_finish(pc, DUCT_OK, "the peer closed the connection");
      goto ended;
    }
    if ((size_t)n > l->o.max_frame || (m.msg_flags & MSG_TRUNC)) {
      char d[128];
      snprintf(d, sizeof d, "a message of %zd bytes exceeds max_frame (%lu)", n,
               (unsigned long)l->o.max_frame);
      if (l->set.cb.violation)
        l->set.cb.violation(pc->base.state, DUCT_RESOURCE_EXHAUSTED, d);
      conn_finish(pc, DUCT_RESOURCE_EXHAUSTED, d);
      goto ended;
    }
    atomic_store(&pc->base.last_active, duct__now_ms());
    int r = slot && n >= DUCT__HEADER_SIZE
                ? l->set.cb.message_placed(pc->base.state, w->buf, (size_t)n)
                : l->set.cb.message(pc->base.state, w->buf, (size_t)n);
    if (r < 0) {
      conn_finish(pc, DUCT_CANCELLED,
                  "the server closed the connection after a message");
      goto ended;
    }
    if (r == 2) {
      if (holding || (holding = hold_try(l, pc))) {
        if (!run_held(w, pc)) {
          hold_end(l);
          return;
        }
        continue;
      }
      /* Read before re-arming: from then on the connection may be ended
       * and freed by another worker, and only what the core keeps alive
       * may be used (transport.h, run()). The listener outlives every
       * worker. */
      void *state = pc->base.state;
      atomic_store(&pc->rstate, RS_ARMED);
      conn_arm(pc, EPOLL_CTL_MOD);
      l->set.cb.run(state);
      return;
    }
    /* A reply went out (the next recvmsg would be EAGAIN), or the budget
     * is spent: hold the connection, or give it back. */
    if (!holding && (r > 0 || --budget == 0) && !(holding = hold_try(l, pc)))
      break;
  }
  if (holding)
    hold_end(l);
  atomic_store(&pc->rstate, RS_ARMED);
  conn_arm(pc, EPOLL_CTL_MOD);
  return;
ended:
  if (holding)
    hold_end(l);
}

/* The write watch's event: write what the socket takes, watch again while
 * messages remain (duct__conn_flush), then drop the reference of the
 * arming that fired. A failed write closes the connection (shutdown),
 * and its read side ends it; a connection that is closing gets no more
 * writes, and this is then the watch's last event. */
static void conn_write_event(pconn *pc) {
  duct__conn_flush(&pc->base);
  duct__conn_unref(&pc->base);
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
  /* Blocking, for the hold's recvmsg; every other read and write on it
   * passes MSG_DONTWAIT. */
  int fd = accept4(l->lfd, NULL, NULL, SOCK_CLOEXEC);
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

  pconn *pc = duct__calloc(1, sizeof *pc);
  struct ucred cr;
  socklen_t crlen = sizeof cr;
  if (!pc || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0) {
    duct__free(pc);
    close(fd);
    return;
  }
  duct__conn_init(&pc->base, &l->set);
  pc->kind = SRC_CONN;
  pc->wkind = SRC_CONN_WRITE;
  pc->l = l;
  pc->fd = fd;
  pc->wfd = -1;
  duct__mutex_init(&pc->arm_mu);
  duct__mutex_lock(&l->live_mu);
  l->nlive++; /* from here on pc_destroy frees it */
  duct__mutex_unlock(&l->live_mu);
  /* SO_PEERCRED is the peer's credentials at connect() time, which is
   * what a socket's authorization should be based on. */
  duct_peer *p = &pc->base.peer;
  snprintf(pc->base.user, sizeof pc->base.user, "%lu", (unsigned long)cr.uid);
  p->pid = (uint32_t)cr.pid;
  p->uid = (uint32_t)cr.uid;
  p->gid = (uint32_t)cr.gid;
  p->has_uid = 1;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &l->sockbuf, sizeof l->sockbuf);
  struct timeval hold = {.tv_sec = 0, .tv_usec = HOLD_MS * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &hold, sizeof hold);

  /* Refused (stopping, full of busy connections, or by the core): the
   * client sees end-of-file. */
  if (!duct__conn_admit(&pc->base)) {
    duct__conn_unref(&pc->base);
    return;
  }
  conn_arm(pc, EPOLL_CTL_ADD);
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
  if (read(l->timerfd, &expirations, sizeof expirations) > 0) {
    duct__conn_set_tick(&l->set);
    arm_released(l);
  }
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
      conn_event(w, (pconn *)(void *)((char *)k - offsetof(pconn, kind)));
      break;
    case SRC_CONN_WRITE:
      conn_write_event((pconn *)(void *)((char *)k - offsetof(pconn, wkind)));
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
  l->o = *o;
  l->o.sddl = NULL; /* borrowed pointers are not kept */
  duct__conn_set_opts so = {o->max_connections, o->idle_timeout_ms, o->queue_cap};
  duct__conn_set_init(&l->set, &pconn_io, cb, core, &so);
  l->lfd = l->epfd = l->wakefd = l->timerfd = -1;
  l->listen_src = SRC_LISTEN;
  l->wake_src = SRC_WAKE;
  l->timer_src = SRC_TIMER;
  l->sockbuf = duct__posix_sockbuf(o->max_frame);
  duct__mutex_init(&l->accept_mu);
  duct__mutex_init(&l->tick_mu);
  duct__mutex_init(&l->live_mu);
  duct__cond_init(&l->live_cv);

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
  /* May be called again after a failure: what exists is kept, and only
   * the missing buffers and threads are made. */
  if (!l->w) {
    if (!(l->w = duct__calloc((size_t)l->o.workers, sizeof *l->w)))
      return DUCT_RESOURCE_EXHAUSTED;
    /* Before any thread: the tick looks at every worker's rel_mu. */
    for (int i = 0; i < l->o.workers; i++)
      duct__mutex_init(&l->w[i].rel_mu);
  }
  for (int i = 0; i < l->o.workers; i++) {
    l->w[i].l = l;
    if (!l->w[i].buf && !(l->w[i].buf = duct__malloc(l->o.max_frame)))
      return DUCT_RESOURCE_EXHAUSTED; /* listener_free cleans up */
  }
  if (l->nstarted == 0) {
    struct itimerspec its = {
        .it_interval = {.tv_sec = 0, .tv_nsec = TICK_MS * 1000000L},
        .it_value = {.tv_sec = 0, .tv_nsec = TICK_MS * 1000000L}};
    timerfd_settime(l->timerfd, 0, &its, NULL);
  }
  while (l->nstarted < l->o.workers) {
    if (duct__thread_start(&l->w[l->nstarted].thread, worker_main,
                           &l->w[l->nstarted]) != DUCT_OK)
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

void duct__listener_each(duct__listener *l, void (*fn)(duct__conn *c, void *arg),
                         void *arg) {
  duct__conn_set_each(&l->set, fn, arg);
}

void duct__listener_free(duct__listener *l) {
  if (!l)
    return;
  duct__listener_stop_accepting(l);

  /* The workers end each connection (closed() for each) and this waits
   * for the last; without workers there can be none (only they accept). */
  duct__conn_set_close_all(&l->set, l->nstarted > 0);
  /* Then until every pconn is freed: a write watch armed when its
   * connection was shut down still fires (EPOLLHUP) and must find a
   * worker to drop its reference, and a core's own references (run(),
   * a stream) go when it is done with them. */
  duct__mutex_lock(&l->live_mu);
  while (l->nlive > 0)
    duct__cond_wait(&l->live_cv, &l->live_mu, -1);
  duct__mutex_unlock(&l->live_mu);

  if (l->nstarted > 0) {
    uint64_t one = 1;
    while (write(l->wakefd, &one, sizeof one) < 0 && errno == EINTR)
      ;
    for (int i = 0; i < l->nstarted; i++)
      duct__thread_join(&l->w[i].thread);
  }
  if (l->w) {
    for (int i = 0; i < l->o.workers; i++) {
      duct__free(l->w[i].buf);
      duct__mutex_destroy(&l->w[i].rel_mu);
    }
    duct__free(l->w);
  }
  if (l->epfd >= 0)
    close(l->epfd);
  if (l->wakefd >= 0)
    close(l->wakefd);
  if (l->timerfd >= 0)
    close(l->timerfd);
  duct__conn_set_destroy(&l->set);
  duct__mutex_destroy(&l->accept_mu);
  duct__mutex_destroy(&l->tick_mu);
  duct__cond_destroy(&l->live_cv);
  duct__mutex_destroy(&l->live_mu);
  duct__free(l);
}
