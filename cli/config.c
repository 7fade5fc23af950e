/* Where options come from besides the command line, as upstream's viper
 * binds them: $HYPERCORE_<NAME> and the TOML configuration file; and what
 * `hypercore config show` prints of them. */
#include "cli.h"
#include "cli_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CONFIG_SIZE (1u << 20) /* a configuration file larger is refused */
#define MAX_ROWS 128               /* rows of one table that are recorded */
#define ENV_PREFIX "HYPERCORE_"
#define MAX_DEFAULT_TEXT 40        /* of a default as a row's help words it */

/* What the last parse found for each row of its command. */
static struct {
	const struct hc_cli_cmd *cmd;
	enum hc_cli_source src[MAX_ROWS];
	const char *text[MAX_ROWS]; /* as given; repeated values joined by "," */
	const char *file;           /* the configuration file read, or NULL */
} rec;

static void record_for(const struct hc_cli_cmd *cmd)
{
	if (rec.cmd != cmd) {
		memset(&rec, 0, sizeof(rec));
		rec.cmd = cmd;
	}
}

void hc_cli_record(const struct hc_cli_cmd *cmd, const struct hc_cli_opt *o, enum hc_cli_source src,
		   const char *value)
{
	size_t i = (size_t)(o - cmd->opts);
	char *text = NULL;

	record_for(cmd);
	if (i >= MAX_ROWS)
		return;
	if (!value)
		value = "true"; /* a flag given bare */
	/* the values of a repeated option add up; a flag's last one counts */
	if (rec.src[i] == src && rec.text[i] && hc_cli_takes_value(o)) {
		if (asprintf(&text, "%s,%s", rec.text[i], value) < 0)
			return;
	} else if (!(text = strdup(value))) {
		return;
	}
	rec.src[i] = src;
	rec.text[i] = hc_cli_keep(text);
}

/* ---- the environment ---- */

/* $HYPERCORE_<NAME>: upper case, '-' as '_'; NULL when unset or empty. */
static const char *env_value(const char *name, char *var, size_t len)
{
	size_t n = (size_t)snprintf(var, len, ENV_PREFIX "%s", name);
	const char *v;

	for (size_t i = sizeof(ENV_PREFIX) - 1; i < n && i < len; i++)
		var[i] = var[i] == '-' ? '_' : (char)toupper((unsigned char)var[i]);
	v = getenv(var);
	return v && *v ? v : NULL;
}

/* Stores one value that did not come from the command line: a copy, kept,
 * since parse functions may write into it. -1 to go on, else the status. */
static int store_from(const struct hc_cli_cmd *cmd, const struct hc_cli_opt *o, const char *value,
		      void *args, enum hc_cli_source src, const char *where)
{
	char why[256] = "", *copy = hc_cli_keep(strdup(value));
	int r;

	if (!copy)
		return hc_cli_fail("out of memory");
	r = hc_cli_store(o, copy, args, why, sizeof(why));
	if (r < 0)
		return hc_cli_store_error(cmd, o, value, r, why, where);
	hc_cli_record(cmd, o, src, value);
	return -1;
}

/* ---- the configuration file ---- */

static int read_text(const char *path, char **text, size_t *len, struct hc_err *err)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return hc_err_set(err, -errno, "cannot read %s: %s", path, strerror(errno));
	*text = malloc(MAX_CONFIG_SIZE + 1);
	if (!*text) {
		fclose(f);
		return hc_err_set(err, -ENOMEM, "out of memory");
	}
	n = fread(*text, 1, MAX_CONFIG_SIZE + 1, f);
	if (ferror(f) || n > MAX_CONFIG_SIZE) {
		hc_err_set(err, ferror(f) ? -EIO : -EFBIG, "cannot read %s: %s", path,
			   ferror(f) ? "read error" : "larger than 1 MiB");
		fclose(f);
		free(*text);
		return err->code;
	}
	fclose(f);
	*len = n;
	return 0;
}

/* The command whose table is [name] ("cluster.spawn": `cluster spawn`). */
static const struct hc_cli_cmd *table_cmd(const char *name)
{
	for (unsigned i = 0; i < hc_cli_ncmds; i++) {
		const char *p = hc_cli_cmds[i].path;
		size_t k = 0;

		while (p[k] && name[k] && (p[k] == name[k] || (p[k] == ' ' && name[k] == '.')))
			k++;
		if (!p[k] && !name[k] && hc_cli_cmds[i].opts)
			return &hc_cli_cmds[i];
	}
	return NULL;
}

