/*
 * Idle keep-alive backend connections, kept per worker for the next request
 * to the same backend address (splice and copy modes; the sockmap's raw
 * pipe never knows where a response ends).
 *
 * Without them every client connection costs a backend connection too:
 * socket, connect, its handshake, the backend's accept and both closes. With
 * them a short client connection costs two epoll_ctl calls on the backend
 * side (the pooled socket handed to the connection and back).
 *
 * A connection goes back only clean (hc_proxy_backend_poolable): every
 * response ended and framed by length or chunks, nothing in flight either
 * way, no Connection: close left in an exchange, no upgrade, no HTTP/1.0.
 * While pooled it is watched: a byte the backend sends unasked, or its
 * close, evicts it. It is closed after HC_PROXY_IDLE_MS, under the
 * keep-alive timeouts of common backends. Connections are never shared:
 * one client's requests at a time, as a plain keep-alive connection.
 *
 * Each pooled socket is a descriptor the proxy holds: it is charged to the
 * descriptor budget (p->fds_used) while pooled, and a full budget closes it
 * instead.
 */
#define HC_LOG_MODULE "proxy"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "proxy/proxy_int.h"

#define ET_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

static bool same_backend(const struct hc_proxy_idle *e, const struct hc_route_val *val)
{
	if (e->port != val->port || e->addr.family != val->backend.family)
		return false;
	if (val->backend.family == HC_AF_INET)
		return e->addr.ip4 == val->backend.ip4;
	return memcmp(e->addr.ip6, val->backend.ip6, sizeof(e->addr.ip6)) == 0;
}

/* Takes a slot out of the pool (its socket stays open) and gives its
 * descriptor charge back. */
static void slot_clear(struct hc_proxy_worker *w, struct hc_proxy_idle *e)
{
	struct hc_proxy *p = w->p;

	e->fd = -1;
	w->nidle--;
	atomic_fetch_sub(&p->fds_used, 1);
	atomic_fetch_sub(&p->stats.backend_idle, 1);
}

static void slot_close(struct hc_proxy_worker *w, struct hc_proxy_idle *e)
{
	int fd = e->fd;

	slot_clear(w, e);
	close(fd); /* closing takes it out of the epoll set */
}

bool hc_proxy_backend_poolable(const struct hc_proxy_conn *c)
{
	const struct hc_proxy_flow *u = &c->up, *d = &c->down;

	if (!c->w->p->cfg.backend_reuse || c->w->p->cfg.forwarding == HC_PROXY_SOCKMAP)
		return false;
	if (!c->backend_keep || !c->engine || !c->engine_on || c->in_sockmap ||
	    c->state != C_FORWARD || c->bfd < 0 || c->req_count || c->upgrading)
		return false;
	/* requests: everything framed went out, nothing half sent or shut */
	if ((u->state != F_HEAD && u->state != F_WAIT) || u->ready || u->pipe[0] >= 0 || u->shut)
		return false;
	/* responses: the last one ended and went out; the backend did not end */
	return d->state == F_HEAD && !d->queued && d->pipe[0] < 0 && !d->eof && !d->hup;
}

/* A free slot for val's backend, or NULL: the pool is full, or holds
 * HC_PROXY_IDLE_PER_BACKEND to it already. */
static struct hc_proxy_idle *free_slot(struct hc_proxy_worker *w, const struct hc_route_val *val)
{
	struct hc_proxy_idle *free_one = NULL;
	unsigned same = 0;

	if (w->nidle >= HC_PROXY_IDLE_MAX)
		return NULL;
	for (unsigned i = 0; i < HC_PROXY_IDLE_MAX; i++) {
		struct hc_proxy_idle *e = &w->idle[i];

		if (e->fd < 0) {
			if (!free_one)
				free_one = e;
		} else if (same_backend(e, val) && ++same >= HC_PROXY_IDLE_PER_BACKEND) {
			return NULL;
		}
	}
	return free_one;
}

/* Pools c's backend socket. 0, or -errno (then it is still c's). */
static int pool_put(struct hc_proxy_conn *c)
{
	struct hc_proxy_worker *w = c->w;
	struct hc_proxy *p = w->p;
	struct hc_proxy_idle *e = free_slot(w, &c->route_val);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP};

	if (!e)
		return -ENOSPC;
	if (atomic_fetch_add(&p->fds_used, 1) + 1 > p->cfg.max_fds && p->cfg.max_fds) {
		atomic_fetch_sub(&p->fds_used, 1);
		return -EMFILE;
	}
	/* Level-triggered: whatever is pending now (a FIN, stray bytes)
	 * reports at once and evicts it. */
	ev.data.ptr = &e->h;
	if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->bfd, &ev) < 0) {
		int err = -errno;

		atomic_fetch_sub(&p->fds_used, 1);
		return err;
	}
	e->h.kind = H_IDLE;
	e->fd = c->bfd;
	e->addr = c->route_val.backend;
	e->port = c->route_val.port;
	e->since_ms = w->now_ms;
	w->nidle++;
	atomic_fetch_add(&p->stats.backend_idle, 1);
	return 0;
}

void hc_proxy_backend_release(struct hc_proxy_conn *c)
{
	if (c->bfd < 0)
		return;
	if (!hc_proxy_backend_poolable(c) || pool_put(c) < 0)
		close(c->bfd);
	c->bfd = -1;
	c->events_b = 0;
}

int hc_proxy_backend_take(struct hc_proxy_conn *c, const struct hc_route_val *val)
{
	struct hc_proxy_worker *w = c->w;
	struct hc_proxy_idle *best = NULL;
	struct epoll_event ev = {.events = ET_EVENTS};

	if (!w->nidle)
		return -1;
	/* the most recently pooled: the least likely to be closing */
	for (unsigned i = 0; i < HC_PROXY_IDLE_MAX; i++) {
		struct hc_proxy_idle *e = &w->idle[i];

		if (e->fd >= 0 && same_backend(e, val) && (!best || e->since_ms > best->since_ms))
			best = e;
	}
	if (!best)
		return -1;
	/* The engine's interest, set once (as connect_backend does for a new
	 * socket): the MOD reports what is pending, a close among it. */
	ev.data.ptr = &c->hb;
	if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, best->fd, &ev) < 0) {
		hc_log(HC_LOG_DEBUG, "pooled backend connection: %s", strerror(errno));
		slot_close(w, best);
		return -1;
	}
	c->bfd = best->fd;
	c->events_b = ev.events;
	slot_clear(w, best);
	return 0;
}

void hc_proxy_idle_event(struct hc_proxy_worker *w, struct hc_proxy_idle *e)
{
	char b;
	ssize_t n;

	/* An event of this batch may come after its socket was taken (the slot
	 * freed or holding another): only a socket that really has something
	 * to say is closed. */
	if (e->fd < 0)
		return;
	n = recv(e->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	slot_close(w, e); /* its close, an error, or bytes nobody asked for */
}

void hc_proxy_idle_expire(struct hc_proxy_worker *w, bool all)
{
	uint64_t now = hc_proxy_now_ms();

	if (!w->nidle)
		return;
	for (unsigned i = 0; i < HC_PROXY_IDLE_MAX; i++) {
		struct hc_proxy_idle *e = &w->idle[i];

		if (e->fd >= 0 && (all || now - e->since_ms >= HC_PROXY_IDLE_MS))
			slot_close(w, e);
	}
}
