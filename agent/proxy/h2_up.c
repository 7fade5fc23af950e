/*
 * The backends of HTTP/2 streams (h2.c routes them here).
 *
 * HTTP/1.1, the default: each stream is one request on a connection of its
 * own (kept idle by the client connection afterwards, when clean, for its
 * next stream to the same backend): the request goes as an HTTP/1.1 head
 * (built by h2.c) and its DATA, chunked when no content-length says its
 * length; the response head becomes the stream's HEADERS and its body,
 * decoded from its length or chunks, DATA.
 *
 * h2c, for routes and workload ports that say so (gRPC): one connection per
 * client connection and backend address, shared by its streams, each
 * client stream a stream there with its fields, DATA and trailers passed on
 * as they are, RST_STREAM passed both ways. Windows do the bounding: a
 * backend's DATA is given back to its window only as the client's data
 * source takes it, and the client's as the backend's takes it.
 */
#define HC_LOG_MODULE "proxy"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "proxy/h2.h"

#define READ_CHUNK 16384

/* ---- sockets ---- */

static bool same_addr(const struct hc_ipaddr *a, uint16_t aport, const struct hc_route_val *val)
{
	if (aport != val->port || a->family != val->backend.family)
		return false;
	if (a->family == HC_AF_INET)
		return a->ip4 == val->backend.ip4;
	return memcmp(a->ip6, val->backend.ip6, sizeof(a->ip6)) == 0;
}

/* A non-blocking connect to val's backend, charged to the proxy's
 * descriptor budget: the fd, or -errno. */
static int backend_connect(struct hc_proxy *p, const struct hc_route_val *val)
{
	struct sockaddr_storage ss;
	socklen_t len = hc_proxy_backend_sockaddr(val, &ss);
	int fd, one = 1;

	if (atomic_fetch_add(&p->fds_used, 1) >= p->cfg.max_fds && p->cfg.max_fds) {
		atomic_fetch_sub(&p->fds_used, 1);
		return -EMFILE;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS)) {
		int e = -errno;

		if (fd >= 0)
			close(fd);
		atomic_fetch_sub(&p->fds_used, 1);
		return e;
	}
	atomic_fetch_add(&p->stats.backend_new, 1);
	return fd;
}

/* Whether a connection being made is up: after its first writable edge. */
static int check_connected(struct hc_h2_sock *s)
{
	int soerr = 0;
	socklen_t sl = sizeof(soerr);

	if (s->connected)
		return 1;
	if (!s->wr)
		return 0;
	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		soerr = errno;
	if (soerr)
		return -soerr;
	s->connected = true;
	return 1;
}

/* ---- HTTP/1.1 backends: their connections ---- */

/* Closes b: it served its stream (cut short, or not clean), or died idle. */
static void h1_close(struct hc_h2_h1 *b)
{
	if (b->st)
		b->st->h1 = NULL;
	b->st = NULL;
	hc_h2_sock_kill(&b->s);
}

/* An idle connection to val's backend (the backend has not closed it: that
 * would have been an event, and closed it), or NULL. */
static struct hc_h2_h1 *idle_take(struct hc_h2 *h, const struct hc_route_val *val)
{
	for (unsigned i = h->nidle; i-- > 0;) {
		struct hc_h2_h1 *b = h->idle[i];

		if (same_addr(&b->addr, b->port, val)) {
			h->idle[i] = h->idle[--h->nidle];
			atomic_fetch_add(&h->c->w->p->stats.backend_reused, 1);
			return b;
		}
	}
	return NULL;
}

/* Keeps a clean connection for the next stream to the same backend
 * (unless --no-proxy-backend-reuse). */
static void idle_put(struct hc_h2_stream *st)
{
	struct hc_h2 *h = st->h2;
	struct hc_h2_h1 *b = st->h1;

	if (h->nidle == HC_H2_IDLE_BACKENDS || !h->c->w->p->cfg.backend_reuse) {
		h1_close(b);
		return;
	}
	b->st = NULL;
	b->idle_since_ms = h->c->w->now_ms;
	st->h1 = NULL;
	h->idle[h->nidle++] = b;
}

