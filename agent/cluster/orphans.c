/* Workloads of failed nodes, kept by every node until they are seen running
 * again. The node that respawns one is a choice over the alive nodes at the
 * moment of the failure; when that node fails too before it has respawned
 * it (a partition takes several nodes one after another), or its respawn
 * fails, the workload would otherwise be lost for good: the failed node's
 * state is forgotten with it. Here the choice is made again whenever the
 * members change, and a respawn that shows no result is tried again. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HC_LOG_MODULE "cluster"
#include "cluster/cluster_int.h"
#include "log/log.h"

#define ORPHANS_MAX 100000
/* A respawn tries placement candidates one after another (the real spawn
 * query waits up to 90 s for each): one that has not shown the workload
 * running within this time is tried again. */
#define RESPAWN_RETRY_MS 120000
/* After this, a workload nobody could respawn is given up (logged). */
#define ORPHAN_KEEP_MS (30 * 60 * 1000)
#define CHECK_EVERY_MS 2000

struct orphan {
	hc_pb_workload *w; /* a copy: the failed node's state is freed */
	char *dead;	   /* the node it last ran on */
	uint64_t since_ms, respawned_ms; /* loop time; respawned 0: not yet by us */
};

static void orphan_fini(struct orphan *o)
{
	hc_cluster_pb_free(o->w);
	free(o->dead);
}

static void orphan_remove(struct hc_cluster *c, size_t i)
{
	orphan_fini(&c->orphans[i]);
	memmove(&c->orphans[i], &c->orphans[i + 1], (c->norphans - i - 1) * sizeof(*c->orphans));
	c->norphans--;
}

bool hc_cluster_orphans_add(struct hc_cluster *c, const hc_pb_workload *w, const char *dead)
{
	struct orphan o = { .since_ms = hc_loop_now_ms(c->loop) }, *grown;

	o.w = hc_cluster_pb_clone(&w->base);
	o.dead = strdup(dead);
	if (!o.w || !o.dead || c->norphans >= ORPHANS_MAX) {
		orphan_fini(&o);
		return false;
	}
	/* one that failed again on its new node: the newest copy counts */
	for (size_t i = 0; i < c->norphans; i++)
		if (strcmp(c->orphans[i].w->id, w->id) == 0) {
			orphan_fini(&c->orphans[i]);
			c->orphans[i] = o;
			return true;
		}
	grown = realloc(c->orphans, (c->norphans + 1) * sizeof(*grown));
	if (!grown) {
		orphan_fini(&o);
		return false;
	}
	c->orphans = grown;
	c->orphans[c->norphans++] = o;
	c->last_orphan_check_ms = 0; /* act on it at once */
	return true;
}

void hc_cluster_orphans_check(struct hc_cluster *c)
{
	uint64_t now = hc_loop_now_ms(c->loop);

	if (!c->norphans || (c->last_orphan_check_ms &&
			     now - c->last_orphan_check_ms < CHECK_EVERY_MS))
		return;
	c->last_orphan_check_ms = now;
	for (size_t i = 0; i < c->norphans;) {
		struct orphan *o = &c->orphans[i];

		/* running somewhere (its old node back with it, or respawned) */
		if (hc_cluster_state_owner(c, o->w->id)) {
			orphan_remove(c, i);
			continue;
		}
		if (now - o->since_ms > ORPHAN_KEEP_MS) {
			hc_log(HC_LOG_WARN, "workload %s of failed node %s not respawned in %d min: "
			       "given up", o->w->id, o->dead, ORPHAN_KEEP_MS / 60000);
			orphan_remove(c, i);
			continue;
		}
		if ((!o->respawned_ms || now - o->respawned_ms > RESPAWN_RETRY_MS) &&
		    hc_cluster_we_respawn(c, o->w->id, o->dead)) {
			if (o->respawned_ms)
				hc_log(HC_LOG_WARN, "workload %s of failed node %s still runs nowhere: "
				       "respawning it again", o->w->id, o->dead);
			o->respawned_ms = now ? now : 1;
			c->report(c, &(struct hc_cluster_report){ .kind = HC_CLUSTER_REPORT_ORPHANED,
								  .node = o->dead, .w = o->w });
		}
		i++;
	}
}

size_t hc_cluster_orphans_count(const struct hc_cluster *c)
{
	return c->norphans;
}

void hc_cluster_orphans_fini(struct hc_cluster *c)
{
	for (size_t i = 0; i < c->norphans; i++)
		orphan_fini(&c->orphans[i]);
	free(c->orphans);
	c->orphans = NULL;
	c->norphans = 0;
}
