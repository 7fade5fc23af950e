/* Private to agent/api: the pieces api.c composes. */
#ifndef HC_API_INT_H
#define HC_API_INT_H

#include "api/api.h"
#include "base/list.h"
#include "rpc/rpc.h"

#include <stdbool.h>
#include <stdint.h>

#include "auth/auth.h"
#include "cluster.pb-c.h"

struct hc_http;

#define HC_API_GRPC_METHODS 4

/* Which API a request came by, and why one was refused (metrics labels). */
enum hc_api_kind { HC_API_HTTP, HC_API_GRPC, HC_API_NKINDS };
enum hc_api_refusal {
	HC_API_NO_TOKEN,    /* 401: no bearer token */
	HC_API_BAD_TOKEN,   /* 401: not one this node accepts */
	HC_API_READ_ONLY,   /* 403: a read-only token asked to change something */
	HC_API_NREFUSALS,
};

/* Refusals are logged at most this many times per window; the next line
 * after a quiet window says how many were left out. */
struct hc_api_log_limit {
	uint64_t window_start_ms;
	unsigned logged;
	uint64_t suppressed;
};

struct hc_api {
	struct hc_loop *loop;
	struct hc_cluster *cluster;
	struct hc_metrics *metrics;
	struct hc_runtime *runtime; /* NULL without one (--no-runtime) */
	uint64_t ingests_retry_ms;  /* containerd's content service failed: not before */
	struct hc_rpc_server *grpc;
	struct hc_rpc_method grpc_methods[HC_API_GRPC_METHODS]; /* the server points here */
	struct hc_http *http;
	struct hc_list pending; /* gRPC calls waiting for cluster operations */
	struct hc_auth *auth;   /* NULL: no authentication */
	bool metrics_auth;
	uint64_t refusals[HC_API_NKINDS][HC_API_NREFUSALS];
	struct hc_api_log_limit refusal_log;
};

/* ---- authentication (api_auth.c) ---- */

/*
 * Whether the bearer of the Authorization value (HTTP header or gRPC
 * metadata; NULL if absent) may do what needs role; what and peer name the
 * request and its sender for the log. Returns HC_API_NREFUSALS when
 * allowed, else the refusal, counted and logged (rate-limited).
 */
enum hc_api_refusal hc_api_authorize(struct hc_api *api, enum hc_api_kind kind,
				     const char *authorization, enum hc_auth_role need,
				     const char *what, const char *peer);

/* The role of the Authorization value, not counted (for what a request may
 * see rather than whether it may run: env values in lists). */
enum hc_auth_role hc_api_role(const struct hc_api *api, const char *authorization);

/* The cluster's list as a caller may see it: env values shown only when
 * show_env, else "NAME=<redacted>". Owned: free with
 * cluster__services__api__nodes_state_response__free_unpacked(list, NULL).
 * NULL when out of memory. */
Cluster__Services__Api__NodesStateResponse *hc_api_list(struct hc_api *api, bool show_env);

/* Writes hypercore_api_auth_refusals_total (a metrics collector). */
void hc_api_auth_collect(struct hc_metrics_writer *w, void *api);

/* gRPC ClusterService (grpc_service.c). */
struct hc_rpc_server *hc_api_grpc_new(struct hc_api *api, const struct hc_addr *addr,
				      struct hc_err *err);

/* Cancels the cluster operations gRPC calls wait for (the server then
 * fails the calls as it stops). */
void hc_api_grpc_cancel_pending(struct hc_api *api);

/* HTTP API (http.c). listen_fd is taken over, also on failure. */
struct hc_http *hc_api_http_new(struct hc_api *api, int listen_fd, struct hc_err *err);
void hc_api_http_free(struct hc_http *http);
int hc_api_http_port(const struct hc_api *api);

#endif /* HC_API_INT_H */
