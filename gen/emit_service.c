/* gen/emit_service.c - the emitter for one service: in the header, its
 * duct_service, its client functions, its handler table and its register
 * function; in the source, the method array, the service constant and the
 * functions (method-level pieces come from emit_method.c). */
#include "gen.h"

void gen_emit_service_decls(gen_buf *b, const gen_service *s) {
  gen_buf_printf(b,
                 "\n"
                 "/* ==== service %s ==== */\n"
                 "\n"
                 "/* %s as data: its full name and its %zu method%s, each "
                 "with its wire\n"
                 " * name, id (docs/PROTOCOL.md) and message descriptors. "
                 "Static; %s\n"
                 " * hands it to duct_server_add, and logs and reflection "
                 "read it. */\n"
                 "extern const duct_service %s;\n",
                 s->full_name, s->full_name, s->n_methods,
                 s->n_methods == 1 ? "" : "s", s->register_fn,
                 s->service_var);

  if (s->n_methods > 0)
    gen_buf_puts(b, "\n/* -- client: one blocking function per method; "
                    "threads may share a channel -- */\n");
  for (size_t i = 0; i < s->n_methods; i++)
    gen_emit_method_client_decl(b, s, &s->methods[i]);

  gen_buf_printf(
      b,
      "\n"
      "/* -- server -- */\n"
      "\n"
      "/* The handlers of %s, one per method. The server calls them on its\n"
      " * worker threads, several at once. A NULL entry answers "
      "DUCT_UNIMPLEMENTED.\n"
      " * Each handler gets:\n"
      " *   ctx    the call: duct_ctx_user (the pointer given to %s),\n"
      " *          duct_ctx_peer, duct_ctx_remaining_ms, duct_ctx_alloc "
      "(duct/server.h);\n"
      " *   req    the request, borrowed for the call;\n"
      " *   reply  an initialized, empty reply to fill; memory for its "
      "strings,\n"
      " *          bytes, sub-messages and repeated fields comes from\n"
      " *          duct_ctx_alloc(ctx) and is freed after the reply is "
      "sent.\n"
      " * Return DUCT_OK to send the reply, or an error code (with a "
      "message:\n"
      " * return duct_ctx_fail(ctx, code, ...)) to send that instead. */\n"
      "typedef struct %s {\n",
      s->full_name, s->register_fn, s->handlers_t);
  for (size_t i = 0; i < s->n_methods; i++)
    gen_emit_method_handler_field(b, &s->methods[i]);
  if (s->n_methods == 0)
    gen_buf_puts(b, "  char no_methods_; /* ISO C has no empty structs */\n");
  gen_buf_printf(b, "} %s;\n", s->handlers_t);

  gen_buf_printf(b,
                 "\n"
                 "/* Registers %s on server `s` (before duct_server_start). "
                 "`handlers`\n"
                 " * is borrowed and must outlive the server; `user` is "
                 "what handlers get\n"
                 " * from duct_ctx_user. Returns duct_server_add's code: "
                 "DUCT_OK,\n"
                 " * DUCT_ALREADY_EXISTS when a method id is already "
                 "registered, ... */\n",
                 s->full_name);
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
                 "/* The server calls these through duct_method.invoke with "
                 "untyped\n"
                 " * messages; each casts to its method's types and calls "
                 "the handler. */\n");
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
                 "};\n",
                 s->service_var, s->full_name, s->n_methods,
                 s->n_methods > 0 ? s->methods_var : "NULL");

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
