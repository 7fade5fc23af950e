/* TLS termination with OpenSSL 3: the wildcard certificate's context (TLS
 * 1.2 with ECDHE and AEAD ciphers only, TLS 1.3, ALPN h2 then http/1.1), session
 * tickets under keys rotated on a timer, and the non-blocking handshake. */
#define HC_LOG_MODULE "proxy"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "log/log.h"
#include "proxy/proxy_int.h"

#define DEFAULT_TICKET_ROTATE_S 3600
#define KEY_FILE_MAX (64 * 1024) /* a PEM private key, even RSA 16384, fits */

static const unsigned char alpn_http11[] = "http/1.1";
static const unsigned char alpn_h2[] = "h2";

/* TLS 1.2: forward secrecy (ECDHE) and AEAD only, so no RSA key exchange,
 * no CBC and no SHA-1 MAC (Mozilla's "intermediate" list without DHE).
 * TLS 1.3 keeps OpenSSL's defaults, all of which are AEAD. */
static const char tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
				    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
				    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char tls_groups[] = "X25519:P-256:P-384";

/* ---- session tickets ---- */

/* One ticket key: tickets name it, are encrypted with aes (AES-256-CBC, the
 * ticket format's own) and authenticated with hmac (HMAC-SHA256). */
struct ticket_key {
	unsigned char name[16], aes[32], hmac[32];
};

struct hc_proxy_tickets {
	pthread_mutex_t lock; /* cur, prev, rotated_ms */
	struct ticket_key cur, prev; /* prev: tickets issued before the last rotation */
	unsigned rotate_s;
	uint64_t rotated_ms;
	atomic_uint_fast64_t rotations;
	/* Fetched once: OpenSSL 3 looks a legacy EVP_aes_256_cbc() up by name
	 * (locks, string compares) at every use, twice per handshake. */
	EVP_CIPHER *aes;
};

static int ticket_key_make(struct ticket_key *k)
{
	return RAND_bytes((unsigned char *)k, sizeof(*k)) == 1 ? 0 : -EIO;
}

struct hc_proxy_tickets *hc_proxy_tickets_new(unsigned rotate_s)
{
	struct hc_proxy_tickets *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->rotate_s = rotate_s ? rotate_s : DEFAULT_TICKET_ROTATE_S;
	t->aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
	/* prev random as well: a name nobody was given, so it matches nothing */
	if (!t->aes || ticket_key_make(&t->cur) < 0 || ticket_key_make(&t->prev) < 0) {
		EVP_CIPHER_free(t->aes);
		free(t);
		errno = EIO;
		return NULL;
	}
	t->rotated_ms = hc_proxy_now_ms();
	pthread_mutex_init(&t->lock, NULL);
	return t;
}

void hc_proxy_tickets_free(struct hc_proxy_tickets *t)
{
	if (!t)
		return;
	pthread_mutex_destroy(&t->lock);
	EVP_CIPHER_free(t->aes);
	OPENSSL_cleanse(t, sizeof(*t));
	free(t);
}

void hc_proxy_tickets_tick(struct hc_proxy_tickets *t)
{
	struct ticket_key k;
	uint64_t now = hc_proxy_now_ms();

	if (now - t->rotated_ms < (uint64_t)t->rotate_s * 1000)
		return; /* only this thread writes rotated_ms */
	if (ticket_key_make(&k) < 0) {
		hc_log(HC_LOG_WARN, "cannot make a new session ticket key: keeping the old one");
		return;
	}
	pthread_mutex_lock(&t->lock);
	t->prev = t->cur;
	t->cur = k;
	t->rotated_ms = now;
	pthread_mutex_unlock(&t->lock);
	OPENSSL_cleanse(&k, sizeof(k));
	atomic_fetch_add(&t->rotations, 1);
	hc_log(HC_LOG_DEBUG, "session ticket key rotated");
}

uint64_t hc_proxy_tickets_rotations(struct hc_proxy_tickets *t)
{
	return atomic_load(&t->rotations);
}

static int ticket_mac_init(EVP_MAC_CTX *hctx, unsigned char *hmac)
{
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, hmac, 32),
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};

	return EVP_MAC_CTX_set_params(hctx, params) == 1 ? 0 : -1;
}

/* OpenSSL's ticket key callback (enc: issuing a ticket, else opening one).
 * Issues under the current key; opens under the current or the previous
 * one, asking for a new ticket (2) when it was the previous. 0: unknown
 * key, a full handshake; -1: an error. */
static int ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
		     EVP_MAC_CTX *hctx, int enc)
{
	struct hc_proxy_tickets *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	struct ticket_key k;
	int r = -1;

	pthread_mutex_lock(&t->lock);
	if (enc) {
		k = t->cur;
		r = 1;
	} else if (memcmp(name, t->cur.name, 16) == 0) {
		k = t->cur;
		r = 1;
	} else if (memcmp(name, t->prev.name, 16) == 0) {
		k = t->prev;
		r = 2;
	} else {
		r = 0;
	}
	pthread_mutex_unlock(&t->lock);
	if (r == 0)
		return 0;
	if (enc) {
		memcpy(name, k.name, 16);
		if (RAND_bytes(iv, 16) != 1 ||
		    EVP_EncryptInit_ex(cctx, t->aes, NULL, k.aes, iv) != 1)
			r = -1;
	} else if (EVP_DecryptInit_ex(cctx, t->aes, NULL, k.aes, iv) != 1) {
		r = -1;
	}
	if (r > 0 && ticket_mac_init(hctx, k.hmac) < 0)
		r = -1;
	OPENSSL_cleanse(&k, sizeof(k));
	return r;
}

