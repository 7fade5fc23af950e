/* The option parser as upstream's users expect it (pflag and viper): options
 * anywhere, "--", "=" values, comma-separated lists, ids as operands, and
 * the configuration file and environment under the command line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli.h"

#define ID1 "11111111-1111-4111-8111-111111111111"
#define ID2 "22222222-2222-4222-8222-222222222222"

/* Rows named as real options: a configuration file may only name those. */
struct fake_args {
	const char *addr, *id;
	bool json;
	unsigned long tail;
	const char *env[8];
	size_t nenv;
};

static int collect_env(char *value, void *field, char *why, size_t len)
{
	struct fake_args *a = field;

	(void)why;
	(void)len;
	if (!strchr(value, '=') || a->nenv >= 8)
		return -EINVAL;
	a->env[a->nenv++] = value;
	return 0;
}

#define F struct fake_args
static const struct hc_cli_opt fake_opts[] = {
	HC_CLI_STR("grpc-bind-addr", F, addr, "ADDR", "where"),
	HC_CLI_STR("id", F, id, "ID", "the workload"),
	HC_CLI_FLAG("json", F, json, "as JSON"),
	HC_CLI_UINT("tail", F, tail, 0, 99, NULL, "N", "lines"),
	{ .name = "env", .type = HC_CLI_OPT_FUNC, .parse = collect_env, .csv = true,
	  .metavar = "A=B", .help = "variables" },
	{ .name = NULL },
};
#undef F

static const struct hc_cli_cmd fake = { .path = "fake", .usage = "Usage: fake\n", .opts = fake_opts };

static char tmpdir[] = "/tmp/hc-test-cli-XXXXXX";
static char empty_config[64];

/* Every test starts with no variables of ours and an empty configuration
 * file, whatever the machine has in /etc. */
static int setup(void **state)
{
	FILE *f;

	(void)state;
	unsetenv("HYPERCORE_GRPC_BIND_ADDR");
	unsetenv("HYPERCORE_TAIL");
	unsetenv("HYPERCORE_JSON");
	unsetenv("HYPERCORE_ENV");
	snprintf(empty_config, sizeof(empty_config), "%s/empty.toml", tmpdir);
	f = fopen(empty_config, "w");
	assert_non_null(f);
	fclose(f);
	setenv("HYPERCORE_CONFIG", empty_config, 1);
	return 0;
}

struct result {
	int rc;
	char err[4096]; /* what went to stderr */
};

/* Parses argv (NULL-terminated, copied: the parser reorders it) into a. */
static struct result parse(struct fake_args *a, char **argv_out, const char *first, ...)
{
	static char *argv[32];
	struct result res = { 0 };
	char path[128];
	va_list ap;
	int argc = 0, saved = dup(2), fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/stderr", tmpdir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0 && saved >= 0);
	va_start(ap, first);
	for (const char *s = first; s; s = va_arg(ap, const char *))
		argv[argc++] = (char *)s;
	va_end(ap);
	argv[argc] = NULL;
	memset(a, 0, sizeof(*a));
	fflush(stderr);
	dup2(fd, 2);
	res.rc = hc_cli_parse_opts(&fake, argc, argv, a);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, res.err, sizeof(res.err) - 1, 0);
	res.err[n > 0 ? n : 0] = '\0';
	close(fd);
	if (argv_out)
		memcpy(argv_out, argv, sizeof(char *) * (size_t)(argc + 1));
	return res;
}

static void test_options_after_operands(void **state)
{
	struct fake_args a;
	char *argv[32];
	struct result r = parse(&a, argv, "fake", "--grpc-bind-addr", "10.0.0.2:7946", "seed1",
				"--json", "seed2", "--tail", "5", NULL);

	(void)state;
	assert_int_equal(r.rc, -1);
	assert_string_equal(a.addr, "10.0.0.2:7946");
	assert_true(a.json);
	assert_int_equal(a.tail, 5);
	assert_int_equal(optind, 6);
	assert_string_equal(argv[6], "seed1");
	assert_string_equal(argv[7], "seed2");
	assert_int_equal(hc_cli_dashdash, 8);
}

static void test_dashdash_ends_options(void **state)
{
	struct fake_args a;
	char *argv[32];
	struct result r = parse(&a, argv, "fake", "x", "--json", "--", "--tail", "-v", NULL);

	(void)state;
	assert_int_equal(r.rc, -1);
	assert_true(a.json);
	assert_int_equal(a.tail, 0);
	assert_int_equal(optind, 3);
	assert_int_equal(hc_cli_dashdash, 4);
	assert_string_equal(argv[3], "x");
	assert_string_equal(argv[4], "--tail");
	assert_string_equal(argv[5], "-v");
}

