/*
 * The agent's public APIs: the gRPC ClusterService and the HTTP JSON API
 * (/list, /spawn, /stop, /logs, /healthz, /metrics), both served on the loop
 * thread over the cluster module.
 */
#ifndef HC_API_H
#define HC_API_H

#include <stdbool.h>
#include <stddef.h>

#include "addr/addr.h"
#include "base/base.h"

struct hc_auth;
struct hc_loop;
struct hc_cluster;
struct hc_metrics;
struct hc_runtime;

struct hc_api_config {
	struct hc_addr grpc_addr;
	struct hc_addr http_addr;
	/* The tokens callers must show (taken by hc_api_new, also on failure);
	 * NULL: no authentication (--api-auth none). /healthz never needs
	 * one, /metrics only with metrics_auth. */
	struct hc_auth *auth;
	bool metrics_auth;
	/* This node's runtime, for /spawn/progress; NULL: none. Must outlive
	 * the api. */
	struct hc_runtime *runtime;
};

/*
 * Binds both listeners and starts serving. Nothing is left listening if
 * either fails: returns NULL with a one-line reason in err. cluster and
 * metrics must outlive the api.
 */
struct hc_api *hc_api_new(struct hc_loop *loop, struct hc_cluster *cluster,
			  struct hc_metrics *metrics, const struct hc_api_config *cfg,
			  struct hc_err *err);
/* Stops both servers, failing calls in flight. Loop thread; NULL is fine. */
void hc_api_free(struct hc_api *api);

/* Replaces the accepted tokens (taken; the old ones are freed), as after
 * the token file changed. Loop thread. */
void hc_api_set_auth(struct hc_api *api, struct hc_auth *auth);

/* The ports actually bound (useful when 0 was asked for). */
int hc_api_grpc_port(const struct hc_api *api);
int hc_api_http_port(const struct hc_api *api);


#endif /* HC_API_H */
