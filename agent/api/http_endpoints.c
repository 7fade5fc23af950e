/* The HTTP API's endpoints: routing, reading requests, answering from the cluster. */
#include "api/api_int.h"
#include "api/http_int.h"

#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#define HC_LOG_MODULE "http"
#include "base/base.h"
#include "base/list.h"
#include "cluster/cluster.h"
#include "ibrl/ibrl.h"
#include "log/log.h"
#include "loop/loop.h"
#include "metrics/metrics.h"
#include "pbjson/pbjson.h"

/* ---- endpoints ---- */

static const char *authorization(struct MHD_Connection *conn)
{
	return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
}

static bool parse_bool(const char *v, bool dflt)
{
	if (!v)
		return dflt;
	return strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0;
}

static enum MHD_Result get_list(struct hc_http *h, struct MHD_Connection *conn)
{
	/* env values only for an admin who asks: they are tenants' secrets */
	bool show_env = parse_bool(MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "env"),
				   false) &&
			hc_api_role(h->api, authorization(conn)) == HC_AUTH_ADMIN;
	Cluster__Services__Api__NodesStateResponse *list = hc_api_list(h->api, show_env);
	json_t *j;

	if (!list)
		return hc_http_send_error(h, conn, ROUTE_LIST, 500, "out of memory");
	j = hc_pbjson_encode(&list->base);
	cluster__services__api__nodes_state_response__free_unpacked(list, NULL);
	if (!j)
		return hc_http_send_error(h, conn, ROUTE_LIST, 500, "out of memory");
	return hc_http_send_json(h, conn, ROUTE_LIST, MHD_HTTP_OK, "response", j);
}

static enum MHD_Result get_metrics(struct hc_http *h, struct MHD_Connection *conn)
{
	size_t len;
	char *text = hc_metrics_render(h->api->metrics, &len);

	if (!text)
		return hc_http_send_error(h, conn, ROUTE_METRICS, 500, "out of memory");
	return hc_http_send_text(h, conn, ROUTE_METRICS, "text/plain; version=0.0.4; charset=utf-8", text,
				 len);
}

static json_t *member_json(const struct hc_gossip_member *m)
{
	json_t *tags = json_object(), *o;

	for (size_t i = 0; tags && i < m->ntags; i++)
		json_object_set_new(tags, m->tags[i].key, json_string(m->tags[i].value));
	o = json_pack("{s:s, s:s, s:s, s:o, s:[iii], s:[iii], s:o, s:o, s:o, s:f}", "name",
		      m->name, "addr", m->addr, "status", hc_gossip_status_name(m->status), "tags",
		      tags ? tags : json_object(), "protocol", m->protocol_min, m->protocol_max,
		      m->protocol_cur, "delegate", m->delegate_min, m->delegate_max,
		      m->delegate_cur, "rtt_ms",
		      m->rtt_us >= 0 ? json_real((double)m->rtt_us / 1000.0) : json_null(),
		      "rtt_mean_ms",
		      m->rtt_mean_us >= 0 ? json_real((double)m->rtt_mean_us / 1000.0) : json_null(),
		      "jitter_ms",
		      m->jitter_us >= 0 ? json_real((double)m->jitter_us / 1000.0) : json_null(),
		      "loss", m->loss);
	return o;
}

static enum MHD_Result get_members(struct hc_http *h, struct MHD_Connection *conn)
{
	size_t n = 0;
	struct hc_gossip_member *ms = hc_cluster_members(h->api->cluster, &n);
	json_t *arr = ms ? json_array() : NULL;

	for (size_t i = 0; arr && i < n; i++) {
		json_t *m = member_json(&ms[i]);

		if (!m || json_array_append_new(arr, m) < 0) {
			json_decref(arr);
			arr = NULL;
		}
	}
	hc_gossip_members_free(ms, n);
	if (!arr)
		return hc_http_send_error(h, conn, ROUTE_MEMBERS, 500, "out of memory");
	return hc_http_send_json(h, conn, ROUTE_MEMBERS, MHD_HTTP_OK, "response", arr);
}

static enum MHD_Result get_healthz(struct hc_http *h, struct MHD_Connection *conn)
{
	char *ok = strdup("ok\n");

	if (!ok)
		return MHD_NO;
	return hc_http_send_text(h, conn, ROUTE_HEALTHZ, "text/plain; charset=utf-8", ok, 3);
}

