/* bench/raw.h - the raw floor: the same transport as duct with no duct
 * code on the path (raw_posix.c: AF_UNIX SOCK_SEQPACKET; raw_win.c:
 * message-mode named pipes and TransactNamedPipe). CMake builds one.
 *
 * The raw protocol is as bare as an echo can be while sending exactly the
 * message sizes duct sends: a request is one or more messages whose first
 * byte says 'M' (more follow) or 'L' (last); the server answers with the
 * same messages, byte for byte, once the last one has arrived. A single
 * message starting with 'Q' makes the server exit.
 *
 * One-way mode, the floor of a server stream: a single message
 *
 *   'S', u32 count, u32 n, u32 sizes[n], u32 end_size   (native byte order)
 *
 * makes the server send `count` messages of n transport messages each
 * (fragments, sizes[i] bytes), back to back, then one end message of
 * end_size bytes: what duct sends for a stream of `count` chunks and its
 * final RESPONSE. The client receives them all. Byte 0 of every fragment
 * is 'D' ('E' for the end), bytes 1..8 of a message's first fragment are
 * its sequence number (1, 2, ...; native order), every other byte i of a
 * fragment is raw_pattern(i). */
#ifndef DUCT_BENCH_RAW_H
#define DUCT_BENCH_RAW_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Largest message either side sends: duct's default max_frame. */
#define RAW_MAX_MSG 65536u
/* Largest request (all its messages together) the raw server keeps. */
#define RAW_MAX_REQUEST (2u * 1024u * 1024u + RAW_MAX_MSG)
/* Most fragments per message in one-way mode (a 1 MiB chunk is 17). */
#define RAW_MAX_FRAGS 64
/* One-way content check: three bytes of every fragment, and every byte of
 * every RAW_FULL_CHECK-th message. duct's stream client (main.c) checks
 * its chunks the same way, so both sides pay alike. */
#define RAW_FULL_CHECK 256u

typedef struct raw_client raw_client;

/* "posix" or "npipe", as printed in transport=. */
const char *raw_transport(void);
/* A monotonic clock in nanoseconds. */
uint64_t bench_now_ns(void);
/* A unique raw-server address for this run (a socket path or pipe name). */
void raw_address(char *buf, size_t cap);

/* Serves the raw echo and one-way mode on addr, one thread per
 * connection, until a 'Q' message. Returns the process exit code. */
int raw_server_main(const char *addr);

/* Connects, retrying for up to timeout_ms while the server starts. */
raw_client *raw_connect(const char *addr, int timeout_ms);
/* One echo: sends the n messages laid out back to back in tx (sizes[i]
 * bytes each), then receives n messages into rx at the same offsets.
 * Returns 0 when every reply message had the expected size. */
int raw_echo(raw_client *c, const uint8_t *tx, const size_t *sizes, int n, uint8_t *rx);
/* One one-way run (above): asks for `count` messages of the n fragment
 * sizes and an end of end_size bytes, receives them into rx (RAW_MAX_MSG
 * bytes) and checks each as it arrives with raw_frag_ok. Returns the
 * number of messages that failed a check, or -1 when the connection
 * failed or the stream came out of step. */
long raw_oneway(raw_client *c, uint32_t count, const size_t *sizes, int n, size_t end_size,
                uint8_t *rx);
/* Asks the server to exit (optional) and closes. */
void raw_close(raw_client *c, int quit_server);

/* ---- shared by raw_posix.c and raw_win.c ---- */

static inline uint8_t raw_pattern(size_t i) { return (uint8_t)(i * 31u + 7u); }

/* Byte i of a message starting at `from` in the pattern. */
static inline void raw_fill(uint8_t *p, size_t n, size_t from) {
  for (size_t i = 0; i < n; i++)
    p[i] = raw_pattern(from + i);
}

/* The request of a one-way run, written to msg (room for
 * 13 + 4 * RAW_MAX_FRAGS bytes). Returns its length. */
static inline size_t raw_oneway_request(uint8_t *msg, uint32_t count, const size_t *sizes, int n,
                                        size_t end_size) {
  uint32_t v[3 + RAW_MAX_FRAGS];
  v[0] = count;
  v[1] = (uint32_t)n;
  for (int i = 0; i < n; i++)
    v[2 + i] = (uint32_t)sizes[i];
  v[2 + n] = (uint32_t)end_size;
  msg[0] = 'S';
  memcpy(msg + 1, v, 4 * (size_t)(n + 3));
  return 1 + 4 * (size_t)(n + 3);
}

/* The server's side: parses a one-way request of len bytes. 0 if valid
 * (every size between 9 and RAW_MAX_MSG, the end at least 1). */
static inline int raw_oneway_parse(const uint8_t *msg, size_t len, uint32_t *count,
                                   size_t *sizes, int *n, size_t *end_size) {
  uint32_t v[3 + RAW_MAX_FRAGS];
  if (len < 1 + 12 || len > 1 + sizeof v || (len - 1) % 4)
    return -1;
  memcpy(v, msg + 1, len - 1);
  if (v[1] < 1 || v[1] > RAW_MAX_FRAGS || len != 1 + 4 * (size_t)(v[1] + 3))
    return -1;
  *count = v[0];
  *n = (int)v[1];
  for (uint32_t i = 0; i < v[1]; i++) {
    if (v[2 + i] < 9 || v[2 + i] > RAW_MAX_MSG)
      return -1;
    sizes[i] = v[2 + i];
  }
  *end_size = v[2 + v[1]];
  return *end_size >= 1 && *end_size <= RAW_MAX_MSG ? 0 : -1;
}

/* Fragment `frag` of message `seq` as received (len bytes, want bytes
 * expected): its size, type byte, sequence number (first fragment) and
 * content, in full or three bytes of it. */
static inline int raw_frag_ok(const uint8_t *p, size_t len, size_t want, int frag, uint64_t seq,
                              int full) {
  if (len != want || p[0] != 'D')
    return 0;
  size_t from = 1;
  if (frag == 0) {
    uint64_t s;
    memcpy(&s, p + 1, 8);
    if (s != seq)
      return 0;
    from = 9;
  }
  if (from == len)
    return 1;
  if (!full) {
    size_t mid = from + (len - from) / 2;
    return p[from] == raw_pattern(from) && p[mid] == raw_pattern(mid) &&
           p[len - 1] == raw_pattern(len - 1);
  }
  for (size_t i = from; i < len; i++)
    if (p[i] != raw_pattern(i))
      return 0;
  return 1;
}

#endif
