/*
 * The node agent process (`hypercore cluster`): checks its configuration,
 * starts every module on one event loop, and runs until SIGINT or SIGTERM.
 */
#ifndef HC_DAEMON_H
#define HC_DAEMON_H

#include <stddef.h>
#include <stdint.h>

#include "gossip/gossip.h"

struct hc_daemon_config {
	const char *grpc_bind_addr; /* "HOST:PORT" */
	const char *http_bind_addr;
	const char *state_dir; /* created if missing */
	const char *base_url;  /* workloads answer at <id>.<base_url> */

	/* Gossip */
	const char *cluster_bind_addr;      /* default 0.0.0.0:7946 */
	const char *cluster_advertise_addr; /* NULL: bind, or the default route's address */
	const char *node_name;              /* NULL: the node id */
	const char *encrypt_key;            /* base64, as serf agent -encrypt */
	const char *keyring_file;           /* JSON list of base64 keys */
	const struct hc_gossip_kv *tags;
	size_t ntags;
	const char *const *join; /* seeds */
	size_t njoin;
	/* Overrides of upstream's timing; 0 keeps the default. */
	uint32_t gossip_interval_ms, probe_interval_ms;
	unsigned suspicion_mult, gossip_nodes;
	size_t user_event_size_limit;
	uint32_t coalesce_ms; /* 0: events reach the agent at once */
};

/*
 * Runs the agent in the calling thread, which must be the process's only
 * thread so far (signals are blocked before any other starts). Returns 0
 * after a clean shutdown, or -1 with a one-line reason in err if it could not
 * start; then nothing was left running or listening.
 */
int hc_daemon_run(const struct hc_daemon_config *cfg, char *err, size_t errlen);

/* Creates dir (and parents) if missing and checks that files can be created
 * in it. Returns 0 or -errno with a reason in err. */
int hc_daemon_prepare_state_dir(const char *dir, char *err, size_t errlen);

#endif /* HC_DAEMON_H */
