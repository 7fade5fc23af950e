/*
 * IBRL: the node's identity (a persistent Ed25519 key), signatures over
 * states and proofs, placement policies and execution proofs. Upstream
 * (Vistara-Labs/hypercore pkg/beacon, pkg/policy) makes a fresh key every
 * start and verifies nothing; here the key persists and everything a peer
 * signs is checked.
 *
 * This header grows by section (identity, beacon, policy, proofs); each
 * section's functions live in the file it names.
 */
#ifndef HC_IBRL_H
#define HC_IBRL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* ---- identity (identity.c) ---- */

#define HC_IBRL_KEY_FILE "node-key.pem"   /* in the state dir */
#define HC_IBRL_PUBLIC_LEN 32             /* Ed25519 public key */
#define HC_IBRL_SIGNATURE_LEN 64          /* Ed25519 signature */
#define HC_IBRL_BEACON_ID_LEN 16          /* hex of the public key's first 8 bytes */

struct hc_ibrl_identity;

/* The node key of state_dir: read from HC_IBRL_KEY_FILE, or made and
 * written there (PKCS#8 PEM, 0600, atomically, never over an existing
 * file) on first start. A file that is not an Ed25519 private key, or that
 * group or others can read, is an error, never replaced. Blocks on the
 * disk. 0 or -errno with a reason in err. */
int hc_ibrl_identity_open(const char *state_dir, struct hc_ibrl_identity **out,
			  struct hc_err *err);
/* Reads the key without creating one: -ENOENT if there is none. */
int hc_ibrl_identity_read(const char *state_dir, struct hc_ibrl_identity **out,
			  struct hc_err *err);
void hc_ibrl_identity_free(struct hc_ibrl_identity *id);

/* The raw 32-byte public key. */
const uint8_t *hc_ibrl_identity_public(const struct hc_ibrl_identity *id);

/* upstream's beacon_node_id: the hex of the public key's first 8 bytes. */
void hc_ibrl_beacon_node_id(const uint8_t pub[HC_IBRL_PUBLIC_LEN],
			    char out[HC_IBRL_BEACON_ID_LEN + 1]);

/* Ed25519 over msg. Thread-safe (the key is only read). 0 or -errno. */
int hc_ibrl_sign(const struct hc_ibrl_identity *id, const void *msg, size_t len,
		 uint8_t sig[HC_IBRL_SIGNATURE_LEN]);

/* 0 if sig is pub's signature over msg, -EBADMSG if not, -errno else. */
int hc_ibrl_verify(const uint8_t pub[HC_IBRL_PUBLIC_LEN], const void *msg, size_t len,
		   const uint8_t sig[HC_IBRL_SIGNATURE_LEN]);

/* Base64 (standard, padded) of len bytes into out (4*ceil(len/3)+1 bytes),
 * and back: decode fills at most cap bytes, -EINVAL for bad text or size.
 * Signatures travel as text: upstream's Go decoder wants proto3 strings to
 * be UTF-8. */
int hc_ibrl_b64_encode(const uint8_t *in, size_t len, char *out, size_t out_size);
int hc_ibrl_b64_decode(const char *in, uint8_t *out, size_t cap, size_t *len);

/* ---- beacon (beacon.c, trust.c) ---- */

#include "cluster.pb-c.h"

#define HC_IBRL_DIGEST_LEN 32 /* SHA-256 */
/* A state signature as it travels in NodeStateResponse.state_signature:
 * base64 of the 64-byte Ed25519 signature (a proto3 string must be UTF-8). */
#define HC_IBRL_STATE_SIG_B64_LEN 88
#define HC_IBRL_NONCE_LEN 32
#define HC_IBRL_TRUST_FILE "trusted-keys.json" /* in the state dir (TOFU pins) */
#define HC_IBRL_ATTEST_TYPE "NODE_IDENTITY"    /* upstream's AttestationType */

