/* runtime/win/client.c - the client side of the Windows transport: one
 * duct__link is one overlapped handle to a pipe instance, in message read
 * mode. One thread may send while another receives (a channel's reader
 * thread and its senders): overlapped I/O lets a ReadFile and a WriteFile
 * be pending on one handle at once, and each direction has its own event
 * (rev, wev), so neither waits on, or resets, the other's.
 *
 * Every operation is overlapped and waited for on its direction's event
 * with the caller's deadline; on the deadline the operation is cancelled
 * with CancelIoEx and the cancellation itself is waited for (the
 * OVERLAPPED lives on the caller's stack, and the system writes to it
 * until the operation has really ended). A link handle is never
 * associated with a completion port, so no packets are involved.
 *
 * duct__link_shutdown sets `shut` and cancels every operation pending on
 * the handle (CancelIoEx with no OVERLAPPED: all of them, whichever
 * thread issued them). The waiting thread sees its operation end with
 * ERROR_OPERATION_ABORTED, still waits for that end as for a deadline's
 * cancel, and returns DUCT_UNAVAILABLE. A thread that issues its
 * operation just after the shutdown's CancelIoEx looked finds `shut` set
 * when it checks right after issuing, and cancels its own. The handle is
 * closed only by duct__link_close, so the pipe end (and the server's view
 * of the connection) stays until then.
 *
 * A unary call is one TransactNamedPipe: it writes the request and reads
 * the reply in one system call (one kernel transition instead of two, and
 * no window between the two for another thread). It needs a contiguous
 * request buffer and a pipe in message read mode, and fails with
 * ERROR_PIPE_BUSY when the pipe holds unread data (a message the server
 * sent on its own, such as GOAWAY) or a read is pending; the link then
 * falls back to WriteFile + ReadFile, which delivers that earlier message
 * first, exactly as sendmsg + recvmsg do on POSIX. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/sys.h"
#include "runtime/win/win.h"
#include "runtime/alloc.h"
#include "runtime/frame.h"

/* Backoff while no server has created the pipe yet. */
#define RETRY_MIN_MS 1
#define RETRY_MAX_MS 50
/* Longest single WaitNamedPipe while all instances are busy; the loop
 * then tries CreateFile again (the server may have gone meanwhile). */
#define BUSY_WAIT_MAX_MS 1000

struct duct__link {
  HANDLE pipe;
  /* Manual reset; the system resets one when an I/O using it starts. rev
   * is for reads and transactions (the receiving side), wev for writes. */
  HANDLE rev, wev;
  uint8_t *wbuf; /* the senders' gather buffer */
  size_t wcap;
  uint32_t server_pid;
  atomic_int broken; /* a message was too large: the pipe is out of step */
  atomic_int shut;   /* duct__link_shutdown was called */
};

static DWORD ms_until(int64_t deadline_ms) {
  if (deadline_ms < 0)
    return INFINITE;
  int64_t left = deadline_ms - duct__now_ms();
  if (left <= 0)
    return 0;
  return left >= (int64_t)INFINITE ? INFINITE - 1 : (DWORD)left;
}

duct_code duct__link_open(const char *address, int64_t deadline_ms,
                          duct__link **out, duct__err *err) {
  return duct__link_open_opts(address, NULL, deadline_ms, out, err);
}

