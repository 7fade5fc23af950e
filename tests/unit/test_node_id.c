/* The persistent node id: created once, read back, never silently replaced. */
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
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "cluster/cluster.h"

static char dir[64], path[128];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/hc-nodeid-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/node-id", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	rmdir(path); /* if a test made it a directory */
	rmdir(dir);
	return 0;
}

static void write_file(const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_created_once_then_read_back(void **state)
{
	char a[HC_NODE_ID_LEN + 1], b[HC_NODE_ID_LEN + 1];
	struct hc_err err;
	struct stat st;

	(void)state;
	assert_int_equal(hc_node_id_load(path, a, &err), 0);
	assert_true(hc_uuid_valid(a));
	assert_int_equal(a[14], '4'); /* version 4 */
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	assert_int_equal(st.st_size, HC_NODE_ID_LEN + 1);
	assert_int_equal(hc_node_id_load(path, b, &err), 0);
	assert_string_equal(a, b);
	unlink(path);
}

static void test_file_without_newline_is_accepted(void **state)
{
	char id[HC_NODE_ID_LEN + 1];
	struct hc_err err;

	(void)state;
	write_file("0b5c3c52-6a11-4c39-9a57-1f0a6b6a2f10");
	assert_int_equal(hc_node_id_load(path, id, &err), 0);
	assert_string_equal(id, "0b5c3c52-6a11-4c39-9a57-1f0a6b6a2f10");
	unlink(path);
}

static void test_corrupt_file_is_an_error_and_kept(void **state)
{
	static const char *const bad[] = {
		"", "garbage\n", "0B5C3C52-6A11-4C39-9A57-1F0A6B6A2F10\n",
		"0b5c3c52-6a11-4c39-9a57-1f0a6b6a2f10\n\n", "0b5c3c52x6a11-4c39-9a57-1f0a6b6a2f10\n",
	};
	char id[HC_NODE_ID_LEN + 1], back[128];
	struct hc_err err;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		FILE *f;
		size_t n;

		write_file(bad[i]);
		err.msg[0] = '\0';
		assert_int_equal(hc_node_id_load(path, id, &err), -EINVAL);
		assert_non_null(strstr(err.msg, path));
		f = fopen(path, "r");
		n = fread(back, 1, sizeof(back) - 1, f);
		fclose(f);
		back[n] = '\0';
		assert_string_equal(back, bad[i]);
	}
	unlink(path);
}

static void test_unreadable_path_is_an_error(void **state)
{
	char id[HC_NODE_ID_LEN + 1];
	struct hc_err err;

	(void)state;
	assert_int_equal(mkdir(path, 0755), 0);
	assert_true(hc_node_id_load(path, id, &err) < 0);
	assert_non_null(strstr(err.msg, path));
	rmdir(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_created_once_then_read_back),
		cmocka_unit_test(test_file_without_newline_is_accepted),
		cmocka_unit_test(test_corrupt_file_is_an_error_and_kept),
		cmocka_unit_test(test_unreadable_path_is_an_error),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