static bool any_cmd_has(const char *key)
{
	for (unsigned i = 0; i < hc_cli_ncmds; i++)
		if (hc_cli_find_opt(hc_cli_cmds[i].opts, key, strlen(key)))
			return true;
	return false;
}

/* Every key must be an option: of some command at the top, of that
 * command in its [table]. */
static int check_keys(const char *path, const struct hc_toml *t, struct hc_err *err)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct hc_toml_entry *e = &t->entries[i];
		const struct hc_cli_cmd *c = *e->table ? table_cmd(e->table) : NULL;

		if (*e->table && !c)
			return hc_err_set(err, -EINVAL, "%s:%u: [%s] is no command (tables are "
					  "commands, as [cluster] or [cluster.spawn])",
					  path, e->line, e->table);
		if (c && !hc_cli_find_opt(c->opts, e->key, strlen(e->key)))
			return hc_err_set(err, -EINVAL, "%s:%u: `hypercore %s` has no option %s",
					  path, e->line, c->path, e->key);
		if (!c && !any_cmd_has(e->key))
			return hc_err_set(err, -EINVAL, "%s:%u: unknown option %s", path, e->line,
					  e->key);
	}
	return 0;
}

/* Reads the configuration file into t: config if given (it must exist),
 * else $HYPERCORE_CONFIG (the same), else the default when present.
 * rec.file names it. */
static int load_config(const char *config, struct hc_toml *t, struct hc_err *err)
{
	const char *path = config ? config : getenv(ENV_PREFIX "CONFIG");
	char *text = NULL;
	size_t len = 0;
	int r;

	memset(t, 0, sizeof(*t));
	if (!path || !*path) {
		/* absent, or the agent's alone (0600, it may hold secrets): a
		 * user's client verb runs without it */
		path = HC_CLI_DEFAULT_CONFIG;
		if (access(path, R_OK) < 0 && (errno == ENOENT || errno == EACCES))
			return 0;
	}
	if ((r = read_text(path, &text, &len, err)) < 0)
		return r;
	r = hc_toml_parse(text, len, path, t, err);
	free(text);
	if (r == 0 && (r = check_keys(path, t, err)) < 0)
		hc_toml_fini(t);
	if (r == 0)
		rec.file = hc_cli_keep(strdup(path));
	return r;
}

/* The entry that sets o for cmd: in cmd's [table], else at the top. */
static const struct hc_toml_entry *config_entry(const struct hc_toml *t,
						const struct hc_cli_cmd *cmd,
						const struct hc_cli_opt *o)
{
	const struct hc_toml_entry *top = NULL;

	for (size_t i = 0; i < t->n; i++) {
		const struct hc_toml_entry *e = &t->entries[i];

		if (strcmp(e->key, o->name) != 0)
			continue;
		if (!*e->table)
			top = e;
		else if (table_cmd(e->table) == cmd)
			return e;
	}
	return top;
}

/* The value's type must suit the row: flags true or false, arrays only for
 * options that may be repeated. */
static const char *type_mismatch(const struct hc_toml_entry *e, const struct hc_cli_opt *o)
{
	bool repeatable = o->type == HC_CLI_OPT_LIST || o->type == HC_CLI_OPT_FUNC;

	if (!hc_cli_takes_value(o))
		return e->type == HC_TOML_BOOL ? NULL : "wants true or false";
	if (e->elem == HC_TOML_BOOL)
		return "wants a value, not true or false";
	if (e->type == HC_TOML_ARRAY && !repeatable)
		return "takes one value, not an array";
	return NULL;
}

static int apply_entry(const struct hc_cli_cmd *cmd, const struct hc_cli_opt *o, void *args,
		       const struct hc_toml_entry *e)
{
	const char *bad = type_mismatch(e, o);
	char where[4200];
	int r = -1;

	snprintf(where, sizeof(where), "%s:%u", rec.file, e->line);
	if (bad) {
		fprintf(stderr, "hypercore %s: %s: %s %s\n", cmd->path, where, o->name, bad);
		return HC_EXIT_USAGE;
	}
	for (size_t k = 0; k < e->nitems && r < 0; k++)
		r = store_from(cmd, o, e->items[k], args, HC_CLI_SRC_CONFIG, where);
	return r;
}

