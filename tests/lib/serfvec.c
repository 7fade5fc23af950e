/* Loader for the captured serf vectors; see serfvec.h. */
#include "serfvec.h"

#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MAX_VECTOR 65536

/* The repository's tests/data, an absolute path the Makefile passes in, so
 * that a test finds its vectors from any working directory. */
#ifndef HC_TEST_DATA_DIR
#error "HC_TEST_DATA_DIR must name the repository's tests/data (the Makefile sets it)"
#endif

static int hex_nibble(int c)
{
	return isdigit(c) ? c - '0' : tolower(c) - 'a' + 10;
}

struct serf_vec serf_vec_load(const char *name)
{
	const char *dir = getenv("HC_SERF_TESTDATA");
	char path[512], line[1024];
	struct serf_vec v = { malloc(MAX_VECTOR), 0 };
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir ? dir : HC_TEST_DATA_DIR "/serf", name);
	f = fopen(path, "r");
	if (!f)
		fail_msg("cannot open %s: %s", path, strerror(errno));
	assert_non_null(v.p);
	while (fgets(line, sizeof(line), f)) {
		if (line[0] == '#')
			continue;
		for (char *s = line; s[0] && s[1];) {
			if (!isxdigit((unsigned char)s[0])) {
				s++;
				continue;
			}
			assert_true(v.len < MAX_VECTOR);
			v.p[v.len++] = (uint8_t)(hex_nibble(s[0]) << 4 | hex_nibble(s[1]));
			s += 2;
		}
	}
	fclose(f);
	return v;
}
