/*
 * libFuzzer: what the proxy reads on a keep-alive connection after the
 * first head: request bodies (chunked, from clients), response heads and
 * bodies (from backends), and the head rewrite that replaces forwarded
 * fields. The first byte picks the case; the rest is the input. Checked:
 *  - nothing is read past len (exact-size copies, under ASan);
 *  - the body framer ends at the same byte with the same verdict however
 *    the input is cut (whole, and in three pieces at two places), and never
 *    says it used more than it was given;
 *  - a response head: OK only with head_len <= len ending in CRLFCRLF and a
 *    status 100..599, *out zeroed otherwise, a prefix answers MORE or the same;
 *  - a rewritten request head parses again, to the same host and framing,
 *    and carries none of the client's forwarded fields.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *copy_of(const uint8_t *data, size_t n)
{
	char *c = malloc(n ? n : 1);

	if (!c)
		abort();
	if (n)
		memcpy(c, data, n);
	return c;
}

/* Feeds data in pieces cut at a and b; the verdict and the end. */
static int feed_cut(enum hc_http_body_kind kind, const uint8_t *data, size_t size, size_t a,
		    size_t b, size_t *end)
{
	size_t cuts[3] = {a, b, size}, pos = 0;
	struct hc_http_body body;

	hc_http_body_init(&body, kind, 1000);
	for (int i = 0; i < 3; i++) {
		size_t k = cuts[i] - pos, used = 0;
		char *piece = copy_of(data + pos, k);
		int r = hc_http_body_feed(&body, piece, k, &used);

		free(piece);
		if (used > k)
			abort();
		if (r == HC_PARSE_OK) {
			*end = pos + used;
			return r;
		}
		if (r == HC_PARSE_INVALID)
			return r;
		if (r != HC_PARSE_MORE || used != k)
			abort();
		pos += k;
	}
	*end = size;
	return HC_PARSE_MORE;
}

static void bodies(const uint8_t *data, size_t size, enum hc_http_body_kind kind)
{
	size_t end0, end1, a = size / 3, b = size - size / 5;
	int r0 = feed_cut(kind, data, size, 0, 0, &end0);
	int r1 = feed_cut(kind, data, size, a, b > a ? b : a, &end1);

	if (r0 != r1 || (r0 != HC_PARSE_INVALID && end0 != end1))
		abort();
	if (kind == HC_BODY_LENGTH && (r0 == HC_PARSE_OK) != (size >= 1000))
		abort();
}

static bool zeroed(const struct hc_http_response *r)
{
	static const struct hc_http_response zero;

	return memcmp(r, &zero, sizeof(zero)) == 0;
}

static void responses(const uint8_t *data, size_t size)
{
	struct hc_http_response whole, part;
	char *buf = copy_of(data, size);
	int r = hc_http_response_parse(buf, size, &whole);
	size_t cut = size / 2;

	if (r == HC_PARSE_OK) {
		if (whole.head_len > size || whole.head_len < 16 || whole.status < 100 ||
		    whole.status > 599 || memcmp(buf + whole.head_len - 4, "\r\n\r\n", 4) != 0)
			abort();
		if (whole.has_length && (whole.chunked || whole.until_close))
			abort();
	} else if (!zeroed(&whole)) {
		abort();
	}
	free(buf);
	buf = copy_of(data, cut);
	{
		int rp = hc_http_response_parse(buf, cut, &part);

		if (rp != HC_PARSE_MORE && rp != r)
			abort();
		if (rp == HC_PARSE_OK && memcmp(&part, &whole, sizeof(part)) != 0)
			abort();
	}
	free(buf);
}

static void rewrites(const uint8_t *data, size_t size)
{
	static const char extra[] = "X-Forwarded-For: 192.0.2.1\r\nForwarded: for=192.0.2.1\r\n";
	struct hc_http_head h, h2;
	char *buf = copy_of(data, size), *out;
	size_t cap, n;

	if (hc_http_head_parse(buf, size, &h) != HC_PARSE_OK) {
		free(buf);
		return;
	}
	cap = h.head_len + sizeof(extra);
	out = malloc(cap);
	if (!out)
		abort();
	n = hc_http_head_rewrite(buf, &h, extra, sizeof(extra) - 1, HC_REWRITE_FORWARDED, out, cap);
	if (n == 0 || n > cap)
		abort();
	{
		char *again = copy_of((const uint8_t *)out, n);

		/* over the limit is fine to refuse; anything else parses alike */
		if (hc_http_head_parse(again, n, &h2) == HC_PARSE_OK) {
			if (h2.head_len != n || strcmp(h2.host, h.host) != 0 ||
			    h2.has_length != h.has_length || h2.content_length != h.content_length ||
			    h2.chunked != h.chunked || !h2.forwarded_fields)
				abort();
			/* exactly our two lines are forwarded fields now */
			if (hc_http_head_rewrite(again, &h2, "", 0, HC_REWRITE_FORWARDED, out, cap) !=
			    n - (sizeof(extra) - 1))
				abort();
		} else if (n <= HC_HTTP_HEAD_MAX) {
			abort();
		}
		free(again);
	}
	free(out);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	switch (data[0] % 4) {
	case 0:
		bodies(data + 1, size - 1, HC_BODY_CHUNKED);
		break;
	case 1:
		bodies(data + 1, size - 1, HC_BODY_LENGTH);
		break;
	case 2:
		responses(data + 1, size - 1);
		break;
	default:
		rewrites(data + 1, size - 1);
		break;
	}
	return 0;
}
