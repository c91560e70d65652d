/* cli/json.c - proto3 JSON <-> protobuf-c messages (see json.h).
 *
 * Parsing is two steps: json-c turns the text into a tree (it keeps 64-bit
 * integers exact and object members in input order), then the tree is
 * walked against the descriptor. Every allocation is hung on the message
 * being built before anything can fail after it, so on any error the one
 * protobuf_c_message_free_unpacked of the root frees everything.
 *
 * Formatting writes into a growable buffer of our own: the output is
 * protobuf's JSON mapping, not json-c's, and needs no tree. */
#include "json.h"

#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "runtime/utf8.h"

/* ------------------------------------------------------------------ */
/* Descriptors                                                        */
/* ------------------------------------------------------------------ */

/* Bounds from the JSON mapping: Timestamp 0001-01-01T00:00:00Z to
 * 9999-12-31T23:59:59Z, Duration +-10000 years. */
#define TS_MIN_SECONDS INT64_C(-62135596800)
#define TS_MAX_SECONDS INT64_C(253402300799)
#define DUR_MAX_SECONDS INT64_C(315576000000)

enum wkt { WKT_NONE, WKT_TIMESTAMP, WKT_DURATION, WKT_FIELDMASK, WKT_WRAPPER };

/* The size of one element of a repeated field of type t: protobuf-c keeps
 * enums as 4-byte ints (PROTOBUF_C__FORCE_ENUM_TO_BE_INT_SIZE) and bools
 * as protobuf_c_boolean. */
static size_t elem_size(ProtobufCType t)
{
  switch (t) {
  case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
    return 8;
  case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
  case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
  case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
  case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
  default: return 4;
  }
}

static const ProtobufCFieldDescriptor *field_by_id(const ProtobufCMessageDescriptor *d,
                                                    uint32_t id)
{
  /* Linear: descriptors built at run time need not have field_ranges. */
  for (unsigned i = 0; i < d->n_fields; i++)
    if (d->fields[i].id == id)
      return &d->fields[i];
  return NULL;
}

static const ProtobufCFieldDescriptor *field_named(const ProtobufCMessageDescriptor *d,
                                                    const char *name, ProtobufCType type,
                                                    ProtobufCLabel label)
{
  for (unsigned i = 0; i < d->n_fields; i++)
    if (strcmp(d->fields[i].name, name) == 0)
      return d->fields[i].type == type && d->fields[i].label == label ? &d->fields[i] : NULL;
  return NULL;
}

/* protobuf-c does not mark map fields; protoc's generated entry type is
 * recognised by its shape (json.h explains the heuristic). */
static int is_map(const ProtobufCFieldDescriptor *f)
{
  if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
    return 0;
  const ProtobufCMessageDescriptor *e = f->descriptor;
  size_t n = strlen(e->short_name);
  return e->n_fields == 2 && n >= 5 && strcmp(e->short_name + n - 5, "Entry") == 0 &&
         field_by_id(e, 1) != NULL && field_by_id(e, 2) != NULL &&
         field_by_id(e, 1)->label != PROTOBUF_C_LABEL_REPEATED &&
         field_by_id(e, 2)->label != PROTOBUF_C_LABEL_REPEATED;
}

static int is_wrapper_name(const char *name)
{
  static const char *const names[] = {
    "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue",
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(name, names[i]) == 0)
      return 1;
  return 0;
}

/* Which well-known type d is. The fields are checked too, so a message
 * that only borrows a name (or a proto2 copy with other labels) is handled
 * as an ordinary message instead of being read at the wrong offsets. */
static enum wkt wkt_of(const ProtobufCMessageDescriptor *d)
{
  if (d->name == NULL || strncmp(d->name, "google.protobuf.", 16) != 0)
    return WKT_NONE;
  if (strcmp(d->name, "google.protobuf.Timestamp") == 0 ||
      strcmp(d->name, "google.protobuf.Duration") == 0) {
    if (d->n_fields == 2 &&
        field_named(d, "seconds", PROTOBUF_C_TYPE_INT64, PROTOBUF_C_LABEL_NONE) &&
        field_named(d, "nanos", PROTOBUF_C_TYPE_INT32, PROTOBUF_C_LABEL_NONE))
      return d->name[16] == 'T' ? WKT_TIMESTAMP : WKT_DURATION;
    return WKT_NONE;
  }
  if (strcmp(d->name, "google.protobuf.FieldMask") == 0)
    return d->n_fields == 1 &&
           field_named(d, "paths", PROTOBUF_C_TYPE_STRING, PROTOBUF_C_LABEL_REPEATED)
               ? WKT_FIELDMASK : WKT_NONE;
  if (is_wrapper_name(d->name))
    return d->n_fields == 1 && d->fields[0].label == PROTOBUF_C_LABEL_NONE &&
           strcmp(d->fields[0].name, "value") == 0 ? WKT_WRAPPER : WKT_NONE;
  return WKT_NONE;
}

/* Writes the JSON name of a .proto field name into buf (always
 * terminated; cut if it does not fit, which only shortens error paths):
 * protoc's default json_name, each `_` dropped and the next letter upper-cased. */
static void json_name(const char *name, char *buf, size_t cap)
{
  size_t n = 0;
  int upper = 0;
  for (; *name && n + 1 < cap; name++) {
    if (*name == '_') {
      upper = 1;
    } else {
      buf[n++] = upper && *name >= 'a' && *name <= 'z' ? (char)(*name - 'a' + 'A') : *name;
      upper = 0;
    }
  }
  buf[n] = '\0';
}

/* 1 if key names field f by its JSON name or its .proto name. */
static int name_matches(const ProtobufCFieldDescriptor *f, const char *key)
{
  if (strcmp(f->name, key) == 0)
    return 1;
  const char *p = f->name;
  int upper = 0;
  for (; *p; p++) {
    if (*p == '_') {
      upper = 1;
      continue;
    }
    char c = upper && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
    upper = 0;
    if (*key++ != c)
      return 0;
  }
  return *key == '\0';
}

#define MEMBER(msg, off) ((void *)((char *)(msg) + (off)))
#define CMEMBER(msg, off) ((const void *)((const char *)(msg) + (off)))

