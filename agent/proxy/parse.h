/*
 * The proxy's two parsers of what a client sends first: an HTTP/1.x request
 * head (routed on its Host) and a TLS ClientHello (routed on its SNI). Both
 * take the bytes peeked so far, in any amount, and say whether the message
 * is complete, needs more bytes, or must be refused. The bytes come from
 * anyone on the network: every length and character is checked, nothing is
 * read past len, and a verdict other than MORE never changes when more bytes
 * arrive (a prefix answers MORE or what the whole answers).
 *
 * Pure functions: no allocation, no I/O, no logging, no global state; safe
 * from any thread.
 */
#ifndef HC_PROXY_PARSE_H
#define HC_PROXY_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits */
#define HC_HTTP_HEAD_MAX 16384 /* a request head longer than this is refused (431) */
#define HC_HOST_MAX 253	       /* the longest DNS name, without its trailing dot */
/* A ClientHello handshake message (its 4-byte header included) longer than
 * this is refused. One record holds 16 KiB, so a longer one would need
 * fragmentation that no client we serve produces. */
#define HC_TLS_HELLO_MAX 16384
/* The records holding the ClientHello must end within this many bytes (a
 * hello cut into tiny records costs 5 bytes of header each): a caller that
 * can buffer this much always gets an answer other than MORE. */
#define HC_TLS_INPUT_MAX 32768
/* Room for any host of up to HC_HOST_MAX bytes escaped by
 * hc_html_escape_host (3 bytes per escaped byte) and its NUL. */
#define HC_HOST_ESCAPED_MAX (3 * HC_HOST_MAX + 1)

enum hc_parse_status {
	HC_PARSE_OK = 0,	 /* complete */
	HC_PARSE_MORE = 1,	 /* need more bytes; call again with the longer buffer */
	HC_PARSE_INVALID = -1,	 /* malformed: HTTP 400 / TLS: not a valid ClientHello */
	HC_PARSE_TOO_LARGE = -2, /* HTTP head over HC_HTTP_HEAD_MAX (431); ClientHello over its bound */
};

struct hc_http_head {
	size_t head_len;	 /* bytes of the head, through the empty line's CRLF */
	size_t request_line_len; /* the request line with its CRLF (where to insert headers) */
	char host[HC_HOST_MAX + 1]; /* Host (or absolute-form authority), lower-cased, port and
				     * a trailing dot stripped; "" if none or empty */
	uint16_t host_port;	 /* the port given with it, 0 if none */
	bool http10;		 /* HTTP/1.0 */
	bool upgrade;		 /* Connection: upgrade and an Upgrade header, HTTP/1.1+ (WebSocket) */
	bool head_method;	 /* HEAD: the response has no body whatever it says */
	bool has_length;	 /* a Content-Length field: the body is content_length bytes */
	bool chunked;		 /* Transfer-Encoding: chunked */
	bool expect_continue;	 /* Expect: 100-continue */
	bool forwarded_fields;	 /* X-Forwarded-For, X-Forwarded-Proto or Forwarded present */
	bool close;		 /* "close" in Connection: the last request of the connection */
	bool close_mixed;	 /* a Connection field says close and something else too */
	uint64_t content_length;
};

