/* TLS termination with OpenSSL 3: the wildcard certificate's context (TLS
 * 1.2 and 1.3, ALPN http/1.1) and the non-blocking handshake. */
#define HC_LOG_MODULE "proxy"

#include <errno.h>
#include <openssl/err.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>

#include "log/log.h"
#include "proxy/proxy_int.h"

static const unsigned char alpn_http11[] = "http/1.1";

/* We speak HTTP/1.1 to backends, so that is all we offer; a client that
 * offers ALPN without it gets no ALPN (and may still speak HTTP/1.1). */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl, (void)arg;
	for (unsigned int i = 0; i + 1 <= inlen;) {
		unsigned int len = in[i];

		if (i + 1 + len > inlen)
			break;
		if (len == sizeof(alpn_http11) - 1 && memcmp(in + i + 1, alpn_http11, len) == 0) {
			*out = in + i + 1;
			*outlen = (unsigned char)len;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + len;
	}
	return SSL_TLSEXT_ERR_NOACK;
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

SSL_CTX *hc_proxy_tls_ctx_new(const char *cert, const char *key, struct hc_err *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char why[256];

	if (!ctx) {
		openssl_reason(why, sizeof(why));
		hc_err_set(err, -EINVAL, "TLS: %s", why);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		openssl_reason(why, sizeof(why));
		hc_err_set(err, -EINVAL, "--cluster-tls-cert %s: %s", cert, why);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		openssl_reason(why, sizeof(why));
		hc_err_set(err, -EINVAL, "--cluster-tls-key %s: %s", key, why);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		hc_err_set(err, -EINVAL, "--cluster-tls-key %s does not match the certificate %s",
			   key, cert);
		ERR_clear_error();
		goto fail;
	}
	SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
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
