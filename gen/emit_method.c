/* gen/emit_method.c - the emitter for one method: its client functions
 * (declarations and definitions), its handler table field, its invoke
 * trampoline and its duct_method entry.
 *
 * What a method gets depends on its kind (docs/CODEGEN.md):
 *   unary             a blocking function and an _async one;
 *   server streaming  a typed stream handle, the start function, _recv,
 *                     _cancel, _finish;
 *   client streaming  the handle, start, _send, _close_send, _cancel,
 *                     _finish (which returns the reply);
 *   bidirectional     all of them but _async.
 * Each client function is described once (client_fns below) and printed
 * twice, as a declaration with its comment in the header and as a
 * definition in the source, so the two cannot drift apart. */
#include "gen.h"

/* How the owner of `var`, a message of type t, frees it: protoc-c emits a
 * typed __free_unpacked for top-level messages only. For comments: '~' is
 * gen_buf_comment's unbreakable space. */
static const char *free_call(gen_arena *a, const gen_type *t, const char *var,
                             const char *alloc) {
  if (t->top_level)
    return gen_sprintf(a, "%s__free_unpacked(%s,~%s)", t->c_lower, var, alloc);
  return gen_sprintf(a, "protobuf_c_message_free_unpacked(&%s%s%s->base,~%s)",
                     var[0] == '*' ? "(" : "", var, var[0] == '*' ? ")" : "",
                     alloc);
}

/* A call statement "<head>a, b, c<tail>", wrapped like a prototype
 * (gen_buf_params): the generated bodies name long types and arrays. */
static const char *call(gen_arena *a, const char *head,
                        const char *const *args, size_t n, const char *tail) {
  gen_buf b;
  gen_buf_init(&b, a);
  gen_buf_params(&b, "  ", head, args, n, tail);
  return b.text;
}

/* How a streaming handler frees a received message m (a ProtobufCMessage
 * pointer, as duct_stream_recv gives it) of type t. */
static const char *handler_free(gen_arena *a, const gen_type *t) {
  if (t->top_level)
    return gen_sprintf(a, "%s__free_unpacked((%s~*)m,~NULL)", t->c_lower,
                       t->c_name);
  return "protobuf_c_message_free_unpacked(m,~NULL)";
}

/* One client function: its prototype, the header's comment and the
 * source's body (the lines between the braces). */
typedef struct client_fn {
  const char *ret; /* "duct_code" or "void" */
  const char *name;
  const char *params[6];
  size_t n_params;
  const char *doc;
  const char *body;
} client_fn;

enum { MAX_CLIENT_FNS = 6 };

/* The cast from the typed handle to the runtime's. */
#define ST "(duct_client_stream *)st"

