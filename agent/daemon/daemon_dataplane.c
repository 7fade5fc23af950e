/* The agent's use of the data plane (daemon_dataplane_*): start, periodic refresh, local
 * workloads -> TC attachment, metrics. The maps' routes and node ports are
 * the cluster's (agent/cluster), which knows every node's workloads. */
#define HC_LOG_MODULE "dataplane"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hypercore/defaults.h>

#include "daemon/daemon_int.h"
#include "dataplane/dataplane.h"
#include "log/log.h"
#include "loop/loop.h"
#include "metrics/metrics.h"

#define REFRESH_MS 2000

/*
 * Threads: the loop thread refreshes and attaches the running set; the
 * cluster's job threads attach each new sandbox before its container starts
 * (hc_daemon_dataplane_on_sandbox, called inside hc_runtime_spawn). The
 * loader's calls are plain bpf(2) and netlink requests on sockets of their
 * own, but hc_dataplane keeps no lock, so `lock` serializes every use of dp
 * here: an attach holds it for a few milliseconds. Done on the job thread
 * itself rather than handed to the loop thread because the spawn must wait
 * for the outcome, and a loop that is stopping would never answer.
 */
struct daemon_dataplane {
	struct hc_loop *loop;
	struct hc_metrics *metrics;
	pthread_mutex_t lock;
	struct hc_dataplane *dp;
	uint64_t refresh_timer;
	/* the local workloads last attached, to detach the ones that go */
	struct hc_runtime_running *attached;
	size_t nattached;
};

static int parse_subnet(const char *text, struct hc_ipaddr *net, uint8_t *prefix)
{
	char buf[64], *slash;
	unsigned long len;
	char *end;

	if (!text) {
		net->family = HC_AF_INET;
		net->ip4 = htonl(HC_WORKLOAD_NET);
		*prefix = HC_WORKLOAD_PREFIX;
		return 0;
	}
	if (snprintf(buf, sizeof(buf), "%s", text) >= (int)sizeof(buf))
		return -EINVAL;
	slash = strchr(buf, '/');
	if (!slash)
		return -EINVAL;
	*slash = '\0';
	errno = 0;
	len = strtoul(slash + 1, &end, 10);
	if (errno || *end || end == slash + 1 || len > 32 || inet_pton(AF_INET, buf, &net->ip4) != 1)
		return -EINVAL;
	net->family = HC_AF_INET;
	*prefix = (uint8_t)len;
	return 0;
}

static int64_t refresh(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct daemon_dataplane *dd = arg;
	int rc;

	pthread_mutex_lock(&dd->lock);
	rc = hc_dataplane_refresh(dd->dp);
	pthread_mutex_unlock(&dd->lock);

	if (rc)
		hc_log(HC_LOG_WARN, "data plane refresh: %s", strerror(-rc));
	return REFRESH_MS;
}

