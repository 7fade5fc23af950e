/* The CLI's reader of Prometheus text (cli/promtext.c), against what the
 * agent's writer (agent/metrics) produces and against broken input. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"
#include "metrics/metrics.h"

struct seen {
	char names[8][64];
	char hosts[8][64];
	double values[8];
	size_t n;
	size_t stop_after; /* 0: never */
};

static int take(const struct hc_prom_sample *s, void *arg)
{
	struct seen *seen = arg;
	const char *host = hc_prom_label(s, "host");

	if (seen->n < 8) {
		snprintf(seen->names[seen->n], sizeof(seen->names[0]), "%s", s->name);
		snprintf(seen->hosts[seen->n], sizeof(seen->hosts[0]), "%s", host ? host : "");
		seen->values[seen->n] = s->value;
	}
	seen->n++;
	return seen->stop_after && seen->n == seen->stop_after ? 7 : 0;
}

static void collect(struct hc_metrics_writer *w, void *arg)
{
	const char *odd[] = { "host", "a\"b\\c\nd", "direction", "to_client", NULL };
	const char *plain[] = { "host", "web.test", NULL };

	(void)arg;
	hc_metrics_family(w, "hypercore_proxy_workload_bytes_total", "counter", "Bytes.");
	hc_metrics_sample(w, "hypercore_proxy_workload_bytes_total", odd, 1234);
	hc_metrics_sample(w, "hypercore_proxy_workload_bytes_total", plain, 0.5);
	hc_metrics_family(w, "up_ish", "gauge", "No labels.");
	hc_metrics_sample(w, "up_ish", NULL, NAN);
}

static void test_reads_what_the_agent_writes(void **state)
{
	struct hc_metrics *m = hc_metrics_new();
	struct seen seen = { 0 };
	size_t len;
	char *text;

	(void)state;
	assert_int_equal(hc_metrics_register(m, collect, NULL), 0);
	text = hc_metrics_render(m, &len);
	assert_non_null(text);
	assert_int_equal(hc_prom_parse(text, len, take, &seen), 0);
	assert_int_equal(seen.n, 3);
	assert_string_equal(seen.names[0], "hypercore_proxy_workload_bytes_total");
	assert_string_equal(seen.hosts[0], "a\"b\\c\nd"); /* escapes undone */
	assert_true(seen.values[0] == 1234);
	assert_string_equal(seen.hosts[1], "web.test");
	assert_true(seen.values[1] == 0.5);
	assert_string_equal(seen.names[2], "up_ish");
	assert_string_equal(seen.hosts[2], "");
	assert_true(isnan(seen.values[2]));
	free(text);
	hc_metrics_free(m);
}

static void test_timestamps_crlf_and_no_final_newline(void **state)
{
	static const char text[] = "a{x=\"1\",} 2 1700000000000\r\n  # comment\n\nb +Inf";
	struct seen seen = { 0 };

	(void)state;
	assert_int_equal(hc_prom_parse(text, strlen(text), take, &seen), 0);
	assert_int_equal(seen.n, 2);
	assert_true(seen.values[0] == 2);
	assert_true(isinf(seen.values[1]));
}

static void test_malformed_lines_are_refused(void **state)
{
	static const char *const bad[] = {
		"1abc 2\n", "a{x=1} 2\n", "a{x=\"1} 2\n", "a{x=\"\\q\"} 2\n", "a 2x\n",
		"a\n", "a{=\"1\"} 2\n", "a{x=\"1\" y=\"2\"} 3\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct seen seen = { 0 };

		assert_int_equal(hc_prom_parse(bad[i], strlen(bad[i]), take, &seen), -EBADMSG);
		assert_int_equal(seen.n, 0);
	}
	/* a NUL inside a line */
	assert_int_equal(hc_prom_parse("a 1\0b 2\n", 8, take, &(struct seen){ 0 }), -EBADMSG);
}

static void test_the_callback_stops_the_parse(void **state)
{
	static const char text[] = "a 1\nb 2\nc 3\n";
	struct seen seen = { .stop_after = 2 };

	(void)state;
	assert_int_equal(hc_prom_parse(text, strlen(text), take, &seen), 7);
	assert_int_equal(seen.n, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reads_what_the_agent_writes),
		cmocka_unit_test(test_timestamps_crlf_and_no_final_newline),
		cmocka_unit_test(test_malformed_lines_are_refused),
		cmocka_unit_test(test_the_callback_stops_the_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