/*
 * Parses an HTTP/1.x request head at the start of buf (len bytes read so
 * far). Returns:
 *   OK         the head is complete: *out describes it; head_len <= len and
 *              the bytes after it (a body, a pipelined request) are not looked at;
 *   MORE       no end of head yet and nothing wrong so far;
 *   TOO_LARGE  len >= HC_HTTP_HEAD_MAX and no end of head in the first
 *              HC_HTTP_HEAD_MAX bytes (a head of exactly HC_HTTP_HEAD_MAX is OK);
 *   INVALID    a 400. Found as early as possible: every line, and the part
 *              of a line that has arrived, is checked as it comes, so a
 *              client speaking something else is refused on its first bytes.
 * On anything but OK, *out is zeroed.
 *
 * What is accepted (RFC 9112, strictly, as the head is forwarded to a backend
 * that must not read it differently):
 *  - lines end in CRLF; a bare LF or CR is INVALID, as are empty lines before
 *    the request line (request_line_len counts from byte 0);
 *  - request line: token SP request-target SP "HTTP/1." DIGIT, single spaces;
 *    the target has no controls, space or DEL (bytes >= 0x80 pass); it is
 *    origin-form ("/..."), "*" with OPTIONS, or absolute-form with scheme
 *    http or https ("http://host[:port]/..."), whose authority gives host and
 *    host_port (RFC 9112 3.2.2), userinfo refused. Authority-form (CONNECT)
 *    and other schemes are INVALID: we are a reverse proxy, not a tunnel.
 *    HTTP/1.0 sets http10; 1.1 to 1.9 are all 1.1;
 *  - field lines: a token, ':' right after it (whitespace before it is
 *    INVALID), a value of visible characters, SP, HTAB and bytes >= 0x80;
 *    a line starting with SP or HTAB (obs-fold, or whitespace after the
 *    request line) is INVALID;
 *  - Host: at most one (two is INVALID even if equal); required unless
 *    HTTP/1.0 (also with absolute-form, RFC 9112 3.2); its value, OWS
 *    trimmed, is empty or host[:port], host being a reg-name (letters,
 *    digits, '-', '.', '_'; no empty label; one trailing dot dropped; at
 *    most HC_HOST_MAX), a dotted IPv4 address, or an IPv6 literal in
 *    brackets (kept with its brackets, lower-cased, not normalised; no zone);
 *    port 1 to 5 digits, 1..65535. An empty Host gives host "".
 *  - Connection is a comma-separated list; "upgrade" in it (any case) with
 *    an Upgrade header sets upgrade. HTTP/1.0 never upgrades (RFC 9110 7.8).
 *  - Body framing, strictly, since the head and body go to a backend that
 *    must find the same end of the message as we do (request smuggling):
 *    Content-Length is 1 to 18 digits and nothing else (no list, no sign,
 *    no space inside); several are INVALID unless they say the same number;
 *    Transfer-Encoding must be exactly "chunked" (any case, OWS trimmed), at
 *    most once, and not with HTTP/1.0; both Content-Length and
 *    Transfer-Encoding is INVALID (RFC 9112 6.1 allows a server to refuse).
 *    Neither: no body (RFC 9112 6.3).
 */
int hc_http_head_parse(const char *buf, size_t len, struct hc_http_head *out);

/* Whether the method (len bytes, no NUL needed) is idempotent (RFC 9110
 * 9.2.2: GET, HEAD, OPTIONS, PUT, DELETE, TRACE): a request the proxy may
 * send again when the backend closed a reused connection under it. */
bool hc_http_method_idempotent(const char *method, size_t len);

/*
 * Copies a head hc_http_head_parse accepted (h describes it) into out with
 * extra (whole field lines, each ending in CRLF) right after the request
 * line, and without the fields flags name:
 *   HC_REWRITE_FORWARDED  X-Forwarded-For, X-Forwarded-Proto and Forwarded
 *                         (the client's own could otherwise pass for ours);
 *   HC_REWRITE_CLOSE      a Connection field saying only "close" (hop by
 *                         hop: the client's connection ends, not the one to
 *                         the backend, which stays open for reuse).
 * Returns the length written, or 0 when it does not fit in cap.
 */
#define HC_REWRITE_FORWARDED 1u
#define HC_REWRITE_CLOSE 2u
size_t hc_http_head_rewrite(const char *head, const struct hc_http_head *h, const char *extra,
			    size_t extra_len, unsigned flags, char *out, size_t cap);

/* A response head longer than this is refused (the backend is cut). */
#define HC_HTTP_RESPONSE_HEAD_MAX 32768

struct hc_http_response {
	size_t head_len;	/* through the empty line's CRLF */
	unsigned status;	/* 100..599 */
	bool http10;
	bool has_length;	/* Content-Length */
	bool chunked;		/* Transfer-Encoding whose last coding is chunked */
	bool until_close;	/* Transfer-Encoding without chunked last: the body ends at EOF */
	bool close;		/* "close" in Connection: the backend closes after it */
	uint64_t content_length;
};

/*
 * Parses a response head from a backend at the start of buf. OK, MORE,
 * TOO_LARGE (no end in the first HC_HTTP_RESPONSE_HEAD_MAX bytes) or
 * INVALID; on anything but OK *out is zeroed, and a prefix answers MORE or
 * what the whole answers. Status line "HTTP/1.D DDD[ reason]"; field lines
 * as in requests (no obs-fold, CRLF only); Content-Length as in requests;
 * Content-Length with Transfer-Encoding is INVALID (we forward the head
 * unchanged, and a client could pick either).
 */
int hc_http_response_parse(const char *buf, size_t len, struct hc_http_response *out);

enum hc_http_body_kind {
	HC_BODY_NONE,	 /* no body */
	HC_BODY_LENGTH,	 /* so many bytes */
	HC_BODY_CHUNKED, /* chunked coding, through its trailer section */
	HC_BODY_CLOSE,	 /* until the connection closes */
};

/* Where a body framer is; set up by hc_http_body_init, advanced by
 * hc_http_body_feed. */
