/* Prometheus text exposition and histograms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "metrics/metrics.h"

static void collect_example(struct hc_metrics_writer *w, void *arg)
{
	const char *labels[] = { "path", "/a\"b\\c\nd", "code", "200", NULL };

	(void)arg;
	hc_metrics_family(w, "x_total", "counter", "Help with \\ and\nnewline.");
	hc_metrics_sample(w, "x_total", labels, 42);
	hc_metrics_sample(w, "x_total", NULL, 0.25);
	hc_metrics_sample(w, "x_total", NULL, NAN);
	hc_metrics_sample(w, "x_total", NULL, -INFINITY);
}

static void test_render_escapes_and_formats(void **state)
{
	struct hc_metrics *m = hc_metrics_new();
	size_t len;
	char *text;

	(void)state;
	assert_int_equal(hc_metrics_register(m, collect_example, NULL), 0);
	text = hc_metrics_render(m, &len);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	assert_string_equal(text, "# HELP x_total Help with \\\\ and\\nnewline.\n"
				  "# TYPE x_total counter\n"
				  "x_total{path=\"/a\\\"b\\\\c\\nd\",code=\"200\"} 42\n"
				  "x_total 0.25\n"
				  "x_total NaN\n"
				  "x_total -Inf\n");
	free(text);
	hc_metrics_unregister(m, collect_example, NULL);
	text = hc_metrics_render(m, &len);
	assert_string_equal(text, "");
	free(text);
	hc_metrics_free(m);
}

static void collect_histogram(struct hc_metrics_writer *w, void *arg)
{
	hc_metrics_histogram_write(w, "lat_seconds", "Latency.", arg);
}

static void test_histogram_is_cumulative(void **state)
{
	static const double bounds[] = { 0.1, 1, 10 };
	struct hc_metrics_histogram h;
	struct hc_metrics *m = hc_metrics_new();
	char *text;

	(void)state;
	hc_metrics_histogram_init(&h, bounds, 3);
	hc_metrics_histogram_observe(&h, 0.05);
	hc_metrics_histogram_observe(&h, 0.5);
	hc_metrics_histogram_observe(&h, 0.5);
	hc_metrics_histogram_observe(&h, 100);
	hc_metrics_register(m, collect_histogram, &h);
	text = hc_metrics_render(m, NULL);
	assert_non_null(strstr(text, "lat_seconds_bucket{le=\"0.1\"} 1\n"
				     "lat_seconds_bucket{le=\"1\"} 3\n"
				     "lat_seconds_bucket{le=\"10\"} 3\n"
				     "lat_seconds_bucket{le=\"+Inf\"} 4\n"
				     "lat_seconds_sum 101.05\n"
				     "lat_seconds_count 4\n"));
	free(text);
	hc_metrics_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render_escapes_and_formats),
		cmocka_unit_test(test_histogram_is_cumulative),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
