/* runtime/win/server.c - the server side of the Windows transport.
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
 * either an accept (ConnectNamedPipe) or a read. A separate ticker thread
 * calls tick() every 100 ms, so timeouts never wait behind a long handler.
 *
 * Reads. Each connection has at most one ReadFile outstanding, and the
 * next one is only issued after message() has returned, so a connection
 * is served by one worker at a time. The first read of a message uses a
 * small buffer (4 KiB, or max_frame if smaller): idle connections cost
 * little memory. A message that does not fit fails the read with
 * ERROR_MORE_DATA, having delivered the part that fit; the rest is still
 * in the pipe, so the buffer grows to max_frame and the read continues
 * where it stopped. If the message fills even max_frame and there is
 * more, the connection is closed with DUCT_RESOURCE_EXHAUSTED: never
 * truncated, never delivered in part.
 *
 * Completion packets. For an overlapped call on a handle associated with
 * a port, Windows queues a packet whenever the call did not fail with an
 * error status: on TRUE, on ERROR_IO_PENDING, and also on ERROR_MORE_DATA
 * (STATUS_BUFFER_OVERFLOW is a warning, not an error). It queues none for
 * a real error, and none for ConnectNamedPipe's ERROR_PIPE_CONNECTED (a
 * client connected between CreateNamedPipe and ConnectNamedPipe), for
 * which we post the packet ourselves so all accepts take one path.
 *
 * Writes do not go through the port: duct__conn_send places an event in its
 * OVERLAPPED with the low-order bit set, which tells Windows not to queue
 * a packet, and waits on that event on the sending thread. Routing writes
 * through the port would deadlock a server with one worker whose handler
 * sends a reply and waits for the write's packet that only it could
 * dequeue.
 *
 * Closing. A connection is reference counted: one reference for the read
 * chain (the pending ReadFile or the worker handling its completion) and
 * one per duct__conn_send in progress. duct__conn_close only raises a flag
 * and cancels the pending I/O (CancelIoEx); the cancelled read completes
 * on a worker, which calls closed() - exactly once, since only the read
 * chain does - and drops its reference. The handle is closed and the
 * memory freed when the last reference goes, so nothing is freed while
 * the system may still write into an OVERLAPPED or a buffer. The server
 * end is closed without DisconnectNamedPipe: data already written (a last
 * reply, a GOAWAY) stays readable by the client until it reads
 * ERROR_BROKEN_PIPE, where DisconnectNamedPipe would discard it.
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

#define FIRST_READ 4096
#define TICK_MS 100
#define KEY_IO 0
#define KEY_QUIT 1

enum { OP_ACCEPT = 1, OP_READ = 2 };

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

struct duct__conn {
  op rd; /* first: a read packet's OVERLAPPED is the conn */
  duct__listener *l;
  HANDLE pipe;
  volatile LONG refs;
  volatile LONG closing;
  duct_code close_why; /* why closing was set */
  int opened;          /* open() accepted it: closed() is owed */
  void *state;
  uint8_t *buf;
  size_t cap, got;
  /* Sends: one at a time, each waiting on send_ev. */
  SRWLOCK send_lock;
  HANDLE send_ev;
  uint8_t *sbuf;
  size_t scap;
  duct__conn *prev, *next;
  duct_peer peer;
  char user[192];
};

struct duct__listener {
  HANDLE iocp;
  wchar_t *name;
  char pname[DUCT__WIN_PIPE_NAME_MAX * 3 + 1]; /* UTF-8, for messages */
  duct__srv_cb cb;
  void *core;
  int workers;
  uint32_t max_frame, max_connections, send_timeout_ms;
  int allow_remote;
  PSECURITY_DESCRIPTOR sd;
  SECURITY_ATTRIBUTES sa;

