/* The kv example's programs as a user runs them: kv-client's output and
 * exit codes (0 done, 1 missing key, 2 no server), kv-server refusing an
 * address already served, and kv-server's graceful stop on SIGTERM where
 * the platform can ask for one. Natively and, in the windows preset, the
 * .exe programs under Wine with the same arguments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/support/proc.h"

static const char *argv0;
static char server_exe[4096], client_exe[4096];

/* Runs kv-client with args; returns its exit code and its stdout. */
static int client(const char *address, const char *a1, const char *a2, const char *a3,
                  char *out, size_t cap) {
  const char *args[4] = {address, a1, a2, a3};
  int n = a3 ? 4 : a2 ? 3 : 2;
  char path[256];
  snprintf(path, sizeof path, "kv-cli-%s.out", a1);
  test_proc *p = test_proc_start_out(client_exe, args, n, path);
  assert_non_null(p);
  int rc = test_proc_wait(p, 30000);
  test_proc_free(p);
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  size_t got = fread(out, 1, cap - 1, f);
  out[got] = '\0';
  fclose(f);
  remove(path);
  /* Windows programs write CRLF; compare lines, not line ends. */
  char *w = out;
  for (char *r = out; *r; r++)
    if (*r != '\r')
      *w++ = *r;
  *w = '\0';
  return rc;
}

static void test_kv_cli(void **state) {
  (void)state;
  char out[1024];
  const char *addr = test_address("kvcli");

  /* No server yet: exit 2 with a message. */
  assert_int_equal(client(addr, "get", "k", NULL, out, sizeof out), 2);

  const char *sargs[] = {addr};
  test_proc *server = test_proc_start(server_exe, sargs, 1);
  assert_non_null(server);
  /* kv-client connects with retry, so the first call waits for the server. */
  assert_int_equal(client(addr, "put", "color", "blue", out, sizeof out), 0);
  assert_string_equal(out, "stored color\n");
  assert_int_equal(client(addr, "put", "color", "green", out, sizeof out), 0);
  assert_string_equal(out, "replaced color\n");
  assert_int_equal(client(addr, "put", "shape", "circle", out, sizeof out), 0);
  assert_int_equal(client(addr, "get", "color", NULL, out, sizeof out), 0);
  assert_string_equal(out, "green\n"); /* the value alone on its line */
  assert_int_equal(client(addr, "list", NULL, NULL, out, sizeof out), 0);
  assert_string_equal(out, "color\nshape\n");
  assert_int_equal(client(addr, "del", "shape", NULL, out, sizeof out), 0);
  assert_int_equal(client(addr, "get", "shape", NULL, out, sizeof out), 1);
  assert_string_equal(out, ""); /* the message goes to stderr */
  assert_int_equal(client(addr, "del", "shape", NULL, out, sizeof out), 1);
  assert_int_equal(client(addr, "frobnicate", NULL, NULL, out, sizeof out), 64);

  /* A second kv-server on the same address fails with exit 2. */
  test_proc *second = test_proc_start(server_exe, sargs, 1);
  assert_non_null(second);
  assert_int_equal(test_proc_wait(second, 30000), 2);
  test_proc_free(second);

  if (test_proc_can_term()) {
    test_proc_term(server);
    assert_int_equal(test_proc_wait(server, 15000), 0); /* graceful stop */
  } else {
    test_proc_kill(server);
    test_proc_wait(server, 15000);
  }
  test_proc_free(server);
  assert_int_equal(client(addr, "get", "color", NULL, out, sizeof out), 2);
}

int main(int argc, char **argv) {
  (void)argc;
  argv0 = argv[0];
  snprintf(server_exe, sizeof server_exe, "%s", test_sibling_exe(argv0, "kv-server"));
  snprintf(client_exe, sizeof client_exe, "%s", test_sibling_exe(argv0, "kv-client"));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kv_cli),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
