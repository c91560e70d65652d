/* runtime/transport.h - the internal transport interface: one table of
 * operations (duct__transport_ops) per transport.
 *
 * Everything above this line (server/, client/ and the shared runtime files) is the same
 * on every system; everything below it lives in runtime/posix/ (AF_UNIX
 * SOCK_SEQPACKET + epoll) or runtime/win/ (message-mode overlapped named
 * pipes + IOCP + TransactNamedPipe). CMake builds exactly one of them.
 *
 * The unit is one whole transport message, which on the wire is one duct
 * frame (docs/PROTOCOL.md). A transport never splits, joins or truncates
 * messages: a message larger than the receiver's max_frame is an error
 * (MSG_TRUNC on POSIX, ERROR_MORE_DATA past the limit on Windows), never
 * silently cut.
 *
 * Server side: the transport owns the listening endpoint, accepting, the
 * worker threads and the event loop (epoll / IOCP). Each connection is a
 * duct__conn (runtime/conn.h), embedded first in the platform's own
 * struct: the lifecycle, the connection set, admission, timeouts and the
 * send queue are shared code; the platform arms reads, completes them,
 * writes and wakes.
 *
 * Reading. The transport delivers each incoming message to the core
 * through duct__srv_cb on a worker thread, one message at a time per
 * connection: the next read is only armed after message() returns
 * (EPOLLONESHOT / one pending ReadFile), so message() is never called
 * concurrently for one connection and the core needs no per-connection
 * lock for its receive state. A message that starts work which must not
 * hold the read (a handler that may run long, while a CANCEL or a
 * disconnect must still be seen) returns 2 from message(): the transport
 * re-arms the read first and then calls run() on the same thread, so
 * further messages of that connection are delivered on other workers
 * while run() works, and one connection may have several run()s going.
 *
 * Writing. Sends never wait for the peer: what the system does not take
 * at once is queued and written as the peer drains it. Any thread may
 * send on a connection it holds (a worker inside message() or run(), an
 * application thread streaming, a stop), on every transport: POSIX
 * watches for writability on its own epoll registration, independent of
 * the read (runtime/posix/listener.c), Windows writes through the port.
 * duct__conn_queued and duct__conn_want_drained let a stream wait for
 * its peer without blocking a thread (back-pressure).
 *
 * Client side: a duct__link is one connection. At most one thread sends
 * on it and at most one receives at a time, and those two may be
 * different threads working at once (a channel's reader thread and its
 * senders); link_shutdown wakes both from any thread. */
#ifndef DUCT_RUNTIME_TRANSPORT_H
#define DUCT_RUNTIME_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "duct/service.h"
#include "duct/status.h"

/* A piece of an outgoing message; a message is at most 2 pieces (frame
 * header, payload slice), sent as one transport message. */
typedef struct duct__iov {
  const void *base;
  size_t len;
} duct__iov;

/* Diagnostics: functions that fail fill a caller's buffer with one line
 * that names the address and the system's reason, e.g.
 * "bind /run/user/1000/duct/kv: Address already in use (a live server
 * holds it)". */
typedef struct duct__err {
  char text[256];
} duct__err;

/* ---- Server side ---- */

typedef struct duct__listener duct__listener;
typedef struct duct__conn duct__conn;
typedef struct duct__loan duct__loan; /* runtime/conn.h */

