/* API tokens, token files and join tokens (agent/auth). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/auth.h"
#include "tmpdir.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	return hc_tmpdir_new(dir, sizeof(dir), "hc-auth");
}

static int teardown(void **state)
{
	(void)state;
	return hc_tmpdir_remove(dir);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void test_generated_tokens_differ_and_check(void **state)
{
	char a[HC_AUTH_TOKEN_MAX + 1], b[HC_AUTH_TOKEN_MAX + 1];

	(void)state;
	assert_int_equal(hc_auth_token_generate(a), 0);
	assert_int_equal(hc_auth_token_generate(b), 0);
	assert_int_equal(strlen(a), 64);
	assert_string_not_equal(a, b);
	assert_int_equal(hc_auth_token_check(a), 0);
	assert_int_equal(hc_auth_token_check("short"), -EINVAL);
	assert_int_equal(hc_auth_token_check("has a space in it, sixteen+"), -EINVAL);
	assert_int_equal(hc_auth_token_check(NULL), -EINVAL);
}

/* Derivations are fixed functions: the same inputs give the same tokens on
 * every node, other inputs other tokens. */
static void test_derived_tokens_are_stable(void **state)
{
	char k1[HC_AUTH_TOKEN_MAX + 1], k2[HC_AUTH_TOKEN_MAX + 1], k3[HC_AUTH_TOKEN_MAX + 1];
	char ro1[HC_AUTH_TOKEN_MAX + 1], ro2[HC_AUTH_TOKEN_MAX + 1];

	(void)state;
	assert_int_equal(hc_auth_token_from_key("GlxkQudTRDo//XCQDzV+tnL3LuXZI0d6T0W+SCufRKY=", k1), 0);
	assert_int_equal(hc_auth_token_from_key("GlxkQudTRDo//XCQDzV+tnL3LuXZI0d6T0W+SCufRKY=", k2), 0);
	assert_int_equal(hc_auth_token_from_key("HlxkQudTRDo//XCQDzV+tnL3LuXZI0d6T0W+SCufRKY=", k3), 0);
	assert_string_equal(k1, k2);
	assert_string_not_equal(k1, k3);
	assert_int_equal(hc_auth_read_only_token(k1, ro1), 0);
	assert_int_equal(hc_auth_read_only_token(k3, ro2), 0);
	assert_int_equal(strncmp(ro1, HC_AUTH_READ_ONLY_PREFIX, 3), 0);
	assert_int_equal(strlen(ro1), 3 + 64);
	assert_string_not_equal(ro1, ro2);
}

static void test_roles(void **state)
{
	char path[PATH_MAX], ro[HC_AUTH_TOKEN_MAX + 1], ro_other[HC_AUTH_TOKEN_MAX + 1];
	struct hc_err err;
	const char *admin = "0123456789abcdef0123456789abcdef";
	const char *other = "fedcba9876543210fedcba9876543210";
	struct hc_auth *auth;

	(void)state;
	snprintf(path, sizeof(path), "%s/api-token", dir);
	assert_int_equal(hc_auth_token_file_create(path, admin), 0);
	auth = hc_auth_load(path, &err);
	assert_non_null(auth);
	assert_string_equal(hc_auth_token(auth), admin);
	assert_int_equal(hc_auth_read_only_token(admin, ro), 0);
	assert_int_equal(hc_auth_read_only_token(other, ro_other), 0);
	assert_int_equal(hc_auth_check(auth, admin), HC_AUTH_ADMIN);
	assert_int_equal(hc_auth_check(auth, ro), HC_AUTH_READ_ONLY);
	assert_int_equal(hc_auth_check(auth, other), HC_AUTH_DENIED);
	assert_int_equal(hc_auth_check(auth, ro_other), HC_AUTH_DENIED);
	assert_int_equal(hc_auth_check(auth, "0123456789abcdef0123456789abcde"), HC_AUTH_DENIED);
	assert_int_equal(hc_auth_check(auth, "0123456789abcdef0123456789abcdef0"), HC_AUTH_DENIED);
	assert_int_equal(hc_auth_check(auth, ""), HC_AUTH_DENIED);
	assert_int_equal(hc_auth_check(auth, NULL), HC_AUTH_DENIED);
	assert_int_equal(hc_auth_check(NULL, admin), HC_AUTH_DENIED);
	assert_true(hc_auth_holds(auth, admin));
	assert_false(hc_auth_holds(auth, ro));
	hc_auth_free(auth);
	/* never replaced */
	assert_int_equal(hc_auth_token_file_create(path, other), -EEXIST);
}

/* A file being rotated holds two tokens: both are admins, each with its
 * own read-only token; comments and blank lines are skipped. */
