/* Load and soak (ctest label `load`): CONNS client connections, each on
 * its own thread and channel, make CALLS calls each against one
 * duct-probe-server child process. Every reply must be its own request's;
 * the server's memory must be flat between the first and the last tenth
 * of the run.
 *
 *   test_load CONNS CALLS      (200 500 natively; fewer under Wine, see
 *                               tests/load/CMakeLists.txt)
 *
 * The run goes in ten rounds of CALLS/10 calls per connection, after a
 * warm-up round of the same shape: the server's heap (glibc's, Wine's)
 * takes a round or two to settle even when duct's own memory does not
 * change, and "flat" is about the steady state. After each
 * round every caller waits at a barrier while the test reads the server's
 * memory through GetStats; all connections then make the same sequence of
 * calls, so without a leak the server is in the same state at every
 * barrier (once the calls just answered have let go of their memory: see
 * take()) and the comparison can be tight:
 * - live_bytes: what duct itself holds, counted exactly through
 *   duct_set_allocator in the server. After the last round it may exceed
 *   the first round's figure by at most LIVE_MARGIN.
 * - rss_kb: the process's resident memory, which also holds the C
 *   library's caches; checked with RSS_MARGIN_KB, natively and without
 *   sanitizers only (tests/load/CMakeLists.txt says why).
 * Both compare the lowest of the last three rounds with the highest of the
 * first half, not the last round with the first: glibc's per-thread arenas
 * keep filling during the first rounds, and on a busy machine a barrier
 * may catch a reply still queued; a leak shows in every later round. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <duct/duct.h>

#include "probe.duct.h"
#include "runtime/sys.h"
#include "tests/support/proc.h"

/* The middle call of every round echoes this many bytes (2 fragments each
 * way), so the per-connection buffers grow and are given back during the
 * run, not only once; every round has the same shape, and the calls
 * before a barrier are small, so whether the server has reset a call's
 * memory yet does not change what it holds. */
#define BIG_CALL 70000
#define ROUNDS 10
/* Growth allowed from the first round to the last: duct's own memory by
 * 64 KiB (a leak of one byte per call shows at 100000 calls); resident
 * memory by 4 MiB (malloc's caches settle late and are not duct's). */
#define LIVE_MARGIN (64 * 1024)
#define RSS_MARGIN_KB (4 * 1024)

static const char *argv0;
/* The server child, killed by the teardown if the test fails midway: a
 * leftover child would hold ctest's output open. */
static test_proc *server;
static int conns = 200, calls = 500;

static struct {
  duct__mutex mu;
  duct__cond cv;
  int round;   /* callers may run this round (0..ROUNDS; -1: not yet) */
  int arrived; /* callers done with the current round */
} run;

typedef struct caller {
  int id;
  const char *address;
  duct__thread t;
  int bad;
  char why[160];
  int64_t worst_ms;
} caller;

static const uint8_t *big;

/* Waits until the test lets round r begin. */
static void wait_round(int r) {
  duct__mutex_lock(&run.mu);
  while (run.round < r)
    duct__cond_wait(&run.cv, &run.mu, -1);
  duct__mutex_unlock(&run.mu);
}

static void arrive(void) {
  duct__mutex_lock(&run.mu);
  run.arrived++;
  duct__cond_broadcast(&run.cv);
  duct__mutex_unlock(&run.mu);
}

static void caller_main(void *arg) {
  caller *c = arg;
  duct_channel_opts co = {.connect_timeout_ms = 60000, .max_connections = 1};
  duct_channel *ch;
  duct_code rc = duct_channel_open(c->address, &co, &ch);
  if (rc != DUCT_OK) {
    c->bad = calls;
    snprintf(c->why, sizeof c->why, "open: %s", duct_code_name(rc));
  }
  int per_round = calls / ROUNDS;
  /* Round 0 is a warm-up of the same shape (see the top of the file). */
  for (int r = 0; r <= ROUNDS; r++) {
    wait_round(r);
    for (int j = 0; j < per_round && rc == DUCT_OK; j++) {
      int i = r * per_round + j;
      char msg[64];
      const uint8_t *data = (const uint8_t *)msg;
      size_t n = (size_t)snprintf(msg, sizeof msg, "conn %d call %d", c->id, i);
      if (j == per_round / 2) {
        data = big;
        n = BIG_CALL;
      }
      Duct__Test__Blob req = DUCT__TEST__BLOB__INIT, *reply;
      req.data.data = (uint8_t *)data;
      req.data.len = n;
      req.tag = (uint32_t)(c->id * 100000 + i);
      duct_status st;
      duct_call_opts o = {.deadline_ms = 120000, .status = &st};
      int64_t t0 = duct__now_ms();
      duct_code res = duct_test_probe_echo(ch, &req, &reply, &o);
      int64_t took = duct__now_ms() - t0;
      if (took > c->worst_ms)
        c->worst_ms = took;
      if (res != DUCT_OK) {
        if (!c->bad++)
          snprintf(c->why, sizeof c->why, "call %d: %s: %.100s", i, duct_code_name(res),
                   st.message);
        continue;
      }
      /* Exactly this request's reply, never another connection's. */
      if (reply->tag != req.tag || reply->data.len != n || memcmp(reply->data.data, data, n)) {
        if (!c->bad++)
          snprintf(c->why, sizeof c->why, "call %d: a reply that is not this call's", i);
      }
      duct__test__blob__free_unpacked(reply, NULL);
    }
    arrive();
  }
  /* Connected until the last round's figures are taken. */
  wait_round(ROUNDS + 1);
  if (rc == DUCT_OK)
    duct_channel_close(ch);
}

