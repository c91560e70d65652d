/* Run-time descriptors (cli/dynpool.h) against protoc-c's and
 * protoc-gen-duct's compiled ones for the same .proto files: metadata,
 * wire bytes both ways, defaults, required fields, services; errors; and
 * the .proto text of `duct describe` against tests/cli/golden/.
 *
 * The descriptor set is protoc's (--include_imports) for dyn2.proto,
 * dyn2x.proto, dyn3.proto, dyn3opt.proto, probe.proto and
 * examples/kv.proto, built by tests/cli/CMakeLists.txt. Set
 * DUCT_GOLDEN_UPDATE=1 to rewrite the goldens (then read the diff). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dyn2.pb-c.h"
#include "dyn3.pb-c.h"
#include "examples/kv.duct.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "probe.duct.h"

#include "cli/dynpool.h"

static uint8_t *set_data;
static size_t set_len;

static uint8_t *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf = NULL;
  size_t cap = 0, n = 0;
  if (!f)
    return NULL;
  for (;;) {
    size_t got;
    if (n == cap) {
      uint8_t *q;
      cap = cap ? cap * 2 : 4096;
      q = realloc(buf, cap + 1);
      assert_non_null(q);
      buf = q;
    }
    got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0)
      break;
  }
  fclose(f);
  buf[n] = 0;
  *len = n;
  return buf;
}

static duct_dynpool *full_pool(void) {
  char err[256] = "";
  duct_dynpool *p = duct_dynpool_new();
  assert_non_null(p);
  assert_int_equal(duct_dynpool_add_set(p, set_data, set_len, err, sizeof err), 0);
  if (duct_dynpool_build(p, err, sizeof err) != 0)
    fail_msg("build: %s", err);
  return p;
}

/* ---- a message of any compiled type, every field set ---- */

/* Fills `m` (initialized) with values that depend on the field number and
 * `v`; each oneof gets its (v mod members)-th member. Everything is
 * malloc'd, so protobuf_c_message_free_unpacked frees it. */
static void populate(ProtobufCMessage *m, unsigned v, int depth);

static char *dup_str(const char *s) {
  char *d = malloc(strlen(s) + 1);
  assert_non_null(d);
  strcpy(d, s);
  return d;
}

static void scalar_value(const ProtobufCFieldDescriptor *f, void *at, unsigned seed,
                         int depth) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    *(int32_t *)at = -(int32_t)(seed * 1000003u % 2000000000u) - 1;
    break;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    *(uint32_t *)at = seed * 2654435761u | 1;
    break;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
    *(int64_t *)at = -(int64_t)seed * INT64_C(0x100000007) - 1;
    break;
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    *(uint64_t *)at = (uint64_t)seed * UINT64_C(0x9E3779B97F4A7C15) | 1;
    break;
  case PROTOBUF_C_TYPE_FLOAT:
    *(float *)at = (float)seed + 0.25f;
    break;
  case PROTOBUF_C_TYPE_DOUBLE:
    *(double *)at = -(double)seed * 1e10 - 0.5;
    break;
  case PROTOBUF_C_TYPE_BOOL:
    *(protobuf_c_boolean *)at = 1;
    break;
  case PROTOBUF_C_TYPE_ENUM: {
    const ProtobufCEnumDescriptor *e = f->descriptor;
    *(int32_t *)at = e->values[(seed + 1) % e->n_values].value;
    break;
  }
  case PROTOBUF_C_TYPE_STRING: {
    char buf[32];
    snprintf(buf, sizeof buf, "s%u-\xc3\xa9", seed);
    *(char **)at = dup_str(buf);
    break;
  }
  case PROTOBUF_C_TYPE_BYTES: {
    ProtobufCBinaryData *b = at;
    b->len = 4;
    b->data = malloc(4);
    assert_non_null(b->data);
    b->data[0] = 0;
    b->data[1] = 0xff;
    b->data[2] = (uint8_t)seed;
    b->data[3] = '\n';
    break;
  }
  case PROTOBUF_C_TYPE_MESSAGE: {
    const ProtobufCMessageDescriptor *d = f->descriptor;
    ProtobufCMessage *sub = NULL;
    if (depth < 3) {
      sub = malloc(d->sizeof_message);
      assert_non_null(sub);
      protobuf_c_message_init(d, sub);
      populate(sub, seed, depth + 1);
    }
    *(ProtobufCMessage **)at = sub;
    break;
  }
  }
}

