/* Windows transport: who may connect (the pipe's DACL), who owns a name
 * (FILE_FLAG_FIRST_PIPE_INSTANCE), addresses, and sys.c. The DACL is read
 * back from a client handle to the pipe, the way an auditor would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

/* After <windows.h>, which they need but do not include. */
#include <aclapi.h>
#include <sddl.h>

#define WAIT_MS 10000

static char self_sid[192];

static void full_name(wchar_t *w, size_t cap, const char *name) {
  char buf[300];
  snprintf(buf, sizeof buf, "\\\\.\\pipe\\%s", name);
  MultiByteToWideChar(CP_UTF8, 0, buf, -1, w, (int)cap);
}

/* What the DACL of the pipe called `name` says, read through a client
 * handle: the number of ACEs, which SIDs they name, and the SDDL. */
typedef struct dacl_view {
  int read_ok;
  int present, is_null;
  int aces;
  int has_self, has_system, has_everyone, has_anonymous;
  char sddl[512];
} dacl_view;

static void read_dacl(const char *name, dacl_view *v) {
  memset(v, 0, sizeof *v);
  wchar_t w[300];
  full_name(w, 300, name);
  HANDLE h = CreateFileW(w, GENERIC_READ | GENERIC_WRITE, 0, NULL,
                         OPEN_EXISTING, 0, NULL);
  assert_true(h != INVALID_HANDLE_VALUE);
  PACL dacl = NULL;
  PSECURITY_DESCRIPTOR sd = NULL;
  DWORD rc = GetSecurityInfo(h, SE_KERNEL_OBJECT, DACL_SECURITY_INFORMATION,
                             NULL, NULL, &dacl, NULL, &sd);
  CloseHandle(h);
  if (rc != ERROR_SUCCESS) {
    print_message("GetSecurityInfo failed: %lu\n", (unsigned long)rc);
    return;
  }
  v->read_ok = 1;
  BOOL present = FALSE, defaulted = FALSE;
  PACL d2 = NULL;
  GetSecurityDescriptorDacl(sd, &present, &d2, &defaulted);
  v->present = present;
  v->is_null = dacl == NULL;
  char *s = NULL;
  if (ConvertSecurityDescriptorToStringSecurityDescriptorA(
          sd, SDDL_REVISION_1, DACL_SECURITY_INFORMATION, &s, NULL)) {
    snprintf(v->sddl, sizeof v->sddl, "%s", s);
    LocalFree(s);
  }
  for (DWORD i = 0; dacl != NULL && i < dacl->AceCount; i++) {
    ACE_HEADER *ace;
    assert_true(GetAce(dacl, i, (void **)&ace));
    if (ace->AceType != ACCESS_ALLOWED_ACE_TYPE)
      continue;
    v->aces++;
    char *sid = NULL;
    assert_true(ConvertSidToStringSidA(&((ACCESS_ALLOWED_ACE *)ace)->SidStart,
                                       &sid));
    if (strcmp(sid, self_sid) == 0)
      v->has_self = 1;
    if (strcmp(sid, "S-1-5-18") == 0)
      v->has_system = 1;
    if (strcmp(sid, "S-1-1-0") == 0)
      v->has_everyone = 1;
    if (strcmp(sid, "S-1-5-7") == 0)
      v->has_anonymous = 1;
    LocalFree(sid);
  }
  LocalFree(sd);
}

static duct__listener *listen_ok(tcore *t, const char *name,
                                 const duct__listen_opts *o) {
  duct__listener *l = NULL;
  duct__err err = {{0}};
  duct_code rc = duct__listen(name, o, &t_cb, t, &l, &err);
  if (rc != DUCT_OK)
    print_error("listen %s: %s\n", duct_code_name(rc), err.text);
  assert_int_equal(rc, DUCT_OK);
  return l;
}

/* ---- security descriptor ---- */

static void test_default_dacl_is_owner_and_system(void **state) {
  (void)state;
  tcore t;
  t_init(&t, T_ECHO);
  char name[96];
  t_name(name, sizeof name, "sd");
  duct__listen_opts o = t_opts();
  duct__listener *l = listen_ok(&t, name, &o);
  dacl_view v;
  read_dacl(name, &v);
  print_message("default DACL read back: %s\n", v.sddl);
  assert_true(v.read_ok);
  assert_true(v.present);
  assert_false(v.is_null);
  assert_true(v.has_self);
  assert_true(v.has_system);
  assert_false(v.has_everyone);
  assert_false(v.has_anonymous);
  assert_int_equal(v.aces, 2);
  duct__listener_free(l);
  t_fini(&t);
}

