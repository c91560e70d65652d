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

#ifdef __cplusplus
}
#endif
#endif /* DUCT_CLIENT_H */
