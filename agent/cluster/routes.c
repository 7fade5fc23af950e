/*
 * Every workload in the cluster as the data plane's desired entries, synced
 * by diff on every change:
 *  - a local workload's L7 port H -> hc_routes (id, H) -> container IP:C,
 *    and its allocated node port N -> hc_services (tcp, N) -> IP:C, the way
 *    other nodes' proxies reach it;
 *  - a local port H in the node-port range -> hc_services (tcp and udp, H);
 *  - a remote workload's L7 port H -> hc_routes (id, H) -> the owner's
 *    address and the node port it announced (upstream peers, which announce
 *    none, are reached at their address and the container port, as upstream
 *    itself routes).
 * Node ports are served by the owner only: XDP DNATs to local workloads.
 * And every member's address -> hc_members, which TC keeps workloads off
 * (but for the proxy's, node and DNS ports).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HC_LOG_MODULE "cluster"
#include "cluster/cluster_int.h"
#include "dataplane/dataplane.h"
#include "log/log.h"

static bool grow(void **arr, size_t *cap, size_t n, size_t size)
{
	void *p;
	size_t want;

	if (n < *cap)
		return true;
	want = *cap ? 2 * *cap : 64;
	p = realloc(*arr, want * size);
	if (!p)
		return false;
	*arr = p;
	*cap = want;
	return true;
}

/* Whether the request marks host port h /h2c. */
static bool h2c_port(const hc_pb_spawn *req, uint32_t h)
{
	for (size_t i = 0; req && i < req->n_h2c_ports; i++)
		if (req->h2c_ports[i] == h)
			return true;
	return false;
}

/* flags: HC_ROUTE_F_H2C or 0. */
static void add_route(struct hc_cluster_desired *d, const char *id, uint32_t port,
		      const struct hc_ipaddr *to, uint32_t to_port, const char *node, uint16_t flags)
{
	struct hc_dp_route *r;

	if (!grow((void **)&d->routes, &d->route_cap, d->nroutes, sizeof(*r))) {
		d->oom = true;
		return;
	}
	r = &d->routes[d->nroutes];
	memset(r, 0, sizeof(*r));
	if (hc_dp_route_key_init(&r->key, id, (uint16_t)port) < 0)
		return;
	r->val.backend = *to;
	r->val.port = (uint16_t)to_port;
	r->val.flags = flags;
	snprintf(r->val.node, sizeof(r->val.node), "%s", node);
	d->nroutes++;
}

static void add_service(struct hc_cluster_desired *d, uint8_t proto, uint32_t port,
			const struct hc_ipaddr *to, uint32_t to_port)
{
	struct hc_dp_service *s;

	if (!grow((void **)&d->services, &d->service_cap, d->nservices, sizeof(*s))) {
		d->oom = true;
		return;
	}
	s = &d->services[d->nservices++];
	memset(s, 0, sizeof(*s));
	s->key.port = (uint16_t)port;
	s->key.proto = proto;
	s->val.count = 1;
	s->val.backends[0].addr = *to;
	s->val.backends[0].port = (uint16_t)to_port;
}

static void add_local(struct hc_cluster *c, struct hc_cluster_desired *d, const struct local_wl *l,
		      const char *self)
{
	const hc_pb_workload *w = l->state;
	const hc_pb_spawn *req = w->source_request;
	struct hc_ipaddr ip;

	if (l->pending || !l->ip[0] || !req || hc_dp_ipaddr_parse(l->ip, &ip) < 0)
		return;
	for (size_t p = 0; p < req->n_ports; p++) {
		uint32_t h = req->ports[p]->key, ctr = req->ports[p]->value;

		if (!h || h > 65535 || !ctr || ctr > 65535)
			continue;
		if (hc_port_is_node_port(h)) {
			add_service(d, IPPROTO_TCP, h, &ip, ctr);
			add_service(d, IPPROTO_UDP, h, &ip, ctr);
			continue;
		}
		add_route(d, w->id, h, &ip, ctr, self, h2c_port(req, h) ? HC_ROUTE_F_H2C : 0);
	}
	for (size_t b = 0; b < w->n_bindings; b++) {
		const Cluster__Services__Api__PortBinding *pb = w->bindings[b];

		if (!hc_port_is_node_port(pb->host_port) && hc_port_is_node_port(pb->node_port) &&
		    pb->container_port && pb->container_port <= 65535)
			add_service(d, IPPROTO_TCP, pb->node_port, &ip, pb->container_port);
	}
}

