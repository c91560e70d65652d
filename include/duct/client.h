/* duct/client.h - calling a duct service.
 *
 *   duct_channel *ch;
 *   if (duct_channel_open("calc", NULL, &ch) != DUCT_OK) ...
 *   Demo__AddReply *reply;
 *   duct_code rc = demo_calculator_add(ch, &req, &reply, NULL);  (generated)
 *   ...
 *   demo__add_reply__free_unpacked(reply, NULL);
 *   duct_channel_close(ch);
 *
 * A channel is thread-safe: any number of threads may call through one
 * channel at once; it keeps a pool of connections, one per call in flight. */
#ifndef DUCT_CLIENT_H
#define DUCT_CLIENT_H

#include <stdint.h>

#include "duct/service.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct duct_channel duct_channel;

/* Channel options. A zeroed struct (or NULL) means every default. */
typedef struct duct_channel_opts {
  /* How long duct_channel_open and each new connection keep retrying
   * while the server is not there yet (not listening, busy). 0: 5000. */
  uint32_t connect_timeout_ms;
  /* Connections kept open in the pool. 0: 64. Calls beyond this many at
   * once wait for a free connection (within their deadline). */
  uint32_t max_connections;
  /* Largest reply accepted, in bytes: 0 (4 MiB) or at least 1024; 1..1023
   * is refused (nearly always KiB given as bytes). */
  uint32_t max_message_size;
  duct_log_cb log; /* NULL: errors and warnings to stderr */
  void *log_user;
  /* Who the server must be. Every new connection first asks the system
   * which user the server process runs as (SO_PEERCRED on POSIX; on
   * Windows GetNamedPipeServerProcessId and that process's token), before
   * anything is sent, and refuses a server that is not the expected one
   * with DUCT_PERMISSION_DENIED and a message naming both users. This
   * guards the calls' contents against another user who took over the
   * address (a swapped /tmp directory, a stray pipe instance).
   *
   * NULL or "": the default rule. The server must be this process's own
   * user (POSIX: its effective uid) or the system itself: root (uid 0) on
   * POSIX; on Windows LocalSystem (S-1-5-18) or BUILTIN\Administrators
   * (S-1-5-32-544, as the token's user or owner, as an elevated
   * administrator's process has it).
   *
   * Otherwise the one user the server must run as, written as
   * duct_peer.user writes users: a uid in decimal on POSIX ("0", "65534"),
   * a SID string on Windows ("S-1-5-18", "S-1-5-21-...-1001"; SDDL's
   * two-letter names such as "SY" are accepted too). Only that user is
   * accepted then, not this process's own user and not root/SYSTEM unless
   * named. On Windows it matches the server token's user or its owner.
   * Anything else is DUCT_INVALID_ARGUMENT from duct_channel_open. The
   * string is copied. */
  const char *expect_server_user;
  /* Where async completions (duct_call_async) run. 0: on a thread of the
   * channel's own, as soon as each call ends. 1: they wait for the
   * application's own loop: duct_channel_event becomes ready and
   * duct_channel_dispatch runs them on the thread that calls it. */
  int manual_dispatch;
} duct_channel_opts;

/* The longest message a duct_status holds, in bytes: the longest error
 * text the protocol carries (docs/PROTOCOL.md), so a server's message
 * arrives whole. */
#define DUCT_STATUS_MESSAGE_MAX 1024

/* Where a failed call's details go: the code and the server's (or duct's)
 * message, e.g. "key 'x' not found". Caller-allocated. */
typedef struct duct_status {
  duct_code code;
  /* UTF-8, NUL-terminated. A message longer than DUCT_STATUS_MESSAGE_MAX
   * bytes (only duct's own, naming a long address) is cut between two
   * characters, never inside one. */
  char message[DUCT_STATUS_MESSAGE_MAX + 1];
} duct_status;

/* Per-call options. A zeroed struct (or NULL) means every default. */
typedef struct duct_call_opts {
  /* Time the whole call may take, from the call until the reply is
   * unpacked; the server sees what remains. 0: no deadline. */
  uint32_t deadline_ms;
  /* Allocator for the reply. NULL: protobuf-c's default (malloc). Free the
   * reply with the generated __free_unpacked and the same allocator. */
  ProtobufCAllocator *allocator;
  /* Optional out: filled on every return, with the message on failure. */
  duct_status *status;
} duct_call_opts;

