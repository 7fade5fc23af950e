/* The generic option parser and --help: both walk a command's table of
 * struct hc_cli_opt. */
#include "cli.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "log/log.h"
#include "runtime/runtime.h"

#define MAX_OPTS 64 /* rows in one table */

#define OPT_HELP (-2) /* --help was printed: exit 0 */
#define OPT_BAD (-3)  /* an error and the usage were printed: exit 2 */

/* getopt_long() with our messages: returns the option's val, -1 at the end
 * of the options, or OPT_HELP/OPT_BAD. */
static int next_opt(const struct hc_cli_cmd *cmd, int argc, char **argv,
		    const struct option *opts)
{
	int c, idx = -1;

	opterr = 0; /* we print our own messages */
	c = getopt_long(argc, argv, "+:h", opts, &idx);
	if (c == 'h' || (c >= 0 && idx >= 0 && strcmp(opts[idx].name, "help") == 0)) {
		hc_cli_print_usage(cmd, stdout);
		return OPT_HELP;
	}
	if (c == '?') {
		const char *arg = argv[optind - 1];

		/* optopt is a short option's letter, or a long option's val when it
		 * was given a value it does not take: name the argument then. */
		if (optopt && optopt != '?' && optopt < 256)
			return hc_cli_usage_error(cmd, "unknown option -%c", optopt), OPT_BAD;
		return hc_cli_usage_error(cmd, "unknown option %s", arg), OPT_BAD;
	}
	if (c == ':')
		return hc_cli_usage_error(cmd, "option %s needs a value", argv[optind - 1]),
		       OPT_BAD;
	return c;
}

static int store_uint(const struct hc_cli_opt *o, const char *value, void *field)
{
	unsigned long v;

	if (hc_cli_parse_uint(value, o->min, o->max, &v) < 0)
		return -EINVAL;
	switch (o->size) {
	case sizeof(uint8_t):
		*(uint8_t *)field = (uint8_t)v;
		break;
	case sizeof(uint16_t):
		*(uint16_t *)field = (uint16_t)v;
		break;
	case sizeof(uint32_t):
		*(uint32_t *)field = (uint32_t)v;
		break;
	case sizeof(uint64_t):
		*(uint64_t *)field = v;
		break;
	default:
		return -EINVAL;
	}
	return 0;
}

int hc_cli_opt_cap(char *value, void *field, char *why, size_t len)
{
	struct hc_err err;

	if (hc_workload_spec_add_cap(field, value, &err) < 0) {
		snprintf(why, len, "%s", err.msg);
		return -EINVAL;
	}
	return 0;
}

int hc_cli_opt_seconds(char *value, void *field, char *why, size_t len)
{
	(void)why;
	(void)len;
	return hc_cli_parse_seconds(value, field);
}

int hc_cli_opt_log_level(char *value, void *field, char *why, size_t len)
{
	(void)why;
	(void)len;
	return hc_log_level_parse(value, field);
}

/* Stores one option's value; -E2BIG when a list is full. */
static int store(const struct hc_cli_opt *o, char *value, void *args, char *why, size_t len)
{
	void *field = (char *)args + o->off;
	size_t *count;

	switch (o->type) {
	case HC_CLI_OPT_STR:
		*(const char **)field = value;
		return 0;
	case HC_CLI_OPT_FLAG:
	case HC_CLI_OPT_NOFLAG:
		*(bool *)field = o->type == HC_CLI_OPT_FLAG;
		return 0;
	case HC_CLI_OPT_UINT:
		return store_uint(o, value, field);
	case HC_CLI_OPT_LIST:
		count = (size_t *)((char *)args + o->aux);
		if (*count >= o->max)
			return -E2BIG;
		((const char **)field)[(*count)++] = value;
		return 0;
	case HC_CLI_OPT_FUNC:
		return o->parse(value, field, why, len);
	case HC_CLI_OPT_GROUP:
		break;
	}
	return -EINVAL;
}

static bool takes_value(const struct hc_cli_opt *o)
{
	return o->type != HC_CLI_OPT_FLAG && o->type != HC_CLI_OPT_NOFLAG;
}

