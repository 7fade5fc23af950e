/* Signed states and attestations of the beacon; see ibrl.h ("beacon"). */
#include "ibrl/ibrl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#define STATE_DOMAIN "hypercore-state-v1" /* and its NUL: a version of the encoding */
#define STATE_DOMAIN_V2 "hypercore-state-v2" /* workloads by their set hash's sum */

/* ---- the canonical encoding ---- */

static int put(EVP_MD_CTX *h, const void *p, size_t len)
{
	return EVP_DigestUpdate(h, p, len) == 1 ? 0 : -ENOMEM;
}

static int put_u32(EVP_MD_CTX *h, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

	return put(h, b, sizeof(b));
}

static int put_u64(EVP_MD_CTX *h, uint64_t v)
{
	int r = put_u32(h, (uint32_t)(v >> 32));

	return r ? r : put_u32(h, (uint32_t)v);
}

/* u32 length, then the bytes: no two field sequences encode alike. */
static int put_bytes(EVP_MD_CTX *h, const void *p, size_t len)
{
	int r = len > UINT32_MAX ? -E2BIG : put_u32(h, (uint32_t)len);

	return r ? r : put(h, p, len);
}

static int put_str(EVP_MD_CTX *h, const char *s)
{
	return put_bytes(h, s ? s : "", s ? strlen(s) : 0);
}

static int put_msg(EVP_MD_CTX *h, const ProtobufCMessage *m)
{
	size_t len = m ? protobuf_c_message_get_packed_size(m) : 0;
	uint8_t *buf = malloc(len ? len : 1);
	int r;

	if (!buf)
		return -ENOMEM;
	if (m)
		protobuf_c_message_pack(m, buf);
	r = put_bytes(h, buf, len);
	free(buf);
	return r;
}

struct packed {
	const char *id;
	uint8_t *buf;
	size_t len;
};

static int packed_cmp(const void *a, const void *b)
{
	const struct packed *x = a, *y = b;
	int r = strcmp(x->id, y->id);

	if (r)
		return r;
	r = memcmp(x->buf, y->buf, x->len < y->len ? x->len : y->len);
	return r ? r : (x->len > y->len) - (x->len < y->len);
}

/* The workloads packed and sorted by id, then bytes. */
static int put_workloads(EVP_MD_CTX *h, Cluster__Services__Api__WorkloadState *const *w, size_t n)
{
	struct packed *p = calloc(n + 1, sizeof(*p));
	int r = p ? 0 : -ENOMEM;

	for (size_t i = 0; r == 0 && i < n; i++) {
		p[i].id = w[i]->id ? w[i]->id : "";
		p[i].len = protobuf_c_message_get_packed_size(&w[i]->base);
		p[i].buf = malloc(p[i].len ? p[i].len : 1);
		if (!p[i].buf)
			r = -ENOMEM;
		else
			protobuf_c_message_pack(&w[i]->base, p[i].buf);
	}
	if (r == 0) {
		qsort(p, n, sizeof(*p), packed_cmp);
		r = n > UINT32_MAX ? -E2BIG : put_u32(h, (uint32_t)n);
	}
	for (size_t i = 0; r == 0 && i < n; i++)
		r = put_bytes(h, p[i].buf, p[i].len);
	for (size_t i = 0; p && i < n; i++)
		free(p[i].buf);
	free(p);
	return r;
}

/* Encoding v2's workloads: their count and their set hash's sum. */
static int put_summary(EVP_MD_CTX *h, size_t n, const uint8_t sum[HC_IBRL_DIGEST_LEN])
{
	int r = n > UINT32_MAX ? -E2BIG : put_u32(h, (uint32_t)n);

	return r ? r : put(h, sum, HC_IBRL_DIGEST_LEN);
}

int hc_ibrl_state_digest(const struct hc_ibrl_state_view *v, uint8_t digest[HC_IBRL_DIGEST_LEN])
{
	EVP_MD_CTX *h = EVP_MD_CTX_new();
	uint8_t respawn = v->respawn;
	unsigned len = 0;
	int r = h && EVP_DigestInit_ex(h, EVP_sha256(), NULL) == 1 ? 0 : -ENOMEM;

	if (r == 0 && v->workloads_sum)
		r = put(h, STATE_DOMAIN_V2, sizeof(STATE_DOMAIN_V2));
	else if (r == 0)
		r = put(h, STATE_DOMAIN, sizeof(STATE_DOMAIN));
	if (r == 0)
		r = put_str(h, v->node);
	if (r == 0)
		r = put_str(h, v->node_addr);
	if (r == 0)
		r = put_u32(h, v->http_port);
	if (r == 0)
		r = put(h, &respawn, 1);
	if (r == 0)
		r = put_u64(h, v->version);
	if (r == 0)
		r = put_msg(h, v->beacon ? &v->beacon->base : NULL);
	if (r == 0 && v->workloads_sum)
		r = put_summary(h, v->nworkloads, v->workloads_sum);
	else if (r == 0)
		r = put_workloads(h, v->workloads, v->nworkloads);
	if (r == 0 && (EVP_DigestFinal_ex(h, digest, &len) != 1 || len != HC_IBRL_DIGEST_LEN))
		r = -ENOMEM;
	EVP_MD_CTX_free(h);
	return r;
}

