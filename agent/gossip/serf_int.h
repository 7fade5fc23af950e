/* Private to agent/gossip: serf-layer internals shared with tests. */
#ifndef HC_GOSSIP_SERF_INT_H
#define HC_GOSSIP_SERF_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr/addr.h"
#include "gossip/gossip.h"
#include "gossip/index_int.h"
#include "gossip/wire_int.h"
#include "gossip/memberlist_int.h"
#include "gossip/transport_int.h"

#define HC_SERF_MSG_TYPES 10

struct hc_serf_stats {
	uint64_t msgs_in[HC_SERF_MSG_TYPES];
	uint64_t dropped[HC_GOSSIP_DROP_COUNT];
	uint64_t events_delivered, events_duplicate, events_too_old;
	uint64_t queries_sent, queries_delivered, queries_too_old;
	uint64_t member_events;
	size_t open_queries;   /* received queries still answerable */
	size_t recent_intents; /* intents about nodes not (yet) members */
};

/* hc_gossip_new over any transport (the tests' simulated network), with
 * advertise as our address. */
struct hc_gossip *hc_gossip_new_with_transport(struct hc_loop *loop,
					       const struct hc_gossip_config *cfg,
					       const struct hc_gossip_addr *advertise,
					       const struct hc_gossip_transport_ops *ops,
					       void *ops_ctx, struct hc_err *err);
/* The engine underneath, for transports that deliver into it. */
struct hc_ml *hc_gossip_memberlist(struct hc_gossip *g);
void hc_gossip_stats(const struct hc_gossip *g, struct hc_serf_stats *st);

/* Conversions between socket addresses and memberlist's raw form
 * (IPv4-mapped IPv6 becomes 4 bytes). Return 0 or -EAFNOSUPPORT. */
int hc_gossip_addr_from_sockaddr(const struct hc_addr *in, struct hc_gossip_addr *out);
int hc_gossip_addr_to_sockaddr(const struct hc_gossip_addr *in, struct hc_addr *out);
void hc_gossip_addr_set_port(struct hc_addr *a, uint16_t port);

#define RING 512               /* EventBuffer and QueryBuffer, in Lamport slots */
#define RTT_WINDOW 16
/* Bounds on what peers can make us hold: intents about nodes we do not know
 * (kept 5 min), and events and query ids that share one Lamport time
 * (legitimately a few). */
#define MAX_INTENTS 4096
#define MAX_PER_LTIME 256

struct rtt_window {
	int64_t samples[RTT_WINDOW];
	unsigned n, next;
	uint64_t probes, failures;
};

struct member {
	char *name;
	size_t name_len; /* member_ix's key is name[0..name_len) */
	struct hc_gossip_addr addr;
	struct hc_gossip_kv *tags; /* owned strings */
	size_t ntags;
	enum hc_gossip_status status;
	uint64_t status_ltime;
	uint64_t leave_ms; /* when it became failed or left */
	uint8_t vsn[6];
	struct rtt_window rtt;
};

struct intent {
	char *node;
	uint64_t ltime;
	bool leave;
	uint64_t when_ms;
};

struct user_event {
	uint8_t *name, *payload;
	size_t name_len, payload_len;
};

/* One Lamport time of the event ring. Its events are allocated to size
 * and freed when the slot is taken for a newer time: a slot that kept its
 * storage instead held the largest it ever needed (several events at one
 * time), and the ring's size crept up over an hour by a megabyte. */
struct event_slot {
	bool used;
	uint64_t ltime;
	struct user_event *events;
	size_t n;
};

struct query_slot {
	bool used;
	uint64_t ltime;
	uint32_t *ids;
	size_t n;
};

/* Names, NUL-terminated, back to back: in the inline buffer while they
 * fit (a few nodes' answers), else on the heap. */
struct name_set {
	char *buf;
	size_t len, cap;
	char inline_buf[120];
};

/* A query we sent: collects acks and responses until its deadline (one
 * allocation while few answer: it lives as long as the query). */
struct out_query {
	struct out_query *next;
	struct hc_gossip *g;
	uint64_t ltime;
	uint32_t id;
	struct name_set acked, responded; /* to report each once */
	uint64_t timer;
	hc_gossip_response_fn *on_response;
	void (*done)(void *arg);
	void *arg;
};

/* A query delivered to us, answerable until its deadline. */
struct in_query {
	struct in_query *next;
	struct hc_gossip *g;
	uint64_t handle;
	uint64_t ltime;
	uint32_t id;
	struct hc_gossip_addr origin;
	uint8_t relay_factor;
	bool answered;
	uint64_t timer;
};

enum serf_state { SERF_ALIVE, SERF_LEAVING, SERF_LEFT };

/* The net is bound before the engine exists (we need its port to
 * advertise), so it delivers through this, which learns the engine later. */
struct net_bridge {
	struct hc_gossip_receiver recv;
	struct hc_ml *ml;
};

struct hc_gossip {
	struct hc_loop *loop;
	struct hc_gossip_config cfg;
	char *name;
	struct hc_gossip_kv *tags;
	size_t ntags;
	char *keyring_file;

	struct hc_gossip_net *net;
	struct net_bridge *bridge;
	struct hc_ml *ml;
	struct hc_gossip_keyring *keyring;
	uint8_t meta[512];
	size_t meta_len;

