/* hypercore attach: CRI Exec, then the streaming server over WebSocket. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "runtime_int.h"
#include "ws_int.h"

#define STREAM_PROTOCOL "v4.channel.k8s.io"
#define CONNECT_TIMEOUT_MS 10000
#define MAX_ARGS 256

int hc_runtime_exec(struct hc_runtime *rt, const char *id, char *const argv[], bool tty,
		    const struct hc_runtime_exec_io *io, int *exit_code, struct hc_err *err)
{
	Runtime__V1__ExecRequest req = RUNTIME__V1__EXEC_REQUEST__INIT;
	Runtime__V1__ExecResponse *resp = NULL;
	struct hc_ws_stream_io sio = { io->in_fd, io->out_fd, io->err_fd, io->tty_fd, io->winch_fd };
	char sandbox_id[65], container_id[65];
	struct hc_err why;
	struct hc_ws *ws;
	size_t argc = 0;
	int r;

	while (argv[argc])
		if (++argc > MAX_ARGS)
			return hc_err_set(err, -E2BIG, "at most %d arguments", MAX_ARGS);
	if (argc == 0)
		return hc_err_set(err, -EINVAL, "no command to run");
	r = hc_runtime_find(rt, id, sandbox_id, container_id, err);
	if (r < 0)
		return r;
	if (!container_id[0])
		return hc_err_set(err, -ENOENT, "workload %s has no container", id);
	req.container_id = container_id;
	req.cmd = (char **)argv;
	req.n_cmd = argc;
	req.tty = tty;
	req.stdin = io->in_fd >= 0;
	req.stdout = true;
	req.stderr = !tty; /* a terminal carries both on one stream */
	r = hc_cri_call(rt, "RuntimeService/Exec", &req.base, &runtime__v1__exec_response__descriptor,
			(ProtobufCMessage **)&resp, HC_CRI_TIMEOUT_MS, "exec", err);
	if (r < 0)
		return r;
	ws = hc_ws_connect(resp->url, STREAM_PROTOCOL, CONNECT_TIMEOUT_MS, &why);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	if (!ws)
		return hc_err_set(err, errno ? -errno : -EIO, "exec in %s: %s", id, why.msg);
	r = hc_ws_stream_run(ws, &sio, exit_code, &why);
	hc_ws_free(ws);
	if (r < 0)
		return hc_err_set(err, r, "exec in %s: %s", id, why.msg);
	if (*exit_code < 0)
		return hc_err_set(err, -EIO, "exec in %s: %s", id, why.msg);
	return 0;
}
