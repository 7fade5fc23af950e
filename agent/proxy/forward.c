/*
 * Moving a routed connection's bytes both ways until both sides are done.
 *
 * HTTP (splice and copy modes, and everything TLS termination decrypts) goes
 * through an engine that parses every request and response head of a
 * keep-alive connection; TLS passthrough and upgraded connections become raw
 * tunnels; the sockmap mode stays a raw byte pipe after the first request
 * (the kernel moves its bytes, so there is nothing to parse them with).
 *
 * The engine, per connection (c->up: client -> backend, c->down: backend ->
 * client), each direction a small state machine over its buffer:
 *
 *   up:   F_HEAD --head parsed, same route--> F_BODY --body framed--> F_HEAD
 *           |  \--upgrade request sent-----> F_HOLD --101--> F_TUNNEL
 *           |                                  \--other final answer--> F_HEAD
 *           \--other route, or an error of ours--> F_WAIT
 *         F_WAIT: nothing more is parsed until every response before it is
 *         out (c->req_count == 0, down at F_HEAD with nothing queued); then
 *         hc_proxy_conn_answer reconnects (conn.c, and hc_proxy_forward_resume
 *         goes on with the same head, now routed here) or answers an error
 *         page and drains.
 *   down: F_HEAD --1xx--> F_HEAD (the request still waits for its answer)
 *           |--101 to an upgrade request--> F_TUNNEL (and up too)
 *           \--final answer--> F_BODY (none for HEAD, 204, 304; until EOF
 *              without a length) --framed--> F_HEAD, one request answered
 *
 * A buffer (HC_PROXY_COPY_BUF, from the worker's pool, given back whenever it
 * is empty: an idle keep-alive connection holds none) keeps
 * HC_PROXY_HEADROOM bytes free before its data, where a request head grows
 * when the client's forwarded fields are replaced by ours; bytes are framed
 * (ready) before they are sent, and a head is only parsed once everything
 * before it has been sent, so the head rewrite never overwrites unsent data.
 * One recv and one send per direction move a small request or response, head
 * and body together. A Content-Length body of HC_PROXY_SPLICE_MIN or more (what
 * is left of it once the buffer is out) and a tunnel are spliced through a
 * pipe from the worker's pool in splice mode, so bulk transfers keep their
 * zero copy; pipes are taken only for that and returned empty.
 *
 * Interest is edge-triggered and set once per socket (EPOLLIN | EPOLLOUT |
 * EPOLLRDHUP | EPOLLET): there is no epoll_ctl per request. An event marks
 * what became possible (rd_ready, wr_ready); the pump moves bytes until
 * nothing moves and a flag is cleared only when a call says so (EAGAIN, or a
 * short recv on a plain socket, which means its queue was emptied; a splice
 * into a pipe that still holds bytes may stop short for lack of pipe slots,
 * so only an EAGAIN into an empty pipe counts). Every pump refreshes the
 * deadline the worker's timer scan checks: O(1) per event, no timer object.
 *
 * Half-closes pass through as shutdown(SHUT_WR) once a direction's bytes are
 * all out; an error on one side resets the other.
 *
 * Backend connections may come from the worker's pool and go back to it
 * (pool.c): a client's Connection: close is kept from the backend (and said
 * in the response for it), and a reused connection that ends before a byte
 * of answer has its first request sent again on a new one when that is
 * safe (reused_lost), or answers 502.
 */
#define HC_LOG_MODULE "proxy"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "proxy/proxy_int.h"

#define ET_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)
/* flags of c->reqs */
#define REQ_HEAD 1u    /* its response has no body */
#define REQ_UPGRADE 2u /* a 101 may answer it */
#define REQ_CLOSE 4u /* Connection: close: the last one */

/* ---- the worker's pools ---- */

static char *buf_get(struct hc_proxy_worker *w)
{
	return w->nbufs ? w->bufs[--w->nbufs] : malloc(HC_PROXY_COPY_BUF);
}

static void buf_put(struct hc_proxy_worker *w, char *buf)
{
	if (!buf)
		return;
	if (w->nbufs < HC_PROXY_POOL_MAX)
		w->bufs[w->nbufs++] = buf;
	else
		free(buf);
}

static int pipe_get(struct hc_proxy_worker *w, int fds[2])
{
	if (w->npipes) {
		w->npipes--;
		fds[0] = w->pipes[w->npipes][0];
		fds[1] = w->pipes[w->npipes][1];
		return 0;
	}
	if (w->pipes_open >= HC_PROXY_PIPE_FDS / 2)
		return -EMFILE; /* the descriptor budget's share: the buffer carries on */
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
		return -errno;
	w->pipes_open++;
	/* Bigger than the default 64 KiB: fewer wakeups per MiB; failure
	 * only costs speed. */
	fcntl(fds[1], F_SETPIPE_SZ, HC_PROXY_PIPE_SIZE);
	return 0;
}

/* A pipe goes back only empty; one holding bytes is closed. */
static void pipe_put(struct hc_proxy_worker *w, struct hc_proxy_flow *f)
{
	if (f->pipe[0] < 0)
		return;
	if (f->piped == 0 && w->npipes < HC_PROXY_POOL_MAX) {
		w->pipes[w->npipes][0] = f->pipe[0];
		w->pipes[w->npipes][1] = f->pipe[1];
		w->npipes++;
	} else {
		close(f->pipe[0]);
		close(f->pipe[1]);
		w->pipes_open--;
	}
	f->pipe[0] = f->pipe[1] = -1;
	f->piped = 0;
}

void hc_proxy_pools_fini(struct hc_proxy_worker *w)
{
	while (w->nbufs)
		free(w->bufs[--w->nbufs]);
	while (w->npipes) {
		w->npipes--;
		close(w->pipes[w->npipes][0]);
		close(w->pipes[w->npipes][1]);
		w->pipes_open--;
	}
}

