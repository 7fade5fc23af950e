/*
 * libFuzzer: what other nodes send the cluster module, through its real
 * handlers: state broadcast chunks (reassembly across chunks, per sender)
 * and hypercore_query payloads (spawn/stop requests, wrong Any types), state
 * digests (hypercore_state_digest) and answers to state pulls
 * (/cluster/state). The first byte picks the path; for states and digests
 * the rest is a sequence of [u16 length][payload] records delivered one
 * after another (a digest record with the top bit of its length set is a
 * pull's answer instead). A node with real gossip on loopback answers; no
 * runtime, no maps.
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

static uint64_t pull_id; /* the pull in flight: the next answer is its */

static int fake_pull(struct hc_cluster *c, const char *node, uint64_t since, uint64_t id)
{
	(void)c;
	(void)node;
	(void)since;
	pull_id = id;
	return 0;
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
	cluster->state_pull_hook = fake_pull;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!cluster)
		setup();
	if (size == 0)
		return 0;
	if (data[0] & 1) {
		hc_cluster_orch_on_query(cluster, 1, "fuzz", data + 1, size - 1);
	} else if (data[0] & 2) {
		size_t off = 1;

		while (off + 2 <= size) {
			size_t len = (size_t)(data[off] & 0x7f) << 8 | data[off + 1];
			bool answer = data[off] & 0x80;
			uint8_t *copy;

			off += 2;
			if (len > size - off)
				len = size - off;
			if (!answer) {
				const uint8_t *key;
				size_t key_len;
				uint64_t version;

				/* as our push/pull sees it in the ring, then delivered */
				(void)hc_cluster_digest_version(HC_DIGEST_EVENT, data + off, len,
								&key, &key_len, &version,
								cluster);
				hc_cluster_state_on_event(cluster, HC_DIGEST_EVENT, data + off, len);
			} else if ((copy = malloc(len ? len : 1))) {
				/* the answer of the latest pull of "fuzz" */
				hc_cluster_delta_want(cluster, "fuzz");
				memcpy(copy, data + off, len);
				if (pull_id)
					hc_cluster_delta_pulled(cluster, pull_id, 0, copy, len);
				else
					free(copy);
			}
			off += len;
		}
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
	hc_cluster_delta_fini(cluster);
	pull_id = 0;
	if (hc_cluster_delta_init(cluster) < 0)
		abort();
	return 0;
}
