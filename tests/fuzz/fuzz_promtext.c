/*
 * libFuzzer: `cluster top` reads every node's /metrics, Prometheus text
 * from the network, with a parser of our own (cli/promtext.c). Checked:
 *  - nothing is read past the input (an exact-size copy, under ASan);
 *  - every sample handed out has a name of the format's characters, at most
 *    HC_PROM_MAX_LABELS labels with names of label characters, and strings
 *    no longer than the input;
 *  - the callback's refusal ends the parse with its value.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	size_t len, n;
};

static void check_name(const char *s, size_t max, const char *extra)
{
	size_t n = strlen(s);

	if (n == 0 || n > max || (s[0] >= '0' && s[0] <= '9'))
		abort();
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", s[i]) &&
		    !strchr(extra, s[i]))
			abort();
}

static int sample(const struct hc_prom_sample *s, void *arg)
{
	struct seen *seen = arg;

	check_name(s->name, seen->len, ":");
	if (s->nlabels > HC_PROM_MAX_LABELS)
		abort();
	for (size_t i = 0; i < s->nlabels; i++) {
		check_name(s->keys[i], seen->len, "");
		if (strlen(s->values[i]) > seen->len || hc_prom_label(s, s->keys[i]) == NULL)
			abort();
	}
	/* stop at the third sample: the parse must return what we said */
	return ++seen->n == 3 ? 42 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seen seen = { .len = size };
	char *copy = malloc(size ? size : 1);
	int r;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	r = hc_prom_parse(copy, size, sample, &seen);
	if ((seen.n == 3) != (r == 42) || (r != 0 && r != 42 && r != -EBADMSG && r != -ENOMEM))
		abort();
	free(copy);
	return 0;
}
