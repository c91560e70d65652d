/* Address mapping and the socket directory's permissions.
 *
 * docs/GUIDE.md's address table is the contract; runtime/win/addr.c is
 * the same table on Windows, and tests/transport/test_addresses.c holds
 * both to it.
 *
 * A name ("kv": printable UTF-8, no '/' or '\\', not "." or "..") maps to
 * $XDG_RUNTIME_DIR/duct/<name>, the per-user runtime directory
 * systemd-logind makes (mode 0700, removed at logout). When
 * XDG_RUNTIME_DIR is unset or unusable (not absolute, not a directory, not
 * ours, or too long), the name maps to /tmp/duct-<uid>/<name> instead. A
 * server and its clients must therefore see the same XDG_RUNTIME_DIR (or
 * both none) to meet; README.md says so. An absolute path is used as is.
 *
 * Everything else is refused, and Windows spellings (\\.\pipe\x,
 * \\server\pipe\x, C:\x) are recognised only to say what to write
 * instead: a portable configuration spells a pipe by its name, which
 * means \\.\pipe\<name> there and a socket here. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "posix.h"
#include "sys.h"

static_assert(sizeof(((struct sockaddr_un *)0)->sun_path) == DUCT__POSIX_PATH_MAX,
              "DUCT__POSIX_PATH_MAX must be sizeof(sun_path)");

/* XDG_RUNTIME_DIR is usable if it is an absolute path to a directory we
 * own. secure_getenv ignores it in setuid programs, where the environment
 * belongs to the caller, not to the process's owner. */
