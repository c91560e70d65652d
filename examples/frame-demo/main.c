/* duct-frame-demo: shows the wire format at work without a peer. It
 * frames a 200 KiB request the way a client would, prints each frame's
 * header, then decodes and reassembles the frames the way a server would
 * and checks that the message came through intact. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/frame.h"

int main(void) {
  const size_t len = 200 * 1024;
  uint8_t *payload = malloc(len);
  uint8_t *wire = malloc(DUCT__DEFAULT_MAX_FRAME);
  if (!payload || !wire)
    return 1;
  for (size_t i = 0; i < len; i++)
    payload[i] = (uint8_t)(i * 7);

  const char *method = "/demo.Calculator/Add";
  duct__frame tmpl = {DUCT__VERSION, DUCT__REQUEST, 0, 1, duct__method_id(method),
                      0, 1500, 0};
  size_t n = duct__frag_count(len, DUCT__DEFAULT_MAX_FRAME);
  printf("request for %s (method id 0x%08x), %zu payload bytes -> %zu frames\n",
         method, (unsigned)tmpl.method_id, len, n);

  duct__reasm r;
  duct__reasm_init(&r, 0);
  int ok = 0;
  for (size_t i = 0; i < n; i++) {
    duct__frame f, got;
    size_t off;
    const char *why;
    duct__frag_at(&tmpl, len, DUCT__DEFAULT_MAX_FRAME, i, &f, &off);
    duct__frame_encode(&f, wire);
    memcpy(wire + DUCT__HEADER_SIZE, payload + off, f.payload_len);
    printf("  frame %zu: header", i);
    for (int b = 0; b < DUCT__HEADER_SIZE; b++)
      printf("%s%02x", b % 4 ? "" : " ", wire[b]);
    printf("  (+%u bytes%s)\n", (unsigned)f.payload_len,
           f.flags & DUCT__FLAG_MORE ? ", MORE" : "");

    duct_code rc = duct__frame_decode(wire, DUCT__HEADER_SIZE + f.payload_len, &got, &why);
    duct__msg m;
    if (rc == DUCT_OK)
      rc = duct__reasm_feed(&r, &got, wire + DUCT__HEADER_SIZE, &m, &why);
    if (rc != DUCT_OK) {
      fprintf(stderr, "frame %zu rejected: %s (%s)\n", i, duct_code_name(rc), why);
      break;
    }
    if (m.done)
      ok = m.len == len && memcmp(m.data, payload, len) == 0;
  }
  printf("reassembled: %s\n", ok ? "200 KiB, identical to what was sent" : "MISMATCH");
  duct__reasm_free(&r);
  free(wire);
  free(payload);
  return ok ? 0 : 1;
}
