/* gen/emit_service.c - the emitter for one service: in the header, its
 * duct_service, its client functions, its handler table and its register
 * function; in the source, the method array, the service constant and the
 * functions (method-level pieces come from emit_method.c). */
#include "gen.h"

/* The handler table's comment: what every handler gets, then what the
 * unary and the streaming ones get, for the kinds the service has. */
static void handlers_comment(gen_buf *b, const gen_service *s) {
  int unary = 0, streaming = 0;
  for (size_t i = 0; i < s->n_methods; i++) {
    if (s->methods[i].kind == GEN_UNARY)
      unary = 1;
    else
      streaming = 1;
  }
  gen_buf t;
  gen_buf_init(&t, b->arena);
  if (s->n_methods == 0) {
    gen_buf_comment(b, "",
                    gen_sprintf(b->arena,
                                "The handlers of %s: none, it has no "
                                "methods.",
                                s->full_name));
    return;
  }
  gen_buf_printf(
      &t,
      "The handlers of %s, one per method. A NULL entry answers "
      "DUCT_UNIMPLEMENTED. Each handler gets:\n"
      "  ctx    the call: duct_ctx_user (the pointer given to %s), "
      "duct_ctx_peer, duct_ctx_remaining_ms, duct_ctx_alloc, "
      "duct_ctx_cancelled (duct/server.h);\n",
      s->full_name, s->register_fn);
  if (unary)
    gen_buf_puts(
        &t,
        "and a unary handler also:\n"
        "  req    the request, borrowed for the call;\n"
        "  reply  an initialized, empty reply to fill; memory for its "
        "strings, bytes, sub-messages and repeated fields comes from "
        "duct_ctx_alloc(ctx) and is freed after the reply is sent.\n"
        "Unary handlers run on the server's worker threads, several at "
        "once. Return DUCT_OK to send the reply, or an error code (with a "
        "message: return duct_ctx_fail(ctx, code, ...)) to send that "
        "instead.");
  if (unary && streaming)
    gen_buf_puts(&t, "\n\n");
  if (streaming)
    gen_buf_puts(
        &t,
        "A streaming handler also gets the call's stream (`out`, `in` or "
        "`stream`) and, as its kind has them, the request or a reply (each "
        "entry says). It runs on a thread of its own, so it may wait in "
        "duct_stream_recv and duct_stream_send (duct/server.h):\n"
        "  send     duct_stream_send(st, (const~ProtobufCMessage~*)msg, "
        "timeout_ms): msg is borrowed, packed before it returns;\n"
        "  receive  ProtobufCMessage~*m; duct_stream_recv(st, &m, "
        "timeout_ms): each m is a new message of the method's input type, "
        "which the handler owns and frees (each entry says how); m is NULL "
        "once the client has closed its side.\n"
        "Returning ends the stream with the returned code (DUCT_OK: a clean "
        "end, after the messages sent; duct_ctx_fail gives a failing code "
        "its message), unless the handler called duct_stream_keep: then "
        "the stream stays open, holding no thread of the server's, until "
        "duct_stream_finish.");
  gen_buf_comment(b, "", t.text);
}

void gen_emit_service_decls(gen_buf *b, const gen_service *s) {
  gen_buf_printf(b, "\n/* ==== service %s ==== */\n\n", s->full_name);
  gen_buf_comment(b, "",
                  gen_sprintf(b->arena,
                              "%s as data: its full name and its %zu "
                              "method%s, each with its wire name, kind, id "
                              "(docs/PROTOCOL.md) and message descriptors. "
                              "Static; %s hands it to duct_server_add, and "
                              "logs and reflection read it.",
                              s->full_name, s->n_methods,
                              s->n_methods == 1 ? "" : "s", s->register_fn));
  gen_buf_printf(b, "extern const duct_service %s;\n", s->service_var);

  if (s->n_methods > 0)
    gen_buf_puts(b, "\n/* -- client: typed functions per method; threads "
                    "may share a channel -- */\n");
  for (size_t i = 0; i < s->n_methods; i++)
    gen_emit_method_client_decl(b, s, &s->methods[i], i);

  gen_buf_puts(b, "\n/* -- server -- */\n\n");
  handlers_comment(b, s);
  gen_buf_printf(b, "typedef struct %s {\n", s->handlers_t);
  for (size_t i = 0; i < s->n_methods; i++)
    gen_emit_method_handler_field(b, &s->methods[i]);
  if (s->n_methods == 0)
    gen_buf_puts(b, "  char no_methods_; /* ISO C has no empty structs */\n");
  gen_buf_printf(b, "} %s;\n", s->handlers_t);

  gen_buf_puts(b, "\n");
  gen_buf_comment(b, "",
                  gen_sprintf(b->arena,
                              "Registers %s on server `s` (before "
                              "duct_server_start). `handlers` is borrowed "
                              "and must outlive the server; `user` is what "
                              "handlers get from duct_ctx_user. Returns "
                              "duct_server_add's code: DUCT_OK, "
                              "DUCT_ALREADY_EXISTS when a method id is "
                              "already registered, ...",
                              s->full_name));
  const char *params[] = {
      "duct_server *s",
      gen_sprintf(b->arena, "const %s *handlers", s->handlers_t),
      "void *user"};
  gen_buf_params(b, "", gen_sprintf(b->arena, "duct_code %s(", s->register_fn),
                 params, 3, ");\n");
}

void gen_emit_service_defs(gen_buf *b, const gen_service *s) {
  gen_buf_printf(b, "\n/* ==== service %s ==== */\n", s->full_name);
  if (s->n_methods > 0)
    gen_buf_puts(b,
                 "\n"
                 "/* The server calls these through duct_method.invoke "
                 "(unary) or\n"
                 " * .invoke_stream (streaming) with untyped messages; each "
                 "casts to its\n"
                 " * method's types and calls the handler. */\n");
  for (size_t i = 0; i < s->n_methods; i++)
    gen_emit_method_invoke(b, s, &s->methods[i]);

  if (s->n_methods > 0) {
    gen_buf_printf(b, "\nstatic const duct_method %s[%zu] = {\n",
                   s->methods_var, s->n_methods);
    for (size_t i = 0; i < s->n_methods; i++)
      gen_emit_method_entry(b, &s->methods[i]);
    gen_buf_puts(b, "};\n");
  }

  gen_buf_printf(b,
                 "\n"
                 "const duct_service %s = {\n"
                 "    .name = \"%s\",\n"
                 "    .n_methods = %zu,\n"
                 "    .methods = %s,\n"
                 "    .file = &%s,\n"
                 "};\n",
                 s->service_var, s->full_name, s->n_methods,
                 s->n_methods > 0 ? s->methods_var : "NULL", s->file_var);

  const char *params[] = {
      "duct_server *s",
      gen_sprintf(b->arena, "const %s *handlers", s->handlers_t),
      "void *user"};
  gen_buf_puts(b, "\n");
  gen_buf_params(b, "", gen_sprintf(b->arena, "duct_code %s(", s->register_fn),
                 params, 3, ") {\n");
  gen_buf_printf(b, "  return duct_server_add(s, &%s, handlers, user);\n}\n",
                 s->service_var);

  for (size_t i = 0; i < s->n_methods; i++)
    gen_emit_method_client_def(b, s, &s->methods[i], i);
}
