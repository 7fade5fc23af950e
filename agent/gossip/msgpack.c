/* Bounded msgpack reader and go-msgpack 0.5.5 compatible writer for the gossip codec. */
#include "gossip/msgpack_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* What one msgpack header announces. Strings, bin and ext carry their payload
 * (already bounds-checked); arrays and maps only their element count. */
enum mp_kind { MP_NIL, MP_BOOL, MP_UINT, MP_NEG, MP_FLOAT, MP_STR, MP_BIN, MP_EXT, MP_ARRAY, MP_MAP };

struct mp_head {
	enum mp_kind kind;
	uint64_t u;  /* BOOL, UINT; NEG holds the value in i */
	int64_t i;
	double f;
	uint32_t len; /* STR, BIN, EXT payload length; ARRAY, MAP element count */
	const uint8_t *data;
};

void hc_gossip_mp_reader_init(struct hc_gossip_mp_reader *r, const void *buf, size_t len)
{
	r->buf = buf;
	r->len = len;
	r->pos = 0;
	r->depth = 0;
}

size_t hc_gossip_mp_remaining(const struct hc_gossip_mp_reader *r)
{
	return r->len - r->pos;
}

static int take(struct hc_gossip_mp_reader *r, size_t n, const uint8_t **p)
{
	if (n > hc_gossip_mp_remaining(r))
		return -ENODATA;
	*p = r->buf + r->pos;
	r->pos += n;
	return 0;
}

static uint64_t be(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* Reads an n-byte big-endian length or value that follows the type byte. */
static int take_be(struct hc_gossip_mp_reader *r, size_t n, uint64_t *v)
{
	const uint8_t *p;
	int err = take(r, n, &p);

	if (err)
		return err;
	*v = be(p, n);
	return 0;
}

static int take_payload(struct hc_gossip_mp_reader *r, struct mp_head *h, enum mp_kind kind,
			uint64_t len)
{
	h->kind = kind;
	h->len = (uint32_t)len;
	return take(r, len, &h->data);
}

/* A container count must be coverable by the remaining input (at least one
 * byte per element), so a forged count can never drive an allocation. */
static int container(struct hc_gossip_mp_reader *r, struct mp_head *h, enum mp_kind kind,
		     uint64_t n)
{
	uint64_t min_bytes = kind == MP_MAP ? 2 * n : n;

	if (min_bytes > hc_gossip_mp_remaining(r))
		return -ENODATA;
	h->kind = kind;
	h->len = (uint32_t)n;
	return 0;
}

static double float_from_bits(uint64_t bits, bool single)
{
	if (single) {
		uint32_t b32 = (uint32_t)bits;
		float f;

		memcpy(&f, &b32, sizeof(f));
		return f;
	} else {
		double d;

		memcpy(&d, &bits, sizeof(d));
		return d;
	}
}

/* Sized formats c4..df: the low bits pick the width of what follows. */
static int read_sized(struct hc_gossip_mp_reader *r, uint8_t b, struct mp_head *h)
{
	static const uint8_t width[] = {
		[0xc4 - 0xc4] = 1, 2, 4,   /* bin */
		1, 2, 4,                   /* ext (+ type byte) */
		4, 8,                      /* float32/64 */
		1, 2, 4, 8,                /* uint */
		1, 2, 4, 8,                /* int */
		1, 2, 4, 8, 16,            /* fixext: payload size */
		1, 2, 4,                   /* str */
		2, 4, 2, 4,                /* array, map */
	};
	uint64_t v = 0;
	int err;

	if (b >= 0xd4 && b <= 0xd8) /* fixext: type byte + fixed payload */
		return take_payload(r, h, MP_EXT, 1u + width[b - 0xc4]);
	err = take_be(r, width[b - 0xc4], &v);
	if (err)
		return err;
	switch (b) {
	case 0xc4: case 0xc5: case 0xc6:
		return take_payload(r, h, MP_BIN, v);
	case 0xc7: case 0xc8: case 0xc9:
		return take_payload(r, h, MP_EXT, v + 1);
	case 0xca: case 0xcb:
		h->kind = MP_FLOAT;
		h->f = float_from_bits(v, b == 0xca);
		return 0;
	case 0xcc: case 0xcd: case 0xce: case 0xcf:
		h->kind = MP_UINT;
		h->u = v;
		return 0;
	case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
		unsigned shift = 64 - 8 * width[b - 0xc4];

		/* Sign-extend through the unsigned shift to avoid UB. */
		h->i = (int64_t)(v << shift) >> shift;
		h->kind = h->i < 0 ? MP_NEG : MP_UINT;
		h->u = (uint64_t)h->i;
		return 0;
	}
	case 0xd9: case 0xda: case 0xdb:
		return take_payload(r, h, MP_STR, v);
	case 0xdc: case 0xdd:
		return container(r, h, MP_ARRAY, v);
	default: /* 0xde, 0xdf */
		return container(r, h, MP_MAP, v);
	}
}

