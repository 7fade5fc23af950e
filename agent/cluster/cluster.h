/*
 * The cluster: this node's identity, its workloads and every other node's
 * last announced state, and the orchestration that composes gossip, the
 * runtime and the data plane: spawn and stop through gossip queries, state
 * broadcasts in upstream's chunked form, routes for every workload in the
 * cluster synced into the data plane maps, respawn of failed nodes'
 * workloads. Loop thread only; blocking runtime calls run on worker threads
 * the cluster owns.
 */
#ifndef HC_CLUSTER_H
#define HC_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "cluster.pb-c.h"
#include "gossip/gossip.h"
#include "rpc/rpc.h"

struct hc_loop;
struct hc_metrics;
struct hc_dpmaps;
struct hc_runtime_running;
struct hc_runtime_exit;
struct hc_err;
struct hc_runtime_capacity;
struct hc_workload_spec;
struct hc_workload;
struct hc_log_line;
struct hc_ibrl_identity;

/* How received states are judged by their signatures (docs/cluster.md,
 * "Signed states"). */
enum hc_cluster_ibrl_mode {
	/* unsigned states from nodes without a key (upstream's) are used,
	 * shown unverified */
	HC_CLUSTER_IBRL_PERMISSIVE = 0,
	/* only states signed by their node's pinned or trusted key */
	HC_CLUSTER_IBRL_ENFORCE,
};

/* How this node announces its state (docs/cluster.md, "State by digest
 * and delta"). Chunked states are understood from anyone in every mode. */
enum hc_cluster_state_mode {
	/* digests; upstream's chunks too while a member looks like a node
	 * that knows no digests (an upstream node, a plain serf agent) */
	HC_CLUSTER_STATE_AUTO = 0,
	HC_CLUSTER_STATE_CHUNKED, /* upstream's chunks only, never a digest */
	HC_CLUSTER_STATE_DIGEST,  /* digests only */
};

/* What a workload used so far (hc_cluster_runtime_ops.usage). */
struct hc_cluster_usage {
	uint64_t cpu_ns;       /* cumulative CPU time */
	uint64_t memory_bytes; /* in use now */
	uint64_t rx_bytes, tx_bytes;
};

/*
 * What the cluster asks of the local runtime, as agent/runtime's calls of
 * the same names say (runtime.h): the agent passes hc_cluster_runtime_cri,
 * the unit tests a fake. The calls may block (for seconds: a spawn pulls its
 * image), so the cluster makes them on worker threads, never on the loop
 * thread; several at once, from different threads, each with the same ctx.
 */
struct hc_cluster_runtime_ops {
	int (*spawn)(void *ctx, const struct hc_workload_spec *spec, const char *id,
		     struct hc_workload *out, struct hc_err *err);
	int (*stop)(void *ctx, const char *id, int grace_s, struct hc_err *err);
	int (*list)(void *ctx, struct hc_workload **list, size_t *n, struct hc_err *err);
	/* hc_runtime_logs_lines: numbered reads from a line on */
	int (*logs)(void *ctx, const char *id, uint32_t tail, uint64_t from_line, uint64_t window,
		    int (*fn)(void *arg, const struct hc_log_line *line), void *arg,
		    uint64_t *next_line, struct hc_err *err);
	int (*capacity)(void *ctx, struct hc_runtime_capacity *out, struct hc_err *err);
	/*
	 * Optional: runs one job, run(arg) (which makes calls above), then
	 * done(arg) on the loop thread. NULL: run on a thread of its own, as
	 * blocking calls need. A runtime whose calls never block may run it on
	 * the loop thread instead, which is what makes a cluster on a simulated
	 * clock deterministic (the tests' fake). done must run once, never from
	 * inside run_job, and must not wait for the clock to advance once the
	 * cluster is being freed (hc_cluster_free() runs the loop until every
	 * job is done). 0, or -errno when neither will run.
	 */
	int (*run_job)(void *ctx, void (*run)(void *arg), void (*done)(void *arg), void *arg);
	/*
	 * Optional: what workload id uses now, read cheaply (it runs every
	 * period for every workload, for execution proofs): CPU time and
	 * memory, and network bytes when the runtime meters them (the agent's
	 * come from the data plane's BPF counters instead, which override
	 * these when there are maps). NULL: zeros. 0 or -errno.
	 */
	int (*usage)(void *ctx, const char *id, struct hc_cluster_usage *out, struct hc_err *err);
};

