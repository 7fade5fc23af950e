/* Private to agent/gossip: memberlist and serf messages on the wire
 * (wire_memberlist.c, wire_serf.c) and whole received units (wire.c). */
#ifndef HC_GOSSIP_WIRE_INT_H
#define HC_GOSSIP_WIRE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/msgpack_int.h"

struct hc_gossip_keyring;

/* memberlist messages (wire_memberlist.c)                                  */

enum hc_gossip_msg_type {
	HC_GOSSIP_MSG_PING = 0,
	HC_GOSSIP_MSG_INDIRECT_PING = 1,
	HC_GOSSIP_MSG_ACK = 2,
	HC_GOSSIP_MSG_SUSPECT = 3,
	HC_GOSSIP_MSG_ALIVE = 4,
	HC_GOSSIP_MSG_DEAD = 5,
	HC_GOSSIP_MSG_PUSH_PULL = 6,
	HC_GOSSIP_MSG_COMPOUND = 7,
	HC_GOSSIP_MSG_USER = 8,
	HC_GOSSIP_MSG_COMPRESS = 9,
	HC_GOSSIP_MSG_ENCRYPT = 10,
	HC_GOSSIP_MSG_NACK = 11,
	HC_GOSSIP_MSG_HAS_CRC = 12,
	HC_GOSSIP_MSG_ERR = 13,
};

/* Bounds on what a peer can make us inflate or hold. */
#define HC_GOSSIP_UDP_MAX 65536u                 /* receive buffer per datagram */
#define HC_GOSSIP_STREAM_MAX (20u * 1024 * 1024) /* memberlist maxPushStateBytes */
#define HC_GOSSIP_MAX_WRAP_DEPTH 4               /* compound/compress nesting */

struct hc_gossip_ping {
	struct hc_gossip_bytes node; /* target's name; receivers ignore a ping for another */
	uint32_t seq_no;
	struct hc_gossip_bytes source_addr; /* omitted on the wire when empty */
	struct hc_gossip_bytes source_node; /* omitted when empty */
	uint16_t source_port;               /* omitted when 0 */
};

struct hc_gossip_indirect_ping {
	bool nack;
	struct hc_gossip_bytes node;
	uint16_t port;
	uint32_t seq_no;
	struct hc_gossip_bytes source_addr, source_node; /* omitted when empty */
	uint16_t source_port;                            /* omitted when 0 */
	struct hc_gossip_bytes target;                   /* raw 4 or 16 byte IP */
};

struct hc_gossip_ack {
	struct hc_gossip_bytes payload; /* serf: 01 + coordinate; may be nil */
	uint32_t seq_no;
};

struct hc_gossip_nack {
	uint32_t seq_no;
};

/* suspect (3) and dead (5) carry the same fields. */
struct hc_gossip_suspect {
	struct hc_gossip_bytes from;
	uint32_t incarnation;
	struct hc_gossip_bytes node;
};

struct hc_gossip_alive {
	struct hc_gossip_bytes addr;
	uint32_t incarnation;
	struct hc_gossip_bytes meta;
	struct hc_gossip_bytes node;
	uint16_t port;
	struct hc_gossip_bytes vsn; /* 6 bytes: pmin pmax pcur dmin dmax dcur */
};

struct hc_gossip_err {
	struct hc_gossip_bytes error;
};

/* One memberlist message that is not a wrapper. user is the raw delegate
 * (serf) message: serf type byte + msgpack. */
struct hc_gossip_msg {
	enum hc_gossip_msg_type type;
	union {
		struct hc_gossip_ping ping;
		struct hc_gossip_indirect_ping indirect_ping;
		struct hc_gossip_ack ack;
		struct hc_gossip_nack nack;
		struct hc_gossip_suspect suspect; /* SUSPECT and DEAD */
		struct hc_gossip_alive alive;
		struct hc_gossip_err err;
		struct hc_gossip_bytes user;
	} u;
};

/* Decodes one message starting with its type byte. Wrapper types (compound,
 * compress, hasCrc, encrypt) and push/pull give -ENOMSG: use the functions
 * below for those. Fields borrow from buf. */
