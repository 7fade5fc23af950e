/* protobuf-c → JSON in Go encoding/json's shape; see pbjson.h. */
#include "pbjson/pbjson.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *encode_message(const ProtobufCMessage *msg);

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, cp = c & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* overlong forms, surrogates, beyond U+10FFFF */
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* A JSON string from bytes that may not be UTF-8 (strings come off the
 * network): invalid bytes become U+FFFD, as Go does. */
static json_t *string_value(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	char *clean, *p;
	json_t *j;
	size_t i;

	for (i = 0; i < n;) {
		size_t len = utf8_seq_len(u + i, n - i);

		if (!len)
			break;
		i += len;
	}
	if (i == n)
		return json_stringn(s, n);
	clean = malloc(n * 3 + 1);
	if (!clean)
		return NULL;
	for (p = clean, i = 0; i < n;) {
		size_t len = utf8_seq_len(u + i, n - i);

		if (len) {
			memcpy(p, u + i, len);
			p += len;
			i += len;
		} else {
			memcpy(p, "\xef\xbf\xbd", 3);
			p += 3;
			i++;
		}
	}
	j = json_stringn(clean, (size_t)(p - clean));
	free(clean);
	return j;
}

static json_t *base64_value(const ProtobufCBinaryData *b)
{
	static const char tbl[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t olen = (b->len + 2) / 3 * 4;
	char *out = malloc(olen + 1), *p = out;
	json_t *j;

	if (!out)
		return NULL;
	for (size_t i = 0; i < b->len; i += 3) {
		uint32_t v = (uint32_t)b->data[i] << 16;

		if (i + 1 < b->len)
			v |= (uint32_t)b->data[i + 1] << 8;
		if (i + 2 < b->len)
			v |= b->data[i + 2];
		*p++ = tbl[v >> 18 & 63];
		*p++ = tbl[v >> 12 & 63];
		*p++ = i + 1 < b->len ? tbl[v >> 6 & 63] : '=';
		*p++ = i + 2 < b->len ? tbl[v & 63] : '=';
	}
	j = json_stringn(out, olen);
	free(out);
	return j;
}

static json_t *real_value(double v)
{
	/* JSON has no NaN or infinities. */
	return isfinite(v) ? json_real(v) : json_null();
}

static json_t *uint64_value(uint64_t v)
{
	return v <= INT64_MAX ? json_integer((json_int_t)v) : json_real((double)v);
}

/* The JSON value of one scalar or message element at p. */
static json_t *element_value(const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_ENUM:
		return json_integer(*(const int32_t *)p);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return json_integer(*(const uint32_t *)p);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		return json_integer(*(const int64_t *)p);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return uint64_value(*(const uint64_t *)p);
	case PROTOBUF_C_TYPE_FLOAT:
		return real_value(*(const float *)p);
	case PROTOBUF_C_TYPE_DOUBLE:
		return real_value(*(const double *)p);
	case PROTOBUF_C_TYPE_BOOL:
		return json_boolean(*(const protobuf_c_boolean *)p);
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;

		return string_value(s ? s : "", s ? strlen(s) : 0);
	}
	case PROTOBUF_C_TYPE_BYTES:
		return base64_value(p);
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;

		return m ? encode_message(m) : json_null();
	}
	}
	return json_null();
}

/* Go's omitempty: zero numbers, false, "" and empty bytes are left out. */
static bool is_zero(const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_ENUM:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return *(const uint32_t *)p == 0;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return *(const uint64_t *)p == 0;
	case PROTOBUF_C_TYPE_FLOAT:
		return *(const float *)p == 0;
	case PROTOBUF_C_TYPE_DOUBLE:
		return *(const double *)p == 0;
	case PROTOBUF_C_TYPE_BOOL:
		return !*(const protobuf_c_boolean *)p;
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;

		return !s || !*s;
	}
	case PROTOBUF_C_TYPE_BYTES:
		return ((const ProtobufCBinaryData *)p)->len == 0;
	case PROTOBUF_C_TYPE_MESSAGE:
		return *(ProtobufCMessage *const *)p == NULL;
	}
	return true;
}

static size_t element_size(const ProtobufCFieldDescriptor *f)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return 8;
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(void *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	default:
		return 4;
	}
}

/* protobuf-c has no map type: a map field is a repeated nested "...Entry"
 * message with exactly the fields key = 1 and value = 2. */
