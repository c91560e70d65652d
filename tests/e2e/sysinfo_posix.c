/* sysinfo.h on Linux: /proc/self/statm, getuid, setuid. */
#define _GNU_SOURCE
#include "sysinfo.h"

#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

uint64_t test_rss_kb(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f)
    return 0;
  unsigned long long size = 0, resident = 0;
  int n = fscanf(f, "%llu %llu", &size, &resident);
  fclose(f);
  if (n != 2)
    return 0;
  return resident * (uint64_t)sysconf(_SC_PAGESIZE) / 1024;
}

unsigned test_thread_count(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f)
    return 0;
  char line[256];
  unsigned n = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "Threads: %u", &n) == 1)
      break;
  fclose(f);
  return n;
}

void test_self_user(char *buf, size_t cap) { snprintf(buf, cap, "%u", (unsigned)getuid()); }

int test_can_become_user(void) { return geteuid() == 0; }

int test_become_user(uint32_t uid) {
  /* Groups first: once the uid is no longer 0 they cannot be changed. */
  if (setgroups(0, NULL) != 0 || setgid((gid_t)uid) != 0 || setuid((uid_t)uid) != 0)
    return -1;
  return geteuid() == (uid_t)uid ? 0 : -1;
}

int test_shared_dir(char *buf, size_t cap) {
  if (snprintf(buf, cap, "/tmp/duct-shared-XXXXXX") >= (int)cap || !mkdtemp(buf))
    return -1;
  return chmod(buf, 0777) == 0 ? 0 : -1;
}

unsigned test_raise_fd_limit(unsigned want) {
  struct rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) != 0)
    return 0;
  if (r.rlim_cur < want && (r.rlim_max == RLIM_INFINITY || r.rlim_max >= want)) {
    r.rlim_cur = want;
    setrlimit(RLIMIT_NOFILE, &r);
    getrlimit(RLIMIT_NOFILE, &r);
  }
  return r.rlim_cur > 0xffffffffu ? 0xffffffffu : (unsigned)r.rlim_cur;
}