static void flow_fini(struct hc_proxy_worker *w, struct hc_proxy_flow *f)
{
	pipe_put(w, f);
	buf_put(w, f->buf);
	f->buf = NULL;
	f->queued = f->ready = 0;
}

/* ---- the sockmap ---- */

static int sock_cookie(int fd, __u64 *cookie)
{
	socklen_t len = sizeof(*cookie);

	return getsockopt(fd, SOL_SOCKET, SO_COOKIE, cookie, &len) < 0 ? -errno : 0;
}

static int sockmap_insert(struct hc_proxy_conn *c)
{
	struct hc_proxy *p = c->w->p;
	int fds[2] = {c->cfd, c->bfd};

	for (int i = 0; i < 2; i++)
		if (sock_cookie(fds[i], &c->cookie[i]) < 0)
			return -errno;
	/* Partners first: the verdict looks the partner up, and a socket in
	 * hc_splice without one just keeps its bytes (SK_PASS). */
	if (bpf_map_update_elem(p->splice_peer_fd, &c->cookie[0], &c->cookie[1], BPF_ANY) < 0 ||
	    bpf_map_update_elem(p->splice_peer_fd, &c->cookie[1], &c->cookie[0], BPF_ANY) < 0)
		return -errno;
	for (int i = 0; i < 2; i++) {
		__u64 fd = (__u64)fds[i];

		if (bpf_map_update_elem(p->splice_fd, &c->cookie[i], &fd, BPF_ANY) < 0)
			return -errno;
	}
	c->in_sockmap = true;
	return 0;
}

static void sockmap_remove(struct hc_proxy_conn *c)
{
	struct hc_proxy *p = c->w->p;

	/* Partners before sockets: a partner entry naming a socket that left
	 * hc_splice would make the verdict drop data. */
	for (int i = 0; i < 2; i++)
		bpf_map_delete_elem(p->splice_peer_fd, &c->cookie[i]);
	for (int i = 0; i < 2; i++)
		bpf_map_delete_elem(p->splice_fd, &c->cookie[i]);
	c->in_sockmap = false;
}

/* With the sockmap, the kernel moves bytes behind our back, and a FIN can
 * reach us before the data redirected ahead of it has left through the
 * partner (facts: no API tells when that queue is empty). Shutting the
 * partner then would cut the data off, so the FIN is passed on only once
 * the partner has sent everything the source received; TCP_INFO's byte
 * counts are the one measure of that. */
#define SOCKMAP_DRAIN_POLL_MS 5
#define SOCKMAP_DRAIN_MAX_MS 30000

static bool sockmap_drained(const struct hc_proxy_flow *f)
{
	struct tcp_info in, out;
	socklen_t il = sizeof(in), ol = sizeof(out);

	if (getsockopt(f->src, IPPROTO_TCP, TCP_INFO, &in, &il) < 0 ||
	    getsockopt(f->dst, IPPROTO_TCP, TCP_INFO, &out, &ol) < 0)
		return true; /* nothing to wait for any more */
	/* The source's FIN took one sequence number, which bytes_received
	 * counts; only the data went to the partner, give or take what our
	 * head rewrite changed (drain_skew). */
	return (int64_t)(out.tcpi_bytes_sent - out.tcpi_bytes_retrans) + 1 >=
	       (int64_t)in.tcpi_bytes_received + f->drain_skew;
}

/* ---- reading and writing one side ---- */

/* Reads into the flow's buffer. >0 bytes, 0 at EOF, -EAGAIN, or -errno. */
static ssize_t side_read(struct hc_proxy_conn *c, int fd, char *buf, size_t len)
{
	ssize_t n;

	if (c->ssl && fd == c->cfd) {
		int r;

		/* OpenSSL's error queue is per thread: another connection's
		 * leftovers would turn our WANT_READ into an error. */
		ERR_clear_error();
		r = SSL_read(c->ssl, buf, (int)len);

		if (r > 0)
			return r;
		switch (SSL_get_error(c->ssl, r)) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			return -EAGAIN;
		case SSL_ERROR_ZERO_RETURN:
			return 0;
		case SSL_ERROR_SYSCALL:
			return errno ? -errno : 0; /* EOF without close_notify */
		default:
			return -EPROTO;
		}
	}
	n = recv(fd, buf, len, 0);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