static void unary_fns(gen_arena *a, const gen_service *s, const gen_method *m,
                      size_t index, client_fn *f) {
  const char *in = m->input->c_name, *out = m->output->c_name;
  const char *target = gen_sprintf(a, "&%s[%zu]", s->methods_var, index);
  f[0] = (client_fn){
      .ret = "duct_code",
      .name = m->client_fn,
      .params = {"duct_channel *ch", gen_sprintf(a, "const %s *req", in),
                 gen_sprintf(a, "%s **reply", out),
                 "const duct_call_opts *opts"},
      .n_params = 4,
      .doc = gen_sprintf(
          a,
          "Calls %s (method id 0x%08x) on channel `ch` and waits for the "
          "reply.\n"
          "  req    borrowed: packed before the call returns.\n"
          "  reply  on DUCT_OK, *reply is a new %s that the caller owns and "
          "frees with %s, alloc being opts->allocator (NULL: the default). "
          "On any other code, *reply is NULL.\n"
          "  opts   deadline, reply allocator and status out; NULL for "
          "defaults.\n"
          "Returns DUCT_OK, the handler's code, or duct's own "
          "(DUCT_UNAVAILABLE, DUCT_DEADLINE_EXCEEDED, ...): see "
          "duct_call_unary in duct/client.h.",
          m->full_name, m->id, out, free_call(a, m->output, "*reply", "alloc")),
      /* The runtime checks every argument (and fills opts->status when it
       * refuses), so a NULL reply is passed on as NULL rather than
       * checked twice. */
      .body = gen_sprintf(
          a, "  ProtobufCMessage *out = NULL;\n%s  if (reply != NULL)\n"
             "    *reply = (%s *)out;\n  return rc;\n",
          call(a, "duct_code rc = duct_call_unary(",
               (const char *[]){"ch", target, "(const ProtobufCMessage *)req",
                                "reply != NULL ? &out : NULL", "opts"},
               5, ");\n"),
          out),
  };
  f[1] = (client_fn){
      .ret = "duct_code",
      .name = m->async_fn,
      .params = {"duct_channel *ch", gen_sprintf(a, "const %s *req", in),
                 "const duct_call_opts *opts", "duct_done_cb done",
                 "void *user", "duct_call **call"},
      .n_params = 6,
      .doc = gen_sprintf(
          a,
          "Starts %s on channel `ch` and returns at once; `done` runs when "
          "the call ends (duct_call_async in duct/client.h).\n"
          "  req    borrowed: packed and sent before this returns.\n"
          "  opts   deadline and reply allocator; NULL for defaults. "
          "opts->status is not used: the callback gets the status.\n"
          "  done   runs exactly once if this returns DUCT_OK, never "
          "otherwise, with `user`, the code and the status, on the "
          "channel's completion thread (or in duct_channel_dispatch with "
          "manual_dispatch). On DUCT_OK its `reply` is a %s~*r~=~(%s~*)reply "
          "that the callback owns and frees with %s, alloc being "
          "opts->allocator (NULL: the default); otherwise reply is NULL.\n"
          "  call   NULL, or where to put a handle for duct_call_cancel, "
          "owned by the caller and released with duct_call_release (before "
          "or after the call ends).\n"
          "Returns DUCT_OK when the call started; any other code means it "
          "did not, and done will not run.",
          m->full_name, out, out, free_call(a, m->output, "r", "alloc")),
      .body = call(a, "return duct_call_async(",
                   (const char *[]){"ch", target,
                                    "(const ProtobufCMessage *)req", "opts",
                                    "done", "user", "call"},
                   7, ");\n"),
  };
}

/* The start, _send, _close_send, _recv, _cancel and _finish of a
 * streaming method; returns how many. */
