/* runtime/win/server.c - the server side of the Windows transport.
 *
 * The connection lifecycle, the connection set, admission at
 * max_connections, the idle timeouts and the send queue are
 * runtime/conn.c's, shared with POSIX; each connection here is a wconn
 * that embeds duct__conn first. This file keeps what only named pipes
 * have: pipe instances, the completion port, overlapped reads and writes,
 * and how a connection is woken and freed.
 *
 * Pipe instances. A named pipe is a set of instances; each instance
 * serves one client. The listener keeps `nslots` instances (workers + 2,
 * at least 4) waiting in an overlapped ConnectNamedPipe, and replaces an
 * instance as soon as it connects, so a burst of clients finds a free
 * instance instead of ERROR_PIPE_BUSY. The first instance is created with
 * FILE_FLAG_FIRST_PIPE_INSTANCE: if another process (a squatter, or a
 * second copy of the server) already owns the name, Windows refuses it and
 * duct__listen fails with DUCT_ALREADY_EXISTS instead of silently sharing
 * the name with a stranger.
 *
 * Threads. One I/O completion port; every pipe handle is associated with
 * it. `workers` threads block in GetQueuedCompletionStatus; a completion is
 * an accept (ConnectNamedPipe), a read or a write. A separate ticker thread
 * runs conn.c's tick every 100 ms (the idle timeouts, then the core's
 * tick()), so timeouts never wait behind a long handler.
 *
 * Reads. Each connection has at most one ReadFile outstanding, and the
 * next one is only issued after message() has returned, so message() is
 * never called concurrently for one connection. When message() returns 2
 * the next ReadFile is issued before run() is called on the same worker,
 * so further messages and the end of the connection reach other workers
 * while run() works. The first read of a message uses a
 * small buffer (4 KiB, or max_frame if smaller): idle connections cost
 * little memory. A message that does not fit fails the read with
 * ERROR_MORE_DATA, having delivered the part that fit; the rest is still
 * in the pipe, so the buffer grows to max_frame and the read continues
 * where it stopped. If the message fills even max_frame and there is
 * more, the core is told (violation()) and the connection is closed with
 * DUCT_RESOURCE_EXHAUSTED: never truncated, never delivered in part.
 *
 * Reads into place. While a message arrives in fragments, the core offers
 * the free end of its reassembly buffer (rx_slot) and the fragments after
 * the first are read straight there. A message-mode ReadFile fills one
 * buffer, so the header cannot be scattered elsewhere as recvmsg does on
 * POSIX; instead the read starts DUCT__HEADER_SIZE bytes before the slot,
 * over the end of what the message has received so far, which is kept
 * aside meanwhile and put back as soon as the read completes, before
 * anything else looks at that buffer (transport.h allows this). One
 * ReadFile per fragment, as before, and no copy of the payload. The slot
 * is used only when a whole max_frame fits there, so a message that does
 * not fit is over max_frame, as with the connection's own buffer.
 *
 * Writes go through the port, never wait, and may be started from any
 * thread: want_write runs under the queue's lock (c->mu) and c->writing
 * says whether the one WriteFile per connection is in flight, so whoever
 * queues (a worker, a handler in run(), an application's stream) starts
 * the write when none is, and nothing depends on who holds the read. An overlapped WriteFile
 * reads its buffer until it completes, which may be long after the sender
 * has returned (a client that does not read), so there is no "write it
 * now from the caller's memory" here (try_write is NULL): every message is
 * copied to conn.c's queue, and want_write starts one WriteFile of the
 * queue's head. Its packet comes to a worker like any other; that worker
 * pops the head (duct__conn_wrote), which starts the next write while
 * more are queued. So messages leave in order, one write at a time; a
 * reply to a client that reads slowly waits in the queue, bounded by the
 * queue's cap and the idle timeout, not in a worker; and a server with one
 * worker cannot deadlock on its own write's packet, because nobody waits
 * for it. A WriteFile that fails at once queues no packet, so we post its
 * packet ourselves and the failure takes the same path as a failed
 * completion (duct__conn_wrote cannot be called from want_write, which
 * runs under the queue's lock).
 *
 * Completion packets. For an overlapped call on a handle associated with
 * a port, Windows queues a packet whenever the call did not fail with an
 * error status: on TRUE, on ERROR_IO_PENDING, and also on ERROR_MORE_DATA
 * (STATUS_BUFFER_OVERFLOW is a warning, not an error). It queues none for
 * a real error, and none for ConnectNamedPipe's ERROR_PIPE_CONNECTED (a
 * client connected between CreateNamedPipe and ConnectNamedPipe), for
 * which we post the packet ourselves so all accepts take one path.
 *
 * Closing. References: conn.c's own one is held by the read chain (the
 * pending ReadFile, or the worker handling its completion), and a pending
 * WriteFile holds one more. duct__conn_close (any thread) records the
 * reason once and calls abort, which cancels the pending read; the
 * cancelled read completes on a worker, which ends the connection
 * (duct__conn_end: closed() exactly once). A read being handled while the
 * close is asked for sees it before the next ReadFile, or cancels that
 * ReadFile right after issuing it. Once ended, nothing more is queued
 * (conn.c checks the reason under the queue's lock), but what was queued
 * before is still written while the pipe takes it, as a socket buffer
 * delivers what was sent before a close: a last reply or a GOAWAY is not
 * lost because the previous write's packet had not been handled yet. A
 * write that waits for a peer that does not read is cancelled at the
 * queue's deadline (or at once by listener_free), and its packet drops
 * the last reference. The handle is closed and the memory freed only
 * then, so nothing is freed while the system may still use an OVERLAPPED
 * or a buffer. The server end is closed without DisconnectNamedPipe: what
 * was already written stays readable by the client until it reads
 * ERROR_BROKEN_PIPE, where DisconnectNamedPipe would discard it.
 * listener_free waits until every wconn is freed, not only closed, before
 * it stops the workers: cancelled writes still complete through the port.
 *
 * Peer identity is read on the worker that accepts, before open(): the
 * process id from the pipe, the user from the client's token (security.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/sys.h"
#include "runtime/win/win.h"
#include "runtime/alloc.h"
#include "runtime/conn.h"
#include "runtime/frame.h"

#define FIRST_READ 4096
/* Large read buffers kept per listener, at least (more with more
 * workers): enough for a few clients sending large messages at once. */
