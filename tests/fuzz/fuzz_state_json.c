/*
 * libFuzzer: node states arrive from the network (gossip state broadcasts)
 * and are served back as JSON by /list and `cluster list --json`. Any bytes
 * that protobuf-c accepts must encode without crashing or leaking, and the
 * result must be valid JSON that jansson reads back.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "cluster.pb-c.h"
#include "pbjson/pbjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Cluster__Services__Api__NodesStateResponse *m =
		cluster__services__api__nodes_state_response__unpack(NULL, size, data);
	json_t *j, *back;
	char *text;

	if (!m)
		return 0;
	j = hc_pbjson_encode(&m->base);
	if (!j)
		abort();
	text = json_dumps(j, JSON_COMPACT);
	if (!text)
		abort();
	back = json_loads(text, 0, NULL);
	if (!back)
		abort(); /* we produced JSON that does not parse */
	json_decref(back);
	free(text);
	json_decref(j);
	cluster__services__api__nodes_state_response__free_unpacked(m, NULL);
	return 0;
}
