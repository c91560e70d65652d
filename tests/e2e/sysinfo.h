/* tests/e2e/sysinfo.h - what the probe server and the tests read from the
 * system, one small file per platform (sysinfo_posix.c, sysinfo_win.c). */
#ifndef DUCT_TEST_SYSINFO_H
#define DUCT_TEST_SYSINFO_H

#include <stddef.h>
#include <stdint.h>

/* This process's resident memory in KiB (0 if unknown). */
uint64_t test_rss_kb(void);
/* This process's threads now (0 if unknown). */
unsigned test_thread_count(void);
/* This process's user as duct_peer.user names it: the uid in decimal on
 * POSIX, the token user's SID string on Windows. */
void test_self_user(char *buf, size_t cap);

/* For a server run as another user (tests/e2e/test_client_checks.c). */

/* 1 if this process may become another user: POSIX and root. 0 on
 * Windows (under Wine every process is one user). */
int test_can_become_user(void);
/* Makes this process the user and group `uid` for good (setgroups,
 * setgid, setuid). 0 on success, -1 on failure or on Windows. */
int test_become_user(uint32_t uid);
/* POSIX: a new directory that any user may create sockets in (mkdtemp
 * under /tmp, chmod 0777) into buf. 0 on success, -1 on Windows. */
int test_shared_dir(char *buf, size_t cap);

/* Raises this process's open-file limit to at least `want` if the system
 * allows; returns the limit now in force (POSIX), or `want` on Windows,
 * where handles have no such limit. */
unsigned test_raise_fd_limit(unsigned want);

#endif
