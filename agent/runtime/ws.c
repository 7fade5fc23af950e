/* A WebSocket client (RFC 6455), just what containerd's streaming server
 * needs: one connection, binary messages, pings, close. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "base/base.h"
#include "ws_int.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_HEADERS 8192

struct hc_ws {
	int fd;
	uint8_t *rbuf; /* received, not yet parsed */
	size_t rlen, rcap;
	uint8_t *msg; /* a message being joined from fragments */
	size_t mlen, mcap;
	enum hc_ws_opcode mop;
	bool in_message;
	size_t consumed; /* bytes of rbuf the last returned message used */
	bool close_sent;
};

/* ---- frames ---- */

int hc_ws_frame_parse(const uint8_t *buf, size_t len, struct hc_ws_frame *frame)
{
	size_t hdr = 2;
	uint64_t plen;
	uint8_t op;

	if (len < 2)
		return 0;
	op = buf[0] & 0x0f;
	if (buf[0] & 0x70)
		return -EPROTO; /* no extension was negotiated */
	if (op != HC_WS_CONTINUATION && op != HC_WS_TEXT && op != HC_WS_BINARY &&
	    op != HC_WS_CLOSE && op != HC_WS_PING && op != HC_WS_PONG)
		return -EPROTO;
	if (buf[1] & 0x80)
		return -EPROTO; /* servers must not mask */
	plen = buf[1] & 0x7f;
	if (plen == 126) {
		if (len < 4)
			return 0;
		plen = (uint64_t)buf[2] << 8 | buf[3];
		if (plen < 126)
			return -EPROTO;
		hdr = 4;
	} else if (plen == 127) {
		if (len < 10)
			return 0;
		plen = 0;
		for (int i = 0; i < 8; i++)
			plen = plen << 8 | buf[2 + i];
		if (plen < 65536 || plen >> 63)
			return -EPROTO;
		hdr = 10;
	}
	if (op >= HC_WS_CLOSE && (plen > 125 || !(buf[0] & 0x80)))
		return -EPROTO;
	if (plen > HC_WS_MAX_MESSAGE)
		return -EPROTO;
	if (len - hdr < plen)
		return 0;
	frame->fin = buf[0] & 0x80;
	frame->opcode = (enum hc_ws_opcode)op;
	frame->payload = buf + hdr;
	frame->len = plen;
	return (int)(hdr + plen);
}