static void collect(struct hc_metrics_writer *w, void *arg)
{
	struct daemon_dataplane *dd = arg;
	struct hc_dp_snapshot snap;
	const char *info[] = {"iface", hc_dataplane_iface(dd->dp), "mode",
			      hc_dp_mode_name(hc_dataplane_mode(dd->dp)), "xdp_mode",
			      hc_dataplane_xdp_mode(dd->dp), NULL};

	hc_metrics_family(w, "hypercore_dataplane_info", "gauge",
			  "The uplink, how node ports are served there (mode xdp or tc) and XDP's "
			  "mode (native, generic; none in tc mode)");
	hc_metrics_sample(w, "hypercore_dataplane_info", info, 1);
	if (hc_dpmaps_snapshot(hc_dataplane_maps(dd->dp), &snap) < 0)
		return;
	hc_metrics_family(w, "hypercore_dataplane_routes", "gauge", "Entries in hc_routes");
	hc_metrics_sample(w, "hypercore_dataplane_routes", NULL, (double)snap.n_routes);
	hc_metrics_family(w, "hypercore_dataplane_node_ports", "gauge", "Entries in hc_services");
	hc_metrics_sample(w, "hypercore_dataplane_node_ports", NULL, (double)snap.n_services);
	hc_metrics_family(w, "hypercore_dataplane_conntrack_entries", "gauge",
			  "Node-port NAT entries (both directions)");
	hc_metrics_sample(w, "hypercore_dataplane_conntrack_entries", NULL,
			  (double)snap.conntrack_entries);
	hc_metrics_family(w, "hypercore_dataplane_untranslated_packets_total", "counter",
			  "Packets XDP/TC dropped or left untranslated, by reason");
	for (unsigned r = 1; r < HC_DROP_REASONS; r++) {
		const char *labels[] = {"reason", hc_dp_drop_reason_name(r), NULL};

		hc_metrics_sample(w, "hypercore_dataplane_untranslated_packets_total", labels,
				  (double)snap.drops[r]);
	}
	hc_metrics_family(w, "hypercore_workload_network_bytes_total", "counter",
			  "Bytes into (rx) and out of (tx) each workload, metered by BPF");
	for (size_t i = 0; i < snap.n_workloads; i++) {
		const struct hc_dp_workload_row *row = &snap.workloads[i];
		const char *rx[] = {"workload", row->wl.id, "direction", "rx", NULL};
		const char *tx[] = {"workload", row->wl.id, "direction", "tx", NULL};

		hc_metrics_sample(w, "hypercore_workload_network_bytes_total", rx,
				  (double)row->stats.rx_bytes);
		hc_metrics_sample(w, "hypercore_workload_network_bytes_total", tx,
				  (double)row->stats.tx_bytes);
	}
	hc_metrics_family(w, "hypercore_workload_network_packets_total", "counter",
			  "Packets into (rx) and out of (tx) each workload, metered by BPF");
	for (size_t i = 0; i < snap.n_workloads; i++) {
		const struct hc_dp_workload_row *row = &snap.workloads[i];
		const char *rx[] = {"workload", row->wl.id, "direction", "rx", NULL};
		const char *tx[] = {"workload", row->wl.id, "direction", "tx", NULL};

		hc_metrics_sample(w, "hypercore_workload_network_packets_total", rx,
				  (double)row->stats.rx_packets);
		hc_metrics_sample(w, "hypercore_workload_network_packets_total", tx,
				  (double)row->stats.tx_packets);
	}
	hc_metrics_family(w, "hypercore_workload_network_dropped_packets_total", "counter",
			  "Packets of each workload dropped by isolation or its rate limit");
	for (size_t i = 0; i < snap.n_workloads; i++) {
		const char *l[] = {"workload", snap.workloads[i].wl.id, NULL};

		hc_metrics_sample(w, "hypercore_workload_network_dropped_packets_total", l,
				  (double)snap.workloads[i].stats.dropped_packets);
	}
	hc_dp_snapshot_fini(&snap);
}

struct daemon_dataplane *hc_daemon_dataplane_start(struct hc_loop *loop, struct hc_metrics *metrics,
						const struct hc_daemon_config *cfg,
						struct hc_err *err)
{
	struct hc_dataplane_config dcfg = {
		.pin_dir = cfg->bpf_pin_dir,
		.iface = cfg->dataplane_iface,
		.mode = cfg->dataplane_mode,
	};
	struct hc_dp_egress_rule *allow = NULL;
	struct daemon_dataplane *dd;
	struct hc_err derr;

	if (parse_subnet(cfg->workload_subnet, &dcfg.workload_net, &dcfg.workload_prefix) < 0) {
		hc_err_set(err, -EINVAL, "invalid --workload-subnet %s (IPV4/PREFIX)",
			   cfg->workload_subnet);
		return NULL;
	}
	if (cfg->nworkload_allow_egress) {
		allow = calloc(cfg->nworkload_allow_egress, sizeof(*allow));
		if (!allow) {
			hc_err_set(err, -ENOMEM, "out of memory");
			return NULL;
		}
	}
	for (size_t i = 0; i < cfg->nworkload_allow_egress; i++) {
		if (hc_dp_egress_rule_parse(cfg->workload_allow_egress[i], &allow[i]) < 0) {
			hc_err_set(err, -EINVAL,
				   "invalid --workload-allow-egress %s (CIDR[:PORT[-PORT][/tcp|/udp]], "
				   "IPv6 with a port in brackets)",
				   cfg->workload_allow_egress[i]);
			free(allow);
			return NULL;
		}
	}
	dcfg.egress_allow = allow;
	dcfg.n_egress_allow = cfg->nworkload_allow_egress;
	dd = calloc(1, sizeof(*dd));
	if (!dd) {
		hc_err_set(err, -ENOMEM, "out of memory");
		free(allow);
		return NULL;
	}
	dd->loop = loop;
	pthread_mutex_init(&dd->lock, NULL);
	dd->dp = hc_dataplane_open(&dcfg, &derr);
	free(allow);
	if (!dd->dp) {
		hc_err_set(err, derr.code, "data plane: %s (--no-dataplane runs without it)",
			   derr.msg);
		pthread_mutex_destroy(&dd->lock);
		free(dd);
		return NULL;
	}
	dd->refresh_timer = hc_loop_add_timer(loop, REFRESH_MS, refresh, dd);
	if (!dd->refresh_timer || hc_metrics_register(metrics, collect, dd) < 0) {
		hc_err_set(err, -ENOMEM, "out of memory");
		hc_daemon_dataplane_stop(dd);
		return NULL;
	}
	dd->metrics = metrics;
	return dd;
}

