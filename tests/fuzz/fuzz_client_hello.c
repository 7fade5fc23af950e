/*
 * libFuzzer: a ClientHello is the first thing a TLS client sends the proxy,
 * and its SNI decides where the connection goes. The first input byte picks
 * the framing: 0, the rest is raw bytes off the wire; 1..255, the rest is a
 * ClientHello body that the harness puts behind a handshake header and cuts
 * into records of that many bytes (255: 16384), so that the fuzzer spends
 * its time inside the hello rather than on framing. Checked:
 *  - nothing is read past len (exact-size buffers under ASan);
 *  - on OK: 0 < consumed <= len, the same answer from the first consumed
 *    bytes, and sni NUL-terminated, lower-case, a valid host name needing no
 *    escaping;
 *  - on anything else *out is zeroed; well-framed input is never MORE;
 *  - a prefix answers MORE or what the whole answers (the same for OK).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse_prefix(const uint8_t *buf, size_t n, struct hc_client_hello *h)
{
	uint8_t *copy = malloc(n ? n : 1);
	int r;

	if (!copy)
		abort();
	if (n)
		memcpy(copy, buf, n);
	r = hc_tls_client_hello_parse(copy, n, h);
	free(copy);
	return r;
}

static bool zeroed(const struct hc_client_hello *h)
{
	static const struct hc_client_hello zero;

	return memcmp(h, &zero, sizeof(zero)) == 0;
}

static void check_sni(const struct hc_client_hello *h)
{
	size_t n = strnlen(h->sni, sizeof(h->sni));
	char esc[HC_HOST_ESCAPED_MAX];

	if (n == sizeof(h->sni))
		abort();
	if (n == 0)
		return;
	if (h->sni[0] == '.' || h->sni[n - 1] == '.' || strstr(h->sni, ".."))
		abort();
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789-._", h->sni[i]))
			abort();
	if (hc_html_escape_host(h->sni, esc, sizeof(esc)) != n || strcmp(esc, h->sni) != 0)
		abort();
}

/* The body behind a handshake header, in records of frag bytes. */
static uint8_t *frame(const uint8_t *body, size_t n, size_t frag, size_t *out_len)
{
	size_t mlen = n + 4, records = (mlen + frag - 1) / frag, off = 0;
	uint8_t *msg = malloc(mlen), *out = malloc(mlen + 5 * records), *p = out;

	if (!msg || !out)
		abort();
	msg[0] = 1;
	msg[1] = (uint8_t)(n >> 16);
	msg[2] = (uint8_t)(n >> 8);
	msg[3] = (uint8_t)n;
	if (n)
		memcpy(msg + 4, body, n);
	while (off < mlen) {
		size_t k = mlen - off < frag ? mlen - off : frag;

		*p++ = 0x16;
		*p++ = 0x03;
		*p++ = 0x01;
		*p++ = (uint8_t)(k >> 8);
		*p++ = (uint8_t)k;
		memcpy(p, msg + off, k);
		p += k;
		off += k;
	}
	free(msg);
	*out_len = (size_t)(p - out);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hc_client_hello whole, part;
	size_t len, cuts[4], ncuts = 0;
	uint8_t *buf = NULL;
	bool framed;
	int r;

	if (size < 1)
		return 0;
	framed = data[0] != 0;
	if (framed) {
		/* a 3-byte length: bodies past 16 MiB do not fit the header */
		if (size - 1 >= 1u << 24)
			return 0;
		buf = frame(data + 1, size - 1, data[0] == 255 ? 16384 : data[0], &len);
	} else {
		len = size - 1;
		buf = calloc(1, len ? len : 1);
		if (!buf)
			abort();
		if (len)
			memcpy(buf, data + 1, len);
	}

	r = hc_tls_client_hello_parse(buf, len, &whole);
	switch (r) {
	case HC_PARSE_OK:
		if (whole.consumed == 0 || whole.consumed > len || whole.consumed > HC_TLS_INPUT_MAX)
			abort();
		if (framed && whole.consumed != len)
			abort();
		check_sni(&whole);
		cuts[ncuts++] = whole.consumed;
		cuts[ncuts++] = whole.consumed - 1;
		break;
	case HC_PARSE_MORE:
		if (framed || len >= HC_TLS_INPUT_MAX || !zeroed(&whole))
			abort();
		break;
	case HC_PARSE_INVALID:
	case HC_PARSE_TOO_LARGE:
		if (!zeroed(&whole))
			abort();
		break;
	default:
		abort();
	}
	if (len) {
		cuts[ncuts++] = len / 2;
		cuts[ncuts++] = ((uint32_t)len * 2654435761u ^ buf[len / 3]) % len;
	}
	for (size_t i = 0; i < ncuts; i++) {
		int rp = parse_prefix(buf, cuts[i], &part);

		if (r == HC_PARSE_OK && cuts[i] >= whole.consumed) {
			if (rp != HC_PARSE_OK || memcmp(&part, &whole, sizeof(part)) != 0)
				abort();
		} else if (rp != HC_PARSE_MORE && rp != r) {
			abort();
		} else if (rp == HC_PARSE_OK && memcmp(&part, &whole, sizeof(part)) != 0) {
			abort();
		}
	}
	/* hc_tls_looks_like agrees with the parser on what is not TLS at all */
	if (len && !hc_tls_looks_like(buf, len) && r != HC_PARSE_INVALID)
		abort();
	free(buf);
	return 0;
}