int hc_cli_parse_opts(const struct hc_cli_cmd *cmd, int argc, char **argv, void *args)
{
	const struct hc_cli_opt *table = cmd->opts;
	struct option lo[MAX_OPTS + 2];
	char why[256];
	size_t n = 0, nlo = 0;
	int c, r;

	for (; table && table[n].name; n++) {
		if (table[n].type == HC_CLI_OPT_GROUP)
			continue;
		if (nlo >= MAX_OPTS)
			return hc_cli_fail("%s: more than %d options", cmd->path, MAX_OPTS);
		lo[nlo++] = (struct option){ table[n].name,
					     takes_value(&table[n]) ? required_argument
								    : no_argument,
					     NULL, 256 + (int)n };
	}
	lo[nlo] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[nlo + 1] = (struct option){ NULL, 0, NULL, 0 };

	while ((c = next_opt(cmd, argc, argv, lo)) != -1) {
		const struct hc_cli_opt *o;

		if (c == OPT_HELP)
			return HC_EXIT_OK;
		if (c < 256 || c >= 256 + (int)n)
			return HC_EXIT_USAGE;
		o = &table[c - 256];
		why[0] = '\0';
		r = store(o, optarg, args, why, sizeof(why));
		if (r == -E2BIG)
			return hc_cli_usage_error(cmd, "at most %lu --%s", o->max, o->name);
		if (r == -ENOMEM)
			return hc_cli_fail("out of memory");
		if (r < 0 && why[0] && o->bare)
			return hc_cli_usage_error(cmd, "%s", why);
		if (r < 0 && why[0])
			return hc_cli_usage_error(cmd, "invalid --%s %s: %s", o->name, optarg, why);
		if (r < 0)
			return hc_cli_usage_error(cmd, "invalid --%s %s%s%s%s", o->name, optarg,
						  o->why ? " (" : "", o->why ? o->why : "",
						  o->why ? ")" : "");
	}
	return -1;
}

/* ---- --help ---- */

#define HELP_COL 26   /* where descriptions start */
#define HELP_WIDTH 79 /* the longest line, unless one word is longer */

/* Prints text from column col (the cursor is there), wrapped at HELP_WIDTH
 * with continuation lines at HELP_COL; "\n" in text breaks the line. */
static void print_wrapped(FILE *out, const char *text, size_t col)
{
	bool first = true; /* no word on this line yet */

	while (*text) {
		size_t n = strcspn(text, " \n");

		if (!first && col + 1 + n > HELP_WIDTH) {
			fprintf(out, "\n%*s", HELP_COL, "");
			col = HELP_COL;
			first = true;
		}
		if (!first) {
			fputc(' ', out);
			col++;
		}
		fwrite(text, 1, n, out);
		col += n;
		first = false;
		text += n;
		if (*text == '\n') {
			fprintf(out, "\n%*s", HELP_COL, "");
			col = HELP_COL;
			first = true;
		}
		text += strspn(text, " \n");
	}
	fputc('\n', out);
}

/* "  --name METAVAR" padded to HELP_COL (or two spaces past a longer one),
 * then the help. */
static void print_row(FILE *out, const char *label, const char *metavar, const char *help)
{
	int col = fprintf(out, "  %s%s%s", label, metavar ? " " : "", metavar ? metavar : "");

	col += fprintf(out, "%*s", col + 2 <= HELP_COL ? HELP_COL - col : 2, "");
	print_wrapped(out, help ? help : "", (size_t)col);
}

void hc_cli_print_usage(const struct hc_cli_cmd *cmd, FILE *out)
{
	const struct hc_cli_opt *o = cmd->opts;
	char label[128];

	fputs(cmd->usage, out);
	if (o) {
		fputs("\nOptions:\n", out);
		for (; o->name; o++) {
			if (o->type == HC_CLI_OPT_GROUP) {
				fprintf(out, "\n%s:\n", o->help);
				continue;
			}
			snprintf(label, sizeof(label), "--%s", o->name);
			print_row(out, label, takes_value(o) ? o->metavar : NULL, o->help);
		}
		print_row(out, "-h, --help", NULL, "show this help");
	}
	if (cmd->epilogue) {
		fputc('\n', out);
		fputs(cmd->epilogue, out);
	}
}