static bool is_map_field(const ProtobufCFieldDescriptor *f)
{
	const ProtobufCMessageDescriptor *d = f->descriptor;
	size_t n;

	if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE || !d)
		return false;
	n = strlen(d->name);
	return n > 5 && strcmp(d->name + n - 5, "Entry") == 0 && d->n_fields == 2 &&
	       d->fields[0].id == 1 && strcmp(d->fields[0].name, "key") == 0 &&
	       d->fields[1].id == 2 && strcmp(d->fields[1].name, "value") == 0;
}

/* The map key as Go's encoding/json writes it: the key's text. */
static void map_key_text(const ProtobufCFieldDescriptor *kf, const void *p, char *buf,
			 size_t len)
{
	switch (kf->type) {
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;

		snprintf(buf, len, "%s", s ? s : "");
		return;
	}
	case PROTOBUF_C_TYPE_BOOL:
		snprintf(buf, len, "%s", *(const protobuf_c_boolean *)p ? "true" : "false");
		return;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		snprintf(buf, len, "%lld", (long long)*(const int64_t *)p);
		return;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		snprintf(buf, len, "%llu", (unsigned long long)*(const uint64_t *)p);
		return;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		snprintf(buf, len, "%u", *(const uint32_t *)p);
		return;
	default:
		snprintf(buf, len, "%d", *(const int32_t *)p);
		return;
	}
}

struct map_item {
	char key[256];
	const ProtobufCMessage *entry;
};

static int cmp_map_item(const void *a, const void *b)
{
	return strcmp(((const struct map_item *)a)->key, ((const struct map_item *)b)->key);
}

static json_t *map_value(const ProtobufCFieldDescriptor *f, ProtobufCMessage *const *entries,
			 size_t n)
{
	const ProtobufCMessageDescriptor *entry_type = f->descriptor;
	const ProtobufCFieldDescriptor *kf = &entry_type->fields[0];
	const ProtobufCFieldDescriptor *vf = &entry_type->fields[1];
	struct map_item *items = calloc(n ? n : 1, sizeof(*items));
	json_t *obj = json_object();

	if (!items || !obj)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		items[i].entry = entries[i];
		map_key_text(kf, (const char *)entries[i] + kf->offset, items[i].key,
			     sizeof(items[i].key));
	}
	qsort(items, n, sizeof(*items), cmp_map_item);
	for (size_t i = 0; i < n; i++) {
		json_t *v = element_value(vf, (const char *)items[i].entry + vf->offset);
		json_t *k = string_value(items[i].key, strlen(items[i].key));

		/* Keys were sanitized the same way as string values. */
		if (!v || !k || json_object_set_new(obj, json_string_value(k), v) < 0) {
			json_decref(k);
			goto fail;
		}
		json_decref(k);
	}
	free(items);
	return obj;
fail:
	free(items);
	json_decref(obj);
	return NULL;
}

static json_t *repeated_value(const ProtobufCFieldDescriptor *f, const void *array, size_t n)
{
	json_t *arr = json_array();
	size_t sz = element_size(f);

	if (!arr)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		json_t *v = element_value(f, (const char *)array + i * sz);

		if (!v || json_array_append_new(arr, v) < 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

static json_t *field_value(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
	const char *base = (const char *)msg;
	const void *p = base + f->offset;

	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		size_t n = *(const size_t *)(base + f->quantifier_offset);
		const void *array = *(void *const *)p;

		if (n == 0)
			return NULL; /* omitempty */
		if (is_map_field(f))
			return map_value(f, array, n);
		return repeated_value(f, array, n);
	}
	if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
	    f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING &&
	    !*(const protobuf_c_boolean *)(base + f->quantifier_offset))
		return NULL;
	if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
	    *(const uint32_t *)(base + f->quantifier_offset) != f->id)
		return NULL;
	if (is_zero(f, p))
		return NULL;
	return element_value(f, p);
}

static json_t *encode_message(const ProtobufCMessage *msg)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	json_t *obj = json_object();

	if (!obj)
		return NULL;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		json_t *v;

		errno = 0;
		v = field_value(msg, f);
		if (!v) {
			if (errno == ENOMEM)
				goto fail;
			continue;
		}
		if (json_object_set_new(obj, f->name, v) < 0)
			goto fail;
	}
	return obj;
fail:
	json_decref(obj);
	errno = ENOMEM;
	return NULL;
}

json_t *hc_pbjson_encode(const ProtobufCMessage *msg)
{
	return encode_message(msg);
}
