/* The CRI client: calls to containerd's runtime.v1 services, errors mapped
 * to -errno with one readable line, liveness probes. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define HC_LOG_MODULE "runtime"
#include "crilog_int.h"
#include "log/log.h"
#include "runtime_int.h"

int hc_runtime_socket_path(const char *run_dir, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/containerd.sock", run_dir);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static char *concat(const char *a, const char *sep, const char *b)
{
	char *s;

	if (asprintf(&s, "%s%s%s", a, sep, b) < 0)
		return NULL;
	return s;
}

char *hc_runtime_abspath(const char *path)
{
	char cwd[4096];

	if (path[0] == '/')
		return strdup(path);
	if (!getcwd(cwd, sizeof(cwd)))
		return NULL;
	return concat(cwd, "/", path);
}

static struct hc_cri_chan *chan_new(const char *target)
{
	struct hc_cri_chan *ch = calloc(1, sizeof(*ch));

	if (!ch)
		return NULL;
	ch->client = hc_rpc_client_new(target);
	if (!ch->client) {
		free(ch);
		return NULL;
	}
	ch->refs = 1;
	return ch;
}

/* Drops a reference; the last one closes the channel (outside the lock:
 * closing waits for gRPC). */
static void chan_put(struct hc_runtime *rt, struct hc_cri_chan *ch)
{
	bool last;

	pthread_mutex_lock(&rt->lock);
	last = --ch->refs == 0;
	pthread_mutex_unlock(&rt->lock);
	if (last) {
		hc_rpc_client_free(ch->client);
		free(ch);
	}
}

/* The channel for one call, with a reference the caller puts back. After
 * containerd went away a fresh channel replaces the current one: gRPC backs
 * off reconnecting for up to minutes, a new channel connects at once to a
 * restarted containerd. The old one stays until its calls in flight end. */
static struct hc_cri_chan *chan_get(struct hc_runtime *rt)
{
	struct hc_cri_chan *fresh = NULL, *old = NULL, *ch;
	bool want;

	pthread_mutex_lock(&rt->lock);
	want = rt->reconnect;
	pthread_mutex_unlock(&rt->lock);
	if (want)
		fresh = chan_new(rt->target); /* not under the lock: it allocates */
	pthread_mutex_lock(&rt->lock);
	if (fresh && rt->reconnect) {
		old = rt->chan;
		rt->chan = fresh;
		rt->reconnect = false;
		fresh = NULL;
	}
	ch = rt->chan;
	ch->refs++;
	pthread_mutex_unlock(&rt->lock);
	if (old)
		chan_put(rt, old);
	if (fresh) { /* another thread swapped first */
		hc_rpc_client_free(fresh->client);
		free(fresh);
	}
	return ch;
}

struct hc_runtime *hc_runtime_new(const struct hc_runtime_config *cfg)
{
	struct hc_runtime *rt = calloc(1, sizeof(*rt));
	char *state_dir = hc_runtime_abspath(cfg->state_dir ? cfg->state_dir
							  : HC_RUNTIME_DEFAULT_STATE_DIR);

	if (!rt || !state_dir) {
		free(rt);
		free(state_dir);
		errno = ENOMEM;
		return NULL;
	}
	rt->socket = strdup(cfg->socket);
	/* containerd resolves paths from its own working directory */
	rt->log_root = concat(state_dir, "/", "logs");
	rt->vm_root = concat(state_dir, "/", "vm");
	free(state_dir);
	rt->cgroup_parent = strdup(cfg->cgroup_parent ? cfg->cgroup_parent
						      : HC_RUNTIME_DEFAULT_CGROUP_PARENT);
	rt->capacity_cpus = cfg->capacity_cpus;
	rt->capacity_mem_mb = cfg->capacity_mem_mb;
	rt->orphans_before_ns = cfg->orphans_before_ns;
	rt->on_sandbox = cfg->on_sandbox;
	rt->on_sandbox_arg = cfg->on_sandbox_arg;
	rt->log_max_size = cfg->log_max_size ? cfg->log_max_size : HC_RUNTIME_DEFAULT_LOG_MAX_SIZE;
	rt->log_max_files = cfg->log_max_files ? cfg->log_max_files
					       : HC_RUNTIME_DEFAULT_LOG_MAX_FILES;
	if (rt->log_max_files > HC_RUNTIME_LOG_MAX_FILES)
		rt->log_max_files = HC_RUNTIME_LOG_MAX_FILES;
	rt->log_marks = hc_crilog_marks_new();
	pthread_mutex_init(&rt->lock, NULL);
	pthread_rwlock_init(&rt->teardown_lock, NULL);
	if (!rt->socket || !rt->log_root || !rt->vm_root || !rt->cgroup_parent || !rt->log_marks ||
	    !(rt->target = concat("unix:", "", cfg->socket)))
		goto fail;
	rt->chan = chan_new(rt->target);
	if (!rt->chan)
		goto fail;
	return rt;
fail:
	hc_runtime_free(rt);
	errno = ENOMEM;
	return NULL;
}

