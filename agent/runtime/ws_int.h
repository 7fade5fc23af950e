/*
 * A small WebSocket (RFC 6455) client for containerd's streaming server
 * (CRI Exec/Attach), and the Kubernetes channel protocol on top of it
 * (v4.channel.k8s.io: the first payload byte of every binary message is the
 * channel: 0 stdin, 1 stdout, 2 stderr, 3 status JSON, 4 resize JSON).
 */
#ifndef HC_WS_INT_H
#define HC_WS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

#define HC_WS_MAX_MESSAGE (16u << 20) /* a bigger message is a protocol error */

enum hc_ws_opcode {
	HC_WS_CONTINUATION = 0x0,
	HC_WS_TEXT = 0x1,
	HC_WS_BINARY = 0x2,
	HC_WS_CLOSE = 0x8,
	HC_WS_PING = 0x9,
	HC_WS_PONG = 0xa,
};

/* One frame as parsed from the wire. payload points into the parsed buffer
 * (unmasked in place when the frame was masked). */
struct hc_ws_frame {
	bool fin;
	enum hc_ws_opcode opcode;
	const uint8_t *payload;
	uint64_t len;
};

/*
 * Parses one frame from buf. Returns the bytes it takes (> 0), 0 if buf
 * holds only part of it, or -EPROTO for a frame no server may send: RSV bits,
 * unknown opcodes, masked frames, control frames longer than 125 bytes or
 * fragmented, lengths not in shortest form or above HC_WS_MAX_MESSAGE.
 * Pure; buf is not changed.
 */
int hc_ws_frame_parse(const uint8_t *buf, size_t len, struct hc_ws_frame *frame);

struct hc_ws;

/* A whole message (fragments joined); payload owned by the connection and
 * valid until the next hc_ws_recv. For a close, code is the peer's code. */
struct hc_ws_message {
	enum hc_ws_opcode opcode; /* TEXT, BINARY or CLOSE */
	const uint8_t *payload;
	size_t len;
	uint16_t close_code;
};

/*
 * Connects to url ("http://HOST:PORT/PATH", HOST a name, an IPv4 address or
 * [IPv6]) and upgrades to WebSocket offering subprotocol; checks the 101
 * answer, Sec-WebSocket-Accept and the protocol chosen. Blocks at most
 * timeout_ms. NULL with errno and one readable line in err on failure.
 */
struct hc_ws *hc_ws_connect(const char *url, const char *subprotocol, int timeout_ms,
			    struct hc_err *err);

/* The socket, for poll(). */
int hc_ws_fd(const struct hc_ws *ws);

/* Sends one masked binary frame. Blocks until written. 0 or -errno. */
int hc_ws_send(struct hc_ws *ws, const void *data, size_t len);

/* Whether a whole frame may be buffered already (poll() will not say). */
bool hc_ws_pending(const struct hc_ws *ws);

/*
 * Reads one message, answering pings and skipping pongs on the way. Returns
 * 1 with a data message, 0 when the peer closed (msg->close_code set; our
 * close is sent back), -errno on errors (-EPROTO for protocol violations,
 * -EMSGSIZE above the limit, -ECONNRESET if the connection ended without a
 * close). Blocks until a message is complete.
 */
int hc_ws_recv(struct hc_ws *ws, struct hc_ws_message *msg);

/* Sends a close frame with code (once). 0 or -errno. */
int hc_ws_close(struct hc_ws *ws, uint16_t code);

void hc_ws_free(struct hc_ws *ws);

/* ---- the Kubernetes channel protocol ---- */

enum {
	HC_WS_CHANNEL_STDIN = 0,
	HC_WS_CHANNEL_STDOUT = 1,
	HC_WS_CHANNEL_STDERR = 2,
	HC_WS_CHANNEL_STATUS = 3,
	HC_WS_CHANNEL_RESIZE = 4,
};

struct hc_ws_stream_io {
	int in_fd;    /* forwarded to stdin; -1 for none */
	int out_fd;   /* stdout goes here */
	int err_fd;   /* stderr goes here */
	int tty_fd;   /* a terminal whose size is sent at start and on winch_fd; -1 */
	int winch_fd; /* readable when the size changed (a signalfd); -1 */
};

/*
 * Pumps io through the stream until the server ends it. Returns 0 when it
 * ended with a status: *exit_code is the command's exit status, or -1 with
 * the server's message in err when it failed otherwise. -errno on I/O or
 * protocol errors (err says which). Blocks.
 */
int hc_ws_stream_run(struct hc_ws *ws, const struct hc_ws_stream_io *io, int *exit_code,
		     struct hc_err *err);

/* Reads the channel-3 Status JSON: {"status":"Success"} -> 0;
 * NonZeroExitCode with an ExitCode cause -> that code; else -1 and the
 * message in err. 0 or -EINVAL for unreadable JSON. Pure. */
int hc_ws_status_parse(const char *json, size_t len, int *exit_code, struct hc_err *err);

#endif /* HC_WS_INT_H */