#define POOL_MIN 16
#define TICK_MS 100
#define KEY_IO 0
#define KEY_QUIT 1

enum { OP_ACCEPT = 1, OP_READ = 2, OP_WRITE = 3 };

/* Every overlapped operation that completes through the port starts with
 * its OVERLAPPED, so a packet leads back to its owner. */
typedef struct op {
  OVERLAPPED ov;
  int kind;
} op;

typedef struct slot {
  op op;
  HANDLE pipe;  /* the listening instance; NULL when none */
  int pending;  /* a packet for op will come */
} slot;

typedef struct wconn {
  duct__conn base; /* first: conn.c's view of it */
  duct__listener *l;
  HANDLE pipe;
  op rd;           /* the one pending ReadFile */
  op wr;           /* the one pending WriteFile (the queue's head) */
  size_t wr_len;   /* what that WriteFile writes */
  DWORD wr_err;    /* it failed at once with this; the packet is ours */
  uint8_t *buf;    /* the message being read, when not into place */
  size_t cap, got;
  uint8_t *small;  /* the first-read buffer, kept while buf is a large one */
  /* A read into place (rx_slot): the pending ReadFile fills the core's
   * buffer from `placed`, DUCT__HEADER_SIZE bytes before the slot, and
   * those bytes (the core's) wait in `borrowed` until it completes. NULL
   * when the read is into buf. Only the read chain touches these. */
  uint8_t *placed;
  uint8_t borrowed[DUCT__HEADER_SIZE];
  /* Set (under base.mu) when the read chain has ended the connection:
   * the queue is still written while the pipe takes it (see read_end). */
  atomic_int draining;
  struct wconn *prev, *next; /* in l->live, under l->lock */
} wconn;

struct duct__listener {
  HANDLE iocp;
  wchar_t *name;
  char pname[DUCT__WIN_PIPE_NAME_MAX * 3 + 1]; /* UTF-8, for messages */
  duct__conn_set set;
  int workers;
  /* max_frame read buffers connections gave back (buf_shrink), at most
   * max(workers, POOL_MIN) of them, for the next message's first
   * fragment: clients uploading large messages one after another then
   * cost no allocation per message, and what is kept does not grow with
   * the connections. */
  SRWLOCK pool_lock;
  void *pool; /* each buffer's first bytes point at the next */
  int npool;
  uint32_t max_frame;
  int allow_remote;
  PSECURITY_DESCRIPTOR sd;
  SECURITY_ATTRIBUTES sa;

  SRWLOCK lock; /* guards everything below */
  CONDITION_VARIABLE idle; /* nlive and npending reached 0 */
  int accepting;
  int nslots;
  slot *slots;
  int npending; /* accept packets still to come */
  /* wconns not yet freed. Not the set's count: a connection leaves the
   * set when it ends, but lives on until its cancelled write's packet has
   * come, and the workers must still be there for that packet. */
  uint32_t nlive;
  struct wconn *live; /* those wconns, for the ticker and listener_free */
  /* listener_free: a draining connection's writes are cancelled at once. */
  atomic_int drain_cut;

  int started;
  duct__thread *threads;
  duct__thread ticker;
  HANDLE tick_stop;
};

/* ---- pipe instances and accepting ---- */

static HANDLE create_instance(duct__listener *l, int first) {
  DWORD open_mode = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED;
  if (first)
    open_mode |= FILE_FLAG_FIRST_PIPE_INSTANCE;
  /* Message type and message read mode: one WriteFile is one message for
   * the reader, which is exactly one duct frame. PIPE_WAIT is the only
   * mode that works with overlapped I/O (PIPE_NOWAIT is a LAN Manager
   * relic). */
  DWORD pipe_mode = PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT;
  if (!l->allow_remote)
    pipe_mode |= PIPE_REJECT_REMOTE_CLIENTS;
  HANDLE h = CreateNamedPipeW(l->name, open_mode, pipe_mode,
                              PIPE_UNLIMITED_INSTANCES, DUCT__WIN_PIPE_BUFFER,
                              DUCT__WIN_PIPE_BUFFER, 0, &l->sa);
  if (h == INVALID_HANDLE_VALUE)
    return NULL;
  if (CreateIoCompletionPort(h, l->iocp, KEY_IO, 0) == NULL) {
    DWORD e = GetLastError();
    CloseHandle(h);
    SetLastError(e);
    return NULL;
  }
  return h;
}

/* Starts an overlapped ConnectNamedPipe on s->pipe. Lock held. Returns 0
 * when a packet will come for it, else the error (s->pipe is closed). */
