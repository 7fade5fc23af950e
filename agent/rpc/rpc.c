/*
 * gRPC C core glue. Server design (see shared/docs/grpc-core.md): one pump
 * thread blocks in grpc_completion_queue_next() and hands each event to the
 * loop thread through an embedded loop task; everything else (decoding,
 * handlers, starting batches, re-posting requests) happens on the loop thread.
 */
#include "rpc/rpc.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#define HC_LOG_MODULE "rpc"
#include "base/list.h"
#include "log/log.h"
#include "loop/loop.h"
#include "metrics/metrics.h"

/* Requests kept posted per method: enough for bursts of concurrent calls;
 * each completed request is replaced at once. */
#define REQUESTS_PER_METHOD 4
/* Calls in a handler or waiting for one's answer at once; more are refused
 * at once (RESOURCE_EXHAUSTED), so a flood costs a refusal each, not memory
 * and work held for as long as the clients wait. */
#define MAX_CALLS_IN_FLIGHT 1024
#define GENERIC_REQUESTS 2
#define SHUTDOWN_DRAIN_MS 5000

static const char *const code_names[HC_RPC_NCODES] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
};

const char *hc_rpc_code_name(int code)
{
	if (code < 0 || code >= HC_RPC_NCODES)
		return "UNKNOWN_CODE";
	return code_names[code];
}

int hc_rpc_code_errno(enum hc_rpc_code code)
{
	switch (code) {
	case HC_RPC_NOT_FOUND:
		return -ENOENT;
	case HC_RPC_ALREADY_EXISTS:
		return -EEXIST;
	case HC_RPC_INVALID_ARGUMENT:
		return -EINVAL;
	case HC_RPC_UNAVAILABLE:
		return -ECONNREFUSED;
	case HC_RPC_DEADLINE_EXCEEDED:
		return -ETIMEDOUT;
	case HC_RPC_RESOURCE_EXHAUSTED:
		return -ENOSPC;
	case HC_RPC_PERMISSION_DENIED:
	case HC_RPC_UNAUTHENTICATED:
		return -EACCES;
	default:
		return -EIO;
	}
}

/* ---- grpc library lifetime and logging ---- */

static void route_grpc_log(gpr_log_func_args *args)
{
	/* grpc's errors are usually a peer's problem, not ours: one level lower. */
	enum hc_log_level level = args->severity == GPR_LOG_SEVERITY_ERROR ? HC_LOG_WARN
										: HC_LOG_DEBUG;

	hc_log(level, "grpc: %s", args->message);
}

/*
 * Debian builds abseil without NDEBUG, so every absl::Mutex inside grpc
 * feeds abseil's debug deadlock detector: a global graph of which lock was
 * taken while holding which, kept in memory of its own (LowLevelAlloc) and
 * updated under one global lock. Over an hour of an agent's API and CRI
 * calls that graph grew past 400 KB and kept growing (docs/operations.md).
 * abseil's documented switch turns it off; it is C++, so it is found by its
 * symbol: Debian's inline namespace, then upstream's for this release. A
 * build without it (an NDEBUG abseil) has nothing to turn off.
 */
static void absl_deadlock_detection_off(void)
{
	static const char *const names[] = {
		"_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
		"_ZN4absl12lts_2022062329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
	};
	enum { ABSL_ON_DEADLOCK_CYCLE_IGNORE = 0 }; /* absl::OnDeadlockCycle::kIgnore */

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		void (*set_mode)(int);
		void *sym = dlsym(RTLD_DEFAULT, names[i]);

		if (!sym)
			continue;
		*(void **)&set_mode = sym;
		set_mode(ABSL_ON_DEADLOCK_CYCLE_IGNORE);
		return;
	}
}

static pthread_once_t absl_once = PTHREAD_ONCE_INIT;

/* grpc_init() is reference-counted; every server and client holds one. */
static void grpc_ref(void)
{
	pthread_once(&absl_once, absl_deadlock_detection_off);
	gpr_set_log_function(route_grpc_log);
	grpc_init();
}

static void grpc_unref(void)
{
	grpc_shutdown();
}

/* ---- server ---- */

enum tag_kind {
	TAG_CALL,     /* a hc_rpc_call: request completion, then batch completion */
	TAG_SHUTDOWN, /* grpc_server_shutdown_and_notify */
};