/* A whole state as its canonical encoding sees it: the fields every chunk
 * repeats, once, and the workloads of all chunks. Borrowed. */
struct hc_ibrl_state_view {
	const char *node;      /* Node.id: the node the state is of */
	const char *node_addr; /* NULL = "" */
	uint32_t http_port;
	bool respawn;
	uint64_t version;
	const Cluster__Services__Api__BeaconMetadata *beacon; /* NULL: none */
	Cluster__Services__Api__WorkloadState *const *workloads; /* any order */
	size_t nworkloads;
	/* Set: the state is summarized (encoding v2, below): its nworkloads
	 * workloads by their set hash's sum, and `workloads` is not read. */
	const uint8_t *workloads_sum; /* HC_IBRL_DIGEST_LEN bytes */
};

/*
 * SHA-256 of the state's canonical encoding (docs/cluster.md, "Signed
 * states"): "hypercore-state-v1\0", then node, node_addr, u32 http_port,
 * u8 respawn, u64 version, the packed BeaconMetadata, u32 workload count
 * and each workload packed, in order of id (then of packed bytes); every
 * string and packed message as u32 length + bytes, integers big-endian.
 * The workloads' order and the chunking do not change it. 0 or -ENOMEM.
 */
int hc_ibrl_state_digest(const struct hc_ibrl_state_view *v, uint8_t digest[HC_IBRL_DIGEST_LEN]);
/*
 * Encoding v2 (v->workloads_sum set): the same, but "hypercore-state-v2\0"
 * and, in place of the workloads, u32 count and the 32 bytes of their set
 * hash's sum (hc_ibrl_set_hash_sum). A receiver keeping the set hash of
 * the workloads it holds checks a change's signature at a cost in
 * proportion to the change. hc_ibrl_state_digest, _sign and _verify pick
 * the encoding by v->workloads_sum.
 */

/* The set hash of a state's workloads (set_hash.c): LtHash, 1024 lanes of
 * 32 bits, each workload packed, hashed by SHA-256 and expanded by
 * AES-256-CTR; members add and
 * remove in any order at a fixed cost each. Caller-owned, 4 KiB. */
#define HC_IBRL_SET_LANES 1024
struct hc_ibrl_set_hash {
	uint32_t lane[HC_IBRL_SET_LANES];
};
/* The empty set. */
void hc_ibrl_set_hash_init(struct hc_ibrl_set_hash *s);
/* w packed, added to or removed from s (removing what was never added
 * leaves a sum no set has). 0 or -ENOMEM (s unchanged). */
int hc_ibrl_set_hash_add(struct hc_ibrl_set_hash *s, const Cluster__Services__Api__WorkloadState *w);
int hc_ibrl_set_hash_remove(struct hc_ibrl_set_hash *s,
			    const Cluster__Services__Api__WorkloadState *w);
/* s := the set hash of w[0..n), any order. 0 or -ENOMEM. */
int hc_ibrl_set_hash_of(struct hc_ibrl_set_hash *s, Cluster__Services__Api__WorkloadState *const *w,
			size_t n);
/* SHA-256 of the lanes (little-endian): what StateDigest.workloads_sum
 * carries and encoding v2 signs. 0 or -ENOMEM. */
int hc_ibrl_set_hash_sum(const struct hc_ibrl_set_hash *s, uint8_t out[HC_IBRL_DIGEST_LEN]);
/* Signs the digest into out (base64, NUL-terminated). 0 or -errno. */
int hc_ibrl_state_sign(const struct hc_ibrl_identity *id, const struct hc_ibrl_state_view *v,
		       char out[HC_IBRL_STATE_SIG_B64_LEN + 1]);
/* 0 if sig_b64 is pub's signature of v; -EBADMSG if not (or not base64 of
 * 64 bytes); -ENOMEM. */
int hc_ibrl_state_verify(const uint8_t pub[HC_IBRL_PUBLIC_LEN],
			 const struct hc_ibrl_state_view *v, const char *sig_b64);