uint64_t hc_h2_up_idle_expire(struct hc_h2 *h, uint64_t now_ms)
{
	uint64_t next = UINT64_MAX;

	for (unsigned i = 0; i < h->nidle;) {
		struct hc_h2_h1 *b = h->idle[i];
		uint64_t due = b->idle_since_ms + HC_PROXY_IDLE_MS;

		if (due <= now_ms) {
			h->idle[i] = h->idle[--h->nidle];
			h1_close(b);
			continue;
		}
		if (due < next)
			next = due;
		i++;
	}
	return next;
}

void hc_h2_up_idle_close(struct hc_h2 *h)
{
	while (h->nidle)
		h1_close(h->idle[--h->nidle]);
}

void hc_h2_up_sock_event(struct hc_h2_sock *s, unsigned events)
{
	struct hc_h2_h1 *b = (struct hc_h2_h1 *)s;
	struct hc_h2 *h = s->h2;

	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		s->rd = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		s->wr = true;
	if (s->link || b->st || !(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
		return;
	/* idle: the backend closed it, or sent what nobody asked for */
	for (unsigned i = 0; i < h->nidle; i++) {
		if (h->idle[i] == b) {
			h->idle[i] = h->idle[--h->nidle];
			break;
		}
	}
	h1_close(b);
}

/* ---- HTTP/1.1 backends: the response ---- */

/* Dechunking states (RFC 9112 7.1). */
enum { DC_SIZE, DC_EXT, DC_SIZE_LF, DC_DATA, DC_DATA_CR, DC_DATA_LF, DC_TRAILER, DC_TRAILER_LF };

int hc_h2_dechunk(struct hc_h2_dechunk *d, const char *in, size_t len, size_t *used,
		  struct hc_h2_bq *out)
{
	size_t i = 0;

	while (i < len) {
		char ch = in[i];

		switch (d->state) {
		case DC_SIZE:
			if (isxdigit((unsigned char)ch) && d->count < 16) {
				d->left = d->left * 16 + (uint64_t)(isdigit((unsigned char)ch)
									? ch - '0'
									: (tolower(ch) - 'a' + 10));
				d->count++;
			} else if (d->count && (ch == ';' || ch == ' ' || ch == '\t')) {
				d->state = DC_EXT;
			} else if (d->count && ch == '\r') {
				d->state = DC_SIZE_LF;
			} else {
				return -EPROTO;
			}
			i++;
			break;
		case DC_EXT:
			if (ch == '\r')
				d->state = DC_SIZE_LF;
			else if (ch == '\n' || ++d->count > HC_HTTP_CHUNK_EXT_MAX)
				return -EPROTO;
			i++;
			break;
		case DC_SIZE_LF:
			if (ch != '\n')
				return -EPROTO;
			i++;
			d->count = 0;
			d->state = d->left ? DC_DATA : DC_TRAILER;
			break;
		case DC_DATA: {
			size_t n = len - i < d->left ? len - i : (size_t)d->left;

			if (hc_h2_bq_put(out, in + i, n) < 0)
				return -ENOMEM;
			i += n;
			d->left -= n;
			if (!d->left)
				d->state = DC_DATA_CR;
			break;
		}
		case DC_DATA_CR:
		case DC_DATA_LF:
			if (ch != (d->state == DC_DATA_CR ? '\r' : '\n'))
				return -EPROTO;
			d->state = d->state == DC_DATA_CR ? DC_DATA_LF : DC_SIZE;
			i++;
			break;
		case DC_TRAILER: /* trailer fields are dropped: HTTP/1.1 backends rarely send them */
			if (ch == '\r')
				d->state = DC_TRAILER_LF;
			else if (ch == '\n' || ++d->count > HC_HTTP_HEAD_MAX)
				return -EPROTO;
			i++;
			break;
		case DC_TRAILER_LF:
			if (ch != '\n')
				return -EPROTO;
			i++;
			if (d->count == 0) {
				*used = i;
				return 1;
			}
			d->count = 0;
			d->state = DC_TRAILER;
			break;
		}
	}
	*used = i;
	return 0;
}

/* The response head's fields for the client: names lower-cased, hop-by-hop
 * ones left out (the head was checked by hc_http_response_parse). */
static int head_fields(struct hc_h2_stream *st, const char *head, size_t len, unsigned status)
{
	const char *p = memchr(head, '\n', len), *end = head + len;
	char code[8], name[256];
	int n = snprintf(code, sizeof(code), "%u", status);

	hc_h2_fields_free(&st->resp_fields);
	if (hc_h2_fields_add(&st->resp_fields, ":status", 7, code, (size_t)n) < 0)
		return -ENOMEM;
	for (p = p ? p + 1 : end; p < end;) {
		const char *eol = memchr(p, '\r', (size_t)(end - p)), *colon, *v, *ve;
		size_t nl;

		if (!eol || eol == p)
			break;
		colon = memchr(p, ':', (size_t)(eol - p));
		nl = colon ? (size_t)(colon - p) : 0;
		if (colon && nl < sizeof(name)) {
			for (size_t i = 0; i < nl; i++)
				name[i] = (char)tolower((unsigned char)p[i]);
			name[nl] = '\0';
			for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
				;
			for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
				;
			if (strcmp(name, "connection") && strcmp(name, "keep-alive") &&
			    strcmp(name, "proxy-connection") && strcmp(name, "transfer-encoding") &&
			    strcmp(name, "upgrade") &&
			    hc_h2_fields_add(&st->resp_fields, name, nl, v, (size_t)(ve - v)) < 0)
				return -ENOMEM;
		}
		p = eol + 2;
	}
	return 0;
}

/* The exchange is over: the connection goes idle if clean, else closes.
 * A backend may answer before it read the whole request (a 405, a 413):
 * the rest of the request then goes nowhere, and must not wait here for a
 * backend that is gone, holding the client's windows. */
static void h1_done(struct hc_h2_stream *st)
{
	bool sent = st->req_end && !st->req.len && !st->req_chunked;

	st->resp_end = true;
	hc_h2_resp_ready(st);
	if (!sent)
		hc_h2_req_discard(st);
	if (st->up_keep && sent && !st->raw.len)
		idle_put(st);
	else
		h1_close(st->h1);
}

static int h1_head(struct hc_h2_stream *st)
{
	struct hc_http_response r;
	int rc = hc_http_response_parse(st->raw.p + st->raw.off, st->raw.len, &r);

	if (rc == HC_PARSE_MORE)
		return 0;
	if (rc != HC_PARSE_OK || r.status == 101)
		return -EPROTO;
	if (r.status < 200) { /* interim: the request still waits */
		hc_h2_bq_drop(&st->raw, r.head_len);
		return 1;
	}
	if (head_fields(st, st->raw.p + st->raw.off, r.head_len, r.status) < 0)
		return -ENOMEM;
	st->body_kind = hc_http_response_body(&r, st->head_method, &st->body_left);
	hc_http_body_init(&st->framer, st->body_kind, st->body_left);
	st->up_keep = !r.close && !r.http10 && st->body_kind != HC_BODY_CLOSE;
	hc_h2_bq_drop(&st->raw, r.head_len);
	st->head_done = true;
	if (hc_h2_submit_response(st, st->body_kind == HC_BODY_NONE) < 0)
		return -EPROTO;
	if (st->body_kind == HC_BODY_NONE)
		h1_done(st);
	return 1;
}

/* Moves the body read so far into the stream's payload. */
static int h1_body(struct hc_h2_stream *st)
{
	size_t used = 0;
	int rc;

	if (!st->raw.len)
		return 0;
	switch (st->body_kind) {
	case HC_BODY_LENGTH:
		used = st->raw.len < st->body_left ? st->raw.len : (size_t)st->body_left;
		if (hc_h2_bq_put(&st->resp, st->raw.p + st->raw.off, used) < 0)
			return -ENOMEM;
		st->body_left -= used;
		rc = st->body_left == 0;
		break;
	case HC_BODY_CHUNKED: {
		/* the framer judges (exactly as for HTTP/1.1 clients); the
		 * decoder only takes the data out, and must end where it does */
		size_t framed = 0;
		int fr = hc_http_body_feed(&st->framer, st->raw.p + st->raw.off, st->raw.len, &framed);

		if (fr == HC_PARSE_INVALID)
			return -EPROTO;
		rc = hc_h2_dechunk(&st->dc, st->raw.p + st->raw.off, framed, &used, &st->resp);
		if (rc < 0 || used != framed || rc != (fr == HC_PARSE_OK))
			return rc == -ENOMEM ? rc : -EPROTO;
		break;
	}
	default: /* until the close */
		used = st->raw.len;
		if (hc_h2_bq_put(&st->resp, st->raw.p + st->raw.off, used) < 0)
			return -ENOMEM;
		rc = 0;
		break;
	}
	hc_h2_bq_drop(&st->raw, used);
	hc_h2_resp_ready(st);
	if (rc == 1) {
		if (st->raw.len)
			st->up_keep = false; /* bytes after the response: not clean */
		h1_done(st);
	}
	return 1;
}

static int h1_decode(struct hc_h2_stream *st)
{
	int rc;

	while (st->h1 && st->raw.len) {
		rc = st->head_done ? h1_body(st) : h1_head(st);
		if (rc <= 0)
			return rc;
	}
	return 0;
}

/* The backend closed its side. */
static int h1_eof(struct hc_h2_stream *st)
{
	if (st->head_done && st->body_kind == HC_BODY_CLOSE) {
		st->up_keep = false;
		h1_done(st);
		return 0;
	}
	return -ECONNRESET;
}

/* The backend failed: a 502 if nothing of the response went out, else a
 * reset of the stream (the client must not take a cut body for whole). */
static void h1_fail(struct hc_h2_stream *st, int err)
{
	hc_log(HC_LOG_DEBUG, "HTTP/2 stream for %s: backend: %s", st->route_host, strerror(-err));
	if (st->h1)
		h1_close(st->h1);
	atomic_fetch_add(&st->h2->c->w->p->stats.errors[HC_PROXY_ERR_BAD_GATEWAY], 1);
	st->kind = HC_H2_UP_NONE;
	hc_h2_answer(st, 502, "The backend did not answer.");
}

/* No replay any more (a byte of answer came, or the request outgrew what
 * is kept): what was kept of the request for it goes. */
static void replay_end(struct hc_h2_stream *st)
{
	st->replay = false;
	hc_h2_bq_drop(&st->req, st->req_sent);
	st->req_sent = 0;
}

/* n more bytes of the request went to the backend: given back to the
 * client's windows (all that is left once nothing waits: the head's and
 * chunk sizes' bytes are not the client's), and dropped unless kept for a
 * replay. */
static void req_sent(struct hc_h2_stream *st, size_t n)
{
	st->req_sent += n;
	if (!st->replay || st->req_sent > HC_H2_REPLAY_MAX)
		replay_end(st);
	hc_h2_consume(st, st->req.len > st->req_sent ? n : st->req_unconsumed);
}

static int h1_send(struct hc_h2_stream *st)
{
	int moved = 0;

	struct hc_h2_sock *s = &st->h1->s;

	while (st->req.len > st->req_sent && s->wr && !st->h1->send_failed) {
		ssize_t n = send(s->fd, st->req.p + st->req.off + st->req_sent,
				 st->req.len - st->req_sent, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				s->wr = false;
				break;
			}
			return -errno;
		}
		req_sent(st, (size_t)n);
		moved = 1;
	}
	return moved;
}

static int h1_recv(struct hc_h2_stream *st)
{
	char buf[READ_CHUNK];
	int moved = 0, rc;

	while (st->h1 && st->h1->s.rd && st->resp.len < HC_H2_STREAM_WINDOW) {
		struct hc_h2_sock *s = &st->h1->s;
		ssize_t n = recv(s->fd, buf, sizeof(buf), 0);

		if (n < 0) {
			if ((errno == EAGAIN || errno == EWOULDBLOCK) && !st->h1->send_failed) {
				s->rd = false;
				break;
			}
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ECONNRESET : -errno;
		}
		if (n == 0)
			return h1_eof(st);
		/* short: the socket's queue was emptied (TCP), no EAGAIN call */
		if ((size_t)n < sizeof(buf))
			s->rd = false;
		if (st->replay)
			replay_end(st); /* the backend answers: never sent twice */
		st->last_ms = st->h2->c->w->now_ms;
		if (hc_h2_bq_put(&st->raw, buf, (size_t)n) < 0)
			return -ENOMEM;
		if (!st->head_done && st->raw.len > HC_HTTP_RESPONSE_HEAD_MAX)
			return -E2BIG;
		if ((rc = h1_decode(st)) < 0)
			return rc;
		moved = 1;
	}
	return moved;
}

static struct hc_h2_h1 *h1_new(struct hc_h2 *h, const struct hc_route_val *val);

/* The reused connection was closed under the request before a byte of
 * answer (the backend closed it idle just as we took it): the request goes
 * again, once, on a new connection, when it may (st->replay). Whether it
 * did. */
static bool h1_retry(struct hc_h2_stream *st, int err)
{
	struct hc_h2_h1 *b;

	if (!st->replay || (err != -ECONNRESET && err != -EPIPE))
		return false;
	h1_close(st->h1);
	st->replay = false;
	st->reused = false;
	st->req_sent = 0; /* all of it again: nothing was dropped */
	b = h1_new(st->h2, &st->val);
	if (!b)
		return false;
	atomic_fetch_add(&st->h2->c->w->p->stats.backend_retries, 1);
	hc_log(HC_LOG_DEBUG, "HTTP/2 stream for %s: reused backend connection closed, retrying",
	       st->route_host);
	b->st = st;
	st->h1 = b;
	return true;
}

static int h1_step(struct hc_h2_stream *st)
{
	int moved = 0, rc;

	if (!st->h1)
		return 0;
	rc = check_connected(&st->h1->s);
	if (rc <= 0)
		goto out;
	rc = h1_send(st);
	if (rc == -EPIPE || rc == -ECONNRESET) {
		/* the backend stopped reading, maybe having answered first (and
		 * closed on the rest of the body): its answer is read before the
		 * failure counts; the socket is closed, reads do not wait */
		st->h1->send_failed = true;
		st->h1->s.rd = true;
		rc = 1;
	}
	if (rc < 0)
		goto out;
	moved |= rc;
	if ((rc = h1_recv(st)) < 0)
		goto out;
	return moved | rc;
out:
	if (rc < 0) {
		if (!h1_retry(st, rc))
			h1_fail(st, rc);
		return 1;
	}
	return moved;
}

/* A new connection to val's backend, watched. NULL with errno set. */
static struct hc_h2_h1 *h1_new(struct hc_h2 *h, const struct hc_route_val *val)
{
	struct hc_h2_h1 *b = calloc(1, sizeof(*b));
	int fd;

	if (!b)
		return NULL;
	fd = backend_connect(h->c->w->p, val);
	if (fd < 0) {
		free(b);
		errno = -fd;
		return NULL;
	}
	b->s.fd = fd;
	b->s.charged = true;
	b->s.h2 = h;
	b->addr = val->backend;
	b->port = val->port;
	if (hc_h2_watch(&b->s) < 0) {
		hc_h2_sock_close_fd(&b->s);
		free(b);
		errno = EIO;
		return NULL;
	}
	return b;
}

static int h1_start(struct hc_h2_stream *st)
{
	struct hc_h2 *h = st->h2;
	struct hc_h2_h1 *b = idle_take(h, &st->val);

	st->reused = b != NULL;
	st->replay = st->reused && st->idempotent;
	if (!b && !(b = h1_new(h, &st->val)))
		return -errno;
	b->st = st;
	st->h1 = b;
	/* a pooled one is writable (its edge came long ago) and has nothing
	 * to read (else it was closed) */
	b->s.wr = st->reused;
	b->s.rd = false;
	hc_h2_up_request_more(st);
	return 0;
}

/* ---- h2c backends ---- */

static struct hc_h2_stream *link_stream(struct hc_h2_link *l, int32_t id)
{
	return nghttp2_session_get_stream_user_data(l->ng, id);
}

static int link_on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
			  size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *arg)
{
	struct hc_h2_stream *st = link_stream(arg, frame->hd.stream_id);
	struct hc_h2_fields *f;

	(void)ng, (void)flags;
	if (!st || frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	f = st->resp_started ? &st->resp_trailers : &st->resp_fields;
	if (f->size + nlen + vlen + 32 > HC_H2_HEADER_LIST_MAX)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the backend's stream is reset */
	return hc_h2_fields_add(f, (const char *)name, nlen, (const char *)value, vlen) < 0
		       ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
		       : 0;
}

static int link_on_frame(nghttp2_session *ng, const nghttp2_frame *frame, void *arg)
{
	struct hc_h2_stream *st = link_stream(arg, frame->hd.stream_id);
	bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;

	(void)ng;
	if (!st || (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA))
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && !st->resp_started) {
		const char *status = st->resp_fields.b.p + st->resp_fields.b.off;

		/* the first field is :status (nghttp2 checks responses) */
		if (status[strlen(status) + 1] == '1') {
			hc_h2_fields_free(&st->resp_fields); /* interim */
			return 0;
		}
		if (end)
			st->resp_end = true;
		if (hc_h2_submit_response(st, end) < 0)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		return 0;
	}
	if (end) {
		st->resp_end = true;
		hc_h2_resp_ready(st);
	}
	return 0;
}

