/*
 * Logs of any workload in the cluster: read from the runtime when it runs
 * here, otherwise fetched from its owner's HTTP API (/logs?id=&local=1),
 * whose address and port the owner announced. Ids are checked as UUIDs
 * before anything else, so an id is never a path or a query in disguise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HC_LOG_MODULE "cluster"
#include "addr/addr.h"
#include "base/base.h"
#include "cluster/cluster_int.h"
#include "dataplane/dataplane.h"
#include "httpc/httpc.h"
#include "log/log.h"

#define LOGS_MAX_BYTES (1u << 20) /* an answer: the newest MiB of the lines asked for */
/* What a read looks at, back from the log's end: a call costs at most this
 * much file, however far back from_line is. */
#define LOGS_WINDOW_BYTES (8ull << 20)
#define FETCH_TIMEOUT_MS 10000
/* Reads of one workload's log in flight on this node (followers poll with
 * from_line, so this bounds followers too), and of all logs: logs never
 * take the whole job pool from spawns and stops. Over: RESOURCE_EXHAUSTED. */
#define LOGS_PER_WORKLOAD 16
#define LOGS_INFLIGHT_MAX 128

struct logs_job {
	struct job job;
	struct hc_cluster_op *op; /* its done callback, and whether cancelled */
	char id[HC_WORKLOAD_ID_LEN + 1];
	uint32_t tail;
	uint64_t from_line;
	/* remote: where the owner serves its HTTP API */
	char host[64];
	uint16_t port;
	char token[HC_AUTH_TOKEN_MAX + 1]; /* what the owner's API wants; "" for none */
	/* the answer */
	enum hc_rpc_code code;
	char err[512];
	char *text;
	size_t len, cap;
	size_t *starts; /* line start offsets in text */
	size_t nlines, lines_cap;
	uint64_t next_line;
};

/* ---- local: collect the lines asked for ---- */

/* Drops the oldest half of the kept lines: they can no longer be in an
 * answer capped at LOGS_MAX_BYTES. Keeps memory bounded on huge logs. */
static void compact(struct logs_job *lj)
{
	size_t drop = lj->nlines / 2, off = lj->starts[drop];

	memmove(lj->text, lj->text + off, lj->len - off);
	lj->len -= off;
	for (size_t i = drop; i < lj->nlines; i++)
		lj->starts[i - drop] = lj->starts[i] - off;
	lj->nlines -= drop;
}

static int keep_line(void *arg, const struct hc_log_line *line)
{
	struct logs_job *lj = arg;
	size_t need;

	if (lj->len > 8 * LOGS_MAX_BYTES && lj->nlines > 1)
		compact(lj);
	need = lj->len + line->len + 1;
	if (need > lj->cap) {
		size_t cap = lj->cap ? lj->cap : 4096;
		char *t;

		while (cap < need)
			cap *= 2;
		if (!(t = realloc(lj->text, cap)))
			return -ENOMEM;
		lj->text = t;
		lj->cap = cap;
	}
	if (lj->nlines == lj->lines_cap) {
		size_t cap = lj->lines_cap ? 2 * lj->lines_cap : 256;
		size_t *s = realloc(lj->starts, cap * sizeof(*s));

		if (!s)
			return -ENOMEM;
		lj->starts = s;
		lj->lines_cap = cap;
	}
	lj->starts[lj->nlines++] = lj->len;
	memcpy(lj->text + lj->len, line->text, line->len);
	lj->len += line->len;
	lj->text[lj->len++] = '\n';
	return 0;
}

/* Keeps the last `tail` lines, at most LOGS_MAX_BYTES of them. */
static void trim(struct logs_job *lj)
{
	size_t first = 0;

	if (lj->tail && lj->nlines > lj->tail)
		first = lj->nlines - lj->tail;
	while (first < lj->nlines && lj->len - lj->starts[first] > LOGS_MAX_BYTES)
		first++;
	if (first >= lj->nlines) {
		lj->len = 0;
		return;
	}
	memmove(lj->text, lj->text + lj->starts[first], lj->len - lj->starts[first]);
	lj->len -= lj->starts[first];
}

static void local_run(struct job *j)
{
	struct logs_job *lj = (struct logs_job *)j;
	const struct hc_cluster_runtime_ops *rt = j->c->cfg.runtime;
	struct hc_err err;
	int r;

	if (!rt) {
		lj->code = HC_RPC_UNAVAILABLE;
		snprintf(lj->err, sizeof(lj->err), "this node runs no workloads");
		return;
	}
	r = rt->logs(j->c->cfg.runtime_ctx, lj->id, lj->tail, lj->from_line, LOGS_WINDOW_BYTES,
		     keep_line, lj, &lj->next_line, &err);
	if (r == -ENOENT) {
		lj->code = HC_RPC_NOT_FOUND;
		snprintf(lj->err, sizeof(lj->err), "no workload %s on this node", lj->id);
	} else if (r < 0) {
		lj->code = r == -ENOMEM ? HC_RPC_RESOURCE_EXHAUSTED : HC_RPC_INTERNAL;
		snprintf(lj->err, sizeof(lj->err), "%s",
			 r == -ENOMEM ? "out of memory" : err.msg);
	} else {
		trim(lj);
	}
}

