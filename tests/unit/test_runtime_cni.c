/* The workload subnet against the node's routes, CNI lease collection and
 * the embedded containerd's directories (no root, no containerd). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/runtime.h"

/* /proc/net/route as the kernel prints it (addresses little-endian words) */
#define ROUTE_HEADER                                                                        \
	"Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
#define ROUTES                                                                              \
	ROUTE_HEADER                                                                        \
	"eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"                  \
	"eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"                  \
	"cni-podman0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"

static void test_subnet_parse(void **state)
{
	uint32_t net;
	unsigned prefix;
	static const char *const bad[] = { "10.88.0.1/16", "10.88.0.0", "10.88.0.0/7",
					   "10.88.0.0/29", "10.88.0.0/16x", "300.1.1.0/24", "" };

	(void)state;
	assert_int_equal(hc_runtime_subnet_parse(HC_WORKLOAD_SUBNET, &net, &prefix), 0);
	assert_int_equal(net, HC_WORKLOAD_NET);
	assert_int_equal(prefix, HC_WORKLOAD_PREFIX);
	assert_int_equal(hc_runtime_subnet_addresses(16), 65533);
	assert_int_equal(hc_runtime_subnet_addresses(24), 253);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (hc_runtime_subnet_parse(bad[i], &net, &prefix) != -EINVAL)
			fail_msg("accepted %s", bad[i]);
}

static void test_subnet_overlaps(void **state)
{
	struct hc_err err;

	(void)state;
	/* podman's bridge has upstream's (and our) default */
	assert_int_equal(hc_runtime_subnet_check("10.88.0.0/16", ROUTES, NULL, &err), -EADDRINUSE);
	assert_non_null(strstr(err.msg, "10.88.0.0/16 dev cni-podman0"));
	assert_non_null(strstr(err.msg, "--workload-subnet"));
	/* a smaller subnet inside a route, a larger one around it */
	assert_int_equal(hc_runtime_subnet_check("10.88.5.0/24", ROUTES, NULL, &err), -EADDRINUSE);
	assert_int_equal(hc_runtime_subnet_check("10.0.0.0/8", ROUTES, NULL, &err), -EADDRINUSE);
	assert_int_equal(hc_runtime_subnet_check("192.0.2.128/25", ROUTES, NULL, &err),
			 -EADDRINUSE);
	assert_non_null(strstr(err.msg, "192.0.2.0/24 dev eth0"));
	/* the default route overlaps everything and counts for nothing */
	assert_int_equal(hc_runtime_subnet_check("10.89.0.0/16", ROUTES, NULL, &err), 0);
	assert_int_equal(hc_runtime_subnet_check("10.88.0.0/16", ROUTE_HEADER, NULL, &err), 0);
	assert_int_equal(hc_runtime_subnet_check("10.88.0.1/16", ROUTES, NULL, &err), -EINVAL);
}

static char *make_dir(void)
{
	char *dir = strdup("/tmp/hc-cni-XXXXXX");

	assert_non_null(dir);
	assert_non_null(mkdtemp(dir));
	return dir;
}

