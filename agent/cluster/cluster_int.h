/*
 * Private to agent/cluster: the cluster's state and the pieces the files
 * share. Everything here is touched on the loop thread only, except a job's
 * own fields while its worker runs (jobs.c).
 */
#ifndef HC_CLUSTER_INT_H
#define HC_CLUSTER_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth/auth.h"
#include "base/list.h"
#include "cluster/cluster.h"
#include "ibrl/ibrl.h"
#include "loop/loop.h"
#include "metrics/metrics.h"
#include "runtime/runtime.h"

#define HC_QUERY_NAME "hypercore_query"
#define HC_STATE_EVENT "hypercore_state_broadcast"
#define HC_DIGEST_EVENT "hypercore_state_digest" /* StateDigest (delta.c) */
#define HC_ANY_PREFIX "type.googleapis.com/cluster.services.api."

/* The label that records the node ports allocated to a workload's L7
 * ports: "443:30001,8443:30002" (host port -> node port). */
#define HC_LABEL_NODE_PORTS "hypercore.node-ports"
/* The anti_affinity label a placement gave the workload (placement.c). */
#define HC_LABEL_ANTI_AFFINITY "hypercore.anti-affinity"

#define STATE_PERIOD_MS 5000
#define SILENCE_PERIODS 3
/* A node that left (SIGTERM: a restart, an upgrade) keeps its routes this
 * long: its workloads run on in their shims and its node ports answer. */
#define LEFT_GRACE_MS 30000
#define REFRESH_PERIODS 2 /* an unchanged state is re-sent every 2 periods */
#define QUEUE_SKIP_DEPTH 10000
#define WORKLOADS_PER_CHUNK 10
/* A chunk must fit one gossip UDP packet (memberlist's 1400 bytes, less
 * framing and encryption), or it would only travel by push/pull. */
#define CHUNK_MAX_BYTES 1100
#define SPAWN_TIMEOUT_MS 90000
#define STOP_TIMEOUT_MS 30000
#define DRY_RUN_TIMEOUT_MS 5000
/* How far a state's version may run ahead: of this node's wall clock, and
 * of the last version held from its sender by more than the time since
 * that one came. Versions are the sender's wall clock in ms at each
 * broadcast (at least one more than its last), so a version further ahead
 * is forged or from a clock that is off by more than clocks drift; unbounded,
 * one state with version 2^64-1 would make every later state of its node
 * "older" and silence it for good. An hour leaves room for unsynchronised
 * clocks and bursts of broadcasts, and bounds how long a forged version can
 * hold back the real node's states. */
#define STATE_VERSION_AHEAD_MAX_MS (60ull * 60 * 1000)
/* Rejected states and answers are logged at most this often (a forger
 * could flood the log otherwise); all are counted. */
#define REJECT_WARN_EVERY_MS 10000

typedef Cluster__Services__Api__WorkloadState hc_pb_workload;
typedef Cluster__Services__Api__NodeStateResponse hc_pb_state;
typedef Cluster__Services__Api__VmSpawnRequest hc_pb_spawn;
typedef Cluster__Services__Api__BeaconMetadata hc_pb_beacon;

/* ---- jobs: blocking runtime calls on worker threads (jobs.c) ---- */

struct job;
struct job_pool;
typedef void job_fn(struct job *j);

struct job {
	struct hc_cluster *c;
	job_fn *run;  /* on the worker thread: only the job's own fields */
	job_fn *done; /* back on the loop thread; frees the job */
	bool slow;    /* set by the caller: a spawn, which may take minutes */
	struct hc_loop_task task;
	struct hc_list link;   /* c->jobs, until done */
	struct hc_list queued; /* the pool's queue, until a worker takes it */
};

/* Starts run(j), which calls the runtime, then done(j) on the loop thread:
 * run on the worker pool, or however the runtime's run_job runs it. j is
 * embedded at the start of the caller's job object. 0 or -errno (then
 * nothing ran and the caller still owns j): -EBUSY when the pool's queue is
 * full (counted). Loop thread. */
int hc_cluster_job_start(struct hc_cluster *c, struct job *j, job_fn *run, job_fn *done);
/* The same, always on the pool: for a job that blocks on something other
 * than the runtime (a fetch from another node). */
int hc_cluster_job_start_thread(struct hc_cluster *c, struct job *j, job_fn *run, job_fn *done);
/* The pool's threads and waiting jobs now (metrics). */
void hc_cluster_jobs_threads(struct hc_cluster *c, unsigned *threads, size_t *queued);
/* Waits for every job, running the loop so their done() callbacks run,
 * then ends the pool's threads. */
void hc_cluster_jobs_drain(struct hc_cluster *c);

/* ---- operations in flight (orchestrate.c, logs.c) ---- */

enum op_kind { OP_SPAWN, OP_STOP, OP_LOGS, OP_PROOFS };

struct hc_cluster_op {
	struct hc_cluster *c;
	enum op_kind kind;
	bool cancelled, finished;
	unsigned inflight; /* queries whose done() has not run yet */
	struct hc_list link; /* c->ops */
	hc_cluster_op_done *done;
	void *arg;
	uint64_t started_ns;
	uint64_t shed_timer; /* finished, queries in flight: frees its work's state */
	char id[HC_WORKLOAD_ID_LEN + 1];
	char errors[512]; /* what the candidates said, for the final message */
	char stop_owner[128]; /* stop: the node that ran it when asked, "" if none */

	/* spawn */
	hc_pb_spawn *req;
	char *exclude;		  /* a node not to use (respawn: the dead one) */
	char **candidates;	  /* policy order; dry-run OKs are marked */
	bool *capable;
	size_t ncandidates, cand; /* the next to try */
	size_t expected, answered; /* dry-run answers awaited / in */
	int attempt;		  /* 0: dry run; k: k-th real query */
	bool dry_done;

