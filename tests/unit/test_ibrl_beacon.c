/* The beacon (agent/ibrl/beacon.c, set_hash.c, trust.c): the canonical
 * state digest (v1, and v2 by the workloads' set hash), state signatures, TOFU pins and trusted-keys files, attestations bound
 * to a nonce. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "ibrl/ibrl.h"
#include "tmpdir.h"

typedef Cluster__Services__Api__WorkloadState wl_t;

static char dir[64];
static struct hc_ibrl_identity *key_a, *key_b;

static int setup(void **state)
{
	char sub[PATH_MAX];
	struct hc_err err;

	(void)state;
	if (hc_tmpdir_new(dir, sizeof(dir), "hc-beacon") < 0)
		return -1;
	snprintf(sub, sizeof(sub), "%s/b", dir);
	if (mkdir(sub, 0700) < 0 || hc_ibrl_identity_open(dir, &key_a, &err) < 0 ||
	    hc_ibrl_identity_open(sub, &key_b, &err) < 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	hc_ibrl_identity_free(key_a);
	hc_ibrl_identity_free(key_b);
	return hc_tmpdir_remove(dir);
}

/* Three workloads and a beacon, as a node would announce them. */
struct fixture {
	Cluster__Services__Api__VmSpawnRequest req[3];
	wl_t w[3];
	wl_t *ptr[3];
	Cluster__Services__Api__BeaconMetadata beacon;
	char *caps[2];
	struct hc_ibrl_state_view v;
};

static void fixture_init(struct fixture *f)
{
	static const char *const ids[] = { "0b8e1f52-6f0e-4c55-9d3a-1d2f0c9e7a01",
					   "5e0c0a7d-0000-4000-8000-000000000002",
					   "9a9a9a9a-0000-4000-8000-000000000003" };

	memset(f, 0, sizeof(*f));
	for (int i = 0; i < 3; i++) {
		cluster__services__api__vm_spawn_request__init(&f->req[i]);
		f->req[i].image_ref = (char *)"registry.test/app:1";
		f->req[i].cores = (uint32_t)i + 1;
		f->req[i].memory = 64;
		cluster__services__api__workload_state__init(&f->w[i]);
		f->w[i].id = (char *)ids[i];
		f->w[i].source_request = &f->req[i];
		f->ptr[i] = &f->w[i];
	}
	cluster__services__api__beacon_metadata__init(&f->beacon);
	f->beacon.beacon_node_id = (char *)"0011223344556677";
	f->beacon.node_signature.data = (uint8_t *)hc_ibrl_identity_public(key_a);
	f->beacon.node_signature.len = HC_IBRL_PUBLIC_LEN;
	f->beacon.timestamp = 1700000000;
	f->beacon.reputation_score = (char *)"1.0";
	f->caps[0] = (char *)"container";
	f->caps[1] = (char *)"xdp-native";
	f->beacon.node_capabilities = f->caps;
	f->beacon.n_node_capabilities = 2;
	f->beacon.latency_ms = 1.25;
	f->beacon.packet_loss = 0.5;
	f->beacon.price_per_gb = 0.01;
	f->v = (struct hc_ibrl_state_view){ .node = "n0", .node_addr = "10.0.0.1",
					    .http_port = 8001, .respawn = true,
					    .version = 1700000000123ull, .beacon = &f->beacon,
					    .workloads = f->ptr, .nworkloads = 3 };
}

static void digest_of(const struct hc_ibrl_state_view *v, uint8_t d[HC_IBRL_DIGEST_LEN])
{
	assert_int_equal(hc_ibrl_state_digest(v, d), 0);
}

