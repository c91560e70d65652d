/* Where the duct program's schema comes from (the server's reflection,
 * --protoset files, or .proto files run through protoc), and the two
 * commands that only read it: list and describe. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "duct/reflection.duct.h"
#include "runtime/sys.h"

static int pool_fail(const char *what, const char *err) {
  return cli_fail(DUCT_INVALID_ARGUMENT, "%s: %s", what, err);
}

static int add_set_file(cli *c, const char *path) {
  size_t len;
  char *data = cli_read_file(path, &len);
  if (!data)
    return DUCT_INVALID_ARGUMENT;
  char err[512];
  int bad = duct_dynpool_add_set(c->pool, (const uint8_t *)data, len, err, sizeof err);
  free(data);
  return bad ? pool_fail(path, err) : DUCT_OK;
}

/* The directory part of a path ("." for none), for a default -I. A
 * backslash counts as a separator on every system: Windows paths have
 * them, and a .proto file name with one is not worth the ambiguity. */
static void dir_of(const char *path, char *out, size_t cap) {
  const char *slash = strrchr(path, '/');
  const char *bs = strrchr(path, '\\');
  if (bs && (!slash || bs > slash))
    slash = bs;
  if (!slash) {
    snprintf(out, cap, ".");
    return;
  }
  size_t n = (size_t)(slash - path);
  snprintf(out, cap, "%.*s", (int)(n ? n : 1), path);
}

/* Runs protoc over the --proto files into a descriptor set, then loads it. */
static int run_protoc(cli *c) {
  char tmp[4096];
  if (duct__temp_file(tmp, sizeof tmp))
    return cli_fail(DUCT_INTERNAL, "cannot make a temporary file for protoc's output");
  enum { MAXARG = 3 * CLI_MAX_LIST + 8 };
  const char *argv[MAXARG];
  static char iflags[CLI_MAX_LIST][4200];
  char out_flag[4200];
  int n = 0;
  argv[n++] = c->protoc;
  argv[n++] = "--include_imports";
  snprintf(out_flag, sizeof out_flag, "--descriptor_set_out=%s", tmp);
  argv[n++] = out_flag;
  for (int i = 0; i < c->nidirs; i++) {
    snprintf(iflags[i], sizeof iflags[i], "-I%s", c->idirs[i]);
    argv[n++] = iflags[i];
  }
  if (c->nidirs == 0) {
    /* protoc wants each file under an import path: default to each
     * file's own directory, as a user who gave none most likely means. */
    for (int i = 0; i < c->nprotos; i++) {
      char dir[4096];
      dir_of(c->protos[i], dir, sizeof dir);
      snprintf(iflags[i], sizeof iflags[i], "-I%s", dir);
      argv[n++] = iflags[i];
    }
  }
  for (int i = 0; i < c->nprotos; i++)
    argv[n++] = c->protos[i];
  argv[n] = NULL;
  cli_note(c, "running %s", c->protoc);
  int code;
  duct_code rc = duct__spawn_wait(argv, &code);
  int result = DUCT_OK;
  if (rc == DUCT_NOT_FOUND)
    result = cli_fail(DUCT_NOT_FOUND,
                      "--proto needs protoc and '%s' was not found: install protobuf-compiler, "
                      "or name it with --protoc PATH (or DUCT_PROTOC)",
                      c->protoc);
  else if (rc == DUCT_UNIMPLEMENTED)
    result = cli_fail(DUCT_UNIMPLEMENTED,
                      "'%s' was started but cannot be waited for (under Wine, a Linux "
                      "protoc): name a Windows protoc.exe with --protoc, or use --protoset",
                      c->protoc);
  else if (rc != DUCT_OK)
    result = cli_fail(DUCT_INTERNAL, "could not run '%s'", c->protoc);
  else if (code != 0)
    result = cli_fail(DUCT_INVALID_ARGUMENT, "protoc failed (exit code %d) on the --proto files; "
                      "its message is above", code);
  else
    result = add_set_file(c, tmp);
  remove(tmp);
  return result;
}

static int load_local(cli *c) {
  for (int i = 0; i < c->nprotosets; i++) {
    int rc = add_set_file(c, c->protosets[i]);
    if (rc != DUCT_OK)
      return rc;
  }
  if (c->nprotos > 0) {
    int rc = run_protoc(c);
    if (rc != DUCT_OK)
      return rc;
  }
  return DUCT_OK;
}

/* A reflection call failed: say what to do when the server has none. */
static int reflection_failed(cli *c, duct_code rc, const duct_status *st) {
  if (rc == DUCT_UNIMPLEMENTED)
    return cli_fail(rc,
                    "the server at '%s' does not offer reflection (duct.reflection.v1); "
                    "give its schema with --proto FILE.proto [-I DIR] or --protoset FILE",
                    c->address);
  return cli_fail(rc, "reflection: %s", st->message[0] ? st->message : duct_code_message(rc));
}

