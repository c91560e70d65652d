/* cli/json.c against compiled descriptors: golden outputs of messages
 * built in C (tests/json/golden/), the input forms the mapping allows,
 * every error message, round trips, proto2 presence and defaults, and
 * pretty printing. A parsed message is compared with its original by its
 * protobuf encoding, so every field counts. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/json.h"
#include "json2.pb-c.h"
#include "json3.pb-c.h"

#define ITEM (&duct__jsontest__item__descriptor)
#define ORDER (&duct__jsontest2__order__descriptor)

/* The contents of golden/<name>, without the final newline editors add. */
static char *golden(const char *name)
{
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", DUCT_JSON_GOLDEN_DIR, name);
  FILE *fp = fopen(path, "rb");
  if (fp == NULL)
    fail_msg("cannot open %s", path);
  char *buf = malloc(1 << 16);
  assert_non_null(buf);
  size_t n = fread(buf, 1, (1 << 16) - 1, fp);
  fclose(fp);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    n--;
  buf[n] = '\0';
  return buf;
}

static void assert_same_encoding(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
  size_t na = protobuf_c_message_get_packed_size(a);
  size_t nb = protobuf_c_message_get_packed_size(b);
  assert_int_equal(na, nb);
  uint8_t *pa = malloc(na + 1), *pb = malloc(nb + 1);
  assert_non_null(pa);
  assert_non_null(pb);
  protobuf_c_message_pack(a, pa);
  protobuf_c_message_pack(b, pb);
  assert_memory_equal(pa, pb, na);
  free(pa);
  free(pb);
}

static ProtobufCMessage *parse_ok(const ProtobufCMessageDescriptor *d, const char *text)
{
  char err[256];
  ProtobufCMessage *m = NULL;
  int rc = duct_json_parse(d, text, strlen(text), &m, err, sizeof err);
  if (rc != 0)
    fail_msg("parse of %s failed: %s", text, err);
  assert_non_null(m);
  return m;
}

static void expect_error(const ProtobufCMessageDescriptor *d, const char *text,
                         const char *want)
{
  char err[256];
  ProtobufCMessage *m = (ProtobufCMessage *)&m; /* must become NULL */
  if (duct_json_parse(d, text, strlen(text), &m, err, sizeof err) != -1) {
    protobuf_c_message_free_unpacked(m, NULL);
    fail_msg("input %s was accepted; want the error %s", text, want);
  }
  assert_null(m);
  if (strcmp(err, want) != 0)
    fail_msg("input %s\n  error: %s\n   want: %s", text, err, want);
}

/* Parses `in`, formats it compactly, and expects `want`; then parses
 * `want` and expects the same encoding (the output is itself input). */
static void expect_format(const ProtobufCMessageDescriptor *d, const char *in,
                          const char *want)
{
  ProtobufCMessage *m = parse_ok(d, in);
  char *out = duct_json_format(m, 0);
  assert_non_null(out);
  if (strcmp(out, want) != 0)
    fail_msg("input %s\n  output: %s\n    want: %s", in, out, want);
  ProtobufCMessage *again = parse_ok(d, out);
  assert_same_encoding(m, again);
  protobuf_c_message_free_unpacked(again, NULL);
  protobuf_c_message_free_unpacked(m, NULL);
  free(out);
}

/* ---- a message with every kind of field, built in C ---- */

struct item_parts {
  Duct__Jsontest__Item item;
  Duct__Jsontest__Location loc, loc2, loc3, choice_loc;
  Duct__Jsontest__Scalars sc;
  Duct__Jsontest__Location *locs[2];
  int32_t packed[3], unpacked[2];
  char *tags[2];
  Duct__Jsontest__Colour colours[3];
  double doubles[5];
  float floats[3];
  ProtobufCBinaryData blobs[2];
  Duct__Jsontest__Item__LabelsEntry lab[2];
  Duct__Jsontest__Item__LabelsEntry *labp[2];
  Duct__Jsontest__Item__ByShelfEntry shelf[1];
  Duct__Jsontest__Item__ByShelfEntry *shelfp[1];
  Duct__Jsontest__Item__FlagsEntry flag[2];
  Duct__Jsontest__Item__FlagsEntry *flagp[2];
  Duct__Jsontest__Item__ByIdEntry byid[1];
  Duct__Jsontest__Item__ByIdEntry *byidp[1];
  Google__Protobuf__Timestamp created, t1, t2;
  Google__Protobuf__Timestamp *times[2];
  Google__Protobuf__Duration ttl;
  Google__Protobuf__Empty nothing;
  Google__Protobuf__DoubleValue wd;
  Google__Protobuf__FloatValue wf;
  Google__Protobuf__Int64Value wi64;
  Google__Protobuf__UInt64Value wu64;
  Google__Protobuf__Int32Value wi32;
  Google__Protobuf__UInt32Value wu32;
  Google__Protobuf__BoolValue wb;
  Google__Protobuf__StringValue ws;
  Google__Protobuf__BytesValue wby;
  Google__Protobuf__FieldMask mask;
  char *paths[2];
};