typedef struct duct__srv_cb {
  /* A connection was accepted. Return the core's state for it, or NULL to
   * refuse it (the transport closes it; closed() is not called). `peer`
   * is borrowed for the connection's lifetime. */
  void *(*open)(void *core, duct__conn *c, const duct_peer *peer);
  /* One whole message arrived. `msg` is borrowed for the call. Never
   * called concurrently for one connection (but see run()). Returns:
   *   0  keep reading;
   *  -1  close the connection;
   *   1  keep it but stop looking for more messages for now: the core has
   *      just answered a request, so the peer is waiting for that reply
   *      and nothing else can be queued yet (the transport re-arms at once
   *      instead of spending a read on an empty socket; anything that does
   *      arrive is still delivered);
   *   2  re-arm this connection's read now, then call run(conn_state)
   *      once, on this same thread. The transport reads no more messages
   *      in this batch; it re-arms before calling run(), so other workers
   *      may deliver further messages (message()) and the end (closed())
   *      of this connection while run() works. Only with run set.
   *      (POSIX may hold a connection instead, for the system calls it
   *      saves: run() first, the read re-armed by the tick only if run()
   *      lasts, and this thread reads on afterwards. It never does so on
   *      a connection the core marked multiplexed (runtime/conn.h), so a
   *      core that can have two calls open on one connection sets that
   *      flag when it has.) */
  int (*message)(void *conn_state, const uint8_t *msg, size_t len);
  /* Optional, for a transport that can read into place: where the
   * payload of the next message may be received, with *room bytes there,
   * or NULL. Asked before a read, by the thread that will deliver that
   * message or (Windows, where the read completes on any worker) by the
   * one that delivered the message before it, after message() returned:
   * never beside a message() of the same connection. The core offers the
   * free end of a message arriving in fragments, so the fragments after
   * the first are never copied.
   * The DUCT__HEADER_SIZE bytes just before the slot belong to the same
   * buffer (they are the end of what the message has received so far),
   * and a transport that cannot scatter a read (a message-mode pipe's
   * ReadFile fills one buffer) may borrow them: it reads the whole
   * message from slot - DUCT__HEADER_SIZE, then copies the header out and
   * puts those bytes back before its next callback of that connection
   * (message_placed(), message(), violation(), or closed(), which may free
   * the buffer), however the read ended. The core touches that buffer
   * only from those callbacks (not from run()), so nobody sees it
   * borrowed. */
  uint8_t *(*rx_slot)(void *conn_state, size_t *room);
  /* With rx_slot: one whole message of `len` bytes whose first
   * DUCT__HEADER_SIZE bytes are at `hdr` (borrowed for the call) and the
   * rest at the slot rx_slot gave. Returns as message() does. A message
   * shorter than a header read after asking rx_slot comes to message()
   * instead (the slot is then untouched). */
  int (*message_placed)(void *conn_state, const uint8_t *hdr, size_t len);
  /* After message() returned 2: exactly once, on the thread that called
   * that message(), after the read was re-armed (even when re-arming
   * failed, or the connection ended meanwhile). What holds during run():
   *  - conn_state is the pointer message() had; the transport does not
   *    keep it alive. run() may overlap message() and closed() of the same
   *    connection, and may start after closed() has returned, so a core
   *    that frees its state in closed() holds a reference of its own
   *    across run() (taken in message(), before returning 2).
   *  - The transport touches the duct__conn no more after re-arming: a
   *    core that sends on it or closes it from run() holds a reference on
   *    it (duct__conn_ref, runtime/conn.h, taken in message()), dropped
   *    when done. Such sends are ordinary sends from any thread.
   *  - The message buffer message() borrowed is gone.
   *  - The listener stays alive: listener_free waits for every run(). */
  void (*run)(void *conn_state);
  /* The connection ended (peer closed, error, a close asked for, a
   * timeout, or the listener stopping). Exactly once, and the last
   * callback for it except a run() or drained() already owed, which may
   * overlap or follow it (see those). The duct__conn must not be used
   * afterwards except under a reference taken before (duct__conn_ref):
   * sends then return DUCT_UNAVAILABLE. `why` is DUCT_OK for an orderly
   * close by the peer, else the first reason recorded; detail may be
   * NULL. */
  void (*closed)(void *conn_state, duct_code why, const char *detail);
  /* Optional: the connection is about to be closed to make room for a new
   * one at max_connections (any thread; it was idle): the core may say
   * goodbye with duct__conn_send_nowait. */
  void (*evict)(void *conn_state, const char *why);
  /* Optional: the transport is about to close the connection for a rule
   * it enforces itself (a message over max_frame): the core logs it and
   * may say GOAWAY with duct__conn_send_nowait. From the worker that
   * holds the read, in place of the message(). */
  void (*violation)(void *conn_state, duct_code code, const char *why);
  /* Optional: called about every 100 ms on one transport thread. */
  void (*tick)(void *core);
  /* Optional: the answer to conn_want_drained: the connection's send
   * queue became empty (or the connection ended, so it never will). Any
   * thread, no duct lock held; may be called from inside
   * conn_want_drained itself, so the core must not hold a lock there
   * that drained() takes. It may also overlap or follow closed(): a core
   * that frees its state in closed() holds a reference of its own for
   * the drained() it is owed. */
  void (*drained)(void *conn_state);
} duct__srv_cb;

typedef struct duct__listen_opts {
  int workers;              /* threads calling the callbacks; >= 1 */
  uint32_t max_frame;       /* largest message accepted (header included) */
  /* Beyond this many, the longest-idle connection makes room for a new
   * one (runtime/conn.h); with none idle the new one is closed at once. */
  uint32_t max_connections;
  /* How long a partial message, the HELLO or an unread reply may stall
   * before the connection is closed. */
  uint32_t idle_timeout_ms;
  size_t queue_cap; /* bytes one connection may have queued for sending */
  int allow_group;          /* POSIX: socket dir 0750 instead of 0700 */
  const char *sddl;         /* Windows: DACL override */
  int null_dacl;            /* Windows: explicit NULL DACL */
  int allow_remote;         /* Windows: no PIPE_REJECT_REMOTE_CLIENTS */
} duct__listen_opts;

