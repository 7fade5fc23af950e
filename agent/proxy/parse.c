/* HTTP/1.x request heads and TLS ClientHellos, parsed for routing; see parse.h. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "parse.h"

/* ---- characters (ASCII only: no locale may change what a byte is) ---- */

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned char to_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* RFC 9110 5.6.2 tchar: what methods and field names are made of: ALPHA,
 * DIGIT and "!#$%&'*+-.^_`|~", as a bitmap of the 128 ASCII bytes (every
 * byte of every field name goes through here). */
static bool is_tchar(unsigned char c)
{
	static const uint64_t tchar[2] = {0x03ff6cfa00000000ull, 0x57ffffffc7fffffeull};

	return c < 128 && (tchar[c >> 6] >> (c & 63) & 1);
}

/* A field value byte: visible, SP, HTAB, or obs-text. CR, LF, NUL and the
 * other controls are what header injection and smuggling are made of. */
static bool is_value_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* A request-target byte: no controls, no space (it delimits the line), no
 * DEL. Bytes >= 0x80 pass: clients send raw UTF-8 paths, and the target is
 * the backend's business except for an absolute-form authority. */
static bool is_target_char(unsigned char c)
{
	return c > 0x20 && c != 0x7f;
}

/* What a reg-name may hold: RFC 3986 unreserved minus '~', i.e. DNS names
 * plus the '_' that some service names carry. */
static bool is_host_char(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_';
}

static bool equal_nocase(const char *s, size_t n, const char *lit)
{
	size_t i;

	for (i = 0; i < n && lit[i]; i++)
		if (to_lower((unsigned char)s[i]) != (unsigned char)lit[i])
			return false;
	return i == n && lit[i] == '\0';
}

/* ---- hosts ---- */

/*
 * A host name (reg-name), copied lower-cased into dst. One trailing dot is
 * dropped so that "example.com." routes as "example.com"; empty labels are
 * refused, as no DNS name has them and they could only confuse a lookup.
 */
static bool host_name_copy(const char *s, size_t n, char dst[HC_HOST_MAX + 1])
{
	if (n && s[n - 1] == '.')
		n--;
	if (n == 0 || n > HC_HOST_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		/* a dot first, last (after the one dropped) or after a dot */
		if (!is_host_char(c) || (c == '.' && (i == 0 || i == n - 1 || s[i - 1] == '.')))
			return false;
		dst[i] = (char)to_lower(c);
	}
	dst[n] = '\0';
	return true;
}

/* RFC 3986 IPv4address: four dec-octets, no leading zeros (which some
 * resolvers read as octal). */
static bool ipv4_valid(const char *s, size_t n)
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		size_t start;
		unsigned v = 0;

		if (part) {
			if (i >= n || s[i] != '.')
				return false;
			i++;
		}
		start = i;
		while (i < n && is_digit((unsigned char)s[i]) && i - start < 3)
			v = v * 10 + (unsigned)(s[i++] - '0');
		if (i == start || v > 255 || (i - start > 1 && s[start] == '0'))
			return false;
	}
	return i == n;
}

/* RFC 3986 IPv6address (without the brackets, no zone id): eight groups of
 * 1-4 hex digits, or fewer with one "::", the last 32 bits possibly written
 * as an IPv4 address. */
static bool ipv6_valid(const char *s, size_t n)
{
	size_t i = 0;
	int groups = 0;
	bool gap = false;

	if (n >= 2 && s[0] == ':' && s[1] == ':') {
		gap = true;
		i = 2;
	}
	while (i < n) {
		size_t start = i;

		while (i < n && is_hex((unsigned char)s[i]) && i - start < 4)
			i++;
		if (i < n && s[i] == '.') {
			/* an IPv4 tail: must end the address and leave room for it */
			if (groups > 6 || !ipv4_valid(s + start, n - start))
				return false;
			groups += 2;
			break;
		}
		if (i == start)
			return false; /* ":::", a lone leading ':' or a stray character */
		groups++;
		if (i == n)
			break;
		if (s[i] != ':')
			return false; /* a fifth hex digit or a stray character */
		if (++i == n)
			return false; /* a trailing single ':' */
		if (s[i] == ':') {
			if (gap)
				return false;
			gap = true;
			i++;
		}
	}
	return gap ? groups <= 7 : groups == 8;
}

