/* Private to agent/gossip: what its codec headers share (msgpack_int.h,
 * lzw_int.h, wire_int.h, keyring_int.h): conventions, drop reasons, bytes. */
#ifndef HC_GOSSIP_INT_H
#define HC_GOSSIP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Conventions of the codec headers
 *
 * - Functions return 0 or -errno and never block.
 * - Decoders never read past the end of their input, reject msgpack nesting
 *   deeper than HC_GOSSIP_MP_MAX_DEPTH and never allocate more than a small
 *   multiple of their input size: every element count is checked against the
 *   bytes that remain before anything is allocated.
 * - Byte and string fields are struct hc_gossip_bytes that BORROW from the
 *   decoded buffer: keep that buffer alive while the decoded struct is used.
 *   A field that was msgpack nil has ptr == NULL; an empty string has a
 *   non-NULL ptr and len 0. Encoders write nil for ptr == NULL, so a decoded
 *   message re-encodes byte for byte.
 * - Decoders that need arrays (push/pull, query filters, tags, ...) allocate
 *   them; release with the matching _fini. Structs filled by the caller for
 *   encoding are never freed by this module.
 * - Every failure of a decoder maps to one drop reason (below), so the
 *   protocol layer can count drops by reason.
 */

/* Why a received packet or stream was dropped; codes are never reused. */
enum hc_gossip_drop {
	HC_GOSSIP_DROP_NONE = 0,
	HC_GOSSIP_DROP_TRUNCATED,    /* -ENODATA: input ended inside a value */
	HC_GOSSIP_DROP_MALFORMED,    /* -EBADMSG: bad msgpack, wrong type for a field */
	HC_GOSSIP_DROP_TOO_DEEP,     /* -ELOOP: msgpack or wrapper nesting too deep */
	HC_GOSSIP_DROP_TOO_LARGE,    /* -EMSGSIZE: over a size bound (LZW output, stream) */
	HC_GOSSIP_DROP_BAD_CRC,      /* -EILSEQ: hasCrc checksum mismatch */
	HC_GOSSIP_DROP_DECRYPT,      /* -EKEYREJECTED: no keyring key authenticates it */
	HC_GOSSIP_DROP_UNKNOWN_TYPE, /* -ENOMSG: unknown memberlist/serf/filter type */
	HC_GOSSIP_DROP_UNSUPPORTED,  /* -EPROTONOSUPPORT: unknown compression or cipher version */
	HC_GOSSIP_DROP_UNENCRYPTED,  /* -EACCES: plaintext while a keyring is configured, or
				      * ciphertext without one */
	HC_GOSSIP_DROP_NO_MEMORY,    /* -ENOMEM */
	HC_GOSSIP_DROP_OTHER,        /* any other errno */
	HC_GOSSIP_DROP_OVER_BUDGET,  /* -ENOBUFS: streams' buffers over their total budget */
	HC_GOSSIP_DROP_BAD_FILTER,   /* a query's tag filter too long, too large or invalid */
	HC_GOSSIP_DROP_COUNT
};

/* Maps a decoder's -errno to its drop reason (0 maps to NONE). */
enum hc_gossip_drop hc_gossip_drop_reason(int err);
/* "truncated", "bad_crc", ...: stable names for metric labels. */
const char *hc_gossip_drop_name(enum hc_gossip_drop reason);

/* A borrowed byte string; ptr == NULL means msgpack nil. */
struct hc_gossip_bytes {
	const uint8_t *ptr;
	size_t len;
};

/* A string literal or C string as a borrowed byte string (no NUL). */
struct hc_gossip_bytes hc_gossip_bytes_str(const char *s);
/* True if the byte strings have equal contents (nil equals empty). */
bool hc_gossip_bytes_eq(struct hc_gossip_bytes a, struct hc_gossip_bytes b);

#endif /* HC_GOSSIP_INT_H */