/* The public key a BeaconMetadata carries (node_signature: the raw key,
 * as upstream sends it), or NULL when it holds no 32 bytes. */
const uint8_t *hc_ibrl_beacon_public(const Cluster__Services__Api__BeaconMetadata *b);

/*
 * Who may sign for a node name. From a trusted-keys file (--trusted-keys:
 * fixed, nothing learnt), or trust on first use: a name's key is pinned the
 * first time a state signed by it is accepted, and kept in
 * <state_dir>/HC_IBRL_TRUST_FILE across restarts. Both files are a JSON
 * object {"<node name>": "<base64 public key>", ...}. Loop thread only.
 */
struct hc_ibrl_trust;

enum hc_ibrl_trust_verdict {
	HC_IBRL_TRUST_MATCH,    /* the name's pinned key */
	HC_IBRL_TRUST_NEW,      /* an unknown name; TOFU may pin it */
	HC_IBRL_TRUST_MISMATCH, /* the name is pinned to another key */
	HC_IBRL_TRUST_UNKNOWN,  /* not in the trusted-keys file (no TOFU) */
};

/* Loads the pins (the trusted-keys file when given, else the state dir's,
 * absent = none). A file that does not parse is an error naming it and
 * where, never ignored or replaced. Blocks on the disk. 0 or -errno. */
int hc_ibrl_trust_open(const char *state_dir, const char *trusted_keys_file,
		       struct hc_ibrl_trust **out, struct hc_err *err);
void hc_ibrl_trust_free(struct hc_ibrl_trust *t);
enum hc_ibrl_trust_verdict hc_ibrl_trust_check(const struct hc_ibrl_trust *t, const char *name,
					       const uint8_t pub[HC_IBRL_PUBLIC_LEN]);
/* Whether name has a pinned key. */
bool hc_ibrl_trust_known(const struct hc_ibrl_trust *t, const char *name);
/* Pins name to pub and rewrites the state dir's file (atomically, 0600).
 * -EEXIST when name is pinned already, -EPERM with a fixed file; a failed
 * write keeps the pin in memory and returns -errno with err. Blocks. */
int hc_ibrl_trust_pin(struct hc_ibrl_trust *t, const char *name,
		      const uint8_t pub[HC_IBRL_PUBLIC_LEN], struct hc_err *err);
size_t hc_ibrl_trust_count(const struct hc_ibrl_trust *t);

/*
 * BEACON_ATTEST: the asker sends BeaconAttestation{node_id: the node asked,
 * attestation_type: "NODE_IDENTITY", attestation_data: a fresh 32-byte
 * nonce}; the node answers BeaconAttestation{node_id: its name, the same
 * type, attestation_data: public key (32) | unix seconds (u64 BE) |
 * signature (64)}, the signature over upstream's attestation message
 * "NODE_IDENTITY|<node_id>|<seconds>|<hex nonce>".
 */
#define HC_IBRL_ATTEST_DATA_LEN (HC_IBRL_PUBLIC_LEN + 8 + HC_IBRL_SIGNATURE_LEN)

/* The answer's attestation_data for nonce, signed now (unix seconds). */
int hc_ibrl_attest_make(const struct hc_ibrl_identity *id, const char *node, const uint8_t *nonce,
			size_t nonce_len, uint64_t now_s, uint8_t out[HC_IBRL_ATTEST_DATA_LEN]);
/* Checks an answer for our nonce: its signature, that it names node, and
 * its age (at most max_age_s from now_s either way). The key it was signed
 * with into pub. 0, -EBADMSG (bad signature, other nonce or node, bad
 * size) or -ESTALE (too old or ahead). */
int hc_ibrl_attest_check(const Cluster__Services__Api__BeaconAttestation *a, const char *node,
			 const uint8_t nonce[HC_IBRL_NONCE_LEN], uint64_t now_s, uint64_t max_age_s,
			 uint8_t pub[HC_IBRL_PUBLIC_LEN]);

