/* The duct program as a user runs it, against kv-server and the probe
 * server: outputs compared with the expected text, exit codes and error
 * lines, reflection switched off (then --proto and --protoset), each
 * method kind, and a server stream ended by Ctrl-C. Natively and, in the
 * windows preset, duct.exe and the servers under Wine with the same
 * arguments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#ifdef _WIN32
#include <windows.h>
#endif

#include "tests/support/proc.h"
#include "tests/support/text.h"

static const char *argv0;
static char duct_exe[4096], kv_exe[4096], probe_exe[4096];
/* The protoc duct runs for --proto: the real one natively; on Windows a
 * stand-in (tests/cli/fake_protoc.c), since under Wine a Linux protoc
 * cannot be waited for. */
static char protoc_exe[4096];

/* What one run of duct printed. */
typedef struct run_out {
  int rc;
  char out[16384];
  char err[4096];
} run_out;

/* What a child wrote to `path` (tests/support/text.h), then removes it. */
static void slurp(const char *path, char *buf, size_t cap) {
  test_slurp(path, buf, cap);
  remove(path);
}

/* Runs duct with the NULL-terminated arguments, `in` (may be NULL) as its
 * standard input, and waits for it. */
static void duct_in(run_out *r, const char *in, ...) {
  const char *args[32];
  int n = 0;
  va_list ap;
  va_start(ap, in);
  const char *a;
  while ((a = va_arg(ap, const char *)) && n < 32)
    args[n++] = a;
  va_end(ap);
  const char *in_path = NULL;
  if (in) {
    in_path = "duct-cli.in";
    FILE *f = fopen(in_path, "wb");
    assert_non_null(f);
    fputs(in, f);
    fclose(f);
  }
  test_proc *p = test_proc_start_io(duct_exe, args, n, in_path, "duct-cli.out", "duct-cli.err");
  assert_non_null(p);
  r->rc = test_proc_wait(p, 60000);
  test_proc_free(p);
  if (in_path)
    remove(in_path);
  slurp("duct-cli.out", r->out, sizeof r->out);
  slurp("duct-cli.err", r->err, sizeof r->err);
}
#define DUCT(r, ...) duct_in(r, NULL, __VA_ARGS__, (const char *)NULL)

/* Fails with both outputs shown unless the run ended with `rc`. */
static void expect_rc(const run_out *r, int rc) {
  if (r->rc != rc)
    fail_msg("duct exited %d, expected %d\nstdout:\n%s\nstderr:\n%s", r->rc, rc, r->out, r->err);
}

static void expect_err(const run_out *r, int rc, const char *text) {
  expect_rc(r, rc);
  if (!strstr(r->err, text))
    fail_msg("stderr lacks '%s':\n%s", text, r->err);
}

static void expect_out(const run_out *r, const char *want) {
  expect_rc(r, 0);
  if (strcmp(r->out, want) != 0)
    fail_msg("stdout differs.\nexpected:\n%s\ngot:\n%s\nstderr:\n%s", want, r->out, r->err);
}

/* The test's server, killed by the teardown if the test fails first: a
 * server left running would hold ctest's output open. */
static test_proc *current_server;

static test_proc *start_server(const char *exe, const char *const *args, int n) {
  test_proc *p = test_proc_start(exe, args, n);
  assert_non_null(p);
  current_server = p;
  return p;
}

static void stop_server(test_proc *p) {
  test_proc_term(p);
  test_proc_wait(p, 15000);
  test_proc_free(p);
  current_server = NULL;
}

static int teardown(void **state) {
  (void)state;
  if (current_server)
    test_proc_free(current_server); /* kills it */
  current_server = NULL;
  return 0;
}

/* Asks for the list until the server answers (duct waits up to its
 * connect timeout for a server that is starting). */
static void wait_listening(const char *addr) {
  run_out r;
  DUCT(&r, "list", addr, "--connect-timeout", "20s");
  expect_rc(&r, 0);
}