static const char *xdg_runtime_dir(void) {
  const char *x = secure_getenv("XDG_RUNTIME_DIR");
  struct stat st;
  if (!x || x[0] != '/' || strlen(x) > DUCT__POSIX_PATH_MAX - 16)
    return NULL;
  if (stat(x, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid())
    return NULL;
  return x;
}

/* 1 if s is well-formed UTF-8 without control characters: the bytes a
 * name may hold on every system (Windows refuses malformed UTF-8 when it
 * converts to UTF-16, so a POSIX-only name would not be portable). */
static int printable_utf8(const unsigned char *s) {
  while (*s) {
    unsigned c = *s, n, cp;
    if (c < 0x20 || c == 0x7f)
      return 0;
    if (c < 0x80) {
      s++;
      continue;
    }
    if (c >= 0xc2 && c <= 0xdf)
      n = 1, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
      n = 2, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
      n = 3, cp = c & 0x07;
    else
      return 0; /* a continuation byte first, or an overlong/too big lead */
    for (unsigned i = 1; i <= n; i++) {
      if ((s[i] & 0xc0) != 0x80)
        return 0;
      cp = cp << 6 | (s[i] & 0x3fu);
    }
    /* Overlong three/four-byte forms, UTF-16 surrogates, past U+10FFFF. */
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
      return 0;
    s += n + 1;
  }
  return 1;
}

/* Each refusal names what the address looks like and what to write
 * instead; duct_server_listen and duct_channel_open log it. */
#define INSTEAD "give a name (\"kv\") or an absolute socket path"

duct_code duct__posix_resolve(const char *address,
                              char path[DUCT__POSIX_PATH_MAX],
                              char dir[DUCT__POSIX_PATH_MAX], int *is_name,
                              duct__err *err) {
  if (!address || !address[0])
    return duct__posix_failf(err, DUCT_INVALID_ARGUMENT,
                             "empty address: " INSTEAD);
  size_t alen = strlen(address);
  /* Windows spellings first, so each gets its own message rather than
   * "a relative path" or "may not contain '\\'". The pipe prefix is
   * case-insensitive there, so it is here. */
  if (strncasecmp(address, "\\\\.\\pipe\\", 9) == 0)
    return duct__posix_failf(err, DUCT_INVALID_ARGUMENT,
                             "address %.160s is a Windows pipe name; on this "
                             "system give a name or an absolute socket path "
                             "(a name works on both)",
                             address);
  if (address[0] == '\\' && address[1] == '\\')
    return duct__posix_failf(err, DUCT_INVALID_ARGUMENT,
                             "address %.160s names a pipe on another machine "
                             "or a Windows device; duct serves this machine "
                             "only: " INSTEAD,
                             address);
  if (address[0] == '\\' ||
      (((address[0] | 0x20) >= 'a' && (address[0] | 0x20) <= 'z') &&
       address[1] == ':' && (address[2] == '\\' || address[2] == '/')))
    return duct__posix_failf(err, DUCT_INVALID_ARGUMENT,
                             "address %.160s is a Windows file path, not a "
                             "socket: " INSTEAD,
                             address);
  if (address[0] == '/') {
    if (alen >= DUCT__POSIX_PATH_MAX)
      return duct__posix_failf(err, DUCT_INVALID_ARGUMENT,
                               "address %.64s...: %zu bytes, longer than a "
                               "socket path may be (%d)",
                               address, alen, DUCT__POSIX_PATH_MAX - 1);
    if (address[alen - 1] == '/')
      return duct__posix_failf(err, DUCT_INVALID_ARGUMENT,
                               "address %s: names a directory, not a socket",
                               address);
    memcpy(path, address, alen + 1);
    memcpy(dir, address, alen + 1);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
      slash[1] = '\0'; /* "/sock": the directory is "/" */
    else
      *slash = '\0';
    *is_name = 0;
    return DUCT_OK;
  }
  if (strchr(address, '/'))
    return duct__posix_failf(err, DUCT_INVALID_ARGUMENT,
                             "address %.160s is a relative path; give a name "
                             "(no '/') or an absolute socket path",
                             address);
  /* A backslash is an ordinary byte in a POSIX file name, but the same
   * name on Windows would be a path inside the pipe namespace; refusing
   * it here keeps every accepted name portable. */
  if (strchr(address, '\\'))
    return duct__posix_failf(err, DUCT_INVALID_ARGUMENT,
                             "address %.160s: a name may not contain '\\' "
                             "(on any system); " INSTEAD,
                             address);
  if (!strcmp(address, ".") || !strcmp(address, ".."))
    return duct__posix_failf(err, DUCT_INVALID_ARGUMENT,
                             "address \"%s\" is not a usable name", address);
  if (!printable_utf8((const unsigned char *)address))
    return duct__posix_failf(err, DUCT_INVALID_ARGUMENT,
                             "address has a control character or malformed "
                             "UTF-8 (not echoed here); a name must be "
                             "printable UTF-8");
  const char *x = xdg_runtime_dir();
  int n;
  if (x)
    n = snprintf(dir, DUCT__POSIX_PATH_MAX, "%s/duct", x);
  else
    n = snprintf(dir, DUCT__POSIX_PATH_MAX, "/tmp/duct-%lu",
                 (unsigned long)geteuid());
  if (n < 0 || n >= DUCT__POSIX_PATH_MAX ||
      (size_t)n + 1 + alen >= DUCT__POSIX_PATH_MAX)
    return duct__posix_failf(err, DUCT_INVALID_ARGUMENT,
                             "address %.64s: %s/<name> is longer than a "
                             "socket path may be (%d)",
                             address, dir, DUCT__POSIX_PATH_MAX - 1);
  snprintf(path, DUCT__POSIX_PATH_MAX, "%s/%s", dir, address);
  *is_name = 1;
  return DUCT_OK;
}

duct_code duct__posix_prepare_dir(const char *dir, int is_name, unsigned mode,
                                  duct__err *err) {
  char what[DUCT__POSIX_PATH_MAX + 16];
  struct stat st;
  if (mkdir(dir, (mode_t)mode) == 0) {
    /* mkdir applies the umask; set the mode we mean. */
    if (chmod(dir, (mode_t)mode) != 0) {
      snprintf(what, sizeof what, "chmod %s", dir);
      return duct__posix_fail(err, errno, what, NULL);
    }
    return DUCT_OK;
  }
  if (errno != EEXIST) {
    snprintf(what, sizeof what, "mkdir %s", dir);
    return duct__posix_fail(err, errno, what, NULL);
  }
  if (!is_name)
    return DUCT_OK; /* the user's own directory: their permissions stand */

  /* duct's own directory already exists. lstat, not stat: in /tmp another
   * user may have planted a symlink or a directory under our name before
   * us, to receive or intercept our clients; either is refused, never
   * followed. */
  if (lstat(dir, &st) != 0) {
    snprintf(what, sizeof what, "lstat %s", dir);
    return duct__posix_fail(err, errno, what, NULL);
  }
  if (!S_ISDIR(st.st_mode))
    return duct__posix_failf(err, DUCT_PERMISSION_DENIED,
                             "socket directory %s is not a directory (a "
                             "symlink or file); refusing to use it",
                             dir);
  if (st.st_uid != geteuid())
    return duct__posix_failf(err, DUCT_PERMISSION_DENIED,
                             "socket directory %s is owned by uid %lu, not by "
                             "us (uid %lu); refusing to use it",
                             dir, (unsigned long)st.st_uid,
                             (unsigned long)geteuid());
  /* Ours, so a wrong mode is fixed rather than refused: it was left by an
   * older run with other options or by a umask, and only we can have put
   * anything in it. The mode becomes exactly what this listener asked
   * for, so the last server to listen decides group access for the shared
   * directory (README.md). */
  if ((st.st_mode & 07777) != mode && chmod(dir, (mode_t)mode) != 0) {
    snprintf(what, sizeof what, "chmod %s", dir);
    return duct__posix_fail(err, errno, what, NULL);
  }
  return DUCT_OK;
}

int duct__posix_sockbuf(uint32_t max_frame) {
  /* An AF_UNIX datagram is charged to the sender's SO_SNDBUF with its skb
   * overhead, and a message larger than the buffer fails with EMSGSIZE
   * instead of blocking. Ask for room for four largest messages plus
   * overhead, at least 256 KiB; the kernel caps the request at
   * net.core.wmem_max and doubles it. */
  uint64_t want = (uint64_t)max_frame * 4 + 16384;
  if (want < 262144)
    want = 262144;
  if (want > 64u * 1024 * 1024)
    want = 64u * 1024 * 1024;
  return (int)want;
}

int duct__posix_grow_sndbuf(int fd, size_t len) {
  int cur = 0;
  socklen_t sl = sizeof cur;
  if (len > (size_t)32 * 1024 * 1024 ||
      getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cur, &sl) != 0)
    return 0;
  /* The kernel stores twice what is asked; ask for twice the message
   * plus overhead so that after the cap at wmem_max we can tell whether
   * it grew at all. */
  int want = (int)(len * 2 + 16384);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof want) != 0)
    return 0;
  int now = 0;
  sl = sizeof now;
  getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &now, &sl);
  return now > cur;
}

int duct__posix_poll_ms(int64_t deadline_ms) {
  if (deadline_ms < 0)
    return -1;
  int64_t left = deadline_ms - duct__now_ms();
  if (left <= 0)
    return 0;
  return left > 0x7fffffff ? 0x7fffffff : (int)left;
}
