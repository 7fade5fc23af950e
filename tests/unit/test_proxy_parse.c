/* The proxy's parsers: HTTP/1.x request heads (Host routing) and TLS
 * ClientHellos (SNI routing), fed whole, in every prefix and malformed in
 * every way we could think of; ClientHellos built here, plus one captured
 * from openssl s_client. */
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

/* ---- HTTP helpers ---- */

/* Parses the first len bytes of s from an exact-size copy, so that ASan
 * sees any read past len. */
static int head_n(const char *s, size_t len, struct hc_http_head *h)
{
	char *copy = malloc(len ? len : 1);
	int r;

	assert_non_null(copy);
	memcpy(copy, s, len);
	r = hc_http_head_parse(copy, len, h);
	free(copy);
	return r;
}

static int head(const char *s, struct hc_http_head *h)
{
	return head_n(s, strlen(s), h);
}

static void expect_invalid(const char *s)
{
	struct hc_http_head h;

	if (head(s, &h) != HC_PARSE_INVALID)
		fail_msg("accepted: \"%s\"", s);
	assert_string_equal(h.host, "");
	assert_int_equal(h.head_len, 0);
}

/* The head's Host header is "Host: <value>"; what comes out of it. */
static int with_host(const char *value, struct hc_http_head *h)
{
	char req[1024];

	snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\n\r\n", value);
	return head(req, h);
}

/* Every proper prefix is MORE, the whole OK with the same result as at once. */
static void expect_more_then_ok(const char *s)
{
	struct hc_http_head whole, part;
	size_t len = strlen(s);

	assert_int_equal(head(s, &whole), HC_PARSE_OK);
	for (size_t k = 0; k < whole.head_len; k++)
		if (head_n(s, k, &part) != HC_PARSE_MORE)
			fail_msg("prefix %zu of \"%s\" is not MORE", k, s);
	for (size_t k = whole.head_len; k <= len; k++) {
		assert_int_equal(head_n(s, k, &part), HC_PARSE_OK);
		assert_memory_equal(&part, &whole, sizeof(part));
	}
}

/* ---- HTTP ---- */

static void test_http_simple_get(void **state)
{
	static const char req[] = "GET /index.html?q=1 HTTP/1.1\r\n"
				  "Host: example.com\r\n"
				  "User-Agent: curl/8.0\r\n"
				  "Accept: */*\r\n"
				  "\r\n";
	char more[sizeof(req) + 32];
	struct hc_http_head h;

	(void)state;
	assert_int_equal(head(req, &h), HC_PARSE_OK);
	assert_int_equal(h.head_len, strlen(req));
	assert_int_equal(h.request_line_len, strlen("GET /index.html?q=1 HTTP/1.1\r\n"));
	assert_string_equal(h.host, "example.com");
	assert_int_equal(h.host_port, 0);
	assert_false(h.http10);
	assert_false(h.upgrade);

	/* a body or a pipelined request after the head is not looked at */
	snprintf(more, sizeof(more), "%s\x01\x02garbage\n\n", req);
	assert_int_equal(head(more, &h), HC_PARSE_OK);
	assert_int_equal(h.head_len, strlen(req));
}

static void test_http_host_forms(void **state)
{
	struct hc_http_head h;
	char name[300];

	(void)state;
	assert_int_equal(with_host("example.com:8080", &h), HC_PARSE_OK);
	assert_string_equal(h.host, "example.com");
	assert_int_equal(h.host_port, 8080);

	assert_int_equal(with_host("ExAmple.COM", &h), HC_PARSE_OK);
	assert_string_equal(h.host, "example.com");
	assert_int_equal(h.host_port, 0);

	/* one trailing dot is the same name */
	assert_int_equal(with_host("Example.com.:443", &h), HC_PARSE_OK);
	assert_string_equal(h.host, "example.com");
	assert_int_equal(h.host_port, 443);

	/* OWS around the value */
	assert_int_equal(head("GET / HTTP/1.1\r\nHost:\t a-b_c.example \t\r\n\r\n", &h),
			 HC_PARSE_OK);
	assert_string_equal(h.host, "a-b_c.example");
	assert_int_equal(head("GET / HTTP/1.1\r\nhOsT:x\r\n\r\n", &h), HC_PARSE_OK);
	assert_string_equal(h.host, "x");

	assert_int_equal(with_host("192.0.2.7:80", &h), HC_PARSE_OK);
	assert_string_equal(h.host, "192.0.2.7");
	assert_int_equal(h.host_port, 80);

	assert_int_equal(with_host("example.com:65535", &h), HC_PARSE_OK);
	assert_int_equal(h.host_port, 65535);
	assert_int_equal(with_host("example.com:00080", &h), HC_PARSE_OK);
	assert_int_equal(h.host_port, 80);
	assert_int_equal(with_host("example.com:1", &h), HC_PARSE_OK);
	assert_int_equal(h.host_port, 1);

	/* an empty Host is allowed (a target without authority): no host */
	assert_int_equal(head("GET / HTTP/1.1\r\nHost:\r\n\r\n", &h), HC_PARSE_OK);
	assert_string_equal(h.host, "");
	assert_int_equal(head("GET / HTTP/1.1\r\nHost:   \r\n\r\n", &h), HC_PARSE_OK);
	assert_string_equal(h.host, "");

	/* 253 bytes is the longest name, 254 too long (with a dot: fine) */
	memset(name, 'a', 253);
	for (int i = 63; i < 253; i += 64)
		name[i] = '.';
	name[253] = '\0';
	assert_int_equal(with_host(name, &h), HC_PARSE_OK);
	assert_int_equal(strlen(h.host), 253);
	name[253] = '.';
	name[254] = '\0';
	assert_int_equal(with_host(name, &h), HC_PARSE_OK);
	assert_int_equal(strlen(h.host), 253);
	name[253] = 'a';
	assert_int_equal(with_host(name, &h), HC_PARSE_INVALID);
}

static void test_http_bad_hosts(void **state)
{
	static const char *const bad[] = {
		"exa mple.com", "a/b",	      "a@b",	 "user@example.com", "a..b",
		".a",		"a..",	      ".",	 "..",		     "a,b",
		"\xc3\xa9.example", "a%2eb", "a;b",	 "a\"b",	     "example.com:",
		"example.com:0", "example.com:65536", "example.com:99999",
		"example.com:123456", "example.com:abc", "example.com:8a", "example.com:-1",
		"example.com: 80", "example.com:+80", "a:1:2", ":80",
		"[::1",		"::1",	      "[]",	 "[:::1]",	     "[1:2:3:4:5:6:7:8:9]",
		"[1:2:3:4:5:6:7]", "[fe80::1%25eth0]", "[::1]x", "[::1]:", "[::1]:0",
		"[::1]:65536",	"[v1.fe]",    "[12345::1]", "[1::2::3]",     "[::1.2.3.256]",
		"[::01.2.3.4]", "[::1.2.3]", "[::1.2.3.4.5]", "[1:2:3:4:5:6:7:1.2.3.4]", "[::g]",	     "[1:]",
		"[:1]",
	};
	struct hc_http_head h;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (with_host(bad[i], &h) != HC_PARSE_INVALID)
			fail_msg("Host \"%s\" accepted as \"%s\"", bad[i], h.host);
}

