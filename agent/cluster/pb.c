/* Protobuf helpers: packing, upstream's ClusterMessage{event, Any} wrapping,
 * and conversions between spawn requests, runtime specs and workload states. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hypercore/defaults.h>

#include "cluster/cluster_int.h"

uint8_t *hc_cluster_pb_pack(const ProtobufCMessage *msg, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(n ? n : 1);

	if (!buf)
		return NULL;
	*len = protobuf_c_message_pack(msg, buf);
	return buf;
}

void *hc_cluster_pb_clone(const ProtobufCMessage *msg)
{
	size_t len;
	uint8_t *buf = hc_cluster_pb_pack(msg, &len);
	void *copy;

	if (!buf)
		return NULL;
	copy = protobuf_c_message_unpack(msg->descriptor, NULL, len, buf);
	free(buf);
	return copy;
}

void hc_cluster_pb_free(void *msg)
{
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
}

uint8_t *hc_cluster_pb_wrap(int event, const ProtobufCMessage *msg, size_t *len)
{
	Cluster__Services__Api__ClusterMessage cm = CLUSTER__SERVICES__API__CLUSTER_MESSAGE__INIT;
	Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
	char type_url[256];
	uint8_t *out;

	snprintf(type_url, sizeof(type_url), "type.googleapis.com/%s", msg->descriptor->name);
	any.type_url = type_url;
	any.value.data = hc_cluster_pb_pack(msg, &any.value.len);
	if (!any.value.data)
		return NULL;
	cm.event = (Cluster__Services__Api__ClusterEvent)event;
	cm.wrappedmessage = &any;
	out = hc_cluster_pb_pack(&cm.base, len);
	free(any.value.data);
	return out;
}

Cluster__Services__Api__ClusterMessage *hc_cluster_pb_unwrap(const uint8_t *buf, size_t len,
						  const ProtobufCMessageDescriptor *inner_desc,
						  ProtobufCMessage **inner)
{
	Cluster__Services__Api__ClusterMessage *cm =
		cluster__services__api__cluster_message__unpack(NULL, len, buf);
	const Google__Protobuf__Any *any;
	char want[256];

	*inner = NULL;
	if (!cm)
		return NULL;
	any = cm->wrappedmessage;
	snprintf(want, sizeof(want), "type.googleapis.com/%s", inner_desc->name);
	if (any && any->type_url && strcmp(any->type_url, want) == 0)
		*inner = protobuf_c_message_unpack(inner_desc, NULL, any->value.len,
						   any->value.data);
	return cm;
}

bool hc_port_is_node_port(uint32_t port)
{
	return port >= HC_NODE_PORT_MIN && port <= HC_NODE_PORT_MAX;
}

/* Appends key=value to labels the caller sized. */
static int add_label(struct hc_workload_spec *spec, const char *key, const char *value)
{
	struct hc_label *l = &spec->labels[spec->nlabels];

	l->key = strdup(key);
	l->value = strdup(value);
	spec->nlabels++; /* counted now, so that fini frees what was made */
	return l->key && l->value ? 0 : -ENOMEM;
}

int hc_cluster_pb_to_spec(const hc_pb_spawn *req, struct hc_workload_spec *spec)
{
	memset(spec, 0, sizeof(*spec));
	spec->cores = req->cores ? req->cores : HC_RUNTIME_DEFAULT_CPUS;
	spec->memory_mb = req->memory ? req->memory : HC_RUNTIME_DEFAULT_MEM_MB;
	spec->image_ref = strdup(req->image_ref ? req->image_ref : "");
	if (!spec->image_ref)
		goto oom;
	if (req->n_env && !(spec->env = calloc(req->n_env, sizeof(char *))))
		goto oom;
	for (size_t i = 0; i < req->n_env; i++) {
		if (!(spec->env[i] = strdup(req->env[i])))
			goto oom;
		spec->nenv++;
	}
	if (req->n_ports && !(spec->ports = calloc(req->n_ports, sizeof(*spec->ports))))
		goto oom;
	for (size_t i = 0; i < req->n_ports; i++) {
		const Cluster__Services__Api__VmSpawnRequest__PortsEntry *p = req->ports[i];

		/* out-of-range values are kept visible so validation names them */
		spec->ports[i].host = p->key > 65535 ? 0 : (uint16_t)p->key;
		spec->ports[i].container = p->value > 65535 ? 0 : (uint16_t)p->value;
		for (size_t k = 0; k < req->n_h2c_ports; k++)
			spec->ports[i].h2c |= req->h2c_ports[k] == p->key;
		spec->nports++;
	}
	/* names kept as given, so validation names a wrong one */
	if (req->n_cap_add && !(spec->cap_add = calloc(req->n_cap_add, sizeof(char *))))
		goto oom;
	for (size_t i = 0; i < req->n_cap_add; i++) {
		if (!(spec->cap_add[i] = strdup(req->cap_add[i])))
			goto oom;
		spec->ncap_add++;
	}
	spec->pids_limit = req->pids_limit;
	spec->read_only_rootfs = req->read_only_rootfs;
	if (req->runtime && *req->runtime && !(spec->runtime_handler = strdup(req->runtime)))
		goto oom;
	/* kept on the workload as labels, so its state names them after
	 * restarts (of the agent and of the workload) too */
	if (!(spec->labels = calloc(2, sizeof(*spec->labels))))
		goto oom;
	if (req->anti_affinity && *req->anti_affinity &&
	    add_label(spec, HC_LABEL_ANTI_AFFINITY, req->anti_affinity) < 0)
		goto oom;
	if (req->restart && *req->restart && add_label(spec, HC_LABEL_RESTART, req->restart) < 0)
		goto oom;
	return 0;
oom:
	hc_workload_spec_fini(spec);
	return -ENOMEM;
}

