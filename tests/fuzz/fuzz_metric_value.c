/*
 * libFuzzer: hypercore doctor reads a running agent's /metrics, Prometheus
 * text it parses with code of its own (hc_cli_metric_value). The input is
 * the text; the name looked up is its first line's first word, so samples
 * that match are found. Checked: nothing is read past the input (an
 * exact-size copy, under ASan); a lookup answers 0, -ENOENT or -EINVAL, and
 * 0 only for a name that is in the text.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), name[64];
	size_t n;
	double v;
	int r;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	n = strcspn(text, " {\n");
	snprintf(name, sizeof(name), "%.*s", (int)(n < sizeof(name) ? n : sizeof(name) - 1), text);
	r = hc_cli_metric_value(text, name[0] ? name : "hypercore_workload_addresses_free", &v);
	if (r != 0 && r != -ENOENT && r != -EINVAL)
		abort();
	if (r == 0 && !strstr(text, name))
		abort();
	free(text);
	return 0;
}
