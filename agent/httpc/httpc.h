/*
 * A minimal blocking HTTP/1.1 client for talking to hypercore agents' HTTP
 * APIs: one request per connection (Connection: close), whole answers read
 * into memory (at most 16 MiB), one deadline for everything. Used by the CLI
 * and by agents fetching from each other (logs from a workload's owner).
 */
#ifndef HC_HTTPC_H
#define HC_HTTPC_H

#include <stddef.h>

#include "addr/addr.h"

struct hc_httpc_response {
	int status;
	char *body; /* NUL-terminated; the caller frees it */
	size_t body_len;
	char header[128]; /* the value of the header asked for; "" if absent */
};

struct hc_httpc_request {
	const char *method, *path;
	const char *host; /* the Host header */
	const void *payload;
	size_t payload_len;
	const char *content_type; /* NULL: no Content-Type header */
	const char *bearer;       /* NULL: no Authorization header */
	int timeout_ms;           /* for everything: connect, send, the whole answer */
	const char *want_header;  /* NULL, or a response header to copy into out->header */
};

/*
 * Sends req to a and reads the answer within req->timeout_ms. Returns 0
 * with *out filled, or -errno: connect errors as connect(2) gives them,
 * -ETIMEDOUT, -EMSGSIZE for an answer over 16 MiB, -EBADMSG for one that is
 * not HTTP, -E2BIG for a request head too long, -EINVAL for a header value
 * holding a line break.
 */
int hc_httpc_request(const struct hc_addr *a, const struct hc_httpc_request *req,
		     struct hc_httpc_response *out);

#endif /* HC_HTTPC_H */