static int link_on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
			size_t len, void *arg)
{
	struct hc_h2_stream *st = link_stream(arg, id);

	(void)flags;
	if (!st || st->client_closed) {
		nghttp2_session_consume(ng, id, len);
		return 0;
	}
	if (hc_h2_bq_put(&st->resp, data, len) < 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	st->resp_unconsumed += len;
	st->last_ms = st->h2->c->w->now_ms;
	hc_h2_resp_ready(st);
	return 0;
}

/* The backend's stream ended: cleanly (the response is whole) or reset,
 * which resets the client's stream with the same code (gRPC cancellation
 * and deadlines both ways). */
static int link_on_close(nghttp2_session *ng, int32_t id, uint32_t code, void *arg)
{
	struct hc_h2_stream *st = link_stream(arg, id);

	if (!st)
		return 0;
	nghttp2_session_set_stream_user_data(ng, id, NULL);
	st->up_id = 0;
	if (st->client_closed)
		return 0;
	hc_h2_req_discard(st); /* nothing more of the request goes there */
	if (code == NGHTTP2_NO_ERROR && st->resp_started) {
		st->resp_end = true;
		hc_h2_resp_ready(st);
	} else if (!st->resp_started && code == NGHTTP2_NO_ERROR) {
		hc_h2_answer(st, 502, "The backend did not answer.");
	} else {
		nghttp2_submit_rst_stream(st->h2->ng, NGHTTP2_FLAG_NONE, st->id, code);
	}
	return 0;
}

/* The backend's data source: the client's DATA as it comes. */
static ssize_t read_req(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
			uint32_t *data_flags, nghttp2_data_source *src, void *arg)
{
	struct hc_h2_stream *st = src->ptr;
	size_t before = st->req.len;
	ssize_t r = hc_h2_source_read(ng, id, &st->req, st->req_end, &st->req_trailers,
				      &st->up_deferred, buf, len, data_flags);

	(void)arg;
	hc_h2_consume(st, before - st->req.len);
	return r;
}

static struct hc_h2_link *link_new(struct hc_h2 *h, const struct hc_route_val *val)
{
	nghttp2_session_callbacks *cb = NULL;
	nghttp2_option *opt = NULL;
	const nghttp2_settings_entry settings[] = {
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, HC_H2_STREAM_WINDOW},
		{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HC_H2_HEADER_LIST_MAX},
	};
	struct hc_h2_link *l = calloc(1, sizeof(*l));
	int fd;

	if (!l)
		return NULL;
	l->s.link = true;
	l->s.h2 = h;
	l->addr = val->backend;
	l->port = val->port;
	fd = backend_connect(h->c->w->p, val);
	if (fd < 0) {
		free(l);
		return NULL;
	}
	l->s.fd = fd;
	l->s.charged = true;
	if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
		goto fail;
	nghttp2_session_callbacks_set_on_header_callback(cb, link_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, link_on_frame);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, link_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, link_on_close);
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_max_continuations(opt, HC_H2_MAX_CONTINUATIONS);
	if (nghttp2_session_client_new2(&l->ng, cb, l, opt) != 0 ||
	    nghttp2_submit_settings(l->ng, NGHTTP2_FLAG_NONE, settings,
				    sizeof(settings) / sizeof(settings[0])) != 0 ||
	    nghttp2_session_set_local_window_size(l->ng, NGHTTP2_FLAG_NONE, 0, HC_H2_CONN_WINDOW) != 0 ||
	    hc_h2_watch(&l->s) < 0)
		goto fail;
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	l->next = h->links;
	h->links = l;
	return l;
