/*
 * Unary gRPC over the grpc C core with protobuf-c messages: a server that
 * dispatches a method table on the event loop, and a blocking client with
 * deadlines and metadata.
 */
#ifndef HC_RPC_H
#define HC_RPC_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

#include "addr/addr.h"
#include "base/base.h"

struct hc_loop;
struct hc_metrics_writer;

/* Status codes: the values are fixed by the gRPC protocol. */
enum hc_rpc_code {
	HC_RPC_OK = 0,
	HC_RPC_CANCELLED = 1,
	HC_RPC_UNKNOWN = 2,
	HC_RPC_INVALID_ARGUMENT = 3,
	HC_RPC_DEADLINE_EXCEEDED = 4,
	HC_RPC_NOT_FOUND = 5,
	HC_RPC_ALREADY_EXISTS = 6,
	HC_RPC_PERMISSION_DENIED = 7,
	HC_RPC_RESOURCE_EXHAUSTED = 8,
	HC_RPC_FAILED_PRECONDITION = 9,
	HC_RPC_ABORTED = 10,
	HC_RPC_OUT_OF_RANGE = 11,
	HC_RPC_UNIMPLEMENTED = 12,
	HC_RPC_INTERNAL = 13,
	HC_RPC_UNAVAILABLE = 14,
	HC_RPC_DATA_LOSS = 15,
	HC_RPC_UNAUTHENTICATED = 16,
};
#define HC_RPC_NCODES 17

/* "INVALID_ARGUMENT" etc.; "UNKNOWN_CODE" outside the range. */
const char *hc_rpc_code_name(int code);

/* The -errno a failed call's code stands for: NOT_FOUND -ENOENT,
 * ALREADY_EXISTS -EEXIST, INVALID_ARGUMENT -EINVAL, UNAVAILABLE
 * -ECONNREFUSED, DEADLINE_EXCEEDED -ETIMEDOUT, RESOURCE_EXHAUSTED -ENOSPC,
 * PERMISSION_DENIED and UNAUTHENTICATED -EACCES, any other -EIO. */
int hc_rpc_code_errno(enum hc_rpc_code code);

/* ---- server ---- */

struct hc_rpc_server;
struct hc_rpc_call; /* one unary call being served */

/*
 * Called on the loop thread with the decoded request, which the call owns.
 * The handler must end the call exactly once with hc_rpc_reply() or
 * hc_rpc_fail(), now or later from the loop thread; the call (and request)
 * is freed by that.
 */
typedef void hc_rpc_handler_fn(struct hc_rpc_call *call, const ProtobufCMessage *request,
			       void *arg);

struct hc_rpc_method {
	const char *path; /* "/package.Service/Method" */
	const ProtobufCMessageDescriptor *request_type;
	hc_rpc_handler_fn *handler;
	void *arg;
};

/*
 * Listens on addr (port 0 picks one) and starts serving methods, which must
 * outlive the server. Unknown methods get UNIMPLEMENTED, undecodable requests
 * INVALID_ARGUMENT, requests over 4 MiB RESOURCE_EXHAUSTED; none of them
 * reach a handler. Returns NULL with a one-line reason in err on failure.
 */
struct hc_rpc_server *hc_rpc_server_new(struct hc_loop *loop, const struct hc_addr *addr,
					const struct hc_rpc_method *methods, size_t nmethods,
					struct hc_err *err);
/* The TCP port actually bound. */
int hc_rpc_server_port(const struct hc_rpc_server *srv);
/*
 * Stops accepting, fails calls still in a handler with UNAVAILABLE, and waits
 * (running the loop) until grpc has returned every call. Handlers must not
 * touch their calls once this has started. Loop thread only; NULL is fine.
 */
void hc_rpc_server_free(struct hc_rpc_server *srv);

/* Writes hypercore_grpc_requests_total{method,code} (a metrics collector). */
void hc_rpc_server_collect(struct hc_metrics_writer *w, void *srv);

void hc_rpc_reply(struct hc_rpc_call *call, const ProtobufCMessage *response);
void hc_rpc_fail(struct hc_rpc_call *call, enum hc_rpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The method path of a call, for logs. */
const char *hc_rpc_call_path(const struct hc_rpc_call *call);

/* The value of the request's metadata key (lowercase) copied into buf as a
 * string, or NULL when absent, binary-valued or longer than len - 1. */
const char *hc_rpc_call_metadata(const struct hc_rpc_call *call, const char *key, char *buf,
				 size_t len);

/* The caller's address as gRPC names it ("ipv4:10.0.0.2:51234"), into buf. */
const char *hc_rpc_call_peer(const struct hc_rpc_call *call, char *buf, size_t len);

/* ---- client ---- */

struct hc_rpc_client;

struct hc_rpc_metadata {
	const char *key; /* lowercase, as HTTP/2 requires */
	const char *value;
};

struct hc_rpc_status {
	enum hc_rpc_code code;
	char message[512];
};

/* target: "HOST:PORT" or "unix:/abs/path". Connects lazily, so this fails
 * only for lack of memory (NULL, errno set). Thread-safe to share. */
struct hc_rpc_client *hc_rpc_client_new(const char *target);
void hc_rpc_client_free(struct hc_rpc_client *client);

/*
 * Calls path with request and waits, at most timeout_ms, for the answer.
 * On success returns 0 and *response, which the caller frees with
 * protobuf_c_message_free_unpacked(*response, NULL). Otherwise returns
 * hc_rpc_code_errno(status->code), *response stays NULL and status says why
 * (UNAVAILABLE if nothing answers, DEADLINE_EXCEEDED on timeout, the
 * server's code and message otherwise).
 * Blocks the calling thread; several threads may call at once.
 */
int hc_rpc_client_call(struct hc_rpc_client *client, const char *path,
		       const ProtobufCMessage *request,
		       const ProtobufCMessageDescriptor *response_type, ProtobufCMessage **response,
		       const struct hc_rpc_metadata *md, size_t nmd, int timeout_ms,
		       struct hc_rpc_status *status);

#endif /* HC_RPC_H */