void hc_runtime_free(struct hc_runtime *rt)
{
	if (!rt)
		return;
	/* no call is in flight any more: the caller's promise */
	if (rt->chan)
		chan_put(rt, rt->chan);
	hc_runtime_track_fini(rt);
	pthread_mutex_destroy(&rt->lock);
	pthread_rwlock_destroy(&rt->teardown_lock);
	hc_crilog_marks_free(rt->log_marks);
	free(rt->socket);
	free(rt->target);
	free(rt->log_root);
	free(rt->vm_root);
	free(rt->cgroup_parent);
	free(rt);
}

void hc_runtime_set_on_sandbox(struct hc_runtime *rt, hc_runtime_sandbox_fn *fn, void *arg)
{
	rt->on_sandbox = fn;
	rt->on_sandbox_arg = arg;
}

int hc_cri_socket_probe(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd, r = 0;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		r = -errno;
	close(fd);
	return r;
}

int hc_runtime_probe(const struct hc_runtime *rt, struct hc_err *err)
{
	int r = hc_cri_socket_probe(rt->socket);

	if (r < 0)
		return hc_err_set(err, r, "no containerd at %s (%s)", rt->socket, strerror(-r));
	return 0;
}

int hc_cri_call(struct hc_runtime *rt, const char *method, const ProtobufCMessage *req,
		const ProtobufCMessageDescriptor *resp_type, ProtobufCMessage **resp, int timeout_ms,
		const char *what, struct hc_err *err)
{
	char path[128];

	snprintf(path, sizeof(path), "/runtime.v1.%s", method);
	return hc_containerd_call(rt, path, NULL, 0, req, resp_type, resp, timeout_ms, what, err);
}

int hc_containerd_call(struct hc_runtime *rt, const char *path, const struct hc_rpc_metadata *md,
		       size_t nmd, const ProtobufCMessage *req,
		       const ProtobufCMessageDescriptor *resp_type, ProtobufCMessage **resp,
		       int timeout_ms, const char *what, struct hc_err *err)
{
	struct hc_rpc_status st;
	struct hc_cri_chan *ch;
	int e, rc;

	*resp = NULL;
	ch = chan_get(rt);
	rc = hc_rpc_client_call(ch->client, path, req, resp_type, resp, md, nmd, timeout_ms, &st);
	e = rc == 0 ? 0 : -hc_rpc_code_errno(st.code);
	if (e == ECONNREFUSED) {
		/* only if no other call replaced the channel meanwhile */
		pthread_mutex_lock(&rt->lock);
		if (rt->chan == ch)
			rt->reconnect = true;
		pthread_mutex_unlock(&rt->lock);
	}
	chan_put(rt, ch);
	if (rc == 0)
		return 0;
	hc_log(HC_LOG_DEBUG, "containerd %s failed: %s %s", path,
	       hc_rpc_code_name(st.code), st.message);
	if (e == ECONNREFUSED) {
		/* not retried here: the call may have reached containerd */
		return hc_err_set(err, -e, "%s: containerd at %s is not answering (%s)", what,
				  rt->socket, st.message);
	}
	if (e == ETIMEDOUT)
		return hc_err_set(err, -e, "%s: containerd did not answer within %d s", what,
				  timeout_ms / 1000);
	return hc_err_set(err, -e, "%s: %s", what, st.message);
}

const char *hc_cri_map_get(Runtime__V1__StringEntry *const *entries, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (entries[i] && entries[i]->key && strcmp(entries[i]->key, key) == 0)
			return entries[i]->value;
	return NULL;
}

int hc_runtime_ready(struct hc_runtime *rt, int timeout_ms, struct hc_err *err)
{
	Runtime__V1__VersionRequest vreq = RUNTIME__V1__VERSION_REQUEST__INIT;
	Runtime__V1__StatusRequest sreq = RUNTIME__V1__STATUS_REQUEST__INIT;
	Runtime__V1__VersionResponse *v = NULL;
	Runtime__V1__StatusResponse *s = NULL;
	int r;

	vreq.version = "v1";
	r = hc_cri_call(rt, "RuntimeService/Version", &vreq.base,
			&runtime__v1__version_response__descriptor, (ProtobufCMessage **)&v,
			timeout_ms, "CRI version", err);
	if (r < 0)
		return r;
	if (strcmp(v->runtime_api_version, "v1") != 0)
		r = hc_err_set(err, -EPROTONOSUPPORT, "%s %s speaks CRI %s, not v1",
			       v->runtime_name, v->runtime_version, v->runtime_api_version);
	protobuf_c_message_free_unpacked(&v->base, NULL);
	if (r < 0)
		return r;
	r = hc_cri_call(rt, "RuntimeService/Status", &sreq.base,
			&runtime__v1__status_response__descriptor, (ProtobufCMessage **)&s,
			timeout_ms, "CRI status", err);
	if (r < 0)
		return r;
	for (size_t i = 0; s->status && i < s->status->n_conditions; i++) {
		Runtime__V1__RuntimeCondition *c = s->status->conditions[i];

		if (c->status)
			continue;
		r = hc_err_set(err, -EAGAIN, "containerd not ready: %s %s %s", c->type,
			       c->reason, c->message);
		break;
	}
	protobuf_c_message_free_unpacked(&s->base, NULL);
	return r;
}
