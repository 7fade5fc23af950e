/* protobuf-c -> JSON in upstream's (Go encoding/json) shape. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster.pb-c.h"
#include "pbjson/pbjson.h"

static void expect_json(const ProtobufCMessage *msg, const char *want)
{
	json_t *j = hc_pbjson_encode(msg);
	char *text;

	assert_non_null(j);
	text = json_dumps(j, JSON_COMPACT);
	assert_string_equal(text, want);
	free(text);
	json_decref(j);
}

static void test_zero_values_are_omitted(void **state)
{
	Cluster__Services__Api__VmSpawnRequest req = CLUSTER__SERVICES__API__VM_SPAWN_REQUEST__INIT;

	(void)state;
	expect_json(&req.base, "{}");
	req.image_ref = "";
	expect_json(&req.base, "{}");
}

static void test_spawn_request_like_go(void **state)
{
	Cluster__Services__Api__VmSpawnRequest req = CLUSTER__SERVICES__API__VM_SPAWN_REQUEST__INIT;
	Cluster__Services__Api__VmSpawnRequest__PortsEntry p1 =
		CLUSTER__SERVICES__API__VM_SPAWN_REQUEST__PORTS_ENTRY__INIT;
	Cluster__Services__Api__VmSpawnRequest__PortsEntry p2 =
		CLUSTER__SERVICES__API__VM_SPAWN_REQUEST__PORTS_ENTRY__INIT;
	Cluster__Services__Api__VmSpawnRequest__PortsEntry *ports[] = { &p1, &p2 };
	char *env[] = { "A=1", "B=two" };

	(void)state;
	req.cores = 2;
	req.memory = 512;
	req.image_ref = "127.0.0.1:5000/web:1";
	p1.key = 8080, p1.value = 80;
	p2.key = 443, p2.value = 8443;
	req.n_ports = 2;
	req.ports = ports;
	req.dry_run = 1;
	req.n_env = 2;
	req.env = env;
	/* Go sorts map keys as strings: "443" < "8080". */
	expect_json(&req.base, "{\"cores\":2,\"memory\":512,\"image_ref\":\"127.0.0.1:5000/web:1\","
			       "\"ports\":{\"443\":8443,\"8080\":80},\"dry_run\":true,"
			       "\"env\":[\"A=1\",\"B=two\"]}");
}

static void test_nested_bytes_doubles_and_int64(void **state)
{
	Cluster__Services__Api__NodeStateResponse st = CLUSTER__SERVICES__API__NODE_STATE_RESPONSE__INIT;
	Cluster__Services__Api__Node node = CLUSTER__SERVICES__API__NODE__INIT;
	Cluster__Services__Api__BeaconMetadata b = CLUSTER__SERVICES__API__BEACON_METADATA__INIT;
	uint8_t sig[] = { 0xde, 0xad, 0xbe, 0xef, 0x01 };

	(void)state;
	node.id = "n1";
	node.ip = "10.0.0.1";
	st.node = &node;
	b.node_signature.data = sig;
	b.node_signature.len = sizeof(sig);
	b.timestamp = 1700000000123LL;
	b.latency_ms = 1.5;
	b.queue_depth = 3;
	st.beacon = &b;
	expect_json(&st.base, "{\"node\":{\"id\":\"n1\",\"ip\":\"10.0.0.1\"},\"beacon\":{"
			      "\"node_signature\":\"3q2+7wE=\",\"timestamp\":1700000000123,"
			      "\"latency_ms\":1.5,\"queue_depth\":3}}");
}

static void test_invalid_utf8_becomes_replacement_char(void **state)
{
	Cluster__Services__Api__Node node = CLUSTER__SERVICES__API__NODE__INIT;

	(void)state;
	node.id = "a\xff" "b\xc3\xa9" "\xed\xa0\x80";
	expect_json(&node.base, "{\"id\":\"a\xef\xbf\xbd" "b\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"}");
}

static void test_decoded_wire_message_round_trips(void **state)
{
	/* NodesStateResponse{states: [{node: {id: "x"}, workloads: [{id: "w"}]}]} */
	static const uint8_t wire[] = { 0x0a, 0x0a, 0x0a, 0x03, 0x0a, 0x01, 'x',
					0x12, 0x03, 0x0a, 0x01, 'w' };
	Cluster__Services__Api__NodesStateResponse *m =
		cluster__services__api__nodes_state_response__unpack(NULL, sizeof(wire), wire);

	(void)state;
	assert_non_null(m);
	expect_json(&m->base, "{\"states\":[{\"node\":{\"id\":\"x\"},\"workloads\":[{\"id\":\"w\"}]}]}");
	cluster__services__api__nodes_state_response__free_unpacked(m, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zero_values_are_omitted),
		cmocka_unit_test(test_spawn_request_like_go),
		cmocka_unit_test(test_nested_bytes_doubles_and_int64),
		cmocka_unit_test(test_invalid_utf8_becomes_replacement_char),
		cmocka_unit_test(test_decoded_wire_message_round_trips),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
