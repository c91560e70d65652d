/* runtime/posix/posix.h - what the files of the POSIX transport share.
 * Internal to runtime/posix/; nothing outside this folder includes it. */
#ifndef DUCT_RUNTIME_POSIX_H
#define DUCT_RUNTIME_POSIX_H

#include <stddef.h>
#include <stdint.h>

#include "duct/status.h"
#include "transport.h"

/* Longest socket path, terminator included: sizeof(sun_path) on Linux.
 * Checked against the real struct in address.c. */
#define DUCT__POSIX_PATH_MAX 108

/* ---- error.c: the one place errno becomes a duct_code ---- */

/* The duct_code for an errno value. */
duct_code duct__posix_code(int errnum);
/* Writes the system's text for errnum into buf (always terminated). */
void duct__posix_strerror(int errnum, char *buf, size_t cap);
/* Fills err (if not NULL) with "<what>: <strerror(errnum)><extra>" and
 * returns duct__posix_code(errnum). `what` names the call and the path,
 * e.g. "bind /run/user/1000/duct/kv". */
duct_code duct__posix_fail(duct__err *err, int errnum, const char *what,
                           const char *extra);
/* Fills err (if not NULL) with a printf-style line and returns code; for
 * failures that have no errno (bad address, refused policy). */
duct_code duct__posix_failf(duct__err *err, duct_code code, const char *fmt,
                            ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- address.c ---- */

/* Maps a duct address to a socket path (docs/GUIDE.md's address table):
 * a name becomes $XDG_RUNTIME_DIR/duct/<name> or /tmp/duct-<uid>/<name>;
 * an absolute path is kept. DUCT_INVALID_ARGUMENT with err filled
 * otherwise (a Windows pipe name, a remote or Windows file path, a
 * relative path, a name with '\\' or a control character, "." or "..").
 * On success path holds the socket path and dir its directory. */
duct_code duct__posix_resolve(const char *address,
                              char path[DUCT__POSIX_PATH_MAX],
                              char dir[DUCT__POSIX_PATH_MAX], int *is_name,
                              duct__err *err);
/* Makes sure the socket's directory exists and is private: for a name,
 * dir is duct's own and is created or corrected to `mode` (0700 or 0750);
 * for an absolute path a missing last directory is created with `mode`
 * and an existing one is left as the user made it. Refuses a directory
 * owned by another user or a symlink (DUCT_PERMISSION_DENIED). */
duct_code duct__posix_prepare_dir(const char *dir, int is_name,
                                  unsigned mode, duct__err *err);

/* Socket buffer size asked for: big enough that a 64 KiB message (and a
 * few in flight) fits; see sizing in listener.c. */
int duct__posix_sockbuf(uint32_t max_frame);

/* ---- helpers shared by listener.c and link.c ---- */

/* After EMSGSIZE (a message larger than the socket's send buffer): grows
 * SO_SNDBUF for a message of len bytes. 1 if it grew, so a retry may
 * succeed; 0 if the system will not allow more (net.core.wmem_max). */
int duct__posix_grow_sndbuf(int fd, size_t len);

/* Milliseconds left until deadline_ms for poll(): -1 for no deadline, 0
 * when it has passed. */
int duct__posix_poll_ms(int64_t deadline_ms);

#endif /* DUCT_RUNTIME_POSIX_H */
