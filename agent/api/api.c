/* Composition of the gRPC and HTTP servers; see api.h. */
#include "api/api_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HC_LOG_MODULE "api"
#include "cluster/cluster.h"
#include "log/log.h"
#include "metrics/metrics.h"
#include "rpc/rpc.h"

struct hc_api *hc_api_new(struct hc_loop *loop, struct hc_cluster *cluster,
			  struct hc_metrics *metrics, const struct hc_api_config *cfg,
			  struct hc_err *err)
{
	struct hc_api *api = calloc(1, sizeof(*api));
	char where[64];
	int http_fd;

	if (!api) {
		hc_auth_free(cfg->auth);
		hc_err_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	hc_list_init(&api->pending);
	api->loop = loop;
	api->cluster = cluster;
	api->metrics = metrics;
	api->auth = cfg->auth;
	api->metrics_auth = cfg->metrics_auth;
	api->runtime = cfg->runtime;

	/* Bind HTTP first (we own that socket) so a busy port fails before
	 * gRPC has started anything. */
	http_fd = hc_addr_listen_tcp(&cfg->http_addr, 128);
	if (http_fd < 0) {
		hc_err_set(err, http_fd, "cannot listen on %s (--http-bind-addr): %s",
			   hc_addr_format(&cfg->http_addr, where, sizeof(where)),
			   strerror(-http_fd));
		goto fail;
	}
	api->grpc = hc_api_grpc_new(api, &cfg->grpc_addr, err);
	if (!api->grpc) {
		size_t n = strlen(err->msg);

		snprintf(err->msg + n, sizeof(err->msg) - n, " (--grpc-bind-addr)");
		close(http_fd);
		goto fail;
	}
	api->http = hc_api_http_new(api, http_fd, err);
	if (!api->http)
		goto fail;
	if (hc_metrics_register(metrics, hc_rpc_server_collect, api->grpc) < 0 ||
	    hc_metrics_register(metrics, hc_api_auth_collect, api) < 0) {
		hc_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	/* The daemon's "ready" line reports the ports once everything is up:
	 * a later failure must leave nothing on stderr but its reason. */
	return api;
fail:
	hc_api_free(api);
	return NULL;
}

void hc_api_free(struct hc_api *api)
{
	if (!api)
		return;
	if (api->grpc)
		hc_metrics_unregister(api->metrics, hc_rpc_server_collect, api->grpc);
	hc_metrics_unregister(api->metrics, hc_api_auth_collect, api);
	hc_api_grpc_cancel_pending(api);
	hc_api_http_free(api->http);
	hc_rpc_server_free(api->grpc);
	hc_auth_free(api->auth);
	free(api);
}

int hc_api_grpc_port(const struct hc_api *api)
{
	return hc_rpc_server_port(api->grpc);
}
