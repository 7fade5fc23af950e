/* A microVM's tap joined to its sandbox's veth (bpf/hc_tap.bpf.c). */
#include <errno.h>
#include <net/if.h>
#include <string.h>

#include <bpf/libbpf.h>

#define HC_LOG_MODULE "dataplane"
#include "base/base.h"
#include "dataplane.h"
#include "dataplane_int.h"
#include "hc_tap.skel.h"
#include "log/log.h"

/* Loads a copy of the programs for these two devices and attaches each to
 * its device's ingress; the filters hold the programs. */
static int join(const char *veth, const char *tap, struct hc_err *err)
{
	unsigned veth_ifindex = if_nametoindex(veth), tap_ifindex = if_nametoindex(tap);
	struct hc_tap *skel;
	int r;

	if (!veth_ifindex || !tap_ifindex)
		return hc_err_set(err, -ENODEV, "no %s or %s in the sandbox", veth, tap);
	skel = hc_tap__open();
	if (!skel)
		return hc_err_set(err, -errno, "opening the tap programs: %s", strerror(errno));
	skel->rodata->hc_tap_ifindex = tap_ifindex;
	skel->rodata->hc_veth_ifindex = veth_ifindex;
	r = hc_tap__load(skel);
	if (r == 0)
		r = hc_dp_tc_attach_one((int)tap_ifindex,
					bpf_program__fd(skel->progs.hc_tap_from_vm), BPF_TC_INGRESS,
					false);
	if (r == 0)
		r = hc_dp_tc_attach_one((int)veth_ifindex,
					bpf_program__fd(skel->progs.hc_tap_from_veth),
					BPF_TC_INGRESS, false);
	hc_tap__destroy(skel);
	return r < 0 ? hc_err_set(err, r, "attaching the tap programs: %s", strerror(-r)) : 0;
}

int hc_dataplane_tap_join(const char *netns, const char *veth, const char *tap,
			  struct hc_err *err)
{
	int saved, r;

	r = hc_netns_enter(netns, &saved);
	if (r < 0)
		return hc_err_set(err, r, "entering %s: %s", netns, strerror(-r));
	r = join(veth, tap, err);
	if (hc_netns_leave(saved) < 0)
		hc_log(HC_LOG_ERROR, "cannot leave the network namespace %s", netns);
	return r;
}
