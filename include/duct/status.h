/* duct/status.h - the one status model of duct.
 *
 * Every fallible public function returns a duct_code; 0 (DUCT_OK) is
 * success. The codes are the canonical RPC set that users know from gRPC,
 * with the same numbers, so a code can be logged, compared or carried on
 * the wire (a RESPONSE frame's status field) without translation.
 *
 * The list below is the only place the codes are defined: the enum, the
 * names and the default messages are all generated from it. */
#ifndef DUCT_STATUS_H
#define DUCT_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/* X(NAME, value, default message) */
#define DUCT_CODE_MAP(X)                                                      \
  X(OK,                  0,  "ok")                                            \
  X(CANCELLED,           1,  "the call was cancelled")                        \
  X(UNKNOWN,             2,  "unknown error")                                 \
  X(INVALID_ARGUMENT,    3,  "invalid argument")                              \
  X(DEADLINE_EXCEEDED,   4,  "the deadline expired before the call finished") \
  X(NOT_FOUND,           5,  "not found")                                     \
  X(ALREADY_EXISTS,      6,  "already exists")                                \
  X(PERMISSION_DENIED,   7,  "permission denied")                             \
  X(RESOURCE_EXHAUSTED,  8,  "a resource or size limit was exhausted")        \
  X(FAILED_PRECONDITION, 9,  "failed precondition")                           \
  X(ABORTED,             10, "aborted")                                       \
  X(OUT_OF_RANGE,        11, "out of range")                                  \
  X(UNIMPLEMENTED,       12, "not implemented")                               \
  X(INTERNAL,            13, "internal error or protocol violation")          \
  X(UNAVAILABLE,         14, "the service is unavailable")                    \
  X(DATA_LOSS,           15, "unrecoverable data loss or corruption")         \
  X(UNAUTHENTICATED,     16, "the peer could not be authenticated")

typedef enum duct_code {
#define DUCT__CODE_ENUM(name, value, msg) DUCT_##name = value,
  DUCT_CODE_MAP(DUCT__CODE_ENUM)
#undef DUCT__CODE_ENUM
} duct_code;

/* One past the largest code; a status read off the wire must be below it. */
#define DUCT_CODE_COUNT 17

/* The code's name without prefix, e.g. "DEADLINE_EXCEEDED". For a value
 * outside the enum, "UNKNOWN_CODE". The string is static: never free it. */
const char *duct_code_name(int code);

/* A short English sentence for the code, e.g. "permission denied". For a
 * value outside the enum, "unknown status code". Static: never free it. */
const char *duct_code_message(int code);

#ifdef __cplusplus
}
#endif
#endif /* DUCT_STATUS_H */
