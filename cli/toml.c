/* A strict subset of TOML for the configuration file: enough for every
 * option by its long name, nothing that would need a guess. Debian 12 ships
 * no C TOML library (only C++ ones), hence our own. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KEY 128   /* a key or a table name, unescaped */
#define MAX_ITEMS 256 /* elements of one array */
#define MAX_TABLES 64 /* [table] headers in one file */

struct toml_parser {
	const char *p, *end;
	unsigned line;
	const char *name; /* the file, for messages */
	char table[MAX_KEY];
	char tables[MAX_TABLES][MAX_KEY]; /* every header so far */
	size_t ntables;
	struct hc_toml *out;
	struct hc_err *err;
};

/* "NAME:LINE: message"; returns -EINVAL. */
static int fail(struct toml_parser *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct toml_parser *t, const char *fmt, ...)
{
	char msg[sizeof(t->err->msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return hc_err_set(t->err, -EINVAL, "%s:%u: %s", t->name, t->line, msg);
}

static void skip_blank(struct toml_parser *t)
{
	while (t->p < t->end && (*t->p == ' ' || *t->p == '\t'))
		t->p++;
}

/* Blanks, newlines and comments, as between an array's elements. */
static void skip_space(struct toml_parser *t)
{
	for (;;) {
		skip_blank(t);
		if (t->p < t->end && *t->p == '#')
			while (t->p < t->end && *t->p != '\n')
				t->p++;
		if (t->p < t->end && (*t->p == '\n' || (*t->p == '\r' && t->p + 1 < t->end &&
							 t->p[1] == '\n'))) {
			t->p += *t->p == '\r' ? 2 : 1;
			t->line++;
			continue;
		}
		return;
	}
}

/* After a key/value or a table header: blanks, maybe a comment, then the
 * end of the line or of the file. */
static int end_of_line(struct toml_parser *t)
{
	skip_blank(t);
	if (t->p < t->end && *t->p == '#')
		while (t->p < t->end && *t->p != '\n')
			t->p++;
	if (t->p < t->end && *t->p == '\r' && t->p + 1 < t->end && t->p[1] == '\n')
		t->p++;
	if (t->p == t->end)
		return 0;
	if (*t->p != '\n')
		return fail(t, "unexpected '%c' after the value", *t->p);
	t->p++;
	t->line++;
	return 0;
}

/* Appends the UTF-8 encoding of code point cp. */
static int put_utf8(struct toml_parser *t, char *buf, size_t *n, size_t cap, unsigned long cp)
{
	unsigned char b[4];
	size_t len;

	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0)
		return fail(t, "invalid \\u escape");
	if (cp < 0x80) {
		b[0] = (unsigned char)cp, len = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | cp >> 6), b[1] = (unsigned char)(0x80 | (cp & 0x3f));
		len = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | cp >> 12);
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f));
		len = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | cp >> 18);
		b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f));
		len = 4;
	}
	if (*n + len >= cap)
		return fail(t, "string too long");
	memcpy(buf + *n, b, len);
	*n += len;
	return 0;
}

/* \uXXXX or \UXXXXXXXX at t->p (after the 'u' or 'U'). */
static int unicode_escape(struct toml_parser *t, size_t digits, char *buf, size_t *n, size_t cap)
{
	unsigned long cp = 0;

	for (size_t i = 0; i < digits; i++, t->p++) {
		char c = t->p < t->end ? *t->p : '\0';
		int v = c >= '0' && c <= '9' ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10
					       : -1;

		if (v < 0)
			return fail(t, "invalid \\u escape");
		cp = cp << 4 | (unsigned long)v;
	}
	return put_utf8(t, buf, n, cap, cp);
}

static int escape(struct toml_parser *t, char *buf, size_t *n, size_t cap)
{
	static const char from[] = "btnfr\"\\", to[] = "\b\t\n\f\r\"\\";
	const char *e;
	char c;

	if (t->p == t->end)
		return fail(t, "unterminated string");
	c = *t->p++;
	if (c == 'u' || c == 'U')
		return unicode_escape(t, c == 'u' ? 4 : 8, buf, n, cap);
	e = c ? strchr(from, c) : NULL;
	if (!e)
		return fail(t, "invalid escape \\%c", c);
	if (*n + 1 >= cap)
		return fail(t, "string too long");
	buf[(*n)++] = to[e - from];
	return 0;
}

/* A basic ("...") or literal ('...') string at t->p into buf (cap bytes,
 * NUL-terminated). Multi-line strings are not in the subset. */
static int string(struct toml_parser *t, char *buf, size_t cap)
{
	char quote = *t->p++;
	size_t n = 0;
	int r;

	if (t->end - t->p >= 2 && t->p[0] == quote && t->p[1] == quote)
		return fail(t, "multi-line strings are not supported");
	while (t->p < t->end && *t->p != quote) {
		unsigned char c = (unsigned char)*t->p;

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return fail(t, c == '\n' ? "unterminated string" : "control character in a string");
		t->p++;
		if (c == '\\' && quote == '"') {
			if ((r = escape(t, buf, &n, cap)) < 0)
				return r;
			continue;
		}
		if (n + 1 >= cap)
			return fail(t, "string too long");
		buf[n++] = (char)c;
	}
	if (t->p == t->end)
		return fail(t, "unterminated string");
	t->p++;
	buf[n] = '\0';
	return 0;
}

