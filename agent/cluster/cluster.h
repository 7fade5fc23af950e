/*
 * The cluster: this node's identity and state, and (as gossip, runtime and
 * data plane arrive) the orchestration that composes them. Loop thread only.
 */
#ifndef HC_CLUSTER_H
#define HC_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#include "cluster.pb-c.h"
#include "gossip/gossip.h"

struct hc_loop;
struct hc_metrics;

struct hc_cluster_config {
	const char *state_dir; /* exists and is writable; holds node-id */
	const char *base_url;  /* workloads are served at <id>.<base_url> */
	/* Gossip: name (NULL: the node id) and on_event are filled here;
	 * the rest is passed through. */
	struct hc_gossip_config gossip;
	const char *const *join; /* seeds to join at start ("host:port") */
	size_t njoin;
};

#define HC_NODE_ID_LEN 36 /* a UUID in text form */

/* Loads the node id from <state_dir>/node-id, creating it on first start.
 * Returns NULL with a one-line reason in err. cfg must outlive the call to
 * hc_cluster_start(). */
struct hc_cluster *hc_cluster_new(struct hc_loop *loop, const struct hc_cluster_config *cfg,
				  char *err, size_t errlen);
/* Binds gossip and starts joining the seeds. Separate from _new so the
 * agent can bind all its listeners before any of them starts talking.
 * Returns 0, or -1 with a one-line reason in err. */
int hc_cluster_start(struct hc_cluster *c, char *err, size_t errlen);
/* The gossip address peers dial ("ip:port"), once started. */
void hc_cluster_gossip_addr(const struct hc_cluster *c, char *buf, size_t len);
void hc_cluster_free(struct hc_cluster *c);

/* The node's persistent id (also its gossip name). Owned by the cluster. */
const char *hc_cluster_node_id(const struct hc_cluster *c);

/* Builds the List answer: this node's state first, then every other known
 * node's last state. The caller frees it with hc_cluster_list_free(). NULL
 * with errno = ENOMEM on allocation failure. */
Cluster__Services__Api__NodesStateResponse *hc_cluster_list(struct hc_cluster *c);
void hc_cluster_list_free(Cluster__Services__Api__NodesStateResponse *list);

/* Number of workloads this node runs. */
size_t hc_cluster_local_workloads(const struct hc_cluster *c);

/* Cluster members (hc_gossip_members semantics: free with
 * hc_gossip_members_free). */
struct hc_gossip_member *hc_cluster_members(struct hc_cluster *c, size_t *n);

/* Sends a user event to the cluster (gossip.h semantics). */
int hc_cluster_user_event(struct hc_cluster *c, const char *name, const uint8_t *payload,
			  size_t len, bool coalesce);
/* Queries the cluster (hc_gossip_query semantics: done always runs). */
int hc_cluster_query(struct hc_cluster *c, const char *name, const uint8_t *payload, size_t len,
		     const struct hc_gossip_query_params *params,
		     hc_gossip_response_fn *on_response, void (*done)(void *arg), void *arg);

/* The query every hypercore node answers with a JSON description of itself
 * ({"name", "node_id", "version"}), so `serf query hypercore-info` finds
 * them all. Names are checked by the CLI, so they need no JSON escaping. */
#define HC_CLUSTER_INFO_QUERY "hypercore-info"

/* Leaves the cluster gracefully, then calls done(arg). */
void hc_cluster_leave(struct hc_cluster *c, void (*done)(void *arg), void *arg);

/* Registers the cluster's metrics (gossip included) with m. */
int hc_cluster_register_metrics(struct hc_cluster *c, struct hc_metrics *m);

/*
 * Reads or creates a node id file: one UUID (version 4) and a newline,
 * written atomically (temp file, fsync, rename) with mode 0644. A file that
 * exists but does not hold a valid id is an error, never silently replaced:
 * the id is the node's name in the cluster. id must hold HC_NODE_ID_LEN + 1.
 * Returns 0 or -errno, with a reason in err.
 */
int hc_node_id_load(const char *path, char *id, char *err, size_t errlen);
/* True if s is a UUID in canonical lowercase text form. */
int hc_node_id_valid(const char *s);

#endif /* HC_CLUSTER_H */
