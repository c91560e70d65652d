/* inventory-client ADDRESS: makes real calls to inventory-server and
 * checks every field of the replies. Prints one line per call; exits 0
 * only if every reply is right. */
#include <stdio.h>
#include <string.h>

#include <duct/duct.h>

#include "inventory.duct.h"

#define CHECK(cond)                                                    \
  do {                                                                 \
    if (!(cond)) {                                                     \
      fprintf(stderr, "inventory-client: check failed: %s\n", #cond); \
      return 1;                                                        \
    }                                                                  \
  } while (0)

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: inventory-client ADDRESS\n");
    return 2;
  }
  /* The headers this program was compiled with and the library it runs
   * with are one duct. */
  CHECK(duct_version() == DUCT_VERSION_NUMBER);

  duct_channel *ch;
  duct_code rc = duct_channel_open(argv[1], NULL, &ch);
  if (rc != DUCT_OK) {
    fprintf(stderr, "inventory-client: open %s: %s\n", argv[1],
            duct_code_name(rc));
    return 1;
  }
  Inventory__V1__Item__Location loc = INVENTORY__V1__ITEM__LOCATION__INIT;
  loc.shelf = "B7";
  loc.bin = 41;
  char *tags[] = {"m4", "steel", "hex"};
  Inventory__V1__Item item = INVENTORY__V1__ITEM__INIT;
  item.sku = "bolt-m4x20";
  item.location = &loc;
  item.kind = INVENTORY__V1__KIND__KIND_PART;
  item.n_tags = 3;
  item.tags = tags;

  duct_status st;
  duct_call_opts opts = {.deadline_ms = 10000, .status = &st};
  Inventory__V1__Item *moved = NULL;
  rc = inventory_v1_inventory_move(ch, &item, &moved, &opts);
  if (rc != DUCT_OK) {
    fprintf(stderr, "inventory-client: Move: %s: %s\n", duct_code_name(rc),
            st.message);
    duct_channel_close(ch);
    return 1;
  }
  CHECK(strcmp(moved->sku, "bolt-m4x20") == 0);
  CHECK(moved->location != NULL && strcmp(moved->location->shelf, "B7") == 0);
  CHECK(moved->location->bin == 42);
  CHECK(moved->kind == INVENTORY__V1__KIND__KIND_TOOL);
  CHECK(moved->n_tags == 3 && strcmp(moved->tags[0], "hex") == 0 &&
        strcmp(moved->tags[1], "steel") == 0 &&
        strcmp(moved->tags[2], "m4") == 0);
  printf("Move: %s at %s/%u, kind %d, tags %s,%s,%s\n", moved->sku,
         moved->location->shelf, (unsigned)moved->location->bin,
         (int)moved->kind, moved->tags[0], moved->tags[1], moved->tags[2]);
  inventory__v1__item__free_unpacked(moved, NULL);

  Inventory__V1__CountReply *count = NULL;
  rc = inventory_v1_inventory_count_tags(ch, &item, &count, &opts);
  CHECK(rc == DUCT_OK && count->tags == 3);
  printf("CountTags: %u\n", (unsigned)count->tags);
  inventory__v1__count_reply__free_unpacked(count, NULL);

  /* A bad request gets the server's own code and message. */
  item.location = NULL;
  rc = inventory_v1_inventory_move(ch, &item, &moved, &opts);
  CHECK(rc == DUCT_INVALID_ARGUMENT && moved == NULL);
  CHECK(strstr(st.message, "has no location") != NULL);
  printf("Move without location: %s (%s)\n", duct_code_name(rc), st.message);

  duct_channel_close(ch);
  return 0;
}
