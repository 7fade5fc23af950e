/*
 * libFuzzer: what other nodes send the cluster module, through its real
 * handlers: state broadcast chunks (reassembly across chunks, per sender)
 * and hypercore_query payloads (spawn/stop requests, wrong Any types). The
 * first byte picks the path; for states the rest is a sequence of
 * [u16 length][chunk] records delivered one after another. A node with real
 * gossip on loopback answers; no runtime, no maps.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/cluster_int.h"
#include "log/log.h"
#include "loop/loop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct hc_cluster *cluster;
static struct hc_cluster_config cfg;

static char dir[] = "/tmp/hc-fuzz-cluster-XXXXXX";

static void remove_dir(void)
{
	char path[sizeof(dir) + 16];

	snprintf(path, sizeof(path), "%s/node-id", dir);
	unlink(path);
	rmdir(dir);
}

static bool any_sender(struct hc_cluster *c, const char *name)
{
	(void)c;
	return name[0] != '\0';
}

static void setup(void)
{
	struct hc_err err;
	struct hc_loop *loop;

	hc_log_set_level(HC_LOG_ERROR);
	if (!mkdtemp(dir))
		abort();
	atexit(remove_dir);
	loop = hc_loop_new(NULL, NULL);
	cfg.state_dir = dir;
	cfg.base_url = "example.test";
	if (!loop || hc_addr_parse("127.0.0.1:0", true, &cfg.gossip.bind, &err) < 0)
		abort();
	cluster = hc_cluster_new(loop, &cfg, &err);
	if (!cluster || hc_cluster_start(cluster, &err) < 0)
		abort();
	cluster->sender_alive = any_sender;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!cluster)
		setup();
	if (size == 0)
		return 0;
	if (data[0] & 1) {
		hc_cluster_orch_on_query(cluster, 1, "fuzz", data + 1, size - 1);
	} else {
		size_t off = 1;

		while (off + 2 <= size) {
			size_t len = (size_t)data[off] << 8 | data[off + 1];

			off += 2;
			if (len > size - off)
				len = size - off;
			hc_cluster_state_on_event(cluster, HC_STATE_EVENT, data + off, len);
			off += len;
		}
	}
	/* every input starts from an empty view of the cluster */
	hc_cluster_state_fini(cluster);
	hc_cluster_local_fini(cluster);
	return 0;
}
