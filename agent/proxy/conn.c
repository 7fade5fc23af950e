/* A proxied connection from accept to close: reading (or, sockmap mode,
 * peeking at) the request head or ClientHello, routing through hc_routes,
 * connecting to the backend, error answers, timeouts. Moving bytes
 * afterwards is forward.c's. */
#define HC_LOG_MODULE "proxy"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/dataplane.h"
#include "log/log.h"
#include "proxy/h2.h"
#include "proxy/proxy_int.h"

#define ACCEPTS_PER_EVENT 64
#define TLS_ALERT_DECODE_ERROR 50
#define TLS_ALERT_INTERNAL_ERROR 80
#define TLS_ALERT_UNRECOGNIZED_NAME 112

static void unadmit(struct hc_proxy *p, struct hc_proxy_listener *l,
		    const struct hc_proxy_ip *ip, bool ip_counted);

static void count_error(struct hc_proxy_conn *c, enum hc_proxy_error e)
{
	atomic_fetch_add(&c->w->p->stats.errors[e], 1);
}

static void account_bytes(struct hc_proxy_conn *c);

static void conn_unlink(struct hc_proxy_conn *c)
{
	struct hc_proxy_worker *w = c->w;

	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->nconns--;
}

void hc_proxy_conn_close(struct hc_proxy_conn *c, bool reset)
{
	struct hc_proxy *p = c->w->p;
	struct linger hard = {.l_onoff = 1, .l_linger = 0};
	struct hc_proxy_listener *l = c->l;

	conn_unlink(c);
	hc_proxy_timer_disarm(c);
	/* A clean backend connection outlives its client (before the flows
	 * are torn down: they say whether it is clean). */
	if (!reset)
		hc_proxy_backend_release(c);
	hc_proxy_backend_unbind(c); /* closed below, not pooled */
	hc_proxy_forward_fini(c);
	hc_proxy_h2_fini(c);
	for (int side = 0; side < 2; side++) {
		int fd = side ? c->bfd : c->cfd;

		if (fd < 0)
			continue;
		/* No EPOLL_CTL_DEL: closing the one reference to the socket
		 * takes it out of the epoll set. An abortive close sends RST, so a reset on one side reaches
		 * the other as a reset, not as a clean end. */
		if (reset)
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
		close(fd);
	}
	if (c->ssl)
		SSL_free(c->ssl);
	account_bytes(c);
	hc_proxy_wl_put(c->wl);
	c->wl = NULL;
	atomic_fetch_sub(&p->stats.active, 1);
	if (c->fwd_charged)
		atomic_fetch_sub(&p->fds_used, hc_proxy_fds_per_conn(p) - 1);
	unadmit(p, l, &c->peer, c->ip_counted);
	free(c->peek);
	c->peek = NULL;
	c->state = C_CLOSED;
	c->next = c->w->dead;
	c->w->dead = c;
	if (--l->conns == 0 && l->fd < 0)
		hc_proxy_listener_retire(c->w, l); /* it closed while we were open */
}

void hc_proxy_listener_retire(struct hc_proxy_worker *w, struct hc_proxy_listener *l)
{
	l->next_dead = w->dead_listeners;
	w->dead_listeners = l;
}

void hc_proxy_conn_reap(struct hc_proxy_worker *w)
{
	while (w->dead) {
		struct hc_proxy_conn *c = w->dead;

		w->dead = c->next;
		free(c);
	}
	while (w->dead_listeners) {
		struct hc_proxy_listener *l = w->dead_listeners;

		w->dead_listeners = l->next_dead;
		free(l);
	}
}

/* ---- answers that end a connection ---- */

/* Consumes what was only peeked, so that closing does not reset the
 * connection before the client reads our answer. */
static void consume_peeked(struct hc_proxy_conn *c)
{
	char sink[4096];
	size_t left = c->consumed ? 0 : c->peek_len;

	while (left > 0) {
		ssize_t n = recv(c->cfd, sink, left < sizeof(sink) ? left : sizeof(sink), 0);

		if (n <= 0)
			break;
		left -= (size_t)n;
	}
	c->consumed = true;
}

/* Sends bytes (small: they fit the socket buffer), shuts the write side and
 * reads whatever the client still sends until it closes or HC_PROXY_DRAIN_MS. */
