/* server/internal.h - what duct's own tests may reach of the server. */
#ifndef DUCT_SERVER_INTERNAL_H
#define DUCT_SERVER_INTERNAL_H

#include "duct/server.h"
#include "runtime/transport.h"

/* duct_server_new on the transport `t` instead of this system's: the
 * fuzz targets' in-memory transport, the fault suite's failing wrapper.
 * `t` must outlive the server. */
duct_code duct__server_new_with(const duct_server_opts *o,
                                const duct__transport_ops *t,
                                duct_server **out);

/* reflection.c: adds the built-in duct.reflection.v1.Reflection to `s`,
 * which its handlers reach as duct_ctx_user. duct_server_add's codes. */
duct_code duct__reflection_register(duct_server *s);

#endif