/* The nonces of attestations asked and not yet answered: each is accepted
 * once (a replayed answer finds it used), and only while it is pending. */
#define HC_IBRL_NONCES_MAX 64
struct hc_ibrl_nonces {
	uint8_t nonce[HC_IBRL_NONCES_MAX][HC_IBRL_NONCE_LEN];
	bool used[HC_IBRL_NONCES_MAX];
	unsigned next; /* ring: the oldest pending is replaced */
};
/* A fresh random nonce, remembered. 0 or -EIO. */
int hc_ibrl_nonce_new(struct hc_ibrl_nonces *n, uint8_t out[HC_IBRL_NONCE_LEN]);
/* Marks nonce used: 0, -EALREADY if it was, -ENOENT if never issued (or
 * forgotten). */
int hc_ibrl_nonce_use(struct hc_ibrl_nonces *n, const uint8_t nonce[HC_IBRL_NONCE_LEN]);

/* ---- proofs (proof.c: entries and chains; proof_log.c: the log) ----
 *
 * An execution proof is one signed entry of a per-workload hash chain: what
 * the workload used up to a moment (metrics), bound to the previous entry
 * by its hash. docs/cluster.md defines the canonical encoding, the log line
 * and the verification rules. */

#define HC_IBRL_HASH_LEN 32		/* SHA-256 */
#define HC_IBRL_HYPERVISOR_MAX 16	/* "runc", "runsc": [a-z0-9._-], at most 15 */
#define HC_IBRL_PROOF_DIR "proofs"	/* in the state dir: <id>.log each */
#define HC_IBRL_PROOF_LINE_MAX 512	/* a log line, newline included */
#define HC_IBRL_PROOF_LOG_MAX (64u << 20) /* a log read whole for verification */

/* The metrics of a proof, in the canonical order; their names are the keys
 * of WorkloadProof.metrics. Counters (all but memory_bytes) are cumulative
 * over the chain; uptime_s restarts only with a restart. */
enum hc_ibrl_metric {
	HC_IBRL_CPU_NS,
	HC_IBRL_MEMORY_BYTES,
	HC_IBRL_RX_BYTES,
	HC_IBRL_TX_BYTES,
	HC_IBRL_UPTIME_S,
	HC_IBRL_RESTARTS,
	HC_IBRL_METRICS,
};
extern const char *const hc_ibrl_metric_names[HC_IBRL_METRICS];

struct hc_ibrl_proof {
	char workload_id[HC_UUID_LEN + 1];
	uint8_t node_key[HC_IBRL_PUBLIC_LEN];
	int64_t timestamp_ms; /* Unix time */
	uint64_t metrics[HC_IBRL_METRICS];
	char hypervisor[HC_IBRL_HYPERVISOR_MAX];
	uint8_t prev_hash[HC_IBRL_HASH_LEN]; /* zeros for a chain's first entry */
	uint8_t hash[HC_IBRL_HASH_LEN];
	uint8_t sig[HC_IBRL_SIGNATURE_LEN];
};

/* The canonical encoding of p's signed fields into out (cap bytes: 128 are
 * always enough). Its length, or -EINVAL for an id or hypervisor out of form. */
int hc_ibrl_proof_encode(const struct hc_ibrl_proof *p, uint8_t *out, size_t cap);
/* SHA-256(prev_hash || encoding). 0 or -errno. */
int hc_ibrl_proof_hash(const struct hc_ibrl_proof *p, uint8_t out[HC_IBRL_HASH_LEN]);
/* Completes p (workload_id, timestamp, metrics, hypervisor and prev_hash
 * filled by the caller): node_key, hash and sig under id. Thread-safe.
 * 0 or -errno. */
int hc_ibrl_proof_seal(const struct hc_ibrl_identity *id, struct hc_ibrl_proof *p);

/* One log line (no NUL inside, newline at the end) into line. Its length,
 * or -ENOSPC. */
