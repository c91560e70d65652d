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
#include "tests/support/text.h"

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
  test_slurp(path, out, cap);
  remove(path);
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

/* Waits (up to a deadline) until the watcher's output contains `want`,
 * putting `key` again every round: a change made before the watch is in
 * place is not seen, and this is how a user would find out. */
static void wait_output(const char *addr, const char *path, const char *want, const char *key,
                        char *out, size_t cap) {
  char junk[256];
  for (int i = 0; i < 300; i++) {
    if (key)
      assert_int_equal(client(addr, "put", key, "1", junk, sizeof junk), 0);
    test_slurp(path, out, cap);
    if (strstr(out, want))
      return;
  }
  fail_msg("the watcher never printed '%s'; it printed:\n%s", want, out);
}

static void test_kv_watch(void **state) {
  (void)state;
  char out[4096];
  const char *addr = test_address("kvwatch");
  const char *sargs[] = {addr};
  test_proc *server = test_proc_start(server_exe, sargs, 1);
  assert_non_null(server);
  assert_int_equal(client(addr, "put", "warmup", "1", out, sizeof out), 0);

  const char *path = "kv-cli-watch.out";
  const char *wargs[] = {addr, "watch", "fruit/"};
  test_proc *watcher = test_proc_start_out(client_exe, wargs, 3, path);
  assert_non_null(watcher);
  wait_output(addr, path, "put fruit/ready 1\n", "fruit/ready", out, sizeof out);
  /* Now every change under the prefix, and nothing else, in order. */
  assert_int_equal(client(addr, "put", "fruit/apple", "red", out, sizeof out), 0);
  assert_int_equal(client(addr, "put", "veg/leek", "green", out, sizeof out), 0);
  assert_int_equal(client(addr, "put", "fruit/apple", "green", out, sizeof out), 0);
  assert_int_equal(client(addr, "del", "fruit/apple", NULL, out, sizeof out), 0);
  assert_int_equal(client(addr, "put", "fruit/zz", "last", out, sizeof out), 0);
  wait_output(addr, path, "put fruit/zz last\n", NULL, out, sizeof out);
  const char *tail = strstr(out, "put fruit/apple red\n");
  assert_non_null(tail);
  assert_string_equal(tail, "put fruit/apple red\n"
                            "put fruit/apple green\n"
                            "del fruit/apple\n"
                            "put fruit/zz last\n");

  if (test_proc_can_term()) {
    /* Ctrl-C (SIGTERM here) ends the watch: exit 0. */
    test_proc_term(watcher);
    assert_int_equal(test_proc_wait(watcher, 15000), 0);
    test_proc_free(watcher);
    watcher = test_proc_start_out(client_exe, wargs, 3, path);
    assert_non_null(watcher);
    wait_output(addr, path, "put fruit/again 1\n", "fruit/again", out, sizeof out);
    /* The server stopping ends it too: exit 0 with a message. */
    test_proc_term(server);
    assert_int_equal(test_proc_wait(server, 15000), 0);
  } else {
    /* Windows: no Ctrl-C for one child; the server going away ends the
     * watch all the same. */
    test_proc_kill(server);
    test_proc_wait(server, 15000);
  }
  assert_int_equal(test_proc_wait(watcher, 15000), 0);
  test_proc_free(watcher);
  test_proc_free(server);
  remove(path);
}

int main(int argc, char **argv) {
  (void)argc;
  argv0 = argv[0];
  snprintf(server_exe, sizeof server_exe, "%s", test_sibling_exe(argv0, "kv-server"));
  snprintf(client_exe, sizeof client_exe, "%s", test_sibling_exe(argv0, "kv-client"));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kv_cli),
      cmocka_unit_test(test_kv_watch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
