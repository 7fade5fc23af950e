/* The CLI's calls to the agent's HTTP API, on agent/httpc. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "addr/addr.h"
#include "httpc/httpc.h"

int hc_cli_http(const char *addr, const char *method, const char *path, const void *payload,
		size_t payload_len, int timeout_ms, int *status, char **body, size_t *body_len,
		struct hc_err *err)
{
	struct hc_httpc_request rq = {
		.method = method,
		.path = path,
		.payload = payload,
		.payload_len = payload_len,
		/* /keys wants JSON; /event and /query take any payload */
		.content_type = strcmp(method, "POST") == 0 ? "application/json" : NULL,
		.bearer = hc_cli_token(),
		.timeout_ms = timeout_ms,
	};
	struct hc_httpc_response resp;
	char target[128];
	struct hc_err why;
	struct hc_addr a;
	int r;

	if (hc_addr_dial_target(addr, target, sizeof(target), &why) < 0 ||
	    hc_addr_parse(target, false, &a, &why) < 0) {
		hc_err_set(err, -EINVAL, "invalid address %s: %s", addr, why.msg);
		return -EINVAL;
	}
	rq.host = target;
	r = hc_httpc_request(&a, &rq, &resp);
	if (r == -E2BIG) {
		hc_err_set(err, r, "request too long");
	} else if (r == -EBADMSG) {
		hc_err_set(err, r, "the agent at %s sent no valid HTTP answer", target);
	} else if (r == -ECONNREFUSED || r == -ENETUNREACH || r == -EHOSTUNREACH ||
		   r == -ETIMEDOUT) {
		hc_err_set(err, r, "cannot reach the agent at %s: %s (is `hypercore cluster` "
			   "running there?)",
			   target, strerror(-r));
	} else if (r < 0) {
		hc_err_set(err, r, "the agent at %s did not answer: %s", target, strerror(-r));
	}
	if (r < 0)
		return r;
	*status = resp.status;
	*body = resp.body;
	*body_len = resp.body_len;
	return 0;
}
