/* The gossip transport over real sockets (UDP datagrams, bounded TCP streams) on the loop. */
#include "gossip/transport_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HC_LOG_MODULE "gossip"
#include "addr/addr.h"
#include "base/list.h"
#include "gossip/serf_int.h"
#include "gossip/wire_int.h"
#include "log/log.h"
#include "loop/loop.h"

#define UDP_BURST 64           /* datagrams per wakeup: a flood cannot starve the loop */
#define ACCEPT_BURST 64        /* connections per wakeup, for the same reason */
#define READ_BURST (1u << 20)  /* stream bytes per wakeup: one fast peer neither */
#define READ_CHUNK 65536u      /* first stream buffer; it doubles up to HC_GOSSIP_STREAM_MAX */
#define DRAIN_BURST 16         /* discarded reads per wakeup after a reply */
#define UDP_RCVBUF (4 << 20)   /* rides out bursts of gossip; the kernel may cap it */
#define LISTEN_BACKLOG 128
#define BIND_ATTEMPTS 8        /* port 0: TCP picks a port, UDP may find it taken */
#define ACCEPT_PAUSE_MS 100    /* out of fds: stop accepting a while instead of spinning */

enum stream_state {
	ST_CONNECTING, /* outgoing: waiting for connect() */
	ST_SENDING,    /* outgoing: writing the request */
	ST_READING,    /* both: reading until the message is complete */
	ST_REPLYING,   /* incoming: writing the reply */
	ST_DRAINING,   /* incoming: reply sent and FIN sent, waiting for the peer's FIN */
};

/* A TCP stream, incoming (served) or outgoing (an exchange). */
struct stream {
	struct hc_list link; /* net->streams */
	struct hc_gossip_net *net;
	int fd; /* -1 once closed, or when connecting failed at once */
	bool outgoing;
	bool eof; /* the peer has shut its side */
	enum stream_state state;
	struct hc_gossip_addr peer;
	struct hc_gossip_stream_scan scan; /* incoming: where the message ends */
	uint8_t *in;
	size_t in_len, in_cap;
	size_t in_held, out_held; /* bytes charged to net->buffered */
	struct hc_gossip_mp_writer out; /* request (outgoing) or reply (incoming) */
	size_t out_off;
	uint64_t timer; /* incoming: tcp_timeout_ms from accept; outgoing: timeout_ms */
	int err;        /* outgoing: a failure found inside stream_exchange, reported later */
	hc_gossip_stream_complete_fn *complete;
	hc_gossip_stream_done_fn *done;
	void *arg;
};

struct hc_gossip_net {
	struct hc_loop *loop;
	struct hc_gossip_net_config cfg;
	const struct hc_gossip_receiver *recv;
	int family; /* of the bound sockets */
	int udp, tcp;
	uint16_t port;
	struct hc_list streams;
	unsigned nincoming;
	size_t buffered; /* read buffers and replies of all streams: <= budget */
	size_t budget;
	uint64_t accept_timer; /* set while accepting is paused */
	bool closing;          /* in hc_gossip_net_free: no new exchanges */
	uint8_t *dgram;        /* HC_GOSSIP_UDP_MAX */
	struct hc_gossip_net_stats st;
};

/* ---- addresses ---- */

static void peer_of(const struct sockaddr_storage *ss, socklen_t len, struct hc_gossip_addr *out)
{
	struct hc_addr a = { .ss = *ss, .len = len };

	/* Only AF_INET and AF_INET6 sockets exist here; a zero address is
	 * harmless should the kernel ever say otherwise. */
	if (hc_gossip_addr_from_sockaddr(&a, out) < 0)
		memset(out, 0, sizeof(*out));
}

static int sockaddr_of(const struct hc_gossip_net *net, const struct hc_gossip_addr *to,
		       struct hc_addr *out)
{
	int r = hc_gossip_addr_to_sockaddr(to, out);

	if (r < 0)
		return r;
	/* An IPv6 socket reaches IPv4 peers through mapped addresses (unless it
	 * is v6-only, and then sendto/connect say so). */
	if (to->ip_len == 4 && net->family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;

		memset(out, 0, sizeof(*out));
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(to->port);
		s6->sin6_addr.s6_addr[10] = s6->sin6_addr.s6_addr[11] = 0xff;
		memcpy(&s6->sin6_addr.s6_addr[12], to->ip, 4);
		out->len = sizeof(*s6);
	}
	return 0;
}

