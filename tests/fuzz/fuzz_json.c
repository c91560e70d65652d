/* fuzz-json: cli/json.c's parser on any text, and its output read back.
 * The first byte picks the message type (json3.proto's and json2.proto's
 * messages and some well-known types), the rest is the JSON.
 * Invariants checked: parsing never crashes or leaks, also when it fails;
 * what it accepts formats to JSON that parses again to the same message
 * (equal protobuf encodings), in both layouts, and formatting that
 * message again gives the same text (the output is a fixed point). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/json.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/field_mask.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "json2.pb-c.h"
#include "json3.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const ProtobufCMessageDescriptor *const types[] = {
  &duct__jsontest__item__descriptor,  &duct__jsontest__scalars__descriptor,
  &duct__jsontest__location__descriptor, &duct__jsontest2__order__descriptor,
  &duct__jsontest2__part__descriptor, &google__protobuf__timestamp__descriptor,
  &google__protobuf__duration__descriptor, &google__protobuf__field_mask__descriptor,
  &google__protobuf__double_value__descriptor, &google__protobuf__bytes_value__descriptor,
};

static void die(const char *what, const char *a, const char *b)
{
  fprintf(stderr, "fuzz-json: %s\n%s\n%s\n", what, a ? a : "", b ? b : "");
  abort();
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *n)
{
  *n = protobuf_c_message_get_packed_size(m);
  uint8_t *p = malloc(*n + 1);
  if (p == NULL)
    abort();
  protobuf_c_message_pack(m, p);
  return p;
}

/* Parses text as d and checks that it encodes as want[0..wn). */
static void reparse(const ProtobufCMessageDescriptor *d, const char *text, const uint8_t *want,
                    size_t wn)
{
  char err[256];
  ProtobufCMessage *m;
  if (duct_json_parse(d, text, strlen(text), &m, err, sizeof err) != 0)
    die("formatted output does not parse", text, err);
  size_t n;
  uint8_t *got = pack(m, &n);
  if (n != wn || memcmp(got, want, n) != 0)
    die("formatted output parses to a different message", text, NULL);
  free(got);
  protobuf_c_message_free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  const ProtobufCMessageDescriptor *d = types[data[0] % (sizeof types / sizeof types[0])];
  char err[256];
  ProtobufCMessage *m;
  if (duct_json_parse(d, (const char *)data + 1, size - 1, &m, err, sizeof err) != 0) {
    if (m != NULL || err[0] == '\0')
      die("a failed parse must give NULL and a message", err, NULL);
    return 0;
  }
  size_t n;
  uint8_t *enc = pack(m, &n);
  for (int flags = 0; flags <= (DUCT_JSON_PRETTY | DUCT_JSON_EMIT_DEFAULTS); flags++) {
    char *once = duct_json_format(m, flags);
    if (once == NULL)
      abort();
    reparse(d, once, enc, n);
    /* Formatting the reparsed message gives the same text. */
    ProtobufCMessage *m2;
    if (duct_json_parse(d, once, strlen(once), &m2, err, sizeof err) != 0)
      abort();
    char *twice = duct_json_format(m2, flags);
    if (twice == NULL)
      abort();
    if (strcmp(once, twice) != 0)
      die("formatting is not stable", once, twice);
    free(twice);
    protobuf_c_message_free_unpacked(m2, NULL);
    free(once);
  }
  free(enc);
  protobuf_c_message_free_unpacked(m, NULL);
  return 0;
}
