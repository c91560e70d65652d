/* tests/e2e/sysinfo.h - what the probe server and the tests read from the
 * system, one small file per platform (sysinfo_posix.c, sysinfo_win.c). */
#ifndef DUCT_TEST_SYSINFO_H
#define DUCT_TEST_SYSINFO_H

#include <stddef.h>
#include <stdint.h>

/* This process's resident memory in KiB (0 if unknown). */
uint64_t test_rss_kb(void);
/* This process's user as duct_peer.user names it: the uid in decimal on
 * POSIX, the token user's SID string on Windows. */
void test_self_user(char *buf, size_t cap);

#endif
