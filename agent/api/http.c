/*
 * The HTTP API on libmicrohttpd, driven by our loop: MHD runs in external
 * epoll mode, its epoll fd sits in the loop's epoll set, and MHD_run() is
 * called when it is ready or when MHD's own timeout comes due. Handlers thus
 * run on the loop thread and read cluster state directly.
 *
 * JSON shapes are upstream's: {"response": ...} on success and
 * {"error": "..."} on failure, each followed by a newline as Go's
 * json.Encoder writes them.
 */
#include "api/api_int.h"

#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HC_LOG_MODULE "http"
#include "base/base.h"
#include "base/list.h"
#include "cluster/cluster.h"
#include "log/log.h"
#include "loop/loop.h"
#include "metrics/metrics.h"
#include "pbjson/pbjson.h"

#define MAX_BODY (1u << 20)
#define CONNECTION_LIMIT 512
#define PER_IP_CONNECTION_LIMIT 64
#define CONNECTION_TIMEOUT_S 30

enum route {
	ROUTE_LIST,
	ROUTE_SPAWN,
	ROUTE_STOP,
	ROUTE_LOGS,
	ROUTE_HEALTHZ,
	ROUTE_METRICS,
	ROUTE_MEMBERS,
	ROUTE_EVENT,
	ROUTE_QUERY,
	ROUTE_OTHER,
	ROUTE_COUNT,
};

static const char *const route_paths[ROUTE_COUNT] = {
	"/list", "/spawn", "/stop", "/logs", "/healthz", "/metrics", "/members", "/event",
	"/query", "other",
};

/* Status codes we answer with, for the request counter. */
static const unsigned counted_codes[] = { 200, 400, 404, 405, 409, 413, 500, 503, 504 };
#define NCODES (sizeof(counted_codes) / sizeof(counted_codes[0]))

struct hc_http {
	struct hc_api *api;
	struct MHD_Daemon *daemon;
	int epfd;
	int port;
	uint64_t timer;
	struct hc_list suspended; /* requests waiting for a query or an operation */
	uint64_t requests[ROUTE_COUNT][NCODES + 1]; /* last column: any other code */
};

/* Per-request state: the body read so far, and for a query the answer
 * being collected while the connection is suspended. */
struct request {
	char *body;
	size_t len;
	bool too_large;
	struct hc_http *h;
	struct MHD_Connection *conn;
	json_t *acks, *responses; /* while a query runs */
	json_t *answer;           /* set when it is done: sent on resume */
	unsigned answer_code;
	enum route route;             /* of the suspended request */
	struct hc_cluster_op *op;     /* a cluster operation it waits for */
	bool starting;                /* the operation is being started */
	char next_line[24];           /* /logs: X-Hypercore-Next-Line */
	struct hc_list link;          /* in h->suspended while suspended */
};

static void schedule(struct hc_http *h);
static int64_t on_timeout(struct hc_loop *loop, uint64_t id, void *arg);

/* ---- responses ---- */

static void count(struct hc_http *h, enum route r, unsigned code)
{
	size_t i;

	for (i = 0; i < NCODES && counted_codes[i] != code; i++)
		;
	h->requests[r][i]++;
}

static enum MHD_Result send_body(struct hc_http *h, struct MHD_Connection *conn, enum route r,
				 unsigned code, const char *type, char *body, size_t len,
				 const char *next_line)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	/* MHD frees body with free() when the response is destroyed. */
	resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (next_line && *next_line)
		MHD_add_response_header(resp, "X-Hypercore-Next-Line", next_line);
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
					r == ROUTE_SPAWN || r == ROUTE_EVENT ||
							r == ROUTE_QUERY
						? "POST"
					: r == ROUTE_STOP ? "GET, POST"
							  : "GET, HEAD");
	ret = MHD_queue_response(conn, code, resp);
	MHD_destroy_response(resp);
	count(h, r, code);
	return ret;
}

/* Sends {"<key>": value} + "\n" (with the /logs next-line header when
 * given). Takes the reference to value. */
static enum MHD_Result send_json_hdr(struct hc_http *h, struct MHD_Connection *conn,
				     enum route r, unsigned code, const char *key, json_t *value,
				     const char *next_line)
{
	json_t *obj = value ? json_pack("{so}", key, value) : NULL;
	char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	char *body;
	size_t len;

	json_decref(obj);
	if (!text)
		return MHD_NO; /* out of memory: drop the connection */
	len = strlen(text);
	body = realloc(text, len + 2);
	if (!body) {
		free(text);
		return MHD_NO;
	}
	body[len++] = '\n';
	body[len] = '\0';
	return send_body(h, conn, r, code, "application/json", body, len, next_line);
}

