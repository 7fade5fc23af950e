/*
 * The gossip transport over real sockets: one UDP socket and one TCP
 * listener on the same address and port, driven by the loop. Incoming
 * streams are bounded in size, time and number; outgoing exchanges in time.
 * See transport_int.h.
 */
#include "gossip/transport_int.h"

#include <arpa/inet.h>
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
#include "gossip/gossip_int.h"
#include "gossip/serf_int.h"
#include "log/log.h"
#include "loop/loop.h"

#define UDP_BURST 64          /* datagrams read per wakeup: a flood cannot starve the loop */
#define READ_CHUNK 65536
#define UDP_RCVBUF (4 << 20)

/* A TCP stream, incoming (served) or outgoing (an exchange). */
struct stream {
	struct stream *prev, *next;
	struct hc_gossip_net *net;
	int fd;
	bool outgoing, connecting;
	struct hc_gossip_addr peer;
	uint8_t *in;
	size_t in_len, in_cap;
	struct hc_gossip_mp_writer out; /* what we still have to write */
	size_t out_off;
	bool replying; /* incoming: reply computed, writing it */
	uint64_t timer;
	/* outgoing */
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
	struct stream *streams;
	unsigned nincoming;
	uint8_t *dgram;
	struct hc_gossip_net_stats st;
};

/* ---- addresses ---- */

static void peer_of(const struct sockaddr_storage *ss, struct hc_gossip_addr *out)
{
	struct hc_addr a = { .ss = *ss, .len = sizeof(*ss) };

	if (hc_gossip_addr_from_sockaddr(&a, out) < 0)
		memset(out, 0, sizeof(*out));
}

static int sockaddr_of(const struct hc_gossip_net *net, const struct hc_gossip_addr *to,
		       struct hc_addr *out)
{
	int r = hc_gossip_addr_to_sockaddr(to, out);

	/* An IPv6 socket reaches IPv4 peers through mapped addresses. */
	if (r == 0 && to->ip_len == 4 && net->family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;
		uint8_t ip[4];

		memcpy(ip, to->ip, 4);
		memset(out, 0, sizeof(*out));
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(to->port);
		s6->sin6_addr.s6_addr[10] = s6->sin6_addr.s6_addr[11] = 0xff;
		memcpy(&s6->sin6_addr.s6_addr[12], ip, 4);
		out->len = sizeof(*s6);
	}
	return r;
}

/* ---- streams ---- */