static void build_item(struct item_parts *p)
{
  static uint8_t blob0[] = { 0xfb, 0xff, 0x00 }, blob1[] = { 'h', 'i' }, wbytes[] = { 1, 2, 3, 4 };
  static uint8_t sbytes[] = { 0x00, 0x10, 0x83, 0xff };
  memset(p, 0, sizeof *p);
  p->item = (Duct__Jsontest__Item)DUCT__JSONTEST__ITEM__INIT;
  Duct__Jsontest__Item *it = &p->item;
  it->name = "caf\xc3\xa9 \"quoted\" back\\slash\ttab\x01";
  p->loc = (Duct__Jsontest__Location)DUCT__JSONTEST__LOCATION__INIT;
  p->loc.shelf = -3;
  p->loc.aisle_name = "north";
  it->location = &p->loc;

  p->sc = (Duct__Jsontest__Scalars)DUCT__JSONTEST__SCALARS__INIT;
  p->sc.f_int32 = INT32_MIN;
  p->sc.f_int64 = INT64_MIN;
  p->sc.f_uint32 = UINT32_MAX;
  p->sc.f_uint64 = UINT64_MAX;
  p->sc.f_sint32 = -7;
  p->sc.f_sint64 = INT64_MAX;
  p->sc.f_fixed32 = 42;
  p->sc.f_fixed64 = 1234567890123ULL;
  p->sc.f_sfixed32 = -42;
  p->sc.f_sfixed64 = -1234567890123LL;
  p->sc.f_float = 0.1f;
  p->sc.f_double = 0.1;
  p->sc.f_bool = 1;
  p->sc.f_string = "x";
  p->sc.f_bytes = (ProtobufCBinaryData){ sizeof sbytes, sbytes };
  p->sc.colour = DUCT__JSONTEST__COLOUR__GREEN;
  it->scalars = &p->sc;

  p->packed[0] = 1, p->packed[1] = -1, p->packed[2] = 300;
  it->n_packed_ints = 3, it->packed_ints = p->packed;
  p->unpacked[0] = 5, p->unpacked[1] = 0;
  it->n_unpacked_ints = 2, it->unpacked_ints = p->unpacked;
  p->tags[0] = "a", p->tags[1] = "";
  it->n_tags = 2, it->tags = p->tags;
  p->loc2 = (Duct__Jsontest__Location)DUCT__JSONTEST__LOCATION__INIT;
  p->loc3 = (Duct__Jsontest__Location)DUCT__JSONTEST__LOCATION__INIT;
  p->loc3.shelf = 9;
  p->locs[0] = &p->loc2, p->locs[1] = &p->loc3;
  it->n_locations = 2, it->locations = p->locs;
  p->colours[0] = DUCT__JSONTEST__COLOUR__RED;
  p->colours[1] = DUCT__JSONTEST__COLOUR__COLOUR_UNSPECIFIED;
  p->colours[2] = (Duct__Jsontest__Colour)77; /* no name: printed as a number */
  it->n_colours = 3, it->colours = p->colours;
  p->doubles[0] = 1e100, p->doubles[1] = -0.0, p->doubles[2] = NAN;
  p->doubles[3] = -INFINITY, p->doubles[4] = 123456789.125;
  it->n_doubles = 5, it->doubles = p->doubles;
  p->floats[0] = 3.4028235e38f, p->floats[1] = 1e-45f, p->floats[2] = 2.5f;
  it->n_floats = 3, it->floats = p->floats;
  p->blobs[0] = (ProtobufCBinaryData){ sizeof blob0, blob0 };
  p->blobs[1] = (ProtobufCBinaryData){ sizeof blob1, blob1 };
  it->n_blobs = 2, it->blobs = p->blobs;

  for (int i = 0; i < 2; i++) {
    p->lab[i] = (Duct__Jsontest__Item__LabelsEntry)DUCT__JSONTEST__ITEM__LABELS_ENTRY__INIT;
    p->labp[i] = &p->lab[i];
    p->flag[i] = (Duct__Jsontest__Item__FlagsEntry)DUCT__JSONTEST__ITEM__FLAGS_ENTRY__INIT;
    p->flagp[i] = &p->flag[i];
  }
  p->lab[0].key = "env", p->lab[0].value = "prod";
  p->lab[1].key = "k\"q", p->lab[1].value = "";
  it->n_labels = 2, it->labels = p->labp;
  p->shelf[0] = (Duct__Jsontest__Item__ByShelfEntry)DUCT__JSONTEST__ITEM__BY_SHELF_ENTRY__INIT;
  p->shelf[0].key = -12;
  p->shelf[0].value = &p->loc3;
  p->shelfp[0] = &p->shelf[0];
  it->n_by_shelf = 1, it->by_shelf = p->shelfp;
  p->flag[0].key = 1, p->flag[0].value = DUCT__JSONTEST__COLOUR__RED;
  p->flag[1].key = 0, p->flag[1].value = DUCT__JSONTEST__COLOUR__COLOUR_UNSPECIFIED;
  it->n_flags = 2, it->flags = p->flagp;
  p->byid[0] = (Duct__Jsontest__Item__ByIdEntry)DUCT__JSONTEST__ITEM__BY_ID_ENTRY__INIT;
  p->byid[0].key = -9000000000LL, p->byid[0].value = "big";
  p->byidp[0] = &p->byid[0];
  it->n_by_id = 1, it->by_id = p->byidp;

  p->choice_loc = (Duct__Jsontest__Location)DUCT__JSONTEST__LOCATION__INIT;
  p->choice_loc.aisle_name = "c";
  it->choice_case = DUCT__JSONTEST__ITEM__CHOICE_CHOICE_LOCATION;
  it->choice_location = &p->choice_loc;

  p->created = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  p->created.seconds = 63108020, p->created.nanos = 21000000;
  it->created = &p->created;
  p->t1 = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  p->t1.seconds = -62135596800; /* 0001-01-01T00:00:00Z, the first allowed */
  p->t2 = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  p->t2.seconds = 253402300799, p->t2.nanos = 1000; /* the last second */
  p->times[0] = &p->t1, p->times[1] = &p->t2;
  it->n_times = 2, it->times = p->times;
  p->ttl = (Google__Protobuf__Duration)GOOGLE__PROTOBUF__DURATION__INIT;
  p->ttl.seconds = -1, p->ttl.nanos = -500000000;
  it->ttl = &p->ttl;
  p->nothing = (Google__Protobuf__Empty)GOOGLE__PROTOBUF__EMPTY__INIT;
  it->nothing = &p->nothing;

  p->wd = (Google__Protobuf__DoubleValue)GOOGLE__PROTOBUF__DOUBLE_VALUE__INIT;
  p->wd.value = 2.5;
  it->w_double = &p->wd;
  p->wf = (Google__Protobuf__FloatValue)GOOGLE__PROTOBUF__FLOAT_VALUE__INIT;
  p->wf.value = INFINITY;
  it->w_float = &p->wf;
  p->wi64 = (Google__Protobuf__Int64Value)GOOGLE__PROTOBUF__INT64_VALUE__INIT;
  p->wi64.value = 0; /* a wrapper prints its value even when it is zero */
  it->w_int64 = &p->wi64;
  p->wu64 = (Google__Protobuf__UInt64Value)GOOGLE__PROTOBUF__UINT64_VALUE__INIT;
  p->wu64.value = 18;
  it->w_uint64 = &p->wu64;
  p->wi32 = (Google__Protobuf__Int32Value)GOOGLE__PROTOBUF__INT32_VALUE__INIT;
  p->wi32.value = -5;
  it->w_int32 = &p->wi32;
  p->wu32 = (Google__Protobuf__UInt32Value)GOOGLE__PROTOBUF__UINT32_VALUE__INIT;
  p->wu32.value = 5;
  it->w_uint32 = &p->wu32;
  p->wb = (Google__Protobuf__BoolValue)GOOGLE__PROTOBUF__BOOL_VALUE__INIT;
  it->w_bool = &p->wb;
  p->ws = (Google__Protobuf__StringValue)GOOGLE__PROTOBUF__STRING_VALUE__INIT;
  p->ws.value = "s";
  it->w_string = &p->ws;
  p->wby = (Google__Protobuf__BytesValue)GOOGLE__PROTOBUF__BYTES_VALUE__INIT;
  p->wby.value = (ProtobufCBinaryData){ sizeof wbytes, wbytes };
  it->w_bytes = &p->wby;
  p->mask = (Google__Protobuf__FieldMask)GOOGLE__PROTOBUF__FIELD_MASK__INIT;
  p->paths[0] = "location.aisle_name", p->paths[1] = "by_shelf";
  p->mask.n_paths = 2, p->mask.paths = p->paths;
  it->mask = &p->mask;
}