	/* placement (placement.c) */
	struct hc_ibrl_policy *policy; /* owned: the request's, or the cluster's as it was */
	bool policy_implicit;          /* none was given: the default, in name order */
	uint32_t *free_cores;	       /* per candidate, from its dry-run answer */
	uint64_t *free_mem_mb;
	char **refusal; /* per candidate: what its dry run answered instead */
	char **avoid;	/* nodes earlier replicas of this spawn went to */
	size_t navoid;
	Cluster__Services__Api__VmSpawnResponse **placed; /* replicas placed so far */
	size_t nplaced;
	hc_cluster_explain_done *explain_done; /* set: explain the placement, spawn nothing */
	bool no_match; /* the policy left no node to try */

	/* stop */
	size_t stop_errors;
};

struct hc_cluster_op *hc_cluster_op_new(struct hc_cluster *c, enum op_kind kind, void *arg);
/* Frees op once it is finished and no query of its is in flight; finished
 * with queries in flight, what it held for its work goes. */
void hc_cluster_op_release_if_idle(struct hc_cluster_op *op);
/* Frees the ops kept for reuse (when the cluster ends). */
void hc_cluster_op_pool_free(struct hc_cluster *c);

/* ---- this node's workloads (local.c) ---- */

struct local_wl {
	hc_pb_workload *state; /* owned: id, source request, bindings */
	char ip[46];
	uint64_t egress_bytes_per_sec; /* its label's limit, for the data plane */
	bool pending;      /* being spawned: holds its node ports, not announced */
	uint64_t added_ms; /* when we learnt of it */
	unsigned restarts;
	uint64_t restart_at_ms; /* a restart is due (its policy, on exit) */
	bool restarting;
	bool stopping; /* a stop is in progress or due again: never restarted */
	uint64_t stop_retry_at_ms; /* its stop failed: tried again then */
	unsigned stop_failures;
	bool exit_final; /* exited, and its policy keeps it down (said once) */
	/* A stop was asked while it was being spawned: once the spawn ends,
	 * it is stopped and stop_query answered. */
	bool stop_asked;
	uint64_t stop_query;
	/* execution proofs (proofs.c) */
	int64_t started_ns;	   /* its container's start, from the runtime; 0 unknown */
	char handler[16];	   /* the runtime handler: runc, runsc */
	struct proof_chain *chain; /* NULL until its first proof */
};

/* Why a received state or query answer was not used: the label of
 * hypercore_states_rejected_total / hypercore_answers_rejected_total.
 * Append only: dashboards know the names. */
enum state_reject {
	STATE_REJECT_ADDR_MISMATCH,   /* node_addr is not its sender's member IP */
	STATE_REJECT_VERSION_AHEAD,   /* version ahead of our wall clock */
	STATE_REJECT_VERSION_JUMP,    /* version too far ahead of the last one held */
	STATE_REJECT_VERSION_MISSING, /* unversioned, from a node that versions */
	STATE_REJECT_REASONS,
};
extern const char *const hc_cluster_state_reject_names[STATE_REJECT_REASONS];

/* Why a received state failed its signature check: the label of
 * hypercore_ibrl_states_rejected_total. Append only. */
enum ibrl_reject {
	IBRL_REJECT_UNSIGNED,	   /* no signature: enforce mode, or its node has a key */
	IBRL_REJECT_NO_KEY,	   /* a signature, but no public key in its beacon */
	IBRL_REJECT_BAD_SIGNATURE, /* not the beacon key's signature of this state */
	IBRL_REJECT_KEY_MISMATCH,  /* signed by another key than its node's pinned one */
	IBRL_REJECT_UNTRUSTED,	   /* a node the trusted-keys file does not name */
	IBRL_REJECT_REASONS,
};
extern const char *const hc_cluster_ibrl_reject_names[IBRL_REJECT_REASONS];

enum answer_reject {
	ANSWER_REJECT_DRY_RUN, /* a dry-run answer from a node not asked */
	ANSWER_REJECT_SPAWN,   /* a spawn answer from another node than the one asked */
	ANSWER_REJECT_STOP,    /* a stop answer from a name no alive member has */
	ANSWER_REJECT_KINDS,
};
extern const char *const hc_cluster_answer_reject_names[ANSWER_REJECT_KINDS];

/* ---- reports: what state.c and local.c see, for orchestrate to act on ---- */

/* state.c and local.c do not call into orchestrate: they record what they
 * see and hand it to c->report, which orchestrate set (hc_cluster_orch_init).
 * The handler runs at once, inside the reporter's loop, so the action keeps
 * its place in the tick; it must not add or remove peers. */
enum hc_cluster_report_kind {
	/* Node `node` failed while running workload w (which runs nowhere
	 * else), and the rendezvous over respawn-enabled nodes picked us. */
	HC_CLUSTER_REPORT_ORPHANED,
	/* Local workload `id` also runs on peer `node`, whose copy is kept. */
	HC_CLUSTER_REPORT_DUPLICATE,
	/* Local workload l exited and its restart is due (counted, and marked
	 * restarting, already). */
	HC_CLUSTER_REPORT_RESTART_DUE,
	/* Local workload l's stop failed and its next try is due (its
	 * stop_retry_at_ms cleared already). */
	HC_CLUSTER_REPORT_STOP_DUE,
};

struct hc_cluster_report {
	enum hc_cluster_report_kind kind;
	const char *node;	 /* ORPHANED: the failed node; DUPLICATE: the peer */
	const hc_pb_workload *w; /* ORPHANED */
	const char *id;		 /* DUPLICATE */
	struct local_wl *local;	 /* RESTART_DUE, STOP_DUE */
};

typedef void hc_cluster_report_fn(struct hc_cluster *c, const struct hc_cluster_report *r);

/* ---- other nodes' states (state.c) ---- */

