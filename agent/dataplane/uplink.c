/* The uplink: how node ports are served there. XDP (hc_xdp_ingress behind a
 * pinned bpf_link) where the driver runs it natively and hands it whole
 * checksums, as NICs do; TC ingress (hc_tc_uplink, a clsact filter) where
 * frames may carry the partial checksums their sender left to the hardware
 * (a veth or a tap passes them on as they are: XDP cannot tell, and its
 * incremental fix-up would break them) or where XDP would only run in
 * generic mode. Both stay attached when the agent exits. */
#define HC_LOG_MODULE "dataplane"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/dataplane_int.h"
#include "log/log.h"

#include "hc_tc.skel.h"
#include "hc_xdp.skel.h"

#define XDP_LINK_PIN "link_xdp" /* pin name of the uplink's XDP link */
#define XDP_PROG_NAME "hc_xdp_ingress"
#define TC_UPLINK_PROG_NAME "hc_tc_uplink"

/* Drivers whose received frames may carry partial checksums: they hand on
 * what their peer sent, unfinished by any hardware. */
static const char *const partial_csum_drivers[] = { "veth", "tun", NULL };

static const char *const mode_names[] = {
	[HC_DP_MODE_AUTO] = "auto",
	[HC_DP_MODE_XDP] = "xdp",
	[HC_DP_MODE_TC] = "tc",
};

int hc_dp_mode_parse(const char *text, enum hc_dp_mode *out)
{
	for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++) {
		if (strcmp(text, mode_names[i]) == 0) {
			*out = (enum hc_dp_mode)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *hc_dp_mode_name(enum hc_dp_mode mode)
{
	return (unsigned)mode < sizeof(mode_names) / sizeof(mode_names[0]) ? mode_names[mode] : "?";
}

/* The driver behind an interface (what `ethtool -i` shows). 0 or -errno. */
static int link_driver(const char *ifname, char *buf, size_t len)
{
	struct ethtool_drvinfo info = { .cmd = ETHTOOL_GDRVINFO };
	struct ifreq ifr = { 0 };
	int fd, rc = 0;

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	ifr.ifr_data = (void *)&info;
	if (ioctl(fd, SIOCETHTOOL, &ifr) < 0)
		rc = -errno;
	else
		snprintf(buf, len, "%.*s", (int)sizeof(info.driver), info.driver);
	close(fd);
	return rc;
}

static bool passes_partial_csums(const char *driver)
{
	for (const char *const *d = partial_csum_drivers; *d; d++)
		if (strcmp(driver, *d) == 0)
			return true;
	return false;
}

/* ---- XDP ---- */

static void xdp_link_pin_path(const char *pin_dir, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", pin_dir, XDP_LINK_PIN);
}

static const char *xdp_mode_name(int ifindex)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, q);

	if (bpf_xdp_query(ifindex, 0, &q) < 0)
		return "unknown";
	switch (q.attach_mode) {
	case XDP_ATTACHED_DRV:
		return "native";
	case XDP_ATTACHED_SKB:
		return "generic";
	case XDP_ATTACHED_HW:
		return "offload";
	case XDP_ATTACHED_MULTI:
		return q.drv_prog_id ? "native" : "generic";
	default:
		return "none";
	}
}

/* Lets the XDP link pinned at pin go: detached from its interface, unpinned.
 * Nothing pinned is fine. */
static void xdp_link_drop(const char *pin)
{
	int fd = bpf_obj_get(pin);

	if (fd < 0)
		return;
	bpf_link_detach(fd);
	close(fd);
	unlink(pin);
}

/* Moves an existing pinned link on the same interface to the new program
 * (atomically, so no packet misses the data plane). native_only: a link in
 * generic mode is dropped instead. Returns 1 when done, 0 when there is no
 * usable pinned link, or -errno. */