/* 1 to 5 digits, 1..65535 (leading zeros allowed, as RFC 3986 does). */
static bool port_parse(const char *s, size_t n, uint16_t *port)
{
	unsigned v = 0;

	if (n == 0 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit((unsigned char)s[i]))
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

/* host [":" port], as in Host and an absolute-form authority; host is a
 * reg-name, an IPv4 address (which has a reg-name's characters) or an IPv6
 * literal, kept with its brackets so that it cannot be mistaken for a name. */
static bool host_port_parse(const char *s, size_t n, char host[HC_HOST_MAX + 1], uint16_t *port)
{
	size_t hn;

	if (n && s[0] == '[') {
		const char *close = memchr(s, ']', n);

		if (!close)
			return false;
		hn = (size_t)(close - s) + 1;
		if (!ipv6_valid(s + 1, hn - 2))
			return false;
		/* at most 47 bytes: "[" 45 "]" */
		for (size_t i = 0; i < hn; i++)
			host[i] = (char)to_lower((unsigned char)s[i]);
		host[hn] = '\0';
	} else {
		const char *colon = memchr(s, ':', n);

		hn = colon ? (size_t)(colon - s) : n;
		if (!host_name_copy(s, hn, host))
			return false;
	}
	*port = 0;
	if (hn == n)
		return true;
	return s[hn] == ':' && port_parse(s + hn + 1, n - hn - 1, port);
}

/* ---- HTTP request head ---- */

/* What the lines of a head have said so far. */
struct head_state {
	int hosts;	   /* Host fields seen */
	bool absolute;	   /* the target's authority set out->host */
	bool conn_upgrade; /* "upgrade" in a Connection field */
	bool upgrade_hdr;  /* an Upgrade field with a value */
	bool te_seen;	   /* a Transfer-Encoding field */
};

/* Content-Length's value (OWS trimmed): 1*DIGIT, at most 18 of them so
 * that it never overflows. A second field must say the same. */
static bool content_length(const char *v, size_t n, bool *seen, uint64_t *out)
{
	uint64_t x = 0;

	if (n == 0 || n > 18)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit((unsigned char)v[i]))
			return false;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	if (*seen && *out != x)
		return false;
	*seen = true;
	*out = x;
	return true;
}

/* The absolute-form target (after the method's check that it is not
 * origin-form): http or https, then an authority without userinfo. */
static int absolute_target(const char *t, size_t n, struct hc_http_head *out)
{
	size_t skip, end;

	if (n >= 7 && equal_nocase(t, 7, "http://"))
		skip = 7;
	else if (n >= 8 && equal_nocase(t, 8, "https://"))
		skip = 8;
	else
		return HC_PARSE_INVALID;
	for (end = skip; end < n && t[end] != '/' && t[end] != '?' && t[end] != '#'; end++)
		;
	/* '@' (userinfo), an empty host and anything odd fail the host rules */
	if (!host_port_parse(t + skip, end - skip, out->host, &out->host_port))
		return HC_PARSE_INVALID;
	return HC_PARSE_OK;
}

/*
 * The request line, without its CRLF. partial: only its first n bytes have
 * arrived; running out is then MORE rather than INVALID, so that a client
 * speaking another protocol is refused on its first bytes. Every check is on
 * bytes already seen, which keeps a prefix's verdict the whole's.
 */
static int request_line(const char *s, size_t n, bool partial, struct hc_http_head *out,
			struct head_state *st)
{
	static const char version[] = "HTTP/1.";
	size_t i = 0, t0, t1, vn;

	while (i < n && is_tchar((unsigned char)s[i]))
		i++;
	if (i == n)
		return partial ? HC_PARSE_MORE : HC_PARSE_INVALID;
	if (i == 0 || s[i] != ' ')
		return HC_PARSE_INVALID;
	t0 = ++i;
	while (i < n && is_target_char((unsigned char)s[i]))
		i++;
	if (i == n)
		return partial ? HC_PARSE_MORE : HC_PARSE_INVALID;
	if (i == t0 || s[i] != ' ')
		return HC_PARSE_INVALID;
	t1 = i++;
	vn = n - i;
	if (vn > 8 || memcmp(s + i, version, vn < 7 ? vn : 7) != 0 ||
	    (vn == 8 && !is_digit((unsigned char)s[i + 7])))
		return HC_PARSE_INVALID;
	if (vn < 8)
		return partial ? HC_PARSE_MORE : HC_PARSE_INVALID;
	out->http10 = s[i + 7] == '0';
	out->head_method = t0 - 1 == 4 && memcmp(s, "HEAD", 4) == 0;

	if (s[t0] == '/')
		return HC_PARSE_OK;
	if (t1 - t0 == 1 && s[t0] == '*')
		return t0 - 1 == 7 && memcmp(s, "OPTIONS", 7) == 0 ? HC_PARSE_OK
								 : HC_PARSE_INVALID;
	st->absolute = true;
	return absolute_target(s + t0, t1 - t0, out);
}

/* Whether a Connection value lists the option opt (elements are
 * comma-separated, with optional whitespace; empty elements are allowed by
 * RFC 9110 5.6.1). */
