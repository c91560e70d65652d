/* The frame codec. Every check here corresponds to a row of the
 * "Malformed frames" table in docs/PROTOCOL.md; keep the two in step. */
#include "frame.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/alloc.h"

static_assert(DUCT__HEADER_SIZE == 32, "the wire header is 32 bytes");
static_assert(DUCT__DEFAULT_MAX_FRAME > DUCT__HEADER_SIZE, "room for payload");

/* Buffers up to this size are always kept; larger ones only while they
 * are being used (reasm_end). */
#define REASM_KEEP (128u * 1024u)
/* Messages that leave a buffer above REASM_KEEP mostly unused before it is
 * released. */
#define REASM_SLACK 2

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static uint16_t get16(const uint8_t *p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

void duct__frame_encode(const duct__frame *f, uint8_t out[DUCT__HEADER_SIZE]) {
  put32(out + 0, DUCT__MAGIC);
  out[4] = f->version;
  out[5] = f->type;
  put16(out + 6, f->flags);
  put32(out + 8, f->call_id);
  put32(out + 12, f->method_id);
  put32(out + 16, f->status);
  put32(out + 20, f->deadline_ms);
  put32(out + 24, f->payload_len);
  put32(out + 28, 0); /* reserved */
}

static duct_code bad(const char **why, const char *text) {
  *why = text;
  return DUCT_INTERNAL;
}

duct_code duct__frame_decode(const uint8_t *msg, size_t len, duct__frame *f,
                             const char **why) {
  *why = NULL;
  if (len < DUCT__HEADER_SIZE)
    return bad(why, "frame shorter than the 32-byte header");
  if (get32(msg) != DUCT__MAGIC)
    return bad(why, "bad magic (not a duct peer)");

  f->version = msg[4];
  f->type = msg[5];
  f->flags = get16(msg + 6);
  f->call_id = get32(msg + 8);
  f->method_id = get32(msg + 12);
  f->status = get32(msg + 16);
  f->deadline_ms = get32(msg + 20);
  f->payload_len = get32(msg + 24);

  /* The version is checked before anything whose meaning it could change,
   * so a newer peer gets a precise answer rather than "malformed". */
  if (f->version < DUCT__VERSION || f->version > DUCT__VERSION_MAX) {
    *why = "unsupported protocol version";
    return DUCT_FAILED_PRECONDITION;
  }
  /* Each type is written with the version that introduced it (frame.h). */
  if (f->type >= DUCT__HELLO && f->type <= DUCT__CREDIT &&
      f->version != (f->type >= DUCT__STREAM_DATA ? 2 : 1))
    return bad(why, "frame version does not match its type's version");
  if (get32(msg + 28) != 0)
    return bad(why, "reserved header bytes are not zero");
  if (f->flags & ~(uint16_t)DUCT__FLAG_MORE)
    return bad(why, "reserved flag bits are set");
  /* One frame is one transport message, so the length is redundant; a
   * mismatch means a confused or hostile sender. */
  if ((size_t)f->payload_len != len - DUCT__HEADER_SIZE)
    return bad(why, "payload length does not match the message length");

  switch (f->type) {
  case DUCT__HELLO:
    if (f->call_id || f->method_id || f->status || f->deadline_ms || f->flags)
      return bad(why, "HELLO with non-zero call, method, status, deadline or flags");
    if (f->payload_len != DUCT__HELLO_SIZE)
      return bad(why, "HELLO payload is not 16 bytes");
    break;
  case DUCT__REQUEST:
    if (f->call_id == 0)
      return bad(why, "REQUEST with call id 0");
    if (f->method_id == 0)
      return bad(why, "REQUEST with method id 0");
    if (f->status)
      return bad(why, "REQUEST with a status");
    break;
  case DUCT__RESPONSE:
    if (f->call_id == 0)
      return bad(why, "RESPONSE with call id 0");
    if (f->status >= DUCT_CODE_COUNT)
      return bad(why, "RESPONSE with an unknown status code");
    if (f->deadline_ms)
      return bad(why, "RESPONSE with a deadline");
    if (f->status != DUCT_OK &&
        (f->flags || f->payload_len > DUCT__MAX_ERROR_TEXT))
      return bad(why, "error RESPONSE fragmented or with text over 1024 bytes");
    break;
  case DUCT__CANCEL:
    if (f->call_id == 0)
      return bad(why, "CANCEL with call id 0");
    if (f->method_id || f->status || f->deadline_ms || f->flags || f->payload_len)
      return bad(why, "CANCEL with fields other than the call id");
    break;
  case DUCT__GOAWAY:
    if (f->call_id || f->method_id || f->deadline_ms || f->flags)
      return bad(why, "GOAWAY with a call, method, deadline or flags");
    if (f->status >= DUCT_CODE_COUNT)
      return bad(why, "GOAWAY with an unknown status code");
    if (f->payload_len > DUCT__MAX_ERROR_TEXT)
      return bad(why, "GOAWAY text over 1024 bytes");
    break;
  case DUCT__STREAM_DATA:
    if (f->call_id == 0)
      return bad(why, "STREAM_DATA with call id 0");
    if (f->method_id || f->status || f->deadline_ms)
      return bad(why, "STREAM_DATA with a method, status or deadline");
    break;
  case DUCT__HALF_CLOSE:
    if (f->call_id == 0)
      return bad(why, "HALF_CLOSE with call id 0");
    if (f->method_id || f->status || f->deadline_ms || f->flags || f->payload_len)
      return bad(why, "HALF_CLOSE with fields other than the call id");
    break;
  case DUCT__CREDIT:
    if (f->call_id == 0)
      return bad(why, "CREDIT with call id 0");
    if (f->method_id || f->status || f->deadline_ms || f->flags)
      return bad(why, "CREDIT with a method, status, deadline or flags");
    if (f->payload_len != DUCT__CREDIT_SIZE || get32(msg + DUCT__HEADER_SIZE) == 0)
      return bad(why, "CREDIT payload is not a non-zero 4-byte count");
    break;
  default:
    return bad(why, "unknown frame type");
  }
  if ((f->flags & DUCT__FLAG_MORE) && f->payload_len == 0)
    return bad(why, "empty fragment with MORE set");
  return DUCT_OK;
}

uint32_t duct__credit_value(const uint8_t *payload) { return get32(payload); }

void duct__credit_encode(uint8_t out[DUCT__CREDIT_SIZE], uint32_t n) { put32(out, n); }

void duct__hello_encode(const duct__hello *h, uint8_t out[DUCT__HELLO_SIZE]) {
  put16(out + 0, h->min_version);
  put16(out + 2, h->max_version);
  put32(out + 4, h->max_frame);
  put32(out + 8, h->max_message);
  put32(out + 12, 0);
}

duct_code duct__hello_decode(const uint8_t *p, size_t len, duct__hello *h,
                             const char **why) {
  *why = NULL;
  if (len != DUCT__HELLO_SIZE)
    return bad(why, "HELLO payload is not 16 bytes");
  h->min_version = get16(p);
  h->max_version = get16(p + 2);
  h->max_frame = get32(p + 4);
  h->max_message = get32(p + 8);
  if (get32(p + 12) != 0)
    return bad(why, "HELLO reserved bytes are not zero");
  if (h->min_version == 0 || h->min_version > h->max_version)
    return bad(why, "HELLO version range is empty");
  if (h->max_frame < DUCT__MIN_MAX_FRAME)
    return bad(why, "HELLO max frame smaller than a header plus one byte");
  return DUCT_OK;
}

size_t duct__frag_count(size_t len, size_t max_frame) {
  size_t room = max_frame - DUCT__HEADER_SIZE;
  assert(max_frame >= DUCT__MIN_MAX_FRAME);
  return len == 0 ? 1 : (len + room - 1) / room;
}

void duct__frag_at(const duct__frame *tmpl, size_t len, size_t max_frame,
                   size_t i, duct__frame *out, size_t *off) {
  size_t room = max_frame - DUCT__HEADER_SIZE;
  size_t n = duct__frag_count(len, max_frame);
  assert(i < n);
  *out = *tmpl;
  *off = i * room;
  out->payload_len = (uint32_t)(i + 1 < n ? room : len - *off);
  out->flags = (uint16_t)((tmpl->flags & ~DUCT__FLAG_MORE) |
                          (i + 1 < n ? DUCT__FLAG_MORE : 0));
}

int duct__budget_take(duct__budget *b, size_t n) {
  if (!b || !b->limit) {
    if (b)
      atomic_fetch_add(&b->used, n);
    return 1;
  }
  size_t cur = atomic_load(&b->used);
  do {
    if (n > b->limit || cur > b->limit - n)
      return 0;
  } while (!atomic_compare_exchange_weak(&b->used, &cur, cur + n));
  return 1;
}

void duct__budget_give(duct__budget *b, size_t n) {
  if (b)
    atomic_fetch_sub(&b->used, n);
}

void duct__reasm_init(duct__reasm *r, uint32_t max_message) {
  memset(r, 0, sizeof *r);
  r->max_message = max_message ? max_message : DUCT__DEFAULT_MAX_MESSAGE;
}

void duct__reasm_set_budget(duct__reasm *r, duct__budget *b) { r->budget = b; }

void duct__reasm_free(duct__reasm *r) {
  duct__budget_give(r->budget, r->cap);
  duct__free(r->buf);
  r->buf = NULL;
  r->len = r->cap = 0;
  r->active = r->discard = 0;
}

/* Ends the message in progress (r->len is what it used). A large buffer
 * is kept while messages keep filling a quarter of it, so a steady stream
 * of large messages neither allocates nor re-copies while growing; after
 * REASM_SLACK messages in a row that did not need it, it goes back to the
 * system. */
static void reasm_end(duct__reasm *r) {
  /* Under a budget that is half spent, a kept buffer is memory others
   * may need for messages in progress: give it back now. */
  int pressed = r->budget && r->budget->limit &&
                atomic_load(&r->budget->used) > r->budget->limit / 2;
  if (r->cap > REASM_KEEP || (pressed && r->cap)) {
    if (r->len >= r->cap / 4 && !r->discard && !pressed)
      r->slack = 0;
    else if (pressed || ++r->slack >= REASM_SLACK) {
      duct__budget_give(r->budget, r->cap);
      duct__free(r->buf);
      r->buf = NULL;
      r->cap = 0;
      r->slack = 0;
    }
  }
  r->active = r->discard = 0;
  r->len = 0;
}

/* Appends a fragment, growing by doubling but never past max_message:
 * the allocation follows bytes received, not any length a peer claims. */
static int reasm_append(duct__reasm *r, const uint8_t *p, size_t n) {
  if (n > r->max_message - r->len)
    return 1;
  if (r->len + n > r->cap) {
    size_t cap = r->cap ? r->cap : 64u * 1024u;
    while (cap < r->len + n)
      cap *= 2;
    if (cap > r->max_message)
      cap = r->max_message;
    if (!duct__budget_take(r->budget, cap - r->cap))
      return 2;
    uint8_t *nb = duct__realloc(r->buf, cap);
    if (!nb) {
      duct__budget_give(r->budget, cap - r->cap);
      return 1;
    }
    r->buf = nb;
    r->cap = cap;
  }
  memcpy(r->buf + r->len, p, n);
  r->len += n;
  return 0;
}

static int same_message(const duct__frame *a, const duct__frame *b) {
  return a->type == b->type && a->call_id == b->call_id &&
         a->method_id == b->method_id && a->status == b->status &&
         a->deadline_ms == b->deadline_ms;
}

uint8_t *duct__reasm_slot(duct__reasm *r, size_t *room) {
  /* A transport may borrow the DUCT__HEADER_SIZE bytes before the slot
   * (frame.h): only offer one that has them, within this buffer. The
   * first fragment of a fragmented message is never that short in
   * practice (senders fill their frames), so little is lost. */
  if (!r->active || r->discard || !r->buf || r->len >= r->cap || r->len < DUCT__HEADER_SIZE)
    return NULL;
  size_t to_max = r->max_message - r->len;
  *room = r->cap - r->len < to_max ? r->cap - r->len : to_max;
  return *room ? r->buf + r->len : NULL;
}

/* payload == NULL: the payload is already in place at r->buf + r->len
 * (duct__reasm_feed_placed). */
static duct_code feed(duct__reasm *r, const duct__frame *f, const uint8_t *payload,
                      duct__msg *out, const char **why);

duct_code duct__reasm_feed_placed(duct__reasm *r, const duct__frame *f, duct__msg *out,
                                  const char **why) {
  if (r->active && !r->discard && same_message(&r->first, f) &&
      f->payload_len <= r->cap - r->len && f->payload_len <= r->max_message - r->len)
    return feed(r, f, NULL, out, why);
  /* Not the next fragment: fed as received (its bytes are still where the
   * slot was, not yet part of the message). */
  return feed(r, f, r->buf ? r->buf + r->len : NULL, out, why);
}

duct_code duct__reasm_feed(duct__reasm *r, const duct__frame *f,
                           const uint8_t *payload, duct__msg *out,
                           const char **why) {
  return feed(r, f, payload, out, why);
}

static duct_code feed(duct__reasm *r, const duct__frame *f, const uint8_t *payload,
                      duct__msg *out, const char **why) {
  int more = (f->flags & DUCT__FLAG_MORE) != 0;
  *why = NULL;
  out->done = 0;
  assert(f->type == DUCT__REQUEST || f->type == DUCT__RESPONSE ||
         f->type == DUCT__STREAM_DATA);

  if (!r->active) {
    reasm_end(r); /* the previous message's data is no longer borrowed */
    if (!more) {
      /* The common case: a whole message in one frame, passed through
       * without a copy. */
      out->done = 1;
      out->hdr = *f;
      out->data = payload;
      out->len = f->payload_len;
      if (f->payload_len > r->max_message) {
        *why = "message larger than the maximum message size";
        return DUCT_RESOURCE_EXHAUSTED;
      }
      return DUCT_OK;
    }
    r->active = 1;
    r->discard = 0;
    r->len = 0;
    r->first = *f;
  } else if (!same_message(&r->first, f)) {
    reasm_end(r);
    return bad(why, "fragment does not continue the message in progress");
  }

  int full;
  if (!payload)
    r->len += f->payload_len; /* received in place, checked by the caller */
  else if (!r->discard && (full = reasm_append(r, payload, f->payload_len)) != 0) {
    r->discard = (unsigned char)full; /* read to the last fragment, keep nothing */
    r->len = 0;
  }
  if (more)
    return DUCT_OK;

  out->done = 1;
  out->hdr = r->first;
  out->hdr.flags = (uint16_t)(out->hdr.flags & ~DUCT__FLAG_MORE);
  if (r->discard) {
    out->data = NULL;
    out->len = 0;
    out->hdr.payload_len = 0;
    *why = r->discard == 2 ? "the memory budget for partly received messages is spent"
                           : "message larger than the maximum message size";
    reasm_end(r);
    return DUCT_RESOURCE_EXHAUSTED;
  }
  out->data = r->buf;
  out->len = r->len;
  out->hdr.payload_len = (uint32_t)r->len;
  /* The data stays valid until the next feed; release happens then. */
  r->active = 0;
  return DUCT_OK;
}

uint32_t duct__method_id(const char *full_name) {
  uint32_t h = 2166136261u;
  for (const unsigned char *p = (const unsigned char *)full_name; *p; p++) {
    h ^= *p;
    h *= 16777619u;
  }
  return h;
}