/* Names the cluster itself sends and obeys (hypercore_state_broadcast,
 * hypercore_query) or serf keeps for its internal queries: a caller of
 * /event or /query must not speak for the cluster. (hypercore-info, which
 * nodes only answer, stays open.) */
static bool reserved_name(const char *name)
{
	return strncasecmp(name, "hypercore_", 10) == 0 || strncasecmp(name, "_serf", 5) == 0;
}

static enum MHD_Result post_event(struct hc_http *h, struct MHD_Connection *conn,
				  const struct request *req)
{
	const char *name = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "name");
	bool coalesce = parse_bool(MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND,
								"coalesce"),
				   true);
	int r;

	if (!name || !*name)
		return hc_http_send_error(h, conn, ROUTE_EVENT, 400, "missing query parameter name");
	if (reserved_name(name))
		return hc_http_send_error(h, conn, ROUTE_EVENT, 403,
					  "event names starting hypercore_ or _serf are the cluster's own");
	if (req->too_large)
		return hc_http_send_error(h, conn, ROUTE_EVENT, 413, "payload over %u bytes", MAX_BODY);
	r = hc_cluster_user_event(h->api->cluster, name, (const uint8_t *)req->body, req->len,
				  coalesce);
	if (r == -EMSGSIZE)
		return hc_http_send_error(h, conn, ROUTE_EVENT, 413,
					  "event name and payload exceed the user event size limit");
	if (r < 0)
		return hc_http_send_error(h, conn, ROUTE_EVENT, 500, "cannot send the event: %s",
					  strerror(-r));
	return hc_http_send_json(h, conn, ROUTE_EVENT, MHD_HTTP_OK, "response",
				 json_pack("{s:s, s:i}", "name", name, "bytes", (int)req->len));
}

/* Query parameters repeated in the URL: node=N (any number) and tag=K=RE. */
struct query_args {
	const char *nodes[32];
	size_t nnodes;
	struct hc_gossip_kv tags[16];
	char tag_keys[16][128];
	size_t ntags;
	bool bad;
};

static enum MHD_Result collect_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
					 const char *value)
{
	struct query_args *qa = cls;

	(void)kind;
	if (!value)
		return MHD_YES;
	if (strcmp(key, "node") == 0) {
		if (qa->nnodes < 32)
			qa->nodes[qa->nnodes++] = value;
		else
			qa->bad = true;
	} else if (strcmp(key, "tag") == 0) {
		const char *eq = strchr(value, '=');

		if (!eq || eq == value || qa->ntags >= 16 || (size_t)(eq - value) >= 128) {
			qa->bad = true;
			return MHD_YES;
		}
		memcpy(qa->tag_keys[qa->ntags], value, (size_t)(eq - value));
		qa->tag_keys[qa->ntags][eq - value] = '\0';
		qa->tags[qa->ntags].key = qa->tag_keys[qa->ntags];
		qa->tags[qa->ntags].value = eq + 1;
		qa->ntags++;
	}
	return MHD_YES;
}

static void query_response(void *arg, const char *from, const uint8_t *payload, size_t len,
			   bool is_ack)
{
	struct request *req = arg;
	json_t *p;

	if (is_ack) {
		json_array_append_new(req->acks, json_string(from));
		return;
	}
	/* Payloads are bytes; most are text. Other bytes go as hex (a
	 * response is at most 1 KiB). */
	p = json_stringn((const char *)payload, len);
	if (p) {
		json_array_append_new(req->responses,
				      json_pack("{s:s, s:o}", "from", from, "payload", p));
	} else {
		char *hex = malloc(2 * len + 1);

		for (size_t i = 0; hex && i < len; i++)
			snprintf(hex + 2 * i, 3, "%02x", payload[i]);
		if (hex) {
			hex[2 * len] = '\0';
			json_array_append_new(req->responses, json_pack("{s:s, s:s}", "from", from,
									"payload_hex", hex));
		}
		free(hex);
	}
}

/* Resumes a suspended query connection with its answer. */
void hc_http_resume(struct request *req, unsigned code, json_t *answer)
{
	struct hc_http *h = req->h;

	req->answer = answer ? answer : json_string("out of memory");
	req->answer_code = answer ? code : 500;
	hc_list_remove(&req->link);
	MHD_resume_connection(req->conn);
	/* Nothing on MHD's sockets may change, so its epoll fd will not wake
	 * us: run it now (from a timer, as we may be inside a loop callback
	 * that MHD itself made). */
	if (h->timer)
		hc_loop_del_timer(h->api->loop, h->timer);
	h->timer = hc_loop_add_timer(h->api->loop, 0, hc_http_on_timeout, h);
}