typedef struct sample {
  long at; /* calls done when taken */
  uint64_t live_bytes, rss_kb;
} sample;

/* One reading of the server's memory once it is quiet. A client has its
 * reply before the server's worker has let go of the call that sent it
 * (the reply leaves first), so right after the callers park, a few calls
 * may still hold their memory, and a call that arrived in that window had
 * to take a fresh call object: the figure settles within moments, and two
 * equal readings in a row (up to a bound) say it has. */
static sample take(duct_channel *ch, long at) {
  Duct__Test__Empty req = DUCT__TEST__EMPTY__INIT;
  sample x = {at, UINT64_MAX, 0};
  for (int i = 0; i < 50; i++) {
    Duct__Test__Stats *s;
    assert_int_equal(duct_test_probe_get_stats(ch, &req, &s, NULL), DUCT_OK);
    int same = s->live_bytes == x.live_bytes;
    x.live_bytes = s->live_bytes;
    x.rss_kb = s->rss_kb;
    duct__test__stats__free_unpacked(s, NULL);
    if (same)
      break;
  }
  return x;
}

static void test_load_flat_memory(void **state) {
  (void)state;
  char address[128];
  snprintf(address, sizeof address, "%s", test_address("load"));
  char exe[4096];
  snprintf(exe, sizeof exe, "%s", test_sibling_exe(argv0, "duct-probe-server"));
  const char *args[] = {address, "--workers", "2"};
  server = test_proc_start(exe, args, 3);
  assert_non_null(server);
  duct_channel_opts co = {.connect_timeout_ms = 60000};
  duct_channel *mon;
  assert_int_equal(duct_channel_open(address, &co, &mon), DUCT_OK);

  uint8_t *bigbuf = malloc(BIG_CALL);
  assert_non_null(bigbuf);
  for (size_t i = 0; i < BIG_CALL; i++)
    bigbuf[i] = (uint8_t)(i * 2654435761u >> 24);
  big = bigbuf;

  caller *cs = calloc((size_t)conns, sizeof *cs);
  assert_non_null(cs);
  for (int i = 0; i < conns; i++) {
    cs[i].id = i;
    cs[i].address = address;
    assert_int_equal(duct__thread_start(&cs[i].t, caller_main, &cs[i]), DUCT_OK);
  }
  sample before = take(mon, 0);
  long total = (long)conns * (calls / ROUNDS) * ROUNDS;
  sample at[ROUNDS + 1];
  int64_t t0 = 0;
  for (int r = 0; r <= ROUNDS; r++) {
    if (r == 1)
      t0 = duct__now_ms(); /* the warm-up is not timed */
    duct__mutex_lock(&run.mu);
    run.arrived = 0;
    run.round = r;
    duct__cond_broadcast(&run.cv);
    while (run.arrived < conns)
      duct__cond_wait(&run.cv, &run.mu, -1);
    duct__mutex_unlock(&run.mu);
    /* Every caller is parked at the barrier: the server is quiet. */
    at[r] = take(mon, total / ROUNDS * r);
  }
  int64_t ms = duct__now_ms() - t0;
  duct__mutex_lock(&run.mu);
  run.round = ROUNDS + 1;
  duct__cond_broadcast(&run.cv);
  duct__mutex_unlock(&run.mu);
  for (int i = 0; i < conns; i++)
    duct__thread_join(&cs[i].t);
  sample after = take(mon, total);

  int bad = 0;
  int64_t worst = 0;
  for (int i = 0; i < conns; i++) {
    if (cs[i].bad && bad < 5)
      print_error("connection %d: %d bad call(s); first: %s\n", i, cs[i].bad, cs[i].why);
    bad += cs[i].bad;
    if (cs[i].worst_ms > worst)
      worst = cs[i].worst_ms;
  }

  /* Each figure: the highest of the first half against the lowest of the
   * last three rounds. A leak holds more at every barrier than the one
   * before, so it shows in all of the last three; memory a busy moment
   * still held at one barrier (a reply queued for a slow reader, glibc's
   * arenas filling) does not. */
  uint64_t live_first = 0, live_last = UINT64_MAX, rss_first = 0, rss_last = UINT64_MAX;
  for (int r = 1; r <= ROUNDS / 2; r++) {
    live_first = at[r].live_bytes > live_first ? at[r].live_bytes : live_first;
    rss_first = at[r].rss_kb > rss_first ? at[r].rss_kb : rss_first;
  }
  for (int r = ROUNDS - 2; r <= ROUNDS; r++) {
    live_last = at[r].live_bytes < live_last ? at[r].live_bytes : live_last;
    rss_last = at[r].rss_kb < rss_last ? at[r].rss_kb : rss_last;
  }
  (void)rss_first; /* not checked under sanitizers and Wine */
  (void)rss_last;
  printf("load: %d connections x %d calls = %ld calls in %.1f s (%.0f calls/s), "
         "slowest call %lld ms, %d bad\n",
         conns, calls, total, (double)ms / 1000, ms ? (double)total * 1000 / (double)ms : 0.0,
         (long long)worst, bad);
  printf("load: server memory held by duct (KiB): %llu before, %llu after the warm-up; "
         "after each tenth:",
         (unsigned long long)before.live_bytes / 1024, (unsigned long long)at[0].live_bytes / 1024);
  for (int r = 1; r <= ROUNDS; r++)
    printf(" %llu", (unsigned long long)at[r].live_bytes / 1024);
  printf("; %llu after the clients left\n", (unsigned long long)after.live_bytes / 1024);
  printf("load: server resident memory (KiB): %llu before, %llu after the warm-up; "
         "after each tenth:",
         (unsigned long long)before.rss_kb, (unsigned long long)at[0].rss_kb);
  for (int r = 1; r <= ROUNDS; r++)
    printf(" %llu", (unsigned long long)at[r].rss_kb);
  printf("\n");
  fflush(stdout);

  assert_int_equal(bad, 0);
  if (live_last > live_first + LIVE_MARGIN)
    fail_msg("duct's memory grew from %llu (the first half's highest) to %llu bytes "
             "(the last three rounds' lowest)",
             (unsigned long long)live_first, (unsigned long long)live_last);
#ifndef DUCT_LOAD_SKIP_RSS
  /* Resident memory may also rise towards what duct holds: buffers duct
   * allocated in the warm-up count in live_bytes at once but in resident
   * memory only once their pages are first written, which may take many
   * rounds (with POSIX's hold, a connection's large buffers are touched
   * later than without). And it keeps the high-water mark of what was
   * allocated and freed between two barriers (glibc keeps freed memory),
   * which the hold's timing moves by up to half of duct's memory from run
   * to run. So the margin is that half, at least RSS_MARGIN_KB: a leak
   * outside duct's allocator still shows once it passes it, and duct's
   * own memory is checked exactly above (and by valgrind and LSan at
   * exit). */
  uint64_t rss_ceiling = before.rss_kb + live_last / 1024;
  if (rss_ceiling > rss_first)
    rss_first = rss_ceiling;
  uint64_t rss_margin = live_last / 2048 > RSS_MARGIN_KB ? live_last / 2048 : RSS_MARGIN_KB;
  if (rss_first && rss_last > rss_first + rss_margin)
    fail_msg("resident memory grew from %llu (the first half's highest, or what the server "
             "held at the start plus duct's memory) to %llu KiB (the last three rounds' lowest)",
             (unsigned long long)rss_first,
             (unsigned long long)rss_last);
#endif

  Duct__Test__Empty req = DUCT__TEST__EMPTY__INIT, *reply;
  assert_int_equal(duct_test_probe_shutdown(mon, &req, &reply, NULL), DUCT_OK);
  duct__test__empty__free_unpacked(reply, NULL);
  /* 0: stopped cleanly with every byte of duct's memory freed. */
  assert_int_equal(test_proc_wait(server, 60000), 0);
  test_proc_free(server);
  server = NULL;
  duct_channel_close(mon);
  free(cs);
  free(bigbuf);
}

static int teardown(void **state) {
  (void)state;
  test_proc_free(server); /* kills it if still running */
  server = NULL;
  return 0;
}

int main(int argc, char **argv) {
  argv0 = argv[0];
  if (argc > 2) {
    conns = atoi(argv[1]);
    calls = atoi(argv[2]);
  }
  if (conns < 1 || calls < ROUNDS) {
    fprintf(stderr, "usage: %s [CONNS CALLS>=%d]\n", argv[0], ROUNDS);
    return 64;
  }
  run.round = -1; /* nobody calls before the test says so */
  duct__mutex_init(&run.mu);
  duct__cond_init(&run.cv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_load_flat_memory, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
