/*
 * The workloads of a state as a homomorphic set hash, so a signature over
 * a state can be checked at a cost in proportion to what changed: LtHash
 * (Lewi, Kim, Maykov, Weis, "Securing Update Propagation with Homomorphic
 * Hashing", 2019; folly's LtHash<32, 1024>). Each workload, packed, is
 * hashed (SHA-256) and expanded (AES-256-CTR) into 1024 lanes of 32 bits;
 * the set's hash is the lane-wise sum mod 2^32 of its members'. Adding or removing a member is
 * one expansion and one pass over the lanes, whatever the set's size, and
 * the order members come in does not matter. Finding two sets with the
 * same sum is a short-vector problem in a lattice of dimension 1024
 * (the paper's security argument), unlike XOR or a sum mod 2^256, which
 * linear algebra or the generalized birthday attack break.
 */
#include "ibrl/ibrl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define ELEMENT_DOMAIN "hypercore-workload-v1" /* and its NUL */

void hc_ibrl_set_hash_init(struct hc_ibrl_set_hash *s)
{
	memset(s, 0, sizeof(*s));
}

/* The element of w: SHA-256(domain, NUL, w packed) as the key of
 * AES-256-CTR (IV 0) over 4096 zero bytes, read as little-endian u32
 * lanes. Hash, then expand with a PRG, as BLAKE2X (LtHash's choice) does;
 * AES-NI makes the expansion about 2 us against SHAKE256's 15 (the cost
 * of every workload a receiver hashes whole). */
static int expand(const Cluster__Services__Api__WorkloadState *w,
		  uint32_t lanes[HC_IBRL_SET_LANES])
{
	static const uint8_t zero[HC_IBRL_SET_LANES * 4];
	uint8_t stack[2048], *buf = stack, out[HC_IBRL_SET_LANES * 4], key[32], iv[16] = { 0 };
	size_t len = protobuf_c_message_get_packed_size(&w->base);
	EVP_MD_CTX *h = EVP_MD_CTX_new();
	EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
	unsigned klen = 0;
	int olen = 0, r = h && x ? 0 : -ENOMEM;

	if (r == 0 && len > sizeof(stack) && !(buf = malloc(len)))
		r = -ENOMEM;
	if (r == 0) {
		protobuf_c_message_pack(&w->base, buf);
		if (EVP_DigestInit_ex(h, EVP_sha256(), NULL) != 1 ||
		    EVP_DigestUpdate(h, ELEMENT_DOMAIN, sizeof(ELEMENT_DOMAIN)) != 1 ||
		    EVP_DigestUpdate(h, buf, len) != 1 || EVP_DigestFinal_ex(h, key, &klen) != 1 ||
		    klen != sizeof(key) ||
		    EVP_EncryptInit_ex(x, EVP_aes_256_ctr(), NULL, key, iv) != 1 ||
		    EVP_EncryptUpdate(x, out, &olen, zero, sizeof(zero)) != 1 ||
		    olen != (int)sizeof(out))
			r = -ENOMEM;
	}
	for (size_t i = 0; r == 0 && i < HC_IBRL_SET_LANES; i++)
		lanes[i] = (uint32_t)out[4 * i] | (uint32_t)out[4 * i + 1] << 8 |
			   (uint32_t)out[4 * i + 2] << 16 | (uint32_t)out[4 * i + 3] << 24;
	if (buf != stack)
		free(buf);
	EVP_MD_CTX_free(h);
	EVP_CIPHER_CTX_free(x);
	return r;
}

/* s += sign * expand(w), lane by lane (mod 2^32). */
static int apply(struct hc_ibrl_set_hash *s, const Cluster__Services__Api__WorkloadState *w,
		 uint32_t sign)
{
	uint32_t lanes[HC_IBRL_SET_LANES];
	int r = expand(w, lanes);

	for (size_t i = 0; r == 0 && i < HC_IBRL_SET_LANES; i++)
		s->lane[i] += sign * lanes[i];
	return r;
}

int hc_ibrl_set_hash_add(struct hc_ibrl_set_hash *s,
			 const Cluster__Services__Api__WorkloadState *w)
{
	return apply(s, w, 1);
}

int hc_ibrl_set_hash_remove(struct hc_ibrl_set_hash *s,
			    const Cluster__Services__Api__WorkloadState *w)
{
	return apply(s, w, UINT32_MAX); /* -1 mod 2^32 */
}

int hc_ibrl_set_hash_of(struct hc_ibrl_set_hash *s,
			Cluster__Services__Api__WorkloadState *const *w, size_t n)
{
	int r = 0;

	hc_ibrl_set_hash_init(s);
	for (size_t i = 0; r == 0 && i < n; i++)
		r = hc_ibrl_set_hash_add(s, w[i]);
	return r;
}

int hc_ibrl_set_hash_sum(const struct hc_ibrl_set_hash *s, uint8_t out[HC_IBRL_DIGEST_LEN])
{
	uint8_t le[HC_IBRL_SET_LANES * 4];
	unsigned len = 0;

	for (size_t i = 0; i < HC_IBRL_SET_LANES; i++) {
		le[4 * i] = (uint8_t)s->lane[i];
		le[4 * i + 1] = (uint8_t)(s->lane[i] >> 8);
		le[4 * i + 2] = (uint8_t)(s->lane[i] >> 16);
		le[4 * i + 3] = (uint8_t)(s->lane[i] >> 24);
	}
	return EVP_Digest(le, sizeof(le), out, &len, EVP_sha256(), NULL) == 1 &&
			       len == HC_IBRL_DIGEST_LEN
		       ? 0
		       : -ENOMEM;
}
