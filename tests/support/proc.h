/* tests/support/proc.h - helper processes for end-to-end tests, the same
 * on both platforms (proc_posix.c, proc_win.c; CMake picks one). */
#ifndef DUCT_TEST_PROC_H
#define DUCT_TEST_PROC_H

#include <stdint.h>

typedef struct test_proc test_proc;

/* The path of program `name` (no extension) in the directory of the
 * running test executable, which is where every duct program is built.
 * Static storage: copy it before calling again. */
const char *test_sibling_exe(const char *argv0, const char *name);

/* Starts exe with args (argv[0] is supplied), inheriting stdio. NULL on
 * failure. */
test_proc *test_proc_start(const char *exe, const char *const *args, int nargs);
/* The same, with the child's standard output written to the file at
 * out_path (created or truncated). */
test_proc *test_proc_start_out(const char *exe, const char *const *args, int nargs,
                               const char *out_path);
/* The same, with the child's standard input read from in_path and its
 * standard output and error written to out_path and err_path; any of the
 * three may be NULL (inherited). */
test_proc *test_proc_start_io(const char *exe, const char *const *args, int nargs,
                              const char *in_path, const char *out_path, const char *err_path);
/* Sends the child a Ctrl-C and returns 1 where one can reach a single
 * child: SIGINT on POSIX, and under Wine the SIGINT that Wine turns into
 * CTRL_C_EVENT. Elsewhere (Windows itself) returns 0 and does nothing. */
int test_proc_interrupt(test_proc *p);
/* 1 if test_proc_term asks for a graceful stop (POSIX), 0 if it kills. */
int test_proc_can_term(void);
/* Process id of the child. */
uint32_t test_proc_pid(const test_proc *p);
/* Kills the child at once (SIGKILL / TerminateProcess). */
void test_proc_kill(test_proc *p);
/* Asks the child to stop gracefully (SIGTERM; on Windows a console
 * Ctrl-Break is not deliverable to a specific child, so this kills). */
void test_proc_term(test_proc *p);
/* Waits up to timeout_ms for the child to exit. Returns its exit code, or
 * -1 on timeout (the child is then killed), -2 if it died by a signal. */
int test_proc_wait(test_proc *p, int timeout_ms);
/* Frees the handle; kills the child if still running. */
void test_proc_free(test_proc *p);

/* A unique address for this test run: "duct-e2e-<pid>-<tag>". Static. */
const char *test_address(const char *tag);

#endif
