/*
 * HTTP/2 to clients: with TLS termination after ALPN h2, and on plain ports
 * after the h2c prior-knowledge preface. libnghttp2 does the framing, HPACK
 * and flow control; this file is the glue: one server session per client
 * connection, each stream routed by its :authority with the Host rules of
 * the HTTP/1.1 engine, and served by a backend (h2_up.c: HTTP/1.1 by
 * default, h2c for routes that say so).
 *
 * Memory stays bounded by flow control: the client's DATA is given back to
 * its windows (nghttp2_session_consume, no automatic WINDOW_UPDATE) only
 * once the backend took it, and a response is read from the backend only
 * while the stream's buffer is under HC_H2_STREAM_WINDOW (h2c backends: its
 * windows, given back as the client's data source takes the bytes).
 *
 * Everything runs on the worker's thread. The client socket and the backend
 * sockets are edge-triggered; any event runs the connection's pump, which
 * moves bytes until nothing moves (client in, backends, client out).
 *
 * Hardening (docs/proxy.md, docs/security.md): the settings we advertise
 * bound streams, header lists and windows; nghttp2 checks CONTINUATION
 * counts, SETTINGS entries and unread acknowledgements; token buckets here
 * count RST_STREAM (rapid reset), PING and SETTINGS from the client; header
 * lists over the limit get 431 and, repeated, GOAWAY (a decompression
 * bomb); idle streams are reset and idle connections ended on the worker's
 * timer wheel. Every refusal is counted by kind.
 */
#define HC_LOG_MODULE "proxy"

#include <errno.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "proxy/h2.h"

#define READ_CHUNK 16384
#define PUMP_ROUNDS 64

const char *const hc_h2_refusal_names[HC_H2_REFUSALS] = {
	[HC_H2_REFUSED_RAPID_RESET] = "rapid_reset",
	[HC_H2_REFUSED_CONTINUATION_FLOOD] = "continuation_flood",
	[HC_H2_REFUSED_HEADER_LIST] = "header_list_too_large",
	[HC_H2_REFUSED_HPACK_BOMB] = "hpack_bomb",
	[HC_H2_REFUSED_CONTROL_FLOOD] = "control_flood",
	[HC_H2_REFUSED_FLOOD] = "flood",
	[HC_H2_REFUSED_PROTOCOL] = "protocol_error",
	[HC_H2_REFUSED_STREAM_IDLE] = "stream_idle_timeout",
	[HC_H2_REFUSED_CONN_IDLE] = "connection_idle_timeout",
};

_Static_assert(HC_H2_REFUSALS <= 16, "stats.h2_refused holds every kind");

/* ---- byte queues and header fields ---- */

/*
 * A queue's first buffer is BQ_FIRST bytes: a stream's header fields fit,
 * and most of its request and response. A worker at -c32 -m32 frees and
 * takes about three of them a stream, a thousand streams live at once, and
 * glibc's per-thread cache keeps 7 of a size: the rest went through its
 * bins, malloc and free a twelfth of the worker's time. The worker's thread
 * keeps up to BQ_CACHE_MAX freed ones for its next streams instead (128
 * KiB at most; hc_h2_bq_cache_release gives them back).
 */
#define BQ_FIRST 1024
#define BQ_CACHE_MAX 128

struct bq_block {
	struct bq_block *next;
};

static __thread struct {
	struct bq_block *head;
	unsigned n;
} bq_cache;

static char *bq_block_get(void)
{
	struct bq_block *b = bq_cache.head;

	if (!b)
		return malloc(BQ_FIRST);
	bq_cache.head = b->next;
	bq_cache.n--;
	return (char *)b;
}

static void bq_block_put(char *p)
{
	struct bq_block *b = (struct bq_block *)(void *)p;

	if (bq_cache.n >= BQ_CACHE_MAX) {
		free(p);
		return;
	}
	b->next = bq_cache.head;
	bq_cache.head = b;
	bq_cache.n++;
}

void hc_h2_bq_cache_release(void)
{
	while (bq_cache.head) {
		struct bq_block *b = bq_cache.head;

		bq_cache.head = b->next;
		free(b);
	}
	bq_cache.n = 0;
}

int hc_h2_bq_put(struct hc_h2_bq *q, const void *data, size_t len)
{
	if (!len)
		return 0;
	if (q->off + q->len + len > q->cap && q->off) {
		memmove(q->p, q->p + q->off, q->len);
		q->off = 0;
	}
	if (q->len + len > q->cap) {
		size_t cap = q->cap ? q->cap : BQ_FIRST;
		char *p;

		while (cap < q->len + len)
			cap *= 2;
		p = q->cap == 0 && cap == BQ_FIRST ? bq_block_get() : realloc(q->p, cap);
		if (!p)
			return -ENOMEM;
		q->p = p;
		q->cap = cap;
	}
	memcpy(q->p + q->off + q->len, data, len);
	q->len += len;
	return 0;
}

void hc_h2_bq_drop(struct hc_h2_bq *q, size_t len)
{
	q->off += len;
	q->len -= len;
	if (!q->len)
		q->off = 0;
}

void hc_h2_bq_free(struct hc_h2_bq *q)
{
	if (q->cap == BQ_FIRST)
		bq_block_put(q->p);
	else
		free(q->p);
	memset(q, 0, sizeof(*q));
}

