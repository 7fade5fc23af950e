/* The proxy's HTTP/2 engine (h2.c: client sessions and streams; h2_up.c:
 * their backends, HTTP/1.1 or h2c), private to the proxy module. */
#ifndef HC_PROXY_H2_H
#define HC_PROXY_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

#include <hypercore/dataplane.h>

#include "proxy/proxy_int.h"

/* The HTTP/2 connection preface a client sends first (RFC 9113 3.4): on a
 * plain port it says h2c with prior knowledge. */
#define HC_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define HC_H2_PREFACE_LEN 24

/* Limits we advertise and enforce (docs/proxy.md, "HTTP/2"). */
#define HC_H2_MAX_STREAMS 128 /* SETTINGS_MAX_CONCURRENT_STREAMS */
#define HC_H2_HEADER_LIST_MAX 32768 /* SETTINGS_MAX_HEADER_LIST_SIZE, RFC 9113 6.5.2 sizes */
#define HC_H2_STREAM_WINDOW (256 * 1024) /* what a stream may have buffered here, each way */
#define HC_H2_CONN_WINDOW (1024 * 1024) /* what a connection may have buffered, client to us */
#define HC_H2_OUT_MAX (64 * 1024) /* frames encoded ahead of the socket */
#define HC_H2_MAX_CONTINUATIONS 8 /* CONTINUATION frames after one HEADERS */
/* Token buckets per connection: a burst, then so many a second. */
#define HC_H2_RESET_BURST 200 /* RST_STREAM from the client (CVE-2023-44487) */
#define HC_H2_RESET_RATE 100
#define HC_H2_CONTROL_BURST 500 /* PING and SETTINGS frames */
#define HC_H2_CONTROL_RATE 100
/* Streams refused for oversized header lists before the connection goes:
 * a decompression bomb costs us its decoding, so not many. */
#define HC_H2_BIG_HEADERS_MAX 8
/* What a stream keeps of a request sent on a reused HTTP/1.1 connection,
 * to send it again if the backend closed that connection under it: a head
 * and a small body (memory beyond the windows: 128 streams, 2 MiB). */
#define HC_H2_REPLAY_MAX (16 * 1024)
/* Idle HTTP/1.1 backend connections a client connection keeps: as many as
 * its streams may use at once. */
#define HC_H2_IDLE_BACKENDS HC_H2_MAX_STREAMS

/* What the hardening refused, by kind (hypercore_proxy_h2_refused_total). */
enum hc_h2_refusal {
	HC_H2_REFUSED_RAPID_RESET,
	HC_H2_REFUSED_CONTINUATION_FLOOD,
	HC_H2_REFUSED_HEADER_LIST, /* a stream's header list over the limit: 431 */
	HC_H2_REFUSED_HPACK_BOMB, /* too many of those on one connection: GOAWAY */
	HC_H2_REFUSED_CONTROL_FLOOD, /* PING / SETTINGS over their rate */
	HC_H2_REFUSED_FLOOD, /* nghttp2's own flood checks (unread acks, empty DATA) */
	HC_H2_REFUSED_PROTOCOL, /* a protocol error: GOAWAY from nghttp2 */
	HC_H2_REFUSED_STREAM_IDLE, /* a stream idle past --proxy-idle-timeout: RST_STREAM */
	HC_H2_REFUSED_CONN_IDLE, /* a connection idle past it: GOAWAY */
	HC_H2_REFUSALS
};

extern const char *const hc_h2_refusal_names[HC_H2_REFUSALS];

/* A growable byte queue: data at [off, off + len) of cap bytes. What bounds
 * each one is said where it is filled (flow-control windows, mostly). */
struct hc_h2_bq {
	char *p;
	size_t off, len, cap;
};

int hc_h2_bq_put(struct hc_h2_bq *q, const void *data, size_t len); /* 0 or -ENOMEM */
void hc_h2_bq_drop(struct hc_h2_bq *q, size_t len);
void hc_h2_bq_free(struct hc_h2_bq *q);
/* Frees the calling thread's cache of queue buffers (at a thread's end). */
void hc_h2_bq_cache_release(void);

