/* duct - list, describe and call the services of a running duct server,
 * with JSON in and out (docs/CLI.md).
 *
 * The exit code is the call's duct_code (0 ok); a failure prints the
 * code's name and the message on stderr. Bad usage is INVALID_ARGUMENT. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "runtime/sys.h"

static const char usage_main[] =
    "usage: duct [--help] [--version] COMMAND ADDRESS ...\n"
    "\n"
    "Lists, describes and calls the services of a running duct server, with\n"
    "JSON in and out. The server describes itself (reflection); for one that\n"
    "does not, give its schema with --proto or --protoset.\n"
    "\n"
    "commands:\n"
    "  list ADDRESS                        services and their methods\n"
    "  describe ADDRESS SYMBOL             a service, method, message or enum as .proto text\n"
    "  call ADDRESS pkg.Service/Method [JSON | -d @FILE | -d @-]\n"
    "                                      call a method with a JSON request\n"
    "\n"
    "options (any command):\n"
    "  --proto FILE.proto       the schema from .proto files (runs protoc; repeatable)\n"
    "  -I, --import-path DIR    where --proto's imports are found (repeatable)\n"
    "  --protoset FILE          the schema from a file of protoc --descriptor_set_out\n"
    "                           --include_imports (repeatable)\n"
    "  --protoc PATH            the protoc to run (default: $DUCT_PROTOC, else protoc)\n"
    "  --deadline TIME          each call's deadline: 500ms, 10s, 2m (default: none)\n"
    "  --connect-timeout TIME   how long to wait for the server (default: 5s)\n"
    "  --max-message-size SIZE  largest reply accepted: 4M, 64K, bytes (default: 4M)\n"
    "  --pretty                 indented JSON\n"
    "  --emit-defaults          print fields that hold their default value too\n"
    "  -v                       timings and duct's log lines on stderr\n"
    "\n"
    "The exit code is the result's code: 0 OK, 1 CANCELLED, 3 INVALID_ARGUMENT,\n"
    "4 DEADLINE_EXCEEDED, 5 NOT_FOUND, 12 UNIMPLEMENTED, 14 UNAVAILABLE, ...\n"
    "(duct_code in duct/status.h); its name and the message go to stderr.\n"
    "\n"
    "examples:\n"
    "  duct list kv\n"
    "  duct describe kv duct.examples.kv.KeyValue\n"
    "  duct call kv duct.examples.kv.KeyValue/Put '{\"key\":\"color\",\"value\":\"blue\"}'\n"
    "\n"
    "`duct COMMAND --help` shows more of each command.\n";

static const char usage_list[] =
    "usage: duct list ADDRESS [options]\n"
    "\n"
    "Prints each service the server at ADDRESS offers, then its methods, one per\n"
    "line, with their kind: unary, server-streaming, client-streaming or bidi-streaming.\n"
    "\n"
    "examples:\n"
    "  duct list kv\n"
    "  duct list /run/myapp/api.sock\n"
    "  duct list kv --proto examples/kv.proto -I .    (a server without reflection)\n";

static const char usage_describe[] =
    "usage: duct describe ADDRESS SYMBOL [options]\n"
    "\n"
    "Prints SYMBOL as .proto text. SYMBOL is a full name: a service\n"
    "(pkg.Service), a method (pkg.Service/Method or pkg.Service.Method), a\n"
    "message or an enum (pkg.Message, pkg.Outer.Inner).\n"
    "\n"
    "examples:\n"
    "  duct describe kv duct.examples.kv.KeyValue\n"
    "  duct describe kv duct.examples.kv.KeyValue/Watch\n"
    "  duct describe kv duct.examples.kv.PutRequest\n";

static const char usage_call[] =
    "usage: duct call ADDRESS pkg.Service/Method [JSON | -d JSON | -d @FILE | -d @-] [options]\n"
    "\n"
    "Sends the request written as JSON (proto3's JSON mapping: lowerCamelCase or\n"
    "original field names, 64-bit integers as strings, bytes as base64, enums by\n"
    "name) and prints the reply as JSON, one object per line. Without a request,\n"
    "an empty message ({}) is sent.\n"
    "\n"
    "  server-streaming  one request; each reply printed as it arrives, until the\n"
    "                    stream ends or Ctrl-C (exit code 1, CANCELLED)\n"
    "  client-streaming  requests read from stdin (or @FILE), one JSON object after\n"
    "                    another (one per line is simplest); the reply printed at the end\n"
    "  bidi-streaming    requests from stdin, replies printed as they come\n"
    "\n"
    "examples:\n"
    "  duct call kv duct.examples.kv.KeyValue/Get '{\"key\":\"color\"}'\n"
    "  echo '{\"key\":\"color\"}' | duct call kv duct.examples.kv.KeyValue/Get -d @-\n"
    "  duct call kv duct.examples.kv.KeyValue/Watch '{\"prefix\":\"fruit/\"}'\n"
    "  duct call kv duct.examples.kv.KeyValue/Get -d @get.json --deadline 2s\n";

int cli_fail(int code, const char *fmt, ...) {
  char msg[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "duct: %s: %s\n", duct_code_name(code), msg);
  return code;
}

void cli_note(const cli *c, const char *fmt, ...) {
  if (!c->verbose)
    return;
  char msg[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "duct: %6.1f ms: %s\n", (double)(duct__now_ms() - c->t0), msg);
}

/* duct's log lines: all of them with -v; otherwise only the last error is
 * kept, to say why a connection failed in the one line cli_fail prints. */