int hc_h2_fields_add(struct hc_h2_fields *f, const char *name, size_t nlen, const char *value,
		     size_t vlen)
{
	static const char nul;

	if (hc_h2_bq_put(&f->b, name, nlen) < 0 || hc_h2_bq_put(&f->b, &nul, 1) < 0 ||
	    hc_h2_bq_put(&f->b, value, vlen) < 0 || hc_h2_bq_put(&f->b, &nul, 1) < 0)
		return -ENOMEM;
	f->n++;
	f->size += nlen + vlen + 32;
	return 0;
}

nghttp2_nv *hc_h2_fields_nv(const struct hc_h2_fields *f)
{
	nghttp2_nv *nv = calloc(f->n ? f->n : 1, sizeof(*nv));
	const char *p = f->b.p ? f->b.p + f->b.off : NULL;

	if (!nv)
		return NULL;
	for (unsigned i = 0; i < f->n; i++) {
		nv[i].name = (uint8_t *)p;
		nv[i].namelen = strlen(p);
		p += nv[i].namelen + 1;
		nv[i].value = (uint8_t *)p;
		nv[i].valuelen = strlen(p);
		p += nv[i].valuelen + 1;
		nv[i].flags = NGHTTP2_NV_FLAG_NONE;
	}
	return nv;
}

void hc_h2_fields_free(struct hc_h2_fields *f)
{
	hc_h2_bq_free(&f->b);
	f->n = 0;
	f->size = 0;
}

/* ---- sockets of the backends ---- */

int hc_h2_watch(struct hc_h2_sock *s)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
				 .data.ptr = &s->h};

	s->h.kind = H_H2_UP;
	return epoll_ctl(s->h2->c->w->epfd, EPOLL_CTL_ADD, s->fd, &ev) < 0 ? -errno : 0;
}

void hc_h2_sock_close_fd(struct hc_h2_sock *s)
{
	struct hc_proxy *p;

	if (s->fd < 0)
		return;
	close(s->fd);
	s->fd = -1;
	if (s->charged) {
		p = s->h2->c->w->p;
		atomic_fetch_sub(&p->fds_used, 1);
		s->charged = false;
	}
}

void hc_h2_sock_kill(struct hc_h2_sock *s)
{
	struct hc_proxy_worker *w = s->h2->c->w;

	hc_h2_sock_close_fd(s);
	s->dead = true;
	s->next_dead = w->h2_dead;
	w->h2_dead = s;
}

static void stream_free(struct hc_h2_stream *st)
{
	hc_h2_fields_free(&st->req_fields);
	hc_h2_fields_free(&st->req_trailers);
	hc_h2_fields_free(&st->resp_fields);
	hc_h2_fields_free(&st->resp_trailers);
	hc_h2_bq_free(&st->req);
	hc_h2_bq_free(&st->resp);
	hc_h2_bq_free(&st->raw);
	hc_proxy_wl_put(st->wl);
	free(st);
}

void hc_proxy_h2_reap(struct hc_proxy_worker *w)
{
	while (w->h2_dead) {
		struct hc_h2_sock *s = w->h2_dead;

		w->h2_dead = s->next_dead;
		if (s->link)
			hc_h2_up_link_free((struct hc_h2_link *)s);
		else
			free(s); /* an hc_h2_h1: nothing more of its own */
	}
}

/* ---- counting and refusing ---- */

void hc_h2_refuse(struct hc_h2 *h, enum hc_h2_refusal why)
{
	atomic_fetch_add(&h->c->w->p->stats.h2_refused[why], 1);
}

/* GOAWAY with ENHANCE_YOUR_CALM: the client is abusing us. Streams open
 * now still finish; nothing new is read. */
static void calm_down(struct hc_h2 *h, enum hc_h2_refusal why)
{
	hc_h2_refuse(h, why);
	if (nghttp2_session_terminate_session(h->ng, NGHTTP2_ENHANCE_YOUR_CALM) != 0)
		h->failed = true;
}

/* Token buckets, refilled from the worker's clock. */
static void tokens_refill(struct hc_h2 *h)
{
	uint64_t now = h->c->w->now_ms;
	double s = (double)(now - h->tokens_ms) / 1000.0;

	h->tokens_ms = now;
	h->reset_tokens += s * HC_H2_RESET_RATE;
	if (h->reset_tokens > HC_H2_RESET_BURST)
		h->reset_tokens = HC_H2_RESET_BURST;
	h->control_tokens += s * HC_H2_CONTROL_RATE;
	if (h->control_tokens > HC_H2_CONTROL_BURST)
		h->control_tokens = HC_H2_CONTROL_BURST;
}

static bool take_token(struct hc_h2 *h, double *bucket)
{
	tokens_refill(h);
	if (*bucket < 1)
		return false;
	*bucket -= 1;
	return true;
}

/* ---- streams: the request ---- */

static struct hc_h2_stream *stream_of(struct hc_h2 *h, int32_t id)
{
	return id > 0 ? nghttp2_session_get_stream_user_data(h->ng, id) : NULL;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *arg)
{
	struct hc_h2 *h = arg;
	struct hc_h2_stream *st;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	st = calloc(1, sizeof(*st));
	if (!st)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset */
	st->h2 = h;
	st->id = frame->hd.stream_id;
	st->last_ms = h->c->w->now_ms;
	if (nghttp2_session_set_stream_user_data(ng, st->id, st) != 0) {
		free(st);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	st->next = h->streams;
	h->streams = st;
	atomic_fetch_add(&h->c->w->p->stats.h2_streams, 1);
	return 0;
}

/* Fields past the header list limit are not kept: the stream gets 431 once
 * its header block ends (HPACK still decodes the rest, to stay in sync). */
static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
		     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *arg)
{
	struct hc_h2_stream *st = stream_of(arg, frame->hd.stream_id);
	struct hc_h2_fields *f;

	(void)ng, (void)flags;
	if (!st || frame->hd.type != NGHTTP2_HEADERS || st->fields_too_large)
		return 0;
	f = frame->headers.cat == NGHTTP2_HCAT_REQUEST ? &st->req_fields : &st->req_trailers;
	if (f->size + nlen + vlen + 32 > HC_H2_HEADER_LIST_MAX) {
		st->fields_too_large = true;
		return 0;
	}
	return hc_h2_fields_add(f, (const char *)name, nlen, (const char *)value, vlen) < 0
		       ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
		       : 0;
}

