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

#endif /* HC_IBRL_H */
