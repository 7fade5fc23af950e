/* Workload specs: image references, ports, limits, the stored JSON, ids. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/runtime_int.h"

static void test_image_refs(void **state)
{
	static const char *const good[] = {
		"busybox",
		"library/busybox:1.36",
		"127.0.0.1:5000/hypercore/web:1",
		"localhost/app",
		"registry.example.com/a/b/c:v1.2-rc_3",
		"edge-registry.invalid:5000/hypercore/busybox-web:1",
		"repo@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"r.io/x:tag@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"a__b/c-d--e",
	};
	static const char *const bad[] = {
		"",
		"UPPER/case",
		"repo:",
		"repo:-tag",
		"/repo",
		"repo/",
		"a//b",
		"host:99999999/x",
		"repo@sha256:abc",
		"repo@md5:0123456789abcdef0123456789abcdef",
		"re po",
		"repo:tag with space",
		"a...b",
		"-lead",
		"x:y:z",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!hc_image_ref_valid(good[i]))
			fail_msg("rejected %s", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (hc_image_ref_valid(bad[i]))
			fail_msg("accepted %s", bad[i]);
}

static void test_ports(void **state)
{
	struct hc_workload_spec spec = { 0 };
	struct hc_err err;
	static const char *const bad[] = { "", "0:80", "80:0", "65536:1", "a:b", "80:", ":80",
					   "80:80:80", "1,", ",1", "-1:2" };

	(void)state;
	assert_int_equal(hc_workload_spec_parse_ports(&spec, "8080:80,443,9000:9001", &err), 0);
	assert_int_equal(spec.nports, 3);
	assert_int_equal(spec.ports[0].host, 8080);
	assert_int_equal(spec.ports[0].container, 80);
	assert_int_equal(spec.ports[1].host, 443);
	assert_int_equal(spec.ports[1].container, 443);
	assert_int_equal(spec.ports[2].container, 9001);
	hc_workload_spec_fini(&spec);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&spec, 0, sizeof(spec));
		assert_int_equal(hc_workload_spec_parse_ports(&spec, bad[i], &err), -EINVAL);
		assert_non_null(strstr(err.msg, "port"));
		hc_workload_spec_fini(&spec);
	}
}

/* "/h2c" marks a port whose container speaks HTTP/2 without TLS; it is kept
 * in the stored JSON as upstream's keys plus "h2c_ports". */
static void test_ports_h2c(void **state)
{
	struct hc_workload_spec spec = {0}, back = {0};
	const char *bad[] = { "443:8080/h2", "443:8080/h2c/h2c", "/h2c", "443:8080/h2c," };
	struct hc_err err;
	char *text;

	(void)state;
	assert_int_equal(hc_workload_spec_parse_ports(&spec, "443:8080/h2c,80:8081,50051/h2c", &err), 0);
	assert_int_equal(spec.nports, 3);
	assert_true(spec.ports[0].h2c);
	assert_int_equal(spec.ports[0].container, 8080);
	assert_false(spec.ports[1].h2c);
	assert_true(spec.ports[2].h2c);
	assert_int_equal(spec.ports[2].container, 50051);
	spec.image_ref = strdup("img");
	text = hc_workload_spec_to_json(&spec);
	assert_non_null(text);
	assert_non_null(strstr(text, "\"h2c_ports\":[443,50051]"));
	assert_int_equal(hc_workload_spec_from_json(text, &back), 0);
	assert_int_equal(back.nports, 3);
	for (size_t i = 0; i < back.nports; i++)
		assert_int_equal(back.ports[i].h2c, back.ports[i].host != 80);
	free(text);
	hc_workload_spec_fini(&spec);
	hc_workload_spec_fini(&back);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&spec, 0, sizeof(spec));
		assert_int_equal(hc_workload_spec_parse_ports(&spec, bad[i], &err), -EINVAL);
		hc_workload_spec_fini(&spec);
	}
}

static void base_spec(struct hc_workload_spec *spec)
{
	memset(spec, 0, sizeof(*spec));
	spec->image_ref = strdup("127.0.0.1:5000/hypercore/web:1");
	spec->cores = 1;
	spec->memory_mb = 64;
}