static const char *field(const struct hc_h2_fields *f, const char *name)
{
	const char *p = f->b.p ? f->b.p + f->b.off : NULL;

	for (unsigned i = 0; i < f->n; i++) {
		const char *v = p + strlen(p) + 1;

		if (strcmp(p, name) == 0)
			return v;
		p = v + strlen(v) + 1;
	}
	return NULL;
}

/* Hop-by-hop fields (RFC 9110 7.6.1, RFC 9113 8.2.2) that never cross. */
static bool hop_by_hop(const char *name)
{
	static const char *const names[] = {"connection", "keep-alive", "proxy-connection",
					    "transfer-encoding", "upgrade", "te"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(name, names[i]) == 0)
			return true;
	return false;
}

static bool forwarded_field(const char *name)
{
	return strcmp(name, "x-forwarded-for") == 0 || strcmp(name, "x-forwarded-proto") == 0 ||
	       strcmp(name, "forwarded") == 0;
}

static int put_str(struct hc_h2_bq *q, const char *s)
{
	return hc_h2_bq_put(q, s, strlen(s));
}

/* The request as an HTTP/1.1 head (whether the backend speaks it or not:
 * parsing it back gives the host with exactly the Host rules, and checks
 * every field as an HTTP/1.1 request's would be). */
static int request_as_h1(struct hc_h2_stream *st, struct hc_h2_bq *q)
{
	const struct hc_h2_fields *f = &st->req_fields;
	struct hc_proxy_conn *c = st->h2->c;
	const char *method = field(f, ":method"), *path = field(f, ":path");
	const char *authority = field(f, ":authority"), *p = f->b.p ? f->b.p + f->b.off : NULL;
	bool cookie = false;
	int r = 0;

	if (!authority)
		authority = field(f, "host");
	if (!method || !path || !authority)
		return -EINVAL;
	r |= put_str(q, method) | put_str(q, " ") | put_str(q, path) | put_str(q, " HTTP/1.1\r\nHost: ") |
	     put_str(q, authority) | put_str(q, "\r\n");
	for (unsigned i = 0; i < f->n; i++) {
		const char *v = p + strlen(p) + 1;

		if (p[0] != ':' && strcmp(p, "host") != 0 && strcmp(p, "cookie") != 0 &&
		    !hop_by_hop(p) && !(c->w->p->cfg.forwarded_headers && forwarded_field(p)))
			r |= put_str(q, p) | put_str(q, ": ") | put_str(q, v) | put_str(q, "\r\n");
		p = v + strlen(v) + 1;
	}
	/* cookies may come as several fields: one line (RFC 9113 8.2.3) */
	p = f->b.p ? f->b.p + f->b.off : NULL;
	for (unsigned i = 0; i < f->n; i++) {
		const char *v = p + strlen(p) + 1;

		if (strcmp(p, "cookie") == 0) {
			r |= put_str(q, cookie ? "; " : "Cookie: ") | put_str(q, v);
			cookie = true;
		}
		p = v + strlen(v) + 1;
	}
	if (cookie)
		r |= put_str(q, "\r\n");
	if (c->w->p->cfg.forwarded_headers) {
		if (!c->fwd_len)
			hc_proxy_forwarded_lines(c);
		r |= hc_h2_bq_put(q, c->fwd, c->fwd_len);
	}
	/* a body of unknown length goes chunked */
	st->req_chunked = !st->req_end && !field(f, "content-length");
	if (st->req_chunked)
		r |= put_str(q, "Transfer-Encoding: chunked\r\n");
	r |= put_str(q, "\r\n");
	return r ? -ENOMEM : 0;
}

/* Where a stream for host goes: the connection's last answer for the same
 * name, or a lookup (remembered when it finds a route). */
static enum hc_proxy_answer route_cached(struct hc_h2_stream *st, const char *host)
{
	struct hc_h2 *h = st->h2;
	enum hc_proxy_answer a;

	if (h->last_host[0] && strcmp(host, h->last_host) == 0) {
		st->val = h->last_val;
		memcpy(st->route_host, h->last_route_host, sizeof(st->route_host));
		st->wl = h->last_wl;
		hc_proxy_wl_ref(st->wl);
		return A_NONE;
	}
	a = hc_proxy_route_host(h->c, host, &st->val, st->route_host);
	if (a != A_NONE)
		return a;
	st->wl = hc_proxy_workload(h->c->w->p, st->route_host);
	snprintf(h->last_host, sizeof(h->last_host), "%s", host);
	h->last_val = st->val;
	memcpy(h->last_route_host, st->route_host, sizeof(h->last_route_host));
	hc_proxy_wl_put(h->last_wl);
	h->last_wl = st->wl;
	hc_proxy_wl_ref(h->last_wl); /* the cache's own */
	return A_NONE;
}

