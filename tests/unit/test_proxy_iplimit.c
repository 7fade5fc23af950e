/* The proxy's per-address connection table (--proxy-max-conns-per-ip):
 * the limit per address, IPv4 and IPv6 keys, entries that go when their
 * last connection closes (backward-shift deletion keeps every other entry
 * reachable), a full stripe, and many threads at once. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/iplimit.h"

static struct hc_proxy_ip v4(uint32_t host_order)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(host_order)};
	struct hc_proxy_ip ip;

	assert_int_equal(hc_proxy_ip_from_sockaddr(&ip, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return ip;
}

static void test_limit_per_address(void **state)
{
	struct hc_proxy_iplimit *t = hc_proxy_iplimit_new(3, 1000);
	struct hc_proxy_ip a = v4(0x7f000001), b = v4(0x7f000002);

	(void)state;
	assert_non_null(t);
	for (int i = 0; i < 3; i++)
		assert_int_equal(hc_proxy_iplimit_take(t, &a), 1);
	assert_int_equal(hc_proxy_iplimit_take(t, &a), 0);
	assert_int_equal(hc_proxy_iplimit_count(t, &a), 3);
	/* another address has its own allowance */
	assert_int_equal(hc_proxy_iplimit_take(t, &b), 1);
	hc_proxy_iplimit_release(t, &a);
	assert_int_equal(hc_proxy_iplimit_take(t, &a), 1);
	for (int i = 0; i < 3; i++)
		hc_proxy_iplimit_release(t, &a);
	hc_proxy_iplimit_release(t, &b);
	assert_int_equal(hc_proxy_iplimit_count(t, &a), 0);
	assert_int_equal(hc_proxy_iplimit_count(t, &b), 0);
	hc_proxy_iplimit_free(t);
}

static void test_ipv4_and_ipv6_keys(void **state)
{
	struct sockaddr_in6 mapped = {.sin6_family = AF_INET6}, six = {.sin6_family = AF_INET6};
	struct sockaddr_un_like {
		sa_family_t family;
	} unix_sa = {AF_UNIX};
	struct hc_proxy_ip a = v4(0x0a000001), m, s;
	struct hc_proxy_iplimit *t = hc_proxy_iplimit_new(1, 100);

	(void)state;
	assert_non_null(t);
	inet_pton(AF_INET6, "::ffff:10.0.0.1", &mapped.sin6_addr);
	inet_pton(AF_INET6, "2001:db8::1", &six.sin6_addr);
	assert_int_equal(hc_proxy_ip_from_sockaddr(&m, (struct sockaddr *)&mapped, sizeof(mapped)), 0);
	assert_int_equal(hc_proxy_ip_from_sockaddr(&s, (struct sockaddr *)&six, sizeof(six)), 0);
	/* a v4 client seen on a v6 socket is the same client */
	assert_memory_equal(&a, &m, sizeof(a));
	assert_int_equal(hc_proxy_iplimit_take(t, &a), 1);
	assert_int_equal(hc_proxy_iplimit_take(t, &m), 0);
	assert_int_equal(hc_proxy_iplimit_take(t, &s), 1);
	assert_int_equal(hc_proxy_ip_from_sockaddr(&s, (struct sockaddr *)&unix_sa,
						   sizeof(unix_sa)), -EAFNOSUPPORT);
	/* a truncated sockaddr is not read past its length */
	assert_int_equal(hc_proxy_ip_from_sockaddr(&s, (struct sockaddr *)&six, 8), -EAFNOSUPPORT);
	hc_proxy_iplimit_free(t);
}

/* Many addresses in and out in an order that makes runs collide and shift:
 * every count stays right and the table empties. */
static void test_churn_keeps_entries_reachable(void **state)
{
	enum { N = 3000 };
	struct hc_proxy_iplimit *t = hc_proxy_iplimit_new(2, N);

	(void)state;
	assert_non_null(t);
	for (uint32_t i = 0; i < N; i++) {
		struct hc_proxy_ip ip = v4(0x0a000000 + i);

		assert_int_equal(hc_proxy_iplimit_take(t, &ip), 1);
		if (i % 3 == 0)
			assert_int_equal(hc_proxy_iplimit_take(t, &ip), 1);
	}
	for (uint32_t i = 0; i < N; i += 2) { /* every other one leaves */
		struct hc_proxy_ip ip = v4(0x0a000000 + i);

		hc_proxy_iplimit_release(t, &ip);
		if (i % 3 == 0)
			hc_proxy_iplimit_release(t, &ip);
	}
	for (uint32_t i = 0; i < N; i++) {
		struct hc_proxy_ip ip = v4(0x0a000000 + i);
		unsigned want = i % 2 ? (i % 3 == 0 ? 2 : 1) : 0;

		assert_int_equal(hc_proxy_iplimit_count(t, &ip), want);
	}
	for (uint32_t i = 1; i < N; i += 2) {
		struct hc_proxy_ip ip = v4(0x0a000000 + i);

		hc_proxy_iplimit_release(t, &ip);
		if (i % 3 == 0)
			hc_proxy_iplimit_release(t, &ip);
		assert_int_equal(hc_proxy_iplimit_count(t, &ip), 0);
	}
	hc_proxy_iplimit_free(t);
}

/* Far more addresses than the table was made for: some are not tracked
 * (-ENOSPC), none is refused, and the table never loops. */
static void test_full_table_lets_in_untracked(void **state)
{
	struct hc_proxy_iplimit *t = hc_proxy_iplimit_new(1, 10);
	unsigned tracked = 0, untracked = 0;

	(void)state;
	assert_non_null(t);
	for (uint32_t i = 0; i < 20000; i++) {
		struct hc_proxy_ip ip = v4(0xc0000000 + i);
		int r = hc_proxy_iplimit_take(t, &ip);

		assert_true(r == 1 || r == -ENOSPC);
		if (r == 1)
			tracked++;
		else
			untracked++;
	}
	assert_true(tracked >= 10);
	assert_true(untracked > 0);
	hc_proxy_iplimit_free(t);
}

struct worker_arg {
	struct hc_proxy_iplimit *t;
	unsigned base;
};

static void *churn(void *arg)
{
	struct worker_arg *w = arg;

	for (unsigned round = 0; round < 200; round++) {
		for (unsigned i = 0; i < 64; i++) {
			struct hc_proxy_ip ip = v4(0x0b000000 + ((w->base + i) % 100));

			if (hc_proxy_iplimit_take(w->t, &ip) == 1)
				hc_proxy_iplimit_release(w->t, &ip);
		}
	}
	return NULL;
}

/* Threads taking and releasing the same addresses: all counts end at 0. */
static void test_threads(void **state)
{
	struct hc_proxy_iplimit *t = hc_proxy_iplimit_new(1000, 1000);
	pthread_t th[4];
	struct worker_arg args[4];

	(void)state;
	assert_non_null(t);
	for (unsigned i = 0; i < 4; i++) {
		args[i] = (struct worker_arg){t, i * 17};
		assert_int_equal(pthread_create(&th[i], NULL, churn, &args[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	for (uint32_t i = 0; i < 100; i++) {
		struct hc_proxy_ip ip = v4(0x0b000000 + i);

		assert_int_equal(hc_proxy_iplimit_count(t, &ip), 0);
	}
	hc_proxy_iplimit_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limit_per_address),
		cmocka_unit_test(test_ipv4_and_ipv6_keys),
		cmocka_unit_test(test_churn_keeps_entries_reachable),
		cmocka_unit_test(test_full_table_lets_in_untracked),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
