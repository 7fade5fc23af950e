/* The proxy's kernel splice: once the proxy has paired a client socket with
 * its backend socket, both sit in hc_splice (keyed by socket cookie) and
 * hc_splice_peer names each one's partner; the verdict program then moves
 * every received skb to the partner's send queue without waking userspace.
 * Kept in its own object: libbpf fails a whole object when the verifier
 * rejects one program, and sk_skb programs have their own helper rules. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include <hypercore/dataplane.h>

/* Socket cookie -> socket. Written by the proxy; read by the verdict. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, HC_SPLICE_MAX);
	__type(key, __u64);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hc_splice SEC(".maps");

/* Socket cookie -> the cookie of its partner. Written by the proxy. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HC_SPLICE_MAX);
	__type(key, __u64);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hc_splice_peer SEC(".maps");

/* A parser that takes each skb whole: the verdict sees every skb once, and
 * the proxy's epoll is not woken per skb as with a verdict alone. */
SEC("sk_skb/stream_parser")
int hc_sk_parser(struct __sk_buff *skb)
{
	return skb->len;
}

SEC("sk_skb/stream_verdict")
int hc_sk_verdict(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	__u64 *peer;

	/* A FIN arrives as an empty skb: it stays with the socket, so the
	 * proxy sees the end of stream and half-closes the partner itself. */
	if (skb->len == 0)
		return SK_PASS;
	peer = bpf_map_lookup_elem(&hc_splice_peer, &cookie);
	if (!peer)
		return SK_PASS;
	return bpf_sk_redirect_hash(skb, &hc_splice, peer, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
