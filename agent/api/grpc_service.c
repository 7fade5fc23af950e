/* cluster.services.api.ClusterService over agent/rpc. */
#include "api/api_int.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define HC_LOG_MODULE "api"
#include "cluster/cluster.h"
#include "log/log.h"
#include "rpc/rpc.h"

#define SERVICE "/cluster.services.api.ClusterService/"
/* Request metadata: the bearer token, and List's ask for env values. */
#define MD_AUTHORIZATION "authorization"
#define MD_SHOW_ENV "hypercore-show-env"
#define AUTHORIZATION_MAX (HC_AUTH_TOKEN_MAX + 16)

/* Whether the caller may run this call; if not, fails it. */
static bool allowed(struct hc_api *api, struct hc_rpc_call *call, enum hc_auth_role need)
{
	char authz[AUTHORIZATION_MAX], peer[96];
	const char *value = hc_rpc_call_metadata(call, MD_AUTHORIZATION, authz, sizeof(authz));
	enum hc_api_refusal why;

	if (!api->auth)
		return true;
	why = hc_api_authorize(api, HC_API_GRPC, value, need, hc_rpc_call_path(call),
			       hc_rpc_call_peer(call, peer, sizeof(peer)));
	explicit_bzero(authz, sizeof(authz));
	if (why == HC_API_NREFUSALS)
		return true;
	if (why == HC_API_READ_ONLY)
		hc_rpc_fail(call, HC_RPC_PERMISSION_DENIED, "a read-only token may not call %s",
			    hc_rpc_call_path(call));
	else
		hc_rpc_fail(call, HC_RPC_UNAUTHENTICATED, "%s",
			    why == HC_API_NO_TOKEN
				    ? "this node wants a bearer token (authorization metadata)"
				    : "this node does not accept that token");
	return false;
}

static void on_list(struct hc_rpc_call *call, const ProtobufCMessage *request, void *arg)
{
	struct hc_api *api = arg;
	Cluster__Services__Api__NodesStateResponse *list;
	char authz[AUTHORIZATION_MAX], show[8];
	bool show_env;

	(void)request;
	if (!allowed(api, call, HC_AUTH_READ_ONLY))
		return;
	/* env values only for an admin who asks: they are tenants' secrets */
	show_env = hc_rpc_call_metadata(call, MD_SHOW_ENV, show, sizeof(show)) &&
		   strcmp(show, "1") == 0 &&
		   hc_api_role(api, hc_rpc_call_metadata(call, MD_AUTHORIZATION, authz,
							 sizeof(authz))) == HC_AUTH_ADMIN;
	explicit_bzero(authz, sizeof(authz));
	list = hc_api_list(api, show_env);
	if (!list) {
		hc_rpc_fail(call, HC_RPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	hc_rpc_reply(call, &list->base);
	cluster__services__api__nodes_state_response__free_unpacked(list, NULL);
}

/* A call waiting for a cluster operation. The api keeps them listed so
 * that, stopping first, it can cancel their operations before the server
 * fails the calls. */
struct pending {
	struct hc_api *api;
	struct hc_rpc_call *call;
	struct hc_cluster_op *op;
	struct hc_list link; /* api->pending */
};

static struct pending *pending_new(struct hc_api *api, struct hc_rpc_call *call)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (!p) {
		hc_rpc_fail(call, HC_RPC_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	p->api = api;
	p->call = call;
	hc_list_insert(&api->pending, &p->link);
	return p;
}

static void pending_end(struct pending *p)
{
	hc_list_remove(&p->link);
	free(p);
}

/* After starting an operation: op is NULL if it answered at once. */
static void pending_wait(struct pending *p, struct hc_cluster_op *op)
{
	if (op)
		p->op = op;
}

static bool answer_failed(struct pending *p, enum hc_rpc_code code, const char *err)
{
	if (code == HC_RPC_OK)
		return false;
	hc_rpc_fail(p->call, code, "%s", err ? err : "failed");
	pending_end(p);
	return true;
}

/* Spawn, Stop and Logs alike: the operation's answer is the reply. */
static void answered(void *arg, enum hc_rpc_code code, const char *err,
		     const ProtobufCMessage *answer)
{
	struct pending *p = arg;

	if (answer_failed(p, code, err))
		return;
	hc_rpc_reply(p->call, answer);
	pending_end(p);
}

static void on_spawn(struct hc_rpc_call *call, const ProtobufCMessage *request, void *arg)
{
	struct pending *p = allowed(arg, call, HC_AUTH_ADMIN) ? pending_new(arg, call) : NULL;

	if (p)
		pending_wait(p, hc_cluster_spawn(p->api->cluster, (const void *)request,
						 answered, p));
}

static void on_stop(struct hc_rpc_call *call, const ProtobufCMessage *request, void *arg)
{
	const Cluster__Services__Api__VmStopRequest *req = (const void *)request;
	struct pending *p;

	if (!allowed(arg, call, HC_AUTH_ADMIN))
		return;
	if (!req->id || !*req->id) {
		hc_rpc_fail(call, HC_RPC_INVALID_ARGUMENT, "missing workload id");
		return;
	}
	p = pending_new(arg, call);
	if (p)
		pending_wait(p, hc_cluster_stop(p->api->cluster, req->id, answered, p));
}

static void on_logs(struct hc_rpc_call *call, const ProtobufCMessage *request, void *arg)
{
	const Cluster__Services__Api__VmLogsRequest *req = (const void *)request;
	struct pending *p;

	if (!allowed(arg, call, HC_AUTH_READ_ONLY))
		return;
	if (!req->id || !*req->id) {
		hc_rpc_fail(call, HC_RPC_INVALID_ARGUMENT, "missing workload id");
		return;
	}
	p = pending_new(arg, call);
	if (p)
		pending_wait(p, hc_cluster_logs(p->api->cluster, req, false, answered, p));
}

void hc_api_grpc_cancel_pending(struct hc_api *api)
{
	while (!hc_list_empty(&api->pending)) {
		struct pending *p = hc_list_first(&api->pending, struct pending, link);

		hc_cluster_op_cancel(p->op);
		pending_end(p);
	}
}

struct hc_rpc_server *hc_api_grpc_new(struct hc_api *api, const struct hc_addr *addr,
				      struct hc_err *err)
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
	return hc_rpc_server_new(api->loop, addr, api->grpc_methods, HC_API_GRPC_METHODS, err);
}
