/* What only the POSIX transport does: where socket files go, the
 * directory's permissions, stale and foreign files at the path, limits
 * enforced by the socket layer. The conformance test (test_transport.c)
 * covers the behaviour shared with Windows. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/sys.h"
#include "runtime/conn.h"
#include "runtime/transport.h"

#define WAIT_MS 5000

/* ---- a minimal echoing core ---- */

typedef struct core {
  duct__mutex mu;
  duct__cond cv;
  int busy; /* mark every connection as running a call (never evictable) */
  int opened, closed;
  duct_code last_why;
  duct__conn *last_conn;
} core;

typedef struct cstate {
  core *k;
  duct__conn *c;
} cstate;

static void *cb_open(void *p, duct__conn *c, const duct_peer *peer) {
  core *k = p;
  (void)peer;
  cstate *s = malloc(sizeof *s);
  if (!s)
    return NULL;
  s->k = k;
  s->c = c;
  if (k->busy)
    atomic_store(&c->in_call, 1);
  duct__mutex_lock(&k->mu);
  k->opened++;
  k->last_conn = c;
  duct__cond_broadcast(&k->cv);
  duct__mutex_unlock(&k->mu);
  return s;
}

static int cb_message(void *p, const uint8_t *msg, size_t len) {
  cstate *s = p;
  duct__iov v = {msg, len};
  /* Whole messages only: nothing is ever half received (the idle clock
   * counts the wait for a first message as partial, as for a HELLO). */
  atomic_store(&s->c->partial_since, 0);
  return duct__conn_send(s->c, &v, 1) == DUCT_OK ? 0 : -1;
}

static void cb_closed(void *p, duct_code why, const char *detail) {
  cstate *s = p;
  core *k = s->k;
  (void)detail;
  duct__mutex_lock(&k->mu);
  k->closed++;
  k->last_why = why;
  duct__cond_broadcast(&k->cv);
  duct__mutex_unlock(&k->mu);
  free(s);
}

static const duct__srv_cb cbs = {.open = cb_open, .message = cb_message, .closed = cb_closed};

static void core_init(core *k) {
  memset(k, 0, sizeof *k);
  duct__mutex_init(&k->mu);
  duct__cond_init(&k->cv);
}

static void core_destroy(core *k) {
  duct__cond_destroy(&k->cv);
  duct__mutex_destroy(&k->mu);
}

static int wait_closed(core *k, int n) {
  int64_t dl = duct__now_ms() + WAIT_MS;
  duct__mutex_lock(&k->mu);
  while (k->closed < n && duct__now_ms() < dl)
    duct__cond_wait(&k->cv, &k->mu, dl);
  int ok = k->closed >= n;
  duct__mutex_unlock(&k->mu);
  return ok;
}

static duct__listen_opts opts(void) {
  duct__listen_opts o;
  memset(&o, 0, sizeof o);
  o.workers = 2;
  o.max_frame = 65536;
  o.max_connections = 64;
  o.idle_timeout_ms = 2000;
  o.queue_cap = 1u << 20;
  return o;
}

static duct_code listen_at(const char *addr, const duct__listen_opts *o, core *k,
                           duct__listener **l, duct__err *err) {
  err->text[0] = '\0';
  duct_code rc = duct__listen(addr, o, &cbs, k, l, err);
  if (rc == DUCT_OK)
    assert_int_equal(duct__listener_start(*l), DUCT_OK);
  return rc;
}

/* One round trip of a few bytes; DUCT_OK if it came back intact. */
static duct_code ping(const char *addr) {
  duct__link *k = NULL;
  duct__err err;
  duct_code rc = duct__link_open(addr, duct__now_ms() + WAIT_MS, &k, &err);
  if (rc != DUCT_OK)
    return rc;
  uint8_t out[5] = {1, 2, 3, 4, 5}, in[16];
  size_t n = 0;
  duct__iov v = {out, sizeof out};
  rc = duct__link_transact(k, &v, 1, in, sizeof in, &n, duct__now_ms() + WAIT_MS);
  if (rc == DUCT_OK && (n != sizeof out || memcmp(in, out, n) != 0))
    rc = DUCT_DATA_LOSS;
  duct__link_close(k);
  return rc;
}

