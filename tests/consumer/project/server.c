/* inventory-server ADDRESS: the consumer test's server, written as a user
 * of an installed duct would write it (public headers only). Stateless,
 * so handlers need no lock. Prints "ready" once listening and serves
 * until SIGINT/SIGTERM (Ctrl-C on Windows). */
#include <stdio.h>

#include <duct/duct.h>

#include "inventory.duct.h"

static duct_code move(duct_ctx *ctx, const Inventory__V1__Item *req,
                      Inventory__V1__Item *reply) {
  if (req->location == NULL)
    return duct_ctx_fail(ctx, DUCT_INVALID_ARGUMENT, "item %s has no location",
                         req->sku);
  Inventory__V1__Item__Location *loc = duct_ctx_alloc(ctx, sizeof *loc);
  char **tags = duct_ctx_alloc(ctx, (req->n_tags + 1) * sizeof *tags);
  if (loc == NULL || tags == NULL)
    return DUCT_RESOURCE_EXHAUSTED;
  inventory__v1__item__location__init(loc);
  loc->shelf = duct_ctx_strdup(ctx, req->location->shelf);
  loc->bin = req->location->bin + 1;
  for (size_t i = 0; i < req->n_tags; i++)
    tags[i] = req->tags[req->n_tags - 1 - i];
  reply->sku = duct_ctx_strdup(ctx, req->sku);
  reply->location = loc;
  reply->kind = req->kind == INVENTORY__V1__KIND__KIND_PART
                    ? INVENTORY__V1__KIND__KIND_TOOL
                    : req->kind;
  reply->n_tags = req->n_tags;
  reply->tags = tags;
  return DUCT_OK;
}

static duct_code count_tags(duct_ctx *ctx, const Inventory__V1__Item *req,
                            Inventory__V1__CountReply *reply) {
  (void)ctx;
  reply->tags = (uint32_t)req->n_tags;
  return DUCT_OK;
}

static const inventory_v1_inventory_handlers handlers = {
    .move = move, .count_tags = count_tags};

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: inventory-server ADDRESS\n");
    return 2;
  }
  duct_server *s;
  if (duct_stop_signals_catch() != DUCT_OK ||
      duct_server_new(NULL, &s) != DUCT_OK)
    return 1;
  if (inventory_v1_inventory_register(s, &handlers, NULL) != DUCT_OK ||
      duct_server_listen(s, argv[1]) != DUCT_OK ||
      duct_server_start(s) != DUCT_OK) {
    duct_server_free(s);
    return 1;
  }
  printf("ready (duct %s)\n", duct_version_string());
  fflush(stdout);
  duct_stop_signals_wait();
  duct_server_stop(s, 2000);
  duct_server_free(s);
  return 0;
}
