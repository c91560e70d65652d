/* runtime/log.h - duct's one way to say something: through the user's
 * duct_log_cb, or to stderr for errors and warnings when none is set. */
#ifndef DUCT_RUNTIME_LOG_H
#define DUCT_RUNTIME_LOG_H

#include "duct/service.h"

typedef struct duct__logger {
  duct_log_cb cb;
  void *user;
} duct__logger;

void duct__log(const duct__logger *lg, duct_log_level level, const char *fmt, ...)
    DUCT_PRINTF_FORMAT(3, 4);

#endif
