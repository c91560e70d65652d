/* duct-bench: duct against the raw transport floor (docs/BENCHMARKS.md).
 *
 *   duct-bench [--quick | --smoke] [--reps N] [--calls-scale X] [--only MODE]
 *              [--payload BYTES] [--peers]
 *   duct-bench --raw-server ADDRESS     (started by the bench itself)
 *   duct-bench --duct-server ADDRESS    (started by the bench itself)
 *   duct-bench --peer-server NAME ADDRESS   (likewise, with --peers)
 *
 * For each payload (16 B, 1 KiB, 64 KiB, 1 MiB) and client count (1, 4) it
 * runs the same echo twice against servers in separate processes: once raw
 * (bench/raw_*.c, the same message sizes on the same transport with no
 * duct code) and once as a unary call through generated stubs to a duct
 * server. Every call is timed alone on a monotonic clock after a warm-up,
 * and every reply is compared with the request (outside the timed part).
 *
 * Then two cases of protocol version 2 (mode=stream, mode=async):
 *  - one server stream of numbered chunks (16 B, 1 KiB, 64 KiB of data),
 *    against the raw one-way floor: the same number and sizes of transport
 *    messages sent back to back (raw.h); messages per second, each message
 *    checked as it arrives (sequence number, size, a few bytes of content;
 *    every byte of one message in RAW_FULL_CHECK), on both sides alike;
 *  - async unary echoes of 16 B with 64 in flight on one channel, each
 *    completion starting the next; calls per second, beside the unary
 *    lines' 16 B numbers (there is no raw pipelined echo to compare with).
 * A default run repeats each case and reports medians.
 *
 * With --peers (Linux, when bench/peers was built), the unary cases are run
 * once more against other IPC stacks doing the same echo, gRPC C++ over a
 * Unix socket and sd-bus through a private dbus-daemon (bench/peers/), with
 * the same plan, threads and checks, and compared with this run's raw
 * floor. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <duct/duct.h>

#include "bench.duct.h"
#ifdef DUCT_BENCH_PEERS
#include "peers.h"
#endif
#include "proc.h"
#include "raw.h"
#include "runtime/sys.h"

#define MAX_CLIENTS 4
#define MAX_FRAGS 64
/* Frames as duct cuts them (docs/PROTOCOL.md): 32-byte header, at most
 * 65,504 payload bytes, so the raw floor sends the same message sizes. */
#define HEADER 32u
#define FRAG_PAYLOAD (65536u - HEADER)
/* Calls in flight in the async case. */
#define ASYNC_IN_FLIGHT 64
/* Largest chunk the Stream method sends (its data is in call memory). */
#define MAX_CHUNK (1024u * 1024u)

/* ---- the duct server process ---- */

/* Counts every allocation duct's library makes in the server process:
 * duct_set_allocator routes all of them here. */
static atomic_ullong n_allocs;
/* The bench's own process counts too (its duct client), through the same
 * allocator. */
static duct__mutex quit_mu;
static duct__cond quit_cv;
static int quit_requested;

static void *count_malloc(void *user, size_t n) {
  (void)user;
  atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
  return malloc(n);
}
static void *count_realloc(void *user, void *p, size_t n) {
  (void)user;
  atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
  return realloc(p, n);
}
static void count_free(void *user, void *p) {
  (void)user;
  free(p);
}

static duct_code on_echo(duct_ctx *ctx, const Bench__Blob *req, Bench__Blob *reply) {
  (void)ctx;
  reply->data = req->data; /* the request outlives the reply's packing */
  return DUCT_OK;
}

static duct_code on_stats(duct_ctx *ctx, const Bench__Empty *req, Bench__Stats *reply) {
  (void)ctx;
  (void)req;
  reply->allocs = atomic_load(&n_allocs);
  return DUCT_OK;
}

static duct_code on_quit(duct_ctx *ctx, const Bench__Empty *req, Bench__Empty *reply) {
  (void)ctx;
  (void)req;
  (void)reply;
  duct__mutex_lock(&quit_mu);
  quit_requested = 1;
  duct__cond_broadcast(&quit_cv);
  duct__mutex_unlock(&quit_mu);
  return DUCT_OK;
}

/* `count` chunks of `size` bytes back to back. The data is laid out once in
 * call memory; only the sequence number changes, so the handler costs
 * little more than the raw server's loop and what is measured is duct's
 * path. */
static duct_code on_stream(duct_ctx *ctx, const Bench__StreamRequest *req, duct_stream *out) {
  if (req->size > MAX_CHUNK)
    return duct_ctx_fail(ctx, DUCT_INVALID_ARGUMENT, "size %u is over %u", (unsigned)req->size,
                         MAX_CHUNK);
  uint8_t *data = duct_ctx_alloc(ctx, req->size ? req->size : 1);
  if (!data)
    return DUCT_RESOURCE_EXHAUSTED;
  raw_fill(data, req->size, 0);
  Bench__Chunk c = BENCH__CHUNK__INIT;
  c.data.data = data;
  c.data.len = req->size;
  for (uint64_t seq = 1; seq <= req->count; seq++) {
    c.seq = seq;
    duct_code rc = duct_stream_send(out, &c.base, -1);
    if (rc != DUCT_OK)
      return rc; /* the client cancelled or left */
  }
  return DUCT_OK;
}

static const duct_allocator counting = {count_malloc, count_realloc, count_free, NULL};