static DWORD connect_slot(duct__listener *l, slot *s) {
  memset(&s->op.ov, 0, sizeof s->op.ov);
  s->op.kind = OP_ACCEPT;
  if (ConnectNamedPipe(s->pipe, &s->op.ov)) {
    /* Not documented for overlapped handles, but harmless: the packet
     * is queued as for any synchronous success. */
  } else {
    DWORD e = GetLastError();
    if (e == ERROR_PIPE_CONNECTED) {
      /* The client won the race; Windows queues no packet for this. */
      if (!PostQueuedCompletionStatus(l->iocp, 0, KEY_IO, &s->op.ov)) {
        e = GetLastError();
        CloseHandle(s->pipe);
        s->pipe = NULL;
        return e;
      }
    } else if (e != ERROR_IO_PENDING) {
      /* ERROR_NO_DATA: a client connected and already left. */
      CloseHandle(s->pipe);
      s->pipe = NULL;
      return e;
    }
  }
  s->pending = 1;
  l->npending++;
  return 0;
}

/* Gives a slot a fresh listening instance. Lock held. A few attempts,
 * since a client that connects and leaves at once fails one; if the system
 * refuses instances, the slot stays empty and the ticker retries. */
static DWORD arm_slot(duct__listener *l, slot *s) {
  DWORD e = 0;
  for (int attempt = 0; attempt < 3; attempt++) {
    s->pipe = create_instance(l, 0);
    if (s->pipe == NULL)
      return GetLastError();
    e = connect_slot(l, s);
    if (e == 0)
      return 0;
  }
  return e;
}

/* Closes every listening instance. Lock held. An instance accepts
 * clients from the moment CreateNamedPipe returns, whether or not a
 * ConnectNamedPipe is pending, so merely cancelling the accepts would
 * leave the name open: the instances must go. The cancelled accepts still
 * complete through the port (ERROR_OPERATION_ABORTED), and on_accept then
 * finds no handle left to close. */
static void close_slots(duct__listener *l) {
  for (int i = 0; i < l->nslots; i++) {
    slot *s = &l->slots[i];
    if (s->pipe == NULL)
      continue;
    if (s->pending)
      CancelIoEx(s->pipe, &s->op.ov);
    CloseHandle(s->pipe);
    s->pipe = NULL;
  }
}

/* ---- connections: what conn.c asks of this platform ---- */

static wconn *wc_of(duct__conn *c) { return (wconn *)(void *)c; }

/* Whether a connection that has ended should stop waiting for its peer to
 * take the rest of its queue: the queue's own deadline (conn.c's: the
 * idle timeout from when it became non-empty) has passed, or the listener
 * is being freed. */
static int drain_expired(wconn *w) {
  duct__listener *l = w->l;
  if (atomic_load(&l->drain_cut))
    return 1;
  int64_t since = atomic_load(&w->base.q_since);
  uint32_t limit = l->set.o.idle_timeout_ms;
  if (limit > 0 && since != 0 && duct__now_ms() - since > (int64_t)limit)
    return 1;
  /* Closed because the peer did not read (its reply's deadline, the
   * queue's cap): what is left is not owed to it. */
  int code = atomic_load(&w->base.close_code) - 1;
  return code == DUCT_DEADLINE_EXCEEDED || code == DUCT_RESOURCE_EXHAUSTED;
}

/* Starts an overlapped WriteFile of the queue's head. conn.c calls it
 * with c->mu held, when the queue becomes non-empty and no write is in
 * progress, and again from duct__conn_wrote while more remain. The
 * queued node stays at the head (its memory untouched) until the packet
 * for this write has been handled. */
static void wc_want_write(duct__conn *c) {
  wconn *w = wc_of(c);
  size_t len = 0;
  const uint8_t *data = duct__conn_head(c, &len);
  if (data == NULL)
    return;
  memset(&w->wr.ov, 0, sizeof w->wr.ov);
  w->wr.kind = OP_WRITE;
  w->wr_len = len;
  w->wr_err = 0;
  c->writing = 1;
  /* The pending write's reference: the wconn (its OVERLAPPED, the queued
   * buffer, the handle) must outlive the write even when the connection
   * ends first. */
  duct__conn_ref(c);
  DWORD e = ERROR_INVALID_PARAMETER; /* a message over 4 GiB cannot be */
  if (len <= MAXDWORD) {
    if (WriteFile(w->pipe, data, (DWORD)len, NULL, &w->wr.ov))
      return; /* done already; its packet is queued all the same */
    e = GetLastError();
    if (e == ERROR_IO_PENDING) {
      /* Waiting for the peer to read. After the end, only until the
       * queue's deadline (drain_expired); the ticker cancels it later if
       * it is not past that yet. */
      if (atomic_load(&w->draining) && drain_expired(w))
        CancelIoEx(w->pipe, &w->wr.ov);
      return;
    }
  }
  /* Failed at once: Windows queues no packet, and duct__conn_wrote takes
   * c->mu, which we hold. Post the packet ourselves; on_write reads
   * wr_err. */
  w->wr_err = e;
  if (PostQueuedCompletionStatus(w->l->iocp, 0, KEY_IO, &w->wr.ov))
    return;
  /* Not even that (the system is out of memory): give the reference back
   * (never the last: whoever sends holds one too) and leave the message
   * queued. Nothing writes it, so the queue's idle deadline (the tick)
   * closes the connection. */
  c->writing = 0;
  atomic_fetch_sub(&c->refs, 1);
}

/* Wakes the read chain so it ends the connection: the pending read (if
 * any) completes with ERROR_OPERATION_ABORTED. If no read is pending (a
 * worker is inside message()), the reason recorded before this call is
 * seen before the next ReadFile, or right after it (post_read). */
static void wc_abort(duct__conn *c) {
  wconn *w = wc_of(c);
  CancelIoEx(w->pipe, &w->rd.ov);
}

static size_t first_read(const duct__listener *l);
static void big_give(duct__listener *l, uint8_t *b);