static int xdp_update_pinned(struct hc_dataplane *dp, int prog_fd, const char *pin,
			     bool native_only)
{
	struct bpf_link_info info;
	__u32 len = sizeof(info);
	int fd, rc;

	fd = bpf_obj_get(pin);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0) {
		rc = -errno;
	} else if (info.type == BPF_LINK_TYPE_XDP && (int)info.xdp.ifindex == dp->ifindex &&
		   (!native_only || strcmp(xdp_mode_name(dp->ifindex), "native") == 0)) {
		rc = bpf_link_update(fd, prog_fd, NULL) < 0 ? -errno : 1;
	} else {
		/* The uplink changed, went away or runs XDP in a mode not
		 * wanted. */
		hc_log(HC_LOG_INFO, "replacing the XDP link pinned for ifindex %u",
		       info.xdp.ifindex);
		bpf_link_detach(fd);
		unlink(pin);
		rc = 0;
	}
	close(fd);
	return rc;
}

/* Attaches hc_xdp_ingress to the uplink through a pinned link. native_only:
 * -EOPNOTSUPP when the driver has no native XDP (generic mode otherwise).
 * -EBUSY when another program holds the uplink's XDP hook. */
static int xdp_attach(struct hc_dataplane *dp, bool native_only, struct hc_err *err)
{
	int prog_fd = bpf_program__fd(dp->xdp->progs.hc_xdp_ingress);
	LIBBPF_OPTS(bpf_link_create_opts, generic, .flags = XDP_FLAGS_SKB_MODE);
	LIBBPF_OPTS(bpf_link_create_opts, native, .flags = XDP_FLAGS_DRV_MODE);
	char pin[300];
	int fd, rc;

	xdp_link_pin_path(dp->pin_dir, pin, sizeof(pin));
	rc = xdp_update_pinned(dp, prog_fd, pin, native_only);
	if (rc < 0)
		return hc_err_set(err, rc, "cannot update the XDP link pinned at %s: %s", pin,
				  strerror(-rc));
	if (rc == 1)
		return 0;
	/* Without flags the kernel picks native mode when the driver has it. */
	fd = bpf_link_create(prog_fd, dp->ifindex, BPF_XDP, native_only ? &native : NULL);
	if (fd < 0 && errno != EBUSY && errno != EEXIST) {
		if (native_only)
			return hc_err_set(err, -EOPNOTSUPP, "no native XDP on %s (%s)", dp->iface,
					  strerror(errno));
		hc_log(HC_LOG_INFO, "native XDP refused on %s (%s); using generic mode", dp->iface,
		       strerror(errno));
		fd = bpf_link_create(prog_fd, dp->ifindex, BPF_XDP, &generic);
	}
	if (fd < 0) {
		rc = -errno;
		if (rc == -EBUSY || rc == -EEXIST)
			return hc_err_set(err, -EBUSY,
					  "another XDP program is attached to %s (see `bpftool net "
					  "show dev %s`)",
					  dp->iface, dp->iface);
		return hc_err_set(err, rc, "cannot attach XDP to %s: %s", dp->iface, strerror(-rc));
	}
	if (bpf_obj_pin(fd, pin) < 0) {
		rc = -errno;
		bpf_link_detach(fd);
		close(fd);
		return hc_err_set(err, rc, "cannot pin the XDP link at %s: %s", pin, strerror(-rc));
	}
	close(fd);
	return 0;
}

/* The name of the program behind a program id ("" when gone). */
static void prog_name(__u32 id, char *buf, size_t len)
{
	struct bpf_prog_info info;
	__u32 info_len = sizeof(info);
	int fd = bpf_prog_get_fd_by_id(id);

	buf[0] = '\0';
	if (fd < 0)
		return;
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &info_len) == 0)
		snprintf(buf, len, "%s", info.name);
	close(fd);
}

/* Detaches an XDP program of ours that was attached without a link (by an
 * older agent or by hand). Others' programs stay. */
static void xdp_detach_ours(int ifindex)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, q);
	char name[BPF_OBJ_NAME_LEN];

	if (bpf_xdp_query(ifindex, 0, &q) < 0 || !q.prog_id)
		return;
	prog_name(q.prog_id, name, sizeof(name));
	if (strcmp(name, XDP_PROG_NAME) == 0)
		bpf_xdp_detach(ifindex, 0, NULL);
}

/* ---- TC ingress ---- */

static int tc_uplink_attach(struct hc_dataplane *dp, struct hc_err *err)
{
	int rc = hc_dp_tc_attach_one(dp->ifindex, bpf_program__fd(dp->tc->progs.hc_tc_uplink),
				     BPF_TC_INGRESS, true);

	if (rc)
		return hc_err_set(err, rc, "cannot attach TC to %s: %s", dp->iface, strerror(-rc));
	return 0;
}