/* more: MSG_MORE, on a plain socket (see last_response_bytes) */
static ssize_t side_write(struct hc_proxy_conn *c, int fd, const char *buf, size_t len, bool more)
{
	ssize_t n;

	if (c->ssl && fd == c->cfd) {
		int r;

		ERR_clear_error();
		r = SSL_write(c->ssl, buf, (int)len);

		if (r > 0)
			return r;
		switch (SSL_get_error(c->ssl, r)) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			return -EAGAIN;
		default:
			return -EPIPE;
		}
	}
	n = send(fd, buf, len, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static void side_shutdown(struct hc_proxy_conn *c, int fd)
{
	if (c->ssl && fd == c->cfd) {
		ERR_clear_error();
		SSL_shutdown(c->ssl); /* close_notify, then the TCP FIN */
	}
	shutdown(fd, SHUT_WR);
}

/* ---- the sockmap mode's raw pipe ---- */

static int flow_move_raw(struct hc_proxy_conn *c, struct hc_proxy_flow *f)
{
	for (;;) {
		bool progress = false;
		ssize_t n;

		if (!f->eof && f->queued == 0) {
			n = side_read(c, f->src, f->buf, HC_PROXY_COPY_BUF);
			if (n > 0) {
				f->off = 0;
				f->queued = (size_t)n;
				progress = true;
			} else if (n == 0) {
				f->eof = progress = true;
			} else if (n != -EAGAIN) {
				return (int)n;
			}
		}
		if (f->queued > 0) {
			n = side_write(c, f->dst, f->buf + f->off, f->queued, false);
			if (n > 0) {
				f->off += (size_t)n;
				f->queued -= (size_t)n;
				f->bytes += (size_t)n;
				progress = true;
			} else if (n != -EAGAIN) {
				return (int)n;
			}
		}
		if (f->eof && f->queued == 0 && !f->shut) {
			if (c->in_sockmap && !sockmap_drained(f)) {
				uint64_t now = hc_proxy_now_ms();

				if (!f->drain_since_ms)
					f->drain_since_ms = now;
				if (now - f->drain_since_ms < SOCKMAP_DRAIN_MAX_MS)
					return 0; /* the pump comes back on a timer */
			}
			side_shutdown(c, f->dst);
			f->shut = true;
		}
		if (!progress)
			return 0;
	}
}

/* Level-triggered, as the sockmap wakes us rarely: read a side while its
 * buffer is empty, write it while data waits. */
static int raw_pump(struct hc_proxy_conn *c)
{
	unsigned ev_c = 0, ev_b = 0;
	int rc;

	rc = flow_move_raw(c, &c->up);
	if (!rc)
		rc = flow_move_raw(c, &c->down);
	if (rc < 0)
		return rc;
	if (c->up.shut && c->down.shut)
		return 1;
	/* Waiting for the sockmap to drain: look again soon. */
	c->deadline_ms = 0;
	if ((c->up.eof && !c->up.shut) || (c->down.eof && !c->down.shut))
		if (c->in_sockmap)
			c->deadline_ms = hc_proxy_now_ms() + SOCKMAP_DRAIN_POLL_MS;
	if (!c->up.eof && !c->up.queued)
		ev_c |= EPOLLIN;
	if (c->up.queued)
		ev_b |= EPOLLOUT;
	if (!c->down.eof && !c->down.queued)
		ev_b |= EPOLLIN;
	if (c->down.queued)
		ev_c |= EPOLLOUT;
	if ((rc = hc_proxy_watch(c, false, ev_c)) < 0 || (rc = hc_proxy_watch(c, true, ev_b)) < 0)
		return rc;
	return 0;
}

/* ---- the engine: moving bytes ---- */

static bool can_splice(const struct hc_proxy_conn *c)
{
	return c->w->p->cfg.forwarding == HC_PROXY_SPLICE && !c->ssl;
}

static bool is_tls_side(const struct hc_proxy_conn *c, int fd)
{
	return c->ssl && fd == c->cfd;
}

/* Whether this send is the rest of the last response of a connection
 * whose client said Connection: close: once it is out, engine_pump closes
 * the connection (the same test). Sent with MSG_MORE, the bytes wait in
 * the socket for the close, whose FIN the kernel adds to them (tcp_send_fin
 * tacks it onto an unsent segment): one packet less per connection, and the
 * client reads the answer and the end in one wakeup. Not when the backend
 * alone said close: a client pipelining behind it may still be sending, and
 * a close with unread bytes is a reset, which would drop what waits. */
static bool last_response_bytes(const struct hc_proxy_conn *c, const struct hc_proxy_flow *f)
{
	return f == &c->down && c->client_said_close && c->last_exchange && !c->req_count &&
	       f->state == F_HEAD && f->ready == f->queued && f->pipe[0] < 0 && !c->up.queued &&
	       !c->up.rd_ready && !is_tls_side(c, f->dst);
}

/* Sends what is framed. 1: bytes moved, 0: none, -errno. */
static int flow_send(struct hc_proxy_conn *c, struct hc_proxy_flow *f)
{
	ssize_t n;

	if (!f->ready || !f->wr_ready)
		return 0;
	n = side_write(c, f->dst, f->buf + f->off, f->ready, last_response_bytes(c, f));
	if (n == -EAGAIN) {
		f->wr_ready = false;
		return 0;
	}
	if (n < 0)
		return (int)n;
	/* A short send fills a TCP socket (its EPOLLOUT edge follows); OpenSSL
	 * returns after each record with partial writes on, full or not. */
	if ((size_t)n < f->ready && !is_tls_side(c, f->dst))
		f->wr_ready = false;
	f->off += (size_t)n;
	f->queued -= (size_t)n;
	f->ready -= (size_t)n;
	f->bytes += (size_t)n;
	if (!f->queued)
		f->off = HC_PROXY_HEADROOM;
	return 1;
}

/* A buffer for the flow, empty if it is new. 0 or -ENOMEM. */
static int flow_buf(struct hc_proxy_worker *w, struct hc_proxy_flow *f)
{
	if (f->buf)
		return 0;
	f->buf = buf_get(w);
	if (!f->buf)
		return -ENOMEM;
	f->off = HC_PROXY_HEADROOM;
	f->queued = f->ready = 0;
	return 0;
}

/* Reads into the buffer (taken from the pool if need be). */
static int flow_recv(struct hc_proxy_conn *c, struct hc_proxy_flow *f)
{
	size_t room;
	ssize_t n;

	if (f->eof || !f->rd_ready || f->pipe[0] >= 0)
		return 0;
	if (flow_buf(c->w, f) < 0)
		return -ENOMEM;
	/* Full at the end: bytes waiting to be sent free the room as they go;
	 * only a head still arriving (nothing ready) needs it moved down. */
	if (f->off + f->queued == HC_PROXY_COPY_BUF && f->off > HC_PROXY_HEADROOM && !f->ready) {
		memmove(f->buf + HC_PROXY_HEADROOM, f->buf + f->off, f->queued);
		f->off = HC_PROXY_HEADROOM;
	}
	room = HC_PROXY_COPY_BUF - f->off - f->queued;
	if (!room)
		return 0; /* backpressure: the send side empties it first */
	n = side_read(c, f->src, f->buf + f->off + f->queued, room);
	if (n == -EAGAIN) {
		f->rd_ready = f->hup = false; /* a FIN after this brings its edge */
		return 0;
	}
	if (n < 0)
		return (int)n;
	if (n == 0) {
		f->eof = true;
		return 1;
	}
	if (f == &c->down && !c->resp_seen) {
		c->resp_seen = true; /* the request needs no retry any more */
		free(c->retry);
		c->retry = NULL;
	}
	/* A short read emptied a TCP socket's queue: the next byte brings an
	 * edge. Not so for a FIN that was already queued behind the data (its
	 * edge came with them: hup), and OpenSSL returns a record at a time. */
	if ((size_t)n < room && !is_tls_side(c, f->src) && !f->hup)
		f->rd_ready = false;
	f->queued += (size_t)n;
	return 1;
}

/* Splices a long body or a tunnel: pipe to dst first, then src to pipe. */
static int flow_splice(struct hc_proxy_flow *f)
{
	int moved = 0;
	ssize_t n;

	if (f->pipe[0] < 0)
		return 0;
	if (f->piped && f->wr_ready) {
		n = splice(f->pipe[0], NULL, f->dst, NULL, f->piped, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			if ((size_t)n < f->piped)
				f->wr_ready = false;
			f->piped -= (size_t)n;
			f->bytes += (size_t)n;
			moved = 1;
		} else if (n < 0 && errno == EAGAIN) {
			f->wr_ready = false;
		} else if (n < 0) {
			return -errno;
		}
	}
	if (f->splice_left && f->rd_ready && !f->eof && f->piped < HC_PROXY_PIPE_SIZE) {
		size_t room = HC_PROXY_PIPE_SIZE - f->piped;
		size_t want = f->splice_left < room ? (size_t)f->splice_left : room;
		bool was_empty = f->piped == 0;

		n = splice(f->src, NULL, f->pipe[1], NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			f->piped += (size_t)n;
			if (f->splice_left != UINT64_MAX)
				f->splice_left -= (uint64_t)n;
			moved = 1;
		} else if (n == 0) {
			f->eof = true;
			moved = 1;
		} else if (errno == EAGAIN) {
			/* into a pipe holding bytes, EAGAIN may mean no pipe
			 * slot is free: only an empty pipe proves the socket empty */
			if (was_empty)
				f->rd_ready = false;
		} else {
			return -errno;
		}
	}
	return moved;
}

/* A long Content-Length body, or a tunnel, whose buffered part is out:
 * the rest is spliced (splice mode). Without a pipe the buffer carries on. */
static void maybe_splice(struct hc_proxy_conn *c, struct hc_proxy_flow *f)
{
	bool body = f->state == F_BODY && f->body.kind == HC_BODY_LENGTH &&
		    f->body.left >= HC_PROXY_SPLICE_MIN;

	if (f->queued || f->pipe[0] >= 0 || f->eof || !can_splice(c) || (!body && f->state != F_TUNNEL))
		return;
	if (pipe_get(c->w, f->pipe) < 0)
		return;
	f->piped = 0;
	if (body) {
		f->splice_left = f->body.left;
		hc_http_body_init(&f->body, HC_BODY_NONE, 0);
	} else {
		f->splice_left = UINT64_MAX;
	}
}

/* ---- the engine: requests and responses ---- */

static void req_push(struct hc_proxy_conn *c, unsigned flags)
{
	c->reqs[(c->req_first + c->req_count++) % HC_PROXY_PIPELINE_MAX] = (uint8_t)flags;
}

static void req_pop(struct hc_proxy_conn *c)
{
	if (!c->req_count)
		return;
	c->req_first = (c->req_first + 1) % HC_PROXY_PIPELINE_MAX;
	c->req_count--;
}

/* Nothing of a response is on its way to the client. */
static bool backend_quiet(const struct hc_proxy_conn *c)
{
	const struct hc_proxy_flow *d = &c->down;

	return d->state == F_HEAD && !d->queued && d->pipe[0] < 0;
}

static void up_done(struct hc_proxy_conn *c)
{
	c->up.state = c->upgrading ? F_HOLD : F_HEAD;
}

static void down_done(struct hc_proxy_conn *c)
{
	req_pop(c);
	c->down.state = F_HEAD;
}

/* The body after a head just framed; a message without one is done. */
static int body_start(struct hc_proxy_conn *c, struct hc_proxy_flow *f, enum hc_http_body_kind kind,
		      uint64_t length)
{
	hc_http_body_init(&f->body, kind, length);
	f->state = F_BODY;
	if (f->body.kind == HC_BODY_NONE) {
		if (f == &c->up)
			up_done(c);
		else
			down_done(c);
	}
	return 1;
}

/* The client's address as accept4 gave it (no getpeername per connection);
 * an IPv4-mapped one is written as IPv4. */
static bool peer_text(const struct hc_proxy_conn *c, char *ip, size_t len)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (!c->have_peer)
		return false;
	if (memcmp(c->peer.a, mapped, sizeof(mapped)) == 0) {
		inet_ntop(AF_INET, c->peer.a + 12, ip, (socklen_t)len);
		return false;
	}
	inet_ntop(AF_INET6, c->peer.a, ip, (socklen_t)len);
	return true;
}