static void query_done(void *arg)
{
	struct request *req = arg;
	json_t *answer = json_pack("{s:o, s:o}", "acks", req->acks, "responses", req->responses);

	req->acks = req->responses = NULL; /* json_pack took them */
	hc_http_resume(req, MHD_HTTP_OK, answer);
}

void hc_http_suspend(struct hc_http *h, struct MHD_Connection *conn, struct request *req,
		     enum route r)
{
	req->h = h;
	req->conn = conn;
	req->route = r;
	hc_list_insert(&h->suspended, &req->link);
	MHD_suspend_connection(conn);
}

static enum MHD_Result post_query(struct hc_http *h, struct MHD_Connection *conn,
				  struct request *req)
{
	const char *name = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "name");
	const char *timeout = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "timeout");
	const char *relay = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "relay");
	struct query_args qa = { 0 };
	struct hc_gossip_query_params p = { 0 };
	int r;

	if (!name || !*name)
		return hc_http_send_error(h, conn, ROUTE_QUERY, 400, "missing query parameter name");
	if (reserved_name(name))
		return hc_http_send_error(h, conn, ROUTE_QUERY, 403,
					  "query names starting hypercore_ or _serf are the cluster's own");
	if (req->too_large)
		return hc_http_send_error(h, conn, ROUTE_QUERY, 413, "payload over %u bytes", MAX_BODY);
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_query_arg, &qa);
	if (qa.bad)
		return hc_http_send_error(h, conn, ROUTE_QUERY, 400,
					  "bad node or tag filter (tag=KEY=REGEXP; at most 32 nodes, "
					  "16 tags)");
	if (timeout) {
		char *end;
		long ms = strtol(timeout, &end, 10);

		if (*end || ms <= 0 || ms > 600000)
			return hc_http_send_error(h, conn, ROUTE_QUERY, 400, "bad timeout (ms, 1..600000)");
		p.timeout_ms = (uint32_t)ms;
	}
	if (relay) {
		char *end;
		long n = strtol(relay, &end, 10);

		if (*end || n < 0 || n > 255)
			return hc_http_send_error(h, conn, ROUTE_QUERY, 400, "bad relay factor (0..255)");
		p.relay_factor = (uint8_t)n;
	}
	p.nodes = qa.nodes;
	p.nnodes = qa.nnodes;
	p.tags = qa.tags;
	p.ntags = qa.ntags;
	p.ack = parse_bool(MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "ack"), true);
	req->acks = json_array();
	req->responses = json_array();
	if (!req->acks || !req->responses)
		return hc_http_send_error(h, conn, ROUTE_QUERY, 500, "out of memory");
	req->h = h;
	r = hc_cluster_query(h->api->cluster, name, (const uint8_t *)req->body, req->len, &p,
			     query_response, query_done, req);
	if (r == -EMSGSIZE)
		return hc_http_send_error(h, conn, ROUTE_QUERY, 413, "query over 1024 bytes encoded");
	if (r < 0)
		return hc_http_send_error(h, conn, ROUTE_QUERY, 400, "cannot send the query: %s",
					  strerror(-r));
	/* Answered by query_done when the query's time is up. */
	hc_http_suspend(h, conn, req, ROUTE_QUERY);
	return MHD_YES;
}

/* ---- cluster operations: spawn, stop, logs (answered when done) ---- */

