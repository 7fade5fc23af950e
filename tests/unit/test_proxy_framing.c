/* The proxy's per-request framing: request body framing and smuggling
 * refusals in hc_http_head_parse, the forwarded-field rewrite, response
 * heads, and the body framer (Content-Length, chunked, close), fed whole
 * and cut at every byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/parse.h"

static int req(const char *s, struct hc_http_head *h)
{
	size_t n = strlen(s);
	char *copy = malloc(n ? n : 1);
	int r;

	assert_non_null(copy);
	memcpy(copy, s, n);
	r = hc_http_head_parse(copy, n, h);
	free(copy);
	return r;
}

static void expect_req_invalid(const char *s)
{
	struct hc_http_head h;

	if (req(s, &h) != HC_PARSE_INVALID)
		fail_msg("accepted: \"%s\"", s);
}

/* ---- request framing ---- */

static void test_request_framing(void **state)
{
	struct hc_http_head h;

	(void)state;
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &h), HC_PARSE_OK);
	assert_false(h.has_length);
	assert_false(h.chunked);
	assert_false(h.head_method);

	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  42 \r\n\r\n", &h),
			 HC_PARSE_OK);
	assert_true(h.has_length);
	assert_int_equal(h.content_length, 42);

	/* the same number twice is one length */
	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n"
			     "content-length: 007\r\n\r\n", &h),
			 HC_PARSE_OK);
	assert_int_equal(h.content_length, 7);

	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", &h),
			 HC_PARSE_OK);
	assert_true(h.chunked);
	assert_false(h.has_length);

	assert_int_equal(req("HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n", &h), HC_PARSE_OK);
	assert_true(h.head_method);
	assert_int_equal(req("HEADX /x HTTP/1.1\r\nHost: a\r\n\r\n", &h), HC_PARSE_OK);
	assert_false(h.head_method);

	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n"
			     "Content-Length: 3\r\n\r\n", &h),
			 HC_PARSE_OK);
	assert_true(h.expect_continue);

	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n", &h),
			 HC_PARSE_OK);
	assert_true(h.forwarded_fields);
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nforwarded: for=x\r\n\r\n", &h),
			 HC_PARSE_OK);
	assert_true(h.forwarded_fields);
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Host: x\r\n\r\n", &h),
			 HC_PARSE_OK);
	assert_false(h.forwarded_fields);
	assert_false(h.close);
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: TE, Close\r\n\r\n", &h),
			 HC_PARSE_OK);
	assert_true(h.close);
}