/* Routes st and starts its backend, or answers it. */
static void stream_request(struct hc_h2_stream *st)
{
	struct hc_proxy_conn *c = st->h2->c;
	struct hc_http_head head;
	enum hc_proxy_answer a;
	struct hc_h2_bq q = {0};

	if (st->fields_too_large) {
		hc_h2_refuse(st->h2, HC_H2_REFUSED_HEADER_LIST);
		hc_h2_answer(st, 431, "The request's header list is too large.");
		if (++st->h2->big_headers >= HC_H2_BIG_HEADERS_MAX)
			calm_down(st->h2, HC_H2_REFUSED_HPACK_BOMB);
		return;
	}
	if (request_as_h1(st, &q) < 0 ||
	    hc_http_head_parse(q.p + q.off, q.len, &head) != HC_PARSE_OK || !head.host[0]) {
		hc_h2_bq_free(&q);
		atomic_fetch_add(&c->w->p->stats.errors[HC_PROXY_ERR_BAD_REQUEST], 1);
		hc_h2_answer(st, 400, "The request is malformed.");
		return;
	}
	st->head_method = head.head_method;
	/* the request line parsed: its method ends at a space */
	st->idempotent = hc_http_method_idempotent(
		q.p + q.off, (size_t)((const char *)memchr(q.p + q.off, ' ', q.len) - (q.p + q.off)));
	a = route_cached(st, head.host);
	if (a != A_NONE) {
		hc_h2_bq_free(&q);
		atomic_fetch_add(&c->w->p->stats.errors[a == A_MISDIRECTED ? HC_PROXY_ERR_MISDIRECTED
									 : HC_PROXY_ERR_NOT_FOUND],
				 1);
		if (a == A_MISDIRECTED)
			hc_h2_answer(st, 421, "This connection is for another name.");
		else
			hc_h2_answer(st, 404, "No workload or route answers for this name.");
		return;
	}
	st->kind = st->val.flags & HC_ROUTE_F_H2C ? HC_H2_UP_H2C : HC_H2_UP_H1;
	if (st->kind == HC_H2_UP_H1)
		st->req = q; /* the head goes first */
	else
		hc_h2_bq_free(&q);
	if (st->wl)
		atomic_fetch_add_explicit(&st->wl->requests, 1, memory_order_relaxed);
	st->req_started = true;
	if (hc_h2_up_start(st) < 0) {
		st->kind = HC_H2_UP_NONE;
		atomic_fetch_add(&c->w->p->stats.errors[HC_PROXY_ERR_BAD_GATEWAY], 1);
		hc_h2_answer(st, 502, "The backend did not answer.");
	}
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *arg)
{
	struct hc_h2 *h = arg;
	struct hc_h2_stream *st = stream_of(h, frame->hd.stream_id);
	bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;

	(void)ng;
	switch (frame->hd.type) {
	case NGHTTP2_HEADERS:
		if (!st)
			break;
		if (end)
			st->req_end = true;
		if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
			stream_request(st);
		else if (st->req_started)
			hc_h2_up_request_more(st); /* trailers: the end */
		break;
	case NGHTTP2_DATA:
		if (st && end) {
			st->req_end = true;
			if (st->req_started)
				hc_h2_up_request_more(st);
		}
		break;
	case NGHTTP2_RST_STREAM:
		if (!take_token(h, &h->reset_tokens))
			calm_down(h, HC_H2_REFUSED_RAPID_RESET);
		break;
	case NGHTTP2_PING:
	case NGHTTP2_SETTINGS:
		if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && !take_token(h, &h->control_tokens))
			calm_down(h, HC_H2_REFUSED_CONTROL_FLOOD);
		break;
	default:
		break;
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
			 size_t len, void *arg)
{
	struct hc_h2_stream *st = stream_of(arg, id);
	char size[24];
	int n, r = 0;

	(void)flags;
	if (!st || !st->req_started || st->kind == HC_H2_UP_NONE || st->req_discard) {
		/* answered, by us or the backend, or gone: the bytes go nowhere */
		nghttp2_session_consume(ng, id, len);
		return 0;
	}
	st->last_ms = st->h2->c->w->now_ms;
	st->req_unconsumed += len;
	if (st->kind == HC_H2_UP_H1 && st->req_chunked) {
		n = snprintf(size, sizeof(size), "%zx\r\n", len);
		r |= hc_h2_bq_put(&st->req, size, (size_t)n);
	}
	r |= hc_h2_bq_put(&st->req, data, len);
	if (st->kind == HC_H2_UP_H1 && st->req_chunked)
		r |= hc_h2_bq_put(&st->req, "\r\n", 2);
	if (r)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (st->wl)
		atomic_fetch_add_explicit(&st->wl->to_backend, len, memory_order_relaxed);
	hc_h2_up_request_more(st);
	return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *arg)
{
	struct hc_h2_stream *st = stream_of(arg, id);

	(void)code;
	if (!st)
		return 0;
	nghttp2_session_set_stream_user_data(ng, id, NULL);
	if (st->req_unconsumed)
		nghttp2_session_consume_connection(ng, st->req_unconsumed);
	st->req_unconsumed = 0;
	st->client_closed = true;
	hc_h2_up_detach(st);
	return 0;
}

void hc_h2_consume(struct hc_h2_stream *st, size_t n)
{
	if (n > st->req_unconsumed)
		n = st->req_unconsumed;
	if (!n || st->client_closed)
		return;
	st->req_unconsumed -= n;
	st->last_ms = st->h2->c->w->now_ms;
	nghttp2_session_consume(st->h2->ng, st->id, n);
}