static unsigned http_status(enum hc_rpc_code code)
{
	switch (code) {
	case HC_RPC_OK:
		return MHD_HTTP_OK;
	case HC_RPC_INVALID_ARGUMENT:
		return MHD_HTTP_BAD_REQUEST;
	case HC_RPC_NOT_FOUND:
		return MHD_HTTP_NOT_FOUND;
	case HC_RPC_ALREADY_EXISTS:
		return MHD_HTTP_CONFLICT;
	case HC_RPC_DEADLINE_EXCEEDED:
		return MHD_HTTP_GATEWAY_TIMEOUT;
	case HC_RPC_UNAVAILABLE:
	case HC_RPC_RESOURCE_EXHAUSTED:
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	default:
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

/* Ends an operation: {"response": answer} or {"error": err}. One that
 * ends while it is being started is answered by finish_start(). */
static void op_answer(struct request *req, enum hc_rpc_code code, const char *err, json_t *answer)
{
	req->op = NULL;
	if (code != HC_RPC_OK) {
		json_decref(answer);
		answer = json_string(err ? err : "failed");
	}
	if (req->starting) {
		req->answer = answer ? answer : json_string("out of memory");
		req->answer_code = answer ? http_status(code) : 500;
		return;
	}
	hc_http_resume(req, http_status(code), answer);
}

/* Spawn and Stop: the answer as JSON. */
static void answered(void *arg, enum hc_rpc_code code, const char *err,
		     const ProtobufCMessage *answer)
{
	op_answer(arg, code, err, answer ? hc_pbjson_encode(answer) : NULL);
}

static void logs_ready(void *arg, enum hc_rpc_code code, const char *err,
		       const ProtobufCMessage *answer)
{
	const Cluster__Services__Api__VmLogsResponse *resp = (const void *)answer;
	struct request *req = arg;

	if (resp)
		snprintf(req->next_line, sizeof(req->next_line), "%llu",
			 (unsigned long long)resp->next_line);
	/* upstream's shape: the log text itself is the response */
	op_answer(req, code, err, resp ? json_string(resp->logs) : NULL);
}

/* Before starting an operation for req. */
static void start(struct hc_http *h, struct MHD_Connection *conn, struct request *req,
		  enum route r)
{
	req->h = h;
	req->conn = conn;
	req->route = r;
	req->starting = true;
}

/* After: answers now if the operation already ended (bad input), else
 * suspends the connection until it does, keeping op to cancel it if the
 * server stops first. */
static enum MHD_Result finish_start(struct request *req, struct hc_cluster_op *op)
{
	req->starting = false;
	if (req->answer) {
		json_t *answer = req->answer;

		req->answer = NULL;
		return hc_http_send_json_hdr(req->h, req->conn, req->route, req->answer_code,
					     req->answer_code == MHD_HTTP_OK ? "response" : "error", answer,
					     req->next_line);
	}
	req->op = op;
	hc_http_suspend(req->h, req->conn, req, req->route);
	return MHD_YES;
}

/* /stop's id from a JSON body {"id": ...} or a form body id=...; the
 * query string's ?id= comes first. A UUID needs no URL decoding. */
static const char *id_from_body(const struct request *req, char out[HC_UUID_LEN + 1])
{
	json_t *doc, *v;
	const char *p;

	if (!req->body)
		return NULL;
	doc = json_loadb(req->body, req->len, 0, NULL);
	v = json_is_object(doc) ? json_object_get(doc, "id") : NULL;
	if (json_is_string(v) && strlen(json_string_value(v)) <= HC_UUID_LEN) {
		snprintf(out, HC_UUID_LEN + 1, "%s", json_string_value(v));
		json_decref(doc);
		return out;
	}
	json_decref(doc);
	for (p = req->body; p; p = strchr(p, '&'), p = p ? p + 1 : NULL)
		if (strncmp(p, "id=", 3) == 0 && strcspn(p + 3, "&") == HC_UUID_LEN) {
			snprintf(out, HC_UUID_LEN + 1, "%.*s", HC_UUID_LEN, p + 3);
			return out;
		}
	return NULL;
}

static const char *workload_id_arg(struct MHD_Connection *conn, const struct request *req,
				   char body_id[HC_UUID_LEN + 1], char *why, size_t len)
{
	const char *id = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "id");

	if ((!id || !*id) && req)
		id = id_from_body(req, body_id);
	if (!id || !*id) {
		snprintf(why, len, "missing query parameter id");
		return NULL;
	}
	/* a workload id as upstream makes them (a UUID) is the only form
	 * accepted from clients, so an id is never a path or a query in disguise */
	if (!hc_uuid_valid(id)) {
		snprintf(why, len, "invalid workload id (want a UUID)");
		return NULL;
	}
	return id;
}

static enum MHD_Result post_stop(struct hc_http *h, struct MHD_Connection *conn,
				 struct request *req)
{
	char why[128], body_id[HC_UUID_LEN + 1];
	const char *id = workload_id_arg(conn, req, body_id, why, sizeof(why));
	struct hc_cluster_op *op;

	if (!id)
		return hc_http_send_error(h, conn, ROUTE_STOP, 400, "%s", why);
	start(h, conn, req, ROUTE_STOP);
	op = hc_cluster_stop(h->api->cluster, id, answered, req);
	return finish_start(req, op);
}

static int uint_arg(struct MHD_Connection *conn, const char *key, unsigned long long max,
		    unsigned long long *out)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, key);
	char *end;

	*out = 0;
	if (!v || !*v)
		return 0;
	errno = 0;
	*out = strtoull(v, &end, 10);
	return errno || *end || *v == '-' || *out > max ? -EINVAL : 0;
}