static bool connection_has(const char *v, size_t n, const char *opt)
{
	size_t i = 0;

	while (i < n) {
		size_t a, b;

		while (i < n && (v[i] == ' ' || v[i] == '\t'))
			i++;
		a = i;
		while (i < n && v[i] != ',')
			i++;
		b = i;
		while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
			b--;
		if (equal_nocase(v + a, b - a, opt))
			return true;
		i++; /* past the ',' */
	}
	return false;
}

/* The fields the proxy writes itself when it adds forwarded headers. */
static bool is_forwarded_field(const char *name, size_t n)
{
	return equal_nocase(name, n, "x-forwarded-for") || equal_nocase(name, n, "x-forwarded-proto") ||
	       equal_nocase(name, n, "forwarded");
}

/* One field line, without its CRLF; partial as for request_line. */
static int field_line(const char *s, size_t n, bool partial, struct hc_http_head *out,
		      struct head_state *st)
{
	size_t i = 0, name_len, v0, v1;

	/* obs-fold, or whitespace between the request line and the first
	 * field: either would make us and the backend see different fields */
	if (n && (s[0] == ' ' || s[0] == '\t'))
		return HC_PARSE_INVALID;
	while (i < n && is_tchar((unsigned char)s[i]))
		i++;
	if (i == n)
		return partial ? HC_PARSE_MORE : HC_PARSE_INVALID;
	if (i == 0 || s[i] != ':')
		return HC_PARSE_INVALID;
	name_len = i++;
	for (size_t k = i; k < n; k++)
		if (!is_value_char((unsigned char)s[k]))
			return HC_PARSE_INVALID;
	if (partial)
		return HC_PARSE_MORE;

	v0 = i;
	v1 = n;
	while (v0 < v1 && (s[v0] == ' ' || s[v0] == '\t'))
		v0++;
	while (v1 > v0 && (s[v1 - 1] == ' ' || s[v1 - 1] == '\t'))
		v1--;
	if (equal_nocase(s, name_len, "host")) {
		char scratch[HC_HOST_MAX + 1];
		uint16_t port;

		/* RFC 9112 3.2: more than one Host is a 400, whatever they say */
		if (++st->hosts > 1)
			return HC_PARSE_INVALID;
		if (v0 == v1)
			return HC_PARSE_OK; /* allowed empty: a target without authority */
		/* with an absolute-form target, Host is still checked, but the
		 * target's authority is what the request is for */
		if (!host_port_parse(s + v0, v1 - v0, st->absolute ? scratch : out->host, &port))
			return HC_PARSE_INVALID;
		if (!st->absolute)
			out->host_port = port;
	} else if (equal_nocase(s, name_len, "connection")) {
		if (connection_has(s + v0, v1 - v0, "upgrade"))
			st->conn_upgrade = true;
		if (connection_has(s + v0, v1 - v0, "close")) {
			out->close = true;
			if (!equal_nocase(s + v0, v1 - v0, "close"))
				out->close_mixed = true;
		}
	} else if (equal_nocase(s, name_len, "upgrade")) {
		if (v0 < v1)
			st->upgrade_hdr = true;
	} else if (equal_nocase(s, name_len, "content-length")) {
		if (!content_length(s + v0, v1 - v0, &out->has_length, &out->content_length))
			return HC_PARSE_INVALID;
	} else if (equal_nocase(s, name_len, "transfer-encoding")) {
		/* anything but one plain "chunked" is a coding the backend
		 * might frame differently than we do */
		if (st->te_seen || !equal_nocase(s + v0, v1 - v0, "chunked"))
			return HC_PARSE_INVALID;
		st->te_seen = out->chunked = true;
	} else if (equal_nocase(s, name_len, "expect")) {
		if (equal_nocase(s + v0, v1 - v0, "100-continue"))
			out->expect_continue = true;
	} else if (is_forwarded_field(s, name_len)) {
		out->forwarded_fields = true;
	}
	return HC_PARSE_OK;
}

