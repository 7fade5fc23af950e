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
	char container_id[65];
	struct hc_strv vm_argv = { 0 };
	struct hc_workload w;
	struct hc_err why;
	struct hc_ws *ws;
	size_t argc = 0;
	int r;

	while (argv[argc])
		if (++argc > MAX_ARGS)
			return hc_err_set(err, -E2BIG, "at most %d arguments", MAX_ARGS);
	if (argc == 0)
		return hc_err_set(err, -EINVAL, "no command to run");
	r = hc_runtime_get(rt, id, &w, err);
	if (r < 0)
		return r;
	/* a microVM's container is its VMM: the launcher runs argv in the guest */
	if (hc_spec_is_vm(&w.spec) && hc_vm_attach_argv(argv, &vm_argv) < 0)
		r = hc_err_set(err, -ENOMEM, "out of memory");
	snprintf(container_id, sizeof(container_id), "%s", w.container_id);
	hc_workload_fini(&w);
	if (r < 0)
		goto out;
	if (!container_id[0]) {
		r = hc_err_set(err, -ENOENT, "workload %s has no container", id);
		goto out;
	}
	req.container_id = container_id;
	req.cmd = vm_argv.n ? vm_argv.v : (char **)argv;
	req.n_cmd = vm_argv.n ? vm_argv.n : argc;
	req.tty = tty;
	req.stdin = io->in_fd >= 0;
	req.stdout = true;
	req.stderr = !tty; /* a terminal carries both on one stream */
	r = hc_cri_call(rt, "RuntimeService/Exec", &req.base, &runtime__v1__exec_response__descriptor,
			(ProtobufCMessage **)&resp, HC_CRI_TIMEOUT_MS, "exec", err);
	hc_strv_fini(&vm_argv);
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
out:
	hc_strv_fini(&vm_argv);
	return r;
}
