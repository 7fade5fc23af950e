/*
 * The Host/SNI reverse proxy. It listens on every port some route in the
 * pinned hc_routes map names, learns the target of each connection from its
 * first bytes (the HTTP request head's Host, or the TLS ClientHello's SNI,
 * read and then handed on from memory), connects to the route's backend and then lets the
 * kernel move the bytes: splice(2) through a pipe by default, the hc_splice
 * sockmap or a plain copy loop when asked. With a wildcard certificate it
 * terminates TLS for names under the base URL and copies the decrypted
 * stream (this kernel has no kTLS).
 *
 * Worker threads (one per core by default) each run an epoll loop with their
 * own SO_REUSEPORT listeners; the calls below come from the agent's loop
 * thread and never block on a connection.
 */
#ifndef HC_PROXY_H
#define HC_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

struct hc_metrics;

enum hc_proxy_forwarding {
	HC_PROXY_SPLICE, /* splice(2) through a pipe: zero-copy, bounded, the default */
	HC_PROXY_SOCKMAP, /* the hc_splice sockmap: in-kernel redirect (see docs) */
	HC_PROXY_COPY, /* read/write through a userspace buffer */
};

/* "splice", "sockmap", "copy" -> the mode; -EINVAL otherwise. */
int hc_proxy_forwarding_parse(const char *name, enum hc_proxy_forwarding *out);
const char *hc_proxy_forwarding_name(enum hc_proxy_forwarding mode);

/* Descriptors: a connection holds its two sockets, nothing more; pipes
 * (splice mode) come from each worker's pool while a long body or a tunnel
 * is spliced, at most HC_PROXY_PIPE_FDS fds of them per worker (in use and
 * idle together; past that, bodies go through the buffer). */
#define HC_PROXY_FDS_PER_CONN 2
#define HC_PROXY_PIPE_FDS 512

struct hc_proxy_config {
	const char *pin_dir; /* where hc_routes (and hc_splice) are pinned */
	const char *base_url; /* a route to host H also answers "H.<base_url>" */
	const char *bind_host; /* listen address; NULL: 0.0.0.0 */
	unsigned workers; /* 0: one per online CPU */
	enum hc_proxy_forwarding forwarding;
	bool forwarded_headers; /* add X-Forwarded-For/-Proto and Forwarded */
	/* Idle keep-alive backend connections are pooled per worker and taken
	 * for the next request to the same backend (splice and copy modes). */
	bool backend_reuse;
	unsigned head_timeout_ms; /* 0: 10000 */
	unsigned idle_timeout_ms; /* HTTP, no byte either way; 0: 60000 */
	unsigned tunnel_idle_timeout_ms; /* upgraded and TLS passthrough; 0: 3600000 */
	unsigned max_conns; /* per listening port; 0: 10000 */
	unsigned max_conns_per_ip; /* per client address over every port; 0: 1024 */
	/* Over every port: the descriptors the proxy may hold, so that the
	 * agent's own sockets (gossip, APIs, CRI) never run out. A connection
	 * is charged its client socket from accept and what forwarding adds
	 * (backend socket, pipes) once it is routed, so that clients waiting
	 * for their head (or idling) cost one each; 0: no cap beyond max_conns. */
	unsigned max_fds;
	const char *tls_cert, *tls_key; /* PEM; both or neither */
	/* Session ticket keys are replaced this often (the one before still
	 * decrypts for another period); 0: 3600. */
	unsigned tls_ticket_rotate_s;
};

struct hc_proxy;

/* Checks the configuration, loads the certificate, opens the routes and
 * starts the workers (listeners follow with hc_proxy_refresh). NULL with a
 * one-line reason in err. */
struct hc_proxy *hc_proxy_start(const struct hc_proxy_config *cfg, struct hc_err *err);

/* Re-reads which ports the routes name and has the workers open and close
 * listeners to match. Cheap when nothing changed; call every second. */
void hc_proxy_refresh(struct hc_proxy *p);

/* Loads the certificate and key again (SIGHUP): new connections get the new
 * one, open ones keep theirs. 0, or -errno with a reason in err; on failure
 * the old certificate stays. */
int hc_proxy_reload_tls(struct hc_proxy *p, struct hc_err *err);

/* Descriptors one forwarding connection holds in p's mode (client and
 * backend sockets, pipes): max_fds over this is how many may forward. */
unsigned hc_proxy_fds_per_conn(const struct hc_proxy *p);

/* Registers the proxy's counters. 0 or -ENOMEM. */
int hc_proxy_register_metrics(struct hc_proxy *p, struct hc_metrics *m);

/* Starts a graceful stop and returns at once: the listeners close (new
 * connections are refused), idle HTTP/1.1 connections close, those with a
 * request in flight close once its response is out (it says Connection:
 * close), HTTP/2 connections get GOAWAY and close once their streams end.
 * Tunnels (WebSocket, TLS passthrough) and the sockmap mode's connections
 * stay until hc_proxy_stop. Listeners stay closed from then on. */
void hc_proxy_drain(struct hc_proxy *p);

/* Client connections open now (what a drain waits for). */
unsigned long hc_proxy_open_conns(struct hc_proxy *p);

/* Stops the workers, closes every listener and connection. NULL is fine. */
void hc_proxy_stop(struct hc_proxy *p);

#endif /* HC_PROXY_H */
