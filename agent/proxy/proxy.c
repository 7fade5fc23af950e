/* The proxy's life: configuration, the routes' port set, worker threads with
 * their listeners and timers, TLS context swaps, metrics. */
#define HC_LOG_MODULE "proxy"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "metrics/metrics.h"
#include "proxy/h2.h"
#include "proxy/proxy_int.h"

#include "hc_sockmap.skel.h"

#define DEFAULT_HEAD_TIMEOUT_MS 10000
#define DEFAULT_IDLE_TIMEOUT_MS 60000
#define DEFAULT_TUNNEL_IDLE_TIMEOUT_MS 3600000
#define DEFAULT_MAX_CONNS 10000
/* Per client address: 4x the benchmark's 256 connections from one address
 * and room for a NAT of a few hundred browsers (6 each), yet a tenth of a
 * port's default, so that one address cannot take a port's whole share. */
#define DEFAULT_MAX_CONNS_PER_IP 1024
/* Addresses the per-address table is made for when no total cap is set. */
#define DEFAULT_IP_CAPACITY 65536
#define LISTEN_BACKLOG 4096
/* TCP_DEFER_ACCEPT, seconds: the kernel wakes us only once the client's
 * first bytes are there (HTTP and TLS clients both speak first), saving a
 * wakeup per connection; a silent client is accepted anyway after about
 * this long (the SYN-ACK is sent once more), and its head timeout starts
 * then. Kept short so that the two waits add up to little. */
#define DEFER_ACCEPT_S 1
#define MAX_WORKERS 64
#define EVENTS_PER_WAIT 64

static const char *const forwarding_names[] = {
	[HC_PROXY_SPLICE] = "splice",
	[HC_PROXY_SOCKMAP] = "sockmap",
	[HC_PROXY_COPY] = "copy",
};

