/* kv-client ADDRESS put KEY VALUE | get KEY | del KEY | list | watch PREFIX
 *
 * watch prints one line per change to a key under PREFIX ("put k v",
 * "del k") until Ctrl-C or the server stops; either ends it with exit 0
 * and a line on stderr saying which.
 *
 * Exit codes: 0 done; 1 the key has no value (get, del); 2 no server at
 * ADDRESS (or it cannot be reached); 3 any other failure; 64 bad usage. */
#include <stdio.h>
#include <string.h>

#include <duct/duct.h>

#include "examples/kv.duct.h"

static int usage(const char *argv0) {
  fprintf(stderr, "usage: %s ADDRESS put KEY VALUE | get KEY | del KEY | list | watch PREFIX\n",
          argv0);
  return 64;
}

/* Reports a failed call; NOT_FOUND is an answer (exit 1), not an error. */
static int failed(const char *what, duct_code rc, const duct_status *st) {
  fprintf(stderr, "kv-client: %s: %s\n", what, st->message[0] ? st->message : duct_code_message(rc));
  if (rc == DUCT_NOT_FOUND)
    return 1;
  return rc == DUCT_UNAVAILABLE ? 2 : 3;
}

/* duct logs why a connection failed; keep the last line for our message
 * instead of printing it twice. */
static char last_error[256];
static void keep_last(void *user, duct_log_level level, const char *line) {
  (void)user;
  if (level <= DUCT_LOG_WARN)
    snprintf(last_error, sizeof last_error, "%s", line);
}

/* Prints the changes under prefix until Ctrl-C (checked between events,
 * at most 200 ms apart) or the end of the stream. */
static int watch(duct_channel *ch, const char *prefix) {
  duct_stop_signals_catch();
  Duct__Examples__Kv__WatchRequest req = DUCT__EXAMPLES__KV__WATCH_REQUEST__INIT;
  req.prefix = (char *)prefix;
  duct_examples_kv_key_value_watch_stream *st;
  duct_code rc = duct_examples_kv_key_value_watch(ch, &req, NULL, &st);
  if (rc != DUCT_OK) {
    fprintf(stderr, "kv-client: watch: %s\n", duct_code_message(rc));
    return rc == DUCT_UNAVAILABLE ? 2 : 3;
  }
  fprintf(stderr, "kv-client: watching keys under '%s' (Ctrl-C to stop)\n", prefix);
  int cancelled = 0;
  for (;;) {
    Duct__Examples__Kv__Event *ev;
    rc = duct_examples_kv_key_value_watch_recv(st, &ev, 200);
    if (rc == DUCT_DEADLINE_EXCEEDED) {
      if (duct_stop_signals_pending()) {
        duct_examples_kv_key_value_watch_cancel(st);
        cancelled = 1;
      }
      continue;
    }
    if (!ev)
      break; /* the end; finish says how */
    if (ev->kind == DUCT__EXAMPLES__KV__EVENT__KIND__DELETE)
      printf("del %s\n", ev->key);
    else
      printf("put %s %s\n", ev->key, ev->value);
    fflush(stdout);
    duct__examples__kv__event__free_unpacked(ev, NULL);
  }
  duct_status st2 = {0};
  rc = duct_examples_kv_key_value_watch_finish(st, &st2);
  if (cancelled) {
    fprintf(stderr, "kv-client: watch stopped\n");
    return 0;
  }
  if (rc == DUCT_UNAVAILABLE) {
    fprintf(stderr, "kv-client: watch ended: %s\n", st2.message);
    return 0;
  }
  return failed("watch", rc, &st2);
}

int main(int argc, char **argv) {
  if (argc < 3)
    return usage(argv[0]);
  const char *cmd = argv[2];
  int want = !strcmp(cmd, "put") ? 5
           : !strcmp(cmd, "get") || !strcmp(cmd, "del") || !strcmp(cmd, "watch") ? 4
           : !strcmp(cmd, "list") ? 3 : -1;
  if (argc != want)
    return usage(argv[0]);

  /* A command-line tool should say "no server" quickly, not after 5 s. */
  duct_channel_opts co = {.connect_timeout_ms = 1500, .log = keep_last};
  duct_channel *ch;
  duct_code rc = duct_channel_open(argv[1], &co, &ch);
  if (rc != DUCT_OK) {
    fprintf(stderr, "kv-client: no kv server reachable at %s: %s\n", argv[1],
            last_error[0] ? last_error : duct_code_message(rc));
    return rc == DUCT_UNAVAILABLE || rc == DUCT_PERMISSION_DENIED ? 2 : 3;
  }
  duct_status st = {0};
  duct_call_opts opts = {.deadline_ms = 5000, .status = &st};
  int exit_code = 0;

  if (!strcmp(cmd, "watch")) {
    exit_code = watch(ch, argv[3]);
  } else if (!strcmp(cmd, "put")) {
    Duct__Examples__Kv__PutRequest req = DUCT__EXAMPLES__KV__PUT_REQUEST__INIT;
    Duct__Examples__Kv__PutReply *reply;
    req.key = argv[3];
    req.value = argv[4];
    rc = duct_examples_kv_key_value_put(ch, &req, &reply, &opts);
    if (rc != DUCT_OK) {
      exit_code = failed("put", rc, &st);
    } else {
      printf("%s %s\n", reply->replaced ? "replaced" : "stored", argv[3]);
      duct__examples__kv__put_reply__free_unpacked(reply, NULL);
    }
  } else if (!strcmp(cmd, "get")) {
    Duct__Examples__Kv__GetRequest req = DUCT__EXAMPLES__KV__GET_REQUEST__INIT;
    Duct__Examples__Kv__GetReply *reply;
    req.key = argv[3];
    rc = duct_examples_kv_key_value_get(ch, &req, &reply, &opts);
    if (rc != DUCT_OK) {
      exit_code = failed("get", rc, &st);
    } else {
      printf("%s\n", reply->value);
      duct__examples__kv__get_reply__free_unpacked(reply, NULL);
    }
  } else if (!strcmp(cmd, "del")) {
    Duct__Examples__Kv__DeleteRequest req = DUCT__EXAMPLES__KV__DELETE_REQUEST__INIT;
    Duct__Examples__Kv__DeleteReply *reply;
    req.key = argv[3];
    rc = duct_examples_kv_key_value_delete_(ch, &req, &reply, &opts);
    if (rc != DUCT_OK) {
      exit_code = failed("del", rc, &st);
    } else {
      printf("deleted %s\n", argv[3]);
      duct__examples__kv__delete_reply__free_unpacked(reply, NULL);
    }
  } else {
    Duct__Examples__Kv__ListRequest req = DUCT__EXAMPLES__KV__LIST_REQUEST__INIT;
    Duct__Examples__Kv__ListReply *reply;
    rc = duct_examples_kv_key_value_list(ch, &req, &reply, &opts);
    if (rc != DUCT_OK) {
      exit_code = failed("list", rc, &st);
    } else {
      for (size_t i = 0; i < reply->n_keys; i++)
        printf("%s\n", reply->keys[i]);
      duct__examples__kv__list_reply__free_unpacked(reply, NULL);
    }
  }
  duct_channel_close(ch);
  return exit_code;
}