fail:
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	if (l->ng)
		nghttp2_session_del(l->ng);
	hc_h2_sock_close_fd(&l->s);
	free(l);
	return NULL;
}

void hc_h2_up_link_free(struct hc_h2_link *l)
{
	if (l->ng)
		nghttp2_session_del(l->ng);
	hc_h2_bq_free(&l->out);
	free(l);
}

static struct hc_h2_link *link_get(struct hc_h2 *h, const struct hc_route_val *val)
{
	for (struct hc_h2_link *l = h->links; l; l = l->next)
		if (!l->failed && same_addr(&l->addr, l->port, val))
			return l;
	return link_new(h, val);
}

/* The request's fields for the backend: the client's (pseudo-fields and
 * te: trailers, which gRPC needs, included), ours for forwarding instead of
 * theirs. */
static int h2c_fields(struct hc_h2_stream *st, struct hc_h2_fields *out)
{
	const struct hc_h2_fields *f = &st->req_fields;
	struct hc_proxy_conn *c = st->h2->c;
	bool fwd = c->w->p->cfg.forwarded_headers;
	const char *p = f->b.p ? f->b.p + f->b.off : NULL;

	for (unsigned i = 0; i < f->n; i++) {
		const char *v = p + strlen(p) + 1;
		bool theirs = fwd && (strcmp(p, "x-forwarded-for") == 0 ||
				      strcmp(p, "x-forwarded-proto") == 0 || strcmp(p, "forwarded") == 0);

		if (!theirs && hc_h2_fields_add(out, p, strlen(p), v, strlen(v)) < 0)
			return -ENOMEM;
		p = v + strlen(v) + 1;
	}
	if (!fwd)
		return 0;
	if (!c->fwd_len)
		hc_proxy_forwarded_lines(c);
	/* c->fwd: "Name: value\r\n" lines */
	for (const char *l = c->fwd, *end = c->fwd + c->fwd_len; l < end;) {
		const char *colon = memchr(l, ':', (size_t)(end - l)), *eol;
		char name[32];
		size_t nl;

		if (!colon || !(eol = memchr(colon, '\r', (size_t)(end - colon))))
			break;
		nl = (size_t)(colon - l) < sizeof(name) ? (size_t)(colon - l) : sizeof(name) - 1;
		for (size_t i = 0; i < nl; i++)
			name[i] = (char)tolower((unsigned char)l[i]);
		if (hc_h2_fields_add(out, name, nl, colon + 2, (size_t)(eol - colon - 2)) < 0)
			return -ENOMEM;
		l = eol + 2;
	}
	return 0;
}

