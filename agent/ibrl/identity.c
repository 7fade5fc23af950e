/* The node's Ed25519 identity; see ibrl.h. */
#include "ibrl/ibrl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define KEY_FILE_MAX 4096

struct hc_ibrl_identity {
	EVP_PKEY *key;
	uint8_t pub[HC_IBRL_PUBLIC_LEN];
};

static int key_path(const char *state_dir, char *path, size_t size, struct hc_err *err)
{
	if (snprintf(path, size, "%s/%s", state_dir, HC_IBRL_KEY_FILE) >= (int)size)
		return hc_err_set(err, -ENAMETOOLONG, "state dir path too long: %s", state_dir);
	return 0;
}

static int wrap(EVP_PKEY *key, struct hc_ibrl_identity **out, struct hc_err *err)
{
	struct hc_ibrl_identity *id = calloc(1, sizeof(*id));
	size_t len = HC_IBRL_PUBLIC_LEN;

	if (!id) {
		EVP_PKEY_free(key);
		return hc_err_set(err, -ENOMEM, "out of memory");
	}
	if (EVP_PKEY_get_raw_public_key(key, id->pub, &len) != 1 || len != HC_IBRL_PUBLIC_LEN) {
		EVP_PKEY_free(key);
		free(id);
		return hc_err_set(err, -EINVAL, "the node key has no Ed25519 public half");
	}
	id->key = key;
	*out = id;
	return 0;
}

/* Reads a PEM private key from a file only root may read. */
static int read_key(const char *path, EVP_PKEY **key, struct hc_err *err)
{
	char buf[KEY_FILE_MAX];
	size_t n = 0;
	BIO *bio;
	int r = hc_file_read_private(path, buf, sizeof(buf), &n);

	if (r < 0)
		OPENSSL_cleanse(buf, sizeof(buf)); /* a part of a key may be there */
	if (r == -EPERM)
		return hc_err_set(err, r, "%s must be a regular file only its owner can read "
				  "(chmod 600 %s)", path, path);
	if (r == -EFBIG || (r == 0 && n == 0))
		return hc_err_set(err, -EINVAL, "%s is not a node key", path);
	if (r < 0)
		return hc_err_set(err, r, "cannot read %s: %s", path, strerror(-r));
	bio = BIO_new_mem_buf(buf, (int)n);
	*key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	OPENSSL_cleanse(buf, sizeof(buf));
	if (!*key || EVP_PKEY_get_id(*key) != EVP_PKEY_ED25519) {
		EVP_PKEY_free(*key);
		*key = NULL;
		return hc_err_set(err, -EINVAL, "%s is not an Ed25519 private key (remove it to make "
						"a new node identity)", path);
	}
	return 0;
}

/* A new key, written to path (never over a file there). */
static int make_key(const char *path, EVP_PKEY **key, struct hc_err *err)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
	BIO *bio = NULL;
	char *pem;
	long len;
	int r;

	*key = NULL;
	if (!ctx || EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_keygen(ctx, key) != 1) {
		EVP_PKEY_CTX_free(ctx);
		return hc_err_set(err, -EIO, "cannot make an Ed25519 key");
	}
	EVP_PKEY_CTX_free(ctx);
	bio = BIO_new(BIO_s_mem());
	if (!bio || PEM_write_bio_PrivateKey(bio, *key, NULL, NULL, 0, NULL, NULL) != 1) {
		BIO_free(bio);
		EVP_PKEY_free(*key);
		*key = NULL;
		return hc_err_set(err, -ENOMEM, "cannot encode the node key");
	}
	len = BIO_get_mem_data(bio, &pem);
	r = hc_file_create_atomic(path, pem, (size_t)len, 0600);
	OPENSSL_cleanse(pem, (size_t)len);
	BIO_free(bio);
	if (r < 0) {
		EVP_PKEY_free(*key);
		*key = NULL;
		return hc_err_set(err, r, "cannot write the node key to %s: %s", path, strerror(-r));
	}
	return 0;
}

