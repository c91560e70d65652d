// Generated stubs used from C++, as a C++ program would: handler tables
// filled with C++ functions and registered, the generated client and
// register functions taken by address with their exact types, and
// protoc-c's INIT macros. gen_compile_cxx compiles it with g++
// -fsyntax-only (nothing is linked or run), after the headers alone. A field or function that is
// missing, renamed or of another type fails the test, and so does a
// header that is not valid C++ (a field named `delete`).
#include <duct/duct.h>

#include "calc.duct.h"
#include "cxx_keywords.duct.h"
#include "nopkg_kw.duct.h"

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

  // The service constants, as duct_server_add takes them.
  const duct_service *services[] = {&demo_calculator_service,
                                    &kw_v1_cxx_words_service, &timer_service};

  duct_server *s = nullptr;
  if (duct_server_new(nullptr, &s) != DUCT_OK)
    return 1;
  if (reg_calc(s, &calc, nullptr) != DUCT_OK ||
      kw_v1_cxx_words_register(s, &words, nullptr) != DUCT_OK ||
      timer_register(s, &timer, nullptr) != DUCT_OK ||
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
  duct_channel_close(ch);
  return 0;
}
