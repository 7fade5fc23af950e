// SPDX-License-Identifier: Apache-2.0
/*
 * relay_floor: the least a proxy that reads its traffic in user space can
 * do, as a yardstick for bench_proxy. It accepts on 127.0.0.1:LISTEN and
 * relays each connection's bytes both ways to 127.0.0.1:BACKEND with recv
 * and send, nothing else: no parsing, no routing, no header added, no
 * timeout, no limit. Each of THREADS threads has a SO_REUSEPORT listener
 * and an epoll set of its own; both sockets of a connection sit in it
 * edge-triggered from accept to close (no epoll_ctl per request), and a
 * short read is taken as the socket drained (no recv to learn EAGAIN), as
 * hypercore's proxy does. Per keep-alive request that is one recv and one
 * send each way: what HAProxy, hypercore and any proxy that must see every
 * request head (X-Forwarded-For replaced on each) do at least, so its rate
 * bounds theirs on the same machine.
 *
 * Not a proxy to run: it trusts its peers and has no bound on connections.
 *
 * Usage: relay_floor LISTEN-PORT BACKEND-PORT [THREADS]
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 16384
#define EVENTS 256
#define MAX_THREADS 64

/* One direction: bytes read from src not yet all sent to dst. */
struct flow {
	int src, dst;
	bool src_readable, dst_writable, src_eof;
	size_t off, len;
	char buf[BUF_SIZE];
};

/* The epoll data of one socket: its connection and which one it is. */
struct end {
	struct conn *conn;
	int fd;
};

struct conn {
	struct flow up;   /* client to backend */
	struct flow down; /* backend to client */
	struct end client, backend;
	int done; /* directions ended (EOF passed on) */
	bool dead;
	struct conn *next_dead;
};

/* Closed connections, freed once the batch of events that may still name
 * them is through. */
static __thread struct conn *graveyard;

static uint16_t backend_port;

/* A loopback address's TCP socket, made ready by ready(): 0 or -1. */
static int loopback_socket(uint16_t port, int (*ready)(int fd, const struct sockaddr_in *a))
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd >= 0 && ready(fd, &a) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int bind_listen(int fd, const struct sockaddr_in *a)
{
	int one = 1;

	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)a, sizeof(*a)) < 0)
		return -1;
	return listen(fd, 8192);
}

static int start_connect(int fd, const struct sockaddr_in *a)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		return -1;
	if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) < 0 && errno != EINPROGRESS)
		return -1;
	return 0;
}

static void conn_close(struct conn *c)
{
	close(c->client.fd);
	close(c->backend.fd);
	c->dead = true;
	c->next_dead = graveyard;
	graveyard = c;
}

static void bury_dead(void)
{
	while (graveyard) {
		struct conn *c = graveyard;

		graveyard = c->next_dead;
		free(c);
	}
}

/* Moves what f can move now. Returns -1 when the connection must end. */
static int flow_pump(struct conn *c, struct flow *f)
{
	for (;;) {
		while (f->len > f->off && f->dst_writable) {
			ssize_t n = send(f->dst, f->buf + f->off, f->len - f->off, MSG_NOSIGNAL);

			if (n < 0) {
				if (errno == EAGAIN)
					f->dst_writable = false;
				else if (errno != EINTR)
					return -1;
				continue;
			}
			f->off += (size_t)n;
		}
		if (f->len > f->off || f->src_eof || !f->src_readable)
			return 0;
		ssize_t n = recv(f->src, f->buf, sizeof(f->buf), 0);

		if (n < 0) {
			if (errno == EAGAIN)
				f->src_readable = false;
			else if (errno != EINTR)
				return -1;
			continue;
		}
		if (n == 0) {
			f->src_eof = true;
			if (shutdown(f->dst, SHUT_WR) < 0 && errno != ENOTCONN)
				return -1;
			return ++c->done == 2 ? -1 : 0;
		}
		f->off = 0;
		f->len = (size_t)n;
		/* a short read drained the socket: the next bytes bring an event */
		if ((size_t)n < sizeof(f->buf))
			f->src_readable = false;
	}
}

static void on_event(struct end *e, uint32_t ev)
{
	struct conn *c = e->conn;
	bool is_client = e == &c->client;
	struct flow *from = is_client ? &c->up : &c->down; /* this socket reads */
	struct flow *to = is_client ? &c->down : &c->up;   /* this socket writes */

	if (c->dead)
		return;
	if (ev & EPOLLERR) {
		conn_close(c);
		return;
	}
	/* a hang-up may come with the last bytes: read them, then the EOF */
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))
		from->src_readable = true;
	if (ev & (EPOLLOUT | EPOLLHUP))
		to->dst_writable = true;
	if (flow_pump(c, from) < 0 || flow_pump(c, to) < 0)
		conn_close(c);
}

static void accept_all(int lfd, int ep)
{
	for (;;) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET };
		int one = 1, cfd, bfd;
		struct conn *c;

		cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0)
			return; /* EAGAIN, or a client gone before we took it */
		(void)setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		bfd = loopback_socket(backend_port, start_connect);
		c = bfd < 0 ? NULL : calloc(1, sizeof(*c));
		if (!c) {
			if (bfd >= 0)
				close(bfd);
			close(cfd);
			continue;
		}
		c->up = (struct flow){ .src = cfd, .dst = bfd };
		c->down = (struct flow){ .src = bfd, .dst = cfd, .dst_writable = true };
		c->client = (struct end){ c, cfd };
		c->backend = (struct end){ c, bfd };
		ev.data.ptr = &c->client;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev) < 0) {
			conn_close(c);
			continue;
		}
		ev.data.ptr = &c->backend;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, bfd, &ev) < 0)
			conn_close(c); /* closing the client's fd takes it out of the set */
	}
}

static void *worker_main(void *arg)
{
	uint16_t port = (uint16_t)(uintptr_t)arg;
	struct epoll_event ev = { .events = EPOLLIN }, evs[EVENTS];
	int lfd = loopback_socket(port, bind_listen), ep = epoll_create1(EPOLL_CLOEXEC);

	if (lfd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
		perror("relay_floor: listen");
		exit(1);
	}
	for (;;) {
		int n = epoll_wait(ep, evs, EVENTS, -1);

		for (int i = 0; i < n; i++) {
			if (!evs[i].data.ptr)
				accept_all(lfd, ep);
			else
				on_event(evs[i].data.ptr, evs[i].events);
		}
		bury_dead();
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t threads[MAX_THREADS];
	long listen_port, port, nthreads = 1;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: relay_floor LISTEN-PORT BACKEND-PORT [THREADS]\n");
		return 2;
	}
	listen_port = strtol(argv[1], NULL, 10);
	port = strtol(argv[2], NULL, 10);
	if (argc == 4)
		nthreads = strtol(argv[3], NULL, 10);
	if (listen_port < 1 || listen_port > 65535 || port < 1 || port > 65535 ||
	    nthreads < 1 || nthreads > MAX_THREADS) {
		fprintf(stderr, "relay_floor: ports 1-65535, threads 1-%d\n", MAX_THREADS);
		return 2;
	}
	backend_port = (uint16_t)port;
	signal(SIGPIPE, SIG_IGN);
	for (long i = 0; i < nthreads; i++)
		if (pthread_create(&threads[i], NULL, worker_main, (void *)(uintptr_t)listen_port)) {
			fprintf(stderr, "relay_floor: cannot start a thread\n");
			return 1;
		}
	pthread_join(threads[0], NULL);
	return 0;
}