  SRWLOCK lock; /* guards everything below */
  CONDITION_VARIABLE idle; /* nconns and npending reached 0 */
  int accepting;
  int nslots;
  slot *slots;
  int npending; /* accept packets still to come */
  duct__conn *conns;
  uint32_t nconns;

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

/* ---- connections ---- */

static void conn_unref(duct__conn *c) {
  if (InterlockedDecrement(&c->refs) != 0)
    return;
  CloseHandle(c->pipe);
  CloseHandle(c->send_ev);
  duct__free(c->buf);
  duct__free(c->sbuf);
  duct__free(c);
}

/* The end of a connection's read chain, on a worker: closed() once (if the
 * core ever saw the connection), unlink, drop the chain's reference. */
static void conn_end(duct__conn *c, duct_code why, const char *detail) {
  duct__listener *l = c->l;
  /* From now on sends fail fast instead of writing to a dead connection. */
  InterlockedExchange(&c->closing, 1);
  if (c->opened)
    l->cb.closed(c->state, why, detail);
  AcquireSRWLockExclusive(&l->lock);
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    l->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  l->nconns--;
  if (l->nconns == 0 && l->npending == 0)
    WakeAllConditionVariable(&l->idle);
  ReleaseSRWLockExclusive(&l->lock);
  conn_unref(c);
}

static void conn_end_err(duct__conn *c, DWORD e, const char *what) {
  char detail[256];
  duct_code why;
  if (e == ERROR_BROKEN_PIPE || e == ERROR_PIPE_NOT_CONNECTED ||
      e == ERROR_NO_DATA) {
    /* The client closed its end: the orderly way to leave. */
    conn_end(c, DUCT_OK, NULL);
    return;
  }
  if (e == ERROR_OPERATION_ABORTED && c->closing) {
    conn_end(c, c->close_why, c->close_why == DUCT_UNAVAILABLE
                                  ? "the server is stopping"
                                  : "closed by the server");
    return;
  }
  why = duct__win_fail(NULL, e, "%s", what);
  char sys[192];
  duct__win_strerror(e, sys, sizeof sys);
  snprintf(detail, sizeof detail, "%s on %s: %s", what, c->l->pname, sys);
  conn_end(c, why, detail);
}

/* Issues the next ReadFile for c (into buf + got). On a synchronous error
 * no packet will come, so the chain ends here. */
static void post_read(duct__conn *c) {
  memset(&c->rd.ov, 0, sizeof c->rd.ov);
  c->rd.kind = OP_READ;
  if (c->closing) {
    conn_end_err(c, ERROR_OPERATION_ABORTED, "read");
    return;
  }
  BOOL ok = ReadFile(c->pipe, c->buf + c->got, (DWORD)(c->cap - c->got), NULL,
                     &c->rd.ov);
  DWORD e = ok ? 0 : GetLastError();
  if (ok || e == ERROR_IO_PENDING || e == ERROR_MORE_DATA) {
    /* A packet will come. A duct__conn_close that ran between the check
     * above and ReadFile found nothing to cancel: cancel it now. */
    if (c->closing)
      CancelIoEx(c->pipe, &c->rd.ov);
    return;
  }
  conn_end_err(c, e, "ReadFile");
}

static void on_read(duct__conn *c, DWORD n, DWORD e) {
  duct__listener *l = c->l;
  if (e == 0 || e == ERROR_MORE_DATA)
    c->got += n;
  if (e == ERROR_MORE_DATA) {
    if (c->got >= l->max_frame) {
      char detail[160];
      snprintf(detail, sizeof detail,
               "a message on %s is larger than max_frame (%lu bytes)",
               l->pname, (unsigned long)l->max_frame);
      conn_end(c, DUCT_RESOURCE_EXHAUSTED, detail);
      return;
    }
    if (c->got == c->cap) {
      uint8_t *nb = duct__realloc(c->buf, l->max_frame);
      if (nb == NULL) {
        conn_end(c, DUCT_RESOURCE_EXHAUSTED, "out of memory");
        return;
      }
      c->buf = nb;
      c->cap = l->max_frame;
    }
    post_read(c);
    return;
  }
  if (e != 0) {
    conn_end_err(c, e, "ReadFile");
    return;
  }
  if (c->closing) {
    conn_end_err(c, ERROR_OPERATION_ABORTED, "read");
    return;
  }
  size_t len = c->got;
  c->got = 0;
  /* 1 (a reply went out) changes nothing here: one ReadFile is pending
   * per connection either way. */
  if (l->cb.message(c->state, c->buf, len) < 0) {
    if (!c->closing) {
      c->close_why = DUCT_CANCELLED;
      InterlockedExchange(&c->closing, 1);
    }
    conn_end_err(c, ERROR_OPERATION_ABORTED, "read");
    return;
  }
  post_read(c);
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
    if (l->nconns == 0 && l->npending == 0)
      WakeAllConditionVariable(&l->idle);
    ReleaseSRWLockExclusive(&l->lock);
    return;
  }
  /* Listen again at once, before serving this client. */
  arm_slot(l, s);
  duct__conn *c = NULL;
  if (l->nconns < l->max_connections) {
    c = duct__calloc(1, sizeof *c);
    if (c != NULL) {
      c->buf = duct__malloc(l->max_frame < FIRST_READ ? l->max_frame : FIRST_READ);
      c->send_ev = CreateEventW(NULL, TRUE, FALSE, NULL);
      if (c->buf == NULL || c->send_ev == NULL) {
        if (c->send_ev != NULL)
          CloseHandle(c->send_ev);
        duct__free(c->buf);
        duct__free(c);
        c = NULL;
      }
    }
  }
  if (c == NULL) {
    /* Over max_connections (or out of memory): accept and close at once;
     * the client reads ERROR_BROKEN_PIPE. */
    ReleaseSRWLockExclusive(&l->lock);
    CloseHandle(h);
    return;
  }
  c->l = l;
  c->pipe = h;
  c->refs = 1;
  c->cap = l->max_frame < FIRST_READ ? l->max_frame : FIRST_READ;
  InitializeSRWLock(&c->send_lock);
  c->peer.user = c->user;
  c->next = l->conns;
  if (l->conns != NULL)
    l->conns->prev = c;
  l->conns = c;
  l->nconns++;
  ReleaseSRWLockExclusive(&l->lock);