static int duct_server_main(const char *address) {
  static const bench_echoer_handlers handlers = {
      .echo = on_echo, .get_stats = on_stats, .quit = on_quit, .stream = on_stream};
  duct_set_allocator(&counting);
  duct__mutex_init(&quit_mu);
  duct__cond_init(&quit_cv);
  duct_server *s = NULL;
  duct_code rc = duct_server_new(NULL, &s);
  if (rc == DUCT_OK)
    rc = bench_echoer_register(s, &handlers, NULL);
  if (rc == DUCT_OK)
    rc = duct_server_listen(s, address);
  if (rc == DUCT_OK)
    rc = duct_server_start(s);
  if (rc != DUCT_OK) {
    fprintf(stderr, "duct-bench server: %s: %s\n", address, duct_code_name(rc));
    duct_server_free(s);
    return 2;
  }
  duct__mutex_lock(&quit_mu);
  while (!quit_requested)
    duct__cond_wait(&quit_cv, &quit_mu, -1);
  duct__mutex_unlock(&quit_mu);
  duct_server_stop(s, 1000);
  duct_server_free(s);
  return 0;
}

/* ---- the measuring side ---- */

typedef struct plan {
  size_t payload;
  int calls, warmup;
} plan;

/* A start line for the client threads: everyone warms up, the main thread
 * reads the server's counters, then all start timing together. */
typedef struct gate {
  duct__mutex mu;
  duct__cond cv;
  int ready, go, done;
} gate;

/* What a job measures: the raw floor, duct, or a peer. */
typedef enum side { SIDE_DUCT, SIDE_RAW, SIDE_PEER } side;

/* A peer's operations and its running state (bench/peers/peers.h); the
 * table is an opaque pointer here so that builds without peers (Windows,
 * no packages) compile the same code. */
typedef struct peer_run {
  const void *ops; /* const bench_peer * */
  void *state;
} peer_run;

typedef struct job {
  side raw;
  const char *raw_addr;
  duct_channel *ch;
  const peer_run *peer;
  plan p;
  gate *g;
  double *lat_us; /* p.calls entries */
  int errors;
  const char *error;
  duct__thread thread;
} job;

static size_t varint_len(size_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

/* The transport messages (frames) duct sends for a message that packs to
 * `packed` bytes (docs/PROTOCOL.md, "Fragmentation"). */
static int frame_sizes(size_t packed, size_t *sizes) {
  int n = 0;
  do {
    size_t chunk = packed > FRAG_PAYLOAD ? FRAG_PAYLOAD : packed;
    sizes[n++] = HEADER + chunk;
    packed -= chunk;
  } while (packed > 0 && n < MAX_FRAGS);
  return n;
}

/* The message sizes duct puts on the wire for an echo of `payload` bytes
 * (either direction: request and reply are the same Blob). */
static int wire_sizes(size_t payload, size_t *sizes) {
  return frame_sizes(payload ? 1 + varint_len(payload) + payload : 0, sizes);
}

/* The same for one Chunk of a stream (STREAM_DATA frames): a fixed64
 * sequence number (never 0) and `payload` bytes of data. */
static int chunk_wire_sizes(size_t payload, size_t *sizes) {
  return frame_sizes(9 + (payload ? 1 + varint_len(payload) + payload : 0), sizes);
}

static void gate_arrive_and_wait(gate *g) {
  duct__mutex_lock(&g->mu);
  g->ready++;
  duct__cond_broadcast(&g->cv);
  while (!g->go)
    duct__cond_wait(&g->cv, &g->mu, -1);
  duct__mutex_unlock(&g->mu);
}

static void fill(uint8_t *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)(i * 31u + seed);
}

static void run_raw(job *j) {
  size_t sizes[MAX_FRAGS], total = 0;
  int n = wire_sizes(j->p.payload, sizes);
  for (int i = 0; i < n; i++)
    total += sizes[i];
  uint8_t *tx = malloc(total), *rx = malloc(total + RAW_MAX_MSG);
  raw_client *c = raw_connect(j->raw_addr, 20000);
  if (!tx || !rx || !c) {
    j->error = "raw: cannot connect or allocate";
    j->errors++;
    gate_arrive_and_wait(j->g);
    goto out;
  }
  fill(tx, total, (unsigned)(uintptr_t)j);
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    tx[off] = i + 1 < n ? 'M' : 'L';
    off += sizes[i];
  }
  for (int k = 0; k < j->p.warmup; k++)
    if (raw_echo(c, tx, sizes, n, rx) != 0)
      j->errors++;
  gate_arrive_and_wait(j->g);
  for (int k = 0; k < j->p.calls; k++) {
    memset(rx, 0, 1); /* a stale reply must not pass the check */
    uint64_t t0 = bench_now_ns();
    int rc = raw_echo(c, tx, sizes, n, rx);
    uint64_t t1 = bench_now_ns();
    j->lat_us[k] = (double)(t1 - t0) / 1000.0;
    if (rc != 0 || memcmp(tx, rx, total) != 0) {
      j->errors++;
      j->error = "raw: reply differs from request";
    }
  }
out:
  raw_close(c, 0);
  free(tx);
  free(rx);
}

