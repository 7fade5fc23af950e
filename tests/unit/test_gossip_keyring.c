/* gossip keyring: serf key semantics, AES-GCM on captured encrypted traffic, keyring file. */
#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "serfvec.h"
#include <openssl/evp.h>

#include "gossip/keyring_int.h"
#include "gossip/wire_int.h"

/* The key of the captured encrypted run (KEY.txt). */
static const char key_b64[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

static void capture_key(uint8_t key[32])
{
	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)i;
}


static struct hc_gossip_keyring *keyring_with(const uint8_t *key, size_t len)
{
	struct hc_gossip_keyring *kr = hc_gossip_keyring_new();

	assert_non_null(kr);
	assert_int_equal(hc_gossip_keyring_install(kr, key, len), 0);
	return kr;
}

static void test_install_use_remove_follow_serf(void **state)
{
	uint8_t k16[16] = { 1 }, k24[24] = { 2 }, k32[32] = { 3 }, k20[20] = { 4 };
	struct hc_gossip_keyring *kr = hc_gossip_keyring_new();
	size_t len;

	(void)state;
	assert_non_null(kr);
	assert_int_equal(hc_gossip_keyring_install(kr, k20, sizeof(k20)), -EINVAL);
	assert_int_equal(hc_gossip_keyring_install(kr, k16, sizeof(k16)), 0);
	assert_int_equal(hc_gossip_keyring_install(kr, k24, sizeof(k24)), 0);
	assert_int_equal(hc_gossip_keyring_install(kr, k32, sizeof(k32)), 0);
	assert_int_equal(hc_gossip_keyring_install(kr, k24, sizeof(k24)), 0); /* no-op */
	assert_int_equal(hc_gossip_keyring_count(kr), 3);
	/* The first key installed is primary. */
	assert_memory_equal(hc_gossip_keyring_key(kr, 0, &len), k16, 16);
	assert_int_equal(len, 16);
	assert_int_equal(hc_gossip_keyring_use(kr, k20, sizeof(k20)), -ENOENT);
	assert_int_equal(hc_gossip_keyring_use(kr, k32, sizeof(k32)), 0);
	assert_memory_equal(hc_gossip_keyring_key(kr, 0, &len), k32, 32);
	assert_memory_equal(hc_gossip_keyring_key(kr, 1, &len), k16, 16);
	assert_memory_equal(hc_gossip_keyring_key(kr, 2, &len), k24, 24);
	assert_null(hc_gossip_keyring_key(kr, 3, &len));
	assert_int_equal(hc_gossip_keyring_remove(kr, k32, sizeof(k32)), -EBUSY);
	assert_int_equal(hc_gossip_keyring_remove(kr, k16, sizeof(k16)), 0);
	assert_int_equal(hc_gossip_keyring_remove(kr, k16, sizeof(k16)), 0); /* absent: done */
	assert_int_equal(hc_gossip_keyring_count(kr), 2);
	assert_memory_equal(hc_gossip_keyring_key(kr, 1, &len), k24, 24);
	hc_gossip_keyring_free(kr);
	hc_gossip_keyring_free(NULL);
}

static void test_base64_keys(void **state)
{
	uint8_t key[HC_GOSSIP_KEY_MAX], want[32];
	char b64[64];
	size_t len;

	(void)state;
	capture_key(want);
	assert_int_equal(hc_gossip_key_from_base64(key_b64, key, &len), 0);
	assert_int_equal(len, 32);
	assert_memory_equal(key, want, 32);
	assert_int_equal(hc_gossip_key_to_base64(key, len, b64, sizeof(b64)), 0);
	assert_string_equal(b64, key_b64);
	assert_int_equal(hc_gossip_key_from_base64("AAECAwQFBgcICQoLDA0ODw==", key, &len), 0);
	assert_int_equal(len, 16);
	/* 15 bytes, bad characters, bad padding, too long. */
	assert_int_equal(hc_gossip_key_from_base64("AAECAwQFBgcICQoLDA0O", key, &len), -EINVAL);
	assert_int_equal(hc_gossip_key_from_base64("AAECAwQFBgcICQoLDA0ODw!=", key, &len),
			 -EINVAL);
	assert_int_equal(hc_gossip_key_from_base64("AAECAwQFBgcICQoLDA0ODw=", key, &len),
			 -EINVAL);
	assert_int_equal(hc_gossip_key_from_base64("", key, &len), -EINVAL);
	assert_int_equal(hc_gossip_key_to_base64(key, 16, b64, 24), -EINVAL);
}

