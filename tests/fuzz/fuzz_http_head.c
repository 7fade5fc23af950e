/*
 * libFuzzer: a request head is the first thing anyone who connects to the
 * proxy sends, and its Host decides where the connection goes. Checked:
 *  - nothing is read past len (the input and every prefix tried are in
 *    buffers of their exact size, under ASan);
 *  - on OK: head_len <= len, the request line and the head end in CRLF where
 *    the lengths say, and host is NUL-terminated, lower-case, and a name, an
 *    IPv4 address or a bracketed IPv6 literal (nothing the router or a page
 *    could misread), needing no escaping;
 *  - on anything else *out is zeroed, and TOO_LARGE only from HC_HTTP_HEAD_MAX on;
 *  - a prefix answers MORE or what the whole answers (the same head for OK),
 *    and OK up to head_len: the verdict does not depend on how reads cut it.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse_prefix(const uint8_t *data, size_t n, struct hc_http_head *h)
{
	char *copy = malloc(n ? n : 1);
	int r;

	if (!copy)
		abort();
	if (n)
		memcpy(copy, data, n);
	r = hc_http_head_parse(copy, n, h);
	free(copy);
	return r;
}

static void check_host(const struct hc_http_head *h)
{
	size_t n = strnlen(h->host, sizeof(h->host));
	char esc[HC_HOST_ESCAPED_MAX];

	if (n == sizeof(h->host))
		abort(); /* not terminated */
	if (n == 0) {
		if (h->host_port)
			abort();
		return;
	}
	if (h->host[0] == '[') {
		if (n < 4 || h->host[n - 1] != ']')
			abort();
		for (size_t i = 1; i < n - 1; i++)
			if (!strchr("0123456789abcdef:.", h->host[i]) || !h->host[i])
				abort();
	} else {
		if (h->host[0] == '.' || h->host[n - 1] == '.' || strstr(h->host, ".."))
			abort();
		for (size_t i = 0; i < n; i++)
			if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789-._", h->host[i]))
				abort();
	}
	/* what the 404 page prints is the host itself */
	if (hc_html_escape_host(h->host, esc, sizeof(esc)) != n || strcmp(esc, h->host) != 0)
		abort();
}

static bool zeroed(const struct hc_http_head *h)
{
	static const struct hc_http_head zero;

	return memcmp(h, &zero, sizeof(zero)) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct hc_http_head whole, part;
	size_t cuts[4], ncuts = 0;
	char esc[64];
	int r;

	r = hc_http_head_parse(buf, size, &whole);
	switch (r) {
	case HC_PARSE_OK:
		if (whole.head_len > size || whole.head_len > HC_HTTP_HEAD_MAX ||
		    whole.request_line_len < 2 || whole.request_line_len > whole.head_len - 2 ||
		    memcmp(buf + whole.request_line_len - 2, "\r\n", 2) != 0 ||
		    memcmp(buf + whole.head_len - 4, "\r\n\r\n", 4) != 0 ||
		    memchr(buf, '\n', whole.request_line_len - 1) != NULL)
			abort();
		if (whole.upgrade && whole.http10)
			abort();
		check_host(&whole);
		cuts[ncuts++] = whole.head_len;
		cuts[ncuts++] = whole.head_len - 1;
		break;
	case HC_PARSE_TOO_LARGE:
		if (size < HC_HTTP_HEAD_MAX || !zeroed(&whole))
			abort();
		break;
	case HC_PARSE_MORE:
		if (size >= HC_HTTP_HEAD_MAX || !zeroed(&whole))
			abort();
		break;
	case HC_PARSE_INVALID:
		if (!zeroed(&whole))
			abort();
		break;
	default:
		abort();
	}

	/* some prefixes: as the bytes may arrive */
	if (size) {
		uint32_t x = (uint32_t)size * 2654435761u ^ data[size / 2];

		cuts[ncuts++] = size / 2;
		cuts[ncuts++] = x % size;
	}
	for (size_t i = 0; i < ncuts; i++) {
		int rp = parse_prefix(data, cuts[i], &part);

		if (r == HC_PARSE_OK && cuts[i] >= whole.head_len) {
			if (rp != HC_PARSE_OK || memcmp(&part, &whole, sizeof(part)) != 0)
				abort();
		} else if (rp != HC_PARSE_MORE && rp != r) {
			abort();
		} else if (rp == HC_PARSE_OK && memcmp(&part, &whole, sizeof(part)) != 0) {
			abort();
		}
	}

	/* escaping anything at all stays in its buffer and terminated */
	if (size) {
		char *s = malloc(size + 1);
		size_t cap = data[0] % sizeof(esc), n;

		if (!s)
			abort();
		memcpy(s, data, size);
		s[size] = '\0';
		n = hc_html_escape_host(s, esc, cap);
		if (cap && (n >= cap || esc[n] != '\0' || strlen(esc) != n))
			abort();
		if (!cap && n)
			abort();
		free(s);
	}
	return 0;
}