/* Removes our filter from the uplink's ingress, if it is there and ours.
 * The clsact qdisc stays: other tools may hold filters on it. */
static void tc_uplink_detach(int ifindex)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = HC_DP_TC_HANDLE, .priority = HC_DP_TC_PRIORITY);
	char name[BPF_OBJ_NAME_LEN];

	if (bpf_tc_query(&hook, &opts) < 0)
		return;
	prog_name(opts.prog_id, name, sizeof(name));
	if (strcmp(name, TC_UPLINK_PROG_NAME) != 0)
		return;
	opts.prog_id = 0;
	opts.prog_fd = 0;
	opts.flags = 0;
	bpf_tc_detach(&hook, &opts);
}

/* ---- choosing ---- */

/* Which way auto mode takes before trying XDP: TC for drivers that pass on
 * partial checksums (why says so), else XDP in native mode only. */
static enum hc_dp_mode auto_mode(const struct hc_dataplane *dp, char *why, size_t len)
{
	char driver[sizeof(((struct ethtool_drvinfo *)0)->driver) + 1];

	if (link_driver(dp->iface, driver, sizeof(driver)) == 0 && passes_partial_csums(driver)) {
		snprintf(why, len, "%s hands on its peer's partial checksums", driver);
		return HC_DP_MODE_TC;
	}
	return HC_DP_MODE_AUTO;
}

int hc_dp_uplink_attach(struct hc_dataplane *dp, enum hc_dp_mode want, struct hc_err *err)
{
	enum hc_dp_mode mode = want;
	char why[sizeof(((struct hc_err *)0)->msg)] = "";
	int rc;

	if (mode == HC_DP_MODE_AUTO)
		mode = auto_mode(dp, why, sizeof(why));
	if (mode != HC_DP_MODE_TC) {
		struct hc_err xerr;

		rc = xdp_attach(dp, mode == HC_DP_MODE_AUTO, &xerr);
		/* No native XDP, or another program holds the hook: TC works
		 * as well, beside whatever that program does. */
		if ((rc == -EOPNOTSUPP || rc == -EBUSY) && mode == HC_DP_MODE_AUTO) {
			snprintf(why, sizeof(why), "%s", xerr.msg);
			mode = HC_DP_MODE_TC;
		} else if (rc) {
			return hc_err_set(err, rc, "%s", xerr.msg);
		} else {
			mode = HC_DP_MODE_XDP;
		}
	}
	if (mode == HC_DP_MODE_TC) {
		char pin[300];

		/* TC first, then XDP goes: no gap for node-port traffic. */
		rc = tc_uplink_attach(dp, err);
		if (rc)
			return rc;
		xdp_link_pin_path(dp->pin_dir, pin, sizeof(pin));
		xdp_link_drop(pin);
		xdp_detach_ours(dp->ifindex);
		dp->xdp_mode = "none";
	} else {
		tc_uplink_detach(dp->ifindex);
		dp->xdp_mode = xdp_mode_name(dp->ifindex);
	}
	dp->mode = mode;
	hc_log(HC_LOG_INFO, "node ports on %s by %s%s%s%s%s", dp->iface,
	       mode == HC_DP_MODE_TC ? "TC ingress" : "XDP in ",
	       mode == HC_DP_MODE_TC ? "" : dp->xdp_mode, mode == HC_DP_MODE_TC ? "" : " mode",
	       want == HC_DP_MODE_AUTO && why[0] ? ": " : "",
	       want == HC_DP_MODE_AUTO ? why : "");
	return 0;
}

int hc_dp_uplink_cleanup(const char *pin_dir, int ifindex, struct hc_err *err)
{
	char pin[512];
	int fd, rc = 0;

	xdp_link_pin_path(pin_dir, pin, sizeof(pin));
	fd = bpf_obj_get(pin);
	if (fd >= 0) {
		if (bpf_link_detach(fd) < 0)
			rc = hc_err_set(err, -errno, "cannot detach the XDP link %s: %s", pin,
					strerror(errno));
		close(fd);
	}
	if (ifindex > 0) {
		xdp_detach_ours(ifindex);
		tc_uplink_detach(ifindex);
	}
	return rc;
}