static size_t stream_fns(gen_arena *a, const gen_service *s,
                         const gen_method *m, size_t index, client_fn *f) {
  const char *in = m->input->c_name, *out = m->output->c_name;
  const char *handle = gen_sprintf(a, "%s *st", m->stream_t);
  const char *target = gen_sprintf(a, "&%s[%zu]", s->methods_var, index);
  /* Where a received message's allocator comes from. */
  const char *alloc_is = ", alloc being the start's opts->allocator (NULL: "
                         "the default)";
  size_t n = 0;

  client_fn *start = &f[n++];
  *start = (client_fn){.ret = "duct_code", .name = m->client_fn};
  start->params[start->n_params++] = "duct_channel *ch";
  if (m->kind == GEN_SERVER_STREAMING)
    start->params[start->n_params++] = gen_sprintf(a, "const %s *req", in);
  start->params[start->n_params++] = "const duct_call_opts *opts";
  start->params[start->n_params++] = gen_sprintf(a, "%s **out", m->stream_t);
  start->doc = gen_sprintf(
      a,
      "Starts %s on channel `ch`.\n"
      "%s"
      "  opts   deadline_ms bounds the whole call (it then ends with "
      "DUCT_DEADLINE_EXCEEDED); allocator is for the messages received; "
      "NULL for defaults. opts->status is not used: %s fills a status.\n"
      "  out    on DUCT_OK, *out is the call's handle, owned by the caller "
      "until %s frees it; on any other code, *out is NULL.\n"
      "Returns DUCT_OK, or why the call did not start: DUCT_UNAVAILABLE, "
      "DUCT_FAILED_PRECONDITION (a server without streams, protocol "
      "version 1), ...: see duct_client_stream_start in duct/client.h.",
      m->full_name,
      m->kind == GEN_SERVER_STREAMING
          ? "  req    borrowed: packed and sent before this returns.\n"
          : "",
      m->finish_fn, m->finish_fn);
  /* As in the unary stub, a NULL `out` goes on to the runtime, which
   * refuses it. */
  start->body = gen_sprintf(
      a, "  duct_client_stream *st = NULL;\n%s  if (out != NULL)\n"
         "    *out = (%s *)st;\n  return rc;\n",
      call(a, "duct_code rc = duct_client_stream_start(",
           (const char *[]){"ch", target,
                            m->kind == GEN_SERVER_STREAMING
                                ? "(const ProtobufCMessage *)req"
                                : "NULL",
                            "opts", "out != NULL ? &st : NULL"},
           5, ");\n"),
      m->stream_t);

  if (m->send_fn != NULL) {
    f[n++] = (client_fn){
        .ret = "duct_code",
        .name = m->send_fn,
        .params = {handle, gen_sprintf(a, "const %s *msg", in),
                   "int timeout_ms"},
        .n_params = 3,
        .doc = gen_sprintf(
            a,
            "Sends one %s on the call.\n"
            "  msg         borrowed: packed before this returns.\n"
            "  timeout_ms  how long to wait (-1: no limit) while the server "
            "has not taken enough of the earlier messages (flow control); "
            "then DUCT_RESOURCE_EXHAUSTED, with the stream still usable.\n"
            "Returns DUCT_OK; once the call has ended, its code "
            "(DUCT_CANCELLED, DUCT_UNAVAILABLE, ...; %s gives the status); "
            "DUCT_FAILED_PRECONDITION after %s.%s",
            in, m->finish_fn, m->close_send_fn,
            m->kind == GEN_BIDI_STREAMING
                ? " One thread may send while another receives."
                : ""),
        .body = call(a, "return duct_client_stream_send(",
                     (const char *[]){ST, "(const ProtobufCMessage *)msg",
                                      "timeout_ms"},
                     3, ");\n"),
    };
    f[n++] = (client_fn){
        .ret = "duct_code",
        .name = m->close_send_fn,
        .params = {handle},
        .n_params = 1,
        .doc = gen_sprintf(
            a,
            "Ends this side's stream: the server's duct_stream_recv sees "
            "the end, and later sends fail with DUCT_FAILED_PRECONDITION. "
            "%s does it too if it was not done. Returns "
            "duct_client_stream_close_send's code.",
            m->finish_fn),
        .body = "  return duct_client_stream_close_send(" ST ");\n",
    };
  }

  if (m->recv_fn != NULL) {
    f[n++] = (client_fn){
        .ret = "duct_code",
        .name = m->recv_fn,
        .params = {handle, gen_sprintf(a, "%s **msg", out), "int timeout_ms"},
        .n_params = 3,
        .doc = gen_sprintf(
            a,
            "Receives the server's next %s, waiting up to timeout_ms (-1: no "
            "limit). Returns:\n"
            "  DUCT_OK with *msg a new %s that the caller owns and frees "
            "with %s%s;\n"
            "  DUCT_OK with *msg NULL once the call has ended: %s says how;\n"
            "  DUCT_DEADLINE_EXCEEDED when timeout_ms passed first (the "
            "stream is still open).\n"
            "On any code but DUCT_OK, *msg is NULL. Messages arrive in the "
            "order sent. One thread at a time.",
            out, out, free_call(a, m->output, "*msg", "alloc"), alloc_is,
            m->finish_fn),
        .body = gen_sprintf(
            a, "  ProtobufCMessage *m = NULL;\n%s  if (msg != NULL)\n"
               "    *msg = (%s *)m;\n  return rc;\n",
            call(a, "duct_code rc = duct_client_stream_recv(",
                 (const char *[]){ST, "msg != NULL ? &m : NULL", "timeout_ms"},
                 3, ");\n"),
            out),
    };
  }

  f[n++] = (client_fn){
      .ret = "void",
      .name = m->cancel_fn,
      .params = {handle},
      .n_params = 1,
      .doc = gen_sprintf(
          a,
          "Cancels the call: the server is told (its handler sees "
          "duct_ctx_cancelled) and the call ends with DUCT_CANCELLED. Any "
          "thread. The handle is still the caller's: %s frees it.",
          m->finish_fn),
      .body = "  duct_client_stream_cancel(" ST ");\n",
  };

  client_fn *fin = &f[n++];
  *fin = (client_fn){.ret = "duct_code", .name = m->finish_fn};
  fin->params[fin->n_params++] = handle;
  if (m->kind == GEN_CLIENT_STREAMING)
    fin->params[fin->n_params++] = gen_sprintf(a, "%s **reply", out);
  fin->params[fin->n_params++] = "duct_status *status";
  if (m->kind == GEN_CLIENT_STREAMING) {
    fin->doc = gen_sprintf(
        a,
        "Ends the call and takes its reply: closes this side's stream if "
        "still open, waits for the final status, fills `status` if not NULL "
        "and frees st, which must not be used again.\n"
        "  reply  on DUCT_OK, *reply is a new %s that the caller owns and "
        "frees with %s%s. On any other code, *reply is NULL. NULL: the "
        "reply is dropped.\n"
        "Returns the call's code: the handler's, or duct's own "
        "(DUCT_CANCELLED, DUCT_DEADLINE_EXCEEDED, DUCT_UNAVAILABLE when the "
        "connection broke, ...). To leave a call early, cancel it first.",
        out, free_call(a, m->output, "*reply", "alloc"), alloc_is);
    fin->body = gen_sprintf(
        a, "  ProtobufCMessage *out = NULL;\n%s  if (reply != NULL)\n"
           "    *reply = (%s *)out;\n  return rc;\n",
        call(a, "duct_code rc = duct_client_stream_finish(",
             (const char *[]){ST, "reply != NULL ? &out : NULL", "status"}, 3,
             ");\n"),
        out);
  } else {
    fin->doc = gen_sprintf(
        a,
        "Ends the call: %swaits for the final status (messages not yet "
        "received are dropped), fills `status` if not NULL and frees st, "
        "which must not be used again. Returns the call's code: the "
        "handler's, or duct's own (DUCT_CANCELLED, DUCT_DEADLINE_EXCEEDED, "
        "DUCT_UNAVAILABLE when the connection broke, ...). To leave a call "
        "early, cancel it first.",
        m->kind == GEN_BIDI_STREAMING ? "closes this side's stream if still "
                                        "open, "
                                      : "");
    fin->body = "  return duct_client_stream_finish(" ST ", NULL, status);\n";
  }
  return n;
}

