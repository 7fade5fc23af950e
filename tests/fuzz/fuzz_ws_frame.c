/*
 * libFuzzer: WebSocket frames and the status JSON come from the streaming
 * server over the network. The frame parser must never read past its input
 * or accept a frame it should refuse; the status parser must take any bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "runtime/ws_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hc_ws_frame f;
	size_t off = 0;
	struct hc_err err;
	int code, n;

	/* a stream of frames, as the reader walks it */
	while (off < size && (n = hc_ws_frame_parse(data + off, size - off, &f)) > 0) {
		if (f.payload < data + off || f.payload + f.len > data + off + (size_t)n ||
		    (f.opcode >= HC_WS_CLOSE && (f.len > 125 || !f.fin)))
			abort();
		off += (size_t)n;
	}
	if (hc_ws_status_parse((const char *)data, size, &code, &err) == 0 &&
	    (code < -1 || code > 255))
		abort();
	return 0;
}