struct peer {
	char *name;
	hc_pb_workload **workloads; /* owned */
	size_t nworkloads;
	char *node_addr;	    /* IP text; "" if the peer did not say */
	uint32_t http_port;
	bool respawn;
	uint64_t recv_ms;
	uint64_t hash;
	uint64_t version; /* of the state held; 0 from upstream senders */
	bool stale; /* silent while gossip says alive: not routed, kept for respawn */
	hc_pb_beacon *beacon; /* owned copy of its state's BeaconMetadata; NULL: none */
	bool verified; /* signed by the key pinned or trusted for its name */
	uint64_t whash;	   /* hc_cluster_workloads_hash of workloads */
	bool digests;	   /* it sent a digest, or answered a pull: a digest-capable node */
	bool summarizes;   /* a state of its with a set hash's sum held: this release's */
	uint64_t first_ms; /* when its first state came */
	uint64_t left_ms;  /* when gossip said it left (loop ms); 0: it did not */
	/* The set hash of workloads and its sum, kept from the state that
	 * came by a digest carrying one (delta.c) so the next change is
	 * checked at its own cost; NULL after a chunked state. */
	struct hc_ibrl_set_hash *set;
	uint8_t sum[HC_IBRL_DIGEST_LEN];
};

/* What a complete state says about its sender. */
struct state_meta {
	const char *addr;
	uint32_t http_port;
	bool respawn;
	uint64_t version;
	const hc_pb_beacon *beacon; /* NULL: none */
	const char *signature;	    /* NULL or "": unsigned */
	/* Set: the signature is of encoding v2, over the workloads' count and
	 * this sum of their set hash (StateDigest.workloads_sum), which the
	 * receiver worked out from the workloads it rebuilt. */
	const uint8_t *workloads_sum;
};

/* What a state that came by digest brings along (delta.c), so installing
 * it costs what changed rather than what the sender holds. */
struct state_hints {
	uint64_t whash;			   /* StateDigest.workloads_hash, as sent */
	struct hc_ibrl_set_hash *set;	   /* taken: the workloads' set hash; NULL: none */
	const uint8_t *sum;		   /* its sum (with set) */
	bool route_hash_known;		   /* route_hash worked out from the change: */
	uint64_t route_hash;		   /* hc_cluster_state_hash of the workloads */
};

/* State bytes by how they travelled: hypercore_state_bytes_{sent,received}_total{kind}. */
enum state_bytes_kind { STATE_BYTES_CHUNKED, STATE_BYTES_DIGEST, STATE_BYTES_PULL, STATE_BYTES_KINDS };

/* Why a pull of a peer's state failed: hypercore_state_pull_failures_total{reason}.
 * Append only. */
enum pull_failure {
	PULL_FAIL_UNAVAILABLE, /* no answer: refused, unreachable, not HTTP */
	PULL_FAIL_REFUSED,     /* an HTTP error status (an upstream node has no /cluster/state) */
	PULL_FAIL_TIMEOUT,     /* no answer within PULL_TIMEOUT_MS */
	PULL_FAIL_TOO_LARGE,   /* over PULL_MAX_BYTES or MAX_PEER_WORKLOADS */
	PULL_FAIL_MALFORMED,   /* not a StateDigest, or another node's */
	PULL_FAIL_MISMATCH,    /* the delta does not rebuild the state it names */
	PULL_FAIL_REJECTED,    /* the rebuilt state failed its signature or plausibility */
	PULL_FAIL_GONE,        /* the owner failed or left while its answer came */
	PULL_FAIL_REASONS,
};
extern const char *const hc_cluster_pull_failure_names[PULL_FAIL_REASONS];

/* A state arriving in chunks, per (sender, broadcast uuid). Chunks that
 * carry their index are kept by it until all are in (gossip reorders);
 * upstream's, without one, are appended from _begin to _finish. */
struct assembly {
	char *sender;
	char *uuid;
	hc_pb_state **chunks; /* indexed: chunk_count slots */
	uint32_t count, received;
	hc_pb_workload **workloads; /* marker order: appended */
	size_t nworkloads;
	char *node_addr;
	uint32_t http_port;
	bool respawn;
	uint64_t started_ms;
	hc_pb_beacon *beacon; /* marker order: the latest chunk's */
	char *signature;      /* marker order: the latest chunk's state_signature */
};

struct hc_cluster {
	struct hc_loop *loop;
	char node_id[HC_NODE_ID_LEN + 1];
	char *base_url;
	struct hc_cluster_config cfg; /* a copy; .maps may come later (hc_cluster_set_maps) */
	struct hc_gossip *gossip;
	struct hc_metrics *metrics;
	struct leave_state *leaving;
	bool closing;
	char node_addr[64]; /* our advertise IP */
	uint16_t http_port;
	char api_token[HC_AUTH_TOKEN_MAX + 1]; /* sent to peers' APIs; "" for none */

	/* local workloads, sorted by id */
	struct local_wl *local;
	size_t nlocal, local_cap;
	uint64_t local_gen;	  /* bumped on each local change */
	bool refresh_running;	  /* a runtime list is in flight */
	bool refresh_again;	  /* and another is wanted after it */
	char (*stopped)[HC_WORKLOAD_ID_LEN + 1]; /* recently stopped here */
	uint64_t *stopped_ms;
	size_t nstopped;
	/* stops owed from before this start, until the first listing */
	char (*stop_marks)[HC_WORKLOAD_ID_LEN + 1];
	size_t nstop_marks;

	/* others' states */
	struct peer *peers;
	size_t npeers;
	/* workloads of failed nodes not yet seen running again (orphans.c) */
	struct orphan *orphans;
	size_t norphans;
	uint64_t last_orphan_check_ms;
	/* map syncs wait for the first listing of our workloads until this
	 * loop time; 0: they do not wait (routes.c) */
	uint64_t maps_hold_until_ms;
	/* the routes to other nodes' workloads the last run left in the maps,
	 * sorted by node, each node's kept until its state is in or until
	 * this loop time; 0: none carried (routes.c) */
	struct hc_dp_route *carried;
	size_t ncarried;
	uint64_t carry_until_ms;
	struct assembly *assemblies;
	size_t nassemblies;

