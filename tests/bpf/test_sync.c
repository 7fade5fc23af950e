/* hc_dpmaps_sync, the static entries and the egress policy's maps against real BPF maps: the XDP
 * object is loaded with its maps pinned in a scratch directory of bpffs,
 * then opened through the pins as the CLI and the agent do. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <unistd.h>

#include <cmocka.h>

#include "dataplane/dataplane.h"
#include "hc_xdp.skel.h"

struct fixture {
	char pin_dir[128];
	struct hc_xdp *skel;
	struct hc_dpmaps *maps;
};

static int silent(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level, (void)fmt, (void)ap;
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct statfs st;
	struct hc_err err;

	if (!f)
		return -1;
	libbpf_set_print(silent);
	/* A fresh machine may have no bpffs yet (the agent mounts it when it
	 * first starts): mount it as the agent would. */
	if ((statfs("/sys/fs/bpf", &st) < 0 || st.f_type != BPF_FS_MAGIC) &&
	    mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") < 0) {
		fprintf(stderr, "# cannot mount bpffs on /sys/fs/bpf: %s\n", strerror(errno));
		free(f);
		return -1;
	}
	snprintf(f->pin_dir, sizeof(f->pin_dir), "/sys/fs/bpf/hc-test-sync-%d", (int)getpid());
	if (mkdir(f->pin_dir, 0700) < 0) {
		free(f);
		return -1;
	}
	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = f->pin_dir);
	f->skel = hc_xdp__open_opts(&opts);
	if (!f->skel || hc_xdp__load(f->skel)) {
		hc_xdp__destroy(f->skel);
		hc_dataplane_cleanup(f->pin_dir, NULL, NULL);
		free(f);
		return -1;
	}
	f->maps = hc_dpmaps_open(f->pin_dir, &err);
	if (!f->maps) {
		fprintf(stderr, "# %s\n", err.msg);
		hc_xdp__destroy(f->skel);
		hc_dataplane_cleanup(f->pin_dir, NULL, NULL);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	hc_dpmaps_close(f->maps);
	hc_xdp__destroy(f->skel);
	/* Removes the pins and the directory: nothing is left on bpffs. */
	assert_int_equal(hc_dataplane_cleanup(f->pin_dir, NULL, NULL), 0);
	assert_int_equal(access(f->pin_dir, F_OK), -1);
	free(f);
	return 0;
}

static int map_fd(struct fixture *f, const char *name)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", f->pin_dir, name);
	fd = bpf_obj_get(path);
	assert_true(fd >= 0);
	return fd;
}

static size_t count(int fd, size_t ksize)
{
	char key[256], next[256];
	void *prev = NULL;
	size_t n = 0;

	while (bpf_map_get_next_key(fd, prev, next) == 0) {
		memcpy(key, next, ksize);
		prev = key;
		n++;
	}
	return n;
}

static void make_route(struct hc_dp_route *r, unsigned i, uint16_t backend_port)
{
	char host[64];

	memset(r, 0, sizeof(*r));
	snprintf(host, sizeof(host), "w%05u.example.com", i);
	assert_int_equal(hc_dp_route_key_init(&r->key, host, 443), 0);
	r->val.backend.family = HC_AF_INET;
	r->val.backend.ip4 = htonl(0xc0a87f00u + (i % 250) + 2);
	r->val.port = backend_port;
	snprintf(r->val.node, sizeof(r->val.node), "node-%u", i % 7);
}

static void make_service(struct hc_dp_service *s, unsigned i, uint16_t backend_port)
{
	memset(s, 0, sizeof(*s));
	s->key.port = (uint16_t)(30000 + i);
	s->key.proto = i % 2 ? IPPROTO_UDP : IPPROTO_TCP;
	s->val.count = 1;
	s->val.backends[0].addr.family = HC_AF_INET;
	s->val.backends[0].addr.ip4 = htonl(0xc0a87f00u + (i % 250) + 2);
	s->val.backends[0].port = backend_port;
}