static char tmpdir[64];

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/duct-ptest-XXXXXX");
  assert_non_null(mkdtemp(tmpdir));
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static mode_t mode_of(const char *path) {
  struct stat st;
  assert_int_equal(lstat(path, &st), 0);
  return st.st_mode;
}

static int exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

/* ---- tests ---- */

static void test_stale_socket_replaced(void **state) {
  (void)state;
  char path[128];
  snprintf(path, sizeof path, "%s/stale.sock", tmpdir);
  /* A server that died: a bound socket file nobody listens on. */
  int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  assert_true(strlen(path) < sizeof sa.sun_path);
  memcpy(sa.sun_path, path, strlen(path) + 1);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  close(fd);
  assert_true(S_ISSOCK(mode_of(path)));

  core k;
  core_init(&k);
  duct__listen_opts o = opts();
  duct__listener *l = NULL;
  duct__err err;
  assert_int_equal(listen_at(path, &o, &k, &l, &err), DUCT_OK);
  assert_int_equal(ping(path), DUCT_OK);
  duct__listener_free(l);
  assert_false(exists(path)); /* removed on free */
  core_destroy(&k);
}

static void test_foreign_file_not_replaced(void **state) {
  (void)state;
  char path[128];
  snprintf(path, sizeof path, "%s/not-a-socket", tmpdir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("precious", f);
  fclose(f);

  core k;
  core_init(&k);
  duct__listen_opts o = opts();
  duct__listener *l = NULL;
  duct__err err;
  assert_int_equal(listen_at(path, &o, &k, &l, &err), DUCT_ALREADY_EXISTS);
  assert_non_null(strstr(err.text, path));
  assert_true(S_ISREG(mode_of(path)));
  unlink(path);
  core_destroy(&k);
}

static void test_live_server_detected_by_path(void **state) {
  (void)state;
  char path[128];
  snprintf(path, sizeof path, "%s/live.sock", tmpdir);
  core k;
  core_init(&k);
  duct__listen_opts o = opts();
  duct__listener *l = NULL, *l2 = NULL;
  duct__err err;
  assert_int_equal(listen_at(path, &o, &k, &l, &err), DUCT_OK);
  assert_int_equal(duct__listen(path, &o, &cbs, &k, &l2, &err),
                   DUCT_ALREADY_EXISTS);
  assert_non_null(strstr(err.text, "live server"));
  assert_int_equal(ping(path), DUCT_OK);
  duct__listener_free(l);
  core_destroy(&k);
}

/* Freeing removes the socket file only if it is still the one it bound. */
static void test_free_keeps_replaced_file(void **state) {
  (void)state;
  char path[128];
  snprintf(path, sizeof path, "%s/replaced.sock", tmpdir);
  core k;
  core_init(&k);
  duct__listen_opts o = opts();
  duct__listener *l = NULL;
  duct__err err;
  assert_int_equal(listen_at(path, &o, &k, &l, &err), DUCT_OK);
  assert_int_equal(unlink(path), 0);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fclose(f);
  duct__listener_free(l);
  assert_true(exists(path));
  unlink(path);
  core_destroy(&k);
}

static void test_name_dir_modes(void **state) {
  (void)state;
  char xdg[128], dir[160], sock[192];
  snprintf(xdg, sizeof xdg, "%s/xdg", tmpdir);
  assert_int_equal(mkdir(xdg, 0700), 0);
  setenv("XDG_RUNTIME_DIR", xdg, 1);
  snprintf(dir, sizeof dir, "%s/duct", xdg);
  snprintf(sock, sizeof sock, "%s/modes", dir);

  core k;
  core_init(&k);
  duct__listen_opts o = opts();
  duct__listener *l = NULL;
  duct__err err;

  /* Created private. */
  assert_int_equal(listen_at("modes", &o, &k, &l, &err), DUCT_OK);
  assert_int_equal(mode_of(dir) & 07777, 0700);
  assert_true(S_ISSOCK(mode_of(sock)));
  assert_int_equal(mode_of(sock) & 0777, 0600);
  assert_int_equal(ping("modes"), DUCT_OK);
  duct__listener_free(l);
  assert_false(exists(sock));

  /* Group access when asked for. */
  o.allow_group = 1;
  assert_int_equal(listen_at("modes", &o, &k, &l, &err), DUCT_OK);
  assert_int_equal(mode_of(dir) & 07777, 0750);
  assert_int_equal(mode_of(sock) & 0777, 0660);
  duct__listener_free(l);

  /* Too loose (left by someone's umask or an old run): corrected. */
  assert_int_equal(chmod(dir, 0777), 0);
  o.allow_group = 0;
  assert_int_equal(listen_at("modes", &o, &k, &l, &err), DUCT_OK);
  assert_int_equal(mode_of(dir) & 07777, 0700);
  duct__listener_free(l);

  /* A symlink where duct's directory should be: refused, not followed. */
  char elsewhere[160];
  snprintf(elsewhere, sizeof elsewhere, "%s/elsewhere", tmpdir);
  assert_int_equal(mkdir(elsewhere, 0700), 0);
  assert_int_equal(rmdir(dir), 0);
  assert_int_equal(symlink(elsewhere, dir), 0);
  assert_int_equal(listen_at("modes", &o, &k, &l, &err), DUCT_PERMISSION_DENIED);
  assert_non_null(strstr(err.text, dir));
  duct__link *lk = NULL;
  assert_int_equal(duct__link_open("modes", duct__now_ms() + 100, &lk, &err),
                   DUCT_PERMISSION_DENIED);
  assert_int_equal(unlink(dir), 0);

  /* Owned by another user: refused (only testable as root). */
  if (geteuid() == 0) {
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(chown(dir, 65534, 65534), 0);
    assert_int_equal(listen_at("modes", &o, &k, &l, &err),
                     DUCT_PERMISSION_DENIED);
    assert_non_null(strstr(err.text, "owned by uid 65534"));
    /* A client will not connect through it either. */
    duct__link *c = NULL;
    assert_int_equal(duct__link_open("modes", duct__now_ms() + 100, &c, &err),
                     DUCT_PERMISSION_DENIED);
    assert_int_equal(rmdir(dir), 0);
  }
  unsetenv("XDG_RUNTIME_DIR");
  core_destroy(&k);
}

static void test_absolute_path_dirs(void **state) {
  (void)state;
  char dir[128], sock[160];
  core k;
  core_init(&k);
  duct__listen_opts o = opts();
  duct__listener *l = NULL;
  duct__err err;

  /* A missing last directory is created with the listener's mode. */
  snprintf(dir, sizeof dir, "%s/private", tmpdir);
  snprintf(sock, sizeof sock, "%s/s", dir);
  assert_int_equal(listen_at(sock, &o, &k, &l, &err), DUCT_OK);
  assert_int_equal(mode_of(dir) & 07777, 0700);
  duct__listener_free(l);

  snprintf(dir, sizeof dir, "%s/group", tmpdir);
  snprintf(sock, sizeof sock, "%s/s", dir);
  o.allow_group = 1;
  assert_int_equal(listen_at(sock, &o, &k, &l, &err), DUCT_OK);
  assert_int_equal(mode_of(dir) & 07777, 0750);
  duct__listener_free(l);

  /* An existing directory is the user's: its mode is left alone. */
  snprintf(dir, sizeof dir, "%s/mine", tmpdir);
  assert_int_equal(mkdir(dir, 0755), 0);
  assert_int_equal(chmod(dir, 0755), 0);
  snprintf(sock, sizeof sock, "%s/s", dir);
  assert_int_equal(listen_at(sock, &o, &k, &l, &err), DUCT_OK);
  assert_int_equal(mode_of(dir) & 07777, 0755);
  duct__listener_free(l);
  core_destroy(&k);
}

static void test_tmp_fallback(void **state) {
  (void)state;
  char name[64], sock[128];
  snprintf(name, sizeof name, "duct-ptest-%ld", (long)getpid());
  snprintf(sock, sizeof sock, "/tmp/duct-%lu/%s", (unsigned long)geteuid(), name);
  core k;
  core_init(&k);
  duct__listen_opts o = opts();
  duct__listener *l = NULL;
  duct__err err;

  /* Unset, and set but unusable (missing): both fall back to /tmp. */
  const char *xdg[2] = {NULL, "/nonexistent/duct-test-runtime-dir"};
  for (int i = 0; i < 2; i++) {
    if (xdg[i])
      setenv("XDG_RUNTIME_DIR", xdg[i], 1);
    else
      unsetenv("XDG_RUNTIME_DIR");
    assert_int_equal(listen_at(name, &o, &k, &l, &err), DUCT_OK);
    assert_true(S_ISSOCK(mode_of(sock)));
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/duct-%lu", (unsigned long)geteuid());
    assert_int_equal(mode_of(dir) & 077, 0);
    assert_int_equal(ping(name), DUCT_OK);
    duct__listener_free(l);
    assert_false(exists(sock));
  }
  unsetenv("XDG_RUNTIME_DIR");
  core_destroy(&k);
}

static void test_bad_addresses(void **state) {
  (void)state;
  char longpath[200];
  memset(longpath, 'x', sizeof longpath - 1);
  longpath[0] = '/';
  longpath[sizeof longpath - 1] = '\0';
  const char *bad[] = {"", "a/b", "./x", ".", "..", longpath, "/tmp/dir/"};
  core k;
  core_init(&k);
  duct__listen_opts o = opts();
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    duct__listener *l = NULL;
    duct__link *c = NULL;
    duct__err err;
    err.text[0] = '\0';
    assert_int_equal(duct__listen(bad[i], &o, &cbs, &k, &l, &err),
                     DUCT_INVALID_ARGUMENT);
    assert_null(l);
    assert_true(strlen(err.text) > 10);
    err.text[0] = '\0';
    assert_int_equal(duct__link_open(bad[i], duct__now_ms() + 100, &c, &err),
                     DUCT_INVALID_ARGUMENT);
    assert_true(strlen(err.text) > 10);
  }
  core_destroy(&k);
}

