/* tests/fault/fault_platform.h - what the fault tests need from the system
 * that differs per platform (fault_posix.c, fault_win.c; CMake picks one). */
#ifndef DUCT_TEST_FAULT_PLATFORM_H
#define DUCT_TEST_FAULT_PLATFORM_H

#include <stddef.h>

/* Leaves a socket file that nobody listens on (what a killed server
 * leaves) at a fresh path, written to path. 0 where no such thing exists
 * (Windows: a pipe name vanishes with its last handle). */
int fault_make_stale_socket(char *path, size_t cap);
/* Replaces whatever is at path with a regular file. 1 on success. */
int fault_make_regular_file(const char *path, size_t cap);
int fault_is_regular_file(const char *path);
/* Removes path and the directory fault_make_stale_socket made for it. */
void fault_remove(const char *path);

#endif
