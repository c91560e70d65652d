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
} duct_channel_opts;

/* Where a failed call's details go: the code and the server's (or duct's)
 * message, e.g. "key 'x' not found". Caller-allocated. */
typedef struct duct_status {
  duct_code code;
  char message[256]; /* NUL-terminated, truncated to fit */
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
 * DUCT_UNAVAILABLE (nothing listening), DUCT_PERMISSION_DENIED,
 * DUCT_FAILED_PRECONDITION (no common protocol version),
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

#ifdef __cplusplus
}
#endif
#endif /* DUCT_CLIENT_H */