int hc_ibrl_proof_format(const struct hc_ibrl_proof *p, char *line, size_t size);
/* Parses one log line (without or with its newline). 0 or -EINVAL. */
int hc_ibrl_proof_parse(const char *line, size_t len, struct hc_ibrl_proof *out);
/* The hash as 64 lowercase hex digits (WorkloadProof.proof_hash). */
void hc_ibrl_hash_hex(const uint8_t hash[HC_IBRL_HASH_LEN], char out[2 * HC_IBRL_HASH_LEN + 1]);
int hc_ibrl_hash_parse(const char *hex, uint8_t out[HC_IBRL_HASH_LEN]);

enum hc_ibrl_verdict { HC_IBRL_UNKNOWN, HC_IBRL_VALID, HC_IBRL_INVALID };

/* Why a chain is INVALID (or UNKNOWN). Append only: metrics label them. */
enum hc_ibrl_reason {
	HC_IBRL_OK,
	HC_IBRL_MALFORMED,	   /* a line that does not parse */
	HC_IBRL_WRONG_WORKLOAD,	   /* an entry of another workload */
	HC_IBRL_WRONG_KEY,	   /* signed by another key than the node's */
	HC_IBRL_HASH_MISMATCH,	   /* fields edited after sealing */
	HC_IBRL_BAD_SIGNATURE,	   /* a signature that does not verify */
	HC_IBRL_BROKEN_CHAIN,	   /* prev_hash is not the entry before's: reordered or removed */
	HC_IBRL_REPLAYED,	   /* an older genuine entry out of its place */
	HC_IBRL_TIMESTAMP,	   /* a timestamp not after the one before */
	HC_IBRL_COUNTER,	   /* a counter went down (or uptime without a restart) */
	HC_IBRL_TRUNCATED,	   /* entries missing at the start, or the announced head absent */
	HC_IBRL_NO_PROOFS,	   /* UNKNOWN: an empty log */
	HC_IBRL_NO_KEY,		   /* UNKNOWN: no key known for the node */
	HC_IBRL_REASONS,
};
extern const char *const hc_ibrl_reason_names[HC_IBRL_REASONS];
const char *hc_ibrl_verdict_name(enum hc_ibrl_verdict v); /* "VALID"... */

struct hc_ibrl_chain_report {
	enum hc_ibrl_verdict verdict;
	enum hc_ibrl_reason reason;
	size_t entries;		   /* complete lines read */
	size_t line;		   /* 1-based line of the fault; 0 for none */
	struct hc_ibrl_proof last; /* the last entry checked good (valid if entries) */
};

/* Whether next may follow prev in one chain (timestamps, counters); both
 * already checked on their own. HC_IBRL_OK or the reason. */
enum hc_ibrl_reason hc_ibrl_proof_follows(const struct hc_ibrl_proof *prev,
					  const struct hc_ibrl_proof *next);

/* Verifies a whole log (text[0..len), complete lines; a last line without
 * its newline is a write in progress and ignored) of workload id under the
 * node key pub (NULL: UNKNOWN, no key), and, when head is not NULL, that the
 * entry of that hash (the one the owner announced) is in it. Blocks on CPU
 * only: about 60 us an entry. Always fills out; returns its verdict. */
enum hc_ibrl_verdict hc_ibrl_chain_verify(const char *text, size_t len, const char *id,
					  const uint8_t *pub, const uint8_t *head,
					  struct hc_ibrl_chain_report *out);

/* The log of workload id under state_dir: <state_dir>/proofs/<id>.log.
 * id must be a UUID (never a path). 0 or -EINVAL / -ENAMETOOLONG. */
int hc_ibrl_proof_log_path(const char *state_dir, const char *id, char *buf, size_t size);
/* The log's last complete entry into *out. A torn last line (a write cut
 * by a crash) is cut off the file. 0, -ENOENT (no log, or no entry), or
 * -errno (-EINVAL: the last line does not parse). Blocks on the disk. */
