/* Private structures of the proxy module, shared by its files. */
#ifndef HC_PROXY_INT_H
#define HC_PROXY_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include <hypercore/dataplane.h>

#include "proxy/iplimit.h"
#include "proxy/parse.h"
#include "proxy/proxy.h"
#include "proxy/wlstats.h"

#define HC_PROXY_MAX_PORTS 1024
#define HC_PROXY_PIPE_SIZE (1024 * 1024) /* a pooled pipe, splice mode */
#define HC_PROXY_COPY_BUF (64 * 1024) /* a pooled buffer, one per direction while it holds data */
/* Room kept before the data in a buffer: a request head grows there when
 * our forwarded fields replace the client's (forward.c). */
#define HC_PROXY_HEADROOM 1024
/* A Content-Length body (or what is left of it once the buffer is sent)
 * this long is spliced, in splice mode; shorter ones go through the buffer,
 * where one recv and one send move the head and the body together. */
#define HC_PROXY_SPLICE_MIN (64 * 1024)
#define HC_PROXY_PIPELINE_MAX 32 /* requests sent ahead of their responses */
#define HC_PROXY_POOL_MAX 64 /* idle buffers and pipes a worker keeps */
/* What is read (sockmap mode: peeked at) before routing: a whole
 * ClientHello, or one byte over the head limit. */
#define HC_PROXY_PEEK_MAX (HC_TLS_INPUT_MAX > HC_HTTP_HEAD_MAX ? HC_TLS_INPUT_MAX : HC_HTTP_HEAD_MAX + 1)
#define HC_PROXY_CONNECT_TIMEOUT_MS 5000
#define HC_PROXY_DRAIN_MS 2000 /* reading what follows an error response */
#define HC_PROXY_TICK_MS 250 /* timeout resolution */
#define HC_PROXY_WHEEL 256 /* timer wheel slots of a tick each: 64 s around */
#define HC_PROXY_WORKLOADS_MAX 16384 /* route hosts counted at once */
/* Idle keep-alive backend connections (pool.c): a worker keeps at most
 * HC_PROXY_IDLE_MAX, HC_PROXY_IDLE_PER_BACKEND of them to one address, each
 * for HC_PROXY_IDLE_MS: well under the keep-alive timeouts backends use
 * (nginx 75 s, Apache 5 s is the shortest common one: we stay under its
 * default too), so that we rarely send on a connection the backend is
 * closing. */
#define HC_PROXY_IDLE_MAX 256
/* Pool slots: idle connections and those lent out (whose sockets stay
 * registered under their slots), twice the idle ones. */
#define HC_PROXY_SLOTS (2 * HC_PROXY_IDLE_MAX)
#define HC_PROXY_IDLE_PER_BACKEND 128
#define HC_PROXY_IDLE_MS 4000

enum hc_proxy_error {
	HC_PROXY_ERR_NOT_FOUND,
	HC_PROXY_ERR_BAD_GATEWAY,
	HC_PROXY_ERR_HEAD_TOO_LARGE,
	HC_PROXY_ERR_HEAD_TIMEOUT,
	HC_PROXY_ERR_BAD_REQUEST,
	HC_PROXY_ERR_TLS_ALERT,
	HC_PROXY_ERR_OVER_LIMIT,
	HC_PROXY_ERR_TLS_HANDSHAKE,
	HC_PROXY_ERR_RESET,
	HC_PROXY_ERR_MISDIRECTED, /* 421: Host is not the SNI of a terminated connection */
	HC_PROXY_ERR_IDLE_TIMEOUT, /* closed after --proxy-idle-timeout / -tunnel-idle-timeout */
	HC_PROXY_ERRORS
};

/* Counters for one workload (route host), summed over workers. */
/* Which limit refused a connection at accept. */
enum hc_proxy_limit {
	HC_PROXY_LIMIT_PORT, /* --proxy-max-conns */
	HC_PROXY_LIMIT_IP, /* --proxy-max-conns-per-ip */
	HC_PROXY_LIMIT_TOTAL, /* the descriptor budget over every port (cfg.max_fds) */
	HC_PROXY_LIMITS
};

