/* Loading, attaching and pinning the BPF programs; workloads' TC attachment;
 * cleanup. Maps are shared between the objects and with earlier agents
 * through libbpf's pin-by-name under the pin directory. */
#define HC_LOG_MODULE "dataplane"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <hypercore/defaults.h>

#include "base/base.h"
#include "dataplane/dataplane_int.h"
#include "log/log.h"

#include "hc_sockmap.skel.h"
#include "hc_tc.skel.h"
#include "hc_xdp.skel.h"

#define BPFFS_ROOT "/sys/fs/bpf"
#define DNS_PORT 53

/* ---- libbpf's messages ---- */

/* The first warning libbpf printed on this thread since libbpf_setup(): a
 * failed load is explained by it ("couldn't reuse pinned map ...", "BPF
 * program load failed: ..."), better than by the summaries that follow. */
static __thread char libbpf_first_warning[256];

__attribute__((format(printf, 2, 0))) static int libbpf_print(enum libbpf_print_level level,
								const char *fmt, va_list ap)
{
	char line[512];
	size_t len;

	vsnprintf(line, sizeof(line), fmt, ap);
	if (strncmp(line, "libbpf: ", 8) == 0)
		memmove(line, line + 8, strlen(line + 8) + 1);
	len = strlen(line);
	while (len && line[len - 1] == '\n')
		line[--len] = '\0';
	if (level == LIBBPF_WARN && !libbpf_first_warning[0])
		snprintf(libbpf_first_warning, sizeof(libbpf_first_warning), "%s", line);
	/* One level lower than libbpf's own: shown only when asked for. The
	 * kernel's own words on a failed netlink call (a TC attach probing
	 * for its qdisc) are for debugging: the caller acts on the error. */
	if (level == LIBBPF_WARN && strncmp(line, "Kernel error message:", 21) != 0)
		hc_log(HC_LOG_INFO, "libbpf: %s", line);
	else if (level != LIBBPF_DEBUG)
		hc_log(HC_LOG_DEBUG, "libbpf: %s", line);
	return 0;
}

static void libbpf_setup(void)
{
	libbpf_set_print(libbpf_print);
	libbpf_first_warning[0] = '\0';
}

/* ---- bpffs ---- */