static void wc_destroy(duct__conn *c) {
  wconn *w = wc_of(c);
  duct__listener *l = w->l;
  /* The read buffers first: once nlive reaches 0 below, the listener and
   * its pool may be freed. No read is pending (it holds a reference). */
  if (w->cap > first_read(l))
    big_give(l, w->buf);
  else
    duct__free(w->buf);
  duct__free(w->small);
  /* Out of the live list before the handle is closed: the ticker cancels
   * writes through it under l->lock. */
  AcquireSRWLockExclusive(&l->lock);
  if (w->prev != NULL)
    w->prev->next = w->next;
  else
    l->live = w->next;
  if (w->next != NULL)
    w->next->prev = w->prev;
  l->nlive--;
  if (l->nlive == 0 && l->npending == 0)
    WakeAllConditionVariable(&l->idle);
  ReleaseSRWLockExclusive(&l->lock);
  CloseHandle(w->pipe);
  duct__free(w);
}

static const duct__conn_io wconn_io = {NULL, wc_want_write, wc_abort,
                                       wc_destroy};

/* The end of a connection's read chain, on a worker: conn.c reports
 * closed() once and drops its reference. No new message can be queued
 * after that (the reason is recorded under c->mu, which every send takes).
 *
 * What is already queued is still written while the pipe takes it, as on
 * POSIX, where whatever sendmsg placed in the socket buffer before the
 * close reaches the peer: a handler that sends its last reply or a
 * GOAWAY and then closes must not lose it because the packet of the
 * write before it had not been handled yet (with one worker it never has
 * been: that worker is the one ending the connection). conn.c stops
 * writing once a connection is closing, so the drain is driven from here
 * and on_write. It is bounded by the queue's deadline (drain_expired):
 * a write waiting for a peer that does not read is cancelled then (by
 * want_write, here, or by the ticker), and its packet drops the last
 * reference. */
static void read_end(wconn *w, duct_code why, const char *detail) {
  duct__conn *c = &w->base;
  duct__conn_ref(c); /* w stays valid until the drain is set going */
  duct__conn_end(c, why, detail);
  duct__mutex_lock(&c->mu);
  atomic_store(&w->draining, 1);
  if (c->writing) {
    if (drain_expired(w))
      CancelIoEx(w->pipe, &w->wr.ov);
  } else if (c->qhead != NULL && !drain_expired(w)) {
    wc_want_write(c);
  }
  duct__mutex_unlock(&c->mu);
  duct__conn_unref(c);
}

static void read_end_err(wconn *w, DWORD e, const char *what) {
  if (e == ERROR_BROKEN_PIPE || e == ERROR_PIPE_NOT_CONNECTED ||
      e == ERROR_NO_DATA) {
    /* The client closed its end: the orderly way to leave. */
    read_end(w, DUCT_OK, "the peer closed the connection");
    return;
  }
  if (e == ERROR_OPERATION_ABORTED && duct__conn_closing(&w->base)) {
    /* Cancelled by wc_abort: the reason recorded by duct__conn_close
     * stands (conn.c keeps the first). */
    read_end(w, DUCT_CANCELLED, NULL);
    return;
  }
  char sys[192], detail[256];
  duct_code why = duct__win_code(e);
  duct__win_strerror(e, sys, sizeof sys);
  snprintf(detail, sizeof detail, "%s on %s: %s", what, w->l->pname, sys);
  read_end(w, why, detail);
}

static size_t first_read(const duct__listener *l) {
  return l->max_frame < FIRST_READ ? l->max_frame : FIRST_READ;
}

/* A max_frame buffer from the listener's pool, else a new one. */
static uint8_t *big_take(duct__listener *l) {
  AcquireSRWLockExclusive(&l->pool_lock);
  void *b = l->pool;
  if (b != NULL) {
    memcpy(&l->pool, b, sizeof l->pool);
    l->npool--;
  }
  ReleaseSRWLockExclusive(&l->pool_lock);
  return b != NULL ? b : duct__malloc(l->max_frame);
}

static void big_give(duct__listener *l, uint8_t *b) {
  AcquireSRWLockExclusive(&l->pool_lock);
  int keep = l->npool < (l->workers > POOL_MIN ? l->workers : POOL_MIN);
  if (keep) {
    memcpy(b, &l->pool, sizeof l->pool);
    l->pool = b;
    l->npool++;
  }
  ReleaseSRWLockExclusive(&l->pool_lock);
  if (!keep)
    duct__free(b);
}

/* Replaces a read buffer grown to max_frame with the small one it grew
 * from; w->got must be 0. */
static void buf_shrink(wconn *w) {
  size_t first = first_read(w->l);
  if (w->cap <= first)
    return;
  uint8_t *small = w->small != NULL ? w->small : duct__malloc(first);
  if (small == NULL)
    return; /* keep the large one */
  big_give(w->l, w->buf);
  w->buf = small;
  w->small = NULL;
  w->cap = first;
}

/* Gives the core back the bytes a read into place borrowed, first thing
 * when that read is over, however it ended: the core may look at its
 * buffer (or free it, in closed()) from then on. */
static void unplace(wconn *w) {
  memcpy(w->placed, w->borrowed, DUCT__HEADER_SIZE);
  w->placed = NULL;
}

/* Gives back a read buffer grown to max_frame once nothing more waits in
 * the pipe. The pending read's buffer is what an idle connection costs,
 * and each connection has its own (the read completes on whichever worker
 * gets the packet, so a worker's buffer cannot be used as on POSIX):
 * without this, every connection that ever received one large frame would
 * hold max_frame for as long as it stays open, outside the core's budget
 * for partial messages. While frames keep waiting the large buffer is
 * kept, so a stream of large single-frame messages does not reallocate
 * for each one. The fragments after a message's first need it not at all
 * (they are read into place), so for those read_target gives it back at
 * once, without asking the pipe. */
