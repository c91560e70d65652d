/* runtime/pack.c - see pack.h. */
#include "runtime/pack.h"

#include <string.h>

int duct__gather_worth(const ProtobufCMessage *msg) {
  const ProtobufCMessageDescriptor *d = msg->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->type != PROTOBUF_C_TYPE_BYTES || f->label == PROTOBUF_C_LABEL_REPEATED)
      continue;
    const ProtobufCBinaryData *b =
        (const ProtobufCBinaryData *)((const char *)msg + f->offset);
    if (b->len >= DUCT__GATHER_MIN)
      return 1;
  }
  return 0;
}

/* protobuf-c hands over a `bytes` field's data in one append of its own
 * (after its tag and length), from the message's memory: those appends
 * that are large become pieces of their own. */
static void append(ProtobufCBuffer *b, size_t len, const uint8_t *data) {
  duct__gather *g = (duct__gather *)b;
  if (len == 0 || g->overflow)
    return;
  g->total += len;
  duct__iov *last = g->n ? &g->piece[g->n - 1] : NULL;
  if (len >= DUCT__GATHER_MIN) {
    if (g->n == DUCT__GATHER_PIECES) {
      g->overflow = 1;
      return;
    }
    g->piece[g->n++] = (duct__iov){data, len};
    g->last_copied = 0;
    return;
  }
  uint8_t *at = g->scratch + g->used;
  memcpy(at, data, len);
  g->used += len;
  if (last && g->last_copied) {
    last->len += len; /* follows the copied part before it, in scratch */
  } else if (g->n == DUCT__GATHER_PIECES) {
    g->overflow = 1;
  } else {
    g->piece[g->n++] = (duct__iov){at, len};
    g->last_copied = 1;
  }
}

int duct__gather_pack(duct__gather *g, const ProtobufCMessage *msg, size_t len,
                      uint8_t *scratch) {
  memset(g, 0, sizeof *g);
  g->base.append = append;
  g->scratch = scratch;
  protobuf_c_message_pack_to_buffer(msg, &g->base);
  /* The scratch never holds more than the message: it is len bytes. */
  return g->overflow || g->total != len ? 0 : g->n;
}