/* RFC 9113 8.1: a server whose response is complete before the request
 * may end the request with RST_STREAM NO_ERROR, after the response's
 * END_STREAM (the client keeps the response). Without it a client goes on
 * sending a body nobody reads: a 1 MiB upload answered early held its
 * stream, and with a few such streams the connection's window, forever. */
static void request_stop(struct hc_h2_stream *st)
{
	if (st->req_discard && st->resp_end_sent && !st->req_end && !st->client_closed)
		nghttp2_submit_rst_stream(st->h2->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
}

void hc_h2_req_discard(struct hc_h2_stream *st)
{
	if (st->req_discard)
		return;
	st->req_discard = true;
	st->replay = false;
	st->req_sent = 0;
	hc_h2_bq_free(&st->req);
	hc_h2_consume(st, st->req_unconsumed);
	request_stop(st);
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *arg)
{
	struct hc_h2_stream *st;

	(void)ng;
	if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) ||
	    !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	st = stream_of(arg, frame->hd.stream_id);
	if (st) {
		st->resp_end_sent = true;
		request_stop(st);
	}
	return 0;
}

/* ---- streams: the response ---- */

ssize_t hc_h2_source_read(nghttp2_session *ng, int32_t id, struct hc_h2_bq *q, bool end,
			  const struct hc_h2_fields *trailers, bool *deferred, uint8_t *buf,
			  size_t len, uint32_t *data_flags)
{
	size_t n = q->len < len ? q->len : len;

	if (n) {
		memcpy(buf, q->p + q->off, n);
		hc_h2_bq_drop(q, n);
	}
	if (q->len || !end) {
		if (n)
			return (ssize_t)n;
		*deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	if (trailers->n) {
		nghttp2_nv *nv = hc_h2_fields_nv(trailers);

		if (nv && nghttp2_submit_trailer(ng, id, nv, trailers->n) == 0)
			*data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		free(nv);
	}
	return (ssize_t)n;
}

/* The client's data source: the stream's response payload as it comes. */
static ssize_t read_resp(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
			 uint32_t *data_flags, nghttp2_data_source *src, void *arg)
{
	struct hc_h2_stream *st = src->ptr;
	size_t before = st->resp.len;
	ssize_t r = hc_h2_source_read(ng, id, &st->resp, st->resp_end, &st->resp_trailers,
				      &st->resp_deferred, buf, len, data_flags);

	(void)arg;
	if (before > st->resp.len) {
		size_t n = before - st->resp.len;

		st->last_ms = st->h2->c->w->now_ms;
		if (st->wl)
			atomic_fetch_add_explicit(&st->wl->to_client, n, memory_order_relaxed);
		hc_h2_up_resp_taken(st, n);
	}
	return r;
}

int hc_h2_submit_response(struct hc_h2_stream *st, bool end)
{
	nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_resp};
	nghttp2_nv *nv = hc_h2_fields_nv(&st->resp_fields);
	int r;

	if (!nv)
		return -ENOMEM;
	r = nghttp2_submit_response(st->h2->ng, st->id, nv, st->resp_fields.n, end ? NULL : &prd);
	free(nv);
	if (r == 0)
		st->resp_started = true;
	return r == 0 ? 0 : -EINVAL;
}

void hc_h2_resp_ready(struct hc_h2_stream *st)
{
	if (st->resp_deferred && !st->client_closed) {
		st->resp_deferred = false;
		nghttp2_session_resume_data(st->h2->ng, st->id);
	}
}

void hc_h2_answer(struct hc_h2_stream *st, unsigned status, const char *text)
{
	char code[8], len[24];
	size_t tlen = strlen(text) + 1;

	if (st->client_closed)
		return;
	hc_h2_req_discard(st); /* the backend, if any, gets none of the rest */
	if (st->resp_started) {
		nghttp2_submit_rst_stream(st->h2->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
		return;
	}
	snprintf(code, sizeof(code), "%u", status);
	snprintf(len, sizeof(len), "%zu", tlen);
	hc_h2_fields_free(&st->resp_fields);
	hc_h2_bq_free(&st->resp);
	if (hc_h2_fields_add(&st->resp_fields, ":status", 7, code, strlen(code)) < 0 ||
	    hc_h2_fields_add(&st->resp_fields, "content-type", 12, "text/plain; charset=utf-8", 25) <
		    0 ||
	    hc_h2_fields_add(&st->resp_fields, "content-length", 14, len, strlen(len)) < 0 ||
	    hc_h2_fields_add(&st->resp_fields, "server", 6, "hypercore", 9) < 0 ||
	    hc_h2_bq_put(&st->resp, text, tlen - 1) < 0 || hc_h2_bq_put(&st->resp, "\n", 1) < 0 ||
	    (st->resp_end = true, hc_h2_submit_response(st, false)) < 0)
		nghttp2_submit_rst_stream(st->h2->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
}

/* ---- the client connection ---- */

/* What an SSL_read or SSL_write that returned r < 1 means here: -EAGAIN
 * (wait for an edge), 0 (the peer's close_notify) or -ECONNRESET. */
static int ssl_result(SSL *ssl, int r)
{
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		ERR_clear_error(); /* per thread: leave nothing for the next connection */
		return -ECONNRESET;
	}
}

/* >0 bytes, 0 at the client's end, -EAGAIN or -errno. */
static int client_recv(struct hc_proxy_conn *c, char *buf, size_t len)
{
	ssize_t n;

	if (c->ssl) {
		int r;

		ERR_clear_error();
		r = SSL_read(c->ssl, buf, (int)len);
		return r > 0 ? r : ssl_result(c->ssl, r);
	}
	n = recv(c->cfd, buf, len, 0);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return (int)n;
}

/* >0 bytes written, -EAGAIN or -errno. */
static int client_send(struct hc_proxy_conn *c, const char *buf, size_t len)
{
	ssize_t n;

	if (c->ssl) {
		int r;

		ERR_clear_error();
		r = SSL_write(c->ssl, buf, (int)len);
		if (r > 0)
			return r;
		r = ssl_result(c->ssl, r);
		return r == 0 ? -ECONNRESET : r;
	}
	n = send(c->cfd, buf, len, MSG_NOSIGNAL);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return (int)n;
}

/* nghttp2 refused the client's bytes for good: counted by why, and a
 * GOAWAY saying so when the session can still send one. */
static void recv_failed(struct hc_h2 *h, ssize_t rv)
{
	uint32_t code = NGHTTP2_ENHANCE_YOUR_CALM;

	if (rv == NGHTTP2_ERR_FLOODED) {
		hc_h2_refuse(h, HC_H2_REFUSED_FLOOD);
	} else if (rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
		hc_h2_refuse(h, HC_H2_REFUSED_CONTINUATION_FLOOD);
	} else {
		hc_h2_refuse(h, HC_H2_REFUSED_PROTOCOL);
		code = NGHTTP2_PROTOCOL_ERROR;
	}
	hc_log(HC_LOG_DEBUG, "HTTP/2 connection: %s", nghttp2_strerror((int)rv));
	if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC || rv == NGHTTP2_ERR_NOMEM ||
	    nghttp2_session_terminate_session(h->ng, code) != 0)
		h->failed = true; /* not HTTP/2 at all, or nothing more to say */
}