static int head_parse(const char *buf, size_t len, struct hc_http_head *out)
{
	/* nothing past the limit is looked at: a head that long is refused
	 * whatever it holds, and no verdict may depend on bytes beyond it */
	size_t lim = len < HC_HTTP_HEAD_MAX ? len : HC_HTTP_HEAD_MAX;
	struct head_state st = { 0 };
	size_t pos = 0;
	int r;

	if (lim == 0)
		return HC_PARSE_MORE; /* and buf may be NULL */
	for (;;) {
		const char *lf = memchr(buf + pos, '\n', lim - pos);
		size_t eol, n;

		if (!lf) {
			/* the line still arriving: check what there is of it. A
			 * CR at its very end can only be its CRLF's, so what is
			 * before it must already be a whole line. */
			bool cr = lim > pos && buf[lim - 1] == '\r';

			n = lim - pos - cr;
			if (pos == 0)
				r = request_line(buf, n, !cr, out, &st);
			else if (cr && n == 0)
				r = HC_PARSE_MORE; /* the CR of the empty line */
			else
				r = field_line(buf + pos, n, !cr, out, &st);
			if (r == HC_PARSE_INVALID)
				return r;
			return lim == HC_HTTP_HEAD_MAX ? HC_PARSE_TOO_LARGE : HC_PARSE_MORE;
		}
		eol = (size_t)(lf - buf);
		if (eol == pos || buf[eol - 1] != '\r')
			return HC_PARSE_INVALID; /* a bare LF */
		n = eol - 1 - pos;
		if (pos == 0) {
			r = request_line(buf, n, false, out, &st);
			out->request_line_len = eol + 1;
		} else if (n == 0) {
			break; /* the empty line */
		} else {
			r = field_line(buf + pos, n, false, out, &st);
		}
		if (r != HC_PARSE_OK)
			return r;
		pos = eol + 1;
	}
	if (st.hosts == 0 && !out->http10)
		return HC_PARSE_INVALID; /* RFC 9112 3.2: HTTP/1.1 needs Host */
	/* RFC 9112 6.1: both is a smuggling attempt; HTTP/1.0 has no chunked */
	if (out->chunked && (out->has_length || out->http10))
		return HC_PARSE_INVALID;
	out->head_len = pos + 2;
	out->upgrade = st.conn_upgrade && st.upgrade_hdr && !out->http10;
	return HC_PARSE_OK;
}

int hc_http_head_parse(const char *buf, size_t len, struct hc_http_head *out)
{
	int r;

	memset(out, 0, sizeof(*out));
	r = head_parse(buf, len, out);
	if (r != HC_PARSE_OK)
		memset(out, 0, sizeof(*out));
	return r;
}

bool hc_http_method_idempotent(const char *method, size_t len)
{
	static const char *const methods[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"};

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (len == strlen(methods[i]) && memcmp(method, methods[i], len) == 0)
			return true;
	return false;
}

/* A field line (name through CRLF, colon at name + name_len) that flags
 * drop. */
static bool rewrite_drops(const char *line, size_t len, size_t name_len, unsigned flags)
{
	size_t v0 = name_len + 1, v1 = len - 2; /* the value, between ':' and CRLF */

	if ((flags & HC_REWRITE_FORWARDED) && is_forwarded_field(line, name_len))
		return true;
	if (!(flags & HC_REWRITE_CLOSE) || !equal_nocase(line, name_len, "connection"))
		return false;
	while (v0 < v1 && (line[v0] == ' ' || line[v0] == '\t'))
		v0++;
	while (v1 > v0 && (line[v1 - 1] == ' ' || line[v1 - 1] == '\t'))
		v1--;
	return equal_nocase(line + v0, v1 - v0, "close");
}

size_t hc_http_head_rewrite(const char *head, const struct hc_http_head *h, const char *extra,
			    size_t extra_len, unsigned flags, char *out, size_t cap)
{
	size_t pos = h->request_line_len, n = 0;

	if (h->request_line_len + extra_len > cap)
		return 0;
	memcpy(out, head, h->request_line_len);
	n = h->request_line_len;
	memcpy(out + n, extra, extra_len);
	n += extra_len;
	/* the head was checked: every line ends in CRLF, every field has ':' */
	while (pos + 2 < h->head_len) {
		const char *lf = memchr(head + pos, '\n', h->head_len - pos);
		size_t len = (size_t)(lf - (head + pos)) + 1;
		const char *colon = memchr(head + pos, ':', len);

		if (!colon || !rewrite_drops(head + pos, len, (size_t)(colon - (head + pos)), flags)) {
			if (n + len > cap)
				return 0;
			memcpy(out + n, head + pos, len);
			n += len;
		}
		pos += len;
	}
	if (n + 2 > cap)
		return 0;
	memcpy(out + n, "\r\n", 2);
	return n + 2;
}

/* ---- HTTP response head ---- */

/* "HTTP/1.D DDD" then " reason" or nothing; the reason is field-value text. */
static bool status_line(const char *s, size_t n, struct hc_http_response *out)
{
	unsigned code = 0;

	if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || !is_digit((unsigned char)s[7]) || s[8] != ' ')
		return false;
	for (size_t i = 9; i < 12; i++) {
		if (!is_digit((unsigned char)s[i]))
			return false;
		code = code * 10 + (unsigned)(s[i] - '0');
	}
	if (code < 100 || code > 599 || (n > 12 && s[12] != ' '))
		return false;
	for (size_t i = 13; i < n; i++)
		if (!is_value_char((unsigned char)s[i]))
			return false;
	out->status = code;
	out->http10 = s[7] == '0';
	return true;
}