/* A message zeroed and given its proto2 defaults, the way protobuf-c's
 * message_init_generic does; d->message_init is not used because a
 * descriptor built at run time has none. Returns NULL when out of memory;
 * the caller owns the message (protobuf_c_message_free_unpacked). */
static ProtobufCMessage *message_new(const ProtobufCMessageDescriptor *d)
{
  ProtobufCMessage *m = calloc(1, d->sizeof_message);
  if (m == NULL)
    return NULL;
  m->descriptor = d;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    /* A oneof's members may share storage (protoc-c makes them a union):
     * writing each one's default would let a later one overwrite part of
     * an earlier pointer. No member is read before the case names it, and
     * the member the JSON sets is written whole then. */
    if (f->default_value == NULL || f->label == PROTOBUF_C_LABEL_REPEATED ||
        (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
      continue;
    void *slot = MEMBER(m, f->offset);
    if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)
      memcpy(slot, &f->default_value, sizeof(void *)); /* the pointer itself, as protobuf-c */
    else
      memcpy(slot, f->default_value, elem_size(f->type));
  }
  return m;
}

/* ------------------------------------------------------------------ */
/* Parsing                                                            */
/* ------------------------------------------------------------------ */

struct pctx {
  char path[256]; /* the JSON path of the value being read, for errors */
  size_t plen;
  char *err;
  size_t errlen;
};

/* Writes "<path>: <message>" to the caller's err and returns -1. */
static int fail(struct pctx *c, const char *fmt, ...) DUCT_PRINTF_FORMAT(2, 3);
static int fail(struct pctx *c, const char *fmt, ...)
{
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  duct__utf8_vformat(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (c->plen > 0)
    duct__utf8_format(c->err, c->errlen, "%s: %s", c->path, msg);
  else
    duct__utf8_format(c->err, c->errlen, "%s", msg);
  return -1;
}

/* Appends to the path; returns the old length for path_pop. A path that
 * does not fit is cut (it only appears in error messages). */
static size_t path_push(struct pctx *c, const char *fmt, ...) DUCT_PRINTF_FORMAT(2, 3);
static size_t path_push(struct pctx *c, const char *fmt, ...)
{
  size_t old = c->plen;
  va_list ap;
  va_start(ap, fmt);
  c->plen += duct__utf8_vformat(c->path + c->plen, sizeof c->path - c->plen, fmt, ap);
  va_end(ap);
  return old;
}

static void path_pop(struct pctx *c, size_t old)
{
  c->plen = old;
  c->path[old] = '\0';
}

static size_t path_push_field(struct pctx *c, const ProtobufCFieldDescriptor *f)
{
  char name[128];
  json_name(f->name, name, sizeof name);
  return path_push(c, c->plen ? ".%s" : "%s", name);
}

/* A decimal integer in a string, as the mapping allows for every integer
 * type: optional '-', digits, nothing else. */
static int str_int(const char *s, int *neg, uint64_t *mag)
{
  *neg = *s == '-';
  s += *neg;
  if (*s < '0' || *s > '9')
    return -1;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return -1;
    unsigned dgt = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - dgt) / 10)
      return -2;
    v = v * 10 + dgt;
  }
  *mag = v;
  return 0;
}

/* Reads an integer in [min, max] from a JSON number (an integral double
 * such as 1e2 or 100.0 too) or a string of digits. */
static int get_int(struct pctx *c, json_object *v, int64_t min, uint64_t max,
                   int *neg, uint64_t *mag)
{
  switch (json_object_get_type(v)) {
  case json_type_int: {
    /* json-c keeps an int64 or a uint64; get_int64 saturates the latter
     * and get_uint64 clamps the former at 0, so the sign picks the reader. */
    int64_t i = json_object_get_int64(v);
    *neg = i < 0;
    *mag = i < 0 ? (uint64_t)(-(i + 1)) + 1 : json_object_get_uint64(v);
    break;
  }
  case json_type_double: {
    double d = json_object_get_double(v);
    if (!isfinite(d) || d != floor(d))
      return fail(c, "expected integer, got a fractional number");
    if (d < (double)min || d >= (double)max + 1.0)
      return fail(c, "integer out of range");
    *neg = d < 0;
    *mag = (uint64_t)(d < 0 ? -d : d); /* -d <= 2^63 fits */
    break;
  }
  case json_type_string: {
    int r = str_int(json_object_get_string(v), neg, mag);
    if (r == -2)
      return fail(c, "integer out of range");
    if (r < 0)
      return fail(c, "expected integer");
    break;
  }
  default:
    return fail(c, "expected integer");
  }
  if (*neg ? (min == 0 || *mag > (uint64_t)(-(min + 1)) + 1) : *mag > max)
    return fail(c, "integer out of range");
  if (*neg && *mag == 0)
    *neg = 0;
  return 0;
}

static int get_signed(struct pctx *c, json_object *v, int64_t min, int64_t max, int64_t *out)
{
  int neg;
  uint64_t mag;
  if (get_int(c, v, min, (uint64_t)max, &neg, &mag) < 0)
    return -1;
  /* mag <= 2^63 when neg: -(mag - 1) - 1 stays in range. */
  *out = neg ? -(int64_t)(mag - 1) - 1 : (int64_t)mag;
  return 0;
}

static int get_unsigned(struct pctx *c, json_object *v, uint64_t max, uint64_t *out)
{
  int neg;
  return get_int(c, v, 0, max, &neg, out);
}

static int get_double(struct pctx *c, json_object *v, int is_float, double *out)
{
  double d;
  switch (json_object_get_type(v)) {
  case json_type_int: {
    int64_t i = json_object_get_int64(v);
    d = i < 0 ? (double)i : (double)json_object_get_uint64(v);
    break;
  }
  case json_type_double:
    d = json_object_get_double(v);
    if (!isfinite(d)) /* 1e400: json-c gives inf */
      return fail(c, "number out of range");
    break;
  case json_type_string: {
    const char *s = json_object_get_string(v);
    if (strcmp(s, "NaN") == 0) {
      *out = NAN;
      return 0;
    }
    if (strcmp(s, "Infinity") == 0 || strcmp(s, "-Infinity") == 0) {
      *out = *s == '-' ? -INFINITY : INFINITY;
      return 0;
    }
    char *end;
    /* strtod would also take leading spaces, hex and "inf": refused here. */
    if (!(*s == '-' || (*s >= '0' && *s <= '9')))
      return fail(c, "expected number");
    d = strtod(s, &end);
    if (*end != '\0' || strchr(s, 'x') || strchr(s, 'X') || strchr(s, 'n') || strchr(s, 'N'))
      return fail(c, "expected number");
    if (!isfinite(d))
      return fail(c, "number out of range");
    break;
  }
  default:
    return fail(c, "expected number");
  }
  /* Up to half a unit above FLT_MAX rounds down to it (3.4028235e38 is
   * how FLT_MAX prints); from there on the float would be infinite. */
  if (is_float && fabs(d) >= (double)FLT_MAX + 0x1p103)
    return fail(c, "number out of range for float");
  *out = d;
  return 0;
}

