/* The Kubernetes channel protocol (v4.channel.k8s.io) over a WebSocket:
 * what `hypercore attach` pumps between the terminal and the workload. */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "base/base.h"
#include "ws_int.h"

#define STDIN_CHUNK 32768

int hc_ws_status_parse(const char *text, size_t len, int *exit_code, struct hc_err *err)
{
	json_t *doc = json_loadb(text, len, 0, NULL), *causes, *cause;
	const char *status, *reason, *message;
	size_t i;

	if (!json_is_object(doc)) {
		json_decref(doc);
		return -EINVAL;
	}
	status = json_string_value(json_object_get(doc, "status"));
	reason = json_string_value(json_object_get(doc, "reason"));
	message = json_string_value(json_object_get(doc, "message"));
	*exit_code = -1;
	hc_err_set(err, -EIO, "%s", message ? message : "the command failed");
	if (status && strcmp(status, "Success") == 0) {
		*exit_code = 0;
	} else if (reason && strcmp(reason, "NonZeroExitCode") == 0) {
		causes = json_object_get(json_object_get(doc, "details"), "causes");
		json_array_foreach(causes, i, cause) {
			const char *r = json_string_value(json_object_get(cause, "reason"));
			const char *m = json_string_value(json_object_get(cause, "message"));
			char *end;
			long code;

			if (!r || !m || strcmp(r, "ExitCode") != 0)
				continue;
			code = strtol(m, &end, 10);
			if (end != m && !*end && code >= 0 && code <= 255)
				*exit_code = (int)code;
		}
	}
	json_decref(doc);
	return 0;
}

static int send_channel(struct hc_ws *ws, uint8_t channel, const void *data, size_t len)
{
	uint8_t *buf = malloc(len + 1);
	int r;

	if (!buf)
		return -ENOMEM;
	buf[0] = channel;
	memcpy(buf + 1, data, len);
	r = hc_ws_send(ws, buf, len + 1);
	free(buf);
	return r;
}

static int send_size(struct hc_ws *ws, int tty_fd)
{
	struct winsize wsz;
	char json[64];
	int n;

	if (ioctl(tty_fd, TIOCGWINSZ, &wsz) < 0 || !wsz.ws_col || !wsz.ws_row)
		return 0; /* nothing to tell */
	n = snprintf(json, sizeof(json), "{\"Width\":%u,\"Height\":%u}", wsz.ws_col, wsz.ws_row);
	return send_channel(ws, HC_WS_CHANNEL_RESIZE, json, (size_t)n);
}

/* Handles one message from the server; sets *done at the end. */
static int on_message(const struct hc_ws_message *m, const struct hc_ws_stream_io *io,
		      bool *have_status, int *exit_code, struct hc_err *err)
{
	const uint8_t *data = m->payload + 1;
	size_t len = m->len ? m->len - 1 : 0;

	if (m->len == 0)
		return 0;
	switch (m->payload[0]) {
	case HC_WS_CHANNEL_STDOUT:
		return hc_write_all(io->out_fd, data, len);
	case HC_WS_CHANNEL_STDERR:
		return hc_write_all(io->err_fd, data, len);
	case HC_WS_CHANNEL_STATUS:
		if (hc_ws_status_parse((const char *)data, len, exit_code, err) < 0) {
			hc_err_set(err, -EPROTO, "unreadable status from the streaming server");
			return -EPROTO;
		}
		*have_status = true;
		return 0;
	default:
		return 0; /* channels we do not use */
	}
}

int hc_ws_stream_run(struct hc_ws *ws, const struct hc_ws_stream_io *io, int *exit_code,
		     struct hc_err *err)
{
	bool have_status = false, stdin_open = io->in_fd >= 0;
	uint8_t *chunk = malloc(STDIN_CHUNK);
	int r = 0;

	*exit_code = -1;
	if (!chunk) {
		hc_err_set(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	if (io->tty_fd >= 0 && (r = send_size(ws, io->tty_fd)) < 0)
		goto io_error;
	for (;;) {
		struct pollfd pfd[3] = {
			{ .fd = hc_ws_fd(ws), .events = POLLIN },
			{ .fd = stdin_open ? io->in_fd : -1, .events = POLLIN },
			{ .fd = io->winch_fd, .events = POLLIN },
		};
		struct hc_ws_message m;

		if (!hc_ws_pending(ws)) {
			r = poll(pfd, 3, -1);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				r = -errno;
				goto io_error;
			}
		} else {
			pfd[0].revents = POLLIN;
		}
		if (pfd[2].revents) {
			struct signalfd_siginfo si;

			if (read(io->winch_fd, &si, sizeof(si)) > 0 && io->tty_fd >= 0 &&
			    (r = send_size(ws, io->tty_fd)) < 0)
				goto io_error;
		}
		if (pfd[1].revents) {
			ssize_t n = read(io->in_fd, chunk, STDIN_CHUNK);

			if (n < 0 && errno != EINTR && errno != EAGAIN) {
				stdin_open = false;
			} else if (n == 0) {
				/* v4 has no way to close stdin; the command ends on its own */
				stdin_open = false;
			} else if (n > 0 && (r = send_channel(ws, HC_WS_CHANNEL_STDIN, chunk,
							      (size_t)n)) < 0) {
				goto io_error;
			}
		}
		if (!pfd[0].revents)
			continue;
		r = hc_ws_recv(ws, &m);
		if (r == 0)
			break; /* the server closed */
		if (r < 0) {
			if (r == -ECONNRESET && have_status)
				break; /* closed without a close frame after the status */
			goto io_error;
		}
		r = on_message(&m, io, &have_status, exit_code, err);
		if (r < 0)
			goto out;
	}
	r = 0;
	if (!have_status) {
		hc_err_set(err, -ECONNRESET, "the stream ended without the command's status");
		r = -ECONNRESET;
	}
	goto out;
io_error:
	hc_err_set(err, r, "stream: %s", strerror(-r));
out:
	free(chunk);
	return r;
}