static char last_log[512];
static void on_log(void *user, duct_log_level level, const char *line) {
  const cli *c = user;
  if (c->verbose)
    fprintf(stderr, "duct: log: %s\n", line);
  if (level <= DUCT_LOG_WARN)
    snprintf(last_log, sizeof last_log, "%s", line);
}

int cli_connect(cli *c) {
  if (c->ch)
    return DUCT_OK;
  duct_channel_opts o;
  memset(&o, 0, sizeof o);
  o.connect_timeout_ms = c->connect_timeout_ms;
  o.max_message_size = c->max_message_size;
  o.log = on_log;
  o.log_user = c;
  duct_code rc = duct_channel_open(c->address, &o, &c->ch);
  if (rc != DUCT_OK) {
    c->ch = NULL;
    return cli_fail(rc, "cannot reach '%s': %s", c->address,
                    last_log[0] ? last_log : duct_code_message(rc));
  }
  cli_note(c, "connected to %s", c->address);
  return DUCT_OK;
}

duct_call_opts cli_call_opts(const cli *c, duct_status *st) {
  duct_call_opts o;
  memset(&o, 0, sizeof o);
  o.deadline_ms = c->deadline_ms;
  o.status = st;
  return o;
}

char *cli_read_file(const char *path, size_t *len) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (!f) {
    cli_fail(DUCT_INVALID_ARGUMENT, "cannot open %s: %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    n += fread(buf + n, 1, cap - n - 1, f);
    if (n < cap - 1)
      break;
    char *bigger = realloc(buf, cap * 2);
    if (!bigger) {
      free(buf);
      buf = NULL;
      break;
    }
    buf = bigger;
    cap *= 2;
  }
  int bad = ferror(f);
  if (f != stdin)
    fclose(f);
  if (!buf || bad) {
    free(buf);
    cli_fail(buf ? DUCT_INVALID_ARGUMENT : DUCT_RESOURCE_EXHAUSTED, "cannot read %s", path);
    return NULL;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

/* "500ms", "10s", "2m", "1h", a bare number of seconds; 0 is none. */
static int parse_time(const char *s, uint32_t *ms) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno || v < 0)
    return -1;
  double scale = 1000;
  if (strcmp(end, "ms") == 0)
    scale = 1;
  else if (strcmp(end, "m") == 0)
    scale = 60000;
  else if (strcmp(end, "h") == 0)
    scale = 3600000;
  else if (*end && strcmp(end, "s") != 0)
    return -1;
  double r = v * scale;
  if (r > 4294967295.0)
    return -1;
  *ms = (uint32_t)(r + 0.5);
  if (*ms == 0 && v > 0)
    *ms = 1;
  return 0;
}

/* "4M", "64K", "64KiB", "1048576". */
static int parse_size(const char *s, uint32_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (end == s || errno || *s == '-')
    return -1;
  unsigned long long scale = 1;
  if (*end == 'K' || *end == 'k')
    scale = 1024, end++;
  else if (*end == 'M' || *end == 'm')
    scale = 1024 * 1024, end++;
  if (scale > 1 && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
    end += strlen(end);
  if (*end || v * scale > 0xffffffffull)
    return -1;
  *out = (uint32_t)(v * scale);
  return 0;
}

static int wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
      return 1;
  return 0;
}

/* An option's value: the next argument, or the part after '='. */
static const char *take_value(int argc, char **argv, int *i, const char *name, const char *eq) {
  if (eq)
    return eq + 1;
  if (*i + 1 >= argc) {
    cli_fail(DUCT_INVALID_ARGUMENT, "%s needs a value (duct --help)", name);
    return NULL;
  }
  return argv[++*i];
}

static int add_to(const char **list, int *n, const char *v, const char *name) {
  if (*n >= CLI_MAX_LIST)
    return cli_fail(DUCT_INVALID_ARGUMENT, "too many %s options", name);
  list[(*n)++] = v;
  return 0;
}

static int parse_args(cli *c, int argc, char **argv) {
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || strcmp(a, "-") == 0 || (a[1] == '\0')) {
      if (c->npos >= (int)(sizeof c->pos / sizeof c->pos[0]))
        return cli_fail(DUCT_INVALID_ARGUMENT, "unexpected argument '%s' (duct %s --help)", a,
                        c->cmd);
      c->pos[c->npos++] = a;
      continue;
    }
    /* "--name=value" as well as "--name value". */
    char name[64];
    const char *eq = a[1] == '-' ? strchr(a, '=') : NULL;
    size_t nl = eq ? (size_t)(eq - a) : strlen(a);
    if (nl >= sizeof name)
      nl = sizeof name - 1;
    memcpy(name, a, nl);
    name[nl] = '\0';
    const char *v = NULL;
