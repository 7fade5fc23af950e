/* Statistics the BPF_PROG_TEST_RUN benchmarks (tools/bench/bench_*_prog.c)
 * share: runs alternate between the paths compared and the median is
 * reported, since a shared VM drifts by tens of percent over seconds. */
#ifndef HC_TEST_BENCHSTAT_H
#define HC_TEST_BENCHSTAT_H

#include <stdlib.h>

static inline int hc_bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Sorts v (n values) and returns its median. */
static inline double hc_bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(v[0]), hc_bench_cmp_double);
	return v[n / 2];
}

#endif /* HC_TEST_BENCHSTAT_H */
