/* What a client checks and keeps, end to end, with duct-probe-server in a
 * child process; the same file on Linux and, in the windows preset, under
 * Wine.
 *
 * - Who the server is (duct_channel_opts.expect_server_user): the default
 *   rule admits a server of our own user; a server of another user is
 *   refused before anything is sent, with both users named; naming that
 *   user admits it; naming a user the server is not refuses even our own.
 *   A server of another user needs root on POSIX (the probe server drops
 *   to uid 65534); without root, and on Windows, where under Wine every
 *   process is one user, that test is skipped and says so.
 * - A handler's long message (finding 7): cut by the server at a
 *   character boundary within the protocol's 1024 bytes (read raw off the
 *   wire), and whole in the caller's duct_status. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <duct/duct.h>

#include "probe.duct.h"
#include "runtime/frame.h"
#include "runtime/sys.h"
#include "runtime/transport.h"
#include "runtime/utf8.h"
#include "runtime/wire.h"
#include "sysinfo.h"
#include "tests/support/proc.h"
#include "e2e_util.h"

/* The uid the probe server becomes for the foreign-server test: nobody. */
#define OTHER_UID 65534u

static test_proc *spawn_probe(const char *const *args, int nargs) {
  return e2e_spawn("duct-probe-server", args, nargs);
}

/* The last error line duct logged: duct_channel_open's refusal says why
 * there, and nowhere else. */
static char last_error[1024];

static void capture_log(void *user, duct_log_level level, const char *line) {
  (void)user;
  if (level == DUCT_LOG_ERROR)
    snprintf(last_error, sizeof last_error, "%s", line);
  print_message("duct log: %s\n", line);
}

static duct_code open_as(const char *address, const char *expect, duct_channel **ch) {
  duct_channel_opts co = {.connect_timeout_ms = START_MS,
                          .log = capture_log,
                          .expect_server_user = expect};
  last_error[0] = '\0';
  return duct_channel_open(address, &co, ch);
}

static void shutdown_server(duct_channel *ch, test_proc *p) {
  Duct__Test__Empty req = DUCT__TEST__EMPTY__INIT, *reply;
  assert_int_equal(duct_test_probe_shutdown(ch, &req, &reply, NULL), DUCT_OK);
  duct__test__empty__free_unpacked(reply, NULL);
  assert_int_equal(test_proc_wait(p, 15000), 0);
  e2e_reap(p);
}

static int on_windows(const char *self) { return strncmp(self, "S-", 2) == 0; }

/* ---- who the server is ---- */

static void test_own_server_admitted(void **state) {
  (void)state;
  char address[128], self[256];
  snprintf(address, sizeof address, "%s", test_address("own"));
  test_self_user(self, sizeof self);
  const char *args[] = {address};
  test_proc *p = spawn_probe(args, 1);
  duct_channel *ch, *named;
  /* The default rule: a server of our own user. */
  assert_int_equal(open_as(address, NULL, &ch), DUCT_OK);
  /* Naming our own user admits it too, as "" means the default. */
  assert_int_equal(open_as(address, self, &named), DUCT_OK);
  duct_channel_close(named);
  assert_int_equal(open_as(address, "", &named), DUCT_OK);
  Duct__Test__Empty req = DUCT__TEST__EMPTY__INIT;
  Duct__Test__PeerInfo *who;
  assert_int_equal(duct_test_probe_whoami(named, &req, &who, NULL), DUCT_OK);
  assert_int_equal(who->server_pid, test_proc_pid(p));
  duct__test__peer_info__free_unpacked(who, NULL);
  duct_channel_close(named);
  shutdown_server(ch, p);
  duct_channel_close(ch);
}

static void test_expected_other_user_refused(void **state) {
  (void)state;
  char address[128], self[256], other[64];
  snprintf(address, sizeof address, "%s", test_address("other"));
  test_self_user(self, sizeof self);
  /* A user this server does not run as: a made-up SID on Windows, the
   * next uid on POSIX (when we are root, uid 1: root is not admitted
   * either once a user is named). */
  if (on_windows(self))
    snprintf(other, sizeof other, "S-1-5-21-1-2-3-1004");
  else
    snprintf(other, sizeof other, "%lu", strtoul(self, NULL, 10) + 1);
  const char *args[] = {address};
  test_proc *p = spawn_probe(args, 1);
  duct_channel *ch, *wrong;
  assert_int_equal(open_as(address, NULL, &ch), DUCT_OK); /* it is up */
  assert_int_equal(open_as(address, other, &wrong), DUCT_PERMISSION_DENIED);
  assert_null(wrong);
  /* The refusal names both users. */
  assert_non_null(strstr(last_error, self));
  assert_non_null(strstr(last_error, other));
  assert_non_null(strstr(last_error, "expect_server_user"));
  shutdown_server(ch, p);
  duct_channel_close(ch);
}