static size_t elt_size(ProtobufCType t) {
  switch (t) {
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
  case PROTOBUF_C_TYPE_DOUBLE:
    return 8;
  case PROTOBUF_C_TYPE_BOOL:
    return sizeof(protobuf_c_boolean);
  case PROTOBUF_C_TYPE_STRING:
  case PROTOBUF_C_TYPE_MESSAGE:
    return sizeof(void *);
  case PROTOBUF_C_TYPE_BYTES:
    return sizeof(ProtobufCBinaryData);
  default:
    return 4;
  }
}

static void populate(ProtobufCMessage *m, unsigned v, int depth) {
  const ProtobufCMessageDescriptor *d = m->descriptor;
  unsigned i, j;
  for (i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    char *base = (char *)m;
    unsigned seed = f->id * 31u + v * 7u + (unsigned)depth;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
      unsigned count = 0, mine = 0;
      for (j = 0; j < d->n_fields; j++) {
        if ((d->fields[j].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            d->fields[j].quantifier_offset == f->quantifier_offset) {
          if (j == i)
            mine = count;
          count++;
        }
      }
      if (v % count != mine)
        continue;
      *(uint32_t *)(base + f->quantifier_offset) = f->id;
      scalar_value(f, base + f->offset, seed, depth);
    } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = (f->type == PROTOBUF_C_TYPE_MESSAGE && depth >= 2) ? 0 : 2 + v % 2;
      size_t es = elt_size(f->type);
      char *arr = n ? calloc(n, es) : NULL;
      if (n)
        assert_non_null(arr);
      for (j = 0; j < n; j++)
        scalar_value(f, arr + j * es, seed + j, depth);
      *(size_t *)(base + f->quantifier_offset) = n;
      *(char **)(base + f->offset) = arr;
    } else {
      if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset)
        *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
      scalar_value(f, base + f->offset, seed, depth);
    }
  }
}

/* Every message and enum type reachable from `d`, into the lists. */
typedef struct reach {
  const ProtobufCMessageDescriptor *msgs[64];
  size_t n_msgs;
  const ProtobufCEnumDescriptor *enums[32];
  size_t n_enums;
} reach;

static void walk(reach *r, const ProtobufCMessageDescriptor *d) {
  size_t i;
  for (i = 0; i < r->n_msgs; i++)
    if (r->msgs[i] == d)
      return;
  assert_true(r->n_msgs < 64);
  r->msgs[r->n_msgs++] = d;
  for (i = 0; i < d->n_fields; i++) {
    if (d->fields[i].type == PROTOBUF_C_TYPE_MESSAGE) {
      walk(r, d->fields[i].descriptor);
    } else if (d->fields[i].type == PROTOBUF_C_TYPE_ENUM) {
      size_t k;
      for (k = 0; k < r->n_enums; k++)
        if (r->enums[k] == d->fields[i].descriptor)
          break;
      if (k == r->n_enums) {
        assert_true(r->n_enums < 32);
        r->enums[r->n_enums++] = d->fields[i].descriptor;
      }
    }
  }
}

static void reach_all(reach *r) {
  memset(r, 0, sizeof *r);
  walk(r, &duct__dyn__v2__defaults__descriptor);
  walk(r, &duct__dyn__v2__required__descriptor);
  walk(r, &duct__dyn__v3__everything__descriptor);
  walk(r, &duct__dyn__v3__empty__descriptor);
  walk(r, &duct__dyn__v3__ref__descriptor);
  /* Everything, its Item and Shelf, three map entries, Timestamp, Sub... */
  assert_true(r->n_msgs >= 12);
  assert_true(r->n_enums >= 3);
}

static void assert_same_value(ProtobufCType t, const void *a, const void *b) {
  switch (t) {
  case PROTOBUF_C_TYPE_STRING:
    assert_string_equal(a, b);
    break;
  case PROTOBUF_C_TYPE_BYTES: {
    const ProtobufCBinaryData *x = a, *y = b;
    assert_int_equal(x->len, y->len);
    if (x->len)
      assert_memory_equal(x->data, y->data, x->len);
    break;
  }
  default:
    assert_memory_equal(a, b, elt_size(t));
  }
}

