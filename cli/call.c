/* duct call: a JSON request (or a stream of them) in, JSON replies out,
 * for each of the four method kinds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/json.h"
#include "runtime/sys.h"

/* ---- requests: one JSON value after another, from text or a stream ---- */

typedef struct input {
  FILE *f;       /* read from here when not NULL (stdin, a file) */
  char *buf;     /* text read but not yet used */
  size_t len, cap, pos;
  int eof;
} input;

/* The end of the JSON value starting at s[0] (after white space), or 0 if
 * it is not complete within n bytes. Only brackets and strings are
 * followed: the parser checks the rest. A scalar ends at white space. */
static size_t value_end(const char *s, size_t n, int at_eof) {
  size_t i = 0, depth = 0;
  int in_str = 0;
  for (; i < n; i++) {
    char ch = s[i];
    if (in_str) {
      if (ch == '\\')
        i++;
      else if (ch == '"')
        in_str = 0;
      else
        continue;
      if (!in_str && depth == 0)
        return i + 1;
      continue;
    }
    if (ch == '"')
      in_str = 1;
    else if (ch == '{' || ch == '[')
      depth++;
    else if (ch == '}' || ch == ']') {
      if (depth > 0 && --depth == 0)
        return i + 1;
    } else if (depth == 0 && (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'))
      return i;
  }
  return at_eof ? n : 0;
}

/* The next request's JSON text (borrowed until the next call), or NULL at
 * the end. Stream input is read a line at a time, so requests typed one
 * per line go out as each line is entered. */
static const char *next_value(input *in, size_t *len) {
  for (;;) {
    while (in->pos < in->len && strchr(" \t\r\n", in->buf[in->pos]))
      in->pos++;
    size_t avail = in->len - in->pos;
    if (avail) {
      size_t end = value_end(in->buf + in->pos, avail, in->eof);
      if (end) {
        const char *v = in->buf + in->pos;
        in->pos += end;
        *len = end;
        return v;
      }
    }
    if (in->eof || !in->f)
      return NULL;
    if (in->pos > 0) { /* keep only what is unused */
      memmove(in->buf, in->buf + in->pos, in->len - in->pos);
      in->len -= in->pos;
      in->pos = 0;
    }
    if (in->cap - in->len < 4096) {
      size_t cap = in->cap ? in->cap * 2 : 8192;
      char *b = realloc(in->buf, cap);
      if (!b)
        return NULL;
      in->buf = b;
      in->cap = cap;
    }
    if (fgets(in->buf + in->len, (int)(in->cap - in->len), in->f))
      in->len += strlen(in->buf + in->len);
    else
      in->eof = 1;
  }
}

static int input_open(cli *c, input *in) {
  memset(in, 0, sizeof in[0]);
  const char *d = c->data ? c->data : c->npos > 2 ? c->pos[2] : NULL;
  if (c->data && c->npos > 2)
    return cli_fail(DUCT_INVALID_ARGUMENT, "give the request either as an argument or with -d");
  if (d && d[0] == '@') {
    if (strcmp(d, "@-") == 0) {
      in->f = stdin;
      return DUCT_OK;
    }
    if (!(in->f = fopen(d + 1, "rb")))
      return cli_fail(DUCT_INVALID_ARGUMENT, "cannot open %s", d + 1);
    return DUCT_OK;
  }
  in->eof = 1;
  if (!d)
    d = "";
  in->len = in->cap = strlen(d);
  if (!(in->buf = malloc(in->len + 1)))
    return cli_fail(DUCT_RESOURCE_EXHAUSTED, "out of memory");
  memcpy(in->buf, d, in->len + 1);
  return DUCT_OK;
}

static void input_close(input *in) {
  if (in->f && in->f != stdin)
    fclose(in->f);
  free(in->buf);
}

/* Parses one request; "where" names it in errors ("request 3"). */
static int parse_request(const duct_method *m, const char *text, size_t len, const char *where,
                         ProtobufCMessage **out) {
  char err[512];
  if (duct_json_parse(m->input, text, len, out, err, sizeof err))
    return cli_fail(DUCT_INVALID_ARGUMENT, "%s (%s): %s", where, m->input->name, err);
  return DUCT_OK;
}

/* The one request of a unary or server-streaming call: the whole input,
 * "{}" when none was given. */
static int single_request(cli *c, const duct_method *m, ProtobufCMessage **out) {
  input in;
  int rc = input_open(c, &in);
  if (rc != DUCT_OK)
    return rc;
  size_t len;
  const char *v = next_value(&in, &len);
  if (!v)
    v = "{}", len = 2;
  rc = parse_request(m, v, len, "request", out);
  size_t more;
  if (rc == DUCT_OK && next_value(&in, &more)) {
    protobuf_c_message_free_unpacked(*out, NULL);
    *out = NULL;
    rc = cli_fail(DUCT_INVALID_ARGUMENT,
                  "%s takes one request and more than one JSON value was given",
                  m->name + 1);
  }
  input_close(&in);
  return rc;
}

/* ---- replies ---- */

static int print_reply(const cli *c, const ProtobufCMessage *msg) {
  char *text = duct_json_format(msg, (c->pretty ? DUCT_JSON_PRETTY : 0) |
                                         (c->emit_defaults ? DUCT_JSON_EMIT_DEFAULTS : 0));
  if (!text)
    return cli_fail(DUCT_RESOURCE_EXHAUSTED, "out of memory formatting the reply");
  fputs(text, stdout);
  fputc('\n', stdout);
  fflush(stdout);
  free(text);
  return DUCT_OK;
}

/* The end of a call: its status, reported when not OK. */
static int ended(duct_code rc, const duct_status *st) {
  if (rc == DUCT_OK)
    return DUCT_OK;
  return cli_fail(rc, "%s", st->message[0] ? st->message : duct_code_message(rc));
}

static int call_unary(cli *c, const duct_method *m) {
  ProtobufCMessage *req;
  int rc = single_request(c, m, &req);
  if (rc != DUCT_OK)
    return rc;
  ProtobufCMessage *reply = NULL;
  duct_status st;
  duct_call_opts o = cli_call_opts(c, &st);
  int64_t t = duct__now_ms();
  rc = duct_call_unary(c->ch, m, req, &reply, &o);
  cli_note(c, "call took %lld ms", (long long)(duct__now_ms() - t));
  protobuf_c_message_free_unpacked(req, NULL);
  if (rc != DUCT_OK)
    return ended(rc, &st);
  rc = print_reply(c, reply);
  protobuf_c_message_free_unpacked(reply, NULL);
  return rc;
}

/* Prints the server's messages until the end; with `ctrl_c`, a stop
 * signal cancels the call (checked between messages, 200 ms apart at
 * most). Returns DUCT_OK, or the first failure of our own. */
static int receive_all(cli *c, duct_client_stream *st, int ctrl_c, int *stopped, size_t *n) {
  for (;;) {
    ProtobufCMessage *msg;
    duct_code rc = duct_client_stream_recv(st, &msg, ctrl_c ? 200 : -1);
    if (rc == DUCT_DEADLINE_EXCEEDED) {
      if (!*stopped && duct_stop_signals_pending()) {
        *stopped = 1;
        duct_client_stream_cancel(st);
      }
      continue;
    }
    if (rc != DUCT_OK || !msg)
      return DUCT_OK; /* the end; finish says how */
    (*n)++;
    rc = print_reply(c, msg);
    protobuf_c_message_free_unpacked(msg, NULL);
    if (rc != DUCT_OK) {
      duct_client_stream_cancel(st);
      return rc;
    }
  }
}

static int call_server_streaming(cli *c, const duct_method *m) {
  ProtobufCMessage *req;
  int rc = single_request(c, m, &req);
  if (rc != DUCT_OK)
    return rc;
  duct_stop_signals_catch();
  duct_call_opts o = cli_call_opts(c, NULL);
  duct_client_stream *st;
  rc = duct_client_stream_start(c->ch, m, req, &o, &st);
  protobuf_c_message_free_unpacked(req, NULL);
  if (rc != DUCT_OK)
    return cli_fail(rc, "%s", duct_code_message(rc));
  int stopped = 0;
  size_t n = 0;
  int mine = receive_all(c, st, 1, &stopped, &n);
  duct_status status;
  rc = duct_client_stream_finish(st, NULL, &status);
  cli_note(c, "%zu message(s)", n);
  if (mine != DUCT_OK)
    return mine;
  if (stopped)
    return cli_fail(DUCT_CANCELLED, "stopped by Ctrl-C after %zu message(s)", n);
  return ended(rc, &status);
}

/* Sends every request of the input; the stream's own failure (the call
 * ended) is left for finish to report. */
static int send_all(cli *c, const duct_method *m, duct_client_stream *st) {
  input in;
  int rc = input_open(c, &in);
  if (rc != DUCT_OK)
    return rc;
  if (!c->data && c->npos <= 2)
    in.f = stdin, in.eof = 0; /* no request given: read them from stdin */
  size_t len, n = 0;
  const char *v;
  while ((v = next_value(&in, &len))) {
    char where[48];
    snprintf(where, sizeof where, "request %zu", ++n);
    ProtobufCMessage *req;
    if ((rc = parse_request(m, v, len, where, &req)) != DUCT_OK)
      break;
    duct_code s = duct_client_stream_send(st, req, -1);
    protobuf_c_message_free_unpacked(req, NULL);
    if (s != DUCT_OK)
      break;
  }
  input_close(&in);
  if (rc == DUCT_OK)
    duct_client_stream_close_send(st);
  else
    duct_client_stream_cancel(st);
  cli_note(c, "%zu request(s) sent", n);
  return rc;
}

static int call_client_streaming(cli *c, const duct_method *m) {
  duct_call_opts o = cli_call_opts(c, NULL);
  duct_client_stream *st;
  int rc = duct_client_stream_start(c->ch, m, NULL, &o, &st);
  if (rc != DUCT_OK)
    return cli_fail(rc, "%s", duct_code_message(rc));
  int mine = send_all(c, m, st);
  ProtobufCMessage *reply = NULL;
  duct_status status;
  rc = duct_client_stream_finish(st, &reply, &status);
  if (mine != DUCT_OK) {
    if (reply)
      protobuf_c_message_free_unpacked(reply, NULL);
    return mine;
  }
  if (rc != DUCT_OK)
    return ended(rc, &status);
  rc = reply ? print_reply(c, reply) : DUCT_OK;
  if (reply)
    protobuf_c_message_free_unpacked(reply, NULL);
  return rc;
}

typedef struct receiver {
  cli *c;
  duct_client_stream *st;
  int result, stopped;
  size_t n;
} receiver;

static void receive_thread(void *arg) {
  receiver *r = arg;
  r->result = receive_all(r->c, r->st, 0, &r->stopped, &r->n);
}

/* Requests from the input on this thread, replies printed by another. */
static int call_bidi(cli *c, const duct_method *m) {
  duct_call_opts o = cli_call_opts(c, NULL);
  duct_client_stream *st;
  int rc = duct_client_stream_start(c->ch, m, NULL, &o, &st);
  if (rc != DUCT_OK)
    return cli_fail(rc, "%s", duct_code_message(rc));
  receiver r = {c, st, DUCT_OK, 0, 0};
  duct__thread t;
  if (duct__thread_start(&t, receive_thread, &r) != DUCT_OK) {
    duct_client_stream_cancel(st);
    duct_client_stream_finish(st, NULL, NULL);
    return cli_fail(DUCT_RESOURCE_EXHAUSTED, "cannot start a thread");
  }
  int mine = send_all(c, m, st);
  duct__thread_join(&t);
  duct_status status;
  rc = duct_client_stream_finish(st, NULL, &status);
  if (mine != DUCT_OK)
    return mine;
  if (r.result != DUCT_OK)
    return r.result;
  return ended(rc, &status);
}

int cli_call(cli *c) {
  const char *name = c->pos[1];
  /* The service's name is what reflection is asked for: "pkg.Svc/M" or
   * "pkg.Svc.M" both name method M of pkg.Svc. */
  char service[512];
  const char *cut = strchr(name, '/');
  if (!cut)
    cut = strrchr(name, '.');
  if (!cut || cut == name || !cut[1] || (size_t)(cut - name) >= sizeof service)
    return cli_fail(DUCT_INVALID_ARGUMENT,
                    "'%s' is not a method name: write pkg.Service/Method (duct list %s shows them)",
                    name, c->address);
  snprintf(service, sizeof service, "%.*s", (int)(cut - name), name);
  int rc = cli_load_schema(c, service);
  if (rc != DUCT_OK)
    return rc;
  const duct_method *m = duct_dynpool_method(c->pool, name);
  if (!m)
    return cli_fail(DUCT_NOT_FOUND, "no method %s in the schema (duct list %s shows them)", name,
                    c->address);
  if ((rc = cli_connect(c)) != DUCT_OK)
    return rc;
  switch (m->kind) {
  case DUCT_SERVER_STREAMING:
    return call_server_streaming(c, m);
  case DUCT_CLIENT_STREAMING:
    return call_client_streaming(c, m);
  case DUCT_BIDI_STREAMING:
    return call_bidi(c, m);
  default:
    return call_unary(c, m);
  }
}
