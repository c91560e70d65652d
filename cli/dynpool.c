/* cli/dynpool.c - protobuf-c descriptors built at run time from serialized
 * FileDescriptorProtos (cli/dynpool.h).
 *
 * The facts this follows are protobuf-c 1.4.1's: what its runtime reads
 * (protobuf-c.c) and what protoc-c writes for the same .proto (protoc-c/
 * c_message.cc, c_field.cc, c_enum.cc, c_helpers.cc). tests/cli/
 * test_dynpool.c compares the two on every field kind. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/dynpool_int.h"
#include "runtime/frame.h"

/* Field numbers protoc accepts (descriptor.proto: 1 .. 2^29 - 1). */
#define MAX_FIELD_NUMBER 536870911

void duct__dynpool_err(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  if (!err || errlen == 0)
    return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* Grows an array of `elt`-sized items to hold `need`; 0 or -1 (OOM). */
static int grow(void **arr, size_t *cap, size_t need, size_t elt) {
  size_t n;
  void *q;
  if (need <= *cap)
    return 0;
  n = *cap ? *cap * 2 : 8;
  while (n < need)
    n *= 2;
  if (n > SIZE_MAX / elt)
    return -1;
  q = realloc(*arr, n * elt);
  if (!q)
    return -1;
  *arr = q;
  *cap = n;
  return 0;
}

/* Zeroed memory owned by the pool (freed by duct_dynpool_free). NULL when
 * out of memory. */
static void *pool_calloc(duct_dynpool *p, size_t n, size_t size) {
  void *m;
  if (grow((void **)&p->blocks, &p->cap_blocks, p->n_blocks + 1, sizeof *p->blocks) != 0)
    return NULL;
  /* calloc(0, ...) may return NULL; a build never needs an empty block
   * to be distinct, but NULL would read as out of memory. */
  m = calloc(n ? n : 1, size ? size : 1);
  if (!m)
    return NULL;
  p->blocks[p->n_blocks++] = m;
  return m;
}

/* A printf-formatted string owned by the pool; NULL when out of memory. */
static char *pool_printf(duct_dynpool *p, const char *fmt, ...) DUCT_PRINTF_FORMAT(2, 3);
static char *pool_printf(duct_dynpool *p, const char *fmt, ...) {
  va_list ap;
  int n;
  char *s;
  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return NULL;
  s = pool_calloc(p, (size_t)n + 1, 1);
  if (!s)
    return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

duct_dynpool *duct_dynpool_new(void) {
  return calloc(1, sizeof(duct_dynpool));
}

void duct_dynpool_free(duct_dynpool *p) {
  size_t i;
  if (!p)
    return;
  for (i = 0; i < p->n_owned; i++)
    protobuf_c_message_free_unpacked(p->owned[i], NULL);
  for (i = 0; i < p->n_blocks; i++)
    free(p->blocks[i]);
  free(p->owned);
  free(p->blocks);
  free(p->files);
  free(p->syms);
  free(p->services);
  free(p);
}

static int has_file(const duct_dynpool *p, const char *name) {
  size_t i;
  for (i = 0; i < p->n_files; i++)
    if (strcmp(p->files[i].proto->name, name) == 0)
      return 1;
  return 0;
}

/* Takes `m` (an unpacked file or set) into the pool, with the files in
 * `fs` that are new. On failure nothing is taken and the caller frees m. */
static int adopt(duct_dynpool *p, ProtobufCMessage *m, dyn_file_proto *const *fs, size_t n,
                 char *err, size_t errlen) {
  size_t i, j, added = 0;
  if (grow((void **)&p->owned, &p->cap_owned, p->n_owned + 1, sizeof *p->owned) != 0 ||
      grow((void **)&p->files, &p->cap_files, p->n_files + n, sizeof *p->files) != 0) {
    duct__dynpool_err(err, errlen, "out of memory");
    return -1;
  }
  for (i = 0; i < n; i++) {
    int dup = has_file(p, fs[i]->name);
    /* A set may hold the same file twice, too. */
    for (j = 0; j < i && !dup; j++)
      dup = strcmp(fs[j]->name, fs[i]->name) == 0;
    if (dup)
      continue;
    p->files[p->n_files + added].proto = fs[i];
    p->files[p->n_files + added].proto3 = fs[i]->syntax && strcmp(fs[i]->syntax, "proto3") == 0;
    p->files[p->n_files + added].built = 0;
    added++;
  }
  p->n_files += added;
  p->owned[p->n_owned++] = m;
  return 0;
}

/* A parse that succeeds is not yet a file: an empty buffer, or random
 * bytes that happen to be valid protobuf, unpack without a name. */
static int check_named(const dyn_file_proto *f, char *err, size_t errlen) {
  if (!f->name || !f->name[0]) {
    duct__dynpool_err(err, errlen, "descriptor: not a FileDescriptorProto (no file name)");
    return -1;
  }
  if (f->syntax && f->syntax[0] && strcmp(f->syntax, "proto2") != 0 &&
      strcmp(f->syntax, "proto3") != 0) {
    duct__dynpool_err(err, errlen, "%s: syntax \"%s\" is not supported", f->name, f->syntax);
    return -1;
  }
  return 0;
}

int duct_dynpool_add_file(duct_dynpool *p, const uint8_t *data, size_t len, char *err,
                          size_t errlen) {
  dyn_file_proto *f;
  f = google__protobuf__file_descriptor_proto__unpack(NULL, len, data);
  if (!f) {
    duct__dynpool_err(err, errlen, "descriptor: not a FileDescriptorProto");
    return -1;
  }
  if (check_named(f, err, errlen) != 0 || adopt(p, &f->base, &f, 1, err, errlen) != 0) {
    google__protobuf__file_descriptor_proto__free_unpacked(f, NULL);
    return -1;
  }
  return 0;
}

int duct_dynpool_add_set(duct_dynpool *p, const uint8_t *data, size_t len, char *err,
                         size_t errlen) {
  Google__Protobuf__FileDescriptorSet *s;
  size_t i;
  s = google__protobuf__file_descriptor_set__unpack(NULL, len, data);
  if (!s) {
    duct__dynpool_err(err, errlen, "descriptor set: not a FileDescriptorSet");
    return -1;
  }
  for (i = 0; i < s->n_file; i++) {
    if (check_named(s->file[i], err, errlen) != 0)
      goto fail;
  }
  if (adopt(p, &s->base, s->file, s->n_file, err, errlen) != 0)
    goto fail;
  return 0;
fail:
  google__protobuf__file_descriptor_set__free_unpacked(s, NULL);
  return -1;
}

const dyn_sym *duct__dynpool_find(const duct_dynpool *p, const char *full) {
  size_t i;
  /* Linear: a tool's pool holds a few hundred types at most, and each is
   * looked up once per field that names it. */
  for (i = 0; i < p->n_syms; i++)
    if (strcmp(p->syms[i].full, full) == 0)
      return &p->syms[i];
  return NULL;
}

/* Whether `name[0..len)` names a symbol or a package (a prefix of one). */
static int name_exists(const duct_dynpool *p, const char *name, size_t len) {
  size_t i;
  for (i = 0; i < p->n_syms; i++) {
    const char *f = p->syms[i].full;
    if (strncmp(f, name, len) == 0 && (f[len] == '\0' || f[len] == '.'))
      return 1;
  }
  return 0;
}

const dyn_sym *duct__dynpool_resolve(const duct_dynpool *p, const char *scope,
                                     const char *name) {
  char buf[1024];
  size_t n, first;
  if (name[0] == '.')
    return duct__dynpool_find(p, name + 1);
  first = strcspn(name, ".");
  n = strlen(scope);
  /* protoc's rule: the innermost scope where the first component exists
   * decides, and the rest must be found there (no looking further out). */
  for (;;) {
    int w = n ? snprintf(buf, sizeof buf, "%.*s.%s", (int)n, scope, name)
              : snprintf(buf, sizeof buf, "%s", name);
    size_t head;
    if (w < 0 || (size_t)w >= sizeof buf)
      return NULL;
    head = (n ? n + 1 : 0) + first;
    if (name_exists(p, buf, head))
      return duct__dynpool_find(p, buf);
    if (n == 0)
      return NULL;
    while (n > 0 && scope[n - 1] != '.')
      n--;
    if (n > 0)
      n--; /* drop the dot too */
  }
}

/* ---- building ---- */

/* The build in progress: where errors go, and the file being built. */
typedef struct build {
  duct_dynpool *p;
  char *err;
  size_t errlen;
  size_t file;
  const char *fname;
} build;

static int oom(build *b) {
  duct__dynpool_err(b->err, b->errlen, "out of memory");
  return -1;
}

static const char *pkg_of(const dyn_file_proto *f) {
  return f->package ? f->package : "";
}

/* Registers `name` in `scope` as a symbol of the current file. */
static int add_sym(build *b, const char *scope, const char *name, dyn_kind kind,
                   const void *proto) {
  duct_dynpool *p = b->p;
  const dyn_sym *old;
  dyn_sym *s;
  char *full;
  if (!name || !name[0]) {
    duct__dynpool_err(b->err, b->errlen, "%s: a type without a name in %s", b->fname,
                      scope[0] ? scope : "the file");
    return -1;
  }
  full = scope[0] ? pool_printf(p, "%s.%s", scope, name) : pool_printf(p, "%s", name);
  if (!full)
    return oom(b);
  old = duct__dynpool_find(p, full);
  if (old) {
    duct__dynpool_err(b->err, b->errlen, "%s: %s is already defined in %s", b->fname, full,
                      p->files[old->file].proto->name);
    return -1;
  }
  if (grow((void **)&p->syms, &p->cap_syms, p->n_syms + 1, sizeof *p->syms) != 0)
    return oom(b);
  s = &p->syms[p->n_syms++];
  memset(s, 0, sizeof *s);
  s->full = full;
  s->kind = kind;
  s->file = b->file;
  switch (kind) {
  case DYN_MESSAGE:
    s->proto.msg = proto;
    s->built = pool_calloc(p, 1, sizeof(ProtobufCMessageDescriptor));
    break;
  case DYN_ENUM:
    s->proto.en = proto;
    s->built = pool_calloc(p, 1, sizeof(ProtobufCEnumDescriptor));
    break;
  case DYN_SERVICE:
    s->proto.svc = proto;
    s->built = pool_calloc(p, 1, sizeof(duct_service));
    break;
  }
  return s->built ? 0 : oom(b);
}

static int register_msg(build *b, const char *scope, const dyn_msg_proto *m) {
  const char *full;
  size_t i;
  if (add_sym(b, scope, m->name, DYN_MESSAGE, m) != 0)
    return -1;
  full = b->p->syms[b->p->n_syms - 1].full;
  for (i = 0; i < m->n_nested_type; i++)
    if (register_msg(b, full, m->nested_type[i]) != 0)
      return -1;
  for (i = 0; i < m->n_enum_type; i++)
    if (add_sym(b, full, m->enum_type[i]->name, DYN_ENUM, m->enum_type[i]) != 0)
      return -1;
  return 0;
}

static int register_file(build *b) {
  const dyn_file_proto *f = b->p->files[b->file].proto;
  const char *pkg = pkg_of(f);
  size_t i;
  for (i = 0; i < f->n_message_type; i++)
    if (register_msg(b, pkg, f->message_type[i]) != 0)
      return -1;
  for (i = 0; i < f->n_enum_type; i++)
    if (add_sym(b, pkg, f->enum_type[i]->name, DYN_ENUM, f->enum_type[i]) != 0)
      return -1;
  for (i = 0; i < f->n_service; i++)
    if (add_sym(b, pkg, f->service[i]->name, DYN_SERVICE, f->service[i]) != 0)
      return -1;
  return 0;
}

/* "a.b.C" -> "a__b__C": protoc-c's c_name is close to this; the runtime
 * never reads it, and it only helps someone reading a debugger. */
static const char *c_name_of(duct_dynpool *p, const char *full) {
  char *c = pool_calloc(p, strlen(full) * 2 + 1, 1);
  char *o = c;
  if (!c)
    return NULL;
  for (; *full; full++) {
    if (*full == '.') {
      *o++ = '_';
      *o++ = '_';
    } else {
      *o++ = *full;
    }
  }
  return c;
}

/* ProtobufCIntRanges over sorted, distinct `values` (n > 0), with the
 * sentinel protoc-c's WriteIntRanges writes after them: {0, n}. The
 * runtime's int_range_lookup reads ranges[i + 1].orig_index for the size
 * of range i, so the sentinel must be there. */
static ProtobufCIntRange *int_ranges(duct_dynpool *p, const int *values, unsigned n,
                                     unsigned *n_ranges) {
  ProtobufCIntRange *r;
  unsigned i, k = 0;
  r = pool_calloc(p, (size_t)n + 1, sizeof *r);
  if (!r)
    return NULL;
  r[0].start_value = values[0];
  r[0].orig_index = 0;
  for (i = 1; i < n; i++) {
    if (values[i - 1] + 1 != values[i]) {
      k++;
      r[k].start_value = values[i];
      r[k].orig_index = i;
    }
  }
  k++;
  r[k].start_value = 0;
  r[k].orig_index = n;
  *n_ranges = k;
  return r;
}

typedef struct enum_ix {
  const char *name;
  int value;
  unsigned index; /* declaration order */
  unsigned final; /* index among the distinct values */
} enum_ix;

static int cmp_value_then_index(const void *a, const void *b) {
  const enum_ix *x = a, *y = b;
  if (x->value != y->value)
    return x->value < y->value ? -1 : 1;
  return x->index < y->index ? -1 : x->index > y->index;
}

static int cmp_ix_name(const void *a, const void *b) {
  return strcmp(((const enum_ix *)a)->name, ((const enum_ix *)b)->name);
}

/* As protoc-c's GenerateEnumDescriptor: values by number with aliases
 * dropped (the first declared wins), every name in values_by_name. */
static int fill_enum(build *b, const dyn_sym *s) {
  duct_dynpool *p = b->p;
  const dyn_enum_proto *e = s->proto.en;
  ProtobufCEnumDescriptor *d = s->built;
  ProtobufCEnumValue *vals;
  ProtobufCEnumValueIndex *by_name;
  enum_ix *ix;
  int *nums;
  unsigned i, n = (unsigned)e->n_value, uniq = 0;

  d->magic = PROTOBUF_C__ENUM_DESCRIPTOR_MAGIC;
  d->name = s->full;
  d->short_name = e->name;
  d->c_name = c_name_of(p, s->full);
  d->package_name = pkg_of(p->files[s->file].proto);
  if (!d->c_name)
    return oom(b);
  if (n == 0)
    return 0;
  if (e->n_value > INT_MAX)
    return oom(b);
  ix = pool_calloc(p, n, sizeof *ix);
  vals = pool_calloc(p, n, sizeof *vals);
  by_name = pool_calloc(p, n, sizeof *by_name);
  nums = pool_calloc(p, n, sizeof *nums);
  if (!ix || !vals || !by_name || !nums)
    return oom(b);
  for (i = 0; i < n; i++) {
    if (!e->value[i]->name) {
      duct__dynpool_err(b->err, b->errlen, "%s: a value of %s without a name", b->fname,
                        s->full);
      return -1;
    }
    ix[i].name = e->value[i]->name;
    ix[i].value = e->value[i]->number;
    ix[i].index = i;
  }
  qsort(ix, n, sizeof *ix, cmp_value_then_index);
  for (i = 0; i < n; i++) {
    if (i == 0 || ix[i - 1].value != ix[i].value) {
      vals[uniq].name = ix[i].name;
      vals[uniq].c_name = pool_printf(p, "%s__%s", d->c_name, ix[i].name);
      vals[uniq].value = ix[i].value;
      if (!vals[uniq].c_name)
        return oom(b);
      nums[uniq] = ix[i].value;
      uniq++;
    }
    ix[i].final = uniq - 1;
  }
  qsort(ix, n, sizeof *ix, cmp_ix_name);
  for (i = 0; i < n; i++) {
    by_name[i].name = ix[i].name;
    by_name[i].index = ix[i].final;
  }
  d->n_values = uniq;
  d->values = vals;
  d->n_value_names = n;
  d->values_by_name = by_name;
  d->value_ranges = int_ranges(p, nums, uniq, &d->n_value_ranges);
  return d->value_ranges ? 0 : oom(b);
}

/* descriptor.proto's FieldDescriptorProto.Type, 1..18, to protobuf-c's. */
static int map_type(int t, ProtobufCType *out) {
  static const int table[19] = {
      -1,
      PROTOBUF_C_TYPE_DOUBLE,
      PROTOBUF_C_TYPE_FLOAT,
      PROTOBUF_C_TYPE_INT64,
      PROTOBUF_C_TYPE_UINT64,
      PROTOBUF_C_TYPE_INT32,
      PROTOBUF_C_TYPE_FIXED64,
      PROTOBUF_C_TYPE_FIXED32,
      PROTOBUF_C_TYPE_BOOL,
      PROTOBUF_C_TYPE_STRING,
      -1, /* group: protoc-c has no code for it either */
      PROTOBUF_C_TYPE_MESSAGE,
      PROTOBUF_C_TYPE_BYTES,
      PROTOBUF_C_TYPE_UINT32,
      PROTOBUF_C_TYPE_ENUM,
      PROTOBUF_C_TYPE_SFIXED32,
      PROTOBUF_C_TYPE_SFIXED64,
      PROTOBUF_C_TYPE_SINT32,
      PROTOBUF_C_TYPE_SINT64,
  };
  if (t < 1 || t > 18 || table[t] < 0)
    return -1;
  *out = (ProtobufCType)table[t];
  return 0;
}

/* The size and alignment of one value of type t in a message struct, and
 * of one element of a repeated array (the runtime's
 * sizeof_elt_in_repeated_array gives the same sizes). */
static void type_size(ProtobufCType t, size_t *size, size_t *align) {
  switch (t) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
  case PROTOBUF_C_TYPE_ENUM: /* protoc-c's C enums; the runtime copies 4 bytes */
    *size = sizeof(int32_t);
    *align = _Alignof(int32_t);
    return;
  case PROTOBUF_C_TYPE_FLOAT:
    *size = sizeof(float);
    *align = _Alignof(float);
    return;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    *size = sizeof(int64_t);
    *align = _Alignof(int64_t);
    return;
  case PROTOBUF_C_TYPE_DOUBLE:
    *size = sizeof(double);
    *align = _Alignof(double);
    return;
  case PROTOBUF_C_TYPE_BOOL:
    *size = sizeof(protobuf_c_boolean);
    *align = _Alignof(protobuf_c_boolean);
    return;
  case PROTOBUF_C_TYPE_BYTES:
    *size = sizeof(ProtobufCBinaryData);
    *align = _Alignof(ProtobufCBinaryData);
    return;
  case PROTOBUF_C_TYPE_STRING:
  case PROTOBUF_C_TYPE_MESSAGE:
  default:
    *size = sizeof(void *);
    *align = _Alignof(void *);
    return;
  }
}

/* Places `size` bytes at `align` after *end; returns their offset. */
static size_t place(size_t *end, size_t *max_align, size_t size, size_t align) {
  size_t off = (*end + align - 1) / align * align;
  *end = off + size;
  if (align > *max_align)
    *max_align = align;
  return off;
}

/* protoc-c's CUnescape for bytes defaults: protoc writes them C-escaped
 * (\n, \", \\, octal \ooo, hex \xHH). Returns the length written to out
 * (which has room for strlen(in) bytes). */
static size_t c_unescape(const char *in, uint8_t *out) {
  size_t n = 0;
  while (*in) {
    if (*in != '\\' || !in[1]) {
      out[n++] = (uint8_t)*in++;
      continue;
    }
    in++;
    switch (*in) {
    case 'n': out[n++] = '\n'; in++; break;
    case 'r': out[n++] = '\r'; in++; break;
    case 't': out[n++] = '\t'; in++; break;
    case 'a': out[n++] = '\a'; in++; break;
    case 'b': out[n++] = '\b'; in++; break;
    case 'f': out[n++] = '\f'; in++; break;
    case 'v': out[n++] = '\v'; in++; break;
    case 'x': {
      unsigned v = 0;
      int k;
      in++;
      for (k = 0; k < 2 && strchr("0123456789abcdefABCDEF", *in) && *in; k++, in++)
        v = v * 16 + (unsigned)(*in <= '9' ? *in - '0' : (*in | 0x20) - 'a' + 10);
      out[n++] = (uint8_t)v;
      break;
    }
    default:
      if (*in >= '0' && *in <= '7') {
        unsigned v = 0;
        int k;
        for (k = 0; k < 3 && *in >= '0' && *in <= '7'; k++, in++)
          v = v * 8 + (unsigned)(*in - '0');
        out[n++] = (uint8_t)v;
      } else {
        out[n++] = (uint8_t)*in++; /* \" \' \\ \? */
      }
    }
  }
  return n;
}

/* Parses a proto2 `[default = ...]`, in the text protoc stores it as, into
 * pool memory in the form message_init_generic copies from. */
static int parse_default(build *b, const char *msg, const dyn_field_proto *f,
                         ProtobufCFieldDescriptor *fd, const dyn_sym *enum_sym) {
  duct_dynpool *p = b->p;
  const char *s = f->default_value;
  char *end = NULL;
  void *v = NULL;
  errno = 0;
  switch (fd->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32: {
    long long x = strtoll(s, &end, 10);
    int32_t *q = pool_calloc(p, 1, sizeof *q);
    if (!q)
      return oom(b);
    if (x < INT32_MIN || x > INT32_MAX)
      errno = ERANGE;
    *q = (int32_t)x;
    v = q;
    break;
  }
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32: {
    unsigned long long x = strtoull(s, &end, 10);
    uint32_t *q = pool_calloc(p, 1, sizeof *q);
    if (!q)
      return oom(b);
    if (x > UINT32_MAX || s[0] == '-')
      errno = ERANGE;
    *q = (uint32_t)x;
    v = q;
    break;
  }
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64: {
    int64_t *q = pool_calloc(p, 1, sizeof *q);
    if (!q)
      return oom(b);
    *q = (int64_t)strtoll(s, &end, 10);
    v = q;
    break;
  }
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64: {
    uint64_t *q = pool_calloc(p, 1, sizeof *q);
    if (!q)
      return oom(b);
    if (s[0] == '-')
      errno = ERANGE;
    *q = (uint64_t)strtoull(s, &end, 10);
    v = q;
    break;
  }
  case PROTOBUF_C_TYPE_FLOAT:
  case PROTOBUF_C_TYPE_DOUBLE: {
    /* protoc writes "inf", "-inf" and "nan" for the special values; they
     * are spelled out here rather than left to strtod, whose reading of
     * them is the C library's (and not every one agrees). */
    double x;
    if (strcmp(s, "inf") == 0) {
      x = HUGE_VAL;
      end = (char *)s + 3;
    } else if (strcmp(s, "-inf") == 0) {
      x = -HUGE_VAL;
      end = (char *)s + 4;
    } else if (strcmp(s, "nan") == 0) {
      x = NAN;
      end = (char *)s + 3;
    } else {
      x = strtod(s, &end);
      errno = 0; /* underflow to 0 or overflow to inf is what protoc does */
    }
    if (fd->type == PROTOBUF_C_TYPE_FLOAT) {
      float *q = pool_calloc(p, 1, sizeof *q);
      if (!q)
        return oom(b);
      *q = (float)x;
      v = q;
    } else {
      double *q = pool_calloc(p, 1, sizeof *q);
      if (!q)
        return oom(b);
      *q = x;
      v = q;
    }
    break;
  }
  case PROTOBUF_C_TYPE_BOOL: {
    protobuf_c_boolean *q = pool_calloc(p, 1, sizeof *q);
    if (!q)
      return oom(b);
    if (strcmp(s, "true") == 0)
      *q = 1;
    else if (strcmp(s, "false") != 0)
      end = (char *)s; /* neither: an error below */
    v = q;
    if (!end)
      end = (char *)s + strlen(s);
    break;
  }
  case PROTOBUF_C_TYPE_STRING: {
    /* Stored unescaped; the runtime's default is the char array itself,
     * and free_unpacked compares pointers with it. */
    char *q = pool_printf(p, "%s", s);
    if (!q)
      return oom(b);
    v = q;
    end = (char *)s + strlen(s);
    break;
  }
  case PROTOBUF_C_TYPE_BYTES: {
    ProtobufCBinaryData *q = pool_calloc(p, 1, sizeof *q);
    uint8_t *data = pool_calloc(p, strlen(s) + 1, 1);
    if (!q || !data)
      return oom(b);
    q->len = c_unescape(s, data);
    q->data = data;
    v = q;
    end = (char *)s + strlen(s);
    break;
  }
  case PROTOBUF_C_TYPE_ENUM: {
    const dyn_enum_proto *e = enum_sym->proto.en;
    size_t i;
    int32_t *q = pool_calloc(p, 1, sizeof *q);
    if (!q)
      return oom(b);
    for (i = 0; i < e->n_value; i++) {
      if (e->value[i]->name && strcmp(e->value[i]->name, s) == 0) {
        *q = e->value[i]->number;
        end = (char *)s + strlen(s);
        break;
      }
    }
    v = q;
    break;
  }
  case PROTOBUF_C_TYPE_MESSAGE:
  default:
    end = (char *)s;
    break;
  }
  if (!end || end == s || *end || errno) {
    /* An empty string is a fine default for strings and bytes only. */
    if (!(s[0] == '\0' &&
          (fd->type == PROTOBUF_C_TYPE_STRING || fd->type == PROTOBUF_C_TYPE_BYTES))) {
      duct__dynpool_err(b->err, b->errlen, "%s: %s.%s: bad default value \"%s\"", b->fname, msg,
                        f->name, s);
      return -1;
    }
  }
  fd->default_value = v;
  return 0;
}

/* protoc-c's is_packable_type: scalars other than strings and bytes. */
static int packable(ProtobufCType t) {
  return t != PROTOBUF_C_TYPE_STRING && t != PROTOBUF_C_TYPE_BYTES &&
         t != PROTOBUF_C_TYPE_MESSAGE;
}

static int cmp_field_id(const void *a, const void *b) {
  const ProtobufCFieldDescriptor *x = a, *y = b;
  return x->id < y->id ? -1 : x->id > y->id;
}

/* For sorting fields_sorted_by_name: a name and its field's index. */
typedef struct name_ix {
  const char *name;
  unsigned index;
} name_ix;

static int cmp_name_ix(const void *a, const void *b) {
  return strcmp(((const name_ix *)a)->name, ((const name_ix *)b)->name);
}

/* Fills one message's descriptor: fields sorted by number with their
 * offsets in the layout dynpool.h describes, the by-name index, the
 * number ranges, defaults. */
static int fill_message(build *b, const dyn_sym *s) {
  duct_dynpool *p = b->p;
  const dyn_file *file = &p->files[s->file];
  const dyn_msg_proto *m = s->proto.msg;
  ProtobufCMessageDescriptor *d = s->built;
  ProtobufCFieldDescriptor *fields;
  unsigned *by_name;
  name_ix *names;
  int *nums;
  size_t *case_off;
  size_t end = sizeof(ProtobufCMessage), max_align = _Alignof(ProtobufCMessage);
  unsigned i, n = (unsigned)m->n_field;

  d->magic = PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC;
  d->name = s->full;
  d->short_name = m->name;
  d->c_name = c_name_of(p, s->full);
  d->package_name = pkg_of(file->proto);
  if (!d->c_name)
    return oom(b);
  if (m->n_field > INT_MAX)
    return oom(b);
  fields = pool_calloc(p, n, sizeof *fields);
  by_name = pool_calloc(p, n, sizeof *by_name);
  nums = pool_calloc(p, n, sizeof *nums);
  names = pool_calloc(p, n, sizeof *names);
  case_off = pool_calloc(p, m->n_oneof_decl, sizeof *case_off);
  if (!fields || !by_name || !nums || !names || !case_off)
    return oom(b);

  /* Each oneof's case goes where its first member is declared. */
  for (i = 0; i < m->n_oneof_decl; i++)
    case_off[i] = SIZE_MAX;

  for (i = 0; i < n; i++) {
    const dyn_field_proto *f = m->field[i];
    ProtobufCFieldDescriptor *fd = &fields[i];
    const dyn_sym *ref = NULL;
    int in_oneof = f->has_oneof_index && !f->proto3_optional;
    int label = f->has_label ? (int)f->label : GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_OPTIONAL;
    size_t size, align;

    if (!f->name || !f->name[0] || !f->has_number || f->number < 1 ||
        f->number > MAX_FIELD_NUMBER) {
      duct__dynpool_err(b->err, b->errlen, "%s: %s: a field without a name or a valid number",
                        b->fname, s->full);
      return -1;
    }
    fd->name = f->name;
    fd->id = (uint32_t)f->number;

    /* The type: given, or (in descriptors not from protoc) only a
     * type_name, which then says message or enum. */
    if (f->type_name) {
      ref = duct__dynpool_resolve(p, s->full, f->type_name);
      if (!ref || ref->kind == DYN_SERVICE) {
        duct__dynpool_err(b->err, b->errlen,
                          "%s: type %s not found (is its file among the descriptors?)",
                          b->fname, f->type_name);
        return -1;
      }
    }
    if (f->has_type) {
      if (map_type((int)f->type, &fd->type) != 0) {
        duct__dynpool_err(b->err, b->errlen, "%s: %s.%s: %s are not supported", b->fname,
                          s->full, f->name,
                          f->type == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_GROUP
                              ? "groups"
                              : "fields of this type");
        return -1;
      }
    } else if (ref) {
      fd->type = ref->kind == DYN_MESSAGE ? PROTOBUF_C_TYPE_MESSAGE : PROTOBUF_C_TYPE_ENUM;
    } else {
      duct__dynpool_err(b->err, b->errlen, "%s: %s.%s has no type", b->fname, s->full, f->name);
      return -1;
    }
    if (fd->type == PROTOBUF_C_TYPE_MESSAGE || fd->type == PROTOBUF_C_TYPE_ENUM) {
      dyn_kind want = fd->type == PROTOBUF_C_TYPE_MESSAGE ? DYN_MESSAGE : DYN_ENUM;
      if (!ref || ref->kind != want) {
        duct__dynpool_err(b->err, b->errlen,
                          "%s: type %s not found (is its file among the descriptors?)",
                          b->fname, f->type_name ? f->type_name : "(none)");
        return -1;
      }
      fd->descriptor = ref->built;
    }
    type_size(fd->type, &size, &align);

    if (in_oneof) {
      unsigned o = (unsigned)f->oneof_index;
      if (f->oneof_index < 0 || (size_t)f->oneof_index >= m->n_oneof_decl ||
          label != GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_OPTIONAL) {
        duct__dynpool_err(b->err, b->errlen, "%s: %s.%s: bad oneof", b->fname, s->full,
                          f->name);
        return -1;
      }
      if (case_off[o] == SIZE_MAX)
        case_off[o] = place(&end, &max_align, sizeof(uint32_t), _Alignof(uint32_t));
      fd->label = file->proto3 ? PROTOBUF_C_LABEL_NONE : PROTOBUF_C_LABEL_OPTIONAL;
      fd->quantifier_offset = (unsigned)case_off[o];
      /* Each member has storage of its own, not a union as in protoc-c:
       * protobuf-c's generic init writes every member's default (proto2
       * defaults, proto3's empty string), and in a union the last would
       * overwrite the others' pointers, which unpack then frees when a
       * member arrives. Only the member the case names is ever read. */
      fd->offset = (unsigned)place(&end, &max_align, size, align);
      fd->flags |= PROTOBUF_C_FIELD_FLAG_ONEOF;
    } else if (label == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED) {
      fd->label = PROTOBUF_C_LABEL_REPEATED;
      fd->quantifier_offset = (unsigned)place(&end, &max_align, sizeof(size_t), _Alignof(size_t));
      fd->offset = (unsigned)place(&end, &max_align, sizeof(void *), _Alignof(void *));
      /* proto3 packs packable repeated scalars unless [packed = false];
       * proto2 only with [packed = true]. */
      if (packable(fd->type) &&
          ((f->options && f->options->has_packed) ? f->options->packed : file->proto3))
        fd->flags |= PROTOBUF_C_FIELD_FLAG_PACKED;
    } else if (label == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REQUIRED) {
      fd->label = PROTOBUF_C_LABEL_REQUIRED;
      fd->offset = (unsigned)place(&end, &max_align, size, align);
    } else if (file->proto3 && !f->proto3_optional) {
      fd->label = PROTOBUF_C_LABEL_NONE;
      fd->offset = (unsigned)place(&end, &max_align, size, align);
    } else {
      /* proto2 optional, proto3 `optional`: strings and messages are
       * present when non-NULL, the rest have a has_ flag. */
      fd->label = PROTOBUF_C_LABEL_OPTIONAL;
      if (fd->type != PROTOBUF_C_TYPE_STRING && fd->type != PROTOBUF_C_TYPE_MESSAGE)
        fd->quantifier_offset = (unsigned)place(&end, &max_align, sizeof(protobuf_c_boolean),
                                                _Alignof(protobuf_c_boolean));
      fd->offset = (unsigned)place(&end, &max_align, size, align);
    }
    if (f->options && f->options->has_deprecated && f->options->deprecated)
      fd->flags |= PROTOBUF_C_FIELD_FLAG_DEPRECATED;

    /* Defaults as protoc-c gives them: proto2's explicit ones, and every
     * proto3 string (oneof and repeated ones too) starts as the runtime's
     * own empty string, which free_unpacked knows not to free. proto3
     * `optional` strings start NULL instead: absent. */
    if (f->default_value && !file->proto3) {
      if (parse_default(b, s->full, f, fd, ref) != 0)
        return -1;
    } else if (file->proto3 && fd->type == PROTOBUF_C_TYPE_STRING && !f->proto3_optional) {
      fd->default_value = &protobuf_c_empty_string;
    } else if (!file->proto3 && fd->type == PROTOBUF_C_TYPE_ENUM &&
               fd->label != PROTOBUF_C_LABEL_REPEATED && ref->proto.en->n_value > 0) {
      /* A proto2 enum's implicit default is its first declared value.
       * protoc-c puts it in the static initializer, not in default_value;
       * these descriptors have only the generic init, so it goes here. */
      int32_t *q = pool_calloc(p, 1, sizeof *q);
      if (!q)
        return oom(b);
      *q = ref->proto.en->value[0]->number;
      fd->default_value = q;
    }
  }
  if (end > UINT_MAX)
    return oom(b);

  qsort(fields, n, sizeof *fields, cmp_field_id);
  for (i = 0; i < n; i++) {
    if (i > 0 && fields[i - 1].id == fields[i].id) {
      duct__dynpool_err(b->err, b->errlen, "%s: %s: field number %u used twice", b->fname,
                        s->full, (unsigned)fields[i].id);
      return -1;
    }
    nums[i] = (int)fields[i].id;
    names[i].name = fields[i].name;
    names[i].index = i;
  }
  qsort(names, n, sizeof *names, cmp_name_ix);
  for (i = 0; i < n; i++)
    by_name[i] = names[i].index;

  d->sizeof_message = (end + max_align - 1) / max_align * max_align;
  d->n_fields = n;
  d->fields = fields;
  d->fields_sorted_by_name = by_name;
  if (n > 0) {
    d->field_ranges = int_ranges(p, nums, n, &d->n_field_ranges);
    if (!d->field_ranges)
      return oom(b);
  }
  /* NULL: protobuf_c_message_unpack then runs message_init_generic, which
   * reads the defaults above. See duct_dynpool_init_message. */
  d->message_init = NULL;
  return 0;
}

static int fill_service(build *b, const dyn_sym *s) {
  duct_dynpool *p = b->p;
  const dyn_svc_proto *sp = s->proto.svc;
  duct_service *svc = s->built;
  duct_method *ms;
  size_t i;
  const char *scope = pkg_of(p->files[s->file].proto);

  ms = pool_calloc(p, sp->n_method, sizeof *ms);
  if (!ms)
    return oom(b);
  for (i = 0; i < sp->n_method; i++) {
    const Google__Protobuf__MethodDescriptorProto *md = sp->method[i];
    const dyn_sym *in, *out;
    int cs, ss;
    if (!md->name || !md->input_type || !md->output_type) {
      duct__dynpool_err(b->err, b->errlen, "%s: %s: a method without a name or types",
                        b->fname, s->full);
      return -1;
    }
    in = duct__dynpool_resolve(p, scope, md->input_type);
    out = duct__dynpool_resolve(p, scope, md->output_type);
    if (!in || in->kind != DYN_MESSAGE || !out || out->kind != DYN_MESSAGE) {
      duct__dynpool_err(b->err, b->errlen,
                        "%s: type %s not found (is its file among the descriptors?)", b->fname,
                        (!in || in->kind != DYN_MESSAGE) ? md->input_type : md->output_type);
      return -1;
    }
    ms[i].name = pool_printf(p, "/%s/%s", s->full, md->name);
    if (!ms[i].name)
      return oom(b);
    ms[i].id = duct__method_id(ms[i].name);
    ms[i].input = in->built;
    ms[i].output = out->built;
    cs = md->has_client_streaming && md->client_streaming;
    ss = md->has_server_streaming && md->server_streaming;
    ms[i].kind = cs ? (ss ? DUCT_BIDI_STREAMING : DUCT_CLIENT_STREAMING)
                    : (ss ? DUCT_SERVER_STREAMING : DUCT_UNARY);
  }
  /* duct_service may grow fields (the embedded descriptors); the pool's
   * services leave them zero. */
  memset(svc, 0, sizeof *svc);
  svc->name = s->full;
  svc->n_methods = sp->n_method;
  svc->methods = ms;
  return 0;
}

int duct_dynpool_build(duct_dynpool *p, char *err, size_t errlen) {
  size_t first_sym = p->n_syms, first_svc = p->n_services, i, k;
  build b;
  memset(&b, 0, sizeof b);
  b.p = p;
  b.err = err;
  b.errlen = errlen;

  /* Every new symbol first, so fields may name types of any file, in any
   * order; then the descriptors. */
  for (i = 0; i < p->n_files; i++) {
    if (p->files[i].built)
      continue;
    b.file = i;
    b.fname = p->files[i].proto->name;
    if (register_file(&b) != 0)
      goto fail;
  }
  for (k = first_sym; k < p->n_syms; k++) {
    const dyn_sym *s = &p->syms[k];
    b.file = s->file;
    b.fname = p->files[s->file].proto->name;
    if (s->kind == DYN_ENUM && fill_enum(&b, s) != 0)
      goto fail;
  }
  for (k = first_sym; k < p->n_syms; k++) {
    const dyn_sym *s = &p->syms[k];
    b.file = s->file;
    b.fname = p->files[s->file].proto->name;
    if (s->kind == DYN_MESSAGE && fill_message(&b, s) != 0)
      goto fail;
  }
  for (k = first_sym; k < p->n_syms; k++) {
    const dyn_sym *s = &p->syms[k];
    if (s->kind != DYN_SERVICE)
      continue;
    b.file = s->file;
    b.fname = p->files[s->file].proto->name;
    if (fill_service(&b, s) != 0)
      goto fail;
    if (grow((void **)&p->services, &p->cap_services, p->n_services + 1,
             sizeof *p->services) != 0) {
      oom(&b);
      goto fail;
    }
    p->services[p->n_services++] = k;
  }
  for (i = 0; i < p->n_files; i++)
    p->files[i].built = 1;
  return 0;
fail:
  /* Forget this round's symbols; their memory stays in the arena until
   * the pool is freed, and a later build registers them anew. */
  p->n_syms = first_sym;
  p->n_services = first_svc;
  return -1;
}

/* ---- lookups ---- */

static const void *find_built(const duct_dynpool *p, const char *full, dyn_kind kind) {
  const dyn_sym *s;
  if (!p || !full)
    return NULL;
  s = duct__dynpool_find(p, full);
  return s && s->kind == kind && p->files[s->file].built ? s->built : NULL;
}

const ProtobufCMessageDescriptor *duct_dynpool_message(const duct_dynpool *p,
                                                       const char *full_name) {
  return find_built(p, full_name, DYN_MESSAGE);
}

const ProtobufCEnumDescriptor *duct_dynpool_enum(const duct_dynpool *p, const char *full_name) {
  return find_built(p, full_name, DYN_ENUM);
}

const duct_service *duct_dynpool_service(const duct_dynpool *p, const char *full_name) {
  return find_built(p, full_name, DYN_SERVICE);
}

size_t duct_dynpool_n_services(const duct_dynpool *p) {
  return p ? p->n_services : 0;
}

const duct_service *duct_dynpool_service_at(const duct_dynpool *p, size_t i) {
  if (!p || i >= p->n_services)
    return NULL;
  return p->syms[p->services[i]].built;
}

const duct_method *duct_dynpool_method(const duct_dynpool *p, const char *name) {
  const char *sep;
  size_t i, j, svc_len;
  if (!p || !name)
    return NULL;
  if (name[0] == '/' || name[0] == '.')
    name++;
  /* "pkg.Svc/Method", else the last dot splits "pkg.Svc.Method". */
  sep = strchr(name, '/');
  if (!sep)
    sep = strrchr(name, '.');
  if (!sep)
    return NULL;
  svc_len = (size_t)(sep - name);
  for (i = 0; i < p->n_services; i++) {
    const duct_service *s = p->syms[p->services[i]].built;
    if (strlen(s->name) != svc_len || strncmp(s->name, name, svc_len) != 0)
      continue;
    for (j = 0; j < s->n_methods; j++) {
      /* The method's name is "/" + service + "/" + method. */
      if (strcmp(s->methods[j].name + 1 + svc_len + 1, sep + 1) == 0)
        return &s->methods[j];
    }
  }
  return NULL;
}

void duct_dynpool_init_message(const ProtobufCMessageDescriptor *d, void *mem) {
  unsigned i;
  if (d->message_init) {
    d->message_init(mem);
    return;
  }
  /* What protobuf_c_message_unpack does (its static message_init_generic)
   * for a descriptor without message_init: zero, then each non-repeated
   * field's default, copied in the size the runtime reads it with. */
  memset(mem, 0, d->sizeof_message);
  ((ProtobufCMessage *)mem)->descriptor = d;
  for (i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    char *at = (char *)mem + f->offset;
    if (!f->default_value || f->label == PROTOBUF_C_LABEL_REPEATED)
      continue;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
      /* The pointer itself: strings point at the default's characters. */
      memcpy(at, &f->default_value, sizeof(void *));
      break;
    default: {
      size_t size, align;
      type_size(f->type, &size, &align);
      memcpy(at, f->default_value, size);
    }
    }
  }
}