static void answer_and_drain(struct hc_proxy_conn *c, const void *bytes, size_t len)
{
	int lowat = 1;

	consume_peeked(c);
	setsockopt(c->cfd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
	if (c->ssl) {
		ERR_clear_error();
		SSL_write(c->ssl, bytes, (int)len); /* best effort: the answer is small */
		SSL_shutdown(c->ssl);
		ERR_clear_error(); /* leave nothing for the next connection */
	} else if (send(c->cfd, bytes, len, MSG_NOSIGNAL) < 0) {
		hc_proxy_conn_close(c, false);
		return;
	}
	shutdown(c->cfd, SHUT_WR);
	if (c->bfd >= 0) {
		hc_proxy_backend_unbind(c);
		epoll_ctl(c->w->epfd, EPOLL_CTL_DEL, c->bfd, NULL);
		close(c->bfd);
		c->bfd = -1;
	}
	c->state = C_DRAIN;
	c->deadline_ms = hc_proxy_now_ms() + HC_PROXY_DRAIN_MS;
	if (hc_proxy_watch(c, false, EPOLLIN) < 0)
		hc_proxy_conn_close(c, false);
}

static void http_error(struct hc_proxy_conn *c, int status, const char *reason,
		       const char *detail, enum hc_proxy_error kind)
{
	char body[1024], head[256], out[1400];
	int blen, hlen;

	count_error(c, kind);
	blen = snprintf(body, sizeof(body),
			"<html><head><title>%d %s</title></head><body><h1>%d %s</h1><p>%s</p>"
			"<hr>hypercore</body></html>\n",
			status, reason, status, reason, detail);
	if (blen < 0 || (size_t)blen >= sizeof(body))
		blen = (int)strlen(body);
	hlen = snprintf(head, sizeof(head),
			"HTTP/1.1 %d %s\r\nContent-Type: text/html; charset=utf-8\r\n"
			"Content-Length: %d\r\nConnection: close\r\nServer: hypercore\r\n\r\n",
			status, reason, blen);
	memcpy(out, head, (size_t)hlen);
	memcpy(out + hlen, body, (size_t)blen);
	answer_and_drain(c, out, (size_t)(hlen + blen));
}

/* Every alert counts as tls_alert: what the client saw. */
static void tls_alert(struct hc_proxy_conn *c, uint8_t description)
{
	const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02 /* fatal */, description};

	count_error(c, HC_PROXY_ERR_TLS_ALERT);
	answer_and_drain(c, alert, sizeof(alert));
}

static void not_found(struct hc_proxy_conn *c)
{
	char host[HC_HOST_ESCAPED_MAX], detail[2048];

	hc_html_escape_host(c->host, host, sizeof(host));
	snprintf(detail, sizeof(detail), "No workload or route answers for <b>%s</b> on port %u.",
		 host, c->l->port);
	http_error(c, 404, "Not Found", detail, HC_PROXY_ERR_NOT_FOUND);
}

static void bad_gateway(struct hc_proxy_conn *c, const char *why)
{
	char host[HC_HOST_ESCAPED_MAX], detail[2048];

	if (c->tls && !c->ssl) {
		tls_alert(c, TLS_ALERT_INTERNAL_ERROR);
		return;
	}
	hc_html_escape_host(c->host, host, sizeof(host));
	snprintf(detail, sizeof(detail), "The backend of <b>%s</b> did not answer: %s.", host, why);
	http_error(c, 502, "Bad Gateway", detail, HC_PROXY_ERR_BAD_GATEWAY);
}

void hc_proxy_conn_expire(struct hc_proxy_conn *c)
{
	switch (c->state) {
	case C_PEEK:
	case C_TLS_HEAD:
		if (c->tls && !c->ssl) {
			count_error(c, HC_PROXY_ERR_HEAD_TIMEOUT);
			hc_proxy_conn_close(c, false);
		} else {
			http_error(c, 408, "Request Timeout",
				   "The request head did not arrive in time.", HC_PROXY_ERR_HEAD_TIMEOUT);
		}
		break;
	case C_CONNECT:
	case C_SEND_HEAD:
		bad_gateway(c, "connecting timed out");
		break;
	case C_TLS_ACCEPT:
		count_error(c, HC_PROXY_ERR_HEAD_TIMEOUT);
		hc_proxy_conn_close(c, false);
		break;
	case C_CLOSED:
		break;
	case C_DRAIN:
		hc_proxy_conn_close(c, false);
		break;
	case C_FORWARD:
		hc_proxy_forward_expire(c);
		break;
	case C_H2:
		hc_proxy_h2_expire(c);
		break;
	}
}

/* ---- routing ---- */

static bool lookup(struct hc_proxy *p, const char *host, uint16_t port, struct hc_route_val *val,
		   char *matched)
{
	struct hc_route_key key;
	bool found;

	if (hc_dp_route_key_init(&key, host, port))
		return false;
	if (p->route_lookup) /* a test's table (tests/fuzz/fuzz_h2.c) */
		found = p->route_lookup(&key, val);
	else
		found = bpf_map_lookup_elem(p->routes_fd, &key, val) == 0 ||
			(key.port = 0, bpf_map_lookup_elem(p->routes_fd, &key, val) == 0);
	if (found)
		snprintf(matched, HC_ROUTE_HOST_MAX, "%s", key.host);
	return found;
}

/* An exact host name first (a static route), then "<id>.<base_url>". */
static bool route_name(struct hc_proxy *p, const char *host, uint16_t port,
		       struct hc_route_val *val, char *matched)
{
	size_t hl = strlen(host), bl = strlen(p->base_url);
	char id[HC_ROUTE_HOST_MAX];

	if (lookup(p, host, port, val, matched))
		return true;
	if (bl == 0 || hl <= bl + 1 || host[hl - bl - 1] != '.' ||
	    strcmp(host + hl - bl, p->base_url) != 0 || hl - bl - 1 >= sizeof(id))
		return false;
	memcpy(id, host, hl - bl - 1);
	id[hl - bl - 1] = '\0';
	return lookup(p, id, port, val, matched);
}

static bool route(struct hc_proxy_conn *c, struct hc_route_val *val)
{
	return route_name(c->w->p, c->host, c->l->port, val, c->route_host);
}

enum hc_proxy_answer hc_proxy_route_host(struct hc_proxy_conn *c, const char *host,
					 struct hc_route_val *val, char *matched)
{
	/* as request_target: the handshake was for the SNI only */
	if (c->ssl && strcmp(host, c->sni) != 0)
		return A_MISDIRECTED;
	return route_name(c->w->p, host, c->l->port, val, matched) ? A_NONE : A_NOT_FOUND;
}