static void check_golden(const ProtobufCMessage *m, int flags, const char *file)
{
  char *out = duct_json_format(m, flags);
  assert_non_null(out);
  char *want = golden(file);
  if (strcmp(out, want) != 0) {
    /* Left in the working directory for a diff (or a new golden file). */
    char path[256];
    snprintf(path, sizeof path, "%s.actual", file);
    FILE *fp = fopen(path, "wb");
    if (fp) {
      fprintf(fp, "%s\n", out);
      fclose(fp);
    }
    fail_msg("%s differs; the output is in %s", file, path);
  }
  /* The output reads back as the same message. */
  ProtobufCMessage *back = parse_ok(m->descriptor, out);
  assert_same_encoding(m, back);
  protobuf_c_message_free_unpacked(back, NULL);
  free(want);
  free(out);
}

static void test_golden_item(void **state)
{
  (void)state;
  struct item_parts p;
  build_item(&p);
  check_golden(&p.item.base, 0, "item.json");
  check_golden(&p.item.base, DUCT_JSON_PRETTY, "item_pretty.json");
}

static void test_golden_defaults(void **state)
{
  (void)state;
  Duct__Jsontest__Item item = DUCT__JSONTEST__ITEM__INIT;
  Duct__Jsontest__Scalars sc = DUCT__JSONTEST__SCALARS__INIT;
  item.scalars = &sc;
  /* Nothing set: only the (present) message field prints. */
  char *out = duct_json_format(&item.base, 0);
  assert_string_equal(out, "{\"scalars\":{}}");
  free(out);
  check_golden(&item.base, DUCT_JSON_EMIT_DEFAULTS, "item_defaults.json");
  out = duct_json_format(&item.base, DUCT_JSON_PRETTY);
  assert_string_equal(out, "{\n  \"scalars\": {}\n}");
  free(out);
  Duct__Jsontest__Location empty = DUCT__JSONTEST__LOCATION__INIT;
  out = duct_json_format(&empty.base, DUCT_JSON_PRETTY);
  assert_string_equal(out, "{}");
  free(out);
}

