/*
 * Where a spawn is while its call has not returned: the call runs on a
 * thread of its own while this one asks, four times a second, the runtime
 * (local spawn) or each node's GET /spawn/progress (cluster spawn, at most
 * HC_CLI_WATCH_NODES nodes per look) and draws it with cli/progress.c.
 * After a cluster spawn, the nodes' /list say which of them know the
 * workload's state yet (their routes follow it).
 */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.pb-c.h"
#include "runtime/runtime.h"

#define LOOK_EVERY_MS 250
#define LOOK_TIMEOUT_MS 1000
#define ROUTED_WAIT_MS 10000

struct watch {
	void *(*call)(void *);
	void *arg;
	atomic_bool done;
};

static void *run_call(void *arg)
{
	struct watch *w = arg;

	w->call(w->arg);
	atomic_store(&w->done, true);
	return NULL;
}

static void sleep_ms(long ms)
{
	struct timespec d = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&d, NULL);
}

int hc_cli_watch(struct hc_cli_progress *pr, void *(*call)(void *), void *arg,
		 void (*look)(void *, struct hc_cli_progress *), void *look_arg)
{
	struct watch w = { .call = call, .arg = arg };
	pthread_t t;

	if (!pr || pthread_create(&t, NULL, run_call, &w) != 0) {
		call(arg); /* no display, or no thread for it: just the call */
		return 0;
	}
	while (!atomic_load(&w.done)) {
		look(look_arg, pr);
		for (int i = 0; i < LOOK_EVERY_MS / 25 && !atomic_load(&w.done); i++)
			sleep_ms(25);
	}
	pthread_join(t, NULL);
	look(look_arg, pr); /* how it ended: its final phase times */
	return 0;
}

/* ---- local: the runtime object the spawn runs through ---- */

void hc_cli_look_local(void *rt, struct hc_cli_progress *pr)
{
	struct hc_runtime_progress p;

	if (hc_runtime_progress(rt, NULL, LOOK_TIMEOUT_MS, &p) < 0)
		return;
	hc_cli_progress_show(pr, &p, NULL);
	hc_runtime_progress_fini(&p);
}

/* ---- cluster: the nodes' HTTP APIs ---- */

int hc_cli_watch_nodes_of(struct hc_cli_watch_nodes *wn, const void *list_resp)
{
	const Cluster__Services__Api__NodesStateResponse *list = list_resp;

	wn->n = 0;
	for (size_t i = 0; list && i < list->n_states && wn->n < HC_CLI_WATCH_NODES; i++) {
		const Cluster__Services__Api__NodeStateResponse *st = list->states[i];
		const char *addr = st->node_addr && *st->node_addr ? st->node_addr
				   : st->node ? st->node->ip : NULL;
		struct hc_cli_watch_node *n = &wn->nodes[wn->n];

		if (!addr || !*addr)
			continue;
		snprintf(n->host, sizeof(n->host), strchr(addr, ':') ? "[%s]:%u" : "%s:%u", addr,
			 st->http_port ? st->http_port : 8001);
		snprintf(n->name, sizeof(n->name), "%s", st->node && st->node->id ? st->node->id : addr);
		wn->n++;
	}
	return (int)wn->n;
}

/* GET path from one node: the "response" member (json_decref *doc) or NULL. */
static json_t *node_get(const struct hc_cli_watch_node *n, const char *path, json_t **doc)
{
	struct hc_err err;
	char *body = NULL;
	size_t len = 0;
	int status = 0;

	*doc = NULL;
	if (hc_cli_http(n->host, "GET", path, NULL, 0, LOOK_TIMEOUT_MS, &status, &body, &len,
			&err) < 0)
		return NULL;
	if (status == 200)
		*doc = json_loadb(body, len, 0, NULL);
	free(body);
	return json_object_get(*doc, "response");
}

/* The spawn of a /spawn/progress answer to show: id's, or without one the
 * first still running (those that ended stay listed a while). */
static json_t *pick(json_t *spawns, const char *id)
{
	json_t *s;
	size_t i;

	json_array_foreach(spawns, i, s) {
		const char *sid = json_string_value(json_object_get(s, "id"));

		if (id ? sid && strcmp(sid, id) == 0 : !json_is_true(json_object_get(s, "done")))
			return s;
	}
	return NULL;
}