	/* broadcasting */
	uint64_t state_timer, housekeeping_timer;
	uint64_t announce_timer; /* a broadcast off the periodic tick (a member joined) */
	uint64_t last_hash, last_broadcast_ms;
	bool last_broadcast_chunked; /* it carried upstream's chunks */
	uint64_t state_version; /* of our last broadcast; starts at the wall clock */
	uint64_t version_mark;	/* what <state-dir>/state-version holds (version.c) */
	bool broadcast_due;
	uint64_t broadcasts, broadcast_skipped, state_changes, chunks_dropped, assemblies_evicted;
	uint64_t states_received, states_outdated, events_ignored, queries_ignored;
	uint64_t respawns, restarts, duplicates_stopped;
	uint64_t stops_failed; /* local stops that failed, each try */
	uint64_t states_rejected[STATE_REJECT_REASONS];
	uint64_t answers_rejected[ANSWER_REJECT_KINDS];
	uint64_t reject_warn_next_ms; /* when a rejection may be logged as a warning again */
	uint64_t rejects_unlogged; /* rejections since, logged at debug only */

	/* operations in flight, their gossip queries, and jobs */
	struct hc_list ops;	/* struct hc_cluster_op */
	struct hc_list op_pool; /* freed ops, for the next (orchestrate.c) */
	size_t op_pool_n;
	struct hc_list queries; /* struct op_query (orchestrate.c) */
	struct hc_list jobs;	/* struct job */
	size_t njobs;
	struct job_pool *job_pool; /* made with the first job */
	unsigned job_idle_exit_ms; /* a worker idle this long ends; 0: 30 s (tests set it) */
	uint64_t jobs_refused;
	uint64_t busy_warn_next_ms;
	size_t logs_inflight;  /* Logs operations not finished (logs.c) */
	uint64_t logs_refused; /* over its bounds */

	/* states by digest and delta (delta.c) */
	struct delta_state *delta;
	uint64_t state_bytes_sent[STATE_BYTES_KINDS], state_bytes_received[STATE_BYTES_KINDS];
	uint64_t pulls, pulls_served, full_states_pulled, deltas_applied, digests_matched, digests_sent;
	uint64_t pulls_refused; /* digests judged before their pull, and refused */
	/* Send digests as the previous release did: no set hash's sum, no
	 * encoding v2 signature, so receivers check the whole state (tests of
	 * mixed releases; bench_state's old figures beside the new). */
	bool digests_unsummarized;
	uint64_t pull_failures[PULL_FAIL_REASONS];

	/* IBRL beacon (beacon.c) */
	const struct hc_ibrl_identity *identity; /* cfg's: signs our states; NULL: unsigned */
	char beacon_id[HC_IBRL_BEACON_ID_LEN + 1];
	char *beacon_reputation, *beacon_endpoint;
	char **capabilities;
	size_t ncapabilities;
	struct hc_ibrl_trust *trust;
	hc_pb_beacon *beacon_out; /* of the broadcast being sent */
	char state_sig[HC_IBRL_STATE_SIG_B64_LEN + 1]; /* "" when unsigned */
	uint64_t ibrl_rejected[IBRL_REJECT_REASONS];
	uint64_t ibrl_verified, ibrl_unverified;
	uint64_t endpoint_timer, endpoint_checks;
	bool endpoint_check_running, beacon_connected;
	struct hc_ibrl_nonces nonces; /* of our BEACON_ATTEST queries */
	struct hc_list attests;       /* those queries in flight */
	uint64_t attests_answered, attests_verified, attests_rejected;

	/* Where state.c and local.c report what they see (orchestrate.c). */
	hc_cluster_report_fn *report;

	/* Whether a state's sender is an alive member (NULL: ask gossip);
	 * the fuzz harness replaces it to reach the reassembly. */
	bool (*sender_alive)(struct hc_cluster *c, const char *name);

	/* Unit tests' stand-ins for gossip (NULL: gossip's own): the member
	 * list as hc_gossip_members reports it (freed with
	 * hc_gossip_members_free), and sending a query. */
	struct hc_gossip_member *(*members_hook)(struct hc_cluster *c, size_t *n);
	int (*query_hook)(struct hc_cluster *c, const char *name, const uint8_t *payload,
			  size_t len, const struct hc_gossip_query_params *params,
			  hc_gossip_response_fn *on_response, void (*done)(void *arg), void *arg);

	/* Unit tests' stand-in for the owner's /proofs?local=1 (NULL: HTTP):
	 * node's log of id into *log (malloc'd) and its key. 0 or -errno. */
	int (*proofs_fetch_hook)(struct hc_cluster *c, const char *node, const char *id,
				 char **log, size_t *len, uint8_t key[HC_IBRL_PUBLIC_LEN]);
	/* Unit tests' stand-in for the owner's /cluster/state?since= (NULL:
	 * HTTP): starts a pull of node's state since version `since`, whose
	 * answer (or failure) goes to hc_cluster_delta_pulled(c, id, ...)
	 * later, never from inside the call. 0 or -errno. */
	int (*state_pull_hook)(struct hc_cluster *c, const char *node, uint64_t since, uint64_t id);
	/* placement: the --cluster-policy (NULL: upstream's default) and the
	 * placements by policy name and result (placement.c) */
	struct hc_ibrl_policy *policy;
	struct hc_placement_count *placements;
	size_t nplacements;

	struct hc_metrics_histogram spawn_hist;
	uint64_t spawns_ok, spawns_failed;
	uint64_t map_syncs, map_sync_errors;
	bool members_sync_due; /* the last hc_members write failed: retry */

	/* execution proofs (proofs.c) */
	bool proof_running;	/* a round is on a worker */
	uint64_t proof_rounds;
	uint64_t proofs_generated, proof_errors, proofs_verified;
	uint64_t proofs_unknown;
	uint64_t proofs_invalid[HC_IBRL_REASONS]; /* INVALID verdicts by reason */
};