int hc_cli_apply_defaults(const struct hc_cli_cmd *cmd, void *args, const bool *given,
			  const char *config)
{
	struct hc_toml t;
	struct hc_err err;
	char var[160], where[200];
	int r = -1;

	memset(&rec, 0, sizeof(rec));
	rec.cmd = cmd;
	if (load_config(config, &t, &err) < 0) {
		fprintf(stderr, "hypercore %s: %s\n", cmd->path, err.msg);
		return err.code == -ENOMEM ? HC_EXIT_FAIL : HC_EXIT_USAGE;
	}
	for (size_t i = 0; cmd->opts && cmd->opts[i].name && r < 0; i++) {
		const struct hc_cli_opt *o = &cmd->opts[i];
		const struct hc_toml_entry *e;
		const char *v;

		if (o->type == HC_CLI_OPT_GROUP || given[i])
			continue;
		if ((v = env_value(o->name, var, sizeof(var)))) {
			snprintf(where, sizeof(where), "$%s", var);
			r = store_from(cmd, o, v, args, HC_CLI_SRC_ENV, where);
		} else if ((e = config_entry(&t, cmd, o))) {
			r = apply_entry(cmd, o, args, e);
		}
	}
	hc_toml_fini(&t);
	return r;
}

/* ---- config show ---- */

/* What a row's help says its default is ("(default 2000)"), or "". */
void hc_cli_help_default(const struct hc_cli_opt *o, char *buf, size_t len)
{
	const char *d = o->help ? strstr(o->help, "(default") : NULL;
	size_t n;

	buf[0] = '\0';
	if (!d)
		return;
	/* "enforce (default with ...)", "splice (default), ...": the word before */
	if (d > o->help && (d[8] == ')' || strncmp(d + 8, " with", 5) == 0)) {
		const char *w = d - 1;

		while (w > o->help && w[-1] != ' ' && w[-1] != '(')
			w--;
		snprintf(buf, len, "%.*s", (int)(d - 1 - w), w);
		return;
	}
	d += strlen("(default");
	d += strspn(d, ": ");
	n = strcspn(d, ");");
	if (n)
		snprintf(buf, len, "%.*s", (int)(n > MAX_DEFAULT_TEXT ? MAX_DEFAULT_TEXT : n), d);
}

static void effective_value(const struct hc_cli_opt *o, const void *args, size_t i, char *buf,
			    size_t len)
{
	const void *field = (const char *)args + o->off;
	const char *s;

	if (i < MAX_ROWS && rec.src[i] != HC_CLI_SRC_DEFAULT) {
		s = rec.text[i];
	} else if (!hc_cli_takes_value(o)) {
		s = *(const bool *)field ? "true" : "false";
	} else if (o->type == HC_CLI_OPT_STR && *(const char *const *)field) {
		s = *(const char *const *)field;
	} else {
		hc_cli_help_default(o, buf, len);
		if (!buf[0])
			snprintf(buf, len, "-");
		return;
	}
	if (o->secret && s && *s)
		snprintf(buf, len, "<secret, %zu characters>", strlen(s));
	else
		snprintf(buf, len, "%s", s ? s : "-");
}

void hc_cli_print_config(const struct hc_cli_cmd *cmd, const void *args, FILE *out)
{
	static const char *const hdr[] = { "OPTION", "VALUE", "SOURCE" };
	static const char *const src_name[] = { "default", "config", "env", "flag" };
	struct hc_cli_table *t = hc_cli_table_new(3, hdr);

	record_for(cmd);
	fputs("# effective options: flag > env ($" ENV_PREFIX "<OPTION>) > config > default\n", out);
	fprintf(out, "# config file: %s\n", rec.file ? rec.file : "none (" HC_CLI_DEFAULT_CONFIG
							     " is absent)");
	for (size_t i = 0; t && cmd->opts && cmd->opts[i].name; i++) {
		const struct hc_cli_opt *o = &cmd->opts[i];
		char value[4200];

		if (o->type == HC_CLI_OPT_GROUP)
			continue;
		effective_value(o, args, i, value, sizeof(value));
		if (hc_cli_table_add(t, (const char *const[]){
					     o->name, value,
					     src_name[i < MAX_ROWS ? rec.src[i] : 0] }) < 0)
			break;
	}
	if (t)
		hc_cli_table_print(t, out);
	hc_cli_table_free(t);
}
