/* duct_channel: the platform-neutral half of the client. A channel is a
 * pool of connections ("links") to one address; a call borrows one link,
 * sends its request frames, reads its response frames and gives the link
 * back. A link that saw anything unexpected (deadline, broken pipe,
 * protocol error) is closed instead, so no stale byte can ever be read as
 * the answer to a later call. */
#include "duct/client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/frame.h"
#include "runtime/log.h"
#include "runtime/pack.h"
#include "runtime/session.h"
#include "runtime/sys.h"
#include "runtime/transport.h"
#include "runtime/utf8.h"
#include "runtime/wire.h"
#include "runtime/alloc.h"
#include "client/internal.h"
#include "client/chan.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 5000u
#define DEFAULT_MAX_CONNECTIONS 64u
/* Smallest max_message_size accepted (duct/client.h): the server's floor,
 * for the same reason (a smaller limit is nearly always KiB given as
 * bytes; see server/server.c). */
#define MIN_MAX_MESSAGE 1024u

/* Fills the caller's status (if any) and returns code. */
static duct_code finish(const duct_call_opts *o, duct_code code, const char *fmt, ...)
    DUCT_PRINTF_FORMAT(3, 4);
static duct_code finish(const duct_call_opts *o, duct_code code, const char *fmt, ...) {
  if (o && o->status) {
    o->status->code = code;
    o->status->message[0] = '\0';
    /* Cut, if at all, between characters (runtime/utf8.h). */
    if (fmt) {
      va_list ap;
      va_start(ap, fmt);
      duct__utf8_vformat(o->status->message, sizeof o->status->message, fmt, ap);
      va_end(ap);
    } else if (code != DUCT_OK) {
      duct__utf8_format(o->status->message, sizeof o->status->message, "%s",
                        duct_code_message(code));
    }
  }
  return code;
}

duct_code duct_channel_open(const char *address, const duct_channel_opts *o,
                            duct_channel **out) {
  return duct__channel_open_with(address, o, &duct__platform_transport, out);
}

duct_code duct__channel_open_with(const char *address, const duct_channel_opts *o,
                                  const duct__transport_ops *t, duct_channel **out) {
  /* No channel yet: refusals go to the log the options name. */
  duct__logger lg = {o ? o->log : NULL, o ? o->log_user : NULL};
  if (!out) {
    duct__log(&lg, DUCT_LOG_ERROR, "duct_channel_open: out is NULL");
    return DUCT_INVALID_ARGUMENT;
  }
  *out = NULL;
  if (!address) {
    duct__log(&lg, DUCT_LOG_ERROR, "duct_channel_open: the address is NULL");
    return DUCT_INVALID_ARGUMENT;
  }
  if (o && o->max_message_size && o->max_message_size < MIN_MAX_MESSAGE) {
    duct__log(&lg, DUCT_LOG_ERROR,
              "duct_channel_open: option max_message_size = %u is out of range; "
              "accepted: 0 (4 MiB) or %u..4294967295 bytes",
              (unsigned)o->max_message_size, MIN_MAX_MESSAGE);
    return DUCT_INVALID_ARGUMENT;
  }
  /* An empty or malformed address is the transport's to refuse, with the
   * same text the server logs (link_new below). */
  duct_channel *ch = duct__calloc(1, sizeof *ch);
  if (!ch || !(ch->address = duct__malloc(strlen(address) + 1))) {
    duct__free(ch);
    return DUCT_RESOURCE_EXHAUSTED;
  }
  strcpy(ch->address, address);
  /* The caller's string need not outlive this call (duct/client.h). Its
   * form is the transport's to check (a uid or a SID), in link_new. */
  if (o && o->expect_server_user && o->expect_server_user[0]) {
    size_t n = strlen(o->expect_server_user) + 1;
    if (!(ch->expect_user = duct__malloc(n))) {
      duct__free(ch->address);
      duct__free(ch);
      return DUCT_RESOURCE_EXHAUSTED;
    }
    memcpy(ch->expect_user, o->expect_server_user, n);
  }
  ch->t = t;
  if (o)
    ch->o = *o;
  ch->o.expect_server_user = ch->expect_user;
  if (!ch->o.connect_timeout_ms)
    ch->o.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
  if (!ch->o.max_connections)
    ch->o.max_connections = DEFAULT_MAX_CONNECTIONS;
  if (!ch->o.max_message_size)
    ch->o.max_message_size = DUCT__DEFAULT_MAX_MESSAGE;
  ch->log.cb = ch->o.log;
  ch->log.user = ch->o.log_user;
  duct__mutex_init(&ch->mu);
  duct__cond_init(&ch->cv);

  /* One connection now, so a missing server is reported by open. */
  char msg[512];
  clink *k;
  duct_code rc = duct__clink_new(ch, duct__now_ms() + ch->o.connect_timeout_ms, &k, msg, sizeof msg);
  if (rc != DUCT_OK) {
    /* Refused addresses included: the transport's text says what the
     * address looks like and what to write instead. Control characters
     * in the address are shown as '?', so it cannot break the line. */
    char shown[200];
    size_t i = 0;
    for (; address[i] && i + 1 < sizeof shown; i++)
      shown[i] = (unsigned char)address[i] < 0x20 || address[i] == 0x7f ? '?' : address[i];
    shown[duct__utf8_cut(shown, i)] = '\0'; /* a long one, cut between characters */
    duct__log(&ch->log, DUCT_LOG_ERROR, "cannot open a channel to %s: %s", shown, msg);
    duct_channel_close(ch);
    return rc;
  }
  ch->idle = k;
  ch->open = 1;
  *out = ch;
  return DUCT_OK;
}