static bool still_running(const struct hc_runtime_running *old, const struct hc_runtime_running *list,
			  size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].id, old->id) == 0 && strcmp(list[i].ip, old->ip) == 0)
			return true;
	return false;
}

/* Whether old's address now belongs to another running workload (CNI
 * handed it on): detaching by address would take that one's TC away. */
static bool address_reused(const struct hc_runtime_running *old,
			   const struct hc_runtime_running *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].ip, old->ip) == 0 && strcmp(list[i].id, old->id) != 0)
			return true;
	return false;
}

int hc_daemon_dataplane_on_sandbox(void *arg, const struct hc_runtime_sandbox *sb,
				   struct hc_err *err)
{
	struct daemon_dataplane *dd = arg;
	struct hc_ipaddr ip;
	int rc;

	if (!sb->ip[0] || hc_dp_ipaddr_parse(sb->ip, &ip) < 0)
		return hc_err_set(err, -EADDRNOTAVAIL,
				  "workload %s has no address to isolate (\"%s\" from CNI)", sb->id,
				  sb->ip);
	pthread_mutex_lock(&dd->lock);
	rc = hc_dataplane_workload_attach(dd->dp, sb->id, &ip, true,
					  hc_workload_spec_egress_bytes(sb->spec), err);
	pthread_mutex_unlock(&dd->lock);
	if (rc < 0) {
		char why[sizeof(err->msg)];

		memcpy(why, err->msg, sizeof(why));
		return hc_err_set(err, rc, "isolating workload %s before it starts: %s", sb->id,
				  why);
	}
	return sb->vm_netns ? hc_dataplane_tap_join(sb->vm_netns, sb->vm_veth, sb->vm_tap, err)
			    : 0;
}

void hc_daemon_dataplane_on_running(void *arg, const struct hc_runtime_running *list, size_t n)
{
	struct daemon_dataplane *dd = arg;
	struct hc_runtime_running *copy;

	pthread_mutex_lock(&dd->lock);
	for (size_t i = 0; i < dd->nattached; i++) {
		struct hc_ipaddr ip;

		if (!still_running(&dd->attached[i], list, n) &&
		    !address_reused(&dd->attached[i], list, n) &&
		    hc_dp_ipaddr_parse(dd->attached[i].ip, &ip) == 0)
			hc_dataplane_workload_detach(dd->dp, &ip);
	}
	for (size_t i = 0; i < n; i++) {
		struct hc_ipaddr ip;
		struct hc_err err;

		if (hc_dp_ipaddr_parse(list[i].ip, &ip) < 0)
			continue;
		if (hc_dataplane_workload_attach(dd->dp, list[i].id, &ip, true,
						 list[i].egress_bytes_per_sec, &err) < 0)
			hc_log(HC_LOG_WARN, "%s", err.msg);
	}
	pthread_mutex_unlock(&dd->lock);
	copy = n ? malloc(n * sizeof(*copy)) : NULL;
	if (n && !copy)
		return; /* keep the old set: detaching waits for the next change */
	if (n)
		memcpy(copy, list, n * sizeof(*copy));
	free(dd->attached);
	dd->attached = copy;
	dd->nattached = n;
}

struct hc_dpmaps *hc_daemon_dataplane_maps(struct daemon_dataplane *dd)
{
	return hc_dataplane_maps(dd->dp);
}

const char *hc_daemon_dataplane_capability(struct daemon_dataplane *dd)
{
	if (hc_dataplane_mode(dd->dp) == HC_DP_MODE_TC)
		return "tc";
	return strcmp(hc_dataplane_xdp_mode(dd->dp), "native") == 0 ? "xdp-native" : "xdp-generic";
}

void hc_daemon_dataplane_stop(struct daemon_dataplane *dd)
{
	if (!dd)
		return;
	if (dd->metrics)
		hc_metrics_unregister(dd->metrics, collect, dd);
	if (dd->refresh_timer)
		hc_loop_del_timer(dd->loop, dd->refresh_timer);
	hc_dataplane_close(dd->dp);
	pthread_mutex_destroy(&dd->lock);
	free(dd->attached);
	free(dd);
}
