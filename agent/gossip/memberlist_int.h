/*
 * Private to agent/gossip: the memberlist (SWIM + Lifeguard) engine and the
 * transmit-limited broadcast queue. The engine is protocol logic only: bytes
 * move through struct hc_gossip_transport_ops and time through the loop's
 * clock, so unit tests run whole clusters on a simulated network and clock.
 * Loop thread only.
 */
#ifndef HC_GOSSIP_MEMBERLIST_INT_H
#define HC_GOSSIP_MEMBERLIST_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/wire_int.h"
#include "gossip/transport_int.h"

struct hc_loop;

/* ---- broadcast queue (broadcast.c) ---- */

/*
 * Messages gossiped a limited number of times each, piggybacked on probes
 * and gossip packets. Order when filling a packet, as memberlist's
 * TransmitLimitedQueue: fewest transmissions first, then longer messages,
 * then newest. A message queued with a key replaces a queued one with the
 * same key (memberlist: one broadcast per node); serf queues use no keys.
 */
struct hc_gossip_bcast_queue;

struct hc_gossip_bcast_queue *hc_gossip_bcast_queue_new(void);
/* Drops every message, calling done(arg, false) for those that had one. */
void hc_gossip_bcast_queue_free(struct hc_gossip_bcast_queue *q);

/* done(arg, sent) runs once when the message reaches its transmit limit
 * (sent = true), is replaced or the queue is freed (false). Copies msg and
 * key (key may be NULL). Returns 0 or -ENOMEM. */
typedef void hc_gossip_bcast_done_fn(void *arg, bool sent);
int hc_gossip_bcast_queue_push(struct hc_gossip_bcast_queue *q, const char *key,
			       const uint8_t *msg, size_t len, hc_gossip_bcast_done_fn *done,
			       void *arg);

/* Picks messages for one packet: each costs its length plus overhead, the
 * total stays within limit. Appends them (borrowed until the next call on
 * the queue) to out[*n..max), counts a transmission for each and retires
 * those at transmit_limit. */
void hc_gossip_bcast_queue_take(struct hc_gossip_bcast_queue *q, size_t overhead, size_t limit,
				unsigned transmit_limit, struct hc_gossip_bytes *out, size_t max,
				size_t *n);
size_t hc_gossip_bcast_queue_len(const struct hc_gossip_bcast_queue *q);
/* Removes the oldest messages beyond max_len (serf's MaxQueueDepth). */
void hc_gossip_bcast_queue_prune(struct hc_gossip_bcast_queue *q, size_t max_len);

/* Random choices of the gossip layers (xorshift64*: they need spread, not
 * secrecy). _init seeds from seed, or from getrandom() when seed is 0. */
void hc_gossip_rand_init(uint64_t *state, uint64_t seed);
uint64_t hc_gossip_rand(uint64_t *state);

/* RetransmitMult x ceil(log10(n + 1)). */
unsigned hc_gossip_retransmit_limit(unsigned mult, size_t n);

/* ---- memberlist engine (memberlist.c) ---- */

struct hc_ml;

struct hc_ml_config {
	const char *name;          /* unique in the cluster */
	struct hc_gossip_addr addr; /* advertised address: what peers dial */
	const uint8_t *meta;       /* node meta (serf: ff + tags), <= 512 bytes */
	size_t meta_len;
	uint8_t vsn[6];            /* pmin pmax pcur dmin dmax dcur */

	uint32_t probe_interval_ms;
	uint32_t probe_timeout_ms;
	unsigned indirect_checks;
	unsigned suspicion_mult;
	unsigned suspicion_max_mult;
	unsigned retransmit_mult;
	uint32_t gossip_interval_ms;
	unsigned gossip_nodes;
	uint32_t gossip_to_dead_ms;
	uint32_t push_pull_interval_ms;
	uint32_t tcp_timeout_ms;
	unsigned awareness_max; /* Lifeguard: health score range 0..max-1 */
	size_t udp_buffer;      /* bytes per gossip packet */

	const struct hc_gossip_keyring *keyring; /* NULL or empty: plaintext */
	uint64_t seed; /* random choices; tests fix it for determinism */
};

/* memberlist's LAN profile; probe and gossip intervals as upstream
 * hypercore sets them are applied by the gossip layer on top. */
void hc_ml_config_lan(struct hc_ml_config *cfg);

/* A member as the engine knows it. Borrowed: valid until the engine
 * changes it (the next callback or call). */
struct hc_ml_node {
	const char *name;
	struct hc_gossip_addr addr;
	const uint8_t *meta;
	size_t meta_len;
	uint8_t vsn[6];
	uint32_t incarnation;
	enum hc_gossip_node_state state;
	uint64_t state_change_ms;
	int64_t rtt_us; /* last probe round trip, -1 until measured */
};