int hc_gossip_msg_decode(const uint8_t *buf, size_t len, struct hc_gossip_msg *m);
/* Appends type byte + body. */
int hc_gossip_msg_encode(const struct hc_gossip_msg *m, struct hc_gossip_mp_writer *w);

/* Compound (07 | n | n x u16 BE length | parts). Fills parts[0..*n) with
 * borrowed complete messages. Like Go, parts before a truncated one are kept:
 * then it returns -ENODATA with *n the usable prefix. */
#define HC_GOSSIP_COMPOUND_MAX 255
int hc_gossip_compound_split(const uint8_t *buf, size_t len,
			     struct hc_gossip_bytes parts[HC_GOSSIP_COMPOUND_MAX], size_t *n);
/* Appends a compound of n (1..255) parts each shorter than 64 KiB. */
int hc_gossip_compound_encode(const struct hc_gossip_bytes *parts, size_t n,
			      struct hc_gossip_mp_writer *w);

/* hasCrc (0c | CRC32 BE | message). Sets *inner to the checked message. */
int hc_gossip_crc_unwrap(const uint8_t *buf, size_t len, struct hc_gossip_bytes *inner);
int hc_gossip_crc_wrap(const uint8_t *msg, size_t len, struct hc_gossip_mp_writer *w);

/* compress (09 | {Algo, Buf}). Decompresses Buf into a malloc'd *out of at
 * most max_out bytes (free() it). */
int hc_gossip_compress_unwrap(const uint8_t *buf, size_t len, size_t max_out, uint8_t **out,
			      size_t *out_len);
/* Appends 09 | {Algo: 0, Buf: LZW(msg)}. */
int hc_gossip_compress_wrap(const uint8_t *msg, size_t len, struct hc_gossip_mp_writer *w);

/* Runs a received (already decrypted) UDP payload through hasCrc, compound
 * and compress, nested up to HC_GOSSIP_MAX_WRAP_DEPTH, calling fn for each
 * message in order. Like Go, a bad part of a compound does not stop the
 * others. Returns 0 if everything decoded, else the first error. The message
 * passed to fn borrows from buffers valid only during the call. */
typedef void hc_gossip_msg_fn(const struct hc_gossip_msg *m, void *arg);
int hc_gossip_packet_walk(const uint8_t *buf, size_t len, hc_gossip_msg_fn *fn, void *arg);

/* TCP push/pull (06 | header | nodes | user state). */
enum hc_gossip_node_state {
	HC_GOSSIP_STATE_ALIVE = 0,
	HC_GOSSIP_STATE_SUSPECT = 1,
	HC_GOSSIP_STATE_DEAD = 2,
	HC_GOSSIP_STATE_LEFT = 3,
};

struct hc_gossip_push_node {
	struct hc_gossip_bytes addr;
	uint32_t incarnation;
	struct hc_gossip_bytes meta;
	struct hc_gossip_bytes name;
	uint16_t port;
	uint8_t state; /* enum hc_gossip_node_state; others are kept as sent */
	struct hc_gossip_bytes vsn;
};

struct hc_gossip_push_pull {
	bool join;
	struct hc_gossip_push_node *nodes; /* decoded: owned array of nnodes */
	size_t nnodes;
	struct hc_gossip_bytes user_state; /* serf: 02 + msgpack; may be empty */
};

/* Decodes a plaintext, uncompressed stream message that starts with 06.
 * -ENODATA means the message is incomplete (a stream reader may read more). */
int hc_gossip_push_pull_decode(const uint8_t *buf, size_t len, struct hc_gossip_push_pull *pp);
/* The header object alone (buf holds the msgpack map after the type byte)
 * of a push/pull (type 06: *objects node states, then *raw bytes of user
 * state) or of a streamed user message (08: no objects, *raw bytes).
 * 0 or -errno. */
int hc_gossip_stream_header_decode(uint8_t type, const uint8_t *buf, size_t len,
				   uint64_t *objects, uint64_t *raw);
int hc_gossip_push_pull_encode(const struct hc_gossip_push_pull *pp,
			       struct hc_gossip_mp_writer *w);
