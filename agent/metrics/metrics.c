/* Collector registry and Prometheus text writer; see metrics.h. */
#include "metrics/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct collector {
	hc_metrics_collect_fn *fn;
	void *arg;
};

struct hc_metrics {
	struct collector *collectors;
	size_t n, cap;
};

struct hc_metrics_writer {
	char *buf;
	size_t len, cap;
	bool failed;
};

struct hc_metrics *hc_metrics_new(void)
{
	return calloc(1, sizeof(struct hc_metrics));
}

void hc_metrics_free(struct hc_metrics *m)
{
	if (!m)
		return;
	free(m->collectors);
	free(m);
}

int hc_metrics_register(struct hc_metrics *m, hc_metrics_collect_fn *fn, void *arg)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 8;
		struct collector *c = realloc(m->collectors, cap * sizeof(*c));

		if (!c)
			return -ENOMEM;
		m->collectors = c;
		m->cap = cap;
	}
	m->collectors[m->n++] = (struct collector){ fn, arg };
	return 0;
}

void hc_metrics_unregister(struct hc_metrics *m, hc_metrics_collect_fn *fn, void *arg)
{
	for (size_t i = 0; i < m->n; i++) {
		if (m->collectors[i].fn == fn && m->collectors[i].arg == arg) {
			memmove(&m->collectors[i], &m->collectors[i + 1],
				(m->n - i - 1) * sizeof(*m->collectors));
			m->n--;
			return;
		}
	}
}

static void put(struct hc_metrics_writer *w, const char *s, size_t n)
{
	if (w->failed)
		return;
	if (w->len + n + 1 > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		char *buf;

		while (w->len + n + 1 > cap)
			cap *= 2;
		buf = realloc(w->buf, cap);
		if (!buf) {
			w->failed = true;
			return;
		}
		w->buf = buf;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

static void puts_(struct hc_metrics_writer *w, const char *s)
{
	put(w, s, strlen(s));
}

static void printf_(struct hc_metrics_writer *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void printf_(struct hc_metrics_writer *w, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		put(w, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Label values escape \, " and newline; HELP text escapes \ and newline. */
static void put_escaped(struct hc_metrics_writer *w, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			puts_(w, "\\\\");
		else if (*s == '\n')
			puts_(w, "\\n");
		else if (quote && *s == '"')
			puts_(w, "\\\"");
		else
			put(w, s, 1);
	}
}

void hc_metrics_family(struct hc_metrics_writer *w, const char *name, const char *type,
		       const char *help)
{
	printf_(w, "# HELP %s ", name);
	put_escaped(w, help, false);
	printf_(w, "\n# TYPE %s %s\n", name, type);
}

static void put_value(struct hc_metrics_writer *w, double v)
{
	if (isnan(v))
		puts_(w, "NaN");
	else if (isinf(v))
		puts_(w, v > 0 ? "+Inf" : "-Inf");
	else if (v == (double)(int64_t)v && fabs(v) < 9e15)
		printf_(w, "%lld", (long long)v);
	else
		printf_(w, "%.17g", v);
}

void hc_metrics_sample(struct hc_metrics_writer *w, const char *name, const char *const *labels,
		       double value)
{
	puts_(w, name);
	if (labels && labels[0]) {
		put(w, "{", 1);
		for (size_t i = 0; labels[i] && labels[i + 1]; i += 2) {
			if (i)
				put(w, ",", 1);
			puts_(w, labels[i]);
			put(w, "=\"", 2);
			put_escaped(w, labels[i + 1], true);
			put(w, "\"", 1);
		}
		put(w, "}", 1);
	}
	put(w, " ", 1);
	put_value(w, value);
	put(w, "\n", 1);
}

char *hc_metrics_render(struct hc_metrics *m, size_t *len)
{
	struct hc_metrics_writer w = { 0 };

	put(&w, "", 0); /* an empty registry still renders "" */
	for (size_t i = 0; i < m->n; i++)
		m->collectors[i].fn(&w, m->collectors[i].arg);
	if (w.failed) {
		free(w.buf);
		errno = ENOMEM;
		return NULL;
	}
	if (len)
		*len = w.len;
	return w.buf;
}

void hc_metrics_histogram_init(struct hc_metrics_histogram *h, const double *bounds,
			       size_t nbounds)
{
	memset(h, 0, sizeof(*h));
	if (nbounds > HC_METRICS_MAX_BUCKETS)
		nbounds = HC_METRICS_MAX_BUCKETS;
	memcpy(h->bounds, bounds, nbounds * sizeof(*bounds));
	h->nbuckets = nbounds;
}

void hc_metrics_histogram_observe(struct hc_metrics_histogram *h, double value)
{
	for (size_t i = 0; i < h->nbuckets; i++) {
		if (value <= h->bounds[i]) {
			h->counts[i]++;
			break;
		}
	}
	h->count++;
	h->sum += value;
}

void hc_metrics_histogram_write(struct hc_metrics_writer *w, const char *name, const char *help,
				const struct hc_metrics_histogram *h)
{
	char series[128], le[32];
	uint64_t cumulative = 0;

	hc_metrics_family(w, name, "histogram", help);
	snprintf(series, sizeof(series), "%s_bucket", name);
	for (size_t i = 0; i < h->nbuckets; i++) {
		const char *labels[] = { "le", le, NULL };

		cumulative += h->counts[i];
		snprintf(le, sizeof(le), "%g", h->bounds[i]);
		hc_metrics_sample(w, series, labels, (double)cumulative);
	}
	{
		const char *labels[] = { "le", "+Inf", NULL };

		hc_metrics_sample(w, series, labels, (double)h->count);
	}
	snprintf(series, sizeof(series), "%s_sum", name);
	hc_metrics_sample(w, series, NULL, h->sum);
	snprintf(series, sizeof(series), "%s_count", name);
	hc_metrics_sample(w, series, NULL, (double)h->count);
}