static void run_duct(job *j) {
  uint8_t *buf = malloc(j->p.payload ? j->p.payload : 1);
  if (!buf) {
    j->errors++;
    gate_arrive_and_wait(j->g);
    return;
  }
  fill(buf, j->p.payload, (unsigned)(uintptr_t)j);
  Bench__Blob req = BENCH__BLOB__INIT;
  req.data.data = buf;
  req.data.len = j->p.payload;
  for (int k = 0; k < j->p.warmup; k++) {
    Bench__Blob *reply;
    if (bench_echoer_echo(j->ch, &req, &reply, NULL) != DUCT_OK)
      j->errors++;
    else
      bench__blob__free_unpacked(reply, NULL);
  }
  gate_arrive_and_wait(j->g);
  for (int k = 0; k < j->p.calls; k++) {
    Bench__Blob *reply = NULL;
    duct_status st;
    duct_call_opts o = {.status = &st};
    uint64_t t0 = bench_now_ns();
    duct_code rc = bench_echoer_echo(j->ch, &req, &reply, &o);
    uint64_t t1 = bench_now_ns();
    j->lat_us[k] = (double)(t1 - t0) / 1000.0;
    if (rc != DUCT_OK) {
      j->errors++;
      j->error = "duct: call failed";
      fprintf(stderr, "duct-bench: echo failed: %s: %s\n", duct_code_name(rc), st.message);
      continue;
    }
    if (reply->data.len != j->p.payload || memcmp(reply->data.data, buf, j->p.payload) != 0) {
      j->errors++;
      j->error = "duct: reply differs from request";
    }
    bench__blob__free_unpacked(reply, NULL);
  }
  free(buf);
}

#ifdef DUCT_BENCH_PEERS
/* The same loop as run_duct through a peer's echo: the request is laid
 * out once, each call is timed alone, the reply is compared after the
 * clock has stopped. */
static void run_peer(job *j) {
  const bench_peer *ops = j->peer->ops;
  uint8_t *buf = malloc(j->p.payload ? j->p.payload : 1);
  void *c = buf ? ops->client_open(j->peer->state) : NULL;
  if (!c) {
    j->errors++;
    j->error = "peer: cannot connect or allocate";
    gate_arrive_and_wait(j->g);
    free(buf);
    return;
  }
  fill(buf, j->p.payload, (unsigned)(uintptr_t)j);
  const uint8_t *reply;
  size_t len;
  for (int k = 0; k < j->p.warmup; k++)
    if (ops->echo(c, buf, j->p.payload, &reply, &len) != 0)
      j->errors++;
  gate_arrive_and_wait(j->g);
  for (int k = 0; k < j->p.calls; k++) {
    uint64_t t0 = bench_now_ns();
    int rc = ops->echo(c, buf, j->p.payload, &reply, &len);
    uint64_t t1 = bench_now_ns();
    j->lat_us[k] = (double)(t1 - t0) / 1000.0;
    if (rc != 0) {
      j->errors++;
      j->error = "peer: call failed";
    } else if (len != j->p.payload || memcmp(reply, buf, len) != 0) {
      j->errors++;
      j->error = "peer: reply differs from request";
    }
  }
  ops->client_close(c);
  free(buf);
}
#endif