/* Transfer-Encoding's last coding: what decides the framing (RFC 9112 6.3). */
static bool last_coding_chunked(const char *v, size_t n)
{
	size_t b = n, a;

	while (b > 0 && (v[b - 1] == ' ' || v[b - 1] == '\t' || v[b - 1] == ','))
		b--;
	a = b;
	while (a > 0 && v[a - 1] != ',')
		a--;
	while (a < b && (v[a] == ' ' || v[a] == '\t'))
		a++;
	return equal_nocase(v + a, b - a, "chunked");
}

static int response_field(const char *s, size_t n, struct hc_http_response *out, bool *te)
{
	size_t i = 0, name_len, v0, v1;

	while (i < n && is_tchar((unsigned char)s[i]))
		i++;
	if (i == 0 || i == n || s[i] != ':')
		return HC_PARSE_INVALID; /* obs-fold and whitespace before ':' too */
	name_len = i++;
	for (size_t k = i; k < n; k++)
		if (!is_value_char((unsigned char)s[k]))
			return HC_PARSE_INVALID;
	v0 = i;
	v1 = n;
	while (v0 < v1 && (s[v0] == ' ' || s[v0] == '\t'))
		v0++;
	while (v1 > v0 && (s[v1 - 1] == ' ' || s[v1 - 1] == '\t'))
		v1--;
	if (equal_nocase(s, name_len, "content-length")) {
		if (!content_length(s + v0, v1 - v0, &out->has_length, &out->content_length))
			return HC_PARSE_INVALID;
	} else if (equal_nocase(s, name_len, "connection")) {
		if (connection_has(s + v0, v1 - v0, "close"))
			out->close = true;
	} else if (equal_nocase(s, name_len, "transfer-encoding")) {
		/* several fields make one list: the last one's last coding counts */
		*te = true;
		out->chunked = last_coding_chunked(s + v0, v1 - v0);
	}
	return HC_PARSE_OK;
}

static int response_parse(const char *buf, size_t len, struct hc_http_response *out)
{
	size_t lim = len < HC_HTTP_RESPONSE_HEAD_MAX ? len : HC_HTTP_RESPONSE_HEAD_MAX;
	size_t pos = 0, end = 0;
	bool te = false;

	/* the whole head first: until its end has arrived the answer is MORE,
	 * which keeps every prefix's verdict the whole's */
	const char *e = lim ? memmem(buf, lim, "\r\n\r\n", 4) : NULL;

	if (e)
		end = (size_t)(e - buf) + 4;
	if (!end)
		return lim == HC_HTTP_RESPONSE_HEAD_MAX ? HC_PARSE_TOO_LARGE : HC_PARSE_MORE;
	while (pos < end - 2) {
		const char *lf = memchr(buf + pos, '\n', end - pos);
		size_t eol = (size_t)(lf - buf), n;
		int r;

		if (eol == pos || buf[eol - 1] != '\r')
			return HC_PARSE_INVALID; /* a bare LF */
		n = eol - 1 - pos;
		if (pos == 0)
			r = status_line(buf, n, out) ? HC_PARSE_OK : HC_PARSE_INVALID;
		else
			r = response_field(buf + pos, n, out, &te);
		if (r != HC_PARSE_OK)
			return r;
		pos = eol + 1;
	}
	if (pos == 0 || (te && out->has_length))
		return HC_PARSE_INVALID;
	out->until_close = te && !out->chunked;
	out->head_len = end;
	return HC_PARSE_OK;
}

int hc_http_response_parse(const char *buf, size_t len, struct hc_http_response *out)
{
	int r;

	memset(out, 0, sizeof(*out));
	r = response_parse(buf, len, out);
	if (r != HC_PARSE_OK)
		memset(out, 0, sizeof(*out));
	return r;
}

enum hc_http_body_kind hc_http_response_body(const struct hc_http_response *r, bool head_request,
					     uint64_t *length)
{
	/* RFC 9112 6.3, in its order */
	if (head_request || r->status < 200 || r->status == 204 || r->status == 304)
		return HC_BODY_NONE;
	if (r->chunked)
		return HC_BODY_CHUNKED;
	if (r->until_close || !r->has_length)
		return HC_BODY_CLOSE;
	*length = r->content_length;
	return r->content_length ? HC_BODY_LENGTH : HC_BODY_NONE;
}

/* ---- message bodies ---- */

enum chunk_state {
	CH_SIZE,	 /* the first hex digit of a chunk size */
	CH_SIZE_MORE,	 /* more digits, ';' or CR */
	CH_SIZE_WS,	 /* whitespace after the size: only ';' may follow */
	CH_EXT,		 /* an extension, up to CR */
	CH_SIZE_LF,	 /* the LF ending the size line */
	CH_DATA,	 /* left bytes of data */
	CH_DATA_CR,	 /* the CRLF after the data */
	CH_DATA_LF,
	CH_TRAILER,	 /* the start of a trailer line, or the final CR */
	CH_TRAILER_NAME, /* a trailer field's name, up to ':' */
	CH_TRAILER_VALUE,
	CH_TRAILER_LF,
	CH_END_LF, /* the LF of the final empty line */
};

