/* duct/service.h - what generated code and the runtime share: method and
 * service descriptors, the peer's identity, and the log callback.
 *
 * Users rarely touch these directly: protoc-gen-duct emits one const
 * duct_service per .proto service, and the typed stubs pass its methods
 * to duct_call_unary() and duct_server_add(). */
#ifndef DUCT_SERVICE_H
#define DUCT_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "duct/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* printf-style checking of duct's format arguments. mingw-w64's gcc checks
 * plain `printf` against Microsoft's dialect (no %zu), while duct builds
 * with mingw's C99 stdio, so it asks for the GNU dialect there. */
#if defined(__MINGW32__)
#define DUCT_PRINTF_FORMAT(fmt, args) __attribute__((format(gnu_printf, fmt, args)))
#elif defined(__GNUC__)
#define DUCT_PRINTF_FORMAT(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define DUCT_PRINTF_FORMAT(fmt, args)
#endif

/* The per-call context a handler receives; see duct/server.h. */
typedef struct duct_ctx duct_ctx;

/* A stream of one call, as its server-side handler sees it (duct/server.h). */
typedef struct duct_stream duct_stream;

/* The four shapes of a method, as the .proto's `stream` keywords say. */
typedef enum duct_method_kind {
  DUCT_UNARY = 0,            /* one request, one reply */
  DUCT_SERVER_STREAMING = 1, /* one request, a stream of replies */
  DUCT_CLIENT_STREAMING = 2, /* a stream of requests, one reply */
  DUCT_BIDI_STREAMING = 3,   /* a stream each way */
} duct_method_kind;

/* Calls the typed handler for one method. Generated: it casts `handlers`
 * to the service's handler table and calls the method's entry (or returns
 * DUCT_UNIMPLEMENTED when that entry is NULL). `req` is the unpacked
 * request; `reply` an initialized, empty reply of the method's output type
 * that the handler fills. */
typedef duct_code (*duct_invoke_fn)(const void *handlers, duct_ctx *ctx,
                                    const ProtobufCMessage *req,
                                    ProtobufCMessage *reply);

/* Calls the typed handler of a streaming method (generated, like
 * duct_invoke_fn). `req` is the unpacked request for a server-streaming
 * method and NULL otherwise; `reply` an initialized, empty reply for a
 * client-streaming method and NULL otherwise; `stream` the call's stream. */
typedef duct_code (*duct_stream_invoke_fn)(const void *handlers, duct_ctx *ctx,
                                           const ProtobufCMessage *req,
                                           duct_stream *stream,
                                           ProtobufCMessage *reply);

/* One RPC method. All fields are static data emitted by protoc-gen-duct. */
typedef struct duct_method {
  const char *name; /* full name, "/pkg.Service/Method" */
  uint32_t id;      /* FNV-1a 32 of name (docs/PROTOCOL.md), never 0 */
  const ProtobufCMessageDescriptor *input;
  const ProtobufCMessageDescriptor *output;
  duct_invoke_fn invoke;              /* DUCT_UNARY; NULL otherwise */
  duct_method_kind kind;
  duct_stream_invoke_fn invoke_stream; /* the streaming kinds; NULL for unary */
} duct_method;

/* One .proto file as protoc saw it, embedded by protoc-gen-duct so a server
 * can describe itself (server reflection, docs/GUIDE.md). Static data. */
typedef struct duct_file {
  const char *name;                    /* as imported: "kv/kv.proto" */
  const uint8_t *descriptor;           /* serialized google.protobuf.FileDescriptorProto,
                                          source_code_info removed */
  size_t size;                         /* bytes at descriptor */
  const char *const *symbols;          /* full names defined here, no leading dot: messages
                                          (nested ones too), enums (nested too), services,
                                          and methods as "pkg.Service.Method"; NULL-terminated */
  const struct duct_file *const *deps; /* its direct imports, NULL-terminated */
} duct_file;

/* One service: its full name ("pkg.Service"), its methods and, for server
 * reflection (docs/GUIDE.md, "Reflection"), the file that defines it. All
 * static data emitted by protoc-gen-duct. */
typedef struct duct_service {
  const char *name;
  size_t n_methods;
  const duct_method *methods;
  const duct_file *file; /* the file that defines the service; NULL: none embedded */
} duct_service;

/* Who is on the other end of a connection, as the operating system
 * reports it (SO_PEERCRED on POSIX; GetNamedPipeClientProcessId and the
 * client's token on Windows). Borrowed: valid for the call it is given to. */
typedef struct duct_peer {
  uint32_t pid;     /* process id; 0 if unknown */
  uint32_t uid;     /* POSIX user id (has_uid) */
  uint32_t gid;     /* POSIX group id (has_uid) */
  int has_uid;      /* 1 on POSIX */
  const char *user; /* Windows: the user's SID string ("S-1-5-21-..."),
                       POSIX: the uid in decimal; never NULL */
} duct_peer;

typedef enum duct_log_level {
  DUCT_LOG_ERROR = 0,
  DUCT_LOG_WARN = 1,
  DUCT_LOG_INFO = 2,
  DUCT_LOG_DEBUG = 3,
} duct_log_level;

/* Receives duct's log lines (one line, no newline; borrowed for the call).
 * May be called from any of duct's threads, concurrently. duct never
 * prints on its own: without a callback, errors and warnings go to stderr. */
typedef void (*duct_log_cb)(void *user, duct_log_level level, const char *line);

/* Where duct's own memory comes from: connections, buffers, per-call
 * arenas, everything the library allocates. (Replies returned to a caller
 * use duct_call_opts.allocator instead.) All three functions must be set;
 * realloc(user, NULL, n) must act as malloc, free(user, NULL) as a no-op. */
typedef struct duct_allocator {
  void *(*malloc)(void *user, size_t n);
  void *(*realloc)(void *user, void *p, size_t n);
  void (*free)(void *user, void *p);
  void *user;
} duct_allocator;

/* Installs `a` (copied) for every later allocation; NULL restores the C
 * library's. Call it before any other duct function and not while duct is
 * in use: memory must be freed by the allocator that made it. */
void duct_set_allocator(const duct_allocator *a);

#ifdef __cplusplus
}
#endif
#endif /* DUCT_SERVICE_H */
