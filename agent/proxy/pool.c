/*
 * Idle keep-alive backend connections, kept per worker for the next request
 * to the same backend address (splice and copy modes; the sockmap's raw
 * pipe never knows where a response ends).
 *
 * Without them every client connection costs a backend connection too:
 * socket, connect, its handshake, the backend's accept and both closes. With
 * them a short client connection costs no system call on the backend side
 * but its request and response: a socket pooled once stays registered with
 * epoll under its pool slot (edge-triggered, as the engine wants it), and
 * the slot's events go to the connection it is lent to, or evict it while
 * idle. The first time a socket is pooled costs one epoll_ctl (from the
 * connection's handle to the slot's), as does pooling one whose last read
 * did not find its queue empty (re-armed, so that what is pending reports).
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

/* An idle socket leaves the pool's count (taken, or closed) and gives
 * its descriptor charge back. */
static void idle_uncount(struct hc_proxy_worker *w)
{
	w->nidle--;
	atomic_fetch_sub(&w->p->fds_used, 1);
	atomic_fetch_sub(&w->p->stats.backend_idle, 1);
}

static void slot_close(struct hc_proxy_worker *w, struct hc_proxy_idle *e)
{
	int fd = e->fd;

	idle_uncount(w);
	e->fd = -1;
	close(fd); /* closing takes it out of the epoll set */
}

void hc_proxy_backend_unbind(struct hc_proxy_conn *c)
{
	if (!c->bslot)
		return;
	c->bslot->fd = -1;
	c->bslot->owner = NULL;
	c->bslot = NULL;
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

/* Whether the pool may take one more idle connection to val's backend:
 * under HC_PROXY_IDLE_MAX idle in all and HC_PROXY_IDLE_PER_BACKEND to it. */
static bool pool_has_room(struct hc_proxy_worker *w, const struct hc_route_val *val)
{
	unsigned same = 0;

	if (w->nidle >= HC_PROXY_IDLE_MAX)
		return false;
	for (unsigned i = 0; i < w->slots_used; i++) {
		const struct hc_proxy_idle *e = &w->idle[i];

		if (e->fd >= 0 && !e->owner && same_backend(e, val) &&
		    ++same >= HC_PROXY_IDLE_PER_BACKEND)
			return false;
	}
	return true;
}

static struct hc_proxy_idle *free_slot(struct hc_proxy_worker *w)
{
	for (unsigned i = 0; i < w->slots_used; i++)
		if (w->idle[i].fd < 0)
			return &w->idle[i];
	return w->slots_used < HC_PROXY_SLOTS ? &w->idle[w->slots_used++] : NULL;
}

/* Registers c's backend socket under slot e, edge-triggered as the engine
 * has it: the modification reports what is pending (a close, stray bytes)
 * to the slot at once. 0 or -errno. */
static int slot_register(struct hc_proxy_conn *c, struct hc_proxy_idle *e)
{
	struct epoll_event ev = {.events = ET_EVENTS, .data.ptr = &e->h};

	return epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->bfd, &ev) < 0 ? -errno : 0;
}

/* Pools c's backend socket. 0, or -errno (then it is still c's). */
static int pool_put(struct hc_proxy_conn *c)
{
	struct hc_proxy_worker *w = c->w;
	struct hc_proxy *p = w->p;
	struct hc_proxy_idle *e = c->bslot;
	int rc;

	if (!pool_has_room(w, &c->route_val) || (!e && !(e = free_slot(w))))
		return -ENOSPC;
	if (atomic_fetch_add(&p->fds_used, 1) + 1 > p->cfg.max_fds && p->cfg.max_fds) {
		atomic_fetch_sub(&p->fds_used, 1);
		return -EMFILE;
	}
	/* A socket new to the pool moves to its slot's handle; a lent one
	 * whose last read was not an EAGAIN may hold what we have not seen
	 * (no edge would come for it): re-armed, which reports it. */
	if ((!c->bslot || c->down.rd_ready) && (rc = slot_register(c, e)) < 0) {
		atomic_fetch_sub(&p->fds_used, 1);
		return rc;
	}
	e->h.kind = H_IDLE;
	e->fd = c->bfd;
	e->owner = NULL;
	e->addr = c->route_val.backend;
	e->port = c->route_val.port;
	e->since_ms = w->now_ms;
	c->bslot = NULL;
	w->nidle++;
	atomic_fetch_add(&p->stats.backend_idle, 1);
	return 0;
}

void hc_proxy_backend_release(struct hc_proxy_conn *c)
{
	if (c->bfd < 0)
		return;
	if (!hc_proxy_backend_poolable(c) || pool_put(c) < 0) {
		hc_proxy_backend_unbind(c);
		close(c->bfd);
	}
	c->bfd = -1;
	c->events_b = 0;
}

int hc_proxy_backend_take(struct hc_proxy_conn *c, const struct hc_route_val *val)
{
	struct hc_proxy_worker *w = c->w;
	struct hc_proxy_idle *best = NULL;

	if (!w->nidle)
		return -1;
	/* the most recently pooled: the least likely to be closing */
	for (unsigned i = 0; i < w->slots_used; i++) {
		struct hc_proxy_idle *e = &w->idle[i];

		if (e->fd >= 0 && !e->owner && same_backend(e, val) &&
		    (!best || e->since_ms > best->since_ms))
			best = e;
	}
	if (!best)
		return -1;
	/* Its registration stays (the engine's edge-triggered interest): what
	 * comes from here on is c's, a close that came while it was idle was
	 * seen by the slot, or is still to be reported, to c now. */
	best->owner = c;
	c->bslot = best;
	c->bfd = best->fd;
	c->events_b = ET_EVENTS;
	idle_uncount(w);
	return 0;
}

void hc_proxy_idle_event(struct hc_proxy_worker *w, struct hc_proxy_idle *e, unsigned events)
{
	char b;
	ssize_t n;

	if (e->owner) {
		hc_proxy_conn_event(e->owner, true, events);
		return;
	}
	/* An event of this batch may come after its socket was closed (the
	 * slot freed or holding another), and edge-triggered interest reports
	 * a writable socket too: only a socket that really has something to
	 * say is closed. */
	if (e->fd < 0 || !(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
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
	for (unsigned i = 0; i < w->slots_used; i++) {
		struct hc_proxy_idle *e = &w->idle[i];

		if (e->fd >= 0 && !e->owner && (all || now - e->since_ms >= HC_PROXY_IDLE_MS))
			slot_close(w, e);
	}
}
