/* duct/server.h - serving duct services.
 *
 *   duct_server *s;
 *   duct_server_new(NULL, &s);
 *   demo_calculator_register(s, &my_handlers, my_state);   (generated)
 *   duct_server_listen(s, "calc");
 *   duct_server_start(s);            worker threads serve from here on
 *   ...
 *   duct_server_stop(s, 2000);       drain in-flight calls up to 2 s
 *   duct_server_free(s);
 *
 * Handlers run on the server's worker threads, several at once, each
 * connection's calls one after another. A handler gets a duct_ctx, the
 * request (borrowed for the call) and an empty reply to fill; memory for
 * the reply's fields comes from duct_ctx_alloc and is freed with the call. */
#ifndef DUCT_SERVER_H
#define DUCT_SERVER_H

#include <stdarg.h>

#include "duct/service.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct duct_server duct_server;

/* Decides whether `peer` may call `method`, before the request is even
 * unpacked. Return DUCT_OK to allow; any other code (typically
 * DUCT_PERMISSION_DENIED) is the call's result and the handler does not run.
 * Called on worker threads, concurrently. */
typedef duct_code (*duct_authorize_cb)(void *user, const duct_peer *peer,
                                       const duct_method *method);

/* Server options. A zeroed struct (or NULL) means every default. */
typedef struct duct_server_opts {
  int workers;               /* worker threads, 1..1024; 0: number of cores */
  /* 0: 1024. At the limit the connection that has been idle longest (no
   * call running, nothing half sent either way) is closed, with a GOAWAY
   * saying why, to admit the new one; with none idle the new one is
   * closed at once. */
  uint32_t max_connections;
  /* Largest request, in bytes: 0 (4 MiB) or at least 1024; 1..1023 is
   * refused (nearly always KiB given as bytes). */
  uint32_t max_message_size;
  /* A peer that sends part of a message (or its HELLO) and stalls this
   * long, or does not take a whole reply within this long, is
   * disconnected. Replies never wait on a worker: what the peer does not
   * read at once is queued on its connection. 0: 10000. */
  uint32_t idle_timeout_ms;
  duct_authorize_cb authorize; /* NULL: every local peer allowed */
  void *authorize_user;
  duct_log_cb log;             /* NULL: errors and warnings to stderr */
  void *log_user;
  /* POSIX: the socket's directory is 0700; 1 makes it 0750 so the group
   * may connect. */
  int allow_group;
  /* Windows: an SDDL string replacing the default DACL (owner and
   * LocalSystem), e.g. "D:(A;;GA;;;SY)(A;;GA;;;OW)(A;;0x12019b;;;IU)":
   * read and write for interactive users. Grant others 0x12019b, not GW
   * or GA: those include FILE_CREATE_PIPE_INSTANCE, with which another
   * user could create instances of this pipe and receive other clients'
   * calls (docs/WINDOWS.md, "Widening it"). */
  const char *sddl;
  /* Windows: a NULL DACL (anyone may connect). Only when asked by name. */
  int null_dacl_i_understand_anyone_can_connect;
  /* Windows: accept clients from other machines (off: PIPE_REJECT_REMOTE_CLIENTS). */
  int allow_remote_clients;
  /* Memory all connections together may hold in requests received in
   * part (fragments of a message larger than one frame). A request that
   * would pass it gets DUCT_RESOURCE_EXHAUSTED and a warning is logged;
   * the connection stays. 0: 64 MiB; at least max_message_size. */
  size_t max_partial_memory;
  /* Memory one call may use to unpack its request and build its reply
   * (protobuf-c can need far more than the message's size: a request of
   * many tiny unknown fields). Past it the call gets
   * DUCT_RESOURCE_EXHAUSTED and a warning is logged.
   * 0: 4 x max_message_size, at least 1 MiB; a value under 1 MiB is
   * refused. */
  size_t max_call_memory;
  /* Calls one connection may have open at once (protocol version 2
   * multiplexes calls and streams on a connection; a kept stream counts
   * until it is finished). A call past it is answered
   * DUCT_RESOURCE_EXHAUSTED. 0: 1024. */
  uint32_t max_calls_per_connection;
  /* The server answers the built-in reflection service
   * duct.reflection.v1.Reflection (proto/duct/reflection.proto): the
   * services it serves and the .proto descriptors that define them, for
   * tools such as `duct list`. Nothing there that a client could not
   * learn from the .proto files, and the authorize hook sees its calls
   * like any other (docs/GUIDE.md, "Reflection"). */
  int disable_reflection; /* 1: no reflection service; its calls get DUCT_UNIMPLEMENTED */
} duct_server_opts;