/* Binds address and starts listening (no threads yet). Errors:
 * DUCT_ALREADY_EXISTS (a live server holds the address, or another process
 * owns the pipe name), DUCT_PERMISSION_DENIED, DUCT_INVALID_ARGUMENT (bad
 * address), DUCT_UNAVAILABLE (other system errors). */
duct_code duct__listen(const char *address, const duct__listen_opts *o,
                       const duct__srv_cb *cb, void *core,
                       duct__listener **out, duct__err *err);
/* Starts the worker threads; callbacks begin. */
duct_code duct__listener_start(duct__listener *l);
/* Stops accepting new connections; existing ones keep being served. */
void duct__listener_stop_accepting(duct__listener *l);
/* Closes every connection (closed() for each), waits until each one's
 * memory is freed, joins the threads, frees. So every reference a core
 * holds on a duct__conn (duct__conn_ref) must be dropped by the time
 * closed() and any run() of that connection have returned, or soon after
 * on another thread: listener_free waits for it. */
void duct__listener_free(duct__listener *l);
/* Calls fn for every open connection, with a reference held and no lock
 * (runtime/conn.h's duct__conn_set_each). */
void duct__listener_each(duct__listener *l, void (*fn)(duct__conn *c, void *arg),
                         void *arg);

/* duct__conn_send, duct__conn_send_nowait, duct__conn_close,
 * duct__conn_queued and duct__conn_want_drained are runtime/conn.h's,
 * shared by every transport, and reached by the cores through the table
 * (conn_*). A core may also call duct__conn_ref / duct__conn_unref and
 * read the duct__conn's idle-clock fields directly: every table's
 * connections are duct__conns set up by duct__conn_init, the test tables'
 * included. */

/* ---- Client side ---- */

typedef struct duct__link duct__link;

/* What a client asks of a new link. */
typedef struct duct__link_opts {
  /* The user the server must run as, in duct_peer.user's format (decimal
   * uid / SID string); NULL or "": the default rule, this process's own
   * user or root / LocalSystem / Administrators (duct/client.h,
   * expect_server_user). Borrowed for the call. */
  const char *expect_user;
} duct__link_opts;

/* Connects to address, retrying while the server is absent or busy until
 * the monotonic time deadline_ms (duct__now_ms scale; -1 = forever), then
 * checks who the server is (o; NULL = the default rule) before anything
 * is sent. DUCT_UNAVAILABLE when nobody listened in time,
 * DUCT_PERMISSION_DENIED (not admitted, or the server is not the expected
 * user, or who it is cannot be found out; err names both users),
 * DUCT_INVALID_ARGUMENT for a bad address or an expect_user this system
 * cannot read. */
duct_code duct__link_open_opts(const char *address, const duct__link_opts *o,
                               int64_t deadline_ms, duct__link **out,
                               duct__err *err);
/* duct__link_open_opts with the default rule (o = NULL). */
duct_code duct__link_open(const char *address, int64_t deadline_ms,
                          duct__link **out, duct__err *err);
/* Sends one message. May run while another thread is in duct__link_recv
 * on the same link; never two sends at once. */
duct_code duct__link_send(duct__link *l, const duct__iov *iov, int n,
                          int64_t deadline_ms);
/* Receives one message into buf (cap bytes). DUCT_RESOURCE_EXHAUSTED if
 * the message is larger than cap (the link is then unusable). May run
 * while another thread is in duct__link_send; never two receives at
 * once. */
duct_code duct__link_recv(duct__link *l, uint8_t *buf, size_t cap,
                          size_t *len, int64_t deadline_ms);
/* duct__link_recv with a scatter read: the message's first head_cap bytes
 * into head, the rest (up to tail_cap) into tail; *len is the whole
 * length. A client receives a reply's later fragments straight into the
 * reassembly buffer this way. The head_cap (at most DUCT__HEADER_SIZE)
 * bytes just before tail must be the caller's, in the same buffer: a
 * transport that reads one buffer per message (Windows: a pipe's
 * ReadFile) borrows them and puts them back before it returns, as
 * duct__reasm_slot's slots allow. DUCT_UNIMPLEMENTED, with nothing read,
 * where a platform cannot; receive with duct__link_recv then. */
