/* fuzz-client: the client's response path on bytes from a hostile or
 * broken server: the HELLO answer, response frames, GOAWAY, fragments and
 * their reassembly, late answers to other calls, error texts, and
 * unpacking into the generated reply types of duct.test.Probe. The input
 * is the script of messages the "server" sends (fake_transport.c); the
 * library's channel, opened on the fake's table with
 * duct__channel_open_with, makes calls until the script runs out,
 * reconnecting as a real one would. Invariants: a call returns a real duct_code, a reply exactly
 * when the code is OK and of the method's output type, a status whose
 * code matches; every frame the client sends is well formed. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <duct/duct.h>

#include "client/internal.h"
#include "fake_transport.h"
#include "probe.duct.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void quiet(void *user, duct_log_level level, const char *line) {
  (void)user;
  (void)level;
  (void)line;
}

#define MAX_MSGS 64
#define MAX_CALLS 16

static void check(duct_code rc, const ProtobufCMessage *reply, const duct_method *m,
                  const duct_status *st) {
  if ((unsigned)rc >= DUCT_CODE_COUNT || st->code != rc)
    abort();
  if (memchr(st->message, '\0', sizeof st->message) == NULL)
    abort();
  if ((rc == DUCT_OK) != (reply != NULL))
    abort();
  if (reply && reply->descriptor != m->output)
    abort();
}

static const duct_method *method(const char *name) {
  for (size_t i = 0; i < duct_test_probe_service.n_methods; i++)
    if (!strcmp(duct_test_probe_service.methods[i].name, name))
      return &duct_test_probe_service.methods[i];
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *msgs[MAX_MSGS];
  size_t lens[MAX_MSGS];
  size_t n = fake_split(data, size, msgs, lens, MAX_MSGS);
  fake_script_set(msgs, lens, n);

  duct_channel_opts o = {.max_message_size = 20000, .max_connections = 2, .log = quiet};
  duct_channel *ch;
  if (duct__channel_open_with("fuzz", &o, &fake_transport, &ch) != DUCT_OK)
    return 0;
  for (int i = 0; i < MAX_CALLS && !fake_script_done(); i++) {
    duct_status st;
    duct_call_opts co = {.status = &st};
    /* Three reply shapes: bytes + uint32, a string, plain integers. */
    const duct_method *m;
    ProtobufCMessage *reply = NULL;
    duct_code rc;
    Duct__Test__Blob blob = DUCT__TEST__BLOB__INIT;
    Duct__Test__Empty empty = DUCT__TEST__EMPTY__INIT;
    switch (i % 3) {
    case 0:
      m = method("/duct.test.Probe/Echo");
      blob.data.data = (uint8_t *)"ping";
      blob.data.len = 4;
      rc = duct_call_unary(ch, m, &blob.base, &reply, &co);
      break;
    case 1:
      m = method("/duct.test.Probe/Whoami");
      rc = duct_call_unary(ch, m, &empty.base, &reply, &co);
      break;
    default:
      m = method("/duct.test.Probe/GetStats");
      rc = duct_call_unary(ch, m, &empty.base, &reply, &co);
      break;
    }
    check(rc, reply, m, &st);
    if (reply)
      protobuf_c_message_free_unpacked(reply, NULL);
  }
  duct_channel_close(ch);
  return 0;
}
