#include "log.h"

#include <stdarg.h>
#include <stdio.h>

void duct__log(const duct__logger *lg, duct_log_level level, const char *fmt, ...) {
  /* Debug and info lines cost a format only when someone listens. */
  if (!lg->cb && level > DUCT_LOG_WARN)
    return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (lg->cb) {
    lg->cb(lg->user, level, line);
    return;
  }
  /* One fputs per line so concurrent lines from workers do not interleave. */
  char out[540];
  snprintf(out, sizeof out, "duct: %s: %s\n", level == DUCT_LOG_ERROR ? "error" : "warning", line);
  fputs(out, stderr);
}