static void test_request_smuggling_refused(void **state)
{
	(void)state;
	/* CL.TE and TE.CL, in both orders */
	expect_req_invalid("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
			   "Transfer-Encoding: chunked\r\n\r\n");
	expect_req_invalid("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
			   "Content-Length: 4\r\n\r\n");
	/* differing lengths, lists, signs, junk, overflow */
	expect_req_invalid("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
			   "Content-Length: 5\r\n\r\n");
	expect_req_invalid("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 4\r\n\r\n");
	expect_req_invalid("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\n");
	expect_req_invalid("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4 4\r\n\r\n");
	expect_req_invalid("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n");
	expect_req_invalid("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n");
	expect_req_invalid("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n");
	/* codings other than one plain chunked */
	expect_req_invalid("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
	expect_req_invalid("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n");
	expect_req_invalid("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
			   "Transfer-Encoding: chunked\r\n\r\n");
	expect_req_invalid("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n");
	expect_req_invalid("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n");
	expect_req_invalid("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
	/* a space before the colon, obs-fold */
	expect_req_invalid("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n");
	expect_req_invalid("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n 2\r\n\r\n");
	/* CONNECT is not ours to tunnel */
	expect_req_invalid("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n");
}

static void test_rewrite(void **state)
{
	static const char in[] = "GET /p HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\n"
				 "Accept: */*\r\nforwarded: for=6.6.6.6\r\nX-FORWARDED-PROTO: ftp\r\n"
				 "X-Forwarded-Host: keep\r\n\r\nBODY";
	static const char extra[] = "X-Forwarded-For: 1.2.3.4\r\n";
	static const char want[] = "GET /p HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\nHost: a\r\n"
				   "Accept: */*\r\nX-Forwarded-Host: keep\r\n\r\n";
	struct hc_http_head h;
	char out[512];
	size_t n;

	(void)state;
	assert_int_equal(req(in, &h), HC_PARSE_OK);
	n = hc_http_head_rewrite(in, &h, extra, strlen(extra), HC_REWRITE_FORWARDED, out,
				 sizeof(out));
	assert_int_equal(n, strlen(want));
	assert_memory_equal(out, want, n);
	/* too small: 0, never past cap */
	for (size_t cap = 0; cap < strlen(want); cap++)
		assert_int_equal(
			hc_http_head_rewrite(in, &h, extra, strlen(extra), HC_REWRITE_FORWARDED, out, cap),
			0);
	/* the result is a head of its own */
	{
		struct hc_http_head h2;
		char *copy = malloc(n);

		assert_non_null(copy);
		memcpy(copy, out, n);
		assert_int_equal(hc_http_head_parse(copy, n, &h2), HC_PARSE_OK);
		assert_int_equal(h2.head_len, n);
		free(copy);
	}
}

/* Connection: close is dropped only where it is the field's one token
 * (the backend connection stays open for reuse); the rest passes. */
static void test_rewrite_close(void **state)
{
	static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection:  Close \r\n"
				 "X-Forwarded-For: 6.6.6.6\r\nConnection: keep-alive\r\n\r\n";
	static const char both[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n";
	static const char close_only[] = "GET / HTTP/1.1\r\nHost: a\r\n"
					 "X-Forwarded-For: 6.6.6.6\r\nConnection: keep-alive\r\n\r\n";
	static const char mixed[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close, x\r\n\r\n";
	struct hc_http_head h;
	char out[512];
	size_t n;

	(void)state;
	assert_int_equal(req(in, &h), HC_PARSE_OK);
	assert_true(h.close);
	assert_false(h.close_mixed);
	n = hc_http_head_rewrite(in, &h, "", 0, HC_REWRITE_FORWARDED | HC_REWRITE_CLOSE, out,
				 sizeof(out));
	assert_int_equal(n, strlen(both));
	assert_memory_equal(out, both, n);
	n = hc_http_head_rewrite(in, &h, "", 0, HC_REWRITE_CLOSE, out, sizeof(out));
	assert_int_equal(n, strlen(close_only));
	assert_memory_equal(out, close_only, n);
	/* another token beside close: the field stays (and the head says so) */
	assert_int_equal(req(mixed, &h), HC_PARSE_OK);
	assert_true(h.close && h.close_mixed);
	n = hc_http_head_rewrite(mixed, &h, "", 0, HC_REWRITE_CLOSE, out, sizeof(out));
	assert_int_equal(n, strlen(mixed));
	assert_memory_equal(out, mixed, n);
}

/* ---- responses ---- */

static int resp(const char *s, struct hc_http_response *r)
{
	size_t n = strlen(s);
	char *copy = malloc(n ? n : 1);
	int rc;

	assert_non_null(copy);
	memcpy(copy, s, n);
	rc = hc_http_response_parse(copy, n, r);
	free(copy);
	return rc;
}

static void test_response_heads(void **state)
{
	struct hc_http_response r;
	uint64_t len = 0;

	(void)state;
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", &r), HC_PARSE_OK);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.head_len, strlen("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"));
	assert_int_equal(hc_http_response_body(&r, false, &len), HC_BODY_LENGTH);
	assert_int_equal(len, 5);
	assert_int_equal(hc_http_response_body(&r, true, &len), HC_BODY_NONE);

	assert_int_equal(resp("HTTP/1.1 200\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &r),
			 HC_PARSE_OK);
	assert_int_equal(hc_http_response_body(&r, false, &len), HC_BODY_CHUNKED);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", &r),
			 HC_PARSE_OK);
	assert_int_equal(hc_http_response_body(&r, false, &len), HC_BODY_CLOSE);
	assert_false(r.close);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nconnection: close\r\nContent-Length: 0\r\n\r\n",
			      &r),
			 HC_PARSE_OK);
	assert_true(r.close);
	assert_int_equal(resp("HTTP/1.0 200 OK\r\nServer: x\r\n\r\n", &r), HC_PARSE_OK);
	assert_true(r.http10);
	assert_int_equal(hc_http_response_body(&r, false, &len), HC_BODY_CLOSE);
	assert_int_equal(resp("HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n", &r),
			 HC_PARSE_OK);
	assert_int_equal(hc_http_response_body(&r, false, &len), HC_BODY_NONE);
	assert_int_equal(resp("HTTP/1.1 304 Not Modified\r\n\r\n", &r), HC_PARSE_OK);
	assert_int_equal(hc_http_response_body(&r, false, &len), HC_BODY_NONE);
	assert_int_equal(resp("HTTP/1.1 100 Continue\r\n\r\n", &r), HC_PARSE_OK);
	assert_int_equal(hc_http_response_body(&r, false, &len), HC_BODY_NONE);
	assert_int_equal(resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", &r),
			 HC_PARSE_OK);
	assert_int_equal(r.status, 101);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &r), HC_PARSE_OK);
	assert_int_equal(hc_http_response_body(&r, false, &len), HC_BODY_NONE);

	assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", &r), HC_PARSE_MORE);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: "
			      "chunked\r\n\r\n", &r),
			 HC_PARSE_INVALID);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
			      &r),
			 HC_PARSE_INVALID);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", &r), HC_PARSE_INVALID);
	assert_int_equal(resp("HTTP/1.1 200 OK\nX: a\r\n\r\n", &r), HC_PARSE_INVALID);
	assert_int_equal(resp("HTTP/2 200 OK\r\n\r\n", &r), HC_PARSE_INVALID);
	assert_int_equal(resp("HTTP/1.1 99 OK\r\n\r\n", &r), HC_PARSE_INVALID);
	assert_int_equal(resp("HTTP/1.1 2000 OK\r\n\r\n", &r), HC_PARSE_INVALID);
	assert_int_equal(r.status, 0);

	{
		size_t n = HC_HTTP_RESPONSE_HEAD_MAX + 10;
		char *big = malloc(n);

		assert_non_null(big);
		memset(big, 'a', n);
		memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
		assert_int_equal(hc_http_response_parse(big, n, &r), HC_PARSE_TOO_LARGE);
		assert_int_equal(hc_http_response_parse(big, 100, &r), HC_PARSE_MORE);
		free(big);
	}
}