static int send_frame(struct hc_ws *ws, uint8_t opcode, const void *data, size_t len)
{
	uint8_t hdr[14], mask[4], *frame;
	size_t h = 0;
	int r;

	hdr[h++] = 0x80 | opcode;
	if (len < 126) {
		hdr[h++] = 0x80 | (uint8_t)len;
	} else if (len < 65536) {
		hdr[h++] = 0x80 | 126;
		hdr[h++] = (uint8_t)(len >> 8);
		hdr[h++] = (uint8_t)len;
	} else {
		hdr[h++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
	}
	/* clients must mask every frame with a fresh key */
	if (getrandom(mask, sizeof(mask), 0) != (ssize_t)sizeof(mask))
		return -EIO;
	memcpy(hdr + h, mask, 4);
	h += 4;
	frame = malloc(h + len);
	if (!frame)
		return -ENOMEM;
	memcpy(frame, hdr, h);
	for (size_t i = 0; i < len; i++)
		frame[h + i] = ((const uint8_t *)data)[i] ^ mask[i & 3];
	r = hc_send_all(ws->fd, frame, h + len, NULL); /* a hung-up server: EPIPE, not SIGPIPE */
	free(frame);
	return r;
}

int hc_ws_send(struct hc_ws *ws, const void *data, size_t len)
{
	return send_frame(ws, HC_WS_BINARY, data, len);
}

int hc_ws_close(struct hc_ws *ws, uint16_t code)
{
	uint8_t body[2] = { (uint8_t)(code >> 8), (uint8_t)code };

	if (ws->close_sent)
		return 0;
	ws->close_sent = true;
	return send_frame(ws, HC_WS_CLOSE, body, sizeof(body));
}

int hc_ws_fd(const struct hc_ws *ws)
{
	return ws->fd;
}

static void drop_consumed(struct hc_ws *ws)
{
	if (!ws->consumed)
		return;
	memmove(ws->rbuf, ws->rbuf + ws->consumed, ws->rlen - ws->consumed);
	ws->rlen -= ws->consumed;
	ws->consumed = 0;
}

bool hc_ws_pending(const struct hc_ws *ws)
{
	struct hc_ws_frame f;

	return hc_ws_frame_parse(ws->rbuf + ws->consumed, ws->rlen - ws->consumed, &f) != 0;
}

static int fill(struct hc_ws *ws)
{
	ssize_t n;

	if (ws->rcap - ws->rlen < 65536) {
		size_t want = ws->rcap ? ws->rcap * 2 : 131072;
		uint8_t *grown;

		if (want > HC_WS_MAX_MESSAGE + 65536 + 14)
			want = HC_WS_MAX_MESSAGE + 65536 + 14;
		if (want <= ws->rlen)
			return -EMSGSIZE;
		grown = realloc(ws->rbuf, want);
		if (!grown)
			return -ENOMEM;
		ws->rbuf = grown;
		ws->rcap = want;
	}
	do
		n = read(ws->fd, ws->rbuf + ws->rlen, ws->rcap - ws->rlen);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -ECONNRESET;
	ws->rlen += (size_t)n;
	return 0;
}

static int append_message(struct hc_ws *ws, const uint8_t *data, size_t len)
{
	if (ws->mlen + len > HC_WS_MAX_MESSAGE)
		return -EMSGSIZE;
	if (len == 0)
		return 0;
	if (ws->mlen + len > ws->mcap) {
		size_t want = ws->mcap ? ws->mcap : 4096;
		uint8_t *grown;

		while (want < ws->mlen + len)
			want *= 2;
		grown = realloc(ws->msg, want);
		if (!grown)
			return -ENOMEM;
		ws->msg = grown;
		ws->mcap = want;
	}
	memcpy(ws->msg + ws->mlen, data, len);
	ws->mlen += len;
	return 0;
}

int hc_ws_recv(struct hc_ws *ws, struct hc_ws_message *msg)
{
	struct hc_ws_frame f;
	int n, r;

	drop_consumed(ws);
	for (;;) {
		n = hc_ws_frame_parse(ws->rbuf + ws->consumed, ws->rlen - ws->consumed, &f);
		if (n < 0)
			return n;
		if (n == 0) {
			drop_consumed(ws);
			r = fill(ws);
			if (r < 0)
				return r;
			continue;
		}
		ws->consumed += (size_t)n;
		switch (f.opcode) {
		case HC_WS_PING:
			r = send_frame(ws, HC_WS_PONG, f.payload, (size_t)f.len);
			if (r < 0)
				return r;
			continue;
		case HC_WS_PONG:
			continue;
		case HC_WS_CLOSE:
			msg->opcode = HC_WS_CLOSE;
			msg->payload = f.payload;
			msg->len = (size_t)f.len;
			msg->close_code = f.len >= 2 ? (uint16_t)(f.payload[0] << 8 | f.payload[1])
						     : 1005; /* "no status received" */
			hc_ws_close(ws, f.len >= 2 ? msg->close_code : 1000);
			return 0;
		case HC_WS_CONTINUATION:
			if (!ws->in_message)
				return -EPROTO;
			break;
		default: /* TEXT or BINARY */
			if (ws->in_message)
				return -EPROTO;
			if (f.fin) { /* the common case: no copy */
				msg->opcode = f.opcode;
				msg->payload = f.payload;
				msg->len = (size_t)f.len;
				msg->close_code = 0;
				return 1;
			}
			ws->in_message = true;
			ws->mop = f.opcode;
			ws->mlen = 0;
			break;
		}
		r = append_message(ws, f.payload, (size_t)f.len);
		if (r < 0)
			return r;
		if (!f.fin)
			continue;
		ws->in_message = false;
		msg->opcode = ws->mop;
		msg->payload = ws->msg;
		msg->len = ws->mlen;
		msg->close_code = 0;
		return 1;
	}
}

/* ---- connecting ---- */

static int fail(struct hc_err *err, int e, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct hc_err *err, int e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	hc_err_vset(err, -e, fmt, ap);
	va_end(ap);
	errno = e;
	return -e;
}

/* Splits "http://HOST:PORT/PATH". */
static int parse_url(const char *url, char *host, size_t hostlen, char *port, char *path,
		     size_t pathlen)
{
	const char *h, *end, *slash;

	if (strncmp(url, "http://", 7) != 0)
		return -EINVAL;
	h = url + 7;
	slash = strchr(h, '/');
	snprintf(path, pathlen, "%s", slash ? slash : "/");
	end = slash ? slash : h + strlen(h);
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(end - h));

		if (!rb || (size_t)(rb - h - 1) >= hostlen)
			return -EINVAL;
		snprintf(host, hostlen, "%.*s", (int)(rb - h - 1), h + 1);
		h = rb + 1;
		if (h < end && *h != ':')
			return -EINVAL;
	} else {
		const char *colon = memchr(h, ':', (size_t)(end - h));
		const char *hend = colon ? colon : end;

		if (hend == h || (size_t)(hend - h) >= hostlen)
			return -EINVAL;
		snprintf(host, hostlen, "%.*s", (int)(hend - h), h);
		h = hend;
	}
	if (h < end && *h == ':') {
		if (end - h - 1 < 1 || end - h - 1 > 5)
			return -EINVAL;
		snprintf(port, 6, "%.*s", (int)(end - h - 1), h + 1);
	} else {
		snprintf(port, 6, "80");
	}
	return 0;
}