struct hc_proxy_stats {
	atomic_uint_fast64_t accepted, active, to_backend, to_client;
	atomic_uint_fast64_t forwarded[3]; /* by enum hc_proxy_forwarding */
	atomic_uint_fast64_t tls_terminated;
	atomic_uint_fast64_t errors[HC_PROXY_ERRORS];
	atomic_uint_fast64_t refused[HC_PROXY_LIMITS];
	atomic_uint_fast64_t backend_new, backend_reused, backend_retries;
	atomic_uint_fast64_t backend_idle; /* pooled now, over every worker */
	atomic_uint_fast64_t h2_conns, h2_streams; /* HTTP/2 connections and streams served */
	atomic_uint_fast64_t h2_refused[16]; /* by enum hc_h2_refusal (h2.h) */
};

/* What epoll reports: every registered fd's data.ptr points at one. */
enum hc_proxy_handle_kind { H_WAKE, H_TIMER, H_LISTENER, H_CLIENT, H_BACKEND, H_IDLE, H_H2_UP };

struct hc_proxy_handle {
	enum hc_proxy_handle_kind kind;
};

/* A slot of its worker's backend pool (pool.c): free (fd -1), holding an
 * idle backend connection (owner NULL), or lending it to a client
 * connection (owner). A socket pooled once stays registered with epoll
 * under its slot's handle, edge-triggered as the engine wants it, while it
 * goes from connection to connection: taking it and giving it back cost no
 * epoll_ctl. While idle its events (the backend's close, or a byte it sends
 * unasked) evict it; while lent they are the owner's. */
struct hc_proxy_idle {
	struct hc_proxy_handle h; /* H_IDLE */
	int fd; /* -1: a free slot */
	struct hc_proxy_conn *owner; /* lent to it; NULL: idle (or free) */
	struct hc_ipaddr addr;
	uint16_t port;
	uint64_t since_ms;
};

struct hc_proxy_listener {
	struct hc_proxy_handle h;
	uint16_t port;
	int fd;
	unsigned conns; /* open connections accepted here (this worker) */
	bool failed_logged;
	struct hc_proxy_listener *next_dead; /* on the worker's dead_listeners */
};

enum hc_proxy_conn_state {
	C_PEEK, /* waiting for a whole request head or ClientHello */
	C_CONNECT, /* the backend connection is being made */
	C_SEND_HEAD, /* writing the (rewritten) head to the backend */
	C_FORWARD, /* bytes flow both ways */
	C_TLS_ACCEPT, /* terminating: the handshake */
	C_TLS_HEAD, /* terminating: reading the decrypted request head */
	C_DRAIN, /* an error answer went out; reading until EOF, then close */
	C_CLOSED, /* closed; freed after the current batch of events */
	C_H2, /* HTTP/2 to the client: h2.c's engine (ALPN h2, or the h2c preface) */
};

/* Where one direction of an HTTP connection is (forward.c). */
enum hc_proxy_flow_state {
	F_HEAD, /* a request or response head is next */
	F_BODY, /* a message body, framed by body (or spliced: splice_left) */
	F_HOLD, /* requests: an upgrade request went out; its answer decides */
	F_WAIT, /* requests: the next one waits until every response is out */
	F_TUNNEL, /* raw bytes: after a 101, TLS passthrough */
};

/* One direction of a forwarded connection. */
struct hc_proxy_flow {
	int src, dst; /* fds */
	int pipe[2]; /* splice mode: from the worker's pool while a body or tunnel is spliced */
	size_t piped; /* bytes in the pipe */
	uint64_t splice_left; /* still to splice from src for this message; UINT64_MAX: a tunnel */
	char *buf; /* from the worker's pool while it holds data */
	size_t off, queued; /* buffer: data at [off, off + queued) */
	size_t ready; /* of it, framed and ready to send (the rest is not parsed yet) */
	enum hc_proxy_flow_state state;
	struct hc_http_body body;
	uint64_t head_since_ms; /* requests: when the first byte of a head came */
	bool rd_ready, wr_ready; /* edge-triggered: src may have bytes, dst may take them */
	bool hup; /* src reported its end: read until recv says 0, short reads or not */
	bool eof; /* the source ended */
	bool shut; /* and the destination was shut down for writing */
	uint64_t drain_since_ms; /* sockmap: waiting since then to pass the FIN on */
	int64_t drain_skew; /* sockmap: bytes our head rewrite added to this direction */
	uint64_t bytes;
};