static void test_http_ipv6_host(void **state)
{
	static const struct {
		const char *in, *host;
		uint16_t port;
	} ok[] = {
		{ "[::1]", "[::1]", 0 },
		{ "[::1]:8080", "[::1]", 8080 },
		{ "[2001:DB8::1]:8443", "[2001:db8::1]", 8443 },
		{ "[::]", "[::]", 0 },
		{ "[1:2:3:4:5:6:7:8]", "[1:2:3:4:5:6:7:8]", 0 },
		{ "[1:2:3:4:5:6:7::]", "[1:2:3:4:5:6:7::]", 0 },
		{ "[::FFFF:192.0.2.1]:1", "[::ffff:192.0.2.1]", 1 },
		{ "[1:2:3:4:5:6:192.0.2.1]", "[1:2:3:4:5:6:192.0.2.1]", 0 },
		{ "[fe80::abcd:ef01]", "[fe80::abcd:ef01]", 0 },
	};
	struct hc_http_head h;

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (with_host(ok[i].in, &h) != HC_PARSE_OK)
			fail_msg("Host \"%s\" refused", ok[i].in);
		assert_string_equal(h.host, ok[i].host);
		assert_int_equal(h.host_port, ok[i].port);
	}
}

static void test_http_absolute_form(void **state)
{
	struct hc_http_head h;

	(void)state;
	/* RFC 9112 3.2.2: the target's authority wins over Host */
	assert_int_equal(head("GET http://Other.Example:81/x?y HTTP/1.1\r\n"
			      "Host: example.com\r\n\r\n",
			      &h),
			 HC_PARSE_OK);
	assert_string_equal(h.host, "other.example");
	assert_int_equal(h.host_port, 81);
	assert_int_equal(h.request_line_len, strlen("GET http://Other.Example:81/x?y HTTP/1.1\r\n"));

	/* whichever order; no port in the target: none, even if Host has one */
	assert_int_equal(head("GET HTTPS://a.example HTTP/1.1\r\nHost: b.example:99\r\n\r\n", &h),
			 HC_PARSE_OK);
	assert_string_equal(h.host, "a.example");
	assert_int_equal(h.host_port, 0);
	assert_int_equal(head("GET http://[::1]:8080?x HTTP/1.1\r\nHost: a\r\n\r\n", &h),
			 HC_PARSE_OK);
	assert_string_equal(h.host, "[::1]");
	assert_int_equal(h.host_port, 8080);
	assert_int_equal(head("GET http://a.example#frag HTTP/1.1\r\nHost: a\r\n\r\n", &h),
			 HC_PARSE_OK);
	assert_string_equal(h.host, "a.example");

	/* HTTP/1.0 needs no Host, the target says it */
	assert_int_equal(head("GET http://a.example/ HTTP/1.0\r\n\r\n", &h), HC_PARSE_OK);
	assert_string_equal(h.host, "a.example");
	assert_true(h.http10);

	/* HTTP/1.1 still needs exactly one valid Host (RFC 9112 3.2) */
	expect_invalid("GET http://a.example/ HTTP/1.1\r\n\r\n");
	expect_invalid("GET http://a.example/ HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n");
	expect_invalid("GET http://a.example/ HTTP/1.1\r\nHost: a b\r\n\r\n");

	expect_invalid("GET http://user:pw@a.example/ HTTP/1.1\r\nHost: a\r\n\r\n");
	expect_invalid("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n");
	expect_invalid("GET http:// HTTP/1.1\r\nHost: a\r\n\r\n");
	expect_invalid("GET http://a.example:0/ HTTP/1.1\r\nHost: a\r\n\r\n");
	expect_invalid("GET http://a%2eexample/ HTTP/1.1\r\nHost: a\r\n\r\n");
	expect_invalid("GET ftp://a.example/ HTTP/1.1\r\nHost: a\r\n\r\n");
	expect_invalid("GET http:/a.example/ HTTP/1.1\r\nHost: a\r\n\r\n");
	expect_invalid("GET a.example/ HTTP/1.1\r\nHost: a\r\n\r\n");
	/* authority-form: we do not tunnel */
	expect_invalid("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n");
}

