/* runtime/wire.h - building whole messages from frames, shared by the
 * server and client cores: HELLO, text frames (error RESPONSE, GOAWAY) and
 * the pieces of each fragment of a payload. Internal. */
#ifndef DUCT_RUNTIME_WIRE_H
#define DUCT_RUNTIME_WIRE_H

#include "frame.h"
#include "transport.h"
/* For whoever builds a text frame's text: cut it as duct__wire_text does. */
#include "utf8.h"

#define DUCT__HELLO_MSG_SIZE (DUCT__HEADER_SIZE + DUCT__HELLO_SIZE)
#define DUCT__TEXT_MSG_MAX (DUCT__HEADER_SIZE + DUCT__MAX_ERROR_TEXT)

/* A HELLO announcing this side's limits. */
void duct__wire_hello(uint8_t out[DUCT__HELLO_MSG_SIZE], uint32_t max_frame,
                      uint32_t max_message);

/* A RESPONSE (with an error status) or GOAWAY carrying `text`, cut to
 * 1024 bytes at a UTF-8 character boundary. Returns the message length. */
size_t duct__wire_text(uint8_t out[DUCT__TEXT_MSG_MAX], uint8_t type,
                       uint32_t call_id, uint32_t method_id, duct_code status,
                       const char *text);

/* A control frame of a call: CANCEL, HALF_CLOSE, or CREDIT granting
 * `credit` bytes (ignored for the others). Returns the message length. */
#define DUCT__CTL_MSG_MAX (DUCT__HEADER_SIZE + DUCT__CREDIT_SIZE)
size_t duct__wire_ctl(uint8_t out[DUCT__CTL_MSG_MAX], uint8_t type, uint32_t call_id,
                      uint32_t credit);

/* Pieces of fragment i of `payload` (len bytes) sent as frames of at most
 * max_frame bytes with header template tmpl. When the payload was packed
 * at buf + DUCT__HEADER_SIZE with room before it (`headroom` = 1), the
 * first fragment's header is written into that room and one contiguous
 * piece is returned (no copy on any transport); otherwise the header goes
 * into hdr and two pieces are returned. Returns the count. */
int duct__wire_frag(const duct__frame *tmpl, uint8_t *payload, size_t len,
                    uint32_t max_frame, size_t i, int headroom,
                    uint8_t hdr[DUCT__HEADER_SIZE], duct__iov iov[2]);

#endif