/* Copies a JSON string into a new malloc'd C string (*out), checking that
 * it is UTF-8 and has no NUL. */
static int get_string(struct pctx *c, json_object *v, char **out)
{
  if (json_object_get_type(v) != json_type_string)
    return fail(c, "expected string");
  const char *s = json_object_get_string(v);
  size_t n = (size_t)json_object_get_string_len(v);
  if (memchr(s, '\0', n))
    return fail(c, "string contains U+0000");
  /* json-c decodes a lone \ud800 into bytes that are not UTF-8. */
  if (!duct__utf8_valid(s, n))
    return fail(c, "string is not valid UTF-8");
  char *p = malloc(n + 1);
  if (p == NULL)
    return fail(c, "out of memory");
  memcpy(p, s, n + 1);
  *out = p;
  return 0;
}

static int b64_value(char ch)
{
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == '+' || ch == '-') return 62; /* standard and URL-safe alphabets */
  if (ch == '/' || ch == '_') return 63;
  return -1;
}

/* Decodes standard or URL-safe base64, padded or not. out->data is
 * malloc'd (NULL for no bytes). */
static int get_bytes(struct pctx *c, json_object *v, ProtobufCBinaryData *out)
{
  if (json_object_get_type(v) != json_type_string)
    return fail(c, "expected base64 string");
  const char *s = json_object_get_string(v);
  size_t n = (size_t)json_object_get_string_len(v), pad = 0;
  while (pad < 2 && n > 0 && s[n - 1] == '=') {
    n--;
    pad++;
  }
  if (n % 4 == 1 || (pad > 0 && (n + pad) % 4 != 0))
    return fail(c, "invalid base64");
  for (size_t i = 0; i < n; i++)
    if (b64_value(s[i]) < 0)
      return fail(c, "invalid base64");
  size_t len = n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);
  uint8_t *p = len ? malloc(len) : NULL;
  if (len && p == NULL)
    return fail(c, "out of memory");
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    acc = acc << 6 | (uint32_t)b64_value(s[i]);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      p[o++] = (uint8_t)(acc >> bits);
    }
  }
  out->data = p;
  out->len = len;
  return 0;
}

static int get_enum(struct pctx *c, const ProtobufCEnumDescriptor *e, json_object *v,
                    int32_t *out)
{
  if (json_object_get_type(v) == json_type_string) {
    const char *s = json_object_get_string(v);
    for (unsigned i = 0; i < e->n_values; i++)
      if (strcmp(e->values[i].name, s) == 0) {
        *out = e->values[i].value;
        return 0;
      }
    return fail(c, "unknown enum value \"%s\" for %s", s, e->name);
  }
  if (json_object_get_type(v) == json_type_int || json_object_get_type(v) == json_type_double) {
    int64_t i;
    if (get_signed(c, v, INT32_MIN, INT32_MAX, &i) < 0)
      return -1;
    /* proto3 enums are open: a number without a name is kept. */
    *out = (int32_t)i;
    return 0;
  }
  return fail(c, "expected enum name or number");
}

static int parse_message(struct pctx *c, const ProtobufCMessageDescriptor *d, json_object *v,
                         ProtobufCMessage **slot);

/* Reads one value of field f's type into slot (a field or an array
 * element). What it allocates is stored in slot at once. */
static int parse_value(struct pctx *c, const ProtobufCFieldDescriptor *f, json_object *v,
                       void *slot)
{
  int64_t i;
  uint64_t u;
  double d;
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
    if (get_signed(c, v, INT32_MIN, INT32_MAX, &i) < 0)
      return -1;
    *(int32_t *)slot = (int32_t)i;
    return 0;
  case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    if (get_signed(c, v, INT64_MIN, INT64_MAX, &i) < 0)
      return -1;
    *(int64_t *)slot = i;
    return 0;
  case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
    if (get_unsigned(c, v, UINT32_MAX, &u) < 0)
      return -1;
    *(uint32_t *)slot = (uint32_t)u;
    return 0;
  case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
    if (get_unsigned(c, v, UINT64_MAX, &u) < 0)
      return -1;
    *(uint64_t *)slot = u;
    return 0;
  case PROTOBUF_C_TYPE_FLOAT:
    if (get_double(c, v, 1, &d) < 0)
      return -1;
    *(float *)slot = (float)d;
    return 0;
  case PROTOBUF_C_TYPE_DOUBLE:
    if (get_double(c, v, 0, &d) < 0)
      return -1;
    *(double *)slot = d;
    return 0;
  case PROTOBUF_C_TYPE_BOOL:
    if (json_object_get_type(v) != json_type_boolean)
      return fail(c, "expected boolean");
    *(protobuf_c_boolean *)slot = json_object_get_boolean(v) ? 1 : 0;
    return 0;
  case PROTOBUF_C_TYPE_ENUM: {
    int32_t e = 0;
    if (get_enum(c, f->descriptor, v, &e) < 0)
      return -1;
    *(int32_t *)slot = e;
    return 0;
  }
  case PROTOBUF_C_TYPE_STRING:
    return get_string(c, v, (char **)slot);
  case PROTOBUF_C_TYPE_BYTES:
    return get_bytes(c, v, slot);
  case PROTOBUF_C_TYPE_MESSAGE:
    return parse_message(c, f->descriptor, v, slot);
  }
  return fail(c, "unsupported field type");
}

