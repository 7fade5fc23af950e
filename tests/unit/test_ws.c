/* The WebSocket client and the k8s channel protocol, against a fake
 * streaming server on loopback that speaks RFC 6455 byte by byte. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "runtime/ws_int.h"

/* ---- the fake server ---- */

struct server {
	int listen_fd, port;
	pthread_t thread;
	const char *status_line; /* e.g. "101 Switching Protocols" */
	const char *protocol;	 /* echoed, or NULL */
	bool bad_accept;
	const uint8_t *script;	 /* raw bytes sent after the upgrade */
	size_t script_len;
	uint8_t stdin_seen[256]; /* unmasked payload of the client's first frame */
	size_t stdin_len;
	bool stdin_was_masked;
	uint8_t pong[16];
	size_t pong_len;
};

static void server_read_frame(int fd, uint8_t *op, uint8_t *out, size_t *len, bool *masked)
{
	uint8_t h[2], mask[4] = { 0 };
	size_t n;

	assert_int_equal(recv(fd, h, 2, MSG_WAITALL), 2);
	*op = h[0] & 0x0f;
	*masked = h[1] & 0x80;
	n = h[1] & 0x7f;
	assert_true(n < 126);
	if (*masked)
		assert_int_equal(recv(fd, mask, 4, MSG_WAITALL), 4);
	assert_int_equal(recv(fd, out, n, MSG_WAITALL), (ssize_t)n);
	for (size_t i = 0; i < n; i++)
		out[i] ^= mask[i & 3];
	*len = n;
}

static void *serve(void *arg)
{
	struct server *s = arg;
	char req[4096] = "", key[64] = "", want[64], joined[128], resp[512];
	unsigned char sha[SHA_DIGEST_LENGTH];
	int fd = accept(s->listen_fd, NULL, NULL);
	size_t len = 0;
	char *k;

	assert_true(fd >= 0);
	while (!strstr(req, "\r\n\r\n") && len < sizeof(req) - 1) {
		ssize_t n = recv(fd, req + len, sizeof(req) - 1 - len, 0);

		assert_true(n > 0);
		len += (size_t)n;
		req[len] = '\0';
	}
	assert_non_null(strstr(req, "GET /exec/abc HTTP/1.1\r\n"));
	assert_non_null(strstr(req, "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n"));
	k = strstr(req, "Sec-WebSocket-Key: ");
	assert_non_null(k);
	sscanf(k + 19, "%63[^\r]", key);
	snprintf(joined, sizeof(joined), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
	SHA1((unsigned char *)joined, strlen(joined), sha);
	EVP_EncodeBlock((unsigned char *)want, sha, SHA_DIGEST_LENGTH);
	if (s->bad_accept)
		want[0] ^= 1;
	len = (size_t)snprintf(resp, sizeof(resp),
			       "HTTP/1.1 %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			       "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
			       s->status_line, want, s->protocol ? "Sec-WebSocket-Protocol: " : "",
			       s->protocol ? s->protocol : "", s->protocol ? "\r\n" : "");
	assert_int_equal(send(fd, resp, len, 0), (ssize_t)len);
	if (strncmp(s->status_line, "101", 3) == 0 && s->protocol && !s->bad_accept) {
		uint8_t op;
		bool masked;

		/* the client sends its stdin first (the test writes it before) */
		server_read_frame(fd, &op, s->stdin_seen, &s->stdin_len, &s->stdin_was_masked);
		assert_int_equal(op, HC_WS_BINARY);
		assert_int_equal(send(fd, s->script, s->script_len, 0), (ssize_t)s->script_len);
		/* a pong for the script's ping, then the client's close */
		server_read_frame(fd, &op, s->pong, &s->pong_len, &masked);
		assert_int_equal(op, HC_WS_PONG);
		assert_true(masked);
	}
	close(fd);
	return NULL;
}

static void server_start(struct server *s)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t slen = sizeof(sa);

	s->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(s->listen_fd >= 0);
	assert_int_equal(bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s->listen_fd, 1), 0);
	assert_int_equal(getsockname(s->listen_fd, (struct sockaddr *)&sa, &slen), 0);
	s->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void server_join(struct server *s)
{
	pthread_join(s->thread, NULL);
	close(s->listen_fd);
}