/* local.c */
void local_on_running(struct hc_cluster *c);
void hc_cluster_local_refresh(struct hc_cluster *c);
struct local_wl *hc_cluster_local_find(struct hc_cluster *c, const char *id);
int hc_cluster_local_add(struct hc_cluster *c, const struct hc_workload *w, bool pending);
void hc_cluster_local_remove(struct hc_cluster *c, const char *id);
/* A stop here finished: gone, and not re-adopted from a stale list. */
void hc_cluster_local_stopped(struct hc_cluster *c, const char *id);
bool hc_cluster_local_recently_stopped(struct hc_cluster *c, const char *id);
/* Tells cfg->on_local the running local workloads. */
void hc_cluster_local_notify(struct hc_cluster *c);
void hc_cluster_local_fini(struct hc_cluster *c);
/* Local workload id exited with exit_code: restarted if its policy says so
 * (after the backoff), otherwise left as it is. */
void hc_cluster_local_exited(struct hc_cluster *c, const char *id, int exit_code);
/* A restart of local workload id is wanted (it exited, or a restart
 * failed): due after the backoff. */
void hc_cluster_local_on_exit(struct hc_cluster *c, const char *id);
/* The restart policy in force for a spawn request: its own, else the
 * cluster's default. */
enum hc_restart_policy hc_cluster_restart_policy(const struct hc_cluster *c,
						 const hc_pb_spawn *req);
void hc_cluster_local_housekeeping(struct hc_cluster *c);
/* Node ports already used by local workloads (explicit and allocated). */
bool hc_cluster_local_node_port_used(const struct hc_cluster *c, uint32_t port);

/* stopmarks.c: stops owed, kept in <state-dir>/stopping/ across restarts */
/* Id's stop failed: a restart must stop it again. Blocks on a small write. */
void hc_cluster_stop_mark_set(struct hc_cluster *c, const char *id);
/* Id is gone: nothing owed. */
void hc_cluster_stop_mark_clear(struct hc_cluster *c, const char *id);
/* Reads the stops owed (at start, before the first listing). */
void hc_cluster_stop_marks_load(struct hc_cluster *c);
/* Whether a stop of id was owed at start. */
bool hc_cluster_stop_marked(const struct hc_cluster *c, const char *id);
/* After the first listing: the marks of workloads it did not find are
 * removed (they are gone), and the list read at start is freed. */
void hc_cluster_stop_marks_settle(struct hc_cluster *c);

/* state.c */
void hc_cluster_state_changed(struct hc_cluster *c); /* local state changed: broadcast now */
int64_t hc_cluster_state_tick(struct hc_loop *loop, uint64_t id, void *arg);
/* A broadcast now, off the periodic tick (a one-shot announce_timer). */
int64_t hc_cluster_state_announce(struct hc_loop *loop, uint64_t id, void *arg);
/* When the periodic tick first runs after start, in ms (1..period): a point
 * of the period picked by the node's name. Nodes started together (a fleet
 * restarted at once) would otherwise refresh their states together every
 * REFRESH_PERIODS, and each receiver take in all of them at once, each
 * several times over (gossip's copies). */
uint32_t hc_cluster_state_phase_ms(const struct hc_cluster *c);
void hc_cluster_state_on_event(struct hc_cluster *c, const char *name, const uint8_t *payload,
			       size_t len);
void hc_cluster_state_forget_node(struct hc_cluster *c, const char *name, bool failed);
/* Gossip says name left: its state and routes are kept for LEFT_GRACE_MS
 * (a restart), then forgotten unless it came back. */
void hc_cluster_state_node_left(struct hc_cluster *c, const char *name);
void hc_cluster_state_housekeeping(struct hc_cluster *c);
struct peer *hc_cluster_state_peer(struct hc_cluster *c, const char *name);
/* Which node (ours included) runs id; NULL if none known. */
const char *hc_cluster_state_owner(struct hc_cluster *c, const char *id);
void hc_cluster_state_fini(struct hc_cluster *c);
/* Whether this node is the one to respawn workload id of failed node dead:
 * the highest rendezvous hash over the alive respawn-enabled nodes. */
bool hc_cluster_we_respawn(struct hc_cluster *c, const char *id, const char *dead);

/* orphans.c: a failed node's workloads are kept, by every node, until one
 * is seen running again, so the choice of who respawns each is made again
 * when the node chosen fails too, or when the respawn did not happen. */
/* Keeps w (copied) of failed node dead; false when out of memory. */
bool hc_cluster_orphans_add(struct hc_cluster *c, const hc_pb_workload *w, const char *dead);
/* Drops the orphans running somewhere again, respawns those this node is
 * (now) the choice for and that are not under way. Never blocks. */
void hc_cluster_orphans_check(struct hc_cluster *c);
void hc_cluster_orphans_fini(struct hc_cluster *c);
/* How many workloads of failed nodes wait to run again. */
size_t hc_cluster_orphans_count(const struct hc_cluster *c);
/* Whether name is an alive member (c->sender_alive decides when set). */
bool hc_cluster_member_alive(struct hc_cluster *c, const char *name);
/* The IP of member name's gossip address, as the member list reports it.
 * 0, -ENOENT (no such member) or -EINVAL (no IP in its address). */
struct hc_ipaddr;
int hc_cluster_member_ip(struct hc_cluster *c, const char *name, struct hc_ipaddr *out);

/* logs.c: where peer p's HTTP API is: the address and port it announced,
 * or, for an upstream node (none announced), its gossip address' IP and
 * upstream's fixed port 8001; our API token goes only to nodes that
 * announced a port (ours). 0, or -ENOENT when p is no member now. */
struct owner_endpoint {
	char host[46]; /* INET6_ADDRSTRLEN */
	uint16_t port;
	bool send_token;
};
int hc_cluster_owner_endpoint(struct hc_cluster *c, const struct peer *p,
			      struct owner_endpoint *ep);
/* Whether addr (a state's node_addr) is the IP of member sender's gossip
 * address; "" stands for it too. */
bool hc_cluster_addr_plausible(struct hc_cluster *c, const char *sender, const char *addr);
/* Counts a rejected state or answer and logs it: a warning at most every
 * REJECT_WARN_EVERY_MS, debug otherwise. what names it ("state", "spawn
 * answer"...), why the reason. */