void hc_http_body_init(struct hc_http_body *b, enum hc_http_body_kind kind, uint64_t length)
{
	memset(b, 0, sizeof(*b));
	b->kind = kind;
	b->left = kind == HC_BODY_LENGTH ? length : 0;
	if (kind == HC_BODY_LENGTH && length == 0)
		b->kind = HC_BODY_NONE;
}

static int hex_value(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	return is_hex(c) ? (to_lower(c) - 'a' + 10) : -1;
}

/* One byte of the trailer section (field lines, then the final CRLF, whose
 * CR moves to CH_END_LF); false if it cannot be there. */
static bool trailer_byte(struct hc_http_body *b, unsigned char c)
{
	if (++b->count > HC_HTTP_HEAD_MAX)
		return false;
	switch ((enum chunk_state)b->state) {
	case CH_TRAILER: /* a line's start: a field name, or the final CR */
		b->state = c == '\r' ? CH_END_LF : CH_TRAILER_NAME;
		return c == '\r' || is_tchar(c);
	case CH_TRAILER_NAME:
		if (c == ':')
			b->state = CH_TRAILER_VALUE;
		return c == ':' || is_tchar(c);
	case CH_TRAILER_VALUE:
		if (c == '\r')
			b->state = CH_TRAILER_LF;
		return c == '\r' || is_value_char(c);
	default: /* CH_TRAILER_LF */
		b->state = CH_TRAILER;
		return c == '\n';
	}
}

/* One step of the chunked coding over buf; see hc_http_body_feed. */
static int chunked_feed(struct hc_http_body *b, const char *buf, size_t len, size_t *used)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = (unsigned char)buf[i];

		switch ((enum chunk_state)b->state) {
		case CH_SIZE:
		case CH_SIZE_MORE:
			if (hex_value(c) >= 0) {
				/* 16 digits hold any size; more is an overflow */
				if (++b->count > 16)
					return HC_PARSE_INVALID;
				b->left = b->left << 4 | (uint64_t)hex_value(c);
				b->state = CH_SIZE_MORE;
			} else if (b->state == CH_SIZE) {
				return HC_PARSE_INVALID;
			} else if (c == ';') {
				b->state = CH_EXT;
				b->count = 0;
			} else if (c == ' ' || c == '\t') {
				b->state = CH_SIZE_WS;
			} else if (c == '\r') {
				b->state = CH_SIZE_LF;
			} else {
				return HC_PARSE_INVALID;
			}
			i++;
			break;
		case CH_SIZE_WS:
			if (c == ';') {
				b->state = CH_EXT;
				b->count = 0;
			} else if (c != ' ' && c != '\t') {
				return HC_PARSE_INVALID;
			}
			i++;
			break;
		case CH_EXT:
			if (c == '\r')
				b->state = CH_SIZE_LF;
			else if (!is_value_char(c) || ++b->count > HC_HTTP_CHUNK_EXT_MAX)
				return HC_PARSE_INVALID;
			i++;
			break;
		case CH_SIZE_LF:
			if (c != '\n')
				return HC_PARSE_INVALID;
			i++;
			b->count = 0;
			b->state = b->left ? CH_DATA : CH_TRAILER;
			break;
		case CH_DATA: {
			size_t k = len - i < b->left ? len - i : (size_t)b->left;

			i += k;
			b->left -= k;
			if (!b->left)
				b->state = CH_DATA_CR;
			break;
		}
		case CH_DATA_CR:
		case CH_DATA_LF:
			if (c != (b->state == CH_DATA_CR ? '\r' : '\n'))
				return HC_PARSE_INVALID;
			b->state = b->state == CH_DATA_CR ? CH_DATA_LF : CH_SIZE;
			b->count = 0;
			i++;
			break;
		case CH_TRAILER:
		case CH_TRAILER_NAME:
		case CH_TRAILER_VALUE:
		case CH_TRAILER_LF:
			if (!trailer_byte(b, c))
				return HC_PARSE_INVALID;
			i++;
			break;
		case CH_END_LF:
			if (c != '\n')
				return HC_PARSE_INVALID;
			*used = i + 1;
			hc_http_body_init(b, HC_BODY_NONE, 0);
			return HC_PARSE_OK;
		}
	}
	*used = len;
	return HC_PARSE_MORE;
}

int hc_http_body_feed(struct hc_http_body *b, const char *buf, size_t len, size_t *used)
{
	switch (b->kind) {
	case HC_BODY_NONE:
		*used = 0;
		return HC_PARSE_OK;
	case HC_BODY_LENGTH:
		if (len < b->left) {
			b->left -= len;
			*used = len;
			return HC_PARSE_MORE;
		}
		*used = (size_t)b->left;
		hc_http_body_init(b, HC_BODY_NONE, 0);
		return HC_PARSE_OK;
	case HC_BODY_CHUNKED:
		return chunked_feed(b, buf, len, used);
	case HC_BODY_CLOSE:
		break;
	}
	*used = len;
	return HC_PARSE_MORE;
}

