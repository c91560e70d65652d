/* runtime/win/addr.c - duct addresses to pipe names.
 *
 * docs/GUIDE.md's address table is the contract; runtime/posix/address.c
 * is the same table on POSIX, and tests/transport/test_addresses.c holds
 * both to it. A name ("calc": printable UTF-8, no '/' or '\', not "." or
 * "..") lives in the local pipe namespace, \\.\pipe\calc; a full local
 * pipe name (prefix case-insensitive, as Windows has it) is used as is.
 * Everything else is refused, and POSIX and remote spellings are
 * recognised only to say what to write instead.
 *
 * Everything is UTF-8 outside and UTF-16 towards Win32: duct calls only
 * the W functions, so names are never squeezed through the ANSI code
 * page. */
#include <stdlib.h>
#include <string.h>

#include "runtime/win/win.h"
#include "runtime/alloc.h"

static const wchar_t prefix[] = L"\\\\.\\pipe\\";
#define PREFIX_LEN (sizeof prefix / sizeof prefix[0] - 1)

/* What to write instead, in every refusal. */
#define INSTEAD "give a name (\"kv\") or a pipe name \\\\.\\pipe\\NAME"

/* Refuses what is not a local pipe name or a portable name; DUCT_OK for
 * either. *full is 1 for "\\.\pipe\...". */
static duct_code classify(const char *a, int *full, duct__err *err) {
  *full = 0;
  if (_strnicmp(a, "\\\\.\\pipe\\", PREFIX_LEN) == 0) {
    if (a[PREFIX_LEN] == '\0')
      return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                           "address %s names no pipe: " INSTEAD, a);
    *full = 1;
    return DUCT_OK; /* beyond the prefix, Windows decides */
  }
  /* \\server\pipe\x is another machine's pipe (and \\?\..., \\.\C:
   * devices); PIPE_REJECT_REMOTE_CLIENTS would refuse us there anyway. */
  if (a[0] == '\\' && a[1] == '\\')
    return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                         "address %.160s names a pipe on another machine or "
                         "a Windows device; duct serves this machine only: "
                         INSTEAD, a);
  if (a[0] == '\\' || (((a[0] | 0x20) >= 'a' && (a[0] | 0x20) <= 'z') &&
                       a[1] == ':' && (a[2] == '\\' || a[2] == '/')))
    return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                         "address %.160s is a Windows file path, not a pipe: "
                         INSTEAD, a);
  /* Without this, "/tmp/x.sock" became the pipe \\.\pipe\/tmp/x.sock: a
   * POSIX configuration would quietly serve where no client looks. */
  if (a[0] == '/')
    return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                         "address %.160s is a POSIX socket path; on this "
                         "system " INSTEAD " (a name works on both)", a);
  if (strchr(a, '/') != NULL)
    return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                         "address %.160s is a relative path; " INSTEAD, a);
  if (strchr(a, '\\') != NULL)
    return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                         "address %.160s: a name may not contain '\\' (on "
                         "any system); " INSTEAD, a);
  if (strcmp(a, ".") == 0 || strcmp(a, "..") == 0)
    return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                         "address \"%s\" is not a usable name", a);
  for (const unsigned char *p = (const unsigned char *)a; *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                           "address has a control character or malformed "
                           "UTF-8 (not echoed here); a name must be "
                           "printable UTF-8");
  return DUCT_OK;
}

duct_code duct__win_pipe_name(const char *address, wchar_t **out,
                              duct__err *err) {
  *out = NULL;
  if (address == NULL || address[0] == '\0')
    return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                         "empty address: " INSTEAD);
  size_t alen = strlen(address);
  if (alen > 4 * DUCT__WIN_PIPE_NAME_MAX)
    return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                         "address too long (%lu bytes)",
                         (unsigned long)alen);
  int full;
  duct_code rc = classify(address, &full, err);
  if (rc != DUCT_OK)
    return rc;
  /* MB_ERR_INVALID_CHARS: malformed UTF-8 is an error, not U+FFFD. */
  int wlen = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, address,
                                 (int)alen, NULL, 0);
  if (wlen <= 0)
    return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                         "address has a control character or malformed "
                         "UTF-8 (not echoed here); a name must be "
                         "printable UTF-8");
  wchar_t *w = duct__malloc(((size_t)wlen + PREFIX_LEN + 1) * sizeof *w);
  if (w == NULL)
    return duct__win_msg(err, DUCT_RESOURCE_EXHAUSTED, "out of memory");
  size_t off = 0;
  if (!full) {
    memcpy(w, prefix, PREFIX_LEN * sizeof *w);
    off = PREFIX_LEN;
  }
  MultiByteToWideChar(CP_UTF8, 0, address, (int)alen, w + off, wlen);
  w[off + (size_t)wlen] = L'\0';
  if (off + (size_t)wlen > DUCT__WIN_PIPE_NAME_MAX) {
    duct__free(w);
    return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                         "address %.200s: pipe name longer than %d characters",
                         address, DUCT__WIN_PIPE_NAME_MAX);
  }
  *out = w;
  return DUCT_OK;
}

void duct__win_narrow(const wchar_t *w, char *buf, size_t cap) {
  if (cap == 0)
    return;
  int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, buf, (int)cap, NULL, NULL);
  if (n <= 0)
    buf[0] = '\0';
  buf[cap - 1] = '\0';
}
