/* gRPC glue: a real server on loopback and the blocking client, in-process. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "cluster.pb-c.h"
#include "loop/loop.h"
#include "rpc/rpc.h"

#define ECHO "/test.Echo/Logs"
#define HOLD "/test.Echo/Hold"

struct server {
	struct hc_loop *loop;
	struct hc_rpc_server *srv;
	pthread_t thread;
	struct hc_rpc_call *held; /* a call the Hold handler keeps unanswered */
	char target[64];
};

/* Echo: VmLogsRequest{id} -> VmLogsResponse{logs = "echo:" id}; ids starting
 * with "fail:" fail with NOT_FOUND and the rest as message. */
static void on_echo(struct hc_rpc_call *call, const ProtobufCMessage *request, void *arg)
{
	const Cluster__Services__Api__VmLogsRequest *req = (const void *)request;
	Cluster__Services__Api__VmLogsResponse resp = CLUSTER__SERVICES__API__VM_LOGS_RESPONSE__INIT;
	char buf[256];

	(void)arg;
	if (strncmp(req->id, "fail:", 5) == 0) {
		hc_rpc_fail(call, HC_RPC_NOT_FOUND, "%s", req->id + 5);
		return;
	}
	snprintf(buf, sizeof(buf), "echo:%s", req->id);
	resp.logs = buf;
	hc_rpc_reply(call, &resp.base);
}

static void on_hold(struct hc_rpc_call *call, const ProtobufCMessage *request, void *arg)
{
	struct server *s = arg;

	(void)request;
	s->held = call;
}

static void *loop_main(void *arg)
{
	hc_loop_run(arg);
	return NULL;
}

static struct hc_rpc_method methods[2];

static int setup(void **state)
{
	static struct server s;
	struct hc_addr addr;
	struct hc_err err;

	memset(&s, 0, sizeof(s));
	methods[0] = (struct hc_rpc_method){ ECHO, &cluster__services__api__vm_logs_request__descriptor,
					     on_echo, &s };
	methods[1] = (struct hc_rpc_method){ HOLD, &cluster__services__api__vm_logs_request__descriptor,
					     on_hold, &s };
	s.loop = hc_loop_new(NULL, NULL);
	assert_int_equal(hc_addr_parse("127.0.0.1:0", true, &addr, &err), 0);
	s.srv = hc_rpc_server_new(s.loop, &addr, methods, 2, &err);
	assert_non_null(s.srv);
	snprintf(s.target, sizeof(s.target), "127.0.0.1:%d", hc_rpc_server_port(s.srv));
	assert_int_equal(pthread_create(&s.thread, NULL, loop_main, s.loop), 0);
	*state = &s;
	return 0;
}

static int teardown(void **state)
{
	struct server *s = *state;

	hc_loop_stop(s->loop);
	pthread_join(s->thread, NULL);
	hc_rpc_server_free(s->srv); /* fails the held call, drains grpc */
	hc_loop_free(s->loop);
	return 0;
}

static int call(struct server *s, const char *path, const char *id, int timeout_ms,
		struct hc_rpc_status *st, char *out, size_t outlen)
{
	Cluster__Services__Api__VmLogsRequest req = CLUSTER__SERVICES__API__VM_LOGS_REQUEST__INIT;
	struct hc_rpc_metadata md[] = { { "x-test", "1" } };
	struct hc_rpc_client *cl = hc_rpc_client_new(s->target);
	ProtobufCMessage *resp = NULL;
	int r;

	req.id = (char *)id;
	r = hc_rpc_client_call(cl, path, &req.base,
			       &cluster__services__api__vm_logs_response__descriptor, &resp, md, 1,
			       timeout_ms, st);
	if (r == 0) {
		snprintf(out, outlen, "%s", ((Cluster__Services__Api__VmLogsResponse *)resp)->logs);
		protobuf_c_message_free_unpacked(resp, NULL);
	} else {
		assert_null(resp);
	}
	hc_rpc_client_free(cl);
	return r;
}

static void test_unary_call_round_trip(void **state)
{
	struct hc_rpc_status st;
	char out[256];

	assert_int_equal(call(*state, ECHO, "hello", 5000, &st, out, sizeof(out)), 0);
	assert_int_equal(st.code, HC_RPC_OK);
	assert_string_equal(out, "echo:hello");
}

