/* The CLI's calls to the agent's HTTP API, on agent/httpc. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "addr/addr.h"
#include "httpc/httpc.h"

int hc_cli_http(const char *addr, const char *method, const char *path, const void *payload,
		size_t payload_len, int timeout_ms, int *status, char **body, size_t *body_len,
		char *err, size_t errlen)
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
	char target[128], why[256];
	struct hc_addr a;
	int r;

	if (hc_addr_dial_target(addr, target, sizeof(target), why, sizeof(why)) < 0 ||
	    hc_addr_parse(target, false, &a, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "invalid address %s: %s", addr, why);
		return -EINVAL;
	}
	rq.host = target;
	r = hc_httpc_request(&a, &rq, &resp);
	if (r == -E2BIG) {
		snprintf(err, errlen, "request too long");
	} else if (r == -EBADMSG) {
		snprintf(err, errlen, "the agent at %s sent no valid HTTP answer", target);
	} else if (r == -ECONNREFUSED || r == -ENETUNREACH || r == -EHOSTUNREACH ||
		   r == -ETIMEDOUT) {
		snprintf(err, errlen, "cannot reach the agent at %s: %s (is `hypercore cluster` "
				      "running there?)",
			 target, strerror(-r));
	} else if (r < 0) {
		snprintf(err, errlen, "the agent at %s did not answer: %s", target, strerror(-r));
	}
	if (r < 0)
		return r;
	*status = resp.status;
	*body = resp.body;
	*body_len = resp.body_len;
	return 0;
}