struct seen {
	struct hc_gossip_msg msgs[4];
	size_t n;
};

static void on_msg(const struct hc_gossip_msg *m, void *arg)
{
	struct seen *s = arg;

	if (s->n < 4)
		s->msgs[s->n] = *m;
	s->n++;
}

static void test_captured_encrypted_datagrams_decrypt(void **state)
{
	uint8_t key[32];
	struct hc_gossip_keyring *kr;
	struct serf_vec v = serf_vec_load("encrypted_gossip.hex"), plain = serf_vec_load("alive_compound_crc.hex");
	struct hc_gossip_serf_msg q;
	struct seen s = { .n = 0 };
	uint8_t *out;
	size_t len;

	(void)state;
	capture_key(key);
	kr = keyring_with(key, sizeof(key));
	assert_int_equal(v.p[0], 1); /* encryption version 1 */
	assert_int_equal(hc_gossip_decrypt_packet(kr, v.p, v.len, &out, &len), 0);
	assert_int_equal(len, v.len - HC_GOSSIP_ENC_OVERHEAD);
	/* Same gossip as the plaintext run, byte for byte. */
	assert_int_equal(len, plain.len);
	assert_memory_equal(out, plain.p, len);
	free(out);
	assert_int_equal(hc_gossip_datagram_walk(kr, v.p, v.len, on_msg, &s), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.msgs[0].type, HC_GOSSIP_MSG_ALIVE);
	free(v.p);
	free(plain.p);

	v = serf_vec_load("encrypted_ping.hex");
	s.n = 0;
	assert_int_equal(hc_gossip_datagram_walk(kr, v.p, v.len, on_msg, &s), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.msgs[0].type, HC_GOSSIP_MSG_PING);
	assert_int_equal(s.msgs[0].u.ping.seq_no, 1);
	assert_int_equal(s.msgs[0].u.ping.source_port, 7946);
	free(v.p);

	/* The walk's message borrows from freed plaintext, so decode inside. */
	v = serf_vec_load("encrypted_query.hex");
	assert_int_equal(hc_gossip_decrypt_packet(kr, v.p, v.len, &out, &len), 0);
	s.n = 0;
	assert_int_equal(hc_gossip_packet_walk(out, len, on_msg, &s), 0);
	assert_int_equal(s.msgs[0].type, HC_GOSSIP_MSG_USER);
	assert_int_equal(hc_gossip_serf_decode(s.msgs[0].u.user.ptr, s.msgs[0].u.user.len, &q), 0);
	assert_int_equal(q.type, HC_GOSSIP_SERF_QUERY);
	assert_int_equal(q.u.query.id, 1322916525);
	assert_int_equal(q.u.query.timeout_ns, 2000000000);
	hc_gossip_serf_msg_fini(&q);
	free(out);
	free(v.p);
	hc_gossip_keyring_free(kr);
}

static void test_captured_encrypted_stream_decrypts(void **state)
{
	uint8_t key[32], *msg, *plain;
	struct hc_gossip_keyring *kr;
	struct serf_vec v = serf_vec_load("encrypted_pushpull_tcp.hex");
	struct hc_gossip_push_pull pp;
	size_t len, plain_len, consumed;

	(void)state;
	capture_key(key);
	kr = keyring_with(key, sizeof(key));
	assert_int_equal(v.p[0], HC_GOSSIP_MSG_ENCRYPT);
	assert_int_equal(hc_gossip_decrypt_stream(kr, v.p, v.len, &plain, &plain_len, &consumed), 0);
	assert_int_equal(consumed, v.len);
	assert_int_equal(plain_len, 212);
	assert_int_equal(plain[0], HC_GOSSIP_MSG_COMPRESS);
	free(plain);
	assert_int_equal(hc_gossip_stream_open(kr, v.p, v.len, &msg, &len), 0);
	assert_int_equal(hc_gossip_push_pull_decode(msg, len, &pp), 0);
	assert_true(pp.join);
	assert_int_equal(pp.nnodes, 1);
	assert_memory_equal(pp.nodes[0].name.ptr, "b", 1);
	assert_int_equal(pp.user_state.len, 585);
	hc_gossip_push_pull_fini(&pp);
	free(msg);
	/* Every cut of the frame just asks for more bytes. */
	for (size_t cut = 0; cut < v.len; cut++)
		assert_int_equal(hc_gossip_stream_open(kr, v.p, cut, &msg, &len), -ENODATA);
	/* No mixed mode in either direction. */
	assert_int_equal(hc_gossip_stream_open(NULL, v.p, v.len, &msg, &len), -EACCES);
	assert_int_equal(hc_gossip_stream_open(kr, (const uint8_t *)"\x06\x80", 2, &msg, &len),
			 -EACCES);
	free(v.p);
	hc_gossip_keyring_free(kr);
}

