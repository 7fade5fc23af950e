/*
 * libFuzzer: the proxy's HTTP/2 glue (agent/proxy/h2.c, h2_up.c), frames in,
 * routing decisions out. Each input is what a client sends after the
 * connection preface (the harness puts the preface first, so that the
 * fuzzer spends its time on frames): it is written into one end of a
 * socketpair whose other end is a proxy connection's client socket, and the
 * HTTP/2 engine runs on it as after the h2c preface on a plain port, over
 * a routing table of the harness's own:
 *
 *   a.test   -> 127.0.0.1:9, HTTP/1.1 (the stream's request is built and a
 *               connect started; no event loop runs, so it never completes)
 *   g.test   -> 127.0.0.1:9, h2c (a backend session is made and fed)
 *   <id>.example.test: the id is looked up (the base URL rule)
 *
 * Checked: no crash, leak or undefined behaviour under ASan/UBSan, also
 * when the connection ends in the middle of anything; every name the glue
 * asks the table for is a route key of a normalised host (lower-case, no
 * port, no trailing dot, only the characters of a name or an address), so
 * :authority reaches routing by exactly the Host rules; and what the
 * engine wrote back starts with its SETTINGS frame.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/h2.h"
#include "proxy/proxy_int.h"

#define INPUT_MAX 32768 /* fits the socketpair's buffer: written in one go */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_key(const struct hc_route_key *key)
{
	size_t n = strnlen(key->host, sizeof(key->host));

	if (n == 0 || n == sizeof(key->host) || key->host[n - 1] == '.')
		abort();
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)key->host[i];

		if (isupper(ch) || !(isalnum(ch) || strchr(".-_[]:", ch)))
			abort();
		if (ch == ':' && key->host[0] != '[') /* a port left on a name */
			abort();
	}
}

static bool table(const struct hc_route_key *key, struct hc_route_val *val)
{
	check_key(key);
	memset(val, 0, sizeof(*val));
	val->backend.family = HC_AF_INET;
	val->backend.ip4 = htonl(0x7f000001);
	val->port = 9;
	if (strcmp(key->host, "a.test") == 0 || strcmp(key->host, "app") == 0)
		return true;
	if (strcmp(key->host, "g.test") == 0) {
		val->flags = HC_ROUTE_F_H2C;
		return true;
	}
	return false;
}

static struct hc_proxy proxy;
static struct hc_proxy_worker worker;
static struct hc_proxy_listener listener;

static void setup(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	proxy.cfg.idle_timeout_ms = 60000;
	proxy.cfg.forwarded_headers = true;
	proxy.cfg.backend_reuse = true;
	proxy.base_url = "example.test";
	proxy.routes_fd = -1;
	proxy.route_lookup = table;
	proxy.port_conns = calloc(65536, sizeof(*proxy.port_conns));
	proxy.workloads = hc_proxy_wlstats_new(HC_PROXY_WORKLOADS_MAX);
	pthread_mutex_init(&proxy.lock, NULL);
	worker.p = &proxy;
	worker.epfd = epoll_create1(EPOLL_CLOEXEC);
	worker.wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	listener.port = 80;
	listener.fd = 1000; /* open, as far as closing a connection is concerned */
	if (!proxy.port_conns || !proxy.workloads || worker.epfd < 0 || worker.wakefd < 0)
		abort();
}

/* A connection on fd as conn.c's accept makes it. */
static struct hc_proxy_conn *conn_on(int fd)
{
	struct hc_proxy_conn *c = calloc(1, sizeof(*c));
	struct epoll_event ev = {.events = EPOLLIN};

	if (!c)
		abort();
	c->hc.kind = H_CLIENT;
	c->hb.kind = H_BACKEND;
	c->w = &worker;
	c->l = &listener;
	c->cfd = fd;
	c->bfd = -1;
	c->up.pipe[0] = c->up.pipe[1] = c->down.pipe[0] = c->down.pipe[1] = -1;
	c->state = C_PEEK;
	ev.data.ptr = &c->hc;
	if (epoll_ctl(worker.epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		abort();
	c->events_c = ev.events;
	worker.conns = c;
	worker.nconns = 1;
	listener.conns = 1;
	return c;
}

/* What the engine wrote: it must start with a SETTINGS frame. */
static void check_output(int fd)
{
	uint8_t head[9];
	char sink[65536];
	ssize_t n = recv(fd, head, sizeof(head), MSG_DONTWAIT);

	if (n == (ssize_t)sizeof(head) && head[3] != 0x4)
		abort();
	while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
		;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hc_proxy_conn *c;
	int sv[2];

	setup();
	if (size > INPUT_MAX)
		size = INPUT_MAX;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	if (send(sv[0], HC_H2_PREFACE, HC_H2_PREFACE_LEN, 0) != HC_H2_PREFACE_LEN ||
	    (size && send(sv[0], data, size, 0) != (ssize_t)size))
		abort();
	shutdown(sv[0], SHUT_WR); /* the client's end: after its frames */
	worker.now_ms = hc_proxy_now_ms();
	c = conn_on(sv[1]);
	hc_proxy_h2_start(c);
	/* as the worker's loop: a connection with work left is pumped again */
	for (int i = 0; i < 16 && worker.h2_due; i++)
		hc_proxy_h2_flush(&worker);
	if (c->state == C_H2) { /* the idle timeout, as the timer wheel would run it */
		worker.now_ms += proxy.cfg.idle_timeout_ms;
		hc_proxy_h2_expire(c);
	}
	if (c->state != C_CLOSED)
		hc_proxy_conn_close(c, false);
	hc_proxy_h2_flush(&worker); /* what the close left due: nothing to pump */
	hc_proxy_conn_reap(&worker);
	hc_proxy_h2_reap(&worker);
	check_output(sv[0]);
	close(sv[0]);
	return 0;
}
