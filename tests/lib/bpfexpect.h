/* Assertions and map reads shared by the BPF program tests (tests/bpf/),
 * header-only because they fail through cmocka, which the benchmarks do not
 * link. Include after <cmocka.h>. */
#ifndef HC_TEST_BPFEXPECT_H
#define HC_TEST_BPFEXPECT_H

#include <stdint.h>
#include <string.h>
#include <time.h>

#include "bpfnet.h"
#include "pktbuild.h"

/* Skips the running test with the reason in skip_why, or fails it with the
 * one in broken_why, when the group setup left one (no root, a kernel
 * without a feature; a setup that went wrong). */
#define REQUIRE_SETUP(skip_why, broken_why)                                \
	do {                                                               \
		if ((skip_why)[0]) {                                       \
			print_message("# skipped: %s\n", (skip_why));      \
			skip();                                            \
		}                                                          \
		if ((broken_why)[0])                                       \
			fail_msg("setup failed: %s", (broken_why));        \
	} while (0)

/* The output frame must be exactly the expected one. */
static inline void expect_frame(const char *what, const uint8_t *got, size_t got_len,
				const uint8_t *want, size_t want_len)
{
	char diff[256];

	if (got_len != want_len || memcmp(got, want, got_len))
		fail_msg("%s: %s", what, hc_pkt_diff(got, got_len, want, want_len, diff, sizeof(diff)));
}

/* Every checksum of the frame, recomputed from scratch, must hold. */
static inline void expect_csums(const char *what, const uint8_t *f, size_t len)
{
	char why[128];

	if (hc_pkt_verify_csums(f, len, why, sizeof(why)))
		fail_msg("%s: %s", what, why);
}

/* Zeroes every drop counter of hc_drops (drops_fd) on every CPU. */
static inline void reset_drops(int drops_fd)
{
	for (uint32_t r = 0; r < HC_DROP_REASONS; r++)
		assert_int_equal(hc_bpfnet_percpu_zero(drops_fd, &r, 1), 0);
}

/* hc_drops (drops_fd) must hold count for reason, summed over the CPUs, and
 * 0 for every other reason (HC_DROP_NONE, count 0: no drop at all). */
static inline void expect_drops(int drops_fd, enum hc_drop_reason reason, uint64_t count)
{
	for (uint32_t r = 1; r < HC_DROP_REASONS; r++) {
		uint64_t want = r == reason ? count : 0, got;

		assert_int_equal(hc_bpfnet_percpu_sum(drops_fd, &r, 1, &got), 0);
		if (got != want)
			fail_msg("hc_drops[%u] = %llu, want %llu", r, (unsigned long long)got,
				 (unsigned long long)want);
	}
}

/* A workload's counters in hc_wl_stats (stats_fd), summed over the CPUs. */
static inline struct hc_wl_stats wl_stats_of(int stats_fd, uint32_t ifindex)
{
	struct hc_wl_stats st;

	_Static_assert(sizeof(st) == 6 * sizeof(uint64_t), "hc_wl_stats is six counters");
	assert_int_equal(hc_bpfnet_percpu_sum(stats_fd, &ifindex, 6, (uint64_t *)&st), 0);
	return st;
}

/* bpf_ktime_get_ns()'s clock. */
static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif /* HC_TEST_BPFEXPECT_H */