static bool is_bpffs(const char *path)
{
	struct statfs st;

	return statfs(path, &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

/* Whether this process has a mount namespace of its own, not init's (or,
 * where init's cannot be read, as in some containers, not its parent's):
 * what `ip netns exec` gives a command. false when it cannot tell. */
static bool in_private_mount_ns(void)
{
	struct stat self, other;
	char parent[64];

	if (stat("/proc/self/ns/mnt", &self) < 0)
		return false;
	snprintf(parent, sizeof(parent), "/proc/%d/ns/mnt", (int)getppid());
	if (stat("/proc/1/ns/mnt", &other) < 0 && stat(parent, &other) < 0)
		return false;
	return self.st_ino != other.st_ino || self.st_dev != other.st_dev;
}

int hc_dp_not_pinned(struct hc_err *err, const char *pin_dir, const char *name)
{
	if (strncmp(pin_dir, BPFFS_ROOT "/", strlen(BPFFS_ROOT) + 1) == 0 && !is_bpffs(BPFFS_ROOT))
		return hc_err_set(err, -ENOENT,
				  "no data plane pinned in %s (%s missing): %s is not a bpf "
				  "filesystem here, so no agent's pins can be seen (under `ip netns "
				  "exec` every command gets a fresh /sys: start the agent and run "
				  "this with `nsenter --net=/run/netns/NAME` instead)",
				  pin_dir, name, BPFFS_ROOT);
	return hc_err_set(err, -ENOENT,
			  "no data plane pinned in %s (%s missing): start an agent "
			  "(hypercore cluster) or give --bpf-pin-dir", pin_dir, name);
}

/* Pins need bpffs. Like other BPF agents we mount it at its usual place when
 * the system has not; anywhere else the operator chose the place. In a mount
 * namespace of our own that mount, and so every pin, is seen by nobody else
 * and goes with us: said at warning level, as it is never what is wanted. */
static int ensure_pin_dir(const char *pin_dir, struct hc_err *err)
{
	int rc;

	if (strncmp(pin_dir, BPFFS_ROOT "/", strlen(BPFFS_ROOT) + 1) == 0 && !is_bpffs(BPFFS_ROOT)) {
		if (mount("bpf", BPFFS_ROOT, "bpf", 0, "mode=0700") < 0)
			return hc_err_set(err, -errno, "cannot mount bpffs on %s: %s", BPFFS_ROOT,
					  strerror(errno));
		if (in_private_mount_ns())
			hc_log(HC_LOG_WARN,
			       "mounted bpffs on %s in this process's own mount namespace "
			       "(`ip netns exec`?): the pins under %s are invisible to `hypercore "
			       "routes`, bpftool and every other process, and go when the agent "
			       "stops; start it with `nsenter --net=/run/netns/NAME` to use the "
			       "host's %s", BPFFS_ROOT, pin_dir, BPFFS_ROOT);
		else
			hc_log(HC_LOG_INFO, "mounted bpffs on %s", BPFFS_ROOT);
	}
	rc = hc_mkdir_p(pin_dir, 0700);
	if (rc)
		return hc_err_set(err, rc, "cannot create %s: %s", pin_dir, strerror(-rc));
	if (!is_bpffs(pin_dir))
		return hc_err_set(err, -EINVAL, "%s is not on a bpf filesystem (mount -t bpf)", pin_dir);
	return 0;
}

/* ---- loading ---- */

/* libbpf's last warning says why (a pinned map of another layout, the
 * verifier's verdict), so it goes into the line. */
static int load_failed(struct hc_err *err, const char *what, int rc)
{
	return hc_err_set(err, rc, "cannot load %s: %s%s%s%s", what, strerror(-rc),
			  libbpf_first_warning[0] ? " (" : "", libbpf_first_warning,
			  libbpf_first_warning[0] ? ")" : "");
}

#define OPEN_AND_LOAD(skel_type, out, pin_dir, err)                                        \
	({                                                                                 \
		LIBBPF_OPTS(bpf_object_open_opts, opts_, .pin_root_path = (pin_dir));     \
		int rc_ = 0;                                                               \
		(out) = skel_type##__open_opts(&opts_);                                    \
		if (!(out))                                                                \
			rc_ = load_failed((err), #skel_type, -errno);                      \
		else if ((rc_ = skel_type##__load(out)) != 0)                              \
			rc_ = load_failed((err), #skel_type, rc_ < 0 ? rc_ : -EINVAL);     \
		rc_;                                                                       \
	})

/* Pins a workload program under pin_dir, replacing an earlier agent's pin
 * (the TC filters keep whichever program they hold until re-attached). */
static int pin_prog(const char *pin_dir, const char *name, int fd, struct hc_err *err)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", pin_dir, name);
	if (unlink(path) < 0 && errno != ENOENT)
		return hc_err_set(err, -errno, "cannot replace %s: %s", path, strerror(errno));
	if (bpf_obj_pin(fd, path) < 0)
		return hc_err_set(err, -errno, "cannot pin %s: %s", path, strerror(errno));
	return 0;
}

static int load_objects(struct hc_dataplane *dp, struct hc_err *err)
{
	int rc;

	rc = OPEN_AND_LOAD(hc_xdp, dp->xdp, dp->pin_dir, err);
	if (!rc)
		rc = OPEN_AND_LOAD(hc_tc, dp->tc, dp->pin_dir, err);
	if (!rc)
		rc = OPEN_AND_LOAD(hc_sockmap, dp->sockmap, dp->pin_dir, err);
	if (rc)
		return rc;
	dp->tc_from_wl_fd = bpf_program__fd(dp->tc->progs.hc_tc_from_wl);
	dp->tc_to_wl_fd = bpf_program__fd(dp->tc->progs.hc_tc_to_wl);
	rc = pin_prog(dp->pin_dir, HC_PIN_TC_FROM_WL, dp->tc_from_wl_fd, err);
	if (!rc)
		rc = pin_prog(dp->pin_dir, HC_PIN_TC_TO_WL, dp->tc_to_wl_fd, err);
	return rc;
}

/* ---- TC on workload veths ---- */

/* has_qdisc: the veth had our programs before, so its clsact qdisc is
 * there; creating it again (or attaching without it) only makes the kernel
 * log a complaint, so each case takes the call that succeeds. */
int hc_dp_tc_attach_one(int ifindex, int prog_fd, enum bpf_tc_attach_point where, bool has_qdisc)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = where);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = HC_DP_TC_HANDLE, .priority = HC_DP_TC_PRIORITY,
		    .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE);
	int rc;

	if (has_qdisc) {
		rc = bpf_tc_attach(&hook, &opts);
		if (rc != -EINVAL && rc != -ENOENT)
			return rc;
		opts.prog_id = 0;
	}
	rc = bpf_tc_hook_create(&hook);
	if (rc && rc != -EEXIST)
		return rc;
	return bpf_tc_attach(&hook, &opts);
}

static void tc_detach_all(int ifindex)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
		    .attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS);

	/* The clsact qdisc was made for the workload's veth; it goes with
	 * our filters. */
	bpf_tc_hook_destroy(&hook);
}

