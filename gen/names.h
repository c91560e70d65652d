/* gen/names.h - how protoc-gen-duct names things in C.
 *
 * Two families of names meet in a generated file:
 *  - protoc-c's, which duct must reproduce to refer to message types and
 *    their descriptors (Demo__AddRequest, demo__add_request__descriptor);
 *    the rules are protoc-c's (protoc-c/c_helpers.cc: ToCamel,
 *    CamelToLower, FullNameToC, FullNameToLower, the c_package option);
 *  - duct's own (docs/CODEGEN.md): <prefix>_<member> for methods, with
 *    <prefix>_<snake>_async (unary) or _stream, _send, _close_send,
 *    _recv, _cancel, _finish (streaming) beside it, and
 *    <prefix>_service, <prefix>_handlers, <prefix>_register per service,
 *    where <prefix> is the package and service in snake case and <snake>
 *    the method's (model.c builds these).
 *
 * Every function here is pure string work (no protobuf-c), so the unit
 * test links this file alone. Results are allocated in the arena. */
#ifndef DUCT_GEN_NAMES_H
#define DUCT_GEN_NAMES_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* protoc-c's CamelToLower: "AddRequest" -> "add_request" (an '_' before an
 * upper-case letter that follows a lower-case one; all letters lowered). */
char *gen_camel_to_lower(gen_arena *a, const char *name);
/* protoc-c's ToCamel: "add_request" -> "AddRequest". */
char *gen_to_camel(gen_arena *a, const char *name);

/* protoc-c's C type name of the message or enum `full` ("pkg.Outer.Inner",
 * no leading dot) defined in a file with `package` ("" for none) and
 * protobuf-c's c_package option (NULL when unset): "Pkg__Outer__Inner". */
char *gen_c_type_name(gen_arena *a, const char *full, const char *package,
                      const char *c_package);
/* The same in lower case, the stem of protoc-c's functions and
 * descriptors: "pkg__outer__inner" (+ "__descriptor", "__init", ...). */
char *gen_c_lower_name(gen_arena *a, const char *full, const char *package,
                       const char *c_package);

/* duct's prefix for a service: the C package (c_package if set, else the
 * package) with each '.'-separated part in snake case, then the service in
 * snake case, all joined by single '_': ("demo", "Calculator") ->
 * "demo_calculator"; no package: "calculator". */
char *gen_service_prefix(gen_arena *a, const char *c_package_or_package,
                         const char *service);

/* duct's member name for a method: its snake case, with one '_' appended
 * when that is a C keyword (C11, C23), a C++ keyword (C++20, including the
 * alternative spellings and, or, not, ...), a lower-case standard macro,
 * one of the service-level words (service, handlers, register), or
 * already ends in '_'. The last rule keeps the mapping one-to-one: an
 * appended '_' can only come from the escape. C++ keywords are escaped
 * because C++ code includes the same .duct.h, whose handler table has a
 * field per method. "Add" -> "add", "Register" -> "register_",
 * "Case" -> "case_", "Delete" -> "delete_", "Char8T" -> "char8_t_". */
char *gen_member_name(gen_arena *a, const char *method);

/* 1 if `s` may not be used as a member name unescaped (see above). */
int gen_is_reserved_member(const char *s);

/* FNV-1a 32 of a full method name "/pkg.Service/Method": the method id of
 * docs/PROTOCOL.md, the same function as the runtime's duct__method_id. */
uint32_t gen_method_id(const char *full_name);

/* Checks n method ids for the two errors the protocol rules out: returns
 * 0 when all are non-zero and distinct; 1 when ids[*first] is 0; 2 when
 * ids[*first] == ids[*second] (first < second, the earliest such pair). */
int gen_check_ids(const uint32_t *ids, size_t n, size_t *first,
                  size_t *second);

#endif /* DUCT_GEN_NAMES_H */
