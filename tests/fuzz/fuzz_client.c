/* fuzz-client: the client's response paths on bytes from a hostile or
 * broken server. The input is a list of messages (fake_transport.c's
 * format), of two kinds:
 *
 *  - frames (any message but those of 1 to 3 bytes): the script the
 *    "server" sends, read in order by every link of the channel;
 *  - operations (messages of 1 to 3 bytes): what the application does,
 *    in order: blocking unary calls, async calls (duct_call_async,
 *    duct_call_cancel, duct_call_release), streams of every kind
 *    (duct_client_stream_start, _send, _close_send, _recv, _cancel,
 *    _finish), duct_channel_dispatch, and "pump": hand the next scripted
 *    frames to the channel's reader thread (client/mux.c).
 *
 * An input without operations runs the blocking calls of before: Echo,
 * Whoami, GetStats, ... until the script runs out (reconnecting as a real
 * channel would), so the corpus of the unary paths keeps its meaning.
 *
 * The reader thread is real, but it takes a frame only when the driver
 * (this thread) pumps one, and the pump waits until the reader has dealt
 * with it; nothing waits on a clock (no deadline is short enough to pass
 * during a run). So what the reader sees between two operations is the
 * input's choice, the same on every run. Every thread the channel
 * started is joined by duct_channel_close, before the run returns.
 *
 * Invariants: every call returns a real duct_code, a reply exactly when
 * the code is OK (for streams: a client-streaming call's reply) and of
 * the method's output type, a status whose code matches; stream messages
 * are of the output type; each started async call's callback runs
 * exactly once; every frame the client sends is well formed, fits the
 * server's max_frame and is a version 2 frame only on a version 2
 * connection (the fake aborts otherwise); ASan/UBSan/LSan the rest. */
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <duct/duct.h>

#include "client/internal.h"
#include "fake_transport.h"
#include "probe.duct.h"
#include "runtime/sys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Silent, unless DUCT_FUZZ_VERBOSE is set: then duct's log lines and
 * every call's end show which paths an input takes (run the target on
 * that one file). */
static int verbose(void) {
  static int v = -1;
  if (v < 0)
    v = getenv("DUCT_FUZZ_VERBOSE") != NULL;
  return v;
}

static void quiet(void *user, duct_log_level level, const char *line) {
  (void)user;
  if (verbose())
    fprintf(stderr, "[duct %d] %s\n", (int)level, line);
}

static void show_end(const char *what, const duct_method *m, const duct_status *st) {
  if (verbose())
    fprintf(stderr, "[fuzz] %s %s: %s %s\n", what, m->name, duct_code_name(st->code),
            st->message);
}

#define MAX_MSGS 128
#define MAX_CALLS 16 /* blocking calls of an input without operations */
#define NSTREAMS 8
#define NASYNC 32

static void check_status(duct_code rc, const duct_status *st) {
  if ((unsigned)rc >= DUCT_CODE_COUNT || st->code != rc)
    abort();
  if (memchr(st->message, '\0', sizeof st->message) == NULL)
    abort();
}