/* The reflection service comes first: the server registers it itself. */
static const char *kv_list =
    "duct.reflection.v1.Reflection\n"
    "  ListServices          unary\n"
    "  FileContainingSymbol  unary\n"
    "duct.examples.kv.KeyValue\n"
    "  Put     unary\n"
    "  Get     unary\n"
    "  Delete  unary\n"
    "  List    unary\n"
    "  Watch   server-streaming\n";

static void test_usage(void **state) {
  (void)state;
  run_out r;
  DUCT(&r, "--help");
  expect_rc(&r, 0);
  assert_non_null(strstr(r.out, "usage: duct"));
  assert_non_null(strstr(r.out, "duct call kv duct.examples.kv.KeyValue/Put"));
  DUCT(&r, "call", "--help");
  expect_rc(&r, 0);
  assert_non_null(strstr(r.out, "server-streaming"));
  assert_non_null(strstr(r.out, "examples:"));
  DUCT(&r, "describe", "--help");
  expect_rc(&r, 0);
  DUCT(&r, "list", "--help");
  expect_rc(&r, 0);
  DUCT(&r, "frobnicate", "x");
  expect_err(&r, 3, "duct: INVALID_ARGUMENT: unknown command 'frobnicate'");
  DUCT(&r, "list");
  expect_err(&r, 3, "missing ADDRESS");
  DUCT(&r, "call", "somewhere");
  expect_err(&r, 3, "missing arguments");
  DUCT(&r, "list", "somewhere", "--deadline", "soon");
  expect_err(&r, 3, "--deadline: 'soon' is not a time");
  DUCT(&r, "list", "somewhere", "--max-message-size", "12");
  expect_err(&r, 3, "--max-message-size: '12'");
  DUCT(&r, "list", "somewhere", "--bogus");
  expect_err(&r, 3, "unknown option '--bogus'");
  /* Nobody at this address: UNAVAILABLE, quickly. */
  DUCT(&r, "list", test_address("nobody"), "--connect-timeout", "200ms");
  expect_err(&r, 14, "duct: UNAVAILABLE: cannot reach");
}