/* agent/runtime's calls; ctx: a struct hc_runtime (hc_runtime_new), one
 * client shared by every job thread, which must outlive the cluster. */
extern const struct hc_cluster_runtime_ops hc_cluster_runtime_cri;

struct hc_cluster_config {
	const char *state_dir; /* exists and is writable; holds node-id */
	const char *base_url;  /* workloads are served at <id>.<base_url> */
	/* Gossip: name (NULL: the node id) and on_event are filled here;
	 * the rest is passed through. */
	struct hc_gossip_config gossip;
	const char *const *join; /* seeds to join at start ("host:port") */
	size_t njoin;
	/* The local runtime and the ctx its calls get (NULL: this node runs
	 * no workloads; it still routes to others'). Borrowed: both must
	 * outlive the cluster. */
	const struct hc_cluster_runtime_ops *runtime;
	void *runtime_ctx;
	/* Makes the gossip engine from the settings the cluster completed
	 * (NULL: hc_gossip_new, on real sockets); the unit tests make one on
	 * their simulated network. NULL with a reason in err on failure. */
	struct hc_gossip *(*gossip_new)(void *arg, struct hc_loop *loop,
					const struct hc_gossip_config *cfg, struct hc_err *err);
	void *gossip_arg;
	/* The data plane maps to keep in sync (NULL: no data plane, or not
	 * yet: see hc_cluster_set_maps()). Borrowed: must outlive the cluster. */
	struct hc_dpmaps *maps;
	/* Reschedule failed nodes' workloads (those whose restart policy is
	 * not "never") on another node. */
	bool respawn;
	/* What to do when a local workload exits, for spawns that do not say
	 * (enum hc_restart_policy, runtime.h; 0: always, as upstream). */
	int default_restart;
	/* State broadcast period (0: 5000 ms); tests shorten it. */
	uint32_t state_period_ms;
	/* Told the local running workloads after every local change (so the
	 * data plane attaches to a new one at once), and that a map sync
	 * changed the routes (so the proxy opens new ports at once). NULL:
	 * nobody to tell. The list is valid during the call. */
	void (*on_local)(void *arg, const struct hc_runtime_running *list, size_t n);
	void (*on_routes)(void *arg);
	void *notify_arg;
	/* IBRL. The node key that signs our states and execution proofs
	 * (NULL: they go unsigned); borrowed, must outlive the cluster. */
	const struct hc_ibrl_identity *identity;
	bool no_proofs; /* with a key, sign states but make no execution proofs (tests) */
	enum hc_cluster_ibrl_mode ibrl_mode;
	const char *trusted_keys;      /* a fixed trusted-keys file; NULL: TOFU pins */
	double beacon_price;	       /* price_per_gb announced */
	const char *beacon_reputation; /* reputation_score announced; NULL: "1.0" */
	const char *beacon_endpoint;   /* checked every 30 s; NULL: none */
	enum hc_cluster_state_mode state_mode; /* --state-broadcast */
};

#define HC_NODE_ID_LEN HC_UUID_LEN /* a node id is a UUID (base.h) */

/* Loads the node id from <state_dir>/node-id, creating it on first start.
 * Returns NULL with a one-line reason in err. The cluster keeps a copy of
 * *cfg (the caller may reuse or drop it); what its pointers point at is
 * borrowed: the gossip settings and join list until hc_cluster_start()
 * returns, the runtime and its ctx, the maps, gossip_arg and notify_arg for
 * the cluster's life. */