static int tc_attach(struct hc_dataplane *dp, int ifindex, bool has_qdisc)
{
	int rc;

	rc = hc_dp_tc_attach_one(ifindex, dp->tc_from_wl_fd, BPF_TC_INGRESS, has_qdisc);
	if (!rc)
		rc = hc_dp_tc_attach_one(ifindex, dp->tc_to_wl_fd, BPF_TC_EGRESS, has_qdisc);
	return rc;
}

static void forget_workload(struct hc_dpmaps *m, __u32 ifindex)
{
	bpf_map_delete_elem(m->workloads, &ifindex);
	bpf_map_delete_elem(m->wl_stats, &ifindex);
	bpf_map_delete_elem(m->wl_rate, &ifindex);
}

/* The veth the main table routes addr to; -ENODEV if it is not a veth. */
static int workload_link(struct hc_dataplane *dp, const struct hc_ipaddr *addr,
			 struct hc_dp_link *link)
{
	int ifindex, rc;

	rc = hc_nl_route_oif(addr, &ifindex);
	if (rc)
		return rc;
	if (ifindex == dp->ifindex)
		return -ENODEV;
	rc = hc_nl_link_get(ifindex, link);
	if (rc)
		return rc;
	return link->is_veth ? 0 : -ENODEV;
}

static void addr_format(const struct hc_ipaddr *a, char *buf, size_t len)
{
	if (!inet_ntop(a->family == HC_AF_INET ? AF_INET : AF_INET6, a->ip6, buf, len))
		snprintf(buf, len, "?");
}

int hc_dataplane_workload_attach(struct hc_dataplane *dp, const char *id,
				 const struct hc_ipaddr *addr, bool isolate, uint64_t rate_bytes_per_sec,
				 struct hc_err *err)
{
	struct hc_wl_info wl = {0}, have;
	struct hc_wl_rate bucket = {0};
	struct hc_dp_link link;
	char text[64];
	int ncpu = libbpf_num_possible_cpus();
	void *zero_stats;
	bool known;
	__u32 key;
	int rc;