static void test_malformed_expected_user_refused_at_once(void **state) {
  (void)state;
  /* Nobody listens here: a retry would take START_MS. */
  char address[128];
  snprintf(address, sizeof address, "%s", test_address("nobody"));
  duct_channel *ch;
  int64_t t0 = duct__now_ms();
  assert_int_equal(open_as(address, "not a user", &ch), DUCT_INVALID_ARGUMENT);
  assert_true(duct__now_ms() - t0 < START_MS / 2);
  assert_non_null(strstr(last_error, "expect_server_user"));
  /* Each system's other form is not this system's. */
  char self[256];
  test_self_user(self, sizeof self);
  assert_int_equal(open_as(address, on_windows(self) ? "1000" : "S-1-5-18", &ch),
                   DUCT_INVALID_ARGUMENT);
}

static void test_server_of_another_user_refused(void **state) {
  (void)state;
  if (!test_can_become_user()) {
    print_message("SKIPPED: a server of another user needs root on POSIX (under "
                  "Wine every process is one user); the default rule's refusal "
                  "is not exercised here\n");
    skip();
  }
  char dir[128], path[192], self[256], other[32];
  test_self_user(self, sizeof self);
  snprintf(other, sizeof other, "%u", OTHER_UID);
  /* An absolute socket path in a directory the other user may write. */
  assert_int_equal(test_shared_dir(dir, sizeof dir), 0);
  snprintf(path, sizeof path, "%s/probe", dir);
  const char *args[] = {path, "--as-uid", other};
  test_proc *p = spawn_probe(args, 3);
  duct_channel *ch = NULL;
  /* The default rule: our own uid or root, and it is neither. Open waits
   * for the server to appear (it is absent at first), then refuses it. */
  duct_code rc = open_as(path, NULL, &ch);
  print_message("refused with: %s\n", last_error);
  assert_int_equal(rc, DUCT_PERMISSION_DENIED);
  assert_null(ch);
  char want[600];
  snprintf(want, sizeof want, "server at %s runs as uid %u; expected uid %s (this process) or root",
           path, OTHER_UID, self);
  assert_non_null(strstr(last_error, want));
  /* Named, it is admitted, and it is the server we started. */
  assert_int_equal(open_as(path, other, &ch), DUCT_OK);
  Duct__Test__Empty req = DUCT__TEST__EMPTY__INIT;
  Duct__Test__PeerInfo *who;
  assert_int_equal(duct_test_probe_whoami(ch, &req, &who, NULL), DUCT_OK);
  assert_int_equal(who->server_pid, test_proc_pid(p));
  duct__test__peer_info__free_unpacked(who, NULL);
  shutdown_server(ch, p);
  duct_channel_close(ch);
  remove(path);
  remove(dir);
}

/* ---- a long message ---- */

/* The longest prefix of s no longer than max bytes that ends between two
 * characters, counted here by walking whole characters (not with the
 * helper under test). */
static size_t whole_prefix(const char *s, size_t max) {
  size_t at = 0;
  while (s[at]) {
    unsigned char b = (unsigned char)s[at];
    size_t k = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    if (at + k > max)
      break;
    at += k;
  }
  return at;
}

/* What the server puts on the wire for Fail(text), read through a raw
 * link as any peer would: the error RESPONSE's payload into buf. */
