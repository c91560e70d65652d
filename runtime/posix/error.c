/* The one place the POSIX transport turns errno into a duct_code (libuv's
 * uv_translate_sys_error). Callers keep the errno text in the duct__err
 * line so the raw reason survives the translation. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "posix.h"

const char duct__platform_name[] = "posix";

duct_code duct__posix_code(int errnum) {
  switch (errnum) {
  case 0:
    return DUCT_OK;
  case EACCES:
  case EPERM:
    return DUCT_PERMISSION_DENIED;
  case EADDRINUSE:
  case EEXIST:
    return DUCT_ALREADY_EXISTS;
  case EINVAL:
  case ENAMETOOLONG:
  case ENOTDIR:
  case EISDIR:
  case ELOOP:
    return DUCT_INVALID_ARGUMENT;
  case ETIMEDOUT:
  case EAGAIN:
    /* EAGAIN only reaches here once the caller has waited as long as it
     * was allowed to (a full send buffer, a full listen backlog). */
    return DUCT_DEADLINE_EXCEEDED;
  case EMSGSIZE:
  case ENOMEM:
  case ENOBUFS:
  case EMFILE:
  case ENFILE:
  case ENOSPC:
    return DUCT_RESOURCE_EXHAUSTED;
  case ECANCELED:
    return DUCT_CANCELLED;
  case ENOENT:
  case ECONNREFUSED:
  case ECONNRESET:
  case ECONNABORTED:
  case EPIPE:
  case ENOTCONN:
  case ESHUTDOWN:
  case EPROTOTYPE:
  default:
    /* transport.h: other system errors are DUCT_UNAVAILABLE. */
    return DUCT_UNAVAILABLE;
  }
}

void duct__posix_strerror(int errnum, char *buf, size_t cap) {
  /* The GNU strerror_r may return a static string instead of filling buf,
   * and is thread-safe where strerror is not. */
  char tmp[128];
  const char *s = strerror_r(errnum, tmp, sizeof tmp);
  snprintf(buf, cap, "%s", s ? s : "unknown error");
}

duct_code duct__posix_fail(duct__err *err, int errnum, const char *what,
                           const char *extra) {
  if (err) {
    char sys[128];
    duct__posix_strerror(errnum, sys, sizeof sys);
    snprintf(err->text, sizeof err->text, "%s: %s%s", what, sys,
             extra ? extra : "");
  }
  return duct__posix_code(errnum);
}

duct_code duct__posix_failf(duct__err *err, duct_code code, const char *fmt,
                            ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
  }
  return code;
}
