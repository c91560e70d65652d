/* tests/e2e/test_reflection.c - the built-in reflection service
 * (proto/duct/reflection.proto) across processes, through its generated
 * client stubs: what ListServices and FileContainingSymbol answer, checked
 * against the probe's own generated tables and embedded files rather than
 * against lists written here; the errors; a server with reflection off; an
 * authorization hook that refuses it. The server is duct-probe-server in a
 * child process; probe.proto imports probe_types.proto, which imports
 * google/protobuf/timestamp.proto, so dependencies have a chain to follow. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "duct/reflection.duct.h"
#include "e2e_util.h"

typedef Duct__Reflection__V1__FilesReply files_reply;

static const duct_service *const expected_services[] = {
    /* The server adds reflection itself, before any service of its user. */
    &duct_reflection_v1_reflection_service,
    &duct_test_probe_service,
};

static void check_service(const Duct__Reflection__V1__ServiceInfo *got, const duct_service *want) {
  assert_string_equal(got->name, want->name);
  assert_true(got->has_descriptors);
  assert_int_equal(got->n_methods, want->n_methods);
  for (size_t j = 0; j < want->n_methods; j++) {
    const duct_method *m = &want->methods[j];
    const Duct__Reflection__V1__MethodInfo *gm = got->methods[j];
    /* The wire name is "/<service>/<method>". */
    char wire[256];
    snprintf(wire, sizeof wire, "/%s/%s", got->name, gm->name);
    assert_string_equal(wire, m->name);
    assert_int_equal((int)gm->kind, (int)m->kind);
    assert_string_equal(gm->input_type, m->input->name);
    assert_string_equal(gm->output_type, m->output->name);
  }
}

static void test_list_services(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  Duct__Reflection__V1__ListServicesRequest req = DUCT__REFLECTION__V1__LIST_SERVICES_REQUEST__INIT;
  Duct__Reflection__V1__ListServicesReply *reply = NULL;
  assert_int_equal(duct_reflection_v1_reflection_list_services(f->ch, &req, &reply, NULL), DUCT_OK);
  size_t n = sizeof expected_services / sizeof *expected_services;
  assert_int_equal(reply->n_services, n);
  for (size_t i = 0; i < n; i++)
    check_service(reply->services[i], expected_services[i]);
  duct__reflection__v1__list_services_reply__free_unpacked(reply, NULL);
  e2e_stop_probe(f);
}

/* Files reachable from `f` (itself and its imports, transitively), one per
 * name, into v; returns the new count. */
static size_t reachable(const duct_file *f, const duct_file **v, size_t n, size_t cap) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(v[i]->name, f->name) == 0)
      return n;
  assert_true(n < cap);
  v[n++] = f;
  for (const duct_file *const *d = f->deps; *d; d++)
    n = reachable(*d, v, n, cap);
  return n;
}

static int same_bytes(const ProtobufCBinaryData *b, const duct_file *f) {
  return b->len == f->size && memcmp(b->data, f->descriptor, f->size) == 0;
}

/* Asks for `symbol` and checks the answer: `defining` first, then every
 * file it imports, transitively, each exactly once, byte for byte as the
 * generated code embedded them. */
static void check_symbol(duct_channel *ch, const char *symbol, const duct_file *defining) {
  Duct__Reflection__V1__SymbolRequest req = DUCT__REFLECTION__V1__SYMBOL_REQUEST__INIT;
  req.symbol = (char *)symbol;
  files_reply *reply = NULL;
  duct_status st;
  duct_call_opts o = {.status = &st};
  duct_code rc = duct_reflection_v1_reflection_file_containing_symbol(ch, &req, &reply, &o);
  if (rc != DUCT_OK)
    fail_msg("%s: %s (%s)", symbol, duct_code_name(rc), st.message);
  const duct_file *want[16];
  size_t n = reachable(defining, want, 0, 16);
  assert_int_equal(reply->n_file_descriptor_proto, n);
  if (!same_bytes(&reply->file_descriptor_proto[0], defining))
    fail_msg("%s: the first file is not %s", symbol, defining->name);
  for (size_t i = 0; i < n; i++) {
    size_t seen = 0;
    for (size_t k = 0; k < reply->n_file_descriptor_proto; k++)
      seen += (size_t)same_bytes(&reply->file_descriptor_proto[k], want[i]);
    if (seen != 1)
      fail_msg("%s: %s returned %zu times", symbol, want[i]->name, seen);
  }
  duct__reflection__v1__files_reply__free_unpacked(reply, NULL);
}