static void stream_free(struct stream *s)
{
	struct hc_gossip_net *net = s->net;

	if (s->prev)
		s->prev->next = s->next;
	else
		net->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
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

/* Ends an outgoing exchange: done() exactly once, after the stream is gone
 * from the loop (done may start another exchange). */
static void exchange_finish(struct stream *s, int err)
{
	hc_gossip_stream_done_fn *done = s->done;
	void *arg = s->arg;
	uint8_t *buf = err ? NULL : s->in;
	size_t len = err ? 0 : s->in_len;

	if (!err)
		s->in = NULL; /* keep the bytes through the callback */
	if (err && err != -ECANCELED)
		s->net->st.stream_errors++;
	stream_free(s);
	done(arg, err, buf, len);
	free(buf);
}

static int64_t stream_timeout(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct stream *s = arg;

	(void)loop;
	(void)id;
	s->timer = 0;
	s->net->st.stream_timeouts++;
	if (s->outgoing)
		exchange_finish(s, -ETIMEDOUT);
	else
		stream_free(s);
	return HC_LOOP_TIMER_DONE;
}

/* Reads what is there; 1 on EOF, 0 if more may come, -errno. */
static int stream_read(struct stream *s)
{
	for (;;) {
		ssize_t n;

		if (s->in_len == s->in_cap) {
			size_t cap = s->in_cap ? s->in_cap * 2 : READ_CHUNK;
			uint8_t *grown;

			if (s->in_cap >= HC_GOSSIP_STREAM_MAX)
				return -EMSGSIZE;
			if (cap > HC_GOSSIP_STREAM_MAX)
				cap = HC_GOSSIP_STREAM_MAX;
			grown = realloc(s->in, cap);
			if (!grown)
				return -ENOMEM;
			s->in = grown;
			s->in_cap = cap;
		}
		n = recv(s->fd, s->in + s->in_len, s->in_cap - s->in_len, 0);
		if (n == 0)
			return 1;
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		s->in_len += (size_t)n;
		s->net->st.bytes_in += (uint64_t)n;
	}
}

/* Writes what it can of s->out; 1 when all is written, 0 if blocked. */
static int stream_write(struct stream *s)
{
	while (s->out_off < s->out.len) {
		ssize_t n = send(s->fd, s->out.buf + s->out_off, s->out.len - s->out_off,
				 MSG_NOSIGNAL);

		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		s->out_off += (size_t)n;
		s->net->st.bytes_out += (uint64_t)n;
	}
	return 1;
}

static void on_incoming(struct hc_loop *loop, int fd, unsigned events, void *arg)
{
	struct stream *s = arg;
	int r;

	(void)fd;
	if (s->replying) {
		r = stream_write(s);
		if (r != 0)
			stream_free(s); /* written (or failed): close */
		return;
	}
	if (!(events & HC_LOOP_READ))
		return;
	r = stream_read(s);
	if (r < 0) {
		stream_free(s);
		return;
	}
	if (s->in_len) {
		int q = s->net->recv->on_stream(s->net->recv->arg, &s->peer, s->in, s->in_len,
						&s->out);

		if (q == -ENODATA) {
			if (r == 1) /* the peer is done but the message is not */
				stream_free(s);
			return;
		}
		if (q < 0 || s->out.len == 0) {
			stream_free(s);
			return;
		}
		s->replying = true;
		r = stream_write(s);
		if (r != 0) {
			stream_free(s);
			return;
		}
		hc_loop_set_fd_events(loop, s->fd, HC_LOOP_WRITE);
		return;
	}
	if (r == 1)
		stream_free(s);
}

static void on_accept(struct hc_loop *loop, int fd, unsigned events, void *arg)
{
	struct hc_gossip_net *net = arg;

	(void)events;
	for (int i = 0; i < UDP_BURST; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		struct stream *s;
		int c = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (c < 0)
			return; /* EAGAIN, or a transient error: try on the next wakeup */
		if (net->nincoming >= net->cfg.max_streams || !(s = calloc(1, sizeof(*s)))) {
			net->st.streams_rejected++;
			close(c);
			continue;
		}
		s->net = net;
		s->fd = c;
		peer_of(&ss, &s->peer);
		hc_gossip_mp_writer_init(&s->out, HC_GOSSIP_STREAM_MAX);
		s->next = net->streams;
		if (net->streams)
			net->streams->prev = s;
		net->streams = s;
		net->nincoming++;
		net->st.streams_in++;
		s->timer = hc_loop_add_timer(loop, net->cfg.tcp_timeout_ms, stream_timeout, s);
		if (!s->timer || hc_loop_add_fd(loop, c, HC_LOOP_READ, on_incoming, s) < 0) {
			s->fd = -1;
			close(c);
			stream_free(s);
		}
	}
}

static void on_outgoing(struct hc_loop *loop, int fd, unsigned events, void *arg)
{
	struct stream *s = arg;
	int r;

	if (s->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			exchange_finish(s, -err);
			return;
		}
		s->connecting = false;
	}
	if (s->out_off < s->out.len) {
		r = stream_write(s);
		if (r < 0) {
			exchange_finish(s, r);
			return;
		}
		if (r == 0) {
			hc_loop_set_fd_events(loop, fd, HC_LOOP_WRITE);
			return;
		}
		shutdown(fd, SHUT_WR); /* one message each way */
		hc_loop_set_fd_events(loop, fd, HC_LOOP_READ);
		return;
	}
	if (!(events & HC_LOOP_READ))
		return;
	r = stream_read(s);
	if (r < 0) {
		exchange_finish(s, r);
		return;
	}
	if (s->in_len) {
		int c = s->complete(s->arg, s->in, s->in_len);

		if (c != 0) {
			exchange_finish(s, c > 0 ? 0 : c);
			return;
		}
	}
	if (r == 1)
		exchange_finish(s, -ECONNRESET);
}

/* Failures noticed inside stream_exchange are reported from the loop. */
static int64_t deferred_failure(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct stream *s = arg;

	(void)loop;
	(void)id;
	s->timer = 0;
	exchange_finish(s, s->fd == -2 ? -ENOMEM : -ECONNREFUSED);
	return HC_LOOP_TIMER_DONE;
}

