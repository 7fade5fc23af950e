/*
 * libFuzzer: the HTTP/2 engine's decoder of chunked HTTP/1.1 response bodies
 * (hc_h2_dechunk, agent/proxy/h2_up.c) against the HTTP/1.1 engine's framer
 * (hc_http_body_feed), which has the say: a workload's response reaches an
 * HTTP/2 client as DATA only through both. The input is a body, cut in two
 * at a place its first byte picks (reads cut bodies anywhere). Checked, as
 * the engine uses them: whatever the framer frames, the decoder takes with
 * no error and ends exactly where the framer says the body ends (so a body
 * valid for HTTP/1.1 clients is never refused to HTTP/2 ones); the data it
 * gives is never longer than what it read; nothing is read past len.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/h2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feeds one piece as h1_body does; false once the body ended or was refused. */
static bool feed(struct hc_http_body *framer, struct hc_h2_dechunk *dc, const char *in,
		 size_t len, struct hc_h2_bq *out)
{
	size_t framed = 0, used = 0;
	int fr = hc_http_body_feed(framer, in, len, &framed), rc;

	if (fr == HC_PARSE_INVALID)
		return false;
	rc = hc_h2_dechunk(dc, in, framed, &used, out);
	if (rc < 0 || used != framed || rc != (fr == HC_PARSE_OK))
		abort();
	return fr != HC_PARSE_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hc_http_body framer;
	struct hc_h2_dechunk dc = {0};
	struct hc_h2_bq out = {0};
	size_t cut;
	char *copy;

	if (size < 1)
		return 0;
	cut = data[0] % size;
	data++, size--;
	copy = malloc(size ? size : 1);
	if (!copy)
		abort();
	memcpy(copy, data, size);
	hc_http_body_init(&framer, HC_BODY_CHUNKED, 0);
	if (feed(&framer, &dc, copy, cut, &out))
		feed(&framer, &dc, copy + cut, size - cut, &out);
	if (out.len > size)
		abort();
	hc_h2_bq_free(&out);
	free(copy);
	return 0;
}
