/* Receive paths of the gossip codec: drop reasons, UDP packet walk, TCP stream unwrapping. */
#define HC_LOG_MODULE "gossip"
#include "log/log.h"

#include "gossip/keyring_int.h"
#include "gossip/wire_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	int err;
	const char *name;
} drop_table[HC_GOSSIP_DROP_COUNT] = {
	[HC_GOSSIP_DROP_NONE] = { 0, "none" },
	[HC_GOSSIP_DROP_TRUNCATED] = { ENODATA, "truncated" },
	[HC_GOSSIP_DROP_MALFORMED] = { EBADMSG, "malformed" },
	[HC_GOSSIP_DROP_TOO_DEEP] = { ELOOP, "too_deep" },
	[HC_GOSSIP_DROP_TOO_LARGE] = { EMSGSIZE, "too_large" },
	[HC_GOSSIP_DROP_BAD_CRC] = { EILSEQ, "bad_crc" },
	[HC_GOSSIP_DROP_DECRYPT] = { EKEYREJECTED, "decrypt" },
	[HC_GOSSIP_DROP_UNKNOWN_TYPE] = { ENOMSG, "unknown_type" },
	[HC_GOSSIP_DROP_UNSUPPORTED] = { EPROTONOSUPPORT, "unsupported" },
	[HC_GOSSIP_DROP_UNENCRYPTED] = { EACCES, "unencrypted" },
	[HC_GOSSIP_DROP_NO_MEMORY] = { ENOMEM, "no_memory" },
	[HC_GOSSIP_DROP_OTHER] = { -1, "other" },
	[HC_GOSSIP_DROP_OVER_BUDGET] = { ENOBUFS, "over_budget" },
	[HC_GOSSIP_DROP_BAD_FILTER] = { -2, "bad_filter" }, /* counted where it happens */
};

enum hc_gossip_drop hc_gossip_drop_reason(int err)
{
	for (int i = 0; i < HC_GOSSIP_DROP_COUNT; i++)
		if (drop_table[i].err == -err)
			return (enum hc_gossip_drop)i;
	return HC_GOSSIP_DROP_OTHER;
}

const char *hc_gossip_drop_name(enum hc_gossip_drop reason)
{
	if ((unsigned)reason >= HC_GOSSIP_DROP_COUNT)
		return "other";
	return drop_table[reason].name;
}

struct walk {
	hc_gossip_msg_fn *fn;
	void *arg;
	int first_err;
};

static void note_error(struct walk *wk, int err)
{
	if (!wk->first_err)
		wk->first_err = err;
}

static void walk_message(struct walk *wk, const uint8_t *buf, size_t len, unsigned depth);

static void walk_compound(struct walk *wk, const uint8_t *buf, size_t len, unsigned depth)
{
	struct hc_gossip_bytes parts[HC_GOSSIP_COMPOUND_MAX];
	size_t n;
	int err = hc_gossip_compound_split(buf, len, parts, &n);

	/* Parts before a truncated one still count, as in Go. */
	for (size_t i = 0; i < n; i++)
		walk_message(wk, parts[i].ptr, parts[i].len, depth + 1);
	if (err) {
		hc_log(HC_LOG_DEBUG, "compound message truncated after %zu parts", n);
		note_error(wk, err);
	}
}

static void walk_compressed(struct walk *wk, const uint8_t *buf, size_t len, unsigned depth)
{
	uint8_t *plain;
	size_t plain_len;
	int err = hc_gossip_compress_unwrap(buf, len, HC_GOSSIP_UDP_MAX, &plain, &plain_len);

	if (err) {
		note_error(wk, err);
		return;
	}
	walk_message(wk, plain, plain_len, depth + 1);
	free(plain);
}

