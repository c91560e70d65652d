/* tests/e2e/e2e_util.h - what the end-to-end test programs share: helper
 * server processes (duct-probe-server), a channel to them, and a raw link
 * that speaks the protocol by hand, as a hostile or broken peer would. */
#ifndef DUCT_TEST_E2E_UTIL_H
#define DUCT_TEST_E2E_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <duct/duct.h>

#include "probe.duct.h"
#include "runtime/frame.h"
#include "runtime/transport.h"
#include "tests/support/proc.h"

/* First connections wait for the child to start; Wine is slow at that. */
#define START_MS 20000

/* Call once from main: children are found beside argv0. */
void e2e_init(const char *argv0);
/* Starts program `name` (a sibling of the test) and remembers it, so a
 * failing test's teardown can kill it. */
test_proc *e2e_spawn(const char *name, const char *const *args, int nargs);
/* Frees (killing if still running) a child e2e_spawn started. */
void e2e_reap(test_proc *p);
/* cmocka teardown: kills every child still running. */
int e2e_teardown(void **state);

typedef struct fixture {
  test_proc *server;
  char address[128];
  duct_channel *ch;
} fixture;

/* A fresh address for a probe server. Static storage. */
const char *e2e_next_address(void);
/* Starts duct-probe-server with extra arguments on `address` (NULL: a
 * fresh one), and connects to it unless connect is 0 (f->ch NULL then). */
fixture *e2e_start_probe(const char *address, const char *const *extra, int nextra,
                         int connect);
/* Asks the server to shut down and checks it exits 0 (a graceful stop
 * that gave back all of duct's memory). */
void e2e_stop_probe(fixture *f);

duct_code e2e_echo(duct_channel *ch, const uint8_t *data, size_t len, uint32_t tag,
                   Duct__Test__Blob **reply, duct_status *st);
void e2e_echo_ok(duct_channel *ch);
/* The server's Stats; free with duct__test__stats__free_unpacked. */
Duct__Test__Stats *e2e_stats(duct_channel *ch);

/* A link that has exchanged HELLO announcing max_frame. */
duct__link *e2e_raw_connect(const char *address, uint32_t max_frame);
/* Reads one frame; returns its header (type 0 if the link broke). */
duct__frame e2e_raw_read(duct__link *l, uint8_t *buf, size_t cap, int timeout_ms,
                         duct_code *rc);
/* Sends `len` bytes of payload as one REQUEST (fragmented at max_frame)
 * for method `method_id` with call id `call`. */
void e2e_raw_request(duct__link *l, uint32_t call, uint32_t method_id, const uint8_t *payload,
                     size_t len, uint32_t max_frame);

#endif
