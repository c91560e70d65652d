/* tests/fault/fault_transport.h - a transport operations table
 * (runtime/transport.h) that wraps this system's real one
 * (duct__platform_transport) and fails, truncates or stalls the Nth frame
 * operation on the client's links or the server's connections, as
 * SQLite's fault-injecting VFS wraps the real VFS.
 *
 * A server or channel sees it only when built on it:
 * duct__server_new_with(o, &fault_transport, &s) (server/internal.h),
 * duct__channel_open_with(addr, o, &fault_transport, &ch)
 * (client/internal.h). Nothing else in the process is affected: the
 * transport's own code, a raw peer built directly on the platform table,
 * and any other process (duct-probe-server) run untouched.
 *
 * With nothing armed every member passes straight through to the platform
 * table; tests/transport/test_transport.c runs its conformance scenarios
 * through it in that mode, so a wrapper that changed behaviour would fail
 * there before it misled a fault test. */
#ifndef DUCT_TEST_FAULT_TRANSPORT_H
#define DUCT_TEST_FAULT_TRANSPORT_H

#include "runtime/transport.h"

extern const duct__transport_ops fault_transport;

enum fault_kind { FAULT_NONE, FAULT_FAIL, FAULT_TRUNCATE, FAULT_STALL };
enum fault_side { FAULT_CLIENT, FAULT_SERVER };

/* Once, before any other fault_ call or use of the table. */
void fault_transport_init(void);

/* Frame events are counted per side from 0:
 * - client: each link_send and link_recv is one event, a link_transact is
 *   two (its request out, then its reply in); link_open, link_close and
 *   link_peer_pid are not counted;
 * - server: each conn_send is one event; conn_send_nowait (best-effort
 *   goodbyes), listen and the rest are not.
 * Arming resets both counters; the at-th event (0-based) on `side` gets
 * `kind`, every other event passes through. */
void fault_arm(int kind, int side, long at);
/* The same, counting only sends of frames of type `type` (DUCT__CREDIT,
 * DUCT__HALF_CLOSE, ...: runtime/frame.h): the at-th such frame `side`
 * sends gets `kind`. Receives are not counted (their type is unknown
 * until they arrive). */
void fault_arm_type(int kind, int side, int type, long at);
/* Stops injecting; returns whether the armed fault was injected. */
int fault_disarm(void);
/* Frame events counted on `side` since the last fault_arm (a run armed
 * past its end counts them all: how many positions a scenario has). */
long fault_event_count(int side);
/* Whether a client stall of an operation with no deadline went 20 s
 * without the link being shut down (the wrapper then gave up; a test
 * should fail on it: nothing in duct would have ended the wait). */
int fault_stalled_forever(void);

/* Server sends that have returned through the table (any outcome,
 * injected ones included), and how many of them reported an error. */
void fault_server_send_counts(long *sends, long *errors);
/* Waits until more than `sends` server sends have returned and, if
 * errors >= 0, more than `errors` of them failed, or until timeout_ms
 * passes. Returns 1 if that happened. */
int fault_wait_server_sends(long sends, long errors, int timeout_ms);

/* Server connections whose closed() reported a reason other than DUCT_OK
 * (the server gave up on them, or they broke), counted through the
 * callbacks the wrapper passes on. */
long fault_server_closes(void);
/* Waits until more than `closes` such connections have been reported, or
 * timeout_ms passes. Returns 1 if that happened. */
int fault_wait_server_closes(long closes, int timeout_ms);

/* Waits until every server connection opened through the table has had
 * its closed() (the last callback: no send for it can follow), or
 * timeout_ms passes. Returns 1 if so. Arm after this, so that a late send
 * on an earlier connection is never counted as a frame of the next call. */
int fault_wait_server_idle(int timeout_ms);

#endif