static size_t raw_fail_text(const char *address, const char *text, uint8_t *buf, size_t cap) {
  duct__link *l;
  duct__err err;
  assert_int_equal(duct__link_open(address, duct__now_ms() + START_MS, &l, &err), DUCT_OK);
  uint8_t hello[DUCT__HELLO_MSG_SIZE];
  duct__wire_hello(hello, DUCT__DEFAULT_MAX_FRAME, DUCT__DEFAULT_MAX_MESSAGE);
  duct__iov iov[2] = {{hello, sizeof hello}, {NULL, 0}};
  size_t len;
  assert_int_equal(duct__link_transact(l, iov, 1, buf, cap, &len, duct__now_ms() + 10000),
                   DUCT_OK);
  const duct_method *fail = NULL;
  for (size_t i = 0; i < duct_test_probe_service.n_methods; i++)
    if (strcmp(duct_test_probe_service.methods[i].name, "/duct.test.Probe/Fail") == 0)
      fail = &duct_test_probe_service.methods[i];
  assert_non_null(fail);
  Duct__Test__FailRequest req = DUCT__TEST__FAIL_REQUEST__INIT;
  req.code = DUCT_FAILED_PRECONDITION;
  req.message = (char *)text;
  uint8_t packed[4096], hdr[DUCT__HEADER_SIZE];
  size_t n = duct__test__fail_request__pack(&req, packed);
  duct__frame tmpl = {DUCT__VERSION, DUCT__REQUEST, 0, 1, fail->id, 0, 0, 0};
  int k = duct__wire_frag(&tmpl, packed, n, DUCT__DEFAULT_MAX_FRAME, 0, 0, hdr, iov);
  assert_int_equal(duct__link_transact(l, iov, k, buf, cap, &len, duct__now_ms() + 10000),
                   DUCT_OK);
  duct__frame f;
  const char *why;
  assert_int_equal(duct__frame_decode(buf, len, &f, &why), DUCT_OK);
  assert_int_equal(f.type, DUCT__RESPONSE);
  assert_int_equal(f.status, DUCT_FAILED_PRECONDITION);
  duct__link_close(l);
  memmove(buf, buf + DUCT__HEADER_SIZE, f.payload_len);
  return f.payload_len;
}

static void test_long_error_message_cut_at_a_character(void **state) {
  (void)state;
  char address[128];
  snprintf(address, sizeof address, "%s", test_address("long"));
  const char *args[] = {address};
  test_proc *p = spawn_probe(args, 1);
  duct_channel *ch;
  assert_int_equal(open_as(address, NULL, &ch), DUCT_OK);
  /* 2-, 3- and 4-byte characters after a prefix that puts byte 1024 in
   * the middle of one: a cut by bytes would leave half a character. */
  static const struct {
    const char *prefix, *ch;
  } kinds[] = {{"x", "\xc3\xa9"}, {"xy", "\xe2\x82\xac"}, {"x", "\xf0\x9f\x98\x80"}};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    char sent[2001];
    size_t n = strlen(kinds[i].prefix), cl = strlen(kinds[i].ch);
    memcpy(sent, kinds[i].prefix, n);
    while (n + cl <= 2000) {
      memcpy(sent + n, kinds[i].ch, cl);
      n += cl;
    }
    sent[n] = '\0';
    size_t expect = whole_prefix(sent, 1024);
    assert_true(expect < 1024); /* the cut does fall inside a character */
    Duct__Test__FailRequest req = DUCT__TEST__FAIL_REQUEST__INIT;
    Duct__Test__Empty *reply;
    duct_status st;
    duct_call_opts o = {.status = &st};
    req.code = DUCT_FAILED_PRECONDITION;
    req.message = sent;
    assert_int_equal(duct_test_probe_fail(ch, &req, &reply, &o), DUCT_FAILED_PRECONDITION);
    /* On the wire: the server cut it (duct_ctx_fail), between two
     * characters, within the protocol's 1024 bytes. */
    uint8_t wire[DUCT__DEFAULT_MAX_FRAME];
    size_t on_wire = raw_fail_text(address, sent, wire, sizeof wire);
    assert_int_equal(on_wire, expect);
    assert_memory_equal(wire, sent, on_wire);
    /* At the caller, all of it. */
    size_t got = strlen(st.message);
    print_message("%u-byte characters: %u bytes sent, %u arrived (expected %u)\n",
                  (unsigned)cl, (unsigned)n, (unsigned)got, (unsigned)expect);
    /* All the protocol carries arrived (not 255 bytes of it), it is a
     * prefix of what was sent, and it ends on a whole character. */
    assert_true(got <= DUCT_STATUS_MESSAGE_MAX);
    assert_int_equal(got, expect);
    assert_memory_equal(st.message, sent, got);
    assert_true(duct__utf8_valid(st.message, got));
  }
  shutdown_server(ch, p);
  duct_channel_close(ch);
}

int main(int argc, char **argv) {
  (void)argc;
  e2e_init(argv[0]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_own_server_admitted, e2e_teardown),
      cmocka_unit_test_teardown(test_expected_other_user_refused, e2e_teardown),
      cmocka_unit_test_teardown(test_malformed_expected_user_refused_at_once, e2e_teardown),
      cmocka_unit_test_teardown(test_server_of_another_user_refused, e2e_teardown),
      cmocka_unit_test_teardown(test_long_error_message_cut_at_a_character, e2e_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