/* /cluster/state?since=V: this node's announced state for a peer that
 * pulls it (docs/cluster.md, "State by digest and delta"): a packed
 * StateDigest, the delta since V or the whole state. */
static enum MHD_Result get_cluster_state(struct hc_http *h, struct MHD_Connection *conn)
{
	unsigned long long since;
	uint8_t *buf;
	size_t len;
	int r;

	if (uint_arg(conn, "since", UINT64_MAX, &since) < 0)
		return hc_http_send_error(h, conn, ROUTE_CLUSTER_STATE, 400,
					  "bad since (a state version, a whole number)");
	r = hc_cluster_state_since(h->api->cluster, since, &buf, &len);
	if (r == -ENOENT)
		return hc_http_send_error(h, conn, ROUTE_CLUSTER_STATE, 404,
					  "this node announces no state by digest");
	if (r < 0)
		return hc_http_send_error(h, conn, ROUTE_CLUSTER_STATE, 500, "out of memory");
	return hc_http_send_text(h, conn, ROUTE_CLUSTER_STATE, "application/x-protobuf",
				 (char *)buf, len);
}

static enum MHD_Result get_logs(struct hc_http *h, struct MHD_Connection *conn,
				struct request *req)
{
	Cluster__Services__Api__VmLogsRequest lr = CLUSTER__SERVICES__API__VM_LOGS_REQUEST__INIT;
	const char *local = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "local");
	char why[128];
	const char *id = workload_id_arg(conn, NULL, NULL, why, sizeof(why));
	unsigned long long tail, from;
	struct hc_cluster_op *op;

	if (!id)
		return hc_http_send_error(h, conn, ROUTE_LOGS, 400, "%s", why);
	if (uint_arg(conn, "tail", UINT32_MAX, &tail) < 0 ||
	    uint_arg(conn, "from_line", UINT64_MAX, &from) < 0)
		return hc_http_send_error(h, conn, ROUTE_LOGS, 400, "bad tail or from_line (whole numbers)");
	lr.id = (char *)id;
	lr.tail = (uint32_t)tail;
	lr.from_line = from;
	start(h, conn, req, ROUTE_LOGS);
	op = hc_cluster_logs(h->api->cluster, &lr, parse_bool(local, false), logs_ready, req);
	return finish_start(req, op);
}

/* /proofs and /proofs/verify: a workload's proof chain as its owner keeps
 * it, and this node's verdict on it (docs/api.md). */
static json_t *proofs_json(const struct hc_cluster_proofs *a, bool verify)
{
	char key[48] = "";
	json_t *o;

	if (a->has_key)
		hc_ibrl_b64_encode(a->node_key, sizeof(a->node_key), key, sizeof(key));
	o = json_pack("{s:s, s:s, s:s, s:s}", "workload_id", a->id, "node", a->node, "node_key",
		      key, verify ? "proof_hash" : "head", a->head);
	if (!o)
		return NULL;
	if (!verify) {
		json_object_set_new(o, "log", json_stringn(a->log, a->len));
		return o;
	}
	json_object_set_new(o, "verification_result",
			    json_string(hc_ibrl_verdict_name((enum hc_ibrl_verdict)a->verdict)));
	json_object_set_new(o, "beacon_registry_hash", json_string(""));
	json_object_set_new(o, "reason",
			    json_string(a->reason < HC_IBRL_REASONS ? hc_ibrl_reason_names[a->reason]
								    : "unknown"));
	json_object_set_new(o, "detail", json_string(a->detail));
	json_object_set_new(o, "entries", json_integer((json_int_t)a->entries));
	json_object_set_new(o, "line", json_integer((json_int_t)a->line));
	return o;
}

static void proofs_ready(void *arg, enum hc_rpc_code code, const char *err,
			 const struct hc_cluster_proofs *a)
{
	struct request *req = arg;

	op_answer(req, code, err, a ? proofs_json(a, req->route == ROUTE_PROOFS_VERIFY) : NULL);
}

static enum MHD_Result get_proofs(struct hc_http *h, struct MHD_Connection *conn,
				  struct request *req, enum route r)
{
	const char *local = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "local");
	char why[128];
	const char *id = workload_id_arg(conn, NULL, NULL, why, sizeof(why));
	struct hc_cluster_op *op;

	if (!id)
		return hc_http_send_error(h, conn, r, 400, "%s", why);
	start(h, conn, req, r);
	op = hc_cluster_proofs(h->api->cluster, id, parse_bool(local, false),
			       r == ROUTE_PROOFS_VERIFY, proofs_ready, req);
	return finish_start(req, op);
}