duct_code duct__link_open_opts(const char *address, const duct__link_opts *o,
                               int64_t deadline_ms, duct__link **out,
                               duct__err *err) {
  *out = NULL;
  const char *expect = o != NULL ? o->expect_user : NULL;
  /* A malformed expected user is refused at once, not after waiting for
   * a server to appear. */
  duct_code rc = duct__win_check_expect(expect, err);
  if (rc != DUCT_OK)
    return rc;
  wchar_t *name = NULL;
  rc = duct__win_pipe_name(address, &name, err);
  if (rc != DUCT_OK)
    return rc;
  char pname[DUCT__WIN_PIPE_NAME_MAX * 3 + 1];
  duct__win_narrow(name, pname, sizeof pname);
  DWORD backoff = RETRY_MIN_MS;
  HANDLE h;
  for (;;) {
    /* SECURITY_IDENTIFICATION: the server may learn who we are, but may
     * not act as us (impersonation level "identify" only). Not
     * GENERIC_WRITE: for a pipe it includes FILE_APPEND_DATA, which is
     * FILE_CREATE_PIPE_INSTANCE (0x4), and a DACL that rightly withholds
     * that right from clients (docs/WINDOWS.md) would refuse the open.
     * Writing messages needs FILE_WRITE_DATA; SetNamedPipeHandleState
     * (message read mode) needs FILE_WRITE_ATTRIBUTES. */
    h = CreateFileW(name,
                    GENERIC_READ | FILE_WRITE_DATA | FILE_WRITE_ATTRIBUTES, 0,
                    NULL, OPEN_EXISTING,
                    FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT |
                        SECURITY_IDENTIFICATION,
                    NULL);
    if (h != INVALID_HANDLE_VALUE)
      break;
    DWORD e = GetLastError();
    DWORD left = ms_until(deadline_ms);
    if (e == ERROR_PIPE_BUSY) {
      /* Every instance has a client: wait for the server to offer one. */
      if (left == 0) {
        rc = duct__win_msg(err, DUCT_UNAVAILABLE,
                           "every instance of %s stayed busy until the "
                           "deadline", pname);
        break;
      }
      /* 0 would mean "the server's default timeout": ask for >= 1 ms. */
      if (!WaitNamedPipeW(name, left < BUSY_WAIT_MAX_MS ? left : BUSY_WAIT_MAX_MS)
          && GetLastError() == ERROR_FILE_NOT_FOUND)
        Sleep(RETRY_MIN_MS);
      continue;
    }
    if (e == ERROR_FILE_NOT_FOUND) {
      /* No server yet (or between two instances): retry until the
       * deadline with a short, growing pause. */
      if (left == 0) {
        rc = duct__win_msg(err, DUCT_UNAVAILABLE, "no duct server at %s",
                           pname);
        break;
      }
      Sleep(backoff < left ? backoff : left);
      backoff = backoff * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : backoff * 2;
      continue;
    }
    if (e == ERROR_ACCESS_DENIED)
      rc = duct__win_fail(err, e, "%s: the server's security descriptor "
                                  "does not admit this user", pname);
    else
      rc = duct__win_fail(err, e, "CreateFile %s", pname);
    break;
  }
  duct__free(name);
  if (h == INVALID_HANDLE_VALUE)
    return rc;

  /* A client handle starts in byte read mode; message mode makes each
   * ReadFile return one message and enables TransactNamedPipe. */
  DWORD mode = PIPE_READMODE_MESSAGE;
  duct__link *l = duct__calloc(1, sizeof *l);
  if (l == NULL) {
    CloseHandle(h);
    return duct__win_msg(err, DUCT_RESOURCE_EXHAUSTED, "out of memory");
  }
  l->pipe = h;
  if (!SetNamedPipeHandleState(h, &mode, NULL, NULL)) {
    rc = duct__win_fail(err, GetLastError(),
                        "%s: setting message read mode", pname);
    duct__link_close(l);
    return rc;
  }
  l->rev = CreateEventW(NULL, TRUE, FALSE, NULL);
  l->wev = CreateEventW(NULL, TRUE, FALSE, NULL);
  if (l->rev == NULL || l->wev == NULL) {
    rc = duct__win_fail(err, GetLastError(), "CreateEvent");
    duct__link_close(l);
    return rc;
  }
  /* Who serves this instance, before anything is sent (security.c). */
  DWORD pid = 0;
  rc = duct__win_check_server(h, pname, expect, &pid, err);
  if (rc != DUCT_OK) {
    duct__link_close(l);
    return rc;
  }
  l->server_pid = (uint32_t)pid;
  *out = l;
  return DUCT_OK;
}

void duct__link_close(duct__link *l) {
  if (l == NULL)
    return;
  if (l->pipe != NULL)
    CloseHandle(l->pipe);
  if (l->rev != NULL)
    CloseHandle(l->rev);
  if (l->wev != NULL)
    CloseHandle(l->wev);
  duct__free(l->wbuf);
  duct__free(l);
}