static size_t client_fns(gen_arena *a, const gen_service *s,
                         const gen_method *m, size_t index, client_fn *f) {
  if (m->kind == GEN_UNARY) {
    unary_fns(a, s, m, index, f);
    return 2;
  }
  return stream_fns(a, s, m, index, f);
}

/* "duct_code name(" or "void name(". */
static const char *head(gen_arena *a, const client_fn *f) {
  return gen_sprintf(a, "%s %s(", f->ret, f->name);
}

/* The order of use, for the handle's comment. */
static const char *stream_usage(gen_arena *a, const gen_method *m) {
  switch (m->kind) {
  case GEN_SERVER_STREAMING:
    return gen_sprintf(a, "%s starts it, %s takes each message until none "
                          "is left, %s ends it.",
                       m->client_fn, m->recv_fn, m->finish_fn);
  case GEN_CLIENT_STREAMING:
    return gen_sprintf(a, "%s starts it, %s sends each message, %s ends it "
                          "and takes the reply.",
                       m->client_fn, m->send_fn, m->finish_fn);
  default:
    return gen_sprintf(a, "%s starts it; %s and %s, from two threads if "
                          "need be, until %s and the end of what is "
                          "received; %s ends it.",
                       m->client_fn, m->send_fn, m->recv_fn,
                       m->close_send_fn, m->finish_fn);
  }
}