static void compare_enum(const ProtobufCEnumDescriptor *c, const ProtobufCEnumDescriptor *d) {
  unsigned i;
  assert_non_null(d);
  assert_int_equal(d->magic, PROTOBUF_C__ENUM_DESCRIPTOR_MAGIC);
  assert_string_equal(d->name, c->name);
  assert_string_equal(d->short_name, c->short_name);
  assert_string_equal(d->package_name, c->package_name);
  assert_int_equal(d->n_values, c->n_values);
  for (i = 0; i < c->n_values; i++) {
    assert_string_equal(d->values[i].name, c->values[i].name);
    assert_int_equal(d->values[i].value, c->values[i].value);
  }
  assert_int_equal(d->n_value_names, c->n_value_names);
  for (i = 0; i < c->n_value_names; i++) {
    assert_string_equal(d->values_by_name[i].name, c->values_by_name[i].name);
    assert_int_equal(d->values_by_name[i].index, c->values_by_name[i].index);
  }
  assert_int_equal(d->n_value_ranges, c->n_value_ranges);
  for (i = 0; i <= c->n_value_ranges; i++) { /* the sentinel too */
    assert_int_equal(d->value_ranges[i].start_value, c->value_ranges[i].start_value);
    assert_int_equal(d->value_ranges[i].orig_index, c->value_ranges[i].orig_index);
  }
}