uint32_t duct__link_peer_pid(const duct__link *l) { return l->server_pid; }

/* Finishes an overlapped call that returned `ok`, whose OVERLAPPED
 * signals ov->hEvent: waits up to the deadline, cancels on expiry.
 * Returns the Win32 result (0, ERROR_MORE_DATA, ...); *timed_out says the
 * deadline cancelled it. */
static DWORD finish(duct__link *l, OVERLAPPED *ov, BOOL ok, int64_t deadline_ms,
                    DWORD *n, int *timed_out) {
  DWORD e = ok ? 0 : GetLastError();
  *n = 0;
  *timed_out = 0;
  if (!ok && e != ERROR_IO_PENDING && e != ERROR_MORE_DATA)
    return e; /* failed before it started: the OVERLAPPED is untouched */
  /* A shutdown whose CancelIoEx ran before this operation was issued did
   * not reach it: cancel it ourselves (see the top of the file). */
  if (e == ERROR_IO_PENDING && atomic_load(&l->shut))
    CancelIoEx(l->pipe, ov);
  if (e == ERROR_IO_PENDING &&
      WaitForSingleObject(ov->hEvent, ms_until(deadline_ms)) == WAIT_TIMEOUT) {
    CancelIoEx(l->pipe, ov);
    WaitForSingleObject(ov->hEvent, INFINITE);
    *timed_out = 1;
  }
  if (GetOverlappedResult(l->pipe, ov, n, FALSE)) {
    *timed_out = 0; /* it completed before the cancel reached it */
    return 0;
  }
  e = GetLastError();
  if (e != ERROR_OPERATION_ABORTED)
    *timed_out = 0;
  return e;
}

static duct_code result(duct__link *l, DWORD e, int timed_out) {
  /* Shut down: whatever ended the operation (our cancel, the deadline's,
   * a peer that left meanwhile), the answer is the one transport.h
   * gives for a link that was shut. */
  if (atomic_load(&l->shut))
    return DUCT_UNAVAILABLE;
  if (timed_out)
    return DUCT_DEADLINE_EXCEEDED;
  if (e == ERROR_MORE_DATA) {
    /* The rest of the message is still in the pipe; the next read would
     * return it as if it were a message. The link is out of step. */
    atomic_store(&l->broken, 1);
    return DUCT_RESOURCE_EXHAUSTED;
  }
  return duct__win_code(e);
}

/* A call may start: not broken, not shut down. */
static int usable(duct__link *l) {
  return !atomic_load(&l->broken) && !atomic_load(&l->shut);
}

/* One contiguous buffer for the message (WriteFile and TransactNamedPipe
 * take one). */
static duct_code gather(duct__link *l, const duct__iov *iov, int n,
                        const void **data, DWORD *len) {
  size_t total = 0;
  for (int i = 0; i < n; i++)
    total += iov[i].len;
  if (total > MAXDWORD)
    return DUCT_INVALID_ARGUMENT;
  *len = (DWORD)total;
  if (n == 1) {
    *data = iov[0].base;
    return DUCT_OK;
  }
  if (l->wcap < total) {
    uint8_t *nb = duct__realloc(l->wbuf, total);
    if (nb == NULL)
      return DUCT_RESOURCE_EXHAUSTED;
    l->wbuf = nb;
    l->wcap = total;
  }
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    if (iov[i].len > 0)
      memcpy(l->wbuf + off, iov[i].base, iov[i].len);
    off += iov[i].len;
  }
  *data = l->wbuf;
  return DUCT_OK;
}

static duct_code write_msg(duct__link *l, const void *data, DWORD len,
                           int64_t deadline_ms) {
  OVERLAPPED ov;
  memset(&ov, 0, sizeof ov);
  ov.hEvent = l->wev;
  DWORD n;
  int timed_out;
  BOOL ok = WriteFile(l->pipe, data, len, NULL, &ov);
  DWORD e = finish(l, &ov, ok, deadline_ms, &n, &timed_out);
  if (e == 0 && n != len)
    e = ERROR_NO_DATA;
  return e == 0 ? DUCT_OK : result(l, e, timed_out);
}

