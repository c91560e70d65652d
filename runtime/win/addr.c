/* runtime/win/addr.c - duct addresses to pipe names. A name ("calc")
 * lives in the local pipe namespace, \\.\pipe\calc; a full local pipe name
 * is used as is. Everything is UTF-8 outside and UTF-16 towards Win32: duct
 * calls only the W functions, so names are never squeezed through the ANSI
 * code page. */
#include <stdlib.h>
#include <string.h>

#include "runtime/win/win.h"
#include "runtime/alloc.h"

static const wchar_t prefix[] = L"\\\\.\\pipe\\";
#define PREFIX_LEN (sizeof prefix / sizeof prefix[0] - 1)

duct_code duct__win_pipe_name(const char *address, wchar_t **out,
                              duct__err *err) {
  *out = NULL;
  if (address == NULL || address[0] == '\0')
    return duct__win_msg(err, DUCT_INVALID_ARGUMENT, "empty address");
  size_t alen = strlen(address);
  if (alen > 4 * DUCT__WIN_PIPE_NAME_MAX)
    return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                         "address too long (%lu bytes)",
                         (unsigned long)alen);
  /* MB_ERR_INVALID_CHARS: malformed UTF-8 is an error, not U+FFFD. */
  int wlen = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, address,
                                 (int)alen, NULL, 0);
  if (wlen <= 0)
    return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                         "address %.200s is not valid UTF-8", address);
  wchar_t *w = duct__malloc(((size_t)wlen + PREFIX_LEN + 1) * sizeof *w);
  if (w == NULL)
    return duct__win_msg(err, DUCT_RESOURCE_EXHAUSTED, "out of memory");
  int full = alen > PREFIX_LEN && _strnicmp(address, "\\\\.\\pipe\\",
                                            PREFIX_LEN) == 0;
  size_t off = 0;
  if (!full) {
    /* A bare name may not contain a backslash: it would be either a
     * path somewhere else (\\server\pipe\x, C:\x) or a typo. */
    if (strchr(address, '\\') != NULL) {
      duct__free(w);
      return duct__win_msg(err, DUCT_INVALID_ARGUMENT,
                           "address %.200s: not a name and not a local pipe "
                           "name (\\\\.\\pipe\\...)", address);
    }
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
