/* The proxy's kernel splice (bpf/hc_sockmap.bpf.c) on real loopback TCP.
 *
 * Two connections, A<->B and C<->D, stand for client<->proxy and
 * proxy<->backend. B and C go into hc_splice with each other as partners in
 * hc_splice_peer, so what A sends must come out at D and the other way round,
 * without the test ever reading B or C. Needs root (CAP_BPF, CAP_NET_ADMIN);
 * skips, saying why, where the kernel has no sockhash or sk_skb programs.
 * Every wait is a poll() with a deadline: a broken splice fails, never hangs. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <cmocka.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <hypercore/dataplane.h>

#include "hc_sockmap.skel.h"

#define WAIT_MS 5000  /* longest wait for anything that should happen */
#define QUIET_MS 300  /* how long "nothing arrives" is watched */
#define BULK_BYTES (8u << 20)
#define CHUNK (64u << 10)

/* Why every case skips, or NULL; decided once by the group setup. */
static const char *skip_reason;

struct fx {
	struct hc_sockmap *skel;
	int splice_fd; /* hc_splice: cookie -> socket */
	int peer_fd;   /* hc_splice_peer: cookie -> partner cookie */
	int a, b, c, d;
	__u64 ck_b, ck_c;
	/* The bulk case's buffers, here so a failed assertion cannot leak them. */
	unsigned char *out, *in;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Bytes that depend on their stream offset, so a lost, repeated or reordered
 * stretch shows up wherever it lands. */
static unsigned char pattern(uint64_t seed, uint64_t off)
{
	uint64_t x = seed ^ ((off >> 3) * 0x9e3779b97f4a7c15ull);

	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return (unsigned char)(x >> ((off & 7) * 8));
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

/* One established loopback connection: *client connected to *server.
 * Both non-blocking. Returns 0 or -errno. */
static int tcp_pair(int *client, int *server)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int l = -1, c = -1, s = -1, err = 0;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&sa, &len) < 0)
		goto fail;
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto fail;
	s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (s < 0)
		goto fail;
	if ((err = set_nonblock(c)) || (err = set_nonblock(s)))
		goto out;
	close(l);
	*client = c;
	*server = s;
	return 0;
fail:
	err = -errno;
out:
	if (s >= 0)
		close(s);
	if (c >= 0)
		close(c);
	if (l >= 0)
		close(l);
	return err;
}

static int cookie_of(int fd, __u64 *cookie)
{
	socklen_t len = sizeof(*cookie);

	return getsockopt(fd, SOL_SOCKET, SO_COOKIE, cookie, &len) < 0 ? -errno : 0;
}

static int close_fd(int *fd)
{
	int rc = 0;

	if (*fd >= 0)
		rc = close(*fd);
	*fd = -1;
	return rc;
}

static int group_setup(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip_reason = "needs root (BPF programs and maps)";
	else if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_SOCKHASH, NULL) <= 0)
		skip_reason = "kernel has no BPF_MAP_TYPE_SOCKHASH";
	else if (libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SK_SKB, NULL) <= 0)
		skip_reason = "kernel has no BPF_PROG_TYPE_SK_SKB";
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	if (!fx)
		return 0;
	close_fd(&fx->a);
	close_fd(&fx->b);
	close_fd(&fx->c);
	close_fd(&fx->d);
	/* The maps, their sockets and the attached programs go with the last fd. */
	hc_sockmap__destroy(fx->skel);
	free(fx->out);
	free(fx->in);
	free(fx);
	*state = NULL;
	return 0;
}

/* Loads the object unpinned, attaches parser and verdict to hc_splice and
 * opens both connections; the sockets are not in the maps yet. */