int hc_ibrl_proof_log_last(const char *state_dir, const char *id, struct hc_ibrl_proof *out);
/* Appends p's line (one write, O_APPEND; the proofs directory made 0700 if
 * missing); fsync only when sync. 0 or -errno. Blocks on the disk. */
int hc_ibrl_proof_log_append(const char *state_dir, const char *id,
			     const struct hc_ibrl_proof *p, bool sync);
/* The whole log, at most HC_IBRL_PROOF_LOG_MAX bytes (-EFBIG beyond), into
 * *text (NUL-terminated, the caller frees). 0, -ENOENT or -errno. */
int hc_ibrl_proof_log_read(const char *state_dir, const char *id, char **text, size_t *len);
/* Removes the log. 0 (also when there was none) or -errno. */
int hc_ibrl_proof_log_remove(const char *state_dir, const char *id);
/* Flushes every log of state_dir to disk at once (syncfs). 0 or -errno. */
int hc_ibrl_proof_log_sync(const char *state_dir);

/* ---- policy (policy.c: parsing; policy_score.c: rules, scores, order) ---- */

/*
 * A placement policy: upstream's JSON schema (pkg/policy: name, description,
 * mode, rules, scoring) and its semantics, plus hypercore's strategy,
 * node_selector, anti_affinity and replicas. Immutable once parsed.
 */
enum hc_ibrl_mode { HC_IBRL_MODE_ENFORCE, HC_IBRL_MODE_PERMISSIVE };
enum hc_ibrl_strategy {
	HC_IBRL_STRATEGY_SCORE,	  /* none given: score, then more free capacity */
	HC_IBRL_STRATEGY_SPREAD,  /* most free capacity first, then score */
	HC_IBRL_STRATEGY_BINPACK, /* least free capacity (that fits) first, then score */
};

#define HC_IBRL_POLICY_MAX_BYTES 16384 /* a policy file larger is refused */
#define HC_IBRL_MAX_REPLICAS 16

struct hc_ibrl_kv {
	char *key, *value;
};

struct hc_ibrl_policy {
	char *name, *description;
	enum hc_ibrl_mode mode;
	struct {
		char **required_capabilities;
		size_t ncapabilities;
		double max_latency_ms, max_price_per_gb, min_reputation_score;
		uint32_t max_queue_depth;
		double max_packet_loss, max_jitter_ms;
		/* parsed as upstream does, and as there unused */
		bool prefer_low_latency, prefer_low_price, prefer_high_reputation;
	} rules;
	struct {
		double latency, price, reputation, queue;
	} scoring; /* all zero in the file: 0.25 each */
	/* hypercore */
	enum hc_ibrl_strategy strategy;
	struct hc_ibrl_kv *node_selector; /* gossip tags that must match exactly */
	size_t nselector;
	char *anti_affinity; /* a label: its workloads never share a node; NULL: none */
	uint32_t replicas;   /* 1..HC_IBRL_MAX_REPLICAS */
	char *json;	     /* the text it was parsed from */
};

/* Parses and validates policy text. source names it in errors ("file
 * x.json", "--policy"): every error says which field and where. 0 with
 * *out (free with hc_ibrl_policy_free), or -EINVAL (-ENOMEM) with err. */
int hc_ibrl_policy_parse(const char *text, size_t len, const char *source,
			 struct hc_ibrl_policy **out, struct hc_err *err);
/* Reads and parses a policy file. Blocks on the disk. */
int hc_ibrl_policy_load(const char *path, struct hc_ibrl_policy **out, struct hc_err *err);
/* Upstream's DefaultPolicy ("default", permissive, weights 0.25 each), as a
 * new policy to free. NULL with errno on ENOMEM. */
struct hc_ibrl_policy *hc_ibrl_policy_default(void);
void hc_ibrl_policy_free(struct hc_ibrl_policy *p);

