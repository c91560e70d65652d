/* JSON over descriptors built at run time, as the duct tool uses it: the
 * same text and the same packed bytes as over protoc-c's compiled
 * descriptors (tests/json's messages and goldens), the same errors, and
 * proto3 `optional`, which only run-time descriptors can carry here
 * (protoc-c 1.4.1 refuses it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/dynpool.h"
#include "cli/json.h"
#include "json2.pb-c.h"
#include "json3.pb-c.h"

static duct_dynpool *pool;

static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    fail_msg("cannot open %s", path);
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  assert_non_null(buf);
  size_t got;
  while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
    n += got;
    if (n + 1 == cap) {
      cap *= 2;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
  }
  fclose(f);
  buf[n] = '\0';
  *len = n;
  return buf;
}

static int setup(void **state) {
  (void)state;
  size_t len;
  char *set = read_all(JSON_DYN_SET, &len);
  char err[256];
  pool = duct_dynpool_new();
  assert_non_null(pool);
  if (duct_dynpool_add_set(pool, (const uint8_t *)set, len, err, sizeof err) ||
      duct_dynpool_build(pool, err, sizeof err))
    fail_msg("pool: %s", err);
  free(set);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  duct_dynpool_free(pool);
  return 0;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len) {
  *len = protobuf_c_message_get_packed_size(m);
  uint8_t *b = malloc(*len + 1);
  assert_non_null(b);
  assert_int_equal(protobuf_c_message_pack(m, b), *len);
  return b;
}

/* Parses `text` with both descriptors; both succeed with the same bytes
 * and print the same text with `flags`, which is returned (caller frees). */
static char *both(const ProtobufCMessageDescriptor *compiled, const char *text, int flags) {
  const ProtobufCMessageDescriptor *dyn = duct_dynpool_message(pool, compiled->name);
  assert_non_null(dyn);
  assert_ptr_not_equal(dyn, compiled);
  ProtobufCMessage *a, *b;
  char err[256];
  if (duct_json_parse(compiled, text, strlen(text), &a, err, sizeof err))
    fail_msg("compiled: %s", err);
  if (duct_json_parse(dyn, text, strlen(text), &b, err, sizeof err))
    fail_msg("run-time: %s", err);
  size_t la, lb;
  uint8_t *pa = pack(a, &la), *pb = pack(b, &lb);
  assert_int_equal(la, lb);
  assert_memory_equal(pa, pb, la);
  char *ta = duct_json_format(a, flags), *tb = duct_json_format(b, flags);
  assert_non_null(ta);
  assert_non_null(tb);
  assert_string_equal(ta, tb);
  /* The run-time descriptor reads what the compiled one packed. */
  ProtobufCMessage *c = protobuf_c_message_unpack(dyn, NULL, la, pa);
  assert_non_null(c);
  char *tc = duct_json_format(c, flags);
  assert_string_equal(tc, ta);
  free(tc);
  protobuf_c_message_free_unpacked(c, NULL);
  free(tb);
  free(pa);
  free(pb);
  protobuf_c_message_free_unpacked(a, NULL);
  protobuf_c_message_free_unpacked(b, NULL);
  return ta;
}

static void golden_both(const char *file, int flags) {
  char path[4096];
  size_t len;
  snprintf(path, sizeof path, "%s/%s", JSON_GOLDEN_DIR, file);
  char *want = read_all(path, &len);
  while (len && (want[len - 1] == '\n' || want[len - 1] == '\r'))
    want[--len] = '\0';
  char *got = both(&duct__jsontest__item__descriptor, want, flags);
  assert_string_equal(got, want);
  free(got);
  free(want);
}

static void test_goldens_alike(void **state) {
  (void)state;
  golden_both("item.json", 0);
  golden_both("item_pretty.json", DUCT_JSON_PRETTY);
  golden_both("item_defaults.json", DUCT_JSON_EMIT_DEFAULTS);
}

static void test_proto2_alike(void **state) {
  (void)state;
  /* Defaults come from the run-time descriptor as from the compiled. */
  char *t = both(&duct__jsontest2__order__descriptor, "{\"id\":\"a\",\"quantity\":7}", 0);
  assert_string_equal(t, "{\"id\":\"a\",\"quantity\":7}");
  free(t);
  t = both(&duct__jsontest2__order__descriptor, "{\"id\":\"a\",\"part\":{\"number\":1}}",
           DUCT_JSON_EMIT_DEFAULTS);
  free(t);
  /* The same refusals, word for word. */
  const char *bad[] = {"{}", "{\"id\":\"a\",\"part\":{}}", "{\"id\":\"a\",\"size\":\"HUGE\"}",
                       "{\"id\":\"a\",\"quantity\":1.5}", "{\"id\":\"a\",\"x\":1}"};
  const ProtobufCMessageDescriptor *dyn = duct_dynpool_message(pool, "duct.jsontest2.Order");
  assert_non_null(dyn);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char e1[256], e2[256];
    ProtobufCMessage *m;
    assert_int_equal(duct_json_parse(&duct__jsontest2__order__descriptor, bad[i], strlen(bad[i]),
                                     &m, e1, sizeof e1),
                     -1);
    assert_int_equal(duct_json_parse(dyn, bad[i], strlen(bad[i]), &m, e2, sizeof e2), -1);
    assert_null(m);
    assert_string_equal(e1, e2);
  }
}

/* proto3 `optional`: printed when set, even to zero; left out when not. */
static void test_proto3_optional(void **state) {
  (void)state;
  const ProtobufCMessageDescriptor *d = duct_dynpool_message(pool, "duct.dyn.v3.Optionals");
  assert_non_null(d);
  static const struct {
    const char *in, *out;
    int flags;
  } cases[] = {
      {"{}", "{}", 0},
      {"{\"ttlMs\":\"0\",\"note\":\"\",\"blob\":\"\",\"plain\":0}",
       "{\"ttlMs\":\"0\",\"note\":\"\",\"blob\":\"\"}", 0},
      {"{\"ttl_ms\":5,\"color\":0,\"item\":{}}", "{\"ttlMs\":\"5\",\"color\":\"COLOR_UNSPECIFIED\",\"item\":{}}",
       0},
      {"{\"second\":\"\"}", "{\"second\":\"\"}", 0},
      {"{\"note\":null}", "{}", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ProtobufCMessage *m;
    char err[256];
    if (duct_json_parse(d, cases[i].in, strlen(cases[i].in), &m, err, sizeof err))
      fail_msg("%s: %s", cases[i].in, err);
    char *out = duct_json_format(m, cases[i].flags);
    assert_string_equal(out, cases[i].out);
    /* Presence survives the wire. */
    size_t len;
    uint8_t *b = pack(m, &len);
    ProtobufCMessage *u = protobuf_c_message_unpack(d, NULL, len, b);
    assert_non_null(u);
    char *again = duct_json_format(u, cases[i].flags);
    assert_string_equal(again, out);
    free(again);
    protobuf_c_message_free_unpacked(u, NULL);
    free(b);
    free(out);
    protobuf_c_message_free_unpacked(m, NULL);
  }
  ProtobufCMessage *m;
  char err[256];
  const char *two = "{\"first\":1,\"second\":\"x\"}";
  assert_int_equal(duct_json_parse(d, two, strlen(two), &m, err, sizeof err), -1);
  assert_non_null(strstr(err, "second"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_goldens_alike),
      cmocka_unit_test(test_proto2_alike),
      cmocka_unit_test(test_proto3_optional),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
