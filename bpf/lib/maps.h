/* The maps of the XDP and TC programs, declared once. Each is pinned by name
 * under the agent's pin directory (libbpf's pin_root_path), so every object
 * that declares one shares the same map, and the maps outlive the agent.
 * Key and value types live in include/hypercore/dataplane.h. */
#ifndef HC_BPF_MAPS_H
#define HC_BPF_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include <hypercore/dataplane.h>

/* (host key, port) -> backend. Written by the agent on every state broadcast
 * and by `hypercore routes add`; read by the L7 proxy (no program reads it). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HC_ROUTES_MAX);
	__type(key, struct hc_route_key);
	__type(value, struct hc_route_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hc_routes SEC(".maps");

/* (protocol, node port) -> backends. Written by the agent; read by XDP. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HC_SERVICES_MAX);
	__type(key, struct hc_service_key);
	__type(value, struct hc_service_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hc_services SEC(".maps");

/* NAT state of node-port flows, both directions. Written by XDP; read by
 * XDP (forward) and TC (reply). LRU: idle flows age out under pressure. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HC_CONNTRACK_MAX);
	__type(key, struct hc_ct_key);
	__type(value, struct hc_ct_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hc_conntrack SEC(".maps");

/* Host-side veth ifindex -> per-CPU traffic counters. Entries are created by
 * the agent with the workload; XDP and TC only add to existing ones. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, HC_WORKLOADS_MAX);
	__type(key, __u32);
	__type(value, struct hc_wl_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hc_wl_stats SEC(".maps");

/* Host-side veth ifindex -> workload. Written by the agent; read by TC. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HC_WORKLOADS_MAX);
	__type(key, __u32);
	__type(value, struct hc_wl_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hc_workloads SEC(".maps");

/* Host-side veth ifindex -> egress token bucket. Created by the agent, spent
 * by TC under the entry's spin lock. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HC_WORKLOADS_MAX);
	__type(key, __u32);
	__type(value, struct hc_wl_rate);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hc_wl_rate SEC(".maps");

/* The node's own addresses -> 1. Written by the agent (every 2 s); read by
 * XDP. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HC_HOST_ADDRS_MAX);
	__type(key, struct hc_ipaddr);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hc_host_addrs SEC(".maps");

/* Addresses of cluster members and of this node -> HC_MEMBER_F_*. Written
 * by the agent (member events; this node's addresses every 2 s); read by TC,
 * which keeps workloads off them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HC_MEMBER_ADDRS_MAX);
	__type(key, struct hc_ipaddr);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hc_members SEC(".maps");

/* The operator's exceptions for workload egress (--workload-allow-egress):
 * prefix -> ports. Written by the agent at start; read by TC. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, HC_EGRESS_ALLOW_MAX);
	__type(key, struct hc_egress_key);
	__type(value, struct hc_egress_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hc_egress_allow SEC(".maps");

/* The proxy's TCP ports, a bitmap. Written by the agent from hc_routes (every
 * 2 s and after each route sync); read by TC. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hc_port_bitmap);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hc_proxy_ports SEC(".maps");

/* Flows members or this node opened to workloads, as the replies travel ->
 * when. Written by TC (to the workload); read by TC (from it). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HC_WL_FLOWS_MAX);
	__type(key, struct hc_ct_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hc_wl_flows SEC(".maps");

/* Settings written once by the agent; read by TC. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hc_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hc_config SEC(".maps");

/* Reason code -> packets (per CPU). Written by XDP and TC; read by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HC_DROP_REASONS_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hc_drops SEC(".maps");

static __always_inline void hc_count_drop(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&hc_drops, &reason);

	if (n)
		*n += 1;
}

#endif /* HC_BPF_MAPS_H */