static int h2c_start(struct hc_h2_stream *st)
{
	struct hc_h2_link *l = link_get(st->h2, &st->val);
	nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_req};
	struct hc_h2_fields f = {0};
	nghttp2_nv *nv = NULL;
	int32_t id = -1;

	if (!l)
		return -EIO;
	if (h2c_fields(st, &f) == 0 && (nv = hc_h2_fields_nv(&f)))
		id = nghttp2_submit_request(l->ng, NULL, nv, f.n, st->req_end ? NULL : &prd, st);
	free(nv);
	hc_h2_fields_free(&f);
	if (id < 0)
		return -EIO;
	st->link = l;
	l->streams++;
	st->up_id = id;
	return 0;
}

static void link_fail(struct hc_h2_link *l)
{
	l->failed = true;
	for (struct hc_h2_stream *st = l->s.h2->streams; st; st = st->next) {
		if (st->link != l || st->client_closed)
			continue;
		if (st->up_id && !st->resp_end) {
			atomic_fetch_add(&st->h2->c->w->p->stats.errors[HC_PROXY_ERR_BAD_GATEWAY], 1);
			hc_h2_answer(st, 502, "The backend did not answer.");
		}
		st->up_id = 0;
	}
	hc_h2_sock_close_fd(&l->s);
}