static void test_equals_form(void **state)
{
	struct fake_args a;
	struct result r = parse(&a, NULL, "fake", "--grpc-bind-addr=a=b", "--tail=7", "--json=true",
				NULL);

	(void)state;
	assert_int_equal(r.rc, -1);
	assert_string_equal(a.addr, "a=b");
	assert_int_equal(a.tail, 7);
	assert_true(a.json);
	r = parse(&a, NULL, "fake", "--json", "--json=false", NULL);
	assert_int_equal(r.rc, -1);
	assert_false(a.json);
	r = parse(&a, NULL, "fake", "--json=maybe", NULL);
	assert_int_equal(r.rc, 2);
	assert_non_null(strstr(r.err, "hypercore fake: invalid --json maybe: want true or false"));
}

static void test_errors_name_option_and_command(void **state)
{
	struct fake_args a;
	struct result r = parse(&a, NULL, "fake", "seed", "--cluster-base-url", "x", NULL);

	(void)state;
	assert_int_equal(r.rc, 2);
	assert_non_null(strstr(r.err, "hypercore fake: unknown option --cluster-base-url\n"));
	r = parse(&a, NULL, "fake", "--tail", NULL);
	assert_int_equal(r.rc, 2);
	assert_non_null(strstr(r.err, "hypercore fake: option --tail needs a value"));
	r = parse(&a, NULL, "fake", "-x", NULL);
	assert_int_equal(r.rc, 2);
	assert_non_null(strstr(r.err, "unknown option -x"));
	r = parse(&a, NULL, "fake", "--tail", "100", NULL);
	assert_int_equal(r.rc, 2);
	assert_non_null(strstr(r.err, "invalid --tail 100"));
	/* a lone "-" is an operand, as for pflag */
	r = parse(&a, NULL, "fake", "-", NULL);
	assert_int_equal(r.rc, -1);
}

static void test_help_anywhere(void **state)
{
	struct fake_args a;
	int saved = dup(1), devnull = open("/dev/null", O_WRONLY);
	struct result r;

	(void)state;
	fflush(stdout);
	dup2(devnull, 1);
	r = parse(&a, NULL, "fake", "seed", "--help", NULL);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	close(devnull);
	assert_int_equal(r.rc, 0);
}

static void test_csv_lists(void **state)
{
	struct fake_args a;
	struct result r = parse(&a, NULL, "fake", "--env", "A=1,B=2", "--env", "C=3", NULL);

	(void)state;
	assert_int_equal(r.rc, -1);
	assert_int_equal(a.nenv, 3);
	assert_string_equal(a.env[0], "A=1");
	assert_string_equal(a.env[1], "B=2");
	assert_string_equal(a.env[2], "C=3");
	r = parse(&a, NULL, "fake", "--env", "\"A=x,y\",B=\"p,q\"", NULL);
	assert_int_equal(r.rc, -1);
	assert_int_equal(a.nenv, 2);
	assert_string_equal(a.env[0], "A=x,y");
	assert_string_equal(a.env[1], "B=\"p,q\"");
	r = parse(&a, NULL, "fake", "--env", "", NULL);
	assert_int_equal(r.rc, -1);
	assert_int_equal(a.nenv, 0);
	r = parse(&a, NULL, "fake", "--env", "A=\"x,y", NULL);
	assert_int_equal(r.rc, 2);
	assert_non_null(strstr(r.err, "unterminated quote"));
	/* a trailing comma is an empty field, which the option refuses */
	r = parse(&a, NULL, "fake", "--env", "A=1,", NULL);
	assert_int_equal(r.rc, 2);
}

static void split_is(const char *in, int rc, size_t n, const char *const *want)
{
	char **out;
	size_t got;

	assert_int_equal(hc_cli_split_csv(in, &out, &got), rc);
	if (rc < 0)
		return;
	assert_int_equal(got, n);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(out[i], want[i]);
		free(out[i]);
	}
	free(out);
}