/* ---- remote: GET the owner's /logs ---- */

/* Reads {"response": "..."} or {"error": "..."}. */
static void read_logs_answer(struct logs_job *lj, const struct hc_httpc_response *resp)
{
	json_t *doc = json_loadb(resp->body, resp->body_len, 0, NULL), *v;

	lj->next_line = strtoull(resp->header, NULL, 10);
	if (resp->status == 200 && (v = json_object_get(doc, "response")) && json_is_string(v)) {
		lj->len = json_string_length(v);
		lj->text = malloc(lj->len + 1);
		if (lj->text)
			memcpy(lj->text, json_string_value(v), lj->len);
		else
			lj->code = HC_RPC_RESOURCE_EXHAUSTED;
	} else {
		v = json_object_get(doc, "error");
		lj->code = hc_cluster_owner_refused(resp->status, json_string_value(v), lj->err,
						    sizeof(lj->err));
	}
	json_decref(doc);
}

enum hc_rpc_code hc_cluster_owner_refused(int status, const char *msg, char *err,
					  size_t len)
{
	snprintf(err, len, "owner node: %s", msg ? msg : "no answer");
	return status == 404 ? HC_RPC_NOT_FOUND
	       : status == 400 ? HC_RPC_INVALID_ARGUMENT
			       : HC_RPC_UNAVAILABLE;
}

enum hc_rpc_code hc_cluster_owner_get(const char *host, uint16_t port, const char *token,
				      const char *path, const char *want_header, const char *what,
				      struct hc_httpc_response *resp, char *err, size_t len)
{
	struct hc_addr a;
	char hostport[96];
	struct hc_err why;
	int r;

	snprintf(hostport, sizeof(hostport), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
	if (hc_addr_parse(hostport, false, &a, &why) < 0) {
		snprintf(err, len, "owner address %s: %.128s", hostport, why.msg);
		return HC_RPC_UNAVAILABLE;
	}
	r = hc_httpc_request(&a,
			     &(struct hc_httpc_request){ .method = "GET", .path = path,
							 .host = hostport,
							 .bearer = token[0] ? token : NULL,
							 .timeout_ms = FETCH_TIMEOUT_MS,
							 .want_header = want_header },
			     resp);
	if (r < 0) {
		snprintf(err, len, "cannot fetch %s from the owner at %s: %s", what, hostport,
			 r == -EBADMSG ? "not an HTTP answer" : strerror(-r));
		return HC_RPC_UNAVAILABLE;
	}
	return HC_RPC_OK;
}

int hc_cluster_owner_endpoint(struct hc_cluster *c, const struct peer *p,
			      struct owner_endpoint *ep)
{
	struct hc_ipaddr ip;