static void test_kv(void **state) {
  (void)state;
  const char *addr = test_address("clikv");
  const char *sargs[] = {addr};
  test_proc *server = start_server(kv_exe, sargs, 1);
  wait_listening(addr);
  run_out r;
  const char *put = "duct.examples.kv.KeyValue/Put";

  DUCT(&r, "list", addr);
  expect_out(&r, kv_list);

  DUCT(&r, "call", addr, put, "{\"key\":\"color\",\"value\":\"blue\"}");
  expect_out(&r, "{}\n");
  DUCT(&r, "call", addr, put, "-d", "{\"key\":\"color\",\"value\":\"green\"}");
  expect_out(&r, "{\"replaced\":true}\n");
  DUCT(&r, "call", addr, put, "{\"key\":\"color\",\"value\":\"red\"}", "--emit-defaults",
       "--pretty");
  expect_out(&r, "{\n  \"replaced\": true\n}\n");
  /* The method may also be written with a dot; the request from stdin. */
  duct_in(&r, "{\"key\": \"color\"}\n", "call", addr, "duct.examples.kv.KeyValue.Get", "-d", "@-",
          (const char *)NULL);
  expect_out(&r, "{\"value\":\"red\"}\n");
  /* ... or from a file. */
  FILE *f = fopen("duct-cli-req.json", "wb");
  assert_non_null(f);
  fputs("{\n  \"key\": \"color\"\n}\n", f);
  fclose(f);
  DUCT(&r, "call", addr, "duct.examples.kv.KeyValue/Get", "-d", "@duct-cli-req.json", "-v");
  remove("duct-cli-req.json");
  expect_out(&r, "{\"value\":\"red\"}\n");
  assert_non_null(strstr(r.err, "call took"));
  /* No request at all: {} is sent. */
  DUCT(&r, "call", addr, "duct.examples.kv.KeyValue/List");
  expect_out(&r, "{\"keys\":[\"color\"]}\n");

  /* The server's own error: its code and its message. */
  DUCT(&r, "call", addr, "duct.examples.kv.KeyValue/Get", "{\"key\":\"nope\"}");
  expect_err(&r, 5, "duct: NOT_FOUND: ");
  assert_non_null(strstr(r.err, "nope"));
  assert_string_equal(r.out, "");
  /* Bad requests never reach the server. */
  DUCT(&r, "call", addr, "duct.examples.kv.KeyValue/Get", "{\"kee\":\"x\"}");
  expect_err(&r, 3,
             "duct: INVALID_ARGUMENT: request (duct.examples.kv.GetRequest): kee: unknown field");
  DUCT(&r, "call", addr, "duct.examples.kv.KeyValue/Get", "{\"key\":7}");
  expect_err(&r, 3, "key: expected string");
  DUCT(&r, "call", addr, "duct.examples.kv.KeyValue/Get", "{\"key\":");
  expect_err(&r, 3, "INVALID_ARGUMENT: request (duct.examples.kv.GetRequest)");
  DUCT(&r, "call", addr, "duct.examples.kv.KeyValue/Get", "{} {}");
  expect_err(&r, 3, "takes one request");
  DUCT(&r, "call", addr, "duct.examples.kv.KeyValue/Nope");
  expect_err(&r, 5, "no method duct.examples.kv.KeyValue/Nope");
  DUCT(&r, "call", addr, "duct.examples.kv.Nope/Get");
  expect_err(&r, 5, "duct: NOT_FOUND: reflection: no symbol 'duct.examples.kv.Nope'");
  DUCT(&r, "call", addr, "Get");
  expect_err(&r, 3, "is not a method name");
  DUCT(&r, "describe", addr, "duct.examples.kv.Missing");
  expect_err(&r, 5, "duct: NOT_FOUND: ");

  /* describe: the service, one method, a message with a nested enum. */
  DUCT(&r, "describe", addr, "duct.examples.kv.KeyValue");
  expect_rc(&r, 0);
  assert_non_null(strstr(r.out, "service KeyValue {\n"));
  assert_non_null(strstr(r.out, "  rpc Watch(WatchRequest) returns (stream Event);\n"));
  DUCT(&r, "describe", addr, "duct.examples.kv.KeyValue/Put");
  expect_rc(&r, 0);
  assert_non_null(strstr(r.out, "rpc Put(PutRequest) returns (PutReply);"));
  DUCT(&r, "describe", addr, "duct.examples.kv.Event");
  expect_rc(&r, 0);
  assert_non_null(strstr(r.out, "message Event {\n"));
  assert_non_null(strstr(r.out, "  enum Kind {\n"));
  assert_non_null(strstr(r.out, "  string key = 2;\n"));

  stop_server(server);
}

/* Waits (up to a deadline) until the watcher's output file holds `want`,
 * putting the key again each round: a change made before the watch began
 * is not seen. */
static void await_watch(const char *addr, const char *path, const char *want) {
  char buf[4096];
  for (int round = 0; round < 300; round++) {
    run_out r;
    DUCT(&r, "call", addr, "duct.examples.kv.KeyValue/Put",
         "{\"key\":\"fruit/apple\",\"value\":\"red\"}");
    expect_rc(&r, 0);
    FILE *f = fopen(path, "rb");
    if (f) {
      size_t got = fread(buf, 1, sizeof buf - 1, f);
      buf[got] = '\0';
      fclose(f);
      if (strstr(buf, want))
        return;
    }
  }
  fail_msg("the watcher never printed '%s'; it printed:\n%s", want, buf);
}

