/* LZW exactly as Go's compress/lzw with LSB bit order and 8-bit literals (memberlist's compression). */
#include "gossip/lzw_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LZW_CLEAR 256u
#define LZW_EOF 257u
#define LZW_MAX_WIDTH 12u
#define LZW_TABLE (1u << LZW_MAX_WIDTH)
#define LZW_NONE UINT16_MAX

/* ---- decoder ---- */

struct lzw_bits {
	const uint8_t *in;
	size_t len, pos;
	uint32_t acc;
	unsigned nbits;
};

static int read_code(struct lzw_bits *b, unsigned width, uint16_t *code)
{
	while (b->nbits < width) {
		if (b->pos == b->len)
			return -ENODATA; /* ended before the EOF code */
		b->acc |= (uint32_t)b->in[b->pos++] << b->nbits;
		b->nbits += 8;
	}
	*code = (uint16_t)(b->acc & ((1u << width) - 1));
	b->acc >>= width;
	b->nbits -= width;
	return 0;
}

struct lzw_decoder {
	uint16_t prefix[LZW_TABLE];
	uint8_t suffix[LZW_TABLE];
	uint16_t hi, overflow, last;
	unsigned width;
	struct hc_gossip_mp_writer out;
};

static void decoder_clear(struct lzw_decoder *d)
{
	d->width = 9;
	d->hi = LZW_EOF;
	d->overflow = 1u << d->width;
	d->last = LZW_NONE;
}

/* Writes what code expands to; for the KwKwK case (code == hi) that is the
 * previous string plus its own first byte. Returns the first byte in *first. */
static int emit_string(struct lzw_decoder *d, uint16_t code, uint8_t *first)
{
	uint8_t tmp[LZW_TABLE];
	size_t i = sizeof(tmp);
	uint16_t c = code;

	if (code == d->hi) {
		c = d->last;
		while (c >= LZW_CLEAR)
			c = d->prefix[c];
		tmp[--i] = (uint8_t)c;
		c = d->last;
	}
	/* prefix[c] < c always holds, so this walk ends within the table. */
	while (c >= LZW_CLEAR) {
		tmp[--i] = d->suffix[c];
		c = d->prefix[c];
	}
	tmp[--i] = (uint8_t)c;
	*first = (uint8_t)c;
	hc_gossip_mp_write_raw(&d->out, tmp + i, sizeof(tmp) - i);
	return hc_gossip_mp_writer_error(&d->out);
}

static int decode_code(struct lzw_decoder *d, uint16_t code)
{
	uint8_t first;
	int err;

	if (code > d->hi || (code == d->hi && d->last == LZW_NONE))
		return -EBADMSG; /* refers to an entry not yet defined */
	err = emit_string(d, code, &first);
	if (err)
		return err;
	if (d->last != LZW_NONE) {
		d->suffix[d->hi] = first;
		d->prefix[d->hi] = d->last;
	}
	d->last = code;
	d->hi++;
	if (d->hi >= d->overflow) {
		if (d->width == LZW_MAX_WIDTH) {
			/* Table full: stop defining entries until a clear code. */
			d->last = LZW_NONE;
			d->hi--;
		} else {
			d->width++;
			d->overflow = (uint16_t)(1u << d->width);
		}
	}
	return 0;
}

int hc_gossip_lzw_decompress(const uint8_t *in, size_t len, size_t max_out, uint8_t **out,
			     size_t *out_len)
{
	struct lzw_bits bits = { .in = in, .len = len };
	struct lzw_decoder *d;
	int err;

	if (max_out == 0) /* the writer would read 0 as unbounded */
		return -EINVAL;
	d = malloc(sizeof(*d));
	if (!d)
		return -ENOMEM;
	hc_gossip_mp_writer_init(&d->out, max_out);
	decoder_clear(d);
	for (;;) {
		uint16_t code;

		err = read_code(&bits, d->width, &code);
		if (err)
			goto out;
		if (code == LZW_EOF)
			break;
		if (code == LZW_CLEAR) {
			decoder_clear(d);
			continue;
		}
		err = decode_code(d, code);
		if (err)
			goto out;
	}
	*out = hc_gossip_mp_writer_steal(&d->out, out_len);
	if (!*out) /* empty output: still hand back a freeable buffer */
		*out = malloc(1);
	err = *out ? 0 : -ENOMEM;
out:
	hc_gossip_mp_writer_fini(&d->out);
	free(d);
	return err;
}

