/* client/internal.h - what duct's own tests may reach of the client. */
#ifndef DUCT_CLIENT_INTERNAL_H
#define DUCT_CLIENT_INTERNAL_H

#include "duct/client.h"
#include "runtime/transport.h"

/* duct_channel_open on the transport `t` instead of this system's (see
 * server/internal.h). `t` must outlive the channel. */
duct_code duct__channel_open_with(const char *address,
                                  const duct_channel_opts *o,
                                  const duct__transport_ops *t,
                                  duct_channel **out);

#endif
