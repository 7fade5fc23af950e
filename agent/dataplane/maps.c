/* The pinned maps from userspace: opening, reading a whole map, static
 * entries and host addresses. The diff-based sync is in maps_sync.c, the
 * decoded snapshots in maps_snapshot.c. */
#define HC_LOG_MODULE "dataplane"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/dataplane_int.h"
#include "log/log.h"

/* ---- opening ---- */

struct map_slot {
	const char *name;
	size_t offset;
};

#define SLOT(field, name) {name, offsetof(struct hc_dpmaps, field)}
static const struct map_slot map_slots[] = {
	SLOT(routes, HC_MAP_ROUTES),	     SLOT(services, HC_MAP_SERVICES),
	SLOT(conntrack, HC_MAP_CONNTRACK),   SLOT(wl_stats, HC_MAP_WL_STATS),
	SLOT(workloads, HC_MAP_WORKLOADS),   SLOT(wl_rate, HC_MAP_WL_RATE),
	SLOT(host_addrs, HC_MAP_HOST_ADDRS), SLOT(config, HC_MAP_CONFIG),
	SLOT(drops, HC_MAP_DROPS),	     SLOT(members, HC_MAP_MEMBERS),
	SLOT(egress_allow, HC_MAP_EGRESS_ALLOW), SLOT(proxy_ports, HC_MAP_PROXY_PORTS),
	SLOT(wl_flows, HC_MAP_WL_FLOWS),
};
#undef SLOT

static int *slot_fd(struct hc_dpmaps *m, const struct map_slot *s)
{
	return (int *)((char *)m + s->offset);
}

int hc_dpmaps_init_from_pins(struct hc_dpmaps *m, const char *pin_dir, struct hc_err *err)
{
	char path[512];

	memset(m, 0, sizeof(*m));
	for (size_t i = 0; i < sizeof(map_slots) / sizeof(map_slots[0]); i++)
		*slot_fd(m, &map_slots[i]) = -1;
	for (size_t i = 0; i < sizeof(map_slots) / sizeof(map_slots[0]); i++) {
		int fd, rc;

		snprintf(path, sizeof(path), "%s/%s", pin_dir, map_slots[i].name);
		fd = bpf_obj_get(path);
		if (fd < 0) {
			rc = -errno;
			hc_dpmaps_fini(m);
			if (rc == -ENOENT)
				return hc_dp_not_pinned(err, pin_dir, map_slots[i].name);
			return hc_err_set(err, rc, "cannot open %s: %s", path, strerror(-rc));
		}
		*slot_fd(m, &map_slots[i]) = fd;
	}
	return 0;
}

void hc_dpmaps_fini(struct hc_dpmaps *m)
{
	hc_dp_mirror_fini(&m->routes_mirror);
	hc_dp_mirror_fini(&m->services_mirror);
	for (size_t i = 0; i < sizeof(map_slots) / sizeof(map_slots[0]); i++) {
		int *fd = slot_fd(m, &map_slots[i]);

		if (*fd >= 0)
			close(*fd);
		*fd = -1;
	}
}

struct hc_dpmaps *hc_dpmaps_open(const char *pin_dir, struct hc_err *err)
{
	struct hc_dpmaps *m = calloc(1, sizeof(*m));
	int rc;

	if (!m) {
		hc_err_set(err, -ENOMEM, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	rc = hc_dpmaps_init_from_pins(m, pin_dir ? pin_dir : HC_DEFAULT_BPF_PIN_DIR, err);
	if (rc) {
		free(m);
		errno = -rc;
		return NULL;
	}
	return m;
}

void hc_dpmaps_close(struct hc_dpmaps *m)
{
	if (!m)
		return;
	hc_dpmaps_fini(m);
	free(m);
}

/* ---- reading a whole hash map ---- */

void hc_dp_map_dump_fini(struct hc_dp_map_dump *d)
{
	free(d->keys);
	free(d->vals);
	memset(d, 0, sizeof(*d));
}

/* Batch lookups where the kernel has them; a get_next_key walk otherwise.
 * vsize is the value size as userspace sees it (per-CPU maps: times CPUs). */
int hc_dp_map_dump_all(int fd, size_t ksize, size_t vsize, struct hc_dp_map_dump *d)
{
	size_t cap = HC_DP_BATCH;
	__u64 in_batch = 0, out_batch = 0;
	bool first = true;
	int rc = 0;

	memset(d, 0, sizeof(*d));
	d->keys = malloc(cap * ksize);
	d->vals = malloc(cap * vsize);
	if (!d->keys || !d->vals) {
		hc_dp_map_dump_fini(d);
		return -ENOMEM;
	}
	for (;;) {
		__u32 count = HC_DP_BATCH;

		if (d->n + count > cap) {
			void *k, *v;

			cap *= 2;
			k = realloc(d->keys, cap * ksize);
			if (k)
				d->keys = k;
			v = k ? realloc(d->vals, cap * vsize) : NULL;
			if (v)
				d->vals = v;
			if (!k || !v) {
				hc_dp_map_dump_fini(d);
				return -ENOMEM;
			}
		}
		rc = bpf_map_lookup_batch(fd, first ? NULL : &in_batch, &out_batch,
					  (char *)d->keys + d->n * ksize,
					  (char *)d->vals + d->n * vsize, &count, NULL);
		if (rc < 0)
			rc = -errno;
		d->n += count;
		if (rc == -ENOENT)
			return 0; /* the end */
		if (rc) {
			hc_dp_map_dump_fini(d);
			return rc;
		}
		in_batch = out_batch;
		first = false;
	}
}

/* ---- static entries ---- */

/* Host names as the proxy will see them in Host headers and SNI: letters,
 * digits, '-', '.', '_' (workload ids are UUIDs), lower-cased. */
int hc_dp_ipaddr_parse(const char *text, struct hc_ipaddr *out)
{
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, text, &out->ip4) == 1) {
		out->family = HC_AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, text, out->ip6) == 1) {
		out->family = HC_AF_INET6;
		return 0;
	}
	return -EINVAL;
}

