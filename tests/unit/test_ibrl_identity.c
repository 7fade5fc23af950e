/* The node identity (agent/ibrl/identity.c): one key per state dir, kept
 * across starts, signatures that verify only unchanged and under that key. */
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

static char dir[64];

static int setup(void **state)
{
	(void)state;
	return hc_tmpdir_new(dir, sizeof(dir), "hc-ibrl");
}

static int teardown(void **state)
{
	(void)state;
	return hc_tmpdir_remove(dir);
}

static void test_key_is_made_once_and_kept(void **state)
{
	struct hc_ibrl_identity *a, *b;
	char path[PATH_MAX];
	struct hc_err err;
	struct stat st;

	(void)state;
	assert_int_equal(hc_ibrl_identity_read(dir, &a, &err), -ENOENT);
	assert_int_equal(hc_ibrl_identity_open(dir, &a, &err), 0);
	snprintf(path, sizeof(path), "%s/%s", dir, HC_IBRL_KEY_FILE);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(hc_ibrl_identity_open(dir, &b, &err), 0);
	assert_memory_equal(hc_ibrl_identity_public(a), hc_ibrl_identity_public(b),
			    HC_IBRL_PUBLIC_LEN);
	hc_ibrl_identity_free(b);
	/* a key others may read is refused, not replaced */
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(hc_ibrl_identity_open(dir, &b, &err), -EPERM);
	assert_non_null(strstr(err.msg, "chmod 600"));
	hc_ibrl_identity_free(a);
}

static void test_sign_and_verify(void **state)
{
	uint8_t sig[HC_IBRL_SIGNATURE_LEN], other_pub[HC_IBRL_PUBLIC_LEN];
	char other_dir[PATH_MAX], b64[128], id[HC_IBRL_BEACON_ID_LEN + 1];
	struct hc_ibrl_identity *a, *b;
	const char msg[] = "state 42 of node a";
	uint8_t back[HC_IBRL_SIGNATURE_LEN];
	struct hc_err err;
	size_t len;

	(void)state;
	snprintf(other_dir, sizeof(other_dir), "%s/other", dir);
	assert_int_equal(mkdir(other_dir, 0700), 0);
	assert_int_equal(hc_ibrl_identity_open(dir, &a, &err), 0);
	assert_int_equal(hc_ibrl_identity_open(other_dir, &b, &err), 0);
	assert_int_equal(hc_ibrl_sign(a, msg, sizeof(msg), sig), 0);
	assert_int_equal(hc_ibrl_verify(hc_ibrl_identity_public(a), msg, sizeof(msg), sig), 0);
	memcpy(other_pub, hc_ibrl_identity_public(b), sizeof(other_pub));
	assert_int_equal(hc_ibrl_verify(other_pub, msg, sizeof(msg), sig), -EBADMSG);
	assert_int_equal(hc_ibrl_verify(hc_ibrl_identity_public(a), msg, sizeof(msg) - 1, sig),
			 -EBADMSG);
	sig[10] ^= 1;
	assert_int_equal(hc_ibrl_verify(hc_ibrl_identity_public(a), msg, sizeof(msg), sig),
			 -EBADMSG);
	sig[10] ^= 1;
	/* signatures travel as base64 text */
	assert_int_equal(hc_ibrl_b64_encode(sig, sizeof(sig), b64, sizeof(b64)), 0);
	assert_int_equal(strlen(b64), 88);
	assert_int_equal(hc_ibrl_b64_decode(b64, back, sizeof(back), &len), 0);
	assert_int_equal(len, sizeof(sig));
	assert_memory_equal(back, sig, sizeof(sig));
	assert_int_equal(hc_ibrl_b64_decode("abc", back, sizeof(back), &len), -EINVAL);
	assert_int_equal(hc_ibrl_b64_decode(b64, back, 10, &len), -EINVAL);
	hc_ibrl_beacon_node_id(hc_ibrl_identity_public(a), id);
	assert_int_equal(strlen(id), 16);
	for (int i = 0; i < 8; i++) {
		char byte[3];

		snprintf(byte, sizeof(byte), "%02x", hc_ibrl_identity_public(a)[i]);
		assert_memory_equal(id + 2 * i, byte, 2);
	}
	hc_ibrl_identity_free(a);
	hc_ibrl_identity_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_key_is_made_once_and_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sign_and_verify, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