/* Reads what the client sent and hands it to nghttp2, while its answers
 * are not piling up (a client that does not read stops being read). */
static int client_in(struct hc_h2 *h)
{
	char buf[READ_CHUNK];
	int moved = 0;

	while (h->rd && !h->failed && h->out.len < HC_H2_OUT_MAX && nghttp2_session_want_read(h->ng)) {
		int n = client_recv(h->c, buf, sizeof(buf));
		ssize_t rv;

		if (n == -EAGAIN) {
			h->rd = false;
			break;
		}
		if (n <= 0) {
			h->failed = true; /* the client went: nothing left to answer */
			break;
		}
		/* a short read emptied a plain socket's queue; over TLS, the
		 * socket read under SSL_read must have been short and OpenSSL
		 * hold nothing more (decrypted or not): otherwise read on, or
		 * the edge-triggered socket's rest would wait forever */
		if (h->c->ssl ? h->c->tls_rbio_short && !SSL_has_pending(h->c->ssl)
			      : (size_t)n < sizeof(buf))
			h->rd = false;
		h->last_ms = h->c->w->now_ms;
		h->c->up.bytes += (size_t)n;
		rv = nghttp2_session_mem_recv(h->ng, (const uint8_t *)buf, (size_t)n);
		if (rv < 0) {
			recv_failed(h, rv);
			break;
		}
		moved = 1;
	}
	return moved;
}

int hc_h2_encode(nghttp2_session *ng, struct hc_h2_bq *out)
{
	int moved = 0;

	while (out->len < HC_H2_OUT_MAX) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(ng, &data);

		if (n < 0)
			return -EPROTO;
		if (n == 0)
			break;
		if (hc_h2_bq_put(out, data, (size_t)n) < 0)
			return -ENOMEM;
		moved = 1;
	}
	return moved;
}

/* Encodes what nghttp2 has for the client and writes it. */
static int client_out(struct hc_h2 *h)
{
	int moved = hc_h2_encode(h->ng, &h->out);

	if (moved < 0) {
		h->failed = true;
		return 0;
	}
	while (h->out.len && h->wr) {
		int n = client_send(h->c, h->out.p + h->out.off, h->out.len);

		if (n == -EAGAIN) {
			h->wr = false;
			break;
		}
		if (n < 0) {
			h->failed = true;
			return 0;
		}
		hc_h2_bq_drop(&h->out, (size_t)n);
		h->c->down.bytes += (size_t)n;
		h->last_ms = h->c->w->now_ms;
		moved = 1;
	}
	return moved;
}

/* Unlinks the streams both sides are done with, and the h2c connections
 * that failed once no stream points at them (a client sending stream after
 * stream to a dead backend leaves nothing behind). */
static void sweep_streams(struct hc_h2 *h)
{
	struct hc_h2_stream **pp = &h->streams;
	struct hc_h2_link **lp = &h->links;

	while (*lp) {
		struct hc_h2_link *l = *lp;

		if (l->failed && !l->streams) {
			*lp = l->next;
			hc_h2_sock_kill(&l->s);
		} else {
			lp = &l->next;
		}
	}

	while (*pp) {
		struct hc_h2_stream *st = *pp;

		/* no epoll handle names a stream: freed at once */
		if (st->client_closed && !st->h1 && !st->link) {
			*pp = st->next;
			stream_free(st);
		} else {
			pp = &st->next;
		}
	}
}

/* The earliest time something of the connection times out (an idle
 * backend connection's included). */
static void set_deadline(struct hc_h2 *h)
{
	uint64_t idle = h->c->w->p->cfg.idle_timeout_ms, d = h->last_ms + idle;
	uint64_t backends = hc_h2_up_idle_expire(h, h->c->w->now_ms);

	if (backends < d)
		d = backends;
	for (struct hc_h2_stream *st = h->streams; st; st = st->next)
		if (!st->client_closed && st->last_ms + idle < d)
			d = st->last_ms + idle;
	h->c->deadline_ms = d;
}

