/* The generic option parser and --help: both walk a command's table of
 * struct hc_cli_opt. */
#include "cli.h"
#include "cli_int.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "runtime/runtime.h"

#define OPT_HELP (-2) /* --help was printed: exit 0 */
#define OPT_BAD (-3)  /* an error and the usage were printed: exit 2 */

/* Values that must outlive the parse (copies of environment variables
 * and config values, CSV fields): kept here, reachable, until exit. */
static char **kept;
static size_t nkept;

char *hc_cli_keep(char *s)
{
	char **grown;

	if (!s)
		return NULL;
	grown = realloc(kept, (nkept + 1) * sizeof(*grown));
	if (!grown) {
		free(s);
		return NULL;
	}
	kept = grown;
	kept[nkept++] = s;
	return s;
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

int hc_cli_opt_log_format(char *value, void *field, char *why, size_t len)
{
	(void)why;
	(void)len;
	return hc_log_format_parse(value, field);
}

void hc_cli_log_setup(enum hc_log_level level, enum hc_log_format format)
{
	hc_log_set_level(level);
	hc_log_set_format(format);
	hc_log_set_journal(hc_log_journal_stream());
}

/* Stores one option's value; -E2BIG when a list is full. */
static int store_one(const struct hc_cli_opt *o, char *value, void *args, char *why, size_t len)
{
	void *field = (char *)args + o->off;
	size_t *count;

	switch (o->type) {
	case HC_CLI_OPT_STR:
		*(const char **)field = value;
		return 0;
	case HC_CLI_OPT_FLAG:
	case HC_CLI_OPT_NOFLAG:
		break;
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

bool hc_cli_takes_value(const struct hc_cli_opt *o)
{
	return o->type != HC_CLI_OPT_FLAG && o->type != HC_CLI_OPT_NOFLAG;
}

/* strconv.ParseBool's spellings, which pflag's --flag=VALUE takes. */
static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "1", "t", "T", "true", "TRUE", "True" };
	static const char *const no[] = { "0", "f", "F", "false", "FALSE", "False" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcmp(s, yes[i]) == 0)
			return *out = true, 0;
		if (strcmp(s, no[i]) == 0)
			return *out = false, 0;
	}
	return -EINVAL;
}

/* A comma-separated value: each field in turn; its copies are kept. */
static int store_csv(const struct hc_cli_opt *o, const char *value, void *args, char *why,
		     size_t len)
{
	char **fields = NULL;
	size_t n = 0, i;
	int r = hc_cli_split_csv(value, &fields, &n);

	if (r == -EINVAL)
		snprintf(why, len, "an unterminated quote (a comma-separated list)");
	for (i = 0; r == 0 && i < n; i++) {
		char *f = hc_cli_keep(fields[i]);

		fields[i] = NULL;
		r = f ? store_one(o, f, args, why, len) : -ENOMEM;
	}
	for (; i < n; i++)
		free(fields[i]);
	free(fields);
	return r;
}

int hc_cli_store(const struct hc_cli_opt *o, char *value, void *args, char *why, size_t len)
{
	bool on = true;

	if (!hc_cli_takes_value(o)) {
		/* a flag: present, or "=true"/"=false" (config and environment too) */
		if (value && parse_bool(value, &on) < 0) {
			snprintf(why, len, "want true or false");
			return -EINVAL;
		}
		*(bool *)((char *)args + o->off) = (o->type == HC_CLI_OPT_FLAG) == on;
		return 0;
	}
	return o->csv ? store_csv(o, value, args, why, len) : store_one(o, value, args, why, len);
}

int hc_cli_store_error(const struct hc_cli_cmd *cmd, const struct hc_cli_opt *o, const char *value,
		       int r, const char *why, const char *where)
{
	char what[512];

	if (r == -ENOMEM)
		return hc_cli_fail("out of memory");
	if (r == -E2BIG)
		snprintf(what, sizeof(what), "at most %lu --%s", o->max, o->name);
	else if (why[0] && o->bare)
		snprintf(what, sizeof(what), "%s", why);
	else if (why[0])
		snprintf(what, sizeof(what), "invalid --%s %s: %s", o->name, value, why);
	else
		snprintf(what, sizeof(what), "invalid --%s %s%s%s%s", o->name, value,
			 o->why ? " (" : "", o->why ? o->why : "", o->why ? ")" : "");
	if (!where)
		return hc_cli_usage_error(cmd, "%s", what);
	/* from a file or the environment: name it, the usage would not help */
	fprintf(stderr, "hypercore %s: %s: %s\n", cmd->path, where, what);
	return HC_EXIT_USAGE;
}