/* proto2: presence by has_ flags; defaults from the descriptor. */
static void test_proto2(void **state)
{
  (void)state;
  Duct__Jsontest2__Order o = DUCT__JSONTEST2__ORDER__INIT;
  o.id = "A1";
  char *out = duct_json_format(&o.base, DUCT_JSON_EMIT_DEFAULTS);
  /* Unset optional fields have presence: not printed even with defaults. */
  assert_string_equal(out, "{\"id\":\"A1\",\"refs\":[]}");
  free(out);
  o.has_quantity = 1; /* set to its default: still printed */
  o.quantity = 7;
  o.has_urgent = 1;
  o.urgent = 0;
  o.note = "none"; /* a different pointer than the default's: set */
  out = duct_json_format(&o.base, 0);
  assert_string_equal(out, "{\"id\":\"A1\",\"quantity\":7,\"note\":\"none\",\"urgent\":false}");
  free(out);

  Duct__Jsontest2__Order *p = (Duct__Jsontest2__Order *)parse_ok(ORDER, "{\"id\":\"B\"}");
  assert_false(p->has_quantity);
  assert_int_equal(p->quantity, 7);
  assert_ptr_equal(p->note, ORDER->fields[2].default_value);
  assert_int_equal(p->size, DUCT__JSONTEST2__SIZE__MEDIUM);
  assert_true(p->price == 1.5);
  assert_int_equal(p->code.len, 2);
  assert_memory_equal(p->code.data, "ab", 2);
  assert_true(p->urgent);
  out = duct_json_format(&p->base, 0);
  assert_string_equal(out, "{\"id\":\"B\"}");
  free(out);
  protobuf_c_message_free_unpacked(&p->base, NULL);

  expect_format(ORDER,
                "{\"id\":\"C\",\"quantity\":0,\"note\":\"\",\"size\":\"LARGE\",\"price\":0,"
                "\"code\":\"\",\"urgent\":false,\"refs\":[1,\"-2\"],\"part\":{\"number\":3}}",
                "{\"id\":\"C\",\"quantity\":0,\"note\":\"\",\"size\":\"LARGE\",\"price\":0,"
                "\"code\":\"\",\"urgent\":false,\"refs\":[\"1\",\"-2\"],\"part\":{\"number\":3}}");
  /* null: the field keeps its default and is not set. */
  expect_format(ORDER, "{\"id\":\"D\",\"quantity\":null,\"part\":null}", "{\"id\":\"D\"}");
  expect_error(ORDER, "{}", "id: missing required field");
  expect_error(ORDER, "{\"id\":null}", "id: missing required field");
  expect_error(ORDER, "{\"id\":\"E\",\"part\":{\"label\":\"x\"}}",
               "part.number: missing required field");
}

