/* tests/e2e/e2e_util.c - see e2e_util.h. */
#include "e2e_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/sys.h"
#include "runtime/wire.h"

static const char *argv0;
static int server_seq;

/* Every child a test starts: a leftover child would hold the test's
 * output open and hang ctest. */
static test_proc *live[8];

void e2e_init(const char *a) { argv0 = a; }

test_proc *e2e_spawn(const char *name, const char *const *args, int nargs) {
  char exe[4096];
  snprintf(exe, sizeof exe, "%s", test_sibling_exe(argv0, name));
  test_proc *p = test_proc_start(exe, args, nargs);
  assert_non_null(p);
  for (int i = 0; i < 8; i++) {
    if (!live[i]) {
      live[i] = p;
      break;
    }
  }
  return p;
}

void e2e_reap(test_proc *p) {
  for (int i = 0; i < 8; i++)
    if (live[i] == p)
      live[i] = NULL;
  test_proc_free(p); /* kills it if still running */
}

int e2e_teardown(void **state) {
  (void)state;
  for (int i = 0; i < 8; i++) {
    if (live[i]) {
      test_proc_free(live[i]);
      live[i] = NULL;
    }
  }
  return 0;
}

const char *e2e_next_address(void) {
  char tag[32];
  snprintf(tag, sizeof tag, "probe%d", ++server_seq);
  return test_address(tag);
}

fixture *e2e_start_probe(const char *address, const char *const *extra, int nextra,
                         int connect) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  snprintf(f->address, sizeof f->address, "%s", address ? address : e2e_next_address());
  const char *args[16] = {f->address};
  assert_true(nextra < 15);
  for (int i = 0; i < nextra; i++)
    args[1 + i] = extra[i];
  f->server = e2e_spawn("duct-probe-server", args, 1 + nextra);
  if (connect) {
    duct_channel_opts co = {.connect_timeout_ms = START_MS};
    assert_int_equal(duct_channel_open(f->address, &co, &f->ch), DUCT_OK);
  }
  return f;
}

void e2e_stop_probe(fixture *f) {
  Duct__Test__Empty req = DUCT__TEST__EMPTY__INIT, *reply;
  duct_status st;
  duct_call_opts o = {.status = &st};
  duct_code rc = duct_test_probe_shutdown(f->ch, &req, &reply, &o);
  if (rc != DUCT_OK)
    fail_msg("Shutdown: %s: %s", duct_code_name(rc), st.message);
  duct__test__empty__free_unpacked(reply, NULL);
  assert_int_equal(test_proc_wait(f->server, 15000), 0);
  duct_channel_close(f->ch);
  e2e_reap(f->server);
  free(f);
}

duct_code e2e_echo(duct_channel *ch, const uint8_t *data, size_t len, uint32_t tag,
                   Duct__Test__Blob **reply, duct_status *st) {
  Duct__Test__Blob req = DUCT__TEST__BLOB__INIT;
  req.data.data = (uint8_t *)data;
  req.data.len = len;
  req.tag = tag;
  duct_call_opts o = {.deadline_ms = 30000, .status = st};
  return duct_test_probe_echo(ch, &req, reply, &o);
}

void e2e_echo_ok(duct_channel *ch) {
  Duct__Test__Blob *reply;
  duct_status st;
  assert_int_equal(e2e_echo(ch, (const uint8_t *)"ping", 4, 7, &reply, &st), DUCT_OK);
  assert_int_equal(reply->tag, 7);
  assert_memory_equal(reply->data.data, "ping", 4);
  duct__test__blob__free_unpacked(reply, NULL);
}

Duct__Test__Stats *e2e_stats(duct_channel *ch) {
  Duct__Test__Empty req = DUCT__TEST__EMPTY__INIT;
  Duct__Test__Stats *s;
  assert_int_equal(duct_test_probe_get_stats(ch, &req, &s, NULL), DUCT_OK);
  return s;
}

duct__link *e2e_raw_connect(const char *address, uint32_t max_frame) {
  duct__link *l;
  duct__err err;
  assert_int_equal(duct__link_open(address, duct__now_ms() + START_MS, &l, &err), DUCT_OK);
  uint8_t hello[DUCT__HELLO_MSG_SIZE], buf[DUCT__DEFAULT_MAX_FRAME];
  duct__wire_hello(hello, max_frame, DUCT__DEFAULT_MAX_MESSAGE);
  duct__iov iov = {hello, sizeof hello};
  size_t len;
  assert_int_equal(duct__link_transact(l, &iov, 1, buf, sizeof buf, &len, duct__now_ms() + 10000),
                   DUCT_OK);
  duct__frame f;
  const char *why;
  assert_int_equal(duct__frame_decode(buf, len, &f, &why), DUCT_OK);
  assert_int_equal(f.type, DUCT__HELLO);
  return l;
}

duct__frame e2e_raw_read(duct__link *l, uint8_t *buf, size_t cap, int timeout_ms,
                         duct_code *rc) {
  duct__frame f = {0};
  size_t len;
  const char *why;
  *rc = duct__link_recv(l, buf, cap, &len, duct__now_ms() + timeout_ms);
  if (*rc == DUCT_OK)
    assert_int_equal(duct__frame_decode(buf, len, &f, &why), DUCT_OK);
  return f;
}

void e2e_raw_request(duct__link *l, uint32_t call, uint32_t method_id, const uint8_t *payload,
                     size_t len, uint32_t max_frame) {
  duct__frame tmpl = {DUCT__VERSION, DUCT__REQUEST, 0, call, method_id, 0, 0, 0};
  uint8_t hdr[DUCT__HEADER_SIZE];
  for (size_t i = 0; i < duct__frag_count(len, max_frame); i++) {
    duct__iov iov[2];
    int k = duct__wire_frag(&tmpl, (uint8_t *)payload, len, max_frame, i, 0, hdr, iov);
    assert_int_equal(duct__link_send(l, iov, k, duct__now_ms() + 10000), DUCT_OK);
  }
}
