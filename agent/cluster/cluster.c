/* Node identity, state and the cluster membership it runs; see cluster.h. */
#include "cluster/cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define HC_LOG_MODULE "cluster"
#include "log/log.h"
#include "metrics/metrics.h"

#define JOIN_ATTEMPTS 5

struct hc_cluster {
	struct hc_loop *loop;
	char node_id[HC_NODE_ID_LEN + 1];
	char *base_url;
	const struct hc_cluster_config *cfg;
	struct hc_gossip *gossip;
	struct hc_metrics *metrics;
	struct leave_state *leaving; /* a leave in progress */
};

struct leave_state {
	struct hc_cluster *c;
	void (*done)(void *arg);
	void *arg;
};

int hc_node_id_valid(const char *s)
{
	static const int dash[] = { 8, 13, 18, 23 };

	if (strlen(s) != HC_NODE_ID_LEN)
		return 0;
	for (int i = 0; i < HC_NODE_ID_LEN; i++) {
		int want_dash = i == dash[0] || i == dash[1] || i == dash[2] || i == dash[3];

		if (want_dash ? s[i] != '-'
			      : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	}
	return 1;
}

static int new_uuid(char *out)
{
	unsigned char b[16];
	ssize_t n = getrandom(b, sizeof(b), 0);

	if (n != (ssize_t)sizeof(b))
		return n < 0 ? -errno : -EIO;
	b[6] = (b[6] & 0x0f) | 0x40; /* version 4 */
	b[8] = (b[8] & 0x3f) | 0x80; /* RFC 4122 variant */
	snprintf(out, HC_NODE_ID_LEN + 1,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
		 b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
		 b[14], b[15]);
	return 0;
}

static int read_id(const char *path, char *id, char *err, size_t errlen)
{
	/* Room for the id, its newline, one byte to detect longer files, NUL. */
	char buf[HC_NODE_ID_LEN + 3];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return -EIO;
	}
	if (n == HC_NODE_ID_LEN + 1 && buf[HC_NODE_ID_LEN] == '\n')
		n--;
	buf[n] = '\0';
	if (n != HC_NODE_ID_LEN || !hc_node_id_valid(buf)) {
		snprintf(err, errlen,
			 "%s does not hold a node id (a lowercase UUID); fix or remove it", path);
		return -EINVAL;
	}
	memcpy(id, buf, HC_NODE_ID_LEN + 1);
	return 0;
}

static int write_id(const char *path, const char *id, char *err, size_t errlen)
{
	char tmp[4096], line[HC_NODE_ID_LEN + 2];
	int fd, r = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "path too long: %s", path);
		return -ENAMETOOLONG;
	}
	snprintf(line, sizeof(line), "%s\n", id);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		return r;
	}
	if (write(fd, line, HC_NODE_ID_LEN + 1) != HC_NODE_ID_LEN + 1 || fsync(fd) < 0) {
		r = errno ? -errno : -EIO;
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(-r));
	}
	if (close(fd) < 0 && !r) {
		r = -errno;
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
	}
	if (!r && rename(tmp, path) < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
	}
	if (r)
		unlink(tmp);
	return r;
}

int hc_node_id_load(const char *path, char *id, char *err, size_t errlen)
{
	int r = read_id(path, id, err, errlen);

	if (r != -ENOENT) {
		if (r < 0 && r != -EINVAL && r != -EIO)
			snprintf(err, errlen, "cannot open %s: %s", path, strerror(-r));
		return r;
	}
	r = new_uuid(id);
	if (r < 0) {
		snprintf(err, errlen, "cannot make a node id: %s", strerror(-r));
		return r;
	}
	return write_id(path, id, err, errlen);
}

