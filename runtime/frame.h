/* runtime/frame.h - duct's wire frames: header codec, fragmenter and
 * reassembler. docs/PROTOCOL.md is the normative description; this file
 * implements exactly that and nothing else. Internal: not installed. */
#ifndef DUCT_RUNTIME_FRAME_H
#define DUCT_RUNTIME_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "duct/status.h"

#define DUCT__MAGIC 0x54435544u /* "DUCT" as bytes on the wire */
/* Protocol versions this side speaks (docs/PROTOCOL.md). A frame's header
 * carries the version that introduced its type (HELLO..GOAWAY: 1,
 * STREAM_DATA..CREDIT: 2), so every version 1 frame is byte for byte the
 * same in version 2; the version a connection speaks is the HELLOs'. */
#define DUCT__VERSION 1
#define DUCT__VERSION_MAX 2
/* Bytes of stream messages (each counted as its payload plus 32) a
 * receiver lets each stream's sender have outstanding before it grants
 * more with CREDIT. */
#define DUCT__STREAM_WINDOW (256u * 1024u)
/* The cost of one stream message against that window. */
#define DUCT__STREAM_COST(len) ((uint64_t)(len) + DUCT__HEADER_SIZE)
#define DUCT__HEADER_SIZE 32
/* Largest transport message (header included) duct sends by default: the
 * size of one message-mode pipe message / SOCK_SEQPACKET datagram. */
#define DUCT__DEFAULT_MAX_FRAME (64u * 1024u)
/* Largest reassembled message accepted by default. */
#define DUCT__DEFAULT_MAX_MESSAGE (4u * 1024u * 1024u)
/* Smallest max frame a peer may announce: a header plus one payload byte. */
#define DUCT__MIN_MAX_FRAME (DUCT__HEADER_SIZE + 1)
/* Longest error text carried by a RESPONSE or GOAWAY; longer is cut. */
#define DUCT__MAX_ERROR_TEXT 1024u

enum duct__frame_type {
  DUCT__HELLO = 1,
  DUCT__REQUEST = 2,
  DUCT__RESPONSE = 3,
  DUCT__CANCEL = 4,
  DUCT__GOAWAY = 5,
  /* Version 2: */
  DUCT__STREAM_DATA = 6, /* one message of a call's stream */
  DUCT__HALF_CLOSE = 7,  /* client -> server: the client's stream ends */
  DUCT__CREDIT = 8,      /* either way: room for more stream bytes */
  /* 9..255 are reserved. */
};
#define DUCT__CREDIT_SIZE 4

enum duct__frame_flags {
  DUCT__FLAG_MORE = 1u << 0, /* more fragments of this message follow */
};

/* A decoded header. Fields are host-order integers. */
typedef struct duct__frame {
  uint8_t version;
  uint8_t type;
  uint16_t flags;
  uint32_t call_id;
  uint32_t method_id;
  uint32_t status;
  uint32_t deadline_ms;
  uint32_t payload_len;
} duct__frame;

/* HELLO payload: what each side announces once per connection. */
#define DUCT__HELLO_SIZE 16
typedef struct duct__hello {
  uint16_t min_version;
  uint16_t max_version;
  uint32_t max_frame;   /* largest transport message the sender accepts */
  uint32_t max_message; /* largest reassembled message the sender accepts */
} duct__hello;

/* Writes f as the 32-byte wire header. Never fails. */
void duct__frame_encode(const duct__frame *f, uint8_t out[DUCT__HEADER_SIZE]);

/* Decodes and validates the header of one transport message of len bytes
 * (the whole message: header and payload). On success fills *f.
 * Returns DUCT_OK, DUCT_FAILED_PRECONDITION for a protocol version this
 * side does not speak (f->version is still filled), or DUCT_INTERNAL for
 * any other malformed header. *why is set to a static sentence for logs. */
duct_code duct__frame_decode(const uint8_t *msg, size_t len, duct__frame *f,
                             const char **why);

void duct__hello_encode(const duct__hello *h, uint8_t out[DUCT__HELLO_SIZE]);
/* A CREDIT frame's payload: the bytes granted (decode has checked it). */
uint32_t duct__credit_value(const uint8_t *payload);
void duct__credit_encode(uint8_t out[DUCT__CREDIT_SIZE], uint32_t n);
/* Validates a HELLO payload; DUCT_INTERNAL if malformed. */
duct_code duct__hello_decode(const uint8_t *p, size_t len, duct__hello *h,
                             const char **why);