void hc_proxy_forwarded_lines(struct hc_proxy_conn *c)
{
	char ip[INET6_ADDRSTRLEN] = "unknown";
	const char *proto = c->ssl ? "https" : "http";
	bool v6 = peer_text(c, ip, sizeof(ip));
	int n;

	n = snprintf(c->fwd, sizeof(c->fwd),
		     "X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\nForwarded: for=%s%s%s;proto=%s\r\n",
		     ip, proto, v6 ? "\"[" : "", ip, v6 ? "]\"" : "", proto);
	c->fwd_len = n > 0 && (size_t)n < sizeof(c->fwd) ? (size_t)n : 0;
}

/* Whether a request may be sent again on a new connection after the
 * backend closed a reused one under it: an idempotent method (RFC 9110
 * 9.2.2) and no body, so that the whole request is its head. */
static bool retriable(const char *head, const struct hc_http_head *h)
{
	const char *sp = memchr(head, ' ', h->request_line_len);

	if (h->chunked || (h->has_length && h->content_length) || h->upgrade || !sp)
		return false;
	return hc_http_method_idempotent(head, (size_t)(sp - head));
}

/* The first request on a reused backend connection: kept as it came, to be
 * sent again if the backend closed the connection as we took it. */
static void keep_for_retry(struct hc_proxy_conn *c, const struct hc_http_head *h)
{
	const char *head = c->up.buf + c->up.off;

	if (!c->reused || c->resp_seen || c->req_count || c->retry || !retriable(head, h))
		return;
	c->retry = malloc(h->head_len);
	if (!c->retry)
		return; /* no retry then: a 502 if it comes to that */
	memcpy(c->retry, head, h->head_len);
	c->retry_len = h->head_len;
}

