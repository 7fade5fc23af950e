/*
 * Private to memberlist*.c: the engine's state (struct hc_ml) and what its
 * files share. memberlist.c holds nodes, sending, state changes, receiving
 * and the lifecycle; memberlist_probe.c probing and gossip rounds;
 * memberlist_stream.c streams (push/pull, joins, TCP ping).
 */
#ifndef HC_GOSSIP_MEMBERLIST_ENGINE_INT_H
#define HC_GOSSIP_MEMBERLIST_ENGINE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/index_int.h"
#include "gossip/memberlist_int.h"

#define MAX_PARTS 64    /* messages per gossip packet */
#define COMPOUND_HEADER 2
#define CRC_OVERHEAD 5
#define HURRY_MS 200

struct suspicion {
	uint64_t start_ms;
	uint32_t min_ms, max_ms;
	unsigned k, n; /* confirmations wanted, received */
	char **seen;   /* the accuser, then each confirmer: k + 1 slots */
	unsigned nseen;
	uint64_t timer;
};

struct node {
	struct hc_ml_node pub; /* pub.name and pub.meta point to the fields below */
	char *name;
	size_t name_len; /* the by_name index's key is name[0..name_len) */
	uint8_t *meta;
	uint8_t addr_key[18]; /* pub.addr's ip and port, the by_addr index's key */
	uint8_t addr_key_len;
	struct suspicion *susp;
	struct hc_ml *ml; /* for the suspicion timer */
};

/* An indirect probe we run for another node: relay the target's ack. */
struct relay {
	struct relay *next;
	struct hc_ml *ml;
	uint32_t seq;      /* our ping to the target */
	uint32_t orig_seq; /* the requester's */
	struct hc_gossip_addr requester;
	bool nack;
	uint64_t timer;
};

/* The probe in progress (memberlist runs one at a time). */
struct probe {
	bool active;
	char *target;
	uint32_t seq;
	uint64_t sent_ns;
	unsigned expected_nacks, nacks;
	uint64_t indirect_timer, deadline_timer;
};

/* An outgoing stream exchange (push/pull or TCP ping): the transport's
 * arg, so completions can find the engine or learn that it is gone. */
struct exchange {
	struct exchange *next;
	struct hc_ml *ml;
	struct hc_gossip_stream_scan scan; /* of the reply */
	hc_gossip_stream_done_fn *done;
	void *arg;
};

struct hc_ml {
	struct hc_loop *loop;
	struct hc_ml_config cfg;
	const struct hc_gossip_transport_ops *ops;
	void *ops_ctx;
	struct hc_ml_delegate d;

	struct node **nodes;
	size_t nnodes, capnodes;
	/* Lookups per packet stay O(1) at thousands of members. */
	struct hc_gossip_index by_name, by_addr;
	size_t nalive; /* alive or suspect, self included */
	struct node *self;
	size_t probe_index;

	uint32_t seq;
	unsigned awareness;
	struct probe probe;
	struct relay *relays;
	struct exchange *exchanges;

	struct hc_gossip_bcast_queue *queue;
	struct hc_gossip_mp_writer scratch; /* delegate broadcasts as user messages */
	uint64_t probe_timer, gossip_timer, push_pull_timer, catchup_timer;
	bool leaving;
	bool hurry; /* gossip at least every HURRY_MS */
	bool busy;  /* the same until a round finds nothing to send */
	void (*leave_done)(void *arg);
	void *leave_arg;
	uint64_t leave_timer;

	uint64_t rng;
	struct hc_ml_stats st;
};

/* ---- memberlist.c ---- */

uint64_t hc_ml_rnd(struct hc_ml *ml);
uint64_t hc_ml_now_ms(const struct hc_ml *ml);
bool hc_ml_bytes_is(struct hc_gossip_bytes b, const char *s);
int hc_ml_addr_from_bytes(struct hc_gossip_bytes ip, uint16_t port, struct hc_gossip_addr *a);
struct hc_gossip_bytes hc_ml_addr_ip(const struct hc_gossip_addr *a);
const char *hc_ml_addr_str(const struct hc_gossip_addr *a, char *buf, size_t len);
uint32_t hc_ml_scaled(const struct hc_ml *ml, uint32_t ms);
void hc_ml_awareness_delta(struct hc_ml *ml, int delta);
struct node *hc_ml_find_node(const struct hc_ml *ml, struct hc_gossip_bytes name);
void hc_ml_take_broadcasts(struct hc_ml *ml, size_t avail, struct hc_gossip_bytes *parts,
			   size_t *n);
int hc_ml_send_packet(struct hc_ml *ml, const struct hc_gossip_addr *to, const uint8_t *buf,
		      size_t len);
int hc_ml_send_msg(struct hc_ml *ml, const struct hc_gossip_addr *to,
		   const struct hc_gossip_msg *m);
void hc_ml_on_alive(struct hc_ml *ml, const struct hc_gossip_alive *a, bool bootstrap);
void hc_ml_on_suspect(struct hc_ml *ml, const struct hc_gossip_suspect *s);
void hc_ml_on_dead(struct hc_ml *ml, const struct hc_gossip_suspect *d);

/* ---- memberlist_probe.c ---- */

void hc_ml_relay_free(struct hc_ml *ml, struct relay **link);
void hc_ml_probe_end(struct hc_ml *ml);
void hc_ml_on_ack(struct hc_ml *ml, const struct hc_gossip_ack *ack);
void hc_ml_on_nack(struct hc_ml *ml, const struct hc_gossip_nack *nack);
void hc_ml_on_indirect_ping(struct hc_ml *ml, const struct hc_gossip_indirect_ping *ind,
			    const struct hc_gossip_addr *from);
void hc_ml_on_ping(struct hc_ml *ml, const struct hc_gossip_ping *ping,
		   const struct hc_gossip_addr *from);
size_t hc_ml_random_nodes(struct hc_ml *ml, size_t k, bool (*skip)(struct hc_ml *,
								   const struct node *, const void *),
			  const void *ctx, struct node **out);
bool hc_ml_skip_for_indirect(struct hc_ml *ml, const struct node *n, const void *target);
int64_t hc_ml_probe_tick(struct hc_loop *loop, uint64_t id, void *arg);
int64_t hc_ml_gossip_tick(struct hc_loop *loop, uint64_t id, void *arg);

/* ---- memberlist_stream.c ---- */

int hc_ml_stream_send(struct hc_ml *ml, const struct hc_gossip_addr *to, const uint8_t *msg,
		      size_t len, hc_gossip_stream_done_fn *done, void *arg);
void hc_ml_tcp_ping_done(void *arg, int err, const uint8_t *buf, size_t len);
int64_t hc_ml_push_pull_tick(struct hc_loop *loop, uint64_t id, void *arg);

#endif /* HC_GOSSIP_MEMBERLIST_ENGINE_INT_H */