void duct_channel_close(duct_channel *ch) {
  if (!ch)
    return;
  duct__mux_free(ch->mx);
  while (ch->idle) {
    clink *k = ch->idle;
    ch->idle = k->next;
    duct__clink_free(k);
  }
  duct__cond_destroy(&ch->cv);
  duct__mutex_destroy(&ch->mu);
  duct__free(ch->expect_user);
  duct__free(ch->address);
  duct__free(ch);
}

/* Borrows an idle link, or opens one if the pool has room, or waits. */
static duct_code acquire(duct_channel *ch, int64_t deadline, clink **out, char *msg,
                         size_t msgcap) {
  duct__mutex_lock(&ch->mu);
  for (;;) {
    if (ch->idle) {
      *out = ch->idle;
      ch->idle = (*out)->next;
      duct__mutex_unlock(&ch->mu);
      return DUCT_OK;
    }
    if (ch->open < ch->o.max_connections)
      break;
    if (duct__cond_wait(&ch->cv, &ch->mu, deadline) && deadline >= 0 &&
        duct__now_ms() >= deadline) {
      duct__mutex_unlock(&ch->mu);
      duct__utf8_format(msg, msgcap, "all %u connections stayed busy until the deadline",
                        (unsigned)ch->o.max_connections);
      return DUCT_DEADLINE_EXCEEDED;
    }
  }
  ch->open++;
  duct__mutex_unlock(&ch->mu);
  int64_t connect_by = duct__now_ms() + ch->o.connect_timeout_ms;
  if (deadline >= 0 && deadline < connect_by)
    connect_by = deadline;
  duct_code rc = duct__clink_new(ch, connect_by, out, msg, msgcap);
  if (rc != DUCT_OK) {
    duct__mutex_lock(&ch->mu);
    ch->open--;
    duct__cond_signal(&ch->cv);
    duct__mutex_unlock(&ch->mu);
  }
  return rc;
}

static void release(duct_channel *ch, clink *k, int healthy) {
  duct__mutex_lock(&ch->mu);
  if (healthy) {
    k->next = ch->idle;
    ch->idle = k;
  } else {
    ch->open--;
  }
  duct__cond_signal(&ch->cv);
  duct__mutex_unlock(&ch->mu);
  if (!healthy)
    duct__clink_free(k);
}

typedef struct request_sink {
  clink *k;
  size_t *rlen;
  int64_t deadline;
} request_sink;

/* Every frame but the last is a send; the last is a transact that also
 * reads the first response message into k->rxbuf (TransactNamedPipe on
 * Windows: one system call for both). */
static duct_code request_frame(void *ctx, const duct__iov *iov, int n, int last) {
  request_sink *r = ctx;
  clink *k = r->k;
  return last ? k->t->link_transact(k->l, iov, n, k->rxbuf, DUCT__DEFAULT_MAX_FRAME, r->rlen,
                                    r->deadline)
              : k->t->link_send(k->l, iov, n, r->deadline);
}