/* Is the next character c? eat: then past it. */
static bool at(const struct toml_parser *t, char c)
{
	return t->p < t->end && *t->p == c;
}

static bool eat(struct toml_parser *t, char c)
{
	if (!at(t, c))
		return false;
	t->p++;
	return true;
}

static bool bare_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

/* One key (bare or quoted) into buf. */
static int key(struct toml_parser *t, char *buf)
{
	size_t n = 0;

	if (t->p < t->end && (*t->p == '"' || *t->p == '\'')) {
		int r = string(t, buf, MAX_KEY);

		/* TOML allows "", but no option or table is named so: say it here */
		if (r == 0 && !*buf)
			return fail(t, "empty key");
		return r;
	}
	while (t->p < t->end && bare_char(*t->p)) {
		if (n + 1 >= MAX_KEY)
			return fail(t, "key too long");
		buf[n++] = *t->p++;
	}
	if (!n)
		return fail(t, "expected a key");
	buf[n] = '\0';
	return 0;
}

/* A number as TOML writes it, decimal only; out gets it without '_' or a
 * leading '+'. */
static int number(struct toml_parser *t, char *out, size_t cap, enum hc_toml_type *type)
{
	const char *s = t->p;
	size_t n = 0;
	bool digit = false;

	*type = HC_TOML_INT;
	if (t->p < t->end && (*t->p == '+' || *t->p == '-'))
		t->p++;
	if (t->end - t->p > 1 && t->p[0] == '0' && t->p[1] >= '0' && t->p[1] <= '9')
		return fail(t, "leading zeros are not allowed in numbers");
	if (t->end - t->p > 1 && t->p[0] == '0' && strchr("xob", t->p[1]))
		return fail(t, "only decimal numbers are supported");
	for (; t->p < t->end && strchr("0123456789_.eE+-", *t->p); t->p++) {
		bool d = *t->p >= '0' && *t->p <= '9';

		if (*t->p == '_' && (!digit || t->p + 1 == t->end || t->p[1] < '0' || t->p[1] > '9'))
			return fail(t, "'_' must be between digits");
		if ((*t->p == '+' || *t->p == '-') && t->p[-1] != 'e' && t->p[-1] != 'E')
			return fail(t, "invalid number");
		if (strchr(".eE", *t->p))
			*type = HC_TOML_FLOAT;
		if (*t->p == '.' && !digit)
			return fail(t, "invalid number");
		digit = d;
	}
	if (!digit)
		return fail(t, "invalid number");
	for (; s < t->p; s++)
		if (*s != '_' && !(*s == '+' && n == 0)) {
			if (n + 1 >= cap)
				return fail(t, "number too long");
			out[n++] = *s;
		}
	out[n] = '\0';
	return 0;
}

static bool word_at(const struct toml_parser *t, const char *w)
{
	size_t n = strlen(w);

	return (size_t)(t->end - t->p) >= n && memcmp(t->p, w, n) == 0 &&
	       ((size_t)(t->end - t->p) == n || !bare_char(t->p[n]));
}

/* One scalar value: its type and its text (strings unescaped). */
static int scalar(struct toml_parser *t, char *buf, size_t cap, enum hc_toml_type *type)
{
	if (t->p == t->end)
		return fail(t, "expected a value");
	if (*t->p == '"' || *t->p == '\'') {
		*type = HC_TOML_STRING;
		return string(t, buf, cap);
	}
	if (word_at(t, "true") || word_at(t, "false")) {
		*type = HC_TOML_BOOL;
		snprintf(buf, cap, "%s", *t->p == 't' ? "true" : "false");
		t->p += *t->p == 't' ? 4 : 5;
		return 0;
	}
	if ((*t->p >= '0' && *t->p <= '9') || *t->p == '+' || *t->p == '-')
		return number(t, buf, cap, type);
	if (*t->p == '{')
		return fail(t, "inline tables are not supported");
	return fail(t, "expected a value (a \"string\", a number, true, false or [an array])");
}

static int add_item(struct toml_parser *t, struct hc_toml_entry *e, const char *text)
{
	char **grown;

	if (e->nitems >= MAX_ITEMS)
		return fail(t, "more than %d elements", MAX_ITEMS);
	grown = realloc(e->items, (e->nitems + 1) * sizeof(*grown));
	if (!grown)
		return hc_err_set(t->err, -ENOMEM, "out of memory");
	e->items = grown;
	if (!(grown[e->nitems] = strdup(text)))
		return hc_err_set(t->err, -ENOMEM, "out of memory");
	e->nitems++;
	return 0;
}

