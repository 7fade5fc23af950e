/* Captured serf traffic (tests/data/serf, the .hex files) for codec tests. */
#ifndef HC_TEST_SERFVEC_H
#define HC_TEST_SERFVEC_H

#include <stddef.h>
#include <stdint.h>

struct serf_vec {
	uint8_t *p; /* malloc'd: free it */
	size_t len;
};

/* Reads a .hex vector ('#' lines are comments, the rest hex byte pairs)
 * from the repository's tests/data/serf (or $HC_SERF_TESTDATA, when set).
 * Fails the running cmocka test if it cannot. */
struct serf_vec serf_vec_load(const char *name);

#endif /* HC_TEST_SERFVEC_H */
