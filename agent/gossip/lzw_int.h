/* Private to agent/gossip: LZW as Go's compress/lzw (LSB, literal width 8)
 * (lzw.c): memberlist's compression. */
#ifndef HC_GOSSIP_LZW_INT_H
#define HC_GOSSIP_LZW_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/msgpack_int.h"

/* Decompresses into a malloc'd buffer (*out, free() it) of at most max_out
 * (> 0) bytes; -EMSGSIZE beyond, -EBADMSG on an invalid code, -ENODATA if
 * the EOF code is missing. */
int hc_gossip_lzw_decompress(const uint8_t *in, size_t len, size_t max_out, uint8_t **out,
			     size_t *out_len);
/* Compresses exactly as Go >= 1.17 does (leading clear code); appends to w. */
int hc_gossip_lzw_compress(const uint8_t *in, size_t len, struct hc_gossip_mp_writer *w);

#endif /* HC_GOSSIP_LZW_INT_H */