static void shrink_idle(wconn *w) {
  DWORD avail = 0;
  if (w->cap <= first_read(w->l) ||
      (PeekNamedPipe(w->pipe, NULL, 0, NULL, &avail, NULL) && avail > 0))
    return;
  buf_shrink(w);
}

/* Where the next read goes: into the core's slot when it offers one a
 * whole max_frame fits in (from DUCT__HEADER_SIZE bytes before it, which
 * are borrowed: see "Reads into place" above), else into w->buf after
 * what a message that did not fit has delivered already. Asked here, by
 * the thread that delivered the last message (or accepted the
 * connection), after message() returned and before the ReadFile, whose
 * packet may go to another worker: so it never runs beside a message() of this
 * connection (on the r == 2 path run() has not started yet, and does not
 * touch the core's receive state). */
static DWORD read_target(wconn *w, uint8_t **into) {
  duct__listener *l = w->l;
  w->placed = NULL;
  if (w->got == 0 && l->set.cb.rx_slot != NULL && l->max_frame > DUCT__HEADER_SIZE) {
    size_t room = 0;
    uint8_t *at = l->set.cb.rx_slot(w->base.state, &room);
    if (at != NULL && room >= l->max_frame - DUCT__HEADER_SIZE) {
      w->placed = at - DUCT__HEADER_SIZE;
      memcpy(w->borrowed, w->placed, DUCT__HEADER_SIZE);
      *into = w->placed;
      /* Our buffer is not needed until the next message starts: an
       * upload in fragments does not hold max_frame of ours as well. */
      buf_shrink(w);
      /* Exactly max_frame, not the room: more than that must fail with
       * ERROR_MORE_DATA, as it does into w->buf. */
      return l->max_frame;
    }
  }
  if (w->got == 0)
    shrink_idle(w);
  *into = w->buf + w->got;
  return (DWORD)(w->cap - w->got);
}

/* Issues the next ReadFile for w. On a synchronous error no packet will
 * come, so the chain ends here. */
static void post_read(wconn *w) {
  duct__conn *c = &w->base;
  memset(&w->rd.ov, 0, sizeof w->rd.ov);
  w->rd.kind = OP_READ;
  if (duct__conn_closing(c)) {
    read_end(w, DUCT_CANCELLED, NULL);
    return;
  }
  uint8_t *into = NULL;
  DWORD want = read_target(w, &into);
  /* Once the ReadFile is issued its packet may be handled by another
   * worker, which may end and free the connection before we look at it
   * again below: hold a reference across. */
  duct__conn_ref(c);
  BOOL ok = ReadFile(w->pipe, into, want, NULL, &w->rd.ov);
  DWORD e = ok ? 0 : GetLastError();
  if (ok || e == ERROR_IO_PENDING || e == ERROR_MORE_DATA) {
    /* A packet will come. A duct__conn_close that ran between the check
     * above and ReadFile found nothing to cancel: cancel it now. */
    if (duct__conn_closing(c))
      CancelIoEx(w->pipe, &w->rd.ov);
    duct__conn_unref(c);
    return;
  }
  duct__conn_unref(c); /* the read chain's reference is still held */
  if (w->placed != NULL)
    unplace(w); /* nothing was read, but the core's bytes go back */
  read_end_err(w, e, "ReadFile");
}

/* A message over max_frame: the core is told, and the connection ends.
 * Never truncated, never delivered in part. */
static void too_large(wconn *w) {
  duct__listener *l = w->l;
  char detail[160];
  snprintf(detail, sizeof detail, "a message on %s is larger than max_frame (%lu bytes)",
           l->pname, (unsigned long)l->max_frame);
  /* The core logs it and may say GOAWAY before the connection goes. */
  if (l->set.cb.violation != NULL)
    l->set.cb.violation(w->base.state, DUCT_RESOURCE_EXHAUSTED, detail);
  read_end(w, DUCT_RESOURCE_EXHAUSTED, detail);
}

/* One whole message read: to the core, then the next read. msg is the
 * message (len bytes), or with `placed` its header, the rest being at the
 * slot the core gave. */
static void deliver(wconn *w, const uint8_t *msg, size_t len, int placed) {
  duct__listener *l = w->l;
  duct__conn *c = &w->base;
  if (duct__conn_closing(c)) {
    read_end(w, DUCT_CANCELLED, NULL);
    return;
  }
  atomic_store(&c->last_active, duct__now_ms());
  /* 1 (a reply went out) changes nothing here: one ReadFile is pending
   * per connection either way. */
  int r = placed ? l->set.cb.message_placed(c->state, msg, len)
                 : l->set.cb.message(c->state, msg, len);
  if (r < 0) {
    read_end(w, DUCT_CANCELLED,
             "the server closed the connection after a message");
    return;
  }
  if (r != 2) {
    post_read(w);
    return;
  }
  /* 2: the next ReadFile first, then run() here. Once it is issued its
   * packet may reach another worker, which may deliver the next message
   * or end the connection and free w: read what run() needs before, and
   * touch w no more after (transport.h). */
  void *state = c->state;
  post_read(w);
  l->set.cb.run(state);
}

/* The completion of a read into place. The borrowed bytes go back before
 * anything else, whatever happened: a message, one over max_frame
 * (ERROR_MORE_DATA: only the free end of the core's buffer was written
 * past them, never a byte of the message so far), a cancel or an error
 * (nothing was read). */