/* [ v, v, ... ] of one scalar type, over lines, with a trailing comma. */
static int array(struct toml_parser *t, struct hc_toml_entry *e, char *buf, size_t cap)
{
	enum hc_toml_type type, first = HC_TOML_ARRAY;
	int r;

	t->p++;
	for (;;) {
		skip_space(t);
		if (at(t, ']'))
			break;
		if (at(t, '['))
			return fail(t, "nested arrays are not supported");
		if ((r = scalar(t, buf, cap, &type)) < 0)
			return r;
		if (first != HC_TOML_ARRAY && type != first)
			return fail(t, "an array's elements must all have one type");
		first = type;
		if ((r = add_item(t, e, buf)) < 0)
			return r;
		skip_space(t);
		if (eat(t, ','))
			continue;
		if (at(t, ']'))
			break;
		return fail(t, t->p == t->end ? "unterminated array" : "expected ',' or ']'");
	}
	t->p++;
	e->type = HC_TOML_ARRAY;
	e->elem = first;
	return 0;
}

static bool seen(const struct toml_parser *t, const char *table, const char *k)
{
	for (size_t i = 0; i < t->out->n; i++)
		if (strcmp(t->out->entries[i].table, table) == 0 &&
		    strcmp(t->out->entries[i].key, k) == 0)
			return true;
	return false;
}

/* A new entry at the end of out, for key k in the current table. */
static struct hc_toml_entry *new_entry(struct toml_parser *t, const char *k)
{
	struct hc_toml *o = t->out;
	struct hc_toml_entry *grown = realloc(o->entries, (o->n + 1) * sizeof(*grown)), *e;

	if (!grown) {
		hc_err_set(t->err, -ENOMEM, "out of memory");
		return NULL;
	}
	o->entries = grown;
	e = &grown[o->n];
	memset(e, 0, sizeof(*e));
	e->line = t->line;
	e->table = strdup(t->table);
	e->key = strdup(k);
	o->n++;
	if (!e->table || !e->key) {
		hc_err_set(t->err, -ENOMEM, "out of memory");
		return NULL;
	}
	return e;
}

static int key_value(struct toml_parser *t)
{
	char k[MAX_KEY], *buf;
	struct hc_toml_entry *e;
	int r;

	if ((r = key(t, k)) < 0)
		return r;
	skip_blank(t);
	if (at(t, '.'))
		return fail(t, "dotted keys are not supported: use a [table]");
	if (!eat(t, '='))
		return fail(t, "expected '=' after the key %s", k);
	skip_blank(t);
	if (seen(t, t->table, k))
		return fail(t, "%s is set twice", k);
	if (!(e = new_entry(t, k)))
		return t->err->code;
	buf = malloc(HC_TOML_MAX_VALUE);
	if (!buf)
		return hc_err_set(t->err, -ENOMEM, "out of memory");
	if (at(t, '[')) {
		r = array(t, e, buf, HC_TOML_MAX_VALUE);
	} else {
		r = scalar(t, buf, HC_TOML_MAX_VALUE, &e->type);
		e->elem = e->type;
		if (r == 0)
			r = add_item(t, e, buf);
	}
	free(buf);
	return r < 0 ? r : end_of_line(t);
}

/* [name] or [a.b]: the table the keys after it belong to. */
static int table_header(struct toml_parser *t)
{
	char k[MAX_KEY], name[MAX_KEY] = "";
	int r;

	t->p++;
	if (at(t, '['))
		return fail(t, "arrays of tables are not supported");
	for (;;) {
		skip_blank(t);
		if ((r = key(t, k)) < 0)
			return r;
		if (strlen(name) + strlen(k) + 2 > sizeof(name))
			return fail(t, "table name too long");
		if (*name)
			strcat(name, ".");
		strcat(name, k);
		skip_blank(t);
		if (eat(t, '.'))
			continue;
		if (at(t, ']'))
			break;
		return fail(t, "expected ']'");
	}
	t->p++;
	for (size_t i = 0; i < t->ntables; i++)
		if (strcmp(t->tables[i], name) == 0)
			return fail(t, "table [%s] is defined twice", name);
	if (t->ntables == MAX_TABLES)
		return fail(t, "more than %d tables", MAX_TABLES);
	snprintf(t->tables[t->ntables++], MAX_KEY, "%s", name);
	snprintf(t->table, sizeof(t->table), "%s", name);
	return end_of_line(t);
}

int hc_toml_parse(const char *text, size_t len, const char *name, struct hc_toml *out,
		  struct hc_err *err)
{
	struct toml_parser t = { .p = text, .end = text + len, .line = 1, .name = name,
				 .out = out, .err = err };
	int r = 0;

	memset(out, 0, sizeof(*out));
	if (memchr(text, '\0', len))
		return hc_err_set(err, -EINVAL, "%s: a NUL byte: not a text file", name);
	while (r == 0) {
		skip_space(&t);
		if (t.p == t.end)
			return 0;
		r = *t.p == '[' ? table_header(&t) : key_value(&t);
	}
	hc_toml_fini(out);
	return r;
}

void hc_toml_fini(struct hc_toml *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++) {
		struct hc_toml_entry *e = &t->entries[i];

		for (size_t k = 0; k < e->nitems; k++)
			free(e->items[k]);
		free(e->items);
		free(e->table);
		free(e->key);
	}
	free(t->entries);
	memset(t, 0, sizeof(*t));
}
