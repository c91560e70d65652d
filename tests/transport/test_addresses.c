/* docs/GUIDE.md's address table, row by row, through the public API:
 * duct_server_listen and duct_channel_open on every row, natively and (in
 * the windows preset) under Wine. An accepted form must really serve and
 * connect; a refused one must give DUCT_INVALID_ARGUMENT at once and one
 * log line, through the user's log callback, with a phrase that says what
 * the address looked like. Also the refused options (max_message_size,
 * workers): refused, and logged with the option's name, the value and the
 * accepted range.
 *
 * The table below is the GUIDE's table; each row says what it means on
 * each system, and DUCT_TEST_WINDOWS (set by CMake) picks the column, so
 * the file has no #ifdef. Server and client run in one process; nothing
 * here waits on time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <duct/duct.h>

#include "runtime/sys.h"

static const int on_windows = DUCT_TEST_WINDOWS;

/* ---- the log callback: every line kept, for the asserts ---- */

typedef struct logcap {
  duct__mutex mu;
  int lines, errors;
  char text[8192]; /* every line, '\n'-separated, truncated when full */
} logcap;

static void capture(void *user, duct_log_level level, const char *line) {
  logcap *c = user;
  duct__mutex_lock(&c->mu);
  c->lines++;
  if (level == DUCT_LOG_ERROR)
    c->errors++;
  size_t used = strlen(c->text);
  snprintf(c->text + used, sizeof c->text - used, "%s\n", line);
  duct__mutex_unlock(&c->mu);
}

static void logcap_init(logcap *c) {
  memset(c, 0, sizeof *c);
  duct__mutex_init(&c->mu);
}

/* Asserts that exactly one error line was logged and that it holds every
 * phrase given (NULL-terminated). */
static void assert_logged(logcap *c, ...) {
  duct__mutex_lock(&c->mu);
  int errors = c->errors;
  char text[sizeof c->text];
  memcpy(text, c->text, sizeof text);
  duct__mutex_unlock(&c->mu);
  if (errors != 1)
    print_error("expected one error line, got %d:\n%s", errors, text);
  assert_int_equal(errors, 1);
  va_list ap;
  va_start(ap, c);
  for (const char *p; (p = va_arg(ap, const char *)) != NULL;) {
    if (!strstr(text, p))
      print_error("log lacks \"%s\":\n%s", p, text);
    assert_non_null(strstr(text, p));
  }
  va_end(ap);
}

/* ---- the table ---- */

typedef struct row {
  const char *name; /* the cmocka test's name */
  /* The address; "%s" (at most once) becomes a name unique to this run,
   * so concurrent runs and rows never meet. */
  const char *form;
  /* Per system: NULL if the form is accepted, else a phrase the refusal
   * must contain. */
  const char *posix_refusal, *win_refusal;
  /* For accepted rows: the client's spelling of the same place, if it
   * differs (a name and its full pipe name are one pipe). */
  const char *client_form;
  int windows_only; /* a row about Windows alone: skipped elsewhere */
} row;

/* A row whose client spells the address as the server does. */
#define R(name, form, posix, win) {name, form, posix, win, NULL, 0}