static void test_http_versions(void **state)
{
	struct hc_http_head h;

	(void)state;
	/* HTTP/1.0 without Host: OK, no host */
	assert_int_equal(head("GET / HTTP/1.0\r\n\r\n", &h), HC_PARSE_OK);
	assert_true(h.http10);
	assert_string_equal(h.host, "");
	assert_int_equal(h.head_len, 18);
	assert_int_equal(head("GET / HTTP/1.0\r\nHost: a.example\r\n\r\n", &h), HC_PARSE_OK);
	assert_true(h.http10);
	assert_string_equal(h.host, "a.example");
	/* later 1.x minors are served as 1.1 (RFC 9110 6.2) */
	assert_int_equal(head("GET / HTTP/1.9\r\nHost: a\r\n\r\n", &h), HC_PARSE_OK);
	assert_false(h.http10);

	expect_invalid("GET / HTTP/1.1\r\n\r\n"); /* 1.1 without Host */
	expect_invalid("GET / HTTP/1.9\r\n\r\n");
	expect_invalid("GET / HTTP/2.0\r\nHost: a\r\n\r\n");
	expect_invalid("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
	expect_invalid("GET / HTTP/1.10\r\nHost: a\r\n\r\n");
	expect_invalid("GET / HTTP/1.\r\nHost: a\r\n\r\n");
	expect_invalid("GET / HTTP/1\r\nHost: a\r\n\r\n");
	expect_invalid("GET / HTTP/1.x\r\nHost: a\r\n\r\n");
	expect_invalid("GET / http/1.1\r\nHost: a\r\n\r\n");
	expect_invalid("GET / HTTP/1.1 \r\nHost: a\r\n\r\n");
	expect_invalid("GET /\r\n\r\n"); /* HTTP/0.9 */
	expect_invalid("GET / FOO/1.1\r\nHost: a\r\n\r\n");
}

static void test_http_request_line(void **state)
{
	struct hc_http_head h;
	char req[9000];

	(void)state;
	assert_int_equal(head("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &h), HC_PARSE_OK);
	assert_int_equal(h.request_line_len, 20);
	assert_int_equal(head("M-SEARCH! /\xc3\xa9t\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", &h),
			 HC_PARSE_OK);

	expect_invalid("GET * HTTP/1.1\r\nHost: a\r\n\r\n");
	expect_invalid("G(T / HTTP/1.1\r\nHost: a\r\n\r\n");
	expect_invalid("GE@ / HTTP/1.1\r\nHost: a\r\n\r\n");
	expect_invalid("G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n");
	expect_invalid(" GET / HTTP/1.1\r\nHost: a\r\n\r\n");
	expect_invalid("GET  / HTTP/1.1\r\nHost: a\r\n\r\n");
	expect_invalid("GET /  HTTP/1.1\r\nHost: a\r\n\r\n");
	expect_invalid("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n");
	expect_invalid("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n");
	expect_invalid("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n");
	expect_invalid("GET / HTTP/1.1\r\r\nHost: a\r\n\r\n");
	expect_invalid("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"); /* no empty line first */
	expect_invalid("\r\n\r\n");
	expect_invalid("/ HTTP/1.1\r\nHost: a\r\n\r\n");

	/* request_line_len: where the proxy inserts its headers */
	memset(req, 0, sizeof(req));
	memcpy(req, "POST /", 6);
	memset(req + 6, 'p', 8000);
	strcat(req, " HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(head(req, &h), HC_PARSE_OK);
	assert_int_equal(h.request_line_len, 6 + 8000 + 11);
	assert_int_equal(h.head_len, strlen(req));
}

static void test_http_fields(void **state)
{
	struct hc_http_head h;

	(void)state;
	/* RFC 9112 3.2: two Host fields are a 400, equal or not */
	expect_invalid("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n");
	expect_invalid("GET / HTTP/1.1\r\nHost: a\r\nX: y\r\nhost: b\r\n\r\n");
	expect_invalid("GET / HTTP/1.1\r\nHost:\r\nHOST: b\r\n\r\n");
	expect_invalid("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n");
	/* whitespace before the colon (RFC 9112 5.1) */
	expect_invalid("GET / HTTP/1.1\r\nHost : a\r\n\r\n");
	expect_invalid("GET / HTTP/1.1\r\nHost: a\r\nX-Foo\t: b\r\n\r\n");
	/* obs-fold, and whitespace before the first field */
	expect_invalid("GET / HTTP/1.1\r\nHost: a\r\nX-Foo: b\r\n c\r\n\r\n");
	expect_invalid("GET / HTTP/1.1\r\nHost: a\r\nX-Foo: b\r\n\tc\r\n\r\n");
	expect_invalid("GET / HTTP/1.1\r\n Host: a\r\n\r\n");
	expect_invalid("GET / HTTP/1.1\r\nHost: a\r\n \r\n\r\n");
	/* a Host folded onto a second line would route elsewhere */
	expect_invalid("GET / HTTP/1.1\r\nX: y\r\n Host: evil\r\nHost: a\r\n\r\n");
	/* names are tokens, there is a colon, the value has no controls */
	expect_invalid("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n");
	expect_invalid("GET / HTTP/1.1\r\nHost: a\r\n: empty-name\r\n\r\n");
	expect_invalid("GET / HTTP/1.1\r\nHost: a\r\nX(y): z\r\n\r\n");
	expect_invalid("GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: z\r\n\r\n");
	expect_invalid("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n");
	expect_invalid("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n");
	expect_invalid("GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n");
	/* bare LF anywhere */
	expect_invalid("GET / HTTP/1.1\nHost: a\n\n");
	expect_invalid("GET / HTTP/1.1\r\nHost: a\n\r\n");
	expect_invalid("GET / HTTP/1.1\r\nHost: a\r\n\n");
	/* NUL in a value (the string helper cannot carry it) */
	{
		static const char nul[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";

		assert_int_equal(head_n(nul, sizeof(nul) - 1, &h), HC_PARSE_INVALID);
	}

	/* values may hold obs-text, quotes, commas; empty values are fine */
	assert_int_equal(head("GET / HTTP/1.1\r\nHost: a\r\nX: \"q\", \xff\xfe\r\nY:\r\n"
			      "!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n",
			      &h),
			 HC_PARSE_OK);
}

static void test_http_connection_upgrade(void **state)
{
	struct hc_http_head h;

	(void)state;
	assert_int_equal(head("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", &h),
			 HC_PARSE_OK);
	assert_false(h.upgrade);

	assert_int_equal(head("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
			      "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
			      &h),
			 HC_PARSE_OK);
	assert_true(h.upgrade);
	/* a list, any case, any order, over several fields */
	assert_int_equal(head("GET /ws HTTP/1.1\r\nupgrade: websocket\r\nHost: a\r\n"
			      "Connection: keep-alive\r\nConnection: ,, foo , UPGRADE\t, bar\r\n\r\n",
			      &h),
			 HC_PARSE_OK);
	assert_true(h.upgrade);
	assert_int_equal(head("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
			      "Upgrade: websocket\r\n\r\n",
			      &h),
			 HC_PARSE_OK);
	assert_true(h.upgrade);

	/* one without the other does not switch protocols */
	assert_int_equal(head("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n", &h),
			 HC_PARSE_OK);
	assert_false(h.upgrade);
	assert_int_equal(head("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", &h),
			 HC_PARSE_OK);
	assert_false(h.upgrade);
	assert_int_equal(head("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade:\r\n\r\n",
			      &h),
			 HC_PARSE_OK);
	assert_false(h.upgrade);
	/* not the token itself */
	assert_int_equal(head("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrades, x-upgrade\r\n"
			      "Upgrade: websocket\r\n\r\n",
			      &h),
			 HC_PARSE_OK);
	assert_false(h.upgrade);
	/* "Connection-Foo: upgrade" is another field */
	assert_int_equal(head("GET / HTTP/1.1\r\nHost: a\r\nConnection-Foo: upgrade\r\n"
			      "Upgrade: websocket\r\n\r\n",
			      &h),
			 HC_PARSE_OK);
	assert_false(h.upgrade);
	/* RFC 9110 7.8: an Upgrade in an HTTP/1.0 request is ignored */
	assert_int_equal(head("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
			      &h),
			 HC_PARSE_OK);
	assert_false(h.upgrade);
}

static void test_http_every_prefix(void **state)
{
	static const char *const heads[] = {
		"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"GET http://[2001:db8::7]:8080/p?q HTTP/1.1\r\nHost: x:1\r\nA: b\r\n\r\nbody",
		"GET /chat HTTP/1.1\r\nHost: Server.Example.com\r\nUpgrade: websocket\r\n"
		"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		"Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
		"Sec-WebSocket-Version: 13\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost:\r\n\r\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++)
		expect_more_then_ok(heads[i]);
}

/* A client speaking something else is refused on its first bytes. */
static void test_http_early_refusal(void **state)
{
	static const char *const partial[] = {
		"\x16\x03\x01",	  "G\x01",	  "GET /\t",	 "GET / h",	"GET / HTTP/2",
		"GET / HTTP/1.1x", "GET / HTTP/1.1\r\n Ho", "GET / HTTP/1.1\r\nHo st",
		"GET / HTTP/1.1\r\nHost: a\x01", "GET / HTTP/1.1\n", "GET / HTTP/1.1\r\nHost: a\rb",
		"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",	  "GET\r",
		/* a CR can only end the line: what is before it is judged whole */
		"GET / HTTP/1.\r", "GET / HTTP/1.1\r\nX\r", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r",
	};
	static const char *const fine[] = {
		"", "G", "GET", "GET ", "GET /", "GET / ", "GET / H", "GET / HTTP/1.", "GET / HTTP/1.1",
		"GET / HTTP/1.1\r", "GET / HTTP/1.1\r\nHost", "GET / HTTP/1.1\r\nHost: a\r",
		"GET / HTTP/1.1\r\nHost: a\r\n", "GET / HTTP/1.1\r\nHost: a\r\n\r",
	};
	struct hc_http_head h;

	(void)state;
	for (size_t i = 0; i < sizeof(partial) / sizeof(partial[0]); i++)
		if (head(partial[i], &h) != HC_PARSE_INVALID)
			fail_msg("prefix \"%s\" not refused", partial[i]);
	for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++)
		if (head(fine[i], &h) != HC_PARSE_MORE)
			fail_msg("prefix \"%s\" not MORE", fine[i]);
}

/* A head of total bytes: request line, Host, one padding field. */
static char *head_of_size(size_t total)
{
	static const char start[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
	char *s = malloc(total + 64);
	size_t pad = total - (sizeof(start) - 1) - 4;

	assert_non_null(s);
	memcpy(s, start, sizeof(start) - 1);
	memset(s + sizeof(start) - 1, 'x', pad);
	memcpy(s + sizeof(start) - 1 + pad, "\r\n\r\n", 4);
	memset(s + total, 'y', 64); /* what a client may have sent after it */
	return s;
}

static void test_http_size_limit(void **state)
{
	struct hc_http_head h;
	char *s;

	(void)state;
	s = head_of_size(HC_HTTP_HEAD_MAX);
	assert_int_equal(head_n(s, HC_HTTP_HEAD_MAX - 1, &h), HC_PARSE_MORE);
	assert_int_equal(head_n(s, HC_HTTP_HEAD_MAX, &h), HC_PARSE_OK);
	assert_int_equal(h.head_len, HC_HTTP_HEAD_MAX);
	assert_int_equal(head_n(s, HC_HTTP_HEAD_MAX + 64, &h), HC_PARSE_OK);
	assert_int_equal(h.head_len, HC_HTTP_HEAD_MAX);
	free(s);

	s = head_of_size(HC_HTTP_HEAD_MAX + 1);
	assert_int_equal(head_n(s, HC_HTTP_HEAD_MAX - 1, &h), HC_PARSE_MORE);
	assert_int_equal(head_n(s, HC_HTTP_HEAD_MAX, &h), HC_PARSE_TOO_LARGE);
	assert_int_equal(head_n(s, HC_HTTP_HEAD_MAX + 1, &h), HC_PARSE_TOO_LARGE);
	assert_int_equal(head_n(s, HC_HTTP_HEAD_MAX + 64, &h), HC_PARSE_TOO_LARGE);
	assert_int_equal(h.head_len, 0);
	free(s);

	/* the head's last CR inside the limit, its LF outside */
	s = head_of_size(HC_HTTP_HEAD_MAX + 1);
	assert_int_equal(s[HC_HTTP_HEAD_MAX - 1], '\r');
	assert_int_equal(head_n(s, HC_HTTP_HEAD_MAX, &h), HC_PARSE_TOO_LARGE);
	free(s);

	/* one endless line, request line or field */
	s = malloc(HC_HTTP_HEAD_MAX * 2);
	assert_non_null(s);
	memcpy(s, "GET /", 5);
	memset(s + 5, 'a', HC_HTTP_HEAD_MAX * 2 - 5);
	assert_int_equal(head_n(s, HC_HTTP_HEAD_MAX - 1, &h), HC_PARSE_MORE);
	assert_int_equal(head_n(s, HC_HTTP_HEAD_MAX, &h), HC_PARSE_TOO_LARGE);
	assert_int_equal(head_n(s, HC_HTTP_HEAD_MAX * 2, &h), HC_PARSE_TOO_LARGE);
	/* but what is wrong within the limit is a 400 */
	s[100] = '\x01';
	assert_int_equal(head_n(s, HC_HTTP_HEAD_MAX * 2, &h), HC_PARSE_INVALID);
	free(s);
}

static void test_escape_host(void **state)
{
	char out[HC_HOST_ESCAPED_MAX];
	char small[8];

	(void)state;
	assert_int_equal(hc_html_escape_host("a-b.c_d:[::1]09", out, sizeof(out)), 15);
	assert_string_equal(out, "a-b.c_d:[::1]09");
	assert_int_equal(hc_html_escape_host("<script>&\"'A /\xff", out, sizeof(out)), 33);
	assert_string_equal(out, "%3Cscript%3E%26%22%27%41%20%2F%FF");
	assert_int_equal(hc_html_escape_host("", out, sizeof(out)), 0);
	assert_string_equal(out, "");

	/* a cut never splits an escape, and the NUL always fits */
	assert_int_equal(hc_html_escape_host("abcdefghij", small, sizeof(small)), 7);
	assert_string_equal(small, "abcdefg");
	assert_int_equal(hc_html_escape_host("abcde<", small, sizeof(small)), 5);
	assert_string_equal(small, "abcde");
	assert_int_equal(hc_html_escape_host("abcd<", small, sizeof(small)), 7);
	assert_string_equal(small, "abcd%3C");
	assert_int_equal(hc_html_escape_host("abc<", small, sizeof(small)), 6);
	assert_string_equal(small, "abc%3C");
	assert_int_equal(hc_html_escape_host("<", small, 3), 0);
	assert_string_equal(small, "");
	small[0] = 'z';
	assert_int_equal(hc_html_escape_host("abc", small, 0), 0);
	assert_int_equal(small[0], 'z');
	assert_int_equal(hc_html_escape_host("abc", small, 1), 0);
	assert_string_equal(small, "");
}

/* ---- TLS: a ClientHello builder ---- */

#define BUF_MAX 70000

struct bb {
	uint8_t b[BUF_MAX];
	size_t n;
};

static void put8(struct bb *b, unsigned v)
{
	assert_true(b->n < BUF_MAX);
	b->b[b->n++] = (uint8_t)v;
}

static void put16(struct bb *b, unsigned v)
{
	put8(b, v >> 8);
	put8(b, v);
}

static void put_mem(struct bb *b, const void *p, size_t n)
{
	assert_true(b->n + n <= BUF_MAX);
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

/* A length field of width bytes, filled by end_len when what it covers is written. */
static size_t begin_len(struct bb *b, int width)
{
	size_t at = b->n;

	for (int i = 0; i < width; i++)
		put8(b, 0);
	return at;
}

static void end_len(struct bb *b, size_t at, int width)
{
	size_t v = b->n - at - (size_t)width;

	for (int i = width - 1; i >= 0; i--, v >>= 8)
		b->b[at + (size_t)i] = (uint8_t)v;
}

struct hello_spec {
	const char *sni;  /* NULL: no server_name extension */
	const char *alpn; /* comma-separated; NULL: no ALPN extension */
	bool no_extensions;
	bool sni_twice;	   /* a second server_name extension */
	bool host_name_twice; /* two host_name entries in one extension */
	bool alpn_twice;
	size_t padding; /* bytes of a padding extension (RFC 7685), 0: none */
};

/* Where the builder put the length fields, for the tests that damage them. */
struct hello_offsets {
	size_t sid, cs, comp, exts, sni_ext, sni_list, sni_name, alpn_ext, alpn_list, alpn_proto;
};

static void put_sni(struct bb *b, const char *name, int entries, struct hello_offsets *o)
{
	size_t ext, list, nm;

	put16(b, 0); /* server_name */
	o->sni_ext = ext = begin_len(b, 2);
	o->sni_list = list = begin_len(b, 2);
	for (int i = 0; i < entries; i++) {
		put8(b, 0); /* host_name */
		o->sni_name = nm = begin_len(b, 2);
		put_mem(b, name, strlen(name));
		end_len(b, nm, 2);
	}
	end_len(b, list, 2);
	end_len(b, ext, 2);
}

static void put_alpn(struct bb *b, const char *protos, struct hello_offsets *o)
{
	size_t ext, list;
	const char *p = protos;

	put16(b, 16);
	o->alpn_ext = ext = begin_len(b, 2);
	o->alpn_list = list = begin_len(b, 2);
	o->alpn_proto = b->n;
	while (*p) {
		size_t n = strcspn(p, ",");

		put8(b, (unsigned)n);
		put_mem(b, p, n);
		p += n + (p[n] == ',');
	}
	end_len(b, list, 2);
	end_len(b, ext, 2);
}

/* A TLS 1.3 ClientHello handshake message (header included) into b. */
static void build_hello(struct bb *b, const struct hello_spec *s, struct hello_offsets *o)
{
	static const uint8_t suites[] = { 0x13, 0x02, 0x13, 0x03, 0x13, 0x01, 0xc0, 0x2c, 0xc0, 0x30 };
	struct hello_offsets dummy;
	size_t body, exts, e, l;
	uint8_t rnd[32];

	if (!o)
		o = &dummy;
	memset(o, 0, sizeof(*o));
	b->n = 0;
	put8(b, 1); /* client_hello */
	body = begin_len(b, 3);
	put16(b, 0x0303);
	for (int i = 0; i < 32; i++)
		rnd[i] = (uint8_t)(i * 7 + 1);
	put_mem(b, rnd, 32);
	o->sid = b->n;
	put8(b, 32);
	put_mem(b, rnd, 32);
	o->cs = l = begin_len(b, 2);
	put_mem(b, suites, sizeof(suites));
	end_len(b, l, 2);
	o->comp = b->n;
	put8(b, 1);
	put8(b, 0);
	if (!s->no_extensions) {
		o->exts = exts = begin_len(b, 2);
		if (s->sni)
			put_sni(b, s->sni, s->host_name_twice ? 2 : 1, o);
		/* supported_groups: x25519 */
		put16(b, 10);
		put16(b, 4);
		put16(b, 2);
		put16(b, 0x001d);
		/* signature_algorithms */
		put16(b, 13);
		put16(b, 6);
		put16(b, 4);
		put16(b, 0x0403);
		put16(b, 0x0804);
		if (s->alpn)
			put_alpn(b, s->alpn, o);
		if (s->sni && s->sni_twice) {
			struct hello_offsets again;

			put_sni(b, "other.example", 1, &again);
		}
		if (s->alpn && s->alpn_twice) {
			struct hello_offsets again;

			put_alpn(b, "http/1.1", &again);
		}
		/* supported_versions: TLS 1.3, 1.2 */
		put16(b, 43);
		put16(b, 5);
		put8(b, 4);
		put16(b, 0x0304);
		put16(b, 0x0303);
		/* key_share: x25519 */
		put16(b, 51);
		e = begin_len(b, 2);
		l = begin_len(b, 2);
		put16(b, 0x001d);
		put16(b, 32);
		put_mem(b, rnd, 32);
		end_len(b, l, 2);
		end_len(b, e, 2);
		if (s->padding) {
			put16(b, 21);
			put16(b, (unsigned)s->padding);
			for (size_t i = 0; i < s->padding; i++)
				put8(b, 0);
		}
		end_len(b, exts, 2);
	}
	end_len(b, body, 3);
}

/* The message in records of at most frag bytes each. */
static void wrap(const uint8_t *msg, size_t n, size_t frag, struct bb *out)
{
	out->n = 0;
	for (size_t off = 0; off < n; off += frag) {
		size_t k = n - off < frag ? n - off : frag;

		put8(out, 0x16);
		put16(out, 0x0301);
		put16(out, (unsigned)k);
		put_mem(out, msg + off, k);
	}
}

/* Parses the first len bytes from an exact-size copy (ASan sees overreads). */
static int hello_n(const uint8_t *p, size_t len, struct hc_client_hello *out)
{
	uint8_t *copy = malloc(len ? len : 1);
	int r;

	assert_non_null(copy);
	memcpy(copy, p, len);
	r = hc_tls_client_hello_parse(copy, len, out);
	free(copy);
	return r;
}

static struct bb msg, rec;

static int hello_spec_parse(const struct hello_spec *s, size_t frag, struct hc_client_hello *out)
{
	build_hello(&msg, s, NULL);
	wrap(msg.b, msg.n, frag, &rec);
	return hello_n(rec.b, rec.n, out);
}

/* Every proper prefix MORE, the whole OK as at once, and bytes after it unread. */
static void expect_hello_more_then_ok(const uint8_t *p, size_t n)
{
	struct hc_client_hello whole, part;
	uint8_t *more = malloc(n + 10);

	assert_non_null(more);
	assert_int_equal(hello_n(p, n, &whole), HC_PARSE_OK);
	assert_int_equal(whole.consumed, n);
	for (size_t k = 0; k < n; k++)
		if (hello_n(p, k, &part) != HC_PARSE_MORE)
			fail_msg("prefix %zu of %zu is not MORE", k, n);
	memcpy(more, p, n);
	memset(more + n, 0x17, 10); /* application data that follows */
	assert_int_equal(hello_n(more, n + 10, &part), HC_PARSE_OK);
	assert_memory_equal(&part, &whole, sizeof(part));
	free(more);
}

/* ---- TLS ---- */

static void test_tls_looks_like(void **state)
{
	static const uint8_t tls[] = { 0x16, 0x03, 0x01 }, http[] = { 'G', 'E', 'T' },
			     other[] = { 0x16, 0x02 }, alert[] = { 0x15, 0x03 };

	(void)state;
	assert_false(hc_tls_looks_like(tls, 0));
	assert_true(hc_tls_looks_like(tls, 1));
	assert_true(hc_tls_looks_like(tls, 3));
	assert_false(hc_tls_looks_like(http, 3));
	assert_false(hc_tls_looks_like(other, 2));
	assert_true(hc_tls_looks_like(other, 1));
	assert_false(hc_tls_looks_like(alert, 2));
}

static void test_tls_sni_alpn(void **state)
{
	struct hello_spec s = { .sni = "Foo.Example.COM", .alpn = "h2,http/1.1" };
	struct hc_client_hello h;

	(void)state;
	assert_int_equal(hello_spec_parse(&s, 16384, &h), HC_PARSE_OK);
	assert_string_equal(h.sni, "foo.example.com");
	assert_true(h.alpn_http11);
	assert_int_equal(h.consumed, rec.n);
	assert_int_equal(rec.n, msg.n + 5);

	s.alpn = "h2";
	assert_int_equal(hello_spec_parse(&s, 16384, &h), HC_PARSE_OK);
	assert_false(h.alpn_http11);
	s.alpn = "http/1.1";
	assert_int_equal(hello_spec_parse(&s, 16384, &h), HC_PARSE_OK);
	assert_true(h.alpn_http11);
	s.alpn = "http/1.10,http/1.,HTTP/1.1";
	assert_int_equal(hello_spec_parse(&s, 16384, &h), HC_PARSE_OK);
	assert_false(h.alpn_http11);
	s.alpn = NULL;
	assert_int_equal(hello_spec_parse(&s, 16384, &h), HC_PARSE_OK);
	assert_false(h.alpn_http11);
	assert_string_equal(h.sni, "foo.example.com");

	/* one trailing dot is the same name */
	s.sni = "foo.example.com.";
	assert_int_equal(hello_spec_parse(&s, 16384, &h), HC_PARSE_OK);
	assert_string_equal(h.sni, "foo.example.com");
	s.sni = "_svc.under_score-1.example";
	assert_int_equal(hello_spec_parse(&s, 16384, &h), HC_PARSE_OK);
	assert_string_equal(h.sni, "_svc.under_score-1.example");
}

static void test_tls_no_sni(void **state)
{
	struct hello_spec s = { .alpn = "h2,http/1.1" };
	struct hello_spec bare = { .no_extensions = true };
	struct hc_client_hello h;

	(void)state;
	assert_int_equal(hello_spec_parse(&s, 16384, &h), HC_PARSE_OK);
	assert_string_equal(h.sni, "");
	assert_true(h.alpn_http11);
	/* no extensions block at all (TLS 1.2 and earlier may) */
	assert_int_equal(hello_spec_parse(&bare, 16384, &h), HC_PARSE_OK);
	assert_string_equal(h.sni, "");
	assert_false(h.alpn_http11);
	assert_int_equal(h.consumed, rec.n);
}

static void test_tls_fragmented(void **state)
{
	struct hello_spec s = { .sni = "split.example", .alpn = "h2,http/1.1" };
	static const size_t frags[] = { 1, 2, 3, 4, 5, 7, 64, 100 };
	struct hc_client_hello h;

	(void)state;
	/* two records, the second starting mid-extension */
	build_hello(&msg, &s, NULL);
	wrap(msg.b, msg.n, msg.n / 2 + 1, &rec);
	assert_int_equal(rec.n, msg.n + 10);
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_OK);
	assert_string_equal(h.sni, "split.example");
	assert_true(h.alpn_http11);
	assert_int_equal(h.consumed, rec.n);
	/* arriving a byte at a time */
	expect_hello_more_then_ok(rec.b, rec.n);

	/* fragments of any size, the handshake header itself cut */
	for (size_t i = 0; i < sizeof(frags) / sizeof(frags[0]); i++) {
		wrap(msg.b, msg.n, frags[i], &rec);
		assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_OK);
		assert_string_equal(h.sni, "split.example");
		assert_int_equal(h.consumed, rec.n);
	}
	wrap(msg.b, msg.n, 3, &rec);
	expect_hello_more_then_ok(rec.b, rec.n);

	/* another record type between the fragments */
	wrap(msg.b, msg.n, 100, &rec);
	rec.b[105] = 0x14; /* the second record as ChangeCipherSpec */
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_INVALID);
	assert_int_equal(hello_n(rec.b, 106, &h), HC_PARSE_INVALID);
	assert_int_equal(hello_n(rec.b, 105, &h), HC_PARSE_MORE);
}

static void test_tls_every_prefix(void **state)
{
	struct hello_spec s = { .sni = "foo.example.com", .alpn = "h2,http/1.1" };

	(void)state;
	build_hello(&msg, &s, NULL);
	wrap(msg.b, msg.n, 16384, &rec);
	expect_hello_more_then_ok(rec.b, rec.n);
}

/*
 * The ClientHello cut short at every byte, with the handshake and record
 * lengths saying so: a structure always runs past its parent, except at the
 * one place a hello may end (before the extensions).
 */
static void test_tls_truncated_structure(void **state)
{
	struct hello_spec s = { .sni = "foo.example.com", .alpn = "h2,http/1.1" };
	struct hello_offsets o;
	struct hc_client_hello h;
	struct bb cut;

	(void)state;
	build_hello(&msg, &s, &o);
	for (size_t n = 4; n < msg.n; n++) {
		size_t body = n - 4;
		int r;

		memcpy(cut.b, msg.b, n);
		cut.b[1] = (uint8_t)(body >> 16);
		cut.b[2] = (uint8_t)(body >> 8);
		cut.b[3] = (uint8_t)body;
		wrap(cut.b, n, 16384, &rec);
		r = hello_n(rec.b, rec.n, &h);
		if (n == o.exts)
			assert_int_equal(r, HC_PARSE_OK);
		else if (r != HC_PARSE_INVALID)
			fail_msg("hello cut at %zu of %zu: %d", n, msg.n, r);
	}
}

/* Adds delta to the big-endian length of width bytes at off. */
static void bump(uint8_t *p, size_t off, int width, int delta)
{
	unsigned v = 0;

	for (int i = 0; i < width; i++)
		v = v << 8 | p[off + (size_t)i];
	v += (unsigned)delta;
	for (int i = width - 1; i >= 0; i--, v >>= 8)
		p[off + (size_t)i] = (uint8_t)v;
}

static void test_tls_lengths_overflow(void **state)
{
	struct hello_spec s = { .sni = "foo.example.com", .alpn = "h2,http/1.1" };
	struct hello_offsets o;
	struct hc_client_hello h;
	struct {
		const char *what;
		size_t *off;
		int width, delta;
	} cases[] = {
		{ "session id", &o.sid, 1, 1 },
		{ "session id", &o.sid, 1, 100 },
		{ "session id", &o.sid, 1, 200 },
		{ "cipher suites", &o.cs, 2, 2 },
		{ "cipher suites", &o.cs, 2, 1 },
		{ "cipher suites", &o.cs, 2, 60000 },
		{ "compression", &o.comp, 1, 250 },
		{ "extensions", &o.exts, 2, 1 },
		{ "extensions", &o.exts, 2, -1 },
		{ "extensions", &o.exts, 2, 30000 },
		{ "server_name ext", &o.sni_ext, 2, 1 },
		{ "server_name ext", &o.sni_ext, 2, 1000 },
		{ "server_name list", &o.sni_list, 2, 1 },
		{ "server_name list", &o.sni_list, 2, -1 },
		{ "host_name", &o.sni_name, 2, 1 },
		{ "host_name", &o.sni_name, 2, 40000 },
		{ "ALPN ext", &o.alpn_ext, 2, 1 },
		{ "ALPN list", &o.alpn_list, 2, 1 },
		{ "ALPN list", &o.alpn_list, 2, -1 },
		{ "ALPN name", &o.alpn_proto, 1, 1 },
		{ "ALPN name", &o.alpn_proto, 1, 100 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		build_hello(&msg, &s, &o);
		bump(msg.b, *cases[i].off, cases[i].width, cases[i].delta);
		wrap(msg.b, msg.n, 16384, &rec);
		if (hello_n(rec.b, rec.n, &h) != HC_PARSE_INVALID)
			fail_msg("%s length %+d accepted", cases[i].what, cases[i].delta);
	}

	/* the handshake length: longer waits for a record that is not there
	 * yet, shorter leaves bytes in the record */
	build_hello(&msg, &s, &o);
	bump(msg.b, 1, 3, 1);
	wrap(msg.b, msg.n, 16384, &rec);
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_MORE);
	bump(msg.b, 1, 3, -2);
	wrap(msg.b, msg.n, 16384, &rec);
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_INVALID);

	/* empty lists and names */
	{
		static const uint8_t empty_sni_ext[] = { 0x00, 0x00, 0x00, 0x00 };
		struct hello_spec a = { .alpn = "h2,,http/1.1" };

		assert_int_equal(hello_spec_parse(&a, 16384, &h), HC_PARSE_INVALID);
		a.alpn = "";
		assert_int_equal(hello_spec_parse(&a, 16384, &h), HC_PARSE_INVALID);
		a.alpn = NULL;
		a.sni = "";
		assert_int_equal(hello_spec_parse(&a, 16384, &h), HC_PARSE_INVALID);
		/* a server_name extension with nothing in it */
		a.sni = NULL;
		build_hello(&msg, &a, &o);
		memcpy(msg.b + msg.n, empty_sni_ext, 4);
		msg.n += 4;
		bump(msg.b, o.exts, 2, 4);
		bump(msg.b, 1, 3, 4);
		wrap(msg.b, msg.n, 16384, &rec);
		assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_INVALID);
	}
}

static void test_tls_bad_sni(void **state)
{
	static const char *const bad[] = {
		"foo bar.example", "foo/bar", "a..b",	   ".a",      "..",  "foo.example:443",
		"[::1]",	   "\xc3\xa9.example", "a\"b", "a%41",    "a\\b", "a@b",
		"a,b",		   "a\x01",
	};
	struct hello_spec s = { .alpn = "http/1.1" };
	struct hc_client_hello h;
	char name[300];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		s.sni = bad[i];
		if (hello_spec_parse(&s, 16384, &h) != HC_PARSE_INVALID)
			fail_msg("SNI \"%s\" accepted", bad[i]);
	}
	/* a NUL inside the name */
	s.sni = "foo.example";
	build_hello(&msg, &s, NULL);
	for (size_t i = 0; i + 11 <= msg.n; i++)
		if (memcmp(msg.b + i, "foo.example", 11) == 0)
			msg.b[i + 3] = 0;
	wrap(msg.b, msg.n, 16384, &rec);
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_INVALID);

	/* 253 is the longest */
	memset(name, 'a', 254);
	for (int i = 63; i < 253; i += 64)
		name[i] = '.';
	name[253] = '\0';
	s.sni = name;
	assert_int_equal(hello_spec_parse(&s, 16384, &h), HC_PARSE_OK);
	assert_int_equal(strlen(h.sni), 253);
	name[253] = 'a';
	name[254] = '\0';
	assert_int_equal(hello_spec_parse(&s, 16384, &h), HC_PARSE_INVALID);

	/* entries of other name types are skipped, before or after */
	{
		static const uint8_t ext[] = {
			0x00, 0x00, 0x00, 0x14, 0x00, 0x12,	  /* server_name, list */
			0x07, 0x00, 0x03, 'x',	0x20, 'y',	  /* type 7: "x y" */
			0x00, 0x00, 0x06, 'a',	'.',  'b',  'C', 'd', 'e', /* host_name */
			0x08, 0x00, 0x00,			  /* type 8: empty */
		};
		struct hello_spec none = { .alpn = "h2" };
		struct hello_offsets o;

		build_hello(&msg, &none, &o);
		memcpy(msg.b + msg.n, ext, sizeof(ext));
		msg.n += sizeof(ext);
		bump(msg.b, o.exts, 2, (int)sizeof(ext));
		bump(msg.b, 1, 3, (int)sizeof(ext));
		wrap(msg.b, msg.n, 16384, &rec);
		assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_OK);
		assert_string_equal(h.sni, "a.bcde");
	}

	/* one server_name, one host_name in it, one ALPN */
	s.sni = "foo.example";
	s.sni_twice = true;
	assert_int_equal(hello_spec_parse(&s, 16384, &h), HC_PARSE_INVALID);
	s.sni_twice = false;
	s.host_name_twice = true;
	assert_int_equal(hello_spec_parse(&s, 16384, &h), HC_PARSE_INVALID);
	s.host_name_twice = false;
	s.alpn_twice = true;
	assert_int_equal(hello_spec_parse(&s, 16384, &h), HC_PARSE_INVALID);
}