/* Sets a singular field of msg from v (not null). */
static int parse_single(struct pctx *c, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                        json_object *v)
{
  void *slot = MEMBER(msg, f->offset);
  if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
    /* Selected first, so that free_unpacked frees what parse_value stores. */
    *(uint32_t *)MEMBER(msg, f->quantifier_offset) = f->id;
  }
  if (parse_value(c, f, v, slot) < 0)
    return -1;
  if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && f->label == PROTOBUF_C_LABEL_OPTIONAL &&
      f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
    *(protobuf_c_boolean *)MEMBER(msg, f->quantifier_offset) = 1;
  return 0;
}

static int parse_repeated(struct pctx *c, ProtobufCMessage *msg,
                          const ProtobufCFieldDescriptor *f, json_object *v)
{
  if (json_object_get_type(v) != json_type_array)
    return fail(c, "expected array");
  size_t n = json_object_array_length(v);
  if (n == 0)
    return 0;
  size_t es = elem_size(f->type);
  char *arr = calloc(n, es);
  if (arr == NULL)
    return fail(c, "out of memory");
  size_t *count = MEMBER(msg, f->quantifier_offset);
  *(void **)MEMBER(msg, f->offset) = arr;
  *count = 0;
  for (size_t i = 0; i < n; i++) {
    size_t old = path_push(c, "[%zu]", i);
    json_object *e = json_object_array_get_idx(v, i);
    if (e == NULL)
      return fail(c, "null is not allowed in a repeated field");
    *count = i + 1; /* the zeroed element is safe to free if parsing fails */
    if (parse_value(c, f, e, arr + i * es) < 0)
      return -1;
    path_pop(c, old);
  }
  return 0;
}

/* A map key: always a JSON string, read as the key field's type. */
static int parse_map_key(struct pctx *c, ProtobufCMessage *entry,
                         const ProtobufCFieldDescriptor *kf, const char *key)
{
  if (kf->type == PROTOBUF_C_TYPE_BOOL) {
    if (strcmp(key, "true") != 0 && strcmp(key, "false") != 0)
      return fail(c, "map key: expected \"true\" or \"false\"");
    json_object *b = json_object_new_boolean(key[0] == 't');
    if (b == NULL)
      return fail(c, "out of memory");
    int r = parse_single(c, entry, kf, b);
    json_object_put(b);
    return r;
  }
  if (kf->type != PROTOBUF_C_TYPE_STRING) {
    /* Integer keys are decimal strings; numbers in other forms are not keys. */
    int neg;
    uint64_t mag;
    if (str_int(key, &neg, &mag) != 0)
      return fail(c, "map key: expected integer");
  }
  json_object *s = json_object_new_string(key);
  if (s == NULL)
    return fail(c, "out of memory");
  int r = parse_single(c, entry, kf, s);
  json_object_put(s);
  return r;
}

static int parse_map(struct pctx *c, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                     json_object *v)
{
  if (json_object_get_type(v) != json_type_object)
    return fail(c, "expected object");
  const ProtobufCMessageDescriptor *ed = f->descriptor;
  const ProtobufCFieldDescriptor *kf = field_by_id(ed, 1), *vf = field_by_id(ed, 2);
  size_t n = (size_t)json_object_object_length(v);
  if (n == 0)
    return 0;
  ProtobufCMessage **arr = calloc(n, sizeof *arr);
  if (arr == NULL)
    return fail(c, "out of memory");
  size_t *count = MEMBER(msg, f->quantifier_offset);
  *(void **)MEMBER(msg, f->offset) = arr;
  *count = 0;
  size_t i = 0;
  json_object_object_foreach(v, key, val) {
    size_t old = path_push(c, "[\"%s\"]", key);
    if ((arr[i] = message_new(ed)) == NULL)
      return fail(c, "out of memory");
    *count = ++i;
    if (parse_map_key(c, arr[i - 1], kf, key) < 0)
      return -1;
    if (val == NULL)
      return fail(c, "null is not allowed as a map value");
    if (parse_single(c, arr[i - 1], vf, val) < 0)
      return -1;
    path_pop(c, old);
  }
  return 0;
}

/* Reads the fields of a JSON object into msg. */
static int parse_object(struct pctx *c, ProtobufCMessage *msg, json_object *v)
{
  const ProtobufCMessageDescriptor *d = msg->descriptor;
  if (json_object_get_type(v) != json_type_object)
    return fail(c, "expected object");
  /* Per field: 0 not given, 1 given, 2 given as null. json-c has already
   * kept only the last of duplicate keys; this catches a field named both
   * ways ("fooBar" and "foo_bar"). */
  unsigned char *seen = calloc(d->n_fields ? d->n_fields : 1, 1);
  if (seen == NULL)
    return fail(c, "out of memory");
  int rc = -1;
  json_object_object_foreach(v, key, val) {
    unsigned fi = 0;
    while (fi < d->n_fields && !name_matches(&d->fields[fi], key))
      fi++;
    if (fi == d->n_fields) {
      path_push(c, c->plen ? ".%s" : "%s", key);
      fail(c, "unknown field");
      goto out;
    }
    const ProtobufCFieldDescriptor *f = &d->fields[fi];
    size_t old = path_push_field(c, f);
    if (seen[fi]) {
      fail(c, "field given twice (by its JSON name and its .proto name)");
      goto out;
    }
    seen[fi] = val == NULL ? 2 : 1;
    if (val == NULL) { /* null: the field keeps its default */
      path_pop(c, old);
      continue;
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
      uint32_t set = *(uint32_t *)MEMBER(msg, f->quantifier_offset);
      if (set != 0 && set != f->id) {
        char other[128] = "?";
        const ProtobufCFieldDescriptor *o = field_by_id(d, set);
        if (o)
          json_name(o->name, other, sizeof other);
        fail(c, "oneof already set by field \"%s\"", other);
        goto out;
      }
    }
    int r = f->label != PROTOBUF_C_LABEL_REPEATED ? parse_single(c, msg, f, val)
            : is_map(f) ? parse_map(c, msg, f, val) : parse_repeated(c, msg, f, val);
    if (r < 0)
      goto out;
    path_pop(c, old);
  }
  for (unsigned fi = 0; fi < d->n_fields; fi++)
    if (d->fields[fi].label == PROTOBUF_C_LABEL_REQUIRED && seen[fi] != 1) {
      path_push_field(c, &d->fields[fi]);
      fail(c, "missing required field");
      goto out;
    }
  rc = 0;
out:
  free(seen);
  return rc;
}

