/* The maps of the workload egress policy (bpf/lib/egress.h) from
 * userspace: the operator's allow rules (parsing, folding into the LPM trie
 * hc_egress_allow), the member and local addresses in hc_members, and the
 * proxy's ports in hc_proxy_ports. */
#define HC_LOG_MODULE "dataplane"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dataplane_int.h"
#include "log/log.h"

/* ---- --workload-allow-egress rules ---- */

static int parse_port_range(const char *text, struct hc_port_range *r)
{
	unsigned long lo, hi;
	char *end;

	errno = 0;
	lo = strtoul(text, &end, 10);
	if (errno || end == text || lo < 1 || lo > 65535)
		return -EINVAL;
	hi = lo;
	if (*end == '-') {
		const char *h = end + 1;

		hi = strtoul(h, &end, 10);
		if (errno || end == h || hi < lo || hi > 65535)
			return -EINVAL;
	}
	if (*end == '/') {
		if (strcmp(end + 1, "tcp") == 0)
			r->proto = IPPROTO_TCP;
		else if (strcmp(end + 1, "udp") == 0)
			r->proto = IPPROTO_UDP;
		else
			return -EINVAL;
	} else if (*end) {
		return -EINVAL;
	}
	r->lo = (__u16)lo;
	r->hi = (__u16)hi;
	return 0;
}

/* "ADDR[/N]" into out; host bits must be zero. */
static int parse_prefix(const char *text, struct hc_dp_egress_rule *out)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash, *end;
	unsigned long len;
	unsigned max;

	if (snprintf(buf, sizeof(buf), "%s", text) >= (int)sizeof(buf))
		return -EINVAL;
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	if (hc_dp_ipaddr_parse(buf, &out->net) < 0)
		return -EINVAL;
	max = out->net.family == HC_AF_INET ? 32 : 128;
	len = max;
	if (slash) {
		errno = 0;
		len = strtoul(slash + 1, &end, 10);
		if (errno || *end || end == slash + 1 || len > max)
			return -EINVAL;
	}
	for (unsigned bit = (unsigned)len; bit < max; bit++)
		if (out->net.ip6[bit / 8] & (0x80 >> (bit % 8)))
			return -EINVAL; /* 10.0.0.1/8: say 10.0.0.0/8 */
	out->prefix = (uint8_t)len;
	return 0;
}

int hc_dp_egress_rule_parse(const char *text, struct hc_dp_egress_rule *out)
{
	char buf[128];
	const char *net = buf, *ports = NULL;
	char *sep;

	memset(out, 0, sizeof(*out));
	if (!text || snprintf(buf, sizeof(buf), "%s", text) >= (int)sizeof(buf))
		return -EINVAL;
	if (buf[0] == '[') {
		sep = strchr(buf, ']');
		if (!sep || (sep[1] && sep[1] != ':'))
			return -EINVAL;
		*sep = '\0';
		net = buf + 1;
		ports = sep[1] ? sep + 2 : NULL;
	} else if (strchr(buf, ':') == strrchr(buf, ':') && (sep = strchr(buf, ':'))) {
		*sep = '\0'; /* IPv4 with a port; IPv6 without brackets has no port */
		ports = sep + 1;
	}
	if (parse_prefix(net, out) < 0)
		return -EINVAL;
	out->any = ports == NULL;
	return ports ? parse_port_range(ports, &out->ports) : 0;
}

static void format_range(const struct hc_port_range *r, char *buf, size_t len)
{
	const char *proto = r->proto == IPPROTO_TCP ? "/tcp" : r->proto == IPPROTO_UDP ? "/udp" : "";

	if (r->lo == r->hi)
		snprintf(buf, len, "%u%s", r->lo, proto);
	else
		snprintf(buf, len, "%u-%u%s", r->lo, r->hi, proto);
}

void hc_dp_egress_format(const struct hc_egress_key *key, const struct hc_egress_val *val,
			 char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?", range[24];
	bool v6 = key->family == HC_AF_INET6;
	size_t used;

	inet_ntop(v6 ? AF_INET6 : AF_INET, key->addr, ip, sizeof(ip));
	used = (size_t)snprintf(buf, len, "%s%s/%u%s", v6 && !val->any ? "[" : "", ip,
				key->prefixlen - 32, v6 && !val->any ? "]" : "");
	for (unsigned i = 0; !val->any && i < val->count && i < HC_EGRESS_PORTS_MAX && used < len;
	     i++) {
		format_range(&val->ports[i], range, sizeof(range));
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "," : ":", range);
	}
}

/* Does rule r's prefix cover (contain) the prefix of rule t? */
static bool covers(const struct hc_dp_egress_rule *r, const struct hc_dp_egress_rule *t)
{
	if (r->net.family != t->net.family || r->prefix > t->prefix)
		return false;
	for (unsigned bit = 0; bit < r->prefix; bit++) {
		uint8_t m = (uint8_t)(0x80 >> (bit % 8));

		if ((r->net.ip6[bit / 8] & m) != (t->net.ip6[bit / 8] & m))
			return false;
	}
	return true;
}

/* The trie answers with the longest matching prefix alone, so each prefix
 * carries its own rules and those of every shorter prefix covering it. */
static int fold(const struct hc_dp_egress_rule *rules, size_t n, size_t at,
		struct hc_egress_key *key, struct hc_egress_val *val, struct hc_err *err)
{
	const struct hc_dp_egress_rule *t = &rules[at];