static int net_stream_exchange(void *ctx, const struct hc_gossip_addr *to, const uint8_t *req,
			       size_t len, uint32_t timeout_ms,
			       hc_gossip_stream_complete_fn *complete,
			       hc_gossip_stream_done_fn *done, void *arg)
{
	struct hc_gossip_net *net = ctx;
	struct stream *s = calloc(1, sizeof(*s));
	struct hc_addr a;
	int r;

	if (!s)
		return -ENOMEM;
	s->net = net;
	s->outgoing = true;
	s->peer = *to;
	s->complete = complete;
	s->done = done;
	s->arg = arg;
	hc_gossip_mp_writer_init(&s->out, 0);
	hc_gossip_mp_write_raw(&s->out, req, len);
	if (hc_gossip_mp_writer_error(&s->out) || sockaddr_of(net, to, &a) < 0) {
		hc_gossip_mp_writer_fini(&s->out);
		free(s);
		return -EINVAL;
	}
	s->next = net->streams;
	if (net->streams)
		net->streams->prev = s;
	net->streams = s;
	net->st.streams_out++;

	s->fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd >= 0 && connect(s->fd, (struct sockaddr *)&a.ss, a.len) < 0 &&
	    errno != EINPROGRESS) {
		close(s->fd);
		s->fd = -1;
	}
	if (s->fd < 0) {
		/* Report from the loop, never from inside this call. */
		s->timer = hc_loop_add_timer(net->loop, 0, deferred_failure, s);
		return s->timer ? 0 : (stream_free(s), -ENOMEM);
	}
	s->connecting = true;
	s->timer = hc_loop_add_timer(net->loop, timeout_ms, stream_timeout, s);
	r = s->timer ? hc_loop_add_fd(net->loop, s->fd, HC_LOOP_WRITE, on_outgoing, s) : -ENOMEM;
	if (r < 0) {
		close(s->fd);
		s->fd = -1;
		stream_free(s);
		return r;
	}
	return 0;
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
		ssize_t n = recvfrom(fd, net->dgram, HC_GOSSIP_UDP_MAX, MSG_TRUNC,
				     (struct sockaddr *)&ss, &len);

		if (n < 0)
			return;
		if ((size_t)n > HC_GOSSIP_UDP_MAX) {
			net->st.truncated++;
			continue;
		}
		net->st.packets_in++;
		net->st.bytes_in += (uint64_t)n;
		peer_of(&ss, &from);
		net->recv->on_packet(net->recv->arg, &from, net->dgram, (size_t)n);
	}
}

static int net_send_packet(void *ctx, const struct hc_gossip_addr *to, const uint8_t *buf,
			   size_t len)
{
	struct hc_gossip_net *net = ctx;
	struct hc_addr a;

	if (sockaddr_of(net, to, &a) < 0)
		return -EINVAL;
	if (sendto(net->udp, buf, len, MSG_NOSIGNAL, (struct sockaddr *)&a.ss, a.len) < 0) {
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

static int bind_udp(const struct hc_addr *a, int *out)
{
	int fd = socket(a->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int size = UDP_RCVBUF, err;

	if (fd < 0)
		return -errno;
	/* A bigger buffer rides out bursts; the kernel may cap it. */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	*out = fd;
	return 0;
}

static uint16_t local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
					: ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

struct hc_gossip_net *hc_gossip_net_new(struct hc_loop *loop, const struct hc_addr *bind,
					const struct hc_gossip_net_config *cfg,
					const struct hc_gossip_receiver *recv, char *err,
					size_t errlen)
{
	struct hc_gossip_net *net = calloc(1, sizeof(*net));
	char where[64];
	int r = -EADDRINUSE;

	hc_addr_format(bind, where, sizeof(where));
	if (!net || !(net->dgram = malloc(HC_GOSSIP_UDP_MAX + 1))) {
		free(net);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	net->loop = loop;
	net->cfg = *cfg;
	net->family = bind->ss.ss_family;
	net->recv = recv;
	net->udp = net->tcp = -1;
	/* Port 0: TCP picks one, UDP must get the same; retry if it is taken. */
	for (int attempt = 0; attempt < 8; attempt++) {
		struct hc_addr a = *bind;

		net->tcp = hc_addr_listen_tcp(&a, 128);
		if (net->tcp < 0) {
			r = net->tcp;
			break;
		}
		net->port = local_port(net->tcp);
		hc_gossip_addr_set_port(&a, net->port);
		r = bind_udp(&a, &net->udp);
		if (r == 0 || hc_addr_port(bind) != 0)
			break;
		close(net->tcp);
		net->tcp = -1;
	}
	if (r < 0) {
		snprintf(err, errlen, "cannot bind gossip to %s (--cluster-bind-addr): %s", where,
			 strerror(-r));
		goto fail;
	}
	if ((r = hc_loop_add_fd(loop, net->udp, HC_LOOP_READ, on_udp, net)) < 0 ||
	    (r = hc_loop_add_fd(loop, net->tcp, HC_LOOP_READ, on_accept, net)) < 0) {
		hc_loop_del_fd(loop, net->udp);
		snprintf(err, errlen, "cannot watch the gossip sockets: %s", strerror(-r));
		goto fail;
	}
	return net;
fail:
	if (net->udp >= 0)
		close(net->udp);
	if (net->tcp >= 0)
		close(net->tcp);
	net->udp = net->tcp = -1;
	hc_gossip_net_free(net);
	return NULL;
}

void hc_gossip_net_free(struct hc_gossip_net *net)
{
	if (!net)
		return;
	while (net->streams) {
		struct stream *s = net->streams;

		if (s->outgoing)
			exchange_finish(s, -ECANCELED);
		else
			stream_free(s);
	}
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
}
