/* Assertions shared by the BPF program tests (tests/bpf/), header-only
 * because they fail through cmocka, which the benchmarks do not link.
 * Include after <cmocka.h>. */
#ifndef HC_TEST_BPFEXPECT_H
#define HC_TEST_BPFEXPECT_H

#include <stdint.h>
#include <string.h>
#include <time.h>

#include "pktbuild.h"

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

/* bpf_ktime_get_ns()'s clock. */
static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif /* HC_TEST_BPFEXPECT_H */