static void test_digest_is_stable_and_order_independent(void **state)
{
	uint8_t d0[HC_IBRL_DIGEST_LEN], d1[HC_IBRL_DIGEST_LEN], d2[HC_IBRL_DIGEST_LEN];
	struct fixture f;
	wl_t *swapped[3];

	(void)state;
	fixture_init(&f);
	digest_of(&f.v, d0);
	digest_of(&f.v, d1);
	assert_memory_equal(d0, d1, sizeof(d0));
	/* every order of the workloads, as chunks may deliver them */
	for (int a = 0; a < 3; a++)
		for (int b = 0; b < 3; b++) {
			int c = 3 - a - b;

			if (a == b || c < 0 || c > 2 || c == a || c == b)
				continue;
			swapped[0] = f.ptr[a], swapped[1] = f.ptr[b], swapped[2] = f.ptr[c];
			f.v.workloads = swapped;
			digest_of(&f.v, d2);
			assert_memory_equal(d0, d2, sizeof(d0));
		}
	f.v.workloads = f.ptr;
	/* every field counts: version, address, port, respawn, beacon, a workload */
	f.v.version++;
	digest_of(&f.v, d2);
	assert_memory_not_equal(d0, d2, sizeof(d0));
	f.v.version--;
	f.v.node_addr = "10.0.0.2";
	digest_of(&f.v, d2);
	assert_memory_not_equal(d0, d2, sizeof(d0));
	f.v.node_addr = "10.0.0.1";
	f.v.respawn = false;
	digest_of(&f.v, d2);
	assert_memory_not_equal(d0, d2, sizeof(d0));
	f.v.respawn = true;
	f.beacon.latency_ms = 1.26;
	digest_of(&f.v, d2);
	assert_memory_not_equal(d0, d2, sizeof(d0));
	f.beacon.latency_ms = 1.25;
	f.req[1].memory = 65;
	digest_of(&f.v, d2);
	assert_memory_not_equal(d0, d2, sizeof(d0));
	f.req[1].memory = 64;
	/* a workload fewer is another state; names are length-prefixed, so
	 * moving a byte between two strings changes it too */
	f.v.nworkloads = 2;
	digest_of(&f.v, d2);
	assert_memory_not_equal(d0, d2, sizeof(d0));
	f.v.nworkloads = 3;
	f.v.node = "n01";
	f.v.node_addr = "0.0.0.1";
	digest_of(&f.v, d2);
	assert_memory_not_equal(d0, d2, sizeof(d0));
	f.v.node = "n0";
	f.v.node_addr = "10.0.0.1";
	digest_of(&f.v, d2);
	assert_memory_equal(d0, d2, sizeof(d0));
	/* NULL and "" are the same address (upstream senders have none) */
	f.v.node_addr = NULL;
	digest_of(&f.v, d1);
	f.v.node_addr = "";
	digest_of(&f.v, d2);
	assert_memory_equal(d1, d2, sizeof(d1));
}

static void test_state_sign_and_verify(void **state)
{
	char sig[HC_IBRL_STATE_SIG_B64_LEN + 1], bad[HC_IBRL_STATE_SIG_B64_LEN + 1];
	const uint8_t *pa = hc_ibrl_identity_public(key_a);
	struct fixture f;
	wl_t *reversed[3];

	(void)state;
	fixture_init(&f);
	assert_int_equal(hc_ibrl_state_sign(key_a, &f.v, sig), 0);
	assert_int_equal(strlen(sig), HC_IBRL_STATE_SIG_B64_LEN);
	assert_int_equal(hc_ibrl_state_verify(pa, &f.v, sig), 0);
	/* the receiver's reassembly order does not matter */
	reversed[0] = f.ptr[2], reversed[1] = f.ptr[1], reversed[2] = f.ptr[0];
	f.v.workloads = reversed;
	assert_int_equal(hc_ibrl_state_verify(pa, &f.v, sig), 0);
	/* another key, an edited state, a dropped chunk's workloads, bad text */
	assert_int_equal(hc_ibrl_state_verify(hc_ibrl_identity_public(key_b), &f.v, sig),
			 -EBADMSG);
	f.req[0].cores = 9;
	assert_int_equal(hc_ibrl_state_verify(pa, &f.v, sig), -EBADMSG);
	f.req[0].cores = 1;
	f.v.nworkloads = 2;
	assert_int_equal(hc_ibrl_state_verify(pa, &f.v, sig), -EBADMSG);
	f.v.nworkloads = 3;
	f.v.version = 1;
	assert_int_equal(hc_ibrl_state_verify(pa, &f.v, sig), -EBADMSG);
	f.v.version = 1700000000123ull;
	assert_int_equal(hc_ibrl_state_verify(pa, &f.v, sig), 0);
	memcpy(bad, sig, sizeof(bad));
	bad[5] = bad[5] == 'A' ? 'B' : 'A';
	assert_int_equal(hc_ibrl_state_verify(pa, &f.v, bad), -EBADMSG);
	assert_int_equal(hc_ibrl_state_verify(pa, &f.v, ""), -EBADMSG);
	assert_int_equal(hc_ibrl_state_verify(pa, &f.v, NULL), -EBADMSG);
	assert_int_equal(hc_ibrl_state_verify(pa, &f.v, "!!!!"), -EBADMSG);
	/* the key travels in node_signature, as upstream sends it */
	assert_ptr_equal(hc_ibrl_beacon_public(&f.beacon), f.beacon.node_signature.data);
	f.beacon.node_signature.len = 31;
	assert_null(hc_ibrl_beacon_public(&f.beacon));
	assert_null(hc_ibrl_beacon_public(NULL));
}

