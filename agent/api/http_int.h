/* Private to agent/api's HTTP files: the server's state and requests
 * (http.c, the libmicrohttpd glue) shared with the endpoints
 * (http_endpoints.c). */
#ifndef HC_API_HTTP_INT_H
#define HC_API_HTTP_INT_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api_int.h"
#include "base/list.h"

#define MAX_BODY (1u << 20)

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
	ROUTE_KEYS,
	ROUTE_PROOFS,
	ROUTE_PROOFS_VERIFY,
	ROUTE_POLICY_EXPLAIN,
	ROUTE_ATTEST,
	ROUTE_CLUSTER_STATE,
	ROUTE_SPAWN_PROGRESS,
	ROUTE_OTHER,
	ROUTE_COUNT,
};

/* Each route's path ("other" for ROUTE_OTHER), also its metrics label. */
extern const char *const hc_http_route_paths[ROUTE_COUNT];

/* Status codes the request counter tells apart (counted_codes in http.c). */
#define HC_HTTP_NCODES 12

struct hc_http {
	struct hc_api *api;
	struct MHD_Daemon *daemon;
	int epfd;
	int port;
	uint64_t timer;
	struct hc_list suspended; /* requests waiting for a query or an operation */
	uint64_t requests[ROUTE_COUNT][HC_HTTP_NCODES + 1]; /* last column: any other code */
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
	char attest_node[136];        /* /beacon/attest: the node asked */
	struct hc_list link;          /* in h->suspended while suspended */
};

/* ---- http.c ---- */

enum MHD_Result hc_http_send_json_hdr(struct hc_http *h, struct MHD_Connection *conn,
				      enum route r, unsigned code, const char *key, json_t *value,
				      const char *next_line);
enum MHD_Result hc_http_send_json(struct hc_http *h, struct MHD_Connection *conn, enum route r,
				  unsigned code, const char *key, json_t *value);
enum MHD_Result hc_http_send_error(struct hc_http *h, struct MHD_Connection *conn, enum route r,
				   unsigned code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
enum MHD_Result hc_http_send_text(struct hc_http *h, struct MHD_Connection *conn, enum route r,
				  const char *type, char *text, size_t len);
int64_t hc_http_on_timeout(struct hc_loop *loop, uint64_t id, void *arg);

/* ---- http_endpoints.c ---- */

void hc_http_resume(struct request *req, unsigned code, json_t *answer);
/* Holds the request's connection until hc_http_resume answers it. */
void hc_http_suspend(struct hc_http *h, struct MHD_Connection *conn, struct request *req,
		     enum route r);

/* ---- http_keys.c ---- */

/* POST /keys?op=install|use|remove, body {"key": "<base64>"}. */
enum MHD_Result hc_http_post_keys(struct hc_http *h, struct MHD_Connection *conn,
				  struct request *req);

/* GET /beacon/attest?node=NAME: a fresh BEACON_ATTEST of that node. */
enum MHD_Result hc_http_get_attest(struct hc_http *h, struct MHD_Connection *conn,
				   struct request *req);
/* ---- http_progress.c ---- */

/* GET /spawn/progress[?id=ID]: this node's spawns in flight and its image
 * downloads (docs/api.md). */
enum MHD_Result hc_http_get_spawn_progress(struct hc_http *h, struct MHD_Connection *conn);

enum MHD_Result hc_http_dispatch(struct hc_http *h, struct MHD_Connection *conn, const char *url,
				 const char *method, const struct request *req);

#endif /* HC_API_HTTP_INT_H */