/* ---- streams ---- */

static void stream_link(struct hc_gossip_net *net, struct stream *s)
{
	s->net = net;
	hc_list_insert(&net->streams, &s->link);
	if (!s->outgoing)
		net->nincoming++;
}

/* Sets what s holds of the streams' common budget to want bytes:
 * 0, or -ENOBUFS (counted) when that would take all streams over it. */
static int budget_hold(struct stream *s, size_t *held, size_t want)
{
	struct hc_gossip_net *net = s->net;

	if (want > *held && net->buffered - *held + want > net->budget) {
		net->st.over_budget++;
		return -ENOBUFS;
	}
	net->buffered = net->buffered - *held + want;
	*held = want;
	if (net->buffered > net->st.buffered_peak)
		net->st.buffered_peak = net->buffered;
	return 0;
}

/* Unlinks s, takes its fd and timer off the loop, closes and frees it. */
static void stream_free(struct stream *s)
{
	struct hc_gossip_net *net = s->net;

	net->buffered -= s->in_held + s->out_held;
	hc_list_remove(&s->link);
	if (!s->outgoing)
		net->nincoming--;
	if (s->timer)
		hc_loop_del_timer(net->loop, s->timer);
	if (s->fd >= 0) {
		hc_loop_del_fd(net->loop, s->fd);
		close(s->fd);
	}
	hc_gossip_mp_writer_fini(&s->out);
	free(s->in);
	free(s);
}

/* Ends an incoming stream; failures count, a served stream does not. */
static void incoming_close(struct stream *s, bool failed)
{
	if (failed)
		s->net->st.stream_errors++;
	stream_free(s);
}

/* Ends an outgoing exchange: done() exactly once, after the stream is gone
 * from the loop, so done may start another exchange or free what arg is. */
static void exchange_finish(struct stream *s, int err)
{
	hc_gossip_stream_done_fn *done = s->done;
	void *arg = s->arg;
	uint8_t *buf = NULL;
	size_t len = 0;

	if (!err) {
		buf = s->in; /* keep the bytes through the callback */
		len = s->in_len;
		s->in = NULL;
	} else if (err == -ETIMEDOUT) {
		s->net->st.stream_timeouts++;
	} else if (err != -ECANCELED) {
		s->net->st.stream_errors++;
	}
	stream_free(s);
	done(arg, err, buf, len);
	free(buf);
}

static int64_t stream_timer(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct stream *s = arg;

	(void)loop;
	(void)id;
	s->timer = 0; /* it is done: stream_free must not delete it */
	if (s->outgoing) {
		exchange_finish(s, s->err ? s->err : -ETIMEDOUT);
	} else {
		/* A peer that has our reply and is slow to close is no failure. */
		if (s->state != ST_DRAINING) {
			s->net->st.stream_timeouts++;
			hc_log(HC_LOG_DEBUG, "gossip stream from port %u timed out after %u bytes",
			       (unsigned)s->peer.port, (unsigned)s->in_len);
		}
		stream_free(s);
	}
	return HC_LOOP_TIMER_DONE;
}

/* Reads what is there, at most READ_BURST bytes now (level-triggered, the loop
 * comes back for the rest) and HC_GOSSIP_STREAM_MAX in all, the buffer within
 * the streams' common budget. Sets s->eof when the peer has shut its side.
 * Returns 0, -ENOBUFS over the budget, or another -errno. */
