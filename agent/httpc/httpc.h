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

/*
 * Sends method path (with payload, if any) to a and reads the answer within
 * timeout_ms. host goes in the Host header; want_header (or NULL) names a
 * response header to copy into out->header. Returns 0 with *out filled, or
 * -errno: connect errors as connect(2) gives them, -ETIMEDOUT, -EMSGSIZE for
 * an answer over 16 MiB, -EBADMSG for one that is not HTTP, -E2BIG for a
 * request line too long.
 */
int hc_httpc_request(const struct hc_addr *a, const char *method, const char *path,
		     const char *host, const void *payload, size_t payload_len, int timeout_ms,
		     const char *want_header, struct hc_httpc_response *out);

#endif /* HC_HTTPC_H */