static duct_code send_request(clink *k, const duct__frame *tmpl, uint8_t *payload, size_t len,
                              size_t *rlen, int64_t deadline) {
  request_sink r = {k, rlen, deadline};
  return duct__session_send(&k->sess, tmpl, payload, len, DUCT__SINK_DONE, request_frame, &r);
}

static const char *transport_text(duct_code rc) {
  switch (rc) {
  case DUCT_DEADLINE_EXCEEDED: return "the deadline expired before the reply arrived";
  case DUCT_UNAVAILABLE: return "the connection to the server broke";
  case DUCT_RESOURCE_EXHAUSTED: return "a reply frame was larger than the client accepts";
  default: return duct_code_message(rc);
  }
}

/* The next frame of a reply. A fragment after the first is received
 * straight into the reassembly buffer where the transport can (a scatter
 * read: header to rxbuf, payload to the slot), and *slot then says where
 * its payload is; otherwise everything lands in rxbuf and *slot is NULL. */
static duct_code recv_next(clink *k, uint8_t **slot, size_t *len, int64_t deadline) {
  size_t room = 0, most = DUCT__DEFAULT_MAX_FRAME - DUCT__HEADER_SIZE;
  *slot = NULL;
  uint8_t *at = k->no_scatter || !k->t->link_recv_into ? NULL : duct__reasm_slot(&k->sess.rx, &room);
  if (at && room >= most) {
    duct_code rc = k->t->link_recv_into(k->l, k->rxbuf, DUCT__HEADER_SIZE, at, most, len, deadline);
    if (rc != DUCT_UNIMPLEMENTED) {
      /* A message shorter than a header is all in rxbuf: the decoder
       * refuses it from there. */
      if (rc == DUCT_OK && *len >= DUCT__HEADER_SIZE)
        *slot = at;
      return rc;
    }
    k->no_scatter = 1;
  }
  return k->t->link_recv(k->l, k->rxbuf, DUCT__DEFAULT_MAX_FRAME, len, deadline);
}