	addr_format(addr, text, sizeof(text));
	rc = workload_link(dp, addr, &link);
	if (rc)
		return hc_err_set(err, rc, "no veth routes to workload %s at %s", id, text);
	key = (__u32)link.ifindex;
	snprintf(wl.id, sizeof(wl.id), "%s", id);
	wl.addr = *addr;
	wl.flags = isolate ? HC_WL_F_ISOLATE : 0;
	wl.rate_bytes_per_sec = rate_bytes_per_sec;
	/* A tenth of a second of traffic, at least a few full-sized frames. */
	wl.burst_bytes = rate_bytes_per_sec / 10 > 65536 ? rate_bytes_per_sec / 10 : 65536;

	known = bpf_map_lookup_elem(dp->maps.workloads, &key, &have) == 0;
	if (known && memcmp(&have, &wl, sizeof(wl)) == 0)
		return 0; /* already there: attaching again would only churn */
	rc = tc_attach(dp, link.ifindex, known);
	if (rc)
		return hc_err_set(err, rc, "cannot attach TC to %s: %s", link.name, strerror(-rc));
	zero_stats = calloc(ncpu > 0 ? ncpu : 1, (sizeof(struct hc_wl_stats) + 7) & ~7ul);
	if (!zero_stats)
		return hc_err_set(err, -ENOMEM, "out of memory");
	/* Counters and bucket survive a re-attach (BPF_NOEXIST). */
	bpf_map_update_elem(dp->maps.wl_stats, &key, zero_stats, BPF_NOEXIST);
	free(zero_stats);
	bucket.tokens = wl.burst_bytes;
	bpf_map_update_elem(dp->maps.wl_rate, &key, &bucket, BPF_NOEXIST);
	if (bpf_map_update_elem(dp->maps.workloads, &key, &wl, BPF_ANY) < 0)
		return hc_err_set(err, -errno, "cannot write %s: %s", HC_MAP_WORKLOADS,
				  strerror(errno));
	rc = hc_dp_veth_peer_enable_gro(&link);
	if (rc)
		hc_log(HC_LOG_WARN,
		       "cannot turn on GRO on the peer of %s (%s): XDP redirects to workload %s will "
		       "be dropped by the veth",
		       link.name, strerror(-rc), id);
	hc_log(HC_LOG_INFO, "workload %s at %s: TC attached to %s", id, text, link.name);
	return 0;
}

int hc_dataplane_workload_detach(struct hc_dataplane *dp, const struct hc_ipaddr *addr)
{
	__u32 keys[HC_WORKLOADS_MAX], key, *prev = NULL;
	size_t n = 0;

	while (n < HC_WORKLOADS_MAX && bpf_map_get_next_key(dp->maps.workloads, prev, &key) == 0) {
		struct hc_wl_info wl;
		struct hc_dp_link link;
		bool gone = hc_nl_link_get((int)key, &link) != 0 || !link.is_veth;

		if (bpf_map_lookup_elem(dp->maps.workloads, &key, &wl) == 0 &&
		    ((addr && memcmp(&wl.addr, addr, sizeof(*addr)) == 0) || (!addr && gone)))
			keys[n++] = key;
		prev = &key;
	}
	for (size_t i = 0; i < n; i++) {
		struct hc_dp_link link;

		if (hc_nl_link_get((int)keys[i], &link) == 0 && link.is_veth)
			tc_detach_all((int)keys[i]);
		forget_workload(&dp->maps, keys[i]);
	}
	return 0;
}

/* Attaches to the veths behind static services' backends: an operator's
 * backend in a namespace of its own is a workload to the data plane. */
static void attach_static_backends(struct hc_dataplane *dp)
{
	struct hc_service_key key, *prev = NULL;
	struct hc_service_val val;

	while (bpf_map_get_next_key(dp->maps.services, prev, &key) == 0) {
		prev = &key;
		if (bpf_map_lookup_elem(dp->maps.services, &key, &val) < 0 ||
		    !(val.flags & HC_SERVICE_F_STATIC))
			continue;
		for (__u32 i = 0; i < val.count && i < HC_SERVICE_MAX_BACKENDS; i++) {
			struct hc_dp_link link;
			char id[HC_WORKLOAD_ID_MAX], text[INET6_ADDRSTRLEN];

			if (workload_link(dp, &val.backends[i].addr, &link))
				continue;
			addr_format(&val.backends[i].addr, text, sizeof(text));
			snprintf(id, sizeof(id), "static:%s", text);
			hc_dataplane_workload_attach(dp, id, &val.backends[i].addr, true, 0, NULL);
		}
	}
}

