/*
 * A simulated network and clock for gossip tests and benchmarks (after
 * Tarantool's swim fakenet/fakeev): node i at 10.a.b.c:7946 with a.b.c =
 * i + 1 (10.0.0.<i+1> for the first 254), packets and stream hops take 1 ms,
 * and links can drop, partition, crash or be slow. Deterministic; no
 * sockets. Costs O(1) per packet, so 1,000 nodes run in one process.
 */
#ifndef HC_TEST_SIMNET_H
#define HC_TEST_SIMNET_H

#include <stdbool.h>
#include <stdint.h>

#include "gossip/transport_int.h"

struct hc_simnet;

struct hc_simnet *hc_simnet_new(int nodes, uint64_t seed);
/* Streams still in flight complete with -ECANCELED first. */
void hc_simnet_free(struct hc_simnet *net);
struct hc_loop *hc_simnet_loop(struct hc_simnet *net);

/* Node i's address and the transport to give its engine. */
const struct hc_gossip_addr *hc_simnet_addr(struct hc_simnet *net, int i);
extern const struct hc_gossip_transport_ops hc_simnet_ops;
void *hc_simnet_ctx(struct hc_simnet *net, int i);
/* Where traffic to node i goes; NULL: nothing listens (streams refused). */
void hc_simnet_attach(struct hc_simnet *net, int i, const struct hc_gossip_receiver *recv);

void hc_simnet_set_down(struct hc_simnet *net, int i, bool down);
bool hc_simnet_is_down(struct hc_simnet *net, int i);
/* 0, or -ENOMEM the first time (the n x n matrix is made on first use). */
int hc_simnet_block(struct hc_simnet *net, int from, int to, bool blocked);
/* Each packet (not stream) is lost with this probability, independently. */
void hc_simnet_set_loss(struct hc_simnet *net, unsigned percent);
/* Packets to node i wait this much longer before it sees them, and its
 * stream exchanges (either way) complete that much later, as on a node too
 * busy to read its sockets (Lifeguard's "slow message processing"). */
void hc_simnet_set_delay(struct hc_simnet *net, int i, uint32_t ms);

/* What node i put on and took off the simulated wire: datagrams (counted
 * when sent, also those the network then lost; received only if delivered)
 * and stream bytes (requests and replies). */
struct hc_simnet_traffic {
	uint64_t packets_out, packets_in, bytes_out, bytes_in;
	uint64_t stream_bytes_out, stream_bytes_in;
};
const struct hc_simnet_traffic *hc_simnet_traffic(const struct hc_simnet *net, int i);

/* Advances the clock 1 ms at a time, running everything due. */
void hc_simnet_run_ms(struct hc_simnet *net, uint64_t ms);
/* Runs until pred(ctx) holds (checked every 10 ms) or limit_ms passes;
 * returns the simulated ms it took, or -1. */
int64_t hc_simnet_run_until(struct hc_simnet *net, bool (*pred)(const void *ctx),
			    const void *ctx, uint64_t limit_ms);

#endif /* HC_TEST_SIMNET_H */