int hc_ibrl_state_sign(const struct hc_ibrl_identity *id, const struct hc_ibrl_state_view *v,
		       char out[HC_IBRL_STATE_SIG_B64_LEN + 1])
{
	uint8_t digest[HC_IBRL_DIGEST_LEN], sig[HC_IBRL_SIGNATURE_LEN];
	int r = hc_ibrl_state_digest(v, digest);

	if (r == 0)
		r = hc_ibrl_sign(id, digest, sizeof(digest), sig);
	if (r == 0)
		r = hc_ibrl_b64_encode(sig, sizeof(sig), out, HC_IBRL_STATE_SIG_B64_LEN + 1);
	return r;
}

int hc_ibrl_state_verify(const uint8_t pub[HC_IBRL_PUBLIC_LEN],
			 const struct hc_ibrl_state_view *v, const char *sig_b64)
{
	uint8_t digest[HC_IBRL_DIGEST_LEN], sig[HC_IBRL_SIGNATURE_LEN];
	size_t len = 0;
	int r;

	if (!sig_b64 || strlen(sig_b64) != HC_IBRL_STATE_SIG_B64_LEN ||
	    hc_ibrl_b64_decode(sig_b64, sig, sizeof(sig), &len) < 0 || len != sizeof(sig))
		return -EBADMSG;
	r = hc_ibrl_state_digest(v, digest);
	return r ? r : hc_ibrl_verify(pub, digest, sizeof(digest), sig);
}

const uint8_t *hc_ibrl_beacon_public(const Cluster__Services__Api__BeaconMetadata *b)
{
	return b && b->node_signature.len == HC_IBRL_PUBLIC_LEN ? b->node_signature.data : NULL;
}

/* ---- attestations ---- */

/* upstream's message: "type|nodeID|timestamp|hex(data)". */
static int attest_message(const char *node, const uint8_t *nonce, size_t nonce_len,
			  uint64_t now_s, char *out, size_t size)
{
	static const char digits[] = "0123456789abcdef";
	int n = snprintf(out, size, "%s|%s|%llu|", HC_IBRL_ATTEST_TYPE, node,
			 (unsigned long long)now_s);

	if (n < 0 || (size_t)n + 2 * nonce_len >= size)
		return -ENAMETOOLONG;
	for (size_t i = 0; i < nonce_len; i++) {
		out[n++] = digits[nonce[i] >> 4];
		out[n++] = digits[nonce[i] & 15];
	}
	out[n] = '\0';
	return n;
}

int hc_ibrl_attest_make(const struct hc_ibrl_identity *id, const char *node, const uint8_t *nonce,
			size_t nonce_len, uint64_t now_s, uint8_t out[HC_IBRL_ATTEST_DATA_LEN])
{
	char msg[512];
	int n;

	if (nonce_len != HC_IBRL_NONCE_LEN)
		return -EINVAL;
	n = attest_message(node, nonce, nonce_len, now_s, msg, sizeof(msg));
	if (n < 0)
		return n;
	memcpy(out, hc_ibrl_identity_public(id), HC_IBRL_PUBLIC_LEN);
	for (int i = 0; i < 8; i++)
		out[HC_IBRL_PUBLIC_LEN + i] = (uint8_t)(now_s >> (56 - 8 * i));
	return hc_ibrl_sign(id, msg, (size_t)n, out + HC_IBRL_PUBLIC_LEN + 8);
}

int hc_ibrl_attest_check(const Cluster__Services__Api__BeaconAttestation *a, const char *node,
			 const uint8_t nonce[HC_IBRL_NONCE_LEN], uint64_t now_s, uint64_t max_age_s,
			 uint8_t pub[HC_IBRL_PUBLIC_LEN])
{
	const uint8_t *d = a ? a->attestation_data.data : NULL;
	uint64_t ts = 0;
	char msg[512];
	int n;

	if (!d || a->attestation_data.len != HC_IBRL_ATTEST_DATA_LEN || !a->node_id ||
	    strcmp(a->node_id, node) != 0 || !a->attestation_type ||
	    strcmp(a->attestation_type, HC_IBRL_ATTEST_TYPE) != 0)
		return -EBADMSG;
	for (int i = 0; i < 8; i++)
		ts = ts << 8 | d[HC_IBRL_PUBLIC_LEN + i];
	n = attest_message(node, nonce, HC_IBRL_NONCE_LEN, ts, msg, sizeof(msg));
	if (n < 0 || hc_ibrl_verify(d, msg, (size_t)n, d + HC_IBRL_PUBLIC_LEN + 8) < 0)
		return -EBADMSG;
	if (ts + max_age_s < now_s || ts > now_s + max_age_s)
		return -ESTALE;
	memcpy(pub, d, HC_IBRL_PUBLIC_LEN);
	return 0;
}

int hc_ibrl_nonce_new(struct hc_ibrl_nonces *n, uint8_t out[HC_IBRL_NONCE_LEN])
{
	unsigned slot = n->next++ % HC_IBRL_NONCES_MAX;

	if (RAND_bytes(out, HC_IBRL_NONCE_LEN) != 1)
		return -EIO;
	memcpy(n->nonce[slot], out, HC_IBRL_NONCE_LEN);
	n->used[slot] = false;
	return 0;
}

int hc_ibrl_nonce_use(struct hc_ibrl_nonces *n, const uint8_t nonce[HC_IBRL_NONCE_LEN])
{
	unsigned have = n->next < HC_IBRL_NONCES_MAX ? n->next : HC_IBRL_NONCES_MAX;

	for (unsigned i = 0; i < have; i++) {
		if (memcmp(n->nonce[i], nonce, HC_IBRL_NONCE_LEN) != 0)
			continue;
		if (n->used[i])
			return -EALREADY;
		n->used[i] = true;
		return 0;
	}
	return -ENOENT;
}
