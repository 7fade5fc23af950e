/* Reads the Prometheus text the agents serve on /metrics, for the verbs
 * that show figures from it (cluster top). Lenient where the format allows
 * (timestamps, spacing), strict where a wrong reading would show wrong
 * numbers (a name, a label's quotes, a value that is no number). */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool name_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static bool name_char(char c)
{
	return name_start(c) || (c >= '0' && c <= '9');
}

static char *skip_blank(char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* Unescapes a label value in place from p (after its opening quote) up to
 * its closing quote, which becomes the NUL. The end, or NULL. */
static char *label_value(char *p)
{
	char *out = p;

	for (; *p && *p != '"'; p++) {
		if (*p == '\\') {
			p++;
			if (*p == 'n')
				*out++ = '\n';
			else if (*p == '\\' || *p == '"')
				*out++ = *p;
			else
				return NULL;
		} else {
			*out++ = *p;
		}
	}
	if (*p != '"')
		return NULL;
	*out = '\0';
	return p + 1;
}

/* The labels of p (after '{') into s; the position after '}', or NULL. */
static char *labels(char *p, struct hc_prom_sample *s)
{
	for (;;) {
		char *key;

		p = skip_blank(p);
		if (*p == '}')
			return p + 1;
		if (!name_start(*p) || *p == ':')
			return NULL;
		key = p;
		while (name_char(*p) && *p != ':')
			p++;
		if (*p != '=' || p[1] != '"')
			return NULL;
		*p = '\0';
		if (s->nlabels < HC_PROM_MAX_LABELS) {
			s->keys[s->nlabels] = key;
			s->values[s->nlabels++] = p + 2;
		}
		p = label_value(p + 2);
		if (!p)
			return NULL;
		p = skip_blank(p);
		if (*p == ',')
			p++;
		else if (*p != '}')
			return NULL;
	}
}

/* Parses one NUL-terminated sample line in place. 0 or -EBADMSG. */
static int parse_line(char *p, struct hc_prom_sample *s)
{
	char *end;

	memset(s, 0, sizeof(*s));
	if (!name_start(*p))
		return -EBADMSG;
	s->name = p;
	while (name_char(*p))
		p++;
	if (*p == '{') {
		*p = '\0';
		p = labels(p + 1, s);
		if (!p)
			return -EBADMSG;
	} else if (*p == ' ' || *p == '\t') {
		*p++ = '\0';
	} else {
		return -EBADMSG;
	}
	p = skip_blank(p);
	s->value = strtod(p, &end);
	if (end == p || (*end && *end != ' ' && *end != '\t'))
		return -EBADMSG;
	return 0;
}

int hc_prom_parse(const char *text, size_t len,
		  int (*fn)(const struct hc_prom_sample *s, void *arg), void *arg)
{
	char *line = NULL;
	size_t cap = 0;
	int r = 0;

	for (size_t at = 0; at < len && r == 0;) {
		const char *nl = memchr(text + at, '\n', len - at);
		size_t n = (nl ? (size_t)(nl - text) : len) - at;
		struct hc_prom_sample s;
		char *p;

		if (n + 1 > cap) {
			char *bigger = realloc(line, n + 1);

			if (!bigger) {
				r = -ENOMEM;
				break;
			}
			line = bigger;
			cap = n + 1;
		}
		/* a NUL inside the line would hide the rest of it from the parse */
		if (memchr(text + at, '\0', n)) {
			r = -EBADMSG;
			break;
		}
		memcpy(line, text + at, n);
		line[n] = '\0';
		if (n && line[n - 1] == '\r')
			line[n - 1] = '\0';
		at += n + 1;
		p = skip_blank(line);
		if (*p == '\0' || *p == '#')
			continue;
		r = parse_line(p, &s);
		if (r == 0)
			r = fn(&s, arg);
	}
	free(line);
	return r;
}

const char *hc_prom_label(const struct hc_prom_sample *s, const char *key)
{
	for (size_t i = 0; i < s->nlabels; i++)
		if (strcmp(s->keys[i], key) == 0)
			return s->values[i];
	return NULL;
}