static int setup(void **state)
{
	struct bpf_map *map;
	struct fx *fx;
	const char *what;
	int err;

	*state = NULL;
	if (skip_reason)
		return 0;
	fx = calloc(1, sizeof(*fx));
	if (!fx)
		return -1;
	fx->a = fx->b = fx->c = fx->d = -1;
	*state = fx;

	what = "open";
	fx->skel = hc_sockmap__open();
	if (!fx->skel) {
		err = -errno;
		goto fail;
	}
	what = "unpin";
	bpf_object__for_each_map(map, fx->skel->obj) {
		if ((err = bpf_map__set_pin_path(map, NULL)))
			goto fail;
	}
	what = "load";
	if ((err = hc_sockmap__load(fx->skel)))
		goto fail;
	fx->splice_fd = bpf_map__fd(fx->skel->maps.hc_splice);
	fx->peer_fd = bpf_map__fd(fx->skel->maps.hc_splice_peer);
	/* Attached before any socket joins the map: a psock takes the map's
	 * programs when the socket is inserted. */
	what = "attach parser";
	if (bpf_prog_attach(bpf_program__fd(fx->skel->progs.hc_sk_parser), fx->splice_fd,
			    BPF_SK_SKB_STREAM_PARSER, 0) < 0) {
		err = -errno;
		goto fail;
	}
	what = "attach verdict";
	if (bpf_prog_attach(bpf_program__fd(fx->skel->progs.hc_sk_verdict), fx->splice_fd,
			    BPF_SK_SKB_STREAM_VERDICT, 0) < 0) {
		err = -errno;
		goto fail;
	}
	what = "connect";
	if ((err = tcp_pair(&fx->a, &fx->b)) || (err = tcp_pair(&fx->c, &fx->d)))
		goto fail;
	what = "SO_COOKIE";
	if ((err = cookie_of(fx->b, &fx->ck_b)) || (err = cookie_of(fx->c, &fx->ck_c)))
		goto fail;
	return 0;
fail:
	print_error("setup: %s: %s\n", what, strerror(err < 0 ? -err : err));
	teardown(state);
	return -1;
}

static struct fx *fixture(void **state)
{
	if (skip_reason || !*state) {
		print_message("# SKIP %s\n", skip_reason ? skip_reason : "no fixture");
		skip();
	}
	return *state;
}

static void map_put(int map_fd, __u64 key, __u64 val)
{
	if (bpf_map_update_elem(map_fd, &key, &val, BPF_ANY) < 0)
		fail_msg("map update %llu: %s", (unsigned long long)key, strerror(errno));
}

static void map_del(int map_fd, __u64 key)
{
	if (bpf_map_delete_elem(map_fd, &key) < 0)
		fail_msg("map delete %llu: %s", (unsigned long long)key, strerror(errno));
}

/* B and C into the sockhash (the value is the fd, read as a socket). */
static void sockets_in(struct fx *fx)
{
	map_put(fx->splice_fd, fx->ck_b, (__u64)fx->b);
	map_put(fx->splice_fd, fx->ck_c, (__u64)fx->c);
}

static void splice_pair(struct fx *fx)
{
	sockets_in(fx);
	map_put(fx->peer_fd, fx->ck_b, fx->ck_c);
	map_put(fx->peer_fd, fx->ck_c, fx->ck_b);
}

/* Waits for events on fd; returns revents, 0 on timeout. */
static short wait_fd(int fd, short events, int ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int n;

	do
		n = poll(&p, 1, ms);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		fail_msg("poll: %s", strerror(errno));
	return n ? p.revents : 0;
}

static void send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (!wait_fd(fd, POLLOUT, WAIT_MS))
				fail_msg("send on fd %d: no room for %d ms", fd, WAIT_MS);
			continue;
		}
		if (n < 0)
			fail_msg("send on fd %d: %s", fd, strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

static void send_str(int fd, const char *s)
{
	send_all(fd, s, strlen(s));
}

/* Reads exactly len bytes; end of stream or WAIT_MS of silence fails. */
static void recv_exact(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (!wait_fd(fd, POLLIN, WAIT_MS))
				fail_msg("recv on fd %d: %zu bytes still missing after %d ms", fd,
					 len, WAIT_MS);
			continue;
		}
		if (n < 0)
			fail_msg("recv on fd %d: %s", fd, strerror(errno));
		if (n == 0)
			fail_msg("recv on fd %d: end of stream, %zu bytes missing", fd, len);
		p += n;
		len -= (size_t)n;
	}
}

static void expect_str(int fd, const char *want)
{
	size_t len = strlen(want);
	char got[256];

	assert_true(len < sizeof(got));
	recv_exact(fd, got, len);
	got[len] = '\0';
	assert_string_equal(got, want);
}