/* ---- TLS ClientHello ---- */

#define TLS_RECORD_HEADER 5
#define TLS_RECORD_MAX 16384 /* RFC 8446 5.1: a plaintext fragment's bound */
#define TLS_CONTENT_HANDSHAKE 0x16
#define TLS_HANDSHAKE_HEADER 4
#define TLS_CLIENT_HELLO 1
#define TLS_EXT_SERVER_NAME 0
#define TLS_EXT_ALPN 16
#define TLS_SNI_HOST_NAME 0

/* A bounded reader: every length read is checked against what is left of
 * the structure enclosing it, and a vector becomes a reader of its own. */
struct rd {
	const uint8_t *p;
	size_t n;
};

static bool rd_u8(struct rd *r, unsigned *v)
{
	if (r->n < 1)
		return false;
	*v = r->p[0];
	r->p++;
	r->n--;
	return true;
}

static bool rd_u16(struct rd *r, unsigned *v)
{
	if (r->n < 2)
		return false;
	*v = (unsigned)r->p[0] << 8 | r->p[1];
	r->p += 2;
	r->n -= 2;
	return true;
}

static bool rd_take(struct rd *r, size_t n, struct rd *sub)
{
	if (r->n < n)
		return false;
	sub->p = r->p;
	sub->n = n;
	r->p += n;
	r->n -= n;
	return true;
}

/* A vector with a one- or two-byte length prefix. */
static bool rd_vec8(struct rd *r, struct rd *sub)
{
	unsigned n;

	return rd_u8(r, &n) && rd_take(r, n, sub);
}

static bool rd_vec16(struct rd *r, struct rd *sub)
{
	unsigned n;

	return rd_u16(r, &n) && rd_take(r, n, sub);
}

/* RFC 6066 3: ServerNameList, at least one entry; one host_name at most.
 * Entries of other types are skipped: their layout is the same opaque
 * vector in every implementation that ever sent one. */
static bool sni_parse(struct rd ext, struct hc_client_hello *out)
{
	struct rd list;
	bool seen = false;

	if (!rd_vec16(&ext, &list) || ext.n || list.n == 0)
		return false;
	while (list.n) {
		struct rd name;
		unsigned type;

		if (!rd_u8(&list, &type) || !rd_vec16(&list, &name))
			return false;
		if (type != TLS_SNI_HOST_NAME)
			continue;
		if (seen || !host_name_copy((const char *)name.p, name.n, out->sni))
			return false;
		seen = true;
	}
	return true;
}

/* RFC 7301 3.1: ProtocolNameList<2..2^16-1> of ProtocolName<1..2^8-1>. */
static bool alpn_parse(struct rd ext, struct hc_client_hello *out)
{
	struct rd list;

	if (!rd_vec16(&ext, &list) || ext.n || list.n == 0)
		return false;
	while (list.n) {
		struct rd proto;

		if (!rd_vec8(&list, &proto) || proto.n == 0)
			return false;
		if (proto.n == 8 && memcmp(proto.p, "http/1.1", 8) == 0)
			out->alpn_http11 = true;
	}
	return true;
}

/* The ClientHello body (RFC 8446 4.1.2, RFC 5246 7.4.1.2). */
static int hello_body_parse(const uint8_t *p, size_t n, struct hc_client_hello *out)
{
	struct rd b = { p, n }, skip, exts;
	bool seen_sni = false, seen_alpn = false;
	unsigned version;

	if (!rd_u16(&b, &version) || version >> 8 != 3 || !rd_take(&b, 32, &skip) /* random */)
		return HC_PARSE_INVALID;
	if (!rd_vec8(&b, &skip) || skip.n > 32) /* legacy_session_id */
		return HC_PARSE_INVALID;
	if (!rd_vec16(&b, &skip) || skip.n == 0 || skip.n % 2) /* cipher_suites */
		return HC_PARSE_INVALID;
	if (!rd_vec8(&b, &skip) || skip.n == 0) /* compression_methods */
		return HC_PARSE_INVALID;
	if (b.n == 0)
		return HC_PARSE_OK; /* no extensions: fine before TLS 1.3 */
	if (!rd_vec16(&b, &exts) || b.n)
		return HC_PARSE_INVALID;
	while (exts.n) {
		struct rd data;
		unsigned type;

		if (!rd_u16(&exts, &type) || !rd_vec16(&exts, &data))
			return HC_PARSE_INVALID;
		/* a second server_name or ALPN could make the backend see
		 * another name than the one we routed on */
		if (type == TLS_EXT_SERVER_NAME) {
			if (seen_sni || !sni_parse(data, out))
				return HC_PARSE_INVALID;
			seen_sni = true;
		} else if (type == TLS_EXT_ALPN) {
			if (seen_alpn || !alpn_parse(data, out))
				return HC_PARSE_INVALID;
			seen_alpn = true;
		}
	}
	return HC_PARSE_OK;
}

