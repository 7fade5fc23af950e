/* Execution proofs: the canonical encoding, sealing, log lines and chain
 * verification; see ibrl.h and docs/cluster.md#execution-proofs. */
#include "ibrl/ibrl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define ENCODING_MAGIC "HCPROOF1"
/* What is signed: this tag, then the proof hash. The tag keeps a proof
 * signature from ever passing for a signature over anything else the node
 * key signs (states, attestations). */
#define SIGNATURE_TAG "hypercore-proof-signature-v1"
#define LINE_VERSION "v1"
#define LINE_FIELDS 14

const char *const hc_ibrl_metric_names[HC_IBRL_METRICS] = {
	[HC_IBRL_CPU_NS] = "cpu_ns",	   [HC_IBRL_MEMORY_BYTES] = "memory_bytes",
	[HC_IBRL_RX_BYTES] = "rx_bytes",   [HC_IBRL_TX_BYTES] = "tx_bytes",
	[HC_IBRL_UPTIME_S] = "uptime_s",   [HC_IBRL_RESTARTS] = "restarts",
};

const char *const hc_ibrl_reason_names[HC_IBRL_REASONS] = {
	[HC_IBRL_OK] = "ok",
	[HC_IBRL_MALFORMED] = "malformed",
	[HC_IBRL_WRONG_WORKLOAD] = "wrong_workload",
	[HC_IBRL_WRONG_KEY] = "wrong_key",
	[HC_IBRL_HASH_MISMATCH] = "hash_mismatch",
	[HC_IBRL_BAD_SIGNATURE] = "bad_signature",
	[HC_IBRL_BROKEN_CHAIN] = "broken_chain",
	[HC_IBRL_REPLAYED] = "replayed",
	[HC_IBRL_TIMESTAMP] = "timestamp_not_increasing",
	[HC_IBRL_COUNTER] = "counter_decreased",
	[HC_IBRL_TRUNCATED] = "truncated",
	[HC_IBRL_NO_PROOFS] = "no_proofs",
	[HC_IBRL_NO_KEY] = "no_key",
};

const char *hc_ibrl_verdict_name(enum hc_ibrl_verdict v)
{
	return v == HC_IBRL_VALID ? "VALID" : v == HC_IBRL_INVALID ? "INVALID" : "UNKNOWN";
}

static bool hypervisor_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= HC_IBRL_HYPERVISOR_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '.' ||
		      *s == '_' || *s == '-'))
			return false;
	return true;
}

static uint8_t *put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--)
		*p++ = (uint8_t)(v >> (8 * i));
	return p;
}

static uint8_t *put_str(uint8_t *p, const char *s)
{
	size_t n = strlen(s);

	*p++ = (uint8_t)(n >> 8);
	*p++ = (uint8_t)n;
	memcpy(p, s, n);
	return p + n;
}

int hc_ibrl_proof_encode(const struct hc_ibrl_proof *p, uint8_t *out, size_t cap)
{
	size_t need = 8 + 2 + HC_UUID_LEN + HC_IBRL_PUBLIC_LEN + 8 + 8 * HC_IBRL_METRICS + 2 +
		      strlen(p->hypervisor);
	uint8_t *o = out;

	if (!hc_uuid_valid(p->workload_id) || !hypervisor_ok(p->hypervisor))
		return -EINVAL;
	if (cap < need)
		return -ENOSPC;
	memcpy(o, ENCODING_MAGIC, 8);
	o = put_str(o + 8, p->workload_id);
	memcpy(o, p->node_key, HC_IBRL_PUBLIC_LEN);
	o = put_be64(o + HC_IBRL_PUBLIC_LEN, (uint64_t)p->timestamp_ms);
	for (int i = 0; i < HC_IBRL_METRICS; i++)
		o = put_be64(o, p->metrics[i]);
	o = put_str(o, p->hypervisor);
	return (int)(o - out);
}

int hc_ibrl_proof_hash(const struct hc_ibrl_proof *p, uint8_t out[HC_IBRL_HASH_LEN])
{
	uint8_t buf[HC_IBRL_HASH_LEN + 160];
	unsigned int len = 0;
	int n;

	memcpy(buf, p->prev_hash, HC_IBRL_HASH_LEN);
	n = hc_ibrl_proof_encode(p, buf + HC_IBRL_HASH_LEN, sizeof(buf) - HC_IBRL_HASH_LEN);
	if (n < 0)
		return n;
	if (EVP_Digest(buf, HC_IBRL_HASH_LEN + (size_t)n, out, &len, EVP_sha256(), NULL) != 1 ||
	    len != HC_IBRL_HASH_LEN)
		return -EIO;
	return 0;
}

static void signed_message(const uint8_t hash[HC_IBRL_HASH_LEN],
			   uint8_t msg[sizeof(SIGNATURE_TAG) - 1 + HC_IBRL_HASH_LEN])
{
	memcpy(msg, SIGNATURE_TAG, sizeof(SIGNATURE_TAG) - 1);
	memcpy(msg + sizeof(SIGNATURE_TAG) - 1, hash, HC_IBRL_HASH_LEN);
}

