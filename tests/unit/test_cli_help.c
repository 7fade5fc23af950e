/* The CLI's --help comes from its option tables: every row documented,
 * every option shown, the layout aligned and wrapped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"

#define MAX_LINE 79 /* as cli/opts.c wraps */

/* The command's --help as a string (free it). */
static char *help_of(const struct hc_cli_cmd *cmd)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	hc_cli_print_usage(cmd, f);
	assert_int_equal(fclose(f), 0);
	return text;
}

static bool takes_value(const struct hc_cli_opt *o)
{
	return o->type != HC_CLI_OPT_FLAG && o->type != HC_CLI_OPT_NOFLAG;
}

static void test_every_row_is_documented(void **state)
{
	(void)state;
	for (unsigned i = 0; i < hc_cli_ncmds; i++) {
		const struct hc_cli_cmd *cmd = &hc_cli_cmds[i];

		for (const struct hc_cli_opt *o = cmd->opts; o && o->name; o++) {
			if (!o->help || !*o->help)
				fail_msg("%s --%s: no help text", cmd->path, o->name);
			if (o->type == HC_CLI_OPT_GROUP)
				continue;
			if (takes_value(o) != (o->metavar != NULL))
				fail_msg("%s --%s: a metavar %s", cmd->path, o->name,
					 o->metavar ? "on a flag" : "missing");
			for (const struct hc_cli_opt *p = cmd->opts; p < o; p++)
				if (strcmp(p->name, o->name) == 0)
					fail_msg("%s --%s: twice in the table", cmd->path, o->name);
		}
	}
}

/* "\n  --NAME" then a space or the end of the line. */
static bool names_option(const char *help, const char *name)
{
	char want[128];
	const char *p = help;
	size_t n = (size_t)snprintf(want, sizeof(want), "\n  --%s", name);

	while ((p = strstr(p, want))) {
		if (p[n] == ' ' || p[n] == '\n')
			return true;
		p += n;
	}
	return false;
}

static void test_help_shows_every_option(void **state)
{
	(void)state;
	for (unsigned i = 0; i < hc_cli_ncmds; i++) {
		const struct hc_cli_cmd *cmd = &hc_cli_cmds[i];
		char *help = help_of(cmd);

		for (const struct hc_cli_opt *o = cmd->opts; o && o->name; o++)
			if (o->type != HC_CLI_OPT_GROUP && !names_option(help, o->name))
				fail_msg("%s --help does not show --%s", cmd->path, o->name);
		if (cmd->opts && !strstr(help, "\n  -h, --help "))
			fail_msg("%s --help does not show -h, --help", cmd->path);
		assert_int_equal(strncmp(help, "Usage: hypercore ", 17), 0);
		for (const char *line = help; *line;) {
			size_t len = strcspn(line, "\n");

			if (len > MAX_LINE)
				fail_msg("%s --help: a line of %zu columns: %.*s", cmd->path, len,
					 (int)len, line);
			line += len + (line[len] == '\n');
		}
		free(help);
	}
}

/* Options are described only in tables: no hand-written option lines. */
static void test_texts_describe_no_option(void **state)
{
	(void)state;
	for (unsigned i = 0; i < hc_cli_ncmds; i++) {
		const struct hc_cli_cmd *cmd = &hc_cli_cmds[i];
		const char *texts[] = { cmd->usage, cmd->epilogue };

		for (unsigned k = 0; k < 2; k++)
			if (texts[k] && (strstr(texts[k], "\n  -") || strstr(texts[k], "Options:")))
				fail_msg("%s: an option described outside its table", cmd->path);
	}
}

struct fake_args {
	const char *addr;
	bool quiet;
	unsigned long n;
};

#define F struct fake_args
static const struct hc_cli_opt fake_opts[] = {
	HC_CLI_STR("addr", F, addr, "ADDR", "where it listens"),
	HC_CLI_FLAG("quiet", F, quiet, "say nothing"),
	HC_CLI_GROUP("Tuning (rarely needed)"),
	HC_CLI_UINT("a-rather-long-option-name", F, n, 0, 9, NULL, "COUNT",
		    "a description long enough to need a second line, and even a third one "
		    "since it goes on and on"),
	HC_CLI_UINT("n", F, n, 0, 9, NULL, "N", "first line\nsecond line"),
	{ .name = NULL },
};
#undef F

static void test_layout(void **state)
{
	const struct hc_cli_cmd cmd = {
		.path = "fake",
		.usage = "Usage: hypercore fake [options]\n",
		.opts = fake_opts,
		.epilogue = "The end.\n",
	};
	char *help = help_of(&cmd);

	(void)state;
	assert_string_equal(help,
			    "Usage: hypercore fake [options]\n"
			    "\n"
			    "Options:\n"
			    "  --addr ADDR             where it listens\n"
			    "  --quiet                 say nothing\n"
			    "\n"
			    "Tuning (rarely needed):\n"
			    "  --a-rather-long-option-name COUNT  a description long enough to need a second\n"
			    "                          line, and even a third one since it goes on and on\n"
			    "  --n N                   first line\n"
			    "                          second line\n"
			    "\n"
			    "Every command:\n"
			    "  --config FILE           read options from this TOML file, by their long names\n"
			    "                          (default /etc/hypercore/hypercore.toml when present);\n"
			    "                          $HYPERCORE_<OPTION> overrides it, the command line\n"
			    "                          both\n"
			    "  -h, --help              show this help\n"
			    "\n"
			    "The end.\n");
	free(help);
}

/* Group rows are headings only: the parser takes the options around them. */
static void test_parse_skips_groups(void **state)
{
	const struct hc_cli_cmd cmd = { .path = "fake", .usage = "", .opts = fake_opts };
	char *argv[] = { "fake", "--quiet", "--n", "7", "--addr", "x", "rest", NULL };
	struct fake_args a = { 0 };

	(void)state;
	optind = 0;
	assert_int_equal(hc_cli_parse_opts(&cmd, 7, argv, &a), -1);
	assert_true(a.quiet);
	assert_int_equal(a.n, 7);
	assert_string_equal(a.addr, "x");
	assert_int_equal(optind, 6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_row_is_documented),
		cmocka_unit_test(test_help_shows_every_option),
		cmocka_unit_test(test_texts_describe_no_option),
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_parse_skips_groups),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
