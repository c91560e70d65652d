/* bench/raw.h - the raw floor: the same transport as duct with no duct
 * code on the path (raw_posix.c: AF_UNIX SOCK_SEQPACKET; raw_win.c:
 * message-mode named pipes and TransactNamedPipe). CMake builds one.
 *
 * The raw protocol is as bare as an echo can be while sending exactly the
 * message sizes duct sends: a request is one or more messages whose first
 * byte says 'M' (more follow) or 'L' (last); the server answers with the
 * same messages, byte for byte, once the last one has arrived. A single
 * message starting with 'Q' makes the server exit. */
#ifndef DUCT_BENCH_RAW_H
#define DUCT_BENCH_RAW_H

#include <stddef.h>
#include <stdint.h>

/* Largest message either side sends: duct's default max_frame. */
#define RAW_MAX_MSG 65536u
/* Largest request (all its messages together) the raw server keeps. */
#define RAW_MAX_REQUEST (2u * 1024u * 1024u + RAW_MAX_MSG)

typedef struct raw_client raw_client;

/* "posix" or "npipe", as printed in transport=. */
const char *raw_transport(void);
/* A monotonic clock in nanoseconds. */
uint64_t bench_now_ns(void);
/* A unique raw-server address for this run (a socket path or pipe name). */
void raw_address(char *buf, size_t cap);

/* Serves the raw echo on addr, one thread per connection, until a 'Q'
 * message. Returns the process exit code. */
int raw_server_main(const char *addr);

/* Connects, retrying for up to timeout_ms while the server starts. */
raw_client *raw_connect(const char *addr, int timeout_ms);
/* One echo: sends the n messages laid out back to back in tx (sizes[i]
 * bytes each), then receives n messages into rx at the same offsets.
 * Returns 0 when every reply message had the expected size. */
int raw_echo(raw_client *c, const uint8_t *tx, const size_t *sizes, int n, uint8_t *rx);
/* Asks the server to exit (optional) and closes. */
void raw_close(raw_client *c, int quit_server);

#endif