/* Packed header fields, "name\0value\0" each, and the nghttp2_nv array
 * pointing into them (made by hc_h2_fields_nv). */
struct hc_h2_fields {
	struct hc_h2_bq b;
	unsigned n;
	size_t size; /* RFC 9113 6.5.2: name + value + 32 each */
};

int hc_h2_fields_add(struct hc_h2_fields *f, const char *name, size_t nlen, const char *value,
		     size_t vlen);
/* An array of f->n entries into f (valid while f is unchanged), freed by
 * the caller; NULL: out of memory. */
nghttp2_nv *hc_h2_fields_nv(const struct hc_h2_fields *f);
void hc_h2_fields_free(struct hc_h2_fields *f);

/* A backend socket of an HTTP/2 connection: an HTTP/1.1 connection (struct
 * hc_h2_h1) or a shared h2c connection (struct hc_h2_link). Epoll's data.ptr
 * points at h. Freed only by hc_proxy_h2_reap, after the batch of events
 * that may still name it. */
struct hc_h2_sock {
	struct hc_proxy_handle h; /* H_H2_UP; first */
	int fd;
	bool link; /* an h2c connection (struct hc_h2_link), else an hc_h2_h1 */
	bool connected, rd, wr, dead, charged;
	struct hc_h2 *h2;
	struct hc_h2_sock *next_dead;
};

enum hc_h2_up_kind { HC_H2_UP_NONE, HC_H2_UP_H1, HC_H2_UP_H2C };

/* Decoding an HTTP/1.1 response body into plain payload. */
struct hc_h2_dechunk {
	unsigned state;
	uint64_t left; /* of this chunk's data */
	unsigned count; /* size digits, extension or trailer bytes */
};

/* An HTTP/1.1 backend connection: one stream's at a time, then idle with
 * its client connection for the next stream to the same backend. It stays
 * in the epoll set throughout (no epoll_ctl per stream): an event while it
 * is idle means the backend closed it or spoke unasked, and it is closed. */
struct hc_h2_h1 {
	struct hc_h2_sock s; /* first */
	struct hc_h2_stream *st; /* the stream it serves; NULL: idle */
	bool send_failed; /* the backend reads no more; what it sent is still read */
	struct hc_ipaddr addr;
	uint16_t port;
	uint64_t idle_since_ms; /* closed after HC_PROXY_IDLE_MS idle, as the worker's pool does */
};

/* One client stream and what serves it. */
struct hc_h2_stream {
	struct hc_h2 *h2;
	struct hc_h2_h1 *h1; /* its HTTP/1.1 backend connection, while it has one */
	int32_t id;
	struct hc_h2_stream *next;
	uint64_t last_ms; /* the last time a byte of it moved */
	bool client_closed; /* nghttp2 closed it on the client side */
	/* the request */
	struct hc_h2_fields req_fields, req_trailers;
	bool fields_too_large, req_end, req_started, head_method;
	struct hc_h2_bq req; /* for the backend: HTTP/1.1 bytes, or h2c DATA payload */
	size_t req_unconsumed; /* client DATA bytes not yet given back to its window */
	/* the backend takes no more of the request (it answered, failed, or we
	 * did): its DATA is dropped and given back to the windows at once */
	bool req_discard;
	/* HTTP/1.1 on a reused connection: the request may go again on a new
	 * one if the backend closed it under us before a byte of answer (an
	 * idempotent method, the request held whole: req_sent bytes of req
	 * were sent and are kept, up to HC_H2_REPLAY_MAX) */
	bool idempotent, replay;
	size_t req_sent;
	bool req_chunked;
	/* where it goes */
	enum hc_h2_up_kind kind;
	struct hc_route_val val;
	char route_host[HC_ROUTE_HOST_MAX];
	struct hc_proxy_wl_stats *wl;
	struct hc_h2_link *link; /* h2c */
	int32_t up_id; /* h2c: its stream there; 0 once closed */
	bool up_deferred; /* h2c: the backend's data source waits for bytes */
	/* the response */
	struct hc_h2_fields resp_fields, resp_trailers;
	bool resp_started, resp_end, resp_deferred;
	bool resp_end_sent; /* the response's END_STREAM went to the client */
	struct hc_h2_bq resp; /* payload for the client */
	size_t resp_unconsumed; /* h2c: backend DATA not yet given back to its window */
	/* HTTP/1.1 backend */
	struct hc_h2_bq raw; /* read, not decoded yet */
	bool head_done, reused;
	enum hc_http_body_kind body_kind;
	uint64_t body_left;
	struct hc_h2_dechunk dc;
	struct hc_http_body framer; /* chunked: the HTTP/1.1 engine's framer, which has the say */
	bool up_keep; /* the backend connection may serve another request */
};

