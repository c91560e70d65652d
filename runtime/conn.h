/* runtime/conn.h - one server connection lifecycle for every transport.
 *
 * A platform's connection (runtime/posix/listener.c, runtime/win/server.c,
 * a test's fake) embeds struct duct__conn as its first member and keeps
 * only what differs between systems: arming a read, completing it,
 * writing one message, waking its owner, freeing the descriptor. What
 * every transport needs once and the same way lives here:
 *
 *  - a reference count; the platform's memory is freed by io->destroy
 *    when the last reference goes;
 *  - the close reason, set once (the first duct__conn_close or end wins,
 *    by compare-and-swap), and closed() reported to the core exactly once
 *    (duct__conn_end);
 *  - the connection set: the list, admission at max_connections (the
 *    longest-idle connection makes room), the idle clock, and the tick
 *    that disconnects peers that stall a message or leave a reply unread;
 *  - the send queue. No send ever waits for a peer: a message that cannot
 *    be written at once is copied to the connection's queue (or, lent,
 *    pointed at where the sender packed it) and written as the peer
 *    drains it (a write watch's EPOLLOUT / an overlapped
 *    WriteFile completion). Any thread may send: the queue is under c->mu,
 *    and the platform's write side (want_write) is armed independently of
 *    the read, so nothing depends on who holds the read. A queue has a
 *    byte cap, and a deadline: a peer that takes nothing from it for the
 *    idle timeout is disconnected. A core can ask to
 *    hear when the queue is empty again (duct__conn_want_drained), which
 *    is how a stream waits for a slow reader without holding a thread.
 *
 * Locks: set->mu guards the list and the counts; c->mu guards the queue
 * and the close detail. set->mu may be held while taking c->mu, never the
 * other way round; a platform may take its own locks under c->mu (in
 * want_write) but never c->mu under them. No lock is held across a call
 * into the core. */
#ifndef DUCT_RUNTIME_CONN_H
#define DUCT_RUNTIME_CONN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/sys.h"
#include "runtime/transport.h"

typedef struct duct__conn_set duct__conn_set;
typedef struct duct__qnode duct__qnode;

/* Memory a sender lends to a connection's queue (duct__conn_send_lent), so
 * that a message the system did not take at once is written later from
 * where it lies instead of from a copy. refs counts the lender's own hold
 * plus one per queued message that points into the memory; release() runs
 * when it reaches 0, on whichever thread dropped the last (under c->mu:
 * it must not call into the connection). A lender that reuses the memory
 * waits until refs is back to its own 1 (an acquire load): every write
 * from it has then completed. */
struct duct__loan {
  atomic_int refs;
  void (*release)(duct__loan *loan);
};

/* Drops one reference of a loan; the last calls release(). */
void duct__loan_drop(duct__loan *loan);

/* The most bytes of a lent message's first piece that are copied rather
 * than lent (a frame header). */
#define DUCT__CONN_HEAD_MAX 32

/* What the shared code needs from a platform. */
typedef struct duct__conn_io {
  /* Writes one whole message now, without waiting: 1 written, 0 it would
   * block (nothing written), -1 failed (*err says how). May be NULL: every
   * message then goes through the queue and want_write. */
  int (*try_write)(duct__conn *c, const duct__iov *iov, int n, duct_code *err);
  /* Messages are queued and no write is owed (c->mu held, c->writing 0):
   * set c->writing and arrange for the queue to be written, from any
   * thread. POSIX: arm the connection's write watch, whose event calls
   * duct__conn_flush; Windows: an overlapped WriteFile of the queue's
   * head, whose completion calls duct__conn_wrote. Each arming holds a
   * reference on c until its event has been handled. On failure c->writing
   * stays 0 and the message stays queued: the next send tries again, and
   * the queue's deadline closes a connection nothing can write to. */
  void (*want_write)(duct__conn *c);
  /* Wakes whoever holds the connection's read so that it ends it
   * (shutdown(2), CancelIoEx). Any thread, any number of times. */
  void (*abort)(duct__conn *c);
  /* Frees the platform's connection: the last reference is gone. */
  void (*destroy)(duct__conn *c);
} duct__conn_io;