static int read_head(struct hc_gossip_mp_reader *r, struct mp_head *h)
{
	const uint8_t *p;
	uint8_t b;
	int err = take(r, 1, &p);

	if (err)
		return err;
	b = *p;
	memset(h, 0, sizeof(*h));
	if (b <= 0x7f) {
		h->kind = MP_UINT;
		h->u = b;
		return 0;
	}
	if (b >= 0xe0) {
		h->kind = MP_NEG;
		h->i = (int8_t)b;
		return 0;
	}
	if (b <= 0x8f)
		return container(r, h, MP_MAP, b & 0x0f);
	if (b <= 0x9f)
		return container(r, h, MP_ARRAY, b & 0x0f);
	if (b <= 0xbf)
		return take_payload(r, h, MP_STR, b & 0x1f);
	if (b == 0xc0)
		return 0; /* MP_NIL */
	if (b == 0xc1)
		return -EBADMSG; /* never used */
	if (b == 0xc2 || b == 0xc3) {
		h->kind = MP_BOOL;
		h->u = b == 0xc3;
		return 0;
	}
	return read_sized(r, b, h);
}

int hc_gossip_mp_read_uint(struct hc_gossip_mp_reader *r, uint64_t max, uint64_t *out)
{
	struct mp_head h;
	int err = read_head(r, &h);

	if (err)
		return err;
	if (h.kind != MP_UINT && h.kind != MP_NIL)
		return -EBADMSG;
	if (h.u > max)
		return -EBADMSG;
	*out = h.u;
	return 0;
}

int hc_gossip_mp_read_int(struct hc_gossip_mp_reader *r, int64_t *out)
{
	struct mp_head h;
	int err = read_head(r, &h);

	if (err)
		return err;
	if (h.kind == MP_NEG) {
		*out = h.i;
		return 0;
	}
	if ((h.kind != MP_UINT && h.kind != MP_NIL) || h.u > INT64_MAX)
		return -EBADMSG;
	*out = (int64_t)h.u;
	return 0;
}

int hc_gossip_mp_read_bool(struct hc_gossip_mp_reader *r, bool *out)
{
	struct mp_head h;
	int err = read_head(r, &h);

	if (err)
		return err;
	/* go-msgpack also takes fixints 0 and 1 as bools. */
	if ((h.kind != MP_BOOL && h.kind != MP_UINT && h.kind != MP_NIL) || h.u > 1)
		return -EBADMSG;
	*out = h.u == 1;
	return 0;
}

int hc_gossip_mp_read_float(struct hc_gossip_mp_reader *r, double *out)
{
	struct mp_head h;
	int err = read_head(r, &h);

	if (err)
		return err;
	switch (h.kind) {
	case MP_FLOAT:
		*out = h.f;
		return 0;
	case MP_UINT:
	case MP_NIL:
		*out = (double)h.u;
		return 0;
	case MP_NEG:
		*out = (double)h.i;
		return 0;
	default:
		return -EBADMSG;
	}
}