/* What the head rewrite drops: the client's forwarded fields when ours
 * replace them, and a Connection: close the backend connection must not
 * see when it is to be reused (the client's connection still ends after
 * the answer: REQ_CLOSE). */
static unsigned rewrite_flags(const struct hc_proxy_conn *c, const struct hc_http_head *h)
{
	const struct hc_proxy_config *cfg = &c->w->p->cfg;
	unsigned flags = cfg->forwarded_headers ? HC_REWRITE_FORWARDED : 0;

	if (cfg->backend_reuse && h->close && !h->close_mixed && !h->http10)
		flags |= HC_REWRITE_CLOSE;
	return flags;
}

/* A request head routed to the current backend: rewritten in place (it
 * grows into the room before it, see the top), then framed. */
static int up_forward_head(struct hc_proxy_conn *c, const struct hc_http_head *h)
{
	struct hc_proxy_flow *f = &c->up;
	size_t len = h->head_len;
	unsigned flags = rewrite_flags(c, h);

	/* what makes the backend end the connection, or changes its protocol */
	if ((h->close && !(flags & HC_REWRITE_CLOSE)) || h->http10 || h->upgrade)
		c->backend_keep = false;
	keep_for_retry(c, h);
	if (c->wl)
		atomic_fetch_add_explicit(&c->wl->requests, 1, memory_order_relaxed);
	if (flags) {
		char out[HC_HTTP_HEAD_MAX + sizeof(c->fwd)];
		bool fwd = flags & HC_REWRITE_FORWARDED;
		size_t n;

		if (fwd && !c->fwd_len)
			hc_proxy_forwarded_lines(c);
		n = hc_http_head_rewrite(f->buf + f->off, h, fwd ? c->fwd : "", fwd ? c->fwd_len : 0,
					 flags, out, sizeof(out));
		if (!n || n > f->off + h->head_len)
			return -EOVERFLOW; /* cannot happen: the headroom holds fwd */
		f->off = f->off + h->head_len - n;
		memcpy(f->buf + f->off, out, n);
		f->queued = f->queued - h->head_len + n;
		len = n;
	}
	f->ready = len;
	/* draining: this exchange is the connection's last; its response says
	 * so (the backend's connection stays keep-alive) */
	req_push(c, (h->head_method ? REQ_HEAD : 0u) | (h->upgrade ? REQ_UPGRADE : 0u) |
			    (h->close || hc_proxy_draining(c->w->p) ? REQ_CLOSE : 0u));
	c->upgrading = h->upgrade;
	return body_start(c, f, h->chunked ? HC_BODY_CHUNKED
					   : h->has_length ? HC_BODY_LENGTH : HC_BODY_NONE,
			  h->content_length);
}

static int up_head(struct hc_proxy_conn *c)
{
	struct hc_proxy_flow *f = &c->up;
	struct hc_http_head h;
	int r;

	/* only once everything before it is out: the rewrite may write there */
	if (f->ready || !f->queued || c->req_count == HC_PROXY_PIPELINE_MAX)
		return 0;
	r = hc_http_head_parse(f->buf + f->off, f->queued, &h);
	if (r == HC_PARSE_MORE) {
		if (!f->head_since_ms)
			f->head_since_ms = c->w->now_ms;
		return 0;
	}
	f->head_since_ms = 0;
	if (r != HC_PARSE_OK) {
		c->answer = r == HC_PARSE_TOO_LARGE ? A_TOO_LARGE : A_BAD_REQUEST;
		f->state = F_WAIT;
		return 1;
	}
	if (hc_proxy_request_route(c, &h) != 0) {
		f->state = F_WAIT;
		return 1;
	}
	return up_forward_head(c, &h);
}

/* Frames what the body parser has not seen yet, or finishes a spliced body. */
static int flow_body(struct hc_proxy_conn *c, struct hc_proxy_flow *f, bool up)
{
	size_t used;
	int r;

	if (f->pipe[0] >= 0) {
		if (f->splice_left || f->piped)
			return 0;
		pipe_put(c->w, f);
		if (up)
			up_done(c);
		else
			down_done(c);
		return 1;
	}
	if (f->ready == f->queued)
		return 0;
	r = hc_http_body_feed(&f->body, f->buf + f->off + f->ready, f->queued - f->ready, &used);
	if (r == HC_PARSE_INVALID)
		return -EPROTO;
	f->ready += used;
	if (r == HC_PARSE_OK) {
		if (up)
			up_done(c);
		else
			down_done(c);
	}
	return 1;
}

