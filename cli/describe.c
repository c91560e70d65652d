/* cli/describe.c - a pool's symbols as .proto text (duct_dynpool_describe,
 * cli/dynpool.h), for `duct describe`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/dynpool_int.h"

/* A growing string; `oom` sticks once an allocation fails, so the
 * printers need not check each append. */
typedef struct sb {
  char *s;
  size_t len, cap;
  int oom;
} sb;

static void sb_printf(sb *b, const char *fmt, ...) DUCT_PRINTF_FORMAT(2, 3);
static void sb_printf(sb *b, const char *fmt, ...) {
  va_list ap;
  int n;
  if (b->oom)
    return;
  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) {
    b->oom = 1;
    return;
  }
  if (b->len + (size_t)n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    char *q;
    while (cap < b->len + (size_t)n + 1)
      cap *= 2;
    q = realloc(b->s, cap);
    if (!q) {
      b->oom = 1;
      return;
    }
    b->s = q;
    b->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

static void indent(sb *b, int depth) {
  sb_printf(b, "%*s", depth * 2, "");
}

/* Where a name is written: the pool, the package of the file being
 * printed, and the scope (package or message) the text is inside. */
typedef struct where {
  const duct_dynpool *p;
  const char *pkg;
  const char *scope;
} where;

static const char *scalar_names[19] = {
    NULL,      "double",  "float",    "int64",    "uint64",  "int32", "fixed64",
    "fixed32", "bool",    "string",   "group",    NULL,      "bytes", "uint32",
    NULL,      "sfixed32", "sfixed64", "sint32",  "sint64",
};

/* The name to write for type `type_name` (as a field or method has it)
 * from w->scope: the shortest dotted suffix that resolves back to the same
 * type from there when it is in the file's package; otherwise the full
 * name with a leading dot (see dynpool.h). */
static void type_ref(sb *b, const where *w, const char *type_name) {
  const dyn_sym *t = duct__dynpool_resolve(w->p, w->scope, type_name);
  size_t pl = strlen(w->pkg);
  const char *full, *rel;
  if (!t) {
    sb_printf(b, "%s", type_name); /* unbuilt; as the descriptor says */
    return;
  }
  full = t->full;
  if (pl == 0 || (strncmp(full, w->pkg, pl) == 0 && full[pl] == '.')) {
    /* From the last component outwards: "Shelf", "Item.Shelf", ... */
    const char *start = pl ? full + pl + 1 : full;
    rel = full + strlen(full);
    for (;;) {
      while (rel > start && rel[-1] != '.')
        rel--;
      if (duct__dynpool_resolve(w->p, w->scope, rel) == t) {
        sb_printf(b, "%s", rel);
        return;
      }
      if (rel == start)
        break;
      rel--; /* step over the dot */
    }
  }
  sb_printf(b, ".%s", full);
}

/* A field's type as .proto writes it (no label). */
static void field_type(sb *b, const where *w, const dyn_field_proto *f) {
  int t = f->has_type ? (int)f->type : 0;
  if (f->type_name && (t == 0 || t == 11 || t == 14 || t == 10))
    type_ref(b, w, f->type_name);
  else if (t > 0 && t < 19 && scalar_names[t])
    sb_printf(b, "%s", scalar_names[t]);
  else
    sb_printf(b, "?");
}

/* The map entry message a field names, if it is a map field. */
static const dyn_msg_proto *map_entry_of(const where *w, const dyn_field_proto *f) {
  const dyn_sym *t;
  if (!f->has_label || f->label != GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED ||
      !f->type_name)
    return NULL;
  t = duct__dynpool_resolve(w->p, w->scope, f->type_name);
  if (!t || t->kind != DYN_MESSAGE || !t->proto.msg->options ||
      !t->proto.msg->options->map_entry || t->proto.msg->n_field != 2)
    return NULL;
  return t->proto.msg;
}

/* protoc's default json_name: underscores dropped, the letter after one
 * upper-cased. */
static int json_name_is_default(const char *name, const char *json) {
  int up = 0;
  for (; *name; name++) {
    char c = *name;
    if (c == '_') {
      up = 1;
      continue;
    }
    if (up && c >= 'a' && c <= 'z')
      c = (char)(c - 'a' + 'A');
    up = 0;
    if (*json++ != c)
      return 0;
  }
  return *json == '\0';
}

/* A string default as a .proto literal: protoc keeps string defaults
 * unescaped (bytes defaults come already escaped). */
static void quoted(sb *b, const char *s) {
  sb_printf(b, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    switch (c) {
    case '"': sb_printf(b, "\\\""); break;
    case '\\': sb_printf(b, "\\\\"); break;
    case '\n': sb_printf(b, "\\n"); break;
    case '\r': sb_printf(b, "\\r"); break;
    case '\t': sb_printf(b, "\\t"); break;
    default:
      if (c < 0x20 || c == 0x7f)
        sb_printf(b, "\\%03o", c);
      else
        sb_printf(b, "%c", c);
    }
  }
  sb_printf(b, "\"");
}

static void field_options(sb *b, int proto3, const dyn_field_proto *f) {
  int n = 0;
  const Google__Protobuf__FieldOptions *o = f->options;
  if (o && o->has_packed)
    sb_printf(b, "%spacked = %s", n++ ? ", " : " [", o->packed ? "true" : "false");
  if (f->default_value && !proto3) {
    sb_printf(b, "%sdefault = ", n++ ? ", " : " [");
    if (f->has_type && f->type == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_STRING)
      quoted(b, f->default_value);
    else if (f->has_type && f->type == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_BYTES)
      sb_printf(b, "\"%s\"", f->default_value);
    else
      sb_printf(b, "%s", f->default_value);
  }
  if (o && o->has_deprecated && o->deprecated)
    sb_printf(b, "%sdeprecated = true", n++ ? ", " : " [");
  if (f->json_name && !json_name_is_default(f->name, f->json_name)) {
    sb_printf(b, "%sjson_name = ", n++ ? ", " : " [");
    quoted(b, f->json_name);
  }
  if (n)
    sb_printf(b, "]");
}

static void print_field(sb *b, const where *w, int proto3, const dyn_field_proto *f, int depth,
                        int in_oneof) {
  const dyn_msg_proto *entry = map_entry_of(w, f);
  indent(b, depth);
  if (entry) {
    const dyn_field_proto *k = entry->field[0], *v = entry->field[1];
    if (k->number != 1) {
      k = entry->field[1];
      v = entry->field[0];
    }
    sb_printf(b, "map<");
    field_type(b, w, k);
    sb_printf(b, ", ");
    field_type(b, w, v);
    sb_printf(b, ">");
  } else {
    int label = f->has_label ? (int)f->label : 1;
    if (label == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED)
      sb_printf(b, "repeated ");
    else if (label == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REQUIRED)
      sb_printf(b, "required ");
    else if (!in_oneof && (!proto3 || f->proto3_optional))
      sb_printf(b, "optional ");
    field_type(b, w, f);
  }
  sb_printf(b, " %s = %d", f->name, (int)f->number);
  field_options(b, proto3, f);
  sb_printf(b, ";\n");
}

static void print_enum(sb *b, const dyn_enum_proto *e, int depth) {
  size_t i;
  indent(b, depth);
  sb_printf(b, "enum %s {\n", e->name);
  if (e->options && e->options->has_allow_alias && e->options->allow_alias) {
    indent(b, depth + 1);
    sb_printf(b, "option allow_alias = true;\n");
  }
  for (i = 0; i < e->n_value; i++) {
    const Google__Protobuf__EnumValueDescriptorProto *v = e->value[i];
    indent(b, depth + 1);
    sb_printf(b, "%s = %d", v->name, (int)v->number);
    if (v->options && v->options->has_deprecated && v->options->deprecated)
      sb_printf(b, " [deprecated = true]");
    sb_printf(b, ";\n");
  }
  indent(b, depth);
  sb_printf(b, "}\n");
}

static int real_oneof(const dyn_field_proto *f) {
  return f->has_oneof_index && !f->proto3_optional;
}

/* A message: fields in declaration order, each oneof where its first
 * member is, then nested messages (map entries excepted) and enums.
 * `full` is the message's full name, the scope inside it. */
static void print_message(sb *b, const duct_dynpool *p, const char *pkg, int proto3,
                          const char *full, const dyn_msg_proto *m, int depth) {
  where w;
  size_t i, j;
  w.p = p;
  w.pkg = pkg;
  w.scope = full;
  indent(b, depth);
  sb_printf(b, "message %s {\n", m->name);
  for (i = 0; i < m->n_field; i++) {
    const dyn_field_proto *f = m->field[i];
    if (!real_oneof(f)) {
      print_field(b, &w, proto3, f, depth + 1, 0);
      continue;
    }
    /* Printed with its oneof at the first member; later members skip. */
    for (j = 0; j < i; j++)
      if (real_oneof(m->field[j]) && m->field[j]->oneof_index == f->oneof_index)
        break;
    if (j < i)
      continue;
    indent(b, depth + 1);
    sb_printf(b, "oneof %s {\n",
              (size_t)f->oneof_index < m->n_oneof_decl && m->oneof_decl[f->oneof_index]->name
                  ? m->oneof_decl[f->oneof_index]->name
                  : "?");
    for (j = i; j < m->n_field; j++)
      if (real_oneof(m->field[j]) && m->field[j]->oneof_index == f->oneof_index)
        print_field(b, &w, proto3, m->field[j], depth + 2, 1);
    indent(b, depth + 1);
    sb_printf(b, "}\n");
  }
  for (i = 0; i < m->n_nested_type; i++) {
    const dyn_msg_proto *n = m->nested_type[i];
    char *nfull;
    size_t len;
    if (n->options && n->options->map_entry)
      continue;
    len = strlen(full) + 1 + strlen(n->name) + 1;
    nfull = malloc(len);
    if (!nfull) {
      b->oom = 1;
      return;
    }
    snprintf(nfull, len, "%s.%s", full, n->name);
    print_message(b, p, pkg, proto3, nfull, n, depth + 1);
    free(nfull);
  }
  for (i = 0; i < m->n_enum_type; i++)
    print_enum(b, m->enum_type[i], depth + 1);
  indent(b, depth);
  sb_printf(b, "}\n");
}

static void print_rpc(sb *b, const where *w, const Google__Protobuf__MethodDescriptorProto *md,
                      int depth) {
  indent(b, depth);
  sb_printf(b, "rpc %s(%s", md->name,
            md->has_client_streaming && md->client_streaming ? "stream " : "");
  type_ref(b, w, md->input_type);
  sb_printf(b, ") returns (%s",
            md->has_server_streaming && md->server_streaming ? "stream " : "");
  type_ref(b, w, md->output_type);
  sb_printf(b, ");\n");
}

char *duct_dynpool_describe(const duct_dynpool *p, const char *symbol, char *err,
                            size_t errlen) {
  const dyn_sym *s;
  const dyn_file *file;
  const char *pkg;
  sb b;
  where w;
  size_t i;

  if (!p || !symbol) {
    duct__dynpool_err(err, errlen, "no symbol");
    return NULL;
  }
  memset(&b, 0, sizeof b);
  s = duct__dynpool_find(p, symbol[0] == '.' ? symbol + 1 : symbol);
  if (s && !p->files[s->file].built)
    s = NULL;
  if (!s) {
    /* Not a type or service: a method, "pkg.Svc/M" or "pkg.Svc.M". */
    const duct_method *m = duct_dynpool_method(p, symbol);
    const char *svc_end;
    const dyn_sym *svc;
    char *svc_name;
    if (!m) {
      duct__dynpool_err(err, errlen, "symbol %s not found", symbol);
      return NULL;
    }
    svc_end = strrchr(m->name, '/');
    svc_name = malloc((size_t)(svc_end - m->name));
    if (!svc_name) {
      duct__dynpool_err(err, errlen, "out of memory");
      return NULL;
    }
    memcpy(svc_name, m->name + 1, (size_t)(svc_end - m->name - 1));
    svc_name[svc_end - m->name - 1] = '\0';
    svc = duct__dynpool_find(p, svc_name);
    free(svc_name);
    file = &p->files[svc->file];
    w.p = p;
    w.pkg = file->proto->package ? file->proto->package : "";
    w.scope = w.pkg;
    for (i = 0; i < svc->proto.svc->n_method; i++) {
      const Google__Protobuf__MethodDescriptorProto *md = svc->proto.svc->method[i];
      if (strcmp(md->name, svc_end + 1) != 0)
        continue;
      sb_printf(&b, "// %s.%s (%s)\n", svc->full, md->name, file->proto->name);
      print_rpc(&b, &w, md, 0);
      break;
    }
  } else {
    file = &p->files[s->file];
    pkg = file->proto->package ? file->proto->package : "";
    sb_printf(&b, "// %s (%s)\n", s->full, file->proto->name);
    switch (s->kind) {
    case DYN_MESSAGE:
      print_message(&b, p, pkg, file->proto3, s->full, s->proto.msg, 0);
      break;
    case DYN_ENUM:
      print_enum(&b, s->proto.en, 0);
      break;
    case DYN_SERVICE:
      w.p = p;
      w.pkg = pkg;
      w.scope = pkg;
      sb_printf(&b, "service %s {\n", s->proto.svc->name);
      for (i = 0; i < s->proto.svc->n_method; i++)
        print_rpc(&b, &w, s->proto.svc->method[i], 1);
      sb_printf(&b, "}\n");
      break;
    }
  }
  if (b.oom || !b.s) {
    free(b.s);
    duct__dynpool_err(err, errlen, "out of memory");
    return NULL;
  }
  return b.s;
}