struct hc_cluster *hc_cluster_new(struct hc_loop *loop, const struct hc_cluster_config *cfg,
				  char *err, size_t errlen)
{
	struct hc_cluster *c = calloc(1, sizeof(*c));
	char path[4096];

	if (!c || !(c->base_url = strdup(cfg->base_url))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	c->loop = loop;
	if (snprintf(path, sizeof(path), "%s/node-id", cfg->state_dir) >= (int)sizeof(path)) {
		snprintf(err, errlen, "state dir path too long");
		goto fail;
	}
	if (hc_node_id_load(path, c->node_id, err, errlen) < 0)
		goto fail;
	c->cfg = cfg;
	return c;
fail:
	hc_cluster_free(c);
	return NULL;
}

void hc_cluster_free(struct hc_cluster *c)
{
	if (!c)
		return;
	if (c->metrics)
		hc_metrics_unregister(c->metrics, hc_gossip_collect, c->gossip);
	hc_gossip_free(c->gossip);
	free(c->leaving); /* the agent stopped before the leave finished */
	free(c->base_url);
	free(c);
}

static void answer_info(struct hc_cluster *c, uint64_t query_id)
{
	char info[512];
	int n = snprintf(info, sizeof(info),
			 "{\"name\":\"%s\",\"node_id\":\"%s\",\"version\":\"%s\"}",
			 hc_gossip_name(c->gossip), c->node_id, HC_VERSION);

	if (hc_gossip_respond(c->gossip, query_id, (const uint8_t *)info, (size_t)n) < 0)
		hc_log(HC_LOG_WARN, "cannot answer %s", HC_CLUSTER_INFO_QUERY);
}

static void on_gossip_event(const struct hc_gossip_event *ev, void *arg)
{
	struct hc_cluster *c = arg;

	/* Spawn/stop queries and state broadcasts are the cluster issue's;
	 * until then events are logged and only the info query is answered. */
	switch (ev->type) {
	case HC_GOSSIP_EV_USER:
		hc_log(HC_LOG_INFO, "user event %s (%zu bytes, ltime %llu)", ev->name, ev->len,
		       (unsigned long long)ev->ltime);
		break;
	case HC_GOSSIP_EV_QUERY:
		hc_log(HC_LOG_INFO, "query %s from %s (%zu bytes)", ev->name,
		       ev->query_source ? ev->query_source : "?", ev->len);
		if (strcmp(ev->name, HC_CLUSTER_INFO_QUERY) == 0)
			answer_info(c, ev->query_id);
		break;
	default:
		break;
	}
}

int hc_cluster_user_event(struct hc_cluster *c, const char *name, const uint8_t *payload,
			  size_t len, bool coalesce)
{
	return hc_gossip_user_event(c->gossip, name, payload, len, coalesce);
}

int hc_cluster_query(struct hc_cluster *c, const char *name, const uint8_t *payload, size_t len,
		     const struct hc_gossip_query_params *params,
		     hc_gossip_response_fn *on_response, void (*done)(void *arg), void *arg)
{
	return hc_gossip_query(c->gossip, name, payload, len, params, on_response, done, arg);
}

static void on_joined(void *arg, unsigned joined)
{
	struct hc_cluster *c = arg;

	if (!joined)
		hc_log(HC_LOG_ERROR, "could not join any seed; running as a cluster of one "
				     "until a peer joins us");
	(void)c;
}

int hc_cluster_start(struct hc_cluster *c, char *err, size_t errlen)
{
	const struct hc_cluster_config *cfg = c->cfg;
	struct hc_gossip_config gc = cfg->gossip;

	if (!gc.name)
		gc.name = c->node_id;
	gc.on_event = on_gossip_event;
	gc.event_arg = c;
	c->gossip = hc_gossip_new(c->loop, &gc, err, errlen);
	if (!c->gossip)
		return -1;
	if (cfg->njoin && hc_gossip_join(c->gossip, cfg->join, cfg->njoin, JOIN_ATTEMPTS, false,
					 on_joined, c) < 0) {
		snprintf(err, errlen, "invalid join address");
		return -1;
	}
	return 0;
}

void hc_cluster_gossip_addr(const struct hc_cluster *c, char *buf, size_t len)
{
	struct hc_gossip_member *ms;
	size_t n = 0;

	snprintf(buf, len, "-");
	ms = hc_gossip_members(c->gossip, &n);
	for (size_t i = 0; ms && i < n; i++)
		if (strcmp(ms[i].name, hc_gossip_name(c->gossip)) == 0)
			snprintf(buf, len, "%s", ms[i].addr);
	hc_gossip_members_free(ms, n);
}

struct hc_gossip_member *hc_cluster_members(struct hc_cluster *c, size_t *n)
{
	if (!c->gossip) {
		*n = 0;
		return calloc(1, sizeof(struct hc_gossip_member));
	}
	return hc_gossip_members(c->gossip, n);
}

static void left(void *arg)
{
	struct leave_state *ls = arg;

	ls->c->leaving = NULL;
	ls->done(ls->arg);
	free(ls);
}

void hc_cluster_leave(struct hc_cluster *c, void (*done)(void *arg), void *arg)
{
	struct leave_state *ls = malloc(sizeof(*ls));

	if (!ls || !c->gossip) {
		free(ls);
		done(arg);
		return;
	}
	/* Filled first: alone in the cluster, the leave completes at once. */
	ls->c = c;
	ls->done = done;
	ls->arg = arg;
	c->leaving = ls;
	if (hc_gossip_leave(c->gossip, left, ls) < 0) {
		c->leaving = NULL;
		free(ls);
		done(arg);
	}
}

int hc_cluster_register_metrics(struct hc_cluster *c, struct hc_metrics *m)
{
	int r = hc_metrics_register(m, hc_gossip_collect, c->gossip);

	if (r == 0)
		c->metrics = m;
	return r;
}

const char *hc_cluster_node_id(const struct hc_cluster *c)
{
	return c->node_id;
}

size_t hc_cluster_local_workloads(const struct hc_cluster *c)
{
	(void)c;
	return 0;
}

/* Builds this node's own state. Strings point into the cluster; the
 * message's own allocations are freed by hc_cluster_list_free(). */
static Cluster__Services__Api__NodeStateResponse *local_state(struct hc_cluster *c)
{
	Cluster__Services__Api__NodeStateResponse *st = malloc(sizeof(*st));
	Cluster__Services__Api__Node *node = malloc(sizeof(*node));

	if (!st || !node) {
		free(st);
		free(node);
		return NULL;
	}
	cluster__services__api__node_state_response__init(st);
	cluster__services__api__node__init(node);
	node->id = c->node_id;
	st->node = node;
	return st;
}

Cluster__Services__Api__NodesStateResponse *hc_cluster_list(struct hc_cluster *c)
{
	Cluster__Services__Api__NodesStateResponse *list = malloc(sizeof(*list));

	if (!list)
		return NULL;
	cluster__services__api__nodes_state_response__init(list);
	list->states = calloc(1, sizeof(*list->states));
	if (!list->states || !(list->states[0] = local_state(c))) {
		hc_cluster_list_free(list);
		errno = ENOMEM;
		return NULL;
	}
	list->n_states = 1;
	return list;
}

void hc_cluster_list_free(Cluster__Services__Api__NodesStateResponse *list)
{
	if (!list)
		return;
	for (size_t i = 0; i < list->n_states; i++) {
		if (list->states[i])
			free(list->states[i]->node);
		free(list->states[i]);
	}
	free(list->states);
	free(list);
}
