/* sysinfo.h on Linux: /proc/self/statm, getuid. */
#define _GNU_SOURCE
#include "sysinfo.h"

#include <stdio.h>
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

void test_self_user(char *buf, size_t cap) { snprintf(buf, cap, "%u", (unsigned)getuid()); }