static void on_read_placed(wconn *w, DWORD n, DWORD e) {
  uint8_t hdr[DUCT__HEADER_SIZE];
  size_t head = n < DUCT__HEADER_SIZE ? n : DUCT__HEADER_SIZE;
  if (e == 0)
    memcpy(hdr, w->placed, head);
  unplace(w);
  if (e == ERROR_MORE_DATA) {
    too_large(w);
    return;
  }
  if (e != 0) {
    read_end_err(w, e, "ReadFile");
    return;
  }
  /* Shorter than a header (a broken peer): it lay entirely in the
   * borrowed bytes, now in hdr; the core refuses it from there. */
  deliver(w, hdr, n, n >= DUCT__HEADER_SIZE);
}

static void on_read(wconn *w, DWORD n, DWORD e) {
  duct__listener *l = w->l;
  if (w->placed != NULL) {
    on_read_placed(w, n, e);
    return;
  }
  if (e == 0 || e == ERROR_MORE_DATA)
    w->got += n;
  if (e == ERROR_MORE_DATA) {
    if (w->got >= l->max_frame) {
      too_large(w);
      return;
    }
    if (w->got == w->cap) {
      uint8_t *nb = big_take(l);
      if (nb == NULL) {
        read_end(w, DUCT_RESOURCE_EXHAUSTED,
                 "out of memory growing the read buffer to max_frame");
        return;
      }
      memcpy(nb, w->buf, w->got);
      w->small = w->buf;
      w->buf = nb;
      w->cap = l->max_frame;
    }
    post_read(w);
    return;
  }
  if (e != 0) {
    read_end_err(w, e, "ReadFile");
    return;
  }
  size_t len = w->got;
  w->got = 0;
  deliver(w, w->buf, len, 0);
}

/* The packet of the write wc_want_write started: pop the head (conn.c
 * starts the next write if more are queued), then drop the write's
 * reference. */
static void on_write(wconn *w, DWORD n, DWORD e) {
  duct__conn *c = &w->base;
  if (e == 0)
    e = w->wr_err;
  if (e == 0 && n != w->wr_len)
    e = ERROR_WRITE_FAULT; /* message mode writes all or nothing */
  if (e != 0 && !(e == ERROR_OPERATION_ABORTED && duct__conn_closing(c))) {
    /* The reason, before duct__conn_wrote records a generic one. A
     * cancelled write of a connection that ended already needs none. */
    char sys[192], detail[256];
    duct__win_strerror(e, sys, sizeof sys);
    snprintf(detail, sizeof detail, "WriteFile on %s: %s", w->l->pname, sys);
    duct_code why = duct__win_code(e);
    duct__conn_close(c, why == DUCT_OK ? DUCT_UNAVAILABLE : why, detail);
  }
  duct__conn_wrote(c, e == 0);
  /* conn.c writes no more once the connection is closing; after the end,
   * the rest of the queue is ours to write (read_end). */
  if (e == 0 && atomic_load(&w->draining)) {
    duct__mutex_lock(&c->mu);
    if (!c->writing && c->qhead != NULL && !drain_expired(w))
      wc_want_write(c);
    duct__mutex_unlock(&c->mu);
  }
  duct__conn_unref(c);
}

static void on_accept(duct__listener *l, slot *s, DWORD e) {
  AcquireSRWLockExclusive(&l->lock);
  HANDLE h = s->pipe;
  s->pipe = NULL;
  s->pending = 0;
  l->npending--;
  if (!l->accepting || e != 0) {
    /* Cancelled by stop_accepting, or the client left before we looked
     * (ERROR_NO_DATA): retire the instance, re-arm while accepting. */
    if (h != NULL)
      CloseHandle(h);
    if (l->accepting)
      arm_slot(l, s);
    if (l->nlive == 0 && l->npending == 0)
      WakeAllConditionVariable(&l->idle);
    ReleaseSRWLockExclusive(&l->lock);
    return;
  }
  /* Listen again at once, before serving this client. */
  arm_slot(l, s);
  size_t first = first_read(l);
  wconn *w = duct__calloc(1, sizeof *w);
  if (w != NULL && (w->buf = duct__malloc(first)) == NULL) {
    duct__free(w);
    w = NULL;
  }
  if (w == NULL) {
    /* Out of memory: accept and close at once; the client reads
     * ERROR_BROKEN_PIPE. */
    ReleaseSRWLockExclusive(&l->lock);
    CloseHandle(h);
    return;
  }
  l->nlive++; /* from here on wc_destroy frees it */
  w->l = l;
  w->pipe = h;
  w->next = l->live;
  if (l->live != NULL)
    l->live->prev = w;
  l->live = w;
  ReleaseSRWLockExclusive(&l->lock);

  duct__conn_init(&w->base, &l->set);
  w->cap = first;
  /* Who is it? The process id comes from the pipe; the user from the
   * client's token (see security.c for when that needs a fallback). */
  ULONG pid = 0;
  if (!GetNamedPipeClientProcessId(h, &pid))
    pid = 0;
  w->base.peer.pid = (uint32_t)pid;
  duct__win_client_user(h, pid, w->base.user, sizeof w->base.user);
  /* Refused (stopping, full of busy connections, or by the core): no
   * closed() is owed; the last reference closes the handle and the
   * client reads ERROR_BROKEN_PIPE. */
  if (!duct__conn_admit(&w->base)) {
    duct__conn_unref(&w->base);
    return;
  }
  post_read(w);
}

/* Handles one packet; returns 0 on the quit packet. timeout_ms bounds the
 * wait (INFINITE for workers). Returns -1 on a timeout. */
