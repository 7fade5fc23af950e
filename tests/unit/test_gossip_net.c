/* The gossip transport over real loopback sockets: datagrams, streams, limits, cleanup. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "addr/addr.h"
#include "gossip/transport_int.h"
#include "gossip/wire_int.h"
#include "loop/loop.h"

/* Every run_until is bounded by this, so a bug fails a test instead of hanging it. */
#define LIMIT_MS 10000

/* What a test server does with a stream. */
enum mode {
	ECHO,   /* echo each complete message (4-byte big-endian length + payload) */
	SILENT, /* never complete: wait for more forever */
	HANGUP, /* complete at once with no reply: close */
};

struct node {
	struct hc_gossip_net *net;
	struct hc_gossip_receiver recv;
	enum mode mode;
	unsigned packets;
	struct hc_gossip_addr from;
	uint8_t packet[64];
	size_t packet_len;
};

struct exchange {
	unsigned calls;
	int err;
	uint8_t *buf;
	size_t len;
};

struct fixture {
	int fds; /* open before the test */
	struct hc_loop *loop;
};

/* ---- helpers ---- */

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs the loop until cond(arg) holds or LIMIT_MS pass. */
static bool run_until(struct hc_loop *loop, bool (*cond)(void *), void *arg)
{
	uint64_t end = now_ms() + LIMIT_MS;

	while (!cond(arg)) {
		if (now_ms() > end)
			return false;
		assert_true(hc_loop_run_once(loop, 10) >= 0);
	}
	return true;
}

/* Complete when the 4-byte length prefix and that many bytes are there. */
static int framed_complete(void *arg, const uint8_t *buf, size_t len)
{
	uint32_t n;

	(void)arg;
	if (len < 4)
		return 0;
	n = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
	return len >= 4 + (size_t)n;
}

static void on_packet(void *arg, const struct hc_gossip_addr *from, const uint8_t *buf,
		      size_t len)
{
	struct node *n = arg;

	n->packets++;
	n->from = *from;
	n->packet_len = len < sizeof(n->packet) ? len : sizeof(n->packet);
	memcpy(n->packet, buf, n->packet_len);
}

static int on_stream(void *arg, const struct hc_gossip_addr *from,
		     struct hc_gossip_stream_scan *scan, const uint8_t *buf, size_t len,
		     struct hc_gossip_mp_writer *reply)
{
	struct node *n = arg;

	(void)from;
	(void)scan; /* these tests frame their own messages */
	switch (n->mode) {
	case ECHO:
		if (!framed_complete(NULL, buf, len))
			return -ENODATA;
		hc_gossip_mp_write_raw(reply, buf, len);
		return 0;
	case SILENT:
		return -ENODATA;
	case HANGUP:
		return 0;
	}
	return -EINVAL;
}

static void exchange_done(void *arg, int err, const uint8_t *buf, size_t len)
{
	struct exchange *x = arg;

	x->calls++;
	x->err = err;
	x->len = len;
	free(x->buf);
	x->buf = NULL;
	if (buf) {
		x->buf = malloc(len ? len : 1);
		assert_non_null(x->buf);
		memcpy(x->buf, buf, len);
	}
}

static bool exchange_ended(void *arg)
{
	return ((struct exchange *)arg)->calls > 0;
}

static void node_start_budget(struct node *n, struct hc_loop *loop, const char *bind,
			      uint32_t tcp_timeout_ms, unsigned max_streams, size_t budget)
{
	struct hc_gossip_net_config cfg = { tcp_timeout_ms, max_streams, budget };
	struct hc_addr addr;
	struct hc_err err;

	memset(n, 0, sizeof(*n));
	n->recv = (struct hc_gossip_receiver){ on_packet, on_stream, n };
	assert_int_equal(hc_addr_parse(bind, true, &addr, &err), 0);
	n->net = hc_gossip_net_new(loop, &addr, &cfg, &n->recv, &err);
	if (!n->net)
		fail_msg("%s", err.msg);
	assert_int_not_equal(hc_gossip_net_port(n->net), 0);
}

