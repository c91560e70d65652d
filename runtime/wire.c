#include "wire.h"

#include <string.h>

#include "utf8.h"

void duct__wire_hello(uint8_t out[DUCT__HELLO_MSG_SIZE], uint32_t max_frame,
                      uint32_t max_message) {
  duct__frame f = {DUCT__VERSION, DUCT__HELLO, 0, 0, 0, 0, 0, DUCT__HELLO_SIZE};
  duct__hello h = {DUCT__VERSION, DUCT__VERSION_MAX, max_frame, max_message};
  duct__frame_encode(&f, out);
  duct__hello_encode(&h, out + DUCT__HEADER_SIZE);
}

size_t duct__wire_text(uint8_t out[DUCT__TEXT_MSG_MAX], uint8_t type,
                       uint32_t call_id, uint32_t method_id, duct_code status,
                       const char *text) {
  size_t n = text ? strlen(text) : 0;
  /* Never a multi-byte UTF-8 character cut in half (utf8.h). */
  if (n > DUCT__MAX_ERROR_TEXT)
    n = duct__utf8_cut(text, DUCT__MAX_ERROR_TEXT);
  duct__frame f = {DUCT__VERSION, type, 0, call_id, method_id, (uint32_t)status, 0,
                   (uint32_t)n};
  duct__frame_encode(&f, out);
  if (n)
    memcpy(out + DUCT__HEADER_SIZE, text, n);
  return DUCT__HEADER_SIZE + n;
}

int duct__wire_frag(const duct__frame *tmpl, uint8_t *payload, size_t len,
                    uint32_t max_frame, size_t i, int headroom,
                    uint8_t hdr[DUCT__HEADER_SIZE], duct__iov iov[2]) {
  duct__frame f;
  size_t off;
  duct__frag_at(tmpl, len, max_frame, i, &f, &off);
  if (headroom && off == 0) {
    duct__frame_encode(&f, payload - DUCT__HEADER_SIZE);
    iov[0].base = payload - DUCT__HEADER_SIZE;
    iov[0].len = DUCT__HEADER_SIZE + f.payload_len;
    return 1;
  }
  duct__frame_encode(&f, hdr);
  iov[0].base = hdr;
  iov[0].len = DUCT__HEADER_SIZE;
  iov[1].base = payload + off;
  iov[1].len = f.payload_len;
  return f.payload_len ? 2 : 1;
}

size_t duct__wire_ctl(uint8_t out[DUCT__CTL_MSG_MAX], uint8_t type, uint32_t call_id,
                      uint32_t credit) {
  uint8_t version = type >= DUCT__STREAM_DATA ? 2 : 1;
  uint32_t n = type == DUCT__CREDIT ? DUCT__CREDIT_SIZE : 0;
  duct__frame f = {version, type, 0, call_id, 0, 0, 0, n};
  duct__frame_encode(&f, out);
  if (n)
    duct__credit_encode(out + DUCT__HEADER_SIZE, credit);
  return DUCT__HEADER_SIZE + n;
}