duct_code duct_call_unary(duct_channel *ch, const duct_method *m, const ProtobufCMessage *req,
                          ProtobufCMessage **reply, const duct_call_opts *o) {
  if (reply)
    *reply = NULL;
  if (!ch || !m || !req || !reply || !m->input || !m->output)
    return finish(o, DUCT_INVALID_ARGUMENT, "duct_call_unary: missing argument");
  if (req->descriptor != m->input)
    return finish(o, DUCT_INVALID_ARGUMENT, "request is a %s, %s takes a %s",
                  req->descriptor->name, m->name, m->input->name);
  int64_t start = duct__now_ms();
  int64_t deadline = o && o->deadline_ms ? start + o->deadline_ms : -1;

  char msg[512];
  clink *k;
  duct_code rc = acquire(ch, deadline, &k, msg, sizeof msg);
  if (rc != DUCT_OK)
    return finish(o, rc, "%s", msg);

  size_t len = protobuf_c_message_get_packed_size(req);
  if (len > k->sess.peer_max_message) {
    release(ch, k, 1);
    return finish(o, DUCT_RESOURCE_EXHAUSTED,
                  "request of %zu bytes exceeds the server's maximum message size of %u",
                  len, (unsigned)k->sess.peer_max_message);
  }
  if (DUCT__HEADER_SIZE + len > k->txcap) {
    /* Grows only: a steady stream of calls of one size allocates nothing. */
    uint8_t *nb = duct__realloc(k->txbuf, DUCT__HEADER_SIZE + len);
    if (!nb) {
      release(ch, k, 1);
      return finish(o, DUCT_RESOURCE_EXHAUSTED, "out of memory packing the request");
    }
    k->txbuf = nb;
    k->txcap = DUCT__HEADER_SIZE + len;
  }
  /* A request of several frames whose large `bytes` field can be sent
   * from the caller's memory is packed around it (runtime/pack.h): the
   * caller's request stays untouched until this call returns. */
  duct__gather g;
  int pieces = 0;
  if (k->t->sends_gather && len > DUCT__DEFAULT_MAX_FRAME && duct__gather_worth(req))
    pieces = duct__gather_pack(&g, req, len, k->txbuf + DUCT__HEADER_SIZE);
  if (!pieces)
    protobuf_c_message_pack(req, k->txbuf + DUCT__HEADER_SIZE);

  uint32_t call_id = k->next_call++;
  if (k->next_call == 0)
    k->next_call = 1;
  uint32_t remaining = 0;
  if (deadline >= 0) {
    int64_t left = deadline - duct__now_ms();
    if (left <= 0) {
      release(ch, k, 1);
      return finish(o, DUCT_DEADLINE_EXCEEDED, "the deadline expired before the call was sent");
    }
    remaining = (uint32_t)left;
  }
  duct__frame tmpl = {DUCT__VERSION, DUCT__REQUEST, 0, call_id, m->id, 0, remaining, 0};
  size_t rlen = 0;
  request_sink sink = {k, &rlen, deadline};
  rc = pieces ? duct__session_send_pieces(&k->sess, &tmpl, g.piece, pieces, len, request_frame,
                                          &sink)
              : send_request(k, &tmpl, k->txbuf + DUCT__HEADER_SIZE, len, &rlen, deadline);
  if (rc != DUCT_OK) {
    release(ch, k, 0);
    return finish(o, rc, "%s: %s", m->name, transport_text(rc));
  }

  /* Read response frames until the message for this call is complete.
   * `placed`: the frame's payload was received at the reassembly slot. */
  uint8_t *slot = NULL;
  for (int placed = 0;; placed = slot != NULL) {
    duct__frame f;
    const char *why;
    rc = duct__frame_decode(k->rxbuf, rlen, &f, &why);
    if (rc != DUCT_OK) {
      release(ch, k, 0);
      duct__log(&ch->log, DUCT_LOG_WARN, "%s: server sent a malformed frame: %s", ch->address, why);
      return finish(o, rc, "server sent a malformed frame: %s", why);
    }
    const uint8_t *payload = placed ? slot : k->rxbuf + DUCT__HEADER_SIZE;
    if (f.type == DUCT__GOAWAY) {
      char text[DUCT__MAX_ERROR_TEXT + 1];
      duct__payload_text(text, sizeof text, payload, f.payload_len);
      release(ch, k, 0);
      return finish(o, f.status ? (duct_code)f.status : DUCT_UNAVAILABLE, "%s", text);
    }
    if (f.type != DUCT__RESPONSE) {
      release(ch, k, 0);
      return finish(o, DUCT_INTERNAL, "server sent an unexpected frame type %u", f.type);
    }
    if (f.call_id != call_id) {
      /* An answer to an earlier call this link gave up on can never be
       * this call's reply; drop it and keep reading. */
      duct__log(&ch->log, DUCT_LOG_DEBUG, "dropping a late response to call %u",
                (unsigned)f.call_id);
    } else if (f.status != DUCT_OK) {
      char text[DUCT__MAX_ERROR_TEXT + 1];
      duct__payload_text(text, sizeof text, payload, f.payload_len);
      release(ch, k, !k->sess.rx.active);
      return finish(o, (duct_code)f.status, "%s", text[0] ? text : duct_code_message((int)f.status));
    } else {
      duct__msg done;
      rc = placed ? duct__reasm_feed_placed(&k->sess.rx, &f, &done, &why)
                  : duct__reasm_feed(&k->sess.rx, &f, payload, &done, &why);
      if (rc == DUCT_INTERNAL) {
        release(ch, k, 0);
        return finish(o, rc, "server sent a malformed reply: %s", why);
      }
      if (done.done) {
        if (rc != DUCT_OK) {
          release(ch, k, 1);
          return finish(o, rc, "reply exceeds this client's maximum message size of %u",
                        (unsigned)ch->o.max_message_size);
        }
        ProtobufCMessage *r = protobuf_c_message_unpack(
            m->output, o ? o->allocator : NULL, done.len, done.data);
        release(ch, k, 1);
        if (!r)
          return finish(o, DUCT_INTERNAL, "reply does not parse as %s", m->output->name);
        *reply = r;
        return finish(o, DUCT_OK, NULL);
      }
    }
    rc = recv_next(k, &slot, &rlen, deadline);
    if (rc != DUCT_OK) {
      release(ch, k, 0);
      return finish(o, rc, "%s: %s", m->name, transport_text(rc));
    }
  }
}