static void test_sddl_widens(void **state) {
  (void)state;
  tcore t;
  t_init(&t, T_ECHO);
  char name[96], sddl[300];
  t_name(name, sizeof name, "sddl");
  /* Owner, LocalSystem, and read/write for everyone. */
  snprintf(sddl, sizeof sddl, "D:(A;;GA;;;SY)(A;;GA;;;%s)(A;;GRGW;;;WD)",
           self_sid);
  duct__listen_opts o = t_opts();
  o.sddl = sddl;
  duct__listener *l = listen_ok(&t, name, &o);
  dacl_view v;
  read_dacl(name, &v);
  print_message("sddl DACL read back: %s\n", v.sddl);
  assert_true(v.read_ok);
  assert_true(v.has_everyone);
  assert_true(v.has_self);
  assert_int_equal(v.aces, 3);
  duct__listener_free(l);
  t_fini(&t);
}

/* The mask the DACL of the pipe `name` grants `sid` (0 if no ACE names
 * it), read back through a client handle. */
static DWORD granted_to(const char *name, const char *sid) {
  wchar_t w[300];
  full_name(w, 300, name);
  HANDLE h = CreateFileW(w, GENERIC_READ, 0, NULL, OPEN_EXISTING, 0, NULL);
  assert_true(h != INVALID_HANDLE_VALUE);
  PACL dacl = NULL;
  PSECURITY_DESCRIPTOR sd = NULL;
  assert_int_equal(GetSecurityInfo(h, SE_KERNEL_OBJECT, DACL_SECURITY_INFORMATION,
                                   NULL, NULL, &dacl, NULL, &sd),
                   ERROR_SUCCESS);
  CloseHandle(h);
  DWORD mask = 0;
  for (DWORD i = 0; dacl != NULL && i < dacl->AceCount; i++) {
    ACE_HEADER *ace;
    assert_true(GetAce(dacl, i, (void **)&ace));
    if (ace->AceType != ACCESS_ALLOWED_ACE_TYPE)
      continue;
    char *s = NULL;
    ACCESS_ALLOWED_ACE *a = (ACCESS_ALLOWED_ACE *)ace;
    assert_true(ConvertSidToStringSidA(&a->SidStart, &s));
    if (strcmp(s, sid) == 0)
      mask |= a->Mask;
    LocalFree(s);
  }
  LocalFree(sd);
  return mask;
}

/* The widening docs/WINDOWS.md and duct/server.h show: the users it adds
 * may read and write messages but get no FILE_CREATE_PIPE_INSTANCE, so
 * they cannot create instances of duct's pipe and answer other clients'
 * calls; and duct's own client needs nothing more than it grants. */
static void test_documented_sddl_grants_no_create_instance(void **state) {
  (void)state;
  /* The bit is FILE_APPEND_DATA's, which FILE_GENERIC_WRITE (GW) holds. */
  assert_int_equal(FILE_CREATE_PIPE_INSTANCE, 0x4);
  assert_int_equal(FILE_APPEND_DATA, FILE_CREATE_PIPE_INSTANCE);
  assert_int_equal((FILE_GENERIC_READ | FILE_GENERIC_WRITE) & ~FILE_CREATE_PIPE_INSTANCE,
                   0x12019b);
  tcore t;
  t_init(&t, T_ECHO);
  char name[96], sddl[300];
  t_name(name, sizeof name, "docsddl");
  /* As documented, with the owner's ACE naming our SID. */
  snprintf(sddl, sizeof sddl, "D:(A;;GA;;;SY)(A;;GA;;;%s)(A;;0x12019b;;;IU)", self_sid);
  duct__listen_opts o = t_opts();
  o.sddl = sddl;
  duct__listener *l = listen_ok(&t, name, &o);
  DWORD iu = granted_to(name, "S-1-5-4"); /* INTERACTIVE */
  print_message("INTERACTIVE is granted 0x%lx\n", (unsigned long)iu);
  assert_int_equal(iu & FILE_CREATE_PIPE_INSTANCE, 0);
  DWORD client_needs = FILE_GENERIC_READ | FILE_WRITE_DATA | FILE_WRITE_ATTRIBUTES;
  assert_int_equal(iu & client_needs, client_needs);
  duct__listener_free(l);
  t_fini(&t);

  /* duct's client asks for no more than that: it opens, in message mode,
   * a pipe whose DACL grants our own user exactly 0x12019b (one raw
   * instance; creating more would need the right withheld). A client
   * asking for GENERIC_WRITE, which includes FILE_APPEND_DATA, is refused
   * by Windows here. */
  t_name(name, sizeof name, "rwonly");
  wchar_t w[300], wsddl[300];
  full_name(w, 300, name);
  snprintf(sddl, sizeof sddl, "D:P(A;;0x12019b;;;%s)", self_sid);
  MultiByteToWideChar(CP_UTF8, 0, sddl, -1, wsddl, 300);
  SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, FALSE};
  assert_true(ConvertStringSecurityDescriptorToSecurityDescriptorW(
      wsddl, SDDL_REVISION_1, &sa.lpSecurityDescriptor, NULL));
  HANDLE srv = CreateNamedPipeW(w, PIPE_ACCESS_DUPLEX | FILE_FLAG_FIRST_PIPE_INSTANCE,
                                PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE, 1, 4096, 4096, 0,
                                &sa);
  LocalFree(sa.lpSecurityDescriptor);
  assert_true(srv != INVALID_HANDLE_VALUE);
  duct__link *k = NULL;
  duct__err err = {{0}};
  duct_code rc = duct__link_open(name, t_deadline(WAIT_MS), &k, &err);
  if (rc != DUCT_OK)
    print_error("link_open: %s\n", err.text);
  assert_int_equal(rc, DUCT_OK);
  duct__link_close(k);
  CloseHandle(srv);
}

