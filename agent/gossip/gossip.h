/*
 * Cluster membership, failure detection, user events and queries: the Serf
 * protocol (memberlist SWIM underneath, serf messages on top), byte-compatible
 * with Debian 12's `serf agent`, so hypercore nodes and serf agents form one
 * cluster. Loop thread only; no other module sees a packet.
 */
#ifndef HC_GOSSIP_H
#define HC_GOSSIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr/addr.h"
#include "base/base.h"

struct hc_loop;
struct hc_metrics_writer;
struct hc_gossip;

enum hc_gossip_status {
	HC_GOSSIP_NONE = 0, /* values as serf's MemberStatus */
	HC_GOSSIP_ALIVE = 1,
	HC_GOSSIP_LEAVING = 2,
	HC_GOSSIP_LEFT = 3,
	HC_GOSSIP_FAILED = 4,
};
const char *hc_gossip_status_name(enum hc_gossip_status s); /* "alive", ... */

struct hc_gossip_kv {
	const char *key, *value;
};

/* A member as the cluster sees it. In snapshots and events the strings are
 * borrowed: valid until the callback returns / the snapshot is freed. */
struct hc_gossip_member {
	const char *name;
	char addr[64]; /* "ip:port" of its gossip socket */
	const struct hc_gossip_kv *tags;
	size_t ntags;
	enum hc_gossip_status status;
	uint8_t protocol_min, protocol_max, protocol_cur;
	uint8_t delegate_min, delegate_max, delegate_cur;
	/* Probe round trips we measured to it (IBRL link metrics): last and
	 * mean over the recent window, jitter as mean absolute difference of
	 * successive samples, loss as the share of failed probes. -1 if none. */
	int64_t rtt_us, rtt_mean_us, jitter_us;
	double loss;
};

enum hc_gossip_event_type {
	HC_GOSSIP_EV_MEMBER_JOIN,
	HC_GOSSIP_EV_MEMBER_LEAVE,
	HC_GOSSIP_EV_MEMBER_FAILED,
	HC_GOSSIP_EV_MEMBER_UPDATE,
	HC_GOSSIP_EV_MEMBER_REAP,
	HC_GOSSIP_EV_USER,
	HC_GOSSIP_EV_QUERY,
};

struct hc_gossip_event {
	enum hc_gossip_event_type type;
	const struct hc_gossip_member *member; /* member events */
	const char *name;                      /* user events and queries */
	const uint8_t *payload;
	size_t len;
	uint64_t ltime;
	bool coalesce;     /* user events */
	uint64_t query_id; /* queries: answer with hc_gossip_respond() */
	const char *query_source; /* queries: who asked */
};

typedef void hc_gossip_event_fn(const struct hc_gossip_event *ev, void *arg);

/*
 * For a user event of which a receiver needs only the newest copy (a state
 * digest: its owner's newer digest says all it did): sets *key (a span of
 * name or payload, which it borrows) and *version, and returns true. Only
 * for copies the application vouches for (a version it has verified), since
 * a newer one of the same key leaves the older out of our push/pull. false:
 * the event is always sent. Called on the loop thread, with event_version_arg.
 */
typedef bool hc_gossip_event_version_fn(const char *name, const uint8_t *payload, size_t len,
					const uint8_t **key, size_t *key_len, uint64_t *version,
					void *arg);

struct hc_gossip_config {
	const char *name;      /* unique node name (hypercore: the node id) */
	struct hc_addr bind;   /* UDP and TCP; port 0 picks one */
	const struct hc_addr *advertise; /* what peers dial; NULL: bind (must not be a wildcard) */
	const struct hc_gossip_kv *tags;
	size_t ntags;

	/* Encryption: base64 keys of 16, 24 or 32 bytes (as `serf agent
	 * -encrypt` takes them), the first primary, and/or a keyring file (a
	 * JSON list of base64 keys, as serf's -keyring-file) loaded at start and
	 * rewritten when keys rotate. Both empty: plaintext. */
	const char *const *keys;
	size_t nkeys;
	const char *keyring_file;