int hc_ibrl_identity_read(const char *state_dir, struct hc_ibrl_identity **out,
			  struct hc_err *err)
{
	char path[PATH_MAX];
	EVP_PKEY *key;
	int r = key_path(state_dir, path, sizeof(path), err);

	if (r == 0)
		r = read_key(path, &key, err);
	return r < 0 ? r : wrap(key, out, err);
}

int hc_ibrl_identity_open(const char *state_dir, struct hc_ibrl_identity **out,
			  struct hc_err *err)
{
	char path[PATH_MAX];
	EVP_PKEY *key;
	int r = key_path(state_dir, path, sizeof(path), err);

	if (r < 0)
		return r;
	if (access(path, F_OK) == 0)
		r = read_key(path, &key, err);
	else if (errno == ENOENT)
		r = make_key(path, &key, err);
	else
		r = hc_err_set(err, -errno, "cannot read %s: %s", path, strerror(errno));
	return r < 0 ? r : wrap(key, out, err);
}

void hc_ibrl_identity_free(struct hc_ibrl_identity *id)
{
	if (!id)
		return;
	EVP_PKEY_free(id->key);
	free(id);
}

const uint8_t *hc_ibrl_identity_public(const struct hc_ibrl_identity *id)
{
	return id->pub;
}

void hc_ibrl_beacon_node_id(const uint8_t pub[HC_IBRL_PUBLIC_LEN],
			    char out[HC_IBRL_BEACON_ID_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < HC_IBRL_BEACON_ID_LEN / 2; i++) {
		out[2 * i] = digits[pub[i] >> 4];
		out[2 * i + 1] = digits[pub[i] & 15];
	}
	out[HC_IBRL_BEACON_ID_LEN] = '\0';
}

int hc_ibrl_sign(const struct hc_ibrl_identity *id, const void *msg, size_t len,
		 uint8_t sig[HC_IBRL_SIGNATURE_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t siglen = HC_IBRL_SIGNATURE_LEN;
	int ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, id->key) == 1 &&
		 EVP_DigestSign(ctx, sig, &siglen, msg, len) == 1 &&
		 siglen == HC_IBRL_SIGNATURE_LEN;

	EVP_MD_CTX_free(ctx);
	return ok ? 0 : -EIO;
}

int hc_ibrl_verify(const uint8_t pub[HC_IBRL_PUBLIC_LEN], const void *msg, size_t len,
		   const uint8_t sig[HC_IBRL_SIGNATURE_LEN])
{
	EVP_PKEY *key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub,
						     HC_IBRL_PUBLIC_LEN);
	EVP_MD_CTX *ctx = key ? EVP_MD_CTX_new() : NULL;
	int r = -ENOMEM;

	if (ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1)
		r = EVP_DigestVerify(ctx, sig, HC_IBRL_SIGNATURE_LEN, msg, len) == 1 ? 0 : -EBADMSG;
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(key);
	return r;
}

int hc_ibrl_b64_encode(const uint8_t *in, size_t len, char *out, size_t out_size)
{
	if (out_size < 4 * ((len + 2) / 3) + 1)
		return -ENOSPC;
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	return 0;
}

int hc_ibrl_b64_decode(const char *in, uint8_t *out, size_t cap, size_t *len)
{
	size_t n = strlen(in), pad;
	unsigned char *tmp;
	int got;

	if (n == 0 || n % 4 || n / 4 * 3 > cap + 2)
		return -EINVAL;
	pad = (in[n - 1] == '=') + (in[n - 2] == '=');
	tmp = malloc(n / 4 * 3);
	if (!tmp)
		return -ENOMEM;
	got = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)n);
	if (got < 0 || (size_t)got - pad > cap) {
		free(tmp);
		return -EINVAL;
	}
	*len = (size_t)got - pad;
	memcpy(out, tmp, *len);
	free(tmp);
	return 0;
}
