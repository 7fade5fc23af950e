/*
 * The IBRL beacon in the cluster: this node's BeaconMetadata (measured link
 * figures, the real queue depth, what the node can run) and the signature
 * over each state it broadcasts; the check of every received state against
 * the key pinned or trusted for its node before it is used; the beacon
 * endpoint's periodic health check; BEACON_ATTEST queries, both sides.
 */
#include "cluster/cluster_int.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HC_LOG_MODULE "cluster"
#include "log/log.h"

#define ENDPOINT_PERIOD_MS 30000
#define ENDPOINT_TIMEOUT_MS 5000
#define ATTEST_TIMEOUT_MS 5000
#define ATTEST_MAX_AGE_S 60
#define DEFAULT_REPUTATION "1.0" /* upstream's --beacon-reputation default */

const char *const hc_cluster_ibrl_reject_names[IBRL_REJECT_REASONS] = {
	[IBRL_REJECT_UNSIGNED] = "unsigned",
	[IBRL_REJECT_NO_KEY] = "no_key",
	[IBRL_REJECT_BAD_SIGNATURE] = "bad_signature",
	[IBRL_REJECT_KEY_MISMATCH] = "key_mismatch",
	[IBRL_REJECT_UNTRUSTED] = "untrusted",
};

static uint64_t wall_s(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (uint64_t)now.tv_sec;
}

/* ---- setup ---- */

int hc_cluster_beacon_init(struct hc_cluster *c, const struct hc_cluster_config *cfg,
			   struct hc_err *err)
{
	const char *rep = cfg->beacon_reputation ? cfg->beacon_reputation : DEFAULT_REPUTATION;
	int r;

	hc_list_init(&c->attests);
	c->identity = cfg->identity;
	if (c->identity)
		hc_ibrl_beacon_node_id(hc_ibrl_identity_public(c->identity), c->beacon_id);
	c->beacon_reputation = strdup(rep);
	c->beacon_endpoint = cfg->beacon_endpoint ? strdup(cfg->beacon_endpoint) : NULL;
	if (!c->beacon_reputation || (cfg->beacon_endpoint && !c->beacon_endpoint))
		return hc_err_set(err, -ENOMEM, "out of memory");
	r = hc_ibrl_trust_open(cfg->state_dir, cfg->trusted_keys, &c->trust, err);
	if (r < 0)
		return r;
	if (cfg->ibrl_mode == HC_CLUSTER_IBRL_ENFORCE && !c->identity)
		return hc_err_set(err, -EINVAL, "--ibrl-mode enforce needs the node key");
	return 0;
}

static void attests_free_all(struct hc_cluster *c);

void hc_cluster_beacon_fini(struct hc_cluster *c)
{
	if (c->endpoint_timer)
		hc_loop_del_timer(c->loop, c->endpoint_timer);
	c->endpoint_timer = 0;
	attests_free_all(c);
	hc_ibrl_trust_free(c->trust);
	c->trust = NULL;
	hc_cluster_pb_free(c->beacon_out);
	c->beacon_out = NULL;
	for (size_t i = 0; i < c->ncapabilities; i++)
		free(c->capabilities[i]);
	free(c->capabilities);
	c->capabilities = NULL;
	c->ncapabilities = 0;
	free(c->beacon_reputation);
	free(c->beacon_endpoint);
	c->beacon_reputation = c->beacon_endpoint = NULL;
}

int hc_cluster_set_capabilities(struct hc_cluster *c, const char *const *caps, size_t n)
{
	char **copy = calloc(n + 1, sizeof(*copy));

	for (size_t i = 0; copy && i < n; i++) {
		if (!(copy[i] = strdup(caps[i]))) {
			while (i--)
				free(copy[i]);
			free(copy);
			copy = NULL;
		}
	}
	if (!copy)
		return -ENOMEM;
	for (size_t i = 0; i < c->ncapabilities; i++)
		free(c->capabilities[i]);
	free(c->capabilities);
	c->capabilities = copy;
	c->ncapabilities = n;
	return 0;
}

/* ---- what this node says ---- */

/* The mean of this node's own probe figures over its alive peers: what
 * it broadcasts for upstream's placement, which knows no better. */