/* ---- bodies ---- */

/* Feeds s in pieces of step bytes (0: whole); returns the verdict and where
 * the body ended (or the bytes taken before MORE). */
static int feed(enum hc_http_body_kind kind, uint64_t length, const char *s, size_t n,
		size_t step, size_t *end)
{
	struct hc_http_body b;
	size_t pos = 0;

	hc_http_body_init(&b, kind, length);
	for (;;) {
		size_t k = step && n - pos > step ? step : n - pos, used = 0;
		char *copy = malloc(k ? k : 1);
		int r;

		assert_non_null(copy);
		memcpy(copy, s + pos, k);
		r = hc_http_body_feed(&b, copy, k, &used);
		free(copy);
		if (r == HC_PARSE_OK) {
			*end = pos + used;
			return r;
		}
		if (r == HC_PARSE_INVALID)
			return r;
		assert_int_equal(used, k);
		pos += k;
		if (pos == n) {
			*end = pos;
			return HC_PARSE_MORE;
		}
	}
}

/* The same verdict and end whatever the pieces. */
static void expect_body(enum hc_http_body_kind kind, uint64_t length, const char *s, int want,
			size_t want_end)
{
	size_t n = strlen(s);

	for (size_t step = 0; step <= n; step++) {
		size_t end = (size_t)-1;
		int r = feed(kind, length, s, n, step, &end);

		if (r != want || (want != HC_PARSE_INVALID && end != want_end))
			fail_msg("\"%s\" in steps of %zu: %d at %zu, want %d at %zu", s, step, r, end,
				 want, want_end);
	}
}