/* ---- the backend ---- */

static void connect_backend(struct hc_proxy_conn *c, const struct hc_route_val *val);

static void backend_connected(struct hc_proxy_conn *c)
{
	/* Into the sockmap before the head goes out, so that the backend's
	 * answer is redirected from its first byte. */
	if (hc_proxy_forward_prepare(c) < 0) {
		hc_proxy_conn_close(c, true);
		return;
	}
	if (c->engine) {
		/* the engine reads the head itself (or has it from TLS) */
		if ((c->engine_on ? hc_proxy_forward_resume(c) : hc_proxy_forward_start(c)) < 0)
			hc_proxy_conn_close(c, true);
		return;
	}
	if (c->consumed && c->peek_len > 0) {
		c->state = C_SEND_HEAD;
		hc_proxy_conn_event(c, true, EPOLLOUT);
		return;
	}
	if (hc_proxy_forward_start(c) < 0)
		hc_proxy_conn_close(c, true);
}

socklen_t hc_proxy_backend_sockaddr(const struct hc_route_val *val, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (val->backend.family == HC_AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(val->port);
		sin->sin_addr.s_addr = val->backend.ip4;
		return sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(val->port);
		memcpy(&sin6->sin6_addr, val->backend.ip6, 16);
		return sizeof(*sin6);
	}
}

/* A new backend connection (a state of its own until connected). */
static void open_backend(struct hc_proxy_conn *c, const struct hc_route_val *val)
{
	struct sockaddr_storage ss;
	/* The engine's interest is edge-triggered and never changes: set here
	 * once (connecting reports EPOLLOUT). */
	struct epoll_event ev = {.events = c->engine ? EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET
						     : EPOLLOUT};
	socklen_t len = hc_proxy_backend_sockaddr(val, &ss);
	int one = 1;

	atomic_fetch_add(&c->w->p->stats.backend_new, 1);
	c->bfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->bfd < 0) {
		bad_gateway(c, strerror(errno));
		return;
	}
	setsockopt(c->bfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ev.data.ptr = &c->hb;
	if (epoll_ctl(c->w->epfd, EPOLL_CTL_ADD, c->bfd, &ev) < 0) {
		bad_gateway(c, strerror(errno));
		return;
	}
	c->events_b = ev.events;
	/* The client waits while we connect: its bytes stay queued (edge
	 * events meanwhile are ignored; the engine tries both sides first). */
	hc_proxy_watch(c, false, ev.events & EPOLLET ? ev.events : 0);
	c->state = C_CONNECT;
	c->deadline_ms = hc_proxy_now_ms() + HC_PROXY_CONNECT_TIMEOUT_MS;
	if (connect(c->bfd, (struct sockaddr *)&ss, len) == 0) {
		backend_connected(c);
		return;
	}
	if (errno != EINPROGRESS)
		bad_gateway(c, strerror(errno));
}

/* A fresh backend connection's state: nothing sent, nothing seen. */
static void backend_fresh(struct hc_proxy_conn *c, bool reused)
{
	c->reused = reused;
	c->resp_seen = false;
	c->backend_keep = true;
	free(c->retry);
	c->retry = NULL;
	c->retry_len = 0;
}

static void connect_backend(struct hc_proxy_conn *c, const struct hc_route_val *val)
{
	struct hc_proxy *p = c->w->p;

	c->route_val = *val;
	if (!hc_proxy_charge_forwarding(c))
		return;
	hc_proxy_wl_put(c->wl); /* a keep-alive connection's previous route */
	c->wl = hc_proxy_workload(p, c->route_host);
	if (c->wl)
		atomic_fetch_add(&c->wl->accepted, 1);
	if (c->engine && p->cfg.backend_reuse && p->cfg.forwarding != HC_PROXY_SOCKMAP &&
	    hc_proxy_backend_take(c, val) == 0) {
		atomic_fetch_add(&p->stats.backend_reused, 1);
		backend_fresh(c, true);
		/* the client's interest as for a new socket: edge-triggered */
		hc_proxy_watch(c, false, c->events_b);
		backend_connected(c);
		return;
	}
	backend_fresh(c, false);
	open_backend(c, val);
}

void hc_proxy_backend_retry(struct hc_proxy_conn *c)
{
	atomic_fetch_add(&c->w->p->stats.backend_retries, 1);
	hc_proxy_backend_unbind(c);
	close(c->bfd); /* its one reference: out of the epoll set too */
	c->bfd = -1;
	c->events_b = 0;
	backend_fresh(c, false);
	open_backend(c, &c->route_val);
}

static void on_connect_event(struct hc_proxy_conn *c, unsigned events)
{
	int soerr = 0;
	socklen_t sl = sizeof(soerr);

	/* writable without an error: connected, no need to ask */
	if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == EPOLLOUT) {
		backend_connected(c);
		return;
	}
	if (getsockopt(c->bfd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		soerr = errno;
	if (soerr) {
		bad_gateway(c, strerror(soerr));
		return;
	}
	backend_connected(c);
}

static void send_head(struct hc_proxy_conn *c)
{
	while (c->head_len < c->peek_len) {
		ssize_t n = send(c->bfd, c->peek + c->head_len, c->peek_len - c->head_len,
				 MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				hc_proxy_watch(c, true, EPOLLOUT);
				return;
			}
			bad_gateway(c, strerror(errno));
			return;
		}
		c->head_len += (size_t)n;
		c->up.bytes += (size_t)n;
	}
	free(c->peek);
	c->peek = NULL;
	c->peek_len = c->head_len = 0;
	if (hc_proxy_forward_start(c) < 0)
		hc_proxy_conn_close(c, true);
}