static int up_frame(struct hc_proxy_conn *c)
{
	struct hc_proxy_flow *f = &c->up;
	int rc;

	switch (f->state) {
	case F_TUNNEL:
		if (f->ready == f->queued)
			return 0;
		f->ready = f->queued;
		return 1;
	case F_HEAD:
		return up_head(c);
	case F_BODY:
		rc = flow_body(c, f, true);
		/* a bad chunk: the head went out, so the backend must go; the
		 * client gets its 400 if no response is on its way */
		if (rc == -EPROTO && c->req_count == 1 && backend_quiet(c)) {
			c->answer = A_BAD_REQUEST;
			hc_proxy_conn_answer(c);
			return 0;
		}
		return rc;
	case F_HOLD:
	case F_WAIT:
		break;
	}
	return 0;
}

/* The client said Connection: close, the backend (whose connection stays
 * open) did not: the response says it for us (RFC 9112 9.6), so that the
 * client does not take our close for an error. Inserted after the status
 * line, the bytes before it moving into the headroom (the last exchange:
 * nothing after it needs the room). */
static void say_close(struct hc_proxy_flow *f, struct hc_http_response *resp)
{
	static const char line[] = "Connection: close\r\n";
	const size_t len = sizeof(line) - 1;
	char *head = f->buf + f->off + f->ready;
	char *lf = memchr(head, '\n', resp->head_len); /* the head is whole and checked */
	size_t before = f->ready + (size_t)(lf + 1 - head);

	if (!lf || f->off < len)
		return; /* cannot happen: the headroom is there */
	memmove(f->buf + f->off - len, f->buf + f->off, before);
	f->off -= len;
	memcpy(f->buf + f->off + before, line, len);
	f->queued += len;
	resp->head_len += len;
}

static int down_head(struct hc_proxy_conn *c)
{
	struct hc_proxy_flow *f = &c->down;
	struct hc_http_response resp;
	enum hc_http_body_kind kind;
	uint64_t len = 0;
	unsigned flags;
	int r;

	/* responses are not rewritten: the next head may follow bytes not
	 * sent yet, so that a head, its body and the next response go out in
	 * one send */
	if (f->ready == f->queued)
		return 0;
	if (!c->req_count)
		return -EPROTO; /* an answer nobody asked for */
	r = hc_http_response_parse(f->buf + f->off + f->ready, f->queued - f->ready, &resp);
	if (r == HC_PARSE_MORE)
		return 0;
	if (r != HC_PARSE_OK) {
		if (f->ready)
			return 0; /* what is ready goes first */
		c->answer = A_BAD_GATEWAY;
		hc_proxy_conn_answer(c);
		return 0;
	}
	flags = c->reqs[c->req_first];
	if (resp.status == 101) {
		if (!(flags & REQ_UPGRADE))
			return -EPROTO;
		c->backend_keep = false;
		/* the connection is the upgraded protocol's from here, both ways */
		req_pop(c);
		c->upgrading = false;
		f->state = c->up.state = F_TUNNEL;
		f->ready = f->queued;
		c->up.ready = c->up.queued;
		hc_http_body_init(&c->up.body, HC_BODY_NONE, 0);
		return 1;
	}
	if (resp.status >= 200 && (flags & REQ_CLOSE) && !resp.close)
		say_close(f, &resp);
	f->ready += resp.head_len;
	if (resp.status < 200)
		return 1; /* interim (100 Continue): the request still waits */
	if (flags & REQ_UPGRADE) {
		/* refused: HTTP goes on */
		c->upgrading = false;
		if (c->up.state == F_HOLD)
			c->up.state = F_HEAD;
	}
	/* Connection: close either way: this exchange is the last, and the
	 * connection ends once its response is out (no half-close dance) */
	if (resp.close || (flags & REQ_CLOSE))
		c->last_exchange = true;
	if (flags & REQ_CLOSE)
		c->client_said_close = true;
	kind = hc_http_response_body(&resp, flags & REQ_HEAD, &len);
	/* the backend ends the connection after it (or we could not tell) */
	if (resp.close || resp.http10 || kind == HC_BODY_CLOSE)
		c->backend_keep = false;
	return body_start(c, f, kind, len);
}

static int down_frame(struct hc_proxy_conn *c)
{
	struct hc_proxy_flow *f = &c->down;

	switch (f->state) {
	case F_TUNNEL:
		if (f->ready == f->queued)
			return 0;
		f->ready = f->queued;
		return 1;
	case F_HEAD:
		return down_head(c);
	case F_BODY:
		return flow_body(c, f, false);
	case F_HOLD:
	case F_WAIT:
		break;
	}
	return 0;
}

/* Passes the source's EOF on once its bytes are out. What was not framed
 * (a head cut short) is dropped; a request waiting for its turn is not. */
static int flow_finish(struct hc_proxy_conn *c, struct hc_proxy_flow *f, bool up)
{
	if (!f->eof || f->shut || f->ready || f->piped)
		return 0;
	if (up && (f->state == F_WAIT || f->state == F_HOLD))
		return 0;
	if (!up && f->state == F_BODY && f->body.kind == HC_BODY_CLOSE)
		down_done(c); /* a body delimited by the close ends here */
	f->queued = 0;
	f->off = HC_PROXY_HEADROOM;
	/* The other way already ended (its EOF read, so nothing unread waits
	 * on dst): the close that follows sends the FIN. TLS needs its
	 * close_notify. */
	if (!(up ? c->down.shut : c->up.shut) || is_tls_side(c, f->dst))
		side_shutdown(c, f->dst);
	f->shut = true;
	return 1;
}

static void set_deadline(struct hc_proxy_conn *c)
{
	const struct hc_proxy_config *cfg = &c->w->p->cfg;
	uint64_t now = c->w->now_ms;

	if (c->up.state == F_TUNNEL)
		c->deadline_ms = now + cfg->tunnel_idle_timeout_ms;
	else if (c->up.state == F_HEAD && c->up.head_since_ms)
		c->deadline_ms = c->up.head_since_ms + cfg->head_timeout_ms;
	else
		c->deadline_ms = now + cfg->idle_timeout_ms;
}