static void test_kv_watch(void **state) {
  (void)state;
  const char *addr = test_address("cliwatch");
  const char *sargs[] = {addr};
  test_proc *server = start_server(kv_exe, sargs, 1);
  wait_listening(addr);
  const char *wargs[] = {"call", addr, "duct.examples.kv.KeyValue/Watch",
                         "{\"prefix\":\"fruit/\"}"};
  test_proc *w = test_proc_start_io(duct_exe, wargs, 4, NULL, "duct-watch.out", "duct-watch.err");
  assert_non_null(w);
  await_watch(addr, "duct-watch.out", "{\"key\":\"fruit/apple\",\"value\":\"red\"}");
  char out[8192], err[2048];
  if (test_proc_interrupt(w)) {
    /* Ctrl-C: the call is cancelled, what arrived was printed whole. */
    int rc = test_proc_wait(w, 15000);
    test_proc_free(w);
    slurp("duct-watch.out", out, sizeof out);
    slurp("duct-watch.err", err, sizeof err);
    if (rc != 1 || !strstr(err, "duct: CANCELLED: stopped by Ctrl-C after"))
      fail_msg("exit %d, stderr:\n%s", rc, err);
    print_message("the watch ended by Ctrl-C: %s", err);
    /* Every line is one whole event. */
    for (char *line = out; *line;) {
      char *nl = strchr(line, '\n');
      assert_non_null(nl);
      *nl = '\0';
      assert_string_equal(line, "{\"key\":\"fruit/apple\",\"value\":\"red\"}");
      line = nl + 1;
    }
    test_proc_term(server);
    int src = test_proc_wait(server, 15000);
    if (test_proc_can_term())
      assert_int_equal(src, 0);
  } else {
    /* Windows (not Wine) sends Ctrl-C to a whole console only; the
     * server going away ends the watch all the same, with the
     * connection's code. */
    test_proc_term(server);
    test_proc_wait(server, 15000);
    int rc = test_proc_wait(w, 15000);
    test_proc_free(w);
    slurp("duct-watch.out", out, sizeof out);
    slurp("duct-watch.err", err, sizeof err);
    if (rc != 14)
      fail_msg("exit %d, stderr:\n%s", rc, err);
  }
  test_proc_free(server);
  current_server = NULL;
}

static const char *probe_proto_dir = DUCT_TEST_PROBE_DIR;

static void test_probe_kinds(void **state) {
  (void)state;
  const char *addr = test_address("cliprobe");
  const char *sargs[] = {addr};
  test_proc *server = start_server(probe_exe, sargs, 1);
  wait_listening(addr);
  run_out r;
  /* bytes as base64, 64-bit integers as strings. */
  DUCT(&r, "call", addr, "duct.test.Probe/Echo", "{\"data\":\"aGVsbG8=\",\"tag\":7}");
  expect_out(&r, "{\"data\":\"aGVsbG8=\",\"tag\":7}\n");
  DUCT(&r, "call", addr, "duct.test.Probe/Range", "{\"count\":\"3\"}");
  expect_out(&r, "{}\n{\"n\":\"1\"}\n{\"n\":\"2\"}\n");
  /* Client streaming from stdin, one object per line. */
  duct_in(&r, "{\"n\":0}\n{\"n\":1}\n\n{\"n\":\"2\"}\n", "call", addr, "duct.test.Probe/Sum",
          (const char *)NULL);
  expect_out(&r, "{\"count\":\"3\",\"sum\":\"3\",\"inOrder\":true}\n");
  /* Bidi: each message echoed back. */
  duct_in(&r, "{\"n\":5}\n{\"n\":6,\"pad\":\"AA==\"}\n", "call", addr, "duct.test.Probe/Chat",
          (const char *)NULL);
  expect_out(&r, "{\"n\":\"5\"}\n{\"n\":\"6\",\"pad\":\"AA==\"}\n");
  /* A bad third request cancels the stream and names it. */
  duct_in(&r, "{\"n\":0}\n{\"n\":1}\n{\"m\":2}\n", "call", addr, "duct.test.Probe/Sum",
          (const char *)NULL);
  expect_err(&r, 3, "request 3 (duct.test.Seq): m: unknown field");
  /* Deadlines and the handler's own codes. */
  DUCT(&r, "call", addr, "duct.test.Probe/Sleep", "{\"ms\":5000}", "--deadline", "100ms");
  expect_err(&r, 4, "duct: DEADLINE_EXCEEDED");
  DUCT(&r, "call", addr, "duct.test.Probe/Fail", "{\"code\":9,\"message\":\"not now\"}");
  expect_err(&r, 9, "duct: FAILED_PRECONDITION: not now");
  DUCT(&r, "call", addr, "duct.test.Probe/Forbidden");
  expect_rc(&r, 7);
  /* A reply larger than --max-message-size is refused. */
  char big[64];
  snprintf(big, sizeof big, "{\"count\":\"1\",\"size\":%d}", 5000);
  DUCT(&r, "call", addr, "duct.test.Probe/Range", big, "--max-message-size", "1K");
  expect_rc(&r, 8);
  stop_server(server);
}

