/* This system's transport as a table (runtime/transport.h). Both
 * platforms implement the same functions under the same names, so one
 * table serves either; only the name comes from the platform folder. */
#include "runtime/conn.h"

const duct__transport_ops duct__platform_transport = {
    .name = duct__platform_name,
#ifndef _WIN32
    .sends_gather = 1,
#endif
    .listen = duct__listen,
    .listener_start = duct__listener_start,
    .listener_stop_accepting = duct__listener_stop_accepting,
    .listener_free = duct__listener_free,
    .listener_each = duct__listener_each,
    .conn_send = duct__conn_send,
    .conn_send_lent = duct__conn_send_lent,
    .conn_send_nowait = duct__conn_send_nowait,
    .conn_close = duct__conn_close,
    .conn_queued = duct__conn_queued,
    .conn_want_drained = duct__conn_want_drained,
    .link_open = duct__link_open_opts,
    .link_send = duct__link_send,
    .link_recv = duct__link_recv,
    .link_recv_into = duct__link_recv_into,
    .link_transact = duct__link_transact,
    .link_shutdown = duct__link_shutdown,
    .link_close = duct__link_close,
    .link_peer_pid = duct__link_peer_pid,
};