/* One direction's turn: read, frame, send, splice. */
static int flow_step(struct hc_proxy_conn *c, struct hc_proxy_flow *f, bool up)
{
	int moved = 0, rc;

	if ((rc = flow_recv(c, f)) < 0)
		return rc;
	moved |= rc;
	/* a head, then its body, then (responses) the next head: all that
	 * arrived is framed before the send */
	while ((rc = up ? up_frame(c) : down_frame(c)) > 0 && c->state == C_FORWARD)
		moved = 1;
	if (rc < 0)
		return rc;
	if (c->state != C_FORWARD)
		return 0; /* an answer of ours took the connection over */
	if ((rc = flow_send(c, f)) < 0)
		return rc;
	moved |= rc;
	maybe_splice(c, f);
	if ((rc = flow_splice(f)) < 0)
		return rc;
	moved |= rc;
	return moved;
}

/* Puts the kept request back before what the client sent after it (the
 * unsent rest of its rewritten copy dropped), to be parsed and sent again.
 * 0, or -ENOSPC when it does not fit beside them. */
static int retry_requeue(struct hc_proxy_conn *c)
{
	struct hc_proxy_flow *f = &c->up;

	if (flow_buf(c->w, f) < 0)
		return -ENOMEM;
	/* what is ready is the request's own (nothing after it is framed) */
	f->off += f->ready;
	f->queued -= f->ready;
	f->ready = 0;
	if (HC_PROXY_HEADROOM + c->retry_len + f->queued > HC_PROXY_COPY_BUF)
		return -ENOSPC;
	memmove(f->buf + HC_PROXY_HEADROOM + c->retry_len, f->buf + f->off, f->queued);
	memcpy(f->buf + HC_PROXY_HEADROOM, c->retry, c->retry_len);
	f->off = HC_PROXY_HEADROOM;
	f->queued += c->retry_len;
	return 0;
}

/* A reused backend connection failed (EOF or an error) before a byte of
 * answer: the backend closed it while we took it. Nothing sent yet, or a
 * request kept for it (idempotent, no body): once more on a new
 * connection. Otherwise the client gets a 502 (a request that may have
 * had effects is never sent twice). false: not that case (rc stands). */
static bool reused_lost(struct hc_proxy_conn *c)
{
	if (!c->reused || c->resp_seen || c->state != C_FORWARD || !backend_quiet(c))
		return false;
	if (c->req_count == 0 && !c->up.ready && c->up.state == F_HEAD) {
		hc_proxy_backend_retry(c); /* nothing was sent: only reconnect */
		return true;
	}
	if (c->req_count == 1 && c->retry && c->up.state == F_HEAD && retry_requeue(c) == 0) {
		req_pop(c);
		hc_proxy_backend_retry(c);
		return true;
	}
	c->answer = A_BAD_GATEWAY;
	hc_proxy_conn_answer(c);
	return true;
}

static int engine_pump(struct hc_proxy_conn *c)
{
	for (;;) {
		int moved = 0, rc;

		if ((rc = flow_step(c, &c->up, true)) < 0)
			return reused_lost(c) ? 0 : rc;
		moved |= rc;
		if (c->state != C_FORWARD)
			return 0;
		if ((rc = flow_step(c, &c->down, false)) < 0)
			return reused_lost(c) ? 0 : rc;
		moved |= rc;
		if (c->state != C_FORWARD)
			return 0;
		if (c->down.eof && reused_lost(c))
			return 0;
		/* the client ended between exchanges: its backend connection
		 * stays open for the pool, not shut (a FIN after a request still
		 * waiting for its answer is passed on: the backend may wait for
		 * it, and then the connection is not clean) */
		if (c->up.eof && !c->up.queued && c->up.state == F_HEAD && !c->req_count &&
		    backend_quiet(c) && hc_proxy_backend_poolable(c))
			return 1;
		/* draining: a connection between exchanges ends now (a client
		 * retries a request that crossed our FIN, as after an idle
		 * timeout) */
		if (hc_proxy_draining(c->w->p) && c->up.state == F_HEAD && !c->up.queued &&
		    !c->req_count && backend_quiet(c))
			return 1;
		moved |= flow_finish(c, &c->up, true) | flow_finish(c, &c->down, false);
		/* the response to a Connection: close exchange is out: closing
		 * both sockets now ends the connection with one FIN each way */
		if (c->last_exchange && !c->req_count && backend_quiet(c) && !c->up.queued) {
			if (c->ssl && !c->down.shut)
				side_shutdown(c, c->cfd); /* TLS ends with its close_notify */
			return 1;
		}
		if (c->up.state == F_WAIT && !c->req_count && backend_quiet(c)) {
			if (c->down.shut)
				return 1; /* the client was told EOF: nobody to answer */
			hc_proxy_conn_answer(c);
			return 0;
		}
		if (!moved)
			break;
	}
	if (c->up.shut && c->down.shut)
		return 1;
	/* an idle keep-alive connection holds no buffer */
	for (int i = 0; i < 2; i++) {
		struct hc_proxy_flow *f = i ? &c->down : &c->up;

		if (f->buf && !f->queued) {
			buf_put(c->w, f->buf);
			f->buf = NULL;
		}
	}
	set_deadline(c);
	return 0;
}

/* ---- both directions ---- */

int hc_proxy_forward_pump(struct hc_proxy_conn *c)
{
	int rc = c->engine ? engine_pump(c) : raw_pump(c);

	if (rc < 0) {
		if (rc != -ECONNRESET && rc != -EPIPE)
			hc_log(HC_LOG_DEBUG, "connection for %s: %s", c->host, strerror(-rc));
		atomic_fetch_add(&c->w->p->stats.errors[HC_PROXY_ERR_RESET], 1);
	}
	return rc;
}