static int load_symbol(cli *c, const char *symbol) {
  Duct__Reflection__V1__SymbolRequest req = DUCT__REFLECTION__V1__SYMBOL_REQUEST__INIT;
  req.symbol = (char *)symbol;
  Duct__Reflection__V1__FilesReply *reply;
  duct_status st;
  duct_call_opts o = cli_call_opts(c, &st);
  duct_code rc = duct_reflection_v1_reflection_file_containing_symbol(c->ch, &req, &reply, &o);
  if (rc != DUCT_OK)
    return reflection_failed(c, rc, &st);
  int result = DUCT_OK;
  char err[512];
  for (size_t i = 0; i < reply->n_file_descriptor_proto && result == DUCT_OK; i++)
    if (duct_dynpool_add_file(c->pool, reply->file_descriptor_proto[i].data,
                              reply->file_descriptor_proto[i].len, err, sizeof err))
      result = cli_fail(DUCT_INTERNAL, "the server's descriptors for %s: %s", symbol, err);
  cli_note(c, "%zu file(s) describe %s", reply->n_file_descriptor_proto, symbol);
  duct__reflection__v1__files_reply__free_unpacked(reply, NULL);
  return result;
}

int cli_load_schema(cli *c, const char *symbol) {
  if (!c->pool && !(c->pool = duct_dynpool_new()))
    return cli_fail(DUCT_RESOURCE_EXHAUSTED, "out of memory");
  int rc;
  if (c->nprotos || c->nprotosets) {
    rc = load_local(c);
  } else {
    if ((rc = cli_connect(c)) != DUCT_OK)
      return rc;
    rc = load_symbol(c, symbol);
  }
  if (rc != DUCT_OK)
    return rc;
  char err[512];
  if (duct_dynpool_build(c->pool, err, sizeof err))
    return pool_fail("the schema", err);
  cli_note(c, "schema loaded");
  return DUCT_OK;
}

static const char *kind_name(duct_method_kind k) {
  switch (k) {
  case DUCT_SERVER_STREAMING:
    return "server-streaming";
  case DUCT_CLIENT_STREAMING:
    return "client-streaming";
  case DUCT_BIDI_STREAMING:
    return "bidi-streaming";
  default:
    return "unary";
  }
}

/* One method line: the name (after the service's "/"), padded to `w`. */
static void print_method(const char *full, duct_method_kind kind, int w) {
  const char *slash = strrchr(full, '/');
  printf("  %-*s  %s\n", w, slash ? slash + 1 : full, kind_name(kind));
}

static int list_local(cli *c) {
  int rc = cli_load_schema(c, NULL);
  if (rc != DUCT_OK)
    return rc;
  size_t n = duct_dynpool_n_services(c->pool);
  for (size_t i = 0; i < n; i++) {
    const duct_service *s = duct_dynpool_service_at(c->pool, i);
    int w = 0;
    for (size_t j = 0; j < s->n_methods; j++) {
      const char *sl = strrchr(s->methods[j].name, '/');
      int len = (int)strlen(sl ? sl + 1 : s->methods[j].name);
      w = len > w ? len : w;
    }
    printf("%s\n", s->name);
    for (size_t j = 0; j < s->n_methods; j++)
      print_method(s->methods[j].name, s->methods[j].kind, w);
  }
  if (n == 0)
    return cli_fail(DUCT_NOT_FOUND, "the given schema defines no service");
  return DUCT_OK;
}

int cli_list(cli *c) {
  if (c->npos != 1)
    return cli_fail(DUCT_INVALID_ARGUMENT, "list takes only an ADDRESS (duct list --help)");
  if (c->nprotos || c->nprotosets)
    return list_local(c);
  int rc = cli_connect(c);
  if (rc != DUCT_OK)
    return rc;
  Duct__Reflection__V1__ListServicesRequest req =
      DUCT__REFLECTION__V1__LIST_SERVICES_REQUEST__INIT;
  Duct__Reflection__V1__ListServicesReply *reply;
  duct_status st;
  duct_call_opts o = cli_call_opts(c, &st);
  rc = duct_reflection_v1_reflection_list_services(c->ch, &req, &reply, &o);
  if (rc != DUCT_OK)
    return reflection_failed(c, rc, &st);
  for (size_t i = 0; i < reply->n_services; i++) {
    const Duct__Reflection__V1__ServiceInfo *s = reply->services[i];
    int w = 0;
    for (size_t j = 0; j < s->n_methods; j++) {
      int len = (int)strlen(s->methods[j]->name);
      w = len > w ? len : w;
    }
    printf("%s\n", s->name);
    for (size_t j = 0; j < s->n_methods; j++)
      print_method(s->methods[j]->name, (duct_method_kind)s->methods[j]->kind, w);
  }
  cli_note(c, "%zu service(s)", reply->n_services);
  duct__reflection__v1__list_services_reply__free_unpacked(reply, NULL);
  return DUCT_OK;
}

int cli_describe(cli *c) {
  const char *symbol = c->pos[1];
  int rc = cli_load_schema(c, symbol);
  if (rc != DUCT_OK)
    return rc;
  char err[512];
  char *text = duct_dynpool_describe(c->pool, symbol, err, sizeof err);
  if (!text)
    return cli_fail(DUCT_NOT_FOUND, "%s", err);
  fputs(text, stdout);
  size_t n = strlen(text);
  if (n && text[n - 1] != '\n')
    putchar('\n');
  free(text);
  return DUCT_OK;
}