static enum MHD_Result send_json(struct hc_http *h, struct MHD_Connection *conn, enum route r,
				 unsigned code, const char *key, json_t *value)
{
	return send_json_hdr(h, conn, r, code, key, value, NULL);
}

static enum MHD_Result send_error(struct hc_http *h, struct MHD_Connection *conn, enum route r,
				  unsigned code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static enum MHD_Result send_error(struct hc_http *h, struct MHD_Connection *conn, enum route r,
				  unsigned code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return send_json(h, conn, r, code, "error", json_string(msg));
}

static enum MHD_Result send_text(struct hc_http *h, struct MHD_Connection *conn, enum route r,
				 const char *type, char *text, size_t len)
{
	return send_body(h, conn, r, MHD_HTTP_OK, type, text, len, NULL);
}

/* ---- endpoints ---- */

static enum MHD_Result get_list(struct hc_http *h, struct MHD_Connection *conn)
{
	Cluster__Services__Api__NodesStateResponse *list = hc_cluster_list(h->api->cluster);
	json_t *j;

	if (!list)
		return send_error(h, conn, ROUTE_LIST, 500, "out of memory");
	j = hc_pbjson_encode(&list->base);
	hc_cluster_list_free(list);
	if (!j)
		return send_error(h, conn, ROUTE_LIST, 500, "out of memory");
	return send_json(h, conn, ROUTE_LIST, MHD_HTTP_OK, "response", j);
}

static enum MHD_Result get_metrics(struct hc_http *h, struct MHD_Connection *conn)
{
	size_t len;
	char *text = hc_metrics_render(h->api->metrics, &len);

	if (!text)
		return send_error(h, conn, ROUTE_METRICS, 500, "out of memory");
	return send_text(h, conn, ROUTE_METRICS, "text/plain; version=0.0.4; charset=utf-8", text,
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
		return send_error(h, conn, ROUTE_MEMBERS, 500, "out of memory");
	return send_json(h, conn, ROUTE_MEMBERS, MHD_HTTP_OK, "response", arr);
}

static enum MHD_Result get_healthz(struct hc_http *h, struct MHD_Connection *conn)
{
	char *ok = strdup("ok\n");

	if (!ok)
		return MHD_NO;
	return send_text(h, conn, ROUTE_HEALTHZ, "text/plain; charset=utf-8", ok, 3);
}

static bool parse_bool(const char *v, bool dflt)
{
	if (!v)
		return dflt;
	return strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0;
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
		return send_error(h, conn, ROUTE_EVENT, 400, "missing query parameter name");
	if (req->too_large)
		return send_error(h, conn, ROUTE_EVENT, 413, "payload over %u bytes", MAX_BODY);
	r = hc_cluster_user_event(h->api->cluster, name, (const uint8_t *)req->body, req->len,
				  coalesce);
	if (r == -EMSGSIZE)
		return send_error(h, conn, ROUTE_EVENT, 413,
				  "event name and payload exceed the user event size limit");
	if (r < 0)
		return send_error(h, conn, ROUTE_EVENT, 500, "cannot send the event: %s",
				  strerror(-r));
	return send_json(h, conn, ROUTE_EVENT, MHD_HTTP_OK, "response",
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
static void resume(struct request *req, unsigned code, json_t *answer)
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
	h->timer = hc_loop_add_timer(h->api->loop, 0, on_timeout, h);
}

static void query_done(void *arg)
{
	struct request *req = arg;
	json_t *answer = json_pack("{s:o, s:o}", "acks", req->acks, "responses", req->responses);

	req->acks = req->responses = NULL; /* json_pack took them */
	resume(req, MHD_HTTP_OK, answer);
}

static void suspend(struct hc_http *h, struct MHD_Connection *conn, struct request *req,
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
		return send_error(h, conn, ROUTE_QUERY, 400, "missing query parameter name");
	if (strncmp(name, "_serf_", 6) == 0)
		return send_error(h, conn, ROUTE_QUERY, 400, "names starting _serf_ are internal");
	if (req->too_large)
		return send_error(h, conn, ROUTE_QUERY, 413, "payload over %u bytes", MAX_BODY);
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_query_arg, &qa);
	if (qa.bad)
		return send_error(h, conn, ROUTE_QUERY, 400,
				  "bad node or tag filter (tag=KEY=REGEXP; at most 32 nodes, "
				  "16 tags)");
	if (timeout) {
		char *end;
		long ms = strtol(timeout, &end, 10);

		if (*end || ms <= 0 || ms > 600000)
			return send_error(h, conn, ROUTE_QUERY, 400, "bad timeout (ms, 1..600000)");
		p.timeout_ms = (uint32_t)ms;
	}
	if (relay) {
		char *end;
		long n = strtol(relay, &end, 10);

		if (*end || n < 0 || n > 255)
			return send_error(h, conn, ROUTE_QUERY, 400, "bad relay factor (0..255)");
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
		return send_error(h, conn, ROUTE_QUERY, 500, "out of memory");
	req->h = h;
	r = hc_cluster_query(h->api->cluster, name, (const uint8_t *)req->body, req->len, &p,
			     query_response, query_done, req);
	if (r == -EMSGSIZE)
		return send_error(h, conn, ROUTE_QUERY, 413, "query over 1024 bytes encoded");
	if (r < 0)
		return send_error(h, conn, ROUTE_QUERY, 400, "cannot send the query: %s",
				  strerror(-r));
	/* Answered by query_done when the query's time is up. */
	suspend(h, conn, req, ROUTE_QUERY);
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
	resume(req, http_status(code), answer);
}

static void spawned(void *arg, enum hc_rpc_code code, const char *err,
		    const Cluster__Services__Api__VmSpawnResponse *resp)
{
	op_answer(arg, code, err, resp ? hc_pbjson_encode(&resp->base) : NULL);
}

static void stopped(void *arg, enum hc_rpc_code code, const char *err,
		    const Cluster__Services__Api__Node *node)
{
	op_answer(arg, code, err, node ? hc_pbjson_encode(&node->base) : NULL);
}

static void logs_ready(void *arg, enum hc_rpc_code code, const char *err,
		       const Cluster__Services__Api__VmLogsResponse *resp)
{
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
		return send_json_hdr(req->h, req->conn, req->route, req->answer_code,
				     req->answer_code == MHD_HTTP_OK ? "response" : "error", answer,
				     req->next_line);
	}
	req->op = op;
	suspend(req->h, req->conn, req, req->route);
	return MHD_YES;
}

static const char *workload_id_arg(struct MHD_Connection *conn, char *why, size_t len)
{
	const char *id = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "id");

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

static enum MHD_Result get_stop(struct hc_http *h, struct MHD_Connection *conn,
				struct request *req)
{
	char why[128];
	const char *id = workload_id_arg(conn, why, sizeof(why));
	struct hc_cluster_op *op;

	if (!id)
		return send_error(h, conn, ROUTE_STOP, 400, "%s", why);
	start(h, conn, req, ROUTE_STOP);
	op = hc_cluster_stop(h->api->cluster, id, stopped, req);
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

static enum MHD_Result get_logs(struct hc_http *h, struct MHD_Connection *conn,
				struct request *req)
{
	Cluster__Services__Api__VmLogsRequest lr = CLUSTER__SERVICES__API__VM_LOGS_REQUEST__INIT;
	const char *local = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "local");
	char why[128];
	const char *id = workload_id_arg(conn, why, sizeof(why));
	unsigned long long tail, from;
	struct hc_cluster_op *op;

	if (!id)
		return send_error(h, conn, ROUTE_LOGS, 400, "%s", why);
	if (uint_arg(conn, "tail", UINT32_MAX, &tail) < 0 ||
	    uint_arg(conn, "from_line", UINT64_MAX, &from) < 0)
		return send_error(h, conn, ROUTE_LOGS, 400, "bad tail or from_line (whole numbers)");
	lr.id = (char *)id;
	lr.tail = (uint32_t)tail;
	lr.from_line = from;
	start(h, conn, req, ROUTE_LOGS);
	op = hc_cluster_logs(h->api->cluster, &lr, parse_bool(local, false), logs_ready, req);
	return finish_start(req, op);
}

/* A VmSpawnRequest from upstream's JSON (Go's encoding/json of the proto
 * struct: cores, memory, image_ref, ports {"443": 8080}, dry_run, env). */
struct spawn_json {
	Cluster__Services__Api__VmSpawnRequest req;
	Cluster__Services__Api__VmSpawnRequest__PortsEntry entries[64];
	Cluster__Services__Api__VmSpawnRequest__PortsEntry *ports[64];
	char *env[256];
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
	return 0;
}

static enum MHD_Result post_spawn(struct hc_http *h, struct MHD_Connection *conn,
				  struct request *req)
{
	struct spawn_json *sj;
	struct hc_cluster_op *op;
	json_error_t jerr;
	char why[160];
	json_t *j;

	if (req->too_large)
		return send_error(h, conn, ROUTE_SPAWN, 413, "request body over %u bytes", MAX_BODY);
	j = json_loadb(req->body ? req->body : "", req->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return send_error(h, conn, ROUTE_SPAWN, 400, "invalid JSON: %s (line %d)", jerr.text,
				  jerr.line);
	if (!json_is_object(j)) {
		json_decref(j);
		return send_error(h, conn, ROUTE_SPAWN, 400, "request must be a JSON object");
	}
	sj = calloc(1, sizeof(*sj));
	if (!sj) {
		json_decref(j);
		return send_error(h, conn, ROUTE_SPAWN, 500, "out of memory");
	}
	if (spawn_from_json(j, sj, why, sizeof(why)) < 0) {
		free(sj);
		json_decref(j);
		return send_error(h, conn, ROUTE_SPAWN, 400, "%s", why);
	}
	start(h, conn, req, ROUTE_SPAWN);
	op = hc_cluster_spawn(h->api->cluster, &sj->req, spawned, req); /* copies the request */
	free(sj);
	json_decref(j);
	return finish_start(req, op);
}

static enum route route_of(const char *url)
{
	for (int r = 0; r < ROUTE_OTHER; r++)
		if (strcmp(url, route_paths[r]) == 0)
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
	case ROUTE_EVENT:
	case ROUTE_QUERY:
		return post;
	case ROUTE_STOP:
		return get || post;
	default:
		return get;
	}
}

static enum MHD_Result dispatch(struct hc_http *h, struct MHD_Connection *conn, const char *url,
				const char *method, const struct request *req)
{
	enum route r = route_of(url);

	hc_log(HC_LOG_DEBUG, "%s %s", method, url);
	if (r == ROUTE_OTHER)
		return send_error(h, conn, r, 404, "no such endpoint %s", url);
	if (!method_allowed(r, method))
		return send_error(h, conn, r, 405, "method %s not allowed on %s", method, url);
	switch (r) {
	case ROUTE_LIST:
		return get_list(h, conn);
	case ROUTE_SPAWN:
		return post_spawn(h, conn, (struct request *)req);
	case ROUTE_STOP:
		return get_stop(h, conn, (struct request *)req);
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
	default:
		return MHD_NO;
	}
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	struct hc_http *h = cls;
	struct request *req = *con_cls;

	(void)version;
	if (!req) { /* first call: headers only */
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		hc_list_init(&req->link);
		*con_cls = req;
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		if (req->too_large || req->len + n > MAX_BODY) {
			req->too_large = true; /* keep reading, answer 413 at the end */
			return MHD_YES;
		}
		char *body = realloc(req->body, req->len + n + 1);

		if (!body)
			return MHD_NO;
		memcpy(body + req->len, upload_data, n);
		req->body = body;
		req->len += n;
		req->body[req->len] = '\0';
		return MHD_YES;
	}
	if (req->answer) { /* resumed after a query or an operation */
		json_t *answer = req->answer;

		req->answer = NULL;
		return send_json_hdr(h, conn, req->route, req->answer_code,
				     req->answer_code == MHD_HTTP_OK ? "response" : "error", answer,
				     req->next_line);
	}
	if (req->conn) /* suspended: MHD calls again once resumed */
		return MHD_YES;
	return dispatch(h, conn, url, method, req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct request *req = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (req) {
		hc_cluster_op_cancel(req->op);
		json_decref(req->acks);
		json_decref(req->responses);
		json_decref(req->answer);
		free(req->body);
		free(req);
		*con_cls = NULL;
	}
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	if (n && msg[n - 1] == '\n')
		msg[n - 1] = '\0';
	/* MHD complains mostly about clients (bad requests, resets). */
	hc_log(HC_LOG_DEBUG, "microhttpd: %s", msg);
}

/* ---- loop integration ---- */

static void run(struct hc_http *h)
{
	if (MHD_run(h->daemon) != MHD_YES)
		hc_log(HC_LOG_WARN, "MHD_run failed");
	schedule(h);
}

static void on_epoll_ready(struct hc_loop *loop, int fd, unsigned events, void *arg)
{
	(void)loop;
	(void)fd;
	(void)events;
	run(arg);
}

static int64_t on_timeout(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_http *h = arg;

	(void)loop;
	(void)id;
	h->timer = 0;
	run(h);
	return HC_LOOP_TIMER_DONE;
}

/* Arms a timer for MHD's next deadline (connection timeouts, or 0 when it
 * has buffered work its edge-triggered epoll will not report again). */
static void schedule(struct hc_http *h)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (h->timer) {
		hc_loop_del_timer(h->api->loop, h->timer);
		h->timer = 0;
	}
	if (MHD_get_timeout(h->daemon, &ms) != MHD_YES)
		return;
	h->timer = hc_loop_add_timer(h->api->loop, ms, on_timeout, h);
	if (!h->timer)
		hc_log(HC_LOG_ERROR, "cannot arm the HTTP timer: %s", strerror(errno));
}

static void collect(struct hc_metrics_writer *w, void *arg)
{
	struct hc_http *h = arg;
	char code[8];

	hc_metrics_family(w, "hypercore_http_requests_total", "counter",
			  "HTTP API requests, by path and status code.");
	for (int r = 0; r < ROUTE_COUNT; r++) {
		for (size_t i = 0; i <= NCODES; i++) {
			const char *labels[] = { "path", route_paths[r], "code", code, NULL };

			if (!h->requests[r][i])
				continue;
			if (i < NCODES)
				snprintf(code, sizeof(code), "%u", counted_codes[i]);
			else
				snprintf(code, sizeof(code), "other");
			hc_metrics_sample(w, "hypercore_http_requests_total", labels,
					  (double)h->requests[r][i]);
		}
	}
}

struct hc_http *hc_api_http_new(struct hc_api *api, int listen_fd, char *err, size_t errlen)
{
	struct hc_http *h = calloc(1, sizeof(*h));
	const union MHD_DaemonInfo *info;
	int r;

	if (!h) {
		close(listen_fd);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->api = api;
	h->epfd = -1;
	hc_list_init(&h->suspended);
	h->daemon = MHD_start_daemon(
		MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL,
		on_request, h,
		MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h, MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_CONNECTION_LIMIT,
		(unsigned)CONNECTION_LIMIT, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
		(unsigned)PER_IP_CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned)CONNECTION_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
		MHD_OPTION_END);
	if (!h->daemon) {
		close(listen_fd);
		snprintf(err, errlen, "cannot start the HTTP server");
		free(h);
		return NULL;
	}
	info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_EPOLL_FD);
	h->epfd = info ? info->epoll_fd : -1;
	info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
	h->port = info ? info->port : 0;
	if (h->epfd < 0) {
		snprintf(err, errlen, "microhttpd gave no epoll fd");
		goto fail;
	}
	r = hc_loop_add_fd(api->loop, h->epfd, HC_LOOP_READ, on_epoll_ready, h);
	if (r < 0) {
		snprintf(err, errlen, "cannot watch the HTTP server: %s", strerror(-r));
		h->epfd = -1;
		goto fail;
	}
	if (hc_metrics_register(api->metrics, collect, h) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	schedule(h);
	return h;
fail:
	hc_api_http_free(h);
	return NULL;
}

void hc_api_http_free(struct hc_http *h)
{
	if (!h)
		return;
	/* Connections waiting for queries get their answer now; MHD must not
	 * be stopped with suspended connections. */
	while (!hc_list_empty(&h->suspended)) {
		struct request *req = hc_list_first(&h->suspended, struct request, link);

		hc_cluster_op_cancel(req->op);
		req->op = NULL;
		resume(req, 503, json_string("agent shutting down")); /* unlinks it */
	}
	if (h->daemon)
		MHD_run(h->daemon);
	hc_metrics_unregister(h->api->metrics, collect, h);
	if (h->timer)
		hc_loop_del_timer(h->api->loop, h->timer);
	if (h->epfd >= 0)
		hc_loop_del_fd(h->api->loop, h->epfd);
	MHD_stop_daemon(h->daemon); /* closes the listening socket too */
	free(h);
}

int hc_api_http_port(const struct hc_api *api)
{
	return api->http ? api->http->port : 0;
}