static int read_byte_string(struct hc_gossip_mp_reader *r, bool allow_bin,
			    struct hc_gossip_bytes *out)
{
	struct mp_head h;
	int err = read_head(r, &h);

	if (err)
		return err;
	if (h.kind == MP_NIL) {
		*out = (struct hc_gossip_bytes){ NULL, 0 };
		return 0;
	}
	if (h.kind != MP_STR && !(allow_bin && h.kind == MP_BIN))
		return -EBADMSG;
	*out = (struct hc_gossip_bytes){ h.data, h.len };
	return 0;
}

int hc_gossip_mp_read_bytes(struct hc_gossip_mp_reader *r, struct hc_gossip_bytes *out)
{
	return read_byte_string(r, true, out);
}

int hc_gossip_mp_read_str(struct hc_gossip_mp_reader *r, struct hc_gossip_bytes *out)
{
	return read_byte_string(r, false, out);
}

static int read_container(struct hc_gossip_mp_reader *r, enum mp_kind kind, uint32_t *count,
			  bool *is_nil)
{
	struct mp_head h;
	int err = read_head(r, &h);

	if (err)
		return err;
	if (h.kind != kind && h.kind != MP_NIL)
		return -EBADMSG;
	*count = h.len;
	if (is_nil)
		*is_nil = h.kind == MP_NIL;
	return 0;
}

int hc_gossip_mp_read_map(struct hc_gossip_mp_reader *r, uint32_t *count, bool *is_nil)
{
	return read_container(r, MP_MAP, count, is_nil);
}

int hc_gossip_mp_read_array(struct hc_gossip_mp_reader *r, uint32_t *count, bool *is_nil)
{
	return read_container(r, MP_ARRAY, count, is_nil);
}

int hc_gossip_mp_enter(struct hc_gossip_mp_reader *r)
{
	if (r->depth >= HC_GOSSIP_MP_MAX_DEPTH)
		return -ELOOP;
	r->depth++;
	return 0;
}

void hc_gossip_mp_leave(struct hc_gossip_mp_reader *r)
{
	r->depth--;
}

int hc_gossip_mp_skip(struct hc_gossip_mp_reader *r)
{
	/* Values still to skip at each open level; iterative so that hostile
	 * nesting costs neither stack nor more than the depth bound. */
	uint64_t todo[HC_GOSSIP_MP_MAX_DEPTH + 1];
	unsigned level = 0;

	todo[0] = 1;
	for (;;) {
		struct mp_head h;
		uint64_t n;
		int err;

		if (todo[level] == 0) {
			if (level == 0)
				return 0;
			level--;
			continue;
		}
		todo[level]--;
		err = read_head(r, &h);
		if (err)
			return err;
		if (h.kind != MP_ARRAY && h.kind != MP_MAP)
			continue;
		n = h.kind == MP_MAP ? 2 * (uint64_t)h.len : h.len;
		if (n == 0)
			continue;
		if (r->depth + level + 1 > HC_GOSSIP_MP_MAX_DEPTH)
			return -ELOOP;
		todo[++level] = n;
	}
}

bool hc_gossip_mp_peek_nil(const struct hc_gossip_mp_reader *r)
{
	return hc_gossip_mp_remaining(r) > 0 && r->buf[r->pos] == 0xc0;
}

void hc_gossip_mp_writer_init(struct hc_gossip_mp_writer *w, size_t max)
{
	memset(w, 0, sizeof(*w));
	w->max = max;
}

void hc_gossip_mp_writer_fini(struct hc_gossip_mp_writer *w)
{
	free(w->buf);
	w->buf = NULL;
	w->len = w->cap = 0;
}

int hc_gossip_mp_writer_error(const struct hc_gossip_mp_writer *w)
{
	return w->err;
}