static size_t frame(uint8_t *out, uint8_t b0, const char *payload, size_t len)
{
	out[0] = b0;
	out[1] = (uint8_t)len;
	memcpy(out + 2, payload, len);
	return len + 2;
}

static char *read_pipe(int fd)
{
	static char buf[4096];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* ---- tests ---- */

static void test_exec_stream(void **state)
{
	static const char status[] =
		"\x03{\"metadata\":{},\"status\":\"Failure\",\"message\":\"command terminated with "
		"non-zero exit code: exit status 7\",\"reason\":\"NonZeroExitCode\",\"details\":"
		"{\"causes\":[{\"reason\":\"ExitCode\",\"message\":\"7\"}]}}";
	uint8_t script[1024];
	size_t n = 0;
	struct server s = { .status_line = "101 Switching Protocols", .protocol = "v4.channel.k8s.io" };
	int in[2], out[2], errp[2], exit_code = 0;
	char url[64];
	struct hc_err err;
	struct hc_ws *ws;
	struct hc_ws_stream_io io;

	(void)state;
	n += frame(script + n, 0x82, "\x01", 1);		     /* empty stdout first */
	n += frame(script + n, 0x02, "\x01hel", 4);		     /* fragmented ... */
	n += frame(script + n, 0x89, "ping!", 5);		     /* ... a ping inside ... */
	n += frame(script + n, 0x80, "lo\n", 3);		     /* ... and the end */
	n += frame(script + n, 0x81, "\x02oops\n", 6);		     /* stderr as text */
	script[n++] = 0x82;					     /* status, 16-bit length */
	script[n++] = 126;
	script[n++] = 0;
	script[n++] = (uint8_t)(sizeof(status) - 1);
	memcpy(script + n, status, sizeof(status) - 1);
	n += sizeof(status) - 1;
	n += frame(script + n, 0x88, "\x03\xe8", 2); /* close 1000 */
	s.script = script;
	s.script_len = n;
	server_start(&s);
	assert_int_equal(pipe(in), 0);
	assert_int_equal(pipe(out), 0);
	assert_int_equal(pipe(errp), 0);
	assert_int_equal(write(in[1], "input\n", 6), 6);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/exec/abc", s.port);
	ws = hc_ws_connect(url, "v4.channel.k8s.io", 5000, &err);
	assert_non_null(ws);
	io = (struct hc_ws_stream_io){ in[0], out[1], errp[1], -1, -1 };
	assert_int_equal(hc_ws_stream_run(ws, &io, &exit_code, &err), 0);
	assert_int_equal(exit_code, 7);
	hc_ws_free(ws);
	server_join(&s);
	assert_true(s.stdin_was_masked);
	assert_int_equal(s.stdin_len, 7);
	assert_memory_equal(s.stdin_seen, "\x00input\n", 7);
	assert_int_equal(s.pong_len, 5);
	assert_memory_equal(s.pong, "ping!", 5);
	close(out[1]);
	close(errp[1]);
	assert_string_equal(read_pipe(out[0]), "hello\n");
	assert_string_equal(read_pipe(errp[0]), "oops\n");
	close(in[0]);
	close(in[1]);
	close(out[0]);
	close(errp[0]);
}

static void test_upgrade_refused(void **state)
{
	struct server bad_status = { .status_line = "404 Not Found", .protocol = NULL };
	struct server no_proto = { .status_line = "101 Switching Protocols", .protocol = NULL };
	struct server bad_accept = { .status_line = "101 Switching Protocols",
				     .protocol = "v4.channel.k8s.io", .bad_accept = true };
	struct server *cases[] = { &bad_status, &no_proto, &bad_accept };
	const char *words[] = { "404 Not Found", "did not accept protocol", "Accept" };
	char url[64];
	struct hc_err err;

	(void)state;
	for (int i = 0; i < 3; i++) {
		server_start(cases[i]);
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/exec/abc", cases[i]->port);
		assert_null(hc_ws_connect(url, "v4.channel.k8s.io", 5000, &err));
		assert_non_null(strstr(err.msg, words[i]));
		server_join(cases[i]);
	}
	assert_null(hc_ws_connect("ftp://x/y", "p", 1000, &err));
	assert_non_null(strstr(err.msg, "URL"));
	assert_null(hc_ws_connect("http://127.0.0.1:1/x", "p", 1000, &err));
	assert_non_null(strstr(err.msg, "connect"));
}

static void test_frame_parse(void **state)
{
	struct hc_ws_frame f;
	static const uint8_t ok[] = { 0x82, 0x03, 'a', 'b', 'c' };
	static const uint8_t rsv[] = { 0xc2, 0x00 }, opc[] = { 0x83, 0x00 },
			     masked[] = { 0x82, 0x80, 0, 0, 0, 0 },
			     long_ping[] = { 0x89, 126, 0, 200 }, frag_close[] = { 0x08, 0x00 },
			     short16[] = { 0x82, 126, 0, 5 },
			     huge[] = { 0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0 },
			     too_big[] = { 0x82, 127, 0, 0, 0, 0, 0x10, 0, 0, 1 };

	(void)state;
	assert_int_equal(hc_ws_frame_parse(ok, sizeof(ok), &f), 5);
	assert_true(f.fin);
	assert_int_equal(f.opcode, HC_WS_BINARY);
	assert_int_equal(f.len, 3);
	assert_int_equal(hc_ws_frame_parse(ok, 4, &f), 0);
	assert_int_equal(hc_ws_frame_parse(ok, 1, &f), 0);
	assert_int_equal(hc_ws_frame_parse(rsv, 2, &f), -EPROTO);
	assert_int_equal(hc_ws_frame_parse(opc, 2, &f), -EPROTO);
	assert_int_equal(hc_ws_frame_parse(masked, 6, &f), -EPROTO);
	assert_int_equal(hc_ws_frame_parse(long_ping, 4, &f), -EPROTO);
	assert_int_equal(hc_ws_frame_parse(frag_close, 2, &f), -EPROTO);
	assert_int_equal(hc_ws_frame_parse(short16, 4, &f), -EPROTO);
	assert_int_equal(hc_ws_frame_parse(huge, 10, &f), -EPROTO);
	assert_int_equal(hc_ws_frame_parse(too_big, 10, &f), -EPROTO);
}

static void test_status_parse(void **state)
{
	struct hc_err err;
	int code;

	(void)state;
#define PARSE(text) hc_ws_status_parse(text, strlen(text), &code, &err)
	assert_int_equal(PARSE("{\"metadata\":{},\"status\":\"Success\"}"), 0);
	assert_int_equal(code, 0);
	assert_int_equal(PARSE("{\"status\":\"Failure\",\"message\":\"no such file\"}"), 0);
	assert_int_equal(code, -1);
	assert_string_equal(err.msg, "no such file");
	assert_int_equal(PARSE("{\"status\":\"Failure\",\"reason\":\"NonZeroExitCode\","
			       "\"details\":{\"causes\":[{\"reason\":\"ExitCode\","
			       "\"message\":\"999\"}]}}"),
			 0);
	assert_int_equal(code, -1); /* out of range */
	assert_int_equal(PARSE("nope"), -EINVAL);
#undef PARSE
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exec_stream),
		cmocka_unit_test(test_upgrade_refused),
		cmocka_unit_test(test_frame_parse),
		cmocka_unit_test(test_status_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