static int digits(const char **p, int n, int *out)
{
  int v = 0;
  for (int i = 0; i < n; i++, (*p)++) {
    if (**p < '0' || **p > '9')
      return -1;
    v = v * 10 + (**p - '0');
  }
  *out = v;
  return 0;
}

/* Up to 9 fraction digits after a '.', as nanoseconds. */
static int fraction(const char **p, int32_t *nanos)
{
  *nanos = 0;
  if (**p != '.')
    return 0;
  (*p)++;
  int n = 0;
  for (; **p >= '0' && **p <= '9'; (*p)++, n++) {
    if (n == 9)
      return -1;
    *nanos = *nanos * 10 + (**p - '0');
  }
  if (n == 0)
    return -1;
  for (; n < 9; n++)
    *nanos *= 10;
  return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date: the year counted
 * from March, so the leap day ends a year, in 400-year eras. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/* The inverse of days_from_civil. */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

static int parse_timestamp(struct pctx *c, const char *s, int64_t *secs, int32_t *nanos)
{
  int y, mo, d, h, mi, se, oh = 0, om = 0, sign = 0;
  const char *p = s;
  if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
      digits(&p, 2, &d) || (*p != 'T' && *p != 't') || !*p++ || digits(&p, 2, &h) ||
      *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &se) ||
      fraction(&p, nanos))
    goto bad;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    sign = *p++ == '-' ? -1 : 1;
    if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
      goto bad;
  } else {
    goto bad;
  }
  static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
  if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
      se > 59)
    goto bad;
  if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
    goto bad;
  *secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se -
          sign * (oh * 3600 + om * 60);
  if (*secs < TS_MIN_SECONDS || *secs > TS_MAX_SECONDS)
    return fail(c, "timestamp out of range (years 0001 to 9999 UTC)");
  return 0;
bad:
  return fail(c, "expected RFC 3339 timestamp such as \"1972-01-01T10:00:20.021Z\"");
}

static int parse_duration(struct pctx *c, const char *s, int64_t *secs, int32_t *nanos)
{
  const char *p = s;
  int neg = *p == '-';
  p += neg;
  if (*p < '0' || *p > '9')
    goto bad;
  int64_t v = 0;
  for (; *p >= '0' && *p <= '9'; p++) {
    if (v > DUR_MAX_SECONDS)
      return fail(c, "duration out of range (+-315576000000s)");
    v = v * 10 + (*p - '0');
  }
  if (fraction(&p, nanos) || *p++ != 's' || *p != '\0')
    goto bad;
  if (v > DUR_MAX_SECONDS)
    return fail(c, "duration out of range (+-315576000000s)");
  *secs = neg ? -v : v;
  *nanos = neg ? -*nanos : *nanos;
  return 0;
bad:
  return fail(c, "expected duration such as \"1.5s\"");
}

/* FieldMask paths: "fooBar.baz" in JSON is "foo_bar.baz" in the message. */
static int parse_field_mask(struct pctx *c, ProtobufCMessage *m, const char *s)
{
  const ProtobufCFieldDescriptor *f = m->descriptor->fields;
  size_t n = *s ? 1 : 0;
  for (const char *q = s; *q; q++)
    n += *q == ',';
  if (n == 0)
    return 0;
  char **arr = calloc(n, sizeof *arr);
  if (arr == NULL)
    return fail(c, "out of memory");
  *(char ***)MEMBER(m, f->offset) = arr;
  size_t *count = MEMBER(m, f->quantifier_offset);
  for (size_t i = 0; i < n; i++) {
    size_t len = strcspn(s, ","), up = 0;
    for (size_t k = 0; k < len; k++) {
      if (s[k] == '_')
        return fail(c, "field mask path must be lowerCamelCase");
      up += s[k] >= 'A' && s[k] <= 'Z';
    }
    if ((arr[i] = malloc(len + up + 1)) == NULL)
      return fail(c, "out of memory");
    *count = i + 1;
    char *o = arr[i];
    for (size_t k = 0; k < len; k++) {
      if (s[k] >= 'A' && s[k] <= 'Z') {
        *o++ = '_';
        *o++ = (char)(s[k] - 'A' + 'a');
      } else {
        *o++ = s[k];
      }
    }
    *o = '\0';
    s += len + (s[len] == ',');
  }
  return 0;
}

/* Reads v as a message of type d into a new message stored at *slot. */
static int parse_message(struct pctx *c, const ProtobufCMessageDescriptor *d, json_object *v,
                         ProtobufCMessage **slot)
{
  ProtobufCMessage *m = message_new(d);
  if (m == NULL)
    return fail(c, "out of memory");
  *slot = m;
  enum wkt w = wkt_of(d);
  if (w == WKT_NONE)
    return parse_object(c, m, v);
  if (w == WKT_WRAPPER)
    return parse_single(c, m, &d->fields[0], v);
  if (json_object_get_type(v) != json_type_string)
    return fail(c, "expected string");
  const char *s = json_object_get_string(v);
  if (w == WKT_FIELDMASK) {
    if (strlen(s) != (size_t)json_object_get_string_len(v))
      return fail(c, "string contains U+0000");
    return parse_field_mask(c, m, s);
  }
  int64_t secs;
  int32_t nanos;
  if ((w == WKT_TIMESTAMP ? parse_timestamp : parse_duration)(c, s, &secs, &nanos) < 0)
    return -1;
  *(int64_t *)MEMBER(m, field_named(d, "seconds", PROTOBUF_C_TYPE_INT64,
                                    PROTOBUF_C_LABEL_NONE)->offset) = secs;
  *(int32_t *)MEMBER(m, field_named(d, "nanos", PROTOBUF_C_TYPE_INT32,
                                    PROTOBUF_C_LABEL_NONE)->offset) = nanos;
  return 0;
}

/* The offset of the first integer literal outside [INT64_MIN, UINT64_MAX],
 * or SIZE_MAX. json-c clamps such literals without telling, so they are
 * found in the text: strings skipped, then each number with neither '.'
 * nor exponent compared by its digits. */
