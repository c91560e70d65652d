/* sysinfo.h on Windows: the working set, the process token's user SID. */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <psapi.h>
#include <tlhelp32.h>
#include <sddl.h>

#include "sysinfo.h"

#include <stdio.h>

uint64_t test_rss_kb(void) {
  PROCESS_MEMORY_COUNTERS pmc;
  if (!GetProcessMemoryInfo(GetCurrentProcess(), &pmc, sizeof pmc))
    return 0;
  return (uint64_t)pmc.WorkingSetSize / 1024;
}

unsigned test_thread_count(void) {
  HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
  if (snap == INVALID_HANDLE_VALUE)
    return 0;
  THREADENTRY32 te;
  te.dwSize = sizeof te;
  unsigned n = 0;
  DWORD self = GetCurrentProcessId();
  for (BOOL ok = Thread32First(snap, &te); ok; ok = Thread32Next(snap, &te))
    if (te.th32OwnerProcessID == self)
      n++;
  CloseHandle(snap);
  return n;
}

void test_self_user(char *buf, size_t cap) {
  snprintf(buf, cap, "?");
  HANDLE tok;
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok))
    return;
  union {
    TOKEN_USER tu;
    char bytes[512];
  } u;
  DWORD n;
  char *sid;
  if (GetTokenInformation(tok, TokenUser, &u, sizeof u, &n) &&
      ConvertSidToStringSidA(u.tu.User.Sid, &sid)) {
    snprintf(buf, cap, "%s", sid);
    LocalFree(sid);
  }
  CloseHandle(tok);
}

/* One user for every process here (Wine); nothing to become. */
int test_can_become_user(void) { return 0; }

int test_become_user(uint32_t uid) {
  (void)uid;
  return -1;
}

int test_shared_dir(char *buf, size_t cap) {
  if (cap > 0)
    buf[0] = '\0';
  return -1;
}

unsigned test_raise_fd_limit(unsigned want) { return want; }