/* The input forms the mapping accepts besides the canonical ones. */
static void test_input_forms(void **state)
{
  (void)state;
  /* .proto names, numbers as strings, strings as numbers, enum numbers. */
  expect_format(ITEM,
                "{\"scalars\":{\"f_int32\":\"-5\",\"f_int64\":12,\"f_uint64\":\"18446744073709551615\","
                "\"f_uint32\":4294967295,\"f_sint64\":-9223372036854775808,\"colour\":1,"
                "\"f_float\":\"1.5\",\"f_double\":\"-2\",\"f_fixed64\":18446744073709551615}}",
                "{\"scalars\":{\"fInt32\":-5,\"fInt64\":\"12\",\"fUint32\":4294967295,"
                "\"fUint64\":\"18446744073709551615\",\"fSint64\":\"-9223372036854775808\","
                "\"fFixed64\":\"18446744073709551615\",\"fFloat\":1.5,\"fDouble\":-2,"
                "\"colour\":\"RED\"}}");
  /* Integral doubles for integers; exponents. */
  expect_format(ITEM, "{\"scalars\":{\"fInt32\":1e2,\"fUint32\":100.0,\"fInt64\":-1.0e3}}",
                "{\"scalars\":{\"fInt32\":100,\"fInt64\":\"-1000\",\"fUint32\":100}}");
  /* Non-finite floats as strings; -0 keeps its sign. */
  expect_format(ITEM, "{\"doubles\":[\"NaN\",\"Infinity\",\"-Infinity\",-0.0,1E-7]}",
                "{\"doubles\":[\"NaN\",\"Infinity\",\"-Infinity\",-0.0,1e-07]}");
  /* Bytes: URL-safe alphabet, no padding. */
  expect_format(ITEM, "{\"blobs\":[\"-_8\",\"+/8=\",\"aGk\",\"\"]}",
                "{\"blobs\":[\"+/8=\",\"+/8=\",\"aGk=\",\"\"]}");
  /* Timestamps with offsets and fractions; durations. */
  expect_format(ITEM, "{\"created\":\"1972-01-01T11:00:20.021+01:00\",\"ttl\":\"1.5s\"}",
                "{\"created\":\"1972-01-01T10:00:20.021Z\",\"ttl\":\"1.500s\"}");
  expect_format(ITEM, "{\"times\":[\"1970-01-01T00:00:00.000000001z\","
                "\"1969-12-31T19:00:00.1-05:00\",\"2000-02-29T23:59:59.123456Z\"]}",
                "{\"times\":[\"1970-01-01T00:00:00.000000001Z\",\"1970-01-01T00:00:00.100Z\","
                "\"2000-02-29T23:59:59.123456Z\"]}");
  expect_format(ITEM, "{\"ttl\":\"-0.000001s\"}", "{\"ttl\":\"-0.000001s\"}");
  expect_format(ITEM, "{\"ttl\":\"315576000000.999999999s\"}",
                "{\"ttl\":\"315576000000.999999999s\"}");
  /* null: default. Empty, wrappers, field masks. */
  expect_format(ITEM, "{\"name\":null,\"location\":null,\"tags\":null,\"labels\":null,"
                "\"wInt32\":null,\"nothing\":{}}", "{\"nothing\":{}}");
  expect_format(ITEM, "{\"w_int32\":\"7\",\"wBool\":false,\"wString\":\"\",\"wBytes\":\"AQ\","
                "\"wUint64\":\"5\",\"wFloat\":\"NaN\",\"mask\":\"a.fooBar,bazQux\"}",
                "{\"wFloat\":\"NaN\",\"wUint64\":\"5\",\"wInt32\":7,\"wBool\":false,"
                "\"wString\":\"\",\"wBytes\":\"AQ==\",\"mask\":\"a.fooBar,bazQux\"}");
  /* Maps: keys of every kind; oneof members, also a zero one. */
  expect_format(ITEM, "{\"labels\":{\"\":\"e\",\"\\u00e9\":\"x\"},\"by_shelf\":{\"-1\":{}},"
                "\"flags\":{\"false\":\"GREEN\",\"true\":0},\"byId\":{\"9007199254740993\":\"n\"},"
                "\"choiceNumber\":0}",
                "{\"labels\":{\"\":\"e\",\"\xc3\xa9\":\"x\"},\"byShelf\":{\"-1\":{}},"
                "\"flags\":{\"false\":\"GREEN\",\"true\":\"COLOUR_UNSPECIFIED\"},"
                "\"byId\":{\"9007199254740993\":\"n\"},\"choiceNumber\":0}");
  expect_format(ITEM, "{\"choice_text\":null,\"choiceLocation\":{\"shelf\":1}}",
                "{\"choiceLocation\":{\"shelf\":1}}");
  /* Packed and unpacked repeated fields read alike; whitespace anywhere. */
  expect_format(ITEM, " {\n\t\"packedInts\" : [ 1 , 2 ] ,\"unpacked_ints\":[3]}\r\n ",
                "{\"packedInts\":[1,2],\"unpackedInts\":[3]}");
  /* Escapes and UTF-8 in strings, control characters out as \u00XX. */
  expect_format(ITEM, "{\"name\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\ud83d\\ude00\\u00e9\"}",
                "{\"name\":\"\\\"\\\\/\\u0008\\u000c\\u000a\\u000d\\u0009\xf0\x9f\x98\x80\xc3\xa9\"}");
  /* A field mask path longer than any fixed buffer (found by fuzz-json). */
  char mask[400], want[400];
  memset(want, 'a', 300);
  memcpy(want, "{\"mask\":\"", 9);
  strcpy(want + 300, "Bc\"}");
  strcpy(mask, want);
  expect_format(ITEM, mask, want);
  /* json-c turns a lone surrogate escape into U+FFFD. */
  expect_format(ITEM, "{\"name\":\"\\ud800\"}", "{\"name\":\"\xef\xbf\xbd\"}");
  /* A wrapper at the top level is its bare value; a null one its default. */
  ProtobufCMessage *w = parse_ok(&google__protobuf__int32_value__descriptor, "42");
  assert_int_equal(((Google__Protobuf__Int32Value *)w)->value, 42);
  char *out = duct_json_format(w, 0);
  assert_string_equal(out, "42");
  free(out);
  protobuf_c_message_free_unpacked(w, NULL);
  w = parse_ok(&google__protobuf__timestamp__descriptor, "\"1970-01-01T00:00:01Z\"");
  assert_int_equal(((Google__Protobuf__Timestamp *)w)->seconds, 1);
  protobuf_c_message_free_unpacked(w, NULL);
  /* Text that is not NUL-terminated: only len bytes are read. */
  char err[128];
  ProtobufCMessage *m = NULL;
  assert_int_equal(duct_json_parse(ITEM, "{\"name\":\"n\"}garbage", 12, &m, err, sizeof err), 0);
  assert_string_equal(((Duct__Jsontest__Item *)m)->name, "n");
  protobuf_c_message_free_unpacked(m, NULL);
}

