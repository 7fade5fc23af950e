/* memberlist 0.2.2 messages: structs, compound, hasCrc, compress and push/pull framing. */
#include "gossip/lzw_int.h"
#include "gossip/wire_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define FIELD(type, member, kind_, name_) \
	{ .name = name_, .kind = HC_GOSSIP_F_##kind_, .offset = offsetof(type, member) }
#define FIELD_OMITEMPTY(type, member, kind_, name_)                                         \
	{ .name = name_, .kind = HC_GOSSIP_F_##kind_, .offset = offsetof(type, member), \
	  .omitempty = true }
#define NFIELDS(a) (sizeof(a) / sizeof((a)[0]))

/* Field tables in go-msgpack's emitted order (sorted by Go field name). */
static const struct hc_gossip_field ping_fields[] = {
	FIELD(struct hc_gossip_ping, node, STR, "Node"),
	FIELD(struct hc_gossip_ping, seq_no, U32, "SeqNo"),
	FIELD_OMITEMPTY(struct hc_gossip_ping, source_addr, BYTES, "SourceAddr"),
	FIELD_OMITEMPTY(struct hc_gossip_ping, source_node, STR, "SourceNode"),
	FIELD_OMITEMPTY(struct hc_gossip_ping, source_port, U16, "SourcePort"),
};

static const struct hc_gossip_field indirect_ping_fields[] = {
	FIELD(struct hc_gossip_indirect_ping, nack, BOOL, "Nack"),
	FIELD(struct hc_gossip_indirect_ping, node, STR, "Node"),
	FIELD(struct hc_gossip_indirect_ping, port, U16, "Port"),
	FIELD(struct hc_gossip_indirect_ping, seq_no, U32, "SeqNo"),
	FIELD_OMITEMPTY(struct hc_gossip_indirect_ping, source_addr, BYTES, "SourceAddr"),
	FIELD_OMITEMPTY(struct hc_gossip_indirect_ping, source_node, STR, "SourceNode"),
	FIELD_OMITEMPTY(struct hc_gossip_indirect_ping, source_port, U16, "SourcePort"),
	FIELD(struct hc_gossip_indirect_ping, target, BYTES, "Target"),
};

static const struct hc_gossip_field ack_fields[] = {
	FIELD(struct hc_gossip_ack, payload, BYTES, "Payload"),
	FIELD(struct hc_gossip_ack, seq_no, U32, "SeqNo"),
};

static const struct hc_gossip_field nack_fields[] = {
	FIELD(struct hc_gossip_nack, seq_no, U32, "SeqNo"),
};

static const struct hc_gossip_field suspect_fields[] = {
	FIELD(struct hc_gossip_suspect, from, STR, "From"),
	FIELD(struct hc_gossip_suspect, incarnation, U32, "Incarnation"),
	FIELD(struct hc_gossip_suspect, node, STR, "Node"),
};

static const struct hc_gossip_field alive_fields[] = {
	FIELD(struct hc_gossip_alive, addr, BYTES, "Addr"),
	FIELD(struct hc_gossip_alive, incarnation, U32, "Incarnation"),
	FIELD(struct hc_gossip_alive, meta, BYTES, "Meta"),
	FIELD(struct hc_gossip_alive, node, STR, "Node"),
	FIELD(struct hc_gossip_alive, port, U16, "Port"),
	FIELD(struct hc_gossip_alive, vsn, BYTES, "Vsn"),
};

static const struct hc_gossip_field err_fields[] = {
	FIELD(struct hc_gossip_err, error, STR, "Error"),
};

struct msg_layout {
	const struct hc_gossip_field *fields;
	size_t n;
};

/* The msgpack body of each plain message type; wrappers have none. */
static int layout_of(enum hc_gossip_msg_type type, struct msg_layout *l)
{
	switch (type) {
	case HC_GOSSIP_MSG_PING: *l = (struct msg_layout){ ping_fields, NFIELDS(ping_fields) }; break;
	case HC_GOSSIP_MSG_INDIRECT_PING:
		*l = (struct msg_layout){ indirect_ping_fields, NFIELDS(indirect_ping_fields) };
		break;
	case HC_GOSSIP_MSG_ACK: *l = (struct msg_layout){ ack_fields, NFIELDS(ack_fields) }; break;
	case HC_GOSSIP_MSG_NACK: *l = (struct msg_layout){ nack_fields, NFIELDS(nack_fields) }; break;
	case HC_GOSSIP_MSG_SUSPECT:
	case HC_GOSSIP_MSG_DEAD:
		*l = (struct msg_layout){ suspect_fields, NFIELDS(suspect_fields) };
		break;
	case HC_GOSSIP_MSG_ALIVE: *l = (struct msg_layout){ alive_fields, NFIELDS(alive_fields) }; break;
	case HC_GOSSIP_MSG_ERR: *l = (struct msg_layout){ err_fields, NFIELDS(err_fields) }; break;
	default: return -ENOMSG;
	}
	return 0;
}

int hc_gossip_msg_decode(const uint8_t *buf, size_t len, struct hc_gossip_msg *m)
{
	struct hc_gossip_mp_reader r;
	struct msg_layout l;
	int err;

	if (len < 1)
		return -ENODATA;
	memset(m, 0, sizeof(*m));
	m->type = buf[0];
	if (m->type == HC_GOSSIP_MSG_USER) {
		m->u.user = (struct hc_gossip_bytes){ buf + 1, len - 1 };
		return 0;
	}
	err = layout_of(m->type, &l);
	if (err)
		return err;
	hc_gossip_mp_reader_init(&r, buf + 1, len - 1);
	return hc_gossip_mp_read_struct(&r, l.fields, l.n, &m->u);
}

int hc_gossip_msg_encode(const struct hc_gossip_msg *m, struct hc_gossip_mp_writer *w)
{
	struct msg_layout l;
	int err;

	hc_gossip_mp_write_u8(w, (uint8_t)m->type);
	if (m->type == HC_GOSSIP_MSG_USER) {
		hc_gossip_mp_write_raw(w, m->u.user.ptr, m->u.user.len);
		return hc_gossip_mp_writer_error(w);
	}
	err = layout_of(m->type, &l);
	if (err)
		return err;
	hc_gossip_mp_write_struct(w, l.fields, l.n, &m->u);
	return hc_gossip_mp_writer_error(w);
}

int hc_gossip_compound_split(const uint8_t *buf, size_t len,
			     struct hc_gossip_bytes parts[HC_GOSSIP_COMPOUND_MAX], size_t *n)
{
	size_t count, off;

	*n = 0;
	if (len < 2 || buf[0] != HC_GOSSIP_MSG_COMPOUND)
		return len < 2 ? -ENODATA : -EINVAL;
	count = buf[1];
	off = 2 + 2 * count;
	if (off > len)
		return -ENODATA; /* Go drops the whole compound then */
	for (size_t i = 0; i < count; i++) {
		size_t part = (size_t)buf[2 + 2 * i] << 8 | buf[3 + 2 * i];

		if (part > len - off)
			return -ENODATA;
		parts[(*n)++] = (struct hc_gossip_bytes){ buf + off, part };
		off += part;
	}
	return 0;
}

int hc_gossip_compound_encode(const struct hc_gossip_bytes *parts, size_t n,
			      struct hc_gossip_mp_writer *w)
{
	if (n < 1 || n > HC_GOSSIP_COMPOUND_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (parts[i].len > UINT16_MAX)
			return -EMSGSIZE;
	hc_gossip_mp_write_u8(w, HC_GOSSIP_MSG_COMPOUND);
	hc_gossip_mp_write_u8(w, (uint8_t)n);
	for (size_t i = 0; i < n; i++) {
		hc_gossip_mp_write_u8(w, (uint8_t)(parts[i].len >> 8));
		hc_gossip_mp_write_u8(w, (uint8_t)parts[i].len);
	}
	for (size_t i = 0; i < n; i++)
		hc_gossip_mp_write_raw(w, parts[i].ptr, parts[i].len);
	return hc_gossip_mp_writer_error(w);
}

static uint32_t crc32_of(const uint8_t *p, size_t len)
{
	uLong crc = crc32(0L, Z_NULL, 0);

	/* zlib takes uInt lengths; feed large buffers in pieces. */
	while (len > 0) {
		uInt chunk = len > UINT32_MAX ? UINT32_MAX : (uInt)len;

		crc = crc32(crc, p, chunk);
		p += chunk;
		len -= chunk;
	}
	return (uint32_t)crc;
}

int hc_gossip_crc_unwrap(const uint8_t *buf, size_t len, struct hc_gossip_bytes *inner)
{
	uint32_t want;

	if (len < 5)
		return -ENODATA;
	if (buf[0] != HC_GOSSIP_MSG_HAS_CRC)
		return -EINVAL;
	want = (uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 8 | buf[4];
	if (crc32_of(buf + 5, len - 5) != want)
		return -EILSEQ;
	*inner = (struct hc_gossip_bytes){ buf + 5, len - 5 };
	return 0;
}

int hc_gossip_crc_wrap(const uint8_t *msg, size_t len, struct hc_gossip_mp_writer *w)
{
	uint32_t crc = crc32_of(msg, len);
	uint8_t hdr[5] = { HC_GOSSIP_MSG_HAS_CRC, (uint8_t)(crc >> 24), (uint8_t)(crc >> 16),
			   (uint8_t)(crc >> 8), (uint8_t)crc };

	hc_gossip_mp_write_raw(w, hdr, sizeof(hdr));
	hc_gossip_mp_write_raw(w, msg, len);
	return hc_gossip_mp_writer_error(w);
}

struct compress_body {
	int64_t algo;
	struct hc_gossip_bytes buf;
};

static const struct hc_gossip_field compress_fields[] = {
	FIELD(struct compress_body, algo, I64, "Algo"),
	FIELD(struct compress_body, buf, BYTES, "Buf"),
};

#define LZW_ALGO 0

int hc_gossip_compress_unwrap(const uint8_t *buf, size_t len, size_t max_out, uint8_t **out,
			      size_t *out_len)
{
	struct compress_body body = { 0 };
	struct hc_gossip_mp_reader r;
	int err;

	if (len < 1)
		return -ENODATA;
	if (buf[0] != HC_GOSSIP_MSG_COMPRESS)
		return -EINVAL;
	hc_gossip_mp_reader_init(&r, buf + 1, len - 1);
	err = hc_gossip_mp_read_struct(&r, compress_fields, NFIELDS(compress_fields), &body);
	if (err)
		return err;
	if (body.algo != LZW_ALGO)
		return -EPROTONOSUPPORT;
	return hc_gossip_lzw_decompress(body.buf.ptr, body.buf.len, max_out, out, out_len);
}

int hc_gossip_compress_wrap(const uint8_t *msg, size_t len, struct hc_gossip_mp_writer *w)
{
	struct hc_gossip_mp_writer lzw;
	struct compress_body body = { .algo = LZW_ALGO };
	int err;

	hc_gossip_mp_writer_init(&lzw, 0);
	err = hc_gossip_lzw_compress(msg, len, &lzw);
	if (err)
		goto out;
	/* An empty LZW output cannot happen (clear + EOF), so buf is never nil. */
	body.buf = (struct hc_gossip_bytes){ lzw.buf, lzw.len };
	hc_gossip_mp_write_u8(w, HC_GOSSIP_MSG_COMPRESS);
	hc_gossip_mp_write_struct(w, compress_fields, NFIELDS(compress_fields), &body);
	err = hc_gossip_mp_writer_error(w);
out:
	hc_gossip_mp_writer_fini(&lzw);
	return err;
}

/* ---- TCP push/pull ---- */

struct push_pull_header {
	bool join;
	int64_t nodes;
	int64_t user_state_len;
};

static const struct hc_gossip_field push_pull_header_fields[] = {
	FIELD(struct push_pull_header, join, BOOL, "Join"),
	FIELD(struct push_pull_header, nodes, I64, "Nodes"),
	FIELD(struct push_pull_header, user_state_len, I64, "UserStateLen"),
};

static const struct hc_gossip_field push_node_fields[] = {
	FIELD(struct hc_gossip_push_node, addr, BYTES, "Addr"),
	FIELD(struct hc_gossip_push_node, incarnation, U32, "Incarnation"),
	FIELD(struct hc_gossip_push_node, meta, BYTES, "Meta"),
	FIELD(struct hc_gossip_push_node, name, STR, "Name"),
	FIELD(struct hc_gossip_push_node, port, U16, "Port"),
	FIELD(struct hc_gossip_push_node, state, U8, "State"),
	FIELD(struct hc_gossip_push_node, vsn, BYTES, "Vsn"),
};

/* The header alone: what the counts say, not yet whether they fit. */
static int read_push_header_fields(struct hc_gossip_mp_reader *r, struct push_pull_header *h)
{
	int err = hc_gossip_mp_read_struct(r, push_pull_header_fields,
					   NFIELDS(push_pull_header_fields), h);

	if (err)
		return err;
	return h->nodes < 0 || h->user_state_len < 0 ? -EBADMSG : 0;
}

static int read_push_header(struct hc_gossip_mp_reader *r, struct push_pull_header *h)
{
	int err = read_push_header_fields(r, h);

	if (err)
		return err;
	/* Each node state takes at least one byte: a bigger count is a lie
	 * about data we do not have (yet). */
	if ((uint64_t)h->nodes > hc_gossip_mp_remaining(r))
		return (uint64_t)h->nodes > HC_GOSSIP_STREAM_MAX ? -EMSGSIZE : -ENODATA;
	return 0;
}

int hc_gossip_push_pull_decode(const uint8_t *buf, size_t len, struct hc_gossip_push_pull *pp)
{
	struct push_pull_header h = { 0 };
	struct hc_gossip_mp_reader r;
	int err;

	memset(pp, 0, sizeof(*pp));
	if (len < 1)
		return -ENODATA;
	if (buf[0] != HC_GOSSIP_MSG_PUSH_PULL)
		return -EINVAL;
	hc_gossip_mp_reader_init(&r, buf + 1, len - 1);
	err = read_push_header(&r, &h);
	if (err)
		return err;
	pp->join = h.join;
	if (h.nodes > 0) {
		pp->nodes = calloc((size_t)h.nodes, sizeof(*pp->nodes));
		if (!pp->nodes)
			return -ENOMEM;
	}
	for (; pp->nnodes < (size_t)h.nodes; pp->nnodes++) {
		err = hc_gossip_mp_read_struct(&r, push_node_fields, NFIELDS(push_node_fields),
					       &pp->nodes[pp->nnodes]);
		if (err)
			goto fail;
	}
	if ((uint64_t)h.user_state_len > hc_gossip_mp_remaining(&r)) {
		err = (uint64_t)h.user_state_len > HC_GOSSIP_STREAM_MAX ? -EMSGSIZE : -ENODATA;
		goto fail;
	}
	pp->user_state = (struct hc_gossip_bytes){ r.buf + r.pos, (size_t)h.user_state_len };
	return 0;
fail:
	hc_gossip_push_pull_fini(pp);
	return err;
}

int hc_gossip_push_pull_encode(const struct hc_gossip_push_pull *pp,
			       struct hc_gossip_mp_writer *w)
{
	struct push_pull_header h = {
		.join = pp->join,
		.nodes = (int64_t)pp->nnodes,
		.user_state_len = (int64_t)pp->user_state.len,
	};

	hc_gossip_mp_write_u8(w, HC_GOSSIP_MSG_PUSH_PULL);
	hc_gossip_mp_write_struct(w, push_pull_header_fields, NFIELDS(push_pull_header_fields), &h);
	for (size_t i = 0; i < pp->nnodes; i++)
		hc_gossip_mp_write_struct(w, push_node_fields, NFIELDS(push_node_fields),
					  &pp->nodes[i]);
	hc_gossip_mp_write_raw(w, pp->user_state.ptr, pp->user_state.len);
	return hc_gossip_mp_writer_error(w);
}

void hc_gossip_push_pull_fini(struct hc_gossip_push_pull *pp)
{
	if (!pp)
		return;
	free(pp->nodes);
	pp->nodes = NULL;
	pp->nnodes = 0;
}

struct user_msg_header {
	int64_t user_msg_len;
};

static const struct hc_gossip_field user_msg_header_fields[] = {
	FIELD(struct user_msg_header, user_msg_len, I64, "UserMsgLen"),
};

static int read_user_header(struct hc_gossip_mp_reader *r, struct user_msg_header *h)
{
	int err = hc_gossip_mp_read_struct(r, user_msg_header_fields,
					   NFIELDS(user_msg_header_fields), h);

	if (err)
		return err;
	return h->user_msg_len < 0 ? -EBADMSG : 0;
}

int hc_gossip_user_stream_decode(const uint8_t *buf, size_t len, struct hc_gossip_bytes *msg)
{
	struct user_msg_header h = { 0 };
	struct hc_gossip_mp_reader r;
	int err;

	if (len < 1)
		return -ENODATA;
	if (buf[0] != HC_GOSSIP_MSG_USER)
		return -EINVAL;
	hc_gossip_mp_reader_init(&r, buf + 1, len - 1);
	err = read_user_header(&r, &h);
	if (err)
		return err;
	if ((uint64_t)h.user_msg_len > hc_gossip_mp_remaining(&r))
		return (uint64_t)h.user_msg_len > HC_GOSSIP_STREAM_MAX ? -EMSGSIZE : -ENODATA;
	*msg = (struct hc_gossip_bytes){ r.buf + r.pos, (size_t)h.user_msg_len };
	return 0;
}

int hc_gossip_stream_header_decode(uint8_t type, const uint8_t *buf, size_t len,
				   uint64_t *objects, uint64_t *raw)
{
	struct push_pull_header pp = { 0 };
	struct user_msg_header um = { 0 };
	struct hc_gossip_mp_reader r;
	int err;

	hc_gossip_mp_reader_init(&r, buf, len);
	if (type == HC_GOSSIP_MSG_PUSH_PULL)
		err = read_push_header_fields(&r, &pp);
	else if (type == HC_GOSSIP_MSG_USER)
		err = read_user_header(&r, &um);
	else
		err = -EINVAL;
	*objects = (uint64_t)pp.nodes;
	*raw = (uint64_t)(type == HC_GOSSIP_MSG_USER ? um.user_msg_len : pp.user_state_len);
	return err;
}

int hc_gossip_user_stream_encode(const uint8_t *msg, size_t len, struct hc_gossip_mp_writer *w)
{
	struct user_msg_header h = { .user_msg_len = (int64_t)len };

	hc_gossip_mp_write_u8(w, HC_GOSSIP_MSG_USER);
	hc_gossip_mp_write_struct(w, user_msg_header_fields, NFIELDS(user_msg_header_fields), &h);
	hc_gossip_mp_write_raw(w, msg, len);
	return hc_gossip_mp_writer_error(w);
}