/* The next read returns end of stream, with no data before it. */
static void expect_eof(int fd)
{
	char c;
	ssize_t n;

	for (;;) {
		n = recv(fd, &c, 1, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (!wait_fd(fd, POLLIN | POLLRDHUP, WAIT_MS))
				fail_msg("fd %d: no end of stream after %d ms", fd, WAIT_MS);
			continue;
		}
		break;
	}
	if (n < 0)
		fail_msg("fd %d: %s where end of stream was expected", fd, strerror(errno));
	if (n > 0)
		fail_msg("fd %d: data (0x%02x) where end of stream was expected", fd,
			 (unsigned char)c);
}

/* Nothing readable, not even end of stream, for QUIET_MS. */
static void expect_quiet(int fd)
{
	short ev = wait_fd(fd, POLLIN | POLLRDHUP, QUIET_MS);
	char c;
	ssize_t n;

	if (ev)
		fail_msg("fd %d: expected nothing to read, poll says 0x%x", fd, ev);
	n = recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
	if (n == 0)
		fail_msg("fd %d: end of stream where nothing was expected", fd);
	if (n > 0)
		fail_msg("fd %d: data where nothing was expected", fd);
	assert_int_equal(errno, EAGAIN);
}

static void test_small_both_ways(void **state)
{
	struct fx *fx = fixture(state);

	splice_pair(fx);
	send_str(fx->a, "GET / HTTP/1.1\r\n\r\n");
	expect_str(fx->d, "GET / HTTP/1.1\r\n\r\n");
	send_str(fx->d, "HTTP/1.1 204 No Content\r\n\r\n");
	expect_str(fx->a, "HTTP/1.1 204 No Content\r\n\r\n");
	/* Again, so a second skb on an already-used psock is covered too. */
	send_str(fx->a, "ping");
	expect_str(fx->d, "ping");
	send_str(fx->d, "pong");
	expect_str(fx->a, "pong");
	/* Everything went through the kernel: the splice sockets hold nothing. */
	expect_quiet(fx->b);
	expect_quiet(fx->c);
}

/* 8 MiB each way at once, one poll loop writing and reading all four
 * directions' ends, so neither side can stall on a full buffer. */
static void test_bulk_both_ways(void **state)
{
	struct fx *fx = fixture(state);
	const uint64_t seed_ad = 0xa11ce, seed_da = 0xd00d;
	size_t sent[2] = { 0, 0 }, got[2] = { 0, 0 };
	int wfd[2], rfd[2];
	uint64_t seed[2], deadline;
	int dir;

	splice_pair(fx);
	fx->out = malloc(CHUNK);
	fx->in = malloc(CHUNK);
	assert_non_null(fx->out);
	assert_non_null(fx->in);
	wfd[0] = fx->a, rfd[0] = fx->d, seed[0] = seed_ad;
	wfd[1] = fx->d, rfd[1] = fx->a, seed[1] = seed_da;

	deadline = now_ms() + 60000;
	while (got[0] < BULK_BYTES || got[1] < BULK_BYTES) {
		struct pollfd p[4];
		int n;

		for (dir = 0; dir < 2; dir++) {
			p[dir] = (struct pollfd){ .fd = wfd[dir],
						  .events = sent[dir] < BULK_BYTES ? POLLOUT : 0 };
			p[2 + dir] = (struct pollfd){ .fd = rfd[dir], .events = POLLIN };
		}
		n = poll(p, 4, WAIT_MS);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail_msg("poll: %s", strerror(errno));
		if (n == 0 || now_ms() > deadline)
			fail_msg("stalled: A->D sent %zu got %zu, D->A sent %zu got %zu", sent[0],
				 got[0], sent[1], got[1]);
		for (dir = 0; dir < 2; dir++) {
			if (p[dir].revents & (POLLOUT | POLLERR | POLLHUP)) {
				size_t len = BULK_BYTES - sent[dir];
				ssize_t w;
				size_t i;

				if (len > CHUNK)
					len = CHUNK;
				for (i = 0; i < len; i++)
					fx->out[i] = pattern(seed[dir], sent[dir] + i);
				w = send(wfd[dir], fx->out, len, MSG_NOSIGNAL | MSG_DONTWAIT);
				if (w < 0 && errno != EAGAIN && errno != EINTR)
					fail_msg("send dir %d: %s", dir, strerror(errno));
				if (w > 0)
					sent[dir] += (size_t)w;
			}
			if (p[2 + dir].revents & (POLLIN | POLLERR | POLLHUP)) {
				ssize_t r = recv(rfd[dir], fx->in, CHUNK, MSG_DONTWAIT);
				ssize_t i;

				if (r < 0 && errno != EAGAIN && errno != EINTR)
					fail_msg("recv dir %d: %s", dir, strerror(errno));
				if (r == 0)
					fail_msg("dir %d: end of stream after %zu bytes", dir, got[dir]);
				if (got[dir] + (size_t)(r > 0 ? r : 0) > sent[dir])
					fail_msg("dir %d: received %zu bytes, only %zu sent", dir,
						 got[dir] + (size_t)r, sent[dir]);
				for (i = 0; i < r; i++) {
					if (fx->in[i] != pattern(seed[dir], got[dir] + (size_t)i))
						fail_msg("dir %d: byte %zu differs", dir,
							 got[dir] + (size_t)i);
				}
				if (r > 0)
					got[dir] += (size_t)r;
			}
		}
	}
	assert_int_equal(sent[0], BULK_BYTES);
	assert_int_equal(sent[1], BULK_BYTES);
	expect_quiet(fx->a);
	expect_quiet(fx->d);
	expect_quiet(fx->b);
	expect_quiet(fx->c);
}

