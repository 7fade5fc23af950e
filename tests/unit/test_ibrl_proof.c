/* Execution proofs (agent/ibrl/proof.c, proof_log.c): a chain written to its
 * log verifies, and every kind of tampering makes it INVALID for its reason. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ibrl/ibrl.h"
#include "tmpdir.h"

#define ID "0b6f1f7e-3c1a-4d5e-9f00-1234567890ab"
#define OTHER "1b6f1f7e-3c1a-4d5e-9f00-1234567890ab"
#define ENTRIES 5

static char dir[64], keydir[80], otherdir[80];
static struct hc_ibrl_identity *key, *other_key;

static int setup(void **state)
{
	struct hc_err err;

	(void)state;
	if (hc_tmpdir_new(dir, sizeof(dir), "hc-proof") < 0)
		return -1;
	snprintf(keydir, sizeof(keydir), "%s/k1", dir);
	snprintf(otherdir, sizeof(otherdir), "%s/k2", dir);
	if (hc_mkdir_p(keydir, 0700) < 0 || hc_mkdir_p(otherdir, 0700) < 0)
		return -1;
	if (hc_ibrl_identity_open(keydir, &key, &err) < 0 ||
	    hc_ibrl_identity_open(otherdir, &other_key, &err) < 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	hc_ibrl_identity_free(key);
	hc_ibrl_identity_free(other_key);
	return hc_tmpdir_remove(dir);
}

/* The next entry after *prev (NULL: the first), as the agent makes it. */
static void next_proof(const struct hc_ibrl_identity *k, const struct hc_ibrl_proof *prev,
		       struct hc_ibrl_proof *p)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->workload_id, sizeof(p->workload_id), "%s", ID);
	snprintf(p->hypervisor, sizeof(p->hypervisor), "runc");
	p->timestamp_ms = prev ? prev->timestamp_ms + 5000 : 1700000000000;
	for (int i = 0; i < HC_IBRL_METRICS; i++)
		p->metrics[i] = prev ? prev->metrics[i] + (i == HC_IBRL_RESTARTS ? 0 : 10) : 1;
	if (prev)
		memcpy(p->prev_hash, prev->hash, HC_IBRL_HASH_LEN);
	assert_int_equal(hc_ibrl_proof_seal(k, p), 0);
}

/* Writes a fresh chain of n entries for ID; returns the log's text. */
static char *write_chain(int n, struct hc_ibrl_proof *last, size_t *len)
{
	struct hc_ibrl_proof p, prev;
	char *text;

	assert_int_equal(hc_ibrl_proof_log_remove(dir, ID), 0);
	for (int i = 0; i < n; i++) {
		next_proof(key, i ? &prev : NULL, &p);
		assert_int_equal(hc_ibrl_proof_log_append(dir, ID, &p, i == n - 1), 0);
		prev = p;
	}
	if (last)
		*last = prev;
	assert_int_equal(hc_ibrl_proof_log_read(dir, ID, &text, len), 0);
	return text;
}

/* Line i (0-based) of text: where it starts and its length with newline. */
static size_t line_at(const char *text, int i, size_t *len)
{
	const char *p = text;

	while (i--)
		p = strchr(p, '\n') + 1;
	*len = (size_t)(strchr(p, '\n') - p) + 1;
	return (size_t)(p - text);
}

static enum hc_ibrl_reason verify(const char *text, size_t len, const uint8_t *head,
				  enum hc_ibrl_verdict want)
{
	struct hc_ibrl_chain_report rep;

	assert_int_equal(hc_ibrl_chain_verify(text, len, ID, hc_ibrl_identity_public(key), head,
					      &rep),
			 want);
	return rep.reason;
}

