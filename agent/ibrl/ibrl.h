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

struct hc_ibrl_verdict {
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
		  struct hc_ibrl_verdict *out, size_t *order, size_t *norder);

/* Upstream's score of a node with beacon data under p's weights. */
double hc_ibrl_score(const struct hc_ibrl_policy *p, const struct hc_ibrl_node *node);

/* One line on why nodes[i] failed: "max_latency_ms: 250.0 ms > 200;
 * no beacon data". Writes "" when it failed nothing. */
void hc_ibrl_verdict_reasons(const struct hc_ibrl_policy *p, const struct hc_ibrl_node *node,
			     const struct hc_ibrl_verdict *v, char *buf, size_t len);

#endif /* HC_IBRL_H */
