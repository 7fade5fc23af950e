/* GET /spawn/progress: what this node's spawns in flight are doing, and its
 * image downloads, so a client whose Spawn call is still running can show
 * progress (the CLI polls it on every node). Answered on the loop thread
 * with one short call to containerd's content service; a content service
 * that failed is left alone for a while so a hung containerd cannot stall
 * the loop on every poll. */
#include "api/api_int.h"
#include "api/http_int.h"
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <time.h>
#include "base/base.h"
#include "runtime/runtime.h"

#define INGESTS_TIMEOUT_MS 200
#define INGESTS_RETRY_MS 5000

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static json_t *spawn_json(const struct hc_spawn_progress *s)
{
	json_t *o = json_object(), *ms = json_object();

	if (!o || !ms) {
		json_decref(o);
		json_decref(ms);
		return NULL;
	}
	for (int p = 0; p <= (int)s->phase && p < HC_SPAWN_PHASES; p++)
		json_object_set_new(ms, hc_spawn_phase_name(p), json_integer((json_int_t)s->phase_ms[p]));
	json_object_set_new(o, "id", json_string(s->id));
	json_object_set_new(o, "phase", json_string(hc_spawn_phase_name(s->phase)));
	json_object_set_new(o, "phase_ms", ms);
	json_object_set_new(o, "done", json_boolean(s->done));
	json_object_set_new(o, "pulled", json_boolean(s->pulled));
	return o;
}

static json_t *ingest_json(const struct hc_pull_ingest *g)
{
	return json_pack("{s:s, s:I, s:I}", "ref", g->ref, "offset", (json_int_t)g->offset,
			 "total", (json_int_t)g->total);
}

static json_t *progress_json(const struct hc_runtime_progress *p, bool runtime)
{
	json_t *o = json_object(), *spawns = json_array(), *pulls = json_array();
	bool ok = o && spawns && pulls;

	for (size_t i = 0; ok && i < p->nspawns; i++)
		ok = json_array_append_new(spawns, spawn_json(&p->spawns[i])) == 0;
	for (size_t i = 0; ok && i < p->ningests; i++)
		ok = json_array_append_new(pulls, ingest_json(&p->ingests[i])) == 0;
	if (!ok) {
		json_decref(o);
		json_decref(spawns);
		json_decref(pulls);
		return NULL;
	}
	json_object_set_new(o, "runtime", json_boolean(runtime));
	json_object_set_new(o, "spawns", spawns);
	json_object_set_new(o, "pulls", pulls);
	json_object_set_new(o, "pulls_known", json_boolean(p->ingests_known));
	return o;
}

enum MHD_Result hc_http_get_spawn_progress(struct hc_http *h, struct MHD_Connection *conn)
{
	struct hc_api *api = h->api;
	const char *id = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "id");
	struct hc_runtime_progress p = { 0 };
	uint64_t now = now_ms();
	json_t *o;

	if (id && *id && !hc_uuid_valid(id))
		return hc_http_send_error(h, conn, ROUTE_SPAWN_PROGRESS, 400,
					  "invalid workload id (want a UUID)");
	if (api->runtime) {
		bool ask = now >= api->ingests_retry_ms;

		if (hc_runtime_progress(api->runtime, id && *id ? id : NULL,
					ask ? INGESTS_TIMEOUT_MS : 0, &p) < 0)
			return hc_http_send_error(h, conn, ROUTE_SPAWN_PROGRESS, 500, "out of memory");
		if (ask && !p.ingests_known)
			api->ingests_retry_ms = now + INGESTS_RETRY_MS;
	}
	o = progress_json(&p, api->runtime != NULL);
	hc_runtime_progress_fini(&p);
	if (!o)
		return hc_http_send_error(h, conn, ROUTE_SPAWN_PROGRESS, 500, "out of memory");
	return hc_http_send_json(h, conn, ROUTE_SPAWN_PROGRESS, MHD_HTTP_OK, "response", o);
}