/* The methods a request may be sent again with (RFC 9110 9.2.2): exact,
 * case-sensitive, and by length (not a prefix). */
static void test_method_idempotent(void **state)
{
	static const char *const yes[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"};
	static const char *const no[] = {"POST", "PATCH", "CONNECT", "get", "GETX", "GE", ""};

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		assert_true(hc_http_method_idempotent(yes[i], strlen(yes[i])));
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		assert_false(hc_http_method_idempotent(no[i], strlen(no[i])));
	assert_true(hc_http_method_idempotent("GET /x HTTP/1.1", 3));
}

static void test_tls_not_a_hello(void **state)
{
	struct hello_spec s = { .sni = "foo.example" };
	struct hc_client_hello h;
	static const uint8_t appdata[] = { 0x17, 0x03, 0x03, 0x00, 0x02, 0xab, 0xcd };
	static const uint8_t empty_record[] = { 0x16, 0x03, 0x01, 0x00, 0x00 };
	static const uint8_t huge_record[] = { 0x16, 0x03, 0x01, 0x40, 0x01, 0x01 };
	static const uint8_t empty_hello[] = { 0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0, 0, 0 };

	(void)state;
	assert_int_equal(hello_n(appdata, sizeof(appdata), &h), HC_PARSE_INVALID);
	assert_int_equal(hello_n(appdata, 1, &h), HC_PARSE_INVALID);
	assert_int_equal(hello_n((const uint8_t *)"GET / HTTP/1.1\r\n", 16, &h), HC_PARSE_INVALID);
	assert_int_equal(hello_n(empty_record, sizeof(empty_record), &h), HC_PARSE_INVALID);
	assert_int_equal(hello_n(huge_record, sizeof(huge_record), &h), HC_PARSE_INVALID);
	assert_int_equal(hello_n(empty_hello, sizeof(empty_hello), &h), HC_PARSE_INVALID);
	assert_int_equal(hello_n(empty_hello, 0, &h), HC_PARSE_MORE);

	build_hello(&msg, &s, NULL);
	wrap(msg.b, msg.n, 16384, &rec);
	/* record versions: 0x03 0x00..0x0f pass */
	rec.b[2] = 0x00;
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_OK);
	rec.b[2] = 0x04;
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_OK);
	rec.b[2] = 0x10;
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_INVALID);
	assert_int_equal(hello_n(rec.b, 3, &h), HC_PARSE_INVALID);
	rec.b[2] = 0x01;
	rec.b[1] = 0x02;
	assert_int_equal(hello_n(rec.b, 2, &h), HC_PARSE_INVALID);
	rec.b[1] = 0x03;
	/* ServerHello, not a ClientHello: refused on its first byte */
	rec.b[5] = 0x02;
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_INVALID);
	assert_int_equal(hello_n(rec.b, 6, &h), HC_PARSE_INVALID);
	rec.b[5] = 0x01;
	/* legacy_version not 3.x */
	rec.b[9] = 0x02;
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_INVALID);
	rec.b[9] = 0x03;
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_OK);

	/* a second handshake message in the record after the hello */
	memcpy(msg.b + msg.n, "\x14\x00\x00\x00", 4);
	wrap(msg.b, msg.n + 4, 16384, &rec);
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_INVALID);
	/* known before the record has all arrived */
	assert_int_equal(hello_n(rec.b, 9, &h), HC_PARSE_INVALID);
	assert_int_equal(h.consumed, 0);
	assert_string_equal(h.sni, "");
}