struct hc_cluster *hc_cluster_new(struct hc_loop *loop, const struct hc_cluster_config *cfg,
				  struct hc_err *err);
/* Binds gossip and starts joining the seeds. Separate from _new so the
 * agent can bind all its listeners before any of them starts talking.
 * Returns 0, or -errno with a one-line reason in err. */
int hc_cluster_start(struct hc_cluster *c, struct hc_err *err);
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

/* The port of this node's HTTP API, announced with its state so peers can
 * fetch logs from it. Set before hc_cluster_start(). */
void hc_cluster_set_http_port(struct hc_cluster *c, uint16_t port);

/* Key rotation across the cluster (serf's install/use/remove-key internal
 * queries): key_b64 is a 16, 24 or 32-byte key in base64. done(arg, ok,
 * failed) when the answers are in (nodes that applied it, and that did
 * not). 0, -EINVAL for a bad key or op, or -errno. */
int hc_cluster_key_op(struct hc_cluster *c, enum hc_gossip_key_op op, const char *key_b64,
		      void (*done)(void *arg, unsigned ok, unsigned failed), void *arg);

/* The bearer token this node shows other nodes' APIs (fetching logs from
 * a workload's owner); NULL or "" for none. Copied; may change at any time
 * on the loop thread (token rotation). */
void hc_cluster_set_api_token(struct hc_cluster *c, const char *token);
/* GET /cluster/state?since=V: this node's last announced state, signed, as
 * a packed StateDigest: the delta since version `since` while the change
 * log still holds it, else every workload. *buf is malloc'd. 0, -ENOENT
 * (nothing announced by digest yet) or -ENOMEM. */
int hc_cluster_state_since(struct hc_cluster *c, uint64_t since, uint8_t **buf, size_t *len);

/* What this node can run, announced in BeaconMetadata.node_capabilities
 * ("container", "xdp-native"...): known once the runtime and the data plane
 * are up. Copied. 0 or -ENOMEM. */
int hc_cluster_set_capabilities(struct hc_cluster *c, const char *const *caps, size_t n);

/* Asks node for a fresh attestation (BEACON_ATTEST bound to a new nonce)
 * and checks it: done(arg, 0, "verified") when it is signed for our nonce
 * by the key pinned for node; else -errno and why (-ETIMEDOUT no answer,
 * -EBADMSG bad or for another nonce, -EALREADY replayed, -EKEYREJECTED
 * another key, -ENOKEY no key pinned yet, -ESTALE too old). done runs
 * once, on the loop, unless the cluster is freed first. 0 or -errno. */
typedef void hc_cluster_attest_done(void *arg, int result, const char *why);
int hc_cluster_attest(struct hc_cluster *c, const char *node, hc_cluster_attest_done *done,
		      void *arg);

/* The data plane maps to keep in sync, when they exist only after the
 * cluster does (the agent starts the data plane once every listener is
 * bound). Replaces cfg.maps; borrowed, must outlive the cluster. Set before
 * hc_cluster_start(): routes are synced into them from then on. */
void hc_cluster_set_maps(struct hc_cluster *c, struct hc_dpmaps *maps);

/* The runtime saw the set of running workloads change (or an exit): the
 * cluster re-reads its workloads, re-announces and re-routes. */
void hc_cluster_on_running(void *cluster, const struct hc_runtime_running *list, size_t n);
void hc_cluster_on_exit(void *cluster, const struct hc_runtime_exit *ev);

/* ---- operations (the API's Spawn, Stop and Logs) ----
 * Each finishes later on the loop thread by calling its done callback once
 * with HC_RPC_OK and the answer (valid during the call), or an error code
 * and a one-line message (answer NULL). hc_cluster_op_cancel() before then
 * means done is never called (the caller went away). */
struct hc_cluster_op;

/* The answer is the gRPC method's response message: a VmSpawnResponse for
 * spawn, the Node that stopped it for stop, a VmLogsResponse for logs. */