static int link_in(struct hc_h2_link *l)
{
	char buf[READ_CHUNK];
	int moved = 0;

	while (l->s.rd && !l->failed) {
		ssize_t n = recv(l->s.fd, buf, sizeof(buf), 0), rv;

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			l->s.rd = false;
			break;
		}
		if (n <= 0)
			return -ECONNRESET;
		if ((size_t)n < sizeof(buf))
			l->s.rd = false; /* the queue was emptied */
		rv = nghttp2_session_mem_recv(l->ng, (const uint8_t *)buf, (size_t)n);
		if (rv < 0)
			return -EPROTO;
		moved = 1;
	}
	return moved;
}

static int link_out(struct hc_h2_link *l)
{
	int moved = hc_h2_encode(l->ng, &l->out);

	if (moved < 0)
		return moved;
	while (l->out.len && l->s.wr) {
		ssize_t n = send(l->s.fd, l->out.p + l->out.off, l->out.len, MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			l->s.wr = false;
			break;
		}
		if (n < 0)
			return -errno;
		hc_h2_bq_drop(&l->out, (size_t)n);
		moved = 1;
	}
	return moved;
}

int hc_h2_up_step_link(struct hc_h2_link *l)
{
	int moved = 0, rc;

	if (l->failed)
		return 0;
	rc = check_connected(&l->s);
	if (rc <= 0)
		goto out;
	if ((rc = link_in(l)) < 0)
		goto out;
	moved |= rc;
	if ((rc = link_out(l)) < 0)
		goto out;
	return moved | rc;
out:
	if (rc < 0) {
		hc_log(HC_LOG_DEBUG, "h2c backend connection: %s", strerror(-rc));
		link_fail(l);
		return 1;
	}
	return moved;
}