void hc_gossip_push_pull_fini(struct hc_gossip_push_pull *pp);

/* TCP reliable user message: 08 | {UserMsgLen} | raw bytes (borrowed). */
int hc_gossip_user_stream_decode(const uint8_t *buf, size_t len, struct hc_gossip_bytes *msg);
int hc_gossip_user_stream_encode(const uint8_t *msg, size_t len, struct hc_gossip_mp_writer *w);

/* serf messages (wire_serf.c)                                              */

enum hc_gossip_serf_type {
	HC_GOSSIP_SERF_LEAVE = 0,
	HC_GOSSIP_SERF_JOIN = 1,
	HC_GOSSIP_SERF_PUSH_PULL = 2,
	HC_GOSSIP_SERF_USER_EVENT = 3,
	HC_GOSSIP_SERF_QUERY = 4,
	HC_GOSSIP_SERF_QUERY_RESPONSE = 5,
	HC_GOSSIP_SERF_CONFLICT_RESPONSE = 6,
	HC_GOSSIP_SERF_KEY_REQUEST = 7,
	HC_GOSSIP_SERF_KEY_RESPONSE = 8,
	HC_GOSSIP_SERF_RELAY = 9,
};

#define HC_GOSSIP_SERF_QUERY_ACK 1u       /* query Flags bit: ack requested */
#define HC_GOSSIP_SERF_QUERY_NO_BCAST 2u  /* query Flags bit: do not rebroadcast */
#define HC_GOSSIP_SERF_EVENT_BUFFER 512u  /* slots in the push/pull event ring */

/* leave (0) and join (1); prune only exists in leave. */
struct hc_gossip_serf_intent {
	uint64_t ltime;
	struct hc_gossip_bytes node;
	bool prune;
};

struct hc_gossip_serf_user_event {
	bool cc;
	uint64_t ltime;
	struct hc_gossip_bytes name;
	struct hc_gossip_bytes payload;
};

struct hc_gossip_serf_query {
	struct hc_gossip_bytes addr;
	struct hc_gossip_bytes *filters; /* decoded: owned array; elements borrowed */
	size_t nfilters;
	bool filters_nil; /* Go sends nil when there are none */
	uint32_t flags;
	uint32_t id;
	uint64_t ltime;
	struct hc_gossip_bytes name;
	struct hc_gossip_bytes payload;
	uint16_t port;
	uint8_t relay_factor;
	struct hc_gossip_bytes source_node;
	int64_t timeout_ns;
};

struct hc_gossip_serf_query_response {
	uint32_t flags;
	struct hc_gossip_bytes from;
	uint32_t id;
	uint64_t ltime;
	struct hc_gossip_bytes payload;
};

/* relay (9): header then the serf message to forward (05 | response). */
struct hc_gossip_serf_relay {
	struct hc_gossip_bytes dest_ip;
	uint16_t dest_port;
	struct hc_gossip_bytes dest_zone;
	struct hc_gossip_bytes dest_name;
	struct hc_gossip_bytes inner; /* raw serf message, forwarded unchanged */
};

/* One decoded serf message. Only QUERY owns memory (hc_gossip_serf_msg_fini). */
struct hc_gossip_serf_msg {
	enum hc_gossip_serf_type type;
	union {
		struct hc_gossip_serf_intent intent; /* LEAVE, JOIN */
		struct hc_gossip_serf_user_event event;
		struct hc_gossip_serf_query query;
		struct hc_gossip_serf_query_response response;
		struct hc_gossip_serf_relay relay;
	} u;
};

/* Decodes a serf message (type byte + body) as carried in a memberlist user
 * message. PUSH_PULL and the query-payload types (6, 7, 8) have their own
 * decoders below and give -ENOMSG here, as do unknown types. */
int hc_gossip_serf_decode(const uint8_t *buf, size_t len, struct hc_gossip_serf_msg *m);
int hc_gossip_serf_encode(const struct hc_gossip_serf_msg *m, struct hc_gossip_mp_writer *w);
void hc_gossip_serf_msg_fini(struct hc_gossip_serf_msg *m);