void hc_cluster_note_rejected(struct hc_cluster *c, uint64_t *counter, const char *what,
			      const char *sender, const char *why);
/* What routes see of a state: equal for equal workloads (proofs left
 * out, which change every period and route nothing) and address, in any
 * order. The sum of each workload's hc_cluster_route_hash and the
 * address', so a change updates it at its own cost. */
uint64_t hc_cluster_state_hash(hc_pb_workload *const *w, size_t n, const char *addr);
uint64_t hc_cluster_route_hash(const hc_pb_workload *w);
/* FNV-1a of w packed (proof included); also folds it, then 0xff, into
 * *whash when given. */
uint64_t hc_cluster_workload_hash(const hc_pb_workload *w, uint64_t *whash);
/* StateDigest.workloads_hash of w[0..n) in id order. */
uint64_t hc_cluster_workloads_hash(hc_pb_workload *const *w, size_t n);
void hc_cluster_workloads_free(hc_pb_workload **w, size_t n);
/* Whether a complete state of sender may replace the one held (its
 * signature, plausibility, version order): 0 with *verified and *pin, or
 * -1 (counted and logged). Takes nothing. w may be NULL with
 * m->workloads_sum set: a digest's summary, judged before its pull. */
int hc_cluster_state_judge(struct hc_cluster *c, const char *sender, hc_pb_workload *const *w,
			   size_t n, const struct state_meta *m, bool *verified, bool *pin);
/* Makes a judged state sender's: takes w and frees the workloads held
 * before. hints: for a state that came by digest (which marks its sender
 * digest-capable; w is then in id order already); NULL: a chunked one,
 * sorted and hashed here. */
void hc_cluster_state_install(struct hc_cluster *c, const char *sender, hc_pb_workload **w,
			      size_t n, const struct state_meta *m, bool verified, bool pin,
			      const struct state_hints *hints);

/* superseded.c: a state digest in serf's ring of recent events, as
 * hc_gossip_event_version_fn (arg the cluster): its owner's name and its
 * version, when this node holds that version (or a newer one) verified,
 * so our push/pull leaves out the owner's older digests. */
bool hc_cluster_digest_version(const char *name, const uint8_t *payload, size_t len,
			       const uint8_t **key, size_t *key_len, uint64_t *version, void *arg);

/* delta.c: states by digest and delta, pulled from their owner */
int hc_cluster_delta_init(struct hc_cluster *c);
void hc_cluster_delta_fini(struct hc_cluster *c);
/* After a broadcast's state w[0..n) (id order, proofs attached) was
 * signed: what changed since the last one is logged and the state kept to
 * answer pulls. 0, or -errno (then no digest can be sent: chunks only). */
int hc_cluster_delta_record(struct hc_cluster *c, hc_pb_workload *const *w, size_t n);
/* Sends the digest of the state just recorded, its delta inline when it
 * fits one gossip packet. 0 or -errno. */
int hc_cluster_delta_send(struct hc_cluster *c);
/* Whether this broadcast goes in upstream's chunks too: the mode says
 * so, or (auto) a member may be a node that knows no digests. */
bool hc_cluster_delta_want_chunks(struct hc_cluster *c);
void hc_cluster_delta_on_digest(struct hc_cluster *c, const uint8_t *payload, size_t len);
/* The version of the state last recorded (announced); 0 if none. */
uint64_t hc_cluster_delta_recorded_version(const struct hc_cluster *c);
/* The answer of pull id (rc 0, buf[0..len) the owner's StateDigest, taken)
 * or its failure (rc -errno; -EPROTO: an HTTP error status). */
void hc_cluster_delta_pulled(struct hc_cluster *c, uint64_t id, int rc, uint8_t *buf,
			     size_t len);
/* Pulls member name's state from where its held state says it serves
 * (digests queue their own pulls; the fuzz harness calls this), at most
 * PULLS_INFLIGHT at once. */
void hc_cluster_delta_want(struct hc_cluster *c, const char *name);
/* Pull deadlines; forgets strangers that are known or gone. */
void hc_cluster_delta_housekeeping(struct hc_cluster *c);
struct hc_metrics_writer;
void hc_cluster_delta_collect(struct hc_cluster *c, struct hc_metrics_writer *w);

/* cluster.c: a counter family with one sample; one with a sample per
 * label value (values[i] -> counts[i]). */
void hc_cluster_metric_counter(struct hc_metrics_writer *w, const char *name, const char *help,
			       uint64_t value);
void hc_cluster_metric_counters(struct hc_metrics_writer *w, const char *name, const char *help,
				const char *label, const char *const *values,
				const uint64_t *counts, size_t n);

/* This node's gossip name (its node id before gossip runs). */
const char *hc_cluster_self(const struct hc_cluster *c);

/* beacon.c: the IBRL beacon, signatures and trust */
/* From cfg: the identity (borrowed), the beacon flags (copied), the trust
 * store (opened: blocks on the disk). 0 or -errno with err. */
int hc_cluster_beacon_init(struct hc_cluster *c, const struct hc_cluster_config *cfg,
			   struct hc_err *err);
void hc_cluster_beacon_fini(struct hc_cluster *c);
/* Starts the endpoint checks (every 30 s on a worker thread). */
int hc_cluster_beacon_start(struct hc_cluster *c);
/* c->beacon_out for the next broadcast: measured now. 0 or -ENOMEM. */
int hc_cluster_beacon_build(struct hc_cluster *c);
/* c->state_sig: our signature of v ("" without a key). 0 or -errno. */
int hc_cluster_beacon_sign(struct hc_cluster *c, const struct hc_ibrl_state_view *v);
/* Whether a complete state v with signature sig may be used: -1 (yes;
 * *verified if its signature holds under its node's key, *pin if that key
 * is new and may be pinned once the state is otherwise accepted) or why
 * not (IBRL_REJECT_*). */