	/* Timing, in ms. Zero values take upstream hypercore's defaults. */
	uint32_t gossip_interval_ms;    /* 2000 */
	uint32_t probe_interval_ms;     /* 5000 */
	uint32_t probe_timeout_ms;      /* 500 x (probe_interval / 1000), at most 3000 */
	unsigned suspicion_mult;        /* 6 */
	unsigned gossip_nodes;          /* 2 */
	uint32_t push_pull_interval_ms; /* 30000 */
	uint32_t reap_interval_ms;      /* 15000 */
	uint32_t reconnect_interval_ms; /* 30000 */
	uint32_t reconnect_timeout_ms;  /* 24 h: failed members are reaped after */
	uint32_t tombstone_timeout_ms;  /* 24 h: left members are reaped after */
	uint32_t coalesce_ms;           /* 0: deliver events at once */
	size_t user_event_size_limit;   /* 2048 */

	hc_gossip_event_fn *on_event;
	void *event_arg;
	/* Serf's push/pull sends its whole ring of recent user events; with
	 * this set, ours leaves out the events a newer one of the same key
	 * supersedes (serf sends only what it holds, and receivers take any
	 * subset). NULL: every event, as serf. Its own arg, so a wrapper that
	 * taps on_event leaves it be. */
	hc_gossip_event_version_fn *event_version;
	void *event_version_arg;
	uint64_t seed; /* random choices; 0 picks one */
};

/* Binds the sockets and starts as a cluster of one. Returns NULL with a
 * one-line reason in err. */
struct hc_gossip *hc_gossip_new(struct hc_loop *loop, const struct hc_gossip_config *cfg,
				struct hc_err *err);
/* Stops at once (no leave message; see hc_gossip_leave). NULL is fine. */
void hc_gossip_free(struct hc_gossip *g);

/* Joins through the first seeds that answer ("host:port" text), retrying
 * each up to `attempts` times a second apart; done(arg, joined) reports how
 * many answered. Broadcasts our join intent after the first success. */
typedef void hc_gossip_join_done_fn(void *arg, unsigned joined);
int hc_gossip_join(struct hc_gossip *g, const char *const *seeds, size_t n, unsigned attempts,
		   bool ignore_old_events, hc_gossip_join_done_fn *done, void *arg);

/* Graceful leave: the leave intent, then memberlist's dead-self broadcast,
 * then the propagation delay; done(arg) runs after all of that. */
int hc_gossip_leave(struct hc_gossip *g, void (*done)(void *arg), void *arg);

/* Replaces our tags and announces them (members see an update). */
int hc_gossip_set_tags(struct hc_gossip *g, const struct hc_gossip_kv *tags, size_t n);

/* Sends a user event to the cluster (and delivers it here). -EMSGSIZE if
 * name + payload exceed the size limit. */
int hc_gossip_user_event(struct hc_gossip *g, const char *name, const uint8_t *payload,
			 size_t len, bool coalesce);

struct hc_gossip_query_params {
	const char *const *nodes; /* only these node names (NULL: all) */
	size_t nnodes;
	/* also sent straight to these members (by UDP, besides gossip): the
	 * ones whose answer matters most get it in one round trip, not after
	 * the gossip rounds that happen to reach them, and a gossip that misses
	 * one (retransmits are few) does not lose it */
	const char *const *direct;
	size_t ndirect;
	const struct hc_gossip_kv *tags; /* tag name -> regular expression */
	size_t ntags;
	uint32_t timeout_ms; /* 0: serf's default for the cluster size */
	bool ack;            /* ask for acks as well as responses */
	uint8_t relay_factor;
};

/* A response (or, with ack, an acknowledgement) from node `from`. */
typedef void hc_gossip_response_fn(void *arg, const char *from, const uint8_t *payload,
				   size_t len, bool is_ack);