static void test_wrong_key_corruption_and_bad_versions_are_dropped(void **state)
{
	uint8_t key[32], other[16] = { 9 }, *out;
	struct hc_gossip_keyring *kr = keyring_with(other, sizeof(other));
	struct serf_vec v = serf_vec_load("encrypted_ping.hex");
	struct seen s = { .n = 0 };
	size_t len;

	(void)state;
	capture_key(key);
	assert_int_equal(hc_gossip_datagram_walk(kr, v.p, v.len, on_msg, &s), -EKEYREJECTED);
	assert_int_equal(hc_gossip_drop_reason(-EKEYREJECTED), HC_GOSSIP_DROP_DECRYPT);
	/* Every key is tried, not only the primary. */
	assert_int_equal(hc_gossip_keyring_install(kr, key, sizeof(key)), 0);
	assert_int_equal(hc_gossip_datagram_walk(kr, v.p, v.len, on_msg, &s), 0);
	for (size_t i = 1; i < v.len; i++) {
		v.p[i] ^= 1;
		assert_int_equal(hc_gossip_decrypt_packet(kr, v.p, v.len, &out, &len), -EKEYREJECTED);
		v.p[i] ^= 1;
	}
	for (size_t cut = 0; cut < v.len; cut++)
		assert_int_not_equal(hc_gossip_decrypt_packet(kr, v.p, cut, &out, &len), 0);
	v.p[0] = 2;
	assert_int_equal(hc_gossip_decrypt_packet(kr, v.p, v.len, &out, &len), -EPROTONOSUPPORT);
	/* A plaintext ping while encryption is on never reaches the decoder. */
	free(v.p);
	v = serf_vec_load("ping.hex");
	s.n = 0;
	assert_int_equal(hc_gossip_datagram_walk(kr, v.p, v.len, on_msg, &s), -EKEYREJECTED);
	assert_int_equal(s.n, 0);
	free(v.p);
	hc_gossip_keyring_free(kr);
}

static void test_our_packets_and_streams_round_trip_for_every_key_size(void **state)
{
	static const size_t sizes[] = { 16, 24, 32 };
	static const uint8_t msg[] = "\x0b\x81\xa5SeqNo\x07";

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		uint8_t key[32], *out;
		struct hc_gossip_keyring *kr;
		struct hc_gossip_mp_writer w;
		size_t len, consumed;

		memset(key, (int)i + 1, sizeof(key));
		kr = keyring_with(key, sizes[i]);
		hc_gossip_mp_writer_init(&w, 0);
		assert_int_equal(hc_gossip_encrypt_packet(kr, msg, 9, &w), 0);
		assert_int_equal(w.len, 9 + HC_GOSSIP_ENC_OVERHEAD);
		assert_int_equal(w.buf[0], 1);
		assert_int_equal(hc_gossip_decrypt_packet(kr, w.buf, w.len, &out, &len), 0);
		assert_int_equal(len, 9);
		assert_memory_equal(out, msg, 9);
		free(out);
		w.len = 0;
		assert_int_equal(hc_gossip_encrypt_stream(kr, msg, 9, &w), 0);
		assert_memory_equal(w.buf, "\x0a\x00\x00\x00\x26", 5); /* 9 + 29 */
		assert_int_equal(hc_gossip_decrypt_stream(kr, w.buf, w.len, &out, &len, &consumed), 0);
		assert_int_equal(consumed, w.len);
		assert_memory_equal(out, msg, 9);
		free(out);
		/* The 5 header bytes are AAD: without them the tag does not verify. */
		assert_int_equal(hc_gossip_decrypt_packet(kr, w.buf + 5, w.len - 5, &out, &len),
				 -EKEYREJECTED);
		hc_gossip_mp_writer_fini(&w);
		hc_gossip_keyring_free(kr);
	}
}