/* A pending answer of a keep-alive connection, given once every response
 * before it is out. */
enum hc_proxy_answer {
	A_NONE,
	A_REROUTE, /* connect to next_val */
	A_BAD_REQUEST, /* 400 malformed */
	A_NO_HOST, /* 400 without Host */
	A_TOO_LARGE, /* 431 */
	A_NOT_FOUND, /* 404 */
	A_MISDIRECTED, /* 421 */
	A_TIMEOUT, /* 408 */
	A_BAD_GATEWAY, /* 502: a response we cannot frame */
};

struct hc_proxy_worker;
struct hc_h2;
struct hc_h2_sock;

struct hc_proxy_conn {
	struct hc_proxy_handle hc, hb; /* client fd, backend fd */
	struct hc_proxy_worker *w;
	struct hc_proxy_listener *l;
	enum hc_proxy_conn_state state;
	int cfd, bfd;
	uint64_t deadline_ms; /* 0: none; hc_proxy_timer_arm files it after a change */
	struct hc_proxy_conn *prev, *next; /* the worker's list */
	/* The worker's timer wheel: filed in the slot of tick wtick, which is
	 * never later than the deadline's (a later deadline is refiled when the
	 * slot comes: no work per event when a deadline moves on). */
	struct hc_proxy_conn *wnext, **wpprev;
	uint64_t wtick;
	char *peek; /* the head or ClientHello, peeked or read */
	size_t peek_len, head_len;
	bool tls; /* a TLS connection (passthrough or terminated) */
	bool consumed; /* the head was read off the socket (not only peeked) */
	bool peek_drained; /* and the last read emptied the socket's queue */
	bool tls_from_memory; /* terminating: OpenSSL reads what we read first (conn.c) */
	SSL *ssl; /* terminating */
	bool tls_rbio_short; /* HTTP/2: OpenSSL's last socket read got less than it asked (h2.c) */
	char route_host[HC_ROUTE_HOST_MAX]; /* the hc_routes key host that matched */
	char host[HC_HOST_MAX + 1]; /* what the client asked for */
	char sni[HC_HOST_MAX + 1]; /* terminating: the name the handshake was for */
	struct hc_route_val route_val, next_val; /* the backend now, and the next request's */
	struct hc_proxy_flow up, down; /* client -> backend, backend -> client */
	bool engine; /* forward.c's engine (heads parsed, or a tunnel), not the sockmap's pipe */
	bool engine_on; /* the engine has started (a reconnect resumes it) */
	bool upgrading; /* the request being sent asks for an upgrade */
	bool last_exchange; /* a request or response said Connection: close */
	bool client_said_close; /* and the request was the client's last (forward.c) */
	char fwd[256]; /* our forwarded fields, made once per connection */
	size_t fwd_len;
	bool lowat_set; /* SO_RCVLOWAT was raised while peeking */
	enum hc_proxy_answer answer; /* what waits in F_WAIT */
	/* Requests sent whose response has not ended, oldest first: REQ_* flags. */
	uint8_t reqs[HC_PROXY_PIPELINE_MAX];
	unsigned req_first, req_count;
	bool in_sockmap;
	__u64 cookie[2];
	struct hc_proxy_wl_stats *wl;
	unsigned events_c, events_b; /* registered epoll interest */
	struct hc_proxy_ip peer; /* the client's address, from accept4 */
	bool have_peer; /* peer is set (an AF_INET or AF_INET6 client) */
	bool ip_counted; /* in the per-address table (release at close) */
	bool fwd_charged; /* its forwarding descriptors are charged (close gives them back) */
	/* Backend reuse (pool.c): whether the backend connection may go back
	 * to the pool once quiet (false after anything that makes the backend
	 * close it or leaves it in another state: Connection: close we did not
	 * remove, HTTP/1.0, an upgrade, a response framed by the close); */
	bool backend_keep;
	bool reused; /* the backend connection came from the pool */
	struct hc_proxy_idle *bslot; /* the pool slot bfd is registered under, or NULL */
	bool resp_seen; /* a byte came from this backend connection */
	/* The first request on a reused connection, as the client sent it, if
	 * it may be retried on a new connection (idempotent, no body): sent
	 * again once if the backend closes before answering. */
	char *retry;
	size_t retry_len;
	struct hc_h2 *h2; /* state C_H2: the HTTP/2 engine's session (h2.c) */
	struct hc_proxy_conn *h2_next; /* on the worker's h2_due (h2.c) */
	bool h2_due; /* on it */
};

