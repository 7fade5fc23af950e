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

#endif /* HC_IBRL_H */