static int run_once(duct__listener *l, DWORD timeout_ms) {
  DWORD n = 0;
  ULONG_PTR key = 0;
  OVERLAPPED *ov = NULL;
  BOOL ok = GetQueuedCompletionStatus(l->iocp, &n, &key, &ov, timeout_ms);
  DWORD e = ok ? 0 : GetLastError();
  if (ov == NULL)
    return key == KEY_QUIT && ok ? 0 : -1;
  op *o = CONTAINING_RECORD(ov, op, ov);
  switch (o->kind) {
  case OP_ACCEPT:
    on_accept(l, (slot *)o, e);
    break;
  case OP_READ:
    on_read(CONTAINING_RECORD(o, wconn, rd), n, e);
    break;
  case OP_WRITE:
    on_write(CONTAINING_RECORD(o, wconn, wr), n, e);
    break;
  }
  return 1;
}

static void worker_main(void *arg) {
  duct__listener *l = arg;
  while (run_once(l, INFINITE) != 0) {
  }
}

/* Under l->lock: cancels the pending write of each draining connection
 * past its deadline (all of them: `all`). */
static void cancel_drains(duct__listener *l, int all) {
  for (wconn *w = l->live; w != NULL; w = w->next)
    if (atomic_load(&w->draining) && (all || drain_expired(w)))
      CancelIoEx(w->pipe, &w->wr.ov);
}

static void ticker_main(void *arg) {
  duct__listener *l = arg;
  while (WaitForSingleObject(l->tick_stop, TICK_MS) == WAIT_TIMEOUT) {
    /* Stalled messages and unread replies, then the core's tick(). */
    duct__conn_set_tick(&l->set);
    AcquireSRWLockExclusive(&l->lock);
    /* Ended connections whose peer has not taken the rest of the queue in
     * time: cancel the write (a no-op if none is pending). */
    cancel_drains(l, 0);
    /* Slots left empty when the system refused an instance get another
     * chance here. */
    for (int i = 0; l->accepting && i < l->nslots; i++)
      if (l->slots[i].pipe == NULL && !l->slots[i].pending)
        arm_slot(l, &l->slots[i]);
    ReleaseSRWLockExclusive(&l->lock);
  }
}

/* ---- the listener ---- */

/* Waits until every wconn is freed and no accept packet is left. Without
 * worker threads (a listener never started, or failing in duct__listen)
 * the calling thread handles the packets itself; there can be no wconn
 * then (only an accepting listener makes them, and accepting has
 * stopped). */
static void wait_idle(duct__listener *l) {
  if (l->started) {
    AcquireSRWLockExclusive(&l->lock);
    while (l->nlive != 0 || l->npending != 0)
      SleepConditionVariableSRW(&l->idle, &l->lock, INFINITE, 0);
    ReleaseSRWLockExclusive(&l->lock);
    return;
  }
  for (;;) {
    AcquireSRWLockExclusive(&l->lock);
    int busy = l->nlive != 0 || l->npending != 0;
    ReleaseSRWLockExclusive(&l->lock);
    if (!busy)
      return;
    run_once(l, 100);
  }
}

static void listener_destroy(duct__listener *l) {
  if (l->iocp != NULL)
    CloseHandle(l->iocp);
  if (l->tick_stop != NULL)
    CloseHandle(l->tick_stop);
  if (l->sd != NULL)
    LocalFree(l->sd);
  duct__conn_set_destroy(&l->set);
  while (l->pool != NULL) {
    void *b = l->pool;
    memcpy(&l->pool, b, sizeof l->pool);
    duct__free(b);
  }
  duct__free(l->threads);
  duct__free(l->slots);
  duct__free(l->name);
  duct__free(l);
}

