/* TC programs (clsact ingress) inside a microVM workload's sandbox: they
 * join the VM's tap to the sandbox's end of the CNI veth, as
 * tc-redirect-tap does, so that the VM is the workload as the rest of the
 * data plane sees it: everything arriving on the veth goes to the VM,
 * everything the VM sends leaves by the veth, whose host side keeps the
 * workload's TC programs (isolation, counters, node-port NAT).
 *
 * The VM uses the veth's MAC and address, so frames pass unchanged. One
 * object is loaded per VM with the two ifindexes of its sandbox (ifindexes
 * are per network namespace); the TC filters keep it alive, nothing is
 * pinned, and it goes with the sandbox's namespace. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

/* Set by the loader before load (agent/dataplane/tap.c). */
const volatile __u32 hc_tap_ifindex = 0;  /* the VM's tap */
const volatile __u32 hc_veth_ifindex = 0; /* the sandbox's end of the CNI veth */

/* On the veth: the frame is the VM's. */
SEC("tc")
int hc_tap_from_veth(struct __sk_buff *skb)
{
	return bpf_redirect(hc_tap_ifindex, 0);
}

/* On the tap: what the VM sends leaves by the veth. */
SEC("tc")
int hc_tap_from_vm(struct __sk_buff *skb)
{
	return bpf_redirect(hc_veth_ifindex, 0);
}

char LICENSE[] SEC("license") = "GPL";