/* Opens a channel to `address`: a name ("calc", portable), a local pipe
 * name (\\.\pipe\calc, Windows only) or an absolute socket path (POSIX
 * only); docs/GUIDE.md's address table. Connects once, retrying up to
 * connect_timeout_ms, so a missing server is reported here:
 * DUCT_UNAVAILABLE (nothing listening), DUCT_PERMISSION_DENIED (not
 * allowed to connect, or the server is not the user expect_server_user
 * asks for), DUCT_FAILED_PRECONDITION (no common protocol version),
 * DUCT_INVALID_ARGUMENT (an address this system refuses, or an option out
 * of range; returned at once, without retrying). Each of these is logged
 * through o->log (one error line saying why; for an option, its name, the
 * value given and the accepted range). On success *out is owned by the
 * caller: close it with duct_channel_close. */
duct_code duct_channel_open(const char *address, const duct_channel_opts *o,
                            duct_channel **out);

/* Closes every connection and frees the channel. No call may be in
 * progress on it. NULL is allowed. */
void duct_channel_close(duct_channel *ch);

/* One unary call: sends `req` (borrowed; packed before the call returns)
 * to method `m` and waits for the reply. On DUCT_OK, *reply is a new
 * message of m->output owned by the caller. On any other code *reply is
 * NULL; the code is the server's (the handler's, UNIMPLEMENTED,
 * PERMISSION_DENIED, RESOURCE_EXHAUSTED, ...) or duct's own
 * (DEADLINE_EXCEEDED, UNAVAILABLE when the connection broke, INTERNAL for
 * a protocol violation). Generated stubs wrap this with typed arguments. */
duct_code duct_call_unary(duct_channel *ch, const duct_method *m,
                          const ProtobufCMessage *req, ProtobufCMessage **reply,
                          const duct_call_opts *o);

/* ---- Async unary calls ----
 *
 * Async calls and streams share one connection per channel (the calls are
 * told apart by call id), read by a thread of the channel's own; blocking
 * unary calls keep their pool of connections. Both need a server that
 * speaks protocol version 2 (duct 0.3 and later): with an older one they
 * fail with DUCT_FAILED_PRECONDITION. */

typedef struct duct_call duct_call;

/* Runs once when an async call ends. On DUCT_OK `reply` is a message of
 * the method's output type owned by the callback (free it with its
 * __free_unpacked and opts->allocator); otherwise it is NULL. `status`
 * (borrowed for the callback) holds the code and message. Runs on the
 * channel's completion thread, or in duct_channel_dispatch with
 * manual_dispatch; one at a time per channel, so a slow callback delays
 * the others (never the calls themselves). */
typedef void (*duct_done_cb)(void *user, duct_code code, ProtobufCMessage *reply,
                             const duct_status *status);

/* Starts a unary call and returns at once: `req` is packed and sent before
 * this returns (opts is read before it returns too, but opts->allocator,
 * which unpacks the reply, must live until the callback has run); `done` runs when the reply, an error, the deadline
 * (opts->deadline_ms) or a cancel ends it. opts->status is not used (the
 * callback gets the status). DUCT_OK when started (done will run exactly
 * once); any other code means it was not started and done will not run.
 * If `out` is not NULL, *out is a handle for duct_call_cancel, owned by
 * the caller, who releases it with duct_call_release (before or after the
 * call ends). */
duct_code duct_call_async(duct_channel *ch, const duct_method *m,
                          const ProtobufCMessage *req, const duct_call_opts *opts,
                          duct_done_cb done, void *user, duct_call **out);

/* Cancels the call if it has not ended: the server is told (its handler
 * sees duct_ctx_cancelled), and done runs with DUCT_CANCELLED; a reply
 * arriving later is dropped. No effect on a call that has ended. Any
 * thread. */
void duct_call_cancel(duct_call *c);

/* Releases the handle from duct_call_async (the call itself goes on).
 * NULL is allowed. */