static void due(struct hc_proxy_conn *c);

/* Moves what can be moved, for at most PUMP_ROUNDS rounds (the other
 * connections of the worker get their turn): a connection that still had
 * work then is due again in the next batch, which the worker's eventfd
 * makes come at once (its edges are spent: no event would say so). */
static void pump(struct hc_h2 *h)
{
	struct hc_proxy_conn *c = h->c;
	int moved = 0;

	if (h->in_pump)
		return;
	h->in_pump = true;
	for (int round = 0; round < PUMP_ROUNDS && !h->failed; round++) {
		moved = client_in(h);
		for (struct hc_h2_stream *st = h->streams; st; st = st->next)
			moved |= hc_h2_up_step_stream(st);
		for (struct hc_h2_link *l = h->links; l; l = l->next)
			moved |= hc_h2_up_step_link(l);
		moved |= client_out(h);
		if (!moved)
			break;
	}
	h->in_pump = false;
	if (moved && !h->failed) {
		uint64_t one = 1;

		due(c);
		if (write(c->w->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			hc_log(HC_LOG_WARN, "HTTP/2: cannot wake the worker: %s", strerror(errno));
	}
	sweep_streams(h);
	if (h->failed || (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng) &&
			  !h->out.len)) {
		hc_proxy_conn_close(c, false);
		return;
	}
	set_deadline(h);
}

/* nghttp2 found the client breaking the protocol (a bad frame size, an
 * invalid header field, a frame on a closed stream...): it answers by
 * itself, RST_STREAM or GOAWAY; counted here. */
static int on_error(nghttp2_session *ng, int code, const char *msg, size_t len, void *arg)
{
	(void)ng, (void)code;
	hc_h2_refuse(arg, HC_H2_REFUSED_PROTOCOL);
	hc_log(HC_LOG_DEBUG, "HTTP/2 client: %.*s", (int)len, msg);
	return 0;
}

static nghttp2_session_callbacks *server_callbacks(void)
{
	nghttp2_session_callbacks *cb;

	if (nghttp2_session_callbacks_new(&cb) != 0)
		return NULL;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
	nghttp2_session_callbacks_set_error_callback2(cb, on_error);
	return cb;
}

static nghttp2_option *server_options(void)
{
	nghttp2_option *opt;

	if (nghttp2_option_new(&opt) != 0)
		return NULL;
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_max_continuations(opt, HC_H2_MAX_CONTINUATIONS);
	nghttp2_option_set_max_settings(opt, 32);
	nghttp2_option_set_max_outbound_ack(opt, 1000);
	nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
	/* nghttp2's own rapid reset check, behind ours (which counts it) */
	nghttp2_option_set_stream_reset_rate_limit(opt, 2 * HC_H2_RESET_BURST, 2 * HC_H2_RESET_RATE);
	return opt;
}

static int session_new(struct hc_h2 *h)
{
	nghttp2_session_callbacks *cb = server_callbacks();
	nghttp2_option *opt = server_options();
	const nghttp2_settings_entry settings[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, HC_H2_MAX_STREAMS},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, HC_H2_STREAM_WINDOW},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HC_H2_HEADER_LIST_MAX},
		{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	};
	int r = -ENOMEM;

	if (cb && opt && nghttp2_session_server_new2(&h->ng, cb, h, opt) == 0) {
		r = nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, settings,
					    sizeof(settings) / sizeof(settings[0])) == 0 &&
				    nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0,
									  HC_H2_CONN_WINDOW) == 0
			    ? 0
			    : -EINVAL;
	}
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	return r;
}

/* What the routing read off the socket (the preface, maybe frames after
 * it: a plain connection's first bytes are read, not peeked, but in sockmap
 * mode) goes to nghttp2 first. */
static void take_first_bytes(struct hc_h2 *h)
{
	struct hc_proxy_conn *c = h->c;
	ssize_t rv;

	if (c->consumed && c->peek_len && !c->ssl) {
		c->up.bytes += c->peek_len;
		rv = nghttp2_session_mem_recv(h->ng, (const uint8_t *)c->peek, c->peek_len);
		if (rv < 0)
			recv_failed(h, rv);
	}
	free(c->peek);
	c->peek = NULL;
	c->peek_len = 0;
	c->consumed = true;
}

/* The TLS client socket's BIO, after each read: whether it got less than
 * OpenSSL asked for (or nothing), i.e. the kernel's queue was empty then.
 * Bytes arriving later bring an edge of their own, so client_in can stop
 * on that instead of reading on into an EAGAIN. */
static long rbio_read_watch(BIO *b, int oper, const char *argp, size_t len, int argi, long argl,
			    int ret, size_t *processed)
{
	(void)argp;
	(void)argi;
	(void)argl;
	if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
		struct hc_proxy_conn *c = (struct hc_proxy_conn *)BIO_get_callback_arg(b);

		c->tls_rbio_short = ret <= 0 || !processed || *processed < len;
	}
	return ret;
}