struct duct__conn {
  duct__conn_set *set;
  atomic_int refs;
  /* 0 while open; 1 + the duct_code that ended it, set once. */
  atomic_int close_code;
  atomic_int ended; /* closed() reported */
  void *state;      /* the core's, from open() */
  duct_peer peer;
  char user[192];
  duct__conn *prev, *next; /* in set->head, under set->mu */

  /* The idle clock. last_active: the last message in or out. partial_since:
   * when the message being received (or the wait for HELLO) began, 0 when
   * none. in_call: the core is running a call for it. All written by the
   * connection's owner and the core, read by the tick and admission. */
  _Atomic int64_t last_active;
  _Atomic int64_t partial_since;
  atomic_int in_call;
  /* Set once the core has had two calls open on it at once (a client
   * multiplexing async calls or streams): a platform that serves a busy
   * connection on one thread (POSIX's hold, listener.c) stops doing so,
   * so that one call's handler never holds up the next call's. */
  atomic_int multiplexed;

  duct__mutex mu;           /* the queue and close_detail */
  char close_detail[192];   /* why it ended, for closed() */
  duct__qnode *qhead, *qtail, *spare;
  size_t spare_bytes;       /* in `spare`, nodes kept for reuse */
  size_t burst_bytes;       /* node bytes this burst (queue non-empty) used */
  size_t spare_keep;        /* spare bytes kept after a burst */
  unsigned spare_slack;     /* bursts in a row that needed under half of it */
  size_t queued;            /* bytes in the queue */
  /* 0 while the queue is empty; else when it became non-empty or, after
   * that, when the peer last took a message from it (the deadline runs
   * from there). */
  _Atomic int64_t q_since;
  /* A write is owed: want_write armed the platform's write side (POSIX:
   * the write watch; Windows: a WriteFile of the head) and its event has
   * not been handled yet. Only then does the queue drain. */
  int writing;
  int drain_wanted;         /* duct__conn_want_drained is waiting */
};

typedef struct duct__conn_set_opts {
  uint32_t max_connections; /* 0: no limit */
  /* A message that stalls half way, a HELLO that does not come and a
   * queue that is not drained are each given this long. */
  uint32_t idle_timeout_ms;
  size_t queue_cap;         /* bytes a connection may have queued */
} duct__conn_set_opts;

struct duct__conn_set {
  const duct__conn_io *io;
  duct__srv_cb cb;
  void *core;
  duct__conn_set_opts o;
  duct__mutex mu;
  duct__cond cv;     /* the last connection finished while freeing */
  duct__conn *head;
  uint32_t n;        /* in the list */
  uint32_t finishing; /* out of the list, closed() not yet returned */
  int freeing;
};

void duct__conn_set_init(duct__conn_set *s, const duct__conn_io *io,
                         const duct__srv_cb *cb, void *core,
                         const duct__conn_set_opts *o);
void duct__conn_set_destroy(duct__conn_set *s);

/* Sets up c (refs = 1: the set's) for a new connection of `set`. The
 * platform fills peer (user points at c->user) before duct__conn_admit. */
void duct__conn_init(duct__conn *c, duct__conn_set *set);

/* Adds c to the set and asks the core to open() it. At max_connections
 * the longest-idle connection (no call, no partial message, nothing
 * queued) is closed to make room; with none idle, c is refused. Returns 1
 * when c is open (arm its first read), 0 when it was refused (the caller
 * drops its reference; no closed() is owed). */
int duct__conn_admit(duct__conn *c);

void duct__conn_ref(duct__conn *c);
void duct__conn_unref(duct__conn *c);

/* Asks for c to be closed with reason `code` (the first reason stands) and
 * wakes whoever holds its read. Any thread, any time before closed() has
 * returned, or later while holding a reference (then a no-op). */
void duct__conn_close(duct__conn *c, duct_code code, const char *detail);
/* 1 once a close was asked for or the connection ended. */
int duct__conn_closing(const duct__conn *c);

/* The platform's read side ends c (peer gone, read error, or after a
 * close was asked for): takes it out of the set, answers a pending
 * want_drained (drained()), reports closed() once with the first reason
 * recorded (`why`/`detail` if none was), drops the set's reference. */