/* From empty: everything is an add; a second identical sync changes nothing. */
static void test_sync_from_empty_then_idempotent(void **state)
{
	struct fixture *f = *state;
	enum { N = 1000 };
	struct hc_dp_route *routes = calloc(N, sizeof(*routes));
	struct hc_dp_service *services = calloc(N, sizeof(*services));
	struct hc_dp_desired want = {routes, N, services, N};
	struct hc_dp_sync_report rep;

	for (unsigned i = 0; i < N; i++) {
		make_route(&routes[i], i, 8080);
		make_service(&services[i], i, 80);
	}
	assert_int_equal(hc_dpmaps_sync(f->maps, &want, &rep), 0);
	assert_int_equal(rep.routes.added, N);
	assert_int_equal(rep.services.added, N);
	assert_int_equal(rep.routes.deleted + rep.routes.updated, 0);
	assert_int_equal(count(map_fd(f, HC_MAP_ROUTES), sizeof(struct hc_route_key)), N);

	assert_int_equal(hc_dpmaps_sync(f->maps, &want, &rep), 0);
	assert_int_equal(rep.routes.unchanged, N);
	assert_int_equal(rep.services.unchanged, N);
	assert_int_equal(rep.routes.added + rep.routes.updated + rep.routes.deleted, 0);
	free(routes);
	free(services);
}

/* A diff touches exactly the changed entries; static ones survive and win. */
static void test_sync_diff_and_static_entries(void **state)
{
	struct fixture *f = *state;
	enum { N = 200 };
	struct hc_dp_route *routes = calloc(N + 5, sizeof(*routes));
	struct hc_dp_desired want = {routes, N, NULL, 0};
	struct hc_dp_sync_report rep;
	struct hc_ipaddr ext = {.family = HC_AF_INET, .ip4 = htonl(0x0a000005)};
	struct hc_err err;
	struct hc_route_key key;
	struct hc_route_val val;
	int fd = map_fd(f, HC_MAP_ROUTES);

	for (unsigned i = 0; i < N; i++)
		make_route(&routes[i], i, 8080);
	assert_int_equal(hc_dpmaps_sync(f->maps, &want, &rep), 0);

	/* An operator's static route, one of them on a key the cluster wants. */
	assert_int_equal(hc_dpmaps_route_add_static(f->maps, "ext.example.com", 443, &ext, 8443, 0, &err), 0);
	assert_int_equal(hc_dpmaps_route_add_static(f->maps, "w00003.example.com", 443, &ext, 9443, 0, &err), 0);

	/* 10 updated, 5 removed (the last 5), 5 new, and a change to the
	 * entry the operator holds statically, which must not go through. */
	for (unsigned i = 0; i < 10; i++)
		routes[i * 7].val.port = 9090;
	routes[3].val.port = 7777;
	for (unsigned i = 0; i < 5; i++)
		make_route(&routes[N - 5 + i], 1000 + i, 8080);
	assert_int_equal(hc_dpmaps_sync(f->maps, &want, &rep), 0);
	assert_int_equal(rep.routes.added, 5);
	assert_int_equal(rep.routes.deleted, 5);
	/* routes[0], [7], [14]... but w00003 is not among them: 10 updates */
	assert_int_equal(rep.routes.updated, 10);
	assert_int_equal(rep.routes.static_kept, 1);
	assert_int_equal(rep.routes.unchanged, N - 5 - 10 - 1);
	assert_int_equal(count(fd, sizeof(key)), N + 1);

	assert_int_equal(hc_dp_route_key_init(&key, "ext.example.com", 443), 0);
	assert_int_equal(bpf_map_lookup_elem(fd, &key, &val), 0);
	assert_true(val.flags & HC_ROUTE_F_STATIC);
	assert_int_equal(hc_dp_route_key_init(&key, "W00003.Example.com", 443), 0);
	assert_int_equal(bpf_map_lookup_elem(fd, &key, &val), 0);
	assert_int_equal(val.port, 9443);

	/* An empty desired set removes every cluster entry, no static one. */
	want.n_routes = 0;
	assert_int_equal(hc_dpmaps_sync(f->maps, &want, &rep), 0);
	assert_int_equal(rep.routes.deleted, N - 1);
	assert_int_equal(count(fd, sizeof(key)), 2);

	/* Static routes are removed only on request; cluster ones are refused. */
	assert_int_equal(hc_dpmaps_route_del_static(f->maps, "ext.example.com", 443, &err), 0);
	assert_int_equal(hc_dpmaps_route_del_static(f->maps, "ext.example.com", 443, &err), -ENOENT);
	make_route(&routes[0], 0, 8080);
	want.n_routes = 1;
	assert_int_equal(hc_dpmaps_sync(f->maps, &want, &rep), 0);
	assert_int_equal(hc_dpmaps_route_del_static(f->maps, "w00000.example.com", 443, &err), -EPERM);
	assert_non_null(strstr(err.msg, "belongs to the cluster"));

	/* The static bit is not the cluster's to set. */
	routes[0].val.flags = HC_ROUTE_F_STATIC;
	assert_int_equal(hc_dpmaps_sync(f->maps, &want, &rep), -EINVAL);
	close(fd);
	free(routes);
}