int hc_dataplane_refresh(struct hc_dataplane *dp)
{
	struct hc_ipaddr *addrs;
	size_t n;
	int rc;

	rc = hc_nl_local_addrs(&addrs, &n);
	if (rc)
		return rc;
	rc = hc_dpmaps_set_host_addrs(&dp->maps, addrs, n);
	free(addrs);
	if (!rc)
		rc = hc_dpmaps_sync_proxy_ports(&dp->maps);
	attach_static_backends(dp);
	hc_dataplane_workload_detach(dp, NULL);
	return rc;
}

/* Moves the TC programs of recorded workloads to the new program version. */
static void reattach_workloads(struct hc_dataplane *dp)
{
	__u32 key, *prev = NULL;

	while (bpf_map_get_next_key(dp->maps.workloads, prev, &key) == 0) {
		struct hc_dp_link link;

		prev = &key;
		if (hc_nl_link_get((int)key, &link) == 0 && link.is_veth && tc_attach(dp, (int)key, true) == 0)
			hc_log(HC_LOG_DEBUG, "TC re-attached to %s", link.name);
	}
}

/* hc_config is written whole: the settings, then (once the uplink is
 * attached) where node ports are served. */
static int config_write(struct hc_dataplane *dp, struct hc_err *err)
{
	__u32 zero = 0;

	if (bpf_map_update_elem(dp->maps.config, &zero, &dp->config, BPF_ANY) < 0)
		return hc_err_set(err, -errno, "cannot write %s: %s", HC_MAP_CONFIG, strerror(errno));
	return 0;
}

static int config_init(struct hc_dataplane *dp, const struct hc_dataplane_config *cfg,
		       struct hc_err *err)
{
	struct hc_config *c = &dp->config;
	size_t n = 0;

	memset(c, 0, sizeof(*c));
	if (cfg->workload_net.family) {
		c->workload_net = cfg->workload_net;
		c->workload_prefix = cfg->workload_prefix;
	} else {
		c->workload_net.family = HC_AF_INET;
		c->workload_net.ip4 = htonl(HC_WORKLOAD_NET);
		c->workload_prefix = HC_WORKLOAD_PREFIX;
	}
	if (cfg->workload_net6.family == HC_AF_INET6) {
		c->workload_net6 = cfg->workload_net6;
		c->workload_prefix6 = cfg->workload_prefix6;
	}
	c->host_allowed[n++] = (struct hc_port_rule){.port = DNS_PORT, .proto = IPPROTO_UDP};
	c->host_allowed[n++] = (struct hc_port_rule){.port = DNS_PORT, .proto = IPPROTO_TCP};
	for (size_t i = 0; i < cfg->n_host_allowed; i++) {
		if (n >= HC_ALLOWED_PORTS_MAX)
			return hc_err_set(err, -E2BIG, "at most %d ports may be open to workloads",
					  HC_ALLOWED_PORTS_MAX - 2);
		c->host_allowed[n++] = cfg->host_allowed[i];
	}
	return config_write(dp, err);
}

static int uplink_attach(struct hc_dataplane *dp, enum hc_dp_mode mode, struct hc_err *err)
{
	int rc = hc_dp_uplink_attach(dp, mode, err);

	if (rc)
		return rc;
	dp->config.uplink_ifindex = (__u32)dp->ifindex;
	dp->config.uplink_mode = dp->mode == HC_DP_MODE_TC ? HC_UPLINK_TC : HC_UPLINK_XDP;
	dp->config.uplink_xdp_native = strcmp(dp->xdp_mode, "native") == 0;
	snprintf(dp->config.uplink_iface, sizeof(dp->config.uplink_iface), "%s", dp->iface);
	return config_write(dp, err);
}

