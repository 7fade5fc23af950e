/*
 * The node agent process (`hypercore cluster`): checks its configuration,
 * starts every module on one event loop, and runs until SIGINT or SIGTERM.
 */
#ifndef HC_DAEMON_H
#define HC_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/dataplane.h"
#include "gossip/gossip.h"

/* The cluster's gossip keyring in the state dir (a serf keyring file):
 * made on a cluster's first node, read by `hypercore cluster join-token`.
 * The API token file beside it is auth.h's HC_AUTH_TOKEN_FILE. */
#define HC_DAEMON_KEYRING_FILE "cluster-keyring.json"

struct hc_daemon_config {
	const char *grpc_bind_addr; /* "HOST:PORT" */
	const char *http_bind_addr;
	const char *state_dir; /* created if missing */
	const char *base_url;  /* workloads answer at <id>.<base_url> */

	/* Gossip */
	const char *cluster_bind_addr;      /* default 0.0.0.0:7946 */
	const char *cluster_advertise_addr; /* NULL: bind, or the default route's address */
	const char *node_name;              /* NULL: the node id */
	const char *encrypt_key;            /* base64, as serf agent -encrypt */
	const char *keyring_file;           /* JSON list of base64 keys */
	const char *join_token;             /* `hypercore cluster join-token`'s string */
	bool cluster_insecure;              /* plaintext gossip, for keyless peers */
	const struct hc_gossip_kv *tags;
	size_t ntags;
	const char *const *join; /* seeds */
	size_t njoin;
	/* Overrides of upstream's timing; 0 keeps the default. */
	uint32_t gossip_interval_ms, probe_interval_ms;
	unsigned suspicion_mult, gossip_nodes;
	size_t user_event_size_limit;
	uint32_t coalesce_ms; /* 0: events reach the agent at once */

	/* API authentication */
	bool api_auth_none;         /* upstream's open APIs, for closed networks */
	const char *api_token_file; /* NULL: <state_dir>/api-token */
	bool metrics_auth;          /* /metrics wants a token too */

	/* Orchestration */
	bool respawn_on_node_failure; /* reschedule failed nodes' workloads */
	int default_restart;          /* enum hc_restart_policy of spawns naming none; 0: always */
	const char *cluster_policy;     /* --cluster-policy FILE; NULL: upstream's default */
	uint32_t state_period_ms;     /* state broadcast period; 0: 5000 */
	int state_mode;               /* enum hc_cluster_state_mode (--state-broadcast) */

	/* Runtime */
	bool no_runtime;               /* gossip and APIs only: no containerd */
	const char *run_dir;           /* sockets, volatile state (/run/hypercore) */
	const char *containerd_socket; /* NULL: start the embedded containerd */
	const char *const *insecure_registries; /* HOST:PORT pulled over plain HTTP */
	size_t ninsecure;
	const char *workload_subnet;   /* NULL: HC_WORKLOAD_SUBNET (10.88.0.0/16) */
	uint32_t capacity_cpus;        /* 0: max(nproc, 225) */
	uint32_t capacity_mem_mb;      /* 0: MemAvailable */
	uint32_t watch_interval_ms;    /* workload checks; 0: 2000 */
	uint64_t log_max_size;         /* a workload log's rotation size; 0: 10 MiB */
	unsigned log_max_files;        /* rotated files kept; 0: 3 */
	const char *vm_kernel;         /* microVMs' guest kernel; NULL: HC_VM_KERNEL or /boot */

	/* Data plane */
	bool no_dataplane;             /* load no BPF programs */
	const char *bpf_pin_dir;       /* NULL: /sys/fs/bpf/hypercore */
	const char *dataplane_iface;   /* NULL: the default route's interface */
	enum hc_dp_mode dataplane_mode; /* how node ports are served; auto by default */
	/* Destinations opened to workloads beyond the egress policy's rules:
	 * "CIDR[:PORT[-PORT][/tcp|/udp]]" (hc_dp_egress_rule_parse). */
	const char *const *workload_allow_egress;
	size_t nworkload_allow_egress;

	/* Proxy (runs with the data plane, whose hc_routes it serves) */
	bool no_proxy;
	const char *proxy_bind_addr;   /* NULL: 0.0.0.0 */
	unsigned proxy_workers;        /* 0: one per CPU */
	int proxy_forwarding;          /* enum hc_proxy_forwarding */
	bool proxy_forwarded_headers;	 /* accepted for compatibility: the default */
	bool proxy_no_forwarded_headers; /* pass heads' forwarded fields unchanged */
	bool proxy_no_backend_reuse;	 /* a backend connection per client connection */
	unsigned proxy_idle_timeout;	 /* s; 0: 60 */
	unsigned proxy_tunnel_idle_timeout; /* s; 0: 3600 */
	unsigned proxy_drain_timeout;  /* s a stop waits for exchanges in flight; 0: 10 */
	unsigned proxy_head_timeout_ms; /* 0: 10000 */
	unsigned proxy_max_conns;      /* per port; 0: 10000 */
	unsigned proxy_max_conns_per_ip; /* per client address; 0: 1024 */
	const char *tls_cert, *tls_key; /* --cluster-tls-cert/-key */
	unsigned tls_ticket_rotate_s;  /* 0: 3600 */

	/* IBRL beacon (the node key is <state_dir>/node-key.pem) */
	int ibrl_mode;                 /* enum hc_cluster_ibrl_mode + 1; 0: by encryption */
	const char *trusted_keys;      /* fixed node name -> key file; NULL: TOFU */
	double beacon_price;           /* price_per_gb (upstream's default 0.01) */
	const char *beacon_reputation; /* NULL: "1.0" */
	const char *beacon_endpoint;   /* NULL: none */
};

/*
 * Runs the agent in the calling thread, which must be the process's only
 * thread so far (signals are blocked before any other starts). Returns 0
 * after a clean shutdown, or -errno with a one-line reason in err if it could
 * not start; then nothing was left running or listening.
 */
int hc_daemon_run(const struct hc_daemon_config *cfg, struct hc_err *err);

/* Creates dir (and parents) if missing and checks that files can be created
 * in it. Returns 0 or -errno with a reason in err. */
int hc_daemon_prepare_state_dir(const char *dir, struct hc_err *err);

#endif /* HC_DAEMON_H */