static void test_static_services(void **state)
{
	struct fixture *f = *state;
	struct hc_ipaddr a = {.family = HC_AF_INET, .ip4 = htonl(0x0a000001)};
	struct hc_ipaddr b = {.family = HC_AF_INET, .ip4 = htonl(0x0a000002)};
	struct hc_service_key key = {.port = 30500, .proto = IPPROTO_TCP};
	struct hc_service_val val;
	struct hc_dp_service cluster;
	struct hc_dp_desired want = {NULL, 0, &cluster, 1};
	struct hc_dp_sync_report rep;
	struct hc_err err;
	int fd = map_fd(f, HC_MAP_SERVICES);

	assert_int_equal(hc_dpmaps_service_add_static(f->maps, IPPROTO_TCP, 30500, &a, 80, &err), 0);
	assert_int_equal(hc_dpmaps_service_add_static(f->maps, IPPROTO_TCP, 30500, &b, 80, &err), 0);
	/* the same backend twice is one backend */
	assert_int_equal(hc_dpmaps_service_add_static(f->maps, IPPROTO_TCP, 30500, &b, 80, &err), 0);
	assert_int_equal(bpf_map_lookup_elem(fd, &key, &val), 0);
	assert_int_equal(val.count, 2);

	/* A sync wanting the same node port leaves the static one alone. */
	make_service(&cluster, 500, 8080);
	assert_int_equal(cluster.key.port, 30500);
	assert_int_equal(hc_dpmaps_sync(f->maps, &want, &rep), 0);
	assert_int_equal(rep.services.static_kept, 1);
	assert_int_equal(bpf_map_lookup_elem(fd, &key, &val), 0);
	assert_int_equal(val.count, 2);

	assert_int_equal(hc_dpmaps_service_del_static(f->maps, IPPROTO_TCP, 30500, &a, 80, &err), 0);
	assert_int_equal(bpf_map_lookup_elem(fd, &key, &val), 0);
	assert_int_equal(val.count, 1);
	assert_int_equal(val.backends[0].addr.ip4, b.ip4);
	assert_int_equal(hc_dpmaps_service_del_static(f->maps, IPPROTO_TCP, 30500, &a, 80, &err), -ENOENT);
	assert_int_equal(hc_dpmaps_service_del_static(f->maps, IPPROTO_TCP, 30500, NULL, 0, &err), 0);
	assert_int_equal(bpf_map_lookup_elem(fd, &key, &val), -ENOENT);
	close(fd);
}

static void test_route_key_validation(void **state)
{
	struct hc_route_key key;
	char long_host[200];

	(void)state;
	assert_int_equal(hc_dp_route_key_init(&key, "App.Example.COM", 80), 0);
	assert_string_equal(key.host, "app.example.com");
	assert_int_equal(hc_dp_route_key_init(&key, "", 80), -EINVAL);
	assert_int_equal(hc_dp_route_key_init(&key, NULL, 80), -EINVAL);
	assert_int_equal(hc_dp_route_key_init(&key, "a b", 80), -EINVAL);
	assert_int_equal(hc_dp_route_key_init(&key, "../etc/passwd", 80), -EINVAL);
	memset(long_host, 'a', sizeof(long_host) - 1);
	long_host[sizeof(long_host) - 1] = '\0';
	assert_int_equal(hc_dp_route_key_init(&key, long_host, 80), -EINVAL);
}