/* The fd of the map pinned as name under pin_dir when its values are not
 * value_size bytes (an agent of an older layout pinned it), else -1. */
static int stale_pin(const char *pin_dir, const char *name, __u32 value_size, char *path,
		     size_t len, __u32 *old_size)
{
	struct bpf_map_info info;
	__u32 ilen = sizeof(info);
	int fd;

	snprintf(path, len, "%s/%s", pin_dir, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return -1;
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &ilen) == 0 && info.value_size != value_size) {
		hc_log(HC_LOG_INFO, "replacing %s of an older layout (%u bytes a value)", path,
		       info.value_size);
		*old_size = info.value_size;
		return fd;
	}
	close(fd);
	return -1;
}

/* hc_config is rewritten whole at every start, so a pin of it from an agent
 * with an older layout is let go (a new one is pinned) rather than refused
 * as a map of another shape. hc_workloads' entries are carried over into
 * the new map (values are append-only: the old ones are a prefix of ours),
 * so the workloads' veths move to the new programs. The old programs keep
 * their maps until they are replaced a moment later. */
static void drop_stale_pins(struct hc_dataplane *dp)
{
	char path[300];
	__u32 key, *prev = NULL, old_size = 0;
	char *val;
	int fd;

	fd = stale_pin(dp->pin_dir, HC_MAP_CONFIG, sizeof(struct hc_config), path, sizeof(path),
		       &old_size);
	if (fd >= 0) {
		unlink(path);
		close(fd);
	}
	fd = stale_pin(dp->pin_dir, HC_MAP_WORKLOADS, sizeof(struct hc_wl_info), path,
		       sizeof(path), &old_size);
	if (fd < 0)
		return;
	val = calloc(1, old_size > sizeof(struct hc_wl_info) ? old_size : sizeof(struct hc_wl_info));
	while (val && dp->n_carried < HC_WORKLOADS_MAX &&
	       bpf_map_get_next_key(fd, prev, &key) == 0) {
		prev = &key;
		if (!dp->carried &&
		    !(dp->carried = calloc(HC_WORKLOADS_MAX, sizeof(*dp->carried))))
			break;
		memset(val, 0, sizeof(struct hc_wl_info));
		if (bpf_map_lookup_elem(fd, &key, val) < 0)
			continue;
		dp->carried[dp->n_carried].ifindex = key;
		memcpy(&dp->carried[dp->n_carried++].wl, val, sizeof(struct hc_wl_info));
	}
	free(val);
	unlink(path);
	close(fd);
}

static void carry_workloads(struct hc_dataplane *dp)
{
	for (size_t i = 0; i < dp->n_carried; i++)
		bpf_map_update_elem(dp->maps.workloads, &dp->carried[i].ifindex, &dp->carried[i].wl,
				    BPF_NOEXIST);
	free(dp->carried);
	dp->carried = NULL;
	dp->n_carried = 0;
}

static int resolve_iface(struct hc_dataplane *dp, const char *iface, struct hc_err *err)
{
	int rc;

	if (iface) {
		dp->ifindex = (int)if_nametoindex(iface);
		if (!dp->ifindex)
			return hc_err_set(err, -ENODEV, "no interface %s (--dataplane-iface)", iface);
	} else {
		rc = hc_nl_default_oif(&dp->ifindex);
		if (rc)
			return hc_err_set(err, rc,
					  "no default route to find the uplink by; name it with "
					  "--dataplane-iface");
	}
	if (!if_indextoname((unsigned)dp->ifindex, dp->iface))
		return hc_err_set(err, -errno, "interface %d vanished", dp->ifindex);
	return 0;
}

