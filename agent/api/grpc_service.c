/* cluster.services.api.ClusterService over agent/rpc. */
#include "api/api_int.h"

#include <errno.h>
#include <string.h>

#define HC_LOG_MODULE "api"
#include "cluster/cluster.h"
#include "log/log.h"
#include "rpc/rpc.h"

#define SERVICE "/cluster.services.api.ClusterService/"

static void on_list(struct hc_rpc_call *call, const ProtobufCMessage *request, void *arg)
{
	struct hc_api *api = arg;
	Cluster__Services__Api__NodesStateResponse *list = hc_cluster_list(api->cluster);

	(void)request;
	if (!list) {
		hc_rpc_fail(call, HC_RPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	hc_rpc_reply(call, &list->base);
	hc_cluster_list_free(list);
}

/* Stop and Logs name a workload; until this node or a peer runs one (the
 * runtime and cluster issues), no id can match. The id is still validated
 * first so bad input gets INVALID_ARGUMENT, not NOT_FOUND. */
static int check_workload_id(struct hc_rpc_call *call, const char *id)
{
	if (!id || !*id) {
		hc_rpc_fail(call, HC_RPC_INVALID_ARGUMENT, "missing workload id");
		return -EINVAL;
	}
	if (!hc_api_workload_id_valid(id)) {
		hc_rpc_fail(call, HC_RPC_INVALID_ARGUMENT,
			    "invalid workload id (want a UUID like 3f2a...-...)");
		return -EINVAL;
	}
	return 0;
}

static void on_stop(struct hc_rpc_call *call, const ProtobufCMessage *request, void *arg)
{
	const Cluster__Services__Api__VmStopRequest *req = (const void *)request;

	(void)arg;
	if (check_workload_id(call, req->id) < 0)
		return;
	hc_rpc_fail(call, HC_RPC_NOT_FOUND, "no workload %s in the cluster", req->id);
}

static void on_logs(struct hc_rpc_call *call, const ProtobufCMessage *request, void *arg)
{
	const Cluster__Services__Api__VmLogsRequest *req = (const void *)request;

	(void)arg;
	if (check_workload_id(call, req->id) < 0)
		return;
	hc_rpc_fail(call, HC_RPC_NOT_FOUND, "no workload %s in the cluster", req->id);
}

static void on_spawn(struct hc_rpc_call *call, const ProtobufCMessage *request, void *arg)
{
	(void)request;
	(void)arg;
	hc_rpc_fail(call, HC_RPC_UNIMPLEMENTED,
		    "spawn needs the workload runtime, which this agent does not have yet");
}

struct hc_rpc_server *hc_api_grpc_new(struct hc_api *api, const struct hc_addr *addr, char *err,
				      size_t errlen)
{
	static const struct hc_rpc_method methods[HC_API_GRPC_METHODS] = {
		{ SERVICE "Spawn", &cluster__services__api__vm_spawn_request__descriptor, on_spawn,
		  NULL },
		{ SERVICE "Stop", &cluster__services__api__vm_stop_request__descriptor, on_stop,
		  NULL },
		{ SERVICE "List", &cluster__services__api__vm_query_request__descriptor, on_list,
		  NULL },
		{ SERVICE "Logs", &cluster__services__api__vm_logs_request__descriptor, on_logs,
		  NULL },
	};

	for (size_t i = 0; i < HC_API_GRPC_METHODS; i++) {
		api->grpc_methods[i] = methods[i];
		api->grpc_methods[i].arg = api;
	}
	return hc_rpc_server_new(api->loop, addr, api->grpc_methods, HC_API_GRPC_METHODS, err,
				 errlen);
}
