/* runtime/session.h - the protocol state one connection has on either
 * side, and the steps both roles take the same way: HELLO (versions and
 * limits) and sending a message as frames. The server (server/) and the
 * client (client/channel.c) each keep a duct__session per connection;
 * neither writes these steps again. Reassembly is runtime/frame.h's
 * duct__reasm, held here. */
#ifndef DUCT_RUNTIME_SESSION_H
#define DUCT_RUNTIME_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/frame.h"
#include "runtime/transport.h"

typedef struct duct__session {
  uint32_t peer_max_frame;   /* frames this side sends are at most this */
  uint32_t peer_max_message; /* and messages at most this */
  int hello_done;
  int version;               /* agreed in the HELLOs: 1 or 2 */
  duct__reasm rx;            /* the peer's messages, one at a time */
} duct__session;

/* max_message: the largest message this side accepts; budget: memory the
 * reassembly is charged to (NULL: none). */
void duct__session_init(duct__session *s, uint32_t max_message, duct__budget *budget);
void duct__session_free(duct__session *s);

/* Takes the peer's HELLO payload: checks it is well formed, that the
 * version ranges overlap and that the peer's max_frame is at least
 * min_peer_frame, then records the peer's limits (frames capped at duct's
 * own default). On failure returns the code to close with
 * (DUCT_INTERNAL, DUCT_FAILED_PRECONDITION) and writes the reason, naming
 * `peer` ("client" or "server"), into why. */
duct_code duct__session_hello(duct__session *s, const uint8_t *payload, size_t len,
                              uint32_t min_peer_frame, const char *peer, char *why,
                              size_t whycap);

/* Where duct__session_send puts each frame: one whole transport message
 * of n pieces; `last` marks the message's final frame. */
typedef duct_code (*duct__frame_sink)(void *ctx, const duct__iov *iov, int n, int last);

/* How a sink treats the memory of the frames it is given. */
typedef enum duct__sink_kind {
  /* The sink is done with a frame's memory when it returns (it wrote or
   * copied it): every frame is one piece, its header written over the
   * DUCT__HEADER_SIZE bytes before its slice (the previous fragment's
   * tail, already sent) and those bytes put back after. A transport that takes one
   * buffer per message (WriteFile) then copies nothing. */
  DUCT__SINK_DONE,
  /* The sink may keep pointing at the slices after it returns (a queue
   * that borrows them, duct__conn_send_lent): the first frame is one
   * piece, each later one a header apart and its slice. */
  DUCT__SINK_KEEPS,
} duct__sink_kind;

/* Sends `payload` (len bytes, packed at buf + DUCT__HEADER_SIZE: that
 * room takes the first header) as frames of at most the peer's max_frame,
 * each header made from tmpl. Stops at the first failure of `sink`. With
 * DUCT__SINK_DONE the payload's bytes are the same when this returns. */
duct_code duct__session_send(const duct__session *s, const duct__frame *tmpl,
                             uint8_t *payload, size_t len, duct__sink_kind kind,
                             duct__frame_sink sink, void *ctx);

/* As duct__session_send with DUCT__SINK_DONE, for a payload of len bytes
 * in n pieces (runtime/pack.h): each frame goes to the sink as its
 * header and the slices of the pieces it covers, at most 1 + n pieces. */
duct_code duct__session_send_pieces(const duct__session *s, const duct__frame *tmpl,
                                    const duct__iov *piece, int n, size_t len,
                                    duct__frame_sink sink, void *ctx);

/* Flow control of one stream in one direction (docs/PROTOCOL.md). The
 * sender may send while `avail` is above 0 (one message may overdraw
 * it); the receiver counts what the application has taken and grants it
 * back in CREDIT frames once a quarter of the window has been taken, so a
 * steady stream costs one CREDIT per quarter window, not per message. */
typedef struct duct__flow {
  int64_t avail;  /* sender: bytes it may still send */
  uint64_t taken; /* receiver: bytes taken and not yet granted back */
  uint64_t held;  /* receiver: bytes received and not yet taken */
} duct__flow;

void duct__flow_init(duct__flow *f);
/* Receiver: a message of len bytes arrived. 0 if the sender had no
 * credit for it (a protocol violation). */
int duct__flow_arrived(duct__flow *f, size_t len);
/* Receiver: the application took a message of len bytes. Returns the
 * credit to grant now (0: none yet). */
uint32_t duct__flow_taken(duct__flow *f, size_t len);

#endif
