/* runtime/sys.h's child programs on Windows: CreateProcess with a command
 * line quoted the way the C runtime's argv parser reads it back. */
#include "runtime/win/win.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/sys.h"

/* Appends one argument to the command line, quoted when it has a space,
 * tab or quote: backslashes count only before a quote, so those are
 * doubled, and the quote itself is escaped. Returns the new length, or
 * cap when it does not fit. */
static size_t quote_arg(char *out, size_t len, size_t cap, const char *a) {
  int plain = *a && !strpbrk(a, " \t\"");
  if (plain) {
    size_t n = strlen(a);
    if (len + n + 2 > cap)
      return cap;
    memcpy(out + len, a, n);
    return len + n;
  }
  if (len + 1 >= cap)
    return cap;
  out[len++] = '"';
  for (const char *p = a;; p++) {
    size_t slashes = 0;
    while (*p == '\\') {
      p++;
      slashes++;
    }
    /* Before a quote or the closing quote, each backslash is doubled. */
    size_t emit = (*p == '"' || !*p) ? 2 * slashes : slashes;
    if (len + emit + 3 > cap)
      return cap;
    memset(out + len, '\\', emit);
    len += emit;
    if (!*p)
      break;
    if (*p == '"')
      out[len++] = '\\';
    out[len++] = *p;
  }
  out[len++] = '"';
  return len;
}

duct_code duct__spawn_wait(const char *const *argv, int *exit_code) {
  *exit_code = -1;
  char cmd[32768]; /* CreateProcess's own limit */
  size_t len = 0;
  for (int i = 0; argv[i]; i++) {
    if (i)
      cmd[len++] = ' ';
    len = quote_arg(cmd, len, sizeof cmd - 1, argv[i]);
    if (len >= sizeof cmd - 1)
      return DUCT_INVALID_ARGUMENT;
  }
  cmd[len] = '\0';
  STARTUPINFOA si;
  memset(&si, 0, sizeof si);
  si.cb = sizeof si;
  si.dwFlags = STARTF_USESTDHANDLES;
  si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
  si.hStdOutput = GetStdHandle(STD_OUTPUT_HANDLE);
  si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
  PROCESS_INFORMATION pi;
  if (!CreateProcessA(NULL, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi)) {
    DWORD e = GetLastError();
    return e == ERROR_FILE_NOT_FOUND || e == ERROR_PATH_NOT_FOUND ? DUCT_NOT_FOUND
                                                                   : DUCT_INTERNAL;
  }
  if (pi.hThread)
    CloseHandle(pi.hThread);
  /* Wine starts a Unix program given by its path, but hands back no
   * process to wait for: its end and exit code cannot be known. */
  if (!pi.hProcess)
    return DUCT_UNIMPLEMENTED;
  WaitForSingleObject(pi.hProcess, INFINITE);
  DWORD rc = 0;
  int ok = GetExitCodeProcess(pi.hProcess, &rc);
  CloseHandle(pi.hProcess);
  if (!ok)
    return DUCT_INTERNAL;
  *exit_code = (int)rc;
  return DUCT_OK;
}

int duct__temp_file(char *buf, size_t cap) {
  char dir[MAX_PATH + 1];
  DWORD n = GetTempPathA(sizeof dir, dir);
  if (n == 0 || n > sizeof dir || cap < MAX_PATH)
    return -1;
  /* Creates the file, with a name unique in dir. */
  return GetTempFileNameA(dir, "dct", 0, buf) ? 0 : -1;
}