static void test_rotation_file(void **state)
{
	char path[PATH_MAX], ro[HC_AUTH_TOKEN_MAX + 1];
	struct hc_err err;
	struct hc_auth *auth;

	(void)state;
	snprintf(path, sizeof(path), "%s/tokens", dir);
	write_file(path, "# new first: nodes send it\n\n  newtoken-0123456789abcdef \n"
			 "oldtoken-0123456789abcdef\n", 0600);
	auth = hc_auth_load(path, &err);
	assert_non_null(auth);
	assert_string_equal(hc_auth_token(auth), "newtoken-0123456789abcdef");
	assert_int_equal(hc_auth_check(auth, "oldtoken-0123456789abcdef"), HC_AUTH_ADMIN);
	assert_int_equal(hc_auth_read_only_token("oldtoken-0123456789abcdef", ro), 0);
	assert_int_equal(hc_auth_check(auth, ro), HC_AUTH_READ_ONLY);
	hc_auth_free(auth);
}

static void test_bad_files_are_refused(void **state)
{
	char path[PATH_MAX];
	struct hc_err err;

	(void)state;
	snprintf(path, sizeof(path), "%s/tokens", dir);
	assert_null(hc_auth_load(path, &err));
	assert_non_null(strstr(err.msg, "No such file"));
	write_file(path, "0123456789abcdef0123456789abcdef\n", 0644);
	assert_null(hc_auth_load(path, &err));
	assert_non_null(strstr(err.msg, "chmod 600"));
	write_file(path, "# only a comment\n\n", 0600);
	assert_null(hc_auth_load(path, &err));
	assert_non_null(strstr(err.msg, "no token"));
	write_file(path, "tooshort\n", 0600);
	assert_null(hc_auth_load(path, &err));
	assert_non_null(strstr(err.msg, "printable"));
}

static void test_bearer(void **state)
{
	char out[HC_AUTH_TOKEN_MAX + 1], big[HC_AUTH_TOKEN_MAX + 16];

	(void)state;
	assert_string_equal(hc_auth_bearer("Bearer abc", out), "abc");
	assert_string_equal(hc_auth_bearer("bearer   abc  ", out), "abc");
	assert_null(hc_auth_bearer("Basic abc", out));
	assert_null(hc_auth_bearer("Bearer ", out));
	assert_null(hc_auth_bearer("Bearerabc", out));
	assert_null(hc_auth_bearer(NULL, out));
	memcpy(big, "Bearer ", 7);
	memset(big + 7, 'a', HC_AUTH_TOKEN_MAX + 1);
	big[7 + HC_AUTH_TOKEN_MAX + 1] = '\0';
	assert_null(hc_auth_bearer(big, out));
}

static void test_join_tokens(void **state)
{
	const char *key = "GlxkQudTRDo//XCQDzV+tnL3LuXZI0d6T0W+SCufRKY=";
	char join[HC_AUTH_JOIN_MAX], k[64], admin[HC_AUTH_TOKEN_MAX + 1];

	(void)state;
	assert_int_equal(hc_auth_join_token_format(key, "tok.en-0123456789abcdef", join,
						   sizeof(join)), 0);
	assert_int_equal(strncmp(join, HC_AUTH_JOIN_PREFIX, strlen(HC_AUTH_JOIN_PREFIX)), 0);
	assert_int_equal(hc_auth_join_token_parse(join, k, admin), 0);
	assert_string_equal(k, key);
	assert_string_equal(admin, "tok.en-0123456789abcdef"); /* dots in a token survive */
	assert_int_equal(hc_auth_join_token_parse("hcjoin1.", k, admin), -EINVAL);
	assert_int_equal(hc_auth_join_token_parse("hcjoin1.abc", k, admin), -EINVAL);
	assert_int_equal(hc_auth_join_token_parse("hcjoin1..0123456789abcdef", k, admin), -EINVAL);
	assert_int_equal(hc_auth_join_token_parse("hcjoin2.a.0123456789abcdef", k, admin), -EINVAL);
	assert_int_equal(hc_auth_join_token_parse("hcjoin1.a%b.0123456789abcdef", k, admin), -EINVAL);
	assert_int_equal(hc_auth_join_token_parse("hcjoin1.abc.short", k, admin), -EINVAL);
	assert_int_equal(hc_auth_join_token_parse(NULL, k, admin), -EINVAL);
	assert_int_equal(hc_auth_join_token_format(key, "short", join, sizeof(join)), -EINVAL);
	assert_int_equal(hc_auth_join_token_format(key, "0123456789abcdef", join, 20), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generated_tokens_differ_and_check),
		cmocka_unit_test(test_derived_tokens_are_stable),
		cmocka_unit_test_setup_teardown(test_roles, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotation_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_files_are_refused, setup, teardown),
		cmocka_unit_test(test_bearer),
		cmocka_unit_test(test_join_tokens),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