static void add_peer(struct hc_cluster *c, struct hc_cluster_desired *d, const struct peer *p)
{
	struct hc_ipaddr addr;

	if (!(p->node_addr && *p->node_addr && hc_dp_ipaddr_parse(p->node_addr, &addr) == 0) &&
	    hc_cluster_member_ip(c, p->name, &addr) < 0)
		return;
	for (size_t i = 0; i < p->nworkloads; i++) {
		const hc_pb_workload *w = p->workloads[i];
		const hc_pb_spawn *req = w->source_request;

		for (size_t b = 0; b < w->n_bindings; b++) {
			const Cluster__Services__Api__PortBinding *pb = w->bindings[b];

			if (pb->host_port && pb->host_port <= 65535 &&
			    !hc_port_is_node_port(pb->host_port) && hc_port_is_node_port(pb->node_port))
				add_route(d, w->id, pb->host_port, &addr, pb->node_port, p->name,
					  pb->h2c ? HC_ROUTE_F_H2C : 0);
		}
		if (w->n_bindings || !req)
			continue;
		for (size_t k = 0; k < req->n_ports; k++) {
			uint32_t h = req->ports[k]->key, ctr = req->ports[k]->value;

			if (h && h <= 65535 && ctr && ctr <= 65535 && !hc_port_is_node_port(h))
				add_route(d, w->id, h, &addr, ctr, p->name,
					  h2c_port(req, h) ? HC_ROUTE_F_H2C : 0);
		}
	}
}

/*
 * Duplicate keys: the first one added wins (a workload two nodes claim
 * stays where it was; local workloads come first). Sorting positions by
 * (key, position) finds them in O(n log n) whatever the keys (a peer's
 * state may hold 100,000 workloads, and a hash of keys from the network
 * could be made to collide); the survivors keep their order.
 */
struct dedup {
	const char *base;
	size_t stride, ksize;
};

static int pos_cmp(const void *a, const void *b, void *arg)
{
	const struct dedup *dd = arg;
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	int r = memcmp(dd->base + x * dd->stride, dd->base + y * dd->stride, dd->ksize);

	return r ? r : (x > y) - (x < y);
}

/* Keeps the first of each key among n entries of stride bytes. Returns
 * the count kept, or -ENOMEM (entries untouched). */
