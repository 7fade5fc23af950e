/* Private to agent/gossip: serf-layer internals shared with tests. */
#ifndef HC_GOSSIP_SERF_INT_H
#define HC_GOSSIP_SERF_INT_H

#include <stdint.h>

#include "addr/addr.h"
#include "gossip/gossip.h"
#include "gossip/gossip_int.h"
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
					       void *ops_ctx, char *err, size_t errlen);
/* The engine underneath, for transports that deliver into it. */
struct hc_ml *hc_gossip_memberlist(struct hc_gossip *g);
void hc_gossip_stats(const struct hc_gossip *g, struct hc_serf_stats *st);

/* Conversions between socket addresses and memberlist's raw form
 * (IPv4-mapped IPv6 becomes 4 bytes). Return 0 or -EAFNOSUPPORT. */
int hc_gossip_addr_from_sockaddr(const struct hc_addr *in, struct hc_gossip_addr *out);
int hc_gossip_addr_to_sockaddr(const struct hc_gossip_addr *in, struct hc_addr *out);
void hc_gossip_addr_set_port(struct hc_addr *a, uint16_t port);

#endif /* HC_GOSSIP_SERF_INT_H */
