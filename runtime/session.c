/* runtime/session.c - see session.h. */
#include "runtime/session.h"

#include <stdint.h>
#include <string.h>

#include "runtime/utf8.h"
#include "runtime/wire.h"

void duct__session_init(duct__session *s, uint32_t max_message, duct__budget *budget) {
  s->peer_max_frame = DUCT__DEFAULT_MAX_FRAME;
  s->peer_max_message = DUCT__DEFAULT_MAX_MESSAGE;
  s->hello_done = 0;
  s->version = DUCT__VERSION;
  duct__reasm_init(&s->rx, max_message);
  duct__reasm_set_budget(&s->rx, budget);
}

void duct__session_free(duct__session *s) { duct__reasm_free(&s->rx); }

duct_code duct__session_hello(duct__session *s, const uint8_t *payload, size_t len,
                              uint32_t min_peer_frame, const char *peer, char *why,
                              size_t whycap) {
  duct__hello h;
  const char *bad;
  if (duct__hello_decode(payload, len, &h, &bad) != DUCT_OK) {
    duct__utf8_format(why, whycap, "the %s sent a bad HELLO: %s", peer, bad);
    return DUCT_INTERNAL;
  }
  if (h.min_version > DUCT__VERSION_MAX || h.max_version < DUCT__VERSION) {
    duct__utf8_format(why, whycap,
                      "the %s speaks protocol versions %u..%u; this side speaks %u..%u", peer,
                      h.min_version, h.max_version, DUCT__VERSION, DUCT__VERSION_MAX);
    return DUCT_FAILED_PRECONDITION;
  }
  /* The highest version both speak. */
  s->version = h.max_version < DUCT__VERSION_MAX ? h.max_version : DUCT__VERSION_MAX;
  if (h.max_frame < min_peer_frame) {
    duct__utf8_format(why, whycap,
                      "the %s's HELLO asks for frames of %u bytes; this side sends no frame "
                      "smaller than %u",
                      peer, (unsigned)h.max_frame, (unsigned)min_peer_frame);
    return DUCT_FAILED_PRECONDITION;
  }
  /* duct never sends frames larger than its own default, whatever a peer
   * would accept: that is the size the transports are tuned for. */
  s->peer_max_frame = h.max_frame < DUCT__DEFAULT_MAX_FRAME ? h.max_frame : DUCT__DEFAULT_MAX_FRAME;
  s->peer_max_message = h.max_message;
  s->hello_done = 1;
  return DUCT_OK;
}

duct_code duct__session_send(const duct__session *s, const duct__frame *tmpl,
                             uint8_t *payload, size_t len, duct__sink_kind kind,
                             duct__frame_sink sink, void *ctx) {
  size_t n = duct__frag_count(len, s->peer_max_frame);
  for (size_t i = 0; i < n; i++) {
    uint8_t hdr[DUCT__HEADER_SIZE];
    duct__iov iov[2];
    int k = duct__wire_frag(tmpl, payload, len, s->peer_max_frame, i, 1, hdr, iov);
    duct_code rc;
    if (k == 2 && kind == DUCT__SINK_DONE) {
      /* The header goes in front of its slice, over bytes that are kept
       * here meanwhile. */
      uint8_t *at = (uint8_t *)(uintptr_t)iov[1].base - DUCT__HEADER_SIZE;
      uint8_t kept[DUCT__HEADER_SIZE];
      memcpy(kept, at, sizeof kept);
      memcpy(at, hdr, sizeof hdr);
      duct__iov one = {at, DUCT__HEADER_SIZE + iov[1].len};
      rc = sink(ctx, &one, 1, i + 1 == n);
      memcpy(at, kept, sizeof kept);
    } else {
      rc = sink(ctx, iov, k, i + 1 == n);
    }
    if (rc != DUCT_OK)
      return rc;
  }
  return DUCT_OK;
}

duct_code duct__session_send_pieces(const duct__session *s, const duct__frame *tmpl,
                                    const duct__iov *piece, int n, size_t len,
                                    duct__frame_sink sink, void *ctx) {
  size_t frames = duct__frag_count(len, s->peer_max_frame);
  int p = 0;       /* the piece the next frame starts in */
  size_t at = 0;   /* and where in it */
  for (size_t i = 0; i < frames; i++) {
    duct__frame f;
    size_t off;
    duct__frag_at(tmpl, len, s->peer_max_frame, i, &f, &off);
    uint8_t hdr[DUCT__HEADER_SIZE];
    duct__frame_encode(&f, hdr);
    duct__iov iov[1 + 8];
    int k = 0;
    iov[k++] = (duct__iov){hdr, sizeof hdr};
    for (size_t need = f.payload_len; need > 0 && p < n && k < 9;) {
      size_t take = piece[p].len - at < need ? piece[p].len - at : need;
      iov[k++] = (duct__iov){(const uint8_t *)piece[p].base + at, take};
      need -= take;
      at += take;
      if (at == piece[p].len) {
        p++;
        at = 0;
      }
    }
    duct_code rc = sink(ctx, iov, k, i + 1 == frames);
    if (rc != DUCT_OK)
      return rc;
  }
  return DUCT_OK;
}

void duct__flow_init(duct__flow *f) {
  f->avail = DUCT__STREAM_WINDOW;
  f->taken = 0;
  f->held = 0;
}

int duct__flow_arrived(duct__flow *f, size_t len) {
  /* The sender may overdraw by one message: it sent this one while what
   * it had outstanding (at least held + taken, as CREDIT may be in
   * flight) was under the window. */
  if (f->held + f->taken >= DUCT__STREAM_WINDOW)
    return 0;
  f->held += DUCT__STREAM_COST(len);
  return 1;
}

uint32_t duct__flow_taken(duct__flow *f, size_t len) {
  uint64_t cost = DUCT__STREAM_COST(len);
  f->held -= cost < f->held ? cost : f->held;
  f->taken += cost;
  if (f->taken < DUCT__STREAM_WINDOW / 4)
    return 0;
  uint32_t grant = (uint32_t)f->taken;
  f->taken = 0;
  return grant;
}
