/* fuzz-frame: header decode + reassembly, the first code every byte from a
 * peer meets (REQUEST, RESPONSE and STREAM_DATA messages are rebuilt; a
 * CREDIT's count is read). The input is a sequence of transport messages,
 * each as a 2-byte little-endian length and that many bytes (truncated at
 * the end).
 * Invariants checked: decode never reads past a message; a completed
 * message never exceeds the reassembler's limit and is exactly as long as
 * it says; a protocol error leaves the reassembler reusable. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  duct__reasm r;
  /* A small limit so the fuzzer reaches the overflow path quickly. */
  duct__reasm_init(&r, 200000);
  while (size >= 2) {
    size_t len = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2;
    size -= 2;
    if (len > size)
      len = size;
    /* Copy so ASan catches any read past the message's end. */
    uint8_t *m = malloc(len ? len : 1);
    if (!m)
      break;
    memcpy(m, data, len);
    data += len;
    size -= len;

    duct__frame f;
    const char *why;
    duct_code rc = duct__frame_decode(m, len, &f, &why);
    if (rc != DUCT_OK) {
      if (why == NULL)
        abort();
    } else if (f.type == DUCT__HELLO) {
      duct__hello h;
      (void)duct__hello_decode(m + DUCT__HEADER_SIZE, f.payload_len, &h, &why);
    } else if (f.type == DUCT__CREDIT) {
      if (duct__credit_value(m + DUCT__HEADER_SIZE) == 0)
        abort(); /* decode refuses a CREDIT of nothing */
    } else if (f.type == DUCT__REQUEST || f.type == DUCT__RESPONSE ||
               f.type == DUCT__STREAM_DATA) {
      duct__msg out;
      rc = duct__reasm_feed(&r, &f, m + DUCT__HEADER_SIZE, &out, &why);
      if (rc == DUCT_OK && out.done) {
        if (out.len > r.max_message || out.len != out.hdr.payload_len)
          abort();
        if (out.len)
          (void)((volatile const uint8_t *)out.data)[out.len - 1];
      }
      if (rc != DUCT_OK && why == NULL)
        abort();
    }
    free(m);
  }
  duct__reasm_free(&r);
  return 0;
}