/* What the layer above (serf) plugs in; any hook may be NULL. */
struct hc_ml_delegate {
	void *arg;
	/* A user message (serf type byte + msgpack), from UDP or a stream. */
	void (*notify_msg)(void *arg, const uint8_t *msg, size_t len);
	/* Adds the layer's own broadcasts to a packet (see bcast_queue_take). */
	void (*get_broadcasts)(void *arg, size_t overhead, size_t limit,
			       struct hc_gossip_bytes *out, size_t max, size_t *n);
	/* Push/pull user state: append it to w; merge what a peer sent. */
	void (*local_state)(void *arg, bool join, struct hc_gossip_mp_writer *w);
	void (*merge_remote_state)(void *arg, const uint8_t *buf, size_t len, bool join);
	/* Membership changes. leave covers failed (dead) and left. */
	void (*notify_join)(void *arg, const struct hc_ml_node *n);
	void (*notify_leave)(void *arg, const struct hc_ml_node *n);
	void (*notify_update)(void *arg, const struct hc_ml_node *n);
	/* A probe of n was answered after rtt_us; payload is the ack's. */
	void (*notify_ping_complete)(void *arg, const struct hc_ml_node *n, int64_t rtt_us,
				     const uint8_t *payload, size_t len);
	/* A probe of n got no ack at all (for loss measurements). */
	void (*notify_probe_failed)(void *arg, const struct hc_ml_node *n);
	/* Payload for acks we send (serf: 01 + coordinate); may append nothing. */
	void (*ack_payload)(void *arg, struct hc_gossip_mp_writer *w);
};

/* Counters for /metrics and IBRL. */
struct hc_ml_stats {
	uint64_t msgs_in[HC_GOSSIP_MSG_ERR + 1];  /* by memberlist type */
	uint64_t msgs_out[HC_GOSSIP_MSG_ERR + 1];
	uint64_t dropped[HC_GOSSIP_DROP_COUNT];   /* packets and streams, by reason */
	uint64_t probes, probe_failures, indirect_probes, refutations;
	uint64_t push_pulls_out, push_pulls_in, push_pull_failures;
	/* stream parsing work: whole decodes (one per message), and bytes the
	 * scans for their ends looked at; tests check both stay linear */
	uint64_t stream_decodes, stream_scanned;
	size_t broadcast_queue;
	unsigned awareness;
};

struct hc_ml *hc_ml_new(struct hc_loop *loop, const struct hc_ml_config *cfg,
			const struct hc_gossip_transport_ops *ops, void *ops_ctx,
			const struct hc_ml_delegate *delegate);
/* Stops timers and drops state; pending stream exchanges must have been
 * cancelled by the transport first (or complete harmlessly: NULL fine). */
void hc_ml_free(struct hc_ml *ml);

/* Receivers to hand to the transport (struct hc_gossip_receiver, arg = ml). */
void hc_ml_on_packet(void *ml, const struct hc_gossip_addr *from, const uint8_t *buf,
		     size_t len);
int hc_ml_on_stream(void *ml, const struct hc_gossip_addr *from,
		    struct hc_gossip_stream_scan *scan, const uint8_t *buf, size_t len,
		    struct hc_gossip_mp_writer *reply);

/* Push/pull with Join = true to each address; done(arg, joined) runs once
 * all have answered or failed, joined = how many succeeded. 0 or -errno. */
typedef void hc_ml_join_done_fn(void *arg, unsigned joined);
int hc_ml_join(struct hc_ml *ml, const struct hc_gossip_addr *addrs, size_t n,
	       hc_ml_join_done_fn *done, void *arg);

/* Broadcasts our own death as "left" and calls done(arg) when it has been
 * gossiped (or after timeout_ms). The engine then stops probing. */
int hc_ml_leave(struct hc_ml *ml, uint32_t timeout_ms, void (*done)(void *arg), void *arg);

/* Gossips at least every 200 ms from now on: the node is leaving and its
 * last broadcasts should go out in about a second, not in several slow
 * gossip rounds. Only our pacing changes, not the protocol. */
void hc_ml_hurry(struct hc_ml *ml);
/* Gossips every 200 ms (at once first) until a round finds nothing queued:
 * a user event or query reaches the cluster in a few fast rounds instead of
 * waiting out the slow interval, and idle clusters stay quiet. */
void hc_ml_busy(struct hc_ml *ml);

/* Queues a new alive with a higher incarnation carrying this meta. */
int hc_ml_update_meta(struct hc_ml *ml, const uint8_t *meta, size_t len);

/* Sends a raw user message (serf message) to one address, best effort. */
int hc_ml_send_user(struct hc_ml *ml, const struct hc_gossip_addr *to, const uint8_t *msg,
		    size_t len);

/* Members, self included, in no particular order; *n set. Borrowed. */
const struct hc_ml_node *hc_ml_member(const struct hc_ml *ml, size_t i);
size_t hc_ml_member_count(const struct hc_ml *ml);
const struct hc_ml_node *hc_ml_find(const struct hc_ml *ml, const char *name);
/* Alive (or suspect) members, self included: memberlist's estimate of n. */
size_t hc_ml_alive_count(const struct hc_ml *ml);
const struct hc_ml_node *hc_ml_self(const struct hc_ml *ml);

void hc_ml_stats(const struct hc_ml *ml, struct hc_ml_stats *st);

#endif /* HC_GOSSIP_MEMBERLIST_INT_H */