/* A VmSpawnRequest from upstream's JSON (Go's encoding/json of the proto
 * struct: cores, memory, image_ref, ports {"443": 8080}, dry_run, env). */
struct spawn_json {
	Cluster__Services__Api__VmSpawnRequest req;
	Cluster__Services__Api__VmSpawnRequest__PortsEntry entries[64];
	Cluster__Services__Api__VmSpawnRequest__PortsEntry *ports[64];
	uint32_t h2c_ports[64];
	char *env[256];
	char *policy; /* owned, when given as an object */
};

static int u32_field(json_t *o, const char *key, uint32_t *out, char *why, size_t len)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > UINT32_MAX) {
		snprintf(why, len, "%s must be a whole number", key);
		return -EINVAL;
	}
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

/* hypercore's "h2c_ports": [HOST, ...], the host ports of ports whose
 * container speaks h2c (VmSpawnRequest.h2c_ports). */
static int h2c_ports_from_json(json_t *v, struct spawn_json *sj, char *why, size_t len)
{
	Cluster__Services__Api__VmSpawnRequest *r = &sj->req;
	json_t *e;
	size_t i;

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v) || json_array_size(v) > 64) {
		snprintf(why, len, "h2c_ports must be a list of at most 64 host ports");
		return -EINVAL;
	}
	json_array_foreach(v, i, e) {
		if (!json_is_integer(e) || json_integer_value(e) < 1 || json_integer_value(e) > 65535) {
			snprintf(why, len, "h2c_ports are host ports, 1..65535");
			return -EINVAL;
		}
		sj->h2c_ports[i] = (uint32_t)json_integer_value(e);
	}
	r->h2c_ports = sj->h2c_ports;
	r->n_h2c_ports = json_array_size(v);
	return 0;
}

static int spawn_from_json(json_t *o, struct spawn_json *sj, char *why, size_t len)
{
	Cluster__Services__Api__VmSpawnRequest *r = &sj->req;
	json_t *v, *e;
	const char *key;
	size_t i;

	cluster__services__api__vm_spawn_request__init(r);
	if (u32_field(o, "cores", &r->cores, why, len) < 0 ||
	    u32_field(o, "memory", &r->memory, why, len) < 0)
		return -EINVAL;
	v = json_object_get(o, "image_ref");
	if (v && !json_is_string(v)) {
		snprintf(why, len, "image_ref must be a string");
		return -EINVAL;
	}
	r->image_ref = (char *)(v ? json_string_value(v) : "");
	v = json_object_get(o, "dry_run");
	if (v && !json_is_boolean(v)) {
		snprintf(why, len, "dry_run must be true or false");
		return -EINVAL;
	}
	r->dry_run = v && json_is_true(v);
	v = json_object_get(o, "ports");
	if (v && !json_is_null(v)) {
		if (!json_is_object(v) || json_object_size(v) > 64) {
			snprintf(why, len, "ports must be an object of at most 64 \"HOST\": CONTAINER");
			return -EINVAL;
		}
		json_object_foreach(v, key, e) {
			char *end;
			unsigned long host = strtoul(key, &end, 10);

			if (*end || !*key || host < 1 || host > 65535 || !json_is_integer(e) ||
			    json_integer_value(e) < 1 || json_integer_value(e) > 65535) {
				snprintf(why, len, "invalid port mapping \"%.16s\" (ports are 1..65535)",
					 key);
				return -EINVAL;
			}
			cluster__services__api__vm_spawn_request__ports_entry__init(
				&sj->entries[r->n_ports]);
			sj->entries[r->n_ports].key = (uint32_t)host;
			sj->entries[r->n_ports].value = (uint32_t)json_integer_value(e);
			sj->ports[r->n_ports] = &sj->entries[r->n_ports];
			r->n_ports++;
		}
		r->ports = sj->ports;
	}
	if (h2c_ports_from_json(json_object_get(o, "h2c_ports"), sj, why, len) < 0)
		return -EINVAL;
	v = json_object_get(o, "env");
	if (v && !json_is_null(v)) {
		if (!json_is_array(v) || json_array_size(v) > 256) {
			snprintf(why, len, "env must be a list of at most 256 \"KEY=VALUE\"");
			return -EINVAL;
		}
		json_array_foreach(v, i, e) {
			if (!json_is_string(e)) {
				snprintf(why, len, "env entries must be strings");
				return -EINVAL;
			}
			sj->env[i] = (char *)json_string_value(e);
		}
		r->env = sj->env;
		r->n_env = json_array_size(v);
	}
	v = json_object_get(o, "id");
	if (v && !json_is_string(v)) {
		snprintf(why, len, "id must be a string");
		return -EINVAL;
	}
	r->id = (char *)(v ? json_string_value(v) : "");
	/* hypercore: a placement policy, as its JSON text or the object itself */
	v = json_object_get(o, "policy");
	if (v && json_is_object(v)) {
		sj->policy = json_dumps(v, JSON_COMPACT);
		if (!sj->policy) {
			snprintf(why, len, "out of memory");
			return -ENOMEM;
		}
		r->policy = sj->policy;
	} else if (v && json_is_string(v)) {
		r->policy = (char *)json_string_value(v);
	} else if (v && !json_is_null(v)) {
		snprintf(why, len, "policy must be a policy object or its JSON text");
		return -EINVAL;
	}
	return 0;
}

