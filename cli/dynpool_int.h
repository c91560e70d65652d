/* cli/dynpool_int.h - the pool's insides, shared by dynpool.c (building)
 * and describe.c (.proto text). Not for the tool's other parts. */
#ifndef DUCT_CLI_DYNPOOL_INT_H
#define DUCT_CLI_DYNPOOL_INT_H

#include <stdarg.h>

#include "google/protobuf/descriptor.pb-c.h"

#include "dynpool.h"

typedef Google__Protobuf__FileDescriptorProto dyn_file_proto;
typedef Google__Protobuf__DescriptorProto dyn_msg_proto;
typedef Google__Protobuf__EnumDescriptorProto dyn_enum_proto;
typedef Google__Protobuf__ServiceDescriptorProto dyn_svc_proto;
typedef Google__Protobuf__FieldDescriptorProto dyn_field_proto;

typedef enum dyn_kind { DYN_MESSAGE, DYN_ENUM, DYN_SERVICE } dyn_kind;

/* One added file. `proto` is borrowed from one of the pool's unpacked
 * messages (the file itself, or the set it came in). */
typedef struct dyn_file {
  const dyn_file_proto *proto;
  int proto3; /* syntax = "proto3" */
  int built;  /* its symbols are registered and their descriptors filled */
} dyn_file;

/* One named type or service. `full` has no leading dot and lives in the
 * pool's arena; `built` is the ProtobufCMessageDescriptor,
 * ProtobufCEnumDescriptor or duct_service the pool made for it. */
typedef struct dyn_sym {
  const char *full;
  dyn_kind kind;
  size_t file; /* index into duct_dynpool.files */
  union {
    const dyn_msg_proto *msg;
    const dyn_enum_proto *en;
    const dyn_svc_proto *svc;
  } proto;
  void *built;
} dyn_sym;

struct duct_dynpool {
  dyn_file *files;
  size_t n_files, cap_files;
  /* Unpacked FileDescriptorProtos and FileDescriptorSets, freed last. */
  ProtobufCMessage **owned;
  size_t n_owned, cap_owned;
  dyn_sym *syms;
  size_t n_syms, cap_syms;
  /* Symbol indices of the built services, in order. */
  size_t *services;
  size_t n_services, cap_services;
  /* Every other allocation (descriptors, names, defaults): one list of
   * blocks, all freed with the pool, so a build that fails half-way
   * leaks nothing and needs no unwinding. */
  void **blocks;
  size_t n_blocks, cap_blocks;
};

/* The symbol named `full` (no leading dot) of any kind; NULL if absent. */
const dyn_sym *duct__dynpool_find(const duct_dynpool *p, const char *full);

/* Resolves a type name as protoc does from inside `scope` (a package or
 * message full name, "" for none): ".a.B" is absolute; "B.C" is tried in
 * `scope`, then in each enclosing scope out to the root. NULL if nothing
 * matches. */
const dyn_sym *duct__dynpool_resolve(const duct_dynpool *p, const char *scope,
                                     const char *name);

/* snprintf into err[errlen] (nothing when errlen is 0). */
void duct__dynpool_err(char *err, size_t errlen, const char *fmt, ...) DUCT_PRINTF_FORMAT(3, 4);

#endif /* DUCT_CLI_DYNPOOL_INT_H */