/* ---- the request head ---- */

/* Reads the first len peeked bytes off the socket for good, so that they go
 * to the backend from c->peek and nothing else of them stays queued. */
static int take_head(struct hc_proxy_conn *c, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = recv(c->cfd, c->peek + got, len - got, 0);

		if (n <= 0)
			return -EIO;
		got += (size_t)n;
	}
	c->peek_len = len;
	c->head_len = 0;
	c->consumed = true;
	return 0;
}

/* The sockmap mode's first (and only parsed) request with forwarded
 * headers: reads the head off the socket and replaces the client's
 * forwarded fields with ours. */
static int rewrite_head(struct hc_proxy_conn *c, const struct hc_http_head *h)
{
	size_t cap = h->head_len + sizeof(c->fwd);
	char *out;
	size_t n;

	/* Take exactly the head off the socket; the body stays there. */
	if (take_head(c, h->head_len) < 0)
		return -EIO;
	if (!c->fwd_len)
		hc_proxy_forwarded_lines(c);
	out = malloc(cap);
	if (!out)
		return -ENOMEM;
	n = hc_http_head_rewrite(c->peek, h, c->fwd, c->fwd_len, HC_REWRITE_FORWARDED, out, cap);
	if (!n) {
		free(out);
		return -EOVERFLOW;
	}
	free(c->peek);
	c->peek = out;
	c->peek_len = n;
	c->head_len = 0; /* from here: how much of peek went to the backend */
	c->consumed = true;
	/* the sockmap's drain check compares byte counts of both sockets */
	c->up.drain_skew = (int64_t)n - (int64_t)h->head_len;
	return 0;
}

/* Where a request goes: A_NONE with val set (c->host and c->route_host
 * now the request's), or the answer it gets. */
static enum hc_proxy_answer request_target(struct hc_proxy_conn *c, const struct hc_http_head *h,
					   struct hc_route_val *val)
{
	if (!h->host[0])
		return A_NO_HOST;
	/* Terminated: the handshake (and the wildcard certificate) was for
	 * the SNI. A Host naming anything else, a static route outside the
	 * base URL say, must not ride on it (RFC 9110 7.4). Both are
	 * lower-case with the port stripped. */
	if (c->ssl && strcmp(h->host, c->sni) != 0)
		return A_MISDIRECTED;
	snprintf(c->host, sizeof(c->host), "%s", h->host);
	return route(c, val) ? A_NONE : A_NOT_FOUND;
}

int hc_proxy_request_route(struct hc_proxy_conn *c, const struct hc_http_head *h)
{
	char was[HC_ROUTE_HOST_MAX];
	struct hc_route_val val;

	/* The same name as the request before: the same route, no lookup.
	 * (A route changed meanwhile keeps serving the connection, as a
	 * connection always kept its backend.) */
	if (h->host[0] && strcmp(h->host, c->host) == 0 && (!c->ssl || strcmp(h->host, c->sni) == 0))
		return 0;
	memcpy(was, c->route_host, sizeof(was));
	c->answer = request_target(c, h, &val);
	if (c->answer != A_NONE)
		return 1;
	if (strcmp(was, c->route_host) == 0 && memcmp(&val, &c->route_val, sizeof(val)) == 0)
		return 0; /* another name of the same route */
	c->next_val = val;
	c->answer = A_REROUTE;
	return 1;
}

/* Adds the bytes moved so far to the totals (at a close or a reroute,
 * which gives them to the route they were for). */
static void account_bytes(struct hc_proxy_conn *c)
{
	struct hc_proxy *p = c->w->p;

	atomic_fetch_add(&p->stats.to_backend, c->up.bytes);
	atomic_fetch_add(&p->stats.to_client, c->down.bytes);
	if (c->wl) {
		atomic_fetch_add(&c->wl->to_backend, c->up.bytes);
		atomic_fetch_add(&c->wl->to_client, c->down.bytes);
	}
	c->up.bytes = c->down.bytes = 0;
}

/* Every response of the old backend is out: the next request's goes on a
 * new connection. */
static void reroute(struct hc_proxy_conn *c)
{
	account_bytes(c);
	hc_proxy_backend_release(c);
	connect_backend(c, &c->next_val);
}