static void compare_message(const ProtobufCMessageDescriptor *c,
                            const ProtobufCMessageDescriptor *d) {
  unsigned i;
  assert_non_null(d);
  assert_int_equal(d->magic, PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
  assert_string_equal(d->name, c->name);
  assert_string_equal(d->short_name, c->short_name);
  assert_string_equal(d->package_name, c->package_name);
  assert_int_equal(d->n_fields, c->n_fields);
  assert_null(d->message_init);
  assert_true(d->sizeof_message >= sizeof(ProtobufCMessage));
  for (i = 0; i < c->n_fields; i++) {
    const ProtobufCFieldDescriptor *cf = &c->fields[i], *df = &d->fields[i];
    assert_string_equal(df->name, cf->name);
    assert_int_equal(df->id, cf->id);
    assert_int_equal(df->label, cf->label);
    assert_int_equal(df->type, cf->type);
    assert_int_equal(df->flags, cf->flags);
    /* Offsets are the pool's own, but whether there is a quantifier is
     * not: has_, n_ and oneof cases where protoc-c has them. */
    assert_int_equal(df->quantifier_offset != 0, cf->quantifier_offset != 0);
    assert_true(df->offset + elt_size(df->type) <= d->sizeof_message ||
                df->label == PROTOBUF_C_LABEL_REPEATED);
    if (cf->type == PROTOBUF_C_TYPE_MESSAGE)
      assert_string_equal(((const ProtobufCMessageDescriptor *)df->descriptor)->name,
                          ((const ProtobufCMessageDescriptor *)cf->descriptor)->name);
    else if (cf->type == PROTOBUF_C_TYPE_ENUM)
      assert_string_equal(((const ProtobufCEnumDescriptor *)df->descriptor)->name,
                          ((const ProtobufCEnumDescriptor *)cf->descriptor)->name);
    else
      assert_null(df->descriptor);
    if (!cf->default_value && cf->type == PROTOBUF_C_TYPE_ENUM && df->default_value &&
        cf->label != PROTOBUF_C_LABEL_NONE) {
      /* proto2's implicit enum default (the first value), which protoc-c
       * has in its static initializer instead: compared by test_defaults. */
      assert_true(c->fields[i].label != PROTOBUF_C_LABEL_REPEATED);
    } else if (!cf->default_value) {
      assert_null(df->default_value);
    } else if (cf->default_value == (const void *)&protobuf_c_empty_string) {
      /* free_unpacked compares string pointers with the default. */
      assert_ptr_equal(df->default_value, &protobuf_c_empty_string);
    } else {
      assert_non_null(df->default_value);
      assert_same_value(cf->type, cf->default_value, df->default_value);
    }
    assert_int_equal(d->fields_sorted_by_name[i], c->fields_sorted_by_name[i]);
  }
  assert_int_equal(d->n_field_ranges, c->n_field_ranges);
  for (i = 0; c->n_fields && i <= c->n_field_ranges; i++) { /* the sentinel too */
    assert_int_equal(d->field_ranges[i].start_value, c->field_ranges[i].start_value);
    assert_int_equal(d->field_ranges[i].orig_index, c->field_ranges[i].orig_index);
  }
}

static void test_metadata_matches_protoc_c(void **state) {
  duct_dynpool *p = full_pool();
  reach r;
  size_t i;
  (void)state;
  reach_all(&r);
  for (i = 0; i < r.n_msgs; i++)
    compare_message(r.msgs[i], duct_dynpool_message(p, r.msgs[i]->name));
  for (i = 0; i < r.n_enums; i++)
    compare_enum(r.enums[i], duct_dynpool_enum(p, r.enums[i]->name));
  /* Not declared through a field: the allow_alias enum's aliases. */
  compare_enum(&duct__dyn__v3__alias__descriptor, duct_dynpool_enum(p, "duct.dyn.v3.Alias"));
  assert_null(duct_dynpool_message(p, "duct.dyn.v3.Color")); /* an enum */
  assert_null(duct_dynpool_enum(p, "duct.dyn.v3.Empty"));    /* a message */
  assert_null(duct_dynpool_message(p, ".duct.dyn.v3.Empty"));
  duct_dynpool_free(p);
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len) {
  uint8_t *buf;
  *len = protobuf_c_message_get_packed_size(m);
  buf = malloc(*len ? *len : 1);
  assert_non_null(buf);
  assert_int_equal(protobuf_c_message_pack(m, buf), *len);
  return buf;
}

static void test_round_trip_every_type(void **state) {
  duct_dynpool *p = full_pool();
  reach r;
  size_t i;
  unsigned v;
  (void)state;
  reach_all(&r);
  for (i = 0; i < r.n_msgs; i++) {
    const ProtobufCMessageDescriptor *cd = r.msgs[i];
    const ProtobufCMessageDescriptor *dd = duct_dynpool_message(p, cd->name);
    assert_non_null(dd);
    /* Five variants: each oneof member gets its turn. */
    for (v = 0; v < 5; v++) {
      ProtobufCMessage *m = malloc(cd->sizeof_message), *u, *u2;
      uint8_t *b1, *b2, *b3;
      size_t l1, l2, l3;
      assert_non_null(m);
      protobuf_c_message_init(cd, m);
      populate(m, v, 0);
      b1 = pack(m, &l1);
      assert_true(l1 > 0 || cd->n_fields == 0);
      u = protobuf_c_message_unpack(dd, NULL, l1, b1);
      if (!u)
        fail_msg("%s: run-time unpack failed (variant %u)", cd->name, v);
      assert_ptr_equal(u->descriptor, dd);
      b2 = pack(u, &l2);
      assert_int_equal(l2, l1);
      assert_memory_equal(b2, b1, l1);
      u2 = protobuf_c_message_unpack(cd, NULL, l2, b2);
      assert_non_null(u2);
      b3 = pack(u2, &l3);
      assert_int_equal(l3, l1);
      assert_memory_equal(b3, b1, l1);
      protobuf_c_message_free_unpacked(m, NULL);
      protobuf_c_message_free_unpacked(u, NULL);
      protobuf_c_message_free_unpacked(u2, NULL);
      free(b1);
      free(b2);
      free(b3);
    }
  }
  duct_dynpool_free(p);
}

/* The values an empty message starts with, field by field: has_ flags and
 * the values themselves (proto2 defaults, proto3 empty strings). */
static void compare_initial(const ProtobufCMessage *c, const ProtobufCMessage *d) {
  const ProtobufCMessageDescriptor *cd = c->descriptor, *dd = d->descriptor;
  unsigned i;
  for (i = 0; i < cd->n_fields; i++) {
    const ProtobufCFieldDescriptor *cf = &cd->fields[i], *df = &dd->fields[i];
    const char *cv = (const char *)c + cf->offset, *dv = (const char *)d + df->offset;
    if (cf->label == PROTOBUF_C_LABEL_REPEATED || (cf->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
      continue;
    if (cf->quantifier_offset)
      assert_memory_equal((const char *)c + cf->quantifier_offset,
                          (const char *)d + df->quantifier_offset, sizeof(protobuf_c_boolean));
    if (cf->type == PROTOBUF_C_TYPE_STRING) {
      const char *cs = *(char *const *)cv, *ds = *(char *const *)dv;
      if (!cs)
        assert_null(ds);
      else
        assert_string_equal(cs, ds);
    } else if (cf->type == PROTOBUF_C_TYPE_MESSAGE) {
      assert_null(*(void *const *)cv);
      assert_null(*(void *const *)dv);
    } else {
      assert_same_value(cf->type, cv, dv);
    }
  }
}

static void test_defaults(void **state) {
  duct_dynpool *p = full_pool();
  const ProtobufCMessageDescriptor *roots[] = {
      &duct__dyn__v2__defaults__descriptor,
      &duct__dyn__v3__everything__descriptor,
      &duct__dyn__v2__sub__descriptor,
  };
  const ProtobufCMessageDescriptor *sd;
  size_t i;
  (void)state;
  for (i = 0; i < sizeof roots / sizeof roots[0]; i++) {
    const ProtobufCMessageDescriptor *dd = duct_dynpool_message(p, roots[i]->name);
    ProtobufCMessage *c = malloc(roots[i]->sizeof_message);
    ProtobufCMessage *d = malloc(dd->sizeof_message);
    ProtobufCMessage *du;
    /* Sub has a required field: its empty message does not unpack. */
    static const uint8_t sub_id[] = {0x08, 0x05};
    const uint8_t *in = roots[i] == &duct__dyn__v2__sub__descriptor ? sub_id : NULL;
    size_t in_len = in ? sizeof sub_id : 0;
    assert_non_null(c);
    assert_non_null(d);
    protobuf_c_message_init(roots[i], c);
    duct_dynpool_init_message(dd, d);
    assert_ptr_equal(d->descriptor, dd);
    compare_initial(c, d);
    /* An untouched message packs like protoc-c's (proto2 optionals and
     * proto3 zeros not at all, required fields as they are). */
    assert_int_equal(protobuf_c_message_get_packed_size(d),
                     protobuf_c_message_get_packed_size(c));
    du = protobuf_c_message_unpack(dd, NULL, in_len, in);
    assert_non_null(du);
    if (in) /* Sub's id (field 1), set by those bytes */
      *(int32_t *)((char *)c + roots[i]->fields[0].offset) = 5;
    compare_initial(c, du);
    protobuf_c_message_free_unpacked(du, NULL);
    free(c);
    free(d);
  }
  /* The special floats protoc-c cannot compile (dyn2x.proto). */
  sd = duct_dynpool_message(p, "duct.dyn.v2.Special");
  assert_non_null(sd);
  assert_int_equal(sd->n_fields, 3);
  assert_true(isinf(*(const float *)sd->fields[0].default_value));
  assert_true(*(const float *)sd->fields[0].default_value > 0);
  assert_true(isinf(*(const double *)sd->fields[1].default_value));
  assert_true(*(const double *)sd->fields[1].default_value < 0);
  assert_true(isnan(*(const double *)sd->fields[2].default_value));
  duct_dynpool_free(p);
}

static void test_required_rejected_alike(void **state) {
  duct_dynpool *p = full_pool();
  const ProtobufCMessageDescriptor *req = duct_dynpool_message(p, "duct.dyn.v2.Required");
  const ProtobufCMessageDescriptor *sub = duct_dynpool_message(p, "duct.dyn.v2.Sub");
  /* Required: serial (2) = 5 without name (1); Sub: a label, no id. */
  static const uint8_t no_name[] = {0x10, 0x05};
  static const uint8_t both[] = {0x0a, 0x01, 'n', 0x10, 0x05};
  static const uint8_t no_id[] = {0x12, 0x01, 'x'};
  /* Required with a Sub (3) that lacks its own required id. */
  static const uint8_t inner[] = {0x0a, 0x01, 'n', 0x10, 0x05, 0x1a, 0x00};
  ProtobufCMessage *m;
  (void)state;
  assert_non_null(req);
  assert_non_null(sub);
  assert_null(protobuf_c_message_unpack(&duct__dyn__v2__required__descriptor, NULL,
                                        sizeof no_name, no_name));
  assert_null(protobuf_c_message_unpack(req, NULL, sizeof no_name, no_name));
  assert_null(protobuf_c_message_unpack(&duct__dyn__v2__sub__descriptor, NULL, sizeof no_id,
                                        no_id));
  assert_null(protobuf_c_message_unpack(sub, NULL, sizeof no_id, no_id));
  assert_null(protobuf_c_message_unpack(&duct__dyn__v2__required__descriptor, NULL,
                                        sizeof inner, inner));
  assert_null(protobuf_c_message_unpack(req, NULL, sizeof inner, inner));
  m = protobuf_c_message_unpack(req, NULL, sizeof both, both);
  assert_non_null(m);
  protobuf_c_message_free_unpacked(m, NULL);
  duct_dynpool_free(p);
}

/* proto3 `optional` (dyn3opt.proto, which protoc-c 1.4.1 refuses): a
 * has_ flag, so a zero that was set still goes on the wire. */
static void test_proto3_optional(void **state) {
  duct_dynpool *p = full_pool();
  const ProtobufCMessageDescriptor *d = duct_dynpool_message(p, "duct.dyn.v3.Optionals");
  const ProtobufCFieldDescriptor *ttl, *note, *item, *plain, *first, *second;
  ProtobufCMessage *m, *u;
  uint8_t *b;
  size_t len;
  (void)state;
  assert_non_null(d);
  ttl = protobuf_c_message_descriptor_get_field_by_name(d, "ttl_ms");
  note = protobuf_c_message_descriptor_get_field_by_name(d, "note");
  item = protobuf_c_message_descriptor_get_field_by_name(d, "item");
  plain = protobuf_c_message_descriptor_get_field(d, 6);
  first = protobuf_c_message_descriptor_get_field(d, 7);
  second = protobuf_c_message_descriptor_get_field(d, 8);
  assert_non_null(ttl);
  assert_non_null(note);
  assert_non_null(item);
  assert_non_null(plain);
  assert_non_null(first);
  assert_non_null(second);
  assert_int_equal(ttl->label, PROTOBUF_C_LABEL_OPTIONAL);
  assert_int_not_equal(ttl->quantifier_offset, 0);
  assert_int_equal(ttl->flags & PROTOBUF_C_FIELD_FLAG_ONEOF, 0);
  assert_int_equal(note->label, PROTOBUF_C_LABEL_OPTIONAL);
  assert_null(note->default_value); /* absent is NULL, not "" */
  assert_int_equal(item->label, PROTOBUF_C_LABEL_OPTIONAL);
  assert_int_equal(plain->label, PROTOBUF_C_LABEL_NONE);
  assert_string_equal(plain->name, "plain");
  assert_true(first->flags & PROTOBUF_C_FIELD_FLAG_ONEOF);
  assert_int_equal(first->quantifier_offset, second->quantifier_offset);
  assert_int_not_equal(first->offset, second->offset); /* no union */

  m = malloc(d->sizeof_message);
  assert_non_null(m);
  duct_dynpool_init_message(d, m);
  assert_int_equal(protobuf_c_message_get_packed_size(m), 0);
  *(protobuf_c_boolean *)((char *)m + ttl->quantifier_offset) = 1;
  *(int64_t *)((char *)m + ttl->offset) = 0;
  *(const char **)((char *)m + note->offset) = "";
  *(uint32_t *)((char *)m + second->quantifier_offset) = second->id;
  *(const char **)((char *)m + second->offset) = "z";
  b = pack(m, &len);
  {
    /* ttl_ms = 0, note = "", second = "z": each present, in field order. */
    static const uint8_t want[] = {0x08, 0x00, 0x12, 0x00, 0x42, 0x01, 'z'};
    assert_int_equal(len, sizeof want);
    assert_memory_equal(b, want, sizeof want);
  }
  u = protobuf_c_message_unpack(d, NULL, len, b);
  assert_non_null(u);
  assert_int_equal(*(protobuf_c_boolean *)((char *)u + ttl->quantifier_offset), 1);
  assert_string_equal(*(char **)((char *)u + note->offset), "");
  assert_int_equal(*(uint32_t *)((char *)u + first->quantifier_offset), 8);
  assert_string_equal(*(char **)((char *)u + second->offset), "z");
  protobuf_c_message_free_unpacked(u, NULL);
  free(b);
  free(m); /* its strings are literals */
  duct_dynpool_free(p);
}

static void compare_service(const duct_dynpool *p, const duct_service *c) {
  const duct_service *d = duct_dynpool_service(p, c->name);
  size_t i;
  assert_non_null(d);
  assert_string_equal(d->name, c->name);
  assert_int_equal(d->n_methods, c->n_methods);
  for (i = 0; i < c->n_methods; i++) {
    const duct_method *cm = &c->methods[i], *dm = &d->methods[i];
    char dotted[256];
    assert_string_equal(dm->name, cm->name);
    assert_int_equal(dm->id, cm->id);
    assert_int_equal(dm->kind, cm->kind);
    assert_string_equal(dm->input->name, cm->input->name);
    assert_string_equal(dm->output->name, cm->output->name);
    assert_null(dm->invoke);
    assert_null(dm->invoke_stream);
    /* Found as "pkg.Svc/M", "/pkg.Svc/M" and "pkg.Svc.M". */
    assert_ptr_equal(duct_dynpool_method(p, cm->name), dm);
    assert_ptr_equal(duct_dynpool_method(p, cm->name + 1), dm);
    snprintf(dotted, sizeof dotted, "%s", cm->name + 1);
    *strrchr(dotted, '/') = '.';
    assert_ptr_equal(duct_dynpool_method(p, dotted), dm);
  }
}

static void test_services(void **state) {
  duct_dynpool *p = full_pool();
  const duct_service *opt;
  (void)state;
  compare_service(p, &duct_test_probe_service);
  compare_service(p, &duct_examples_kv_key_value_service);
  /* protoc writes files in import order; services follow their files. */
  assert_int_equal(duct_dynpool_n_services(p), 3);
  assert_string_equal(duct_dynpool_service_at(p, 0)->name, "duct.dyn.v3.Opt");
  assert_string_equal(duct_dynpool_service_at(p, 1)->name, duct_test_probe_service.name);
  assert_string_equal(duct_dynpool_service_at(p, 2)->name,
                      duct_examples_kv_key_value_service.name);
  assert_null(duct_dynpool_service_at(p, 3));
  opt = duct_dynpool_service_at(p, 0);
  assert_int_equal(opt->n_methods, 3);
  assert_int_equal(opt->methods[0].kind, DUCT_UNARY);
  assert_int_equal(opt->methods[1].kind, DUCT_BIDI_STREAMING);
  assert_int_equal(opt->methods[2].kind, DUCT_CLIENT_STREAMING);
  assert_string_equal(opt->methods[2].output->name, "duct.dyn.v3.Ref");
  assert_null(duct_dynpool_method(p, "duct.dyn.v3.Opt/Nope"));
  assert_null(duct_dynpool_method(p, "duct.dyn.v3.Nope/Set"));
  assert_null(duct_dynpool_method(p, "Set"));
  assert_null(duct_dynpool_service(p, "duct.dyn.v3.Empty"));
  duct_dynpool_free(p);
}

/* One file of the set, serialized alone, as reflection sends them. */
static uint8_t *file_of_set(const char *name, size_t *len) {
  Google__Protobuf__FileDescriptorSet *s =
      google__protobuf__file_descriptor_set__unpack(NULL, set_len, set_data);
  uint8_t *out = NULL;
  size_t i;
  assert_non_null(s);
  for (i = 0; i < s->n_file; i++) {
    if (strcmp(s->file[i]->name, name) == 0) {
      out = pack(&s->file[i]->base, len);
      break;
    }
  }
  google__protobuf__file_descriptor_set__free_unpacked(s, NULL);
  assert_non_null(out);
  return out;
}

static void test_errors(void **state) {
  char err[256];
  static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
  duct_dynpool *p = duct_dynpool_new();
  uint8_t *dyn3, *ts, *dyn2;
  size_t dyn3_len, ts_len, dyn2_len;
  Google__Protobuf__FileDescriptorProto *f;
  (void)state;
  assert_non_null(p);

  err[0] = 0;
  assert_int_equal(duct_dynpool_add_file(p, garbage, sizeof garbage, err, sizeof err), -1);
  assert_non_null(strstr(err, "not a FileDescriptorProto"));
  err[0] = 0;
  assert_int_equal(duct_dynpool_add_set(p, garbage, sizeof garbage, err, sizeof err), -1);
  assert_non_null(strstr(err, "not a FileDescriptorSet"));
  /* Valid protobuf, but no file: an empty buffer. */
  err[0] = 0;
  assert_int_equal(duct_dynpool_add_file(p, garbage, 0, err, sizeof err), -1);
  assert_non_null(strstr(err, "not a FileDescriptorProto"));

  /* dyn3.proto without google/protobuf/timestamp.proto. */
  dyn3 = file_of_set("dyn3.proto", &dyn3_len);
  ts = file_of_set("google/protobuf/timestamp.proto", &ts_len);
  assert_int_equal(duct_dynpool_add_file(p, dyn3, dyn3_len, err, sizeof err), 0);
  err[0] = 0;
  assert_int_equal(duct_dynpool_build(p, err, sizeof err), -1);
  assert_string_equal(err, "dyn3.proto: type .google.protobuf.Timestamp not found "
                           "(is its file among the descriptors?)");
  assert_null(duct_dynpool_message(p, "duct.dyn.v3.Everything"));
  /* With it added, the same pool builds; the file added twice is one. */
  assert_int_equal(duct_dynpool_add_file(p, ts, ts_len, err, sizeof err), 0);
  assert_int_equal(duct_dynpool_add_file(p, dyn3, dyn3_len, err, sizeof err), 0);
  if (duct_dynpool_build(p, err, sizeof err) != 0)
    fail_msg("rebuild: %s", err);
  compare_message(&duct__dyn__v3__everything__descriptor,
                  duct_dynpool_message(p, "duct.dyn.v3.Everything"));
  assert_int_equal(duct_dynpool_n_services(p), 0);

  /* Later files build on the earlier ones, and a file of another name
   * that defines the same types is refused. */
  dyn2 = file_of_set("dyn2.proto", &dyn2_len);
  assert_int_equal(duct_dynpool_add_file(p, dyn2, dyn2_len, err, sizeof err), 0);
  assert_int_equal(duct_dynpool_build(p, err, sizeof err), 0);
  assert_non_null(duct_dynpool_message(p, "duct.dyn.v2.Required"));
  f = google__protobuf__file_descriptor_proto__unpack(NULL, dyn2_len, dyn2);
  assert_non_null(f);
  free(f->name);
  f->name = dup_str("copy.proto");
  free(dyn2);
  dyn2 = pack(&f->base, &dyn2_len);
  google__protobuf__file_descriptor_proto__free_unpacked(f, NULL);
  assert_int_equal(duct_dynpool_add_file(p, dyn2, dyn2_len, err, sizeof err), 0);
  err[0] = 0;
  assert_int_equal(duct_dynpool_build(p, err, sizeof err), -1);
  assert_string_equal(err, "copy.proto: duct.dyn.v2.Defaults is already defined in dyn2.proto");
  /* What was built before is still there. */
  assert_non_null(duct_dynpool_message(p, "duct.dyn.v2.Required"));

  free(dyn3);
  free(ts);
  free(dyn2);
  duct_dynpool_free(p);
  duct_dynpool_free(NULL);
}

/* ---- describe ---- */

static void check_golden(const duct_dynpool *p, const char *symbol, const char *file) {
  char path[1024], err[256] = "";
  char *got = duct_dynpool_describe(p, symbol, err, sizeof err);
  uint8_t *want;
  size_t want_len;
  if (!got) {
    /* The error text is the golden then. */
    size_t n = strlen(err);
    got = malloc(n + 2);
    assert_non_null(got);
    memcpy(got, err, n);
    got[n] = '\n';
    got[n + 1] = 0;
  }
  snprintf(path, sizeof path, "%s/%s", DYN_GOLDEN_DIR, file);
  if (getenv("DUCT_GOLDEN_UPDATE")) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(got, f);
    fclose(f);
  }
  want = read_file(path, &want_len);
  if (!want)
    fail_msg("%s: cannot read (DUCT_GOLDEN_UPDATE=1 writes it)", path);
  if (strcmp((char *)want, got) != 0)
    fail_msg("describe %s differs from %s:\n%s", symbol, path, got);
  free(want);
  free(got);
}

static void test_describe(void **state) {
  duct_dynpool *p = full_pool();
  (void)state;
  check_golden(p, "duct.examples.kv.KeyValue", "service.txt");
  check_golden(p, "duct.dyn.v3.Opt", "service_streams.txt");
  check_golden(p, "duct.examples.kv.KeyValue/Watch", "method.txt");
  check_golden(p, "duct.dyn.v3.Everything", "message_proto3.txt");
  check_golden(p, "duct.dyn.v3.Optionals", "message_optional.txt");
  check_golden(p, "duct.dyn.v3.Ref", "message_refs.txt");
  check_golden(p, "duct.dyn.v2.Defaults", "message_proto2.txt");
  check_golden(p, "duct.dyn.v2.Required", "message_required.txt");
  check_golden(p, "duct.dyn.v3.Alias", "enum.txt");
  check_golden(p, "duct.examples.kv.Event.Kind", "enum_nested.txt");
  check_golden(p, "duct.examples.kv.Nope", "unknown.txt");
  duct_dynpool_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_metadata_matches_protoc_c),
      cmocka_unit_test(test_round_trip_every_type),
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_required_rejected_alike),
      cmocka_unit_test(test_proto3_optional),
      cmocka_unit_test(test_services),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_describe),
  };
  int rc;
  set_data = read_file(DYN_SET_PATH, &set_len);
  if (!set_data) {
    fprintf(stderr, "cannot read %s\n", DYN_SET_PATH);
    return 1;
  }
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  free(set_data);
  return rc;
}
