// Generated stubs used from C++, as a C++ program would: handler tables
// (unary and each streaming kind) filled with C++ functions and
// registered, the generated client, async, stream and register functions
// taken by address with their exact types and called, and protoc-c's INIT
// macros. gen_compile_cxx compiles it with g++ -fsyntax-only (nothing is
// linked or run), after the headers alone. A field or function that is
// missing, renamed or of another type fails the test, and so does a
// header that is not valid C++ (a field named `delete`).
#include <duct/duct.h>

#include "calc.duct.h"
#include "cxx_keywords.duct.h"
#include "nopkg_kw.duct.h"
#include "streams.duct.h"

namespace {

duct_code add(duct_ctx *ctx, const Demo__AddRequest *req,
              Demo__AddReply *reply) {
  (void)ctx;
  reply->sum = req->a + req->b;
  return DUCT_OK;
}

duct_code word(duct_ctx *ctx, const Kw__V1__Req *req, Kw__V1__Rep *reply) {
  (void)req;
  reply->text = duct_ctx_strdup(ctx, "ok");
  return reply->text != nullptr ? DUCT_OK : DUCT_RESOURCE_EXHAUSTED;
}

duct_code ping(duct_ctx *ctx, const Ping *req, Ping *reply) {
  (void)ctx;
  (void)req;
  (void)reply;
  return DUCT_UNIMPLEMENTED;
}

// Streaming handlers, one of each kind, written the way the .duct.h's
// comments say: send with a cast to the base message, receive untyped and
// cast, free what was received with the typed __free_unpacked.
duct_code watch(duct_ctx *ctx, const Streams__WatchRequest *req,
                duct_stream *out) {
  Streams__Event ev = STREAMS__EVENT__INIT;
  ev.topic = req->topic;
  for (uint32_t i = 0; i < req->max_events && !duct_ctx_cancelled(ctx); i++) {
    ev.seq = i;
    duct_code rc = duct_stream_send(
        out, reinterpret_cast<const ProtobufCMessage *>(&ev), -1);
    if (rc != DUCT_OK)
      return rc;
  }
  return DUCT_OK;
}

duct_code upload(duct_ctx *ctx, duct_stream *in, Streams__UploadReply *reply) {
  (void)ctx;
  ProtobufCMessage *m = nullptr;
  duct_code rc;
  while ((rc = duct_stream_recv(in, &m, -1)) == DUCT_OK && m != nullptr) {
    Streams__Chunk *c = reinterpret_cast<Streams__Chunk *>(m);
    reply->bytes_received += c->data.len;
    reply->chunks++;
    streams__chunk__free_unpacked(c, nullptr);
  }
  return rc;
}

duct_code chat(duct_ctx *ctx, duct_stream *stream) {
  // A subscription-like handler keeps its stream and finishes it later.
  if (duct_ctx_remaining_ms(ctx) == 0) {
    duct_stream_keep(stream);
    return duct_stream_finish(stream, DUCT_DEADLINE_EXCEEDED, "late");
  }
  ProtobufCMessage *m = nullptr;
  duct_code rc;
  while ((rc = duct_stream_recv(stream, &m, 1000)) == DUCT_OK && m != nullptr) {
    rc = duct_stream_send(stream, m, -1); // echo: same type each way
    streams__chat_message__free_unpacked(
        reinterpret_cast<Streams__ChatMessage *>(m), nullptr);
    if (rc != DUCT_OK)
      return rc;
  }
  return rc;
}

duct_code ping_streams(duct_ctx *ctx, const Streams__PingRequest *req,
                       Streams__PingReply *reply) {
  reply->text = duct_ctx_strdup(ctx, req->text);
  return DUCT_OK;
}

// An async completion: the reply arrives untyped and is the callback's.
void pinged(void *user, duct_code code, ProtobufCMessage *reply,
            const duct_status *status) {
  (void)status;
  *static_cast<duct_code *>(user) = code;
  if (reply != nullptr)
    streams__ping_reply__free_unpacked(
        reinterpret_cast<Streams__PingReply *>(reply), nullptr);
}

// The handler tables, value-initialized and then set by name: designated
// initializers are C++20, and C++17 users write it this way.
demo_calculator_handlers calc_handlers() {
  demo_calculator_handlers h{};
  h.add = add;
  return h;
}

kw_v1_cxx_words_handlers words_handlers() {
  kw_v1_cxx_words_handlers h{};
  h.delete_ = word;
  h.new_ = word;
  h.class_ = word;
  h.template_ = word;
  h.this_ = word;
  h.operator_ = word;
  h.namespace_ = word;
  h.private_ = word;
  h.virtual_ = word;
  h.throw_ = word;
  h.typename_ = word;
  h.requires_ = word;
  h.and_ = word;
  h.and_eq_ = word;
  h.char8_t_ = word;
  h.co_await_ = word;
  h.static_cast_ = word;
  h.final = word;    // contextual, not a keyword: not escaped
  h.override = word; // likewise
  return h;
}

streams_feed_handlers feed_handlers() {
  streams_feed_handlers h{};
  h.ping = ping_streams;
  h.watch = watch;
  h.upload = upload;
  h.chat = chat;
  return h;
}

timer_handlers timer_handlers_() {
  timer_handlers h{};
  h.init = ping;
  h.register_ = ping;
  h.service_ = ping;
  return h;
}

} // namespace

