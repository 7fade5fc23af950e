/* Decoded snapshots of the pinned maps, for the CLI and metrics. */
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

/* ---- snapshots ---- */

static const char *const drop_reason_names[HC_DROP_REASONS] = {
	[HC_DROP_NONE] = "none",
	[HC_DROP_NO_BACKEND] = "no_backend",
	[HC_DROP_FIB] = "no_route",
	[HC_DROP_ISOLATION] = "isolation",
	[HC_DROP_RATE] = "rate_limit",
	[HC_DROP_CT_FULL] = "conntrack_full",
	[HC_DROP_MALFORMED] = "malformed",
	[HC_DROP_TOO_BIG] = "too_big",
	[HC_DROP_WL_MALFORMED] = "wl_malformed",
	[HC_DROP_WL_SPOOFED] = "wl_spoofed",
	[HC_DROP_WL_NOT_IP] = "wl_not_ip",
	[HC_DROP_WL_MEMBER] = "wl_member",
	[HC_DROP_WL_WORKLOAD] = "wl_workload",
	[HC_DROP_WL_LINK_LOCAL] = "wl_link_local",
	[HC_DROP_WL_METADATA] = "wl_metadata",
};

const char *hc_dp_drop_reason_name(unsigned int reason)
{
	if (reason >= HC_DROP_REASONS || !drop_reason_names[reason])
		return "unknown";
	return drop_reason_names[reason];
}

static int route_cmp(const void *a, const void *b)
{
	const struct hc_dp_route *x = a, *y = b;
	int c = strncmp(x->key.host, y->key.host, sizeof(x->key.host));

	return c ? c : (int)x->key.port - (int)y->key.port;
}

static int service_cmp(const void *a, const void *b)
{
	const struct hc_dp_service *x = a, *y = b;

	if (x->key.port != y->key.port)
		return (int)x->key.port - (int)y->key.port;
	return (int)x->key.proto - (int)y->key.proto;
}

static int workload_cmp(const void *a, const void *b)
{
	const struct hc_dp_workload_row *x = a, *y = b;
	int c = strncmp(x->wl.id, y->wl.id, sizeof(x->wl.id));

	return c ? c : (x->ifindex > y->ifindex) - (x->ifindex < y->ifindex);
}

/* Unpacks a dump of a hash map whose entries are (K, V) into an array of
 * struct { K key; V val; } with no padding between. */
static void *pair_up(const struct hc_dp_map_dump *d, size_t ksize, size_t vsize)
{
	char *out = malloc(d->n * (ksize + vsize) + 1);

	if (!out)
		return NULL;
	for (size_t i = 0; i < d->n; i++) {
		memcpy(out + i * (ksize + vsize), (char *)d->keys + i * ksize, ksize);
		memcpy(out + i * (ksize + vsize) + ksize, (char *)d->vals + i * vsize, vsize);
	}
	return out;
}

static int snapshot_workloads(struct hc_dpmaps *m, struct hc_dp_snapshot *snap)
{
	int ncpu = libbpf_num_possible_cpus();
	size_t stride = (sizeof(struct hc_wl_stats) + 7) & ~(size_t)7;
	struct hc_dp_map_dump stats, wls;
	int rc;

	if (ncpu <= 0)
		return ncpu < 0 ? ncpu : -EINVAL;
	rc = hc_dp_map_dump_all(m->wl_stats, sizeof(__u32), stride * ncpu, &stats);
	if (rc)
		return rc;
	rc = hc_dp_map_dump_all(m->workloads, sizeof(__u32), sizeof(struct hc_wl_info), &wls);
	if (rc) {
		hc_dp_map_dump_fini(&stats);
		return rc;
	}
	snap->workloads = calloc(wls.n + stats.n + 1, sizeof(*snap->workloads));
	if (!snap->workloads) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < wls.n; i++) {
		struct hc_dp_workload_row *row = &snap->workloads[snap->n_workloads++];

		row->ifindex = ((__u32 *)wls.keys)[i];
		row->wl = ((struct hc_wl_info *)wls.vals)[i];
	}
	for (size_t i = 0; i < stats.n; i++) {
		__u32 ifindex = ((__u32 *)stats.keys)[i];
		struct hc_dp_workload_row *row = NULL;
		struct hc_wl_stats *sum;

		for (size_t j = 0; j < snap->n_workloads && !row; j++)
			if (snap->workloads[j].ifindex == ifindex)
				row = &snap->workloads[j];
		if (!row) {
			row = &snap->workloads[snap->n_workloads++];
			row->ifindex = ifindex;
		}
		sum = &row->stats;
		for (int c = 0; c < ncpu; c++) {
			const struct hc_wl_stats *s =
				(const void *)((char *)stats.vals + (i * ncpu + c) * stride);

			sum->rx_packets += s->rx_packets;
			sum->rx_bytes += s->rx_bytes;
			sum->tx_packets += s->tx_packets;
			sum->tx_bytes += s->tx_bytes;
			sum->dropped_packets += s->dropped_packets;
			sum->dropped_bytes += s->dropped_bytes;
		}
	}
	qsort(snap->workloads, snap->n_workloads, sizeof(*snap->workloads), workload_cmp);
out:
	hc_dp_map_dump_fini(&stats);
	hc_dp_map_dump_fini(&wls);
	return rc;
}