	uint64_t clock, event_clock, query_clock; /* Lamport, serf semantics */
	uint64_t event_min_time;
	bool join_ignore_old; /* while a join that ignores old events runs */

	struct member **members;
	size_t nmembers, capmembers;
	struct hc_gossip_index member_ix; /* members by name */
	struct intent *intents;
	size_t nintents, capintents;
	struct event_slot events[RING];
	struct query_slot queries[RING];
	struct hc_gossip_bcast_queue *intent_q, *event_q, *query_q;
	struct out_query *out_queries;
	struct in_query *in_queries; /* newest first */
	size_t nin_queries;
	uint64_t next_handle;

	enum serf_state state;
	uint64_t reap_timer, reconnect_timer, queue_timer, leave_timer;

	/* Coalescing (cfg.coalesce_ms > 0): the latest member event per member
	 * and the newest coalescable user event per name, delivered together
	 * when the period ends or events stop for a third of it. */
	struct pending_member {
		char *name;
		enum hc_gossip_event_type type;
	} *pending_members;
	size_t npending_members;
	struct pending_event {
		char *name;
		uint8_t *payload;
		size_t len;
		uint64_t ltime;
	} *pending_events;
	size_t npending_events;
	uint64_t coalesce_timer, quiescent_timer;
	void (*leave_done)(void *arg);
	void *leave_arg;

	uint64_t rng;
	struct hc_serf_stats st;
};

/* ---- serf.c ---- */

uint64_t hc_serf_rnd(struct hc_gossip *g);
uint64_t hc_serf_now_ms(const struct hc_gossip *g);
void hc_serf_witness(uint64_t *clock, uint64_t v);
bool hc_serf_bytes_eq_str(struct hc_gossip_bytes b, const char *s);
char *hc_serf_bytes_dup(struct hc_gossip_bytes b);
void hc_serf_format_addr(const struct hc_gossip_addr *a, char *buf, size_t len);
unsigned hc_serf_retransmit_limit(const struct hc_gossip *g);
int hc_serf_encode(const struct hc_gossip_serf_msg *m, struct hc_gossip_mp_writer *w);
int hc_serf_queue_raw(struct hc_gossip *g, struct hc_gossip_bcast_queue *q, const uint8_t *msg,
		      size_t len, hc_gossip_bcast_done_fn *done, void *arg);
int hc_serf_queue_msg(struct hc_gossip *g, struct hc_gossip_bcast_queue *q,
		      const struct hc_gossip_serf_msg *m, hc_gossip_bcast_done_fn *done, void *arg);
int hc_serf_send_to(struct hc_gossip *g, const struct hc_gossip_addr *to, const uint8_t *msg,
		    size_t len);

/* ---- serf_members.c ---- */

struct member *hc_serf_find_member(const struct hc_gossip *g, const char *name, size_t len);
/* member_ix's key: the member's name. */
struct hc_gossip_bytes hc_serf_member_key(const void *item);
void hc_serf_tags_free(struct hc_gossip_kv *tags, size_t n);
void hc_serf_member_set_from_node(struct member *m, const struct hc_ml_node *n);
struct member *hc_serf_member_add(struct hc_gossip *g, const char *name);
void hc_serf_member_free(struct member *m);
void hc_serf_member_remove(struct hc_gossip *g, struct member *m);
void hc_serf_member_view(const struct member *m, struct hc_gossip_member *out);
struct intent *hc_serf_find_intent(struct hc_gossip *g, const char *node, size_t len);
void hc_serf_drop_intent(struct hc_gossip *g, size_t i);
bool hc_serf_handle_join_intent(struct hc_gossip *g, const struct hc_gossip_serf_intent *in);
bool hc_serf_handle_leave_intent(struct hc_gossip *g, const struct hc_gossip_serf_intent *in);
void hc_serf_broadcast_join(struct hc_gossip *g, uint64_t ltime);

/* ---- serf_events.c ---- */

void hc_serf_coalesce_flush(struct hc_gossip *g);
void hc_serf_emit_member(struct hc_gossip *g, enum hc_gossip_event_type type,
			 const struct member *m);
void hc_serf_event_slot_clear(struct event_slot *slot);
bool hc_serf_handle_user_event(struct hc_gossip *g, const struct hc_gossip_serf_user_event *e);
/* The events in the ring, all slots together. */
size_t hc_serf_ring_events(const struct hc_gossip *g);
/* Sets drop[i] for each event of the ring (in slot order, each slot's in
 * turn; drop has hc_serf_ring_events entries) that a newer one of the same
 * key supersedes (cfg.event_version); leaves the others. 0, or -ENOMEM with
 * nothing set. */
int hc_serf_ring_superseded(const struct hc_gossip *g, bool *drop);

/* ---- serf_query.c ---- */

void hc_serf_handle_query_response(struct hc_gossip *g,
				   const struct hc_gossip_serf_query_response *resp);
bool hc_serf_handle_query(struct hc_gossip *g, const struct hc_gossip_serf_query *q);
void hc_serf_in_query_free(struct hc_gossip *g, struct in_query **link);
int64_t hc_serf_out_query_expired(struct hc_loop *loop, uint64_t id, void *arg);

/* ---- serf_delegate.c ---- */

/* The hooks memberlist calls on the serf layer, with g as their arg. */
struct hc_ml_delegate hc_serf_delegate(struct hc_gossip *g);

#endif /* HC_GOSSIP_SERF_INT_H */