static void job_main(void *arg) {
  job *j = arg;
  if (j->raw == SIDE_RAW)
    run_raw(j);
  else if (j->raw == SIDE_DUCT)
    run_duct(j);
#ifdef DUCT_BENCH_PEERS
  else
    run_peer(j);
#endif
  duct__mutex_lock(&j->g->mu);
  j->g->done++;
  duct__cond_broadcast(&j->g->cv);
  duct__mutex_unlock(&j->g->mu);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static uint64_t server_allocs(duct_channel *ch) {
  Bench__Empty req = BENCH__EMPTY__INIT;
  Bench__Stats *st;
  if (bench_echoer_get_stats(ch, &req, &st, NULL) != DUCT_OK)
    return 0;
  uint64_t n = st->allocs;
  bench__stats__free_unpacked(st, NULL);
  return n;
}

static uint64_t client_allocs(void) { return atomic_load(&n_allocs); }

typedef struct result {
  double p50_us, p99_us, calls_per_s, allocs_per_call;
  int errors;
} result;

/* One run of one case on one side; `ch` is the duct channel (shared by the
 * client threads, as an application would share it), `peer` the peer with
 * its state (SIDE_PEER). */
static result run_case(side raw, const char *raw_addr, duct_channel *ch, const peer_run *peer,
                       plan p, int clients) {
  result r = {0};
  gate g = {0};
  job jobs[MAX_CLIENTS];
  duct__mutex_init(&g.mu);
  duct__cond_init(&g.cv);
  double *lat = malloc(sizeof *lat * (size_t)p.calls * (size_t)clients);
  if (!lat) {
    r.errors = 1;
    return r;
  }
  for (int i = 0; i < clients; i++) {
    memset(&jobs[i], 0, sizeof jobs[i]);
    jobs[i].raw = raw;
    jobs[i].raw_addr = raw_addr;
    jobs[i].ch = ch;
    jobs[i].peer = peer;
    jobs[i].p = p;
    jobs[i].g = &g;
    jobs[i].lat_us = lat + (size_t)i * (size_t)p.calls;
    duct__thread_start(&jobs[i].thread, job_main, &jobs[i]);
  }
  duct__mutex_lock(&g.mu);
  while (g.ready < clients)
    duct__cond_wait(&g.cv, &g.mu, -1);
  duct__mutex_unlock(&g.mu);
  uint64_t a0 = raw == SIDE_DUCT ? server_allocs(ch) : 0;
  uint64_t t0 = bench_now_ns();
  duct__mutex_lock(&g.mu);
  g.go = 1;
  duct__cond_broadcast(&g.cv);
  duct__mutex_unlock(&g.mu);
  for (int i = 0; i < clients; i++)
    duct__thread_join(&jobs[i].thread);
  uint64_t t1 = bench_now_ns();
  uint64_t a1 = raw == SIDE_DUCT ? server_allocs(ch) : 0;
  size_t total = (size_t)p.calls * (size_t)clients;
  qsort(lat, total, sizeof *lat, cmp_double);
  r.p50_us = lat[total / 2];
  r.p99_us = lat[total * 99 / 100];
  r.calls_per_s = (double)total / ((double)(t1 - t0) / 1e9);
  /* a1 - a0 includes the first Stats call itself; it allocates nothing in
   * steady state either, so nothing is subtracted. */
  r.allocs_per_call = raw == SIDE_DUCT ? (double)(a1 - a0) / (double)total : 0;
  for (int i = 0; i < clients; i++) {
    r.errors += jobs[i].errors;
    if (jobs[i].error)
      fprintf(stderr, "duct-bench: %s\n", jobs[i].error);
  }
  free(lat);
  duct__cond_destroy(&g.cv);
  duct__mutex_destroy(&g.mu);
  return r;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- mode=stream: one server stream against the raw one-way floor ---- */

/* What one run of a stream or async case gives. */
typedef struct flow_result {
  double per_s;                        /* messages (stream) or calls (async) per second */
  double p50_us, p99_us;               /* async: each call, start to completion */
  double server_allocs, client_allocs; /* per message or call */
  long errors;
} flow_result;

/* One chunk as duct's client receives it, checked as raw_frag_ok checks a
 * raw message: sequence number, size, three bytes of the data, and all of
 * it in every RAW_FULL_CHECK-th chunk (ref: the data as sent). */
static int chunk_ok(const Bench__Chunk *c, uint64_t seq, size_t size, const uint8_t *ref) {
  if (c->seq != seq || c->data.len != size)
    return 0;
  if (size == 0)
    return 1;
  const uint8_t *d = c->data.data;
  if (seq % RAW_FULL_CHECK == 0)
    return memcmp(d, ref, size) == 0;
  return d[0] == ref[0] && d[size / 2] == ref[size / 2] && d[size - 1] == ref[size - 1];
}

static flow_result stream_raw(const char *raw_addr, size_t payload, uint32_t count,
                              uint32_t warmup) {
  flow_result r = {0};
  size_t sizes[MAX_FRAGS];
  int n = chunk_wire_sizes(payload, sizes);
  uint8_t *rx = malloc(RAW_MAX_MSG);
  raw_client *c = raw_connect(raw_addr, 20000);
  if (!rx || !c) {
    fprintf(stderr, "duct-bench: raw: cannot connect or allocate\n");
    r.errors = 1;
    goto out;
  }
  /* The end message is the size of duct's final RESPONSE: a bare header. */
  if (raw_oneway(c, warmup, sizes, n, HEADER, rx) != 0)
    r.errors++;
  uint64_t t0 = bench_now_ns();
  long bad = raw_oneway(c, count, sizes, n, HEADER, rx);
  uint64_t t1 = bench_now_ns();
  if (bad != 0) {
    fprintf(stderr, "duct-bench: raw stream: %s\n",
            bad < 0 ? "broke or came out of step" : "messages differ from those sent");
    r.errors += bad < 0 ? 1 : bad;
  }
  r.per_s = (double)count / ((double)(t1 - t0) / 1e9);
out:
  raw_close(c, 0);
  free(rx);
  return r;
}

/* One whole stream of `count` chunks: started, every chunk received and
 * checked, finished. Returns the number of bad chunks, -1 if the stream
 * failed or did not deliver `count` chunks. */
static long stream_once(duct_channel *ch, size_t payload, uint32_t count, const uint8_t *ref) {
  Bench__StreamRequest req = BENCH__STREAM_REQUEST__INIT;
  req.count = count;
  req.size = (uint32_t)payload;
  bench_echoer_stream_stream *st;
  duct_code rc = bench_echoer_stream(ch, &req, NULL, &st);
  if (rc != DUCT_OK) {
    fprintf(stderr, "duct-bench: the stream did not start: %s\n", duct_code_name(rc));
    return -1;
  }
  long bad = 0;
  uint64_t seq = 0;
  Bench__Chunk *c;
  while (bench_echoer_stream_recv(st, &c, -1) == DUCT_OK && c) {
    bad += !chunk_ok(c, ++seq, payload, ref);
    bench__chunk__free_unpacked(c, NULL);
  }
  duct_status status;
  rc = bench_echoer_stream_finish(st, &status);
  if (rc != DUCT_OK || seq != count) {
    fprintf(stderr, "duct-bench: the stream ended with %s after %llu of %u chunks: %s\n",
            duct_code_name(rc), (unsigned long long)seq, (unsigned)count, status.message);
    return -1;
  }
  return bad;
}

static flow_result stream_duct(duct_channel *ch, size_t payload, uint32_t count, uint32_t warmup) {
  flow_result r = {0};
  uint8_t *ref = malloc(payload ? payload : 1);
  if (!ref) {
    r.errors = 1;
    return r;
  }
  raw_fill(ref, payload, 0);
  if (stream_once(ch, payload, warmup, ref) != 0)
    r.errors++;
  uint64_t a0 = server_allocs(ch), c0 = client_allocs();
  uint64_t t0 = bench_now_ns();
  long bad = stream_once(ch, payload, count, ref);
  uint64_t t1 = bench_now_ns();
  uint64_t c1 = client_allocs(), a1 = server_allocs(ch);
  if (bad > 0)
    fprintf(stderr, "duct-bench: %ld stream chunks differ from those sent\n", bad);
  r.errors += bad < 0 ? 1 : bad;
  r.per_s = (double)count / ((double)(t1 - t0) / 1e9);
  r.server_allocs = (double)(a1 - a0) / count;
  r.client_allocs = (double)(c1 - c0) / count;
  free(ref);
  return r;
}

/* ---- mode=async: pipelined unary calls on one channel ---- */

typedef struct async_run async_run;

/* One of the calls in flight; a completion starts the next call on the
 * same slot, so the request buffer is free again by then. */
typedef struct slot {
  async_run *run;
  uint64_t call; /* which call of the run the slot carries now */
  uint64_t t0;
  uint8_t *buf; /* the request's data: the call number, then the pattern */
} slot;

struct async_run {
  duct_channel *ch;
  size_t payload;
  uint64_t total;
  double *lat_us; /* total entries, by call number */
  duct__mutex mu;
  duct__cond cv;
  uint64_t started, ended; /* under mu */
  int stop;                /* under mu: a call did not start; start no more */
  long bad;                /* under mu */
  slot slots[ASYNC_IN_FLIGHT];
};

static void async_start(slot *s, uint64_t call);

/* Under r->mu: every started call has ended and none is left to start. */
static int async_finished(const async_run *r) {
  return r->ended == r->started && (r->started == r->total || r->stop);
}

/* The completion (on the channel's completion thread): checks the reply
 * against the request, then starts the next call on this slot. */
static void async_done(void *user, duct_code code, ProtobufCMessage *reply,
                       const duct_status *status) {
  slot *s = user;
  async_run *r = s->run;
  r->lat_us[s->call] = (double)(bench_now_ns() - s->t0) / 1000.0;
  const Bench__Blob *b = (const Bench__Blob *)reply;
  int ok = code == DUCT_OK && b->data.len == r->payload &&
           memcmp(b->data.data, s->buf, r->payload) == 0;
  if (code != DUCT_OK)
    fprintf(stderr, "duct-bench: async echo failed: %s: %s\n", duct_code_name(code),
            status->message);
  if (reply)
    bench__blob__free_unpacked((Bench__Blob *)reply, NULL);
  uint64_t next = UINT64_MAX;
  duct__mutex_lock(&r->mu);
  r->ended++;
  r->bad += !ok;
  if (!r->stop && r->started < r->total)
    next = r->started++;
  /* Only the last completion wakes the main thread: a wake-up per call
   * would cost a context switch per call on a pinned run. */
  if (async_finished(r))
    duct__cond_broadcast(&r->cv);
  duct__mutex_unlock(&r->mu);
  if (next != UINT64_MAX)
    async_start(s, next);
}

/* Starts call number `call` on slot s. A call that does not start ends the
 * run: its callback never runs (duct/client.h), so it is counted here. */
static void async_start(slot *s, uint64_t call) {
  async_run *r = s->run;
  s->call = call;
  memcpy(s->buf, &call, sizeof call);
  Bench__Blob req = BENCH__BLOB__INIT;
  req.data.data = s->buf;
  req.data.len = r->payload;
  s->t0 = bench_now_ns();
  duct_code rc = bench_echoer_echo_async(r->ch, &req, NULL, async_done, s, NULL);
  if (rc == DUCT_OK)
    return;
  fprintf(stderr, "duct-bench: async echo did not start: %s\n", duct_code_name(rc));
  duct__mutex_lock(&r->mu);
  r->stop = 1;
  r->ended++;
  r->bad++;
  if (async_finished(r))
    duct__cond_broadcast(&r->cv);
  duct__mutex_unlock(&r->mu);
}

/* `total` echoes of `payload` bytes (at least 8: the call number),
 * ASYNC_IN_FLIGHT at a time. Returns the bad replies (or calls that did
 * not start); fills lat_us and *ns, the wall time from the first start to
 * the last completion. */
static long async_once(duct_channel *ch, size_t payload, uint64_t total, double *lat_us,
                       uint64_t *ns) {
  async_run *r = calloc(1, sizeof *r);
  uint8_t *bufs = malloc(payload * ASYNC_IN_FLIGHT);
  if (!r || !bufs) {
    free(r);
    free(bufs);
    return 1;
  }
  r->ch = ch;
  r->payload = payload;
  r->total = total;
  r->lat_us = lat_us;
  duct__mutex_init(&r->mu);
  duct__cond_init(&r->cv);
  int k = total < ASYNC_IN_FLIGHT ? (int)total : ASYNC_IN_FLIGHT;
  for (int i = 0; i < k; i++) {
    r->slots[i].run = r;
    r->slots[i].buf = bufs + (size_t)i * payload;
    raw_fill(r->slots[i].buf, payload, (size_t)i);
  }
  r->started = (uint64_t)k; /* before the first completion can take more */
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < k; i++)
    async_start(&r->slots[i], (uint64_t)i);
  duct__mutex_lock(&r->mu);
  while (!async_finished(r))
    duct__cond_wait(&r->cv, &r->mu, -1);
  /* Calls that were never started (after a failure) count as bad too. */
  long bad = r->bad + (long)(r->total - r->started);
  duct__mutex_unlock(&r->mu);
  *ns = bench_now_ns() - t0;
  duct__cond_destroy(&r->cv);
  duct__mutex_destroy(&r->mu);
  free(bufs);
  free(r);
  return bad;
}

static flow_result async_case(duct_channel *ch, size_t payload, uint32_t calls, uint32_t warmup) {
  flow_result r = {0};
  uint64_t ns;
  double *lat = malloc(sizeof *lat * (calls > warmup ? calls : warmup));
  if (!lat) {
    r.errors = 1;
    return r;
  }
  r.errors += async_once(ch, payload, warmup, lat, &ns);
  uint64_t a0 = server_allocs(ch), c0 = client_allocs();
  long bad = async_once(ch, payload, calls, lat, &ns);
  uint64_t c1 = client_allocs(), a1 = server_allocs(ch);
  if (bad)
    fprintf(stderr, "duct-bench: %ld async replies differ from their requests\n", bad);
  r.errors += bad;
  r.per_s = (double)calls / ((double)ns / 1e9);
  qsort(lat, calls, sizeof *lat, cmp_double);
  r.p50_us = lat[calls / 2];
  r.p99_us = lat[(size_t)calls * 99 / 100];
  r.server_allocs = (double)(a1 - a0) / calls;
  r.client_allocs = (double)(c1 - c0) / calls;
  free(lat);
  return r;
}

/* ---- --peers: other IPC stacks against this run's raw floor ---- */

/* The raw floor of one unary case, as printed on its line. */
typedef struct floor_case {
  int have;
  double p50_us, p99_us, calls_per_s;
} floor_case;

#ifdef DUCT_BENCH_PEERS
static const bench_peer *find_peer(const char *name) {
  int n;
  const char *const *missing;
  const bench_peer *t = bench_peers(&n, &missing);
  for (int i = 0; i < n; i++)
    if (!strcmp(t[i].name, name) && t[i].start)
      return &t[i];
  return NULL;
}
#endif

/* Every built peer through the unary cases that ran in this run, with the
 * same plans; floors[pi][ci] is the raw floor of payload pi and client
 * count ci. Returns nonzero if a built peer failed. */
static int run_peers(const char *self, const size_t *payloads, size_t n_payloads,
                     const int *calls, double scale, int reps, const int *client_counts,
                     floor_case floors[][2]) {
#ifndef DUCT_BENCH_PEERS
  (void)self, (void)payloads, (void)n_payloads, (void)calls, (void)scale, (void)reps;
  (void)client_counts, (void)floors;
  fprintf(stderr, "duct-bench: --peers: no peer was built (they are Linux only, and need "
                  "libgrpc++-dev protobuf-compiler-grpc and libsystemd-dev dbus-daemon: "
                  "bash scripts/deps.sh --peers, then configure again); skipped\n");
  return 0;
#else
  int n, failed = 0;
  const char *const *missing;
  const bench_peer *t = bench_peers(&n, &missing);
  char tag[32];
  snprintf(tag, sizeof tag, "%u", (unsigned)duct__getpid());
  for (int k = 0; k < n; k++) {
    if (!t[k].start) {
      fprintf(stderr, "duct-bench: --peers: %s %s; skipped\n", t[k].name, missing[k]);
      continue;
    }
    peer_run pr = {&t[k], t[k].start(self, tag)};
    if (!pr.state) {
      fprintf(stderr, "duct-bench: --peers: %s did not start\n", t[k].name);
      failed = 1;
      continue;
    }
    for (size_t pi = 0; pi < n_payloads; pi++) {
      for (size_t ci = 0; ci < 2; ci++) {
        if (!floors[pi][ci].have)
          continue;
        int clients = client_counts[ci];
        /* The plan of the unary line this one is compared with. */
        plan p = {payloads[pi], (int)(calls[pi] * scale), 0};
        if (p.calls < 5)
          p.calls = 5;
        p.warmup = p.calls / 10 + 2;
        double p50[99], p99[99], tp[99];
        int errors = 0;
        for (int rep = 0; rep < reps; rep++) {
          result r = run_case(SIDE_PEER, NULL, NULL, &pr, p, clients);
          p50[rep] = r.p50_us;
          p99[rep] = r.p99_us;
          tp[rep] = r.calls_per_s;
          errors += r.errors;
        }
        const floor_case *f = &floors[pi][ci];
        double m50 = median(p50, reps), mt = median(tp, reps);
        printf("bench transport=%s payload=%zu clients=%d calls=%d raw_p50_us=%.2f "
               "peer_p50_us=%.2f p50_ratio=%.3f raw_calls_per_s=%.0f peer_calls_per_s=%.0f "
               "throughput_ratio=%.3f raw_p99_us=%.2f peer_p99_us=%.2f reps=%d errors=%d\n",
               t[k].name, p.payload, clients, p.calls * clients, f->p50_us, m50,
               m50 / f->p50_us, f->calls_per_s, mt, mt / f->calls_per_s, f->p99_us,
               median(p99, reps), reps, errors);
        fflush(stdout);
        if (errors)
          failed = 1;
      }
    }
    if (t[k].stop(pr.state) != 0) {
      fprintf(stderr, "duct-bench: --peers: %s's processes did not exit cleanly\n", t[k].name);
      failed = 1;
    }
  }
  return failed;
#endif
}

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [--quick | --smoke] [--reps N] [--calls-scale X] [--only MODE]\n"
          "          [--payload BYTES] [--clients 1|4] [--peers]\n"
          "  --quick        one repetition with fewer calls (under a minute)\n"
          "  --smoke        a handful of calls per case (the test suite's check)\n"
          "  --reps N       repetitions per case (default 3); medians are printed\n"
          "  --calls-scale  multiply every case's call and message count by X\n"
          "  --only MODE    unary, stream or async: only those lines (async runs the\n"
          "                16 B unary cases too, for its comparison); for profiling\n"
          "  --payload B    only the cases of payload B (16, 1024, 65536, 1048576;\n"
          "                async is 16 only); for profiling\n"
          "  --clients N    only the unary and stream cases with N client threads (1 or 4;\n"
          "                no async line); for profiling\n"
          "  --peers        then the unary cases with gRPC C++ over a Unix socket and\n"
          "                sd-bus through a private dbus-daemon, against this run's\n"
          "                raw floor (Linux, when built: docs/BENCHMARKS.md, Peers);\n"
          "                --only peers: the unary lines and the peers' only\n",
          argv0);
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--raw-server"))
    return raw_server_main(argv[2]);
  if (argc == 3 && !strcmp(argv[1], "--duct-server"))
    return duct_server_main(argv[2]);
