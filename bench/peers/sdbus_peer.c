/* bench/peers/sdbus_peer.c - duct-bench's echo over D-Bus with sd-bus,
 * through a private dbus-daemon that duct-bench starts for the run: a
 * server process owning a name and exporting Echo(ay) -> ay, client
 * threads calling it, each on a bus connection of its own (an sd_bus
 * object must not be used from two threads). Every call goes client ->
 * daemon -> server -> daemon -> client: that is how D-Bus services are
 * reached, so the daemon is part of what is measured. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "peers.h"
#include "peers_internal.h"

#define BUS_NAME "org.duct.Bench"
#define OBJ_PATH "/org/duct/Bench"
#define IFACE "org.duct.Bench"

/* The daemon's limits, set in the bus's own configuration rather than left
 * to whichever defaults a dbus-daemon build has (its built-in message limit
 * is 32 MiB, Debian's session.conf raises it to about 1 GB). D-Bus itself
 * caps a message at 128 MiB and an array at 64 MiB (the specification, and
 * sd-bus enforces both), so a 1 MiB `ay` is well inside every limit; this
 * names the one the bench relies on. */
static const char bus_conf[] =
    "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\"\n"
    " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
    "<busconfig>\n"
    "  <type>session</type>\n"
    "  <listen>unix:path=%s</listen>\n"
    "  <auth>EXTERNAL</auth>\n"
    "  <policy context=\"default\">\n"
    "    <allow send_destination=\"*\" eavesdrop=\"true\"/>\n"
    "    <allow eavesdrop=\"true\"/>\n"
    "    <allow own=\"*\"/>\n"
    "  </policy>\n"
    "  <limit name=\"max_message_size\">33554432</limit>\n"
    "  <limit name=\"max_incoming_bytes\">268435456</limit>\n"
    "  <limit name=\"max_outgoing_bytes\">268435456</limit>\n"
    "</busconfig>\n";

typedef struct peer {
  pid_t daemon, server;
  char sock[108], conf[108], address[128];
  sd_bus *bus; /* the main thread's, for NameHasOwner and Quit */
} peer;

typedef struct client {
  sd_bus *bus;
  sd_bus_message *reply; /* the last reply, whose bytes the caller checks */
} client;

/* ---- the server process ---- */

static int quit;

static int on_echo(sd_bus_message *m, void *userdata, sd_bus_error *err) {
  (void)userdata;
  (void)err;
  const void *p;
  size_t n;
  /* read_array points into the received message: no copy until the
   * reply's append. */
  int r = sd_bus_message_read_array(m, 'y', &p, &n);
  if (r < 0)
    return r;
  sd_bus_message *reply = NULL;
  r = sd_bus_message_new_method_return(m, &reply);
  if (r >= 0)
    r = sd_bus_message_append_array(reply, 'y', p, n);
  if (r >= 0)
    r = sd_bus_send(NULL, reply, NULL);
  sd_bus_message_unref(reply);
  return r < 0 ? r : 1;
}

static int on_quit(sd_bus_message *m, void *userdata, sd_bus_error *err) {
  (void)userdata;
  (void)err;
  quit = 1;
  return sd_bus_reply_method_return(m, "");
}

static const sd_bus_vtable vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("Echo", "ay", "ay", on_echo, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("Quit", "", "", on_quit, SD_BUS_VTABLE_UNPRIVILEGED), SD_BUS_VTABLE_END};

/* A bus connection to address, retried for up to 20 s while the daemon
 * starts. */
static sd_bus *bus_open(const char *address) {
  long long end = peer_now_ms() + 20000;
  int r;
  do {
    sd_bus *b = NULL;
    r = sd_bus_new(&b);
    if (r >= 0)
      r = sd_bus_set_address(b, address);
    if (r >= 0)
      r = sd_bus_set_bus_client(b, 1); /* Hello, and a unique name */
    if (r >= 0)
      r = sd_bus_start(b);
    if (r >= 0)
      return b;
    sd_bus_unref(b);
    peer_sleep_ms(10);
  } while (peer_now_ms() < end);
  fprintf(stderr, "duct-bench: sdbus: cannot connect to %s: %s\n", address, strerror(-r));
  return NULL;
}

/* One thread, one event loop: how an sd-bus service serves its methods. */
static int server_main(const char *address) {
  sd_bus *bus = bus_open(address);
  if (!bus)
    return 2;
  int r = sd_bus_add_object_vtable(bus, NULL, OBJ_PATH, IFACE, vtable, NULL);
  if (r >= 0)
    r = sd_bus_request_name(bus, BUS_NAME, 0);
  while (r >= 0 && !quit) {
    r = sd_bus_process(bus, NULL);
    if (r == 0)
      r = sd_bus_wait(bus, UINT64_MAX);
  }
  if (r < 0)
    fprintf(stderr, "duct-bench sdbus server: %s\n", strerror(-r));
  sd_bus_flush_close_unref(bus);
  return r < 0 ? 2 : 0;
}

