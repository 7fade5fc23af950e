/* Private to agent/api: the pieces api.c composes. */
#ifndef HC_API_INT_H
#define HC_API_INT_H

#include "api/api.h"
#include "base/list.h"
#include "rpc/rpc.h"

struct hc_http;

#define HC_API_GRPC_METHODS 4

struct hc_api {
	struct hc_loop *loop;
	struct hc_cluster *cluster;
	struct hc_metrics *metrics;
	struct hc_rpc_server *grpc;
	struct hc_rpc_method grpc_methods[HC_API_GRPC_METHODS]; /* the server points here */
	struct hc_http *http;
	struct hc_list pending; /* gRPC calls waiting for cluster operations */
};

/* gRPC ClusterService (grpc_service.c). */
struct hc_rpc_server *hc_api_grpc_new(struct hc_api *api, const struct hc_addr *addr, char *err,
				      size_t errlen);

/* Cancels the cluster operations gRPC calls wait for (the server then
 * fails the calls as it stops). */
void hc_api_grpc_cancel_pending(struct hc_api *api);

/* HTTP API (http.c). listen_fd is taken over, also on failure. */
struct hc_http *hc_api_http_new(struct hc_api *api, int listen_fd, char *err, size_t errlen);
void hc_api_http_free(struct hc_http *http);
int hc_api_http_port(const struct hc_api *api);

#endif /* HC_API_INT_H */
