/* runtime/win/error.c - the one place where Win32 error numbers become
 * duct codes (as libuv's uv_translate_sys_error), and where the system's
 * text for them is fetched for diagnostics. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/win/win.h"

const char duct__platform_name[] = "win";

duct_code duct__win_code(DWORD e) {
  switch (e) {
  case ERROR_SUCCESS:
    return DUCT_OK;
  case ERROR_ACCESS_DENIED:
  case ERROR_PRIVILEGE_NOT_HELD:
  case ERROR_CANNOT_IMPERSONATE:
    return DUCT_PERMISSION_DENIED;
  case ERROR_ALREADY_EXISTS:
  case ERROR_FILE_EXISTS:
    return DUCT_ALREADY_EXISTS;
  /* A message-mode read that did not fit: the caller's limit was hit. */
  case ERROR_MORE_DATA:
  case ERROR_NOT_ENOUGH_MEMORY:
  case ERROR_OUTOFMEMORY:
  case ERROR_NO_SYSTEM_RESOURCES:
  case ERROR_NONPAGED_SYSTEM_RESOURCES:
  case ERROR_TOO_MANY_OPEN_FILES:
  case ERROR_NOT_ENOUGH_QUOTA:
    return DUCT_RESOURCE_EXHAUSTED;
  case ERROR_INVALID_PARAMETER:
  case ERROR_INVALID_NAME:
  case ERROR_BAD_PATHNAME:
  case ERROR_FILENAME_EXCED_RANGE:
  case ERROR_INVALID_SID:
  case ERROR_INVALID_ACL:
  case ERROR_INVALID_SECURITY_DESCR:
  case ERROR_NONE_MAPPED:
  case ERROR_UNKNOWN_REVISION:
    return DUCT_INVALID_ARGUMENT;
  case ERROR_OPERATION_ABORTED:
    return DUCT_CANCELLED;
  case ERROR_SEM_TIMEOUT:
  case WAIT_TIMEOUT:
    return DUCT_DEADLINE_EXCEEDED;
  /* Peer gone, or nobody there: the canonical "try again later". */
  case ERROR_FILE_NOT_FOUND:
  case ERROR_PATH_NOT_FOUND:
  case ERROR_PIPE_BUSY:
  case ERROR_BROKEN_PIPE:
  case ERROR_PIPE_NOT_CONNECTED:
  case ERROR_NO_DATA:
  case ERROR_BAD_PIPE:
  case ERROR_INVALID_HANDLE:
  case ERROR_NETNAME_DELETED:
  default:
    return DUCT_UNAVAILABLE;
  }
}

void duct__win_strerror(DWORD e, char *buf, size_t cap) {
  char sys[160];
  DWORD n = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM |
                               FORMAT_MESSAGE_IGNORE_INSERTS |
                               FORMAT_MESSAGE_MAX_WIDTH_MASK,
                           NULL, e, MAKELANGID(LANG_NEUTRAL, SUBLANG_DEFAULT),
                           sys, (DWORD)sizeof sys, NULL);
  /* FormatMessage pads with a trailing space (MAX_WIDTH_MASK turns the
   * line breaks into spaces) and Wine ends some texts with a period. */
  while (n > 0 && (sys[n - 1] == ' ' || sys[n - 1] == '.' ||
                   sys[n - 1] == '\r' || sys[n - 1] == '\n'))
    n--;
  sys[n] = '\0';
  if (n == 0)
    snprintf(buf, cap, "system error %lu", (unsigned long)e);
  else
    snprintf(buf, cap, "%s (error %lu)", sys, (unsigned long)e);
}

duct_code duct__win_fail(duct__err *err, DWORD e, const char *fmt, ...) {
  if (err != NULL) {
    char what[160], why[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    duct__win_strerror(e, why, sizeof why);
    snprintf(err->text, sizeof err->text, "%s: %s", what, why);
  }
  return duct__win_code(e);
}

duct_code duct__win_msg(duct__err *err, duct_code code, const char *fmt, ...) {
  if (err != NULL) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
  }
  return code;
}