/* Node ports recorded in the workload's label, for host port `host`. */
static uint32_t labelled_node_port(const struct hc_workload_spec *spec, uint32_t host)
{
	for (size_t i = 0; i < spec->nlabels; i++) {
		const char *p;

		if (strcmp(spec->labels[i].key, HC_LABEL_NODE_PORTS) != 0)
			continue;
		for (p = spec->labels[i].value; p && *p;) {
			unsigned h, n;

			if (sscanf(p, "%u:%u", &h, &n) == 2 && h == host && hc_port_is_node_port(n))
				return n;
			p = strchr(p, ',');
			if (p)
				p++;
		}
	}
	return 0;
}

hc_pb_workload *hc_cluster_pb_workload_of(const struct hc_workload *w)
{
	const struct hc_workload_spec *s = &w->spec;
	Cluster__Services__Api__VmSpawnRequest req = CLUSTER__SERVICES__API__VM_SPAWN_REQUEST__INIT;
	Cluster__Services__Api__WorkloadState st = CLUSTER__SERVICES__API__WORKLOAD_STATE__INIT;
	Cluster__Services__Api__VmSpawnRequest__PortsEntry pe[HC_RUNTIME_MAX_PORTS];
	Cluster__Services__Api__VmSpawnRequest__PortsEntry *pp[HC_RUNTIME_MAX_PORTS];
	Cluster__Services__Api__PortBinding pb[HC_RUNTIME_MAX_PORTS];
	Cluster__Services__Api__PortBinding *pbp[HC_RUNTIME_MAX_PORTS];
	uint32_t h2c[HC_RUNTIME_MAX_PORTS];
	size_t np = s->nports < HC_RUNTIME_MAX_PORTS ? s->nports : HC_RUNTIME_MAX_PORTS;
	size_t nb = 0;

	req.cores = s->cores;
	req.memory = s->memory_mb;
	req.image_ref = s->image_ref ? s->image_ref : (char *)"";
	req.env = s->env;
	req.n_env = s->nenv;
	req.cap_add = s->cap_add;
	req.n_cap_add = s->ncap_add;
	req.pids_limit = s->pids_limit;
	req.read_only_rootfs = s->read_only_rootfs;
	if (s->runtime_handler)
		req.runtime = s->runtime_handler;
	for (size_t i = 0; i < s->nlabels; i++) {
		if (strcmp(s->labels[i].key, HC_LABEL_ANTI_AFFINITY) == 0)
			req.anti_affinity = s->labels[i].value;
		if (strcmp(s->labels[i].key, HC_LABEL_RESTART) == 0)
			req.restart = s->labels[i].value;
	}
	for (size_t i = 0; i < np; i++) {
		uint32_t host = s->ports[i].host, node;

		cluster__services__api__vm_spawn_request__ports_entry__init(&pe[i]);
		pe[i].key = host;
		pe[i].value = s->ports[i].container;
		pp[i] = &pe[i];
		if (s->ports[i].h2c)
			h2c[req.n_h2c_ports++] = host;
		node = hc_port_is_node_port(host) ? host : labelled_node_port(s, host);
		if (!node)
			continue; /* spawned before node ports existed: local only */
		cluster__services__api__port_binding__init(&pb[nb]);
		pb[nb].host_port = host;
		pb[nb].container_port = s->ports[i].container;
		pb[nb].node_port = node;
		pb[nb].protocol = hc_port_is_node_port(host) ? (char *)"tcp+udp" : (char *)"tcp";
		pb[nb].h2c = s->ports[i].h2c;
		pbp[nb] = &pb[nb];
		nb++;
	}
	req.ports = pp;
	req.n_ports = np;
	req.h2c_ports = h2c;
	st.id = (char *)w->id;
	st.source_request = &req;
	st.bindings = pbp;
	st.n_bindings = nb;
	return hc_cluster_pb_clone(&st.base);
}