/* At max_connections the longest-idle connection makes room for a new
 * one; when every connection is busy the new one is closed at once. */
static void max_connections_case(int busy) {
  char path[128];
  snprintf(path, sizeof path, "%s/max%d.sock", tmpdir, busy);
  core k;
  core_init(&k);
  k.busy = busy;
  duct__listen_opts o = opts();
  o.max_connections = 2;
  duct__listener *l = NULL;
  duct__err err;
  assert_int_equal(listen_at(path, &o, &k, &l, &err), DUCT_OK);
  duct__link *c[3];
  uint8_t b = 1, in[8];
  size_t n;
  duct__iov v = {&b, 1};
  for (int i = 0; i < 2; i++) {
    assert_int_equal(duct__link_open(path, duct__now_ms() + WAIT_MS, &c[i], &err),
                     DUCT_OK);
    assert_int_equal(duct__link_transact(c[i], &v, 1, in, sizeof in, &n,
                                         duct__now_ms() + WAIT_MS),
                     DUCT_OK);
  }
  /* The third connects (the kernel completes it in the backlog)... */
  assert_int_equal(duct__link_open(path, duct__now_ms() + WAIT_MS, &c[2], &err),
                   DUCT_OK);
  duct_code third = duct__link_transact(c[2], &v, 1, in, sizeof in, &n,
                                        duct__now_ms() + WAIT_MS);
  if (busy) {
    /* ...and with nobody idle it is closed by the server at once. */
    assert_int_equal(third, DUCT_UNAVAILABLE);
    assert_int_equal(k.opened, 2);
  } else {
    /* ...and is served: the first, idle longest, was closed for it. */
    assert_int_equal(third, DUCT_OK);
    assert_true(wait_closed(&k, 1));
    assert_int_equal(k.last_why, DUCT_RESOURCE_EXHAUSTED);
    assert_int_equal(duct__link_transact(c[0], &v, 1, in, sizeof in, &n,
                                         duct__now_ms() + WAIT_MS),
                     DUCT_UNAVAILABLE);
    assert_int_equal(duct__link_transact(c[1], &v, 1, in, sizeof in, &n,
                                         duct__now_ms() + WAIT_MS),
                     DUCT_OK);
  }
  for (int i = 0; i < 3; i++)
    duct__link_close(c[i]);
  duct__listener_free(l);
  assert_int_equal(k.closed, k.opened);
  core_destroy(&k);
}