static void test_bad_sddl_rejected(void **state) {
  (void)state;
  tcore t;
  t_init(&t, T_ECHO);
  char name[96];
  t_name(name, sizeof name, "badsddl");
  duct__listen_opts o = t_opts();
  duct__listener *l = NULL;
  duct__err err = {{0}};
  const char *bad[] = {"garbage", "D:(A;;GA;;;NOT-A-SID)", "D:(X;;;;;)"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    o.sddl = bad[i];
    err.text[0] = '\0';
    assert_int_equal(duct__listen(name, &o, &t_cb, &t, &l, &err),
                     DUCT_INVALID_ARGUMENT);
    assert_null(l);
    assert_non_null(strstr(err.text, "sddl"));
  }
  /* No DACL at all would mean "anyone": refused too. */
  o.sddl = "O:SY";
  assert_int_equal(duct__listen(name, &o, &t_cb, &t, &l, &err),
                   DUCT_INVALID_ARGUMENT);
  assert_non_null(strstr(err.text, "no DACL"));
  /* sddl and null_dacl contradict each other. */
  o.sddl = "D:(A;;GA;;;SY)";
  o.null_dacl = 1;
  assert_int_equal(duct__listen(name, &o, &t_cb, &t, &l, &err),
                   DUCT_INVALID_ARGUMENT);
  /* Nothing was left behind: the name is free. */
  o.sddl = NULL;
  o.null_dacl = 0;
  l = listen_ok(&t, name, &o);
  duct__listener_free(l);
  t_fini(&t);
}

static void test_null_dacl_only_by_name(void **state) {
  (void)state;
  tcore t;
  t_init(&t, T_ECHO);
  char name[96];
  t_name(name, sizeof name, "null");
  duct__listen_opts o = t_opts();
  o.null_dacl = 1;
  duct__listener *l = listen_ok(&t, name, &o);
  dacl_view v;
  read_dacl(name, &v);
  print_message("null DACL read back: \"%s\" present=%d null=%d\n", v.sddl,
                v.present, v.is_null);
  assert_true(v.read_ok);
  assert_true(v.is_null);
  duct__listener_free(l);
  t_fini(&t);
}

/* ---- who owns a name ---- */

static void test_second_listen_refused(void **state) {
  (void)state;
  tcore t;
  t_init(&t, T_ECHO);
  char name[96];
  t_name(name, sizeof name, "dup");
  duct__listen_opts o = t_opts();
  duct__listener *l = listen_ok(&t, name, &o), *l2 = NULL;
  duct__err err = {{0}};
  assert_int_equal(duct__listen(name, &o, &t_cb, &t, &l2, &err),
                   DUCT_ALREADY_EXISTS);
  assert_null(l2);
  assert_non_null(strstr(err.text, "already owned"));
  duct__listener_free(l);
  /* Released: listening again works. */
  l = listen_ok(&t, name, &o);
  duct__listener_free(l);
  t_fini(&t);
}

/* A squatter that created the name first (any flags, default security)
 * makes duct__listen fail loudly instead of sharing the name. */