int hc_proxy_forwarding_parse(const char *name, enum hc_proxy_forwarding *out)
{
	for (size_t i = 0; i < sizeof(forwarding_names) / sizeof(forwarding_names[0]); i++) {
		if (strcmp(name, forwarding_names[i]) == 0) {
			*out = (enum hc_proxy_forwarding)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *hc_proxy_forwarding_name(enum hc_proxy_forwarding mode)
{
	return (unsigned)mode < 3 ? forwarding_names[mode] : "?";
}

uint64_t hc_proxy_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

unsigned hc_proxy_fds_per_conn(const struct hc_proxy *p)
{
	/* the two sockets in every mode: splice's pipes come from the workers'
	 * pools, which the budget leaves out (proxy.h) */
	(void)p;
	return HC_PROXY_FDS_PER_CONN;
}

/* ---- epoll interest ---- */

int hc_proxy_watch(struct hc_proxy_conn *c, bool backend_side, unsigned events)
{
	struct epoll_event ev = {.events = events};
	unsigned *have = backend_side ? &c->events_b : &c->events_c;
	int fd = backend_side ? c->bfd : c->cfd;

	if (fd < 0 || *have == events)
		return 0;
	/* a pooled socket stays registered under its slot (pool.c) */
	ev.data.ptr = !backend_side ? &c->hc : c->bslot ? &c->bslot->h : &c->hb;
	if (epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
		return -errno;
	*have = events;
	return 0;
}

/* ---- per-workload counters ---- */

struct hc_proxy_wl_stats *hc_proxy_workload(struct hc_proxy *p, const char *host)
{
	return hc_proxy_wlstats_get(p->workloads, host);
}

/* ---- TLS context ---- */

SSL_CTX *hc_proxy_tls_ref(struct hc_proxy *p)
{
	SSL_CTX *ctx;

	pthread_mutex_lock(&p->lock);
	ctx = p->tls_ctx;
	if (ctx)
		SSL_CTX_up_ref(ctx);
	pthread_mutex_unlock(&p->lock);
	return ctx;
}

int hc_proxy_reload_tls(struct hc_proxy *p, struct hc_err *err)
{
	SSL_CTX *ctx, *old;

	if (!p->tls_cert) {
		hc_err_set(err, -ENOENT, "no certificate configured");
		return -ENOENT;
	}
	ctx = hc_proxy_tls_ctx_new(p->tls_cert, p->tls_key, p->tickets, err);
	if (!ctx)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	old = p->tls_ctx;
	p->tls_ctx = ctx;
	pthread_mutex_unlock(&p->lock);
	SSL_CTX_free(old); /* connections hold their own references */
	return 0;
}

/* ---- listeners ---- */

static int listen_on(const struct hc_proxy *p, uint16_t port)
{
	struct sockaddr_storage ss = {0};
	socklen_t len;
	int one = 1, defer = DEFER_ACCEPT_S, fd;

	if (inet_pton(AF_INET, p->bind_host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		((struct sockaddr_in *)&ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
		len = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, p->bind_host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
		len = sizeof(struct sockaddr_in6);
	} else {
		return -EINVAL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Each worker has its own socket on the port; the kernel spreads new
	 * connections over them. Accepted sockets inherit TCP_NODELAY. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer)) < 0 ||
	    bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	return fd;
}

static void listener_close(struct hc_proxy_worker *w, size_t i)
{
	struct hc_proxy_listener *l = w->listeners[i];

	epoll_ctl(w->epfd, EPOLL_CTL_DEL, l->fd, NULL);
	close(l->fd);
	l->fd = -1;
	/* Connections accepted here may still point at it: keep the struct
	 * until they are gone; it is only unlinked from the table. Freed by
	 * the reap after the batch, which may hold an event of it. */
	if (l->conns == 0)
		hc_proxy_listener_retire(w, l);
	w->listeners[i] = w->listeners[--w->nlisteners];
}

/* Opens and closes this worker's listeners to match the proxy's port set. */
static void sync_listeners(struct hc_proxy_worker *w)
{
	struct hc_proxy *p = w->p;
	uint16_t ports[HC_PROXY_MAX_PORTS];
	size_t n;

	pthread_mutex_lock(&p->lock);
	n = p->nports;
	memcpy(ports, p->ports, n * sizeof(ports[0]));
	w->seen_gen = p->gen;
	pthread_mutex_unlock(&p->lock);

	for (size_t i = 0; i < w->nlisteners;) {
		bool wanted = false;

		for (size_t k = 0; k < n && !wanted; k++)
			wanted = ports[k] == w->listeners[i]->port;
		if (!wanted) {
			if (w->index == 0)
				hc_log(HC_LOG_INFO, "no route uses port %u any more: not listening",
				       w->listeners[i]->port);
			listener_close(w, i);
		} else {
			i++;
		}
	}
	for (size_t k = 0; k < n && w->nlisteners < HC_PROXY_MAX_PORTS; k++) {
		struct hc_proxy_listener *l;
		struct epoll_event ev = {.events = EPOLLIN};
		bool have = false;
		int fd;

		for (size_t i = 0; i < w->nlisteners && !have; i++)
			have = w->listeners[i]->port == ports[k];
		if (have)
			continue;
		fd = listen_on(p, ports[k]);
		if (fd < 0) {
			if (w->index == 0)
				hc_log(HC_LOG_WARN, "cannot listen on %s port %u: %s", p->bind_host,
				       ports[k], strerror(-fd));
			continue;
		}
		l = calloc(1, sizeof(*l));
		if (!l) {
			close(fd);
			continue;
		}
		l->h.kind = H_LISTENER;
		l->port = ports[k];
		l->fd = fd;
		ev.data.ptr = &l->h;
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(l);
			continue;
		}
		w->listeners[w->nlisteners++] = l;
		if (w->index == 0)
			hc_log(HC_LOG_INFO, "listening on %s port %u", p->bind_host, ports[k]);
	}
}

/* The drain's first step in this worker: no more accepting (a client
 * whose handshake is in a closed listener's queue gets a reset: it was
 * never answered), then every connection ends as soon as that loses
 * nothing. */
static void drain_worker(struct hc_proxy_worker *w)
{
	w->drain_begun = true;
	while (w->nlisteners)
		listener_close(w, 0);
	for (struct hc_proxy_conn *c = w->conns, *next; c; c = next) {
		next = c->next; /* c may close (and leave the list) */
		hc_proxy_conn_drain(c);
	}
}

/* ---- the timer wheel ---- */

static void wheel_unlink(struct hc_proxy_conn *c)
{
	if (!c->wpprev)
		return;
	*c->wpprev = c->wnext;
	if (c->wnext)
		c->wnext->wpprev = c->wpprev;
	c->wnext = NULL;
	c->wpprev = NULL;
}

void hc_proxy_timer_disarm(struct hc_proxy_conn *c)
{
	wheel_unlink(c);
}

void hc_proxy_timer_arm(struct hc_proxy_conn *c)
{
	struct hc_proxy_worker *w = c->w;
	uint64_t t = c->deadline_ms / HC_PROXY_TICK_MS;
	struct hc_proxy_conn **slot;

	if (!c->deadline_ms || c->state == C_CLOSED)
		return; /* a filed one without a deadline drops out when its slot comes */
	if (t <= w->wheel_tick)
		t = w->wheel_tick + 1; /* the slots up to wheel_tick are done */
	if (c->wpprev && c->wtick <= t)
		return; /* its slot comes first: refiled then */
	wheel_unlink(c);
	slot = &w->wheel[t % HC_PROXY_WHEEL];
	c->wnext = *slot;
	if (*slot)
		(*slot)->wpprev = &c->wnext;
	*slot = c;
	c->wpprev = slot;
	c->wtick = t;
}

/* Runs from the timer's event, in the middle of a batch: what it closes is
 * freed by the reap after the batch, since later events of the batch may
 * name those connections (reaping here freed them under those events).
 * Only the slots of the ticks since the last run are visited: a connection
 * is seen about once per its timeout, not four times a second (a scan of
 * every connection took 1-8 ms per tick for 10,000, warm to cold caches). */
static void expire_conns(struct hc_proxy_worker *w)
{
	uint64_t now = hc_proxy_now_ms(), until = now / HC_PROXY_TICK_MS;

	w->now_ms = now;
	if (until - w->wheel_tick > HC_PROXY_WHEEL)
		w->wheel_tick = until - HC_PROXY_WHEEL; /* a long stall: every slot once */
	while (w->wheel_tick < until) {
		struct hc_proxy_conn *c, *list;

		w->wheel_tick++;
		list = w->wheel[w->wheel_tick % HC_PROXY_WHEEL];
		w->wheel[w->wheel_tick % HC_PROXY_WHEEL] = NULL;
		if (list)
			list->wpprev = &list;
		while ((c = list)) {
			wheel_unlink(c);
			if (!c->deadline_ms)
				continue;
			if (now >= c->deadline_ms)
				hc_proxy_conn_expire(c);
			hc_proxy_timer_arm(c); /* refiled: a later or a new deadline */
		}
	}
}

static void *worker_main(void *arg)
{
	struct hc_proxy_worker *w = arg;
	struct hc_proxy *p = w->p;
	struct epoll_event evs[EVENTS_PER_WAIT];

	while (!atomic_load(&p->stopping)) {
		int n = epoll_wait(w->epfd, evs, EVENTS_PER_WAIT, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			hc_log(HC_LOG_ERROR, "worker %u: epoll_wait: %s", w->index, strerror(errno));
			break;
		}
		w->now_ms = hc_proxy_now_ms(); /* the vDSO: no syscall */
		for (int i = 0; i < n; i++) {
			struct hc_proxy_handle *h = evs[i].data.ptr;
			uint64_t v;

			switch (h->kind) {
			case H_WAKE:
				if (read(w->wakefd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					break;
				if (hc_proxy_draining(p)) {
					if (!w->drain_begun)
						drain_worker(w);
				} else if (w->seen_gen != p->gen) {
					sync_listeners(w);
				}
				break;
			case H_TIMER:
				if (read(w->timerfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					break;
				expire_conns(w);
				hc_proxy_idle_expire(w, false);
				break;
			case H_LISTENER:
				/* closed earlier in this batch: nothing to accept */
				if (((struct hc_proxy_listener *)h)->fd >= 0)
					hc_proxy_accept(w, (struct hc_proxy_listener *)h);
				break;
			case H_CLIENT:
			case H_BACKEND: {
				bool backend = h->kind == H_BACKEND;
				struct hc_proxy_conn *c =
					(struct hc_proxy_conn *)((char *)h -
								 (backend ? offsetof(struct hc_proxy_conn, hb)
									  : offsetof(struct hc_proxy_conn, hc)));

				hc_proxy_conn_event(c, backend, evs[i].events);
				break;
			}
			case H_IDLE:
				hc_proxy_idle_event(w, (struct hc_proxy_idle *)h, evs[i].events);
				break;
			case H_H2_UP:
				hc_proxy_h2_up_event(h, evs[i].events);
				break;
			}
		}
		hc_proxy_h2_flush(w);
		hc_proxy_conn_reap(w);
		hc_proxy_h2_reap(w);
	}
	while (w->conns)
		hc_proxy_conn_close(w->conns, false);
	hc_proxy_conn_reap(w);
	hc_proxy_h2_reap(w);
	hc_proxy_idle_expire(w, true); /* what those closes pooled too */
	while (w->nlisteners)
		listener_close(w, 0);
	hc_proxy_conn_reap(w);
	hc_proxy_pools_fini(w);
	hc_h2_bq_cache_release(); /* this thread's, which ends here */
	return NULL;
}

static void worker_fini(struct hc_proxy_worker *w)
{
	if (w->epfd >= 0)
		close(w->epfd);
	if (w->wakefd >= 0)
		close(w->wakefd);
	if (w->timerfd >= 0)
		close(w->timerfd);
}

static int worker_init(struct hc_proxy *p, struct hc_proxy_worker *w, unsigned index)
{
	struct itimerspec tick = {
		.it_interval = {.tv_nsec = HC_PROXY_TICK_MS * 1000000L},
		.it_value = {.tv_nsec = HC_PROXY_TICK_MS * 1000000L},
	};
	struct epoll_event ev = {.events = EPOLLIN};

	w->p = p;
	w->index = index;
	w->wheel_tick = hc_proxy_now_ms() / HC_PROXY_TICK_MS;
	w->wake_h.kind = H_WAKE;
	w->timer_h.kind = H_TIMER;
	for (unsigned i = 0; i < HC_PROXY_SLOTS; i++)
		w->idle[i].fd = -1;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	w->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (w->epfd < 0 || w->wakefd < 0 || w->timerfd < 0)
		return -errno;
	if (timerfd_settime(w->timerfd, 0, &tick, NULL) < 0)
		return -errno;
	ev.data.ptr = &w->wake_h;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &ev) < 0)
		return -errno;
	ev.data.ptr = &w->timer_h;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->timerfd, &ev) < 0)
		return -errno;
	return 0;
}

static void wake_workers(struct hc_proxy *p)
{
	uint64_t one = 1;

	/* no workers yet when hc_proxy_start fails early */
	for (unsigned i = 0; p->workers && i < p->nworkers; i++)
		if (p->workers[i].wakefd >= 0 && write(p->workers[i].wakefd, &one, sizeof(one)) < 0)
			hc_log(HC_LOG_DEBUG, "waking worker %u: %s", i, strerror(errno));
}

void hc_proxy_drain(struct hc_proxy *p)
{
	if (!p || atomic_exchange(&p->draining, true))
		return;
	wake_workers(p);
}

unsigned long hc_proxy_open_conns(struct hc_proxy *p)
{
	return p ? (unsigned long)atomic_load(&p->stats.active) : 0;
}

/* ---- the routes' ports ---- */

static int port_cmp(const void *a, const void *b)
{
	return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

void hc_proxy_refresh(struct hc_proxy *p)
{
	uint16_t ports[HC_PROXY_MAX_PORTS];
	struct hc_route_key key, *prev = NULL;
	size_t n = 0;
	bool changed;

	if (hc_proxy_draining(p))
		return; /* its listeners stay closed */

	while (bpf_map_get_next_key(p->routes_fd, prev, &key) == 0) {
		bool have = false;

		prev = &key;
		/* a lock and a hash beside the lookup's system call */
		hc_proxy_wlstats_mark(p->workloads, key.host);
		if (key.port == 0)
			continue; /* "any port": served wherever the proxy listens */
		for (size_t i = 0; i < n && !have; i++)
			have = ports[i] == key.port;
		if (!have && n < HC_PROXY_MAX_PORTS)
			ports[n++] = key.port;
	}
	/* counters of hosts routed no more (a stopped workload) go */
	hc_proxy_wlstats_sweep(p->workloads);
	qsort(ports, n, sizeof(ports[0]), port_cmp);
	hc_proxy_tickets_tick(p->tickets); /* here: this runs every second */
	pthread_mutex_lock(&p->lock);
	changed = n != p->nports || memcmp(ports, p->ports, n * sizeof(ports[0])) != 0;
	if (changed) {
		memcpy(p->ports, ports, n * sizeof(ports[0]));
		p->nports = n;
		p->gen++;
	}
	pthread_mutex_unlock(&p->lock);
	if (changed)
		wake_workers(p);
}

/* ---- start and stop ---- */

static int open_sockmap(struct hc_proxy *p, struct hc_err *err)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = p->pin_dir);
	int rc;

	p->sockmap = hc_sockmap__open_opts(&opts);
	if (!p->sockmap || hc_sockmap__load(p->sockmap)) {
		hc_err_set(err, -EINVAL, "cannot load the sockmap programs");
		return -EINVAL;
	}
	p->splice_fd = bpf_map__fd(p->sockmap->maps.hc_splice);
	p->splice_peer_fd = bpf_map__fd(p->sockmap->maps.hc_splice_peer);
	/* A parser as well as the verdict: without it the proxy's epoll is
	 * woken for every skb (datapath-facts.md). */
	rc = bpf_prog_attach(bpf_program__fd(p->sockmap->progs.hc_sk_parser), p->splice_fd,
			     BPF_SK_SKB_STREAM_PARSER, 0);
	if (!rc)
		rc = bpf_prog_attach(bpf_program__fd(p->sockmap->progs.hc_sk_verdict), p->splice_fd,
				     BPF_SK_SKB_STREAM_VERDICT, 0);
	if (rc) {
		hc_err_set(err, -errno, "cannot attach the sockmap programs: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static long online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? n : 1;
}

struct hc_proxy *hc_proxy_start(const struct hc_proxy_config *cfg, struct hc_err *err)
{
	struct hc_proxy *p = calloc(1, sizeof(*p));
	char path[512];
	unsigned started = 0;
	int rc;

	if (!p) {
		hc_err_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	p->cfg = *cfg;
	p->routes_fd = p->splice_fd = p->splice_peer_fd = -1;
	pthread_mutex_init(&p->lock, NULL);
	p->pin_dir = dup_or_null(cfg->pin_dir ? cfg->pin_dir : HC_DEFAULT_BPF_PIN_DIR);
	p->base_url = dup_or_null(cfg->base_url ? cfg->base_url : "");
	p->bind_host = dup_or_null(cfg->bind_host ? cfg->bind_host : "0.0.0.0");
	p->tls_cert = dup_or_null(cfg->tls_cert);
	p->tls_key = dup_or_null(cfg->tls_key);
	p->workloads = hc_proxy_wlstats_new(HC_PROXY_WORKLOADS_MAX);
	p->port_conns = calloc(65536, sizeof(*p->port_conns));
	if (!p->pin_dir || !p->base_url || !p->bind_host || !p->workloads || !p->port_conns ||
	    (cfg->tls_cert && !p->tls_cert) || (cfg->tls_key && !p->tls_key)) {
		hc_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	if (!p->cfg.head_timeout_ms)
		p->cfg.head_timeout_ms = DEFAULT_HEAD_TIMEOUT_MS;
	if (!p->cfg.max_conns)
		p->cfg.max_conns = DEFAULT_MAX_CONNS;
	if (!p->cfg.idle_timeout_ms)
		p->cfg.idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
	if (!p->cfg.tunnel_idle_timeout_ms)
		p->cfg.tunnel_idle_timeout_ms = DEFAULT_TUNNEL_IDLE_TIMEOUT_MS;
	if (!p->cfg.max_conns_per_ip)
		p->cfg.max_conns_per_ip = DEFAULT_MAX_CONNS_PER_IP;
	/* At most one tracked address per descriptor the proxy may hold. */
	p->per_ip = hc_proxy_iplimit_new(p->cfg.max_conns_per_ip,
					 p->cfg.max_fds ? p->cfg.max_fds : DEFAULT_IP_CAPACITY);
	p->tickets = hc_proxy_tickets_new(p->cfg.tls_ticket_rotate_s);
	if (!p->per_ip || !p->tickets) {
		hc_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	p->nworkers = cfg->workers ? cfg->workers : (unsigned)online_cpus();
	if (p->nworkers > MAX_WORKERS)
		p->nworkers = MAX_WORKERS;
	{
		struct in6_addr a6;
		struct in_addr a4;

		if (inet_pton(AF_INET, p->bind_host, &a4) != 1 &&
		    inet_pton(AF_INET6, p->bind_host, &a6) != 1) {
			hc_err_set(err, -EINVAL,
				   "invalid --proxy-bind-addr %s (an IPv4 or IPv6 address)",
				   p->bind_host);
			goto fail;
		}
	}
	if (!!p->tls_cert != !!p->tls_key) {
		hc_err_set(err, -EINVAL, "--cluster-tls-cert and --cluster-tls-key go together");
		goto fail;
	}
	if (p->tls_cert) {
		p->tls_ctx = hc_proxy_tls_ctx_new(p->tls_cert, p->tls_key, p->tickets, err);
		if (!p->tls_ctx)
			goto fail;
	}
	snprintf(path, sizeof(path), "%s/%s", p->pin_dir, HC_MAP_ROUTES);
	p->routes_fd = bpf_obj_get(path);
	if (p->routes_fd < 0) {
		hc_err_set(err, -errno, "proxy: cannot open %s: %s", path, strerror(errno));
		goto fail;
	}
	if (p->cfg.forwarding == HC_PROXY_SOCKMAP && open_sockmap(p, err) < 0)
		goto fail;
	p->workers = calloc(p->nworkers, sizeof(*p->workers));
	if (!p->workers) {
		hc_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	for (unsigned i = 0; i < p->nworkers; i++)
		p->workers[i].epfd = p->workers[i].wakefd = p->workers[i].timerfd = -1;
	for (unsigned i = 0; i < p->nworkers; i++) {
		rc = worker_init(p, &p->workers[i], i);
		if (rc) {
			hc_err_set(err, rc, "proxy worker: %s", strerror(-rc));
			goto fail;
		}
	}
	for (; started < p->nworkers; started++) {
		rc = pthread_create(&p->workers[started].thread, NULL, worker_main,
				    &p->workers[started]);
		if (rc) {
			hc_err_set(err, -rc, "cannot start a proxy worker: %s", strerror(rc));
			goto fail;
		}
	}
	hc_proxy_refresh(p);
	hc_log(HC_LOG_INFO, "proxy: %u workers, %s forwarding, TLS termination %s", p->nworkers,
	       hc_proxy_forwarding_name(p->cfg.forwarding), p->tls_ctx ? "on" : "off");
	return p;
fail:
	atomic_store(&p->stopping, true);
	wake_workers(p);
	for (unsigned i = 0; i < started; i++)
		pthread_join(p->workers[i].thread, NULL);
	p->nworkers = started; /* only those were initialised past fds */
	hc_proxy_stop(p);
	return NULL;
}

void hc_proxy_stop(struct hc_proxy *p)
{
	if (!p)
		return;
	if (!atomic_exchange(&p->stopping, true)) {
		wake_workers(p);
		for (unsigned i = 0; i < p->nworkers; i++)
			pthread_join(p->workers[i].thread, NULL);
	}
	for (unsigned i = 0; p->workers && i < p->nworkers; i++)
		worker_fini(&p->workers[i]);
	free(p->workers);
	if (p->sockmap) {
		/* Detach from the pinned map: the next proxy attaches its own. */
		if (p->splice_fd >= 0) {
			bpf_prog_detach2(bpf_program__fd(p->sockmap->progs.hc_sk_verdict), p->splice_fd,
					 BPF_SK_SKB_STREAM_VERDICT);
			bpf_prog_detach2(bpf_program__fd(p->sockmap->progs.hc_sk_parser), p->splice_fd,
					 BPF_SK_SKB_STREAM_PARSER);
		}
		hc_sockmap__destroy(p->sockmap);
	}
	if (p->routes_fd >= 0)
		close(p->routes_fd);
	SSL_CTX_free(p->tls_ctx);
	hc_proxy_tickets_free(p->tickets);
	hc_proxy_iplimit_free(p->per_ip);
	pthread_mutex_destroy(&p->lock);
	free(p->pin_dir);
	free(p->base_url);
	free(p->bind_host);
	free(p->tls_cert);
	free(p->tls_key);
	hc_proxy_wlstats_free(p->workloads);
	free(p->port_conns);
	free(p);
}

/* ---- metrics ---- */

static const char *const error_names[HC_PROXY_ERRORS] = {
	[HC_PROXY_ERR_NOT_FOUND] = "not_found",
	[HC_PROXY_ERR_BAD_GATEWAY] = "bad_gateway",
	[HC_PROXY_ERR_HEAD_TOO_LARGE] = "head_too_large",
	[HC_PROXY_ERR_HEAD_TIMEOUT] = "head_timeout",
	[HC_PROXY_ERR_BAD_REQUEST] = "bad_request",
	[HC_PROXY_ERR_TLS_ALERT] = "tls_alert",
	[HC_PROXY_ERR_OVER_LIMIT] = "over_limit",
	[HC_PROXY_ERR_TLS_HANDSHAKE] = "tls_handshake",
	[HC_PROXY_ERR_RESET] = "reset",
	[HC_PROXY_ERR_MISDIRECTED] = "misdirected",
	[HC_PROXY_ERR_IDLE_TIMEOUT] = "idle_timeout",
};

static const char *const limit_names[HC_PROXY_LIMITS] = {
	[HC_PROXY_LIMIT_PORT] = "port",
	[HC_PROXY_LIMIT_IP] = "ip",
	[HC_PROXY_LIMIT_TOTAL] = "total",
};

/* A family of one unlabelled sample. */
static void metric_one(struct hc_metrics_writer *mw, const char *name, const char *type,
		       const char *help, atomic_uint_fast64_t *value)
{
	hc_metrics_family(mw, name, type, help);
	hc_metrics_sample(mw, name, NULL, (double)atomic_load(value));
}

static void write_wl_connections(const struct hc_proxy_wl_stats *e, void *mw)
{
	const char *l[] = {"host", e->host, NULL};

	hc_metrics_sample(mw, "hypercore_proxy_workload_connections_total", l,
			  (double)atomic_load(&e->accepted));
}

static void write_wl_requests(const struct hc_proxy_wl_stats *e, void *mw)
{
	const char *l[] = {"host", e->host, NULL};

	hc_metrics_sample(mw, "hypercore_proxy_workload_requests_total", l,
			  (double)atomic_load(&e->requests));
}

static void write_wl_bytes(const struct hc_proxy_wl_stats *e, void *mw)
{
	const char *lu[] = {"host", e->host, "direction", "to_backend", NULL};
	const char *ld[] = {"host", e->host, "direction", "to_client", NULL};

	hc_metrics_sample(mw, "hypercore_proxy_workload_bytes_total", lu,
			  (double)atomic_load(&e->to_backend));
	hc_metrics_sample(mw, "hypercore_proxy_workload_bytes_total", ld,
			  (double)atomic_load(&e->to_client));
}

static void collect(struct hc_metrics_writer *mw, void *arg)
{
	struct hc_proxy *p = arg;
	struct hc_proxy_stats *s = &p->stats;
	const char *up[] = {"direction", "to_backend", NULL}, *down[] = {"direction", "to_client", NULL};

	metric_one(mw, "hypercore_proxy_connections_accepted_total", "counter",
		   "Connections the proxy accepted", &s->accepted);
	metric_one(mw, "hypercore_proxy_connections_active", "gauge", "Connections open now",
		   &s->active);
	hc_metrics_family(mw, "hypercore_proxy_connections_forwarded_total", "counter",
			  "Connections handed to the kernel (or the copy loop) after routing, by mode");
	for (unsigned m = 0; m < 3; m++) {
		const char *l[] = {"mode", forwarding_names[m], NULL};

		hc_metrics_sample(mw, "hypercore_proxy_connections_forwarded_total", l,
				  (double)atomic_load(&s->forwarded[m]));
	}
	hc_metrics_family(mw, "hypercore_proxy_tls_terminated_total", "counter",
			  "TLS connections the proxy terminated");
	hc_metrics_sample(mw, "hypercore_proxy_tls_terminated_total", NULL,
			  (double)atomic_load(&s->tls_terminated));
	hc_metrics_family(mw, "hypercore_proxy_tls_ticket_key_rotations_total", "counter",
			  "Times the TLS session ticket key was replaced (--proxy-tls-ticket-rotate-s)");
	hc_metrics_sample(mw, "hypercore_proxy_tls_ticket_key_rotations_total", NULL,
			  (double)hc_proxy_tickets_rotations(p->tickets));
	hc_metrics_family(mw, "hypercore_proxy_bytes_total", "counter",
			  "Bytes forwarded (not counted in sockmap mode, where the kernel moves them)");
	hc_metrics_sample(mw, "hypercore_proxy_bytes_total", up, (double)atomic_load(&s->to_backend));
	hc_metrics_sample(mw, "hypercore_proxy_bytes_total", down, (double)atomic_load(&s->to_client));
	hc_metrics_family(mw, "hypercore_proxy_errors_total", "counter",
			  "Connections answered with an error or cut, by kind");
	for (unsigned e = 0; e < HC_PROXY_ERRORS; e++) {
		const char *l[] = {"kind", error_names[e], NULL};

		hc_metrics_sample(mw, "hypercore_proxy_errors_total", l, (double)atomic_load(&s->errors[e]));
	}
	hc_metrics_family(mw, "hypercore_proxy_refused_total", "counter",
			  "Connections reset at accept because a limit was reached, by limit "
			  "(also counted in hypercore_proxy_errors_total{kind=\"over_limit\"})");
	for (unsigned k = 0; k < HC_PROXY_LIMITS; k++) {
		const char *l[] = {"limit", limit_names[k], NULL};

		hc_metrics_sample(mw, "hypercore_proxy_refused_total", l,
				  (double)atomic_load(&s->refused[k]));
	}
	hc_metrics_family(mw, "hypercore_proxy_backend_connections_total", "counter",
			  "Backend connections requests were sent on: opened, or taken idle from a "
			  "worker's pool");
	{
		const char *ln[] = {"kind", "new", NULL}, *lr[] = {"kind", "reused", NULL};

		hc_metrics_sample(mw, "hypercore_proxy_backend_connections_total", ln,
				  (double)atomic_load(&s->backend_new));
		hc_metrics_sample(mw, "hypercore_proxy_backend_connections_total", lr,
				  (double)atomic_load(&s->backend_reused));
	}
	metric_one(mw, "hypercore_proxy_backend_retries_total", "counter",
		   "Requests sent again on a new backend connection after a reused one closed "
		   "before answering",
		   &s->backend_retries);
	metric_one(mw, "hypercore_proxy_backend_idle_connections", "gauge",
		   "Idle keep-alive backend connections pooled now", &s->backend_idle);
	metric_one(mw, "hypercore_proxy_h2_connections_total", "counter",
		   "HTTP/2 client connections (ALPN h2, or h2c with prior knowledge)", &s->h2_conns);
	metric_one(mw, "hypercore_proxy_h2_streams_total", "counter",
		   "HTTP/2 streams (requests) clients opened", &s->h2_streams);
	hc_metrics_family(mw, "hypercore_proxy_h2_refused_total", "counter",
			  "HTTP/2 streams reset or connections ended by the proxy's limits, by kind");
	for (unsigned k = 0; k < HC_H2_REFUSALS; k++) {
		const char *l[] = {"kind", hc_h2_refusal_names[k], NULL};

		hc_metrics_sample(mw, "hypercore_proxy_h2_refused_total", l,
				  (double)atomic_load(&s->h2_refused[k]));
	}
	hc_metrics_family(mw, "hypercore_proxy_workload_connections_total", "counter",
			  "Connections routed to each route host (workload id or static host)");
	hc_proxy_wlstats_each(p->workloads, write_wl_connections, mw);
	hc_metrics_family(mw, "hypercore_proxy_workload_requests_total", "counter",
			  "HTTP requests forwarded for each route host (sockmap mode: the first "
			  "of each connection)");
	hc_proxy_wlstats_each(p->workloads, write_wl_requests, mw);
	hc_metrics_family(mw, "hypercore_proxy_workload_bytes_total", "counter",
			  "Bytes forwarded for each route host");
	hc_proxy_wlstats_each(p->workloads, write_wl_bytes, mw);
}

int hc_proxy_register_metrics(struct hc_proxy *p, struct hc_metrics *m)
{
	return hc_metrics_register(m, collect, p);
}