static int stream_read(struct stream *s)
{
	size_t got = 0;

	while (!s->eof && got < READ_BURST && s->in_len < HC_GOSSIP_STREAM_MAX) {
		ssize_t n;

		if (s->in_len == s->in_cap) {
			size_t cap = s->in_cap ? s->in_cap * 2 : READ_CHUNK;
			uint8_t *grown;

			if (cap > HC_GOSSIP_STREAM_MAX)
				cap = HC_GOSSIP_STREAM_MAX;
			if (budget_hold(s, &s->in_held, cap) < 0)
				return -ENOBUFS;
			grown = realloc(s->in, cap);
			if (!grown)
				return -ENOMEM;
			s->in = grown;
			s->in_cap = cap;
		}
		n = recv(s->fd, s->in + s->in_len, s->in_cap - s->in_len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		if (n == 0) {
			s->eof = true;
			break;
		}
		s->in_len += (size_t)n;
		got += (size_t)n;
		s->net->st.bytes_in += (uint64_t)n;
	}
	return 0;
}

/* Writes what it can of s->out. Returns 1 when all is written, 0 when the
 * socket is full, or -errno. */
static int stream_write(struct stream *s)
{
	while (s->out_off < s->out.len) {
		ssize_t n = send(s->fd, s->out.buf + s->out_off, s->out.len - s->out_off,
				 MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		s->out_off += (size_t)n;
		s->net->st.bytes_out += (uint64_t)n;
	}
	return 1;
}

/* The reply is out: send our FIN, then wait for the peer's before closing.
 * Closing with unread bytes in the socket would send a RST, and a RST can
 * make the peer's kernel discard the reply it has not read yet. */
static void incoming_replied(struct stream *s)
{
	if (s->eof || shutdown(s->fd, SHUT_WR) < 0 ||
	    hc_loop_set_fd_events(s->net->loop, s->fd, HC_LOOP_READ) < 0) {
		incoming_close(s, false);
		return;
	}
	s->state = ST_DRAINING;
}

static void incoming_write(struct stream *s)
{
	int r = stream_write(s);

	if (r < 0) {
		incoming_close(s, true);
	} else if (r == 0) {
		if (hc_loop_set_fd_events(s->net->loop, s->fd, HC_LOOP_WRITE) < 0)
			incoming_close(s, true);
	} else {
		incoming_replied(s);
	}
}

static void incoming_read(struct stream *s)
{
	const struct hc_gossip_receiver *recv = s->net->recv;
	size_t before = s->in_len;
	int r = stream_read(s);

	if (r < 0) {
		incoming_close(s, true);
		return;
	}
	if (s->in_len > before) {
		/* A fresh writer each time: a partial reply from an earlier
		 * -ENODATA call must not leak into the final one. */
		hc_gossip_mp_writer_fini(&s->out);
		hc_gossip_mp_writer_init(&s->out, HC_GOSSIP_STREAM_MAX);
		r = recv->on_stream(recv->arg, &s->peer, &s->scan, s->in, s->in_len, &s->out);
		if (r == 0) {
			/* the request is read: its buffer goes, the reply's counts */
			free(s->in);
			s->in = NULL;
			s->in_len = s->in_cap = 0;
			budget_hold(s, &s->in_held, 0);
			if (hc_gossip_mp_writer_error(&s->out) < 0 ||
			    budget_hold(s, &s->out_held, s->out.cap) < 0) {
				incoming_close(s, true);
			} else if (s->out.len == 0) {
				incoming_close(s, false);
			} else {
				s->state = ST_REPLYING;
				incoming_write(s);
			}
			return;
		}
		if (r != -ENODATA) {
			incoming_close(s, true);
			return;
		}
	}
	/* The message is incomplete and no more can come. A peer that
	 * connected and left without a byte (a port probe) is no failure. */
	if (s->eof || s->in_len == HC_GOSSIP_STREAM_MAX)
		incoming_close(s, s->in_len > 0);
}

static void incoming_drain(struct stream *s)
{
	uint8_t sink[4096];

	for (int i = 0; i < DRAIN_BURST; i++) {
		ssize_t n = recv(s->fd, sink, sizeof(sink), 0);

		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		break; /* EOF or an error: either way the peer is done */
	}
	incoming_close(s, false);
}

static void on_incoming(struct hc_loop *loop, int fd, unsigned events, void *arg)
{
	struct stream *s = arg;

	(void)loop;
	(void)fd;
	(void)events;
	switch (s->state) {
	case ST_READING:
		incoming_read(s);
		break;
	case ST_REPLYING:
		incoming_write(s);
		break;
	case ST_DRAINING:
		incoming_drain(s);
		break;
	case ST_CONNECTING:
	case ST_SENDING:
		break;
	}
}

/* Takes ownership of fd, an accepted connection. Returns 0 or -errno (fd
 * closed). */
static int incoming_new(struct hc_gossip_net *net, int fd, const struct sockaddr_storage *ss,
			socklen_t len)
{
	struct stream *s = calloc(1, sizeof(*s));
	int r;

	if (!s) {
		close(fd);
		return -ENOMEM;
	}
	s->fd = fd;
	s->state = ST_READING;
	peer_of(ss, len, &s->peer);
	hc_gossip_mp_writer_init(&s->out, HC_GOSSIP_STREAM_MAX);
	stream_link(net, s);
	s->timer = hc_loop_add_timer(net->loop, net->cfg.tcp_timeout_ms, stream_timer, s);
	if (!s->timer) {
		r = -errno;
		goto fail;
	}
	r = hc_loop_add_fd(net->loop, fd, HC_LOOP_READ, on_incoming, s);
	if (r < 0) {
		s->fd = -1; /* not watched: stream_free must not del it */
		close(fd);
		goto fail;
	}
	net->st.streams_in++;
	return 0;
fail:
	stream_free(s);
	return r;
}

static int64_t accept_resume(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_gossip_net *net = arg;

	(void)id;
	net->accept_timer = 0;
	if (hc_loop_set_fd_events(loop, net->tcp, HC_LOOP_READ) < 0)
		return ACCEPT_PAUSE_MS; /* try again later rather than never accept */
	return HC_LOOP_TIMER_DONE;
}

/* Out of descriptors or memory: the pending connection stays queued and the
 * level-triggered listener would wake us at once, forever. Look again later. */
static void accept_pause(struct hc_gossip_net *net, int err)
{
	hc_log(HC_LOG_WARN, "gossip cannot accept streams for %d ms: %s", ACCEPT_PAUSE_MS,
	       strerror(err));
	net->accept_timer = hc_loop_add_timer(net->loop, ACCEPT_PAUSE_MS, accept_resume, net);
	if (!net->accept_timer)
		return; /* keep watching: spinning beats never accepting again */
	if (hc_loop_set_fd_events(net->loop, net->tcp, 0) < 0) {
		hc_loop_del_timer(net->loop, net->accept_timer);
		net->accept_timer = 0;
	}
}

static void on_accept(struct hc_loop *loop, int fd, unsigned events, void *arg)
{
	struct hc_gossip_net *net = arg;

	(void)loop;
	(void)events;
	for (int i = 0; i < ACCEPT_BURST; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int c = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (c < 0) {
			int err = errno;

			if (err == EINTR || err == ECONNABORTED || err == EPROTO)
				continue; /* that connection is gone, not the listener */
			if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM)
				accept_pause(net, err);
			else if (err != EAGAIN && err != EWOULDBLOCK)
				hc_log(HC_LOG_WARN, "gossip accept failed: %s", strerror(err));
			return;
		}
		if (net->nincoming >= net->cfg.max_streams) {
			net->st.streams_rejected++;
			close(c);
			continue;
		}
		if (incoming_new(net, c, &ss, len) < 0)
			net->st.streams_rejected++;
	}
}

static void outgoing_read(struct stream *s)
{
	size_t before = s->in_len;
	int r = stream_read(s);

	if (r < 0) {
		exchange_finish(s, r);
		return;
	}
	if (s->in_len > before) {
		r = s->complete(s->arg, s->in, s->in_len);
		if (r != 0) {
			exchange_finish(s, r > 0 ? 0 : r);
			return;
		}
	}
	if (s->eof)
		exchange_finish(s, -ECONNRESET);
	else if (s->in_len == HC_GOSSIP_STREAM_MAX)
		exchange_finish(s, -EMSGSIZE);
}

/* A non-blocking connect() has finished: 0 connected, or -errno. */
static int connect_result(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	return -err;
}

static void on_outgoing(struct hc_loop *loop, int fd, unsigned events, void *arg)
{
	struct stream *s = arg;
	int r;

	(void)events;
	if (s->state == ST_READING) {
		outgoing_read(s);
		return;
	}
	if (s->state == ST_CONNECTING) {
		r = connect_result(fd);
		if (r < 0) {
			exchange_finish(s, r);
			return;
		}
		s->state = ST_SENDING;
	}
	r = stream_write(s);
	if (r == 0)
		return; /* still watching HC_LOOP_WRITE */
	if (r > 0) {
		s->state = ST_READING;
		r = hc_loop_set_fd_events(loop, fd, HC_LOOP_READ);
	}
	if (r < 0)
		exchange_finish(s, r);
}

static int net_stream_exchange(void *ctx, const struct hc_gossip_addr *to, const uint8_t *req,
			       size_t len, uint32_t timeout_ms,
			       hc_gossip_stream_complete_fn *complete,
			       hc_gossip_stream_done_fn *done, void *arg)
{
	struct hc_gossip_net *net = ctx;
	struct stream *s;
	struct hc_addr a;
	uint64_t delay = timeout_ms;
	int r;

	if (net->closing)
		return -ECANCELED;
	r = sockaddr_of(net, to, &a);
	if (r < 0)
		return r;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->outgoing = true;
	s->state = ST_CONNECTING;
	s->peer = *to;
	s->complete = complete;
	s->done = done;
	s->arg = arg;
	/* Our own copy: the caller's buffer need not outlive this call. */
	hc_gossip_mp_writer_init(&s->out, 0);
	hc_gossip_mp_write_raw(&s->out, req, len);
	r = hc_gossip_mp_writer_error(&s->out);
	if (r < 0) {
		hc_gossip_mp_writer_fini(&s->out);
		free(s);
		return r;
	}
	s->fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		r = -errno;
		hc_gossip_mp_writer_fini(&s->out);
		free(s);
		return r;
	}
	stream_link(net, s);
	if (connect(s->fd, (struct sockaddr *)&a.ss, a.len) < 0 && errno != EINPROGRESS) {
		/* Refused at once (loopback does that): report it from the loop,
		 * as the interface promises, never from inside this call. */
		s->err = -errno;
		close(s->fd);
		s->fd = -1;
		delay = 0;
	}
	s->timer = hc_loop_add_timer(net->loop, delay, stream_timer, s);
	if (!s->timer) {
		r = -errno;
		goto fail;
	}
	if (s->fd >= 0) {
		/* Writable means connected, or failed: SO_ERROR tells. */
		r = hc_loop_add_fd(net->loop, s->fd, HC_LOOP_WRITE, on_outgoing, s);
		if (r < 0) {
			close(s->fd);
			s->fd = -1;
			goto fail;
		}
	}
	net->st.streams_out++;
	return 0;
fail:
	stream_free(s);
	return r;
}