/* An h2c backend connection, shared by a client connection's streams to
 * one backend address. */
struct hc_h2_link {
	struct hc_h2_sock s; /* first */
	struct hc_h2_link *next;
	struct hc_ipaddr addr;
	uint16_t port;
	nghttp2_session *ng;
	struct hc_h2_bq out;
	unsigned streams; /* client streams pointing here (st->link) */
	bool failed; /* closed: freed once no stream points here */
};

/* A client connection's HTTP/2 session. */
struct hc_h2 {
	struct hc_proxy_conn *c;
	nghttp2_session *ng;
	struct hc_h2_bq out; /* frames for the client, at most about HC_H2_OUT_MAX */
	bool rd, wr; /* the client socket's edges */
	bool failed; /* close now */
	bool goaway_sent; /* draining: our GOAWAY NO_ERROR is queued */
	struct hc_h2_stream *streams;
	struct hc_h2_link *links;
	struct hc_h2_h1 *idle[HC_H2_IDLE_BACKENDS];
	unsigned nidle;
	/* The last :authority routed and where it went: the next stream for
	 * the same name skips the lookups (as an HTTP/1.1 connection keeps its
	 * route while the Host stays the same). */
	char last_host[HC_HOST_MAX + 1];
	struct hc_route_val last_val;
	char last_route_host[HC_ROUTE_HOST_MAX];
	struct hc_proxy_wl_stats *last_wl;
	double reset_tokens, control_tokens;
	uint64_t tokens_ms;
	unsigned big_headers;
	uint64_t last_ms;
	bool in_pump; /* a pump is on the stack: events only mark */
};

/* h2.c, for h2_up.c */
void hc_h2_refuse(struct hc_h2 *h, enum hc_h2_refusal why);
/* Bytes of the response arrived, or it ended: wakes the client's data source. */
void hc_h2_resp_ready(struct hc_h2_stream *st);
/* Answers a stream ourselves (status, a line of text), when no response
 * head went out yet; else resets it. */
void hc_h2_answer(struct hc_h2_stream *st, unsigned status, const char *text);
/* Gives n bytes of the client's DATA back to its windows. */
void hc_h2_consume(struct hc_h2_stream *st, size_t n);
/* Nothing more of st's request goes anywhere: what is held is dropped and
 * given back, what comes later too, and a client still sending once the
 * response ended is asked to stop (RST_STREAM NO_ERROR). */
void hc_h2_req_discard(struct hc_h2_stream *st);
/* nghttp2's data source over q: takes what is queued, defers when it is
 * empty and end is not set, ends the stream (or sends trailers) after. */
ssize_t hc_h2_source_read(nghttp2_session *ng, int32_t id, struct hc_h2_bq *q, bool end,
			  const struct hc_h2_fields *trailers, bool *deferred, uint8_t *buf,
			  size_t len, uint32_t *data_flags);
/* Frames ng has to send, encoded into out up to about HC_H2_OUT_MAX. 1:
 * some were, 0: none, -errno. */