struct hc_proxy_worker {
	struct hc_proxy *p;
	unsigned index;
	pthread_t thread;
	int epfd, wakefd, timerfd;
	struct hc_proxy_handle wake_h, timer_h;
	uint64_t seen_gen;
	bool drain_begun; /* this worker closed its listeners and idle connections */
	struct hc_proxy_listener *listeners[HC_PROXY_MAX_PORTS];
	size_t nlisteners;
	struct hc_proxy_conn *conns; /* every open connection */
	size_t nconns;
	/* Closed during this batch of events: freed after it, since a later
	 * event of the same batch may name them (both sides of one connection). */
	struct hc_proxy_conn *dead;
	/* Closed listeners no connection points at any more: freed after the
	 * batch too, since a later event of it may be in the same batch. */
	struct hc_proxy_listener *dead_listeners;
	uint64_t now_ms; /* read once per batch of events */
	struct hc_proxy_conn *wheel[HC_PROXY_WHEEL];
	uint64_t wheel_tick; /* the last tick whose slot was handled */
	/* Idle buffers and pipes (forward.c): a keep-alive connection between
	 * requests holds neither. */
	char *bufs[HC_PROXY_POOL_MAX];
	size_t nbufs;
	int pipes[HC_PROXY_POOL_MAX][2];
	size_t npipes;
	unsigned pipes_open; /* in use and idle: at most HC_PROXY_PIPE_FDS / 2 */
	struct hc_proxy_idle idle[HC_PROXY_SLOTS]; /* pool.c */
	unsigned nidle;
	unsigned slots_used; /* every slot from here on was never used: scans stop here */
	struct hc_h2_sock *h2_dead; /* h2.c: closed in this batch, freed after it */
	/* h2.c: HTTP/2 connections with events in this batch, pumped once at
	 * its end (all of a connection's backends answered, one write). */
	struct hc_proxy_conn *h2_due;
};

struct hc_proxy {
	struct hc_proxy_config cfg;
	char *pin_dir, *base_url, *bind_host, *tls_cert, *tls_key;
	int routes_fd;
	/* Tests without BPF (the h2 fuzz harness): routes from a table of
	 * their own instead of hc_routes; NULL in the agent. */
	bool (*route_lookup)(const struct hc_route_key *key, struct hc_route_val *val);
	int splice_fd, splice_peer_fd; /* sockmap mode */
	struct hc_sockmap *sockmap;
	pthread_mutex_t lock; /* ports, gen, tls_ctx */
	uint16_t ports[HC_PROXY_MAX_PORTS];
	size_t nports;
	uint64_t gen;
	SSL_CTX *tls_ctx;
	struct hc_proxy_worker *workers;
	unsigned nworkers;
	atomic_bool stopping;
	atomic_bool draining; /* hc_proxy_drain: listeners closed for good */
	struct hc_proxy_stats stats;
	struct hc_proxy_wlstats *workloads; /* counters per route host */
	/* Open connections per port, over every worker: SO_REUSEPORT does not
	 * spread connections evenly enough for per-worker shares of a limit. */
	atomic_uint *port_conns; /* 65536 entries */
	atomic_uint fds_used; /* charged over every port, against cfg.max_fds */
	struct hc_proxy_iplimit *per_ip; /* against cfg.max_conns_per_ip */
	struct hc_proxy_tickets *tickets; /* session ticket keys, shared by every SSL_CTX */
};