/* The rules a node is checked against, in the order reasons are given. */
enum hc_ibrl_rule {
	HC_IBRL_RULE_CAPACITY,	    /* cores and memory free (the dry run said so) */
	HC_IBRL_RULE_SELECTOR,	    /* node_selector matches its tags */
	HC_IBRL_RULE_ANTI_AFFINITY, /* no workload with the policy's label on it */
	HC_IBRL_RULE_BEACON,	    /* has beacon data (enforce skips nodes without) */
	HC_IBRL_RULE_CAPABILITIES,  /* required_capabilities */
	HC_IBRL_RULE_LATENCY,	    /* max_latency_ms */
	HC_IBRL_RULE_PRICE,	    /* max_price_per_gb */
	HC_IBRL_RULE_REPUTATION,    /* min_reputation_score */
	HC_IBRL_RULE_QUEUE,	    /* max_queue_depth */
	HC_IBRL_RULE_LOSS,	    /* max_packet_loss */
	HC_IBRL_RULE_JITTER,	    /* max_jitter_ms */
	HC_IBRL_RULES,
};
/* "capacity", "node_selector", ..., "max_jitter_ms": the JSON names. */
extern const char *const hc_ibrl_rule_names[HC_IBRL_RULES];

/* What placement knows of one candidate node. Strings are borrowed. */
struct hc_ibrl_node {
	const char *name;
	/* Capacity, from its dry-run answer: whether it can take the
	 * workload, and how much it has free (0 when it did not say). */
	bool capable;
	const char *capacity_why; /* what it answered when not capable, or NULL */
	uint32_t free_cores;
	uint64_t free_mem_mb;
	const struct hc_ibrl_kv *tags; /* its gossip tags */
	size_t ntags;
	bool anti_affinity_hit; /* runs a workload with the policy's label */
	/* Beacon data: latency, jitter and loss as the placing node measured
	 * them (gossip probes), the rest as the node's BeaconMetadata says. */
	bool has_beacon;
	double latency_ms, jitter_ms, packet_loss; /* loss in percent, 0..100 */
	uint32_t queue_depth;
	double price_per_gb;
	const char *reputation; /* upstream's string; NULL or unparsable: none */
	const char *const *capabilities;
	size_t ncapabilities;
	size_t workloads;
};

struct hc_ibrl_policy_verdict {
	uint32_t failed;  /* bit (1 << rule) for each rule it fails */
	uint32_t applied; /* bit for each rule that applied to it */
	bool eligible;	  /* in the order at all */
	bool preferred;	  /* passes every rule (permissive: the others follow) */
	double score;
};

/* Checks every node against p and scores it: out[i] for nodes[i]. Then
 * writes into order the indexes of the eligible nodes, best first, and
 * returns how many. Enforce: eligible = passes every rule. Permissive:
 * capacity, node_selector and anti_affinity still hold; a node without
 * beacon data scores 0.5; one failing a beacon rule comes after those that
 * pass (upstream's fallback, made deterministic). Ties: strategy, then more
 * free capacity, then name. order holds n. Does not block or allocate
 * beyond n pointers: -ENOMEM only then. */
int hc_ibrl_place(const struct hc_ibrl_policy *p, const struct hc_ibrl_node *nodes, size_t n,
		  struct hc_ibrl_policy_verdict *out, size_t *order, size_t *norder);

/* Upstream's score of a node with beacon data under p's weights. */
double hc_ibrl_score(const struct hc_ibrl_policy *p, const struct hc_ibrl_node *node);

/* One line on why nodes[i] failed: "max_latency_ms: 250.0 ms > 200;
 * no beacon data". Writes "" when it failed nothing. */
void hc_ibrl_policy_reasons(const struct hc_ibrl_policy *p, const struct hc_ibrl_node *node,
			     const struct hc_ibrl_policy_verdict *v, char *buf, size_t len);

#endif /* HC_IBRL_H */
