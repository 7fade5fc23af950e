/*
 * Private to agent/gossip: how the protocol engine reaches the network. The
 * engine only sees this interface, so it runs unchanged over real sockets
 * (net.c) and over the simulated network of the unit tests.
 */
#ifndef HC_GOSSIP_TRANSPORT_INT_H
#define HC_GOSSIP_TRANSPORT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

struct hc_loop;
struct hc_addr;
struct hc_gossip_mp_writer;
struct hc_gossip_stream_scan;

/* A peer address as memberlist carries it: raw 4- or 16-byte IP and a port. */
struct hc_gossip_addr {
	uint8_t ip[16];
	uint8_t ip_len; /* 4 or 16 */
	uint16_t port;
};

/* Called with the reply of an outgoing stream, on the loop thread. err is
 * 0 (buf holds exactly what the peer sent until the message was complete),
 * -ETIMEDOUT, -ECONNREFUSED or another -errno (buf NULL). */
typedef void hc_gossip_stream_done_fn(void *arg, int err, const uint8_t *buf, size_t len);

/* Tells a stream reader whether buf holds one complete message: 1 yes,
 * 0 read more, <0 give up (malformed; -errno). */
typedef int hc_gossip_stream_complete_fn(void *arg, const uint8_t *buf, size_t len);

/* Engine -> network. */
struct hc_gossip_transport_ops {
	/* Sends one datagram, best effort: 0 or -errno; never blocks. */
	int (*send_packet)(void *ctx, const struct hc_gossip_addr *to, const uint8_t *buf,
			   size_t len);
	/*
	 * Connects to `to`, writes req, then reads until complete() says the
	 * reply is whole, and calls done() once, within timeout_ms in all
	 * cases (also when connecting hangs). Returns 0 if started (done will
	 * be called later, never from inside this call) or -errno.
	 */
	int (*stream_exchange)(void *ctx, const struct hc_gossip_addr *to, const uint8_t *req,
			       size_t len, uint32_t timeout_ms,
			       hc_gossip_stream_complete_fn *complete,
			       hc_gossip_stream_done_fn *done, void *arg);
};

/* Network -> engine. */
struct hc_gossip_receiver {
	/* A datagram arrived from `from` (raw bytes: maybe encrypted). */
	void (*on_packet)(void *arg, const struct hc_gossip_addr *from, const uint8_t *buf,
			  size_t len);
	/*
	 * Bytes read so far on an incoming stream. Returns -ENODATA to read
	 * more, 0 with the reply appended to reply (write it all, then close;
	 * an empty reply just closes), or another -errno to close at once.
	 * scan is the stream's own, zeroed when it opens, for the receiver
	 * to find the message's end incrementally (hc_gossip_stream_scan).
	 */
	int (*on_stream)(void *arg, const struct hc_gossip_addr *from,
			 struct hc_gossip_stream_scan *scan, const uint8_t *buf, size_t len,
			 struct hc_gossip_mp_writer *reply);
	void *arg;
};

/*
 * The real transport (net.c): one UDP socket and one TCP listener on the
 * same address and port, driven by the loop. Incoming streams are bounded in
 * size (HC_GOSSIP_STREAM_MAX), in time (tcp_timeout_ms from accept to the
 * last byte written) and in number (max_streams at once; more are closed).
 * All streams' read buffers and the replies to incoming ones share one
 * budget (stream_budget bytes): a stream whose buffer would take them over
 * it is closed (an exchange fails with -ENOBUFS), and counted.
 */
struct hc_gossip_net;

#define HC_GOSSIP_STREAM_BUDGET (64u * 1024 * 1024)

struct hc_gossip_net_config {
	uint32_t tcp_timeout_ms;
	unsigned max_streams;
	size_t stream_budget; /* 0: HC_GOSSIP_STREAM_BUDGET */
};

/* Binds both sockets (port 0: the kernel picks one free for both). Returns
 * NULL with a one-line reason in err. recv must outlive the net. */
struct hc_gossip_net *hc_gossip_net_new(struct hc_loop *loop, const struct hc_addr *bind,
					const struct hc_gossip_net_config *cfg,
					const struct hc_gossip_receiver *recv, struct hc_err *err);
/* Closes every socket; pending exchanges complete with -ECANCELED first. */
void hc_gossip_net_free(struct hc_gossip_net *net);
/* The bound port, and ops/ctx to hand to the engine. */
uint16_t hc_gossip_net_port(const struct hc_gossip_net *net);
extern const struct hc_gossip_transport_ops hc_gossip_net_ops;

struct hc_gossip_net_stats {
	uint64_t packets_in, packets_out, bytes_in, bytes_out;
	uint64_t truncated, send_errors;
	uint64_t streams_in, streams_out, streams_rejected, stream_timeouts, stream_errors;
	uint64_t over_budget;	/* streams closed: their buffer would go over the budget */
	size_t buffered, buffered_peak; /* bytes held against the budget, now and at most */
};
void hc_gossip_net_stats(const struct hc_gossip_net *net, struct hc_gossip_net_stats *st);

#endif /* HC_GOSSIP_TRANSPORT_INT_H */