static void test_body_length_and_close(void **state)
{
	(void)state;
	expect_body(HC_BODY_LENGTH, 5, "helloGET", HC_PARSE_OK, 5);
	expect_body(HC_BODY_LENGTH, 5, "hel", HC_PARSE_MORE, 3);
	expect_body(HC_BODY_LENGTH, 0, "GET", HC_PARSE_OK, 0);
	expect_body(HC_BODY_NONE, 0, "GET", HC_PARSE_OK, 0);
	expect_body(HC_BODY_CLOSE, 0, "anything at all", HC_PARSE_MORE, 15);
}

static void test_body_chunked(void **state)
{
	static const char *const ok[] = {
		"5\r\nhello\r\n0\r\n\r\n",
		"5;name=value\r\nhello\r\n0\r\n\r\n",
		"5 ;a\r\nhello\r\n0;last\r\n\r\n",
		"A\r\n0123456789\r\n1\r\nx\r\n00\r\n\r\n",
		"0\r\nTrailer-A: 1\r\nB:\r\n\r\n",
		"0000000000000010\r\n0123456789abcdef\r\n0\r\n\r\n",
	};
	static const char *const bad[] = {
		"\r\n",			 /* no size */
		"x\r\n",		 /* not hex */
		"-5\r\nhello\r\n",	 /* a sign */
		"5\nhello\r\n0\r\n\r\n", /* bare LF */
		"5\r\nhello\n0\r\n\r\n",
		"5\r\nhelloX\r\n",	       /* data longer than its size */
		"5 \r\nhello\r\n0\r\n\r\n",    /* whitespace with no extension */
		"10000000000000000\r\n",       /* 17 digits */
		"0\r\n: no name\r\n\r\n",      /* a trailer without a name */
		"0\r\nBad Name: x\r\n\r\n",    /* or with a space */
		"0\r\nA: x\n\r\n",	       /* bare LF in the trailers */
		"5;a\x01\r\nhello\r\n0\r\n\r\n", /* a control in an extension */
		"0\r\n\r\r",
	};
	char big[HC_HTTP_CHUNK_EXT_MAX + 16];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char with_next[128];

		snprintf(with_next, sizeof(with_next), "%sGET / HTTP/1.1\r\n", ok[i]);
		expect_body(HC_BODY_CHUNKED, 0, with_next, HC_PARSE_OK, strlen(ok[i]));
		/* every proper prefix wants more */
		for (size_t k = 0; k < strlen(ok[i]); k++) {
			size_t end;

			assert_int_equal(feed(HC_BODY_CHUNKED, 0, ok[i], k, 0, &end), HC_PARSE_MORE);
		}
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_body(HC_BODY_CHUNKED, 0, bad[i], HC_PARSE_INVALID, 0);

	/* an extension over the bound */
	memset(big, 'a', sizeof(big));
	memcpy(big, "1;", 2);
	big[sizeof(big) - 1] = '\0';
	expect_body(HC_BODY_CHUNKED, 0, big, HC_PARSE_INVALID, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_framing),
		cmocka_unit_test(test_request_smuggling_refused),
		cmocka_unit_test(test_rewrite),
		cmocka_unit_test(test_rewrite_close),
		cmocka_unit_test(test_response_heads),
		cmocka_unit_test(test_body_length_and_close),
		cmocka_unit_test(test_body_chunked),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
