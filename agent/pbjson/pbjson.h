/*
 * protobuf-c messages as JSON, in the shape upstream hypercore's HTTP API
 * produces (Go's encoding/json over the generated structs): proto field names,
 * zero values omitted, bytes as base64, maps as objects with sorted string
 * keys, enums and 64-bit integers as numbers, invalid UTF-8 replaced by U+FFFD.
 */
#ifndef HC_PBJSON_H
#define HC_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

/* Returns a new JSON object (the caller owns the reference), or NULL with
 * errno = ENOMEM. Never fails on message content. */
json_t *hc_pbjson_encode(const ProtobufCMessage *msg);

#endif /* HC_PBJSON_H */