static void test_handler_status_and_message_reach_the_client(void **state)
{
	struct hc_rpc_status st;
	char out[256];

	assert_int_equal(call(*state, ECHO, "fail:no such thing", 5000, &st, out, sizeof(out)),
			 -ENOENT);
	assert_int_equal(st.code, HC_RPC_NOT_FOUND);
	assert_string_equal(st.message, "no such thing");
	assert_string_equal(hc_rpc_code_name(st.code), "NOT_FOUND");
}

static void test_unknown_method_is_unimplemented_not_a_hang(void **state)
{
	struct hc_rpc_status st;
	char out[256];

	for (int i = 0; i < 5; i++) { /* more than the generic requests posted */
		assert_int_equal(call(*state, "/test.Echo/Nope", "x", 5000, &st, out, sizeof(out)),
				 -EIO);
		assert_int_equal(st.code, HC_RPC_UNIMPLEMENTED);
		assert_non_null(strstr(st.message, "/test.Echo/Nope"));
	}
}

static void test_undecodable_request_is_invalid_argument(void **state)
{
	struct server *s = *state;
	/* VmSpawnRequest.cores is a varint in field 1, where VmLogsRequest
	 * wants a string: the server cannot decode it. */
	Cluster__Services__Api__VmSpawnRequest req = CLUSTER__SERVICES__API__VM_SPAWN_REQUEST__INIT;
	struct hc_rpc_client *cl = hc_rpc_client_new(s->target);
	ProtobufCMessage *resp = NULL;
	struct hc_rpc_status st;

	req.cores = 5;
	assert_int_equal(hc_rpc_client_call(cl, ECHO, &req.base,
					    &cluster__services__api__vm_logs_response__descriptor,
					    &resp, NULL, 0, 5000, &st),
			 -EINVAL);
	assert_int_equal(st.code, HC_RPC_INVALID_ARGUMENT);
	hc_rpc_client_free(cl);
}

static void test_deadline_exceeded_while_handler_holds_the_call(void **state)
{
	struct hc_rpc_status st;
	char out[256];

	assert_int_equal(call(*state, HOLD, "x", 300, &st, out, sizeof(out)), -ETIMEDOUT);
	assert_int_equal(st.code, HC_RPC_DEADLINE_EXCEEDED);
	/* The server keeps serving other calls meanwhile. */
	assert_int_equal(call(*state, ECHO, "still", 5000, &st, out, sizeof(out)), 0);
}

static void test_nothing_listening_is_unavailable(void **state)
{
	struct server fake = { 0 };
	struct hc_rpc_status st;
	char out[16];
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);

	(void)state;
	/* A port bound but not listening: connections are refused. */
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	snprintf(fake.target, sizeof(fake.target), "127.0.0.1:%d", ntohs(sin.sin_port));
	assert_int_equal(call(&fake, ECHO, "x", 5000, &st, out, sizeof(out)), -ECONNREFUSED);
	assert_int_equal(st.code, HC_RPC_UNAVAILABLE);
	close(fd);
}

static void test_busy_port_is_a_clear_error(void **state)
{
	struct server *s = *state;
	struct hc_loop *loop = hc_loop_new(NULL, NULL);
	struct hc_addr addr;
	struct hc_err err;

	assert_int_equal(hc_addr_parse(s->target, false, &addr, &err), 0);
	assert_null(hc_rpc_server_new(loop, &addr, methods, 2, &err));
	assert_non_null(strstr(err.msg, "Address already in use"));
	assert_non_null(strstr(err.msg, s->target));
	hc_loop_free(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unary_call_round_trip),
		cmocka_unit_test(test_handler_status_and_message_reach_the_client),
		cmocka_unit_test(test_unknown_method_is_unimplemented_not_a_hang),
		cmocka_unit_test(test_undecodable_request_is_invalid_argument),
		cmocka_unit_test(test_deadline_exceeded_while_handler_holds_the_call),
		cmocka_unit_test(test_nothing_listening_is_unavailable),
		cmocka_unit_test(test_busy_port_is_a_clear_error),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