int hc_cluster_beacon_check(struct hc_cluster *c, const struct hc_ibrl_state_view *v,
			    const char *sig, bool *verified, bool *pin);
/* Pins the key of beacon for node (TOFU), persisted; logs a failure. */
void hc_cluster_beacon_pin(struct hc_cluster *c, const char *node, const hc_pb_beacon *beacon);
/* Answers a BEACON_ATTEST query (serve.c hands it over). */
void hc_cluster_beacon_serve_attest(struct hc_cluster *c, uint64_t query_id, const char *from,
				    const uint8_t *payload, size_t len);
/* Judges a BEACON_ATTEST answer: from node, for nonce, signed by node's
 * pinned key, the nonce not used before (it is then). 0 or -errno, why. */
int hc_cluster_attest_judge(struct hc_cluster *c, const char *node, const char *from,
			    const uint8_t nonce[HC_IBRL_NONCE_LEN], const uint8_t *payload,
			    size_t len, char *why, size_t why_len);
/* Whether the beacon endpoint is healthy (blocks up to 10 s). */
bool hc_cluster_beacon_endpoint_ok(const char *endpoint);
struct hc_metrics_writer;
void hc_cluster_beacon_collect(struct hc_cluster *c, struct hc_metrics_writer *w);

/* routes.c: the local and known remote workloads -> the data plane maps.
 * Nothing while the maps are held (below). */
void hc_cluster_routes_sync(struct hc_cluster *c);
/* At start, with a runtime: map syncs wait until our workloads are listed
 * (hc_cluster_routes_release) or a bound passes (hc_cluster_routes_hold_check,
 * from housekeeping), so that a restart never withdraws what still runs. */
void hc_cluster_routes_hold(struct hc_cluster *c);
/* Ends the hold, if any, and syncs. listed: our workloads' first listing is
 * in; false: the bound passed without it (logged). */
void hc_cluster_routes_release(struct hc_cluster *c, bool listed);
void hc_cluster_routes_hold_check(struct hc_cluster *c);
/* At start, with maps: the routes the last run left to other nodes'
 * workloads are carried into each sync until that node's state is in, it
 * fails or leaves, or a bound passes (checked by hc_cluster_routes_hold_check),
 * so that a restart does not withdraw them while the states are pulled. */
void hc_cluster_routes_carry(struct hc_cluster *c);
/* What hc_cluster_routes_carry does with the routes it read (r, n entries,
 * taken over): keeps those of other nodes. Unit tests call it directly. */
void hc_cluster_routes_carry_take(struct hc_cluster *c, struct hc_dp_route *r, size_t n);
/* Drops the carried routes of the nodes whose carry is over (each sync
 * does first). */
void hc_cluster_routes_carry_prune(struct hc_cluster *c);
void hc_cluster_routes_carry_fini(struct hc_cluster *c);
/* The IP of a member's "ip:port" or "[ip6]:port" address. 0 or -EINVAL. */
int hc_cluster_addr_ip(const char *hostport, struct hc_ipaddr *out);
/* Every member's address (the member list, ours included) -> hc_members,
 * which keeps workloads off them. On every member event. */
void hc_cluster_members_sync(struct hc_cluster *c);
/* The entries the maps should hold, each key once (the first claim wins). */
struct hc_dp_route;
struct hc_dp_service;
struct hc_cluster_desired {
	struct hc_dp_route *routes;
	size_t nroutes, route_cap;
	struct hc_dp_service *services;
	size_t nservices, service_cap;
	bool oom;
};
/* Builds d (caller-owned, filled from scratch) from the local workloads and
 * the peers' states in O(n log n) for n entries; 0 or -ENOMEM. Release d
 * with hc_cluster_desired_fini() either way. */
int hc_cluster_routes_build(struct hc_cluster *c, struct hc_cluster_desired *d);
void hc_cluster_desired_fini(struct hc_cluster_desired *d);

/* version.c: state versions grow across restarts, whatever the clock did */
/* The first version after a start: clock_ms, or more when the versions of
 * an earlier run reached beyond it. Blocks on a small file read. */
uint64_t hc_cluster_version_first(struct hc_cluster *c, uint64_t clock_ms);
/* Keeps the mark in the state dir above version (a small write, now and
 * then). */
void hc_cluster_version_sent(struct hc_cluster *c, uint64_t version);

/* orchestrate.c: spawn/stop through gossip queries, the asking side */
/* Sets c->report to orchestrate's handler: a failed node's workload is
 * respawned (the whole spawn flow with its id), our copy of a duplicate is
 * stopped, an exited local workload is restarted. */
void hc_cluster_orch_init(struct hc_cluster *c);
void hc_cluster_ops_cancel_all(struct hc_cluster *c);
/* Frees the queries gossip dropped unanswered as it stopped. */
void hc_cluster_queries_free_all(struct hc_cluster *c);
/* Member name failed or left: spawns waiting for its answer move on to
 * their next candidate now rather than at the query's timeout (90 s). */
void hc_cluster_ops_member_gone(struct hc_cluster *c, const char *name);
/* Spawns whose target has not acknowledged the query in 10 s move on (the
 * query was lost); called every housekeeping round. */
void hc_cluster_ops_check_acks(struct hc_cluster *c);
/* Checks a spawn request as the runtime would (both sides do): 0, or
 * -EINVAL with the reason in err. */
int hc_cluster_check_spawn_request(const hc_pb_spawn *req, struct hc_err *err);

/* serve.c: the answering side, runtime work on jobs and node ports; the
 * two local actions are orchestrate's own (its report handler calls them). */
void hc_cluster_orch_on_query(struct hc_cluster *c, uint64_t query_id, const char *from,
		   const uint8_t *payload, size_t len);
/* A node's STOP answer when the workload is not its: any other error is a
 * stop that failed there. */
#define HC_STOP_NOT_HERE "workload not found"
void hc_cluster_orch_restart_local(struct hc_cluster *c, struct local_wl *l);
/* Answers query query_id with ClusterMessage{event, Any(msg)}; a failure
 * (the query's time is up) is logged. */