int hc_ibrl_proof_seal(const struct hc_ibrl_identity *id, struct hc_ibrl_proof *p)
{
	uint8_t msg[sizeof(SIGNATURE_TAG) - 1 + HC_IBRL_HASH_LEN];
	int r;

	memcpy(p->node_key, hc_ibrl_identity_public(id), HC_IBRL_PUBLIC_LEN);
	r = hc_ibrl_proof_hash(p, p->hash);
	if (r < 0)
		return r;
	signed_message(p->hash, msg);
	return hc_ibrl_sign(id, msg, sizeof(msg), p->sig);
}

/* ---- hex ---- */

void hc_ibrl_hash_hex(const uint8_t hash[HC_IBRL_HASH_LEN], char out[2 * HC_IBRL_HASH_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < HC_IBRL_HASH_LEN; i++) {
		out[2 * i] = digits[hash[i] >> 4];
		out[2 * i + 1] = digits[hash[i] & 15];
	}
	out[2 * HC_IBRL_HASH_LEN] = '\0';
}

static int hex_digit(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int hc_ibrl_hash_parse(const char *hex, uint8_t out[HC_IBRL_HASH_LEN])
{
	if (!hex || strlen(hex) != 2 * HC_IBRL_HASH_LEN)
		return -EINVAL;
	for (int i = 0; i < HC_IBRL_HASH_LEN; i++) {
		int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* ---- log lines ---- */

int hc_ibrl_proof_format(const struct hc_ibrl_proof *p, char *line, size_t size)
{
	char prev[2 * HC_IBRL_HASH_LEN + 1], hash[2 * HC_IBRL_HASH_LEN + 1];
	char key[4 * ((HC_IBRL_PUBLIC_LEN + 2) / 3) + 1];
	char sig[4 * ((HC_IBRL_SIGNATURE_LEN + 2) / 3) + 1];
	const uint64_t *m = p->metrics;
	int n;

	hc_ibrl_hash_hex(p->prev_hash, prev);
	hc_ibrl_hash_hex(p->hash, hash);
	if (hc_ibrl_b64_encode(p->node_key, HC_IBRL_PUBLIC_LEN, key, sizeof(key)) < 0 ||
	    hc_ibrl_b64_encode(p->sig, HC_IBRL_SIGNATURE_LEN, sig, sizeof(sig)) < 0)
		return -ENOSPC;
	n = snprintf(line, size,
		     LINE_VERSION " %s %" PRId64 " %s %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
				  " %" PRIu64 " %" PRIu64 " %s %s %s %s\n",
		     p->workload_id, p->timestamp_ms, p->hypervisor, m[0], m[1], m[2], m[3], m[4],
		     m[5], prev, hash, key, sig);
	return n < 0 || (size_t)n >= size ? -ENOSPC : n;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (*s < '0' || *s > '9' || (s[0] == '0' && s[1]))
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || *end ? -EINVAL : 0;
}

/* Splits line into at most LINE_FIELDS space-separated fields (in buf). */
static int split(const char *line, size_t len, char *buf, char *f[LINE_FIELDS])
{
	int n = 0;
	char *p;

	if (len && line[len - 1] == '\n')
		len--;
	if (len == 0 || len >= HC_IBRL_PROOF_LINE_MAX || memchr(line, '\0', len))
		return -EINVAL;
	memcpy(buf, line, len);
	buf[len] = '\0';
	for (p = buf; p;) {
		if (n == LINE_FIELDS)
			return -EINVAL;
		f[n++] = p;
		p = strchr(p, ' ');
		if (p)
			*p++ = '\0';
	}
	return n == LINE_FIELDS ? 0 : -EINVAL;
}

int hc_ibrl_proof_parse(const char *line, size_t len, struct hc_ibrl_proof *out)
{
	char buf[HC_IBRL_PROOF_LINE_MAX], *f[LINE_FIELDS];
	size_t klen, slen;
	uint64_t ts;

	memset(out, 0, sizeof(*out));
	if (split(line, len, buf, f) < 0 || strcmp(f[0], LINE_VERSION) != 0 ||
	    !hc_uuid_valid(f[1]) || parse_u64(f[2], &ts) < 0 || ts > INT64_MAX ||
	    !hypervisor_ok(f[3]))
		return -EINVAL;
	snprintf(out->workload_id, sizeof(out->workload_id), "%s", f[1]);
	out->timestamp_ms = (int64_t)ts;
	snprintf(out->hypervisor, sizeof(out->hypervisor), "%s", f[3]);
	for (int i = 0; i < HC_IBRL_METRICS; i++)
		if (parse_u64(f[4 + i], &out->metrics[i]) < 0)
			return -EINVAL;
	if (hc_ibrl_hash_parse(f[10], out->prev_hash) < 0 || hc_ibrl_hash_parse(f[11], out->hash) < 0 ||
	    hc_ibrl_b64_decode(f[12], out->node_key, HC_IBRL_PUBLIC_LEN, &klen) < 0 ||
	    klen != HC_IBRL_PUBLIC_LEN ||
	    hc_ibrl_b64_decode(f[13], out->sig, HC_IBRL_SIGNATURE_LEN, &slen) < 0 ||
	    slen != HC_IBRL_SIGNATURE_LEN)
		return -EINVAL;
	return 0;
}

/* ---- verification ---- */

/* One entry on its own: key, hash, signature. */
static enum hc_ibrl_reason check_entry(const struct hc_ibrl_proof *p, const char *id,
				       const uint8_t *pub)
{
	uint8_t hash[HC_IBRL_HASH_LEN], msg[sizeof(SIGNATURE_TAG) - 1 + HC_IBRL_HASH_LEN];

	if (strcmp(p->workload_id, id) != 0)
		return HC_IBRL_WRONG_WORKLOAD;
	if (memcmp(p->node_key, pub, HC_IBRL_PUBLIC_LEN) != 0)
		return HC_IBRL_WRONG_KEY;
	if (hc_ibrl_proof_hash(p, hash) < 0)
		return HC_IBRL_MALFORMED;
	if (memcmp(hash, p->hash, HC_IBRL_HASH_LEN) != 0)
		return HC_IBRL_HASH_MISMATCH;
	signed_message(p->hash, msg);
	if (hc_ibrl_verify(pub, msg, sizeof(msg), p->sig) != 0)
		return HC_IBRL_BAD_SIGNATURE;
	return HC_IBRL_OK;
}

enum hc_ibrl_reason hc_ibrl_proof_follows(const struct hc_ibrl_proof *prev,
					  const struct hc_ibrl_proof *next)
{
	const uint64_t *a = prev->metrics, *b = next->metrics;
	bool restarted;

	if (next->timestamp_ms <= prev->timestamp_ms)
		return HC_IBRL_TIMESTAMP;
	if (b[HC_IBRL_RESTARTS] < a[HC_IBRL_RESTARTS] || b[HC_IBRL_CPU_NS] < a[HC_IBRL_CPU_NS] ||
	    b[HC_IBRL_RX_BYTES] < a[HC_IBRL_RX_BYTES] || b[HC_IBRL_TX_BYTES] < a[HC_IBRL_TX_BYTES])
		return HC_IBRL_COUNTER;
	restarted = b[HC_IBRL_RESTARTS] > a[HC_IBRL_RESTARTS];
	if (!restarted && b[HC_IBRL_UPTIME_S] < a[HC_IBRL_UPTIME_S])
		return HC_IBRL_COUNTER;
	return HC_IBRL_OK;
}

static enum hc_ibrl_verdict settle(struct hc_ibrl_chain_report *out, enum hc_ibrl_verdict v,
				   enum hc_ibrl_reason why, size_t line)
{
	out->verdict = v;
	out->reason = why;
	out->line = line;
	return v;
}

enum hc_ibrl_verdict hc_ibrl_chain_verify(const char *text, size_t len, const char *id,
					  const uint8_t *pub, const uint8_t *head,
					  struct hc_ibrl_chain_report *out)
{
	static const uint8_t zero[HC_IBRL_HASH_LEN];
	bool head_found = head == NULL;
	size_t pos = 0;

	memset(out, 0, sizeof(*out));
	if (!pub)
		return settle(out, HC_IBRL_UNKNOWN, HC_IBRL_NO_KEY, 0);
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		struct hc_ibrl_proof p;
		enum hc_ibrl_reason why;
		size_t line = out->entries + 1;

		if (!nl)
			break; /* a write in progress */
		if (hc_ibrl_proof_parse(text + pos, (size_t)(nl - text) - pos + 1, &p) < 0)
			return settle(out, HC_IBRL_INVALID, HC_IBRL_MALFORMED, line);
		pos = (size_t)(nl - text) + 1;
		why = check_entry(&p, id, pub);
		if (why != HC_IBRL_OK)
			return settle(out, HC_IBRL_INVALID, why, line);
		if (out->entries == 0 && memcmp(p.prev_hash, zero, HC_IBRL_HASH_LEN) != 0)
			return settle(out, HC_IBRL_INVALID, HC_IBRL_TRUNCATED, line);
		if (out->entries && memcmp(p.prev_hash, out->last.hash, HC_IBRL_HASH_LEN) != 0)
			return settle(out, HC_IBRL_INVALID,
				      p.timestamp_ms <= out->last.timestamp_ms ? HC_IBRL_REPLAYED
									       : HC_IBRL_BROKEN_CHAIN,
				      line);
		if (out->entries && (why = hc_ibrl_proof_follows(&out->last, &p)) != HC_IBRL_OK)
			return settle(out, HC_IBRL_INVALID, why, line);
		if (head && memcmp(p.hash, head, HC_IBRL_HASH_LEN) == 0)
			head_found = true;
		out->last = p;
		out->entries++;
	}
	if (out->entries == 0)
		return settle(out, HC_IBRL_UNKNOWN, HC_IBRL_NO_PROOFS, 0);
	if (!head_found)
		return settle(out, HC_IBRL_INVALID, HC_IBRL_TRUNCATED, out->entries);
	return settle(out, HC_IBRL_VALID, HC_IBRL_OK, 0);
}