int hc_h2_encode(nghttp2_session *ng, struct hc_h2_bq *out);
/* The stream's response head, submitted to the client (fields set). */
int hc_h2_submit_response(struct hc_h2_stream *st, bool end);
/* Closes the socket (its one reference: out of the epoll set too) and
 * gives its descriptor charge back; the struct stays. */
void hc_h2_sock_close_fd(struct hc_h2_sock *s);
/* Closes it and has the struct around it (hc_h2_h1 or link) freed by
 * hc_proxy_h2_reap. */
void hc_h2_sock_kill(struct hc_h2_sock *s);
/* Registers s's socket in the worker's epoll set. 0 or -errno. */
int hc_h2_watch(struct hc_h2_sock *s);

/* Decodes chunked coding from in, the data to out. 1: the body ended (*used
 * bytes of in were its), 0: all used, -EPROTO: not chunked coding, -ENOMEM.
 * Its caller feeds it only what hc_http_body_feed framed (the rules of the
 * HTTP/1.1 engine: sizes, extensions, trailers) and requires the same end. */
int hc_h2_dechunk(struct hc_h2_dechunk *d, const char *in, size_t len, size_t *used,
		  struct hc_h2_bq *out);

/* h2_up.c: backends */
/* The routed request goes out: opens or takes its backend. 0 or -errno (the
 * caller answers 502). */
int hc_h2_up_start(struct hc_h2_stream *st);
/* More request payload (or its end) is there for the backend. */
void hc_h2_up_request_more(struct hc_h2_stream *st);
/* The client side of st closed: its backend exchange ends (reset if cut). */
void hc_h2_up_detach(struct hc_h2_stream *st);
/* Moves what can be moved on st's HTTP/1.1 socket or l's connection. 1:
 * something moved. */
int hc_h2_up_step_stream(struct hc_h2_stream *st);
int hc_h2_up_step_link(struct hc_h2_link *l);
/* The client's data source took n bytes of st's response payload. */
void hc_h2_up_resp_taken(struct hc_h2_stream *st, size_t n);
void hc_h2_up_link_free(struct hc_h2_link *l);
/* An event on a backend socket: what it makes possible is noted. */
void hc_h2_up_sock_event(struct hc_h2_sock *s, unsigned events);
void hc_h2_up_idle_close(struct hc_h2 *h);
/* Closes the idle connections idle for HC_PROXY_IDLE_MS; the time the next
 * one is due (UINT64_MAX: none). */
uint64_t hc_h2_up_idle_expire(struct hc_h2 *h, uint64_t now_ms);

/* Starts the HTTP/2 engine on c, whose client socket (or TLS session, ALPN
 * h2) is next to read: the preface is read from it, nothing was consumed.
 * May close c. */
void hc_proxy_h2_start(struct hc_proxy_conn *c);
/* An event on c's client socket. May close c. */
void hc_proxy_h2_event(struct hc_proxy_conn *c, unsigned events);
/* c's deadline passed: idle streams are reset, an idle connection ends. */
void hc_proxy_h2_expire(struct hc_proxy_conn *c);
/* The proxy is draining: GOAWAY (NO_ERROR) naming the last stream taken;
 * the connection closes once those streams are done. */
void hc_proxy_h2_drain(struct hc_proxy_conn *c);
/* Releases the engine's state (from hc_proxy_conn_close; the client socket
 * is the caller's). */
void hc_proxy_h2_fini(struct hc_proxy_conn *c);
/* An event on a backend socket of an HTTP/2 connection (H_H2_UP). */
void hc_proxy_h2_up_event(struct hc_proxy_handle *h, unsigned events);
/* Pumps the HTTP/2 connections that had events in the batch just handled
 * (before hc_proxy_conn_reap: it may close them). */
void hc_proxy_h2_flush(struct hc_proxy_worker *w);
/* Frees what closed during the batch of events just handled. */
void hc_proxy_h2_reap(struct hc_proxy_worker *w);

#endif /* HC_PROXY_H2_H */
