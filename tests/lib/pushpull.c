/* What a gossip node's push/pull sends, decoded (pushpull.h). */
#include "pushpull.h"

#include "gossip/memberlist_int.h"
#include "gossip/serf_int.h"

int hc_test_push_pull(struct hc_gossip *g, struct hc_test_push_pull *t)
{
	struct hc_ml_delegate d = hc_serf_delegate(g);
	int r;

	hc_gossip_mp_writer_init(&t->w, 0);
	d.local_state(d.arg, false, &t->w);
	r = hc_gossip_serf_push_pull_decode(t->w.buf, t->w.len, &t->pp);
	if (r < 0)
		hc_gossip_mp_writer_fini(&t->w);
	return r;
}

void hc_test_push_pull_fini(struct hc_test_push_pull *t)
{
	hc_gossip_serf_push_pull_fini(&t->pp);
	hc_gossip_mp_writer_fini(&t->w);
}