static void test_split_csv(void **state)
{
	(void)state;
	split_is("a", 0, 1, (const char *const[]){ "a" });
	split_is("a,b,c", 0, 3, (const char *const[]){ "a", "b", "c" });
	split_is("\"a,\"\"b\"\"\",c", 0, 2, (const char *const[]){ "a,\"b\"", "c" });
	split_is("a,,b", 0, 3, (const char *const[]){ "a", "", "b" });
	split_is("", 0, 0, NULL);
	split_is("\"a\"b", -EINVAL, 0, NULL);
	split_is("\"a", -EINVAL, 0, NULL);
}

static void test_positional_id(void **state)
{
	struct fake_args a;
	char *argv[32];
	struct result r;

	(void)state;
	r = parse(&a, argv, "fake", ID1, "--json", NULL);
	assert_int_equal(r.rc, -1);
	assert_int_equal(hc_cli_take_id(&fake, argv, &a.id), -1);
	assert_string_equal(a.id, ID1);
	assert_int_equal(optind, 3);

	r = parse(&a, argv, "fake", "--id", ID1, ID1, "--", "sh", "-c", NULL);
	assert_int_equal(hc_cli_take_id(&fake, argv, &a.id), -1);
	assert_string_equal(a.id, ID1);
	assert_string_equal(argv[optind], "sh");

	r = parse(&a, argv, "fake", "--id", ID1, NULL);
	assert_int_equal(hc_cli_take_id(&fake, argv, &a.id), -1);
	assert_string_equal(a.id, ID1);
}

/* take_id's failure: its exit status, and its first line in want. */
static void take_id_fails(char **argv, const char **id, const char *want)
{
	char path[128], err[4096];
	int saved = dup(2), fd, rc;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/stderr", tmpdir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	rc = hc_cli_take_id(&fake, argv, id);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, err, sizeof(err) - 1, 0);
	err[n > 0 ? n : 0] = '\0';
	close(fd);
	assert_int_equal(rc, 2);
	if (strncmp(err, want, strlen(want)) != 0)
		fail_msg("wanted \"%s\", got \"%s\"", want, err);
}

static void test_positional_id_errors(void **state)
{
	struct fake_args a;
	char *argv[32];

	(void)state;
	parse(&a, argv, "fake", "--id", ID1, ID2, NULL);
	take_id_fails(argv, &a.id, "hypercore fake: two different ids: " ID2 " and --id " ID1);
	parse(&a, argv, "fake", NULL);
	take_id_fails(argv, &a.id, "hypercore fake: --id is required (or the id as the operand");
	parse(&a, argv, "fake", "not-an-id", NULL);
	take_id_fails(argv, &a.id, "hypercore fake: invalid id not-an-id (a workload id is");
	parse(&a, argv, "fake", "--id", "../etc", NULL);
	take_id_fails(argv, &a.id, "hypercore fake: invalid --id ../etc (a workload id is");
	parse(&a, argv, "fake", ID1, ID2, NULL);
	take_id_fails(argv, &a.id, "hypercore fake: unexpected argument " ID2);
}

static void write_config(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* config show's table of the last parse, as a string (free it). */
static char *shown(const struct fake_args *a)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	hc_cli_print_config(&fake, a, f);
	fclose(f);
	return text;
}

/* A row of config show: "NAME  VALUE  SOURCE" however aligned. */
static void shows(const char *table, const char *name, const char *value, const char *src)
{
	char want[256], line[512];
	const char *p = table;

	snprintf(want, sizeof(want), "%s %s %s", name, value, src);
	while (*p) {
		size_t n = strcspn(p, "\n"), k = 0;

		/* squeeze the alignment's runs of spaces into one */
		for (size_t i = 0; i < n && k + 1 < sizeof(line); i++)
			if (p[i] != ' ' || (k && line[k - 1] != ' '))
				line[k++] = p[i];
		line[k] = '\0';
		if (strcmp(line, want) == 0)
			return;
		p += n + (p[n] == '\n');
	}
	fail_msg("config show has no row \"%s\":\n%s", want, table);
}