/* ---- the measuring side ---- */

static void peer_free(peer *p) {
  if (p->bus)
    sd_bus_flush_close_unref(p->bus);
  if (p->server > 0)
    peer_reap(p->server, 0);
  if (p->daemon > 0)
    peer_reap(p->daemon, 0);
  unlink(p->sock);
  unlink(p->conf);
  free(p);
}

static void *start(const char *self, const char *tag) {
  peer *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  peer_path(p->sock, sizeof p->sock, tag, "bus.sock");
  peer_path(p->conf, sizeof p->conf, tag, "bus.conf");
  snprintf(p->address, sizeof p->address, "unix:path=%s", p->sock);
  unlink(p->sock);
  FILE *f = fopen(p->conf, "w");
  if (!f || fprintf(f, bus_conf, p->sock) < 0 || fclose(f) != 0) {
    fprintf(stderr, "duct-bench: sdbus: cannot write %s\n", p->conf);
    peer_free(p);
    return NULL;
  }
  char conf_arg[128];
  snprintf(conf_arg, sizeof conf_arg, "--config-file=%s", p->conf);
  const char *daemon_argv[] = {DUCT_DBUS_DAEMON, conf_arg, "--nofork", "--nopidfile", NULL};
  const char *server_argv[] = {self, "--peer-server", "sdbus", p->address, NULL};
  p->daemon = peer_spawn(daemon_argv);
  if (p->daemon < 0 || (p->bus = bus_open(p->address)) == NULL ||
      (p->server = peer_spawn(server_argv)) < 0) {
    peer_free(p);
    return NULL;
  }
  /* The server is reachable once it owns its name. */
  long long end = peer_now_ms() + 20000;
  for (;;) {
    sd_bus_message *m = NULL;
    int has = 0;
    int r = sd_bus_call_method(p->bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                               "org.freedesktop.DBus", "NameHasOwner", NULL, &m, "s", BUS_NAME);
    if (r >= 0)
      r = sd_bus_message_read(m, "b", &has);
    sd_bus_message_unref(m);
    if (r >= 0 && has)
      return p;
    if (peer_now_ms() >= end) {
      fprintf(stderr, "duct-bench: sdbus: the server did not take %s\n", BUS_NAME);
      peer_free(p);
      return NULL;
    }
    peer_sleep_ms(10);
  }
}

static void *client_open(void *arg) {
  peer *p = arg;
  client *c = calloc(1, sizeof *c);
  if (c && (c->bus = bus_open(p->address)) == NULL) {
    free(c);
    c = NULL;
  }
  return c;
}

/* sd_bus_call_method is this call in one line for signatures whose values
 * go through varargs; an `ay` of n bytes does not (its varargs form takes
 * the bytes one by one), so the message is built with append_array, which
 * is what sd_bus_call_method does inside, and sent with sd_bus_call. */
static int echo(void *arg, const uint8_t *req, size_t len, const uint8_t **reply,
                size_t *reply_len) {
  client *c = arg;
  sd_bus_message *m = NULL;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  c->reply = sd_bus_message_unref(c->reply);
  int r = sd_bus_message_new_method_call(c->bus, &m, BUS_NAME, OBJ_PATH, IFACE, "Echo");
  if (r >= 0)
    r = sd_bus_message_append_array(m, 'y', req, len);
  if (r >= 0)
    r = sd_bus_call(c->bus, m, 0, &err, &c->reply);
  sd_bus_message_unref(m);
  const void *p = NULL;
  if (r >= 0)
    r = sd_bus_message_read_array(c->reply, 'y', &p, reply_len);
  if (r < 0) {
    fprintf(stderr, "duct-bench: sdbus: Echo: %s\n",
            sd_bus_error_is_set(&err) ? err.message : strerror(-r));
    sd_bus_error_free(&err);
    return -1;
  }
  *reply = p;
  return 0;
}

static void client_close(void *arg) {
  client *c = arg;
  sd_bus_message_unref(c->reply);
  sd_bus_flush_close_unref(c->bus);
  free(c);
}

static int stop(void *arg) {
  peer *p = arg;
  int r = sd_bus_call_method(p->bus, BUS_NAME, OBJ_PATH, IFACE, "Quit", NULL, NULL, "");
  int rc = peer_reap(p->server, 10000);
  p->server = -1;
  /* The daemon has no quit request; SIGTERM is how it is stopped. */
  kill(p->daemon, SIGTERM);
  int drc = peer_reap(p->daemon, 10000);
  p->daemon = -1;
  peer_free(p);
  return r >= 0 && rc == 0 && drc == 0 ? 0 : -1;
}

const bench_peer bench_peer_sdbus = {"sdbus", start, server_main, client_open,
                                     echo,    client_close, stop};