/* Where the protocol id want is in the client's ALPN list, or NULL. */
static const unsigned char *alpn_find(const unsigned char *in, unsigned int inlen,
				      const unsigned char *want, unsigned int wlen)
{
	for (unsigned int i = 0; i + 1 <= inlen;) {
		unsigned int len = in[i];

		if (i + 1 + len > inlen)
			break;
		if (len == wlen && memcmp(in + i + 1, want, len) == 0)
			return in + i + 1;
		i += 1 + len;
	}
	return NULL;
}

/* HTTP/2 when the client offers it (h2.c serves it), else HTTP/1.1; a
 * client that offers neither gets no ALPN (and may still speak HTTP/1.1). */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	const unsigned char *p = alpn_find(in, inlen, alpn_h2, sizeof(alpn_h2) - 1);

	(void)ssl, (void)arg;
	if (p) {
		*out = p;
		*outlen = sizeof(alpn_h2) - 1;
		return SSL_TLSEXT_ERR_OK;
	}
	p = alpn_find(in, inlen, alpn_http11, sizeof(alpn_http11) - 1);
	if (p) {
		*out = p;
		*outlen = sizeof(alpn_http11) - 1;
		return SSL_TLSEXT_ERR_OK;
	}
	return SSL_TLSEXT_ERR_NOACK;
}

bool hc_proxy_tls_alpn_h2(const struct hc_proxy_conn *c)
{
	const unsigned char *p;
	unsigned int len;

	SSL_get0_alpn_selected(c->ssl, &p, &len);
	return len == sizeof(alpn_h2) - 1 && memcmp(p, alpn_h2, len) == 0;
}

static void openssl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();

	if (e)
		ERR_error_string_n(e, buf, len);
	else
		snprintf(buf, len, "unknown error");
	ERR_clear_error();
}

/* The private key from a file only its owner may read (a key others can
 * read is no longer private: refused, at start and at every reload). */
static int use_key_file(SSL_CTX *ctx, const char *path, struct hc_err *err)
{
	char *buf = malloc(KEY_FILE_MAX), why[256];
	EVP_PKEY *pkey = NULL;
	size_t n = 0;
	BIO *bio;
	int r;

	if (!buf)
		return hc_err_set(err, -ENOMEM, "out of memory");
	r = hc_file_read_private(path, buf, KEY_FILE_MAX, &n);
	if (r == -EPERM) {
		hc_err_set(err, r, "--cluster-tls-key %s must be a regular file only its owner "
			   "can read (chmod 600 %s)", path, path);
		goto out;
	}
	if (r < 0) {
		hc_err_set(err, r, "--cluster-tls-key %s: %s", path,
			   r == -EFBIG ? "too large for a key" : strerror(-r));
		goto out;
	}
	bio = BIO_new_mem_buf(buf, (int)n);
	pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (!pkey || SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
		openssl_reason(why, sizeof(why));
		r = hc_err_set(err, -EINVAL, "--cluster-tls-key %s: %s", path, why);
	}
out:
	EVP_PKEY_free(pkey); /* the context holds its own reference */
	OPENSSL_cleanse(buf, KEY_FILE_MAX);
	free(buf);
	return r;
}

/* Versions, ciphers, groups, modes and callbacks: everything but the keys. */
static int ctx_configure(SSL_CTX *ctx, struct hc_proxy_tickets *t)
{
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* A read takes what the socket holds, not a record's 5-byte header and
	 * then its body: one recv instead of two per record. The readers stop
	 * at WANT_READ or look at SSL_has_pending(), which counts what was read
	 * ahead, so nothing waits in OpenSSL for an edge that never comes. */
	SSL_CTX_set_read_ahead(ctx, 1);
	/* Resumption by tickets only: no session cache (shared by the
	 * workers, locked per handshake) and nothing per session kept here. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_app_data(ctx, t);
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1 ||
	    SSL_CTX_set1_groups_list(ctx, tls_groups) != 1 ||
	    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) != 1)
		return -EINVAL;
	SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
	return 0;
}

SSL_CTX *hc_proxy_tls_ctx_new(const char *cert, const char *key, struct hc_proxy_tickets *t,
			      struct hc_err *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char why[256];

	if (!ctx || ctx_configure(ctx, t) < 0) {
		openssl_reason(why, sizeof(why));
		hc_err_set(err, -EINVAL, "TLS: %s", why);
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		openssl_reason(why, sizeof(why));
		hc_err_set(err, -EINVAL, "--cluster-tls-cert %s: %s", cert, why);
		goto fail;
	}
	if (use_key_file(ctx, key, err) < 0)
		goto fail;
	if (SSL_CTX_check_private_key(ctx) != 1) {
		hc_err_set(err, -EINVAL, "--cluster-tls-key %s does not match the certificate %s",
			   key, cert);
		ERR_clear_error();
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

int hc_proxy_tls_handshake(struct hc_proxy_conn *c)
{
	int r;

	ERR_clear_error(); /* per thread: not ours to judge this call by */
	r = SSL_accept(c->ssl);

	if (r == 1)
		return 1;
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		r = hc_proxy_watch(c, false, EPOLLIN);
		return r < 0 ? r : 0;
	case SSL_ERROR_WANT_WRITE:
		r = hc_proxy_watch(c, false, EPOLLOUT);
		return r < 0 ? r : 0;
	default:
		ERR_clear_error();
		return -EPROTO;
	}
}
