/* gen/emit_method.c - the emitter for one method: its client function
 * (declaration and definition), its handler table field, its invoke
 * trampoline and its duct_method entry. */
#include "gen.h"

/* How the caller frees a reply of type t: protoc-c emits a typed
 * __free_unpacked for top-level messages only. */
static const char *free_call(gen_arena *a, const gen_type *t) {
  if (t->top_level)
    return gen_sprintf(a, "%s__free_unpacked(*reply, alloc)", t->c_lower);
  return "protobuf_c_message_free_unpacked(&(*reply)->base, alloc)";
}

static void client_params(gen_buf *b, const gen_method *m,
                          const char *params[4]) {
  params[0] = "duct_channel *ch";
  params[1] = gen_sprintf(b->arena, "const %s *req", m->input->c_name);
  params[2] = gen_sprintf(b->arena, "%s **reply", m->output->c_name);
  params[3] = "const duct_call_opts *opts";
}

void gen_emit_method_client_decl(gen_buf *b, const gen_service *s,
                                 const gen_method *m) {
  const char *params[4];
  (void)s;
  client_params(b, m, params);
  gen_buf_printf(
      b,
      "\n"
      "/* Calls %s (method id 0x%08x) on channel `ch` and waits\n"
      " * for the reply.\n"
      " *   req    borrowed: packed before the call returns.\n"
      " *   reply  on DUCT_OK, *reply is a new %s that the caller\n"
      " *          owns and frees with %s,\n"
      " *          alloc being opts->allocator (NULL: the default). On any "
      "other\n"
      " *          code, *reply is NULL.\n"
      " *   opts   deadline, reply allocator and status out; NULL for "
      "defaults.\n"
      " * Returns DUCT_OK, the handler's code, or duct's own "
      "(DUCT_UNAVAILABLE,\n"
      " * DUCT_DEADLINE_EXCEEDED, ...): see duct_call_unary in "
      "duct/client.h. */\n",
      m->full_name, m->id, m->output->c_name,
      free_call(b->arena, m->output));
  gen_buf_params(b, "", gen_sprintf(b->arena, "duct_code %s(", m->client_fn),
                 params, 4, ");\n");
}

void gen_emit_method_handler_field(gen_buf *b, const gen_method *m) {
  const char *params[3] = {
      "duct_ctx *ctx",
      gen_sprintf(b->arena, "const %s *req", m->input->c_name),
      gen_sprintf(b->arena, "%s *reply", m->output->c_name)};
  gen_buf_printf(b, "  /* %s */\n", m->full_name);
  gen_buf_params(b, "  ", gen_sprintf(b->arena, "duct_code (*%s)(", m->member),
                 params, 3, ");\n");
}

void gen_emit_method_invoke(gen_buf *b, const gen_service *s,
                            const gen_method *m) {
  static const char *const params[4] = {
      "const void *handlers", "duct_ctx *ctx", "const ProtobufCMessage *req",
      "ProtobufCMessage *reply"};
  gen_buf_puts(b, "\n");
  gen_buf_params(b, "",
                 gen_sprintf(b->arena, "static duct_code %s(", m->invoke_fn),
                 params, 4, ") {\n");
  gen_buf_printf(b,
                 "  const %s *h = handlers;\n"
                 "  if (h->%s == NULL)\n"
                 "    return DUCT_UNIMPLEMENTED;\n"
                 "  return h->%s(ctx, (const %s *)req, (%s *)reply);\n"
                 "}\n",
                 s->handlers_t, m->member, m->member, m->input->c_name,
                 m->output->c_name);
}

void gen_emit_method_entry(gen_buf *b, const gen_method *m) {
  gen_buf_printf(b,
                 "    {\n"
                 "        .name = \"%s\",\n"
                 "        .id = 0x%08xu, /* FNV-1a 32 of the name */\n"
                 "        .input = &%s__descriptor,\n"
                 "        .output = &%s__descriptor,\n"
                 "        .invoke = %s,\n"
                 "    },\n",
                 m->full_name, m->id, m->input->c_lower, m->output->c_lower,
                 m->invoke_fn);
}

void gen_emit_method_client_def(gen_buf *b, const gen_service *s,
                                const gen_method *m, size_t index) {
  const char *params[4];
  client_params(b, m, params);
  gen_buf_puts(b, "\n");
  gen_buf_params(b, "", gen_sprintf(b->arena, "duct_code %s(", m->client_fn),
                 params, 4, ") {\n");
  /* The runtime checks every argument (and fills opts->status when it
   * refuses), so a NULL reply is passed on as NULL rather than checked
   * twice. */
  gen_buf_printf(b,
                 "  ProtobufCMessage *out = NULL;\n"
                 "  duct_code rc = duct_call_unary(ch, &%s[%zu],\n"
                 "                                 (const ProtobufCMessage "
                 "*)req,\n"
                 "                                 reply != NULL ? &out : "
                 "NULL, opts);\n"
                 "  if (reply != NULL)\n"
                 "    *reply = (%s *)out;\n"
                 "  return rc;\n"
                 "}\n",
                 s->methods_var, index, m->output->c_name);
}