static void test_tls_size_limits(void **state)
{
	struct hello_spec s = { .sni = "big.example", .alpn = "http/1.1" };
	struct hc_client_hello h;
	size_t base;

	(void)state;
	build_hello(&msg, &s, NULL);
	base = msg.n + 4; /* with an empty padding extension */

	/* a hello of exactly HC_TLS_HELLO_MAX in one full record */
	s.padding = HC_TLS_HELLO_MAX - base;
	build_hello(&msg, &s, NULL);
	assert_int_equal(msg.n, HC_TLS_HELLO_MAX);
	wrap(msg.b, msg.n, 16384, &rec);
	assert_int_equal(rec.n, HC_TLS_HELLO_MAX + 5);
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_OK);
	assert_string_equal(h.sni, "big.example");
	/* and in two records */
	wrap(msg.b, msg.n, 10000, &rec);
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_OK);

	/* one byte more: refused as soon as its length is read */
	s.padding++;
	build_hello(&msg, &s, NULL);
	wrap(msg.b, msg.n, 10000, &rec);
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_TOO_LARGE);
	assert_int_equal(hello_n(rec.b, 9, &h), HC_PARSE_TOO_LARGE);
	assert_int_equal(hello_n(rec.b, 8, &h), HC_PARSE_MORE);
	/* a length no hello has */
	rec.b[6] = 0xff;
	assert_int_equal(hello_n(rec.b, 9, &h), HC_PARSE_TOO_LARGE);

	/* a fair-sized hello in tiny records runs past HC_TLS_INPUT_MAX */
	s.padding = 6000;
	build_hello(&msg, &s, NULL);
	wrap(msg.b, msg.n, 1, &rec);
	assert_true(rec.n > HC_TLS_INPUT_MAX);
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_TOO_LARGE);
	/* at the bound, without waiting for the header that says so */
	assert_int_equal(hello_n(rec.b, HC_TLS_INPUT_MAX, &h), HC_PARSE_TOO_LARGE);
	assert_int_equal(hello_n(rec.b, HC_TLS_INPUT_MAX - 1, &h), HC_PARSE_MORE);
	wrap(msg.b, msg.n, 5, &rec);
	assert_true(rec.n <= HC_TLS_INPUT_MAX);
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_OK);

	/* a record whose header says it ends past the bound: refused at once */
	s.padding = HC_TLS_HELLO_MAX - base;
	build_hello(&msg, &s, NULL);
	{
		static struct bb tail;

		wrap(msg.b, 5000, 1, &rec);
		assert_int_equal(rec.n, 30000);
		wrap(msg.b + 5000, msg.n - 5000, 16384, &tail);
		put_mem(&rec, tail.b, tail.n);
		assert_int_equal(hello_n(rec.b, 29999, &h), HC_PARSE_MORE);
		assert_int_equal(hello_n(rec.b, 30004, &h), HC_PARSE_MORE);
		assert_int_equal(hello_n(rec.b, 30005, &h), HC_PARSE_TOO_LARGE);
		assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_TOO_LARGE);
	}

	/* a record bringing more than the message before its size is known:
	 * one byte, then a full record while the hello is shorter */
	s.padding = 0;
	build_hello(&msg, &s, NULL);
	memset(msg.b + msg.n, 0, 16384);
	rec.n = 0;
	put_mem(&rec, "\x16\x03\x01\x00\x01\x01", 6);
	put_mem(&rec, "\x16\x03\x01\x40\x00", 5);
	put_mem(&rec, msg.b + 1, 16384);
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_INVALID);
	assert_int_equal(hello_n(rec.b, 14, &h), HC_PARSE_INVALID);
	assert_int_equal(hello_n(rec.b, 13, &h), HC_PARSE_MORE);
}

