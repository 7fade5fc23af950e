/* Private to agent/gossip: msgpack as go-msgpack 0.5.5 writes and reads it
 * (msgpack.c): readers, writers, Go structs as field tables. */
#ifndef HC_GOSSIP_MSGPACK_INT_H
#define HC_GOSSIP_MSGPACK_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/gossip_int.h"

#define HC_GOSSIP_MP_MAX_DEPTH 8

/* A bounded cursor over a buffer; it never reads outside [buf, buf+len). */
struct hc_gossip_mp_reader {
	const uint8_t *buf;
	size_t len;
	size_t pos;
	unsigned depth; /* containers entered with _enter and not yet left */
};

void hc_gossip_mp_reader_init(struct hc_gossip_mp_reader *r, const void *buf, size_t len);
size_t hc_gossip_mp_remaining(const struct hc_gossip_mp_reader *r);

/* Scalars. Each accepts what go-msgpack 0.5.5 accepts for the Go type and
 * reads nil as the zero value. _uint rejects negatives and values above max. */
int hc_gossip_mp_read_uint(struct hc_gossip_mp_reader *r, uint64_t max, uint64_t *out);
int hc_gossip_mp_read_int(struct hc_gossip_mp_reader *r, int64_t *out);
int hc_gossip_mp_read_bool(struct hc_gossip_mp_reader *r, bool *out);
int hc_gossip_mp_read_float(struct hc_gossip_mp_reader *r, double *out);
/* A Go []byte: str or bin family, or nil. Borrowed from the reader's buffer. */
int hc_gossip_mp_read_bytes(struct hc_gossip_mp_reader *r, struct hc_gossip_bytes *out);
/* A Go string: str family only (bin is refused as Go does), or nil. */
int hc_gossip_mp_read_str(struct hc_gossip_mp_reader *r, struct hc_gossip_bytes *out);
/* Container headers; nil reads as count 0 with *is_nil set (is_nil may be
 * NULL). The count is checked against the remaining input. Callers that then
 * read the elements bracket them with _enter/_leave to bound nesting. */
int hc_gossip_mp_read_map(struct hc_gossip_mp_reader *r, uint32_t *count, bool *is_nil);
int hc_gossip_mp_read_array(struct hc_gossip_mp_reader *r, uint32_t *count, bool *is_nil);
int hc_gossip_mp_enter(struct hc_gossip_mp_reader *r);
void hc_gossip_mp_leave(struct hc_gossip_mp_reader *r);
/* Skips one complete value of any type, iteratively, within the depth bound. */
int hc_gossip_mp_skip(struct hc_gossip_mp_reader *r);
/* True if the next byte is nil (c0); does not consume it. */
bool hc_gossip_mp_peek_nil(const struct hc_gossip_mp_reader *r);

/* A growable output buffer. Errors are sticky: after the first failure every
 * write is ignored and _error returns it, so encoders check once at the end. */
struct hc_gossip_mp_writer {
	uint8_t *buf; /* owned; take it with _steal or release with _fini */
	size_t len, cap;
	size_t max; /* 0 = unbounded, else writes past max fail with -EMSGSIZE */
	int err;
};

void hc_gossip_mp_writer_init(struct hc_gossip_mp_writer *w, size_t max);
void hc_gossip_mp_writer_fini(struct hc_gossip_mp_writer *w);
int hc_gossip_mp_writer_error(const struct hc_gossip_mp_writer *w);
/* Hands the buffer to the caller (free() it) and resets the writer. */
uint8_t *hc_gossip_mp_writer_steal(struct hc_gossip_mp_writer *w, size_t *len);

/* Encodings exactly as go-msgpack 0.5.5 emits them: smallest integer form for
 * the value, str family (never str8, never bin) for strings and []byte. */
void hc_gossip_mp_write_raw(struct hc_gossip_mp_writer *w, const void *p, size_t n);
void hc_gossip_mp_write_u8(struct hc_gossip_mp_writer *w, uint8_t b);
void hc_gossip_mp_write_nil(struct hc_gossip_mp_writer *w);
void hc_gossip_mp_write_bool(struct hc_gossip_mp_writer *w, bool v);
void hc_gossip_mp_write_uint(struct hc_gossip_mp_writer *w, uint64_t v);
void hc_gossip_mp_write_int(struct hc_gossip_mp_writer *w, int64_t v);
void hc_gossip_mp_write_float(struct hc_gossip_mp_writer *w, double v);
/* nil for ptr == NULL, else a str-family string. */
void hc_gossip_mp_write_bytes(struct hc_gossip_mp_writer *w, struct hc_gossip_bytes b);
/* A struct key or other C string. */
void hc_gossip_mp_write_cstr(struct hc_gossip_mp_writer *w, const char *s);
void hc_gossip_mp_write_map(struct hc_gossip_mp_writer *w, uint32_t n);
void hc_gossip_mp_write_array(struct hc_gossip_mp_writer *w, uint32_t n);

/* Go structs as msgpack maps, described by a table of fields listed in Go's
 * emitted order (sorted by name). Decoding accepts any key order, skips
 * unknown keys and zeroes missing fields; encoding follows the table and
 * leaves out empty omitempty fields, as go-msgpack does. */
enum hc_gossip_field_kind {
	HC_GOSSIP_F_BOOL,
	HC_GOSSIP_F_U8,
	HC_GOSSIP_F_U16,
	HC_GOSSIP_F_U32,
	HC_GOSSIP_F_U64,
	HC_GOSSIP_F_I64,
	HC_GOSSIP_F_F64,
	HC_GOSSIP_F_BYTES,  /* Go []byte: struct hc_gossip_bytes */
	HC_GOSSIP_F_STR,    /* Go string: struct hc_gossip_bytes */
	HC_GOSSIP_F_CUSTOM, /* nested value: read/write below, on the whole struct */
};

struct hc_gossip_field {
	const char *name;
	enum hc_gossip_field_kind kind;
	size_t offset;
	bool omitempty;
	int (*read)(struct hc_gossip_mp_reader *r, void *obj);
	void (*write)(struct hc_gossip_mp_writer *w, const void *obj);
};

/* Reads a map (or nil) into obj; fields absent from the input keep their
 * value, so callers zero obj first. On failure obj may hold CUSTOM
 * allocations: the caller's _fini releases them. */
int hc_gossip_mp_read_struct(struct hc_gossip_mp_reader *r, const struct hc_gossip_field *f,
			     size_t n, void *obj);
void hc_gossip_mp_write_struct(struct hc_gossip_mp_writer *w, const struct hc_gossip_field *f,
			       size_t n, const void *obj);

#endif /* HC_GOSSIP_MSGPACK_INT_H */
