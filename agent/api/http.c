/*
 * The HTTP API on libmicrohttpd, driven by our loop: MHD runs in external
 * epoll mode, its epoll fd sits in the loop's epoll set, and MHD_run() is
 * called when it is ready or when MHD's own timeout comes due. Handlers thus
 * run on the loop thread and read cluster state directly.
 *
 * JSON shapes are upstream's: {"response": ...} on success and
 * {"error": "..."} on failure, each followed by a newline as Go's
 * json.Encoder writes them.
 *
 * This file is the glue: responses, requests as MHD hands them over, the
 * loop and metrics; the endpoints are in http_endpoints.c.
 */
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
#include <unistd.h>

#define HC_LOG_MODULE "http"
#include "base/base.h"
#include "base/list.h"
#include "cluster/cluster.h"
#include "log/log.h"
#include "loop/loop.h"
#include "metrics/metrics.h"
#include "pbjson/pbjson.h"

#define CONNECTION_LIMIT 512
#define PER_IP_CONNECTION_LIMIT 64
#define CONNECTION_TIMEOUT_S 30

const char *const hc_http_route_paths[ROUTE_COUNT] = {
	"/list", "/spawn", "/stop", "/logs", "/healthz", "/metrics", "/members", "/event",
	"/query", "/keys", "/proofs", "/proofs/verify", "/policy/explain", "/beacon/attest",
	"/cluster/state", "/spawn/progress", "other",
};

/* Status codes we answer with, for the request counter. */
static const unsigned counted_codes[] = { 200, 400, 401, 403, 404, 405, 409,
					  413, 415, 500, 503, 504 };
#define NCODES (sizeof(counted_codes) / sizeof(counted_codes[0]))
_Static_assert(NCODES == HC_HTTP_NCODES, "struct hc_http counts each code");

static void schedule(struct hc_http *h);

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
					r == ROUTE_SPAWN || r == ROUTE_EVENT || r == ROUTE_QUERY ||
							r == ROUTE_STOP || r == ROUTE_KEYS ||
							r == ROUTE_POLICY_EXPLAIN
						? "POST"
						: "GET, HEAD");
	if (code == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					"Bearer realm=\"hypercore\"");
	ret = MHD_queue_response(conn, code, resp);
	MHD_destroy_response(resp);
	count(h, r, code);
	return ret;
}

/* Sends {"<key>": value} + "\n" (with the /logs next-line header when
 * given). Takes the reference to value. */
enum MHD_Result hc_http_send_json_hdr(struct hc_http *h, struct MHD_Connection *conn,
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

enum MHD_Result hc_http_send_json(struct hc_http *h, struct MHD_Connection *conn, enum route r,
				  unsigned code, const char *key, json_t *value)
{
	return hc_http_send_json_hdr(h, conn, r, code, key, value, NULL);
}

enum MHD_Result hc_http_send_error(struct hc_http *h, struct MHD_Connection *conn, enum route r,
				   unsigned code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return hc_http_send_json(h, conn, r, code, "error", json_string(msg));
}

enum MHD_Result hc_http_send_text(struct hc_http *h, struct MHD_Connection *conn, enum route r,
				  const char *type, char *text, size_t len)
{
	return send_body(h, conn, r, MHD_HTTP_OK, type, text, len, NULL);
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
		return hc_http_send_json_hdr(h, conn, req->route, req->answer_code,
					     req->answer_code == MHD_HTTP_OK ? "response" : "error", answer,
					     req->next_line);
	}
	if (req->conn) /* suspended: MHD calls again once resumed */
		return MHD_YES;
	return hc_http_dispatch(h, conn, url, method, req);
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

int64_t hc_http_on_timeout(struct hc_loop *loop, uint64_t id, void *arg)
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
	h->timer = hc_loop_add_timer(h->api->loop, ms, hc_http_on_timeout, h);
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
			const char *labels[] = { "path", hc_http_route_paths[r], "code", code, NULL };

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

struct hc_http *hc_api_http_new(struct hc_api *api, int listen_fd, struct hc_err *err)
{
	struct hc_http *h = calloc(1, sizeof(*h));
	const union MHD_DaemonInfo *info;
	int r;

	if (!h) {
		close(listen_fd);
		hc_err_set(err, -ENOMEM, "out of memory");
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
		hc_err_set(err, -EIO, "cannot start the HTTP server");
		free(h);
		return NULL;
	}
	info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_EPOLL_FD);
	h->epfd = info ? info->epoll_fd : -1;
	info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
	h->port = info ? info->port : 0;
	if (h->epfd < 0) {
		hc_err_set(err, -EIO, "microhttpd gave no epoll fd");
		goto fail;
	}
	r = hc_loop_add_fd(api->loop, h->epfd, HC_LOOP_READ, on_epoll_ready, h);
	if (r < 0) {
		hc_err_set(err, r, "cannot watch the HTTP server: %s", strerror(-r));
		h->epfd = -1;
		goto fail;
	}
	if (hc_metrics_register(api->metrics, collect, h) < 0) {
		hc_err_set(err, -ENOMEM, "out of memory");
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
		hc_http_resume(req, 503, json_string("agent shutting down")); /* unlinks it */
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
