/* bench/peers/peers.h - other IPC stacks doing duct-bench's echo, so that
 * `duct-bench --peers` can print them beside duct against the same raw
 * floor (docs/BENCHMARKS.md, "Peers"). Linux only; built into the shared
 * library duct_bench_peers when their Debian packages are found
 * (bench/peers/CMakeLists.txt), which keeps C++ and gRPC out of duct-bench
 * itself: duct-bench is C, and a shared library carries its own C++
 * runtime, so the C program links it with the C linker.
 *
 * Each peer is a table of operations; main.c drives all of them with the
 * same timing loop, plan and reply check it uses for duct. */
#ifndef DUCT_BENCH_PEERS_H
#define DUCT_BENCH_PEERS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library's one exported symbol is marked when it is built. */
#ifndef DUCT_PEERS_API
#define DUCT_PEERS_API
#endif

typedef struct bench_peer {
  /* transport= on its lines: "grpc-uds" or "sdbus". */
  const char *name;
  /* Starts what the peer needs besides its server process (sd-bus: the
   * private dbus-daemon) and its server, both as child processes of
   * duct-bench started with `self` (duct-bench's own path: the server is
   * `self --peer-server NAME ADDRESS`). tag makes the addresses unique.
   * Returns the peer's state, NULL (after a message on stderr) if it
   * could not start. */
  void *(*start)(const char *self, const char *tag);
  /* The server process's main: serves the echo on address until a quit
   * request. Returns its exit code. */
  int (*server_main)(const char *address);
  /* One client thread's connection, opened before the warm-up (gRPC: a
   * stub on the channel all threads share; sd-bus: a bus connection of
   * its own, sd_bus objects being single-threaded). NULL on failure. */
  void *(*client_open)(void *peer);
  /* One echo of len bytes. On success *reply and *reply_len point at the
   * reply's bytes, which stay valid until the next echo or close on this
   * client, so the caller checks them after its clock has stopped.
   * Returns 0, or -1 if the call failed. */
  int (*echo)(void *client, const uint8_t *req, size_t len, const uint8_t **reply,
              size_t *reply_len);
  void (*client_close)(void *client);
  /* Asks the server to exit, reaps it (and the bus daemon) and frees the
   * state. Returns 0 if everything exited cleanly. */
  int (*stop)(void *peer);
} bench_peer;

/* Every peer duct knows, built or not: n entries. An entry whose start is
 * NULL was not built, and *missing (same index) says what to install. */
DUCT_PEERS_API const bench_peer *bench_peers(int *n, const char *const **missing);

#ifdef __cplusplus
}
#endif

#endif