static void test_validate(void **state)
{
	struct hc_workload_spec spec;
	struct hc_err err;
	char *env[] = { "A=1", "=bad" };
	struct hc_port_map dup[] = { { 80, 80, false }, { 80, 81, false } };
	struct hc_label own = { "io.hypercore.workload", "x" };

	(void)state;
	base_spec(&spec);
	assert_int_equal(hc_workload_spec_validate(&spec, &err), 0);
	spec.cores = 0;
	assert_int_equal(hc_workload_spec_validate(&spec, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "cores"));
	spec.cores = 100000;
	assert_int_equal(hc_workload_spec_validate(&spec, &err), -EINVAL);
	spec.cores = 1;
	spec.memory_mb = 1;
	assert_int_equal(hc_workload_spec_validate(&spec, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "memory"));
	spec.memory_mb = 64;
	spec.env = env;
	spec.nenv = 2;
	assert_int_equal(hc_workload_spec_validate(&spec, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "=bad"));
	spec.nenv = 1;
	assert_int_equal(hc_workload_spec_validate(&spec, &err), 0);
	spec.env = NULL;
	spec.nenv = 0;
	spec.ports = dup;
	spec.nports = 2;
	assert_int_equal(hc_workload_spec_validate(&spec, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "twice"));
	spec.ports = NULL;
	spec.nports = 0;
	spec.labels = &own;
	spec.nlabels = 1;
	assert_int_equal(hc_workload_spec_validate(&spec, &err), -EINVAL);
	spec.labels = NULL;
	spec.nlabels = 0;
	spec.runtime_handler = "kata";
	assert_int_equal(hc_workload_spec_validate(&spec, &err), -EINVAL);
	spec.runtime_handler = NULL;
	free(spec.image_ref);
	spec.image_ref = strdup("Not A Ref");
	assert_int_equal(hc_workload_spec_validate(&spec, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "image reference"));
	hc_workload_spec_fini(&spec);
}

/* A microVM: a known runtime, RAM enough for its kernel, and the VMM's
 * overhead counted in what it holds and in the capacity check. */
static void test_microvm(void **state)
{
	struct hc_runtime_capacity cap = { .cpus_total = 8, .mem_total_mb = 1000 };
	struct hc_workload_spec spec;
	struct hc_err err;

	(void)state;
	base_spec(&spec);
	spec.runtime_handler = "microvm";
	spec.memory_mb = HC_VM_MIN_MEM_MB - 1;
	assert_int_equal(hc_workload_spec_validate(&spec, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "at least 64 MB for a microVM"));
	spec.memory_mb = 128;
	assert_int_equal(hc_workload_spec_validate(&spec, &err), 0);
	assert_true(hc_spec_is_vm(&spec));
	assert_int_equal(hc_workload_spec_mem_held(&spec), 128 + HC_VM_OVERHEAD_MB);
	cap.mem_used_mb = 1000 - 128 - HC_VM_OVERHEAD_MB;
	assert_int_equal(hc_runtime_capacity_check(&cap, &spec, &err), 0);
	cap.mem_used_mb++;
	assert_int_equal(hc_runtime_capacity_check(&cap, &spec, &err), -ENOSPC);
	assert_non_null(strstr(err.msg, "256 MB requested"));
	spec.runtime_handler = NULL; /* a container of the same size fits */
	assert_int_equal(hc_runtime_capacity_check(&cap, &spec, &err), 0);
	hc_workload_spec_fini(&spec);
}

/* The egress limit travels as a label in whole Mbit/s. */
static void test_egress_label(void **state)
{
	struct hc_workload_spec spec;
	struct hc_err err;
	struct hc_label lab = { HC_LABEL_EGRESS_MBIT, "8" };
	static const char *const bad[] = { "0", "-1", "1.5", "", "100001", "9999999", "8mbit" };

	(void)state;
	base_spec(&spec);
	assert_int_equal(hc_workload_spec_egress_bytes(&spec), 0);
	spec.labels = &lab;
	spec.nlabels = 1;
	assert_int_equal(hc_workload_spec_validate(&spec, &err), 0);
	assert_int_equal(hc_workload_spec_egress_bytes(&spec), 1000000);
	lab.value = "100000";
	assert_int_equal(hc_workload_spec_validate(&spec, &err), 0);
	assert_int_equal(hc_workload_spec_egress_bytes(&spec), 12500000000ull);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		lab.value = (char *)bad[i];
		assert_int_equal(hc_workload_spec_validate(&spec, &err), -EINVAL);
		assert_non_null(strstr(err.msg, HC_LABEL_EGRESS_MBIT));
		assert_int_equal(hc_workload_spec_egress_bytes(&spec), 0);
	}
	spec.labels = NULL;
	spec.nlabels = 0;
	hc_workload_spec_fini(&spec);
}