/* Query filters: 00 | [node names]  or  01 | {Expr, Tag}. */
enum hc_gossip_serf_filter_type {
	HC_GOSSIP_SERF_FILTER_NODE = 0,
	HC_GOSSIP_SERF_FILTER_TAG = 1,
};

struct hc_gossip_serf_filter {
	enum hc_gossip_serf_filter_type type;
	struct hc_gossip_bytes *nodes; /* NODE; decoded: owned array */
	size_t nnodes;
	struct hc_gossip_bytes expr, tag; /* TAG: RE2 expression and tag name */
};

int hc_gossip_serf_filter_decode(struct hc_gossip_bytes raw, struct hc_gossip_serf_filter *f);
int hc_gossip_serf_filter_encode(const struct hc_gossip_serf_filter *f,
				 struct hc_gossip_mp_writer *w);
void hc_gossip_serf_filter_fini(struct hc_gossip_serf_filter *f);

/* Tags: a map[string]string. On the wire in node Meta as ff | map (serf
 * protocol >= 3), and in Member.Tags. Encoded in array order. */
struct hc_gossip_tag {
	struct hc_gossip_bytes key, value;
};

struct hc_gossip_tags {
	struct hc_gossip_tag *tags; /* decoded: owned array */
	size_t n;
};

/* Decodes node Meta. Meta that is empty or does not start with ff is the
 * legacy form: one tag "role" whose value is the whole Meta, as serf does. */
int hc_gossip_meta_decode(struct hc_gossip_bytes meta, struct hc_gossip_tags *t);
int hc_gossip_meta_encode(const struct hc_gossip_tags *t, struct hc_gossip_mp_writer *w);
void hc_gossip_tags_fini(struct hc_gossip_tags *t);

/* serf push/pull state: 02 | messagePushPull. */
struct hc_gossip_serf_event {
	struct hc_gossip_bytes name, payload;
};

struct hc_gossip_serf_event_slot {
	bool used; /* false: nil slot of the ring */
	uint64_t ltime;
	struct hc_gossip_serf_event *events; /* decoded: owned */
	size_t nevents;
};

struct hc_gossip_serf_status_ltime {
	struct hc_gossip_bytes name;
	uint64_t ltime;
};

struct hc_gossip_serf_push_pull {
	uint64_t event_ltime;
	struct hc_gossip_serf_event_slot *slots; /* decoded: owned; Go sends 512 */
	size_t nslots;
	uint64_t ltime;
	struct hc_gossip_bytes *left_members; /* decoded: owned */
	size_t nleft;
	uint64_t query_ltime;
	struct hc_gossip_serf_status_ltime *status; /* decoded: owned, wire order */
	size_t nstatus;
};

int hc_gossip_serf_push_pull_decode(const uint8_t *buf, size_t len,
				    struct hc_gossip_serf_push_pull *pp);
int hc_gossip_serf_push_pull_encode(const struct hc_gossip_serf_push_pull *pp,
				    struct hc_gossip_mp_writer *w);
void hc_gossip_serf_push_pull_fini(struct hc_gossip_serf_push_pull *pp);

/* Key management payloads of the _serf_*-key queries. */
struct hc_gossip_serf_key_request {
	struct hc_gossip_bytes key; /* raw key bytes; empty for list-keys */
};

struct hc_gossip_serf_key_response {
	struct hc_gossip_bytes *keys; /* base64 strings; decoded: owned array */
	size_t nkeys;
	bool keys_nil;
	struct hc_gossip_bytes message;
	struct hc_gossip_bytes primary_key;
	bool result;
};

int hc_gossip_serf_key_request_decode(const uint8_t *buf, size_t len,
				      struct hc_gossip_serf_key_request *kr);
int hc_gossip_serf_key_request_encode(const struct hc_gossip_serf_key_request *kr,
				      struct hc_gossip_mp_writer *w);
int hc_gossip_serf_key_response_decode(const uint8_t *buf, size_t len,
				       struct hc_gossip_serf_key_response *kr);
int hc_gossip_serf_key_response_encode(const struct hc_gossip_serf_key_response *kr,
				       struct hc_gossip_mp_writer *w);
