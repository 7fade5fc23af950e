/*
 * The cluster's keys over HTTP. POST /keys: rotating the gossip key without
 * downtime, as `serf keys` does: install the new key everywhere, make it
 * primary, then remove the old one; every member answers and the answer
 * counts them. GET /beacon/attest: a node's proof that it holds the key
 * pinned for it, fresh for our nonce.
 */
#include "api/api_int.h"
#include "api/http_int.h"

#include <errno.h>
#include <string.h>

#define HC_LOG_MODULE "http"
#include "cluster/cluster.h"
#include "log/log.h"

static void keys_done(void *arg, unsigned ok, unsigned failed)
{
	struct request *req = arg;

	if (failed)
		hc_http_resume(req, 500,
			       json_sprintf("%u of %u members did not apply it", failed, ok + failed));
	else
		hc_http_resume(req, 200, json_pack("{s:i}", "members", (int)ok));
}

static int parse_op(const char *s, enum hc_gossip_key_op *op)
{
	static const char *const names[] = { "install", "use", "remove" };

	for (int i = 0; s && i < 3; i++)
		if (strcmp(s, names[i]) == 0) {
			*op = (enum hc_gossip_key_op)i;
			return 0;
		}
	return -EINVAL;
}

enum MHD_Result hc_http_post_keys(struct hc_http *h, struct MHD_Connection *conn,
				  struct request *req)
{
	enum hc_gossip_key_op op;
	json_t *doc, *key;
	int r;

	if (parse_op(MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "op"), &op) < 0)
		return hc_http_send_error(h, conn, ROUTE_KEYS, 400,
					  "want op=install, op=use or op=remove");
	/* the key in the body, not the URL: URLs end up in logs */
	doc = req->body ? json_loadb(req->body, req->len, 0, NULL) : NULL;
	key = json_is_object(doc) ? json_object_get(doc, "key") : NULL;
	if (!json_is_string(key)) {
		json_decref(doc);
		return hc_http_send_error(h, conn, ROUTE_KEYS, 400,
					  "want a body {\"key\": \"<base64 key>\"}");
	}
	r = hc_cluster_key_op(h->api->cluster, op, json_string_value(key), keys_done, req);
	json_decref(doc);
	if (r == -EINVAL)
		return hc_http_send_error(h, conn, ROUTE_KEYS, 400,
					  "not a gossip key (base64 of 16, 24 or 32 bytes)");
	if (r < 0)
		return hc_http_send_error(h, conn, ROUTE_KEYS, 503, "cannot ask the members: %s",
					  strerror(-r));
	hc_log(HC_LOG_INFO, "key %s asked of every member", op == HC_GOSSIP_KEY_INSTALL ? "install"
							 : op == HC_GOSSIP_KEY_USE ? "use"
										   : "remove");
	hc_http_suspend(h, conn, req, ROUTE_KEYS);
	return MHD_YES;
}

static void attested(void *arg, int result, const char *why)
{
	struct request *req = arg;

	if (result == 0)
		hc_http_resume(req, 200, json_pack("{s:s, s:s}", "node", req->attest_node,
						   "result", "verified"));
	else
		hc_http_resume(req, result == -ETIMEDOUT || result == -ENOKEY ? 503 : 409,
			       json_sprintf("%s: %s", req->attest_node, why ? why : strerror(-result)));
}

enum MHD_Result hc_http_get_attest(struct hc_http *h, struct MHD_Connection *conn,
				   struct request *req)
{
	const char *node = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "node");
	int r;

	if (!node || !*node || strlen(node) >= sizeof(req->attest_node))
		return hc_http_send_error(h, conn, ROUTE_ATTEST, 400, "want ?node=NAME");
	snprintf(req->attest_node, sizeof(req->attest_node), "%s", node);
	r = hc_cluster_attest(h->api->cluster, node, attested, req);
	if (r == -ENOENT)
		return hc_http_send_error(h, conn, ROUTE_ATTEST, 404, "no alive member %s", node);
	if (r < 0)
		return hc_http_send_error(h, conn, ROUTE_ATTEST, 503, "cannot ask %s: %s", node,
					  strerror(-r));
	hc_http_suspend(h, conn, req, ROUTE_ATTEST);
	return MHD_YES;
}