/* The stored form is upstream's VmSpawnRequest JSON, read back exactly. */
static void test_json_round_trip(void **state)
{
	struct hc_workload_spec spec, back;
	struct hc_err err;
	char *text;

	(void)state;
	base_spec(&spec);
	spec.cores = 2;
	assert_int_equal(hc_workload_spec_parse_ports(&spec, "8080:80", &err), 0);
	spec.env = calloc(2, sizeof(char *));
	spec.env[0] = strdup("GREETING=hello world");
	spec.env[1] = strdup("EMPTY=");
	spec.nenv = 2;
	spec.labels = calloc(1, sizeof(*spec.labels));
	spec.labels[0].key = strdup("team");
	spec.labels[0].value = strdup("edge");
	spec.nlabels = 1;
	spec.runtime_handler = strdup("runsc");
	text = hc_workload_spec_to_json(&spec);
	assert_non_null(text);
	assert_string_equal(text, "{\"cores\":2,\"env\":[\"GREETING=hello world\",\"EMPTY=\"],"
				  "\"image_ref\":\"127.0.0.1:5000/hypercore/web:1\",\"labels\":{\"team\":"
				  "\"edge\"},\"memory\":64,\"ports\":{\"8080\":80},\"runtime\":\"runsc\"}");
	assert_int_equal(hc_workload_spec_from_json(text, &back), 0);
	assert_string_equal(back.image_ref, spec.image_ref);
	assert_int_equal(back.cores, 2);
	assert_int_equal(back.memory_mb, 64);
	assert_int_equal(back.nenv, 2);
	assert_string_equal(back.env[1], "EMPTY=");
	assert_int_equal(back.nports, 1);
	assert_int_equal(back.ports[0].host, 8080);
	assert_int_equal(back.ports[0].container, 80);
	assert_int_equal(back.nlabels, 1);
	assert_string_equal(back.labels[0].value, "edge");
	assert_string_equal(back.runtime_handler, "runsc");
	free(text);
	hc_workload_spec_fini(&back);
	hc_workload_spec_fini(&spec);
}

/* Capabilities: names checked against Linux's, normalised, defaults and
 * repeats not stored twice; the effective set is the defaults then cap_add. */
static void test_capabilities(void **state)
{
	struct hc_workload_spec spec;
	const char *caps[64];
	struct hc_err err;
	size_t n;

	(void)state;
	base_spec(&spec);
	assert_int_equal(hc_workload_spec_add_cap(&spec, "net_raw", &err), 0);
	assert_int_equal(hc_workload_spec_add_cap(&spec, "CAP_NET_RAW", &err), 0);
	assert_int_equal(hc_workload_spec_add_cap(&spec, "chown", &err), 0); /* a default */
	assert_int_equal(hc_workload_spec_add_cap(&spec, "Sys_Ptrace", &err), 0);
	assert_int_equal(spec.ncap_add, 2);
	assert_string_equal(spec.cap_add[0], "NET_RAW");
	assert_string_equal(spec.cap_add[1], "SYS_PTRACE");
	assert_int_equal(hc_workload_spec_add_cap(&spec, "ALL", &err), -EINVAL);
	assert_non_null(strstr(err.msg, "unknown capability"));
	assert_int_equal(hc_workload_spec_add_cap(&spec, "NET_RAWR", &err), -EINVAL);
	assert_int_equal(hc_workload_spec_add_cap(&spec, "", &err), -EINVAL);
	assert_int_equal(hc_workload_spec_add_cap(&spec, "CAP_", &err), -EINVAL);
	n = hc_workload_spec_caps(&spec, caps, 64);
	assert_int_equal(n, 10);
	assert_string_equal(caps[0], "CHOWN");
	assert_string_equal(caps[7], "NET_BIND_SERVICE");
	assert_string_equal(caps[8], "NET_RAW");
	assert_string_equal(caps[9], "SYS_PTRACE");
	for (size_t i = 0; i < n; i++)
		assert_string_not_equal(caps[i], "MKNOD");
	assert_int_equal(hc_workload_spec_validate(&spec, &err), 0);
	/* a name that came over the wire unchecked is caught by validation */
	free(spec.cap_add[1]);
	spec.cap_add[1] = strdup("BOGUS");
	assert_int_equal(hc_workload_spec_validate(&spec, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "BOGUS"));
	hc_workload_spec_fini(&spec);
}