static void walk_message(struct walk *wk, const uint8_t *buf, size_t len, unsigned depth)
{
	struct hc_gossip_msg m;
	int err;

	if (depth > HC_GOSSIP_MAX_WRAP_DEPTH) {
		note_error(wk, -ELOOP);
		return;
	}
	if (len == 0) {
		note_error(wk, -ENODATA);
		return;
	}
	switch (buf[0]) {
	case HC_GOSSIP_MSG_COMPOUND:
		walk_compound(wk, buf, len, depth);
		return;
	case HC_GOSSIP_MSG_COMPRESS:
		walk_compressed(wk, buf, len, depth);
		return;
	default:
		break;
	}
	err = hc_gossip_msg_decode(buf, len, &m);
	if (err) {
		hc_log(HC_LOG_DEBUG, "dropping message type %u: %s", buf[0],
		       hc_gossip_drop_name(hc_gossip_drop_reason(err)));
		note_error(wk, err);
		return;
	}
	wk->fn(&m, wk->arg);
}

int hc_gossip_packet_walk(const uint8_t *buf, size_t len, hc_gossip_msg_fn *fn, void *arg)
{
	struct walk wk = { .fn = fn, .arg = arg };
	struct hc_gossip_bytes inner = { buf, len };

	/* hasCrc is only valid outermost: Go strips it before dispatching, and
	 * a checksum mismatch drops the whole datagram. */
	if (len >= 5 && buf[0] == HC_GOSSIP_MSG_HAS_CRC) {
		int err = hc_gossip_crc_unwrap(buf, len, &inner);

		if (err)
			return err;
	}
	walk_message(&wk, inner.ptr, inner.len, 0);
	return wk.first_err;
}

static bool encryption_on(const struct hc_gossip_keyring *kr)
{
	return kr && hc_gossip_keyring_count(kr) > 0;
}

int hc_gossip_datagram_walk(const struct hc_gossip_keyring *kr, const uint8_t *buf, size_t len,
			    hc_gossip_msg_fn *fn, void *arg)
{
	uint8_t *plain;
	size_t plain_len;
	int err;

	if (!encryption_on(kr))
		return hc_gossip_packet_walk(buf, len, fn, arg);
	err = hc_gossip_decrypt_packet(kr, buf, len, &plain, &plain_len);
	if (err)
		return err;
	err = hc_gossip_packet_walk(plain, plain_len, fn, arg);
	free(plain);
	return err;
}

static int copy_out(const uint8_t *buf, size_t len, uint8_t **msg, size_t *msg_len)
{
	*msg = malloc(len ? len : 1);
	if (!*msg)
		return -ENOMEM;
	memcpy(*msg, buf, len);
	*msg_len = len;
	return 0;
}

/* Streams carry one compress wrapper at most; whatever it holds is the message. */
static int stream_decompress(const uint8_t *buf, size_t len, uint8_t **msg, size_t *msg_len)
{
	if (len == 0)
		return -ENODATA;
	if (buf[0] != HC_GOSSIP_MSG_COMPRESS)
		return copy_out(buf, len, msg, msg_len);
	return hc_gossip_compress_unwrap(buf, len, HC_GOSSIP_STREAM_MAX, msg, msg_len);
}

int hc_gossip_stream_open(const struct hc_gossip_keyring *kr, const uint8_t *buf, size_t len,
			  uint8_t **msg, size_t *msg_len)
{
	uint8_t *plain;
	size_t plain_len, consumed;
	int err;

	if (len == 0)
		return -ENODATA;
	/* No mixed mode: with keys only encrypted streams, without only plain. */
	if ((buf[0] == HC_GOSSIP_MSG_ENCRYPT) != encryption_on(kr))
		return -EACCES;
	if (!encryption_on(kr))
		return stream_decompress(buf, len, msg, msg_len);
	err = hc_gossip_decrypt_stream(kr, buf, len, &plain, &plain_len, &consumed);
	if (err)
		return err;
	err = stream_decompress(plain, plain_len, msg, msg_len);
	free(plain);
	return err;
}