static int dial(const char *host, const char *port, const struct timespec *deadline)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai, *a;
	int fd = -1, e = ECONNREFUSED;

	if (getaddrinfo(host, port, &hints, &ai) != 0)
		return -EHOSTUNREACH;
	for (a = ai; a; a = a->ai_next) {
		socklen_t elen = sizeof(e);

		fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			e = errno;
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 ||
		    (errno == EINPROGRESS && hc_deadline_wait_fd(fd, POLLOUT, deadline) == 0 &&
		     getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) == 0 && e == 0))
			break;
		if (errno != EINPROGRESS)
			e = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd >= 0 ? fd : -e;
}

/* The value of header name in the response head, into buf. */
static int header_value(const char *head, const char *name, char *buf, size_t len)
{
	size_t nlen = strlen(name);

	for (const char *line = strstr(head, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
		const char *p = line + 2, *eol = strstr(p, "\r\n");

		if (!eol || strncasecmp(p, name, nlen) != 0 || p[nlen] != ':')
			continue;
		p += nlen + 1;
		while (*p == ' ' || *p == '\t')
			p++;
		while (eol > p && (eol[-1] == ' ' || eol[-1] == '\t'))
			eol--;
		snprintf(buf, len, "%.*s", (int)(eol - p), p);
		return 0;
	}
	return -ENOENT;
}

static void expected_accept(const char *key, char out[64])
{
	char joined[128];
	unsigned char sha[SHA_DIGEST_LENGTH];

	snprintf(joined, sizeof(joined), "%s%s", key, WS_GUID);
	SHA1((const unsigned char *)joined, strlen(joined), sha);
	EVP_EncodeBlock((unsigned char *)out, sha, SHA_DIGEST_LENGTH);
}

static int handshake(struct hc_ws *ws, const char *host, const char *port, const char *path,
		     const char *subprotocol, const struct timespec *deadline, struct hc_err *err)
{
	unsigned char nonce[16];
	char key[32], accept[64], got[128], req[1024], *head = NULL, *end;
	size_t len = 0;
	int n, r;

	if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
		return fail(err, EIO, "%s", "no random bytes for the WebSocket key");
	EVP_EncodeBlock((unsigned char *)key, nonce, sizeof(nonce));
	n = snprintf(req, sizeof(req),
		     "GET %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
		     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
		     path, strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port,
		     key, subprotocol);
	if (n < 0 || (size_t)n >= sizeof(req))
		return fail(err, EINVAL, "%s", "streaming URL too long");
	r = hc_send_all(ws->fd, req, (size_t)n, NULL);
	if (r < 0)
		return fail(err, -r, "cannot send the upgrade request: %s", strerror(-r));
	head = malloc(MAX_HEADERS + 1);
	if (!head)
		return fail(err, ENOMEM, "%s", "out of memory");
	/* read the response head; bytes after it already belong to frames */
	for (;;) {
		ssize_t got_n;

		r = hc_deadline_wait_fd(ws->fd, POLLIN, deadline);
		if (r < 0) {
			free(head);
			return fail(err, -r, "streaming server: %s", strerror(-r));
		}
		got_n = read(ws->fd, head + len, MAX_HEADERS - len);
		if (got_n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got_n <= 0) {
			free(head);
			return fail(err, ECONNRESET, "%s",
				    "the streaming server closed the connection during the upgrade");
		}
		len += (size_t)got_n;
		head[len] = '\0';
		end = strstr(head, "\r\n\r\n");
		if (end)
			break;
		if (len == MAX_HEADERS) {
			free(head);
			return fail(err, EPROTO, "%s", "the streaming server's answer is too long");
		}
	}
	end[2] = '\0'; /* keep the last header's CRLF for header_value */
	if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
		char *eol = strstr(head, "\r\n");

		if (eol)
			*eol = '\0';
		r = fail(err, EPROTO, "streaming server answered \"%.100s\"", head);
		goto out;
	}
	expected_accept(key, accept);
	if (header_value(head, "Sec-WebSocket-Accept", got, sizeof(got)) < 0 ||
	    strcmp(got, accept) != 0) {
		r = fail(err, EPROTO, "%s", "the streaming server's Sec-WebSocket-Accept is wrong");
		goto out;
	}
	if (header_value(head, "Sec-WebSocket-Protocol", got, sizeof(got)) < 0 ||
	    strcmp(got, subprotocol) != 0) {
		r = fail(err, EPROTO, "the streaming server did not accept protocol %s",
			 subprotocol);
		goto out;
	}
	{
		size_t extra = len - (size_t)(end + 4 - head);

		/* never NULL from here on: the parsers do arithmetic on it */
		ws->rcap = extra > 4096 ? extra : 4096;
		ws->rbuf = malloc(ws->rcap);
		if (!ws->rbuf) {
			r = fail(err, ENOMEM, "%s", "out of memory");
			goto out;
		}
		memcpy(ws->rbuf, end + 4, extra);
		ws->rlen = extra;
	}
	r = 0;
out:
	free(head);
	return r;
}

