/* cli/dynpool.h - protobuf-c descriptors built at run time, for the duct
 * tool (docs/CLI.md).
 *
 * The tool calls services it was never compiled with. What it knows of
 * them arrives as serialized google.protobuf.FileDescriptorProtos (from a
 * server's reflection service, or a `protoc --descriptor_set_out` file).
 * A pool turns those into the same ProtobufCMessageDescriptor and
 * ProtobufCEnumDescriptor structs protoc-c would have generated, with a
 * struct layout it computes, so protobuf_c_message_pack, _unpack and
 * _free_unpacked work on them unchanged and give the same wire bytes;
 * and into duct_service / duct_method tables like protoc-gen-duct's.
 *
 * What the built descriptors look like, where protoc-c leaves a choice:
 *  - A message is a ProtobufCMessage followed by its fields in declaration
 *    order, each at its natural alignment: has_ flags before the scalars
 *    that have them, n_ counts before repeated arrays; a oneof's case (a
 *    uint32) where its first member is declared, and each member with
 *    storage of its own (protoc-c's members share a union, which
 *    protobuf-c's generic init, run for these descriptors, would corrupt
 *    by writing every member's default into it).
 *  - proto3 `optional` fields (which protoc-c 1.4.1 cannot compile) get
 *    LABEL_OPTIONAL with a has_ flag (NULL meaning absent for strings and
 *    messages), as newer protoc-c gives them; their synthetic oneof is not
 *    a oneof.
 *  - c_name is the full name with '.' turned into "__"; nothing in the
 *    runtime reads it.
 *  - Groups (proto2 `group`) and extensions are not supported: a group
 *    fails duct_dynpool_build, extensions are ignored.
 *
 * A pool is not thread-safe; its descriptors, once built, are read-only
 * and may be used from any thread until duct_dynpool_free. */
#ifndef DUCT_CLI_DYNPOOL_H
#define DUCT_CLI_DYNPOOL_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "duct/service.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct duct_dynpool duct_dynpool;

/* Creates an empty pool. NULL when out of memory. Free with
 * duct_dynpool_free. */
duct_dynpool *duct_dynpool_new(void);

/* Adds one serialized FileDescriptorProto (`data` is copied as needed, and
 * may be freed on return). Files may come in any order; a file already in
 * the pool (same name) is ignored. Returns 0, or -1 with a message in
 * `err` (e.g. "kv.proto: not a FileDescriptorProto"); the pool is then
 * unchanged. `err` may be NULL when errlen is 0. */
int duct_dynpool_add_file(duct_dynpool *p, const uint8_t *data, size_t len, char *err,
                          size_t errlen);

/* Adds every file of a serialized FileDescriptorSet (protoc
 * --descriptor_set_out --include_imports), as duct_dynpool_add_file does
 * for each. 0, or -1 with a message in err (no file added then). */
int duct_dynpool_add_set(duct_dynpool *p, const uint8_t *data, size_t len, char *err,
                         size_t errlen);

/* Builds descriptors for everything added so far (call after adding; may
 * be called again after adding more: files built before are kept as they
 * are, so pointers handed out stay valid). Fails with -1 and a message
 * naming the problem, e.g. "kv.proto: type .kv.Missing not found (is its
 * file among the descriptors?)"; the files added since the last
 * successful build are then left unbuilt (a later call retries them). */
int duct_dynpool_build(duct_dynpool *p, char *err, size_t errlen);

/* Lookups by full name without a leading dot ("kv.v1.PutRequest"); NULL
 * if absent or not built. Borrowed from the pool, valid until
 * duct_dynpool_free. */
const ProtobufCMessageDescriptor *duct_dynpool_message(const duct_dynpool *p,
                                                       const char *full_name);
const ProtobufCEnumDescriptor *duct_dynpool_enum(const duct_dynpool *p, const char *full_name);
const duct_service *duct_dynpool_service(const duct_dynpool *p, const char *full_name);

/* The built services, in the order their files were added and declared.
 * Each method's name is "/pkg.Svc/Method", its id the FNV-1a hash the
 * runtime uses (docs/PROTOCOL.md), input/output the pool's descriptors,
 * kind from the `stream` keywords; invoke and invoke_stream are NULL.
 * Borrowed, valid until duct_dynpool_free. */
size_t duct_dynpool_n_services(const duct_dynpool *p);
const duct_service *duct_dynpool_service_at(const duct_dynpool *p, size_t i);

/* The method named "pkg.Svc/Method" or "pkg.Svc.Method" (a leading '/' is
 * allowed too); NULL if absent. Borrowed, valid until duct_dynpool_free. */
const duct_method *duct_dynpool_method(const duct_dynpool *p, const char *name);

/* The symbol `symbol` (a full name without a leading dot, or a method as
 * duct_dynpool_method takes it) as .proto text, after one comment line
 * naming it and its file ("// kv.v1.PutRequest (kv/kv.proto)"):
 *  - a service with its rpcs; a method as its one rpc line;
 *  - a message with its fields (labels as the file's syntax writes them:
 *    proto2 `optional`/`required`, proto3 `optional` only where declared),
 *    oneofs, maps as map<K, V>, field options packed/default/deprecated/
 *    json_name (json_name only where it differs from the default), then
 *    its nested messages (map entries excepted) and enums;
 *  - an enum with its values.
 * Type names: a type in the same package as the symbol's file is written
 * relative to the scope it is written in (the shortest name protoc would
 * resolve back to the same type from there: `Item`, `Everything.Item`),
 * any other type fully qualified with a leading dot
 * (`.google.protobuf.Timestamp`).
 * Returns a malloc'd, NUL-terminated string the caller frees, or NULL with
 * a message in err ("symbol kv.v1.Nope not found", or out of memory). */
char *duct_dynpool_describe(const duct_dynpool *p, const char *symbol, char *err,
                            size_t errlen);

/* Initializes `mem` (d->sizeof_message bytes) as an empty message of type
 * d, defaults set, as protobuf_c_message_init would. Use it instead of
 * that function, which calls d->message_init and so cannot take the
 * pool's descriptors (their message_init is NULL: protobuf-c's unpack
 * then initializes generically). Works on compiled descriptors too. The
 * message borrows its defaults from d. */
void duct_dynpool_init_message(const ProtobufCMessageDescriptor *d, void *mem);

/* Frees the pool and everything it handed out. NULL is a no-op. */
void duct_dynpool_free(duct_dynpool *p);

#ifdef __cplusplus
}
#endif
#endif /* DUCT_CLI_DYNPOOL_H */