static void check(duct_code rc, const ProtobufCMessage *reply, const duct_method *m,
                  const duct_status *st) {
  check_status(rc, st);
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

/* ---- requests ---- */

/* Unary methods with three reply shapes (bytes + uint32, a string, plain
 * integers) and an int64. */
static const char *const unary_names[] = {
    "/duct.test.Probe/Echo", "/duct.test.Probe/Whoami", "/duct.test.Probe/GetStats",
    "/duct.test.Probe/Sleep"};

/* Every request the harness sends, built once per call on the stack. */
typedef struct requests {
  Duct__Test__Blob blob;
  Duct__Test__Empty empty;
  Duct__Test__SleepRequest sleep;
  Duct__Test__RangeRequest range;
} requests;

static void requests_init(requests *r) {
  Duct__Test__Blob b = DUCT__TEST__BLOB__INIT;
  Duct__Test__Empty e = DUCT__TEST__EMPTY__INIT;
  Duct__Test__SleepRequest s = DUCT__TEST__SLEEP_REQUEST__INIT;
  Duct__Test__RangeRequest g = DUCT__TEST__RANGE_REQUEST__INIT;
  r->blob = b;
  r->blob.data.data = (uint8_t *)"ping";
  r->blob.data.len = 4;
  r->empty = e;
  r->sleep = s;
  r->sleep.ms = 5;
  r->range = g;
  r->range.count = 3;
}

/* The request for method m, NULL for a method that streams its requests. */
static const ProtobufCMessage *request_for(requests *r, const duct_method *m) {
  if (m->input == &duct__test__blob__descriptor)
    return &r->blob.base;
  if (m->input == &duct__test__sleep_request__descriptor)
    return &r->sleep.base;
  if (m->input == &duct__test__range_request__descriptor)
    return &r->range.base;
  return &r->empty.base;
}

/* ---- async calls ---- */

typedef struct async_rec {
  const duct_method *m;
  duct_call *handle; /* NULL: none asked for, or released */
  atomic_int done;   /* times the callback ran */
} async_rec;

/* Runs on the channel's dispatcher thread, or in duct_channel_dispatch. */
static void done_cb(void *user, duct_code code, ProtobufCMessage *reply,
                    const duct_status *st) {
  async_rec *r = user;
  check(code, reply, r->m, st);
  show_end("async", r->m, st);
  if (reply)
    protobuf_c_message_free_unpacked(reply, NULL);
  atomic_fetch_add(&r->done, 1);
}

/* ---- streams ---- */

static const char *const stream_names[] = {
    "/duct.test.Probe/Range", "/duct.test.Probe/Subscribe", "/duct.test.Probe/Sum",
    "/duct.test.Probe/Chat"};

typedef struct sslot {
  duct_client_stream *st;
  const duct_method *m;
} sslot;

/* Padding for stream messages: up to 255 x 256 bytes, so a few sends
 * fill the 256 KiB window and large ones go out as fragments. */
static uint8_t pad[255 * 256];

static int sends(const duct_method *m) {
  return m->kind == DUCT_CLIENT_STREAMING || m->kind == DUCT_BIDI_STREAMING;
}

static int receives(const duct_method *m) {
  return m->kind == DUCT_SERVER_STREAMING || m->kind == DUCT_BIDI_STREAMING;
}

/* Takes up to `max` waiting messages without waiting. */
static void recv_some(sslot *s, int max) {
  for (int i = 0; i < max; i++) {
    ProtobufCMessage *msg = (ProtobufCMessage *)&msg; /* must be overwritten */
    duct_code rc = duct_client_stream_recv(s->st, &msg, 0);
    if ((unsigned)rc >= DUCT_CODE_COUNT)
      abort();
    if (!receives(s->m)) {
      if (rc != DUCT_FAILED_PRECONDITION || msg)
        abort();
      return;
    }
    if (rc != DUCT_OK) {
      if (rc != DUCT_DEADLINE_EXCEEDED || msg)
        abort();
      return;
    }
    if (!msg)
      return; /* the end */
    if (msg->descriptor != s->m->output)
      abort();
    protobuf_c_message_free_unpacked(msg, NULL);
  }
}

/* Ends the stream in slot s: its final status (checked), then the slot is
 * free. Call only once the call has ended or after a cancel: finish waits
 * for the end otherwise. */
static void finish(sslot *s) {
  ProtobufCMessage *reply = (ProtobufCMessage *)&reply;
  duct_status st;
  duct_code rc = duct_client_stream_finish(s->st, &reply, &st);
  check_status(rc, &st);
  show_end("stream", s->m, &st);
  if (s->m->kind == DUCT_CLIENT_STREAMING && rc == DUCT_OK) {
    if (!reply || reply->descriptor != s->m->output)
      abort();
  } else if (reply) {
    abort();
  }
  if (reply)
    protobuf_c_message_free_unpacked(reply, NULL);
  s->st = NULL;
}

/* finish() on a thread of its own: it waits for the server's end while
 * the driver pumps frames. */
static void finish_main(void *arg) { finish(arg); }

/* ---- operations ---- */

enum {
  OP_UNARY,        /* b1: method */
  OP_ASYNC,        /* b1: method, bit 2: keep a handle; b2 & 1: a deadline */
  OP_ASYNC_CANCEL, /* b1: record */
  OP_ASYNC_RELEASE,
  OP_START,        /* b1: kind; b2 & 1: a deadline */
  OP_SEND,         /* b1: slot; b2: n and 256-byte units of padding */
  OP_CLOSE_SEND,
  OP_RECV,         /* b1: slot; b2: up to b2 % 4 + 1 messages */
  OP_CANCEL,
  OP_FINISH,       /* cancel, then finish */
  OP_PUMP,         /* b1: frames - 1 (of 16) */
  OP_FINISH_WAIT,  /* finish on a thread while every frame left is pumped; last */
  OP_DISPATCH,
  OP_COUNT
};

/* A deadline that never passes during a run: the dispatcher's deadline
 * list is used, its clock never decides anything. */
#define LONG_DEADLINE_MS 600000u

typedef struct run {
  duct_channel *ch;
  requests req;
  async_rec recs[NASYNC];
  int nrecs;
  sslot slots[NSTREAMS];
} run;

/* Returns 0 to go on, 1 after the last operation an input may have. */
static int do_op(run *r, const uint8_t *op, size_t len) {
  unsigned code = (op[0] & 0x7f) % OP_COUNT;
  unsigned b1 = len > 1 ? op[1] : 0, b2 = len > 2 ? op[2] : 0;
  sslot *s = &r->slots[b1 % NSTREAMS];
  async_rec *rec = r->nrecs ? &r->recs[b1 % (unsigned)r->nrecs] : NULL;
  fake_expect_reader(code != OP_UNARY);
  switch (code) {
  case OP_UNARY: {
    const duct_method *m = method(unary_names[b1 % 3]);
    duct_status st;
    duct_call_opts co = {.status = &st};
    ProtobufCMessage *reply = NULL;
    duct_code rc = duct_call_unary(r->ch, m, request_for(&r->req, m), &reply, &co);
    check(rc, reply, m, &st);
    show_end("unary", m, &st);
    if (reply)
      protobuf_c_message_free_unpacked(reply, NULL);
    break;
  }
  case OP_ASYNC: {
    if (r->nrecs == NASYNC)
      break;
    async_rec *a = &r->recs[r->nrecs];
    a->m = method(unary_names[b1 % 4]);
    atomic_init(&a->done, 0);
    a->handle = NULL;
    duct_call_opts co = {.deadline_ms = b2 & 1 ? LONG_DEADLINE_MS : 0};
    duct_code rc = duct_call_async(r->ch, a->m, request_for(&r->req, a->m), &co, done_cb, a,
                                   b1 & 4 ? &a->handle : NULL);
    if ((unsigned)rc >= DUCT_CODE_COUNT || (rc != DUCT_OK && a->handle))
      abort();
    if (rc == DUCT_OK)
      r->nrecs++; /* its callback is owed */
    break;
  }
  case OP_ASYNC_CANCEL:
    if (rec && rec->handle)
      duct_call_cancel(rec->handle);
    break;
  case OP_ASYNC_RELEASE:
    if (rec && rec->handle) {
      duct_call_release(rec->handle);
      rec->handle = NULL;
    }
    break;
  case OP_START: {
    sslot *free_slot = NULL;
    for (int i = 0; i < NSTREAMS && !free_slot; i++)
      if (!r->slots[i].st)
        free_slot = &r->slots[i];
    if (!free_slot)
      break;
    const duct_method *m = method(stream_names[b1 % 4]);
    duct_call_opts co = {.deadline_ms = b2 & 1 ? LONG_DEADLINE_MS : 0};
    const ProtobufCMessage *q = m->kind == DUCT_SERVER_STREAMING ? request_for(&r->req, m) : NULL;
    duct_client_stream *st = (duct_client_stream *)&st;
    duct_code rc = duct_client_stream_start(r->ch, m, q, &co, &st);
    if ((unsigned)rc >= DUCT_CODE_COUNT || (rc == DUCT_OK) != (st != NULL))
      abort();
    if (rc == DUCT_OK) {
      free_slot->st = st;
      free_slot->m = m;
    }
    break;
  }
  case OP_SEND: {
    if (!s->st)
      break;
    Duct__Test__Seq m = DUCT__TEST__SEQ__INIT;
    m.n = b2;
    m.pad.data = pad;
    m.pad.len = (size_t)b2 * 256;
    duct_code rc = duct_client_stream_send(s->st, &m.base, 0);
    if ((unsigned)rc >= DUCT_CODE_COUNT || (!sends(s->m) && rc != DUCT_FAILED_PRECONDITION))
      abort();
    break;
  }
  case OP_CLOSE_SEND:
    if (s->st) {
      duct_code rc = duct_client_stream_close_send(s->st);
      if (rc != (sends(s->m) ? DUCT_OK : DUCT_FAILED_PRECONDITION))
        abort();
    }
    break;
  case OP_RECV:
    if (s->st)
      recv_some(s, (int)(b2 % 4) + 1);
    break;
  case OP_CANCEL:
    if (s->st)
      duct_client_stream_cancel(s->st);
    break;
  case OP_FINISH:
    if (s->st) {
      duct_client_stream_cancel(s->st);
      finish(s);
    }
    break;
  case OP_PUMP:
    for (unsigned i = 0; i <= b1 % 16 && fake_pump(); i++) {
    }
    break;
  case OP_FINISH_WAIT: {
    if (!s->st)
      break;
    /* The reader ends the call: a RESPONSE, CANCEL or GOAWAY among the
     * frames left, or the end of the connection after the last. */
    duct__thread t;
    if (duct__thread_start(&t, finish_main, s) != DUCT_OK)
      abort();
    while (fake_pump()) {
    }
    duct__thread_join(&t);
    return 1;
  }
  case OP_DISPATCH:
    (void)duct_channel_dispatch(r->ch);
    break;
  }
  return 0;
}

/* The program an input without operations runs: blocking calls until the
 * script runs out. */
static void unary_calls(run *r) {
  for (int i = 0; i < MAX_CALLS && !fake_script_done(); i++) {
    uint8_t op[2] = {OP_UNARY, (uint8_t)(i % 3)};
    do_op(r, op, sizeof op);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *msgs[MAX_MSGS], *frames[MAX_MSGS], *ops[MAX_MSGS];
  size_t lens[MAX_MSGS], frame_lens[MAX_MSGS], op_lens[MAX_MSGS];
  size_t n = fake_split(data, size, msgs, lens, MAX_MSGS), nf = 0, nops = 0;
  for (size_t i = 0; i < n; i++) {
    if (lens[i] >= 1 && lens[i] <= 3) {
      ops[nops] = msgs[i];
      op_lens[nops++] = lens[i];
    } else {
      frames[nf] = msgs[i];
      frame_lens[nf++] = lens[i];
    }
  }
  fake_script_set(frames, frame_lens, nf);
  if (!pad[0])
    memset(pad, 'p', sizeof pad);

  /* The first operation's top bit: completions wait for
   * duct_channel_dispatch instead of running on the channel's thread. */
  int manual = nops && (ops[0][0] & 0x80);
  duct_channel_opts o = {.max_message_size = 20000, .max_connections = 2, .log = quiet,
                         .manual_dispatch = manual};
  static run r;
  memset(&r, 0, sizeof r);
  requests_init(&r.req);
  if (duct__channel_open_with("fuzz", &o, &fake_transport, &r.ch) != DUCT_OK)
    return 0;
  if (!nops)
    unary_calls(&r);
  for (size_t i = 0; i < nops; i++)
    if (do_op(&r, ops[i], op_lens[i]))
      break;

  /* The end: the reader gets the frames left, every stream is cancelled
   * and finished, every handle released, and closing the channel ends
   * the rest (its reader wakes from link_recv through link_shutdown and
   * every async call still open ends with UNAVAILABLE). */
  fake_expect_reader(1);
  while (!fake_script_done() && fake_pump()) {
  }
  for (int i = 0; i < NSTREAMS; i++)
    if (r.slots[i].st) {
      duct_client_stream_cancel(r.slots[i].st);
      finish(&r.slots[i]);
    }
  for (int i = 0; i < r.nrecs; i++)
    if (r.recs[i].handle) {
      duct_call_release(r.recs[i].handle);
      r.recs[i].handle = NULL;
    }
  if (manual && r.nrecs) {
    if (duct_channel_event(r.ch) < 0)
      abort();
    (void)duct_channel_dispatch(r.ch);
  }
  duct_channel_close(r.ch);
  for (int i = 0; i < r.nrecs; i++)
    if (atomic_load(&r.recs[i].done) != 1)
      abort(); /* each started call's callback runs exactly once */
  return 0;
}