/* A node's /spawn/progress answer as the runtime's struct (fini it), with
 * the one spawn pick() chose. */
static int progress_of(json_t *o, const char *id, struct hc_runtime_progress *p)
{
	json_t *s = pick(json_object_get(o, "spawns"), id), *pulls, *g;
	size_t i;

	memset(p, 0, sizeof(*p));
	if (s) {
		json_t *ms = json_object_get(s, "phase_ms");
		const char *phase = json_string_value(json_object_get(s, "phase"));

		p->spawns = calloc(1, sizeof(*p->spawns));
		if (!p->spawns)
			return -ENOMEM;
		p->nspawns = 1;
		for (int k = 0; k < HC_SPAWN_PHASES; k++) {
			p->spawns[0].phase_ms[k] = (uint64_t)json_integer_value(
				json_object_get(ms, hc_spawn_phase_name(k)));
			if (phase && strcmp(phase, hc_spawn_phase_name(k)) == 0)
				p->spawns[0].phase = k;
		}
		p->spawns[0].done = json_is_true(json_object_get(s, "done"));
		p->spawns[0].pulled = json_is_true(json_object_get(s, "pulled"));
	}
	pulls = json_object_get(o, "pulls");
	p->ingests_known = json_is_true(json_object_get(o, "pulls_known"));
	if (json_array_size(pulls)) {
		p->ingests = calloc(json_array_size(pulls), sizeof(*p->ingests));
		if (!p->ingests) {
			hc_runtime_progress_fini(p);
			return -ENOMEM;
		}
	}
	json_array_foreach(pulls, i, g) {
		struct hc_pull_ingest *in = &p->ingests[p->ningests++];
		const char *ref = json_string_value(json_object_get(g, "ref"));

		snprintf(in->ref, sizeof(in->ref), "%s", ref ? ref : "");
		in->offset = json_integer_value(json_object_get(g, "offset"));
		in->total = json_integer_value(json_object_get(g, "total"));
	}
	return 0;
}

void hc_cli_look_nodes(void *arg, struct hc_cli_progress *pr)
{
	struct hc_cli_watch_nodes *wn = arg;
	char path[96] = "/spawn/progress";

	if (wn->id && hc_cli_url_param(path, sizeof(path), "id", wn->id) < 0)
		return;
	for (size_t i = 0; i < wn->n; i++) {
		struct hc_runtime_progress p;
		json_t *doc, *o = node_get(&wn->nodes[i], path, &doc);
		bool found = false;

		if (o && progress_of(o, wn->id, &p) == 0) {
			found = p.nspawns > 0;
			if (found)
				hc_cli_progress_show(pr, &p, wn->nodes[i].name);
			hc_runtime_progress_fini(&p);
		}
		json_decref(doc);
		if (found)
			return;
	}
	hc_cli_progress_show(pr, NULL, NULL); /* not started anywhere yet: placing */
}

/* Whether a node's /list holds workload id in any state it knows. */
static bool node_knows(const struct hc_cli_watch_node *n, const char *id)
{
	json_t *doc, *list = node_get(n, "/list", &doc), *st, *w;
	size_t i, k;
	bool found = false;

	json_array_foreach(json_object_get(list, "states"), i, st)
		json_array_foreach(json_object_get(st, "workloads"), k, w)
			found |= json_is_string(json_object_get(w, "id")) &&
				 strcmp(json_string_value(json_object_get(w, "id")), id) == 0;
	json_decref(doc);
	return found;
}

void hc_cli_watch_routed(struct hc_cli_progress *pr, const struct hc_cli_watch_nodes *wn,
			 const char *id)
{
	char detail[64];
	size_t known = 0;

	if (!pr || wn->n == 0)
		return;
	for (int waited = 0; waited <= ROUTED_WAIT_MS; waited += LOOK_EVERY_MS) {
		known = 0;
		for (size_t i = 0; i < wn->n; i++)
			known += node_knows(&wn->nodes[i], id);
		if (known == wn->n)
			break;
		snprintf(detail, sizeof(detail), "on %zu of %zu nodes", known, wn->n);
		fprintf(stderr, "\r\033[K  %-10s %6s    %s", "routing", "", detail);
		sleep_ms(LOOK_EVERY_MS);
	}
	snprintf(detail, sizeof(detail), "on %zu of %zu nodes", known, wn->n);
	hc_cli_progress_step(pr, "routed", detail);
}
