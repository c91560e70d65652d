/* tests/fuzz/fake_transport.h - an in-memory transport: one operations
 * table (runtime/transport.h), so the fuzz targets drive the library's own
 * server (server/), client/channel.c and client/mux.c, built on it with
 * duct__server_new_with / duct__channel_open_with, with bytes from the
 * fuzzer and no sockets or clocks that would make a finding
 * irreproducible. The threads the cores start themselves (a server's
 * stream handlers, a channel's reader and dispatcher) are real; the
 * harnesses end them all before an input's run returns. */
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
 * message() that returned 2 it calls run() before the next message. Sends
 * may come from any thread (stream handlers run on threads of their own);
 * each is checked and "written" at once, so nothing is ever queued. */

/* The callbacks and core the server registered through the table's
 * listen (NULL before). */
const duct__srv_cb *fake_srv_callbacks(void);
void *fake_srv_core(void);
/* A fresh connection object for cb->open() (a real duct__conn of the
 * listener's set, runtime/conn.h). After open(), the harness sets
 * c->state to what it returned, as a transport's admission does, so
 * conn_want_drained can call drained(). */
duct__conn *fake_conn_new(void);
/* The harness shows the fake each message before message() gets it: the
 * client's HELLO tells the fake which version the connection speaks and
 * the largest frame the client takes, which every later send is checked
 * against. */
void fake_conn_incoming(duct__conn *c, const uint8_t *msg, size_t len);
/* Whether the core asked to close it (the table's conn_close). */
int fake_conn_closed(const duct__conn *c);
void fake_conn_free(duct__conn *c);

/* ---- client side: links replay a script of messages ----
 *
 * Every link reads from one script, in order (a new link takes up where
 * the last one stopped). The thread that set the script (the driver)
 * reads directly: a blocking call's transact or receive, and the HELLO of
 * every new link. Any other thread (a channel's reader, client/mux.c)
 * blocks in link_recv until the driver hands it a message with
 * fake_pump, so what the reader sees, and when, is the driver's choice,
 * the same on every run of an input. link_shutdown wakes a blocked
 * reader with DUCT_UNAVAILABLE, as the contract says. */

/* Messages every link receives, in order. Borrowed. Also makes the
 * calling thread the driver. */
void fake_script_set(const uint8_t *const *msgs, const size_t *lens, size_t n);
/* 1 when every scripted message has been delivered. */
int fake_script_done(void);
/* While on, a link the driver sends on is one a reader thread reads
 * (the harness turns it on around async calls and stream operations,
 * which only ever send on the channel's shared connection, after its
 * reader was started). */
void fake_expect_reader(int on);
/* Hands the next scripted message (or, once the script is done, the end
 * of the connection: DUCT_UNAVAILABLE) to the reader of the newest link
 * that has one, and waits until it has dealt with it: it is back in
 * link_recv, or its thread has ended. Returns 0, doing nothing, when no
 * link has a live reader. */
int fake_pump(void);

/* Splits a fuzz input into transport messages: each is a 2-byte
 * little-endian length and that many bytes (the last one cut short if the
 * input ends). Returns how many (at most max); the pointers borrow data. */
size_t fake_split(const uint8_t *data, size_t size, const uint8_t **msgs, size_t *lens,
                  size_t max);

/* Every message duct sends, on either side, is checked: it must decode as
 * a valid frame, fit a transport message and the peer's max_frame, be a
 * type its side may send (a server never sends REQUEST or HALF_CLOSE, a
 * client never RESPONSE, either side HELLO only first), and be a version
 * 2 type (STREAM_DATA, HALF_CLOSE, CREDIT, a server's CANCEL) only on a
 * connection whose HELLOs agreed on version 2. A failure aborts (a
 * finding). */

#endif