void duct_call_release(duct_call *c);

/* With manual_dispatch: what the application's event loop waits on. POSIX:
 * a file descriptor that is readable while completions wait (poll it for
 * POLLIN); Windows: an event HANDLE, signalled while completions wait
 * (WaitForMultipleObjects). Owned by the channel. -1 without
 * manual_dispatch. */
intptr_t duct_channel_event(duct_channel *ch);

/* With manual_dispatch: runs the waiting completions on this thread and
 * returns how many ran; 0 without manual_dispatch. Not from a callback. */
int duct_channel_dispatch(duct_channel *ch);

/* ---- Streams ----
 *
 * A streaming call (server-streaming, client-streaming or bidirectional)
 * as a handle. Generated typed functions (pkg_svc_method,
 * pkg_svc_method_send, _recv, _close_send, _cancel, _finish) wrap these.
 * One thread may send while another receives; other threads may make
 * other calls on the channel meanwhile. */

typedef struct duct_client_stream duct_client_stream;

/* Starts a streaming call of method m. `req` is the request of a
 * server-streaming method (borrowed; packed before this returns) and must
 * be NULL for the other kinds. opts: deadline_ms bounds the whole call
 * (then it ends with DUCT_DEADLINE_EXCEEDED), allocator is used for
 * received messages, status is not used (finish fills one). On DUCT_OK
 * *out is owned by the caller and freed by duct_client_stream_finish.
 * DUCT_FAILED_PRECONDITION if the server speaks no protocol version 2. */
duct_code duct_client_stream_start(duct_channel *ch, const duct_method *m,
                                   const ProtobufCMessage *req,
                                   const duct_call_opts *opts,
                                   duct_client_stream **out);

/* Sends one message (borrowed; packed before this returns) on a
 * client-streaming or bidirectional call. Waits up to timeout_ms (-1: no
 * limit) while the server has not taken enough earlier messages (flow
 * control), then returns DUCT_RESOURCE_EXHAUSTED with the stream still
 * usable (as it is after DUCT_RESOURCE_EXHAUSTED for a message larger
 * than the server takes, or no memory to pack it: nothing was sent).
 * DUCT_CANCELLED, DUCT_UNAVAILABLE, ... once the call has ended (finish
 * gives the status); DUCT_FAILED_PRECONDITION after close_send. */
duct_code duct_client_stream_send(duct_client_stream *st, const ProtobufCMessage *msg,
                                  int timeout_ms);

/* Ends this side's stream: the server's recv then sees the end. */
duct_code duct_client_stream_close_send(duct_client_stream *st);

/* Receives the server's next message on a server-streaming or
 * bidirectional call, waiting up to timeout_ms (-1: no limit). DUCT_OK
 * with *msg a new message of the output type owned by the caller (free it
 * with its __free_unpacked and opts->allocator); DUCT_OK with *msg = NULL
 * once the call has ended (duct_client_stream_finish says how);
 * DUCT_DEADLINE_EXCEEDED when timeout_ms passed first (the stream is still
 * open). Messages arrive in the order sent. One thread at a time. */
duct_code duct_client_stream_recv(duct_client_stream *st, ProtobufCMessage **msg,
                                  int timeout_ms);

/* Cancels the call: the server is told (its handler sees
 * duct_ctx_cancelled) and the call ends with DUCT_CANCELLED. Any thread. */
void duct_client_stream_cancel(duct_client_stream *st);

/* Waits for the call's final status (closing this side's stream first if
 * still open; messages the server still sends are dropped), fills
 * `status` if not NULL, frees st and returns the code: the handler's, or
 * duct's own (DUCT_CANCELLED, DUCT_DEADLINE_EXCEEDED, DUCT_UNAVAILABLE
 * when the connection broke, ...). For a client-streaming call, on DUCT_OK
 * *reply (if reply is not NULL) is the reply, owned by the caller. To
 * leave a stream early, cancel first. */
duct_code duct_client_stream_finish(duct_client_stream *st, ProtobufCMessage **reply,
                                    duct_status *status);

#ifdef __cplusplus
}
#endif
#endif /* DUCT_CLIENT_H */
