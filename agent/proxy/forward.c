/* Moving a routed connection's bytes both ways until both sides are done:
 * splice(2) through a pipe per direction (zero-copy, bounded by the pipe),
 * a userspace copy (also what a TLS-terminated client side needs), or the
 * hc_splice sockmap, where the kernel redirects and we only see the ends.
 * Half-closes pass through as shutdown(SHUT_WR); an error on one side resets
 * the other. */
#define HC_LOG_MODULE "proxy"

#include <bpf/bpf.h>
#include <errno.h>
#include <linux/tcp.h>
#include <openssl/err.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "proxy/proxy_int.h"

static bool uses_pipe(const struct hc_proxy_conn *c)
{
	return c->w->p->cfg.forwarding == HC_PROXY_SPLICE && !c->ssl;
}

static int flow_init(struct hc_proxy_conn *c, struct hc_proxy_flow *f, int src, int dst)
{
	f->src = src;
	f->dst = dst;
	if (uses_pipe(c)) {
		if (pipe2(f->pipe, O_NONBLOCK | O_CLOEXEC) < 0)
			return -errno;
		/* Bigger than the default 64 KiB: fewer wakeups per MiB; failure
		 * only costs speed. */
		fcntl(f->pipe[1], F_SETPIPE_SZ, HC_PROXY_PIPE_SIZE);
		return 0;
	}
	f->buf = malloc(HC_PROXY_COPY_BUF);
	return f->buf ? 0 : -ENOMEM;
}

static void flow_fini(struct hc_proxy_flow *f)
{
	for (int i = 0; i < 2; i++)
		if (f->pipe[i] >= 0)
			close(f->pipe[i]);
	f->pipe[0] = f->pipe[1] = -1;
	free(f->buf);
	f->buf = NULL;
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
	 * counts; only the data went to the partner. */
	return out.tcpi_bytes_sent - out.tcpi_bytes_retrans + 1 >= in.tcpi_bytes_received;
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

static ssize_t side_write(struct hc_proxy_conn *c, int fd, const char *buf, size_t len)
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
	n = send(fd, buf, len, MSG_NOSIGNAL);
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

/* ---- one direction ---- */

/* Moves what can be moved now. 0, or -errno on a hard error. */
static int flow_move_pipe(struct hc_proxy_conn *c, struct hc_proxy_flow *f)
{
	for (;;) {
		bool progress = false;
		ssize_t n;

		if (!f->eof && f->queued < HC_PROXY_PIPE_SIZE) {
			n = splice(f->src, NULL, f->pipe[1], NULL, HC_PROXY_PIPE_SIZE - f->queued,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				f->queued += (size_t)n;
				progress = true;
			} else if (n == 0) {
				f->eof = progress = true;
			} else if (errno != EAGAIN) {
				return -errno;
			}
		}
		if (f->queued > 0) {
			n = splice(f->pipe[0], NULL, f->dst, NULL, f->queued,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				f->queued -= (size_t)n;
				f->bytes += (size_t)n;
				progress = true;
			} else if (n < 0 && errno != EAGAIN) {
				return -errno;
			}
		}
		if (f->eof && f->queued == 0 && !f->shut) {
			side_shutdown(c, f->dst);
			f->shut = true;
		}
		if (!progress)
			return 0;
	}
}

static int flow_move_copy(struct hc_proxy_conn *c, struct hc_proxy_flow *f)
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
			n = side_write(c, f->dst, f->buf + f->off, f->queued);
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

static int flow_move(struct hc_proxy_conn *c, struct hc_proxy_flow *f)
{
	return uses_pipe(c) ? flow_move_pipe(c, f) : flow_move_copy(c, f);
}

static size_t flow_room(const struct hc_proxy_conn *c, const struct hc_proxy_flow *f)
{
	size_t cap = uses_pipe(c) ? HC_PROXY_PIPE_SIZE : HC_PROXY_COPY_BUF;

	return f->queued < cap && (uses_pipe(c) || f->queued == 0) ? cap - f->queued : 0;
}

/* ---- both directions ---- */

int hc_proxy_forward_pump(struct hc_proxy_conn *c)
{
	unsigned ev_c = 0, ev_b = 0;
	int rc;

	rc = flow_move(c, &c->up);
	if (!rc)
		rc = flow_move(c, &c->down);
	if (rc < 0) {
		if (rc != -ECONNRESET && rc != -EPIPE)
			hc_log(HC_LOG_DEBUG, "connection for %s: %s", c->host, strerror(-rc));
		atomic_fetch_add(&c->w->p->stats.errors[HC_PROXY_ERR_RESET], 1);
		return rc;
	}
	if (c->up.shut && c->down.shut)
		return 1;
	/* Waiting for the sockmap to drain: look again soon. */
	c->deadline_ms = 0;
	if ((c->up.eof && !c->up.shut) || (c->down.eof && !c->down.shut))
		if (c->in_sockmap)
			c->deadline_ms = hc_proxy_now_ms() + SOCKMAP_DRAIN_POLL_MS;
	/* Read a side while its direction has room; write it while data waits.
	 * A full pipe or buffer stops reading, which is the backpressure. */
	if (!c->up.eof && flow_room(c, &c->up))
		ev_c |= EPOLLIN;
	if (c->up.queued)
		ev_b |= EPOLLOUT;
	if (!c->down.eof && flow_room(c, &c->down))
		ev_b |= EPOLLIN;
	if (c->down.queued)
		ev_c |= EPOLLOUT;
	/* TLS may need the socket's other direction to make progress (a
	 * record half read, a key update): listen for both then. */
	if (c->ssl && (ev_c & EPOLLIN) && SSL_want_write(c->ssl))
		ev_c |= EPOLLOUT;
	if ((rc = hc_proxy_watch(c, false, ev_c)) < 0 || (rc = hc_proxy_watch(c, true, ev_b)) < 0)
		return rc;
	return 0;
}

int hc_proxy_forward_prepare(struct hc_proxy_conn *c)
{
	if (c->w->p->cfg.forwarding != HC_PROXY_SOCKMAP || c->ssl || c->in_sockmap)
		return 0;
	return sockmap_insert(c);
}

/* May close c (when the pump finds both sides already done); returns < 0
 * only when c is still open and should be closed by the caller. */
int hc_proxy_forward_start(struct hc_proxy_conn *c)
{
	struct hc_proxy *p = c->w->p;
	int lowat = 1, rc;

	setsockopt(c->cfd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
	rc = flow_init(c, &c->up, c->cfd, c->bfd);
	if (!rc)
		rc = flow_init(c, &c->down, c->bfd, c->cfd);

	if (rc) {
		hc_log(HC_LOG_WARN, "cannot forward a connection for %s: %s", c->host, strerror(-rc));
		return rc;
	}
	c->state = C_FORWARD;
	c->deadline_ms = 0;
	free(c->peek);
	c->peek = NULL;
	atomic_fetch_add(&p->stats.forwarded[c->ssl ? HC_PROXY_COPY : p->cfg.forwarding], 1);
	rc = hc_proxy_forward_pump(c);
	if (rc)
		hc_proxy_conn_close(c, rc < 0);
	return 0;
}

void hc_proxy_forward_fini(struct hc_proxy_conn *c)
{
	if (c->in_sockmap)
		sockmap_remove(c);
	flow_fini(&c->up);
	flow_fini(&c->down);
}