static void sum_of(wl_t *const *w, size_t n, uint8_t sum[HC_IBRL_DIGEST_LEN])
{
	struct hc_ibrl_set_hash set;

	assert_int_equal(hc_ibrl_set_hash_of(&set, w, n), 0);
	assert_int_equal(hc_ibrl_set_hash_sum(&set, sum), 0);
}

/* The set hash: any order, members added and removed one by one agree
 * with the set worked out whole; every byte of a member counts. */
static void test_set_hash_incremental(void **state)
{
	uint8_t s0[HC_IBRL_DIGEST_LEN], s1[HC_IBRL_DIGEST_LEN], s2[HC_IBRL_DIGEST_LEN];
	struct hc_ibrl_set_hash set;
	struct fixture f;
	wl_t *reversed[3], changed;
	Cluster__Services__Api__VmSpawnRequest req;

	(void)state;
	fixture_init(&f);
	sum_of(f.ptr, 3, s0);
	reversed[0] = f.ptr[2], reversed[1] = f.ptr[1], reversed[2] = f.ptr[0];
	sum_of(reversed, 3, s1);
	assert_memory_equal(s0, s1, sizeof(s0));
	/* {0, 1} plus 2 is {0, 1, 2}; minus 1 is {0, 2} */
	assert_int_equal(hc_ibrl_set_hash_of(&set, f.ptr, 2), 0);
	assert_int_equal(hc_ibrl_set_hash_add(&set, f.ptr[2]), 0);
	assert_int_equal(hc_ibrl_set_hash_sum(&set, s1), 0);
	assert_memory_equal(s0, s1, sizeof(s0));
	assert_int_equal(hc_ibrl_set_hash_remove(&set, f.ptr[1]), 0);
	assert_int_equal(hc_ibrl_set_hash_sum(&set, s1), 0);
	reversed[0] = f.ptr[0], reversed[1] = f.ptr[2];
	sum_of(reversed, 2, s2);
	assert_memory_equal(s1, s2, sizeof(s1));
	assert_memory_not_equal(s0, s1, sizeof(s0));
	/* workload 1 changed (one byte of its request): another sum, and
	 * replacing it in the set gives the sum of the changed set */
	changed = f.w[1];
	req = f.req[1];
	req.memory = 65;
	changed.source_request = &req;
	assert_int_equal(hc_ibrl_set_hash_add(&set, &changed), 0);
	assert_int_equal(hc_ibrl_set_hash_sum(&set, s1), 0);
	f.ptr[1] = &changed;
	sum_of(f.ptr, 3, s2);
	assert_memory_equal(s1, s2, sizeof(s1));
	assert_memory_not_equal(s0, s2, sizeof(s0));
	/* the empty set has a sum of its own */
	hc_ibrl_set_hash_init(&set);
	assert_int_equal(hc_ibrl_set_hash_sum(&set, s1), 0);
	assert_memory_not_equal(s0, s1, sizeof(s0));
}

/* Encoding v2: the count and the set hash's sum stand for the workloads;
 * a v2 signature is no v1 signature of the same state, nor the reverse. */
