/* AES-GCM gossip keyring as memberlist/serf use it: packet and stream encryption, keyring file. */
#define HC_LOG_MODULE "gossip"
#include "log/log.h"

#include "base/base.h"
#include "gossip/gossip.h"
#include "gossip/keyring_int.h"
#include "gossip/wire_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define NONCE_LEN 12
#define TAG_LEN 16
#define STREAM_HDR_LEN 5
#define ENC_VSN_PADDED 0 /* memberlist protocol 1: PKCS#7 padding */
#define ENC_VSN 1        /* what we send and our peer sends */

struct gossip_key {
	uint8_t bytes[HC_GOSSIP_KEY_MAX];
	size_t len;
};

struct hc_gossip_keyring {
	struct gossip_key *keys; /* index 0 = primary */
	size_t n, cap;
};

struct hc_gossip_keyring *hc_gossip_keyring_new(void)
{
	return calloc(1, sizeof(struct hc_gossip_keyring));
}

void hc_gossip_keyring_free(struct hc_gossip_keyring *kr)
{
	if (!kr)
		return;
	if (kr->keys)
		OPENSSL_cleanse(kr->keys, kr->cap * sizeof(*kr->keys));
	free(kr->keys);
	free(kr);
}

static bool key_len_ok(size_t len)
{
	return len == 16 || len == 24 || len == 32;
}

static ssize_t find_key(const struct hc_gossip_keyring *kr, const uint8_t *key, size_t len)
{
	for (size_t i = 0; i < kr->n; i++)
		if (kr->keys[i].len == len && CRYPTO_memcmp(kr->keys[i].bytes, key, len) == 0)
			return (ssize_t)i;
	return -1;
}

int hc_gossip_keyring_install(struct hc_gossip_keyring *kr, const uint8_t *key, size_t len)
{
	if (!key_len_ok(len))
		return -EINVAL;
	if (find_key(kr, key, len) >= 0)
		return 0;
	if (kr->n == kr->cap) {
		size_t cap = kr->cap ? kr->cap * 2 : 4;
		struct gossip_key *keys = calloc(cap, sizeof(*keys));

		/* Fresh array rather than realloc so old key bytes get wiped. */
		if (!keys)
			return -ENOMEM;
		if (kr->keys) {
			memcpy(keys, kr->keys, kr->n * sizeof(*keys));
			OPENSSL_cleanse(kr->keys, kr->cap * sizeof(*kr->keys));
		}
		free(kr->keys);
		kr->keys = keys;
		kr->cap = cap;
	}
	memcpy(kr->keys[kr->n].bytes, key, len);
	kr->keys[kr->n].len = len;
	kr->n++;
	return 0;
}

int hc_gossip_keyring_use(struct hc_gossip_keyring *kr, const uint8_t *key, size_t len)
{
	ssize_t i = find_key(kr, key, len);
	struct gossip_key chosen;

	if (i < 0)
		return -ENOENT;
	/* The new primary moves to the front; the others keep their order. */
	chosen = kr->keys[i];
	memmove(&kr->keys[1], &kr->keys[0], (size_t)i * sizeof(*kr->keys));
	kr->keys[0] = chosen;
	OPENSSL_cleanse(&chosen, sizeof(chosen));
	return 0;
}

int hc_gossip_keyring_remove(struct hc_gossip_keyring *kr, const uint8_t *key, size_t len)
{
	ssize_t i = find_key(kr, key, len);

	if (i == 0)
		return -EBUSY;
	if (i < 0)
		return 0; /* memberlist treats removing an absent key as done */
	memmove(&kr->keys[i], &kr->keys[i + 1], (kr->n - (size_t)i - 1) * sizeof(*kr->keys));
	kr->n--;
	OPENSSL_cleanse(&kr->keys[kr->n], sizeof(*kr->keys));
	return 0;
}

size_t hc_gossip_keyring_count(const struct hc_gossip_keyring *kr)
{
	return kr->n;
}

const uint8_t *hc_gossip_keyring_key(const struct hc_gossip_keyring *kr, size_t i, size_t *len)
{
	if (i >= kr->n)
		return NULL;
	*len = kr->keys[i].len;
	return kr->keys[i].bytes;
}

int hc_gossip_key_from_base64(const char *b64, uint8_t key[HC_GOSSIP_KEY_MAX], size_t *len)
{
	size_t in_len = strlen(b64), pad = 0;
	uint8_t out[HC_GOSSIP_KEY_MAX + 3];
	int n;

	/* 32 key bytes are 44 characters; anything longer cannot be a key. */
	if (in_len == 0 || in_len % 4 || in_len > 44)
		return -EINVAL;
	pad = (b64[in_len - 1] == '=') + (b64[in_len - 2] == '=');
	n = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)in_len);
	if (n < 0 || (size_t)n < pad || !key_len_ok((size_t)n - pad)) {
		OPENSSL_cleanse(out, sizeof(out));
		return -EINVAL;
	}
	*len = (size_t)n - pad;
	memcpy(key, out, *len);
	OPENSSL_cleanse(out, sizeof(out));
	return 0;
}

