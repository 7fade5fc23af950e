/* Workload logs: hypercore logs through the crilog cursor, the APIs'
 * numbered reads, and rotation through CRI ReopenContainerLog. */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include <stdio.h>

#include "crilog_int.h"
#include "runtime_int.h"

struct forward {
	hc_runtime_log_fn *fn;
	void *arg;
};

static int forward_line(void *arg, const struct hc_crilog_line *line)
{
	struct forward *f = arg;
	struct hc_log_line out = {
		.stream = line->stream == HC_CRILOG_STDERR ? HC_LOG_STDERR : HC_LOG_STDOUT,
		.timestamp = line->timestamp,
		.text = line->text,
		.len = line->len,
		.truncated = line->truncated,
	};

	return f->fn(f->arg, &out);
}

int hc_runtime_logs(struct hc_runtime *rt, const char *id, long tail, bool follow, int stop_fd,
		    hc_runtime_log_fn *fn, void *arg, struct hc_err *err)
{
	struct forward f = { fn, arg };
	struct hc_crilog_cursor *c;
	struct hc_workload w;
	int r;

	r = hc_runtime_get(rt, id, &w, err);
	if (r < 0)
		return r;
	if (!w.log_path[0]) {
		hc_workload_fini(&w);
		return hc_err_set(err, -ENOENT, "workload %s has no log", id);
	}
	c = hc_crilog_cursor_open(w.log_path, tail);
	if (!c) {
		r = errno == ENOENT ? hc_err_set(err, -ENOENT, "workload %s has written no output yet", id)
				    : hc_err_set(err, -errno, "cannot read %s: %s", w.log_path,
						 strerror(errno));
		hc_workload_fini(&w);
		return r;
	}
	hc_workload_fini(&w);
	r = follow ? hc_crilog_follow(c, forward_line, &f, stop_fd)
		   : hc_crilog_cursor_read(c, forward_line, &f);
	if (r == 0 && !follow)
		r = hc_crilog_cursor_flush(c, forward_line, &f);
	hc_crilog_cursor_free(c);
	if (r < 0)
		return hc_err_set(err, r, "reading the log of %s: %s", id, strerror(-r));
	return 0;
}

/* The workload's log file, into path. 0, -ENOENT or -errno, with err. */
static int log_path_of(struct hc_runtime *rt, const char *id, char *path, size_t len,
		       struct hc_err *err)
{
	struct hc_workload w;
	int r = hc_runtime_get(rt, id, &w, err);

	if (r < 0)
		return r;
	if (!w.log_path[0])
		r = hc_err_set(err, -ENOENT, "workload %s has no log", id);
	else
		snprintf(path, len, "%s", w.log_path);
	hc_workload_fini(&w);
	return r;
}

int hc_runtime_logs_lines(struct hc_runtime *rt, const char *id, uint32_t tail,
			  uint64_t from_line, uint64_t window, hc_runtime_log_fn *fn, void *arg,
			  uint64_t *next_line, struct hc_err *err)
{
	struct hc_crilog_query q = { .from_line = from_line, .tail = tail, .window = window,
				     /* a one-shot read shows output left without '\n' */
				     .flush = from_line == 0 };
	struct forward f = { fn, arg };
	char path[4096];
	int r;

	*next_line = 0;
	r = log_path_of(rt, id, path, sizeof(path), err);
	if (r < 0)
		return r;
	r = hc_crilog_read_lines(path, &q, rt->log_marks, forward_line, &f, next_line);
	if (r == -ENOENT)
		return hc_err_set(err, -ENOENT, "workload %s has written no output yet", id);
	if (r < 0)
		return hc_err_set(err, r, "reading the log of %s: %s", id, strerror(-r));
	return r > 0 ? 0 : r;
}

struct reopen_arg {
	struct hc_runtime *rt;
	const char *container_id;
	struct hc_err *err;
};

static int reopen_cri(void *arg)
{
	Runtime__V1__ReopenContainerLogRequest req = RUNTIME__V1__REOPEN_CONTAINER_LOG_REQUEST__INIT;
	struct reopen_arg *ra = arg;
	ProtobufCMessage *resp = NULL;
	int r;

	req.container_id = (char *)ra->container_id;
	r = hc_cri_call(ra->rt, "RuntimeService/ReopenContainerLog", &req.base,
			&runtime__v1__reopen_container_log_response__descriptor, &resp,
			HC_CRI_TIMEOUT_MS, "reopening the log", ra->err);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return r;
}

int hc_runtime_log_rotate(struct hc_runtime *rt, const char *log_path, const char *container_id,
			  uint64_t min_size, struct hc_err *err)
{
	struct reopen_arg ra = { rt, container_id, err };
	int r;

	hc_err_set(err, 0, "%s", "");
	r = hc_crilog_rotate(log_path, min_size, rt->log_max_files, reopen_cri, &ra);
	if (r < 0 && !err->msg[0])
		hc_err_set(err, r, "rotating %s: %s", log_path, strerror(-r));
	return r;
}