static void test_squatter_refused(void **state) {
  (void)state;
  tcore t;
  t_init(&t, T_ECHO);
  char name[96];
  t_name(name, sizeof name, "squat");
  wchar_t w[300];
  full_name(w, 300, name);
  HANDLE squat = CreateNamedPipeW(w, PIPE_ACCESS_DUPLEX, PIPE_TYPE_BYTE,
                                  PIPE_UNLIMITED_INSTANCES, 0, 0, 0, NULL);
  assert_true(squat != INVALID_HANDLE_VALUE);
  duct__listen_opts o = t_opts();
  duct__listener *l = NULL;
  duct__err err = {{0}};
  assert_int_equal(duct__listen(name, &o, &t_cb, &t, &l, &err),
                   DUCT_ALREADY_EXISTS);
  assert_null(l);
  print_message("squatter: %s\n", err.text);
  CloseHandle(squat);
  l = listen_ok(&t, name, &o);
  duct__listener_free(l);
  t_fini(&t);
}

/* ---- addresses ---- */

static void test_full_and_unicode_names(void **state) {
  (void)state;
  tcore t;
  t_init(&t, T_ECHO);
  char name[96], full[128];
  /* "dúct-ü" in UTF-8: the W APIs carry it unchanged. */
  t_name(name, sizeof name, "d\xc3\xba" "ct-\xc3\xbc");
  snprintf(full, sizeof full, "\\\\.\\pipe\\%s", name);
  duct__listen_opts o = t_opts();
  duct__listener *l = listen_ok(&t, full, &o);
  assert_int_equal(duct__listener_start(l), DUCT_OK);
  duct__link *k = NULL;
  duct__err err = {{0}};
  /* The bare name reaches the pipe created by its full name. */
  assert_int_equal(duct__link_open(name, t_deadline(WAIT_MS), &k, &err),
                   DUCT_OK);
  uint8_t buf[8];
  size_t len;
  duct__iov iov = {"u", 1};
  assert_int_equal(duct__link_transact(k, &iov, 1, buf, sizeof buf, &len,
                                       t_deadline(WAIT_MS)),
                   DUCT_OK);
  duct__link_close(k);
  /* And the wide name really is the Unicode one. */
  wchar_t w[300];
  full_name(w, 300, name);
  assert_true(WaitNamedPipeW(w, 1000));
  duct__listener_free(l);
  t_fini(&t);
}

/* ---- sys.c ---- */

static void test_sys(void **state) {
  (void)state;
  assert_int_equal(duct__getpid(), GetCurrentProcessId());
  assert_true(duct__cpu_count() >= 1);
  duct__mutex m;
  duct__cond c;
  duct__mutex_init(&m);
  duct__cond_init(&c);
  duct__mutex_lock(&m);
  int64_t t0 = duct__now_ms();
  int r = 0;
  while (r == 0)
    r = duct__cond_wait(&c, &m, t0 + 50);
  int64_t took = duct__now_ms() - t0;
  duct__mutex_unlock(&m);
  assert_int_equal(r, 1);
  assert_true(took >= 45 && took < 5000);
  /* A deadline already past returns at once. */
  duct__mutex_lock(&m);
  assert_int_equal(duct__cond_wait(&c, &m, duct__now_ms() - 1), 1);
  duct__mutex_unlock(&m);
  duct__cond_destroy(&c);
  duct__mutex_destroy(&m);
}

static int setup(void **state) {
  (void)state;
  HANDLE tok;
  union {
    TOKEN_USER tu;
    BYTE b[SECURITY_MAX_SID_SIZE + sizeof(TOKEN_USER)];
  } u;
  DWORD n;
  char *s = NULL;
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok) ||
      !GetTokenInformation(tok, TokenUser, &u, sizeof u, &n) ||
      !ConvertSidToStringSidA(u.tu.User.Sid, &s))
    return -1;
  CloseHandle(tok);
  snprintf(self_sid, sizeof self_sid, "%s", s);
  LocalFree(s);
  print_message("this process's user: %s\n", self_sid);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_default_dacl_is_owner_and_system),
      cmocka_unit_test(test_sddl_widens),
      cmocka_unit_test(test_documented_sddl_grants_no_create_instance),
      cmocka_unit_test(test_bad_sddl_rejected),
      cmocka_unit_test(test_null_dacl_only_by_name),
      cmocka_unit_test(test_second_listen_refused),
      cmocka_unit_test(test_squatter_refused),
      cmocka_unit_test(test_full_and_unicode_names),
      cmocka_unit_test(test_sys),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