static void test_no_reflection(void **state) {
  (void)state;
  const char *addr = test_address("clinorefl");
  const char *sargs[] = {addr, "--no-reflection"};
  test_proc *server = start_server(probe_exe, sargs, 2);
  run_out r;
  DUCT(&r, "list", addr, "--connect-timeout", "20s");
  expect_err(&r, 12, "duct: UNIMPLEMENTED: the server at");
  assert_non_null(strstr(r.err, "--proto"));
  DUCT(&r, "call", addr, "duct.test.Probe/Echo", "{}");
  expect_rc(&r, 12);

  char proto[4096], set[4096];
  snprintf(proto, sizeof proto, "%s/probe.proto", probe_proto_dir);
  snprintf(set, sizeof set, "%s", DUCT_TEST_PROBE_SET);
  /* --proto runs protoc, named explicitly. */
  DUCT(&r, "call", addr, "duct.test.Probe/Echo", "{\"tag\":3}", "--proto", proto, "-I",
       probe_proto_dir, "--protoc", protoc_exe);
  expect_out(&r, "{\"tag\":3}\n");
  DUCT(&r, "list", addr, "--proto", proto, "--protoc", protoc_exe);
  expect_rc(&r, 0);
  assert_non_null(strstr(r.out, "duct.test.Probe\n  Echo       unary\n"));
  assert_non_null(strstr(r.out, "  Chat       bidi-streaming\n"));
  DUCT(&r, "call", addr, "duct.test.Probe/Echo", "{\"tag\":4}", "--protoset", set);
  expect_out(&r, "{\"tag\":4}\n");
  DUCT(&r, "describe", addr, "duct.test.Seq", "--protoset", set);
  expect_rc(&r, 0);
  assert_non_null(strstr(r.out, "message Seq {\n  uint64 n = 1;\n  bytes pad = 2;\n}"));
  /* What goes wrong with them is said. */
  DUCT(&r, "list", addr, "--proto", "no-such.proto", "--protoc", protoc_exe);
  expect_err(&r, 3, "protoc failed");
  DUCT(&r, "list", addr, "--proto", proto, "--protoc", "no-such-protoc-here");
  expect_err(&r, 5, "was not found");
  DUCT(&r, "list", addr, "--protoset", proto); /* a .proto is not a descriptor set */
  expect_rc(&r, 3);
#ifdef _WIN32
  /* Wine starts a Linux protoc but cannot wait for it: refused, with advice. */
  HMODULE ntdll = GetModuleHandleA("ntdll.dll");
  if (ntdll && GetProcAddress(ntdll, "wine_get_version")) {
    DUCT(&r, "list", addr, "--proto", proto, "--protoc", DUCT_TEST_PROTOC);
    expect_err(&r, 12, "cannot be waited for");
  }
#endif
  stop_server(server);
}

int main(int argc, char **argv) {
  (void)argc;
  argv0 = argv[0];
  snprintf(duct_exe, sizeof duct_exe, "%s", test_sibling_exe(argv0, "duct"));
  snprintf(kv_exe, sizeof kv_exe, "%s", test_sibling_exe(argv0, "kv-server"));
  snprintf(probe_exe, sizeof probe_exe, "%s", test_sibling_exe(argv0, "duct-probe-server"));
#ifdef _WIN32
  snprintf(protoc_exe, sizeof protoc_exe, "%s", test_sibling_exe(argv0, "duct-fake-protoc"));
#else
  snprintf(protoc_exe, sizeof protoc_exe, "%s", DUCT_TEST_PROTOC);
#endif
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_usage, teardown),
      cmocka_unit_test_teardown(test_kv, teardown),
      cmocka_unit_test_teardown(test_kv_watch, teardown),
      cmocka_unit_test_teardown(test_probe_kinds, teardown),
      cmocka_unit_test_teardown(test_no_reflection, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
