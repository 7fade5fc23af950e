/*
 * libFuzzer: the configuration file is read by every command, and its
 * TOML subset and the comma-separated lists of --env (from the command
 * line, $HYPERCORE_ENV or the file) are parsed by code of our own. The first
 * byte chooses: odd, a comma-separated list; even, a TOML file. Checked:
 *  - nothing is read past the input (an exact-size copy, under ASan);
 *  - a parse either fails with a message naming the file "f" (and a line
 *    within the input when it names one), or gives entries whose items are NUL-free strings of at most
 *    HC_TOML_MAX_VALUE bytes and whose lines are in order;
 *  - a list splits into fields no longer than the input, and re-joining a
 *    list without quotes gives the input back.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_toml(const char *text, size_t len)
{
	struct hc_toml t;
	struct hc_err err;
	unsigned lines = 1, last = 0, at;

	for (size_t i = 0; i < len; i++)
		lines += text[i] == '\n';
	if (hc_toml_parse(text, len, "f", &t, &err) < 0) {
		if (err.code != -ENOMEM && strncmp(err.msg, "f:", 2) != 0)
			abort();
		if (sscanf(err.msg, "f:%u: ", &at) == 1 && (at < 1 || at > lines))
			abort();
		return;
	}
	for (size_t i = 0; i < t.n; i++) {
		const struct hc_toml_entry *e = &t.entries[i];

		if (e->line < last || e->line > lines || !*e->key)
			abort();
		last = e->line;
		for (size_t k = 0; k < e->nitems; k++)
			if (strlen(e->items[k]) >= HC_TOML_MAX_VALUE)
				abort();
	}
	hc_toml_fini(&t);
}

static void check_csv(const char *s, size_t len)
{
	char **fields;
	size_t n, total = 0;

	if (hc_cli_split_csv(s, &fields, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		total += strlen(fields[i]);
		if (strlen(fields[i]) > len)
			abort();
	}
	if (!memchr(s, '"', len) && n && total + n - 1 != strlen(s))
		abort();
	for (size_t i = 0; i < n; i++)
		free(fields[i]);
	free(fields);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy;

	if (size < 1)
		return 0;
	copy = malloc(size);
	if (!copy)
		return 0;
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = '\0';
	if (data[0] & 1)
		check_csv(copy, strlen(copy));
	else
		check_toml(copy, size - 1);
	free(copy);
	return 0;
}