static size_t huge_integer(const char *s, size_t n)
{
  for (size_t i = 0; i < n;) {
    if (s[i] == '"') {
      for (i++; i < n && s[i] != '"'; i++)
        if (s[i] == '\\')
          i++;
      i++;
      continue;
    }
    if (s[i] != '-' && (s[i] < '0' || s[i] > '9')) {
      i++;
      continue;
    }
    size_t start = i, neg = s[i] == '-';
    i += neg;
    size_t d0 = i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
    size_t nd = i - d0;
    if (i < n && (s[i] == '.' || s[i] == 'e' || s[i] == 'E')) {
      while (i < n && strchr("0123456789.eE+-", s[i]))
        i++;
      continue;
    }
    const char *lim = neg ? "9223372036854775808" : "18446744073709551615";
    if (nd > 20 - neg || (nd == 20 - neg && memcmp(s + d0, lim, nd) > 0))
      return start;
  }
  return SIZE_MAX;
}

int duct_json_parse(const ProtobufCMessageDescriptor *d, const char *text, size_t len,
                    ProtobufCMessage **out, char *err, size_t errlen)
{
  struct pctx c = { .plen = 0, .err = err, .errlen = errlen };
  char dummy[1];
  if (err == NULL || errlen == 0) {
    c.err = dummy;
    c.errlen = sizeof dummy;
  }
  c.path[0] = '\0';
  c.err[0] = '\0';
  if (out)
    *out = NULL;
  if (d == NULL || out == NULL || (text == NULL && len > 0))
    return fail(&c, "invalid argument");
  if (len >= INT_MAX)
    return fail(&c, "input too large");

  /* json-c ends a number only at a following character, so the text is
   * given a NUL terminator: "42" alone is then complete. */
  char *copy = malloc(len + 1);
  struct json_tokener *tok = json_tokener_new_ex(DUCT_JSON_MAX_DEPTH);
  if (copy == NULL || tok == NULL) {
    free(copy);
    if (tok)
      json_tokener_free(tok);
    return fail(&c, "out of memory");
  }
  if (len)
    memcpy(copy, text, len);
  copy[len] = '\0';
  json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
  json_object *root = json_tokener_parse_ex(tok, copy, (int)len + 1);
  enum json_tokener_error jerr = json_tokener_get_error(tok);
  size_t end = json_tokener_get_parse_end(tok);
  int rc = -1;
  if (jerr != json_tokener_success) {
    if (jerr == json_tokener_continue || end >= len)
      fail(&c, "at offset %zu: unexpected end of input", len);
    else
      fail(&c, "at offset %zu: %s", end, json_tokener_error_desc(jerr));
    goto out;
  }
  /* Strict mode refuses most trailing text itself; a NUL inside the
   * input stops json-c early and is caught here. */
  while (end < len && strchr(" \t\r\n", copy[end]) && copy[end] != '\0')
    end++;
  if (end < len) {
    fail(&c, "at offset %zu: unexpected character", end);
    goto out;
  }
  size_t huge = huge_integer(copy, len);
  if (huge != SIZE_MAX) {
    fail(&c, "at offset %zu: integer out of range", huge);
    goto out;
  }
  ProtobufCMessage *m = NULL;
  if (root == NULL && wkt_of(d) == WKT_NONE) {
    fail(&c, "expected object");
  } else if (root == NULL) {
    /* A top-level null is the message's default. */
    m = message_new(d);
    if (m == NULL)
      fail(&c, "out of memory");
    else
      rc = 0;
  } else {
    rc = parse_message(&c, d, root, &m);
  }
  if (rc < 0)
    protobuf_c_message_free_unpacked(m, NULL);
  else
    *out = m;
out:
  json_object_put(root);
  json_tokener_free(tok);
  free(copy);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Formatting                                                         */
/* ------------------------------------------------------------------ */

struct fctx {
  char *p;
  size_t len, cap;
  int oom;   /* set once an allocation failed; later writes are dropped */
  int pretty, defaults;
  int depth; /* indentation level */
};

static void put(struct fctx *f, const char *s, size_t n)
{
  if (f->oom)
    return;
  if (f->len + n + 1 > f->cap) {
    size_t cap = f->cap ? f->cap : 256;
    while (cap < f->len + n + 1)
      cap *= 2;
    char *p = realloc(f->p, cap);
    if (p == NULL) {
      f->oom = 1;
      return;
    }
    f->p = p;
    f->cap = cap;
  }
  memcpy(f->p + f->len, s, n);
  f->len += n;
  f->p[f->len] = '\0';
}

static void puts_(struct fctx *f, const char *s) { put(f, s, strlen(s)); }
static void putch(struct fctx *f, char ch) { put(f, &ch, 1); }

static void newline(struct fctx *f)
{
  if (!f->pretty)
    return;
  putch(f, '\n');
  for (int i = 0; i < f->depth; i++)
    put(f, "  ", 2);
}

/* A JSON string: '"' and '\' escaped, control characters as \u00XX,
 * everything else (UTF-8 included) as it is. */
static void put_string(struct fctx *f, const char *s, size_t n)
{
  putch(f, '"');
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 0x20 && ch != '"' && ch != '\\')
      continue;
    put(f, s + run, i - run);
    run = i + 1;
    char esc[8];
    if (ch == '"' || ch == '\\')
      snprintf(esc, sizeof esc, "\\%c", ch);
    else
      snprintf(esc, sizeof esc, "\\u%04x", ch);
    puts_(f, esc);
  }
  put(f, s + run, n - run);
  putch(f, '"');
}

/* A field name in its JSON form (see json_name), of any length. */
static void put_json_name(struct fctx *f, const char *name)
{
  int upper = 0;
  for (; *name; name++) {
    if (*name == '_') {
      upper = 1;
      continue;
    }
    putch(f, upper && *name >= 'a' && *name <= 'z' ? (char)(*name - 'a' + 'A') : *name);
    upper = 0;
  }
}

static void put_key(struct fctx *f, const char *name)
{
  struct fctx tmp = { 0 };
  put_json_name(&tmp, name);
  put_string(f, tmp.p ? tmp.p : "", tmp.len);
  f->oom |= tmp.oom;
  free(tmp.p);
  put(f, ": ", f->pretty ? 2 : 1);
}