/* ---- the command line ---- */

/* What the command line holds, in order. */
struct cmdline {
	const struct hc_cli_opt **opt; /* options given, with their values */
	char **value;
	size_t nset;
	char **operands;
	size_t nops, npre; /* npre: operands before "--" */
	const char *config;
};

const struct hc_cli_opt *hc_cli_find_opt(const struct hc_cli_opt *table, const char *name,
					 size_t len)
{
	for (; table && table->name; table++)
		if (table->type != HC_CLI_OPT_GROUP && strlen(table->name) == len &&
		    strncmp(table->name, name, len) == 0)
			return table;
	return NULL;
}

/* One "--name[=value]" at argv[*i] (taking the value from argv[*i + 1] if
 * it needs one): into c. OPT_HELP or OPT_BAD after printing, else 0. */
static int scan_long(const struct hc_cli_cmd *cmd, int argc, char **argv, int *i, struct cmdline *c)
{
	char *name = argv[*i] + 2, *eq = strchr(name, '=');
	size_t len = eq ? (size_t)(eq - name) : strlen(name);
	const struct hc_cli_opt *o = hc_cli_find_opt(cmd->opts, name, len);
	bool is_config = !o && len == 6 && strncmp(name, "config", 6) == 0;
	char *value = eq ? eq + 1 : NULL;

	if (!o && !is_config && len == 4 && strncmp(name, "help", 4) == 0) {
		hc_cli_print_usage(cmd, stdout);
		return OPT_HELP;
	}
	if (!o && !is_config)
		return hc_cli_usage_error(cmd, "unknown option --%.*s", (int)len, name), OPT_BAD;
	if (!value && (is_config || hc_cli_takes_value(o))) {
		if (*i + 1 >= argc)
			return hc_cli_usage_error(cmd, "option --%.*s needs a value", (int)len, name),
			       OPT_BAD;
		value = argv[++*i];
	}
	if (is_config) {
		c->config = value;
		return 0;
	}
	c->opt[c->nset] = o;
	c->value[c->nset++] = value;
	return 0;
}

/* Sorts argv[1..argc) into options (c->opt, c->value) and operands. */
static int scan(const struct hc_cli_cmd *cmd, int argc, char **argv, struct cmdline *c)
{
	bool dashdash = false;
	int r;

	for (int i = 1; i < argc; i++) {
		char *a = argv[i];

		if (dashdash || a[0] != '-' || a[1] == '\0') {
			c->operands[c->nops++] = a;
			c->npre += !dashdash;
		} else if (strcmp(a, "--") == 0) {
			dashdash = true;
		} else if (a[1] == '-') {
			if ((r = scan_long(cmd, argc, argv, &i, c)) < 0)
				return r;
		} else if (strcmp(a, "-h") == 0) {
			hc_cli_print_usage(cmd, stdout);
			return OPT_HELP;
		} else {
			return hc_cli_usage_error(cmd, "unknown option %s", a), OPT_BAD;
		}
	}
	return 0;
}

int hc_cli_dashdash;

/* The operands at the end of argv, in order, where callers look for them. */
static void place_operands(int argc, char **argv, const struct cmdline *c)
{
	optind = argc - (int)c->nops;
	hc_cli_dashdash = optind + (int)c->npre;
	memcpy(argv + optind, c->operands, c->nops * sizeof(char *));
}

static int apply_cmdline(const struct hc_cli_cmd *cmd, void *args, const struct cmdline *c)
{
	char why[256];
	int r;

	for (size_t i = 0; i < c->nset; i++) {
		why[0] = '\0';
		r = hc_cli_store(c->opt[i], c->value[i], args, why, sizeof(why));
		if (r < 0)
			return hc_cli_store_error(cmd, c->opt[i], c->value[i], r, why, NULL);
		hc_cli_record(cmd, c->opt[i], HC_CLI_SRC_FLAG, c->value[i]);
	}
	return -1;
}