/* "one Demo__Req, a stream of Demo__Rep" and the like. */
static const char *shape(gen_arena *a, const gen_method *m) {
  return gen_sprintf(a, "%s %s, then %s %s",
                     GEN_SENDS_STREAM(m->kind) ? "a stream of" : "one",
                     m->input->c_name,
                     GEN_RECVS_STREAM(m->kind) ? "a stream of" : "one",
                     m->output->c_name);
}

void gen_emit_method_client_decl(gen_buf *b, const gen_service *s,
                                 const gen_method *m, size_t index) {
  client_fn f[MAX_CLIENT_FNS];
  size_t n = client_fns(b->arena, s, m, index, f);
  if (m->stream_t != NULL) {
    gen_buf_puts(b, "\n");
    gen_buf_comment(
        b, "",
        gen_sprintf(b->arena,
                    "%s (method id 0x%08x), %s: %s. One call in progress, "
                    "as a handle: %s Never defined: the functions below "
                    "cast it to and from duct_client_stream (duct/client.h).",
                    m->full_name, m->id, gen_kind_words(m->kind),
                    shape(b->arena, m), stream_usage(b->arena, m)));
    gen_buf_printf(b, "typedef struct %s %s;\n", m->stream_t, m->stream_t);
  }
  for (size_t i = 0; i < n; i++) {
    gen_buf_puts(b, "\n");
    gen_buf_comment(b, "", f[i].doc);
    gen_buf_params(b, "", head(b->arena, &f[i]), f[i].params, f[i].n_params,
                   ");\n");
  }
}

void gen_emit_method_client_def(gen_buf *b, const gen_service *s,
                                const gen_method *m, size_t index) {
  client_fn f[MAX_CLIENT_FNS];
  size_t n = client_fns(b->arena, s, m, index, f);
  for (size_t i = 0; i < n; i++) {
    gen_buf_puts(b, "\n");
    gen_buf_params(b, "", head(b->arena, &f[i]), f[i].params, f[i].n_params,
                   ") {\n");
    gen_buf_printf(b, "%s}\n", f[i].body);
  }
}

void gen_emit_method_handler_field(gen_buf *b, const gen_method *m) {
  gen_arena *a = b->arena;
  const char *in = m->input->c_name, *out = m->output->c_name;
  const char *params[3];
  size_t n = 0;
  params[n++] = "duct_ctx *ctx";
  switch (m->kind) {
  case GEN_UNARY:
    params[n++] = gen_sprintf(a, "const %s *req", in);
    params[n++] = gen_sprintf(a, "%s *reply", out);
    gen_buf_printf(b, "  /* %s */\n", m->full_name);
    break;
  case GEN_SERVER_STREAMING:
    params[n++] = gen_sprintf(a, "const %s *req", in);
    params[n++] = "duct_stream *out";
    gen_buf_comment(b, "  ",
                    gen_sprintf(a,
                                "%s, server streaming: `req` is borrowed "
                                "for the call; send each %s on `out`.",
                                m->full_name, out));
    break;
  case GEN_CLIENT_STREAMING:
    params[n++] = "duct_stream *in";
    params[n++] = gen_sprintf(a, "%s *reply", out);
    gen_buf_comment(
        b, "  ",
        gen_sprintf(a,
                    "%s, client streaming: receive each %s from `in` and "
                    "free it with %s; fill `reply` as a unary handler does "
                    "(it is sent when the handler returns DUCT_OK).",
                    m->full_name, in, handler_free(a, m->input)));
    break;
  case GEN_BIDI_STREAMING:
    params[n++] = "duct_stream *stream";
    gen_buf_comment(
        b, "  ",
        gen_sprintf(a,
                    "%s, bidirectional streaming: receive each %s from "
                    "`stream` and free it with %s; send each %s on "
                    "`stream`, in any order and from any thread.",
                    m->full_name, in, handler_free(a, m->input),
                    out));
    break;
  }
  gen_buf_params(b, "  ", gen_sprintf(a, "duct_code (*%s)(", m->member),
                 params, n, ");\n");
}