int hc_gossip_key_to_base64(const uint8_t *key, size_t len, char *out, size_t out_size)
{
	if (!key_len_ok(len) || out_size < 4 * ((len + 2) / 3) + 1)
		return -EINVAL;
	EVP_EncodeBlock((unsigned char *)out, key, (int)len);
	return 0;
}

/* ---- AES-GCM ---- */

static const EVP_CIPHER *gcm_cipher(size_t key_len)
{
	return key_len == 16 ? EVP_aes_128_gcm() : key_len == 24 ? EVP_aes_192_gcm()
								  : EVP_aes_256_gcm();
}

/* Seals msg into out (len bytes of ciphertext, then the tag). */
static int gcm_seal(const struct gossip_key *k, const uint8_t nonce[NONCE_LEN], const uint8_t *aad,
		    size_t aad_len, const uint8_t *msg, size_t len, uint8_t *out)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n, err = -EIO;

	if (!ctx)
		return -ENOMEM;
	if (len > INT_MAX || aad_len > INT_MAX)
		goto out;
	if (EVP_EncryptInit_ex(ctx, gcm_cipher(k->len), NULL, k->bytes, nonce) != 1)
		goto out;
	if (aad_len && EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1)
		goto out;
	if (len && EVP_EncryptUpdate(ctx, out, &n, msg, (int)len) != 1)
		goto out;
	if (EVP_EncryptFinal_ex(ctx, out + len, &n) != 1)
		goto out;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, out + len) != 1)
		goto out;
	err = 0;
out:
	EVP_CIPHER_CTX_free(ctx);
	return err;
}

/* Opens ct (ciphertext + tag) into out; -EKEYREJECTED if it does not
 * authenticate under this key. */
static int gcm_open(const struct gossip_key *k, const uint8_t *nonce, const uint8_t *aad,
		    size_t aad_len, const uint8_t *ct, size_t ct_len, uint8_t *out)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	size_t len = ct_len - TAG_LEN;
	int n, err = -EIO;

	if (!ctx)
		return -ENOMEM;
	if (len > INT_MAX || aad_len > INT_MAX)
		goto out;
	if (EVP_DecryptInit_ex(ctx, gcm_cipher(k->len), NULL, k->bytes, nonce) != 1)
		goto out;
	if (aad_len && EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1)
		goto out;
	if (len && EVP_DecryptUpdate(ctx, out, &n, ct, (int)len) != 1)
		goto out;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, (void *)(ct + len)) != 1)
		goto out;
	err = EVP_DecryptFinal_ex(ctx, out + len, &n) == 1 ? 0 : -EKEYREJECTED;
out:
	EVP_CIPHER_CTX_free(ctx);
	return err;
}

/* Appends vsn | nonce | ciphertext | tag sealed with the primary key. */
static int seal_payload(const struct hc_gossip_keyring *kr, const uint8_t *aad, size_t aad_len,
			const uint8_t *msg, size_t len, struct hc_gossip_mp_writer *w)
{
	static const uint8_t tag_space[TAG_LEN];
	uint8_t head[1 + NONCE_LEN];
	size_t at;
	int err;

	if (kr->n == 0)
		return -ENOKEY;
	head[0] = ENC_VSN;
	if (RAND_bytes(head + 1, NONCE_LEN) != 1)
		return -EIO;
	hc_gossip_mp_write_raw(w, head, sizeof(head));
	at = w->len;
	/* Reserve room for ciphertext and tag, then seal in place. */
	hc_gossip_mp_write_raw(w, msg, len);
	hc_gossip_mp_write_raw(w, tag_space, sizeof(tag_space));
	err = hc_gossip_mp_writer_error(w);
	if (err)
		return err;
	return gcm_seal(&kr->keys[0], head + 1, aad, aad_len, msg, len, w->buf + at);
}