struct hc_dataplane *hc_dataplane_open(const struct hc_dataplane_config *cfg,
				       struct hc_err *err)
{
	struct hc_dataplane *dp = calloc(1, sizeof(*dp));
	const char *pin_dir = cfg->pin_dir ? cfg->pin_dir : HC_DEFAULT_BPF_PIN_DIR;
	int rc;

	if (!dp) {
		errno = ENOMEM;
		hc_err_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	for (int *fd = &dp->maps.routes; fd <= &dp->maps.wl_flows; fd++)
		*fd = -1;
	libbpf_setup();
	if (snprintf(dp->pin_dir, sizeof(dp->pin_dir), "%s", pin_dir) >= (int)sizeof(dp->pin_dir)) {
		rc = hc_err_set(err, -ENAMETOOLONG, "pin directory path too long");
		goto fail;
	}
	rc = resolve_iface(dp, cfg->iface, err);
	if (!rc)
		rc = ensure_pin_dir(dp->pin_dir, err);
	if (!rc) {
		drop_stale_pins(dp);
		rc = load_objects(dp, err);
	}
	if (!rc)
		rc = hc_dpmaps_init_from_pins(&dp->maps, dp->pin_dir, err);
	if (!rc)
		carry_workloads(dp);
	if (!rc)
		rc = config_init(dp, cfg, err);
	if (!rc)
		rc = hc_dpmaps_set_egress_allow(&dp->maps, cfg->egress_allow, cfg->n_egress_allow,
						err);
	if (!rc) {
		rc = hc_dataplane_refresh(dp);
		if (rc)
			hc_err_set(err, rc, "cannot record this node's addresses in %s and %s: %s",
				   HC_MAP_HOST_ADDRS, HC_MAP_MEMBERS, strerror(-rc));
	}
	if (!rc)
		rc = uplink_attach(dp, cfg->mode, err);
	if (rc)
		goto fail;
	reattach_workloads(dp);
	hc_log(HC_LOG_INFO, "data plane on %s (node ports by %s%s%s), maps pinned in %s", dp->iface,
	       dp->mode == HC_DP_MODE_TC ? "TC" : "XDP ", dp->mode == HC_DP_MODE_TC ? "" : dp->xdp_mode,
	       dp->mode == HC_DP_MODE_TC ? "" : " mode", dp->pin_dir);
	return dp;
fail:
	hc_dataplane_close(dp);
	errno = -rc;
	return NULL;
}

/* The pinned program name under pin_dir, as an fd; -errno. */
static int prog_from_pin(const char *pin_dir, const char *name, struct hc_err *err)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", pin_dir, name);
	fd = bpf_obj_get(path);
	if (fd >= 0)
		return fd;
	if (errno == ENOENT)
		return hc_dp_not_pinned(err, pin_dir, name);
	return hc_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
}

struct hc_dataplane *hc_dataplane_open_pinned(const char *pin_dir, struct hc_err *err)
{
	struct hc_dataplane *dp = calloc(1, sizeof(*dp));
	__u32 zero = 0;
	int rc;