duct_code duct__link_send(duct__link *l, const duct__iov *iov, int n,
                          int64_t deadline_ms) {
  if (!usable(l))
    return DUCT_UNAVAILABLE;
  const void *data;
  DWORD len;
  duct_code rc = gather(l, iov, n, &data, &len);
  if (rc != DUCT_OK)
    return rc;
  return write_msg(l, data, len, deadline_ms);
}

duct_code duct__link_recv(duct__link *l, uint8_t *buf, size_t cap,
                          size_t *len, int64_t deadline_ms) {
  *len = 0;
  if (!usable(l))
    return DUCT_UNAVAILABLE;
  OVERLAPPED ov;
  memset(&ov, 0, sizeof ov);
  ov.hEvent = l->rev;
  DWORD n;
  int timed_out;
  DWORD want = cap > MAXDWORD ? MAXDWORD : (DWORD)cap;
  BOOL ok = ReadFile(l->pipe, buf, want, NULL, &ov);
  DWORD e = finish(l, &ov, ok, deadline_ms, &n, &timed_out);
  if (e != 0)
    return result(l, e, timed_out);
  *len = n;
  return DUCT_OK;
}

duct_code duct__link_transact(duct__link *l, const duct__iov *iov, int n,
                              uint8_t *buf, size_t cap, size_t *len,
                              int64_t deadline_ms) {
  *len = 0;
  if (!usable(l))
    return DUCT_UNAVAILABLE;
  const void *data;
  DWORD wlen;
  duct_code rc = gather(l, iov, n, &data, &wlen);
  if (rc != DUCT_OK)
    return rc;
  /* A transaction is both directions, but its caller is the only one
   * using the link (transport.h): the receiving side's event. */
  OVERLAPPED ov;
  memset(&ov, 0, sizeof ov);
  ov.hEvent = l->rev;
  DWORD got = 0;
  DWORD want = cap > MAXDWORD ? MAXDWORD : (DWORD)cap;
  BOOL ok = TransactNamedPipe(l->pipe, (void *)data, wlen, buf, want, &got, &ov);
  if (!ok && GetLastError() == ERROR_PIPE_BUSY) {
    /* Unread data in the pipe (see top): write, then read the next
     * message, whatever it is. */
    rc = write_msg(l, data, wlen, deadline_ms);
    if (rc != DUCT_OK)
      return rc;
    return duct__link_recv(l, buf, cap, len, deadline_ms);
  }
  int timed_out;
  DWORD e = finish(l, &ov, ok, deadline_ms, &got, &timed_out);
  if (e != 0)
    return result(l, e, timed_out);
  *len = got;
  return DUCT_OK;
}

void duct__link_shutdown(duct__link *l) {
  /* The flag first: a thread that issues its operation after the cancel
   * below has looked sees it (finish) and cancels its own. */
  atomic_store(&l->shut, 1);
  /* No OVERLAPPED: every operation pending on the handle, from any
   * thread of this process. ERROR_NOT_FOUND (nothing pending) is fine. */
  CancelIoEx(l->pipe, NULL);
}

/* A pipe's ReadFile fills one buffer, so the message is read from
 * head_cap bytes before `tail`, over bytes of the caller's that are kept
 * aside meanwhile (transport.h allows it), and its head is then copied out
 * and those bytes put back: a copy of a header instead of the whole
 * fragment, and still one ReadFile. finish() returns only once the read is
 * over, cancelled or not, so nothing writes there after the put-back. */
duct_code duct__link_recv_into(duct__link *l, uint8_t *head, size_t head_cap, uint8_t *tail,
                               size_t tail_cap, size_t *len, int64_t deadline_ms) {
  uint8_t kept[DUCT__HEADER_SIZE];
  if (tail == NULL || head_cap > sizeof kept)
    return duct__link_recv(l, head, head_cap, len, deadline_ms);
  uint8_t *at = tail - head_cap;
  memcpy(kept, at, head_cap);
  duct_code rc = duct__link_recv(l, at, head_cap + tail_cap, len, deadline_ms);
  if (rc == DUCT_OK)
    memcpy(head, at, *len < head_cap ? *len : head_cap);
  memcpy(at, kept, head_cap);
  return rc;
}