/* A socket in hc_splice without an hc_splice_peer entry gets SK_PASS: its
 * bytes stay on it. Only C has a partner here, so D->A is still spliced
 * while A->B is delivered to B. */
static void test_no_peer_keeps_data(void **state)
{
	struct fx *fx = fixture(state);

	sockets_in(fx);
	map_put(fx->peer_fd, fx->ck_c, fx->ck_b);
	send_str(fx->a, "for B itself");
	expect_str(fx->b, "for B itself");
	expect_quiet(fx->d);
	send_str(fx->d, "via the splice");
	expect_str(fx->a, "via the splice");
	expect_quiet(fx->c);
	/* B, holding its own data, can still answer on its own. */
	send_str(fx->b, "from B");
	expect_str(fx->a, "from B");
}

/* Taking the pair out of both maps hands the sockets back to plain TCP. */
static void test_unsplice_restores_delivery(void **state)
{
	struct fx *fx = fixture(state);

	splice_pair(fx);
	send_str(fx->a, "spliced");
	expect_str(fx->d, "spliced");
	send_str(fx->d, "spliced back");
	expect_str(fx->a, "spliced back");

	map_del(fx->peer_fd, fx->ck_b);
	map_del(fx->peer_fd, fx->ck_c);
	map_del(fx->splice_fd, fx->ck_b);
	map_del(fx->splice_fd, fx->ck_c);

	send_str(fx->a, "to B");
	expect_str(fx->b, "to B");
	send_str(fx->d, "to C");
	expect_str(fx->c, "to C");
	expect_quiet(fx->a);
	expect_quiet(fx->d);
	send_str(fx->b, "B answers");
	expect_str(fx->a, "B answers");
	send_str(fx->c, "C answers");
	expect_str(fx->d, "C answers");
}

/* What a half-close does to a splice. The verdict passes the FIN (an empty
 * skb) to the receiving socket instead of redirecting it, so:
 *  - shutdown(A, SHUT_WR): B reads the data's end of stream, D does not;
 *  - the other direction (D->A) keeps flowing through the splice;
 *  - only when the proxy forwards it, shutdown(C, SHUT_WR), does D see EOF.
 * Then the same the other way, ending with both directions closed. */
static void test_half_close(void **state)
{
	struct fx *fx = fixture(state);

	splice_pair(fx);
	send_str(fx->a, "request body");
	assert_int_equal(shutdown(fx->a, SHUT_WR), 0);
	expect_str(fx->d, "request body");
	expect_eof(fx->b);
	expect_quiet(fx->d);

	send_str(fx->d, "response, still spliced");
	expect_str(fx->a, "response, still spliced");

	assert_int_equal(shutdown(fx->c, SHUT_WR), 0); /* the proxy forwards A's FIN */
	expect_eof(fx->d);

	send_str(fx->d, "last");
	assert_int_equal(shutdown(fx->d, SHUT_WR), 0);
	expect_str(fx->a, "last");
	expect_eof(fx->c);
	expect_quiet(fx->a);

	assert_int_equal(shutdown(fx->b, SHUT_WR), 0);
	expect_eof(fx->a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_small_both_ways, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bulk_both_ways, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_peer_keeps_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsplice_restores_delivery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