/* ---- datagrams ---- */

static void on_udp(struct hc_loop *loop, int fd, unsigned events, void *arg)
{
	struct hc_gossip_net *net = arg;

	(void)loop;
	(void)events;
	for (int i = 0; i < UDP_BURST; i++) {
		struct sockaddr_storage ss;
		struct hc_gossip_addr from;
		socklen_t len = sizeof(ss);
		/* MSG_TRUNC: the datagram's real length, to see what did not fit. */
		ssize_t n = recvfrom(fd, net->dgram, HC_GOSSIP_UDP_MAX, MSG_TRUNC,
				     (struct sockaddr *)&ss, &len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				hc_log(HC_LOG_DEBUG, "gossip recvfrom: %s", strerror(errno));
			return;
		}
		if ((size_t)n > HC_GOSSIP_UDP_MAX) {
			net->st.truncated++;
			continue;
		}
		net->st.packets_in++;
		net->st.bytes_in += (uint64_t)n;
		peer_of(&ss, len, &from);
		net->recv->on_packet(net->recv->arg, &from, net->dgram, (size_t)n);
	}
}

static int net_send_packet(void *ctx, const struct hc_gossip_addr *to, const uint8_t *buf,
			   size_t len)
{
	struct hc_gossip_net *net = ctx;
	struct hc_addr a;
	int r = sockaddr_of(net, to, &a);

	if (r < 0) {
		net->st.send_errors++;
		return r;
	}
	if (sendto(net->udp, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&a.ss,
		   a.len) < 0) {
		net->st.send_errors++;
		return -errno;
	}
	net->st.packets_out++;
	net->st.bytes_out += len;
	return 0;
}

