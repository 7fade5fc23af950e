/*
 * The cluster: this node's identity and state, and (as gossip, runtime and
 * data plane arrive) the orchestration that composes them. Loop thread only.
 */
#ifndef HC_CLUSTER_H
#define HC_CLUSTER_H

#include <stddef.h>

#include "cluster.pb-c.h"

struct hc_loop;

struct hc_cluster_config {
	const char *state_dir; /* exists and is writable; holds node-id */
	const char *base_url;  /* workloads are served at <id>.<base_url> */
};

#define HC_NODE_ID_LEN 36 /* a UUID in text form */

/* Loads the node id from <state_dir>/node-id, creating it on first start.
 * Returns NULL with a one-line reason in err. */
struct hc_cluster *hc_cluster_new(struct hc_loop *loop, const struct hc_cluster_config *cfg,
				  char *err, size_t errlen);
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