  /* Who is it? The process id comes from the pipe; the user from the
   * client's token (see security.c for when that needs a fallback). */
  ULONG pid = 0;
  if (!GetNamedPipeClientProcessId(c->pipe, &pid))
    pid = 0;
  c->peer.pid = (uint32_t)pid;
  duct__win_client_user(c->pipe, pid, c->user, sizeof c->user);
  c->state = l->cb.open(l->core, c, &c->peer);
  if (c->state == NULL) {
    /* Refused: closed() is not owed; the client reads ERROR_BROKEN_PIPE. */
    conn_end(c, DUCT_PERMISSION_DENIED, NULL);
    return;
  }
  c->opened = 1;
  post_read(c);
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
  if (o->kind == OP_ACCEPT)
    on_accept(l, (slot *)o, e);
  else
    on_read((duct__conn *)o, n, e);
  return 1;
}

static void worker_main(void *arg) {
  duct__listener *l = arg;
  while (run_once(l, INFINITE) != 0) {
  }
}

static void ticker_main(void *arg) {
  duct__listener *l = arg;
  while (WaitForSingleObject(l->tick_stop, TICK_MS) == WAIT_TIMEOUT) {
    if (l->cb.tick != NULL)
      l->cb.tick(l->core);
    /* Slots left empty when the system refused an instance get another
     * chance here. */
    AcquireSRWLockExclusive(&l->lock);
    for (int i = 0; l->accepting && i < l->nslots; i++)
      if (l->slots[i].pipe == NULL && !l->slots[i].pending)
        arm_slot(l, &l->slots[i]);
    ReleaseSRWLockExclusive(&l->lock);
  }
}

/* ---- the listener ---- */

/* Waits until no connection and no accept packet is left. Without worker
 * threads (a listener never started, or failing in duct__listen) the
 * calling thread handles the packets itself. */