/* The shortest of %.{lo..hi}g that reads back as the same value: doubles
 * by strtod, floats by strtof (a float is printed from its own value, so
 * 0.1f is "0.1", not 0.10000000149011612). -0 is "-0.0", because json-c
 * reads "-0" as the integer 0 and the sign would be lost. */
static void put_real(struct fctx *f, double v, int is_float)
{
  if (isnan(v)) {
    puts_(f, "\"NaN\"");
    return;
  }
  if (isinf(v)) {
    puts_(f, v < 0 ? "\"-Infinity\"" : "\"Infinity\"");
    return;
  }
  if (v == 0 && signbit(v)) {
    puts_(f, "-0.0");
    return;
  }
  char buf[40];
  for (int prec = is_float ? 6 : 15; prec <= (is_float ? 9 : 17); prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (is_float ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v)
      break;
  }
  puts_(f, buf);
}

static void put_base64(struct fctx *f, const ProtobufCBinaryData *b)
{
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  putch(f, '"');
  for (size_t i = 0; i < b->len; i += 3) {
    uint32_t v = (uint32_t)b->data[i] << 16;
    if (i + 1 < b->len) v |= (uint32_t)b->data[i + 1] << 8;
    if (i + 2 < b->len) v |= b->data[i + 2];
    char q[4] = { tab[v >> 18 & 63], tab[v >> 12 & 63],
                  i + 1 < b->len ? tab[v >> 6 & 63] : '=', i + 2 < b->len ? tab[v & 63] : '=' };
    put(f, q, 4);
  }
  putch(f, '"');
}

static void format_message(struct fctx *f, const ProtobufCMessage *m);

/* One value of field fd's type, read from slot. */
static void format_value(struct fctx *f, const ProtobufCFieldDescriptor *fd, const void *slot)
{
  char buf[32];
  switch (fd->type) {
  case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
    snprintf(buf, sizeof buf, "%" PRId32, *(const int32_t *)slot);
    break;
  case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
    snprintf(buf, sizeof buf, "%" PRIu32, *(const uint32_t *)slot);
    break;
  /* 64-bit integers are strings: JavaScript's numbers are doubles. */
  case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    snprintf(buf, sizeof buf, "\"%" PRId64 "\"", *(const int64_t *)slot);
    break;
  case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
    snprintf(buf, sizeof buf, "\"%" PRIu64 "\"", *(const uint64_t *)slot);
    break;
  case PROTOBUF_C_TYPE_FLOAT:
    put_real(f, *(const float *)slot, 1);
    return;
  case PROTOBUF_C_TYPE_DOUBLE:
    put_real(f, *(const double *)slot, 0);
    return;
  case PROTOBUF_C_TYPE_BOOL:
    puts_(f, *(const protobuf_c_boolean *)slot ? "true" : "false");
    return;
  case PROTOBUF_C_TYPE_ENUM: {
    const ProtobufCEnumDescriptor *e = fd->descriptor;
    int32_t v = *(const int32_t *)slot;
    for (unsigned i = 0; i < e->n_values; i++)
      if (e->values[i].value == v) {
        put_string(f, e->values[i].name, strlen(e->values[i].name));
        return;
      }
    snprintf(buf, sizeof buf, "%" PRId32, v); /* a number without a name */
    break;
  }
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(const char *const *)slot;
    put_string(f, s ? s : "", s ? strlen(s) : 0);
    return;
  }
  case PROTOBUF_C_TYPE_BYTES:
    put_base64(f, slot);
    return;
  case PROTOBUF_C_TYPE_MESSAGE: {
    const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)slot;
    if (sub)
      format_message(f, sub);
    else
      puts_(f, "{}");
    return;
  }
  default:
    puts_(f, "null");
    return;
  }
  puts_(f, buf);
}

/* Whether field fd of m is printed. */
static int present(const struct fctx *f, const ProtobufCMessage *m,
                   const ProtobufCFieldDescriptor *fd)
{
  const void *slot = CMEMBER(m, fd->offset);
  int ptr_type = fd->type == PROTOBUF_C_TYPE_STRING || fd->type == PROTOBUF_C_TYPE_MESSAGE;
  if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
    return *(const uint32_t *)CMEMBER(m, fd->quantifier_offset) == fd->id &&
           (!ptr_type || *(const void *const *)slot != NULL);
  if (fd->label == PROTOBUF_C_LABEL_REPEATED)
    return f->defaults || *(const size_t *)CMEMBER(m, fd->quantifier_offset) > 0;
  if (fd->type == PROTOBUF_C_TYPE_MESSAGE)
    return *(const void *const *)slot != NULL;
  if (fd->label == PROTOBUF_C_LABEL_REQUIRED)
    return !ptr_type || *(const void *const *)slot != NULL;
  if (fd->label == PROTOBUF_C_LABEL_OPTIONAL) {
    if (ptr_type) /* protobuf-c's rule: set unless NULL or the default */
      return *(const void *const *)slot != NULL && *(const void *const *)slot != fd->default_value;
    return *(const protobuf_c_boolean *)CMEMBER(m, fd->quantifier_offset) != 0;
  }
  /* proto3 without presence: printed unless it holds zero. */
  if (f->defaults)
    return 1;
  switch (fd->type) {
  case PROTOBUF_C_TYPE_STRING:
    return *(const char *const *)slot != NULL && **(const char *const *)slot != '\0';
  case PROTOBUF_C_TYPE_BYTES:
    return ((const ProtobufCBinaryData *)slot)->len > 0;
  case PROTOBUF_C_TYPE_FLOAT:
    return *(const float *)slot != 0;
  case PROTOBUF_C_TYPE_DOUBLE:
    return *(const double *)slot != 0;
  case PROTOBUF_C_TYPE_BOOL:
    return *(const protobuf_c_boolean *)slot != 0;
  default:
    return memcmp(slot, "\0\0\0\0\0\0\0\0", elem_size(fd->type)) != 0;
  }
}