int hc_dp_route_key_init(struct hc_route_key *key, const char *host, uint16_t port)
{
	size_t len = host ? strlen(host) : 0;

	memset(key, 0, sizeof(*key));
	if (len == 0 || len >= sizeof(key->host))
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)host[i];

		if (!isalnum(c) && c != '-' && c != '.' && c != '_')
			return -EINVAL;
		key->host[i] = (char)tolower(c);
	}
	key->port = port;
	return 0;
}

static int bad_host(struct hc_err *err, const char *host)
{
	return hc_err_set(err, -EINVAL,
			  "invalid host %s%s%s: 1-%d characters of letters, digits, '-', '.', '_'",
			  host ? "\"" : "", host ? host : "(none)", host ? "\"" : "",
			  HC_ROUTE_HOST_MAX - 1);
}

int hc_dpmaps_route_add_static(struct hc_dpmaps *m, const char *host, uint16_t port,
			       const struct hc_ipaddr *backend, uint16_t backend_port,
			       uint16_t flags, struct hc_err *err)
{
	struct hc_route_key key;
	struct hc_route_val val = {0};

	if (hc_dp_route_key_init(&key, host, port))
		return bad_host(err, host);
	val.backend = *backend;
	val.port = backend_port;
	val.flags = HC_ROUTE_F_STATIC | (flags & HC_ROUTE_F_H2C);
	if (bpf_map_update_elem(m->routes, &key, &val, BPF_ANY) < 0)
		return hc_err_set(err, -errno, "cannot write %s: %s", HC_MAP_ROUTES, strerror(errno));
	hc_dpmaps_sync_proxy_ports(m); /* else the agent's next refresh does */
	return 0;
}

int hc_dpmaps_route_del_static(struct hc_dpmaps *m, const char *host, uint16_t port,
			       struct hc_err *err)
{
	struct hc_route_key key;
	struct hc_route_val val;

	if (hc_dp_route_key_init(&key, host, port))
		return bad_host(err, host);
	if (bpf_map_lookup_elem(m->routes, &key, &val) < 0)
		return hc_err_set(err, -errno, "no route for %s port %u", key.host, port);
	if (!(val.flags & HC_ROUTE_F_STATIC))
		return hc_err_set(err, -EPERM,
				  "the route for %s port %u belongs to the cluster, not a static route",
				  key.host, port);
	if (bpf_map_delete_elem(m->routes, &key) < 0 && errno != ENOENT)
		return hc_err_set(err, -errno, "cannot delete from %s: %s", HC_MAP_ROUTES,
				  strerror(errno));
	hc_dpmaps_sync_proxy_ports(m);
	return 0;
}

static bool backend_eq(const struct hc_backend *b, const struct hc_ipaddr *addr, uint16_t port)
{
	return b->port == port && b->addr.family == addr->family &&
	       memcmp(b->addr.ip6, addr->ip6, addr->family == HC_AF_INET ? 4 : 16) == 0;
}

int hc_dpmaps_service_add_static(struct hc_dpmaps *m, uint8_t proto, uint16_t node_port,
				 const struct hc_ipaddr *backend, uint16_t backend_port,
				 struct hc_err *err)
{
	struct hc_service_key key = {.port = node_port, .proto = proto};
	struct hc_service_val val;

	if (bpf_map_lookup_elem(m->services, &key, &val) < 0) {
		if (errno != ENOENT)
			return hc_err_set(err, -errno, "cannot read %s: %s", HC_MAP_SERVICES,
					  strerror(errno));
		memset(&val, 0, sizeof(val));
		val.flags = HC_SERVICE_F_STATIC;
	} else if (!(val.flags & HC_SERVICE_F_STATIC)) {
		return hc_err_set(err, -EPERM, "node port %u belongs to a cluster workload", node_port);
	}
	for (uint32_t i = 0; i < val.count; i++)
		if (backend_eq(&val.backends[i], backend, backend_port))
			return 0;
	if (val.count >= HC_SERVICE_MAX_BACKENDS)
		return hc_err_set(err, -ENOSPC, "node port %u already has %d backends", node_port,
				  HC_SERVICE_MAX_BACKENDS);
	val.backends[val.count].addr = *backend;
	val.backends[val.count].port = backend_port;
	val.count++;
	if (bpf_map_update_elem(m->services, &key, &val, BPF_ANY) < 0)
		return hc_err_set(err, -errno, "cannot write %s: %s", HC_MAP_SERVICES,
				  strerror(errno));
	return 0;
}