typedef void hc_cluster_op_done(void *arg, enum hc_rpc_code code, const char *err,
				const ProtobufCMessage *answer);

/* Chooses a node (policy order, dry-run capacity check) and spawns there.
 * NULL if done already ran (bad request, out of memory). */
struct hc_cluster_op *hc_cluster_spawn(struct hc_cluster *c,
				       const Cluster__Services__Api__VmSpawnRequest *req,
				       hc_cluster_op_done *done, void *arg);
struct hc_cluster_op *hc_cluster_stop(struct hc_cluster *c, const char *id,
				      hc_cluster_op_done *done, void *arg);
/* Logs from the owner node; local_only answers from this node's runtime
 * only (what a peer asks for when it forwards). */
struct hc_cluster_op *hc_cluster_logs(struct hc_cluster *c,
				      const Cluster__Services__Api__VmLogsRequest *req,
				      bool local_only, hc_cluster_op_done *done, void *arg);
void hc_cluster_op_cancel(struct hc_cluster_op *op);

/* ---- execution proofs (proofs.c; docs/cluster.md#execution-proofs) ---- */

/* A workload's proof chain as its owner keeps it, and what this node made
 * of it. Valid during the done call only. */
struct hc_cluster_proofs {
	const char *id;
	const char *node;     /* the owner */
	const char *log;      /* the owner's log, as fetched (complete lines) */
	size_t len;
	bool has_key;	      /* node_key known (announced by the owner, or ours) */
	uint8_t node_key[32]; /* what the chain is checked against */
	char head[65];	      /* the proof hash the owner's state announces; "" */
	/* verify only */
	int verdict;	      /* enum hc_ibrl_verdict */
	int reason;	      /* enum hc_ibrl_reason */
	size_t entries, line; /* entries checked; the faulty one (1-based) */
	char detail[512];     /* UNKNOWN or INVALID in words */
};

typedef void hc_cluster_proofs_done(void *arg, enum hc_rpc_code code, const char *err,
				    const struct hc_cluster_proofs *answer);

/* The proof chain of workload id from its owner: read here when it runs
 * here (local_only: only then), else fetched from the owner's HTTP API
 * (/proofs?id=&local=1) with this node's API token. verify: also checks the
 * chain (signatures, continuity, counters, time, the key, the announced
 * head) on a worker thread and counts the verdict. done runs once on the
 * loop thread, unless hc_cluster_op_cancel() first. NULL if done already ran. */
struct hc_cluster_op *hc_cluster_proofs(struct hc_cluster *c, const char *id, bool local_only,
					bool verify, hc_cluster_proofs_done *done, void *arg);

/* ---- placement policy ---- */
struct hc_ibrl_policy;
/* The policy spawns are placed by unless they bring their own (the
 * agent's --cluster-policy; NULL: upstream's default, permissive). Takes
 * p; the one before is freed (spawns under way keep their own copy). */
void hc_cluster_set_policy(struct hc_cluster *c, struct hc_ibrl_policy *p);
/* Explains where a spawn of req would go, without spawning: the dry run,
 * then every node with each rule's verdict and the values measured, its
 * score, and the final order, as JSON text (valid during the call; code
 * HC_RPC_OK even when no node matches: "error" in it says why). A bad
 * request or policy: INVALID_ARGUMENT and json NULL. Same contract as
 * spawn's done otherwise (hc_cluster_op_cancel). */
typedef void hc_cluster_explain_done(void *arg, enum hc_rpc_code code, const char *err,
				     const char *json);
struct hc_cluster_op *hc_cluster_policy_explain(struct hc_cluster *c,
						const Cluster__Services__Api__VmSpawnRequest *req,
						hc_cluster_explain_done *done, void *arg);

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
int hc_node_id_load(const char *path, char *id, struct hc_err *err);
/* Reads an existing node id file only: -ENOENT when there is none. */
int hc_node_id_read(const char *path, char *id, struct hc_err *err);

#endif /* HC_CLUSTER_H */
