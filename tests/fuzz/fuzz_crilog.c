/*
 * libFuzzer: container log files hold whatever a workload printed, framed by
 * containerd. The parser must take any bytes, in any split, without
 * crashing, leaking or buffering beyond its caps, and every line it emits
 * must respect the line cap.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "runtime/crilog_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check_line(void *arg, const struct hc_crilog_line *line)
{
	(void)arg;
	if (line->len > HC_CRILOG_MAX_LINE || (line->len && !line->text))
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hc_crilog_parser p;
	struct hc_crilog_record r;
	size_t split;

	if (size == 0)
		return 0;
	/* the first byte chooses where the input is cut in two reads */
	split = size > 1 ? data[0] % size : 0;
	hc_crilog_parser_init(&p);
	hc_crilog_parser_feed(&p, (const char *)data + 1, split ? split - 1 : 0, check_line, NULL);
	hc_crilog_parser_feed(&p, (const char *)data + (split ? split : 1),
			      size - (split ? split : 1), check_line, NULL);
	hc_crilog_parser_flush(&p, check_line, NULL);
	if (p.rec_cap > HC_CRILOG_MAX_RECORD)
		abort();
	hc_crilog_parser_fini(&p);
	if (hc_crilog_parse_record((const char *)data, size, &r) == 0 &&
	    (r.payload < (const char *)data || r.payload + r.len > (const char *)data + size))
		abort();
	return 0;
}
