/* duct-bench: duct against the raw transport floor (docs/BENCHMARKS.md).
 *
 *   duct-bench [--quick | --smoke] [--reps N] [--calls-scale X]
 *   duct-bench --raw-server ADDRESS     (started by the bench itself)
 *   duct-bench --duct-server ADDRESS    (started by the bench itself)
 *
 * For each payload (16 B, 1 KiB, 64 KiB, 1 MiB) and client count (1, 4) it
 * runs the same echo twice against servers in separate processes: once raw
 * (bench/raw_*.c, the same message sizes on the same transport with no
 * duct code) and once as a unary call through generated stubs to a duct
 * server. Every call is timed alone on a monotonic clock after a warm-up,
 * and every reply is compared with the request (outside the timed part).
 * A default run repeats each case and reports medians. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <duct/duct.h>

#include "bench.duct.h"
#include "proc.h"
#include "raw.h"
#include "runtime/sys.h"

#define MAX_CLIENTS 4
#define MAX_FRAGS 64
/* Frames as duct cuts them (docs/PROTOCOL.md): 32-byte header, at most
 * 65,504 payload bytes, so the raw floor sends the same message sizes. */
#define HEADER 32u
#define FRAG_PAYLOAD (65536u - HEADER)

/* ---- the duct server process ---- */

/* Counts every allocation duct's library makes in the server process:
 * duct_set_allocator routes all of them here. */
static atomic_ullong n_allocs;
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

static int duct_server_main(const char *address) {
  static const duct_allocator counting = {count_malloc, count_realloc, count_free, NULL};
  static const bench_echoer_handlers handlers = {
      .echo = on_echo, .get_stats = on_stats, .quit = on_quit};
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

typedef struct job {
  int raw; /* 1: raw floor, 0: duct */
  const char *raw_addr;
  duct_channel *ch;
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

/* The message sizes duct puts on the wire for an echo of `payload` bytes
 * (either direction: request and reply are the same Blob). */
static int wire_sizes(size_t payload, size_t *sizes) {
  size_t packed = payload ? 1 + varint_len(payload) + payload : 0;
  int n = 0;
  do {
    size_t chunk = packed > FRAG_PAYLOAD ? FRAG_PAYLOAD : packed;
    sizes[n++] = HEADER + chunk;
    packed -= chunk;
  } while (packed > 0 && n < MAX_FRAGS);
  return n;
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

static void job_main(void *arg) {
  job *j = arg;
  if (j->raw)
    run_raw(j);
  else
    run_duct(j);
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

typedef struct result {
  double p50_us, p99_us, calls_per_s, allocs_per_call;
  int errors;
} result;

/* One run of one case on one side; `ch` is the duct channel (shared by the
 * client threads, as an application would share it). */
static result run_case(int raw, const char *raw_addr, duct_channel *ch, plan p, int clients) {
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
    jobs[i].p = p;
    jobs[i].g = &g;
    jobs[i].lat_us = lat + (size_t)i * (size_t)p.calls;
    duct__thread_start(&jobs[i].thread, job_main, &jobs[i]);
  }
  duct__mutex_lock(&g.mu);
  while (g.ready < clients)
    duct__cond_wait(&g.cv, &g.mu, -1);
  duct__mutex_unlock(&g.mu);
  uint64_t a0 = raw ? 0 : server_allocs(ch);
  uint64_t t0 = bench_now_ns();
  duct__mutex_lock(&g.mu);
  g.go = 1;
  duct__cond_broadcast(&g.cv);
  duct__mutex_unlock(&g.mu);
  for (int i = 0; i < clients; i++)
    duct__thread_join(&jobs[i].thread);
  uint64_t t1 = bench_now_ns();
  uint64_t a1 = raw ? 0 : server_allocs(ch);
  size_t total = (size_t)p.calls * (size_t)clients;
  qsort(lat, total, sizeof *lat, cmp_double);
  r.p50_us = lat[total / 2];
  r.p99_us = lat[total * 99 / 100];
  r.calls_per_s = (double)total / ((double)(t1 - t0) / 1e9);
  /* a1 - a0 includes the first Stats call itself; it allocates nothing in
   * steady state either, so nothing is subtracted. */
  r.allocs_per_call = raw ? 0 : (double)(a1 - a0) / (double)total;
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

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [--quick | --smoke] [--reps N] [--calls-scale X]\n"
          "  --quick        one repetition with fewer calls (under a minute)\n"
          "  --smoke        a handful of calls per case (the test suite's check)\n"
          "  --reps N       repetitions per case (default 3); medians are printed\n"
          "  --calls-scale  multiply every case's call count by X\n",
          argv0);
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--raw-server"))
    return raw_server_main(argv[2]);
  if (argc == 3 && !strcmp(argv[1], "--duct-server"))
    return duct_server_main(argv[2]);

  /* Calls per case: enough for a stable p50 in the default run. */
  static const size_t payloads[] = {16, 1024, 64 * 1024, 1024 * 1024};
  int calls[] = {20000, 20000, 4000, 300};
  int reps = 3;
  double scale = 1.0;
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
  static const int client_counts[] = {1, MAX_CLIENTS};
  for (size_t pi = 0; pi < sizeof payloads / sizeof *payloads; pi++) {
    for (size_t ci = 0; ci < 2; ci++) {
      int clients = client_counts[ci];
      plan p = {payloads[pi], (int)(calls[pi] * scale), 0};
      if (p.calls < 5)
        p.calls = 5;
      p.warmup = p.calls / 10 + 2;
      double rp50[99], dp50[99], rtp[99], dtp[99], allocs[99], rp99[99], dp99[99];
      int errors = 0;
      for (int rep = 0; rep < reps; rep++) {
        /* Raw and duct alternate, so a slow phase of the machine hits
         * both sides of a ratio alike. */
        result rr = run_case(1, raw_addr, NULL, p, clients);
        result dr = run_case(0, NULL, ch, p, clients);
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
    }
  }

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