static void test_file_containing_symbol(void **state) {
  (void)state;
  const duct_file *probe = duct_test_probe_service.file;
  assert_non_null(probe);
  /* The fixture has an import chain two deep: probe.proto ->
   * probe_types.proto -> google/protobuf/timestamp.proto. */
  assert_non_null(probe->deps[0]);
  const duct_file *types = probe->deps[0];
  assert_non_null(types->deps[0]);
  const duct_file *timestamp = types->deps[0];
  const duct_file *seen[16];
  assert_int_equal(reachable(probe, seen, 0, 16), 3);

  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  check_symbol(f->ch, duct_test_probe_service.name, probe);   /* a service */
  check_symbol(f->ch, "duct.test.Probe.Echo", probe);         /* a method, both ways */
  check_symbol(f->ch, "duct.test.Probe/Echo", probe);
  check_symbol(f->ch, "duct.test.Blob", probe);               /* a message */
  check_symbol(f->ch, "duct.test.Described.Inner", probe);    /* a nested one */
  check_symbol(f->ch, "duct.test.Shade", probe);              /* an enum */
  check_symbol(f->ch, "duct.test.Stamp", types);              /* in an import */
  check_symbol(f->ch, "google.protobuf.Timestamp", timestamp);
  /* The reflection service describes itself too. */
  check_symbol(f->ch, "duct.reflection.v1.Reflection",
               duct_reflection_v1_reflection_service.file);
  e2e_stop_probe(f);
}

static duct_code ask(duct_channel *ch, const char *symbol, duct_status *st) {
  Duct__Reflection__V1__SymbolRequest req = DUCT__REFLECTION__V1__SYMBOL_REQUEST__INIT;
  req.symbol = (char *)symbol;
  files_reply *reply = NULL;
  duct_call_opts o = {.status = st};
  duct_code rc = duct_reflection_v1_reflection_file_containing_symbol(ch, &req, &reply, &o);
  if (reply)
    duct__reflection__v1__files_reply__free_unpacked(reply, NULL);
  return rc;
}

static void test_unknown_and_empty_symbol(void **state) {
  (void)state;
  fixture *f = e2e_start_probe(NULL, NULL, 0, 1);
  duct_status st;
  assert_int_equal(ask(f->ch, "duct.test.Nope", &st), DUCT_NOT_FOUND);
  assert_string_equal(st.message, "no symbol 'duct.test.Nope' on this server");
  /* A prefix of a symbol is not a symbol. */
  assert_int_equal(ask(f->ch, "duct.test", &st), DUCT_NOT_FOUND);
  assert_int_equal(ask(f->ch, "", &st), DUCT_INVALID_ARGUMENT);
  e2e_echo_ok(f->ch); /* the connection is still good */
  e2e_stop_probe(f);
}

static void test_reflection_disabled(void **state) {
  (void)state;
  const char *args[] = {"--no-reflection"};
  fixture *f = e2e_start_probe(NULL, args, 1, 1);
  Duct__Reflection__V1__ListServicesRequest req = DUCT__REFLECTION__V1__LIST_SERVICES_REQUEST__INIT;
  Duct__Reflection__V1__ListServicesReply *reply = NULL;
  assert_int_equal(duct_reflection_v1_reflection_list_services(f->ch, &req, &reply, NULL),
                   DUCT_UNIMPLEMENTED);
  assert_null(reply);
  duct_status st;
  assert_int_equal(ask(f->ch, "duct.test.Probe", &st), DUCT_UNIMPLEMENTED);
  e2e_echo_ok(f->ch); /* the probe's own service is served as before */
  e2e_stop_probe(f);
}

static void test_authorize_refuses_reflection(void **state) {
  (void)state;
  const char *args[] = {"--deny-reflection"};
  fixture *f = e2e_start_probe(NULL, args, 1, 1);
  Duct__Reflection__V1__ListServicesRequest req = DUCT__REFLECTION__V1__LIST_SERVICES_REQUEST__INIT;
  Duct__Reflection__V1__ListServicesReply *reply = NULL;
  assert_int_equal(duct_reflection_v1_reflection_list_services(f->ch, &req, &reply, NULL),
                   DUCT_PERMISSION_DENIED);
  duct_status st;
  assert_int_equal(ask(f->ch, "duct.test.Probe", &st), DUCT_PERMISSION_DENIED);
  e2e_echo_ok(f->ch);
  e2e_stop_probe(f);
}

int main(int argc, char **argv) {
  (void)argc;
  e2e_init(argv[0]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_list_services, e2e_teardown),
      cmocka_unit_test_teardown(test_file_containing_symbol, e2e_teardown),
      cmocka_unit_test_teardown(test_unknown_and_empty_symbol, e2e_teardown),
      cmocka_unit_test_teardown(test_reflection_disabled, e2e_teardown),
      cmocka_unit_test_teardown(test_authorize_refuses_reflection, e2e_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