/* Fragmentation: a payload of len bytes sent in frames of at most
 * max_frame bytes (header included) takes duct__frag_count() frames; an
 * empty payload still takes one. */
size_t duct__frag_count(size_t len, size_t max_frame);

/* Header and payload slice of fragment i (0-based) of a message whose
 * first header is tmpl: same fields, MORE set on all but the last,
 * payload_len the slice length. *off receives the slice's offset. */
void duct__frag_at(const duct__frame *tmpl, size_t len, size_t max_frame,
                   size_t i, duct__frame *out, size_t *off);

/* Memory shared by many reassemblers (one server's connections): what
 * peers can make the process hold in partly received messages. */
typedef struct duct__budget {
  _Atomic size_t used;
  size_t limit; /* 0: no limit */
} duct__budget;
/* Takes n bytes from b (NULL: always succeeds); 0 if that would pass the
 * limit (nothing is taken then). */
int duct__budget_take(duct__budget *b, size_t n);
void duct__budget_give(duct__budget *b, size_t n);

/* Reassembly of one message at a time per direction of a connection. */
typedef struct duct__reasm {
  uint32_t max_message;
  duct__budget *budget; /* charged with cap; NULL: none */
  duct__frame first; /* header of the message being rebuilt */
  uint8_t *buf;
  size_t len;
  size_t cap;
  unsigned char active;  /* a multi-frame message is in progress */
  unsigned char discard; /* drop the rest: 1 past max_message, 2 budget */
  unsigned char slack;   /* messages in a row that used < 1/4 of a large buf */
} duct__reasm;

/* A finished message, as reported by duct__reasm_feed. */
typedef struct duct__msg {
  int done;          /* 1 when the message is complete (or discarded) */
  duct__frame hdr;   /* first frame's header; payload_len = total bytes */
  const uint8_t *data; /* valid until the next feed or free */
  size_t len;
} duct__msg;

void duct__reasm_init(duct__reasm *r, uint32_t max_message);
/* Charges the buffer's memory to b from now on (before the first feed). */
void duct__reasm_set_budget(duct__reasm *r, duct__budget *b);
void duct__reasm_free(duct__reasm *r);

/* Feeds one decoded REQUEST or RESPONSE frame and its payload.
 * - DUCT_OK, out->done == 0: a fragment was stored; feed the next one.
 * - DUCT_OK, out->done == 1: out holds the whole message. A single-frame
 *   message is not copied: out->data points into payload.
 * - DUCT_RESOURCE_EXHAUSTED, out->done == 1: the message's last fragment
 *   arrived but the message exceeded max_message (or memory or the
 *   budget ran out; *why says which); its bytes were dropped as they came.
 *   The connection stays usable; the call fails with this code.
 * - DUCT_INTERNAL: a protocol violation (interleaved or inconsistent
 *   fragments, an empty non-final fragment); close the connection.
 * Memory grows with the bytes actually received, never with a claim. */
duct_code duct__reasm_feed(duct__reasm *r, const duct__frame *f,
                           const uint8_t *payload, duct__msg *out,
                           const char **why);

/* Where the next fragment of the message in progress may be received in
 * place (a transport's scatter read: header to its own buffer, payload
 * straight here), with *room bytes free; NULL when no message is in
 * progress, it is being dropped, or its buffer has no free room (the
 * fragment is then received elsewhere and fed with duct__reasm_feed, which
 * grows the buffer as bytes arrive). Valid until the next feed. A slot
 * always has at least DUCT__HEADER_SIZE bytes of the same buffer before
 * it (the message's bytes so far; NULL while fewer have arrived), which a
 * transport without a scatter read may borrow for the header during the
 * read and give back before the feed (runtime/transport.h, rx_slot). */
uint8_t *duct__reasm_slot(duct__reasm *r, size_t *room);

/* duct__reasm_feed for a frame whose payload was received at the slot
 * (f->payload_len bytes, at most *room): when the frame continues the
 * message in progress, its bytes are taken where they are, with no copy;
 * otherwise it is fed like any other (a violation, as fragments of two
 * messages may not interleave). */
duct_code duct__reasm_feed_placed(duct__reasm *r, const duct__frame *f, duct__msg *out,
                                  const char **why);

/* 32-bit FNV-1a of a full method name "/pkg.Service/Method". */
uint32_t duct__method_id(const char *full_name);

#endif /* DUCT_RUNTIME_FRAME_H */