/*
 * Captured from "openssl s_client -connect 127.0.0.1:PORT -servername
 * foo.example.com -alpn h2,http/1.1" (OpenSSL 3.0.19) against a local
 * openssl s_server: the first record the client sent.
 */
static const uint8_t openssl_hello[] = {
	0x16, 0x03, 0x01, 0x01, 0x4e, 0x01, 0x00, 0x01, 0x4a, 0x03, 0x03, 0xf9,
	0x08, 0xf7, 0x85, 0xb5, 0xdd, 0x43, 0x6b, 0x46, 0x64, 0x8c, 0x3d, 0x7f,
	0x56, 0x25, 0xeb, 0x91, 0xab, 0x27, 0x34, 0x6d, 0x2b, 0xd3, 0x8d, 0x22,
	0x9d, 0xad, 0x79, 0x94, 0x35, 0x00, 0x30, 0x20, 0x9e, 0x60, 0x25, 0xb8,
	0x5e, 0x31, 0x1c, 0xb8, 0x70, 0x80, 0x73, 0xf7, 0xa5, 0x65, 0x52, 0x20,
	0xf4, 0xa5, 0x11, 0xd4, 0xe7, 0x32, 0x74, 0xe0, 0x80, 0x33, 0x3b, 0x6d,
	0x54, 0x72, 0x19, 0x2f, 0x00, 0x3e, 0x13, 0x02, 0x13, 0x03, 0x13, 0x01,
	0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa,
	0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b,
	0xc0, 0x23, 0xc0, 0x27, 0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39,
	0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d, 0x00, 0x9c, 0x00, 0x3d,
	0x00, 0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0xc3,
	0x00, 0x00, 0x00, 0x14, 0x00, 0x12, 0x00, 0x00, 0x0f, 0x66, 0x6f, 0x6f,
	0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x63, 0x6f, 0x6d,
	0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x16,
	0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18,
	0x01, 0x00, 0x01, 0x01, 0x01, 0x02, 0x01, 0x03, 0x01, 0x04, 0x00, 0x23,
	0x00, 0x00, 0x00, 0x10, 0x00, 0x0e, 0x00, 0x0c, 0x02, 0x68, 0x32, 0x08,
	0x68, 0x74, 0x74, 0x70, 0x2f, 0x31, 0x2e, 0x31, 0x00, 0x16, 0x00, 0x00,
	0x00, 0x17, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04, 0x03,
	0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, 0x08, 0x09, 0x08, 0x0a,
	0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01,
	0x06, 0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02,
	0x06, 0x02, 0x00, 0x2b, 0x00, 0x09, 0x08, 0x03, 0x04, 0x03, 0x03, 0x03,
	0x02, 0x03, 0x01, 0x00, 0x2d, 0x00, 0x02, 0x01, 0x01, 0x00, 0x33, 0x00,
	0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, 0x52, 0x9d, 0xac, 0x47, 0x86,
	0xeb, 0xa4, 0xdf, 0x79, 0x79, 0x1d, 0x25, 0x79, 0xee, 0xd4, 0x7e, 0xe8,
	0xbb, 0xdc, 0x8f, 0xea, 0x8d, 0x8d, 0x4a, 0x17, 0x91, 0x78, 0xb9, 0x0c,
	0xfe, 0x47, 0x4d,
};

