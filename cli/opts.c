/* The generic option parser: walks a command's table of struct hc_cli_opt. */
#include "cli.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "log/log.h"

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
	}
	return -EINVAL;
}

int hc_cli_parse_opts(const struct hc_cli_cmd *cmd, int argc, char **argv,
		      const struct hc_cli_opt *table, void *args)
{
	struct option lo[MAX_OPTS + 2];
	char why[256];
	size_t n = 0;
	int c, r;

	for (; table[n].name; n++) {
		if (n >= MAX_OPTS)
			return hc_cli_fail("%s: more than %d options", cmd->path, MAX_OPTS);
		lo[n] = (struct option){ table[n].name,
					 table[n].type == HC_CLI_OPT_FLAG ||
							 table[n].type == HC_CLI_OPT_NOFLAG
						 ? no_argument
						 : required_argument,
					 NULL, 256 + (int)n };
	}
	lo[n] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[n + 1] = (struct option){ NULL, 0, NULL, 0 };

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