static void node_start(struct node *n, struct hc_loop *loop, const char *bind,
		       uint32_t tcp_timeout_ms, unsigned max_streams)
{
	node_start_budget(n, loop, bind, tcp_timeout_ms, max_streams, 0);
}

static struct hc_gossip_addr loopback4(uint16_t port)
{
	struct hc_gossip_addr a = { .ip = { 127, 0, 0, 1 }, .ip_len = 4, .port = port };

	return a;
}

static struct hc_gossip_net_stats stats(const struct node *n)
{
	struct hc_gossip_net_stats st;

	hc_gossip_net_stats(n->net, &st);
	return st;
}

/* A framed message of payload_len pattern bytes; free() it. */
static uint8_t *framed(size_t payload_len, size_t *len)
{
	uint8_t *m = malloc(4 + payload_len);

	assert_non_null(m);
	m[0] = (uint8_t)(payload_len >> 24);
	m[1] = (uint8_t)(payload_len >> 16);
	m[2] = (uint8_t)(payload_len >> 8);
	m[3] = (uint8_t)payload_len;
	for (size_t i = 0; i < payload_len; i++)
		m[4 + i] = (uint8_t)(i * 7 + 3);
	*len = 4 + payload_len;
	return m;
}

/* A plain blocking client socket connected to 127.0.0.1:port. */
static int raw_connect(uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

/* A TCP socket on 127.0.0.1 with a free port, listening or not. */
static int raw_bound(bool listening, uint16_t *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	if (listening)
		assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

/* True once the server has closed fd: EOF or reset, without blocking. */
static bool closed_by_peer(int fd)
{
	uint8_t b[256];
	ssize_t n;

	do
		n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
	while (n > 0);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->fds = count_fds();
	f->loop = hc_loop_new(NULL, NULL);
	if (!f->loop) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

/* Every test must leave exactly the descriptors it found. */
static int teardown(void **state)
{
	struct fixture *f = *state;
	int before = f->fds, fds;

	hc_loop_free(f->loop);
	free(f);
	fds = count_fds();
	if (fds != before)
		fprintf(stderr, "fd leak: %d open before, %d after\n", before, fds);
	return fds == before ? 0 : -1;
}

/* ---- datagrams ---- */

struct pkt_wait {
	struct node *n;
	unsigned want;
};

static bool packets_arrived(void *arg)
{
	struct pkt_wait *w = arg;

	return w->n->packets >= w->want;
}

static void datagram_round_trip(struct hc_loop *loop, const char *bind,
				const struct hc_gossip_addr *ip)
{
	struct node a, b;
	struct hc_gossip_addr to = *ip;
	struct pkt_wait w = { &b, 1 };
	struct hc_gossip_net_stats st;

	node_start(&a, loop, bind, 1000, 4);
	node_start(&b, loop, bind, 1000, 4);
	to.port = hc_gossip_net_port(b.net);
	assert_int_equal(hc_gossip_net_ops.send_packet(a.net, &to, (const uint8_t *)"ping", 4), 0);
	assert_true(run_until(loop, packets_arrived, &w));
	assert_int_equal(b.packet_len, 4);
	assert_memory_equal(b.packet, "ping", 4);
	/* Sent from a's UDP socket, so from a's port: UDP and TCP share it. */
	assert_int_equal(b.from.ip_len, ip->ip_len);
	assert_memory_equal(b.from.ip, ip->ip, ip->ip_len);
	assert_int_equal(b.from.port, hc_gossip_net_port(a.net));

	/* And back, to the address the packet came from. */
	w = (struct pkt_wait){ &a, 1 };
	to = b.from;
	assert_int_equal(hc_gossip_net_ops.send_packet(b.net, &to, (const uint8_t *)"ack", 3), 0);
	assert_true(run_until(loop, packets_arrived, &w));
	assert_memory_equal(a.packet, "ack", 3);

	st = stats(&a);
	assert_int_equal(st.packets_out, 1);
	assert_int_equal(st.packets_in, 1);
	assert_int_equal(st.bytes_out, 4);
	assert_int_equal(st.bytes_in, 3);
	assert_int_equal(st.truncated, 0);
	hc_gossip_net_free(a.net);
	hc_gossip_net_free(b.net);
}

static void test_datagram_round_trip_ipv4(void **state)
{
	struct fixture *f = *state;
	struct hc_gossip_addr ip = loopback4(0);

	datagram_round_trip(f->loop, "127.0.0.1:0", &ip);
}

static void test_datagram_round_trip_ipv6(void **state)
{
	struct fixture *f = *state;
	struct hc_gossip_addr ip = { .ip_len = 16 };
	int probe = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };

	if (probe < 0 || bind(probe, (struct sockaddr *)&s6, sizeof(s6)) < 0) {
		if (probe >= 0)
			close(probe);
		skip(); /* no IPv6 loopback in this environment */
	}
	close(probe);
	ip.ip[15] = 1;
	datagram_round_trip(f->loop, "[::1]:0", &ip);
}

static void test_send_to_bad_address_fails_and_counts(void **state)
{
	struct fixture *f = *state;
	struct hc_gossip_addr bad = { .ip_len = 7, .port = 1 };
	struct node a;

	node_start(&a, f->loop, "127.0.0.1:0", 1000, 4);
	assert_true(hc_gossip_net_ops.send_packet(a.net, &bad, (const uint8_t *)"x", 1) < 0);
	assert_int_equal(stats(&a).send_errors, 1);
	assert_int_equal(stats(&a).packets_out, 0);
	hc_gossip_net_free(a.net);
}

static void test_busy_port_is_a_clear_error(void **state)
{
	struct fixture *f = *state;
	struct hc_gossip_net_config cfg = { 1000, 4, 0 };
	struct node a;
	struct hc_addr addr;
	char text[64];
	struct hc_err err;

	node_start(&a, f->loop, "127.0.0.1:0", 1000, 4);
	snprintf(text, sizeof(text), "127.0.0.1:%u", hc_gossip_net_port(a.net));
	assert_int_equal(hc_addr_parse(text, false, &addr, &err), 0);
	assert_null(hc_gossip_net_new(f->loop, &addr, &cfg, &a.recv, &err));
	assert_non_null(strstr(err.msg, text));
	assert_non_null(strstr(err.msg, "Address already in use"));
	hc_gossip_net_free(a.net);
}

/* ---- outgoing exchanges ---- */

static void test_stream_exchange_1mib_echo(void **state)
{
	struct fixture *f = *state;
	struct exchange x = { 0 };
	struct node a, b;
	struct hc_gossip_addr to;
	size_t len;
	uint8_t *req = framed(1u << 20, &len);

	node_start(&a, f->loop, "127.0.0.1:0", 5000, 4);
	node_start(&b, f->loop, "127.0.0.1:0", 5000, 4);
	to = loopback4(hc_gossip_net_port(b.net));
	assert_int_equal(hc_gossip_net_ops.stream_exchange(a.net, &to, req, len, 5000,
							   framed_complete, exchange_done, &x),
			 0);
	assert_int_equal(x.calls, 0);
	assert_true(run_until(f->loop, exchange_ended, &x));
	assert_int_equal(x.err, 0);
	assert_int_equal(x.len, len);
	assert_memory_equal(x.buf, req, len);
	assert_int_equal(stats(&a).streams_out, 1);
	assert_int_equal(stats(&b).streams_in, 1);
	assert_int_equal(stats(&b).stream_errors, 0);

	hc_gossip_net_free(a.net);
	hc_gossip_net_free(b.net);
	assert_int_equal(x.calls, 1);
	free(x.buf);
	free(req);
}

static void test_refused_connection(void **state)
{
	struct fixture *f = *state;
	struct exchange x = { 0 };
	struct node a;
	struct hc_gossip_addr to;
	uint16_t port;
	int fd = raw_bound(false, &port); /* bound, not listening: refused */

	node_start(&a, f->loop, "127.0.0.1:0", 1000, 4);
	to = loopback4(port);
	assert_int_equal(hc_gossip_net_ops.stream_exchange(a.net, &to, (const uint8_t *)"\0\0\0\0", 4,
							   1000, framed_complete, exchange_done,
							   &x),
			 0);
	assert_int_equal(x.calls, 0); /* never from inside stream_exchange */
	assert_true(run_until(f->loop, exchange_ended, &x));
	assert_int_equal(x.err, -ECONNREFUSED);
	assert_null(x.buf);
	assert_int_equal(stats(&a).stream_errors, 1);
	hc_gossip_net_free(a.net);
	assert_int_equal(x.calls, 1);
	close(fd);
}

static void test_silent_peer_times_out(void **state)
{
	struct fixture *f = *state;
	struct exchange x = { 0 };
	struct node a;
	struct hc_gossip_addr to;
	uint16_t port;
	int fd = raw_bound(true, &port); /* the kernel accepts; nobody answers */
	uint64_t start, took;

	node_start(&a, f->loop, "127.0.0.1:0", 1000, 4);
	to = loopback4(port);
	start = now_ms();
	assert_int_equal(hc_gossip_net_ops.stream_exchange(a.net, &to, (const uint8_t *)"\0\0\0\0", 4,
							   200, framed_complete, exchange_done,
							   &x),
			 0);
	assert_true(run_until(f->loop, exchange_ended, &x));
	took = now_ms() - start;
	assert_int_equal(x.err, -ETIMEDOUT);
	assert_true(took >= 190 && took < 2000);
	assert_int_equal(stats(&a).stream_timeouts, 1);
	hc_gossip_net_free(a.net);
	assert_int_equal(x.calls, 1);
	close(fd);
}

static void test_eof_before_complete_is_connreset(void **state)
{
	struct fixture *f = *state;
	struct exchange x = { 0 };
	struct node a, b;
	struct hc_gossip_addr to;

	node_start(&a, f->loop, "127.0.0.1:0", 1000, 4);
	node_start(&b, f->loop, "127.0.0.1:0", 1000, 4);
	b.mode = HANGUP;
	to = loopback4(hc_gossip_net_port(b.net));
	assert_int_equal(hc_gossip_net_ops.stream_exchange(a.net, &to, (const uint8_t *)"\0\0\0\0", 4,
							   5000, framed_complete, exchange_done,
							   &x),
			 0);
	assert_true(run_until(f->loop, exchange_ended, &x));
	assert_int_equal(x.err, -ECONNRESET);
	hc_gossip_net_free(a.net);
	hc_gossip_net_free(b.net);
	assert_int_equal(x.calls, 1);
}

static void test_free_cancels_pending_exchanges_once(void **state)
{
	struct fixture *f = *state;
	struct exchange connected = { 0 }, refused = { 0 };
	struct node a;
	struct hc_gossip_addr to;
	uint16_t lport, rport;
	int lfd = raw_bound(true, &lport), rfd = raw_bound(false, &rport);

	node_start(&a, f->loop, "127.0.0.1:0", 1000, 4);
	to = loopback4(lport);
	assert_int_equal(hc_gossip_net_ops.stream_exchange(a.net, &to, (const uint8_t *)"\0\0\0\011", 4,
							   5000, framed_complete, exchange_done,
							   &connected),
			 0);
	/* Let it connect and send, so it waits in the reading state. */
	for (int i = 0; i < 5; i++)
		assert_true(hc_loop_run_once(f->loop, 0) >= 0);
	/* And one whose failure is still only scheduled. */
	to = loopback4(rport);
	assert_int_equal(hc_gossip_net_ops.stream_exchange(a.net, &to, (const uint8_t *)"\0\0\0\0", 4,
							   5000, framed_complete, exchange_done,
							   &refused),
			 0);
	assert_int_equal(connected.calls + refused.calls, 0);

	hc_gossip_net_free(a.net);
	assert_int_equal(connected.calls, 1);
	assert_int_equal(connected.err, -ECANCELED);
	assert_int_equal(refused.calls, 1);
	assert_int_equal(refused.err, -ECANCELED);
	/* Nothing of the net is left in the loop to fire later. */
	for (int i = 0; i < 5; i++)
		assert_true(hc_loop_run_once(f->loop, 0) >= 0);
	assert_int_equal(connected.calls, 1);
	assert_int_equal(refused.calls, 1);
	close(lfd);
	close(rfd);
}

/* ---- incoming streams ---- */

struct stats_wait {
	struct node *n;
	uint64_t timeouts, errors, rejected, in;
};

static bool stats_reached(void *arg)
{
	struct stats_wait *w = arg;
	struct hc_gossip_net_stats st = stats(w->n);

	return st.stream_timeouts >= w->timeouts && st.stream_errors >= w->errors &&
	       st.streams_rejected >= w->rejected && st.streams_in >= w->in;
}

static void test_stalled_stream_closed_after_tcp_timeout(void **state)
{
	struct fixture *f = *state;
	struct node b;
	struct stats_wait w = { .n = &b, .timeouts = 1 };
	uint64_t start, took;
	int fd;

	node_start(&b, f->loop, "127.0.0.1:0", 200, 4);
	fd = raw_connect(hc_gossip_net_port(b.net));
	start = now_ms();
	assert_int_equal(send(fd, "\0\0", 2, 0), 2); /* half a length prefix, then nothing */
	assert_true(run_until(f->loop, stats_reached, &w));
	took = now_ms() - start;
	assert_true(took >= 150 && took < 2000);
	assert_true(closed_by_peer(fd));
	close(fd);
	hc_gossip_net_free(b.net);
}

static void test_eof_mid_message_closes_stream(void **state)
{
	struct fixture *f = *state;
	struct node b;
	struct stats_wait w = { .n = &b, .errors = 1 };
	int fd;

	node_start(&b, f->loop, "127.0.0.1:0", 5000, 4);
	fd = raw_connect(hc_gossip_net_port(b.net));
	assert_int_equal(send(fd, "\0\0\0\011ab", 6, 0), 6);
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	assert_true(run_until(f->loop, stats_reached, &w));
	assert_true(closed_by_peer(fd));
	assert_int_equal(stats(&b).stream_timeouts, 0);
	close(fd);
	hc_gossip_net_free(b.net);
}

struct replies {
	int fd[2];
	uint8_t buf[2][16];
	size_t len[2];
};

static bool replies_read(void *arg)
{
	struct replies *r = arg;
	bool all = true;

	for (int i = 0; i < 2; i++) {
		ssize_t n = recv(r->fd[i], r->buf[i] + r->len[i], sizeof(r->buf[i]) - r->len[i],
				 MSG_DONTWAIT);

		if (n > 0)
			r->len[i] += (size_t)n;
		if (r->len[i] < 7)
			all = false;
	}
	return all;
}

static void test_streams_over_max_are_closed_first_ones_served(void **state)
{
	struct fixture *f = *state;
	struct node b;
	struct stats_wait w = { .n = &b, .rejected = 1, .in = 2 };
	struct replies r = { 0 };
	int extra;

	node_start(&b, f->loop, "127.0.0.1:0", 5000, 2);
	/* The kernel completes all three handshakes; the net accepts in order. */
	r.fd[0] = raw_connect(hc_gossip_net_port(b.net));
	r.fd[1] = raw_connect(hc_gossip_net_port(b.net));
	extra = raw_connect(hc_gossip_net_port(b.net));
	assert_true(run_until(f->loop, stats_reached, &w));
	assert_true(closed_by_peer(extra));
	assert_int_equal(stats(&b).streams_in, 2);

	assert_int_equal(send(r.fd[0], "\0\0\0\3one", 7, 0), 7);
	assert_int_equal(send(r.fd[1], "\0\0\0\3two", 7, 0), 7);
	assert_true(run_until(f->loop, replies_read, &r));
	assert_memory_equal(r.buf[0], "\0\0\0\3one", 7);
	assert_memory_equal(r.buf[1], "\0\0\0\3two", 7);
	/* The server is done with them: it closes once we do. */
	close(r.fd[0]);
	close(r.fd[1]);
	close(extra);
	hc_gossip_net_free(b.net);
}

/* Sends a framed message on each of r's two streams, checks the echoes,
 * and closes both. */
static void echo_two_and_close(struct fixture *f, struct replies *r)
{
	assert_int_equal(send(r->fd[0], "\0\0\0\3one", 7, 0), 7);
	assert_int_equal(send(r->fd[1], "\0\0\0\3two", 7, 0), 7);
	assert_true(run_until(f->loop, replies_read, r));
	assert_memory_equal(r->buf[0], "\0\0\0\3one", 7);
	assert_memory_equal(r->buf[1], "\0\0\0\3two", 7);
	close(r->fd[0]);
	close(r->fd[1]);
}

/* Out of descriptors, the listener must pause rather than wake the loop
 * over and over for a connection it cannot take, and resume by itself. */
static void test_accept_pauses_when_out_of_fds(void **state)
{
	struct fixture *f = *state;
	struct node b;
	struct replies r = { 0 };
	struct stats_wait w = { .n = &b, .in = 1 };
	struct rlimit saved, low;
	int lowest, idle = 0;

	node_start(&b, f->loop, "127.0.0.1:0", 5000, 4);
	b.mode = ECHO;
	r.fd[0] = raw_connect(hc_gossip_net_port(b.net));
	r.fd[1] = raw_connect(hc_gossip_net_port(b.net));
	lowest = dup(0);
	assert_true(lowest >= 0);
	close(lowest);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	low = saved;
	low.rlim_cur = (rlim_t)lowest; /* no new descriptor fits */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	/* Within the pause, most iterations find nothing to do. */
	for (int i = 0; i < 5; i++) {
		int n = hc_loop_run_once(f->loop, 10);

		assert_true(n >= 0);
		idle += n == 0;
	}
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	assert_true(idle >= 3);
	assert_int_equal(stats(&b).streams_in, 0);

	w.in = 2;
	assert_true(run_until(f->loop, stats_reached, &w));
	echo_two_and_close(f, &r);
	hc_gossip_net_free(b.net);
}

struct flood {
	struct node *n;
	int fd;
	size_t sent;
	bool send_failed;
};

/* Keeps pushing bytes at the server until it closes on us. */
static bool flood_stopped(void *arg)
{
	static const uint8_t chunk[65536];
	struct flood *fl = arg;
	ssize_t n = send(fl->fd, chunk, sizeof(chunk), MSG_DONTWAIT | MSG_NOSIGNAL);

	if (n > 0)
		fl->sent += (size_t)n;
	else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
		fl->send_failed = true;
	return fl->send_failed && stats(fl->n).stream_errors == 1;
}

static void test_oversized_stream_closed(void **state)
{
	struct fixture *f = *state;
	struct node b;
	struct flood fl = { .n = &b };

	node_start(&b, f->loop, "127.0.0.1:0", LIMIT_MS, 4);
	fl.fd = raw_connect(hc_gossip_net_port(b.net));
	/* Announces 64 MiB; the cap is HC_GOSSIP_STREAM_MAX. */
	assert_int_equal(send(fl.fd, "\4\0\0\0", 4, 0), 4);
	assert_true(run_until(f->loop, flood_stopped, &fl));
	assert_true(fl.sent >= HC_GOSSIP_STREAM_MAX - 4);
	assert_int_equal(stats(&b).stream_timeouts, 0);
	close(fl.fd);
	hc_gossip_net_free(b.net);
}

#define BUDGET (1u << 20)
#define FLOODERS 64
#define FLOOD_BYTES (256u << 10)

struct budget_flood {
	struct node *n;
	int fd[FLOODERS];
	size_t sent[FLOODERS];
	bool gone[FLOODERS];
};

/* Every flooder pushes its share without ever completing a message; the
 * streams' buffers together never go over the budget, checked on every
 * turn of the loop. Done once all but the few that fit were closed. */
static bool budget_flooded(void *arg)
{
	static const uint8_t chunk[16384];
	struct budget_flood *bf = arg;
	struct hc_gossip_net_stats st = stats(bf->n);

	assert_true(st.buffered <= BUDGET);
	for (int i = 0; i < FLOODERS; i++) {
		size_t want = FLOOD_BYTES - bf->sent[i];
		ssize_t n;

		if (bf->gone[i] || !want)
			continue;
		n = send(bf->fd[i], chunk, want < sizeof(chunk) ? want : sizeof(chunk),
			 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0)
			bf->sent[i] += (size_t)n;
		else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			bf->gone[i] = true;
	}
	/* a survivor holds FLOOD_BYTES: at most BUDGET / FLOOD_BYTES survive */
	return st.over_budget >= FLOODERS - BUDGET / FLOOD_BYTES;
}

static bool all_closed(void *arg)
{
	struct node *n = arg;

	return stats(n).buffered == 0 &&
	       stats(n).stream_errors + stats(n).stream_timeouts >= FLOODERS;
}

/* Many streams at once, each within the per-stream cap, cannot make the
 * node buffer more than the budget in all: the ones that would are closed
 * and counted, and the node still answers a stream afterwards. */
static void test_streams_share_one_budget(void **state)
{
	struct fixture *f = *state;
	struct node b;
	struct budget_flood bf = { .n = &b };
	struct replies r = { 0 };
	struct stats_wait w = { .n = &b, .in = FLOODERS };
	struct hc_gossip_net_stats st;

	node_start_budget(&b, f->loop, "127.0.0.1:0", LIMIT_MS, 128, BUDGET);
	b.mode = SILENT;
	for (int i = 0; i < FLOODERS; i++)
		bf.fd[i] = raw_connect(hc_gossip_net_port(b.net));
	assert_true(run_until(f->loop, stats_reached, &w));
	assert_true(run_until(f->loop, budget_flooded, &bf));
	st = stats(&b);
	assert_true(st.buffered_peak <= BUDGET);
	assert_true(st.buffered <= BUDGET);
	assert_true(st.over_budget >= FLOODERS - BUDGET / FLOOD_BYTES);
	for (int i = 0; i < FLOODERS; i++)
		close(bf.fd[i]);
	assert_true(run_until(f->loop, all_closed, &b));

	b.mode = ECHO;
	r.fd[0] = raw_connect(hc_gossip_net_port(b.net));
	r.fd[1] = raw_connect(hc_gossip_net_port(b.net));
	echo_two_and_close(f, &r);
	hc_gossip_net_free(b.net);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_datagram_round_trip_ipv4, setup, teardown),
		cmocka_unit_test_setup_teardown(test_datagram_round_trip_ipv6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_to_bad_address_fails_and_counts, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_busy_port_is_a_clear_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_exchange_1mib_echo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_connection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_silent_peer_times_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eof_before_complete_is_connreset, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_free_cancels_pending_exchanges_once, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stalled_stream_closed_after_tcp_timeout, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_eof_mid_message_closes_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_streams_over_max_are_closed_first_ones_served,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_accept_pauses_when_out_of_fds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversized_stream_closed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_streams_share_one_budget, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