	memset(key, 0, sizeof(*key));
	memset(val, 0, sizeof(*val));
	key->prefixlen = 32 + t->prefix;
	key->family = t->net.family;
	memcpy(key->addr, t->net.ip6, 16);
	for (size_t i = 0; i < n; i++) {
		if (!covers(&rules[i], t))
			continue;
		if (rules[i].any) {
			val->any = 1;
			continue;
		}
		if (val->count >= HC_EGRESS_PORTS_MAX)
			return hc_err_set(err, -E2BIG,
					  "--workload-allow-egress: more than %d port ranges apply "
					  "to one prefix", HC_EGRESS_PORTS_MAX);
		val->ports[val->count++] = rules[i].ports;
	}
	if (val->any)
		val->count = 0;
	return 0;
}

int hc_dpmaps_set_egress_allow(struct hc_dpmaps *m, const struct hc_dp_egress_rule *rules,
			       size_t n, struct hc_err *err)
{
	struct hc_egress_key key, next;
	struct hc_egress_val val;
	int rc;

	if (n > HC_EGRESS_ALLOW_MAX)
		return hc_err_set(err, -E2BIG, "at most %d --workload-allow-egress rules",
				  HC_EGRESS_ALLOW_MAX);
	/* Written whole at start: what an earlier agent allowed goes first.
	 * Deleting the key just read makes the trie start over. */
	while (bpf_map_get_next_key(m->egress_allow, NULL, &next) == 0)
		if (bpf_map_delete_elem(m->egress_allow, &next) < 0)
			return hc_err_set(err, -errno, "cannot clear %s: %s", HC_MAP_EGRESS_ALLOW,
					  strerror(errno));
	for (size_t i = 0; i < n; i++) {
		rc = fold(rules, n, i, &key, &val, err);
		if (rc)
			return rc;
		if (bpf_map_update_elem(m->egress_allow, &key, &val, BPF_ANY) < 0)
			return hc_err_set(err, -errno, "cannot write %s: %s", HC_MAP_EGRESS_ALLOW,
					  strerror(errno));
	}
	return 0;
}

/* ---- hc_members ---- */

static bool addr_in(const struct hc_ipaddr *a, const struct hc_ipaddr *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (memcmp(&set[i], a, sizeof(*a)) == 0)
			return true;
	return false;
}

int hc_dp_members_set_flag(struct hc_dpmaps *m, __u8 flag, const struct hc_ipaddr *addrs,
			   size_t n)
{
	struct hc_dp_map_dump d;
	int rc = 0;

	rc = hc_dp_map_dump_all(m->members, sizeof(struct hc_ipaddr), sizeof(__u8), &d);
	if (rc)
		return rc;
	/* Entries that have the flag and should not, or lack it and should. */
	for (size_t i = 0; i < d.n; i++) {
		const struct hc_ipaddr *a = &((const struct hc_ipaddr *)d.keys)[i];
		__u8 have = ((const __u8 *)d.vals)[i], want = have & (__u8)~flag;

		if (addr_in(a, addrs, n))
			want |= flag;
		if (want == have)
			continue;
		if (!want ? bpf_map_delete_elem(m->members, a) < 0 && errno != ENOENT
			  : bpf_map_update_elem(m->members, a, &want, BPF_ANY) < 0)
			rc = rc ? rc : -errno;
	}
	for (size_t i = 0; i < n; i++) {
		__u8 have;

		if (addrs[i].family != HC_AF_INET && addrs[i].family != HC_AF_INET6)
			continue;
		if (bpf_map_lookup_elem(m->members, &addrs[i], &have) == 0)
			continue; /* handled above */
		if (bpf_map_update_elem(m->members, &addrs[i], &flag, BPF_ANY) < 0)
			rc = rc ? rc : -errno;
	}
	hc_dp_map_dump_fini(&d);
	return rc;
}

int hc_dpmaps_set_members(struct hc_dpmaps *m, const struct hc_ipaddr *addrs, size_t n)
{
	return hc_dp_members_set_flag(m, HC_MEMBER_F_PEER, addrs, n);
}

/* ---- hc_proxy_ports ---- */

int hc_dpmaps_sync_proxy_ports(struct hc_dpmaps *m)
{
	struct hc_port_bitmap *want = calloc(2, sizeof(*want)), *have = want + 1;
	struct hc_dp_map_dump d;
	__u32 zero = 0;
	int rc;

	if (!want)
		return -ENOMEM;
	rc = hc_dp_map_dump_all(m->routes, sizeof(struct hc_route_key), sizeof(struct hc_route_val),
				&d);
	if (rc)
		goto out;
	for (size_t i = 0; i < d.n; i++) {
		__u16 port = ((const struct hc_route_key *)d.keys)[i].port;

		if (port) /* 0: any port the proxy serves, which names none */
			want->bits[port / 64] |= 1ull << (port % 64);
	}
	hc_dp_map_dump_fini(&d);
	if (bpf_map_lookup_elem(m->proxy_ports, &zero, have) == 0 &&
	    memcmp(want, have, sizeof(*want)) == 0)
		goto out;
	if (bpf_map_update_elem(m->proxy_ports, &zero, want, BPF_ANY) < 0)
		rc = -errno;
out:
	free(want);
	return rc;
}