void gen_emit_method_invoke(gen_buf *b, const gen_service *s,
                            const gen_method *m) {
  static const char *const unary_params[4] = {
      "const void *handlers", "duct_ctx *ctx", "const ProtobufCMessage *req",
      "ProtobufCMessage *reply"};
  static const char *const stream_params[5] = {
      "const void *handlers", "duct_ctx *ctx", "const ProtobufCMessage *req",
      "duct_stream *stream", "ProtobufCMessage *reply"};
  const char *in = m->input->c_name, *out = m->output->c_name;
  const char *args[3] = {"ctx"}, *unused = "";
  size_t n = 1;
  gen_buf_puts(b, "\n");
  if (m->kind == GEN_UNARY)
    gen_buf_params(b, "",
                   gen_sprintf(b->arena, "static duct_code %s(", m->invoke_fn),
                   unary_params, 4, ") {\n");
  else
    gen_buf_params(b, "",
                   gen_sprintf(b->arena, "static duct_code %s(", m->invoke_fn),
                   stream_params, 5, ") {\n");
  /* duct_stream_invoke_fn passes req and reply to the kinds that have
   * them and NULL to the others. */
  if (m->kind == GEN_UNARY || m->kind == GEN_SERVER_STREAMING)
    args[n++] = gen_sprintf(b->arena, "(const %s *)req", in);
  else
    unused = "  (void)req;\n";
  if (m->kind != GEN_UNARY)
    args[n++] = "stream";
  if (m->kind == GEN_UNARY || m->kind == GEN_CLIENT_STREAMING)
    args[n++] = gen_sprintf(b->arena, "(%s *)reply", out);
  else
    unused = m->kind == GEN_SERVER_STREAMING ? "  (void)reply;\n"
                                             : "  (void)req;\n  (void)reply;\n";
  gen_buf_printf(b,
                 "  const %s *h = handlers;\n"
                 "%s"
                 "  if (h->%s == NULL)\n"
                 "    return DUCT_UNIMPLEMENTED;\n"
                 "%s}\n",
                 s->handlers_t, unused, m->member,
                 call(b->arena, gen_sprintf(b->arena, "return h->%s(", m->member),
                      args, n, ");\n"));
}

void gen_emit_method_entry(gen_buf *b, const gen_method *m) {
  int unary = m->kind == GEN_UNARY;
  gen_buf_printf(b,
                 "    {\n"
                 "        .name = \"%s\",\n"
                 "        .id = 0x%08xu, /* FNV-1a 32 of the name */\n"
                 "        .input = &%s__descriptor,\n"
                 "        .output = &%s__descriptor,\n"
                 "        .invoke = %s,\n"
                 "        .kind = %s,\n",
                 m->full_name, m->id, m->input->c_lower, m->output->c_lower,
                 unary ? m->invoke_fn : "NULL", gen_kind_enum(m->kind));
  if (!unary)
    gen_buf_printf(b, "        .invoke_stream = %s,\n", m->invoke_fn);
  gen_buf_puts(b, "    },\n");
}