void hc_cluster_respond(struct hc_cluster *c, uint64_t query_id, int event,
			const ProtobufCMessage *msg);
/* Stops local workload id in the background (nobody to answer); one that
 * fails is tried again until it stops. */
void hc_cluster_orch_stop_local(struct hc_cluster *c, const char *id);

/* logs.c: what nodes fetch from each other's HTTP API (logs, proofs) */
struct hc_httpc_response;
/* GETs path from the owner's API at host:port with token ("" for none),
 * keeping want_header (NULL: none). HC_RPC_OK with *resp filled (the caller
 * frees resp->body), or HC_RPC_UNAVAILABLE with the reason (naming what)
 * in err. Blocks up to 10 s: on a worker. */
enum hc_rpc_code hc_cluster_owner_get(const char *host, uint16_t port, const char *token,
				      const char *path, const char *want_header, const char *what,
				      struct hc_httpc_response *resp, char *err, size_t len);
/* An owner's refusal (HTTP status, its {"error"} text or NULL) as a code
 * and "owner node: ..." in err. */
enum hc_rpc_code hc_cluster_owner_refused(int status, const char *msg, char *err,
					  size_t len);

/* proofs.c: execution proofs of the local workloads */
struct proof_chain;
/* Every period: a proof for each running local workload, on a worker
 * (cgroup and BPF reads, signing, the log append); the next broadcast
 * carries them. Nothing without an identity or a runtime. */
void hc_cluster_proofs_tick(struct hc_cluster *c);
/* Puts each local workload's latest proof into its state (on), or takes it
 * out again (off): only while a broadcast is encoded, so the states the
 * cluster compares and hashes never hold one. */
void hc_cluster_proofs_attach(struct hc_cluster *c, bool on);
/* Workload id is gone from this node: its log goes with it. */
void hc_cluster_proofs_forget(struct hc_cluster *c, const char *id);
void hc_cluster_proof_chain_free(struct proof_chain *chain);
/* The hash of l's latest proof (hex), or "" before its first. */
void hc_cluster_proofs_head(const struct local_wl *l, char out[2 * HC_IBRL_HASH_LEN + 1]);
/* PROOF_VERIFY: verifies req's workload's chain here (fetching it from its
 * owner) and answers ProofVerification{workload_id, proof_hash: the head
 * checked, verification_result: VALID, "INVALID: <reason>" or "UNKNOWN:
 * <why>"}, or ERROR for a bad request. The query must last long enough
 * for the fetch (up to 10 s). */
void hc_cluster_proofs_serve(struct hc_cluster *c, uint64_t query_id,
			     const Cluster__Services__Api__ProofVerification *req);
/* placement.c: candidates ordered by the policy (agent/ibrl) */
enum hc_placement_result { PLACEMENT_PLACED, PLACEMENT_NO_MATCH, PLACEMENT_FAILED, PLACEMENT_RESULTS };
struct hc_placement_count {
	char policy[64];
	uint64_t n[PLACEMENT_RESULTS];
};
/* The op's policy: the request's (stripped from it: never gossiped) or a
 * copy of the cluster's. 0, or -EINVAL with the reason in err. */
int hc_cluster_placement_policy(struct hc_cluster_op *op, struct hc_err *err);
/* After the dry run: orders op's candidates by its policy, keeping only
 * those it may try. 0; -ENOENT when none may be tried (why says, per
 * node, the rules that excluded it); -ENOMEM. With explain_done set, the
 * explanation goes to it instead (op finished). */
int hc_cluster_placement_order(struct hc_cluster_op *op, char *why, size_t len);
/* Counts a placement's end under the op's policy name. */
void hc_cluster_placement_count(struct hc_cluster_op *op, enum hc_placement_result r);
void hc_cluster_placement_collect(struct hc_cluster *c, struct hc_metrics_writer *w);
void hc_cluster_placement_fini(struct hc_cluster *c);
/* The answer to a POLICY_QUERY (upstream's event, which upstream never
 * answers): the policy this node places by, in the PolicyQuery's context
 * (name, mode, strategy, replicas, anti_affinity, node_selector, the
 * policy's JSON when it fits the 1024-byte answer), workload_id echoed,
 * policy_type "placement". Free with hc_cluster_pb_free; NULL on ENOMEM. */
Cluster__Services__Api__PolicyQuery *hc_cluster_placement_describe(
	struct hc_cluster *c, const Cluster__Services__Api__PolicyQuery *q);
/* Frees what placement added to op. */
void hc_cluster_placement_op_fini(struct hc_cluster_op *op);

/* pb.c: protobuf helpers */
/* Packs msg into a new buffer (*len); NULL on ENOMEM. */
uint8_t *hc_cluster_pb_pack(const ProtobufCMessage *msg, size_t *len);
/* A deep copy (pack + unpack); NULL on ENOMEM. */
void *hc_cluster_pb_clone(const ProtobufCMessage *msg);
void hc_cluster_pb_free(void *msg);
/* ClusterMessage{event, Any(msg)} packed; NULL on ENOMEM. */
uint8_t *hc_cluster_pb_wrap(int event, const ProtobufCMessage *msg, size_t *len);
/* Unpacks a ClusterMessage and, when its Any holds type_name (the message
 * name after the package), the inner message. NULL inner on any mismatch. */
Cluster__Services__Api__ClusterMessage *hc_cluster_pb_unwrap(const uint8_t *buf, size_t len,
						  const ProtobufCMessageDescriptor *inner_desc,
						  ProtobufCMessage **inner);
/* The workload spec for a spawn request (runtime's form). 0 or -ENOMEM. */
int hc_cluster_pb_to_spec(const hc_pb_spawn *req, struct hc_workload_spec *spec);
/* A WorkloadState for a runtime workload (bindings from its labels). */
hc_pb_workload *hc_cluster_pb_workload_of(const struct hc_workload *w);
bool hc_port_is_node_port(uint32_t port);

#endif /* HC_CLUSTER_INT_H */