static void test_tls_openssl_capture(void **state)
{
	struct hc_client_hello h;

	(void)state;
	assert_int_equal(hello_n(openssl_hello, sizeof(openssl_hello), &h), HC_PARSE_OK);
	assert_string_equal(h.sni, "foo.example.com");
	assert_true(h.alpn_http11);
	assert_int_equal(h.consumed, sizeof(openssl_hello));
	expect_hello_more_then_ok(openssl_hello, sizeof(openssl_hello));

	/* the same hello cut into records by a middlebox */
	wrap(openssl_hello + 5, sizeof(openssl_hello) - 5, 50, &rec);
	assert_int_equal(hello_n(rec.b, rec.n, &h), HC_PARSE_OK);
	assert_string_equal(h.sni, "foo.example.com");
	assert_int_equal(h.consumed, rec.n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_http_simple_get),
		cmocka_unit_test(test_http_host_forms),
		cmocka_unit_test(test_http_bad_hosts),
		cmocka_unit_test(test_http_ipv6_host),
		cmocka_unit_test(test_http_absolute_form),
		cmocka_unit_test(test_http_versions),
		cmocka_unit_test(test_http_request_line),
		cmocka_unit_test(test_http_fields),
		cmocka_unit_test(test_http_connection_upgrade),
		cmocka_unit_test(test_http_every_prefix),
		cmocka_unit_test(test_http_early_refusal),
		cmocka_unit_test(test_http_size_limit),
		cmocka_unit_test(test_escape_host),
		cmocka_unit_test(test_tls_looks_like),
		cmocka_unit_test(test_tls_sni_alpn),
		cmocka_unit_test(test_tls_no_sni),
		cmocka_unit_test(test_tls_fragmented),
		cmocka_unit_test(test_tls_every_prefix),
		cmocka_unit_test(test_tls_truncated_structure),
		cmocka_unit_test(test_tls_lengths_overflow),
		cmocka_unit_test(test_tls_bad_sni),
		cmocka_unit_test(test_tls_not_a_hello),
		cmocka_unit_test(test_method_idempotent),
		cmocka_unit_test(test_tls_size_limits),
		cmocka_unit_test(test_tls_openssl_capture),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