/*
 * Walks the records, joining the handshake bytes they carry into msg, until
 * the whole ClientHello is there. Every check is made as soon as the bytes
 * it needs have arrived, in the same order whatever len is, which keeps a
 * prefix's verdict the whole's.
 */
static int hello_parse(const uint8_t *buf, size_t len, struct hc_client_hello *out)
{
	uint8_t msg[HC_TLS_HELLO_MAX];
	/* as for HTTP heads, nothing past the bound is looked at, and running
	 * out of bytes at the bound is the end of waiting */
	size_t lim = len < HC_TLS_INPUT_MAX ? len : HC_TLS_INPUT_MAX;
	int more = lim == HC_TLS_INPUT_MAX ? HC_PARSE_TOO_LARGE : HC_PARSE_MORE;
	size_t pos = 0, have = 0, need = 0; /* need: the message's size, 0 until known */

	for (;;) {
		size_t avail = lim - pos, rlen, take, at = have;

		if (avail >= 1 && buf[pos] != TLS_CONTENT_HANDSHAKE)
			return HC_PARSE_INVALID; /* also: another type between fragments */
		if (avail >= 2 && buf[pos + 1] != 0x03)
			return HC_PARSE_INVALID;
		if (avail >= 3 && buf[pos + 2] > 0x0f)
			return HC_PARSE_INVALID;
		if (avail < TLS_RECORD_HEADER)
			return more;
		rlen = (size_t)buf[pos + 3] << 8 | buf[pos + 4];
		/* RFC 8446 5.1: no empty handshake fragments, none over 2^14 */
		if (rlen == 0 || rlen > TLS_RECORD_MAX)
			return HC_PARSE_INVALID;
		if (pos + TLS_RECORD_HEADER + rlen > HC_TLS_INPUT_MAX)
			return HC_PARSE_TOO_LARGE;
		take = avail - TLS_RECORD_HEADER < rlen ? avail - TLS_RECORD_HEADER : rlen;
		/* until the size is known (have < 4), a record may bring more
		 * than msg holds; bytes past need are refused just below */
		if (take > HC_TLS_HELLO_MAX - at)
			take = HC_TLS_HELLO_MAX - at;
		memcpy(msg + at, buf + pos + TLS_RECORD_HEADER, take);
		have = at + take;
		if (have >= 1 && msg[0] != TLS_CLIENT_HELLO)
			return HC_PARSE_INVALID;
		if (!need && have >= TLS_HANDSHAKE_HEADER) {
			need = TLS_HANDSHAKE_HEADER +
			       ((size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3]);
			if (need > HC_TLS_HELLO_MAX)
				return HC_PARSE_TOO_LARGE;
		}
		/* a record holding bytes past the ClientHello: another message
		 * the backend would read and we would not */
		if (need && at + rlen > need)
			return HC_PARSE_INVALID;
		if (take < rlen)
			return more; /* the record is still arriving */
		pos += TLS_RECORD_HEADER + rlen;
		if (need && have == need)
			break;
	}
	out->consumed = pos;
	return hello_body_parse(msg + TLS_HANDSHAKE_HEADER, need - TLS_HANDSHAKE_HEADER, out);
}

bool hc_tls_looks_like(const uint8_t *buf, size_t len)
{
	return len >= 1 && buf[0] == TLS_CONTENT_HANDSHAKE && (len < 2 || buf[1] == 0x03);
}

int hc_tls_client_hello_parse(const uint8_t *buf, size_t len, struct hc_client_hello *out)
{
	int r;

	memset(out, 0, sizeof(*out));
	r = hello_parse(buf, len, out);
	if (r != HC_PARSE_OK)
		memset(out, 0, sizeof(*out));
	return r;
}

/* ---- escaping ---- */

static bool is_inert(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || is_digit(c) || c == '.' || c == '-' || c == '_' ||
	       c == ':' || c == '[' || c == ']';
}

size_t hc_html_escape_host(const char *host, char *dst, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	if (cap == 0)
		return 0;
	for (const unsigned char *s = (const unsigned char *)host; *s; s++) {
		if (is_inert(*s)) {
			if (cap - n < 2)
				break;
			dst[n++] = (char)*s;
		} else {
			if (cap - n < 4)
				break;
			dst[n++] = '%';
			dst[n++] = hex[*s >> 4];
			dst[n++] = hex[*s & 0xf];
		}
	}
	dst[n] = '\0';
	return n;
}
