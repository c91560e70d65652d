/* cli/json.h - proto3 JSON <-> protobuf-c messages, for the duct tool.
 *
 * The mapping is protobuf's (https://protobuf.dev/programming-guides/proto3/#json)
 * over any ProtobufCMessageDescriptor: compiled by protoc-c or built at run
 * time from a server's reflection answer. Everything is found through the
 * descriptor, so nothing here depends on generated code.
 *
 * What protobuf-c's descriptors cannot tell, and how it is decided:
 *  - JSON names: protoc-c keeps only a field's .proto name, so the JSON
 *    name is computed the way protoc computes the default json_name (drop
 *    each `_`, upper-case the letter after it). A `json_name` option in
 *    the .proto is not seen. Input accepts the JSON name and the .proto name.
 *  - Maps: protobuf-c has no map flag; a repeated message field is a map
 *    when its message type's short name ends in "Entry" and it has exactly
 *    the fields key = 1 and value = 2 (what protoc generates for map<K,V>).
 *    A hand-written message of that shape is printed as a map too.
 *  - Well-known types are recognised by full name (google.protobuf.Timestamp,
 *    Duration, Empty, FieldMask and the wrappers), so a descriptor built at
 *    run time gets them as well. Struct, Value, ListValue and Any are
 *    printed and read as ordinary messages.
 *
 * Input limits: nesting deeper than DUCT_JSON_MAX_DEPTH is an error; of
 * duplicate keys in one object json-c keeps the last (the earlier ones are
 * not seen, so they are not an error), except that a field given both by
 * its JSON name and its .proto name is an error; an integer literal outside
 * [INT64_MIN, UINT64_MAX] is an error even for a double field (json-c would
 * clamp it silently); strings must be UTF-8 without U+0000 (protobuf-c's
 * strings end at the first NUL). */
#ifndef DUCT_CLI_JSON_H
#define DUCT_CLI_JSON_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

/* How deep JSON input may nest: objects and arrays, with the innermost
 * value counted as a level too (json-c's rule), so messages nest at most
 * DUCT_JSON_MAX_DEPTH - 1 deep. */
#define DUCT_JSON_MAX_DEPTH 100

/* Flags for duct_json_format. */
enum { DUCT_JSON_PRETTY = 1,          /* two-space indented, multi-line; default: one line, no spaces */
       DUCT_JSON_EMIT_DEFAULTS = 2 }; /* also print fields that hold their default (proto3 scalars, empty repeated/maps) */

/* Parses `text` (`len` bytes, not necessarily NUL-terminated) as the proto3
 * JSON form of a message of type `d`. On success returns 0 and sets *out to a
 * new message that the caller frees with protobuf_c_message_free_unpacked(*out, NULL).
 * On failure returns -1, sets *out to NULL, and writes a one-line message to
 * err (errlen bytes, always NUL-terminated) naming the field path, e.g.
 * "item.location.shelf: expected integer", "item.colour: unknown field",
 * "at offset 12: unexpected character". Works for compiled descriptors and for
 * descriptors built at run time (message_init may be NULL: never call it). */
int duct_json_parse(const ProtobufCMessageDescriptor *d, const char *text, size_t len,
                    ProtobufCMessage **out, char *err, size_t errlen);

/* Formats `msg` as proto3 JSON. Returns a malloc'd NUL-terminated string the
 * caller frees with free(), or NULL when out of memory. The message is
 * borrowed. Strings are copied as they are: a message whose strings are not
 * UTF-8 gives output that is not JSON. A Timestamp or Duration whose value
 * is outside the range the JSON form allows is printed as an ordinary
 * message ({"seconds":...,"nanos":...}), which duct_json_parse refuses. */
char *duct_json_format(const ProtobufCMessage *msg, int flags);

#endif