/* ---- encoder ---- */

/* Open-addressing hash of (prefix code << 8 | byte) -> code, as large as the
 * code space needs and cleared with the table. */
#define LZW_HASH_BITS 13
#define LZW_HASH_SIZE (1u << LZW_HASH_BITS)

struct lzw_encoder {
	uint32_t keys[LZW_HASH_SIZE]; /* key + 1, 0 = empty slot */
	uint16_t vals[LZW_HASH_SIZE];
	uint32_t hi, overflow;
	unsigned width;
	uint64_t acc;
	unsigned nbits;
	struct hc_gossip_mp_writer *w;
};

static uint32_t hash_slot(uint32_t key)
{
	return (key * 2654435761u) >> (32 - LZW_HASH_BITS);
}

static int lookup(const struct lzw_encoder *e, uint32_t key)
{
	for (uint32_t s = hash_slot(key);; s = (s + 1) & (LZW_HASH_SIZE - 1)) {
		if (e->keys[s] == 0)
			return -1;
		if (e->keys[s] == key + 1)
			return e->vals[s];
	}
}

static void insert(struct lzw_encoder *e, uint32_t key, uint16_t code)
{
	uint32_t s = hash_slot(key);

	while (e->keys[s] != 0)
		s = (s + 1) & (LZW_HASH_SIZE - 1);
	e->keys[s] = key + 1;
	e->vals[s] = code;
}

static void put_code(struct lzw_encoder *e, uint32_t code)
{
	e->acc |= (uint64_t)code << e->nbits;
	e->nbits += e->width;
	while (e->nbits >= 8) {
		hc_gossip_mp_write_u8(e->w, (uint8_t)e->acc);
		e->acc >>= 8;
		e->nbits -= 8;
	}
}

static void encoder_clear(struct lzw_encoder *e)
{
	e->width = 9;
	e->hi = LZW_EOF;
	e->overflow = 1u << e->width;
	memset(e->keys, 0, sizeof(e->keys));
}

/* Advances the next code number after a code was emitted. Returns false when
 * the table was full and got cleared, so the new entry must not be stored. */
static bool next_code(struct lzw_encoder *e)
{
	e->hi++;
	if (e->hi == e->overflow) {
		e->width++;
		e->overflow <<= 1;
	}
	if (e->hi == LZW_TABLE - 1) {
		put_code(e, LZW_CLEAR);
		encoder_clear(e);
		return false;
	}
	return true;
}

int hc_gossip_lzw_compress(const uint8_t *in, size_t len, struct hc_gossip_mp_writer *w)
{
	struct lzw_encoder *e = malloc(sizeof(*e));
	uint32_t code;

	if (!e)
		return -ENOMEM;
	e->w = w;
	e->acc = 0;
	e->nbits = 0;
	encoder_clear(e);
	put_code(e, LZW_CLEAR);
	if (len > 0) {
		code = in[0];
		for (size_t i = 1; i < len; i++) {
			uint32_t key = code << 8 | in[i];
			int found = lookup(e, key);

			if (found >= 0) {
				code = (uint32_t)found;
				continue;
			}
			put_code(e, code);
			code = in[i];
			if (next_code(e))
				insert(e, key, (uint16_t)e->hi);
		}
		put_code(e, code);
		next_code(e);
	}
	put_code(e, LZW_EOF);
	if (e->nbits > 0)
		hc_gossip_mp_write_u8(w, (uint8_t)e->acc);
	free(e);
	return hc_gossip_mp_writer_error(w);
}
