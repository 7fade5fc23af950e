/*
 * Prometheus text exposition (format 0.0.4). Modules keep their own counters
 * and register a collector that writes them out when /metrics is scraped, so
 * counting costs nothing but an increment on the hot path.
 */
#ifndef HC_METRICS_H
#define HC_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct hc_metrics;        /* registry of collectors */
struct hc_metrics_writer; /* one scrape's output buffer */

typedef void hc_metrics_collect_fn(struct hc_metrics_writer *w, void *arg);

struct hc_metrics *hc_metrics_new(void);
void hc_metrics_free(struct hc_metrics *m);

/* Adds a collector; they run in registration order. Returns 0 or -ENOMEM. */
int hc_metrics_register(struct hc_metrics *m, hc_metrics_collect_fn *fn, void *arg);
/* Removes the collector registered with this fn and arg, if any. */
void hc_metrics_unregister(struct hc_metrics *m, hc_metrics_collect_fn *fn, void *arg);

/* Runs every collector and returns the exposition text; the caller frees it.
 * NULL with errno = ENOMEM on allocation failure. */
char *hc_metrics_render(struct hc_metrics *m, size_t *len);

/* In a collector: "# HELP" and "# TYPE" lines for a family. type is
 * "counter", "gauge" or "histogram". */
void hc_metrics_family(struct hc_metrics_writer *w, const char *name, const char *type,
		       const char *help);
/* One sample. labels is NULL or a list of "name", "value" pairs ending with
 * NULL; values are escaped as the format requires. */
void hc_metrics_sample(struct hc_metrics_writer *w, const char *name, const char *const *labels,
		       double value);

/* A fixed-bucket histogram (bucket bounds in seconds), enough for latencies.
 * Not thread-safe: observe from one thread. */
#define HC_METRICS_MAX_BUCKETS 16
struct hc_metrics_histogram {
	size_t nbuckets;
	double bounds[HC_METRICS_MAX_BUCKETS];
	uint64_t counts[HC_METRICS_MAX_BUCKETS]; /* non-cumulative */
	uint64_t count;
	double sum;
};

void hc_metrics_histogram_init(struct hc_metrics_histogram *h, const double *bounds,
			       size_t nbounds);
void hc_metrics_histogram_observe(struct hc_metrics_histogram *h, double value);
/* Writes the family header and the _bucket/_sum/_count samples. */
void hc_metrics_histogram_write(struct hc_metrics_writer *w, const char *name, const char *help,
				const struct hc_metrics_histogram *h);

#endif /* HC_METRICS_H */