static void test_pids_limit(void **state)
{
	struct hc_workload_spec spec;
	struct hc_err err;

	(void)state;
	base_spec(&spec);
	assert_int_equal(hc_workload_spec_pids_limit(&spec), HC_RUNTIME_DEFAULT_PIDS_LIMIT);
	spec.pids_limit = 64;
	assert_int_equal(hc_workload_spec_pids_limit(&spec), 64);
	assert_int_equal(hc_workload_spec_validate(&spec, &err), 0);
	spec.pids_limit = HC_RUNTIME_MIN_PIDS_LIMIT - 1;
	assert_int_equal(hc_workload_spec_validate(&spec, &err), -EINVAL);
	spec.pids_limit = HC_RUNTIME_MAX_PIDS_LIMIT + 1u;
	assert_int_equal(hc_workload_spec_validate(&spec, &err), -EINVAL);
	hc_workload_spec_fini(&spec);
}

/* The hardening settings survive the stored JSON; absent keys read back as
 * "not hardened" (pids_limit 0), as for workloads spawned before them. */
static void test_json_hardening(void **state)
{
	struct hc_workload_spec spec, back;
	struct hc_err err;
	char *text;

	(void)state;
	base_spec(&spec);
	assert_int_equal(hc_workload_spec_add_cap(&spec, "NET_RAW", &err), 0);
	spec.pids_limit = 1024;
	spec.read_only_rootfs = true;
	text = hc_workload_spec_to_json(&spec);
	assert_non_null(text);
	assert_non_null(strstr(text, "\"cap_add\":[\"NET_RAW\"]"));
	assert_non_null(strstr(text, "\"pids_limit\":1024"));
	assert_non_null(strstr(text, "\"read_only_rootfs\":true"));
	assert_int_equal(hc_workload_spec_from_json(text, &back), 0);
	assert_int_equal(back.ncap_add, 1);
	assert_string_equal(back.cap_add[0], "NET_RAW");
	assert_int_equal(back.pids_limit, 1024);
	assert_true(back.read_only_rootfs);
	hc_workload_spec_fini(&back);
	free(text);
	assert_int_equal(hc_workload_spec_from_json("{\"cores\":1,\"cap_add\":[1,\"X\"]}", &back), 0);
	assert_int_equal(back.pids_limit, 0);
	assert_false(back.read_only_rootfs);
	hc_workload_spec_fini(&back);
	hc_workload_spec_fini(&spec);
}

static void test_json_hostile(void **state)
{
	struct hc_workload_spec spec;
	static const char *const inputs[] = {
		"", "[]", "null", "{\"cores\":-1,\"memory\":1e99}", "{\"env\":[1,null,\"A=1\"]}",
		"{\"ports\":{\"x\":1,\"0\":2,\"80\":70000,\"81\":\"80\"}}", "{\"labels\":{\"a\":1}}",
		"{\"image_ref\":7}",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		int r = hc_workload_spec_from_json(inputs[i], &spec);

		if (r == 0) {
			assert_true(spec.nports == 0);
			hc_workload_spec_fini(&spec);
		} else {
			assert_int_equal(r, -EINVAL);
		}
	}
	assert_int_equal(hc_workload_spec_from_json("{\"env\":[1,null,\"A=1\"]}", &spec), 0);
	assert_int_equal(spec.nenv, 1);
	assert_string_equal(spec.env[0], "A=1");
	hc_workload_spec_fini(&spec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_image_refs),	 cmocka_unit_test(test_ports),
		cmocka_unit_test(test_ports_h2c),
		cmocka_unit_test(test_validate),	 cmocka_unit_test(test_json_round_trip),
		cmocka_unit_test(test_json_hostile),
		cmocka_unit_test(test_egress_label),
		cmocka_unit_test(test_capabilities),	 cmocka_unit_test(test_pids_limit),
		cmocka_unit_test(test_json_hardening),	 cmocka_unit_test(test_microvm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
