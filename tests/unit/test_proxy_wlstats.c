/* The proxy's counters per route host: one entry per host however many
 * connections count into it, entries that go once no route names them and
 * nobody holds them (and not before), the capacity, and many threads at
 * once. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/wlstats.h"

static void count_host(const struct hc_proxy_wl_stats *e, void *arg)
{
	(void)e;
	(*(size_t *)arg)++;
}

static size_t listed(struct hc_proxy_wlstats *t)
{
	size_t n = 0;

	hc_proxy_wlstats_each(t, count_host, &n);
	return n;
}

static void test_one_entry_per_host(void **state)
{
	struct hc_proxy_wlstats *t = hc_proxy_wlstats_new(100);
	struct hc_proxy_wl_stats *a, *b, *c;

	(void)state;
	assert_non_null(t);
	a = hc_proxy_wlstats_get(t, "w1");
	b = hc_proxy_wlstats_get(t, "w1");
	c = hc_proxy_wlstats_get(t, "w2");
	assert_non_null(a);
	assert_ptr_equal(a, b);
	assert_ptr_not_equal(a, c);
	assert_string_equal(c->host, "w2");
	assert_int_equal(hc_proxy_wlstats_count(t), 2);
	assert_int_equal(listed(t), 2);
	atomic_fetch_add(&a->requests, 3);
	assert_int_equal(atomic_load(&b->requests), 3);
	hc_proxy_wl_put(a);
	hc_proxy_wl_put(b);
	hc_proxy_wl_put(c);
	hc_proxy_wlstats_free(t);
}

static void test_unrouted_unheld_dropped_after_two_sweeps(void **state)
{
	struct hc_proxy_wlstats *t = hc_proxy_wlstats_new(100);
	struct hc_proxy_wl_stats *gone, *held, *routed;

	(void)state;
	gone = hc_proxy_wlstats_get(t, "gone");
	held = hc_proxy_wlstats_get(t, "held");
	routed = hc_proxy_wlstats_get(t, "routed");
	hc_proxy_wl_put(gone);
	hc_proxy_wl_put(routed);
	/* the first sweep after a get: the route was found just now */
	assert_int_equal(hc_proxy_wlstats_sweep(t), 0);
	hc_proxy_wlstats_mark(t, "routed");
	/* one sweep without a route is not enough: a route may be added
	 * while the marking runs */
	assert_int_equal(hc_proxy_wlstats_sweep(t), 0);
	hc_proxy_wlstats_mark(t, "routed");
	assert_int_equal(hc_proxy_wlstats_sweep(t), 1); /* "gone" */
	assert_int_equal(hc_proxy_wlstats_count(t), 2);
	/* held by a connection: kept, however long unrouted */
	for (int i = 0; i < 5; i++) {
		hc_proxy_wlstats_mark(t, "routed");
		assert_int_equal(hc_proxy_wlstats_sweep(t), 0);
	}
	hc_proxy_wl_put(held);
	hc_proxy_wlstats_mark(t, "routed");
	assert_int_equal(hc_proxy_wlstats_sweep(t), 1);
	assert_int_equal(hc_proxy_wlstats_count(t), 1);
	assert_int_equal(listed(t), 1);
	/* a host seen again after its entry went starts from zero */
	gone = hc_proxy_wlstats_get(t, "gone");
	assert_non_null(gone);
	assert_int_equal(atomic_load(&gone->requests), 0);
	hc_proxy_wl_put(gone);
	hc_proxy_wlstats_free(t);
}

static void test_capacity(void **state)
{
	struct hc_proxy_wlstats *t = hc_proxy_wlstats_new(3);
	struct hc_proxy_wl_stats *e[3];
	char host[16];

	(void)state;
	for (int i = 0; i < 3; i++) {
		snprintf(host, sizeof(host), "w%d", i);
		assert_non_null(e[i] = hc_proxy_wlstats_get(t, host));
	}
	assert_null(hc_proxy_wlstats_get(t, "w3"));
	/* a counted host is still found when the table is full */
	assert_ptr_equal(hc_proxy_wlstats_get(t, "w1"), e[1]);
	hc_proxy_wl_put(e[1]);
	for (int i = 0; i < 3; i++)
		hc_proxy_wl_put(e[i]);
	/* once their routes are gone, room again */
	for (int i = 0; i < 3; i++)
		hc_proxy_wlstats_sweep(t);
	assert_int_equal(hc_proxy_wlstats_count(t), 0);
	assert_non_null(e[0] = hc_proxy_wlstats_get(t, "w3"));
	hc_proxy_wl_put(e[0]);
	hc_proxy_wlstats_free(t);
}

/* Many hosts: every one kept while routed, all gone once not. */
static void test_many_hosts(void **state)
{
	struct hc_proxy_wlstats *t = hc_proxy_wlstats_new(20000);
	char host[32];

	(void)state;
	for (int i = 0; i < 10000; i++) {
		snprintf(host, sizeof(host), "wl-%05d", i);
		hc_proxy_wl_put(hc_proxy_wlstats_get(t, host));
	}
	assert_int_equal(hc_proxy_wlstats_count(t), 10000);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 10000; i += 2) {
			snprintf(host, sizeof(host), "wl-%05d", i);
			hc_proxy_wlstats_mark(t, host);
		}
		hc_proxy_wlstats_sweep(t);
	}
	assert_int_equal(hc_proxy_wlstats_count(t), 5000);
	assert_int_equal(listed(t), 5000);
	hc_proxy_wlstats_free(t);
}

struct churn_arg {
	struct hc_proxy_wlstats *t;
	int index;
};

static void *churn(void *p)
{
	struct churn_arg *a = p;
	char host[32];

	for (int i = 0; i < 20000; i++) {
		struct hc_proxy_wl_stats *e;

		snprintf(host, sizeof(host), "h%d", (i + a->index) % 50);
		e = hc_proxy_wlstats_get(a->t, host);
		assert_non_null(e);
		atomic_fetch_add_explicit(&e->requests, 1, memory_order_relaxed);
		hc_proxy_wl_put(e);
	}
	return NULL;
}

/* Gets and puts on four threads while a fifth sweeps with no route marked:
 * under ASan/TSan a counter used after the sweep freed it would show. */
static void test_threads_and_sweeps(void **state)
{
	struct hc_proxy_wlstats *t = hc_proxy_wlstats_new(100);
	struct churn_arg args[4];
	pthread_t th[4];
	size_t dropped = 0;

	(void)state;
	for (int i = 0; i < 4; i++) {
		args[i] = (struct churn_arg){.t = t, .index = i};
		assert_int_equal(pthread_create(&th[i], NULL, churn, &args[i]), 0);
	}
	for (int i = 0; i < 2000; i++)
		dropped += hc_proxy_wlstats_sweep(t);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 3; i++)
		dropped += hc_proxy_wlstats_sweep(t);
	assert_int_equal(hc_proxy_wlstats_count(t), 0);
	assert_true(dropped >= 50);
	hc_proxy_wlstats_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_entry_per_host),
		cmocka_unit_test(test_unrouted_unheld_dropped_after_two_sweeps),
		cmocka_unit_test(test_capacity),
		cmocka_unit_test(test_many_hosts),
		cmocka_unit_test(test_threads_and_sweeps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