#ifdef DUCT_BENCH_PEERS
  if (argc == 4 && !strcmp(argv[1], "--peer-server")) {
    const bench_peer *peer = find_peer(argv[2]);
    return peer ? peer->server_main(argv[3]) : 64;
  }
#endif
  duct_set_allocator(&counting); /* client_allocs_per_*: this process's duct */

  /* Calls per case: enough for a stable p50 in the default run. */
  static const size_t payloads[] = {16, 1024, 64 * 1024, 1024 * 1024};
  int calls[] = {20000, 20000, 4000, 300};
  /* Stream messages per case: each stream lasts a few tenths of a second
   * for duct in the default run; async calls likewise. */
  static const size_t stream_payloads[] = {16, 1024, 64 * 1024};
  int stream_msgs[] = {200000, 100000, 10000};
  int async_calls = 100000;
  int reps = 3;
  double scale = 1.0;
  const char *only = NULL;
  size_t only_payload = 0; /* 0: every payload */
  int only_clients = 0;     /* 0: 1 and MAX_CLIENTS */
  int peers = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick")) {
      reps = 1;
      scale = 0.25;
    } else if (!strcmp(argv[i], "--smoke")) {
      reps = 1;
      scale = 0.01;
    } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--calls-scale") && i + 1 < argc) {
      scale = atof(argv[++i]);
    } else if (!strcmp(argv[i], "--only") && i + 1 < argc &&
               (!strcmp(argv[i + 1], "unary") || !strcmp(argv[i + 1], "stream") ||
                !strcmp(argv[i + 1], "async") || !strcmp(argv[i + 1], "peers"))) {
      only = argv[++i];
      peers |= !strcmp(only, "peers");
    } else if (!strcmp(argv[i], "--peers")) {
      peers = 1;
    } else if (!strcmp(argv[i], "--payload") && i + 1 < argc) {
      only_payload = (size_t)strtoul(argv[++i], NULL, 10);
    } else if (!strcmp(argv[i], "--clients") && i + 1 < argc &&
               (atoi(argv[i + 1]) == 1 || atoi(argv[i + 1]) == MAX_CLIENTS)) {
      only_clients = atoi(argv[++i]);
    } else {
      usage(argv[0]);
      return 64;
    }
  }
  if (reps < 1 || reps > 99 || !(scale > 0)) {
    usage(argv[0]);
    return 64;
  }

  char raw_addr[256], duct_addr[64];
  raw_address(raw_addr, sizeof raw_addr);
  snprintf(duct_addr, sizeof duct_addr, "duct-bench-%u", (unsigned)duct__getpid());
  char self[4200];
  snprintf(self, sizeof self, "%s", test_sibling_exe(argv[0], "duct-bench"));
  const char *raw_args[] = {"--raw-server", raw_addr};
  const char *duct_args[] = {"--duct-server", duct_addr};
  test_proc *raw_srv = test_proc_start(self, raw_args, 2);
  test_proc *duct_srv = test_proc_start(self, duct_args, 2);
  duct_channel *ch = NULL;
  duct_channel_opts co = {.connect_timeout_ms = 20000};
  if (!raw_srv || !duct_srv || duct_channel_open(duct_addr, &co, &ch) != DUCT_OK) {
    fprintf(stderr, "duct-bench: cannot start the servers\n");
    test_proc_free(raw_srv);
    test_proc_free(duct_srv);
    return 1;
  }

  int failed = 0;
  /* The 16 B unary medians, for the async line: raw and duct, 1 and 4
   * clients. */
  double small_raw[2] = {0, 0}, small_duct[2] = {0, 0};
  static const int client_counts[] = {1, MAX_CLIENTS};
  /* The peers are compared with the unary lines' raw floor, so --only
   * peers runs those too. */
  int do_unary = !only || !strcmp(only, "unary") || !strcmp(only, "peers");
  int do_stream = !only || !strcmp(only, "stream");
  floor_case floors[sizeof payloads / sizeof *payloads][2];
  memset(floors, 0, sizeof floors);
  int do_async = (!only || !strcmp(only, "async")) && (!only_payload || only_payload == 16) &&
                 !only_clients;
  for (size_t pi = 0; pi < sizeof payloads / sizeof *payloads; pi++) {
    if (!do_unary && !(do_async && payloads[pi] == 16))
      continue;
    if (only_payload && payloads[pi] != only_payload)
      continue;
    for (size_t ci = 0; ci < 2; ci++) {
      int clients = client_counts[ci];
      if (only_clients && clients != only_clients)
        continue;
      plan p = {payloads[pi], (int)(calls[pi] * scale), 0};
      if (p.calls < 5)
        p.calls = 5;
      p.warmup = p.calls / 10 + 2;
      double rp50[99], dp50[99], rtp[99], dtp[99], allocs[99], rp99[99], dp99[99];
      int errors = 0;
      for (int rep = 0; rep < reps; rep++) {
        /* Raw and duct alternate, so a slow phase of the machine hits
         * both sides of a ratio alike. */
        result rr = run_case(SIDE_RAW, raw_addr, NULL, NULL, p, clients);
        result dr = run_case(SIDE_DUCT, NULL, ch, NULL, p, clients);
        rp50[rep] = rr.p50_us;
        dp50[rep] = dr.p50_us;
        rp99[rep] = rr.p99_us;
        dp99[rep] = dr.p99_us;
        rtp[rep] = rr.calls_per_s;
        dtp[rep] = dr.calls_per_s;
        allocs[rep] = dr.allocs_per_call;
        errors += rr.errors + dr.errors;
      }
      double r50 = median(rp50, reps), d50 = median(dp50, reps);
      double rt = median(rtp, reps), dt = median(dtp, reps);
      printf("bench transport=%s payload=%zu clients=%d calls=%d raw_p50_us=%.2f "
             "duct_p50_us=%.2f p50_ratio=%.3f raw_calls_per_s=%.0f duct_calls_per_s=%.0f "
             "throughput_ratio=%.3f server_allocs_per_call=%.3f raw_p99_us=%.2f "
             "duct_p99_us=%.2f reps=%d errors=%d\n",
             raw_transport(), p.payload, clients, p.calls * clients, r50, d50, d50 / r50, rt, dt,
             dt / rt, median(allocs, reps), median(rp99, reps), median(dp99, reps), reps, errors);
      fflush(stdout);
      if (errors)
        failed = 1;
      floors[pi][ci] = (floor_case){1, r50, median(rp99, reps), rt};
      if (p.payload == 16) {
        small_raw[ci] = rt;
        small_duct[ci] = dt;
      }
    }
  }

  for (size_t pi = 0; do_stream && pi < sizeof stream_payloads / sizeof *stream_payloads; pi++) {
    size_t payload = stream_payloads[pi];
    if (only_payload && payload != only_payload)
      continue;
    uint32_t count = (uint32_t)(stream_msgs[pi] * scale);
    if (count < 20)
      count = 20;
    uint32_t warmup = count / 10 + 2;
    double rps[99], dps[99], sa[99], ca[99];
    long errors = 0;
    for (int rep = 0; rep < reps; rep++) {
      flow_result rr = stream_raw(raw_addr, payload, count, warmup);
      flow_result dr = stream_duct(ch, payload, count, warmup);
      rps[rep] = rr.per_s;
      dps[rep] = dr.per_s;
      sa[rep] = dr.server_allocs;
      ca[rep] = dr.client_allocs;
      errors += rr.errors + dr.errors;
    }
    double rm = median(rps, reps), dm = median(dps, reps);
    printf("bench transport=%s mode=stream payload=%zu messages=%u raw_msgs_per_s=%.0f "
           "duct_msgs_per_s=%.0f msgs_ratio=%.3f server_allocs_per_msg=%.3f "
           "client_allocs_per_msg=%.3f reps=%d errors=%ld\n",
           raw_transport(), payload, (unsigned)count, rm, dm, dm / rm, median(sa, reps),
           median(ca, reps), reps, errors);
    fflush(stdout);
    if (errors)
      failed = 1;
  }

  if (do_async) {
    uint32_t n = (uint32_t)(async_calls * scale);
    if (n < 4 * ASYNC_IN_FLIGHT)
      n = 4 * ASYNC_IN_FLIGHT;
    uint32_t warmup = n / 10 + ASYNC_IN_FLIGHT;
    double tp[99], p50[99], p99[99], sa[99], ca[99];
    long errors = 0;
    for (int rep = 0; rep < reps; rep++) {
      flow_result ar = async_case(ch, 16, n, warmup);
      tp[rep] = ar.per_s;
      p50[rep] = ar.p50_us;
      p99[rep] = ar.p99_us;
      sa[rep] = ar.server_allocs;
      ca[rep] = ar.client_allocs;
      errors += ar.errors;
    }
    /* raw_calls_per_s: the raw echo floor of one client (one connection,
     * one call at a time) at 16 B, from this run's unary lines; sync1 and
     * sync4: duct's blocking unary calls there. */
    double at = median(tp, reps);
    printf("bench transport=%s mode=async payload=16 in_flight=%d calls=%u "
           "duct_calls_per_s=%.0f raw_calls_per_s=%.0f throughput_ratio=%.3f "
           "sync1_calls_per_s=%.0f sync4_calls_per_s=%.0f duct_p50_us=%.2f duct_p99_us=%.2f "
           "server_allocs_per_call=%.3f client_allocs_per_call=%.3f reps=%d errors=%ld\n",
           raw_transport(), ASYNC_IN_FLIGHT, (unsigned)n, at, small_raw[0], at / small_raw[0],
           small_duct[0], small_duct[1], median(p50, reps), median(p99, reps), median(sa, reps),
           median(ca, reps), reps, errors);
    fflush(stdout);
    if (errors)
      failed = 1;
  }

  if (peers && do_unary &&
      run_peers(self, payloads, sizeof payloads / sizeof *payloads, calls, scale, reps,
                client_counts, floors))
    failed = 1;

  /* Both servers exit on request; the waits below reap them. */
  Bench__Empty e = BENCH__EMPTY__INIT;
  Bench__Empty *er;
  if (bench_echoer_quit(ch, &e, &er, NULL) == DUCT_OK)
    bench__empty__free_unpacked(er, NULL);
  duct_channel_close(ch);
  raw_close(raw_connect(raw_addr, 5000), 1);
  if (test_proc_wait(duct_srv, 10000) != 0 || test_proc_wait(raw_srv, 10000) != 0)
    failed = 1;
  test_proc_free(raw_srv);
  test_proc_free(duct_srv);
  return failed;
}