static void put_file(const char *dir, const char *name, const char *text, time_t mtime)
{
	char path[512];
	FILE *f;
	struct timespec ts[2] = { { .tv_sec = mtime }, { .tv_sec = mtime } };

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static bool present(const char *dir, const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

static void remove_dir(char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(dir);
}

/* Our workloads' own /32 routes (ptp) do not count: their addresses are
 * leased in our IPAM directory. Anyone else's do. */
static void test_own_host_routes(void **state)
{
	char *dir = make_dir();
	struct hc_err err;
	const char *routes = ROUTE_HEADER
		"veth1a2b3c4d\t0500580A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n";

	(void)state;
	assert_int_equal(hc_runtime_subnet_check("10.88.0.0/16", routes, dir, &err), -EADDRINUSE);
	assert_non_null(strstr(err.msg, "10.88.0.5/32 dev veth1a2b3c4d"));
	put_file(dir, "10.88.0.5", "sandbox\r\neth0", time(NULL));
	assert_int_equal(hc_runtime_subnet_check("10.88.0.0/16", routes, dir, &err), 0);
	remove_dir(dir);
}

static void test_lease_sweep(void **state)
{
	char *dir = make_dir();
	const char *live[] = { "aaaa" };
	struct hc_runtime_leases got;
	struct hc_err err;
	time_t now = time(NULL);

	(void)state;
	put_file(dir, "10.88.0.2", "aaaa\r\neth0", now - 1000);  /* its sandbox lives */
	put_file(dir, "10.88.0.3", "bbbb\r\neth0", now - 1000);  /* gone: collected */
	put_file(dir, "10.88.0.4", "cccc\neth0", now - 1000);    /* gone, older format */
	put_file(dir, "10.88.0.5", "dddd\r\neth0", now - 10);    /* gone, but young */
	put_file(dir, "last_reserved_ip.0", "10.88.0.5", now - 1000);
	assert_int_equal(hc_runtime_leases_sweep(dir, live, 1, 120, now, &got, &err), 0);
	assert_int_equal(got.collected, 2);
	assert_int_equal(got.leases, 2);
	assert_true(present(dir, "10.88.0.2"));
	assert_false(present(dir, "10.88.0.3"));
	assert_false(present(dir, "10.88.0.4"));
	assert_true(present(dir, "10.88.0.5"));
	assert_true(present(dir, "last_reserved_ip.0"));
	assert_int_equal(hc_runtime_leases_count(dir), 2);
	/* the young one's turn comes */
	assert_int_equal(hc_runtime_leases_sweep(dir, live, 1, 120, now + 200, &got, &err), 0);
	assert_int_equal(got.collected, 1);
	assert_int_equal(hc_runtime_leases_count(dir), 1);
	remove_dir(dir);
	/* nothing leased yet */
	assert_int_equal(hc_runtime_leases_sweep("/nonexistent/x", NULL, 0, 0, now, &got, &err), 0);
	assert_int_equal(got.leases, 0);
	assert_int_equal(hc_runtime_leases_count("/nonexistent/x"), 0);
}

static void check_layout(const char *state_dir, const char *run_dir, int want, const char *root_tail)
{
	char *root = NULL, *st = NULL, want_root[512], want_state[512];

	assert_int_equal(hc_containerd_layout(state_dir, run_dir, &root, &st), want);
	snprintf(want_root, sizeof(want_root), "%s/%s", state_dir, root_tail);
	snprintf(want_state, sizeof(want_state), "%s/%s", run_dir, root_tail);
	assert_string_equal(root, want_root);
	assert_string_equal(st, want_state);
	free(root);
	free(st);
}

/* A new node gets directories of our own; an earlier hypercore's (its
 * containerd.toml names <state>/containerd) keeps its own; upstream's
 * containerd root (no such file) is never taken for ours. */
static void test_containerd_layout(void **state)
{
	char *dir = make_dir(), sub[512], toml[700];

	(void)state;
	check_layout(dir, "/run/x", 0, "embedded-containerd");
	snprintf(sub, sizeof(sub), "%s/containerd", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	check_layout(dir, "/run/x", 0, "embedded-containerd"); /* upstream's */
	snprintf(toml, sizeof(toml), "# written by hypercore at every start; edits are lost\n"
		 "version = 2\nroot = \"%s/containerd\"\nstate = \"/run/x/containerd\"\n", dir);
	put_file(dir, "containerd.toml", toml, time(NULL));
	check_layout(dir, "/run/x", 1, "containerd");
	snprintf(sub, sizeof(sub), "%s/embedded-containerd", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	check_layout(dir, "/run/x", 0, "embedded-containerd"); /* moved already */
	remove_dir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_subnet_parse),
		cmocka_unit_test(test_subnet_overlaps),
		cmocka_unit_test(test_own_host_routes),
		cmocka_unit_test(test_lease_sweep),
		cmocka_unit_test(test_containerd_layout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