#define VALUE()                                          \
  do {                                                   \
    if (!(v = take_value(argc, argv, &i, name, eq)))     \
      return DUCT_INVALID_ARGUMENT;                      \
  } while (0)
    if (strcmp(name, "-d") == 0 || strcmp(name, "--data") == 0) {
      VALUE();
      c->data = v;
    } else if (strcmp(name, "--proto") == 0) {
      VALUE();
      if (add_to(c->protos, &c->nprotos, v, name))
        return DUCT_INVALID_ARGUMENT;
    } else if (strcmp(name, "-I") == 0 || strcmp(name, "--import-path") == 0) {
      VALUE();
      if (add_to(c->idirs, &c->nidirs, v, name))
        return DUCT_INVALID_ARGUMENT;
    } else if (strncmp(a, "-I", 2) == 0 && a[2]) {
      if (add_to(c->idirs, &c->nidirs, a + 2, "-I"))
        return DUCT_INVALID_ARGUMENT;
    } else if (strcmp(name, "--protoset") == 0) {
      VALUE();
      if (add_to(c->protosets, &c->nprotosets, v, name))
        return DUCT_INVALID_ARGUMENT;
    } else if (strcmp(name, "--protoc") == 0) {
      VALUE();
      c->protoc = v;
    } else if (strcmp(name, "--deadline") == 0) {
      VALUE();
      if (parse_time(v, &c->deadline_ms))
        return cli_fail(DUCT_INVALID_ARGUMENT,
                        "--deadline: '%s' is not a time (500ms, 10s, 2m; 0 for none)", v);
    } else if (strcmp(name, "--connect-timeout") == 0) {
      VALUE();
      if (parse_time(v, &c->connect_timeout_ms))
        return cli_fail(DUCT_INVALID_ARGUMENT, "--connect-timeout: '%s' is not a time (5s)", v);
      if (c->connect_timeout_ms == 0)
        c->connect_timeout_ms = 1;
    } else if (strcmp(name, "--max-message-size") == 0) {
      VALUE();
      if (parse_size(v, &c->max_message_size) || c->max_message_size < 1024)
        return cli_fail(DUCT_INVALID_ARGUMENT,
                        "--max-message-size: '%s' is not a size of at least 1024 bytes "
                        "(64K, 4M, 1048576)",
                        v);
    } else if (strcmp(a, "--pretty") == 0) {
      c->pretty = 1;
    } else if (strcmp(a, "--emit-defaults") == 0) {
      c->emit_defaults = 1;
    } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
      c->verbose = 1;
    } else {
      return cli_fail(DUCT_INVALID_ARGUMENT, "unknown option '%s' (duct %s --help)", a, c->cmd);
    }
#undef VALUE
  }
  if (c->npos < 1)
    return cli_fail(DUCT_INVALID_ARGUMENT, "missing ADDRESS (duct %s --help)", c->cmd);
  c->address = c->pos[0];
  return DUCT_OK;
}

int main(int argc, char **argv) {
  cli c;
  memset(&c, 0, sizeof c);
  c.t0 = duct__now_ms();
  if (argc < 2 || (argc == 2 && wants_help(argc, argv))) {
    fputs(usage_main, argc < 2 ? stderr : stdout);
    return argc < 2 ? DUCT_INVALID_ARGUMENT : 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("duct %s\n", duct_version_string());
    return 0;
  }
  c.cmd = argv[1];
  int (*run)(cli *) = NULL;
  const char *help = NULL;
  int want = 0; /* positional arguments after ADDRESS, at least */
  if (strcmp(c.cmd, "list") == 0)
    run = cli_list, help = usage_list;
  else if (strcmp(c.cmd, "describe") == 0)
    run = cli_describe, help = usage_describe, want = 1;
  else if (strcmp(c.cmd, "call") == 0)
    run = cli_call, help = usage_call, want = 1;
  else
    return cli_fail(DUCT_INVALID_ARGUMENT, "unknown command '%s' (duct --help)", c.cmd);
  if (wants_help(argc, argv)) {
    fputs(help, stdout);
    return 0;
  }
  int rc = parse_args(&c, argc, argv);
  if (rc != DUCT_OK)
    return rc;
  int maxpos = 1 + want + (run == cli_call);
  if (c.npos - 1 < want || c.npos > maxpos) {
    fputs(help, stderr);
    return cli_fail(DUCT_INVALID_ARGUMENT, c.npos - 1 < want ? "missing arguments"
                                                             : "too many arguments");
  }
  if (!c.protoc)
    c.protoc = getenv("DUCT_PROTOC");
  if (!c.protoc || !*c.protoc)
    c.protoc = "protoc";
  rc = run(&c);
  duct_channel_close(c.ch);
  if (c.pool)
    duct_dynpool_free(c.pool);
  return rc;
}
