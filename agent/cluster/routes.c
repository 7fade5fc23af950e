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

struct desired {
	struct hc_dp_route *routes;
	size_t nroutes, route_cap;
	struct hc_dp_service *services;
	size_t nservices, service_cap;
	bool oom;
};

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

static void add_route(struct desired *d, const char *id, uint32_t port,
		      const struct hc_ipaddr *to, uint32_t to_port, const char *node)
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
	/* the first owner wins: a workload two nodes claim stays where it was */
	for (size_t i = 0; i < d->nroutes; i++)
		if (memcmp(&d->routes[i].key, &r->key, sizeof(r->key)) == 0)
			return;
	r->val.backend = *to;
	r->val.port = (uint16_t)to_port;
	snprintf(r->val.node, sizeof(r->val.node), "%s", node);
	d->nroutes++;
}

static void add_service(struct desired *d, uint8_t proto, uint32_t port,
			const struct hc_ipaddr *to, uint32_t to_port)
{
	struct hc_dp_service *s;

	for (size_t i = 0; i < d->nservices; i++)
		if (d->services[i].key.port == port && d->services[i].key.proto == proto)
			return;
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

static void add_local(struct hc_cluster *c, struct desired *d, const struct local_wl *l,
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
		add_route(d, w->id, h, &ip, ctr, self);
	}
	for (size_t b = 0; b < w->n_bindings; b++) {
		const Cluster__Services__Api__PortBinding *pb = w->bindings[b];

		if (!hc_port_is_node_port(pb->host_port) && hc_port_is_node_port(pb->node_port) &&
		    pb->container_port && pb->container_port <= 65535)
			add_service(d, IPPROTO_TCP, pb->node_port, &ip, pb->container_port);
	}
}

static void add_peer(struct hc_cluster *c, struct desired *d, const struct peer *p)
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
				add_route(d, w->id, pb->host_port, &addr, pb->node_port, p->name);
		}
		if (w->n_bindings || !req)
			continue;
		for (size_t k = 0; k < req->n_ports; k++) {
			uint32_t h = req->ports[k]->key, ctr = req->ports[k]->value;

			if (h && h <= 65535 && ctr && ctr <= 65535 && !hc_port_is_node_port(h))
				add_route(d, w->id, h, &addr, ctr, p->name);
		}
	}
}

void hc_cluster_routes_sync(struct hc_cluster *c)
{
	const char *self = c->gossip ? hc_gossip_name(c->gossip) : c->node_id;
	struct desired d = { 0 };
	struct hc_dp_desired want;
	struct hc_dp_sync_report rep;
	int rc;

	if (!c->cfg.maps || c->closing)
		return;
	for (size_t i = 0; i < c->nlocal; i++)
		add_local(c, &d, &c->local[i], self);
	for (size_t i = 0; c->gossip && i < c->npeers; i++)
		if (!c->peers[i].stale)
			add_peer(c, &d, &c->peers[i]);
	if (d.oom) {
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
	free(d.routes);
	free(d.services);
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