uint8_t *hc_gossip_mp_writer_steal(struct hc_gossip_mp_writer *w, size_t *len)
{
	uint8_t *buf = w->buf;

	*len = w->len;
	w->buf = NULL;
	w->len = w->cap = 0;
	return buf;
}

static bool reserve(struct hc_gossip_mp_writer *w, size_t n)
{
	size_t cap;
	uint8_t *buf;

	if (w->err)
		return false;
	if (n > SIZE_MAX - w->len || (w->max && w->len + n > w->max)) {
		w->err = -EMSGSIZE;
		return false;
	}
	if (w->len + n <= w->cap)
		return true;
	cap = w->cap ? w->cap : 256;
	while (cap < w->len + n)
		cap = cap > SIZE_MAX / 2 ? w->len + n : cap * 2;
	buf = realloc(w->buf, cap);
	if (!buf) {
		w->err = -ENOMEM;
		return false;
	}
	w->buf = buf;
	w->cap = cap;
	return true;
}

void hc_gossip_mp_write_raw(struct hc_gossip_mp_writer *w, const void *p, size_t n)
{
	if (n == 0 || !reserve(w, n))
		return;
	memcpy(w->buf + w->len, p, n);
	w->len += n;
}

void hc_gossip_mp_write_u8(struct hc_gossip_mp_writer *w, uint8_t b)
{
	hc_gossip_mp_write_raw(w, &b, 1);
}

