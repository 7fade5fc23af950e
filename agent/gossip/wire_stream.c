/*
 * Where a TCP stream message ends, found incrementally. memberlist writes
 * one message per direction and says nowhere how long it is, except in an
 * encrypted frame: a plaintext message is a type byte and msgpack (a
 * push/pull: a header, its node states, then raw user state; a user
 * message: a header, then raw bytes). Counting the msgpack objects still to
 * come finds the end without a stack: a header adds its children, a str or
 * bin its bytes to skip. The scan resumes where it stopped, so a stream that
 * arrives a byte at a time costs no more than one that arrives whole.
 */
#include "gossip/wire_int.h"

#include <errno.h>

enum stage {
	S_TYPE,	       /* the type byte */
	S_FRAME,       /* an encrypted frame's 4-byte length */
	S_HEADER,      /* a push/pull's or a streamed user message's header object */
	S_BODY,	       /* a push/pull's node states (a user message has none) */
	S_LAST,	       /* the objects or bytes that end the message */
	S_DONE,
};

static uint64_t be(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* One msgpack header at p (avail bytes there): 1 with its length, the
 * objects it contains and the raw bytes after it; 0 if cut short;
 * -EBADMSG for the one byte msgpack never uses. */
static int mp_header(const uint8_t *p, size_t avail, size_t *hlen, uint64_t *children,
		     uint64_t *payload)
{
	static const uint8_t fixext[] = { 1, 2, 4, 8, 16 };
	uint8_t c = p[0];
	size_t lenbytes = 0; /* of a length that follows c */

	*hlen = 1;
	*children = *payload = 0;
	if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
		return 1;
	if (c <= 0x8f) {
		*children = 2u * (c & 0x0f);
		return 1;
	}
	if (c <= 0x9f) {
		*children = c & 0x0f;
		return 1;
	}
	if (c <= 0xbf) {
		*payload = c & 0x1f;
		return 1;
	}
	switch (c) {
	case 0xc1:
		return -EBADMSG;
	case 0xc4: case 0xd9:
		lenbytes = 1;
		break;
	case 0xc5: case 0xda: case 0xdc: case 0xde:
		lenbytes = 2;
		break;
	case 0xc6: case 0xdb: case 0xdd: case 0xdf:
		lenbytes = 4;
		break;
	case 0xc7: case 0xc8: case 0xc9: /* ext: length, then a type byte */
		lenbytes = c == 0xc7 ? 1 : c == 0xc8 ? 2 : 4;
		if (avail < 2 + lenbytes)
			return 0;
		*hlen = 2 + lenbytes;
		*payload = be(p + 1, lenbytes);
		return 1;
	case 0xca: case 0xcb: /* floats */
		*hlen = c == 0xca ? 5 : 9;
		return avail >= *hlen;
	case 0xcc: case 0xcd: case 0xce: case 0xcf: /* uints */
	case 0xd0: case 0xd1: case 0xd2: case 0xd3: /* ints */
		*hlen = 1 + (1u << (c & 3));
		return avail >= *hlen;
	default: /* 0xd4..0xd8: fixext, then a type byte */
		*hlen = 2;
		*payload = fixext[c - 0xd4];
		return avail >= 2;
	}
	if (avail < 1 + lenbytes)
		return 0;
	*hlen = 1 + lenbytes;
	if (c == 0xdc || c == 0xdd)
		*children = be(p + 1, lenbytes);
	else if (c == 0xde || c == 0xdf)
		*children = 2 * be(p + 1, lenbytes);
	else
		*payload = be(p + 1, lenbytes);
	return 1;
}

/* Skips raw bytes and objects as far as buf goes: 1 when both are done. */
static int skip_ahead(struct hc_gossip_stream_scan *sc, const uint8_t *buf, size_t len)
{
	for (;;) {
		size_t hlen;
		uint64_t children, payload;
		int r;

		if (sc->skip) {
			uint64_t take = len - sc->pos < sc->skip ? len - sc->pos : sc->skip;

			sc->pos += take;
			sc->skip -= take;
			if (sc->skip)
				return 0;
		}
		if (!sc->objects)
			return 1;
		if (sc->pos >= len)
			return 0;
		r = mp_header(buf + sc->pos, len - sc->pos, &hlen, &children, &payload);
		sc->examined += len - sc->pos < hlen ? len - sc->pos : hlen;
		if (r <= 0)
			return r;
		/* every object takes a byte: more than the stream can hold is a lie */
		if (children > HC_GOSSIP_STREAM_MAX || payload > HC_GOSSIP_STREAM_MAX ||
		    sc->pos + hlen + payload + sc->objects - 1 + children > HC_GOSSIP_STREAM_MAX)
			return -EMSGSIZE;
		sc->pos += hlen;
		sc->objects += children - 1;
		sc->skip = payload;
	}
}

/* The type byte says what follows. */
static void start(struct hc_gossip_stream_scan *sc, uint8_t type)
{
	sc->pos = sc->mark = 1;
	sc->objects = 1;
	switch (type) {
	case HC_GOSSIP_MSG_ENCRYPT:
		sc->objects = 0;
		sc->stage = S_FRAME;
		break;
	case HC_GOSSIP_MSG_PUSH_PULL:
	case HC_GOSSIP_MSG_USER:
		sc->stage = S_HEADER;
		break;
	case HC_GOSSIP_MSG_COMPRESS:
	case HC_GOSSIP_MSG_PING:
	case HC_GOSSIP_MSG_ACK:
	case HC_GOSSIP_MSG_ERR:
		sc->stage = S_LAST;
		break;
	default: /* no stream message: the decoder says so at once */
		sc->objects = 0;
		sc->stage = S_LAST;
		break;
	}
}

/* After a stage's objects: what comes next. 0 to go on, or -errno. */
static int next_stage(struct hc_gossip_stream_scan *sc, const uint8_t *buf)
{
	uint64_t objects, raw;
	int r;

	switch (sc->stage) {
	case S_HEADER:
		r = hc_gossip_stream_header_decode(buf[0], buf + sc->mark, sc->pos - sc->mark,
						   &objects, &raw);
		if (r < 0)
			return r;
		if (objects > HC_GOSSIP_STREAM_MAX || raw > HC_GOSSIP_STREAM_MAX)
			return -EMSGSIZE;
		/* a push/pull's node states come before its raw user state */
		sc->objects = objects;
		sc->raw = raw;
		sc->stage = S_BODY;
		return 0;
	case S_BODY:
		sc->skip = sc->raw;
		sc->stage = S_LAST;
		return 0;
	default:
		sc->end = sc->pos;
		sc->stage = S_DONE;
		return 0;
	}
}

int hc_gossip_stream_scan(struct hc_gossip_stream_scan *sc, const uint8_t *buf, size_t len)
{
	int r;

	if (sc->err)
		return sc->err;
	while (sc->stage != S_DONE) {
		if (sc->stage == S_TYPE) {
			if (len < 1)
				return 0;
			sc->examined++;
			start(sc, buf[0]);
			continue;
		}
		if (sc->stage == S_FRAME) {
			if (len < 5)
				return 0;
			sc->examined += 4;
			sc->skip = be(buf + 1, 4);
			if (sc->skip > HC_GOSSIP_STREAM_MAX)
				return sc->err = -EMSGSIZE;
			sc->pos = 5;
			sc->stage = S_LAST;
			continue;
		}
		r = skip_ahead(sc, buf, len);
		if (r == 0)
			return 0;
		if (r < 0 || (r = next_stage(sc, buf)) < 0)
			return sc->err = r;
	}
	return 1;
}