/* conn.c: a connection's life. */
void hc_proxy_accept(struct hc_proxy_worker *w, struct hc_proxy_listener *l);
void hc_proxy_conn_event(struct hc_proxy_conn *c, bool backend_side, unsigned events);
void hc_proxy_conn_expire(struct hc_proxy_conn *c);
/* Closes both sides and releases everything but the struct itself, which
 * waits for hc_proxy_conn_reap (events of the same batch may name it). */
void hc_proxy_conn_close(struct hc_proxy_conn *c, bool reset);
/* The proxy is draining (hc_proxy_drain): ends c as soon as that loses
 * nothing (idle now: at once; else after its exchange). */
void hc_proxy_conn_drain(struct hc_proxy_conn *c);
static inline bool hc_proxy_draining(const struct hc_proxy *p)
{
	return atomic_load_explicit(&p->draining, memory_order_relaxed);
}
/* A closed listener with no connection left: freed by the next reap. */
void hc_proxy_listener_retire(struct hc_proxy_worker *w, struct hc_proxy_listener *l);
/* Frees what was closed during the batch of events just handled. */
void hc_proxy_conn_reap(struct hc_proxy_worker *w);

/* Charges the descriptors forwarding adds (once per connection: a later
 * backend of the same connection reuses the charge). false: over
 * cfg.max_fds; the connection was reset and counted as refused. */
bool hc_proxy_charge_forwarding(struct hc_proxy_conn *c);

/* forward.c: moving bytes once the backend is connected. */
/* Right after connecting, before the head is sent: the sockmap mode puts
 * both sockets into hc_splice here. 0 or -errno. */
int hc_proxy_forward_prepare(struct hc_proxy_conn *c);
/* May close c; < 0 only when c is still open and the caller should close it. */
int hc_proxy_forward_start(struct hc_proxy_conn *c);
/* Moves what can be moved now. 1: the connection is finished (close it),
 * -errno: an error (reset both sides), 0: wait for events (set by it). */
int hc_proxy_forward_pump(struct hc_proxy_conn *c);
void hc_proxy_forward_fini(struct hc_proxy_conn *c);
/* After a reconnect for a request routed elsewhere: the engine goes on
 * with the new backend. Same return as hc_proxy_forward_start. */
int hc_proxy_forward_resume(struct hc_proxy_conn *c);
/* Records what an event says is possible now (edge-triggered interest). */
void hc_proxy_forward_event(struct hc_proxy_conn *c, bool backend_side, unsigned events);
/* The timer found the connection idle past its deadline. */
void hc_proxy_forward_expire(struct hc_proxy_conn *c);
/* Frees the worker's pooled buffers and pipes (at its exit). */
void hc_proxy_pools_fini(struct hc_proxy_worker *w);

/* Makes c->fwd: our X-Forwarded-For/-Proto and Forwarded lines (once per
 * connection: the client's address does not change). */
void hc_proxy_forwarded_lines(struct hc_proxy_conn *c);

/* conn.c: val's backend address as a sockaddr; its length. */
socklen_t hc_proxy_backend_sockaddr(const struct hc_route_val *val, struct sockaddr_storage *ss);

/* conn.c, for h2.c: the route for a request to host (lower-case, no
 * port) on c's port, with the Host rules (a static host, then
 * "<id>.<base_url>"; on a terminated connection host must be the SNI).
 * A_NONE with val and matched (HC_ROUTE_HOST_MAX) set, or the answer. */
enum hc_proxy_answer hc_proxy_route_host(struct hc_proxy_conn *c, const char *host,
					 struct hc_route_val *val, char *matched);

