#define WIN32_LEAN_AND_MEAN
#include <windows.h>

#include "proc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct test_proc {
  PROCESS_INFORMATION pi;
  int done;
  char args[1024]; /* the leading plain arguments, for test_proc_interrupt */
};

const char *test_sibling_exe(const char *argv0, const char *name) {
  static char path[MAX_PATH * 3];
  char self[MAX_PATH * 3];
  (void)argv0;
  DWORD n = GetModuleFileNameA(NULL, self, (DWORD)sizeof self);
  if (n == 0 || n >= sizeof self)
    snprintf(self, sizeof self, ".\\x");
  char *slash = strrchr(self, '\\');
  if (slash)
    *slash = '\0';
  snprintf(path, sizeof path, "%s\\%s.exe", self, name);
  return path;
}

/* Quotes one argument by the rules CommandLineToArgvW undoes. */
static void append_arg(char *cmd, size_t cap, const char *a) {
  size_t n = strlen(cmd);
  if (n + 3 >= cap)
    return;
  cmd[n++] = ' ';
  cmd[n++] = '"';
  for (; *a && n + 3 < cap; a++) {
    if (*a == '"')
      cmd[n++] = '\\';
    cmd[n++] = *a;
  }
  cmd[n++] = '"';
  cmd[n] = '\0';
}

test_proc *test_proc_start(const char *exe, const char *const *args, int nargs) {
  return test_proc_start_out(exe, args, nargs, NULL);
}

int test_proc_can_term(void) { return 0; }

test_proc *test_proc_start_out(const char *exe, const char *const *args, int nargs,
                               const char *out_path) {
  return test_proc_start_io(exe, args, nargs, NULL, out_path, NULL);
}

/* Windows delivers Ctrl-C to a whole console, never to one child, and a
 * test runs without one. Under Wine, though, a terminal's Ctrl-C is the
 * SIGINT the Unix process running the program gets, which Wine turns into
 * CTRL_C_EVENT for the program's console handlers: so there the test
 * sends that SIGINT, finding the process by its arguments (unique to the
 * test: they hold test_address). */
int test_proc_interrupt(test_proc *p) {
  HMODULE ntdll = GetModuleHandleA("ntdll.dll");
  if (p->done || !ntdll || !GetProcAddress(ntdll, "wine_get_version") || !p->args[0])
    return 0;
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "/usr/bin/pkill -INT -f \"%s\"", p->args);
  STARTUPINFOA si;
  memset(&si, 0, sizeof si);
  si.cb = sizeof si;
  PROCESS_INFORMATION pi;
  memset(&pi, 0, sizeof pi);
  if (!CreateProcessA(NULL, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi))
    return 0;
  /* Wine starts a Unix program without a process to wait for: pkill runs
   * on its own, and the caller's wait for the child says if it worked. */
  if (!pi.hProcess)
    return 1;
  WaitForSingleObject(pi.hProcess, 10000);
  DWORD rc = 1;
  GetExitCodeProcess(pi.hProcess, &rc);
  CloseHandle(pi.hProcess);
  if (pi.hThread)
    CloseHandle(pi.hThread);
  return rc == 0;
}

/* An inheritable handle on path for the child's standard handle, or the
 * parent's own `std` when path is NULL. */
static HANDLE std_handle(const char *path, int write, DWORD std) {
  if (!path)
    return GetStdHandle(std);
  SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE};
  return CreateFileA(path, write ? GENERIC_WRITE : GENERIC_READ,
                     FILE_SHARE_READ | FILE_SHARE_WRITE, &sa,
                     write ? CREATE_ALWAYS : OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
}

test_proc *test_proc_start_io(const char *exe, const char *const *args, int nargs,
                              const char *in_path, const char *out_path, const char *err_path) {
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "\"%s\"", exe);
  for (int i = 0; i < nargs; i++)
    append_arg(cmd, sizeof cmd, args[i]);
  test_proc *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  STARTUPINFOA si;
  memset(&si, 0, sizeof si);
  si.cb = sizeof si;
  /* The arguments up to the first one pkill's pattern would misread. */
  for (int i = 0; i < nargs && strspn(args[i], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                "0123456789./_-") == strlen(args[i]);
       i++) {
    size_t len = strlen(p->args);
    snprintf(p->args + len, sizeof p->args - len, "%s%s", len ? " " : "", args[i]);
  }
  int redirect = in_path || out_path || err_path;
  HANDLE h[3] = {INVALID_HANDLE_VALUE, INVALID_HANDLE_VALUE, INVALID_HANDLE_VALUE};
  if (redirect) {
    h[0] = std_handle(in_path, 0, STD_INPUT_HANDLE);
    h[1] = std_handle(out_path, 1, STD_OUTPUT_HANDLE);
    h[2] = std_handle(err_path, 1, STD_ERROR_HANDLE);
    si.dwFlags = STARTF_USESTDHANDLES;
    si.hStdInput = h[0];
    si.hStdOutput = h[1];
    si.hStdError = h[2];
  }
  BOOL ok = (!in_path || h[0] != INVALID_HANDLE_VALUE) &&
            (!out_path || h[1] != INVALID_HANDLE_VALUE) &&
            (!err_path || h[2] != INVALID_HANDLE_VALUE) &&
            CreateProcessA(exe, cmd, NULL, NULL, redirect, 0, NULL, NULL, &si, &p->pi);
  DWORD err = GetLastError();
  const char *paths[3] = {in_path, out_path, err_path};
  for (int i = 0; i < 3; i++)
    if (paths[i] && h[i] != INVALID_HANDLE_VALUE)
      CloseHandle(h[i]);
  if (!ok) {
    fprintf(stderr, "CreateProcess %s: error %lu\n", exe, err);
    free(p);
    return NULL;
  }
  return p;
}

uint32_t test_proc_pid(const test_proc *p) { return (uint32_t)p->pi.dwProcessId; }

void test_proc_kill(test_proc *p) {
  if (!p->done)
    TerminateProcess(p->pi.hProcess, 137);
}

void test_proc_term(test_proc *p) { test_proc_kill(p); }

int test_proc_wait(test_proc *p, int timeout_ms) {
  if (WaitForSingleObject(p->pi.hProcess, (DWORD)timeout_ms) != WAIT_OBJECT_0) {
    TerminateProcess(p->pi.hProcess, 137);
    WaitForSingleObject(p->pi.hProcess, INFINITE);
    p->done = 1;
    return -1;
  }
  p->done = 1;
  DWORD code = 0;
  GetExitCodeProcess(p->pi.hProcess, &code);
  return (int)code;
}

void test_proc_free(test_proc *p) {
  if (!p)
    return;
  if (!p->done) {
    TerminateProcess(p->pi.hProcess, 137);
    WaitForSingleObject(p->pi.hProcess, INFINITE);
  }
  CloseHandle(p->pi.hThread);
  CloseHandle(p->pi.hProcess);
  free(p);
}

const char *test_address(const char *tag) {
  static char buf[128];
  snprintf(buf, sizeof buf, "duct-e2e-%lu-%s", (unsigned long)GetCurrentProcessId(), tag);
  return buf;
}