void hc_proxy_conn_answer(struct hc_proxy_conn *c)
{
	enum hc_proxy_answer a = c->answer;
	char sni[HC_HOST_ESCAPED_MAX], detail[2048];

	c->answer = A_NONE;
	switch (a) {
	case A_NONE:
		break;
	case A_REROUTE:
		reroute(c);
		break;
	case A_BAD_REQUEST:
		http_error(c, 400, "Bad Request", "The request head is malformed.",
			   HC_PROXY_ERR_BAD_REQUEST);
		break;
	case A_NO_HOST:
		http_error(c, 400, "Bad Request", "A Host header is needed to find the workload.",
			   HC_PROXY_ERR_BAD_REQUEST);
		break;
	case A_TOO_LARGE:
		http_error(c, 431, "Request Header Fields Too Large", "The request head is over 16 KiB.",
			   HC_PROXY_ERR_HEAD_TOO_LARGE);
		break;
	case A_NOT_FOUND:
		not_found(c);
		break;
	case A_MISDIRECTED:
		hc_html_escape_host(c->sni, sni, sizeof(sni));
		snprintf(detail, sizeof(detail),
			 "This connection is for <b>%s</b>: other names need a connection of their own.",
			 sni);
		http_error(c, 421, "Misdirected Request", detail, HC_PROXY_ERR_MISDIRECTED);
		break;
	case A_TIMEOUT:
		http_error(c, 408, "Request Timeout", "The request head did not arrive in time.",
			   HC_PROXY_ERR_HEAD_TIMEOUT);
		break;
	case A_BAD_GATEWAY:
		bad_gateway(c, "its response could not be read");
		break;
	}
}

/* Routes on a complete HTTP head in c->peek. */
static void route_http(struct hc_proxy_conn *c, const struct hc_http_head *head)
{
	struct hc_route_val val;
	struct hc_proxy *p = c->w->p;

	/* The sockmap's raw pipe sees only the first head; the engine sees
	 * every one (and is what TLS termination needs anyway). */
	c->engine = p->cfg.forwarding != HC_PROXY_SOCKMAP || c->ssl;
	c->answer = request_target(c, head, &val);
	if (c->answer != A_NONE) {
		hc_proxy_conn_answer(c);
		return;
	}
	c->head_len = 0;
	if (c->engine) {
		/* in peek, read off the socket (plain) or decrypted
		 * (terminated): the engine starts with them */
	} else if (p->cfg.forwarded_headers) {
		if (rewrite_head(c, head) < 0) {
			hc_proxy_conn_close(c, false);
			return;
		}
	} else if (c->ssl) {
		c->consumed = true; /* decrypted bytes in peek go first */
	} else if (p->cfg.forwarding == HC_PROXY_SOCKMAP && take_head(c, head->head_len) < 0) {
		/* The sockmap redirects only what arrives after the sockets
		 * join it: the head must not be left queued (forward.c). */
		hc_proxy_conn_close(c, false);
		return;
	}
	connect_backend(c, &val);
}

/* Whether the first bytes are read off the socket (and handed on from
 * memory: to the engine, or to OpenSSL) rather than peeked at: one recv per
 * connection fewer, since the engine would read them again. The sockmap
 * mode peeks: it takes exactly the head off the socket and lets the kernel
 * redirect the rest, which must stay queued. */
static bool reads_first_bytes(const struct hc_proxy_conn *c)
{
	return c->w->p->cfg.forwarding != HC_PROXY_SOCKMAP;
}

/* Appends what has arrived to c->peek (the socket's queue emptied when
 * the read was short: peek_drained). */
static int read_more(struct hc_proxy_conn *c)
{
	size_t room = HC_PROXY_PEEK_MAX - c->peek_len;
	ssize_t n = recv(c->cfd, c->peek + c->peek_len, room, 0);

	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	if (n == 0)
		return -ECONNRESET; /* closed before saying anything useful */
	c->peek_len += (size_t)n;
	c->peek_drained = (size_t)n < room;
	c->consumed = true;
	return 1;
}

static int peek_more(struct hc_proxy_conn *c)
{
	ssize_t n;

	if (!c->peek) {
		c->peek = malloc(HC_PROXY_PEEK_MAX);
		if (!c->peek)
			return -ENOMEM;
	}
	if (reads_first_bytes(c))
		return read_more(c);
	n = recv(c->cfd, c->peek, HC_PROXY_PEEK_MAX, MSG_PEEK);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	if (n == 0 || (size_t)n == c->peek_len)
		return -ECONNRESET; /* closed before saying anything useful */
	c->peek_len = (size_t)n;
	return 1;
}

/* Wakes us only when more than what we have peeked has arrived. Bytes
 * read off the socket need nothing: the next ones bring an edge. */