int hc_cli_parse_opts(const struct hc_cli_cmd *cmd, int argc, char **argv, void *args)
{
	struct cmdline c = { 0 };
	size_t n = argc > 0 ? (size_t)argc : 1;
	bool *given = NULL;
	size_t rows = 0;
	int r;

	while (cmd->opts && cmd->opts[rows].name)
		rows++;
	c.opt = calloc(n, sizeof(*c.opt));
	c.value = calloc(n, sizeof(*c.value));
	c.operands = calloc(n, sizeof(*c.operands));
	given = calloc(rows + 1, sizeof(*given));
	if (!c.opt || !c.value || !c.operands || !given) {
		r = hc_cli_fail("out of memory");
		goto out;
	}
	r = scan(cmd, argc, argv, &c);
	if (r == OPT_HELP || r == OPT_BAD) {
		r = r == OPT_HELP ? HC_EXIT_OK : HC_EXIT_USAGE;
		goto out;
	}
	for (size_t i = 0; i < c.nset; i++)
		given[c.opt[i] - cmd->opts] = true;
	/* weaker sources first, each only for options no stronger one sets */
	r = hc_cli_apply_defaults(cmd, args, given, c.config);
	if (r < 0)
		r = apply_cmdline(cmd, args, &c);
	if (r < 0)
		place_operands(argc, argv, &c);
out:
	free(c.opt);
	free(c.value);
	free(c.operands);
	free(given);
	return r;
}

int hc_cli_take_id(const struct hc_cli_cmd *cmd, char **argv, const char **id)
{
	const char *pos = optind < hc_cli_dashdash ? argv[optind] : NULL;

	if (hc_cli_dashdash - optind > 1)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind + 1]);
	if (pos && *id && strcmp(pos, *id) != 0)
		return hc_cli_usage_error(cmd, "two different ids: %s and --id %s", pos, *id);
	optind = hc_cli_dashdash;
	if (!pos && !*id)
		return hc_cli_usage_error(cmd, "--id is required (or the id as the operand: ID)");
	if (!hc_uuid_valid(pos ? pos : *id))
		return hc_cli_usage_error(cmd, "invalid %s %s (a workload id is a lowercase UUID)",
					  pos ? "id" : "--id", pos ? pos : *id);
	*id = pos ? pos : *id;
	return -1;
}

/* ---- comma-separated values ---- */

/* One field at *s into out (NUL-terminated); *s then points past it. */
static int csv_field(const char **s, char *out)
{
	const char *p = *s;
	size_t n = 0;

	if (*p == '"') {
		/* a quoted field, as encoding/csv: "" is a quote, the rest literal */
		for (p++;; p++) {
			if (!*p)
				return -EINVAL;
			if (*p == '"' && p[1] != '"')
				break;
			out[n++] = *p;
			p += *p == '"';
		}
		p++;
		if (*p && *p != ',')
			return -EINVAL;
	} else {
		bool quoted = false;

		for (; *p && (quoted || *p != ','); p++) {
			quoted ^= *p == '"';
			out[n++] = *p;
		}
		if (quoted)
			return -EINVAL;
	}
	out[n] = '\0';
	*s = p;
	return 0;
}

int hc_cli_split_csv(const char *s, char ***out, size_t *n)
{
	char *buf = malloc(strlen(s) + 1), **grown;
	int r = 0;

	*out = NULL;
	*n = 0;
	if (!buf)
		return -ENOMEM;
	/* as pflag, an empty value is no field at all; "a," is "a" and "" */
	while (*s || *n) {
		if ((r = csv_field(&s, buf)) < 0)
			break;
		grown = realloc(*out, (*n + 1) * sizeof(*grown));
		if (!grown || !(grown[*n] = strdup(buf))) {
			*out = grown ? grown : *out;
			r = -ENOMEM;
			break;
		}
		*out = grown;
		(*n)++;
		if (*s++ != ',')
			break;
	}
	free(buf);
	if (r < 0) {
		while (*n)
			free((*out)[--*n]);
		free(*out);
		*out = NULL;
	}
	return r;
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
			print_row(out, label, hc_cli_takes_value(o) ? o->metavar : NULL, o->help);
		}
		fputs("\nEvery command:\n", out);
		print_row(out, "--config FILE", NULL, HC_CLI_CONFIG_HELP);
		print_row(out, "-h, --help", NULL, "show this help");
	}
	if (cmd->epilogue) {
		fputc('\n', out);
		fputs(cmd->epilogue, out);
	}
}