/* conn.c, for the engine: where a request head on an open connection goes.
 * 0: the current backend; 1: another one (next_val) or an answer of ours
 * (c->answer set), given once the responses before it are out. */
int hc_proxy_request_route(struct hc_proxy_conn *c, const struct hc_http_head *h);
/* Gives c->answer: an error page (c ends up draining) or a reconnect. */
void hc_proxy_conn_answer(struct hc_proxy_conn *c);

/* pool.c: idle backend connections. */
/* Whether c's backend connection is clean enough to pool now. */
bool hc_proxy_backend_poolable(const struct hc_proxy_conn *c);
/* Pools c's backend connection if it is clean, or closes it; c->bfd is -1
 * after. */
void hc_proxy_backend_release(struct hc_proxy_conn *c);
/* An idle connection to val's backend, now c->bfd and watched for c, or -1
 * (none: connect a new one). */
int hc_proxy_backend_take(struct hc_proxy_conn *c, const struct hc_route_val *val);
/* The backend closed a reused connection before answering the request on
 * it, which may be sent again (forward.c put it back before what the
 * client sent next): a new connection to the same backend. */
void hc_proxy_backend_retry(struct hc_proxy_conn *c);
/* c's backend socket is about to be closed by c (not pooled): its slot,
 * if it has one, is free again. */
void hc_proxy_backend_unbind(struct hc_proxy_conn *c);
/* An event on a pool slot's socket: its owner's, or, while idle, the
 * backend closed it or spoke unasked. */
void hc_proxy_idle_event(struct hc_proxy_worker *w, struct hc_proxy_idle *e, unsigned events);
/* Closes the pooled connections idle for HC_PROXY_IDLE_MS (all of them
 * when all is set: the worker is stopping). */
void hc_proxy_idle_expire(struct hc_proxy_worker *w, bool all);

/* tls.c: termination. */
/* Session ticket keys: made at start, rotated by hc_proxy_tickets_tick,
 * shared by every worker and every context (a reload keeps them, so
 * tickets stay valid across SIGHUP). */
struct hc_proxy_tickets *hc_proxy_tickets_new(unsigned rotate_s);
void hc_proxy_tickets_free(struct hc_proxy_tickets *t);
/* Rotates the keys when rotate_s has passed since the last rotation. */
void hc_proxy_tickets_tick(struct hc_proxy_tickets *t);
uint64_t hc_proxy_tickets_rotations(struct hc_proxy_tickets *t); /* so far */
/* A server context for cert and key (PEM; the key file must be readable by
 * its owner only), with modern ciphers and tickets from t. */
SSL_CTX *hc_proxy_tls_ctx_new(const char *cert, const char *key, struct hc_proxy_tickets *t,
			      struct hc_err *err);
/* 1: the handshake is done, 0: wants more (events set), -errno: failed
 * (-EPROTO for the TLS handshake itself). */
int hc_proxy_tls_handshake(struct hc_proxy_conn *c);
/* After the handshake: whether the client chose HTTP/2 (ALPN h2). */
bool hc_proxy_tls_alpn_h2(const struct hc_proxy_conn *c);

/* proxy.c: shared helpers for the other files. */
uint64_t hc_proxy_now_ms(void);
/* Files c in its worker's timer wheel after its deadline_ms was set:
 * O(1), and nothing when the deadline only moved later. */
void hc_proxy_timer_arm(struct hc_proxy_conn *c);
/* Takes c out of the wheel (closing). */
void hc_proxy_timer_disarm(struct hc_proxy_conn *c);
int hc_proxy_watch(struct hc_proxy_conn *c, bool backend_side, unsigned events);
/* host's counters with a reference (hc_proxy_wl_put gives it back), or
 * NULL once the table is full (that host goes uncounted). */
struct hc_proxy_wl_stats *hc_proxy_workload(struct hc_proxy *p, const char *host);
SSL_CTX *hc_proxy_tls_ref(struct hc_proxy *p); /* a reference the caller frees, or NULL */

#endif /* HC_PROXY_INT_H */
