/*
 * Which of the state digests in serf's ring of recent user events a newer
 * one supersedes, so our push/pull leaves them out (gossip.h,
 * hc_gossip_event_version_fn): a receiver needs only its owner's newest.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "cluster/cluster_int.h"

/* A protobuf varint at *p (before end), *p moved past it. */
static bool pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;

	for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;

		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = x;
			return true;
		}
	}
	return false;
}

/*
 * A StateDigest's node (field 1, a span of buf) and state_version (field
 * 5), read without unpacking it: this runs for every digest in the ring at
 * each push/pull, and the inline deltas would cost their workloads' unpacking.
 * The last copy of a field wins, as when unpacking. false: not well formed,
 * or without either field.
 */
static bool digest_owner(const uint8_t *buf, size_t len, const uint8_t **node, size_t *node_len,
			 uint64_t *version)
{
	const uint8_t *p = buf, *end = buf + len;
	bool has_node = false, has_version = false;
	uint64_t tag, v;

	while (p < end) {
		if (!pb_varint(&p, end, &tag))
			return false;
		switch (tag & 7) {
		case 0: /* varint */
			if (!pb_varint(&p, end, &v))
				return false;
			if (tag >> 3 == 5) {
				*version = v;
				has_version = true;
			}
			break;
		case 1: /* fixed64 */
		case 5: /* fixed32 */
			v = (tag & 7) == 1 ? 8 : 4;
			if ((uint64_t)(end - p) < v)
				return false;
			p += v;
			break;
		case 2: /* length-delimited */
			if (!pb_varint(&p, end, &v) || v > (uint64_t)(end - p))
				return false;
			if (tag >> 3 == 1) {
				*node = p;
				*node_len = (size_t)v;
				has_node = true;
			}
			p += v;
			break;
		default:
			return false;
		}
	}
	return has_node && has_version;
}

/* The version of node's state this node vouches for: its own as last
 * recorded, or a peer's verified state; 0 for none. */
static uint64_t vouched_version(struct hc_cluster *c, const uint8_t *node, size_t len)
{
	char name[256];
	const struct peer *p;

	if (len == 0 || len >= sizeof(name) || memchr(node, '\0', len))
		return 0;
	memcpy(name, node, len);
	name[len] = '\0';
	if (strcmp(name, hc_cluster_self(c)) == 0)
		return hc_cluster_delta_recorded_version(c);
	p = hc_cluster_state_peer(c, name);
	return p && p->verified ? p->version : 0;
}

/*
 * A digest counts only at a version this node holds verified (or sent):
 * one from a forger with a higher version must neither be taken for the
 * owner's newest, which would leave the real ones out, nor be left out
 * itself on its word. Chunked states (HC_STATE_EVENT) are never left out:
 * an older state's chunk is superseded only by a whole newer set of chunks,
 * and upstream receivers, which know no digests, assemble what they get.
 */
bool hc_cluster_digest_version(const char *name, const uint8_t *payload, size_t len,
			       const uint8_t **key, size_t *key_len, uint64_t *version, void *arg)
{
	struct hc_cluster *c = arg;
	uint64_t held;

	if (strcmp(name, HC_DIGEST_EVENT) != 0 || !digest_owner(payload, len, key, key_len, version))
		return false;
	held = vouched_version(c, *key, *key_len);
	return held && *version <= held;
}