static void test_precedence(void **state)
{
	char path[128], *table;
	struct fake_args a;
	struct result r;

	(void)state;
	snprintf(path, sizeof(path), "%s/hypercore.toml", tmpdir);
	write_config(path, "# the agent\n"
			   "grpc-bind-addr = \"1.1.1.1:1\"\n"
			   "tail = 10\n"
			   "json = true\n"
			   "env = [\"A=1\", \"B=2\"]\n");
	setenv("HYPERCORE_TAIL", "20", 1);
	r = parse(&a, NULL, "fake", "--config", path, "--grpc-bind-addr", "3.3.3.3:3", NULL);
	assert_int_equal(r.rc, -1);
	assert_string_equal(a.addr, "3.3.3.3:3");
	assert_int_equal(a.tail, 20);
	assert_true(a.json);
	assert_int_equal(a.nenv, 2);
	table = shown(&a);
	shows(table, "grpc-bind-addr", "3.3.3.3:3", "flag");
	shows(table, "tail", "20", "env");
	shows(table, "json", "true", "config");
	shows(table, "env", "A=1,B=2", "config");
	shows(table, "id", "-", "default");
	free(table);

	/* the variable names the file when --config does not */
	setenv("HYPERCORE_CONFIG", path, 1);
	setenv("HYPERCORE_ENV", "C=3,D=4", 1);
	r = parse(&a, NULL, "fake", "--env", "E=5", NULL);
	assert_int_equal(r.rc, -1);
	assert_string_equal(a.addr, "1.1.1.1:1");
	/* a list from one source only, the strongest: not merged */
	assert_int_equal(a.nenv, 1);
	assert_string_equal(a.env[0], "E=5");
	r = parse(&a, NULL, "fake", NULL);
	assert_int_equal(a.nenv, 2);
	assert_string_equal(a.env[1], "D=4");
	unlink(path);
}

static void config_fails(const char *text, const char *want)
{
	char path[128];
	struct fake_args a;
	struct result r;

	snprintf(path, sizeof(path), "%s/bad.toml", tmpdir);
	write_config(path, text);
	r = parse(&a, NULL, "fake", "--config", path, NULL);
	if (r.rc != 2 || !strstr(r.err, want))
		fail_msg("config %s: rc %d, stderr %s; wanted %s", text, r.rc, r.err, want);
	unlink(path);
}

static void test_config_errors(void **state)
{
	struct fake_args a;
	struct result r;

	(void)state;
	config_fails("\n\nbogus = 1\n", "bad.toml:3: unknown option bogus");
	config_fails("[nosuch]\njson = true\n", "bad.toml:2: [nosuch] is no command");
	config_fails("[cluster.spawn]\ncluster-bind-addr = \"x\"\n",
		     "bad.toml:2: `hypercore cluster spawn` has no option cluster-bind-addr");
	config_fails("json = \"yes\"\n", "bad.toml:1: json wants true or false");
	config_fails("tail = true\n", "bad.toml:1: tail wants a value, not true or false");
	config_fails("grpc-bind-addr = [\"a\", \"b\"]\n", "takes one value, not an array");
	config_fails("tail = 100\n", "bad.toml:1: invalid --tail 100");
	config_fails("tail = 1\ntail = 2\n", "bad.toml:2: tail is set twice");
	config_fails("tail 1\n", "bad.toml:1: expected '=' after the key tail");
	r = parse(&a, NULL, "fake", "--config", "/nonexistent/hypercore.toml", NULL);
	assert_int_equal(r.rc, 2);
	assert_non_null(strstr(r.err, "cannot read /nonexistent/hypercore.toml"));
	setenv("HYPERCORE_TAIL", "x", 1);
	r = parse(&a, NULL, "fake", NULL);
	assert_int_equal(r.rc, 2);
	assert_non_null(strstr(r.err, "$HYPERCORE_TAIL: invalid --tail x"));
}

/* A command's [table] wins over the top of the file, for that command. */
static void test_config_command_table(void **state)
{
	const struct hc_cli_cmd *logs = NULL;
	char path[128];
	struct hc_cli_id_args a = { 0 };
	char *argv[] = { "logs", "--config", path, NULL };

	(void)state;
	for (unsigned i = 0; i < hc_cli_ncmds; i++)
		if (strcmp(hc_cli_cmds[i].path, "cluster logs") == 0)
			logs = &hc_cli_cmds[i];
	assert_non_null(logs);
	snprintf(path, sizeof(path), "%s/tables.toml", tmpdir);
	write_config(path, "tail = 3\ngrpc-bind-addr = '1.1.1.1:1'\n\n[cluster.logs]\ntail = 4\n");
	assert_int_equal(hc_cli_parse_opts(logs, 3, argv, &a), -1);
	assert_int_equal(a.tail, 4);
	assert_string_equal(a.addr, "1.1.1.1:1");
	unlink(path);
}

/* ---- the TOML subset itself ---- */

static void toml_fails(const char *text, const char *want)
{
	struct hc_toml t;
	struct hc_err err;

	if (hc_toml_parse(text, strlen(text), "f", &t, &err) != -EINVAL ||
	    !strstr(err.msg, want))
		fail_msg("%s: got \"%s\", wanted \"%s\"", text, err.msg, want);
}

