/* The network namespace and map helpers of tests/lib/bpfnet.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "bpfnet.h"

/* ip(8) commands building the topology of bpfnet.h, in order. */
static const char *const topology[] = {
	"ip link set lo up",
	"ip link add " HC_BPFNET_UPLINK " address " HC_BPFNET_UPLINK_MAC
	" mtu 9000 type veth peer name hc-up1 address 02:00:00:00:00:02 mtu 9000",
	"ip link add " HC_BPFNET_WL " address " HC_BPFNET_WL_MAC
	" mtu 9000 type veth peer name hc-wl1 address 02:00:00:00:01:02 mtu 9000",
	"ip link set hc-up1 up",
	"ip link set hc-wl1 up",
	"ip link set " HC_BPFNET_UPLINK " up",
	"ip link set " HC_BPFNET_WL " up",
	"ip addr add " HC_BPFNET_NODE4 "/24 dev " HC_BPFNET_UPLINK,
	"ip addr add " HC_BPFNET_NODE6 "/64 dev " HC_BPFNET_UPLINK " nodad",
	"ip addr add " HC_BPFNET_WL_GW4 "/24 dev " HC_BPFNET_WL,
	"ip addr add " HC_BPFNET_WL_GW6 "/64 dev " HC_BPFNET_WL " nodad",
	"ip neigh add 198.51.100.254 lladdr " HC_BPFNET_GW_MAC " dev " HC_BPFNET_UPLINK
	" nud permanent",
	"ip neigh add 2001:db8:100::fe lladdr " HC_BPFNET_GW_MAC " dev " HC_BPFNET_UPLINK
	" nud permanent",
	"ip route add 203.0.113.0/24 via 198.51.100.254 dev " HC_BPFNET_UPLINK,
	"ip -6 route add 2001:db8:203::/64 via 2001:db8:100::fe dev " HC_BPFNET_UPLINK,
	"ip neigh add 10.244.0.2 lladdr 02:00:00:00:02:02 dev " HC_BPFNET_WL " nud permanent",
	"ip neigh add 10.244.0.3 lladdr 02:00:00:00:02:03 dev " HC_BPFNET_WL " nud permanent",
	"ip neigh add 10.244.0.4 lladdr 02:00:00:00:02:04 dev " HC_BPFNET_WL " nud permanent",
	"ip neigh add 10.244.0.5 lladdr 02:00:00:00:02:05 dev " HC_BPFNET_WL " nud permanent",
	"ip neigh add fd00:244::2 lladdr 02:00:00:00:02:02 dev " HC_BPFNET_WL " nud permanent",
	"ip neigh add fd00:244::3 lladdr 02:00:00:00:02:03 dev " HC_BPFNET_WL " nud permanent",
};

/* bpf_fib_lookup answers FWD_DISABLED unless the ingress device forwards;
 * "all" also sets the default that devices created afterwards take. */
static const char *const sysctls[] = {
	"/proc/sys/net/ipv4/conf/all/forwarding",
	"/proc/sys/net/ipv6/conf/all/forwarding",
};

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;
	int err;

	if (fd < 0)
		return -errno;
	n = write(fd, text, strlen(text));
	err = n < 0 ? -errno : 0;
	close(fd);
	return err;
}

int hc_bpfnet_enter(struct hc_bpfnet *net, char *why, size_t why_len)
{
	int err;

	if (geteuid() != 0) {
		snprintf(why, why_len, "needs root (BPF programs, a network namespace)");
		return -EPERM;
	}
	if (unshare(CLONE_NEWNET) < 0) {
		err = -errno;
		snprintf(why, why_len, "unshare(CLONE_NEWNET): %s", strerror(-err));
		return err;
	}
	for (size_t i = 0; i < sizeof(sysctls) / sizeof(sysctls[0]); i++) {
		err = write_file(sysctls[i], "1");
		if (err) {
			snprintf(why, why_len, "writing %s: %s", sysctls[i], strerror(-err));
			return -EOPNOTSUPP;
		}
	}
	for (size_t i = 0; i < sizeof(topology) / sizeof(topology[0]); i++) {
		int rc = system(topology[i]);

		if (rc != 0) {
			snprintf(why, why_len, "`%s` failed (%s %d)", topology[i],
				 WIFEXITED(rc) ? "exit" : "status",
				 WIFEXITED(rc) ? WEXITSTATUS(rc) : rc);
			return -EOPNOTSUPP;
		}
	}
	net->uplink_ifindex = (int)if_nametoindex(HC_BPFNET_UPLINK);
	net->wl_ifindex = (int)if_nametoindex(HC_BPFNET_WL);
	if (!net->uplink_ifindex || !net->wl_ifindex) {
		snprintf(why, why_len, "the veths vanished after creation");
		return -EOPNOTSUPP;
	}
	return 0;
}