static void wait_for_more(struct hc_proxy_conn *c)
{
	int lowat = (int)c->peek_len + 1;

	if (c->consumed)
		return;
	setsockopt(c->cfd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
	c->lowat_set = true;
}

/* The ClientHello was read off the socket: OpenSSL reads it from memory,
 * and the socket once that is used up (tls_accept_step). Nonzero on
 * failure. */
static int tls_input_from_memory(struct hc_proxy_conn *c)
{
	BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new_socket(c->cfd, BIO_NOCLOSE);

	if (!in || !out || BIO_write(in, c->peek, (int)c->peek_len) != (int)c->peek_len) {
		BIO_free(in);
		BIO_free(out);
		return -ENOMEM;
	}
	BIO_set_mem_eof_return(in, -1); /* empty: "retry", not an end */
	SSL_set_bio(c->ssl, in, out);
	c->tls_from_memory = true;
	return 0;
}

/* OpenSSL's input moves from memory to the socket. 0 or -ENOMEM. */
static int tls_input_from_socket(struct hc_proxy_conn *c)
{
	BIO *sock = BIO_new_socket(c->cfd, BIO_NOCLOSE);

	if (!sock)
		return -ENOMEM;
	SSL_set0_rbio(c->ssl, sock);
	c->tls_from_memory = false;
	return 0;
}

/* A record cut short in memory: its rest, from the socket into memory.
 * 1: more is there, 0: wait for an event, -errno. */
static int tls_memory_refill(struct hc_proxy_conn *c, BIO *in)
{
	char buf[4096];
	ssize_t n;

	if (!SSL_want_read(c->ssl))
		return 0; /* it wants to write first: that event comes */
	if (BIO_ctrl_pending(in) > HC_PROXY_PEEK_MAX)
		return -EPROTO; /* no record is that long */
	n = recv(c->cfd, buf, sizeof(buf), 0);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	if (n == 0)
		return -ECONNRESET;
	return BIO_write(in, buf, (int)n) == (int)n ? 1 : -ENOMEM;
}

/* A handshake step (hc_proxy_tls_handshake's returns). While OpenSSL reads
 * from memory what the routing read off the socket, used-up memory means
 * the socket is next. */
static int tls_accept_step(struct hc_proxy_conn *c)
{
	for (;;) {
		int rc = hc_proxy_tls_handshake(c);
		BIO *in = SSL_get_rbio(c->ssl);

		if (!c->tls_from_memory || rc < 0)
			return rc;
		if (BIO_ctrl_pending(in) == 0) {
			if (tls_input_from_socket(c) < 0)
				return -ENOMEM;
			if (rc > 0)
				return rc;
			continue; /* what the client sent since is in the socket */
		}
		if (rc > 0)
			return -EPROTO; /* bytes behind a finished handshake: no client sends them */
		if ((rc = tls_memory_refill(c, in)) <= 0)
			return rc;
	}
}

static void start_termination(struct hc_proxy_conn *c, SSL_CTX *ctx)
{
	int lowat = 1;

	if (c->lowat_set) {
		setsockopt(c->cfd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
		c->lowat_set = false;
	}
	snprintf(c->sni, sizeof(c->sni), "%s", c->host);
	c->ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);
	if (!c->ssl || (c->consumed ? tls_input_from_memory(c) : SSL_set_fd(c->ssl, c->cfd) != 1)) {
		hc_proxy_conn_close(c, false);
		return;
	}
	free(c->peek);
	c->peek = NULL;
	c->peek_len = 0;
	c->consumed = true; /* OpenSSL has the ClientHello, or reads it itself */
	c->state = C_TLS_ACCEPT;
	atomic_fetch_add(&c->w->p->stats.tls_terminated, 1);
	hc_proxy_conn_event(c, false, EPOLLIN);
}

static bool under_base_url(const struct hc_proxy *p, const char *host)
{
	size_t hl = strlen(host), bl = strlen(p->base_url);

	return bl && hl > bl + 1 && host[hl - bl - 1] == '.' && strcmp(host + hl - bl, p->base_url) == 0;
}

static void route_tls(struct hc_proxy_conn *c, const struct hc_client_hello *hello)
{
	struct hc_proxy *p = c->w->p;
	struct hc_route_val val;
	SSL_CTX *ctx;

	c->tls = true;
	c->engine = p->cfg.forwarding != HC_PROXY_SOCKMAP;
	snprintf(c->host, sizeof(c->host), "%s", hello->sni);
	if (under_base_url(p, c->host) && (ctx = hc_proxy_tls_ref(p))) {
		start_termination(c, ctx);
		return;
	}
	if (!c->host[0] || !route(c, &val)) {
		tls_alert(c, TLS_ALERT_UNRECOGNIZED_NAME);
		return;
	}
	c->head_len = 0;
	if (p->cfg.forwarding == HC_PROXY_SOCKMAP && take_head(c, hello->consumed) < 0) {
		hc_proxy_conn_close(c, false);
		return;
	}
	connect_backend(c, &val);
}

static void on_peek(struct hc_proxy_conn *c)
{
	int rc = peek_more(c);

	if (rc <= 0) {
		if (rc < 0)
			hc_proxy_conn_close(c, false);
		return;
	}
	if (hc_tls_looks_like((const uint8_t *)c->peek, c->peek_len)) {
		struct hc_client_hello hello;

		rc = hc_tls_client_hello_parse((const uint8_t *)c->peek, c->peek_len, &hello);
		if (rc == HC_PARSE_OK)
			route_tls(c, &hello);
		else if (rc == HC_PARSE_MORE && c->peek_len < HC_PROXY_PEEK_MAX)
			wait_for_more(c);
		else
			tls_alert(c, TLS_ALERT_DECODE_ERROR);
		return;
	}
	if (memcmp(c->peek, HC_H2_PREFACE, c->peek_len < HC_H2_PREFACE_LEN ? c->peek_len
									 : HC_H2_PREFACE_LEN) == 0) {
		/* HTTP/2 with prior knowledge (h2c): the HTTP/2 engine reads it */
		if (c->peek_len < HC_H2_PREFACE_LEN)
			wait_for_more(c);
		else
			hc_proxy_h2_start(c);
		return;
	}
	{
		struct hc_http_head head;

		rc = hc_http_head_parse(c->peek, c->peek_len, &head);
		if (rc == HC_PARSE_OK)
			route_http(c, &head);
		else if (rc == HC_PARSE_MORE && c->peek_len < HC_HTTP_HEAD_MAX)
			wait_for_more(c);
		else if (rc == HC_PARSE_INVALID)
			http_error(c, 400, "Bad Request", "The request head is malformed.",
				   HC_PROXY_ERR_BAD_REQUEST);
		else
			http_error(c, 431, "Request Header Fields Too Large",
				   "The request head is over 16 KiB.", HC_PROXY_ERR_HEAD_TOO_LARGE);
	}
}

/* Terminating: the decrypted head is read (consumed) into c->peek. */
static void on_tls_head(struct hc_proxy_conn *c)
{
	struct hc_http_head head;
	int rc;

	if (!c->peek) {
		c->peek = malloc(HC_PROXY_PEEK_MAX);
		if (!c->peek) {
			hc_proxy_conn_close(c, false);
			return;
		}
	}
	while (c->peek_len < HC_PROXY_PEEK_MAX) {
		int n;

		ERR_clear_error(); /* the queue is per thread, shared by connections */
		n = SSL_read(c->ssl, c->peek + c->peek_len, (int)(HC_PROXY_PEEK_MAX - c->peek_len));

		if (n <= 0) {
			int e = SSL_get_error(c->ssl, n);

			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				hc_proxy_watch(c, false, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
				break;
			}
			hc_proxy_conn_close(c, false);
			return;
		}
		c->peek_len += (size_t)n;
		rc = hc_http_head_parse(c->peek, c->peek_len, &head);
		if (rc == HC_PARSE_OK) {
			route_http(c, &head);
			return;
		}
		if (rc != HC_PARSE_MORE)
			break;
	}
	rc = hc_http_head_parse(c->peek, c->peek_len, &head);
	if (rc == HC_PARSE_INVALID)
		http_error(c, 400, "Bad Request", "The request head is malformed.",
			   HC_PROXY_ERR_BAD_REQUEST);
	else if (rc == HC_PARSE_TOO_LARGE || c->peek_len >= HC_HTTP_HEAD_MAX)
		http_error(c, 431, "Request Header Fields Too Large",
			   "The request head is over 16 KiB.", HC_PROXY_ERR_HEAD_TOO_LARGE);
}

static void on_drain(struct hc_proxy_conn *c)
{
	char sink[4096];

	for (;;) {
		ssize_t n = recv(c->cfd, sink, sizeof(sink), 0);

		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		hc_proxy_conn_close(c, false);
		return;
	}
}

void hc_proxy_conn_event(struct hc_proxy_conn *c, bool backend_side, unsigned events)
{
	int rc;

	switch (c->state) {
	case C_CLOSED:
		break; /* closed by an earlier event of this batch */
	case C_PEEK:
		/* interest is edge-triggered from accept: a writable edge says
		 * nothing new about the head */
		if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			on_peek(c);
		break;
	case C_CONNECT:
		if (backend_side)
			on_connect_event(c, events);
		else if (events & (EPOLLHUP | EPOLLERR))
			hc_proxy_conn_close(c, true);
		else if (c->engine)
			hc_proxy_forward_event(c, false, events); /* kept for the start */
		break;
	case C_SEND_HEAD:
		if (backend_side)
			send_head(c);
		else if (events & (EPOLLHUP | EPOLLERR))
			hc_proxy_conn_close(c, true);
		break;
	case C_FORWARD:
		hc_proxy_forward_event(c, backend_side, events);
		rc = hc_proxy_forward_pump(c);
		if (rc)
			hc_proxy_conn_close(c, rc < 0);
		break;
	case C_TLS_ACCEPT:
		rc = tls_accept_step(c);
		if (rc > 0 && hc_proxy_tls_alpn_h2(c)) {
			hc_proxy_h2_start(c);
		} else if (rc > 0) {
			c->state = C_TLS_HEAD;
			on_tls_head(c);
		} else if (rc < 0) {
			count_error(c, HC_PROXY_ERR_TLS_HANDSHAKE);
			hc_proxy_conn_close(c, false);
		}
		break;
	case C_TLS_HEAD:
		on_tls_head(c);
		break;
	case C_DRAIN:
		on_drain(c);
		break;
	case C_H2:
		hc_proxy_h2_event(c, events);
		break;
	}
	hc_proxy_timer_arm(c); /* whatever the event did to the deadline */
}

void hc_proxy_conn_drain(struct hc_proxy_conn *c)
{
	int rc;

	switch (c->state) {
	case C_FORWARD:
		/* the engine closes an idle connection when draining, and marks
		 * the next response Connection: close (forward.c); the sockmap's
		 * and tunnels' bytes have no such point: they end with the proxy */
		if (!c->engine)
			break;
		rc = hc_proxy_forward_pump(c);
		if (rc)
			hc_proxy_conn_close(c, rc < 0);
		else
			hc_proxy_timer_arm(c);
		break;
	case C_H2:
		hc_proxy_h2_drain(c);
		break;
	default:
		/* before its first request: that one is answered, with
		 * Connection: close (or GOAWAY after it, on HTTP/2) */
		break;
	}
}

/* ---- accepting ---- */

/* Takes a place for a new connection from ip on l under every limit, or
 * says which limit it is over (nothing taken then). */
static int admit(struct hc_proxy *p, struct hc_proxy_listener *l, const struct hc_proxy_ip *ip,
		 bool *ip_counted)
{
	int r;

	if (atomic_fetch_add(&p->port_conns[l->port], 1) >= p->cfg.max_conns) {
		atomic_fetch_sub(&p->port_conns[l->port], 1);
		return HC_PROXY_LIMIT_PORT;
	}
	if (atomic_fetch_add(&p->fds_used, 1) >= p->cfg.max_fds && p->cfg.max_fds) {
		atomic_fetch_sub(&p->fds_used, 1);
		atomic_fetch_sub(&p->port_conns[l->port], 1);
		return HC_PROXY_LIMIT_TOTAL;
	}
	/* -ENOSPC (a full stripe) lets the address in untracked: see iplimit.c */
	r = ip ? hc_proxy_iplimit_take(p->per_ip, ip) : -ENOSPC;
	if (r == 0) {
		atomic_fetch_sub(&p->fds_used, 1);
		atomic_fetch_sub(&p->port_conns[l->port], 1);
		return HC_PROXY_LIMIT_IP;
	}
	*ip_counted = r == 1;
	return -1;
}

static void unadmit(struct hc_proxy *p, struct hc_proxy_listener *l,
		    const struct hc_proxy_ip *ip, bool ip_counted)
{
	if (ip_counted)
		hc_proxy_iplimit_release(p->per_ip, ip);
	atomic_fetch_sub(&p->fds_used, 1);
	atomic_fetch_sub(&p->port_conns[l->port], 1);
}

bool hc_proxy_charge_forwarding(struct hc_proxy_conn *c)
{
	struct hc_proxy *p = c->w->p;
	unsigned more = hc_proxy_fds_per_conn(p) - 1;

	if (c->fwd_charged)
		return true;
	if (atomic_fetch_add(&p->fds_used, more) + more > p->cfg.max_fds && p->cfg.max_fds) {
		atomic_fetch_sub(&p->fds_used, more);
		/* as at accept: a reset, no answer that would take more */
		atomic_fetch_add(&p->stats.refused[HC_PROXY_LIMIT_TOTAL], 1);
		atomic_fetch_add(&p->stats.errors[HC_PROXY_ERR_OVER_LIMIT], 1);
		hc_proxy_conn_close(c, true);
		return false;
	}
	c->fwd_charged = true;
	return true;
}

/* Over a limit: a reset at once. A plain close would leave our side in
 * FIN_WAIT for as long as the client keeps its end open (a client over a
 * limit is the one most likely not to close), holding kernel memory; the
 * reset frees it now and tells the client plainly. */
static void refuse(struct hc_proxy *p, int fd, int limit)
{
	struct linger hard = {.l_onoff = 1, .l_linger = 0};

	/* counted before the reset: whoever sees the reset sees it counted */
	atomic_fetch_add(&p->stats.refused[limit], 1);
	atomic_fetch_add(&p->stats.errors[HC_PROXY_ERR_OVER_LIMIT], 1);
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
	close(fd);
}

/* The connection's struct, watched by epoll and on the worker's list;
 * NULL when that failed (fd not closed). */
static struct hc_proxy_conn *conn_new(struct hc_proxy_worker *w, struct hc_proxy_listener *l,
				      int fd)
{
	struct hc_proxy_conn *c = calloc(1, sizeof(*c));
	/* The engine's edge-triggered interest from the start, as it will
	 * stay (no EPOLL_CTL_MOD when the backend is connected); the peek
	 * waits for more of a head with SO_RCVLOWAT, which edges respect.
	 * The sockmap mode changes interest as it goes. */
	struct epoll_event ev = {.events = w->p->cfg.forwarding == HC_PROXY_SOCKMAP
						   ? EPOLLIN
						   : EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET};

	if (!c)
		return NULL;
	c->hc.kind = H_CLIENT;
	c->hb.kind = H_BACKEND;
	c->w = w;
	c->l = l;
	c->cfd = fd;
	c->bfd = -1;
	c->up.pipe[0] = c->up.pipe[1] = c->down.pipe[0] = c->down.pipe[1] = -1;
	c->state = C_PEEK;
	c->deadline_ms = hc_proxy_now_ms() + w->p->cfg.head_timeout_ms;
	ev.data.ptr = &c->hc;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		free(c);
		return NULL;
	}
	c->events_c = ev.events;
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	l->conns++;
	return c;
}

