/* kv-client ADDRESS put KEY VALUE | get KEY | del KEY | list
 *
 * Exit codes: 0 done; 1 the key has no value (get, del); 2 no server at
 * ADDRESS (or it cannot be reached); 3 any other failure; 64 bad usage. */
#include <stdio.h>
#include <string.h>

#include <duct/duct.h>

#include "examples/kv.duct.h"

static int usage(const char *argv0) {
  fprintf(stderr, "usage: %s ADDRESS put KEY VALUE | get KEY | del KEY | list\n", argv0);
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

int main(int argc, char **argv) {
  if (argc < 3)
    return usage(argv[0]);
  const char *cmd = argv[2];
  int want = !strcmp(cmd, "put") ? 5 : !strcmp(cmd, "get") || !strcmp(cmd, "del") ? 4
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

  if (!strcmp(cmd, "put")) {
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