struct hc_http_body {
	enum hc_http_body_kind kind;
	unsigned state;	/* chunked: the part of the coding being read */
	unsigned count;	/* chunked: size digits, extension or trailer bytes so far */
	uint64_t left;	/* LENGTH: bytes still to come; CHUNKED: of this chunk's data */
};

/* The body that follows a response head, given whether the request was a
 * HEAD; *length is set for LENGTH. 1xx, 204, 304 and HEAD answers have none. */
enum hc_http_body_kind hc_http_response_body(const struct hc_http_response *r, bool head_request,
					     uint64_t *length);

void hc_http_body_init(struct hc_http_body *b, enum hc_http_body_kind kind, uint64_t length);

/* Chunk extensions and trailer sections longer than this are refused. */
#define HC_HTTP_CHUNK_EXT_MAX 4096

/*
 * Feeds the next len bytes of a message's body. Returns:
 *   OK       the body ended: *used bytes of buf were its last (the rest is
 *            the next message); b is back at NONE;
 *   MORE     all len bytes are body (*used = len) and more is to come;
 *   INVALID  not valid chunked coding (RFC 9112 7.1: a size of 1 to 16 hex
 *            digits, extensions of ';' and field-value characters before
 *            CRLF with at most HC_HTTP_CHUNK_EXT_MAX bytes, data, CRLF; the
 *            last chunk's trailer fields as field lines, HC_HTTP_HEAD_MAX
 *            bytes at most; no bare LF anywhere); *used is undefined.
 * Any split of the same bytes gives the same verdict at the same place.
 * NONE answers OK with *used 0; CLOSE answers MORE.
 */
int hc_http_body_feed(struct hc_http_body *b, const char *buf, size_t len, size_t *used);

struct hc_client_hello {
	size_t consumed;	   /* bytes of the TLS records that held the whole ClientHello */
	char sni[HC_HOST_MAX + 1]; /* server_name (host_name type), lower-cased, a trailing dot
				    * stripped; "" if absent */
	bool alpn_http11;	   /* ALPN offers "http/1.1" */
};

/*
 * Whether buf may start a TLS handshake: the first byte is 0x16 and, if a
 * second has arrived, it is 0x03. False for len 0 (nothing to decide on).
 */
bool hc_tls_looks_like(const uint8_t *buf, size_t len);

/*
 * Looks for a TLS ClientHello at the start of buf (len bytes read so far):
 * records of type 0x16 (handshake), version 0x03 0x0X, length 1..16384,
 * holding one handshake message of type 1 (ClientHello) that may be cut
 * across several records and arrive over several reads. Returns:
 *   OK         *out filled; consumed is the end of the record holding the
 *              last byte of the ClientHello (<= len);
 *   MORE       incomplete, nothing wrong so far;
 *   TOO_LARGE  the message is over HC_TLS_HELLO_MAX, or its records go past
 *              HC_TLS_INPUT_MAX bytes (known from a record's header, or when
 *              len >= HC_TLS_INPUT_MAX and it is not complete by then);
 *   INVALID    a record that is not a handshake record (also one of another
 *              type between the fragments), a handshake message that is not a
 *              ClientHello, a record holding bytes past the ClientHello's
 *              end, or a malformed ClientHello: each length is checked
 *              against the one enclosing it and must fill it exactly, the
 *              session id is at most 32 bytes, cipher suites an even non-zero
 *              count, compression methods non-empty, extensions walked with
 *              bounds; server_name and ALPN may appear once each, their lists
 *              must be non-empty, an ALPN name non-empty, and the host_name
 *              (one at most) a valid host name under the rules of Host (no
 *              port, no brackets).
 * Other extensions are skipped unexamined. On anything but OK, *out is zeroed.
 * Uses HC_TLS_HELLO_MAX bytes of stack to join the fragments.
 */
int hc_tls_client_hello_parse(const uint8_t *buf, size_t len, struct hc_client_hello *out);

/*
 * For the 404 page and logs: copies the NUL-terminated host into dst with
 * every byte but [a-z0-9._:[]-] written as %XX (upper-case hex), which is
 * inert in HTML text and attributes and keeps a log line one line. Never
 * writes more than cap bytes and, if cap > 0, always NUL-terminates; when the
 * whole does not fit it stops before the first byte (or escape) that does not.
 * Returns the length written, without the NUL. HC_HOST_ESCAPED_MAX holds any
 * host of up to HC_HOST_MAX bytes; a parsed host needs no escaping at all.
 */
size_t hc_html_escape_host(const char *host, char *dst, size_t cap);

#endif /* HC_PROXY_PARSE_H */