void hc_proxy_h2_start(struct hc_proxy_conn *c)
{
	struct hc_h2 *h = calloc(1, sizeof(*h));
	int lowat = 1;

	if (!h || (h->c = c, session_new(h)) < 0) {
		if (h)
			nghttp2_session_del(h->ng);
		free(h);
		hc_proxy_conn_close(c, false);
		return;
	}
	if (c->lowat_set) {
		setsockopt(c->cfd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
		c->lowat_set = false;
	}
	/* TLS reads whole socket buffers (read ahead, set on every context:
	 * tls.c), so a short socket read is what says the socket is empty */
	if (c->ssl) {
		BIO *rbio = SSL_get_rbio(c->ssl);

		/* the socket BIO by now (conn.c's tls_input_from_socket), freed
		 * with the SSL, before c: the callback's pointer outlives it.
		 * Anything else (a memory BIO) is not watched: its short reads
		 * say nothing of the socket, and then TLS reads until EAGAIN */
		c->tls_rbio_short = false;
		if (rbio && BIO_method_type(rbio) == BIO_TYPE_SOCKET) {
			BIO_set_callback_arg(rbio, (char *)c);
			BIO_set_callback_ex(rbio, rbio_read_watch);
		}
	}
	c->h2 = h;
	c->state = C_H2;
	h->rd = h->wr = true;
	h->last_ms = h->tokens_ms = c->w->now_ms;
	h->reset_tokens = HC_H2_RESET_BURST;
	h->control_tokens = HC_H2_CONTROL_BURST;
	atomic_fetch_add(&c->w->p->stats.h2_conns, 1);
	/* the same edge-triggered interest as the HTTP/1.1 engine's */
	if (hc_proxy_watch(c, false, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0) {
		hc_proxy_conn_close(c, false);
		return;
	}
	take_first_bytes(h);
	if (hc_proxy_draining(c->w->p)) {
		/* begun while draining: the streams of its first bytes are served */
		hc_proxy_h2_drain(c);
		return;
	}
	pump(h);
}

/* The connection is pumped once at the end of the batch of events: the
 * backends' answers that came in it go to the client in one write. */
static void due(struct hc_proxy_conn *c)
{
	struct hc_proxy_worker *w = c->w;

	if (c->h2_due)
		return;
	c->h2_due = true;
	c->h2_next = w->h2_due;
	w->h2_due = c;
}

void hc_proxy_h2_flush(struct hc_proxy_worker *w)
{
	struct hc_proxy_conn *list = w->h2_due;

	/* taken whole: what a pump makes due again waits for the next batch */
	w->h2_due = NULL;
	while (list) {
		struct hc_proxy_conn *c = list;

		list = c->h2_next;
		c->h2_due = false;
		if (c->state != C_H2)
			continue; /* closed in the batch: freed by the reap after this */
		pump(c->h2);
		hc_proxy_timer_arm(c);
	}
}

void hc_proxy_h2_event(struct hc_proxy_conn *c, unsigned events)
{
	struct hc_h2 *h = c->h2;

	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		h->rd = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		h->wr = true;
	if (c->ssl) /* TLS reads may need the socket writable and writes readable */
		h->rd = h->wr = true;
	due(c);
}

void hc_proxy_h2_up_event(struct hc_proxy_handle *hd, unsigned events)
{
	struct hc_h2_sock *s = (struct hc_h2_sock *)hd;

	if (s->dead)
		return;
	hc_h2_up_sock_event(s, events);
	due(s->h2->c);
}

void hc_proxy_h2_expire(struct hc_proxy_conn *c)
{
	struct hc_h2 *h = c->h2;
	uint64_t now = c->w->now_ms, idle = c->w->p->cfg.idle_timeout_ms;
	bool open = false;

	for (struct hc_h2_stream *st = h->streams; st; st = st->next) {
		if (st->client_closed)
			continue;
		if (now - st->last_ms >= idle) {
			/* a stalled stream (a window kept at zero, a silent
			 * backend): reset, the connection goes on */
			hc_h2_refuse(h, HC_H2_REFUSED_STREAM_IDLE);
			nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
			st->last_ms = now;
		}
		open = true;
	}
	if (!open && now - h->last_ms >= idle) {
		hc_h2_refuse(h, HC_H2_REFUSED_CONN_IDLE);
		atomic_fetch_add(&c->w->p->stats.errors[HC_PROXY_ERR_IDLE_TIMEOUT], 1);
		nghttp2_session_terminate_session(h->ng, NGHTTP2_NO_ERROR);
	}
	pump(h);
}

void hc_proxy_h2_drain(struct hc_proxy_conn *c)
{
	struct hc_h2 *h = c->h2;

	/* nghttp2 then answers the streams up to the last one it took and
	 * refuses later ones; want_read and want_write turn false once they
	 * are done, and pump closes the connection */
	if (!h->goaway_sent &&
	    nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE,
				  nghttp2_session_get_last_proc_stream_id(h->ng), NGHTTP2_NO_ERROR,
				  NULL, 0) == 0)
		h->goaway_sent = true;
	pump(h);
}

void hc_proxy_h2_fini(struct hc_proxy_conn *c)
{
	struct hc_h2 *h = c->h2;

	if (!h)
		return;
	/* nghttp2 calls on_stream_close for what is open: backends detach */
	nghttp2_session_del(h->ng);
	h->ng = NULL;
	while (h->streams) {
		struct hc_h2_stream *st = h->streams;

		h->streams = st->next;
		st->client_closed = true;
		hc_h2_up_detach(st);
		stream_free(st);
	}
	while (h->links) {
		struct hc_h2_link *l = h->links;

		h->links = l->next;
		hc_h2_sock_kill(&l->s);
	}
	hc_h2_up_idle_close(h);
	hc_h2_bq_free(&h->out);
	hc_proxy_wl_put(h->last_wl);
	free(h);
	c->h2 = NULL;
}
