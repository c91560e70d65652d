/* tests/fuzz/fake_transport.h - an in-memory transport: one operations
 * table (runtime/transport.h), so the fuzz targets drive the library's own
 * server/server.c and client/channel.c, built on it with
 * duct__server_new_with / duct__channel_open_with, with bytes from the
 * fuzzer and no sockets, threads or clocks that would make a finding
 * irreproducible. */
#ifndef DUCT_TEST_FAKE_TRANSPORT_H
#define DUCT_TEST_FAKE_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/transport.h"

/* The fake's table; its functions are not reachable otherwise. */
extern const duct__transport_ops fake_transport;

/* ---- server side: the harness plays the transport's event loop ----
 *
 * It honours the callbacks' contract (transport.h) on one thread: after a
 * message() that returned 2 it calls run() before the next message. */

/* The callbacks and core the server registered through the table's
 * listen (NULL before). */
const duct__srv_cb *fake_srv_callbacks(void);
void *fake_srv_core(void);
/* A fresh connection object for cb->open() (a real duct__conn of the
 * listener's set, runtime/conn.h). After open(), the harness sets
 * c->state to what it returned, as a transport's admission does, so
 * conn_want_drained can call drained(). */
duct__conn *fake_conn_new(void);
/* Whether the core asked to close it (the table's conn_close). */
int fake_conn_closed(const duct__conn *c);
void fake_conn_free(duct__conn *c);

/* ---- client side: links replay a script of messages ---- */

/* Messages every link receives, in order, shared by all links of the run
 * (a new link takes up where the last one stopped). Borrowed. */
void fake_script_set(const uint8_t *const *msgs, const size_t *lens, size_t n);
/* 1 when every scripted message has been delivered. */
int fake_script_done(void);

/* Splits a fuzz input into transport messages: each is a 2-byte
 * little-endian length and that many bytes (the last one cut short if the
 * input ends). Returns how many (at most max); the pointers borrow data. */
size_t fake_split(const uint8_t *data, size_t size, const uint8_t **msgs, size_t *lens,
                  size_t max);

/* Every message duct sends, on either side, is checked: it must decode as
 * a valid frame and fit a transport message. A failure aborts (a finding). */

#endif