static int snapshot_drops(struct hc_dpmaps *m, struct hc_dp_snapshot *snap)
{
	int ncpu = libbpf_num_possible_cpus();
	__u64 *vals;

	if (ncpu <= 0)
		return ncpu < 0 ? ncpu : -EINVAL;
	vals = calloc(ncpu, sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	for (__u32 r = 0; r < HC_DROP_REASONS; r++) {
		if (bpf_map_lookup_elem(m->drops, &r, vals) < 0)
			continue;
		for (int c = 0; c < ncpu; c++)
			snap->drops[r] += vals[c];
	}
	free(vals);
	return 0;
}

static int count_entries(int fd, size_t ksize, size_t *n)
{
	char key[256], next[256];
	void *prev = NULL;

	*n = 0;
	if (ksize > sizeof(key))
		return -EINVAL;
	while (bpf_map_get_next_key(fd, prev, next) == 0) {
		memcpy(key, next, ksize);
		prev = key;
		(*n)++;
	}
	return 0;
}

/* The settings, uplink and mode included; zeros when nothing was written
 * (an agent of an older layout wrote fewer bytes: the rest stay zero). */
static void snapshot_config(struct hc_dpmaps *m, struct hc_dp_snapshot *snap)
{
	__u32 zero = 0;

	if (bpf_map_lookup_elem(m->config, &zero, &snap->config) < 0)
		memset(&snap->config, 0, sizeof(snap->config));
}

/* The egress policy's maps: hc_members by flag, hc_wl_flows' size, the
 * allow rules, the proxy's ports. */
static int snapshot_egress(struct hc_dpmaps *m, struct hc_dp_snapshot *snap)
{
	struct hc_egress_key key, *prev = NULL;
	struct hc_port_bitmap *ports;
	struct hc_dp_map_dump d;
	__u32 zero = 0;
	int rc;

	rc = hc_dp_map_dump_all(m->members, sizeof(struct hc_ipaddr), sizeof(__u8), &d);
	if (rc)
		return rc;
	for (size_t i = 0; i < d.n; i++) {
		__u8 f = ((const __u8 *)d.vals)[i];

		snap->member_addrs += (f & HC_MEMBER_F_PEER) != 0;
		snap->local_addrs += (f & HC_MEMBER_F_LOCAL) != 0;
	}
	hc_dp_map_dump_fini(&d);
	rc = count_entries(m->wl_flows, sizeof(struct hc_ct_key), &snap->wl_flows);
	if (rc)
		return rc;
	/* An LPM trie has no batch lookups: key by key. */
	snap->allow = calloc(HC_EGRESS_ALLOW_MAX, sizeof(*snap->allow));
	ports = calloc(1, sizeof(*ports));
	snap->proxy_ports = calloc(65536, sizeof(*snap->proxy_ports));
	if (!snap->allow || !ports || !snap->proxy_ports) {
		free(ports);
		return -ENOMEM;
	}
	while (snap->n_allow < HC_EGRESS_ALLOW_MAX &&
	       bpf_map_get_next_key(m->egress_allow, prev, &key) == 0) {
		struct hc_dp_allow *a = &snap->allow[snap->n_allow];

		a->key = key;
		prev = &a->key;
		if (bpf_map_lookup_elem(m->egress_allow, &key, &a->val) == 0)
			snap->n_allow++;
	}
	if (bpf_map_lookup_elem(m->proxy_ports, &zero, ports) == 0)
		for (unsigned p = 1; p < 65536; p++)
			if ((ports->bits[p / 64] >> (p % 64)) & 1)
				snap->proxy_ports[snap->n_proxy_ports++] = (uint16_t)p;
	free(ports);
	return 0;
}

int hc_dpmaps_workload_rows(struct hc_dpmaps *m, struct hc_dp_workload_row **rows, size_t *n)
{
	struct hc_dp_snapshot snap;
	int rc;

	memset(&snap, 0, sizeof(snap));
	*rows = NULL;
	*n = 0;
	rc = snapshot_workloads(m, &snap);
	if (rc) {
		free(snap.workloads);
		return rc;
	}
	*rows = snap.workloads;
	*n = snap.n_workloads;
	return 0;
}

int hc_dpmaps_snapshot(struct hc_dpmaps *m, struct hc_dp_snapshot *snap)
{
	struct hc_dp_map_dump d;
	int rc;

	memset(snap, 0, sizeof(*snap));
	rc = hc_dp_map_dump_all(m->routes, sizeof(struct hc_route_key), sizeof(struct hc_route_val), &d);
	if (rc)
		goto fail;
	snap->routes = pair_up(&d, sizeof(struct hc_route_key), sizeof(struct hc_route_val));
	snap->n_routes = d.n;
	hc_dp_map_dump_fini(&d);
	if (!snap->routes) {
		rc = -ENOMEM;
		goto fail;
	}
	qsort(snap->routes, snap->n_routes, sizeof(*snap->routes), route_cmp);

	rc = hc_dp_map_dump_all(m->services, sizeof(struct hc_service_key), sizeof(struct hc_service_val),
				&d);
	if (rc)
		goto fail;
	snap->services = pair_up(&d, sizeof(struct hc_service_key), sizeof(struct hc_service_val));
	snap->n_services = d.n;
	hc_dp_map_dump_fini(&d);
	if (!snap->services) {
		rc = -ENOMEM;
		goto fail;
	}
	qsort(snap->services, snap->n_services, sizeof(*snap->services), service_cmp);

	rc = snapshot_workloads(m, snap);
	if (!rc)
		rc = snapshot_drops(m, snap);
	if (!rc)
		rc = count_entries(m->conntrack, sizeof(struct hc_ct_key), &snap->conntrack_entries);
	if (!rc)
		rc = snapshot_egress(m, snap);
	if (rc)
		goto fail;
	snapshot_config(m, snap);
	return 0;
fail:
	hc_dp_snapshot_fini(snap);
	return rc;
}

void hc_dp_snapshot_fini(struct hc_dp_snapshot *snap)
{
	free(snap->routes);
	free(snap->services);
	free(snap->workloads);
	free(snap->allow);
	free(snap->proxy_ports);
	memset(snap, 0, sizeof(*snap));
}