/* Opens vsn | nonce | ciphertext | tag with the first key that authenticates. */
static int open_payload(const struct hc_gossip_keyring *kr, const uint8_t *aad, size_t aad_len,
			const uint8_t *buf, size_t len, uint8_t **out, size_t *out_len)
{
	size_t ct_len, plain_len;
	uint8_t *plain;
	int err = -EKEYREJECTED;

	if (kr->n == 0)
		return -ENOKEY;
	if (len < HC_GOSSIP_ENC_OVERHEAD)
		return -ENODATA;
	if (buf[0] > ENC_VSN)
		return -EPROTONOSUPPORT;
	ct_len = len - 1 - NONCE_LEN;
	plain_len = ct_len - TAG_LEN;
	plain = malloc(plain_len ? plain_len : 1);
	if (!plain)
		return -ENOMEM;
	for (size_t i = 0; i < kr->n && err == -EKEYREJECTED; i++)
		err = gcm_open(&kr->keys[i], buf + 1, aad, aad_len, buf + 1 + NONCE_LEN, ct_len,
			       plain);
	if (!err && buf[0] == ENC_VSN_PADDED) {
		uint8_t pad = plain_len ? plain[plain_len - 1] : 0;

		if (pad == 0 || pad > plain_len)
			err = -EBADMSG;
		plain_len -= err ? 0 : pad;
	}
	if (err) {
		free(plain);
		return err;
	}
	*out = plain;
	*out_len = plain_len;
	return 0;
}

int hc_gossip_encrypt_packet(const struct hc_gossip_keyring *kr, const uint8_t *msg, size_t len,
			     struct hc_gossip_mp_writer *w)
{
	return seal_payload(kr, NULL, 0, msg, len, w);
}

int hc_gossip_decrypt_packet(const struct hc_gossip_keyring *kr, const uint8_t *buf, size_t len,
			     uint8_t **out, size_t *out_len)
{
	int err = open_payload(kr, NULL, 0, buf, len, out, out_len);

	if (err == -EKEYREJECTED)
		hc_log(HC_LOG_DEBUG, "no key in the keyring decrypts a %zu byte packet", len);
	return err;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

int hc_gossip_encrypt_stream(const struct hc_gossip_keyring *kr, const uint8_t *msg, size_t len,
			     struct hc_gossip_mp_writer *w)
{
	uint8_t hdr[STREAM_HDR_LEN];

	if (len > HC_GOSSIP_STREAM_MAX)
		return -EMSGSIZE;
	hdr[0] = HC_GOSSIP_MSG_ENCRYPT;
	put_be32(hdr + 1, (uint32_t)(len + HC_GOSSIP_ENC_OVERHEAD));
	hc_gossip_mp_write_raw(w, hdr, sizeof(hdr));
	return seal_payload(kr, hdr, sizeof(hdr), msg, len, w);
}

int hc_gossip_decrypt_stream(const struct hc_gossip_keyring *kr, const uint8_t *buf, size_t len,
			     uint8_t **out, size_t *out_len, size_t *consumed)
{
	uint32_t frame;
	int err;

	if (len < STREAM_HDR_LEN)
		return -ENODATA;
	if (buf[0] != HC_GOSSIP_MSG_ENCRYPT)
		return -EACCES;
	frame = (uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 8 | buf[4];
	if (frame > HC_GOSSIP_STREAM_MAX)
		return -EMSGSIZE;
	if (len - STREAM_HDR_LEN < frame)
		return -ENODATA;
	err = open_payload(kr, buf, STREAM_HDR_LEN, buf + STREAM_HDR_LEN, frame, out, out_len);
	if (err)
		return err;
	*consumed = STREAM_HDR_LEN + frame;
	return 0;
}

/* ---- keyring file ---- */

static int keys_from_json(json_t *root, struct hc_gossip_keyring *fresh)
{
	size_t i;
	json_t *v;

	if (!json_is_array(root) || json_array_size(root) == 0)
		return -EINVAL; /* serf refuses a keyring file without keys too */
	json_array_foreach(root, i, v) {
		uint8_t key[HC_GOSSIP_KEY_MAX];
		size_t len;
		int err;

		if (!json_is_string(v))
			return -EINVAL;
		err = hc_gossip_key_from_base64(json_string_value(v), key, &len);
		if (!err)
			err = hc_gossip_keyring_install(fresh, key, len);
		OPENSSL_cleanse(key, sizeof(key));
		if (err)
			return err;
	}
	return 0;
}

int hc_gossip_keyring_load(struct hc_gossip_keyring *kr, const char *path)
{
	struct hc_gossip_keyring *fresh = hc_gossip_keyring_new();
	json_error_t jerr;
	json_t *root = NULL;
	int err;

	if (!fresh)
		return -ENOMEM;
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		hc_log(HC_LOG_WARN, "cannot read keyring file %s: %s", path, jerr.text);
		err = json_error_code(&jerr) == json_error_cannot_open_file ? -ENOENT : -EINVAL;
		goto out;
	}
	err = keys_from_json(root, fresh);
	if (err)
		goto out;
	/* Only a fully valid file replaces the keyring. */
	if (kr->keys)
		OPENSSL_cleanse(kr->keys, kr->cap * sizeof(*kr->keys));
	free(kr->keys);
	*kr = *fresh;
	fresh->keys = NULL;
	fresh->n = fresh->cap = 0;
out:
	json_decref(root);
	hc_gossip_keyring_free(fresh);
	return err;
}

static json_t *keys_to_json(const struct hc_gossip_keyring *kr)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < kr->n; i++) {
		char b64[4 * ((HC_GOSSIP_KEY_MAX + 2) / 3) + 1];

		if (hc_gossip_key_to_base64(kr->keys[i].bytes, kr->keys[i].len, b64, sizeof(b64)) ||
		    json_array_append_new(arr, json_string(b64))) {
			json_decref(arr);
			arr = NULL;
		}
		OPENSSL_cleanse(b64, sizeof(b64));
	}
	return arr;
}