static void test_max_connections_idle_make_room(void **state) {
  (void)state;
  max_connections_case(0);
}

static void test_max_connections_busy_refuse(void **state) {
  (void)state;
  max_connections_case(1);
}

/* A message larger than the default socket send buffer (EMSGSIZE for
 * SOCK_SEQPACKET) still goes out whole after the buffer is grown, and
 * the server refuses it as too large instead of reading part of it. */
static void test_huge_message_refused_whole(void **state) {
  (void)state;
  char path[128];
  snprintf(path, sizeof path, "%s/huge.sock", tmpdir);
  core k;
  core_init(&k);
  duct__listen_opts o = opts();
  duct__listener *l = NULL;
  duct__err err;
  assert_int_equal(listen_at(path, &o, &k, &l, &err), DUCT_OK);
  duct__link *c = NULL;
  assert_int_equal(duct__link_open(path, duct__now_ms() + WAIT_MS, &c, &err),
                   DUCT_OK);
  /* Larger than the link's send buffer (it asks for 256 KiB, which the
   * kernel doubles), so the first sendmsg fails with EMSGSIZE. Whether
   * the buffer may grow enough depends on net.core.wmem_max. */
  size_t big = 600 * 1024;
  long wmem_max = 0;
  FILE *f = fopen("/proc/sys/net/core/wmem_max", "r");
  if (f) {
    if (fscanf(f, "%ld", &wmem_max) != 1)
      wmem_max = 0;
    fclose(f);
  }
  uint8_t *buf = calloc(1, big);
  assert_non_null(buf);
  duct__iov v = {buf, big};
  duct_code rc = duct__link_send(c, &v, 1, duct__now_ms() + WAIT_MS);
  if (wmem_max * 2 > (long)big + 65536) {
    assert_int_equal(rc, DUCT_OK);
    assert_true(wait_closed(&k, 1));
    assert_int_equal(k.last_why, DUCT_RESOURCE_EXHAUSTED);
  } else {
    assert_int_equal(rc, DUCT_RESOURCE_EXHAUSTED); /* refused, not cut */
  }
  free(buf);
  duct__link_close(c);
  duct__listener_free(l);
  core_destroy(&k);
}