/* Accepts what is queued, up to ACCEPTS_PER_EVENT (the listener stays
 * readable, so the rest comes with the next wait, after the other ready
 * connections had their turn). Sockets inherit TCP_NODELAY and the rest
 * from the listener (proxy.c): no setsockopt per connection. */
void hc_proxy_accept(struct hc_proxy_worker *w, struct hc_proxy_listener *l)
{
	struct hc_proxy *p = w->p;

	for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct hc_proxy_conn *c;
		struct hc_proxy_ip ip;
		bool counted = false, have_ip;
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		int limit;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				hc_log(HC_LOG_WARN, "accept on port %u: %s", l->port, strerror(errno));
			return;
		}
		atomic_fetch_add(&p->stats.accepted, 1);
		have_ip = hc_proxy_ip_from_sockaddr(&ip, (struct sockaddr *)&ss, sl) == 0;
		limit = admit(p, l, have_ip ? &ip : NULL, &counted);
		if (limit >= 0) {
			refuse(p, fd, limit);
			continue;
		}
		c = conn_new(w, l, fd);
		if (!c) {
			unadmit(p, l, &ip, counted);
			close(fd);
			continue;
		}
		c->peer = ip;
		c->have_peer = have_ip;
		c->ip_counted = counted;
		hc_proxy_timer_arm(c);
		atomic_fetch_add(&p->stats.active, 1);
		/* With TCP_DEFER_ACCEPT the request is there already, and often
		 * without it too: look now rather than after another wait. */
		hc_proxy_conn_event(c, false, EPOLLIN);
	}
}