enum call_state {
	CALL_REQUESTED, /* posted to grpc, waiting for a client */
	CALL_HANDLING,  /* a handler owns it */
	CALL_SENDING,   /* reply batch started */
};

/* Every tag starts with this header; the pump posts its embedded task. */
struct tag {
	enum tag_kind kind;
	struct hc_rpc_server *srv;
	struct hc_loop_task task;
	int success;
};

struct hc_rpc_call {
	struct tag tag;
	enum call_state state;
	long method; /* index in srv->methods, -1 for the generic (unknown) path */
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_call_details details; /* generic requests only */
	grpc_byte_buffer *payload; /* registered requests only */
	ProtobufCMessage *request;
	grpc_byte_buffer *response;
	grpc_slice status_details;
	int cancelled;
	bool in_handler; /* counted in srv->nhandling until answered */
	enum hc_rpc_code code;
	struct hc_list link; /* srv->live */
};

struct method_slot {
	const struct hc_rpc_method *m;
	void *handle; /* from grpc_server_register_method */
	uint64_t counts[HC_RPC_NCODES];
};

struct hc_rpc_server {
	struct hc_loop *loop;
	grpc_server *server;
	grpc_completion_queue *cq;
	pthread_t pump;
	bool pump_started;
	struct method_slot *methods;
	size_t nmethods;
	uint64_t unknown_counts[HC_RPC_NCODES];
	struct hc_list live; /* every call struct grpc or a handler holds */
	size_t nlive;
	size_t nhandling; /* given to a handler, not yet answered */
	struct tag shutdown_tag;
	bool shutting_down;
	bool shutdown_seen;
	int port;
};

static void on_event(void *arg);