static ssize_t dedup_first(void *entries, size_t n, size_t stride, size_t ksize)
{
	struct dedup dd = { entries, stride, ksize };
	uint32_t *pos = malloc((n ? n : 1) * sizeof(*pos));
	unsigned char *drop = calloc(n ? n : 1, 1);
	size_t kept = 0;

	if (!pos || !drop || n > UINT32_MAX) {
		free(pos);
		free(drop);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		pos[i] = (uint32_t)i;
	qsort_r(pos, n, sizeof(*pos), pos_cmp, &dd);
	for (size_t i = 1; i < n; i++)
		if (memcmp(dd.base + pos[i] * stride, dd.base + pos[i - 1] * stride, ksize) == 0)
			drop[pos[i]] = 1;
	for (size_t i = 0; i < n; i++) {
		if (drop[i])
			continue;
		if (kept != i)
			memcpy((char *)entries + kept * stride, (char *)entries + i * stride, stride);
		kept++;
	}
	free(pos);
	free(drop);
	return (ssize_t)kept;
}

int hc_cluster_routes_build(struct hc_cluster *c, struct hc_cluster_desired *d)
{
	const char *self = c->gossip ? hc_gossip_name(c->gossip) : c->node_id;
	ssize_t n;

	memset(d, 0, sizeof(*d));
	for (size_t i = 0; i < c->nlocal; i++)
		add_local(c, d, &c->local[i], self);
	for (size_t i = 0; i < c->npeers; i++)
		if (!c->peers[i].stale)
			add_peer(c, d, &c->peers[i]);
	for (size_t i = 0; i < c->ncarried; i++) { /* after the states: they win */
		if (!grow((void **)&d->routes, &d->route_cap, d->nroutes, sizeof(*d->routes))) {
			d->oom = true;
			break;
		}
		d->routes[d->nroutes++] = c->carried[i];
	}
	if (d->oom)
		return -ENOMEM;
	n = dedup_first(d->routes, d->nroutes, sizeof(*d->routes), sizeof(d->routes->key));
	if (n < 0)
		return (int)n;
	d->nroutes = (size_t)n;
	n = dedup_first(d->services, d->nservices, sizeof(*d->services),
			sizeof(d->services->key));
	if (n < 0)
		return (int)n;
	d->nservices = (size_t)n;
	return 0;
}

void hc_cluster_desired_fini(struct hc_cluster_desired *d)
{
	free(d->routes);
	free(d->services);
	memset(d, 0, sizeof(*d));
}

/*
 * A restarted agent also finds the routes to the other nodes' workloads,
 * and knows none of their states until gossip has joined and each state is
 * pulled: a sync in between (the first listing of our own workloads makes
 * one) deleted every such route, and the next state put it back, 5-10 ms
 * later on this machine, longer on a slow link: requests through this node
 * to those workloads failed meanwhile. So each node's routes are carried
 * as the last run left them until its state is in (it then says what is
 * true), gossip says it failed or left (its routes would go anyway), or
 * CARRY_MS passes (a node that sends no state).
 */
#define CARRY_MS 10000

static int carried_cmp(const void *a, const void *b)
{
	const struct hc_dp_route *x = a, *y = b;

	return strncmp(x->val.node, y->val.node, sizeof(x->val.node));
}

void hc_cluster_routes_carry(struct hc_cluster *c)
{
	struct hc_dp_route *r = NULL;
	size_t n = 0;
	int rc;

	if (!c->cfg.maps)
		return;
	rc = hc_dpmaps_cluster_routes(c->cfg.maps, &r, &n);
	if (rc) {
		hc_log(HC_LOG_WARN, "the last run's routes not read (the first sync replaces them): "
				    "%s", strerror(-rc));
		return;
	}
	hc_cluster_routes_carry_take(c, r, n);
}

void hc_cluster_routes_carry_take(struct hc_cluster *c, struct hc_dp_route *r, size_t n)
{
	const char *self = c->gossip ? hc_gossip_name(c->gossip) : c->node_id;
	size_t k = 0, nodes = 0;

	hc_cluster_routes_carry_fini(c);
	for (size_t i = 0; i < n; i++) {
		r[i].val.node[sizeof(r[i].val.node) - 1] = '\0';
		if (r[i].val.node[0] && strcmp(r[i].val.node, self) != 0)
			r[k++] = r[i];
	}
	if (!k) {
		free(r);
		return;
	}
	qsort(r, k, sizeof(*r), carried_cmp);
	for (size_t i = 0; i < k; i++)
		nodes += !i || carried_cmp(&r[i], &r[i - 1]) != 0;
	c->carried = r;
	c->ncarried = k;
	c->carry_until_ms = hc_loop_now_ms(c->loop) + CARRY_MS;
	hc_log(HC_LOG_INFO, "keeping the last run's %zu routes to %zu other nodes' workloads "
			    "until their states are in (%d s at most)", k, nodes, CARRY_MS / 1000);
}

void hc_cluster_routes_carry_fini(struct hc_cluster *c)
{
	free(c->carried);
	c->carried = NULL;
	c->ncarried = 0;
	c->carry_until_ms = 0;
}

/* Whether node's carried routes stay: no state of it yet, and gossip does
 * not know it as failed or gone (an unknown member counts as alive: gossip
 * may not have joined yet). */
static bool carry_node(struct hc_cluster *c, const char *node,
		       const struct hc_gossip_member *ms, size_t nm)
{
	if (hc_cluster_state_peer(c, node))
		return false;
	for (size_t i = 0; i < nm; i++)
		if (strcmp(ms[i].name, node) == 0)
			return ms[i].status == HC_GOSSIP_ALIVE;
	return true;
}

void hc_cluster_routes_carry_prune(struct hc_cluster *c)
{
	struct hc_gossip_member *ms;
	size_t nm = 0, k = 0;

	if (!c->ncarried)
		return;
	ms = hc_cluster_members(c, &nm);
	for (size_t i = 0, j; i < c->ncarried; i = j) {
		bool keep = carry_node(c, c->carried[i].val.node, ms, ms ? nm : 0);

		for (j = i; j < c->ncarried && carried_cmp(&c->carried[j], &c->carried[i]) == 0;
		     j++)
			if (keep)
				c->carried[k++] = c->carried[j];
	}
	hc_gossip_members_free(ms, nm);
	c->ncarried = k;
	if (!k) {
		hc_log(HC_LOG_INFO, "every node's state is in: no route of the last run carried");
		hc_cluster_routes_carry_fini(c);
	}
}

void hc_cluster_routes_sync(struct hc_cluster *c)
{
	struct hc_cluster_desired d;
	struct hc_dp_desired want;
	struct hc_dp_sync_report rep;
	int rc;

	if (!c->cfg.maps || c->closing || c->maps_hold_until_ms)
		return;
	hc_cluster_routes_carry_prune(c);
	if (hc_cluster_routes_build(c, &d) < 0) {
		c->map_sync_errors++;
		hc_log(HC_LOG_WARN, "map sync skipped: out of memory");
		goto out;
	}
	want = (struct hc_dp_desired){ .routes = d.routes, .n_routes = d.nroutes,
				       .services = d.services, .n_services = d.nservices };
	rc = hc_dpmaps_sync(c->cfg.maps, &want, &rep);
	c->map_syncs++;
	if (rc) {
		c->map_sync_errors++;
		hc_log(HC_LOG_WARN, "map sync failed: %s", strerror(-rc));
	} else if (rep.routes.added + rep.routes.updated + rep.routes.deleted +
		   rep.services.added + rep.services.updated + rep.services.deleted) {
		hc_log(HC_LOG_DEBUG,
		       "map sync: routes +%zu ~%zu -%zu, node ports +%zu ~%zu -%zu",
		       rep.routes.added, rep.routes.updated, rep.routes.deleted, rep.services.added,
		       rep.services.updated, rep.services.deleted);
		if (c->cfg.on_routes)
			c->cfg.on_routes(c->cfg.notify_arg);
	}
out:
	hc_cluster_desired_fini(&d);
}

/*
 * A restarted agent finds the maps as its predecessor left them: its own
 * workloads' routes and node ports, which the other nodes' proxies forward
 * to, and the routes to every other node's. Until the first listing of its
 * workloads is in, c->local is empty, and a sync then (a peer's state came
 * first) deleted those node ports until the listing came: every node's
 * requests to this node's workloads failed meanwhile, a millisecond or, with
 * containerd slow to answer, seconds (tests/chaos/upgrade.py). So the maps
 * stay as they are until then. The bound is for a containerd that does not
 * answer at all: its workloads' entries go after it, as before.
 */
#define MAPS_HOLD_MS 10000

void hc_cluster_routes_hold(struct hc_cluster *c)
{
	c->maps_hold_until_ms = hc_loop_now_ms(c->loop) + MAPS_HOLD_MS;
}

void hc_cluster_routes_release(struct hc_cluster *c, bool listed)
{
	if (!c->maps_hold_until_ms)
		return;
	c->maps_hold_until_ms = 0;
	if (!listed)
		hc_log(HC_LOG_WARN, "our workloads are not listed %d s after start: syncing "
				    "the maps without them", MAPS_HOLD_MS / 1000);
	hc_cluster_routes_sync(c);
}

void hc_cluster_routes_hold_check(struct hc_cluster *c)
{
	uint64_t now = hc_loop_now_ms(c->loop);

	if (c->maps_hold_until_ms && now >= c->maps_hold_until_ms)
		hc_cluster_routes_release(c, false);
	if (c->ncarried && now >= c->carry_until_ms) {
		hc_log(HC_LOG_WARN, "no state %d s after start from every node the last run routed "
				    "to: its %zu routes left go", CARRY_MS / 1000, c->ncarried);
		hc_cluster_routes_carry_fini(c);
		hc_cluster_routes_sync(c);
	}
}

int hc_cluster_addr_ip(const char *hostport, struct hc_ipaddr *out)
{
	const char *a = hostport; /* "ip:port" or "[ip6]:port" */
	const char *end = a[0] == '[' ? strchr(a, ']') : strrchr(a, ':');
	char host[64];

	if (!end)
		return -EINVAL;
	if (a[0] == '[')
		a++;
	snprintf(host, sizeof(host), "%.*s", (int)(end - a), a);
	return hc_dp_ipaddr_parse(host, out);
}

/* Members in any state count: a failed node may come back, and a left one
 * stays in the list until reaped. Our advertise address is our member's. */
void hc_cluster_members_sync(struct hc_cluster *c)
{
	struct hc_gossip_member *ms;
	struct hc_ipaddr *addrs;
	size_t n = 0, k = 0;
	int rc = -ENOMEM;

	if (!c->cfg.maps || c->closing)
		return;
	ms = hc_cluster_members(c, &n);
	addrs = calloc(n + 1, sizeof(*addrs));
	if (!ms || !addrs)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (hc_cluster_addr_ip(ms[i].addr, &addrs[k]) == 0)
			k++;
	rc = hc_dpmaps_set_members(c->cfg.maps, addrs, k);
out:
	if (rc)
		hc_log(HC_LOG_WARN, "member addresses not synced (retrying): %s", strerror(-rc));
	c->members_sync_due = rc != 0; /* housekeeping retries */
	free(addrs);
	hc_gossip_members_free(ms, n);
}