static void explained(void *arg, enum hc_rpc_code code, const char *err, const char *json)
{
	op_answer(arg, code, err, json ? json_loads(json, 0, NULL) : NULL);
}

/* /spawn and /policy/explain: the same request, placed or explained. */
static enum MHD_Result post_spawn(struct hc_http *h, struct MHD_Connection *conn,
				  struct request *req, enum route route)
{
	struct spawn_json *sj;
	struct hc_cluster_op *op;
	json_error_t jerr;
	char why[160];
	json_t *j;

	if (req->too_large)
		return hc_http_send_error(h, conn, route, 413, "request body over %u bytes", MAX_BODY);
	j = json_loadb(req->body ? req->body : "", req->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return hc_http_send_error(h, conn, route, 400, "invalid JSON: %s (line %d)", jerr.text,
					  jerr.line);
	if (!json_is_object(j)) {
		json_decref(j);
		return hc_http_send_error(h, conn, route, 400, "request must be a JSON object");
	}
	sj = calloc(1, sizeof(*sj));
	if (!sj) {
		json_decref(j);
		return hc_http_send_error(h, conn, route, 500, "out of memory");
	}
	if (spawn_from_json(j, sj, why, sizeof(why)) < 0) {
		free(sj->policy);
		free(sj);
		json_decref(j);
		return hc_http_send_error(h, conn, route, 400, "%s", why);
	}
	start(h, conn, req, route);
	/* both copy the request */
	if (route == ROUTE_POLICY_EXPLAIN)
		op = hc_cluster_policy_explain(h->api->cluster, &sj->req, explained, req);
	else
		op = hc_cluster_spawn(h->api->cluster, &sj->req, answered, req);
	free(sj->policy);
	free(sj);
	json_decref(j);
	return finish_start(req, op);
}

static enum route route_of(const char *url)
{
	for (int r = 0; r < ROUTE_OTHER; r++)
		if (strcmp(url, hc_http_route_paths[r]) == 0)
			return r;
	return ROUTE_OTHER;
}

static bool method_allowed(enum route r, const char *method)
{
	bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
		   strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;

	switch (r) {
	case ROUTE_SPAWN:
	case ROUTE_POLICY_EXPLAIN:
	case ROUTE_EVENT:
	case ROUTE_QUERY:
	case ROUTE_STOP:
	case ROUTE_KEYS:
		return post;
	default:
		return get;
	}
}

/* What a route needs: /healthz nothing, reads a read-only token, changes
 * the admin token. */
static enum hc_auth_role role_needed(const struct hc_http *h, enum route r)
{
	switch (r) {
	case ROUTE_HEALTHZ:
		return HC_AUTH_DENIED;
	case ROUTE_METRICS:
		return h->api->metrics_auth ? HC_AUTH_READ_ONLY : HC_AUTH_DENIED;
	case ROUTE_LIST:
	case ROUTE_LOGS:
	case ROUTE_MEMBERS:
	case ROUTE_PROOFS:
	case ROUTE_PROOFS_VERIFY:
	case ROUTE_POLICY_EXPLAIN: /* a dry run: nothing changes */
	case ROUTE_ATTEST:
	case ROUTE_CLUSTER_STATE: /* what the node gossips anyway */
	case ROUTE_SPAWN_PROGRESS:
		return HC_AUTH_READ_ONLY;
	default:
		return HC_AUTH_ADMIN;
	}
}

static const char *peer_of(struct MHD_Connection *conn, char *buf, size_t len)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;
	socklen_t salen = sa && sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
							  : sizeof(struct sockaddr_in);

