/* What a gossip node's push/pull sends (its serf part), decoded as a peer decodes it. */
#ifndef HC_TEST_PUSHPULL_H
#define HC_TEST_PUSHPULL_H

#include "gossip/gossip.h"
#include "gossip/msgpack_int.h"
#include "gossip/wire_int.h"

struct hc_test_push_pull {
	struct hc_gossip_mp_writer w;	 /* the bytes sent */
	struct hc_gossip_serf_push_pull pp; /* decoded; its byte spans point into w */
};

/* Encodes g's push/pull state as memberlist asks for it and decodes it.
 * 0 or -errno (then nothing to release); else release with
 * hc_test_push_pull_fini. */
int hc_test_push_pull(struct hc_gossip *g, struct hc_test_push_pull *t);
void hc_test_push_pull_fini(struct hc_test_push_pull *t);

#endif /* HC_TEST_PUSHPULL_H */
