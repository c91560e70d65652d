/* fuzz-server: the server's whole request path on bytes from a hostile
 * peer: HELLO, frame decode, reassembly, method lookup, authorization,
 * unpacking into the generated types of duct.test.Probe, the handler, and
 * the reply's packing and fragmentation. The library's server/server.c,
 * as linked into every program, runs on the in-memory transport's table
 * (fake_transport.c, through duct__server_new_with), one connection per
 * input.
 * Every frame the server sends back must be well formed (the fake aborts
 * otherwise); ASan/UBSan/LSan report the rest. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <duct/duct.h>

#include "fake_transport.h"
#include "probe.duct.h"
#include "runtime/conn.h"
#include "server/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static duct_code echo(duct_ctx *ctx, const Duct__Test__Blob *req, Duct__Test__Blob *reply) {
  (void)ctx;
  reply->data = req->data;
  reply->tag = req->tag;
  return DUCT_OK;
}

/* Does not sleep: the fuzzer wants the path, not the wait. */
static duct_code do_sleep(duct_ctx *ctx, const Duct__Test__SleepRequest *req,
                          Duct__Test__SleepReply *reply) {
  (void)req;
  reply->remaining_ms = duct_ctx_remaining_ms(ctx);
  return DUCT_OK;
}

static duct_code fail(duct_ctx *ctx, const Duct__Test__FailRequest *req, Duct__Test__Empty *reply) {
  (void)reply;
  return duct_ctx_fail(ctx, (duct_code)req->code, "%s", req->message ? req->message : "");
}

static duct_code stats(duct_ctx *ctx, const Duct__Test__Empty *req, Duct__Test__Stats *reply) {
  (void)ctx;
  (void)req;
  reply->sleeping = 1;
  return DUCT_OK;
}

/* Builds a reply from call memory, as real handlers do. */
static duct_code whoami(duct_ctx *ctx, const Duct__Test__Empty *req, Duct__Test__PeerInfo *reply) {
  (void)req;
  const duct_peer *p = duct_ctx_peer(ctx);
  reply->pid = p->pid;
  reply->user = duct_ctx_strdup(ctx, p->user);
  return reply->user ? DUCT_OK : DUCT_RESOURCE_EXHAUSTED;
}

static duct_code do_shutdown(duct_ctx *ctx, const Duct__Test__Empty *req, Duct__Test__Empty *reply) {
  (void)ctx;
  (void)req;
  (void)reply;
  return DUCT_OK;
}

/* The hook must keep this from ever running. */
static duct_code forbidden(duct_ctx *ctx, const Duct__Test__Empty *req, Duct__Test__Empty *reply) {
  (void)ctx;
  (void)req;
  (void)reply;
  abort();
}

static duct_code authorize(void *user, const duct_peer *peer, const duct_method *m) {
  (void)user;
  (void)peer;
  return strcmp(m->name, "/duct.test.Probe/Forbidden") ? DUCT_OK : DUCT_PERMISSION_DENIED;
}

static const duct_test_probe_handlers handlers = {
    .echo = echo, .sleep = do_sleep, .fail = fail, .get_stats = stats,
    .whoami = whoami, .shutdown = do_shutdown, .forbidden = forbidden,
};

static void quiet(void *user, duct_log_level level, const char *line) {
  (void)user;
  (void)level;
  (void)line;
}

#define MAX_MSGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *msgs[MAX_MSGS];
  size_t lens[MAX_MSGS];
  size_t n = fake_split(data, size, msgs, lens, MAX_MSGS);

  /* A small message limit so the fuzzer reaches RESOURCE_EXHAUSTED. */
  duct_server_opts o = {.workers = 1, .max_message_size = 20000, .authorize = authorize,
                        .log = quiet};
  duct_server *s;
  if (duct__server_new_with(&o, &fake_transport, &s) != DUCT_OK)
    abort();
  if (duct_test_probe_register(s, &handlers, NULL) != DUCT_OK ||
      duct_server_listen(s, "fuzz") != DUCT_OK || duct_server_start(s) != DUCT_OK)
    abort();
  const duct__srv_cb *cb = fake_srv_callbacks();
  void *core = fake_srv_core();

  duct_peer peer = {.pid = 1234, .uid = 1000, .gid = 1000, .has_uid = 1, .user = "1000"};
  duct__conn *c = fake_conn_new();
  void *state = cb->open(core, c, &peer);
  if (!state)
    abort();
  c->state = state; /* as admission does: conn_want_drained needs it */
  for (size_t i = 0; i < n && !fake_conn_closed(c); i++) {
    /* A copy exactly as long as the message, so reading past it is a
     * finding. */
    uint8_t *m = malloc(lens[i] ? lens[i] : 1);
    if (!m)
      abort();
    if (lens[i])
      memcpy(m, msgs[i], lens[i]);
    int r = cb->message(state, m, lens[i]);
    free(m);
    /* 1 means "answered, keep the connection" (transport.h); only a
     * negative result closes it. 2: the read is "re-armed" (the next
     * message would be delivered), then run() on this thread, once; the
     * message buffer is gone by then, as on a real transport. */
    if (r < 0)
      break;
    if (r == 2) {
      if (!cb->run)
        abort(); /* 2 is only for a core with run() */
      cb->run(state);
    }
    if (cb->tick) /* optional in the table's contract */
      cb->tick(core);
  }
  cb->closed(state, DUCT_OK, NULL);
  fake_conn_free(c);
  duct_server_stop(s, 0);
  duct_server_free(s);
  return 0;
}
