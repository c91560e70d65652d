/* runtime/pack.h - packing a message as pieces, for a transport that
 * sends several pieces as one message without copying them (POSIX's
 * sendmsg). protobuf-c's packing into one buffer copies every `bytes`
 * field; packed this way a large one is sent from where the application
 * keeps it, and only the rest (tags, lengths, small fields) is copied.
 * Windows sends one buffer per message (WriteFile, TransactNamedPipe),
 * so it packs into one buffer as before (transport.h, sends_gather). */
#ifndef DUCT_RUNTIME_PACK_H
#define DUCT_RUNTIME_PACK_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "runtime/transport.h"

/* `bytes` fields this long or longer are left in place: below it the
 * copy costs less than the extra piece in each frame. */
#define DUCT__GATHER_MIN ((size_t)16 * 1024)
/* Pieces of one message at most: with the header, a frame is then at most
 * 8 pieces, what every transport's gather takes. */
#define DUCT__GATHER_PIECES 7

typedef struct duct__gather {
  ProtobufCBuffer base; /* first: protobuf-c appends through it */
  uint8_t *scratch;     /* the copied parts, in order */
  size_t used, total;
  duct__iov piece[DUCT__GATHER_PIECES];
  int n;
  int last_copied;      /* piece[n - 1] is in scratch: small parts extend it */
  int overflow;         /* more pieces were needed */
} duct__gather;

/* 1 if packing msg in pieces would leave a large field in place: it has
 * a singular `bytes` field of DUCT__GATHER_MIN bytes or more (repeated
 * and nested ones are not looked at, so that the check stays cheap). */
int duct__gather_worth(const ProtobufCMessage *msg);

/* Packs msg (len bytes, protobuf_c_message_get_packed_size) as pieces:
 * every part but the large `bytes` fields is copied into scratch (room
 * for len bytes), in order. Returns the number of pieces in g->piece; 0
 * when it took more than DUCT__GATHER_PIECES (pack into one buffer
 * then). The pieces borrow msg's memory and scratch: both must stay
 * unchanged until the message is sent. */
int duct__gather_pack(duct__gather *g, const ProtobufCMessage *msg, size_t len,
                      uint8_t *scratch);

#endif