/* Seals like memberlist protocol 1 (encryption version 0): PKCS#7 padding. */
static size_t seal_version0(const uint8_t key[16], const uint8_t *msg, size_t len, uint8_t *out)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	uint8_t padded[64];
	size_t plen = (len / 16 + 1) * 16;
	int n;

	assert_non_null(ctx);
	memcpy(padded, msg, len);
	memset(padded + len, (int)(plen - len), plen - len);
	out[0] = 0;
	memset(out + 1, 7, 12);
	assert_int_equal(EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), NULL, key, out + 1), 1);
	assert_int_equal(EVP_EncryptUpdate(ctx, out + 13, &n, padded, (int)plen), 1);
	assert_int_equal(EVP_EncryptFinal_ex(ctx, out + 13 + plen, &n), 1);
	assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out + 13 + plen), 1);
	EVP_CIPHER_CTX_free(ctx);
	return 13 + plen + 16;
}

static void test_version0_padding_is_stripped(void **state)
{
	uint8_t key[16] = { 5 }, sealed[128], *out;
	struct hc_gossip_keyring *kr = keyring_with(key, sizeof(key));
	size_t len, n;

	(void)state;
	n = seal_version0(key, (const uint8_t *)"0123456789abcdef", 16, sealed);
	assert_int_equal(n, 61); /* a full block of padding */
	assert_int_equal(hc_gossip_decrypt_packet(kr, sealed, n, &out, &len), 0);
	assert_int_equal(len, 16);
	assert_memory_equal(out, "0123456789abcdef", 16);
	free(out);
	n = seal_version0(key, (const uint8_t *)"abc", 3, sealed);
	assert_int_equal(hc_gossip_decrypt_packet(kr, sealed, n, &out, &len), 0);
	assert_int_equal(len, 3);
	free(out);
	hc_gossip_keyring_free(kr);
}

static char *read_text(const char *path)
{
	static char buf[1024];
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void test_keyring_file_saves_like_serf_and_loads_back(void **state)
{
	char dir[] = "/tmp/hc-keyring-XXXXXX", path[64];
	uint8_t key[32], k16[16];
	struct hc_gossip_keyring *kr, *back;
	struct stat st;
	size_t len;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/keyring", dir);
	capture_key(key);
	memset(k16, 0, sizeof(k16));
	kr = keyring_with(key, sizeof(key));
	assert_int_equal(hc_gossip_keyring_install(kr, k16, sizeof(k16)), 0);
	assert_int_equal(hc_gossip_keyring_save(kr, path), 0);
	assert_string_equal(read_text(path), "[\n  \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\","
					     "\n  \"AAAAAAAAAAAAAAAAAAAAAA==\"\n]");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* the keyring is all the save left in the directory */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(hc_gossip_keyring_save(kr, path), 0);

	back = hc_gossip_keyring_new();
	assert_non_null(back);
	assert_int_equal(hc_gossip_keyring_load(back, path), 0);
	assert_int_equal(hc_gossip_keyring_count(back), 2);
	assert_memory_equal(hc_gossip_keyring_key(back, 0, &len), key, 32);
	assert_memory_equal(hc_gossip_keyring_key(back, 1, &len), k16, 16);

	/* Broken files leave the keyring as it was. */
	write_text(path, "[]");
	assert_int_equal(hc_gossip_keyring_load(back, path), -EINVAL);
	write_text(path, "[\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\", \"nope\"]");
	assert_int_equal(hc_gossip_keyring_load(back, path), -EINVAL);
	write_text(path, "{\"keys\": []}");
	assert_int_equal(hc_gossip_keyring_load(back, path), -EINVAL);
	assert_int_equal(hc_gossip_keyring_count(back), 2);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(hc_gossip_keyring_load(back, path), -ENOENT);
	assert_int_equal(rmdir(dir), 0);
	hc_gossip_keyring_free(back);
	hc_gossip_keyring_free(kr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_install_use_remove_follow_serf),
		cmocka_unit_test(test_base64_keys),
		cmocka_unit_test(test_captured_encrypted_datagrams_decrypt),
		cmocka_unit_test(test_captured_encrypted_stream_decrypts),
		cmocka_unit_test(test_wrong_key_corruption_and_bad_versions_are_dropped),
		cmocka_unit_test(test_our_packets_and_streams_round_trip_for_every_key_size),
		cmocka_unit_test(test_version0_padding_is_stripped),
		cmocka_unit_test(test_keyring_file_saves_like_serf_and_loads_back),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