static void wait_idle(duct__listener *l) {
  if (l->started) {
    AcquireSRWLockExclusive(&l->lock);
    while (l->nconns != 0 || l->npending != 0)
      SleepConditionVariableSRW(&l->idle, &l->lock, INFINITE, 0);
    ReleaseSRWLockExclusive(&l->lock);
    return;
  }
  for (;;) {
    AcquireSRWLockExclusive(&l->lock);
    int busy = l->nconns != 0 || l->npending != 0;
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
  duct_code rc = duct__win_pipe_name(address, &l->name, err);
  if (rc != DUCT_OK) {
    duct__free(l);
    return rc;
  }
  duct__win_narrow(l->name, l->pname, sizeof l->pname);
  l->cb = *cb;
  l->core = core;
  l->workers = o->workers;
  l->max_frame = o->max_frame;
  l->max_connections = o->max_connections ? o->max_connections : UINT32_MAX;
  l->send_timeout_ms = o->send_timeout_ms;
  l->allow_remote = o->allow_remote;
  InitializeSRWLock(&l->lock);
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

void duct__listener_free(duct__listener *l) {
  if (l == NULL)
    return;
  duct__listener_stop_accepting(l);
  if (l->started) {
    SetEvent(l->tick_stop);
    duct__thread_join(&l->ticker);
  }
  AcquireSRWLockExclusive(&l->lock);
  for (duct__conn *c = l->conns; c != NULL; c = c->next) {
    if (!c->closing) {
      c->close_why = DUCT_UNAVAILABLE;
      InterlockedExchange(&c->closing, 1);
    }
    /* Cancels the pending read (and any send in progress); a read being
     * handled right now sees the flag when message() returns. */
    CancelIoEx(c->pipe, NULL);
  }
  ReleaseSRWLockExclusive(&l->lock);
  wait_idle(l);
  if (l->started) {
    for (int i = 0; i < l->workers; i++)
      PostQueuedCompletionStatus(l->iocp, 0, KEY_QUIT, NULL);
    for (int i = 0; i < l->workers; i++)
      duct__thread_join(&l->threads[i]);
  }
  listener_destroy(l);
}

/* ---- sending ---- */

duct_code duct__conn_send(duct__conn *c, const duct__iov *iov, int n) {
  if (c->closing)
    return DUCT_UNAVAILABLE;
  InterlockedIncrement(&c->refs);
  AcquireSRWLockExclusive(&c->send_lock);
  duct_code rc = DUCT_OK;
  const void *data = NULL;
  size_t len = 0;
  for (int i = 0; i < n; i++)
    len += iov[i].len;
  if (n == 1) {
    data = iov[0].base;
  } else if (len > 0) {
    /* WriteFile takes one buffer; gather the pieces (header and payload)
     * so they leave as one message. */
    if (c->scap < len) {
      uint8_t *nb = duct__realloc(c->sbuf, len);
      if (nb == NULL) {
        rc = DUCT_RESOURCE_EXHAUSTED;
        goto out;
      }
      c->sbuf = nb;
      c->scap = len;
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
      if (iov[i].len > 0)
        memcpy(c->sbuf + off, iov[i].base, iov[i].len);
      off += iov[i].len;
    }
    data = c->sbuf;
  }
  if (len > MAXDWORD) {
    rc = DUCT_INVALID_ARGUMENT;
    goto out;
  }
  OVERLAPPED ov;
  memset(&ov, 0, sizeof ov);
  /* The low-order bit: no completion packet for this write (see top). */
  ov.hEvent = (HANDLE)((ULONG_PTR)c->send_ev | 1);
  DWORD wrote = 0, e = 0;
  int timed_out = 0;
  BOOL ok = WriteFile(c->pipe, data, (DWORD)len, NULL, &ov);
  if (!ok && (e = GetLastError()) == ERROR_IO_PENDING) {
    if (c->closing)
      CancelIoEx(c->pipe, &ov);
    DWORD ms = c->l->send_timeout_ms ? c->l->send_timeout_ms : INFINITE;
    if (WaitForSingleObject(c->send_ev, ms) == WAIT_TIMEOUT) {
      /* The client does not read. Cancel, then wait for the cancellation
       * to land: the OVERLAPPED is on this stack. */
      CancelIoEx(c->pipe, &ov);
      timed_out = 1;
      WaitForSingleObject(c->send_ev, INFINITE);
    }
    ok = GetOverlappedResult(c->pipe, &ov, &wrote, FALSE);
    e = ok ? 0 : GetLastError();
  } else if (ok) {
    GetOverlappedResult(c->pipe, &ov, &wrote, FALSE);
  }
  if (ok)
    rc = wrote == len ? DUCT_OK : DUCT_UNAVAILABLE;
  else if (e == ERROR_OPERATION_ABORTED)
    rc = timed_out ? DUCT_DEADLINE_EXCEEDED : DUCT_UNAVAILABLE;
  else
    rc = duct__win_code(e) == DUCT_RESOURCE_EXHAUSTED ? DUCT_RESOURCE_EXHAUSTED
                                                       : DUCT_UNAVAILABLE;
out:
  ReleaseSRWLockExclusive(&c->send_lock);
  conn_unref(c);
  return rc;
}

void duct__conn_close(duct__conn *c) {
  if (c->closing)
    return;
  c->close_why = DUCT_CANCELLED;
  if (InterlockedExchange(&c->closing, 1) == 0)
    CancelIoEx(c->pipe, NULL);
}