static void test_snapshot_decodes(void **state)
{
	struct fixture *f = *state;
	struct hc_ipaddr a = {.family = HC_AF_INET, .ip4 = htonl(0x0a000001)};
	struct hc_dp_snapshot snap;
	struct hc_err err;

	assert_int_equal(hc_dpmaps_route_add_static(f->maps, "b.example", 80, &a, 8080, 0, &err), 0);
	assert_int_equal(hc_dpmaps_route_add_static(f->maps, "a.example", 80, &a, 8080, 0, &err), 0);
	assert_int_equal(hc_dpmaps_snapshot(f->maps, &snap), 0);
	assert_true(snap.n_routes >= 2);
	for (size_t i = 1; i < snap.n_routes; i++)
		assert_true(strcmp(snap.routes[i - 1].key.host, snap.routes[i].key.host) <= 0);
	for (unsigned r = 0; r < HC_DROP_REASONS; r++)
		assert_int_equal(snap.drops[r], 0);
	hc_dp_snapshot_fini(&snap);
	assert_string_equal(hc_dp_drop_reason_name(HC_DROP_ISOLATION), "isolation");
	assert_string_equal(hc_dp_drop_reason_name(999), "unknown");
}

/* ---- the egress policy's maps ---- */

static void test_egress_rule_parse(void **state)
{
	static const struct {
		const char *text, *net;
		uint8_t prefix;
		bool any;
		uint16_t lo, hi;
		uint8_t proto;
	} good[] = {
		{ "10.0.0.0/8", "10.0.0.0", 8, true, 0, 0, 0 },
		{ "10.0.0.5", "10.0.0.5", 32, true, 0, 0, 0 },
		{ "10.0.0.5:5432", "10.0.0.5", 32, false, 5432, 5432, 0 },
		{ "10.1.0.0/16:8000-8099/tcp", "10.1.0.0", 16, false, 8000, 8099, IPPROTO_TCP },
		{ "169.254.169.253:53/udp", "169.254.169.253", 32, false, 53, 53, IPPROTO_UDP },
		{ "2001:db8::/32", "2001:db8::", 32, true, 0, 0, 0 },
		{ "[2001:db8::1]:443/tcp", "2001:db8::1", 128, false, 443, 443, IPPROTO_TCP },
		{ "[fd00::/8]:1-65535", "fd00::", 8, false, 1, 65535, 0 },
		{ "0.0.0.0/0:443", "0.0.0.0", 0, false, 443, 443, 0 },
		{ "[2001:db8::1]", "2001:db8::1", 128, true, 0, 0, 0 },
	};
	static const char *const bad[] = {
		"", "10.0.0.1/8", "10.0.0.0/33", "10.0.0.0/8:", "10.0.0.0/8:0", "10.0.0.5:70000",
		"10.0.0.5:90-80", "10.0.0.5:53/sctp", "10.0.0.5:53/", "host.example:80",
		"[2001:db8::1]443", "[10.0.0.1]:80x", "2001:db8::/129", "10.0.0.5:5x",
	};
	struct hc_dp_egress_rule r;
	struct hc_ipaddr want;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (hc_dp_egress_rule_parse(good[i].text, &r) != 0)
			fail_msg("%s: refused", good[i].text);
		assert_int_equal(hc_dp_ipaddr_parse(good[i].net, &want), 0);
		assert_memory_equal(&r.net, &want, sizeof(want));
		assert_int_equal(r.prefix, good[i].prefix);
		assert_int_equal(r.any, good[i].any);
		assert_int_equal(r.ports.lo, good[i].lo);
		assert_int_equal(r.ports.hi, good[i].hi);
		assert_int_equal(r.ports.proto, good[i].proto);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (hc_dp_egress_rule_parse(bad[i], &r) != -EINVAL)
			fail_msg("\"%s\": accepted", bad[i]);
}

/* The trie's longest match must carry the rules of the prefixes covering
 * it; a second write replaces the first whole. */
