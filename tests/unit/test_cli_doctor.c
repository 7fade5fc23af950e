/* hypercore doctor's own parsing and verdicts: a metric from Prometheus
 * text, a secret file's mode; and the man pages, completion and default
 * configuration the option tables generate. */
#include <errno.h>
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

#include "cli.h"
#include "cli_int.h"
#include "tmpdir.h"

static void test_metric_value(void **state)
{
	const char *text = "# HELP hypercore_workload_addresses_free Free.\n"
			   "# TYPE hypercore_workload_addresses_free gauge\n"
			   "hypercore_workload_addresses_free_total 9\n"
			   "hypercore_workload_addresses_free 65000\n"
			   "hypercore_x{a=\"b c\"} 2.5\n"
			   "hypercore_bad 1x\n";
	double v = 0;

	(void)state;
	assert_int_equal(hc_cli_metric_value(text, "hypercore_workload_addresses_free", &v), 0);
	assert_true(v == 65000);
	assert_int_equal(hc_cli_metric_value(text, "hypercore_x", &v), 0);
	assert_true(v == 2.5);
	assert_int_equal(hc_cli_metric_value(text, "hypercore_bad", &v), -EINVAL);
	assert_int_equal(hc_cli_metric_value(text, "hypercore_none", &v), -ENOENT);
	assert_int_equal(hc_cli_metric_value("", "a", &v), -ENOENT);
	assert_int_equal(hc_cli_metric_value("a{b=\"c\"", "a", &v), -EINVAL);
	/* a label set cut by the line's end is no sample, whatever follows */
	assert_int_equal(hc_cli_metric_value("a{b=\"c\"\nd} 1\n", "a", &v), -EINVAL);
}

static void test_secret_file_modes(void **state)
{
	char dir[256], path[300], what[512];

	(void)state;
	assert_int_equal(hc_tmpdir_new(dir, sizeof(dir), "doctor"), 0);
	snprintf(path, sizeof(path), "%s/api-token", dir);
	assert_int_equal(hc_cli_doctor_file_mode(path, what, sizeof(what)), HC_DOCTOR_OK);
	assert_non_null(strstr(what, "No such file"));
	fclose(fopen(path, "w"));
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(hc_cli_doctor_file_mode(path, what, sizeof(what)), HC_DOCTOR_OK);
	assert_non_null(strstr(what, "mode 0600"));
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(hc_cli_doctor_file_mode(path, what, sizeof(what)), HC_DOCTOR_FAIL);
	assert_non_null(strstr(what, "mode 0644: others may read"));
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(hc_cli_doctor_file_mode(path, what, sizeof(what)), HC_DOCTOR_FAIL);
	assert_int_equal(chmod(path, 0400), 0);
	assert_int_equal(hc_cli_doctor_file_mode(path, what, sizeof(what)), HC_DOCTOR_OK);
	unlink(path);
	hc_tmpdir_remove(dir);
}

/* What `hypercore help ARGS...` prints (free it), and its status. */
static char *gendoc(int *status, int argc, ...)
{
	char *argv[4], *text = NULL;
	size_t len = 0;
	FILE *saved = stdout, *f = open_memstream(&text, &len);
	va_list ap;

	assert_non_null(f);
	va_start(ap, argc);
	for (int i = 0; i < argc; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	stdout = f;
	*status = hc_cli_gendoc(argc, argv);
	stdout = saved;
	assert_int_equal(fclose(f), 0);
	return text;
}

/* Every option of every command is in its group's page, every group has
 * one, and nothing else is. */
static void test_man_pages_cover_every_option(void **state)
{
	int st;
	char *groups = gendoc(&st, 2, "help", "--man-groups");

	(void)state;
	assert_int_equal(st, 0);
	for (unsigned i = 0; i < hc_cli_ncmds; i++) {
		const struct hc_cli_cmd *c = &hc_cli_cmds[i];
		char group[64], needle[128];
		char *page;

		snprintf(group, sizeof(group), "%.*s", (int)strcspn(c->path, " "), c->path);
		snprintf(needle, sizeof(needle), "\n%s\n", group);
		assert_true(strncmp(groups, needle + 1, strlen(needle) - 1) == 0 ||
			    strstr(groups, needle));
		page = gendoc(&st, 3, "help", "--man", group);
		assert_int_equal(st, 0);
		for (const struct hc_cli_opt *o = c->opts; o && o->name; o++) {
			char opt[128], *p = opt;

			if (o->type == HC_CLI_OPT_GROUP)
				continue;
			/* roff: every '-' is "\-" */
			p += sprintf(p, "\\fB\\-\\-");
			for (const char *n = o->name; *n; n++)
				p += *n == '-' ? sprintf(p, "\\-") : sprintf(p, "%c", *n);
			if (!strstr(page, opt))
				fail_msg("hypercore-%s(8) lacks --%s of `%s`", group, o->name, c->path);
		}
		free(page);
	}
	free(gendoc(&st, 3, "help", "--man", "nosuchgroup"));
	assert_int_equal(st, HC_EXIT_USAGE);
	free(gendoc(&st, 2, "help", "--nothing"));
	assert_int_equal(st, HC_EXIT_USAGE);
	free(groups);
}

/* The default configuration parses, sets nothing, and names every option
 * of the agent. */
static void test_default_config_is_all_comments(void **state)
{
	const struct hc_cli_opt *o;
	struct hc_toml t;
	struct hc_err err;
	int st;
	char *text = gendoc(&st, 2, "help", "--config");

	(void)state;
	assert_int_equal(st, 0);
	assert_int_equal(hc_toml_parse(text, strlen(text), "default", &t, &err), 0);
	assert_int_equal(t.n, 0);
	hc_toml_fini(&t);
	for (o = hc_cli_opts_cluster; o->name; o++) {
		char needle[128];

		if (o->type == HC_CLI_OPT_GROUP)
			continue;
		snprintf(needle, sizeof(needle), "\n#%s = ", o->name);
		if (!strstr(text, needle))
			fail_msg("the default configuration lacks %s", o->name);
	}
	/* uncommented, the lines with real defaults parse and are accepted */
	assert_non_null(strstr(text, "\n#state-period-ms = 5000\n"));
	assert_non_null(strstr(text, "\n#grpc-bind-addr = \"0.0.0.0:8000\"\n"));
	assert_non_null(strstr(text, "\n#respawn-on-node-failure = false\n"));
	free(text);
}

static void test_completion_names_every_command(void **state)
{
	int st;
	char *text = gendoc(&st, 2, "help", "--bash-completion");

	(void)state;
	assert_int_equal(st, 0);
	for (unsigned i = 0; i < hc_cli_ncmds; i++) {
		char needle[160];

		snprintf(needle, sizeof(needle), "\t[\"hypercore %s\"]=\"", hc_cli_cmds[i].path);
		if (!strstr(text, needle))
			fail_msg("completion lacks `%s`", hc_cli_cmds[i].path);
	}
	assert_non_null(strstr(text, "complete -o filenames -F _hypercore hypercore\n"));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_metric_value),
		cmocka_unit_test(test_secret_file_modes),
		cmocka_unit_test(test_man_pages_cover_every_option),
		cmocka_unit_test(test_default_config_is_all_comments),
		cmocka_unit_test(test_completion_names_every_command),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