int hc_dpmaps_service_del_static(struct hc_dpmaps *m, uint8_t proto, uint16_t node_port,
				 const struct hc_ipaddr *backend, uint16_t backend_port,
				 struct hc_err *err)
{
	struct hc_service_key key = {.port = node_port, .proto = proto};
	struct hc_service_val val;
	uint32_t kept = 0;

	if (bpf_map_lookup_elem(m->services, &key, &val) < 0)
		return hc_err_set(err, -errno, "no service on node port %u", node_port);
	if (!(val.flags & HC_SERVICE_F_STATIC))
		return hc_err_set(err, -EPERM, "node port %u belongs to a cluster workload", node_port);
	if (backend) {
		for (uint32_t i = 0; i < val.count; i++)
			if (!backend_eq(&val.backends[i], backend, backend_port))
				val.backends[kept++] = val.backends[i];
		if (kept == val.count)
			return hc_err_set(err, -ENOENT, "node port %u has no such backend", node_port);
		memset(&val.backends[kept], 0, (val.count - kept) * sizeof(val.backends[0]));
		val.count = kept;
	}
	if (kept > 0) {
		if (bpf_map_update_elem(m->services, &key, &val, BPF_EXIST) < 0)
			return hc_err_set(err, -errno, "cannot write %s: %s", HC_MAP_SERVICES,
					  strerror(errno));
		return 0;
	}
	if (bpf_map_delete_elem(m->services, &key) < 0 && errno != ENOENT)
		return hc_err_set(err, -errno, "cannot delete from %s: %s", HC_MAP_SERVICES,
				  strerror(errno));
	return 0;
}

/* ---- host addresses ---- */

/* fe80::/10: the host side of every workload's veth has one of its own. */
static bool ip6_link_local(const struct hc_ipaddr *a)
{
	return a->family == HC_AF_INET6 && a->ip6[0] == 0xfe && (a->ip6[1] & 0xc0) == 0x80;
}

static bool addr_listed(const struct hc_ipaddr *list, size_t n, const struct hc_ipaddr *a)
{
	for (size_t i = 0; i < n; i++)
		if (memcmp(&list[i], a, sizeof(*a)) == 0)
			return true;
	return false;
}

/* What hc_host_addrs should hold, into want (HC_HOST_ADDRS_MAX entries):
 * each address once, the routable ones first, then IPv6 link-local ones
 * as room allows. The map is sized for a node's own addresses, not for the
 * link-local address each workload's veth adds (some 250 workloads would
 * fill it), and node ports come to the uplink's routable addresses.
 * -E2BIG when a routable address found no room. */
static int host_addrs_wanted(const struct hc_ipaddr *addrs, size_t n, struct hc_ipaddr *want,
			     size_t *k)
{
	int rc = 0;

	*k = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			if (ip6_link_local(&addrs[i]) != (pass == 1) || addr_listed(want, *k, &addrs[i]))
				continue;
			if (*k == HC_HOST_ADDRS_MAX) {
				rc = pass == 0 ? -E2BIG : rc;
				break;
			}
			want[(*k)++] = addrs[i];
		}
	}
	return rc;
}

int hc_dpmaps_set_host_addrs(struct hc_dpmaps *m, const struct hc_ipaddr *addrs, size_t n)
{
	struct hc_ipaddr stale[HC_HOST_ADDRS_MAX], want[HC_HOST_ADDRS_MAX], key;
	size_t n_stale = 0, n_want;
	__u8 one = 1;
	void *prev = NULL;
	int rc, local_rc;

	rc = host_addrs_wanted(addrs, n, want, &n_want);
	/* Collect what is no longer ours first: deleting during the walk
	 * would restart it. */
	while (n_stale < HC_HOST_ADDRS_MAX && bpf_map_get_next_key(m->host_addrs, prev, &key) == 0) {
		if (!addr_listed(want, n_want, &key))
			stale[n_stale++] = key;
		prev = &key;
	}
	for (size_t i = 0; i < n_stale; i++)
		if (bpf_map_delete_elem(m->host_addrs, &stale[i]) < 0 && errno != ENOENT)
			rc = rc ? rc : -errno;
	for (size_t i = 0; i < n_want; i++)
		if (bpf_map_update_elem(m->host_addrs, &want[i], &one, BPF_ANY) < 0)
			rc = rc ? rc : -errno;
	/* every address, whatever hc_host_addrs could take: this isolates */
	local_rc = hc_dp_members_set_flag(m, HC_MEMBER_F_LOCAL, addrs, n);
	return rc ? rc : local_rc;
}