static void test_egress_allow_folds_covering_rules(void **state)
{
	static const char *const texts[] = { "10.0.0.0/8:443/tcp", "10.1.0.0/16:80",
					     "10.1.2.3", "[2001:db8::/32]:53/udp" };
	struct fixture *f = *state;
	struct hc_dp_egress_rule rules[HC_EGRESS_PORTS_MAX + 1];
	struct hc_egress_key key = { 0 };
	struct hc_egress_val val;
	struct hc_dp_snapshot snap;
	struct hc_err err;
	char text[256];
	int fd = map_fd(f, HC_MAP_EGRESS_ALLOW);

	for (size_t i = 0; i < 4; i++)
		assert_int_equal(hc_dp_egress_rule_parse(texts[i], &rules[i]), 0);
	assert_int_equal(hc_dpmaps_set_egress_allow(f->maps, rules, 4, &err), 0);
	key.prefixlen = 64;
	key.family = HC_AF_INET;
	memcpy(key.addr, (uint8_t[]){ 10, 1, 5, 5 }, 4);
	assert_int_equal(bpf_map_lookup_elem(fd, &key, &val), 0);
	assert_int_equal(val.any, 0);
	assert_int_equal(val.count, 2); /* the /16's port 80 and the /8's 443/tcp */
	memcpy(key.addr, (uint8_t[]){ 10, 1, 2, 3 }, 4);
	assert_int_equal(bpf_map_lookup_elem(fd, &key, &val), 0);
	assert_int_equal(val.any, 1);
	memcpy(key.addr, (uint8_t[]){ 10, 9, 0, 1 }, 4);
	assert_int_equal(bpf_map_lookup_elem(fd, &key, &val), 0);
	assert_int_equal(val.count, 1);
	assert_int_equal(val.ports[0].lo, 443);
	memcpy(key.addr, (uint8_t[]){ 11, 0, 0, 1 }, 4);
	assert_int_not_equal(bpf_map_lookup_elem(fd, &key, &val), 0);

	assert_int_equal(hc_dpmaps_snapshot(f->maps, &snap), 0);
	assert_int_equal(snap.n_allow, 4);
	for (size_t i = 0; i < snap.n_allow; i++) {
		hc_dp_egress_format(&snap.allow[i].key, &snap.allow[i].val, text, sizeof(text));
		if (snap.allow[i].key.family == HC_AF_INET6)
			assert_string_equal(text, "[2001:db8::/32]:53/udp");
	}
	hc_dp_snapshot_fini(&snap);

	/* Rewritten whole: only the last rule is left. */
	assert_int_equal(hc_dpmaps_set_egress_allow(f->maps, &rules[2], 1, &err), 0);
	assert_int_equal(count(fd, sizeof(key)), 1);
	/* Nine ranges on one prefix do not fit. */
	for (size_t i = 0; i < HC_EGRESS_PORTS_MAX + 1; i++) {
		snprintf(text, sizeof(text), "10.0.0.0/8:%zu", 1000 + i);
		assert_int_equal(hc_dp_egress_rule_parse(text, &rules[i]), 0);
	}
	assert_int_equal(hc_dpmaps_set_egress_allow(f->maps, rules, HC_EGRESS_PORTS_MAX + 1, &err),
			 -E2BIG);
	close(fd);
}

/* Members' addresses and this node's share hc_members under two flags; each
 * writer changes only its own. */