static void test_state_v2_sign_and_verify(void **state)
{
	char sig[HC_IBRL_STATE_SIG_B64_LEN + 1], sig1[HC_IBRL_STATE_SIG_B64_LEN + 1];
	const uint8_t *pa = hc_ibrl_identity_public(key_a);
	uint8_t sum[HC_IBRL_DIGEST_LEN], other[HC_IBRL_DIGEST_LEN];
	struct hc_ibrl_state_view v2;
	struct fixture f;

	(void)state;
	fixture_init(&f);
	sum_of(f.ptr, 3, sum);
	sum_of(f.ptr, 2, other);
	v2 = f.v;
	v2.workloads = NULL; /* not read */
	v2.workloads_sum = sum;
	assert_int_equal(hc_ibrl_state_sign(key_a, &v2, sig), 0);
	assert_int_equal(hc_ibrl_state_verify(pa, &v2, sig), 0);
	assert_int_equal(hc_ibrl_state_verify(hc_ibrl_identity_public(key_b), &v2, sig),
			 -EBADMSG);
	v2.workloads_sum = other;
	assert_int_equal(hc_ibrl_state_verify(pa, &v2, sig), -EBADMSG);
	v2.workloads_sum = sum;
	v2.nworkloads = 2;
	assert_int_equal(hc_ibrl_state_verify(pa, &v2, sig), -EBADMSG);
	v2.nworkloads = 3;
	v2.version++;
	assert_int_equal(hc_ibrl_state_verify(pa, &v2, sig), -EBADMSG);
	v2.version--;
	assert_int_equal(hc_ibrl_state_verify(pa, &f.v, sig), -EBADMSG);
	assert_int_equal(hc_ibrl_state_sign(key_a, &f.v, sig1), 0);
	assert_int_equal(hc_ibrl_state_verify(pa, &v2, sig1), -EBADMSG);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_tofu_pins_persist_and_refuse_others(void **state)
{
	const uint8_t *pa = hc_ibrl_identity_public(key_a), *pb = hc_ibrl_identity_public(key_b);
	struct hc_ibrl_trust *t;
	char path[PATH_MAX];
	struct hc_err err;
	struct stat st;

	(void)state;
	assert_int_equal(hc_ibrl_trust_open(dir, NULL, &t, &err), 0);
	assert_int_equal(hc_ibrl_trust_count(t), 0);
	assert_int_equal(hc_ibrl_trust_check(t, "n0", pa), HC_IBRL_TRUST_NEW);
	assert_false(hc_ibrl_trust_known(t, "n0"));
	assert_int_equal(hc_ibrl_trust_pin(t, "n0", pa, &err), 0);
	assert_int_equal(hc_ibrl_trust_check(t, "n0", pa), HC_IBRL_TRUST_MATCH);
	assert_int_equal(hc_ibrl_trust_check(t, "n0", pb), HC_IBRL_TRUST_MISMATCH);
	/* a pin is never replaced */
	assert_int_equal(hc_ibrl_trust_pin(t, "n0", pb, &err), -EEXIST);
	assert_int_equal(hc_ibrl_trust_pin(t, "n1", pb, &err), 0);
	hc_ibrl_trust_free(t);
	snprintf(path, sizeof(path), "%s/%s", dir, HC_IBRL_TRUST_FILE);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* kept across restarts */
	assert_int_equal(hc_ibrl_trust_open(dir, NULL, &t, &err), 0);
	assert_int_equal(hc_ibrl_trust_count(t), 2);
	assert_int_equal(hc_ibrl_trust_check(t, "n0", pa), HC_IBRL_TRUST_MATCH);
	assert_int_equal(hc_ibrl_trust_check(t, "n0", pb), HC_IBRL_TRUST_MISMATCH);
	assert_int_equal(hc_ibrl_trust_check(t, "n1", pb), HC_IBRL_TRUST_MATCH);
	hc_ibrl_trust_free(t);
	/* a fixed file: only its names, nothing learnt */
	assert_int_equal(hc_ibrl_trust_open(dir, path, &t, &err), 0);
	assert_int_equal(hc_ibrl_trust_check(t, "n2", pa), HC_IBRL_TRUST_UNKNOWN);
	assert_int_equal(hc_ibrl_trust_check(t, "n0", pa), HC_IBRL_TRUST_MATCH);
	assert_int_equal(hc_ibrl_trust_pin(t, "n2", pa, &err), -EPERM);
	hc_ibrl_trust_free(t);
	/* a state dir file that does not parse is an error, never replaced */
	write_file(path, "{\"n0\": ");
	assert_int_equal(hc_ibrl_trust_open(dir, NULL, &t, &err), -EINVAL);
	assert_non_null(strstr(err.msg, HC_IBRL_TRUST_FILE));
}

static void test_trusted_keys_file_errors(void **state)
{
	static const struct {
		const char *text, *says;
	} cases[] = {
		{ "", "" },
		{ "not json", "" },
		{ "[\"a\"]", "not a JSON object" },
		{ "{\"n0\": 5}", "key of \"n0\"" },
		{ "{\"n0\": \"abc\"}", "key of \"n0\"" },
		{ "{\"n0\": \"AAAA\"}", "32-byte" },
		{ "{\"\": \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}", "empty" },
		{ "{\"n0\": \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\", "
		  "\"n0\": \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}",
		  "duplicate" },
	};
	struct hc_ibrl_trust *t;
	char path[PATH_MAX];
	struct hc_err err;

	(void)state;
	snprintf(path, sizeof(path), "%s/keys.json", dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_file(path, cases[i].text);
		assert_int_equal(hc_ibrl_trust_open(dir, path, &t, &err), -EINVAL);
		assert_non_null(strstr(err.msg, path));
		assert_non_null(strstr(err.msg, cases[i].says));
	}
	/* a missing file given by flag is an error too */
	snprintf(path, sizeof(path), "%s/none.json", dir);
	assert_int_equal(hc_ibrl_trust_open(dir, path, &t, &err), -ENOENT);
	/* a good one */
	snprintf(path, sizeof(path), "%s/keys.json", dir);
	write_file(path, "{\"n0\": \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}");
	assert_int_equal(hc_ibrl_trust_open(dir, path, &t, &err), 0);
	assert_int_equal(hc_ibrl_trust_count(t), 1);
	hc_ibrl_trust_free(t);
}

static void test_attestation_bound_to_nonce(void **state)
{
	uint8_t nonce[HC_IBRL_NONCE_LEN], other[HC_IBRL_NONCE_LEN];
	uint8_t data[HC_IBRL_ATTEST_DATA_LEN], pub[HC_IBRL_PUBLIC_LEN];
	Cluster__Services__Api__BeaconAttestation a;
	struct hc_ibrl_nonces ns = { 0 };
	const uint64_t now = 1700000000;

	(void)state;
	assert_int_equal(hc_ibrl_nonce_new(&ns, nonce), 0);
	assert_int_equal(hc_ibrl_nonce_new(&ns, other), 0);
	assert_memory_not_equal(nonce, other, sizeof(nonce));
	assert_int_equal(hc_ibrl_attest_make(key_a, "n0", nonce, sizeof(nonce), now, data), 0);
	cluster__services__api__beacon_attestation__init(&a);
	a.node_id = (char *)"n0";
	a.attestation_type = (char *)HC_IBRL_ATTEST_TYPE;
	a.attestation_data.data = data;
	a.attestation_data.len = sizeof(data);
	assert_int_equal(hc_ibrl_attest_check(&a, "n0", nonce, now + 5, 60, pub), 0);
	assert_memory_equal(pub, hc_ibrl_identity_public(key_a), sizeof(pub));
	/* an attestation for another nonce, node or type; too old; edited */
	assert_int_equal(hc_ibrl_attest_check(&a, "n0", other, now, 60, pub), -EBADMSG);
	assert_int_equal(hc_ibrl_attest_check(&a, "n1", nonce, now, 60, pub), -EBADMSG);
	assert_int_equal(hc_ibrl_attest_check(&a, "n0", nonce, now + 61, 60, pub), -ESTALE);
	assert_int_equal(hc_ibrl_attest_check(&a, "n0", nonce, now - 61, 60, pub), -ESTALE);
	data[HC_IBRL_PUBLIC_LEN + 7] ^= 1; /* the timestamp is signed */
	assert_int_equal(hc_ibrl_attest_check(&a, "n0", nonce, now, 60, pub), -EBADMSG);
	data[HC_IBRL_PUBLIC_LEN + 7] ^= 1;
	a.attestation_type = (char *)"WORKLOAD";
	assert_int_equal(hc_ibrl_attest_check(&a, "n0", nonce, now, 60, pub), -EBADMSG);
	a.attestation_type = (char *)HC_IBRL_ATTEST_TYPE;
	a.attestation_data.len--;
	assert_int_equal(hc_ibrl_attest_check(&a, "n0", nonce, now, 60, pub), -EBADMSG);
	assert_int_equal(hc_ibrl_attest_make(key_a, "n0", nonce, 16, now, data), -EINVAL);
	/* each nonce is good once; one never issued not at all */
	assert_int_equal(hc_ibrl_nonce_use(&ns, nonce), 0);
	assert_int_equal(hc_ibrl_nonce_use(&ns, nonce), -EALREADY);
	assert_int_equal(hc_ibrl_nonce_use(&ns, other), 0);
	memset(other, 0x5a, sizeof(other));
	assert_int_equal(hc_ibrl_nonce_use(&ns, other), -ENOENT);
	/* the ring forgets the oldest */
	for (int i = 0; i < HC_IBRL_NONCES_MAX; i++)
		assert_int_equal(hc_ibrl_nonce_new(&ns, other), 0);
	assert_int_equal(hc_ibrl_nonce_use(&ns, nonce), -ENOENT);
	assert_int_equal(hc_ibrl_nonce_use(&ns, other), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_digest_is_stable_and_order_independent),
		cmocka_unit_test(test_state_sign_and_verify),
		cmocka_unit_test(test_set_hash_incremental),
		cmocka_unit_test(test_state_v2_sign_and_verify),
		cmocka_unit_test(test_tofu_pins_persist_and_refuse_others),
		cmocka_unit_test(test_trusted_keys_file_errors),
		cmocka_unit_test(test_attestation_bound_to_nonce),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