const struct hc_gossip_transport_ops hc_gossip_net_ops = {
	.send_packet = net_send_packet,
	.stream_exchange = net_stream_exchange,
};

/* ---- lifecycle ---- */

/* Returns a bound UDP socket or -errno. */
static int bind_udp(const struct hc_addr *a)
{
	int fd = socket(a->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int size = UDP_RCVBUF, err;

	if (fd < 0)
		return -errno;
	/* Best effort: the default buffer works, it just drops sooner. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)) < 0)
		hc_log(HC_LOG_DEBUG, "gossip SO_RCVBUF %d: %s", size, strerror(errno));
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static int local_port(int fd, uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct hc_addr a;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	a.ss = ss;
	a.len = len;
	*port = hc_addr_port(&a);
	return 0;
}

/* Binds net->tcp and net->udp on one port. Returns 0 or -errno with err set. */
static int bind_sockets(struct hc_gossip_net *net, const struct hc_addr *bind, struct hc_err *err)
{
	bool any_port = hc_addr_port(bind) == 0;
	const char *proto = "TCP";
	char where[64];
	int r = 0;

	for (int attempt = 0; attempt < BIND_ATTEMPTS; attempt++) {
		struct hc_addr a = *bind;

		proto = "TCP";
		r = hc_addr_listen_tcp(&a, LISTEN_BACKLOG);
		if (r < 0)
			break;
		net->tcp = r;
		r = local_port(net->tcp, &net->port);
		if (r < 0)
			break;
		hc_gossip_addr_set_port(&a, net->port);
		proto = "UDP";
		r = bind_udp(&a);
		if (r >= 0) {
			net->udp = r;
			return 0;
		}
		close(net->tcp);
		net->tcp = -1;
		/* With port 0, the kernel's TCP port may be someone's UDP port:
		 * take another. A port the user chose is final. */
		if (r != -EADDRINUSE || !any_port)
			break;
	}
	hc_addr_format(bind, where, sizeof(where));
	hc_err_set(err, r, "cannot bind gossip %s to %s (--cluster-bind-addr): %s", proto,
		   where, strerror(-r));
	return r;
}

struct hc_gossip_net *hc_gossip_net_new(struct hc_loop *loop, const struct hc_addr *bind,
					const struct hc_gossip_net_config *cfg,
					const struct hc_gossip_receiver *recv, struct hc_err *err)
{
	struct hc_gossip_net *net = calloc(1, sizeof(*net));
	int r;

	if (!net || !(net->dgram = malloc(HC_GOSSIP_UDP_MAX))) {
		free(net);
		hc_err_set(err, -ENOMEM, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	hc_list_init(&net->streams);
	net->loop = loop;
	net->cfg = *cfg;
	net->budget = cfg->stream_budget ? cfg->stream_budget : HC_GOSSIP_STREAM_BUDGET;
	net->family = bind->ss.ss_family;
	net->recv = recv;
	net->udp = net->tcp = -1;
	r = bind_sockets(net, bind, err);
	if (r < 0)
		goto fail;
	r = hc_loop_add_fd(loop, net->udp, HC_LOOP_READ, on_udp, net);
	if (r < 0)
		goto fail_watch;
	r = hc_loop_add_fd(loop, net->tcp, HC_LOOP_READ, on_accept, net);
	if (r < 0) {
		hc_loop_del_fd(loop, net->udp);
		goto fail_watch;
	}
	return net;
fail_watch:
	hc_err_set(err, r, "cannot watch the gossip sockets: %s", strerror(-r));
fail:
	if (net->tcp >= 0)
		close(net->tcp);
	if (net->udp >= 0)
		close(net->udp);
	free(net->dgram);
	free(net);
	errno = -r;
	return NULL;
}

void hc_gossip_net_free(struct hc_gossip_net *net)
{
	if (!net)
		return;
	net->closing = true;
	/* the first until none is left (closing: done() starts no other) */
	while (!hc_list_empty(&net->streams)) {
		struct stream *s = hc_list_first(&net->streams, struct stream, link);

		if (s->outgoing)
			exchange_finish(s, -ECANCELED);
		else
			stream_free(s);
	}
	if (net->accept_timer)
		hc_loop_del_timer(net->loop, net->accept_timer);
	if (net->udp >= 0) {
		hc_loop_del_fd(net->loop, net->udp);
		close(net->udp);
	}
	if (net->tcp >= 0) {
		hc_loop_del_fd(net->loop, net->tcp);
		close(net->tcp);
	}
	free(net->dgram);
	free(net);
}

uint16_t hc_gossip_net_port(const struct hc_gossip_net *net)
{
	return net->port;
}

void hc_gossip_net_stats(const struct hc_gossip_net *net, struct hc_gossip_net_stats *st)
{
	*st = net->st;
	st->buffered = net->buffered;
}