	if (!dp) {
		errno = ENOMEM;
		hc_err_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	if (!pin_dir)
		pin_dir = HC_DEFAULT_BPF_PIN_DIR;
	for (int *fd = &dp->maps.routes; fd <= &dp->maps.drops; fd++)
		*fd = -1;
	dp->own_prog_fds = true;
	dp->tc_from_wl_fd = dp->tc_to_wl_fd = -1;
	snprintf(dp->pin_dir, sizeof(dp->pin_dir), "%s", pin_dir);
	rc = hc_dpmaps_init_from_pins(&dp->maps, dp->pin_dir, err);
	if (!rc && (rc = prog_from_pin(dp->pin_dir, HC_PIN_TC_FROM_WL, err)) >= 0) {
		dp->tc_from_wl_fd = rc;
		rc = prog_from_pin(dp->pin_dir, HC_PIN_TC_TO_WL, err);
		if (rc >= 0)
			dp->tc_to_wl_fd = rc;
	}
	if (rc < 0)
		goto fail;
	/* the uplink is never a workload's veth */
	if (bpf_map_lookup_elem(dp->maps.config, &zero, &dp->config) == 0)
		dp->ifindex = (int)dp->config.uplink_ifindex;
	return dp;
fail:
	hc_dataplane_close(dp);
	errno = -rc;
	return NULL;
}

void hc_dataplane_close(struct hc_dataplane *dp)
{
	if (!dp)
		return;
	if (dp->own_prog_fds) {
		if (dp->tc_from_wl_fd >= 0)
			close(dp->tc_from_wl_fd);
		if (dp->tc_to_wl_fd >= 0)
			close(dp->tc_to_wl_fd);
	}
	hc_dpmaps_fini(&dp->maps);
	free(dp->carried);
	hc_sockmap__destroy(dp->sockmap);
	hc_tc__destroy(dp->tc);
	hc_xdp__destroy(dp->xdp);
	free(dp);
}

struct hc_dpmaps *hc_dataplane_maps(struct hc_dataplane *dp)
{
	return &dp->maps;
}

enum hc_dp_mode hc_dataplane_mode(const struct hc_dataplane *dp)
{
	return dp->mode;
}

const char *hc_dataplane_xdp_mode(const struct hc_dataplane *dp)
{
	return dp->xdp_mode;
}

const char *hc_dataplane_iface(const struct hc_dataplane *dp)
{
	return dp->iface;
}

/* ---- cleanup ---- */

/* The uplink an agent recorded in the pinned hc_config; 0 when unknown. */
static int recorded_uplink(const char *pin_dir)
{
	struct hc_config c;
	char path[300];
	__u32 zero = 0;
	int fd, ifindex = 0;

	snprintf(path, sizeof(path), "%s/%s", pin_dir, HC_MAP_CONFIG);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return 0;
	if (bpf_map_lookup_elem(fd, &zero, &c) == 0 && c.uplink_mode != HC_UPLINK_NONE)
		ifindex = (int)c.uplink_ifindex;
	close(fd);
	return ifindex;
}

int hc_dataplane_cleanup(const char *pin_dir, const char *iface, struct hc_err *err)
{
	char path[512];
	struct dirent *de;
	DIR *d;
	int fd, rc, ifindex;

	libbpf_setup();
	if (!pin_dir)
		pin_dir = HC_DEFAULT_BPF_PIN_DIR;
	if (iface) {
		ifindex = (int)if_nametoindex(iface);
		if (!ifindex)
			return hc_err_set(err, -ENODEV, "no interface %s", iface);
	} else {
		ifindex = recorded_uplink(pin_dir);
	}
	rc = hc_dp_uplink_cleanup(pin_dir, ifindex, err);
	snprintf(path, sizeof(path), "%s/%s", pin_dir, HC_MAP_WORKLOADS);
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		__u32 key, *prev = NULL;

		while (bpf_map_get_next_key(fd, prev, &key) == 0) {
			struct hc_dp_link link;

			prev = &key;
			if (hc_nl_link_get((int)key, &link) == 0 && link.is_veth)
				tc_detach_all((int)key);
		}
		close(fd);
	}
	d = opendir(pin_dir);
	if (!d) {
		if (errno == ENOENT)
			return rc;
		return hc_err_set(err, -errno, "cannot read %s: %s", pin_dir, strerror(errno));
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", pin_dir, de->d_name);
		if (unlink(path) < 0 && !rc)
			rc = hc_err_set(err, -errno, "cannot remove %s: %s", path, strerror(errno));
	}
	closedir(d);
	if (rmdir(pin_dir) < 0 && !rc)
		rc = hc_err_set(err, -errno, "cannot remove %s: %s", pin_dir, strerror(errno));
	return rc;
}