static void *pump_main(void *arg)
{
	struct hc_rpc_server *srv = arg;

	for (;;) {
		grpc_event ev = grpc_completion_queue_next(
			srv->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		struct tag *t;

		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			return NULL;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		t = ev.tag;
		t->success = ev.success;
		hc_loop_post_task(srv->loop, &t->task);
	}
}

static struct hc_rpc_call *call_new(struct hc_rpc_server *srv, long method)
{
	struct hc_rpc_call *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->tag.kind = TAG_CALL;
	c->tag.srv = srv;
	c->tag.task.fn = on_event;
	c->tag.task.arg = &c->tag;
	c->method = method;
	c->state = CALL_REQUESTED;
	grpc_metadata_array_init(&c->md);
	grpc_call_details_init(&c->details);
	hc_list_insert(&srv->live, &c->link);
	srv->nlive++;
	return c;
}

static void call_free(struct hc_rpc_call *c)
{
	struct hc_rpc_server *srv = c->tag.srv;

	hc_list_remove(&c->link);
	srv->nlive--;

	if (c->request)
		protobuf_c_message_free_unpacked(c->request, NULL);
	if (c->payload)
		grpc_byte_buffer_destroy(c->payload);
	if (c->response)
		grpc_byte_buffer_destroy(c->response);
	grpc_slice_unref(c->status_details);
	grpc_metadata_array_destroy(&c->md);
	grpc_call_details_destroy(&c->details);
	if (c->call)
		grpc_call_unref(c->call);
	free(c);
}

/* Posts one request for a registered method (index >= 0) or for unknown
 * paths (-1), so grpc has somewhere to put the next call. */
static void post_request(struct hc_rpc_server *srv, long method)
{
	struct hc_rpc_call *c;
	grpc_call_error e;

	if (srv->shutting_down)
		return;
	c = call_new(srv, method);
	if (!c) {
		hc_log(HC_LOG_ERROR, "out of memory posting a request; serving with fewer");
		return;
	}
	if (method >= 0)
		e = grpc_server_request_registered_call(srv->server, srv->methods[method].handle,
							&c->call, &c->deadline, &c->md,
							&c->payload, srv->cq, srv->cq, c);
	else
		e = grpc_server_request_call(srv->server, &c->call, &c->details, &c->md, srv->cq,
					     srv->cq, c);
	if (e != GRPC_CALL_OK) {
		hc_log(HC_LOG_ERROR, "cannot post a gRPC request: error %d", e);
		call_free(c);
	}
}

/* Starts the final batch: initial metadata, message (on success), status. */
static void send_reply(struct hc_rpc_call *c, enum hc_rpc_code code, const char *details)
{
	grpc_op ops[4];
	grpc_op *op = ops;
	grpc_call_error e;

	c->state = CALL_SENDING;
	if (c->in_handler) {
		c->in_handler = false;
		c->tag.srv->nhandling--;
	}
	c->code = code;
	memset(ops, 0, sizeof(ops));
	op->op = GRPC_OP_SEND_INITIAL_METADATA;
	op++;
	if (code == HC_RPC_OK && c->response) {
		op->op = GRPC_OP_SEND_MESSAGE;
		op->data.send_message.send_message = c->response;
		op++;
	}
	op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	op->data.send_status_from_server.status = (grpc_status_code)code;
	if (details && *details) {
		c->status_details = grpc_slice_from_copied_string(details);
		op->data.send_status_from_server.status_details = &c->status_details;
	}
	op++;
	op->op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op->data.recv_close_on_server.cancelled = &c->cancelled;
	op++;
	e = grpc_call_start_batch(c->call, ops, (size_t)(op - ops), c, NULL);
	if (e != GRPC_CALL_OK) {
		/* No completion will come for a batch that did not start. */
		hc_log(HC_LOG_ERROR, "%s: cannot send reply: grpc error %d",
		       hc_rpc_call_path(c), e);
		call_free(c);
	}
}

const char *hc_rpc_call_path(const struct hc_rpc_call *c)
{
	if (c->method >= 0)
		return c->tag.srv->methods[c->method].m->path;
	return "(unknown method)";
}

const char *hc_rpc_call_metadata(const struct hc_rpc_call *c, const char *key, char *buf,
				 size_t len)
{
	size_t klen = strlen(key);

	for (size_t i = 0; i < c->md.count; i++) {
		const grpc_metadata *m = &c->md.metadata[i];
		size_t vlen = GRPC_SLICE_LENGTH(m->value);

		if (GRPC_SLICE_LENGTH(m->key) != klen ||
		    memcmp(GRPC_SLICE_START_PTR(m->key), key, klen) != 0)
			continue;
		/* "-bin" keys carry bytes, and a value with a NUL is not text */
		if (vlen >= len || (klen > 4 && strcmp(key + klen - 4, "-bin") == 0) ||
		    memchr(GRPC_SLICE_START_PTR(m->value), '\0', vlen))
			return NULL;
		memcpy(buf, GRPC_SLICE_START_PTR(m->value), vlen);
		buf[vlen] = '\0';
		return buf;
	}
	return NULL;
}

const char *hc_rpc_call_peer(const struct hc_rpc_call *c, char *buf, size_t len)
{
	char *peer = grpc_call_get_peer(c->call);

	snprintf(buf, len, "%s", peer ? peer : "unknown");
	gpr_free(peer);
	return buf;
}

void hc_rpc_reply(struct hc_rpc_call *c, const ProtobufCMessage *response)
{
	size_t len = protobuf_c_message_get_packed_size(response);
	grpc_slice s = grpc_slice_malloc(len);

	protobuf_c_message_pack(response, GRPC_SLICE_START_PTR(s));
	c->response = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	send_reply(c, HC_RPC_OK, NULL);
}

void hc_rpc_fail(struct hc_rpc_call *c, enum hc_rpc_code code, const char *fmt, ...)
{
	char details[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(details, sizeof(details), fmt, ap);
	va_end(ap);
	if (code == HC_RPC_OK)
		code = HC_RPC_UNKNOWN; /* a failure must not read as success */
	send_reply(c, code, details);
}

/* Reads a whole byte buffer and decodes it as type. NULL if it does not parse. */
static ProtobufCMessage *decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *type)
{
	grpc_byte_buffer_reader rd;
	ProtobufCMessage *msg;
	grpc_slice flat;

	if (!grpc_byte_buffer_reader_init(&rd, bb))
		return NULL;
	flat = grpc_byte_buffer_reader_readall(&rd);
	grpc_byte_buffer_reader_destroy(&rd);
	msg = protobuf_c_message_unpack(type, NULL, GRPC_SLICE_LENGTH(flat),
					GRPC_SLICE_START_PTR(flat));
	grpc_slice_unref(flat);
	return msg;
}

static void on_new_call(struct hc_rpc_call *c)
{
	struct hc_rpc_server *srv = c->tag.srv;
	const struct hc_rpc_method *m;

	post_request(srv, c->method); /* keep the pool full */
	c->state = CALL_HANDLING;
	if (c->method < 0) {
		char *path = grpc_slice_to_c_string(c->details.method);

		hc_log(HC_LOG_DEBUG, "unknown method %s", path);
		hc_rpc_fail(c, HC_RPC_UNIMPLEMENTED, "unknown method %s", path);
		gpr_free(path);
		return;
	}
	m = srv->methods[c->method].m;
	if (srv->nhandling >= MAX_CALLS_IN_FLIGHT) {
		hc_rpc_fail(c, HC_RPC_RESOURCE_EXHAUSTED, "%d calls in flight: try again later",
			    MAX_CALLS_IN_FLIGHT);
		return;
	}
	if (!c->payload) {
		hc_rpc_fail(c, HC_RPC_INVALID_ARGUMENT, "%s: request has no message", m->path);
		return;
	}
	c->request = decode(c->payload, m->request_type);
	if (!c->request) {
		hc_log(HC_LOG_DEBUG, "%s: undecodable request", m->path);
		hc_rpc_fail(c, HC_RPC_INVALID_ARGUMENT, "%s: cannot decode %s", m->path,
			    m->request_type->name);
		return;
	}
	c->in_handler = true;
	srv->nhandling++;
	m->handler(c, c->request, m->arg);
}

static void on_call_done(struct hc_rpc_call *c)
{
	struct hc_rpc_server *srv = c->tag.srv;
	uint64_t *counts = c->method >= 0 ? srv->methods[c->method].counts : srv->unknown_counts;

	/* A cancelled call's status never reached the client: count what the
	 * client saw. */
	counts[c->cancelled ? HC_RPC_CANCELLED : c->code]++;
	call_free(c);
}

static void on_event(void *arg)
{
	struct tag *t = arg;
	struct hc_rpc_call *c;

	if (t->kind == TAG_SHUTDOWN) {
		t->srv->shutdown_seen = true;
		return;
	}
	c = (struct hc_rpc_call *)t;
	switch (c->state) {
	case CALL_REQUESTED:
		if (!t->success) { /* the server is shutting down */
			call_free(c);
			return;
		}
		on_new_call(c);
		return;
	case CALL_SENDING:
		on_call_done(c);
		return;
	case CALL_HANDLING:
		hc_log(HC_LOG_ERROR, "unexpected event for a call in a handler");
		return;
	}
}

static int register_methods(struct hc_rpc_server *srv, const struct hc_rpc_method *methods,
			    size_t n, struct hc_err *err)
{
	srv->methods = calloc(n ? n : 1, sizeof(*srv->methods));
	if (!srv->methods) {
		hc_err_set(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		srv->methods[i].m = &methods[i];
		srv->methods[i].handle = grpc_server_register_method(
			srv->server, methods[i].path, NULL,
			GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
		if (!srv->methods[i].handle) {
			hc_err_set(err, -EINVAL, "cannot register gRPC method %s", methods[i].path);
			return -EINVAL;
		}
	}
	srv->nmethods = n;
	return 0;
}

struct hc_rpc_server *hc_rpc_server_new(struct hc_loop *loop, const struct hc_addr *addr,
					const struct hc_rpc_method *methods, size_t nmethods,
					struct hc_err *err)
{
	grpc_arg arg = {
		.type = GRPC_ARG_INTEGER,
		.key = (char *)GRPC_ARG_ALLOW_REUSEPORT,
		.value.integer = 0, /* a second agent on our port must fail, not share it */
	};
	grpc_channel_args args = { .num_args = 1, .args = &arg };
	grpc_server_credentials *creds;
	struct hc_rpc_server *srv;
	char where[64];
	int r;

	hc_addr_format(addr, where, sizeof(where));
	/* grpc reports bind failures only in its own log: probe first to give
	 * the user the real reason. */
	r = hc_addr_probe_tcp(addr);
	if (r < 0) {
		hc_err_set(err, r, "cannot listen on %s: %s", where, strerror(-r));
		return NULL;
	}
	srv = calloc(1, sizeof(*srv));
	if (!srv) {
		hc_err_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	grpc_ref();
	hc_list_init(&srv->live);
	srv->loop = loop;
	srv->shutdown_tag.kind = TAG_SHUTDOWN;
	srv->shutdown_tag.srv = srv;
	srv->shutdown_tag.task.fn = on_event;
	srv->shutdown_tag.task.arg = &srv->shutdown_tag;
	srv->server = grpc_server_create(&args, NULL);
	srv->cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
	if (register_methods(srv, methods, nmethods, err) < 0)
		goto fail;

	creds = grpc_insecure_server_credentials_create();
	srv->port = grpc_server_add_http2_port(srv->server, where, creds);
	grpc_server_credentials_release(creds);
	if (srv->port == 0) {
		hc_err_set(err, -EADDRINUSE,
			   "cannot listen on %s (address in use or not available)", where);
		goto fail;
	}
	grpc_server_start(srv->server);
	r = pthread_create(&srv->pump, NULL, pump_main, srv);
	if (r) {
		hc_err_set(err, -r, "cannot start the gRPC thread: %s", strerror(r));
		hc_rpc_server_free(srv);
		return NULL;
	}
	srv->pump_started = true;
	for (size_t i = 0; i < nmethods; i++)
		for (int k = 0; k < REQUESTS_PER_METHOD; k++)
			post_request(srv, (long)i);
	for (int k = 0; k < GENERIC_REQUESTS; k++)
		post_request(srv, -1);
	return srv;
fail:
	hc_rpc_server_free(srv);
	return NULL;
}

int hc_rpc_server_port(const struct hc_rpc_server *srv)
{
	return srv->port;
}

void hc_rpc_server_free(struct hc_rpc_server *srv)
{
	struct hc_rpc_call *c, *next;
	uint64_t deadline;

	if (!srv)
		return;
	srv->shutting_down = true;
	grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->shutdown_tag);
	grpc_server_cancel_all_calls(srv->server);
	/* Handlers that still hold calls lose them now: their clients were just
	 * cancelled, and the batch completion frees the state (or the failed
	 * start of the batch frees c at once: safe iteration). */
	hc_list_for_each_safe(c, next, &srv->live, link) {
		if (c->state == CALL_HANDLING)
			hc_rpc_fail(c, HC_RPC_UNAVAILABLE, "server shutting down");
	}
	if (srv->pump_started) {
		deadline = hc_loop_now_ms(srv->loop) + SHUTDOWN_DRAIN_MS;
		while (!(srv->shutdown_seen && srv->nlive == 0) &&
		       hc_loop_now_ms(srv->loop) < deadline)
			hc_loop_run_once(srv->loop, 100);
		if (srv->nlive)
			hc_log(HC_LOG_WARN, "gRPC shutdown: %zu calls not returned", srv->nlive);
	}
	grpc_server_destroy(srv->server);
	grpc_completion_queue_shutdown(srv->cq);
	if (srv->pump_started) {
		pthread_join(srv->pump, NULL);
		/* Events the pump posted after the drain loop gave up. */
		hc_loop_run_once(srv->loop, 0);
	} else {
		while (grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC),
						  NULL)
			       .type != GRPC_QUEUE_SHUTDOWN)
			;
	}
	grpc_completion_queue_destroy(srv->cq);
	while (!hc_list_empty(&srv->live))
		call_free(hc_list_first(&srv->live, struct hc_rpc_call, link));
	free(srv->methods);
	free(srv);
	grpc_unref();
}

void hc_rpc_server_collect(struct hc_metrics_writer *w, void *arg)
{
	struct hc_rpc_server *srv = arg;

	hc_metrics_family(w, "hypercore_grpc_requests_total", "counter",
			  "gRPC calls served, by method and status code.");
	for (size_t i = 0; i <= srv->nmethods; i++) {
		const uint64_t *counts = i < srv->nmethods ? srv->methods[i].counts
							   : srv->unknown_counts;
		const char *path = i < srv->nmethods ? srv->methods[i].m->path : "unknown";

		for (int code = 0; code < HC_RPC_NCODES; code++) {
			const char *labels[] = { "method", path, "code", code_names[code], NULL };

			if (counts[code] || (code == HC_RPC_OK && i < srv->nmethods))
				hc_metrics_sample(w, "hypercore_grpc_requests_total", labels,
						  (double)counts[code]);
		}
	}
}

/* ---- client ---- */

struct hc_rpc_client {
	grpc_channel *channel;
};

struct hc_rpc_client *hc_rpc_client_new(const char *target)
{
	struct hc_rpc_client *cl = calloc(1, sizeof(*cl));
	grpc_channel_credentials *creds;

	if (!cl)
		return NULL;
	grpc_ref();
	creds = grpc_insecure_credentials_create();
	cl->channel = grpc_channel_create(target, creds, NULL);
	grpc_channel_credentials_release(creds);
	if (!cl->channel) {
		free(cl);
		grpc_unref();
		errno = ENOMEM;
		return NULL;
	}
	return cl;
}

void hc_rpc_client_free(struct hc_rpc_client *cl)
{
	if (!cl)
		return;
	grpc_channel_destroy(cl->channel);
	free(cl);
	grpc_unref();
}

static void set_status(struct hc_rpc_status *st, enum hc_rpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_status(struct hc_rpc_status *st, enum hc_rpc_code code, const char *fmt, ...)
{
	va_list ap;

	st->code = code;
	va_start(ap, fmt);
	vsnprintf(st->message, sizeof(st->message), fmt, ap);
	va_end(ap);
}

int hc_rpc_client_call(struct hc_rpc_client *cl, const char *path,
		       const ProtobufCMessage *request,
		       const ProtobufCMessageDescriptor *response_type, ProtobufCMessage **response,
		       const struct hc_rpc_metadata *md, size_t nmd, int timeout_ms,
		       struct hc_rpc_status *st)
{
	grpc_metadata_array init_md, trail_md;
	grpc_byte_buffer *req_bb, *resp_bb = NULL;
	grpc_metadata *send_md = NULL;
	grpc_status_code code = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	grpc_completion_queue *cq;
	grpc_call *call;
	grpc_op ops[6];
	grpc_slice s;
	gpr_timespec deadline;
	grpc_call_error e;
	int ret = -1;
	int tag;

	*response = NULL;
	st->code = HC_RPC_OK;
	st->message[0] = '\0';
	if (nmd) {
		send_md = calloc(nmd, sizeof(*send_md));
		if (!send_md) {
			set_status(st, HC_RPC_RESOURCE_EXHAUSTED, "out of memory");
			return hc_rpc_code_errno(st->code);
		}
		for (size_t i = 0; i < nmd; i++) {
			send_md[i].key = grpc_slice_from_copied_string(md[i].key);
			send_md[i].value = grpc_slice_from_copied_string(md[i].value);
		}
	}
	s = grpc_slice_malloc(protobuf_c_message_get_packed_size(request));
	protobuf_c_message_pack(request, GRPC_SLICE_START_PTR(s));
	req_bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);

	grpc_metadata_array_init(&init_md);
	grpc_metadata_array_init(&trail_md);
	cq = grpc_completion_queue_create_for_pluck(NULL);
	deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
				gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
	call = grpc_channel_create_call(cl->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
					grpc_slice_from_static_string(path), NULL, deadline, NULL);

	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = nmd;
	ops[0].data.send_initial_metadata.metadata = send_md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = req_bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &resp_bb;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
	ops[5].data.recv_status_on_client.status = &code;
	ops[5].data.recv_status_on_client.status_details = &details;
	e = grpc_call_start_batch(call, ops, 6, &tag, NULL);
	if (e != GRPC_CALL_OK) {
		/* No event will arrive for a batch that did not start. */
		set_status(st, HC_RPC_INTERNAL, "cannot start call %s: grpc error %d%s", path, e,
			   e == GRPC_CALL_ERROR_INVALID_METADATA ? " (invalid metadata)" : "");
		goto out;
	}
	grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);

	if (code != GRPC_STATUS_OK) {
		char *msg = grpc_slice_to_c_string(details);

		set_status(st, (enum hc_rpc_code)code, "%s", msg);
		gpr_free(msg);
		goto out;
	}
	if (!resp_bb) {
		set_status(st, HC_RPC_INTERNAL, "%s: answer has no message", path);
		goto out;
	}
	*response = decode(resp_bb, response_type);
	if (!*response) {
		set_status(st, HC_RPC_INTERNAL, "%s: cannot decode the answer as %s", path,
			   response_type->name);
		goto out;
	}
	ret = 0;
out:
	grpc_call_unref(call);
	grpc_completion_queue_shutdown(cq);
	grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
	grpc_completion_queue_destroy(cq);
	if (resp_bb)
		grpc_byte_buffer_destroy(resp_bb);
	grpc_byte_buffer_destroy(req_bb);
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&init_md);
	grpc_metadata_array_destroy(&trail_md);
	for (size_t i = 0; i < nmd; i++) {
		grpc_slice_unref(send_md[i].key);
		grpc_slice_unref(send_md[i].value);
	}
	free(send_md);
	return ret < 0 ? hc_rpc_code_errno(st->code) : 0;
}