duct_code duct__link_recv_into(duct__link *l, uint8_t *head, size_t head_cap, uint8_t *tail,
                               size_t tail_cap, size_t *len, int64_t deadline_ms);
/* Sends one message and receives the next one: a single
 * TransactNamedPipe on Windows, sendmsg + recvmsg on POSIX. Both a send
 * and a receive: nobody else may be sending or receiving on l. */
duct_code duct__link_transact(duct__link *l, const duct__iov *iov, int n,
                              uint8_t *buf, size_t cap, size_t *len,
                              int64_t deadline_ms);
/* The link calls above return DUCT_DEADLINE_EXCEEDED when the deadline
 * passes (the operation is cancelled; the link is then unusable and must
 * be closed), DUCT_UNAVAILABLE when the peer is gone or the link was shut
 * down. */
/* Wakes whoever is blocked in a send, receive or transact on l, which
 * then returns DUCT_UNAVAILABLE; every later one fails the same way.
 * Any thread, any number of times, until duct__link_close. POSIX:
 * shutdown(SHUT_RDWR), and the peer sees the connection end at once;
 * Windows: a flag and CancelIoEx of the handle's I/O, and the peer sees
 * the end when link_close closes the handle. */
void duct__link_shutdown(duct__link *l);
/* Frees l. Nobody may be using it any more: after a link_shutdown, wait
 * for the other threads to return first. */
void duct__link_close(duct__link *l);
/* The server process's id as the system reports it (0 if unknown). */
uint32_t duct__link_peer_pid(const duct__link *l);

/* ---- The table ----
 *
 * The server and client cores reach a transport only through this table,
 * so a test can put another one underneath them without compiling the
 * cores again: an in-memory transport (tests/fuzz), or a wrapper that
 * fails, truncates or stalls the Nth operation of the real one
 * (tests/fault), as SQLite's fault-injecting VFS wraps the real VFS.
 * Each member has the contract of the function of the same name above
 * (link_open: duct__link_open_opts). */
typedef struct duct__transport_ops {
  const char *name; /* "posix", "win", or a test's own, for log lines */
  /* 1 when link_send and link_transact send several pieces as one
   * message without copying them (POSIX's sendmsg): the client then packs
   * a request with large `bytes` fields in pieces (runtime/pack.h).
   * Windows copies them into one buffer, so it packs into one. */
  int sends_gather;
  duct_code (*listen)(const char *address, const duct__listen_opts *o,
                      const duct__srv_cb *cb, void *core,
                      duct__listener **out, duct__err *err);
  duct_code (*listener_start)(duct__listener *l);
  void (*listener_stop_accepting)(duct__listener *l);
  void (*listener_free)(duct__listener *l);
  void (*listener_each)(duct__listener *l, void (*fn)(duct__conn *c, void *arg),
                        void *arg);
  duct_code (*conn_send)(duct__conn *c, const duct__iov *iov, int n);
  /* Optional (NULL: the core uses conn_send): runtime/conn.h's
   * duct__conn_send_lent. */
  duct_code (*conn_send_lent)(duct__conn *c, const duct__iov *iov, int n, duct__loan *loan);
  void (*conn_send_nowait)(duct__conn *c, const duct__iov *iov, int n);
  void (*conn_close)(duct__conn *c, duct_code why, const char *detail);
  size_t (*conn_queued)(duct__conn *c);
  void (*conn_want_drained)(duct__conn *c);
  duct_code (*link_open)(const char *address, const duct__link_opts *o,
                         int64_t deadline_ms, duct__link **out,
                         duct__err *err);
  duct_code (*link_send)(duct__link *l, const duct__iov *iov, int n,
                         int64_t deadline_ms);
  duct_code (*link_recv)(duct__link *l, uint8_t *buf, size_t cap, size_t *len,
                         int64_t deadline_ms);
  duct_code (*link_recv_into)(duct__link *l, uint8_t *head, size_t head_cap, uint8_t *tail,
                              size_t tail_cap, size_t *len, int64_t deadline_ms);
  duct_code (*link_transact)(duct__link *l, const duct__iov *iov, int n,
                             uint8_t *buf, size_t cap, size_t *len,
                             int64_t deadline_ms);
  void (*link_shutdown)(duct__link *l);
  void (*link_close)(duct__link *l);
  uint32_t (*link_peer_pid)(const duct__link *l);
} duct__transport_ops;

/* This system's transport: the table of runtime/platform.c over
 * runtime/posix's or runtime/win's functions. */
extern const duct__transport_ops duct__platform_transport;
/* "posix" or "win", defined in the platform folder. */
extern const char duct__platform_name[];

#endif /* DUCT_RUNTIME_TRANSPORT_H */