void hc_gossip_serf_key_response_fini(struct hc_gossip_serf_key_response *kr);

/* _serf_conflict response: 06 | Member, or 06 c0 when unknown (known false). */
enum hc_gossip_member_status {
	HC_GOSSIP_MEMBER_NONE = 0,
	HC_GOSSIP_MEMBER_ALIVE = 1,
	HC_GOSSIP_MEMBER_LEAVING = 2,
	HC_GOSSIP_MEMBER_LEFT = 3,
	HC_GOSSIP_MEMBER_FAILED = 4,
};

struct hc_gossip_serf_member {
	bool known;
	struct hc_gossip_bytes addr;
	uint8_t delegate_cur, delegate_max, delegate_min;
	struct hc_gossip_bytes name;
	uint16_t port;
	uint8_t protocol_cur, protocol_max, protocol_min;
	int64_t status; /* enum hc_gossip_member_status */
	struct hc_gossip_tags tags;
};

int hc_gossip_serf_conflict_decode(const uint8_t *buf, size_t len,
				   struct hc_gossip_serf_member *m);
int hc_gossip_serf_conflict_encode(const struct hc_gossip_serf_member *m,
				   struct hc_gossip_mp_writer *w);
void hc_gossip_serf_member_fini(struct hc_gossip_serf_member *m);

/* Vivaldi coordinate carried in serf acks: 01 | {Adjustment, Error, Height, Vec}. */
#define HC_GOSSIP_COORD_DIM 8
struct hc_gossip_coord {
	double adjustment, error, height;
	double vec[HC_GOSSIP_COORD_DIM];
	size_t dim;
};

int hc_gossip_coord_decode(struct hc_gossip_bytes payload, struct hc_gossip_coord *c);
int hc_gossip_coord_encode(const struct hc_gossip_coord *c, struct hc_gossip_mp_writer *w);

/* Whole received units (wire.c)                                            */

/* A received UDP datagram: decrypt with kr when kr has keys (plaintext is
 * then refused), then walk as hc_gossip_packet_walk does. */
int hc_gossip_datagram_walk(const struct hc_gossip_keyring *kr, const uint8_t *buf, size_t len,
			    hc_gossip_msg_fn *fn, void *arg);

/* A received TCP stream message: decrypt (kr with keys) and decompress as
 * needed. *msg is a malloc'd copy (free() it) that starts with the inner type
 * byte (06 push/pull, 08 user, 00 ping, 02 ack, 0d err). -ENODATA while
 * incomplete. */
int hc_gossip_stream_open(const struct hc_gossip_keyring *kr, const uint8_t *buf, size_t len,
			  uint8_t **msg, size_t *msg_len);

/*
 * Where a stream message ends, found as its bytes arrive (wire_stream.c):
 * each call looks only at what came since the last one (and at most the
 * few bytes of a msgpack header cut by a read), never at a str, bin or
 * user state's contents, so finding the end of an n-byte message costs
 * O(n) over any number of reads. Zero the struct for a new stream and pass
 * the whole buffer read so far each time.
 */
struct hc_gossip_stream_scan {
	size_t pos;	    /* bytes of the message accounted for */
	size_t mark;	    /* where the header object being skipped began */
	uint64_t objects;   /* msgpack objects still to skip */
	uint64_t skip;	    /* raw bytes still to skip */
	uint64_t raw;	    /* raw bytes that follow the objects still to come */
	size_t end;	    /* the message's length, once found */
	int stage;
	int err;
	uint64_t examined;  /* bytes looked at over every call, cut headers twice */
};

/* 1 when buf (len bytes, the stream so far) holds a whole message of
 * sc->end bytes; 0 to read more; -EMSGSIZE when it claims more than
 * HC_GOSSIP_STREAM_MAX, -EBADMSG when it is not msgpack. The unwrapping
 * and decoding that follow report anything else. Wrapped messages (an
 * encrypted frame, a compressed message) end with their wrapper. */
int hc_gossip_stream_scan(struct hc_gossip_stream_scan *sc, const uint8_t *buf, size_t len);

#endif /* HC_GOSSIP_WIRE_INT_H */