struct hc_ws *hc_ws_connect(const char *url, const char *subprotocol, int timeout_ms,
			    struct hc_err *err)
{
	char host[256], port[6], path[1024];
	struct timespec deadline;
	struct hc_ws *ws;
	int fd, flags;

	if (parse_url(url, host, sizeof(host), port, path, sizeof(path)) < 0) {
		fail(err, EINVAL, "unusable streaming URL %.200s", url);
		return NULL;
	}
	hc_deadline_in(&deadline, timeout_ms);
	fd = dial(host, port, &deadline);
	if (fd < 0) {
		fail(err, -fd, "cannot connect to the streaming server: %s", strerror(-fd));
		return NULL;
	}
	ws = calloc(1, sizeof(*ws));
	if (!ws) {
		close(fd);
		fail(err, ENOMEM, "%s", "out of memory");
		return NULL;
	}
	ws->fd = fd;
	if (handshake(ws, host, port, path, subprotocol, &deadline, err) < 0) {
		int e = errno;

		hc_ws_free(ws);
		errno = e;
		return NULL;
	}
	/* from here on, reads block and writes wait in hc_send_all */
	flags = fcntl(fd, F_GETFL);
	if (flags >= 0)
		fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
	return ws;
}

void hc_ws_free(struct hc_ws *ws)
{
	if (!ws)
		return;
	if (ws->fd >= 0)
		close(ws->fd);
	free(ws->rbuf);
	free(ws->msg);
	free(ws);
}