	if (!sa || getnameinfo(sa, salen, buf, (socklen_t)len, NULL, 0, NI_NUMERICHOST) != 0)
		snprintf(buf, len, "unknown");
	return buf;
}

/* 401 or 403 unless the caller may use route r. */
static bool refused(struct hc_http *h, struct MHD_Connection *conn, enum route r,
		    enum MHD_Result *ret)
{
	enum hc_auth_role need = role_needed(h, r);
	enum hc_api_refusal why;
	char peer[64];

	if (need == HC_AUTH_DENIED || !h->api->auth)
		return false;
	why = hc_api_authorize(h->api, HC_API_HTTP, authorization(conn), need,
			       hc_http_route_paths[r], peer_of(conn, peer, sizeof(peer)));
	if (why == HC_API_NREFUSALS)
		return false;
	if (why == HC_API_READ_ONLY)
		*ret = hc_http_send_error(h, conn, r, 403, "a read-only token may not use %s",
					  hc_http_route_paths[r]);
	else
		*ret = hc_http_send_error(h, conn, r, 401, "%s",
					  why == HC_API_NO_TOKEN
						  ? "this node wants a bearer token (Authorization: "
						    "Bearer TOKEN)"
						  : "this node does not accept that token");
	return true;
}

/* /spawn and /stop change things: only bodies a browser cannot send
 * across sites without asking first, or a form (which still needs the
 * token, which a cross-site form cannot carry). */
static bool content_type_ok(struct MHD_Connection *conn)
{
	const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_TYPE);
	size_t n = ct ? strcspn(ct, "; \t") : 0;

	return ct && ((n == 16 && strncasecmp(ct, "application/json", n) == 0) ||
		      (n == 33 && strncasecmp(ct, "application/x-www-form-urlencoded", n) == 0));
}

enum MHD_Result hc_http_dispatch(struct hc_http *h, struct MHD_Connection *conn, const char *url,
				 const char *method, const struct request *req)
{
	enum route r = route_of(url);
	enum MHD_Result ret;

	hc_log(HC_LOG_DEBUG, "%s %s", method, url);
	if (r == ROUTE_OTHER)
		return hc_http_send_error(h, conn, r, 404, "no such endpoint %s", url);
	if (refused(h, conn, r, &ret))
		return ret;
	if (!method_allowed(r, method))
		return hc_http_send_error(h, conn, r, 405, "method %s not allowed on %s", method, url);
	if ((r == ROUTE_SPAWN || r == ROUTE_STOP || r == ROUTE_KEYS) && !content_type_ok(conn))
		return hc_http_send_error(h, conn, r, 415, "%s wants Content-Type application/json "
							   "(or application/x-www-form-urlencoded)",
					  url);
	switch (r) {
	case ROUTE_LIST:
		return get_list(h, conn);
	case ROUTE_SPAWN:
		return post_spawn(h, conn, (struct request *)req, ROUTE_SPAWN);
	case ROUTE_POLICY_EXPLAIN:
		return post_spawn(h, conn, (struct request *)req, ROUTE_POLICY_EXPLAIN);
	case ROUTE_STOP:
		return post_stop(h, conn, (struct request *)req);
	case ROUTE_LOGS:
		return get_logs(h, conn, (struct request *)req);
	case ROUTE_HEALTHZ:
		return get_healthz(h, conn);
	case ROUTE_METRICS:
		return get_metrics(h, conn);
	case ROUTE_MEMBERS:
		return get_members(h, conn);
	case ROUTE_EVENT:
		return post_event(h, conn, req);
	case ROUTE_QUERY:
		return post_query(h, conn, (struct request *)req);
	case ROUTE_KEYS:
		return hc_http_post_keys(h, conn, (struct request *)req);
	case ROUTE_PROOFS:
	case ROUTE_PROOFS_VERIFY:
		return get_proofs(h, conn, (struct request *)req, r);
	case ROUTE_ATTEST:
		return hc_http_get_attest(h, conn, (struct request *)req);
	case ROUTE_CLUSTER_STATE:
		return get_cluster_state(h, conn);
	case ROUTE_SPAWN_PROGRESS:
		return hc_http_get_spawn_progress(h, conn);
	default:
		return MHD_NO;
	}
}