int hc_gossip_keyring_save(const struct hc_gossip_keyring *kr, const char *path)
{
	json_t *arr = keys_to_json(kr);
	/* Same layout as serf's json.MarshalIndent(keys, "", "  "). */
	char *text = arr ? json_dumps(arr, JSON_INDENT(2)) : NULL;
	int err = -ENOMEM;

	if (text) {
		err = hc_file_write_atomic(path, text, strlen(text), 0600);
		OPENSSL_cleanse(text, strlen(text));
		free(text);
	}
	json_decref(arr);
	return err;
}

/* ---- the cluster secret (gossip.h) ---- */

_Static_assert(HC_GOSSIP_KEY_B64_MAX == 4 * ((HC_GOSSIP_KEY_MAX + 2) / 3) + 1,
	       "a base64 key and its NUL");

int hc_gossip_key_generate(char out[HC_GOSSIP_KEY_B64_MAX])
{
	uint8_t key[HC_GOSSIP_KEY_MAX];
	int err;

	if (RAND_bytes(key, sizeof(key)) != 1)
		return -EIO;
	err = hc_gossip_key_to_base64(key, sizeof(key), out, HC_GOSSIP_KEY_B64_MAX);
	OPENSSL_cleanse(key, sizeof(key));
	return err;
}

_Static_assert(HC_GOSSIP_KEY_MAX == 32, "gossip.h promises 32-byte keys at most");

int hc_gossip_key_decode(const char *b64, uint8_t out[32], size_t *len)
{
	return b64 ? hc_gossip_key_from_base64(b64, out, len) : -EINVAL;
}

int hc_gossip_key_check(const char *b64)
{
	uint8_t key[HC_GOSSIP_KEY_MAX];
	size_t len;
	int err = b64 ? hc_gossip_key_from_base64(b64, key, &len) : -EINVAL;

	OPENSSL_cleanse(key, sizeof(key));
	return err;
}

int hc_gossip_keyring_file_create(const char *path, const char *b64)
{
	json_t *arr = json_array();
	char *text;
	int err;

	if ((err = hc_gossip_key_check(b64)) < 0) {
		json_decref(arr);
		return err;
	}
	if (!arr || json_array_append_new(arr, json_string(b64)) < 0) {
		json_decref(arr);
		return -ENOMEM;
	}
	text = json_dumps(arr, JSON_INDENT(2));
	json_decref(arr);
	if (!text)
		return -ENOMEM;
	err = hc_file_create_atomic(path, text, strlen(text), 0600);
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	return err;
}

/* Loads the keyring file at path into a fresh keyring (*out). */
static int load_file(const char *path, struct hc_gossip_keyring **out)
{
	struct hc_gossip_keyring *kr = hc_gossip_keyring_new();
	int err;

	if (!kr)
		return -ENOMEM;
	if (access(path, F_OK) < 0) {
		err = -errno;
		hc_gossip_keyring_free(kr);
		return err;
	}
	err = hc_gossip_keyring_load(kr, path);
	if (err < 0) {
		hc_gossip_keyring_free(kr);
		return err;
	}
	*out = kr;
	return 0;
}

int hc_gossip_keyring_file_primary(const char *path, char out[HC_GOSSIP_KEY_B64_MAX])
{
	struct hc_gossip_keyring *kr;
	const uint8_t *key;
	size_t len;
	int err = load_file(path, &kr);

	if (err < 0)
		return err;
	key = hc_gossip_keyring_key(kr, 0, &len);
	err = key ? hc_gossip_key_to_base64(key, len, out, HC_GOSSIP_KEY_B64_MAX) : -EINVAL;
	hc_gossip_keyring_free(kr);
	return err;
}

int hc_gossip_keyring_file_holds(const char *path, const char *b64)
{
	struct hc_gossip_keyring *kr;
	uint8_t key[HC_GOSSIP_KEY_MAX];
	size_t len;
	int err = hc_gossip_key_from_base64(b64, key, &len);

	if (err < 0)
		return err;
	err = load_file(path, &kr);
	if (err == 0) {
		err = find_key(kr, key, len) >= 0;
		hc_gossip_keyring_free(kr);
	}
	OPENSSL_cleanse(key, sizeof(key));
	return err;
}