/* Creates a server. DUCT_INVALID_ARGUMENT for an option out of range (one
 * error line through o->log names the option, the value given and the
 * accepted range), DUCT_RESOURCE_EXHAUSTED without memory. *out is owned
 * by the caller and freed with duct_server_free. */
duct_code duct_server_new(const duct_server_opts *o, duct_server **out);

/* Registers a service (usually through the generated register function).
 * `handlers` is the service's generated handler table and, like `svc`,
 * must outlive the server; `user` is returned by duct_ctx_user. Fails with
 * DUCT_ALREADY_EXISTS if a method id is already registered (two services
 * with one name, or an id collision: the message names both methods),
 * DUCT_FAILED_PRECONDITION after duct_server_start. */
duct_code duct_server_add(duct_server *s, const duct_service *svc,
                          const void *handlers, void *user);

/* Binds `address`: a name ("calc", portable), a local pipe name
 * (\\.\pipe\calc, Windows only) or an absolute socket path (POSIX only);
 * docs/GUIDE.md's address table. Fails with DUCT_INVALID_ARGUMENT for an
 * address this system refuses (a relative or remote path, the other
 * system's form, ...), DUCT_ALREADY_EXISTS when a live server already
 * holds it, and with DUCT_PERMISSION_DENIED or DUCT_UNAVAILABLE when the
 * system refuses. Each of these is logged (one error line, through the
 * server's log callback, saying why). A stale POSIX socket file left by a
 * dead server is replaced. */
duct_code duct_server_listen(duct_server *s, const char *address);

/* Starts the worker threads; calls are served from now on. */
duct_code duct_server_start(duct_server *s);

/* Graceful stop: stops accepting, tells idle clients to go away (a
 * GOAWAY that never waits for them), answers new calls UNAVAILABLE, lets
 * calls in progress finish and their clients take their replies for up
 * to drain_ms, then closes every connection and joins the workers. It
 * returns within drain_ms plus a few milliseconds whatever the peers do,
 * except that a handler still running after the drain is waited for (it
 * holds its worker; no peer can make it longer). No lock is held while
 * waiting. Safe to call once from any thread that is not a worker (not
 * from a handler). */
duct_code duct_server_stop(duct_server *s, int drain_ms);

/* Stops (with no drain) if still running, and frees. NULL is allowed. */
void duct_server_free(duct_server *s);

/* ---- For a program's main thread ---- */

/* From now on, the process's stop requests are caught instead of ending it:
 * SIGINT and SIGTERM on POSIX; Ctrl-C, Ctrl-Break and console close on
 * Windows. Call it early in main. DUCT_INTERNAL if the system refuses. */
duct_code duct_stop_signals_catch(void);

/* Blocks until one of those requests arrives (returns at once if one
 * already did), then returns, so main can call duct_server_stop. */
void duct_stop_signals_wait(void);

/* 1 if a stop request has arrived (after duct_stop_signals_catch), else 0;
 * never waits, and leaves the request for duct_stop_signals_wait. For a
 * program whose main thread is busy (a client reading a stream) and looks
 * now and then. */
int duct_stop_signals_pending(void);

/* ---- In a handler ---- */

/* The `user` pointer given to duct_server_add for this service. */
void *duct_ctx_user(const duct_ctx *ctx);
/* The calling process, as the system reports it. */
const duct_peer *duct_ctx_peer(const duct_ctx *ctx);
/* The method being called. */
const duct_method *duct_ctx_method(const duct_ctx *ctx);
/* Milliseconds left before the caller's deadline (0 once passed), or -1
 * if the caller set none. */
int64_t duct_ctx_remaining_ms(const duct_ctx *ctx);
/* Memory that lives until the reply is sent: use it for the reply's
 * strings, bytes and repeated fields. NULL when out of memory. */
void *duct_ctx_alloc(duct_ctx *ctx, size_t size);
/* A copy of s in call memory (as duct_ctx_alloc). */
char *duct_ctx_strdup(duct_ctx *ctx, const char *s);
/* The call's allocator (the same memory), for protobuf-c APIs. */
ProtobufCAllocator *duct_ctx_allocator(duct_ctx *ctx);
/* Sets the message sent with a failing code and returns `code`, so a
 * handler can `return duct_ctx_fail(ctx, DUCT_NOT_FOUND, "no key %s", k);` */
duct_code duct_ctx_fail(duct_ctx *ctx, duct_code code, const char *fmt, ...)
    DUCT_PRINTF_FORMAT(3, 4);