/* Type byte followed by v as an n-byte big-endian number. */
static void write_tagged(struct hc_gossip_mp_writer *w, uint8_t tag, uint64_t v, size_t n)
{
	uint8_t b[9];

	b[0] = tag;
	for (size_t i = 0; i < n; i++)
		b[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	hc_gossip_mp_write_raw(w, b, 1 + n);
}

void hc_gossip_mp_write_nil(struct hc_gossip_mp_writer *w)
{
	hc_gossip_mp_write_u8(w, 0xc0);
}

void hc_gossip_mp_write_bool(struct hc_gossip_mp_writer *w, bool v)
{
	hc_gossip_mp_write_u8(w, v ? 0xc3 : 0xc2);
}

void hc_gossip_mp_write_uint(struct hc_gossip_mp_writer *w, uint64_t v)
{
	if (v <= 0x7f)
		hc_gossip_mp_write_u8(w, (uint8_t)v);
	else if (v <= UINT8_MAX)
		write_tagged(w, 0xcc, v, 1);
	else if (v <= UINT16_MAX)
		write_tagged(w, 0xcd, v, 2);
	else if (v <= UINT32_MAX)
		write_tagged(w, 0xce, v, 4);
	else
		write_tagged(w, 0xcf, v, 8);
}

void hc_gossip_mp_write_int(struct hc_gossip_mp_writer *w, int64_t v)
{
	/* go-msgpack writes non-negative signed values in the unsigned forms. */
	if (v >= 0)
		hc_gossip_mp_write_uint(w, (uint64_t)v);
	else if (v >= -32)
		hc_gossip_mp_write_u8(w, (uint8_t)v);
	else if (v >= INT8_MIN)
		write_tagged(w, 0xd0, (uint64_t)v, 1);
	else if (v >= INT16_MIN)
		write_tagged(w, 0xd1, (uint64_t)v, 2);
	else if (v >= INT32_MIN)
		write_tagged(w, 0xd2, (uint64_t)v, 4);
	else
		write_tagged(w, 0xd3, (uint64_t)v, 8);
}

void hc_gossip_mp_write_float(struct hc_gossip_mp_writer *w, double v)
{
	uint64_t bits;

	memcpy(&bits, &v, sizeof(bits));
	write_tagged(w, 0xcb, bits, 8);
}

static void write_str_header(struct hc_gossip_mp_writer *w, size_t len)
{
	/* go-msgpack 0.5.5 predates str8: 32..65535 bytes take str16. */
	if (len < 32)
		hc_gossip_mp_write_u8(w, (uint8_t)(0xa0 | len));
	else if (len <= UINT16_MAX)
		write_tagged(w, 0xda, len, 2);
	else if (len <= UINT32_MAX)
		write_tagged(w, 0xdb, len, 4);
	else if (!w->err)
		w->err = -EMSGSIZE;
}

void hc_gossip_mp_write_bytes(struct hc_gossip_mp_writer *w, struct hc_gossip_bytes b)
{
	if (!b.ptr) {
		hc_gossip_mp_write_nil(w);
		return;
	}
	write_str_header(w, b.len);
	hc_gossip_mp_write_raw(w, b.ptr, b.len);
}

void hc_gossip_mp_write_cstr(struct hc_gossip_mp_writer *w, const char *s)
{
	hc_gossip_mp_write_bytes(w, hc_gossip_bytes_str(s));
}

static void write_container(struct hc_gossip_mp_writer *w, uint8_t fix, uint8_t tag16,
			    uint32_t n)
{
	if (n < 16)
		hc_gossip_mp_write_u8(w, (uint8_t)(fix | n));
	else if (n <= UINT16_MAX)
		write_tagged(w, tag16, n, 2);
	else
		write_tagged(w, (uint8_t)(tag16 + 1), n, 4);
}

void hc_gossip_mp_write_map(struct hc_gossip_mp_writer *w, uint32_t n)
{
	write_container(w, 0x80, 0xde, n);
}

void hc_gossip_mp_write_array(struct hc_gossip_mp_writer *w, uint32_t n)
{
	write_container(w, 0x90, 0xdc, n);
}

struct hc_gossip_bytes hc_gossip_bytes_str(const char *s)
{
	return (struct hc_gossip_bytes){ (const uint8_t *)s, strlen(s) };
}

bool hc_gossip_bytes_eq(struct hc_gossip_bytes a, struct hc_gossip_bytes b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static const struct hc_gossip_field *find_field(const struct hc_gossip_field *f, size_t n,
						 struct hc_gossip_bytes key)
{
	for (size_t i = 0; i < n; i++)
		if (hc_gossip_bytes_eq(hc_gossip_bytes_str(f[i].name), key))
			return &f[i];
	return NULL;
}

static int read_uint_into(struct hc_gossip_mp_reader *r, void *dst, size_t size)
{
	uint64_t max = size == 8 ? UINT64_MAX : (UINT64_C(1) << (8 * size)) - 1;
	uint64_t v;
	int err = hc_gossip_mp_read_uint(r, max, &v);

	if (err)
		return err;
	switch (size) {
	case 1: *(uint8_t *)dst = (uint8_t)v; break;
	case 2: *(uint16_t *)dst = (uint16_t)v; break;
	case 4: *(uint32_t *)dst = (uint32_t)v; break;
	default: *(uint64_t *)dst = v; break;
	}
	return 0;
}

static int read_field(struct hc_gossip_mp_reader *r, const struct hc_gossip_field *f, void *obj)
{
	void *dst = (char *)obj + f->offset;

	switch (f->kind) {
	case HC_GOSSIP_F_BOOL: return hc_gossip_mp_read_bool(r, dst);
	case HC_GOSSIP_F_U8: return read_uint_into(r, dst, 1);
	case HC_GOSSIP_F_U16: return read_uint_into(r, dst, 2);
	case HC_GOSSIP_F_U32: return read_uint_into(r, dst, 4);
	case HC_GOSSIP_F_U64: return read_uint_into(r, dst, 8);
	case HC_GOSSIP_F_I64: return hc_gossip_mp_read_int(r, dst);
	case HC_GOSSIP_F_F64: return hc_gossip_mp_read_float(r, dst);
	case HC_GOSSIP_F_BYTES: return hc_gossip_mp_read_bytes(r, dst);
	case HC_GOSSIP_F_STR: return hc_gossip_mp_read_str(r, dst);
	case HC_GOSSIP_F_CUSTOM: return f->read(r, obj);
	}
	return -EINVAL;
}

int hc_gossip_mp_read_struct(struct hc_gossip_mp_reader *r, const struct hc_gossip_field *f,
			     size_t n, void *obj)
{
	uint32_t count;
	int err = hc_gossip_mp_read_map(r, &count, NULL);

	if (err)
		return err;
	err = hc_gossip_mp_enter(r);
	if (err)
		return err;
	for (uint32_t i = 0; i < count && !err; i++) {
		struct hc_gossip_bytes key;
		const struct hc_gossip_field *field;

		err = hc_gossip_mp_read_str(r, &key);
		if (err)
			break;
		field = find_field(f, n, key);
		err = field ? read_field(r, field, obj) : hc_gossip_mp_skip(r);
	}
	hc_gossip_mp_leave(r);
	return err;
}

static bool field_is_empty(const struct hc_gossip_field *f, const void *obj)
{
	const void *src = (const char *)obj + f->offset;

	switch (f->kind) {
	case HC_GOSSIP_F_BOOL: return !*(const bool *)src;
	case HC_GOSSIP_F_U8: return !*(const uint8_t *)src;
	case HC_GOSSIP_F_U16: return !*(const uint16_t *)src;
	case HC_GOSSIP_F_U32: return !*(const uint32_t *)src;
	case HC_GOSSIP_F_U64: return !*(const uint64_t *)src;
	case HC_GOSSIP_F_I64: return !*(const int64_t *)src;
	case HC_GOSSIP_F_F64: return *(const double *)src == 0;
	case HC_GOSSIP_F_BYTES:
	case HC_GOSSIP_F_STR: return ((const struct hc_gossip_bytes *)src)->len == 0;
	case HC_GOSSIP_F_CUSTOM: return false;
	}
	return false;
}

static void write_field(struct hc_gossip_mp_writer *w, const struct hc_gossip_field *f,
			const void *obj)
{
	const void *src = (const char *)obj + f->offset;

	switch (f->kind) {
	case HC_GOSSIP_F_BOOL: hc_gossip_mp_write_bool(w, *(const bool *)src); break;
	case HC_GOSSIP_F_U8: hc_gossip_mp_write_uint(w, *(const uint8_t *)src); break;
	case HC_GOSSIP_F_U16: hc_gossip_mp_write_uint(w, *(const uint16_t *)src); break;
	case HC_GOSSIP_F_U32: hc_gossip_mp_write_uint(w, *(const uint32_t *)src); break;
	case HC_GOSSIP_F_U64: hc_gossip_mp_write_uint(w, *(const uint64_t *)src); break;
	case HC_GOSSIP_F_I64: hc_gossip_mp_write_int(w, *(const int64_t *)src); break;
	case HC_GOSSIP_F_F64: hc_gossip_mp_write_float(w, *(const double *)src); break;
	case HC_GOSSIP_F_BYTES:
	case HC_GOSSIP_F_STR:
		/* A Go string is never nil: "" where a []byte would be nil. */
		if (f->kind == HC_GOSSIP_F_STR && !((const struct hc_gossip_bytes *)src)->ptr)
			hc_gossip_mp_write_cstr(w, "");
		else
			hc_gossip_mp_write_bytes(w, *(const struct hc_gossip_bytes *)src);
		break;
	case HC_GOSSIP_F_CUSTOM: f->write(w, obj); break;
	}
}

void hc_gossip_mp_write_struct(struct hc_gossip_mp_writer *w, const struct hc_gossip_field *f,
			       size_t n, const void *obj)
{
	uint32_t count = 0;

	for (size_t i = 0; i < n; i++)
		count += !(f[i].omitempty && field_is_empty(&f[i], obj));
	hc_gossip_mp_write_map(w, count);
	for (size_t i = 0; i < n; i++) {
		if (f[i].omitempty && field_is_empty(&f[i], obj))
			continue;
		hc_gossip_mp_write_cstr(w, f[i].name);
		write_field(w, &f[i], obj);
	}
}