int main() {
  static const demo_calculator_handlers calc = calc_handlers();
  static const kw_v1_cxx_words_handlers words = words_handlers();
  static const timer_handlers timer = timer_handlers_();
  static const streams_feed_handlers feed = feed_handlers();

  // The client and register functions by address, with the types a C++
  // caller would spell out.
  duct_code (*call_add)(duct_channel *, const Demo__AddRequest *,
                        Demo__AddReply **, const duct_call_opts *) =
      &demo_calculator_add;
  duct_code (*call_delete)(duct_channel *, const Kw__V1__Req *,
                           Kw__V1__Rep **, const duct_call_opts *) =
      &kw_v1_cxx_words_delete_;
  auto call_final = &kw_v1_cxx_words_final;
  duct_code (*reg_calc)(duct_server *, const demo_calculator_handlers *,
                        void *) = &demo_calculator_register;

  // Each kind's client functions by address, with their exact types.
  duct_code (*ping_async)(duct_channel *, const Streams__PingRequest *,
                          const duct_call_opts *, duct_done_cb, void *,
                          duct_call **) = &streams_feed_ping_async;
  duct_code (*watch_start)(duct_channel *, const Streams__WatchRequest *,
                           const duct_call_opts *,
                           streams_feed_watch_stream **) = &streams_feed_watch;
  duct_code (*watch_recv)(streams_feed_watch_stream *, Streams__Event **,
                          int) = &streams_feed_watch_recv;
  void (*watch_cancel)(streams_feed_watch_stream *) =
      &streams_feed_watch_cancel;
  duct_code (*watch_finish)(streams_feed_watch_stream *, duct_status *) =
      &streams_feed_watch_finish;
  duct_code (*upload_start)(duct_channel *, const duct_call_opts *,
                            streams_feed_upload_stream **) =
      &streams_feed_upload;
  duct_code (*upload_send)(streams_feed_upload_stream *,
                           const Streams__Chunk *, int) =
      &streams_feed_upload_send;
  duct_code (*upload_close)(streams_feed_upload_stream *) =
      &streams_feed_upload_close_send;
  void (*upload_cancel)(streams_feed_upload_stream *) =
      &streams_feed_upload_cancel;
  duct_code (*upload_finish)(streams_feed_upload_stream *,
                             Streams__UploadReply **, duct_status *) =
      &streams_feed_upload_finish;
  duct_code (*chat_start)(duct_channel *, const duct_call_opts *,
                          streams_feed_chat_stream **) = &streams_feed_chat;
  duct_code (*chat_send)(streams_feed_chat_stream *,
                         const Streams__ChatMessage *, int) =
      &streams_feed_chat_send;
  duct_code (*chat_close)(streams_feed_chat_stream *) =
      &streams_feed_chat_close_send;
  duct_code (*chat_recv)(streams_feed_chat_stream *, Streams__ChatMessage **,
                         int) = &streams_feed_chat_recv;
  void (*chat_cancel)(streams_feed_chat_stream *) = &streams_feed_chat_cancel;
  duct_code (*chat_finish)(streams_feed_chat_stream *, duct_status *) =
      &streams_feed_chat_finish;

  // The service constants, as duct_server_add takes them.
  const duct_service *services[] = {&demo_calculator_service,
                                    &kw_v1_cxx_words_service, &timer_service};

  duct_server *s = nullptr;
  if (duct_server_new(nullptr, &s) != DUCT_OK)
    return 1;
  if (reg_calc(s, &calc, nullptr) != DUCT_OK ||
      kw_v1_cxx_words_register(s, &words, nullptr) != DUCT_OK ||
      timer_register(s, &timer, nullptr) != DUCT_OK ||
      streams_feed_register(s, &feed, nullptr) != DUCT_OK ||
      duct_server_add(s, services[1], &words, nullptr) != DUCT_ALREADY_EXISTS)
    return 1;
  duct_server_free(s);

  // A client call, with protoc-c's INIT macro as an aggregate initializer.
  duct_channel *ch = nullptr;
  if (duct_channel_open("calc", nullptr, &ch) != DUCT_OK)
    return 1;
  Demo__AddRequest req = DEMO__ADD_REQUEST__INIT;
  req.a = 2;
  req.b = 3;
  Demo__AddReply *reply = nullptr;
  duct_call_opts opts{};
  opts.deadline_ms = 500;
  if (call_add(ch, &req, &reply, &opts) == DUCT_OK)
    demo__add_reply__free_unpacked(reply, nullptr);
  Kw__V1__Req kreq = KW__V1__REQ__INIT;
  Kw__V1__Rep *krep = nullptr;
  if (call_delete(ch, &kreq, &krep, nullptr) == DUCT_OK)
    kw__v1__rep__free_unpacked(krep, nullptr);
  if (call_final(ch, &kreq, &krep, nullptr) == DUCT_OK)
    kw__v1__rep__free_unpacked(krep, nullptr);

  // Async unary: a handle to cancel with, released after.
  Streams__PingRequest preq = STREAMS__PING_REQUEST__INIT;
  duct_code ping_code = DUCT_UNKNOWN;
  duct_call *pcall = nullptr;
  if (ping_async(ch, &preq, nullptr, pinged, &ping_code, &pcall) == DUCT_OK) {
    duct_call_cancel(pcall);
    duct_call_release(pcall);
  }

  // Server streaming: receive until the end, then the status.
  Streams__WatchRequest wreq = STREAMS__WATCH_REQUEST__INIT;
  streams_feed_watch_stream *w = nullptr;
  if (watch_start(ch, &wreq, &opts, &w) == DUCT_OK) {
    Streams__Event *ev = nullptr;
    while (watch_recv(w, &ev, 500) == DUCT_OK && ev != nullptr)
      streams__event__free_unpacked(ev, nullptr);
    duct_status st;
    if (watch_finish(w, &st) != DUCT_OK)
      return 1;
  }

  // Client streaming: send, close, take the reply.
  streams_feed_upload_stream *u = nullptr;
  if (upload_start(ch, nullptr, &u) == DUCT_OK) {
    Streams__Chunk chunk = STREAMS__CHUNK__INIT;
    if (upload_send(u, &chunk, -1) != DUCT_OK)
      upload_cancel(u);
    upload_close(u);
    Streams__UploadReply *ur = nullptr;
    if (upload_finish(u, &ur, nullptr) == DUCT_OK)
      streams__upload_reply__free_unpacked(ur, nullptr);
  }

  // Bidirectional: one message each way, then cancel and finish.
  streams_feed_chat_stream *c = nullptr;
  if (chat_start(ch, nullptr, &c) == DUCT_OK) {
    Streams__ChatMessage msg = STREAMS__CHAT_MESSAGE__INIT;
    Streams__ChatMessage *back = nullptr;
    if (chat_send(c, &msg, -1) == DUCT_OK && chat_close(c) == DUCT_OK &&
        chat_recv(c, &back, -1) == DUCT_OK && back != nullptr)
      streams__chat_message__free_unpacked(back, nullptr);
    chat_cancel(c);
    chat_finish(c, nullptr);
  }
  (void)watch_cancel;
  duct_channel_close(ch);
  return 0;
}