void hc_bpfnet_backend_mac(const char *addr, char out[18])
{
	const char *last = strrchr(addr, strchr(addr, ':') ? ':' : '.');
	unsigned long n = strtoul(last + 1, NULL, strchr(addr, ':') ? 16 : 10);

	snprintf(out, 18, "02:00:00:00:02:%02lx", n & 0xff);
}

int hc_bpfnet_addr(const char *text, struct hc_ipaddr *out)
{
	memset(out, 0, sizeof(*out));
	if (strchr(text, ':')) {
		out->family = HC_AF_INET6;
		return inet_pton(AF_INET6, text, out->ip6) == 1 ? 0 : -EINVAL;
	}
	out->family = HC_AF_INET;
	return inet_pton(AF_INET, text, &out->ip4) == 1 ? 0 : -EINVAL;
}

void hc_bpfnet_unpin(struct bpf_object *obj)
{
	struct bpf_map *map;

	bpf_object__for_each_map(map, obj)
		bpf_map__set_pin_path(map, NULL);
}

int hc_bpfnet_percpu_sum(int map_fd, const void *key, size_t words, uint64_t *out)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *vals;

	if (ncpu < 0)
		return ncpu;
	vals = calloc((size_t)ncpu * words, sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	if (bpf_map_lookup_elem(map_fd, key, vals) < 0) {
		int err = -errno;

		free(vals);
		return err;
	}
	memset(out, 0, words * sizeof(*out));
	for (int c = 0; c < ncpu; c++)
		for (size_t w = 0; w < words; w++)
			out[w] += vals[(size_t)c * words + w];
	free(vals);
	return 0;
}

int hc_bpfnet_percpu_zero(int map_fd, const void *key, size_t words)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *vals;
	int err;

	if (ncpu < 0)
		return ncpu;
	vals = calloc((size_t)ncpu * words, sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	err = bpf_map_update_elem(map_fd, key, vals, BPF_ANY) < 0 ? -errno : 0;
	free(vals);
	return err;
}

int hc_bpfnet_map_count(int map_fd, size_t key_size)
{
	uint8_t key[256], next[256];
	void *prev = NULL;
	int n = 0;

	if (key_size > sizeof(key))
		return -EINVAL;
	while (bpf_map_get_next_key(map_fd, prev, next) == 0) {
		memcpy(key, next, key_size);
		prev = key;
		n++;
	}
	return n;
}

int hc_bpfnet_map_clear(int map_fd, size_t key_size)
{
	uint8_t key[256];

	if (key_size > sizeof(key))
		return -EINVAL;
	/* Deleting while walking can restart a hash walk; take the first key
	 * each time instead. */
	while (bpf_map_get_next_key(map_fd, NULL, key) == 0) {
		if (bpf_map_delete_elem(map_fd, key) < 0)
			return -errno;
	}
	return 0;
}

int hc_bpfnet_share_maps(const struct bpf_object *from, struct bpf_object *to)
{
	struct bpf_map *map;
	int err;

	bpf_object__for_each_map(map, to) {
		struct bpf_map *shared = bpf_object__find_map_by_name(from, bpf_map__name(map));

		if (shared && (err = bpf_map__reuse_fd(map, bpf_map__fd(shared))))
			return err;
	}
	return 0;
}