static void link_view(struct hc_cluster *c, double *latency_ms, double *jitter_ms, double *loss)
{
	size_t n = 0, rtt_n = 0, jit_n = 0, loss_n = 0;
	struct hc_gossip_member *ms = hc_cluster_members(c, &n);
	double rtt = 0, jit = 0, lost = 0;

	for (size_t i = 0; ms && i < n; i++) {
		if (ms[i].status != HC_GOSSIP_ALIVE || strcmp(ms[i].name, hc_cluster_self(c)) == 0)
			continue;
		if (ms[i].rtt_mean_us >= 0)
			rtt += (double)ms[i].rtt_mean_us / 1000, rtt_n++;
		if (ms[i].jitter_us >= 0)
			jit += (double)ms[i].jitter_us / 1000, jit_n++;
		if (ms[i].loss >= 0)
			lost += ms[i].loss * 100, loss_n++;
	}
	hc_gossip_members_free(ms, n);
	*latency_ms = rtt_n ? rtt / (double)rtt_n : 0;
	*jitter_ms = jit_n ? jit / (double)jit_n : 0;
	*loss = loss_n ? lost / (double)loss_n : 0;
}

int hc_cluster_beacon_build(struct hc_cluster *c)
{
	hc_pb_beacon *b = calloc(1, sizeof(*b));
	hc_pb_beacon *copy;

	if (!b)
		return -ENOMEM;
	cluster__services__api__beacon_metadata__init(b);
	b->beacon_node_id = c->beacon_id;
	if (c->identity) {
		b->node_signature.data = (uint8_t *)hc_ibrl_identity_public(c->identity);
		b->node_signature.len = HC_IBRL_PUBLIC_LEN;
	}
	b->timestamp = (int64_t)wall_s();
	b->reputation_score = c->beacon_reputation;
	b->node_capabilities = c->capabilities;
	b->n_node_capabilities = c->ncapabilities;
	link_view(c, &b->latency_ms, &b->jitter_ms, &b->packet_loss);
	b->queue_depth = c->gossip ? (uint32_t)hc_gossip_queue_depth(c->gossip) : 0;
	b->price_per_gb = c->cfg.beacon_price;
	copy = hc_cluster_pb_clone(&b->base); /* owned through and through */
	free(b);
	if (!copy)
		return -ENOMEM;
	hc_cluster_pb_free(c->beacon_out);
	c->beacon_out = copy;
	return 0;
}

int hc_cluster_beacon_sign(struct hc_cluster *c, const struct hc_ibrl_state_view *v)
{
	c->state_sig[0] = '\0';
	if (!c->identity)
		return 0;
	return hc_ibrl_state_sign(c->identity, v, c->state_sig);
}

/* ---- what others say ---- */

int hc_cluster_beacon_check(struct hc_cluster *c, const struct hc_ibrl_state_view *v,
			    const char *sig, bool *verified, bool *pin)
{
	const uint8_t *pub = hc_ibrl_beacon_public(v->beacon);
	bool known = hc_ibrl_trust_known(c->trust, v->node);

	*verified = *pin = false;
	if (!sig || !*sig) {
		/* a node that signed once never stops; in enforce mode, none may */
		if (known || c->cfg.ibrl_mode == HC_CLUSTER_IBRL_ENFORCE)
			return IBRL_REJECT_UNSIGNED;
		return -1;
	}
	if (!pub)
		return IBRL_REJECT_NO_KEY;
	switch (hc_ibrl_trust_check(c->trust, v->node, pub)) {
	case HC_IBRL_TRUST_MISMATCH:
		return IBRL_REJECT_KEY_MISMATCH;
	case HC_IBRL_TRUST_UNKNOWN:
		return IBRL_REJECT_UNTRUSTED;
	case HC_IBRL_TRUST_NEW:
		*pin = true;
		break;
	case HC_IBRL_TRUST_MATCH:
		break;
	}
	if (hc_ibrl_state_verify(pub, v, sig) < 0) {
		*pin = false;
		return IBRL_REJECT_BAD_SIGNATURE;
	}
	*verified = true;
	return -1;
}