	memset(ep, 0, sizeof(*ep));
	/* An upstream node announces neither its address nor its HTTP port:
	 * it serves /logs on its gossip address' IP, port 8001 (fixed there).
	 * It checks no token, and is not given ours. */
	ep->port = p->http_port ? (uint16_t)p->http_port : HC_DEFAULT_HTTP_PORT;
	ep->send_token = p->http_port != 0;
	if (p->node_addr && *p->node_addr) {
		snprintf(ep->host, sizeof(ep->host), "%s", p->node_addr);
		return 0;
	}
	if (hc_cluster_member_ip(c, p->name, &ip) < 0 ||
	    !inet_ntop(ip.family == HC_AF_INET6 ? AF_INET6 : AF_INET, ip.ip6, ep->host,
		       sizeof(ep->host)))
		return -ENOENT;
	return 0;
}

static void remote_run(struct job *j)
{
	struct logs_job *lj = (struct logs_job *)j;
	struct hc_httpc_response resp;
	char path[256];

	snprintf(path, sizeof(path), "/logs?id=%s&local=1&tail=%u&from_line=%llu", lj->id,
		 lj->tail, (unsigned long long)lj->from_line);
	lj->code = hc_cluster_owner_get(lj->host, lj->port, lj->token, path,
					"X-Hypercore-Next-Line", "logs", &resp, lj->err,
					sizeof(lj->err));
	if (lj->code != HC_RPC_OK)
		return;
	read_logs_answer(lj, &resp);
	free(resp.body);
}

/* ---- the operation ---- */

static void logs_done(struct job *j)
{
	struct logs_job *lj = (struct logs_job *)j;
	struct hc_cluster_op *op = lj->op;
	Cluster__Services__Api__VmLogsResponse resp = CLUSTER__SERVICES__API__VM_LOGS_RESPONSE__INIT;
	char *text;

	if (!op->cancelled && !j->c->closing) {
		if (lj->code != HC_RPC_OK) {
			op->done(op->arg, lj->code, lj->err, NULL);
		} else if (!(text = malloc(lj->len + 1))) {
			op->done(op->arg, HC_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
		} else {
			memcpy(text, lj->text ? lj->text : "", lj->len);
			text[lj->len] = '\0';
			resp.logs = text;
			resp.next_line = lj->next_line;
			op->done(op->arg, HC_RPC_OK, NULL, &resp.base);
			free(text);
		}
	}
	op->finished = true;
	j->c->logs_inflight--;
	hc_cluster_op_release_if_idle(op);
	free(lj->text);
	free(lj->starts);
	explicit_bzero(lj->token, sizeof(lj->token));
	free(lj);
}

/* Whether another read of id's log may start: under both bounds. */
static bool logs_room(struct hc_cluster *c, const char *id, char *msg, size_t len)
{
	struct hc_cluster_op *op;
	size_t same = 0;

	if (c->logs_inflight >= LOGS_INFLIGHT_MAX) {
		snprintf(msg, len, "this node is busy: %d log reads in flight", LOGS_INFLIGHT_MAX);
		return false;
	}
	hc_list_for_each(op, &c->ops, link)
		if (op->kind == OP_LOGS && !op->finished && strcmp(op->id, id) == 0)
			same++;
	if (same >= LOGS_PER_WORKLOAD) {
		snprintf(msg, len, "too many reads of the log of %s in flight (%d): try again later",
			 id, LOGS_PER_WORKLOAD);
		return false;
	}
	return true;
}

struct hc_cluster_op *hc_cluster_logs(struct hc_cluster *c,
				      const Cluster__Services__Api__VmLogsRequest *req,
				      bool local_only, hc_cluster_op_done *done, void *arg)
{
	struct hc_cluster_op *lj_op;
	struct logs_job *lj;
	const char *owner;
	struct peer *p = NULL;
	struct owner_endpoint ep;
	char msg[200];
	int r;

	if (!req->id || !hc_uuid_valid(req->id)) {
		done(arg, HC_RPC_INVALID_ARGUMENT, "invalid workload id (want a UUID)", NULL);
		return NULL;
	}
	owner = local_only || hc_cluster_local_find(c, req->id) ? NULL
								: hc_cluster_state_owner(c, req->id);
	if (!local_only && !hc_cluster_local_find(c, req->id)) {
		p = owner ? hc_cluster_state_peer(c, owner) : NULL;
		if (!p) {
			snprintf(msg, sizeof(msg), "no workload %s in the cluster", req->id);
			done(arg, HC_RPC_NOT_FOUND, msg, NULL);
			return NULL;
		}
		if (hc_cluster_owner_endpoint(c, p, &ep) < 0) {
			snprintf(msg, sizeof(msg), "the node running %s (%s) is not a member now",
				 req->id, p->name);
			done(arg, HC_RPC_UNAVAILABLE, msg, NULL);
			return NULL;
		}
	}
	if (!logs_room(c, req->id, msg, sizeof(msg))) {
		c->logs_refused++;
		done(arg, HC_RPC_RESOURCE_EXHAUSTED, msg, NULL);
		return NULL;
	}
	lj = calloc(1, sizeof(*lj));
	lj_op = lj ? hc_cluster_op_new(c, OP_LOGS, arg) : NULL;
	if (!lj_op) {
		free(lj);
		done(arg, HC_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
		return NULL;
	}
	lj->op = lj_op;
	lj_op->done = done;
	snprintf(lj->id, sizeof(lj->id), "%s", req->id);
	snprintf(lj_op->id, sizeof(lj_op->id), "%s", req->id);
	lj->tail = req->tail;
	lj->from_line = req->from_line;
	if (p) {
		snprintf(lj->host, sizeof(lj->host), "%s", ep.host);
		lj->port = ep.port;
		if (ep.send_token)
			snprintf(lj->token, sizeof(lj->token), "%s", c->api_token);
	}
	c->logs_inflight++;
	r = p ? hc_cluster_job_start_thread(c, &lj->job, remote_run, logs_done)
	      : hc_cluster_job_start(c, &lj->job, local_run, logs_done);
	if (r < 0) {
		free(lj);
		lj_op->finished = true;
		hc_cluster_op_release_if_idle(lj_op);
		c->logs_inflight--;
		done(arg, HC_RPC_RESOURCE_EXHAUSTED,
		     r == -EBUSY ? "this node is busy (too many runtime jobs waiting)"
				 : "cannot start a worker", NULL);
		return NULL;
	}
	return lj_op;
}