static void test_members_keep_local_addresses(void **state)
{
	struct fixture *f = *state;
	struct hc_ipaddr a, b, c, v6;
	struct hc_dp_snapshot snap;
	uint8_t local = HC_MEMBER_F_LOCAL, got;
	int fd = map_fd(f, HC_MAP_MEMBERS);

	hc_dp_ipaddr_parse("198.51.100.1", &a);
	hc_dp_ipaddr_parse("198.51.100.2", &b);
	hc_dp_ipaddr_parse("198.51.100.3", &c);
	hc_dp_ipaddr_parse("2001:db8::3", &v6);
	/* As the loader writes this node's addresses. */
	assert_int_equal(bpf_map_update_elem(fd, &a, &local, BPF_ANY), 0);
	assert_int_equal(bpf_map_update_elem(fd, &b, &local, BPF_ANY), 0);

	assert_int_equal(hc_dpmaps_set_members(f->maps, (struct hc_ipaddr[]){ b, c, v6 }, 3), 0);
	assert_int_equal(count(fd, sizeof(a)), 4);
	assert_int_equal(bpf_map_lookup_elem(fd, &b, &got), 0);
	assert_int_equal(got, HC_MEMBER_F_LOCAL | HC_MEMBER_F_PEER);
	assert_int_equal(bpf_map_lookup_elem(fd, &v6, &got), 0);
	assert_int_equal(got, HC_MEMBER_F_PEER);
	assert_int_equal(hc_dpmaps_snapshot(f->maps, &snap), 0);
	assert_int_equal(snap.member_addrs, 3);
	assert_int_equal(snap.local_addrs, 2);
	hc_dp_snapshot_fini(&snap);

	/* A member left: its address goes, this node's stay. */
	assert_int_equal(hc_dpmaps_set_members(f->maps, (struct hc_ipaddr[]){ v6 }, 1), 0);
	assert_int_equal(count(fd, sizeof(a)), 3);
	assert_int_equal(bpf_map_lookup_elem(fd, &b, &got), 0);
	assert_int_equal(got, HC_MEMBER_F_LOCAL);
	assert_int_not_equal(bpf_map_lookup_elem(fd, &c, &got), 0);
	assert_int_equal(hc_dpmaps_set_members(f->maps, NULL, 0), 0);
	assert_int_equal(count(fd, sizeof(a)), 2);
	close(fd);
}

/* hc_proxy_ports follows the ports hc_routes names, after syncs and static
 * route changes alike. */
static void test_proxy_ports_follow_routes(void **state)
{
	struct fixture *f = *state;
	struct hc_dp_route routes[3];
	struct hc_dp_desired want = { routes, 3, NULL, 0 };
	struct hc_ipaddr a = { .family = HC_AF_INET, .ip4 = htonl(0x0a000001) };
	struct hc_dp_snapshot snap;
	struct hc_err err;

	make_route(&routes[0], 0, 8080);
	make_route(&routes[1], 1, 8080);
	make_route(&routes[2], 2, 8080);
	routes[1].key.port = 8443;
	routes[2].key.port = 0; /* any port the proxy serves: names none */
	assert_int_equal(hc_dpmaps_sync(f->maps, &want, NULL), 0);
	assert_int_equal(hc_dpmaps_route_add_static(f->maps, "s.example", 9443, &a, 80, 0, &err), 0);
	assert_int_equal(hc_dpmaps_snapshot(f->maps, &snap), 0);
	assert_int_equal(snap.n_proxy_ports, 3);
	assert_int_equal(snap.proxy_ports[0], 443);
	assert_int_equal(snap.proxy_ports[1], 8443);
	assert_int_equal(snap.proxy_ports[2], 9443);
	hc_dp_snapshot_fini(&snap);

	want.n_routes = 1;
	assert_int_equal(hc_dpmaps_sync(f->maps, &want, NULL), 0);
	assert_int_equal(hc_dpmaps_route_del_static(f->maps, "s.example", 9443, &err), 0);
	assert_int_equal(hc_dpmaps_snapshot(f->maps, &snap), 0);
	assert_int_equal(snap.n_proxy_ports, 1);
	assert_int_equal(snap.proxy_ports[0], 443);
	hc_dp_snapshot_fini(&snap);
}

static void test_open_without_pins_says_so(void **state)
{
	struct hc_err err;

	(void)state;
	assert_null(hc_dpmaps_open("/sys/fs/bpf/hc-test-nothing-here", &err));
	assert_int_equal(errno, ENOENT);
	assert_non_null(strstr(err.msg, "no data plane pinned"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sync_from_empty_then_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_diff_and_static_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_static_services, setup, teardown),
		cmocka_unit_test(test_route_key_validation),
		cmocka_unit_test_setup_teardown(test_snapshot_decodes, setup, teardown),
		cmocka_unit_test(test_open_without_pins_says_so),
		cmocka_unit_test(test_egress_rule_parse),
		cmocka_unit_test_setup_teardown(test_egress_allow_folds_covering_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_members_keep_local_addresses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_proxy_ports_follow_routes, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