static const row rows[] = {
    R("name", "duct-addr-%s", NULL, NULL),
    /* Names are printable UTF-8: punctuation and non-ASCII letters pass. */
    R("name_utf8_punctuation", "duct addr.%s_\xc3\xa9+@~", NULL, NULL),
    R("pipe_name", "\\\\.\\pipe\\duct-addr-%s", "a Windows pipe name", NULL),
    /* One pipe, two spellings: served by name, reached by full name. */
    {"pipe_name_meets_name", "duct-addr-%s", NULL, NULL, "\\\\.\\PIPE\\duct-addr-%s", 1},
    R("pipe_name_empty", "\\\\.\\pipe\\", "a Windows pipe name", "names no pipe"),
    R("absolute_path", "/tmp/duct-addr-%s.sock", NULL, "a POSIX socket path"),
    R("remote_pipe", "\\\\server\\pipe\\duct-addr", "another machine", "another machine"),
    R("device_path", "\\\\?\\C:\\duct-addr", "another machine", "another machine"),
    R("drive_path", "C:\\duct\\addr.sock", "a Windows file path", "a Windows file path"),
    R("drive_path_slash", "c:/duct/addr.sock", "a Windows file path", "a Windows file path"),
    R("rooted_path", "\\duct\\addr", "a Windows file path", "a Windows file path"),
    R("relative_path", "run/duct-addr.sock", "a relative path", "a relative path"),
    R("relative_dot_path", "./duct-addr", "a relative path", "a relative path"),
    R("name_with_backslash", "duct\\addr", "may not contain '\\'", "may not contain '\\'"),
    R("dot", ".", "not a usable name", "not a usable name"),
    R("dot_dot", "..", "not a usable name", "not a usable name"),
    R("empty", "", "empty address", "empty address"),
    R("control_character", "duct\naddr", "printable UTF-8", "printable UTF-8"),
    R("malformed_utf8", "duct\xc3(addr", "printable UTF-8", "printable UTF-8"),
};

static int seq;

static void expand(char *buf, size_t cap, const char *form) {
  char tag[48];
  snprintf(tag, sizeof tag, "%lu-%d", (unsigned long)duct__getpid(), seq);
  const char *p = strstr(form, "%s");
  if (!p) {
    snprintf(buf, cap, "%s", form);
    return;
  }
  snprintf(buf, cap, "%.*s%s%s", (int)(p - form), form, tag, p + 2);
}

static duct_server *server_new(logcap *lc) {
  duct_server_opts so = {.workers = 1, .log = capture, .log_user = lc};
  duct_server *s = NULL;
  assert_int_equal(duct_server_new(&so, &s), DUCT_OK);
  return s;
}

static void test_row(void **state) {
  const row *r = *state;
  if (r->windows_only && !on_windows)
    skip();
  const char *refusal = on_windows ? r->win_refusal : r->posix_refusal;
  char addr[256], client_addr[256];
  ++seq;
  expand(addr, sizeof addr, r->form);
  expand(client_addr, sizeof client_addr, r->client_form ? r->client_form : r->form);

  logcap slog, clog;
  logcap_init(&slog);
  logcap_init(&clog);
  duct_server *s = server_new(&slog);
  duct_channel_opts co = {.connect_timeout_ms = 5000, .log = capture, .log_user = &clog};
  duct_channel *ch = NULL;

  if (refusal) {
    assert_int_equal(duct_server_listen(s, addr), DUCT_INVALID_ARGUMENT);
    assert_logged(&slog, refusal, "cannot listen on", NULL);
    /* Refused before any connection attempt: no retrying until
     * connect_timeout_ms for an address that can never work. */
    int64_t t0 = duct__now_ms();
    assert_int_equal(duct_channel_open(addr, &co, &ch), DUCT_INVALID_ARGUMENT);
    assert_true(duct__now_ms() - t0 < 2500);
    assert_null(ch);
    assert_logged(&clog, refusal, "cannot open a channel to", NULL);
    /* The server is still usable after a refused address. */
    char name[64];
    snprintf(name, sizeof name, "duct-addr-%lu-%d-after", (unsigned long)duct__getpid(), seq);
    assert_int_equal(duct_server_listen(s, name), DUCT_OK);
  } else {
    duct_code rc = duct_server_listen(s, addr);
    if (rc != DUCT_OK)
      print_error("listen %s: %s\n%s", addr, duct_code_name(rc), slog.text);
    assert_int_equal(rc, DUCT_OK);
    assert_int_equal(duct_server_start(s), DUCT_OK);
    rc = duct_channel_open(client_addr, &co, &ch);
    if (rc != DUCT_OK)
      print_error("open %s: %s\n%s", client_addr, duct_code_name(rc), clog.text);
    assert_int_equal(rc, DUCT_OK);
    assert_non_null(ch);
    duct_channel_close(ch);
  }
  duct_server_free(s);
  if (!refusal) /* the workers are gone: no lock needed */
    assert_int_equal(slog.errors + clog.errors, 0);
  duct__mutex_destroy(&slog.mu);
  duct__mutex_destroy(&clog.mu);
}