static void test_toml_values(void **state)
{
	static const char text[] =
		"# comment\n"
		"a = \"x\\ty\\\"z\\u00e9\" # trailing\n"
		"'b' = 'C:\\path'\r\n"
		"c = -1_000\n"
		"d = 0.5e3\n"
		"e = false\n"
		"f = [\n  \"one\", # first\n  \"two\",\n]\n"
		"\n[cluster.spawn]\n"
		"g = []\n";
	struct hc_toml t;
	struct hc_err err;

	(void)state;
	assert_int_equal(hc_toml_parse(text, sizeof(text) - 1, "f", &t, &err), 0);
	assert_int_equal(t.n, 7);
	assert_string_equal(t.entries[0].items[0], "x\ty\"z\xc3\xa9");
	assert_int_equal(t.entries[0].type, HC_TOML_STRING);
	assert_string_equal(t.entries[1].key, "b");
	assert_string_equal(t.entries[1].items[0], "C:\\path");
	assert_string_equal(t.entries[2].items[0], "-1000");
	assert_int_equal(t.entries[2].type, HC_TOML_INT);
	assert_int_equal(t.entries[3].type, HC_TOML_FLOAT);
	assert_string_equal(t.entries[4].items[0], "false");
	assert_int_equal(t.entries[5].type, HC_TOML_ARRAY);
	assert_int_equal(t.entries[5].nitems, 2);
	assert_string_equal(t.entries[5].items[1], "two");
	assert_int_equal(t.entries[5].line, 7);
	assert_string_equal(t.entries[6].table, "cluster.spawn");
	assert_int_equal(t.entries[6].nitems, 0);
	assert_int_equal(t.entries[6].line, 13);
	hc_toml_fini(&t);
}

static void test_toml_errors(void **state)
{
	(void)state;
	toml_fails("a = \"x\n", "f:1: unterminated string");
	toml_fails("a = 1\nb = \"\"\"x\"\"\"\n", "f:2: multi-line strings are not supported");
	toml_fails("a.b = 1\n", "f:1: dotted keys are not supported");
	toml_fails("a = 0x10\n", "f:1: only decimal numbers");
	toml_fails("a = 012\n", "f:1: leading zeros");
	toml_fails("a = 1_\n", "'_' must be between digits");
	toml_fails("a = { b = 1 }\n", "inline tables are not supported");
	toml_fails("[[a]]\n", "arrays of tables are not supported");
	toml_fails("[a]\n[a]\n", "f:2: table [a] is defined twice");
	toml_fails("a = [1, \"x\"]\n", "must all have one type");
	toml_fails("a = [[1]]\n", "nested arrays are not supported");
	toml_fails("a = [1, 2\n", "f:2: unterminated array");
	toml_fails("a = 1 2\n", "f:1: unexpected '2' after the value");
	toml_fails("a = \"\\q\"\n", "invalid escape \\q");
	toml_fails("a = 1979-05-27\n", "f:1: invalid number");
	toml_fails("= 1\n", "expected a key");
	toml_fails("\"\" = 1\n", "f:1: empty key");
	toml_fails("[\"\"]\n", "f:1: empty key");
	toml_fails("a = \n", "expected a value");
}

static int teardown_all(void **state)
{
	char path[128];

	(void)state;
	snprintf(path, sizeof(path), "%s/stderr", tmpdir);
	unlink(path);
	unlink(empty_config);
	return rmdir(tmpdir);
}

static int setup_all(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_options_after_operands, setup),
		cmocka_unit_test_setup(test_dashdash_ends_options, setup),
		cmocka_unit_test_setup(test_equals_form, setup),
		cmocka_unit_test_setup(test_errors_name_option_and_command, setup),
		cmocka_unit_test_setup(test_help_anywhere, setup),
		cmocka_unit_test_setup(test_csv_lists, setup),
		cmocka_unit_test_setup(test_split_csv, setup),
		cmocka_unit_test_setup(test_positional_id, setup),
		cmocka_unit_test_setup(test_positional_id_errors, setup),
		cmocka_unit_test_setup(test_precedence, setup),
		cmocka_unit_test_setup(test_config_errors, setup),
		cmocka_unit_test_setup(test_config_command_table, setup),
		cmocka_unit_test(test_toml_values),
		cmocka_unit_test(test_toml_errors),
	};

	return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
