/*
 * libFuzzer: the frames a microVM's guest sends its launcher (guest/vmproto.h)
 * come from a VM that runs untrusted code. Input: a byte choosing where the
 * stream is cut in two, then the bytes as the launcher reads them. Checked:
 *  - any bytes parse without crashing or reading past the buffer: every
 *    frame lies inside what was given, of a known type, within the size cap;
 *  - the frames are the same whether the bytes arrive whole or in two reads
 *    (the launcher's buffer keeps a partial frame for the next read);
 *  - a frame re-encoded from its header fields is the bytes it came from;
 *  - exit statuses, signals and attach argvs decode within their bounds,
 *    every argv string inside the payload.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FRAMES 4096
#define MAX_ARGV 64

struct seen {
	uint8_t type[MAX_FRAMES];
	uint32_t len[MAX_FRAMES];
	size_t n;
	int bad;
};

static void check_frame(const uint8_t *buf, size_t avail, const struct hc_vmp_frame *f, int used)
{
	uint8_t hdr[HC_VMP_HDR_LEN];
	char *argv[MAX_ARGV];
	int v, n;

	if ((size_t)used > avail || f->len > HC_VMP_MAX_PAYLOAD ||
	    (size_t)used != HC_VMP_HDR_LEN + f->len || f->payload != buf + HC_VMP_HDR_LEN)
		abort();
	hc_vmp_header(hdr, f->type, f->len);
	if (memcmp(hdr, buf, sizeof(hdr)) != 0)
		abort();
	if (hc_vmp_int(f, &v) == 0 && (v < 0 || v > 255 || (f->type == HC_VMP_STOP && v < 1)))
		abort();
	n = hc_vmp_argv(f, argv, MAX_ARGV);
	if (n == 0 || n >= MAX_ARGV || (n > 0 && argv[n] != NULL))
		abort();
	for (int i = 0; i < n; i++) {
		const uint8_t *s = (const uint8_t *)argv[i];

		if (s < f->payload || s + strlen(argv[i]) >= f->payload + f->len)
			abort();
	}
}

/* Parses data as the launcher does: bytes appended to a buffer, whole
 * frames taken from its front, in reads cut at the given offsets. */
static void parse_stream(const uint8_t *data, size_t size, const size_t *cuts, size_t ncuts,
			 struct seen *out)
{
	static uint8_t buf[HC_VMP_HDR_LEN + HC_VMP_MAX_PAYLOAD];
	size_t len = 0, at = 0;

	memset(out, 0, sizeof(*out));
	for (size_t c = 0; c <= ncuts && !out->bad;) {
		size_t end = c < ncuts ? cuts[c] : size;
		size_t take = end - at;
		struct hc_vmp_frame f;
		size_t off = 0;
		int used;

		if (take > sizeof(buf) - len)
			take = sizeof(buf) - len; /* the launcher's read is bounded by its buffer */
		memcpy(buf + len, data + at, take);
		len += take;
		at += take;
		while ((used = hc_vmp_parse(buf + off, len - off, &f)) > 0) {
			check_frame(buf + off, len - off, &f, used);
			if (out->n < MAX_FRAMES) {
				out->type[out->n] = f.type;
				out->len[out->n] = f.len;
			}
			out->n++;
			off += (size_t)used;
		}
		out->bad = used < 0;
		memmove(buf, buf + off, len - off);
		len -= off;
		if (at == end) /* else the buffer was full: the rest comes with the next read */
			c++;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seen whole, split;
	size_t cut;

	if (size < 1)
		return 0;
	cut = size > 1 ? data[0] % size : 0;
	data++;
	size--;
	if (cut > size)
		cut = size;
	parse_stream(data, size, NULL, 0, &whole);
	parse_stream(data, size, &cut, 1, &split);
	if (whole.n != split.n || whole.bad != split.bad)
		abort();
	for (size_t i = 0; i < whole.n && i < MAX_FRAMES; i++)
		if (whole.type[i] != split.type[i] || whole.len[i] != split.len[i])
			abort();
	return 0;
}