void hc_cluster_beacon_pin(struct hc_cluster *c, const char *node,
			   const hc_pb_beacon *beacon)
{
	const uint8_t *pub = hc_ibrl_beacon_public(beacon);
	char id[HC_IBRL_BEACON_ID_LEN + 1];
	struct hc_err err;

	if (!pub || hc_ibrl_trust_known(c->trust, node))
		return;
	hc_ibrl_beacon_node_id(pub, id);
	if (hc_ibrl_trust_pin(c->trust, node, pub, &err) < 0)
		hc_log(HC_LOG_WARN, "key of %s pinned for this run only: %s", node, err.msg);
	else
		hc_log(HC_LOG_INFO, "key of %s pinned on first use (beacon id %s)", node, id);
}

/* ---- the beacon endpoint ---- */

struct endpoint_job {
	struct job job; /* first */
	char endpoint[512];
	bool ok;
};

/* A TCP connection to host:port within the timeout; the fd or -errno. */
static int dial(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	int fd = -EHOSTUNREACH;

	if (getaddrinfo(host, port, &hints, &ai) != 0)
		return -EHOSTUNREACH;
	for (struct addrinfo *p = ai; p && fd < 0; p = p->ai_next) {
		struct pollfd pfd;
		int e = 0;
		socklen_t elen = sizeof(e);

		fd = socket(p->ai_family, p->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (connect(fd, p->ai_addr, p->ai_addrlen) < 0 && errno != EINPROGRESS)
			e = errno;
		pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
		if (!e && poll(&pfd, 1, ENDPOINT_TIMEOUT_MS) != 1)
			e = ETIMEDOUT;
		if (!e && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0)
			e = errno;
		if (e) {
			close(fd);
			fd = -e;
		}
	}
	freeaddrinfo(ai);
	return fd;
}

/* GET <path>/health over fd: whether the answer's status is 200. */
static bool health_ok(int fd, const char *host, const char *path)
{
	char req[1024], buf[64];
	size_t got = 0;
	int n = snprintf(req, sizeof(req),
			 "GET %s/health HTTP/1.0\r\nHost: %s\r\nUser-Agent: hypercore\r\n\r\n",
			 path, host);
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	if (n < 0 || (size_t)n >= sizeof(req) || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
		return false;
	while (got < 12 && poll(&pfd, 1, ENDPOINT_TIMEOUT_MS) == 1) {
		ssize_t k = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);

		if (k <= 0)
			break;
		got += (size_t)k;
	}
	buf[got] = '\0';
	return got >= 12 && strncmp(buf, "HTTP/1.", 7) == 0 && strncmp(buf + 8, " 200", 4) == 0;
}

/*
 * As upstream: an http:// endpoint is healthy when GET <endpoint>/health
 * answers 200; any other (host:port, or https://, whose TLS we do not
 * speak here) when a TCP connection to it opens. 5 s each.
 */
bool hc_cluster_beacon_endpoint_ok(const char *endpoint)
{
	char host[256] = "", port[16] = "", path[512] = "";
	bool http = strncmp(endpoint, "http://", 7) == 0;
	bool https = strncmp(endpoint, "https://", 8) == 0;
	const char *p = endpoint + (http ? 7 : https ? 8 : 0);
	const char *slash = strchr(p, '/'), *colon;
	size_t hlen = slash ? (size_t)(slash - p) : strlen(p);
	bool ok;
	int fd;

	if (hlen == 0 || hlen >= sizeof(host))
		return false;
	memcpy(host, p, hlen);
	if (slash)
		snprintf(path, sizeof(path), "%s", slash);
	if (path[0] && path[strlen(path) - 1] == '/')
		path[strlen(path) - 1] = '\0';
	colon = strrchr(host, ':');
	if (colon && !strchr(colon, ']')) {
		snprintf(port, sizeof(port), "%s", colon + 1);
		host[colon - host] = '\0';
	} else if (http || https) {
		snprintf(port, sizeof(port), "%s", http ? "80" : "443");
	} else {
		return false; /* a TCP endpoint needs its port */
	}
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	fd = dial(host, port);
	if (fd < 0)
		return false;
	ok = http ? health_ok(fd, host, path) : true;
	close(fd);
	return ok;
}

static void endpoint_run(struct job *j)
{
	struct endpoint_job *ej = (struct endpoint_job *)j;

	ej->ok = hc_cluster_beacon_endpoint_ok(ej->endpoint);
}

static void endpoint_done(struct job *j)
{
	struct endpoint_job *ej = (struct endpoint_job *)j;
	struct hc_cluster *c = j->c;

	c->endpoint_check_running = false;
	if (!c->closing) {
		if (ej->ok != c->beacon_connected)
			hc_log(ej->ok ? HC_LOG_INFO : HC_LOG_WARN, "beacon endpoint %s %s",
			       ej->endpoint, ej->ok ? "reachable" : "unreachable");
		c->beacon_connected = ej->ok;
		c->endpoint_checks++;
	}
	free(ej);
}

static int64_t endpoint_tick(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_cluster *c = arg;
	struct endpoint_job *ej;

	(void)loop;
	(void)id;
	if (c->endpoint_check_running || c->closing)
		return ENDPOINT_PERIOD_MS;
	ej = calloc(1, sizeof(*ej));
	if (!ej)
		return ENDPOINT_PERIOD_MS;
	snprintf(ej->endpoint, sizeof(ej->endpoint), "%s", c->beacon_endpoint);
	if (hc_cluster_job_start_thread(c, &ej->job, endpoint_run, endpoint_done) < 0) {
		free(ej);
		return ENDPOINT_PERIOD_MS;
	}
	c->endpoint_check_running = true;
	return ENDPOINT_PERIOD_MS;
}

int hc_cluster_beacon_start(struct hc_cluster *c)
{
	if (!c->beacon_endpoint || !*c->beacon_endpoint)
		return 0;
	c->endpoint_timer = hc_loop_add_timer(c->loop, 0, endpoint_tick, c);
	return c->endpoint_timer ? 0 : -ENOMEM;
}

/* ---- BEACON_ATTEST ---- */

void hc_cluster_beacon_serve_attest(struct hc_cluster *c, uint64_t query_id, const char *from,
				    const uint8_t *payload, size_t len)
{
	Cluster__Services__Api__BeaconAttestation *req = NULL, ans;
	Cluster__Services__Api__ClusterMessage *cm;
	uint8_t data[HC_IBRL_ATTEST_DATA_LEN], *buf = NULL;
	size_t blen = 0;
	const char *why = NULL;

	cm = hc_cluster_pb_unwrap(payload, len, &cluster__services__api__beacon_attestation__descriptor,
				  (ProtobufCMessage **)&req);
	if (!req)
		why = "BEACON_ATTEST wants a BeaconAttestation";
	else if (!c->identity)
		why = "this node has no key";
	else if (req->attestation_data.len != HC_IBRL_NONCE_LEN)
		why = "the nonce must be 32 bytes";
	else if (hc_ibrl_attest_make(c->identity, hc_cluster_self(c), req->attestation_data.data,
				     req->attestation_data.len, wall_s(), data) < 0)
		why = "cannot sign";
	if (!why) {
		cluster__services__api__beacon_attestation__init(&ans);
		ans.node_id = (char *)hc_cluster_self(c);
		ans.attestation_type = (char *)HC_IBRL_ATTEST_TYPE;
		ans.attestation_data.data = data;
		ans.attestation_data.len = sizeof(data);
		buf = hc_cluster_pb_wrap(CLUSTER__SERVICES__API__CLUSTER_EVENT__BEACON_ATTEST,
					 &ans.base, &blen);
	}
	if (buf) {
		c->attests_answered++;
		if (hc_gossip_respond(c->gossip, query_id, buf, blen) < 0)
			hc_log(HC_LOG_DEBUG, "attestation for %s not sent", from);
	} else {
		hc_log(HC_LOG_DEBUG, "attestation asked by %s not given: %s", from,
		       why ? why : "out of memory");
	}
	free(buf);
	hc_cluster_pb_free(req);
	hc_cluster_pb_free(cm);
}

struct attest {
	struct hc_list link; /* c->attests, until its query is done */
	struct hc_cluster *c;
	char node[256];
	uint8_t nonce[HC_IBRL_NONCE_LEN];
	int result; /* -ETIMEDOUT until an answer is judged */
	char why[640];
	hc_cluster_attest_done *done;
	void *arg;
};

static void attest_free(struct attest *a)
{
	hc_list_remove(&a->link);
	free(a);
}

/* Those whose query gossip dropped unanswered as it stopped. */
static void attests_free_all(struct hc_cluster *c)
{
	while (c->attests.next && !hc_list_empty(&c->attests))
		attest_free(hc_list_first(&c->attests, struct attest, link));
}

int hc_cluster_attest_judge(struct hc_cluster *c, const char *node, const char *from,
			    const uint8_t nonce[HC_IBRL_NONCE_LEN], const uint8_t *payload,
			    size_t len, char *why, size_t why_len)
{
	Cluster__Services__Api__BeaconAttestation *a = NULL;
	Cluster__Services__Api__ClusterMessage *cm;
	uint8_t pub[HC_IBRL_PUBLIC_LEN];
	int r;

	if (strcmp(from, node) != 0) {
		snprintf(why, why_len, "answer from %s, not %s", from, node);
		return -EBADMSG;
	}
	cm = hc_cluster_pb_unwrap(payload, len, &cluster__services__api__beacon_attestation__descriptor,
				  (ProtobufCMessage **)&a);
	r = a ? hc_ibrl_attest_check(a, node, nonce, wall_s(), ATTEST_MAX_AGE_S, pub) : -EBADMSG;
	hc_cluster_pb_free(a);
	hc_cluster_pb_free(cm);
	if (r < 0) {
		snprintf(why, why_len, "%s", r == -ESTALE ? "attestation too old or ahead"
							  : "not signed for our nonce");
		return r;
	}
	switch (hc_ibrl_trust_check(c->trust, node, pub)) {
	case HC_IBRL_TRUST_MISMATCH:
		snprintf(why, why_len, "signed by another key than the one pinned for %s", node);
		return -EKEYREJECTED;
	case HC_IBRL_TRUST_UNKNOWN:
		snprintf(why, why_len, "%s is not in the trusted keys", node);
		return -EKEYREJECTED;
	case HC_IBRL_TRUST_NEW:
		snprintf(why, why_len, "valid, but no key is pinned for %s yet", node);
		return -ENOKEY;
	case HC_IBRL_TRUST_MATCH:
		break;
	}
	/* after the signature: a forged answer does not burn the nonce */
	if (hc_ibrl_nonce_use(&c->nonces, nonce) < 0) {
		snprintf(why, why_len, "replayed (nonce used already)");
		return -EALREADY;
	}
	snprintf(why, why_len, "verified");
	return 0;
}

static void attest_response(void *arg, const char *from, const uint8_t *payload, size_t len,
			    bool is_ack)
{
	struct attest *a = arg;
	int r;

	if (is_ack || a->result == 0)
		return;
	r = hc_cluster_attest_judge(a->c, a->node, from, a->nonce, payload, len, a->why,
				    sizeof(a->why));
	if (r == 0 || a->result == -ETIMEDOUT)
		a->result = r;
	if (r == 0)
		a->c->attests_verified++;
	else
		a->c->attests_rejected++;
}

static void attest_query_done(void *arg)
{
	struct attest *a = arg;

	if (a->result == -ETIMEDOUT)
		snprintf(a->why, sizeof(a->why), "no answer from %s", a->node);
	if (!a->c->closing)
		a->done(a->arg, a->result, a->why);
	attest_free(a);
}

int hc_cluster_attest(struct hc_cluster *c, const char *node, hc_cluster_attest_done *done,
		      void *arg)
{
	Cluster__Services__Api__BeaconAttestation req;
	struct hc_gossip_query_params params = { .nodes = &node, .nnodes = 1,
						 .timeout_ms = ATTEST_TIMEOUT_MS };
	struct attest *a = calloc(1, sizeof(*a));
	uint8_t *buf = NULL;
	size_t len = 0;
	int r;

	if (!a)
		return -ENOMEM;
	a->c = c;
	a->result = -ETIMEDOUT;
	a->done = done;
	a->arg = arg;
	snprintf(a->node, sizeof(a->node), "%s", node);
	r = hc_ibrl_nonce_new(&c->nonces, a->nonce);
	if (r == 0) {
		cluster__services__api__beacon_attestation__init(&req);
		req.node_id = a->node;
		req.attestation_type = (char *)HC_IBRL_ATTEST_TYPE;
		req.attestation_data.data = a->nonce;
		req.attestation_data.len = sizeof(a->nonce);
		buf = hc_cluster_pb_wrap(CLUSTER__SERVICES__API__CLUSTER_EVENT__BEACON_ATTEST,
					 &req.base, &len);
		r = buf ? 0 : -ENOMEM;
	}
	if (r == 0) {
		hc_list_append(&c->attests, &a->link);
		r = hc_cluster_query(c, HC_QUERY_NAME, buf, len, &params, attest_response,
				     attest_query_done, a);
		if (r < 0)
			hc_list_remove(&a->link);
	}
	free(buf);
	if (r < 0)
		free(a);
	return r;
}

/* ---- metrics ---- */

void hc_cluster_beacon_collect(struct hc_cluster *c, struct hc_metrics_writer *w)
{
	uint64_t verified = 0, unverified = 0;

	hc_metrics_family(w, "hypercore_ibrl_beacon_connected", "gauge",
			  "Whether the beacon endpoint answered its last check (1) or not (0); "
			  "checked every 30 s");
	hc_metrics_sample(w, "hypercore_ibrl_beacon_connected", NULL, c->beacon_connected);
	hc_metrics_family(w, "hypercore_ibrl_states_rejected_total", "counter",
			  "States from other nodes dropped before use: unsigned, no key, a bad "
			  "signature, another key than the one pinned, or a node not trusted");
	for (int i = 0; i < IBRL_REJECT_REASONS; i++) {
		const char *labels[] = { "reason", hc_cluster_ibrl_reject_names[i], NULL };

		hc_metrics_sample(w, "hypercore_ibrl_states_rejected_total", labels,
				  (double)c->ibrl_rejected[i]);
	}
	hc_metrics_family(w, "hypercore_ibrl_states_verified_total", "counter",
			  "States accepted with a valid signature of their node's key");
	hc_metrics_sample(w, "hypercore_ibrl_states_verified_total", NULL,
			  (double)c->ibrl_verified);
	hc_metrics_family(w, "hypercore_ibrl_states_unverified_total", "counter",
			  "Unsigned states accepted from nodes without a key (permissive mode)");
	hc_metrics_sample(w, "hypercore_ibrl_states_unverified_total", NULL,
			  (double)c->ibrl_unverified);
	hc_metrics_family(w, "hypercore_ibrl_node_verified", "gauge",
			  "Per node whose state is held: 1 if signed by its pinned key, 0 if not");
	for (size_t i = 0; i < c->npeers; i++) {
		const char *labels[] = { "node", c->peers[i].name, NULL };

		hc_metrics_sample(w, "hypercore_ibrl_node_verified", labels, c->peers[i].verified);
		verified += c->peers[i].verified;
		unverified += !c->peers[i].verified;
	}
	hc_metrics_family(w, "hypercore_ibrl_nodes", "gauge",
			  "Other nodes whose state is held, by trust");
	hc_metrics_sample(w, "hypercore_ibrl_nodes", (const char *[]){ "trust", "verified", NULL },
			  (double)verified);
	hc_metrics_sample(w, "hypercore_ibrl_nodes", (const char *[]){ "trust", "unverified", NULL },
			  (double)unverified);
	hc_metrics_family(w, "hypercore_ibrl_keys_pinned", "gauge",
			  "Node keys known: pinned on first use or from --trusted-keys");
	hc_metrics_sample(w, "hypercore_ibrl_keys_pinned", NULL,
			  (double)hc_ibrl_trust_count(c->trust));
	hc_metrics_family(w, "hypercore_ibrl_attestations_total", "counter",
			  "BEACON_ATTEST: answered for others, and answers to ours verified or "
			  "rejected");
	hc_metrics_sample(w, "hypercore_ibrl_attestations_total",
			  (const char *[]){ "result", "answered", NULL }, (double)c->attests_answered);
	hc_metrics_sample(w, "hypercore_ibrl_attestations_total",
			  (const char *[]){ "result", "verified", NULL }, (double)c->attests_verified);
	hc_metrics_sample(w, "hypercore_ibrl_attestations_total",
			  (const char *[]){ "result", "rejected", NULL }, (double)c->attests_rejected);
}