/* ---- Cancellation ----
 *
 * A call is cancelled when its client cancels it, its deadline passes,
 * its client disconnects, the server stops, or a message of its client's
 * stream cannot be taken (over max_message_size, or no memory: the client
 * is told DUCT_RESOURCE_EXHAUSTED). Handlers that may run long (or keep
 * a stream) watch for it: poll duct_ctx_cancelled, or register a
 * callback. */

/* 1 once the call is cancelled, else 0. Any thread, while the call's
 * handler runs or its stream is held. */
int duct_ctx_cancelled(const duct_ctx *ctx);

typedef void (*duct_cancel_cb)(duct_ctx *ctx, void *user);
/* Registers cb to run once when the call is cancelled, on whichever
 * duct thread sees the cancel first (a worker reading the CANCEL or the
 * disconnect, the server's timer for a deadline, or the thread in
 * duct_server_stop), with no duct lock held. If the call is already
 * cancelled, cb runs now, on this thread. A second call replaces the
 * callback if it has not run yet; cb = NULL removes it. A call that ends
 * normally never runs it. */
void duct_ctx_on_cancel(duct_ctx *ctx, duct_cancel_cb cb, void *user);

/* ---- Streams, in streaming handlers ----
 *
 * A streaming handler (generated signatures in each .duct.h) gets a
 * duct_stream. Client-streaming and bidirectional handlers run on a thread
 * of their own, so they may wait in duct_stream_recv; server-streaming
 * handlers too. When the handler returns, its code ends the stream (the
 * client sees that status), unless the handler called duct_stream_keep:
 * then the stream stays open, with no thread of the server's held, until
 * duct_stream_finish. */

/* The call's context (user pointer, peer, cancellation). Valid while st is. */
duct_ctx *duct_stream_ctx(duct_stream *st);

/* Keeps the stream open after its handler returns (the handler's return
 * code is then ignored): a subscription that waits for events. Meant for
 * server-streaming and bidirectional calls: a kept client-streaming call
 * ends with duct_stream_finish's status alone, without a reply. The caller
 * must end it with duct_stream_finish, at the latest when it is cancelled
 * (duct_ctx_on_cancel). */
void duct_stream_keep(duct_stream *st);

/* Sends one message (borrowed; packed before this returns) on a
 * server-streaming or bidirectional call. Safe from any thread. Each
 * stream has a bounded send window (flow control, docs/PROTOCOL.md): when
 * the client has not taken enough of the earlier messages, send waits up
 * to timeout_ms (0: not at all; -1: no limit) for room and returns
 * DUCT_RESOURCE_EXHAUSTED if none came, leaving the stream usable
 * (duct_stream_on_writable says when to try again). DUCT_CANCELLED once
 * the call is cancelled or the client is gone; DUCT_FAILED_PRECONDITION
 * after finish or on a method that sends no stream. */
duct_code duct_stream_send(duct_stream *st, const ProtobufCMessage *msg, int timeout_ms);

/* Receives the client's next message on a client-streaming or
 * bidirectional call, waiting up to timeout_ms (-1: no limit). DUCT_OK
 * with *msg a new message of the method's input type, owned by the caller
 * (free it with its __free_unpacked(msg, NULL)); DUCT_OK with *msg = NULL
 * once the client has closed its side (no more messages). Otherwise *msg
 * is NULL and the code says why: DUCT_DEADLINE_EXCEEDED (timeout_ms
 * passed; the stream is still open), DUCT_CANCELLED (the call was
 * cancelled or the client is gone), DUCT_INVALID_ARGUMENT (a message did
 * not parse). One thread at a time. */
duct_code duct_stream_recv(duct_stream *st, ProtobufCMessage **msg, int timeout_ms);

typedef void (*duct_stream_cb)(duct_stream *st, void *user);
/* Registers cb to run once, on a duct thread with no duct lock held, when
 * a send that returned DUCT_RESOURCE_EXHAUSTED may now succeed (the
 * client took messages), or the stream was cancelled. NULL removes it. */
void duct_stream_on_writable(duct_stream *st, duct_stream_cb cb, void *user);

/* Ends the stream with `code` (DUCT_OK: a clean end) and, for a failing
 * code, `message` (may be NULL): the client sees them as the call's final
 * status after every message sent before. For a kept stream this also
 * releases it: st must not be used afterwards, by any thread (stop other
 * threads' sends first). In a handler that did not keep the stream,
 * prefer returning the code. DUCT_OK, or DUCT_FAILED_PRECONDITION if it
 * was already finished. */
duct_code duct_stream_finish(duct_stream *st, duct_code code, const char *message);

#ifdef __cplusplus
}
#endif
#endif /* DUCT_SERVER_H */