void duct__conn_end(duct__conn *c, duct_code why, const char *detail);

/* Sends one message, from any thread that holds c (a worker in a
 * callback, or anyone with a reference). Written at once when the queue
 * is empty and the system takes it; otherwise copied to the queue and
 * written as the peer drains it. Never waits. Messages from one thread
 * leave in the order sent; messages from several threads leave in the
 * order they took c->mu. DUCT_UNAVAILABLE once c is closing;
 * DUCT_RESOURCE_EXHAUSTED when the queue would pass its cap (c is then
 * closed). */
duct_code duct__conn_send(duct__conn *c, const duct__iov *iov, int n);
/* As duct__conn_send, but a message that must be queued points into the
 * lender's memory (held through `loan`) instead of being copied. n is 1
 * (iov[0] lent whole) or 2: iov[0], at most DUCT__CONN_HEAD_MAX bytes
 * (a header), is copied, and iov[1] is lent; at write time the copy is
 * put back in the iov[0].len bytes just before iov[1].base, so that the
 * message is one contiguous piece (a WriteFile takes one buffer). Those
 * bytes belong to the loan and are overwritten only once every message
 * queued before this one has been written: a sender that lends the
 * fragments of one message in order, each after the one before it, lends
 * them the tail of the fragment before, which is gone by then. */
duct_code duct__conn_send_lent(duct__conn *c, const duct__iov *iov, int n, duct__loan *loan);
/* Best effort from any thread, for a goodbye (GOAWAY) that is followed by
 * a close: written only if the queue is empty and the system takes the
 * message at once, else dropped (Windows, which has no write that does
 * not wait, queues it instead). Never closes c on its own. */
void duct__conn_send_nowait(duct__conn *c, const duct__iov *iov, int n);

/* Bytes queued on c now, not yet taken by the system (0 when the queue is
 * empty). A snapshot: another thread may queue or the peer drain right
 * after. */
size_t duct__conn_queued(duct__conn *c);
/* Asks for one drained(conn_state) (duct__srv_cb) the next time c's queue
 * becomes empty: at once, from the calling thread before this returns,
 * when it is empty already or c is closing; else from whichever thread
 * writes the queue's last message, or from the thread that ends c if
 * that comes first. Calls made while one is pending share it (one
 * drained() answers them all). A no-op when the core has no drained. */
void duct__conn_want_drained(duct__conn *c);

/* POSIX: the write watch armed by want_write fired (c->writing is 1).
 * Writes queued messages until the system would block; when some remain
 * and c is open, arms the watch again (io->want_write, which takes its
 * own reference), else clears c->writing. The caller then drops the
 * reference of the arming that fired. Returns 1 when the queue is empty,
 * 0 when some remain, -1 on a write error (c is closed). */
int duct__conn_flush(duct__conn *c);
/* 1 if messages are queued (c->mu taken briefly). */
int duct__conn_has_queue(duct__conn *c);
/* Windows: the head's write finished (ok) or failed; clears c->writing,
 * pops the head and, under c->mu, calls io->want_write again when more
 * remain (answers a pending want_drained when none do). */
void duct__conn_wrote(duct__conn *c, int ok);
/* The queue's head message, for a platform that writes it itself
 * (want_write, under c->mu). NULL when empty. */
const uint8_t *duct__conn_head(duct__conn *c, size_t *len);

/* Every ~100 ms from one transport thread: closes connections whose
 * partial message, HELLO or queued reply passed the idle timeout. */
void duct__conn_set_tick(duct__conn_set *s);

/* Calls fn for every connection in the set, each with a reference held
 * and no lock held (so fn may send or close). */
void duct__conn_set_each(duct__conn_set *s, void (*fn)(duct__conn *c, void *arg),
                         void *arg);

/* Marks the set as stopping (no more admissions), closes every connection
 * with DUCT_UNAVAILABLE and waits until each one's closed() has returned.
 * `owners_run`: whether platform threads exist that will end them. */
void duct__conn_set_close_all(duct__conn_set *s, int owners_run);

#endif /* DUCT_RUNTIME_CONN_H */
