/*
 * Who may call the APIs: bearer tokens checked on every request of both
 * APIs, refusals counted and logged (with a limit, so a scanner cannot
 * flood the log), and lists with env values redacted for those who may not
 * see them.
 */
#include "api/api_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HC_LOG_MODULE "api"
#include "cluster/cluster.h"
#include "log/log.h"
#include "loop/loop.h"
#include "metrics/metrics.h"

#define REFUSAL_LOG_WINDOW_MS 10000
#define REFUSAL_LOG_MAX 5 /* lines per window */
#define REDACTED "<redacted>"

static const char *const kind_names[HC_API_NKINDS] = { "http", "grpc" };
static const char *const refusal_names[HC_API_NREFUSALS] = { "no_token", "bad_token",
							     "read_only" };

static void log_refusal(struct hc_api *api, enum hc_api_kind kind, enum hc_api_refusal why,
			const char *what, const char *peer)
{
	struct hc_api_log_limit *l = &api->refusal_log;
	uint64_t now = hc_loop_now_ms(api->loop);

	if (now - l->window_start_ms >= REFUSAL_LOG_WINDOW_MS) {
		if (l->suppressed)
			hc_log(HC_LOG_WARN, "%llu more API requests refused in the last window "
					    "(not logged one by one)",
			       (unsigned long long)l->suppressed);
		l->window_start_ms = now;
		l->logged = 0;
		l->suppressed = 0;
	}
	if (l->logged == REFUSAL_LOG_MAX) {
		l->suppressed++;
		return;
	}
	l->logged++;
	hc_log(HC_LOG_WARN, "refused %s %s from %s: %s", kind_names[kind], what, peer,
	       why == HC_API_NO_TOKEN	 ? "no bearer token"
	       : why == HC_API_BAD_TOKEN ? "a token this node does not accept"
					 : "a read-only token may not change anything");
}

enum hc_auth_role hc_api_role(const struct hc_api *api, const char *authorization)
{
	char token[HC_AUTH_TOKEN_MAX + 1];
	enum hc_auth_role role;

	if (!api->auth)
		return HC_AUTH_ADMIN;
	role = hc_auth_check(api->auth, hc_auth_bearer(authorization, token));
	explicit_bzero(token, sizeof(token));
	return role;
}

enum hc_api_refusal hc_api_authorize(struct hc_api *api, enum hc_api_kind kind,
				     const char *authorization, enum hc_auth_role need,
				     const char *what, const char *peer)
{
	enum hc_auth_role role = hc_api_role(api, authorization);
	enum hc_api_refusal why;

	if (role >= need)
		return HC_API_NREFUSALS;
	if (role == HC_AUTH_READ_ONLY)
		why = HC_API_READ_ONLY;
	else
		why = authorization && *authorization ? HC_API_BAD_TOKEN : HC_API_NO_TOKEN;
	api->refusals[kind][why]++;
	log_refusal(api, kind, why, what, peer);
	return why;
}

void hc_api_set_auth(struct hc_api *api, struct hc_auth *auth)
{
	hc_auth_free(api->auth);
	api->auth = auth;
}

void hc_api_auth_collect(struct hc_metrics_writer *w, void *arg)
{
	const struct hc_api *api = arg;

	hc_metrics_family(w, "hypercore_api_auth_refusals_total", "counter",
			  "API requests refused for their token, by API and reason.");
	for (int k = 0; k < HC_API_NKINDS; k++)
		for (int r = 0; r < HC_API_NREFUSALS; r++) {
			const char *labels[] = { "api", kind_names[k], "reason", refusal_names[r],
						 NULL };

			hc_metrics_sample(w, "hypercore_api_auth_refusals_total", labels,
					  (double)api->refusals[k][r]);
		}
	hc_metrics_family(w, "hypercore_api_auth_enabled", "gauge",
			  "1 when the APIs want a bearer token, 0 with --api-auth none.");
	hc_metrics_sample(w, "hypercore_api_auth_enabled", NULL, api->auth ? 1 : 0);
}

/* ---- lists without secrets ---- */

/* "NAME=value" becomes "NAME=<redacted>" (a value-less entry stays). */
static int redact_env(char **entry)
{
	const char *eq = strchr(*entry, '=');
	size_t name_len;
	char *red;

	if (!eq)
		return 0;
	name_len = (size_t)(eq - *entry) + 1;
	red = malloc(name_len + sizeof(REDACTED));
	if (!red)
		return -ENOMEM;
	memcpy(red, *entry, name_len);
	memcpy(red + name_len, REDACTED, sizeof(REDACTED));
	explicit_bzero(*entry, strlen(*entry));
	free(*entry);
	*entry = red;
	return 0;
}

static int redact_list(Cluster__Services__Api__NodesStateResponse *list)
{
	for (size_t i = 0; i < list->n_states; i++) {
		Cluster__Services__Api__NodeStateResponse *st = list->states[i];

		for (size_t j = 0; j < st->n_workloads; j++) {
			Cluster__Services__Api__VmSpawnRequest *rq = st->workloads[j]->source_request;

			for (size_t k = 0; rq && k < rq->n_env; k++)
				if (redact_env(&rq->env[k]) < 0)
					return -ENOMEM;
		}
	}
	return 0;
}

/* The cluster lends its workloads to the list it builds; a packed and
 * unpacked copy is ours to change. */
Cluster__Services__Api__NodesStateResponse *hc_api_list(struct hc_api *api, bool show_env)
{
	Cluster__Services__Api__NodesStateResponse *lent = hc_cluster_list(api->cluster), *own;
	uint8_t *buf;
	size_t len;

	if (!lent)
		return NULL;
	len = cluster__services__api__nodes_state_response__get_packed_size(lent);
	buf = malloc(len ? len : 1);
	if (buf)
		cluster__services__api__nodes_state_response__pack(lent, buf);
	hc_cluster_list_free(lent);
	if (!buf)
		return NULL;
	own = cluster__services__api__nodes_state_response__unpack(NULL, len, buf);
	explicit_bzero(buf, len);
	free(buf);
	if (own && !show_env && redact_list(own) < 0) {
		cluster__services__api__nodes_state_response__free_unpacked(own, NULL);
		return NULL;
	}
	return own;
}
