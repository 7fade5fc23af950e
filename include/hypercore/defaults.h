/* Defaults shared by the agent, the CLI and (later) the BPF programs. */
#ifndef HYPERCORE_DEFAULTS_H
#define HYPERCORE_DEFAULTS_H

/* Ports of the agent's services (upstream hypercore's values). */
#define HC_DEFAULT_GRPC_PORT 8000
#define HC_DEFAULT_HTTP_PORT 8001
#define HC_DEFAULT_GOSSIP_PORT 7946

/* The agent's persistent state: node id, cluster key, API token, logs. */
#define HC_DEFAULT_STATE_DIR "/var/lib/hypercore"

/* Workload subnet 10.88.0.0/16 (upstream's since it ran out of a /24's
 * 253 addresses), host byte order, and as text for CNI and help. */
#define HC_WORKLOAD_NET 0x0a580000u
#define HC_WORKLOAD_PREFIX 16
#define HC_WORKLOAD_SUBNET "10.88.0.0/16"

/* Node ports given to workload ports, inclusive. */
#define HC_NODE_PORT_MIN 30000
#define HC_NODE_PORT_MAX 32767

#endif /* HYPERCORE_DEFAULTS_H */