/* Writing to a server that hung up is DUCT_UNAVAILABLE, never a SIGPIPE
 * (which by default would end this process). */
static void test_no_sigpipe(void **state) {
  (void)state;
  char path[128];
  snprintf(path, sizeof path, "%s/pipe.sock", tmpdir);
  core k;
  core_init(&k);
  duct__listen_opts o = opts();
  duct__listener *l = NULL;
  duct__err err;
  assert_int_equal(listen_at(path, &o, &k, &l, &err), DUCT_OK);
  duct__link *c = NULL;
  assert_int_equal(duct__link_open(path, duct__now_ms() + WAIT_MS, &c, &err),
                   DUCT_OK);
  duct__listener_free(l);
  uint8_t b = 1;
  duct__iov v = {&b, 1};
  duct_code rc = DUCT_OK;
  for (int i = 0; i < 10 && rc == DUCT_OK; i++)
    rc = duct__link_send(c, &v, 1, duct__now_ms() + WAIT_MS);
  assert_int_equal(rc, DUCT_UNAVAILABLE);
  duct__link_close(c);
  core_destroy(&k);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stale_socket_replaced),
      cmocka_unit_test(test_foreign_file_not_replaced),
      cmocka_unit_test(test_live_server_detected_by_path),
      cmocka_unit_test(test_free_keeps_replaced_file),
      cmocka_unit_test(test_name_dir_modes),
      cmocka_unit_test(test_absolute_path_dirs),
      cmocka_unit_test(test_tmp_fallback),
      cmocka_unit_test(test_bad_addresses),
      cmocka_unit_test(test_max_connections_idle_make_room),
      cmocka_unit_test(test_max_connections_busy_refuse),
      cmocka_unit_test(test_huge_message_refused_whole),
      cmocka_unit_test(test_no_sigpipe),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