/*
 * Queries the cluster. Each response is reported once per node until the
 * timeout, then done(arg) runs exactly once if this returned 0 (never when it
 * failed). -EMSGSIZE if the encoded query is over 1024 bytes. Returns 0 or
 * -errno.
 */
int hc_gossip_query(struct hc_gossip *g, const char *name, const uint8_t *payload, size_t len,
		    const struct hc_gossip_query_params *params, hc_gossip_response_fn *on_response,
		    void (*done)(void *arg), void *arg);
/* Answers a query delivered as HC_GOSSIP_EV_QUERY, once, before its
 * deadline. -ENOENT if the query is unknown or expired, -EALREADY if
 * answered, -EMSGSIZE over 1024 bytes. */
int hc_gossip_respond(struct hc_gossip *g, uint64_t query_id, const uint8_t *payload,
		      size_t len);

/* Members, self included, sorted by name. Free with hc_gossip_members_free. */
struct hc_gossip_member *hc_gossip_members(struct hc_gossip *g, size_t *n);
void hc_gossip_members_free(struct hc_gossip_member *members, size_t n);

const char *hc_gossip_name(const struct hc_gossip *g);
uint16_t hc_gossip_port(const struct hc_gossip *g);
/* Messages waiting in the broadcast queues (IBRL queue depth). */
size_t hc_gossip_queue_depth(const struct hc_gossip *g);

/* Key rotation, as `serf keys`: applied on every member through internal
 * queries; done(arg, ok_nodes, failed_nodes) when answers are in. */
enum hc_gossip_key_op { HC_GOSSIP_KEY_INSTALL, HC_GOSSIP_KEY_USE, HC_GOSSIP_KEY_REMOVE };
int hc_gossip_key_op(struct hc_gossip *g, enum hc_gossip_key_op op, const uint8_t *key,
		     size_t len, void (*done)(void *arg, unsigned ok, unsigned failed),
		     void *arg);

/* ---- the cluster secret as a keyring file ----
 *
 * A node that makes its cluster's secret keeps it as a serf keyring file
 * (a JSON list of base64 keys, the first primary), so key rotation (above)
 * keeps it current and `serf agent -keyring-file` reads it too. Keys cross
 * these functions in base64, as users see them. All block on file I/O. */

#define HC_GOSSIP_KEY_B64_MAX 45 /* a 32-byte key in base64, and the NUL */

/* A new random 32-byte (AES-256) key, in base64. 0 or -errno. */
int hc_gossip_key_generate(char out[HC_GOSSIP_KEY_B64_MAX]);

/* 0 if b64 is a valid gossip key (16, 24 or 32 bytes), else -EINVAL. */
int hc_gossip_key_check(const char *b64);

/* Decodes a base64 gossip key into out (up to 32 bytes) and *len: 0, or
 * -EINVAL for anything but a 16, 24 or 32-byte key. */
int hc_gossip_key_decode(const char *b64, uint8_t out[32], size_t *len);

/* Creates the keyring file path holding the one key b64, mode 0600,
 * written atomically; -EEXIST if path exists (it is never replaced). */
int hc_gossip_keyring_file_create(const char *path, const char *b64);

/* The primary key of the keyring file at path, in base64. -ENOENT if there
 * is no such file, -EINVAL if it is not a valid keyring. */
int hc_gossip_keyring_file_primary(const char *path, char out[HC_GOSSIP_KEY_B64_MAX]);

/* 1 if the keyring file at path holds the key b64, 0 if not, or -errno as
 * hc_gossip_keyring_file_primary. */
int hc_gossip_keyring_file_holds(const char *path, const char *b64);

/* Writes hypercore_gossip_* metrics (a metrics collector). */
void hc_gossip_collect(struct hc_metrics_writer *w, void *g);

#endif /* HC_GOSSIP_H */