static void format_map(struct fctx *f, const ProtobufCFieldDescriptor *fd, const void *arr,
                       size_t n)
{
  const ProtobufCMessageDescriptor *ed = fd->descriptor;
  const ProtobufCFieldDescriptor *kf = field_by_id(ed, 1), *vf = field_by_id(ed, 2);
  int first = 1;
  putch(f, '{');
  f->depth++;
  for (size_t i = 0; i < n; i++) {
    const ProtobufCMessage *e = ((const ProtobufCMessage *const *)arr)[i];
    if (e == NULL)
      continue;
    if (!first)
      putch(f, ',');
    first = 0;
    newline(f);
    /* Keys are always strings: 64-bit ints and strings quote themselves. */
    int quote = kf->type != PROTOBUF_C_TYPE_STRING && elem_size(kf->type) != 8;
    if (quote)
      putch(f, '"');
    format_value(f, kf, CMEMBER(e, kf->offset));
    if (quote)
      putch(f, '"');
    put(f, ": ", f->pretty ? 2 : 1);
    format_value(f, vf, CMEMBER(e, vf->offset));
  }
  f->depth--;
  if (!first)
    newline(f);
  putch(f, '}');
}

static void format_field(struct fctx *f, const ProtobufCMessage *m,
                         const ProtobufCFieldDescriptor *fd)
{
  const void *slot = CMEMBER(m, fd->offset);
  if (fd->label != PROTOBUF_C_LABEL_REPEATED) {
    format_value(f, fd, slot);
    return;
  }
  size_t n = *(const size_t *)CMEMBER(m, fd->quantifier_offset);
  const char *arr = *(const void *const *)slot;
  if (is_map(fd)) {
    format_map(f, fd, arr, n);
    return;
  }
  putch(f, '[');
  f->depth++;
  for (size_t i = 0; i < n; i++) {
    if (i)
      putch(f, ',');
    newline(f);
    format_value(f, fd, arr + i * elem_size(fd->type));
  }
  f->depth--;
  if (n)
    newline(f);
  putch(f, ']');
}

static void put_fraction(struct fctx *f, int32_t nanos)
{
  char buf[16];
  if (nanos == 0)
    return;
  if (nanos % 1000000 == 0)
    snprintf(buf, sizeof buf, ".%03" PRId32, nanos / 1000000);
  else if (nanos % 1000 == 0)
    snprintf(buf, sizeof buf, ".%06" PRId32, nanos / 1000);
  else
    snprintf(buf, sizeof buf, ".%09" PRId32, nanos);
  puts_(f, buf);
}

/* The special forms of the well-known types; 0 when m is printed as an
 * ordinary message instead (not one of them, or out of range). */
static int format_wkt(struct fctx *f, const ProtobufCMessage *m)
{
  const ProtobufCMessageDescriptor *d = m->descriptor;
  enum wkt w = wkt_of(d);
  if (w == WKT_NONE)
    return 0;
  if (w == WKT_WRAPPER) {
    format_value(f, &d->fields[0], CMEMBER(m, d->fields[0].offset));
    return 1;
  }
  if (w == WKT_FIELDMASK) {
    const ProtobufCFieldDescriptor *fd = &d->fields[0];
    size_t n = *(const size_t *)CMEMBER(m, fd->quantifier_offset);
    char *const *paths = *(char *const *const *)CMEMBER(m, fd->offset);
    struct fctx tmp = { 0 };
    for (size_t i = 0; i < n; i++) {
      if (i)
        putch(&tmp, ',');
      put_json_name(&tmp, paths[i] ? paths[i] : "");
    }
    put_string(f, tmp.p ? tmp.p : "", tmp.len);
    f->oom |= tmp.oom;
    free(tmp.p);
    return 1;
  }
  int64_t secs = *(const int64_t *)CMEMBER(
      m, field_named(d, "seconds", PROTOBUF_C_TYPE_INT64, PROTOBUF_C_LABEL_NONE)->offset);
  int32_t nanos = *(const int32_t *)CMEMBER(
      m, field_named(d, "nanos", PROTOBUF_C_TYPE_INT32, PROTOBUF_C_LABEL_NONE)->offset);
  char buf[64];
  if (w == WKT_TIMESTAMP) {
    if (secs < TS_MIN_SECONDS || secs > TS_MAX_SECONDS || nanos < 0 || nanos > 999999999)
      return 0;
    int64_t days = (secs >= 0 ? secs : secs - 86399) / 86400, y;
    int64_t rem = secs - days * 86400;
    int mo, dd;
    civil_from_days(days, &y, &mo, &dd);
    snprintf(buf, sizeof buf, "\"%04" PRId64 "-%02d-%02dT%02d:%02d:%02d", y, mo, dd,
             (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60));
    puts_(f, buf);
    put_fraction(f, nanos);
    puts_(f, "Z\"");
    return 1;
  }
  if (secs < -DUR_MAX_SECONDS || secs > DUR_MAX_SECONDS || nanos < -999999999 ||
      nanos > 999999999 || (secs > 0 && nanos < 0) || (secs < 0 && nanos > 0))
    return 0;
  int neg = secs < 0 || nanos < 0;
  snprintf(buf, sizeof buf, "\"%s%" PRId64, neg ? "-" : "", neg ? -secs : secs);
  puts_(f, buf);
  put_fraction(f, neg ? -nanos : nanos);
  puts_(f, "s\"");
  return 1;
}

static void format_message(struct fctx *f, const ProtobufCMessage *m)
{
  if (format_wkt(f, m))
    return;
  const ProtobufCMessageDescriptor *d = m->descriptor;
  int first = 1;
  putch(f, '{');
  f->depth++;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *fd = &d->fields[i];
    if (!present(f, m, fd))
      continue;
    if (!first)
      putch(f, ',');
    first = 0;
    newline(f);
    put_key(f, fd->name);
    format_field(f, m, fd);
  }
  f->depth--;
  if (!first)
    newline(f);
  putch(f, '}');
}

char *duct_json_format(const ProtobufCMessage *msg, int flags)
{
  struct fctx f = { .pretty = !!(flags & DUCT_JSON_PRETTY),
                    .defaults = !!(flags & DUCT_JSON_EMIT_DEFAULTS) };
  if (msg == NULL)
    puts_(&f, "null");
  else
    format_message(&f, msg);
  if (f.oom) {
    free(f.p);
    return NULL;
  }
  return f.p;
}
