/* cli/cli.h - what the duct program's files share: its options, the
 * schema it works from, and how it reports. Internal to the tool. */
#ifndef DUCT_CLI_H
#define DUCT_CLI_H

#include <stddef.h>
#include <stdint.h>

#include <duct/duct.h>

#include "cli/dynpool.h"

#define CLI_MAX_LIST 64

typedef struct cli {
  const char *cmd;     /* "list", "describe", "call" */
  const char *address;
  const char *pos[4];  /* positional arguments after the address */
  int npos;
  const char *data;    /* -d: JSON text, @FILE or @- */
  const char *protos[CLI_MAX_LIST];
  int nprotos;
  const char *idirs[CLI_MAX_LIST];
  int nidirs;
  const char *protosets[CLI_MAX_LIST];
  int nprotosets;
  const char *protoc;  /* --protoc, else $DUCT_PROTOC, else "protoc" */
  uint32_t deadline_ms; /* 0: none */
  uint32_t max_message_size;
  uint32_t connect_timeout_ms;
  int pretty, emit_defaults, verbose;

  duct_channel *ch;    /* opened on first use */
  duct_dynpool *pool;  /* the schema, from reflection or local files */
  int64_t t0;          /* start, for -v */
} cli;

/* Prints "duct: CODE_NAME: message" on stderr and returns `code`, which
 * becomes the exit code. */
int cli_fail(int code, const char *fmt, ...) DUCT_PRINTF_FORMAT(2, 3);
/* With -v: "duct: <ms since start> ms: message" on stderr. */
void cli_note(const cli *c, const char *fmt, ...) DUCT_PRINTF_FORMAT(2, 3);

/* Opens c->ch if not open yet. DUCT_OK or the failure, reported. */
int cli_connect(cli *c);
/* The options for one call: the deadline, and `st` for the status. */
duct_call_opts cli_call_opts(const cli *c, duct_status *st);

/* Loads the schema into c->pool: from --proto / --protoset when given,
 * else from the server's reflection, for `symbol` (NULL: every service
 * the server lists). DUCT_OK or the failure, reported. */
int cli_load_schema(cli *c, const char *symbol);

/* Reads a whole file ("-" is stdin) into a malloc'd buffer (NUL-terminated
 * too); NULL with errno's message reported. */
char *cli_read_file(const char *path, size_t *len);

/* The subcommands; each returns the exit code. */
int cli_list(cli *c);
int cli_describe(cli *c);
int cli_call(cli *c);

#endif