static void test_errors(void **state)
{
  (void)state;
  static const struct { const char *in, *err; } cases[] = {
    { "", "at offset 0: unexpected end of input" },
    { "{\"name\":", "at offset 8: unexpected end of input" },
    { "{\"name\":\"x\"} x", "at offset 13: unexpected character" },
    { "{\"name\":'x'}", "at offset 8: unexpected character" },
    { "{\"tags\":[1,]}", "at offset 11: unexpected character" },
    { "[]", "expected object" },
    { "null", "expected object" },
    { "{\"colour\":1}", "colour: unknown field" },
    { "{\"location\":{\"shelf\":\"x\"}}", "location.shelf: expected integer" },
    { "{\"location\":{\"shelf\":1.5}}", "location.shelf: expected integer, got a fractional number" },
    { "{\"location\":{\"shelf\":2147483648}}", "location.shelf: integer out of range" },
    { "{\"location\":{\"shelf\":-2147483649}}", "location.shelf: integer out of range" },
    { "{\"location\":{\"shelf\":1e10}}", "location.shelf: integer out of range" },
    { "{\"location\":{\"shelf\":true}}", "location.shelf: expected integer" },
    { "{\"location\":{\"colour\":1}}", "location.colour: unknown field" },
    { "{\"location\":[]}", "location: expected object" },
    { "{\"scalars\":{\"fUint32\":-1}}", "scalars.fUint32: integer out of range" },
    { "{\"scalars\":{\"fUint64\":\"-1\"}}", "scalars.fUint64: integer out of range" },
    { "{\"scalars\":{\"fUint64\":\"18446744073709551616\"}}", "scalars.fUint64: integer out of range" },
    { "{\"scalars\":{\"fUint64\":18446744073709551616}}", "at offset 22: integer out of range" },
    { "{\"scalars\":{\"fInt64\":-9223372036854775809}}", "at offset 21: integer out of range" },
    { "{\"scalars\":{\"fInt64\":\"9223372036854775808\"}}", "scalars.fInt64: integer out of range" },
    { "{\"scalars\":{\"fInt64\":\" 1\"}}", "scalars.fInt64: expected integer" },
    { "{\"scalars\":{\"fInt64\":\"1.0\"}}", "scalars.fInt64: expected integer" },
    { "{\"scalars\":{\"fFloat\":1e39}}", "scalars.fFloat: number out of range for float" },
    { "{\"scalars\":{\"fDouble\":1e400}}", "scalars.fDouble: number out of range" },
    { "{\"scalars\":{\"fDouble\":\"nan\"}}", "scalars.fDouble: expected number" },
    { "{\"scalars\":{\"fDouble\":\"0x10\"}}", "scalars.fDouble: expected number" },
    { "{\"scalars\":{\"fDouble\":true}}", "scalars.fDouble: expected number" },
    { "{\"scalars\":{\"fBool\":\"true\"}}", "scalars.fBool: expected boolean" },
    { "{\"scalars\":{\"fBool\":1}}", "scalars.fBool: expected boolean" },
    { "{\"scalars\":{\"fString\":1}}", "scalars.fString: expected string" },
    { "{\"scalars\":{\"fString\":\"a\\u0000b\"}}", "scalars.fString: string contains U+0000" },
    { "{\"scalars\":{\"fString\":\"\xc3\x28\"}}", "at offset 24: invalid utf-8 string" },
    { "{\"scalars\":{\"fBytes\":\"a\"}}", "scalars.fBytes: invalid base64" },
    { "{\"scalars\":{\"fBytes\":\"ab!c\"}}", "scalars.fBytes: invalid base64" },
    { "{\"scalars\":{\"fBytes\":\"ab=\"}}", "scalars.fBytes: invalid base64" },
    { "{\"scalars\":{\"fBytes\":5}}", "scalars.fBytes: expected base64 string" },
    { "{\"scalars\":{\"colour\":\"PURPLE\"}}",
      "scalars.colour: unknown enum value \"PURPLE\" for duct.jsontest.Colour" },
    { "{\"scalars\":{\"colour\":true}}", "scalars.colour: expected enum name or number" },
    { "{\"scalars\":{\"colour\":4294967296}}", "scalars.colour: integer out of range" },
    { "{\"tags\":\"a\"}", "tags: expected array" },
    { "{\"tags\":[\"a\",null]}", "tags[1]: null is not allowed in a repeated field" },
    { "{\"locations\":[{},{\"shelf\":\"x\"}]}", "locations[1].shelf: expected integer" },
    { "{\"colours\":[\"RED\",\"BLUE\"]}",
      "colours[1]: unknown enum value \"BLUE\" for duct.jsontest.Colour" },
    { "{\"labels\":[]}", "labels: expected object" },
    { "{\"labels\":{\"k\":1}}", "labels[\"k\"]: expected string" },
    { "{\"labels\":{\"k\":null}}", "labels[\"k\"]: null is not allowed as a map value" },
    { "{\"byShelf\":{\"x\":{}}}", "byShelf[\"x\"]: map key: expected integer" },
    { "{\"byShelf\":{\"1\":{\"shelf\":\"y\"}}}", "byShelf[\"1\"].shelf: expected integer" },
    { "{\"byShelf\":{\"99999999999\":{}}}", "byShelf[\"99999999999\"]: integer out of range" },
    { "{\"flags\":{\"yes\":1}}", "flags[\"yes\"]: map key: expected \"true\" or \"false\"" },
    { "{\"choiceText\":\"a\",\"choiceNumber\":1}",
      "choiceNumber: oneof already set by field \"choiceText\"" },
    { "{\"name\":\"a\",\"name\":\"b\",\"location\":{\"aisle_name\":\"x\",\"aisleName\":\"y\"}}",
      "location.aisleName: field given twice (by its JSON name and its .proto name)" },
    { "{\"created\":\"1972-01-01T10:00:20Z \"}",
      "created: expected RFC 3339 timestamp such as \"1972-01-01T10:00:20.021Z\"" },
    { "{\"created\":\"1972-02-30T10:00:20Z\"}",
      "created: expected RFC 3339 timestamp such as \"1972-01-01T10:00:20.021Z\"" },
    { "{\"created\":\"1972-01-01T10:00:20.0123456789Z\"}",
      "created: expected RFC 3339 timestamp such as \"1972-01-01T10:00:20.021Z\"" },
    { "{\"created\":\"0000-12-31T23:59:59Z\"}",
      "created: timestamp out of range (years 0001 to 9999 UTC)" },
    { "{\"created\":\"9999-12-31T23:59:59-00:01\"}",
      "created: timestamp out of range (years 0001 to 9999 UTC)" },
    { "{\"created\":{\"seconds\":1}}", "created: expected string" },
    { "{\"ttl\":\"1.5\"}", "ttl: expected duration such as \"1.5s\"" },
    { "{\"ttl\":\"s\"}", "ttl: expected duration such as \"1.5s\"" },
    { "{\"ttl\":\"315576000001s\"}", "ttl: duration out of range (+-315576000000s)" },
    { "{\"nothing\":{\"x\":1}}", "nothing.x: unknown field" },
    { "{\"wInt32\":\"x\"}", "wInt32: expected integer" },
    { "{\"wInt32\":{\"value\":1}}", "wInt32: expected integer" },
    { "{\"mask\":\"a_b\"}", "mask: field mask path must be lowerCamelCase" },
    { "{\"times\":[\"bad\"]}",
      "times[0]: expected RFC 3339 timestamp such as \"1972-01-01T10:00:20.021Z\"" },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    expect_error(ITEM, cases[i].in, cases[i].err);

  /* Deeper than DUCT_JSON_MAX_DEPTH: an error, not a stack overflow. */
  size_t depth = DUCT_JSON_MAX_DEPTH + 5;
  char *deep = malloc(depth * 10 + 1);
  assert_non_null(deep);
  size_t n = 0;
  for (size_t i = 0; i < depth; i++)
    n += (size_t)sprintf(deep + n, "{\"child\":");
  deep[n++] = '1';
  deep[n] = '\0';
  char err[128];
  ProtobufCMessage *m = NULL;
  assert_int_equal(duct_json_parse(ITEM, deep, n, &m, err, sizeof err), -1);
  assert_null(m);
  /* The object that opens level MAX_DEPTH + 1 is the one refused. */
  char want[64];
  snprintf(want, sizeof want, "at offset %d: nesting too deep", DUCT_JSON_MAX_DEPTH * 9);
  assert_string_equal(err, want);
  /* Just inside the limit (json-c counts the innermost scalar as a level
   * too) it is read; the innermost value is wrong on purpose, so the
   * error path frees 99 nested messages. */
  n = 0;
  for (size_t i = 0; i < DUCT_JSON_MAX_DEPTH - 2; i++)
    n += (size_t)sprintf(deep + n, "{\"child\":");
  n += (size_t)sprintf(deep + n, "{\"name\":5");
  for (size_t i = 0; i < DUCT_JSON_MAX_DEPTH - 1; i++)
    deep[n++] = '}';
  deep[n] = '\0';
  /* The path is cut (it has a fixed size), the message after it is not. */
  char long_err[512];
  assert_int_equal(duct_json_parse(ITEM, deep, n, &m, long_err, sizeof long_err), -1);
  assert_int_equal(strncmp(long_err, "child.child.child.", 18), 0);
  assert_non_null(strstr(long_err, ": expected string"));
  free(deep);

  /* A short err buffer is cut and still terminated. */
  char small[8];
  assert_int_equal(duct_json_parse(ITEM, "{\"zzz\":1}", 9, &m, small, sizeof small), -1);
  assert_string_equal(small, "zzz: un");
  /* No err buffer at all is allowed. */
  assert_int_equal(duct_json_parse(ITEM, "[", 1, &m, NULL, 0), -1);
}

/* JSON -> message -> JSON is stable, in both layouts. */
static void test_round_trip(void **state)
{
  (void)state;
  char *text = golden("item.json");
  ProtobufCMessage *m = parse_ok(ITEM, text);
  char *pretty = duct_json_format(m, DUCT_JSON_PRETTY);
  ProtobufCMessage *m2 = parse_ok(ITEM, pretty);
  char *compact = duct_json_format(m2, 0);
  assert_string_equal(compact, text);
  assert_same_encoding(m, m2);
  free(compact);
  free(pretty);
  free(text);
  protobuf_c_message_free_unpacked(m, NULL);
  protobuf_c_message_free_unpacked(m2, NULL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_golden_item),
    cmocka_unit_test(test_golden_defaults),
    cmocka_unit_test(test_proto2),
    cmocka_unit_test(test_input_forms),
    cmocka_unit_test(test_errors),
    cmocka_unit_test(test_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