/* ---- both ---- */

int hc_h2_up_start(struct hc_h2_stream *st)
{
	return st->kind == HC_H2_UP_H2C ? h2c_start(st) : h1_start(st);
}

void hc_h2_up_request_more(struct hc_h2_stream *st)
{
	if (st->kind == HC_H2_UP_H1) {
		/* the last chunk ends a chunked body; trailers are not passed on */
		if (st->req_end && st->req_chunked) {
			if (hc_h2_bq_put(&st->req, "0\r\n\r\n", 5) == 0)
				st->req_chunked = false;
		}
		return;
	}
	if (st->kind == HC_H2_UP_H2C && st->up_id && st->up_deferred) {
		st->up_deferred = false;
		nghttp2_session_resume_data(st->link->ng, st->up_id);
	}
}

void hc_h2_up_resp_taken(struct hc_h2_stream *st, size_t n)
{
	if (st->kind != HC_H2_UP_H2C || !st->link || n > st->resp_unconsumed)
		return;
	st->resp_unconsumed -= n;
	if (st->up_id)
		nghttp2_session_consume(st->link->ng, st->up_id, n);
	else
		nghttp2_session_consume_connection(st->link->ng, n);
}

int hc_h2_up_step_stream(struct hc_h2_stream *st)
{
	return st->kind == HC_H2_UP_H1 ? h1_step(st) : 0;
}

void hc_h2_up_detach(struct hc_h2_stream *st)
{
	struct hc_h2_link *l = st->link;

	if (st->kind == HC_H2_UP_H1) {
		if (st->h1)
			h1_close(st->h1); /* cut short: the connection is not clean */
		return;
	}
	if (!l)
		return;
	if (st->up_id) {
		nghttp2_session_set_stream_user_data(l->ng, st->up_id, NULL);
		/* the client reset it, or left: the backend stops too */
		nghttp2_submit_rst_stream(l->ng, NGHTTP2_FLAG_NONE, st->up_id, NGHTTP2_CANCEL);
		st->up_id = 0;
	}
	if (st->resp_unconsumed && !l->failed)
		nghttp2_session_consume_connection(l->ng, st->resp_unconsumed);
	st->resp_unconsumed = 0;
	st->link = NULL;
	l->streams--;
}