void hc_proxy_forward_event(struct hc_proxy_conn *c, bool backend_side, unsigned events)
{
	struct hc_proxy_flow *from = backend_side ? &c->down : &c->up;
	struct hc_proxy_flow *to = backend_side ? &c->up : &c->down;

	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		from->rd_ready = true;
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		from->hup = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		to->wr_ready = true;
	/* TLS reads may need the socket writable and writes readable */
	if (c->ssl && !backend_side && events)
		from->rd_ready = to->wr_ready = true;
}

void hc_proxy_forward_expire(struct hc_proxy_conn *c)
{
	int rc;

	if (!c->engine) {
		/* only the sockmap's drain wait sets a deadline here */
		rc = hc_proxy_forward_pump(c);
		if (rc)
			hc_proxy_conn_close(c, rc < 0);
		return;
	}
	if (c->up.state == F_HEAD && c->up.head_since_ms && !c->req_count && backend_quiet(c)) {
		c->answer = A_TIMEOUT;
		hc_proxy_conn_answer(c);
		return;
	}
	atomic_fetch_add(&c->w->p->stats.errors[HC_PROXY_ERR_IDLE_TIMEOUT], 1);
	hc_proxy_conn_close(c, false);
}

int hc_proxy_forward_prepare(struct hc_proxy_conn *c)
{
	if (c->engine || c->in_sockmap)
		return 0;
	return sockmap_insert(c);
}

static void flow_reset(struct hc_proxy_flow *f, int src, int dst, enum hc_proxy_flow_state state)
{
	f->src = src;
	f->dst = dst;
	f->state = state;
	f->eof = f->shut = f->hup = false;
	f->rd_ready = f->wr_ready = true;
	f->splice_left = 0;
	f->head_since_ms = 0;
	hc_http_body_init(&f->body, HC_BODY_NONE, 0);
}

/* May close c (when the pump finds both sides already done); returns < 0
 * only when c is still open and should be closed by the caller. */
int hc_proxy_forward_start(struct hc_proxy_conn *c)
{
	struct hc_proxy *p = c->w->p;
	int lowat = 1, rc;

	if (c->lowat_set) {
		setsockopt(c->cfd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
		c->lowat_set = false;
	}
	atomic_fetch_add(&p->stats.forwarded[c->ssl ? HC_PROXY_COPY : p->cfg.forwarding], 1);
	c->state = C_FORWARD;
	c->deadline_ms = 0;
	if (!c->engine) {
		c->up.src = c->down.dst = c->cfd;
		c->up.dst = c->down.src = c->bfd;
		c->up.buf = buf_get(c->w);
		c->down.buf = buf_get(c->w);
		free(c->peek);
		c->peek = NULL;
		if (!c->up.buf || !c->down.buf) {
			hc_log(HC_LOG_WARN, "cannot forward a connection for %s: out of memory", c->host);
			return -ENOMEM;
		}
		rc = hc_proxy_forward_pump(c);
		if (rc)
			hc_proxy_conn_close(c, rc < 0);
		return 0;
	}
	/* TLS passthrough is a tunnel from the start; the rest is HTTP */
	{
		/* the client's edges since connect_backend set our interest
		 * (whose EPOLL_CTL_MOD reported what was pending then: the
		 * head, and its FIN if it came with it) were recorded; when the
		 * routing's read emptied the socket and none came since, the
		 * next byte brings one (no recv to learn it) */
		bool hup = c->up.hup;
		bool more = c->up.rd_ready || hup || !c->peek_drained || c->ssl;

		flow_reset(&c->up, c->cfd, c->bfd, c->tls && !c->ssl ? F_TUNNEL : F_HEAD);
		c->up.hup = hup;
		c->up.rd_ready = more;
	}
	flow_reset(&c->down, c->bfd, c->cfd, c->up.state);
	/* a new backend has sent nothing: its first byte brings an edge */
	c->down.rd_ready = false;
	c->engine_on = true;
	c->consumed = true;
	if (c->peek_len) {
		/* what the routing read: the head (or the ClientHello of a
		 * passthrough), maybe more; terminated: what the handshake's
		 * first reads decrypted */
		c->up.buf = buf_get(c->w);
		if (!c->up.buf || c->peek_len > HC_PROXY_COPY_BUF - HC_PROXY_HEADROOM)
			return -ENOMEM;
		c->up.off = HC_PROXY_HEADROOM;
		memcpy(c->up.buf + c->up.off, c->peek, c->peek_len);
		c->up.queued = c->peek_len;
		c->up.ready = 0;
	}
	free(c->peek);
	c->peek = NULL;
	c->peek_len = c->head_len = 0;
	rc = hc_proxy_forward_pump(c);
	if (rc)
		hc_proxy_conn_close(c, rc < 0);
	return 0;
}

int hc_proxy_forward_resume(struct hc_proxy_conn *c)
{
	int rc;

	c->state = C_FORWARD;
	c->deadline_ms = 0;
	c->up.dst = c->bfd;
	c->up.state = F_HEAD; /* the head that waited, routed here now */
	c->up.rd_ready = c->up.wr_ready = c->up.hup = true; /* edges missed while connecting */
	c->up.shut = false;
	flow_reset(&c->down, c->bfd, c->cfd, F_HEAD);
	rc = hc_proxy_forward_pump(c);
	if (rc)
		hc_proxy_conn_close(c, rc < 0);
	return 0;
}

void hc_proxy_forward_fini(struct hc_proxy_conn *c)
{
	free(c->retry);
	c->retry = NULL;
	if (c->in_sockmap)
		sockmap_remove(c);
	flow_fini(c->w, &c->up);
	flow_fini(c->w, &c->down);
}