/* ---- refused options ---- */

static void test_server_max_message_size_too_small(void **state) {
  (void)state;
  logcap lc;
  logcap_init(&lc);
  duct_server_opts so = {.max_message_size = 512, .log = capture, .log_user = &lc};
  duct_server *s = (duct_server *)&lc; /* must come back NULL */
  assert_int_equal(duct_server_new(&so, &s), DUCT_INVALID_ARGUMENT);
  assert_null(s);
  assert_logged(&lc, "max_message_size", "512", "1024", NULL);
  duct__mutex_destroy(&lc.mu);
}

static void test_server_workers_out_of_range(void **state) {
  (void)state;
  logcap lc;
  logcap_init(&lc);
  duct_server_opts so = {.workers = -3, .log = capture, .log_user = &lc};
  duct_server *s = NULL;
  assert_int_equal(duct_server_new(&so, &s), DUCT_INVALID_ARGUMENT);
  assert_null(s);
  assert_logged(&lc, "workers", "-3", "1..1024", NULL);
  duct__mutex_destroy(&lc.mu);
}

static void test_channel_max_message_size_too_small(void **state) {
  (void)state;
  logcap lc;
  logcap_init(&lc);
  /* Refused before the address is looked at: no server needed. */
  duct_channel_opts co = {.max_message_size = 1023, .log = capture, .log_user = &lc};
  duct_channel *ch = NULL;
  assert_int_equal(duct_channel_open("duct-addr-nobody", &co, &ch), DUCT_INVALID_ARGUMENT);
  assert_null(ch);
  assert_logged(&lc, "max_message_size", "1023", "1024", NULL);
  duct__mutex_destroy(&lc.mu);
}

/* The smallest accepted size is accepted, on both ends, and connects. */
static void test_max_message_size_minimum_accepted(void **state) {
  (void)state;
  logcap lc;
  logcap_init(&lc);
  char addr[64];
  snprintf(addr, sizeof addr, "duct-addr-%lu-min", (unsigned long)duct__getpid());
  duct_server_opts so = {.workers = 1, .max_message_size = 1024, .log = capture,
                         .log_user = &lc};
  duct_server *s = NULL;
  assert_int_equal(duct_server_new(&so, &s), DUCT_OK);
  assert_int_equal(duct_server_listen(s, addr), DUCT_OK);
  assert_int_equal(duct_server_start(s), DUCT_OK);
  duct_channel_opts co = {.max_message_size = 1024, .log = capture, .log_user = &lc};
  duct_channel *ch = NULL;
  assert_int_equal(duct_channel_open(addr, &co, &ch), DUCT_OK);
  duct_channel_close(ch);
  duct_server_free(s);
  assert_int_equal(lc.errors, 0);
  duct__mutex_destroy(&lc.mu);
}

int main(void) {
  enum { NROWS = sizeof rows / sizeof rows[0] };
  struct CMUnitTest tests[NROWS + 4];
  memset(tests, 0, sizeof tests);
  for (size_t i = 0; i < NROWS; i++) {
    tests[i].name = rows[i].name;
    tests[i].test_func = test_row;
    tests[i].initial_state = (void *)&rows[i];
  }
  const struct CMUnitTest more[] = {
      cmocka_unit_test(test_server_max_message_size_too_small),
      cmocka_unit_test(test_server_workers_out_of_range),
      cmocka_unit_test(test_channel_max_message_size_too_small),
      cmocka_unit_test(test_max_message_size_minimum_accepted),
  };
  memcpy(tests + NROWS, more, sizeof more);
  return _cmocka_run_group_tests("test_addresses", tests, NROWS + 4, NULL, NULL);
}