duct_code duct__listen(const char *address, const duct__listen_opts *o,
                       const duct__srv_cb *cb, void *core,
                       duct__listener **out, duct__err *err) {
  *out = NULL;
  if (o == NULL || cb == NULL || o->workers < 1 || o->max_frame == 0)
    return duct__win_msg(err, DUCT_INVALID_ARGUMENT, "bad listen options");
  duct__listener *l = duct__calloc(1, sizeof *l);
  if (l == NULL)
    return duct__win_msg(err, DUCT_RESOURCE_EXHAUSTED, "out of memory");
  duct__conn_set_opts so = {o->max_connections, o->idle_timeout_ms,
                            o->queue_cap};
  duct__conn_set_init(&l->set, &wconn_io, cb, core, &so);
  duct_code rc = duct__win_pipe_name(address, &l->name, err);
  if (rc != DUCT_OK) {
    listener_destroy(l);
    return rc;
  }
  duct__win_narrow(l->name, l->pname, sizeof l->pname);
  l->workers = o->workers;
  l->max_frame = o->max_frame;
  l->allow_remote = o->allow_remote;
  InitializeSRWLock(&l->lock);
  InitializeSRWLock(&l->pool_lock);
  InitializeConditionVariable(&l->idle);
  l->nslots = o->workers + 2 < 4 ? 4 : o->workers + 2;
  l->slots = duct__calloc((size_t)l->nslots, sizeof *l->slots);
  l->threads = duct__calloc((size_t)o->workers, sizeof *l->threads);
  l->tick_stop = CreateEventW(NULL, TRUE, FALSE, NULL);
  if (l->slots == NULL || l->threads == NULL || l->tick_stop == NULL) {
    listener_destroy(l);
    return duct__win_msg(err, DUCT_RESOURCE_EXHAUSTED, "out of memory");
  }
  rc = duct__win_pipe_sd(o, l->name, &l->sd, err);
  if (rc != DUCT_OK) {
    listener_destroy(l);
    return rc;
  }
  l->sa.nLength = sizeof l->sa;
  l->sa.lpSecurityDescriptor = l->sd;
  l->sa.bInheritHandle = FALSE;
  l->iocp = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0,
                                   (DWORD)o->workers);
  if (l->iocp == NULL) {
    rc = duct__win_fail(err, GetLastError(), "CreateIoCompletionPort");
    listener_destroy(l);
    return rc;
  }

  AcquireSRWLockExclusive(&l->lock);
  l->accepting = 1;
  HANDLE first = create_instance(l, 1);
  DWORD e = first == NULL ? GetLastError() : 0;
  DWORD instances = 0;
  if (first != NULL &&
      GetNamedPipeHandleStateW(first, NULL, &instances, NULL, NULL, NULL, 0) &&
      instances > 1) {
    /* Wine (8.0) ignores FILE_FLAG_FIRST_PIPE_INSTANCE and lets anyone add
     * instances to an existing name. The instance count tells the truth
     * there too: right after creating "the first" instance it must be
     * ours alone. On Windows the flag has already refused this case. */
    CloseHandle(first);
    ReleaseSRWLockExclusive(&l->lock);
    rc = duct__win_msg(err, DUCT_ALREADY_EXISTS,
                       "%s: the pipe name is already owned by another server "
                       "or process (%lu other instances exist)",
                       l->pname, (unsigned long)(instances - 1));
    listener_destroy(l);
    return rc;
  }
  if (first == NULL) {
    if (e == ERROR_ACCESS_DENIED || e == ERROR_ALREADY_EXISTS ||
        e == ERROR_PIPE_BUSY) {
      /* FILE_FLAG_FIRST_PIPE_INSTANCE fails with ERROR_ACCESS_DENIED when
       * any instance of the name exists, whoever created it (Wine says
       * ERROR_ALREADY_EXISTS); ERROR_PIPE_BUSY is an owner that capped
       * its instances. Either way the name is taken. */
      char sys[160];
      duct__win_strerror(e, sys, sizeof sys);
      rc = duct__win_msg(err, DUCT_ALREADY_EXISTS,
                         "%s: the pipe name is already owned by another "
                         "server or process (%s)", l->pname, sys);
    } else {
      rc = duct__win_fail(err, e, "CreateNamedPipe %s", l->pname);
    }
    goto fail;
  }
  l->slots[0].pipe = first;
  e = connect_slot(l, &l->slots[0]);
  for (int i = 1; e == 0 && i < l->nslots; i++)
    e = arm_slot(l, &l->slots[i]);
  if (e != 0) {
    if (e == ERROR_ACCESS_DENIED && o->sddl != NULL)
      rc = duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                         "%s: the sddl DACL does not let this process create "
                         "more pipe instances; grant its user GA (or "
                         "FILE_CREATE_PIPE_INSTANCE), e.g. (A;;GA;;;OW)",
                         l->pname);
    else
      rc = duct__win_fail(err, e, "CreateNamedPipe %s (more instances)",
                          l->pname);
    goto fail;
  }
  ReleaseSRWLockExclusive(&l->lock);
  *out = l;
  return DUCT_OK;

fail:
  l->accepting = 0;
  close_slots(l);
  ReleaseSRWLockExclusive(&l->lock);
  wait_idle(l);
  listener_destroy(l);
  return rc;
}

duct_code duct__listener_start(duct__listener *l) {
  if (l->started)
    return DUCT_OK;
  int n = 0;
  for (; n < l->workers; n++)
    if (duct__thread_start(&l->threads[n], worker_main, l) != DUCT_OK)
      break;
  if (n == l->workers &&
      duct__thread_start(&l->ticker, ticker_main, l) == DUCT_OK) {
    l->started = 1;
    return DUCT_OK;
  }
  for (int i = 0; i < n; i++)
    PostQueuedCompletionStatus(l->iocp, 0, KEY_QUIT, NULL);
  for (int i = 0; i < n; i++)
    duct__thread_join(&l->threads[i]);
  return DUCT_RESOURCE_EXHAUSTED;
}

void duct__listener_stop_accepting(duct__listener *l) {
  AcquireSRWLockExclusive(&l->lock);
  if (l->accepting) {
    l->accepting = 0;
    close_slots(l);
  }
  ReleaseSRWLockExclusive(&l->lock);
}

void duct__listener_each(duct__listener *l, void (*fn)(duct__conn *c, void *arg),
                         void *arg) {
  duct__conn_set_each(&l->set, fn, arg);
}

void duct__listener_free(duct__listener *l) {
  if (l == NULL)
    return;
  duct__listener_stop_accepting(l);
  if (l->started) {
    SetEvent(l->tick_stop);
    duct__thread_join(&l->ticker);
  }
  /* Every connection is closed (its read cancelled); the workers end each
   * one, and this returns when the last closed() has. */
  duct__conn_set_close_all(&l->set, l->started);
  /* Stopping means now: what an ended connection still had queued is
   * written only if the pipe takes it at once. A drain starting after the
   * walk sees drain_cut itself. */
  atomic_store(&l->drain_cut, 1);
  AcquireSRWLockExclusive(&l->lock);
  cancel_drains(l, 1);
  ReleaseSRWLockExclusive(&l->lock);
  /* Then the packets of cancelled writes and of cancelled accepts: the
   * workers must still be running for them. */
  wait_idle(l);
  if (l->started) {
    for (int i = 0; i < l->workers; i++)
      PostQueuedCompletionStatus(l->iocp, 0, KEY_QUIT, NULL);
    for (int i = 0; i < l->workers; i++)
      duct__thread_join(&l->threads[i]);
  }
  listener_destroy(l);
}
