/* Private to agent/gossip: memberlist's AES-GCM keyring (keyring.c): keys,
 * base64, serf's keyring file, packet and stream encryption. */
#ifndef HC_GOSSIP_KEYRING_INT_H
#define HC_GOSSIP_KEYRING_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/msgpack_int.h"

#define HC_GOSSIP_KEY_MAX 32
#define HC_GOSSIP_ENC_OVERHEAD 29 /* vsn + nonce + tag, encryption version 1 */

struct hc_gossip_keyring; /* ordered keys, index 0 = primary */

/* Returns an empty keyring (NULL with errno ENOMEM). */
struct hc_gossip_keyring *hc_gossip_keyring_new(void);
void hc_gossip_keyring_free(struct hc_gossip_keyring *kr);

/* memberlist semantics: install adds a 16/24/32-byte key (-EINVAL for other
 * lengths; no-op if present; the first becomes primary); use makes an
 * installed key primary (-ENOENT if absent), the others keep their order;
 * remove refuses the primary (-EBUSY) and, like Go, succeeds for an absent
 * key. */
int hc_gossip_keyring_install(struct hc_gossip_keyring *kr, const uint8_t *key, size_t len);
int hc_gossip_keyring_use(struct hc_gossip_keyring *kr, const uint8_t *key, size_t len);
int hc_gossip_keyring_remove(struct hc_gossip_keyring *kr, const uint8_t *key, size_t len);
size_t hc_gossip_keyring_count(const struct hc_gossip_keyring *kr);
/* Borrowed key i (0 = primary) and its length, or NULL past the end. */
const uint8_t *hc_gossip_keyring_key(const struct hc_gossip_keyring *kr, size_t i,
				     size_t *len);

/* Base64 (standard alphabet, padded) as in -encrypt and the keyring file. */
int hc_gossip_key_from_base64(const char *b64, uint8_t key[HC_GOSSIP_KEY_MAX], size_t *len);
/* Writes a NUL-terminated string into out (at least 45 bytes). */
int hc_gossip_key_to_base64(const uint8_t *key, size_t len, char *out, size_t out_size);

/* Keyring file (serf -keyring-file): JSON array of base64 keys, first =
 * primary. load replaces kr's keys with the file's, only if the whole file is
 * valid and holds at least one key (-ENOENT, -EINVAL otherwise); save writes
 * serf's layout over path atomically with mode 0600 (hc_file_write_atomic).
 * Both block on file I/O. */
int hc_gossip_keyring_load(struct hc_gossip_keyring *kr, const char *path);
int hc_gossip_keyring_save(const struct hc_gossip_keyring *kr, const char *path);

/* UDP: vsn 1 | nonce | ciphertext | tag, no AAD, with the primary key;
 * appends to w. -ENOKEY on an empty keyring. */
int hc_gossip_encrypt_packet(const struct hc_gossip_keyring *kr, const uint8_t *msg, size_t len,
			     struct hc_gossip_mp_writer *w);
/* Tries every key; accepts versions 0 (PKCS#7 padded) and 1. Plaintext goes
 * to a malloc'd *out (free() it). */
int hc_gossip_decrypt_packet(const struct hc_gossip_keyring *kr, const uint8_t *buf, size_t len,
			     uint8_t **out, size_t *out_len);
/* TCP: 0a | u32 BE length | vsn | nonce | ciphertext | tag, the 5 header
 * bytes as AAD. */
int hc_gossip_encrypt_stream(const struct hc_gossip_keyring *kr, const uint8_t *msg, size_t len,
			     struct hc_gossip_mp_writer *w);
/* -ENODATA while the frame is incomplete; *consumed is the frame length. */
int hc_gossip_decrypt_stream(const struct hc_gossip_keyring *kr, const uint8_t *buf, size_t len,
			     uint8_t **out, size_t *out_len, size_t *consumed);

#endif /* HC_GOSSIP_KEYRING_INT_H */