static void test_encoding_is_fixed(void **state)
{
	struct hc_ibrl_proof p;
	uint8_t buf[160];
	int n;

	(void)state;
	memset(&p, 0, sizeof(p));
	snprintf(p.workload_id, sizeof(p.workload_id), "%s", ID);
	snprintf(p.hypervisor, sizeof(p.hypervisor), "runsc");
	p.timestamp_ms = 0x0102030405060708;
	p.metrics[HC_IBRL_CPU_NS] = 0x1122334455667788ull;
	n = hc_ibrl_proof_encode(&p, buf, sizeof(buf));
	/* magic, u16 len + id, key, be64 ts, 6 x be64, u16 len + hypervisor */
	assert_int_equal(n, 8 + 2 + 36 + 32 + 8 + 48 + 2 + 5);
	assert_memory_equal(buf, "HCPROOF1\x00\x24" ID, 46);
	assert_memory_equal(buf + 78, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
	assert_memory_equal(buf + 86, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
	assert_memory_equal(buf + n - 7, "\x00\x05runsc", 7);
	snprintf(p.hypervisor, sizeof(p.hypervisor), "Bad Name");
	assert_int_equal(hc_ibrl_proof_encode(&p, buf, sizeof(buf)), -EINVAL);
}

static void test_line_round_trip(void **state)
{
	struct hc_ibrl_proof p, q;
	char line[HC_IBRL_PROOF_LINE_MAX];
	int n;

	(void)state;
	next_proof(key, NULL, &p);
	n = hc_ibrl_proof_format(&p, line, sizeof(line));
	assert_true(n > 0 && line[n - 1] == '\n');
	assert_int_equal(hc_ibrl_proof_parse(line, (size_t)n, &q), 0);
	assert_memory_equal(&p, &q, sizeof(p));
	line[3] = 'x'; /* the id */
	assert_int_equal(hc_ibrl_proof_parse(line, (size_t)n, &q), -EINVAL);
}

static void test_chain_verifies(void **state)
{
	struct hc_ibrl_proof last;
	size_t len;
	char *text = write_chain(ENTRIES, &last, &len);

	(void)state;
	assert_int_equal(verify(text, len, NULL, HC_IBRL_VALID), HC_IBRL_OK);
	assert_int_equal(verify(text, len, last.hash, HC_IBRL_VALID), HC_IBRL_OK);
	free(text);
}

static void test_edited_metrics(void **state)
{
	size_t len, l, at;
	char *text = write_chain(ENTRIES, NULL, &len), *p;

	(void)state;
	at = line_at(text, 2, &l);
	p = strstr(text + at, " runc ") + 6; /* cpu_ns: claim more CPU */
	*p = *p == '9' ? '8' : (char)(*p + 1);
	assert_int_equal(verify(text, len, NULL, HC_IBRL_INVALID), HC_IBRL_HASH_MISMATCH);
	free(text);
}

static void test_wrong_key(void **state)
{
	struct hc_ibrl_proof p;
	struct hc_ibrl_chain_report rep;
	size_t len;
	char *text = write_chain(ENTRIES, NULL, &len);

	(void)state;
	/* the right chain under another node's key */
	assert_int_equal(hc_ibrl_chain_verify(text, len, ID, hc_ibrl_identity_public(other_key),
					      NULL, &rep),
			 HC_IBRL_INVALID);
	assert_int_equal(rep.reason, HC_IBRL_WRONG_KEY);
	assert_int_equal(rep.line, 1);
	free(text);
	/* an entry sealed by another key, appended */
	text = write_chain(ENTRIES, &p, &len);
	free(text);
	next_proof(other_key, &p, &p);
	assert_int_equal(hc_ibrl_proof_log_append(dir, ID, &p, false), 0);
	assert_int_equal(hc_ibrl_proof_log_read(dir, ID, &text, &len), 0);
	assert_int_equal(verify(text, len, NULL, HC_IBRL_INVALID), HC_IBRL_WRONG_KEY);
	free(text);
	/* and one whose key field was swapped in: its signature fails */
	text = write_chain(ENTRIES, &p, &len);
	free(text);
	next_proof(other_key, &p, &p);
	memcpy(p.node_key, hc_ibrl_identity_public(key), HC_IBRL_PUBLIC_LEN);
	assert_int_equal(hc_ibrl_proof_log_append(dir, ID, &p, false), 0);
	assert_int_equal(hc_ibrl_proof_log_read(dir, ID, &text, &len), 0);
	assert_int_equal(verify(text, len, NULL, HC_IBRL_INVALID), HC_IBRL_HASH_MISMATCH);
	free(text);
}

static void test_replayed_old_proof(void **state)
{
	size_t len, l, at;
	char *text = write_chain(ENTRIES, NULL, &len), *t;

	(void)state;
	at = line_at(text, 1, &l); /* the second entry again, at the end */
	t = malloc(len + l + 1);
	memcpy(t, text, len);
	memcpy(t + len, text + at, l);
	assert_int_equal(verify(t, len + l, NULL, HC_IBRL_INVALID), HC_IBRL_REPLAYED);
	free(t);
	free(text);
}

static void test_reordered_lines(void **state)
{
	size_t len, l1, l2, a1, a2;
	char *text = write_chain(ENTRIES, NULL, &len), *t = malloc(len + 1);

	(void)state;
	a1 = line_at(text, 2, &l1);
	a2 = line_at(text, 3, &l2);
	memcpy(t, text, a1);
	memcpy(t + a1, text + a2, l2);
	memcpy(t + a1 + l2, text + a1, l1);
	memcpy(t + a1 + l1 + l2, text + a2 + l2, len - a2 - l2);
	assert_int_equal(verify(t, len, NULL, HC_IBRL_INVALID), HC_IBRL_BROKEN_CHAIN);
	free(t);
	free(text);
}

static void test_truncated_log(void **state)
{
	struct hc_ibrl_proof last;
	size_t len, l, at;
	char *text = write_chain(ENTRIES, &last, &len);

	(void)state;
	/* the newest entries cut: the announced head is gone */
	at = line_at(text, 3, &l);
	assert_int_equal(verify(text, at, last.hash, HC_IBRL_INVALID), HC_IBRL_TRUNCATED);
	/* the oldest cut: the chain no longer starts at its beginning */
	at = line_at(text, 1, &l);
	assert_int_equal(verify(text + at, len - at, NULL, HC_IBRL_INVALID), HC_IBRL_TRUNCATED);
	/* a middle entry removed */
	at = line_at(text, 2, &l);
	memmove(text + at, text + at + l, len - at - l);
	assert_int_equal(verify(text, len - l, NULL, HC_IBRL_INVALID), HC_IBRL_BROKEN_CHAIN);
	/* nothing: unknown, not valid */
	assert_int_equal(verify(text, 0, NULL, HC_IBRL_UNKNOWN), HC_IBRL_NO_PROOFS);
	free(text);
}

static void test_counters_and_time(void **state)
{
	struct hc_ibrl_proof a, b;

	(void)state;
	next_proof(key, NULL, &a);
	next_proof(key, &a, &b);
	assert_int_equal(hc_ibrl_proof_follows(&a, &b), HC_IBRL_OK);
	b.timestamp_ms = a.timestamp_ms;
	assert_int_equal(hc_ibrl_proof_follows(&a, &b), HC_IBRL_TIMESTAMP);
	next_proof(key, &a, &b);
	b.metrics[HC_IBRL_TX_BYTES] = a.metrics[HC_IBRL_TX_BYTES] - 1;
	assert_int_equal(hc_ibrl_proof_follows(&a, &b), HC_IBRL_COUNTER);
	next_proof(key, &a, &b);
	b.metrics[HC_IBRL_UPTIME_S] = 0; /* uptime restarts only with a restart */
	assert_int_equal(hc_ibrl_proof_follows(&a, &b), HC_IBRL_COUNTER);
	b.metrics[HC_IBRL_RESTARTS]++;
	assert_int_equal(hc_ibrl_proof_follows(&a, &b), HC_IBRL_OK);
}

/* A node that signs a counter going down: the chain links, but says so. */
static void test_signed_counter_drop(void **state)
{
	struct hc_ibrl_proof p, q;
	size_t len;
	char *text = write_chain(ENTRIES, &p, &len);

	(void)state;
	free(text);
	next_proof(key, &p, &q);
	q.metrics[HC_IBRL_CPU_NS] = 0;
	assert_int_equal(hc_ibrl_proof_seal(key, &q), 0);
	assert_int_equal(hc_ibrl_proof_log_append(dir, ID, &q, false), 0);
	assert_int_equal(hc_ibrl_proof_log_read(dir, ID, &text, &len), 0);
	assert_int_equal(verify(text, len, NULL, HC_IBRL_INVALID), HC_IBRL_COUNTER);
	free(text);
}

/* An agent restart continues the chain from the log's last entry, and a
 * line torn by a crash is cut off first. */
static void test_restart_continuity(void **state)
{
	struct hc_ibrl_proof last, got, next;
	char path[PATH_MAX];
	size_t len;
	char *text = write_chain(ENTRIES, &last, &len);
	FILE *f;

	(void)state;
	free(text);
	assert_int_equal(hc_ibrl_proof_log_path(dir, ID, path, sizeof(path)), 0);
	f = fopen(path, "a");
	fputs("v1 " ID " 17000", f); /* torn */
	fclose(f);
	assert_int_equal(hc_ibrl_proof_log_last(dir, ID, &got), 0);
	assert_memory_equal(&got, &last, sizeof(got));
	next_proof(key, &got, &next);
	assert_int_equal(hc_ibrl_proof_log_append(dir, ID, &next, true), 0);
	assert_int_equal(hc_ibrl_proof_log_read(dir, ID, &text, &len), 0);
	assert_int_equal(verify(text, len, next.hash, HC_IBRL_VALID), HC_IBRL_OK);
	free(text);
	/* removed with the workload */
	assert_int_equal(hc_ibrl_proof_log_remove(dir, ID), 0);
	assert_int_equal(hc_ibrl_proof_log_last(dir, ID, &got), -ENOENT);
	assert_int_equal(hc_ibrl_proof_log_path(dir, "../x", path, sizeof(path)), -EINVAL);
}

static void test_other_workload_and_garbage(void **state)
{
	struct hc_ibrl_chain_report rep;
	size_t len;
	char *text = write_chain(ENTRIES, NULL, &len);

	(void)state;
	assert_int_equal(hc_ibrl_chain_verify(text, len, OTHER, hc_ibrl_identity_public(key), NULL,
					      &rep),
			 HC_IBRL_INVALID);
	assert_int_equal(rep.reason, HC_IBRL_WRONG_WORKLOAD);
	assert_int_equal(hc_ibrl_chain_verify(text, len, ID, NULL, NULL, &rep), HC_IBRL_UNKNOWN);
	assert_int_equal(rep.reason, HC_IBRL_NO_KEY);
	text[10] = ' ';
	assert_int_equal(verify(text, len, NULL, HC_IBRL_INVALID), HC_IBRL_MALFORMED);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encoding_is_fixed),
		cmocka_unit_test(test_line_round_trip),
		cmocka_unit_test(test_chain_verifies),
		cmocka_unit_test(test_edited_metrics),
		cmocka_unit_test(test_wrong_key),
		cmocka_unit_test(test_replayed_old_proof),
		cmocka_unit_test(test_reordered_lines),
		cmocka_unit_test(test_truncated_log),
		cmocka_unit_test(test_counters_and_time),
		cmocka_unit_test(test_signed_counter_drop),
		cmocka_unit_test(test_restart_continuity),
		cmocka_unit_test(test_other_workload_and_garbage),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
