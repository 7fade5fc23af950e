/* Incremental Internet checksum updates (RFC 1624) for the XDP path, where
 * frames arrive from the wire with complete checksums. The TC path uses the
 * kernel's bpf_l3/l4_csum_replace instead, which also handle CHECKSUM_PARTIAL
 * skbs sent by local sockets. */
#ifndef HC_BPF_CSUM_H
#define HC_BPF_CSUM_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

static __always_inline __u16 hc_csum_fold(__u32 c)
{
	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	return (__u16)c;
}

/* HC' = ~(~HC + ~m + m') over the 16-bit words of a 32-bit field, as it
 * sits in memory (the one's-complement sum does not care about byte order). */
static __always_inline void hc_csum_replace4(__u16 *sum, __u32 from, __u32 to)
{
	__u32 c = (__u16)~*sum;

	c += (__u16)~(from & 0xffff) + (__u16)~(from >> 16);
	c += (to & 0xffff) + (to >> 16);
	*sum = ~hc_csum_fold(c);
}

static __always_inline void hc_csum_replace2(__u16 *sum, __u16 from, __u16 to)
{
	__u32 c = (__u16)~*sum;

	c += (__u16)~from + to;
	*sum = ~hc_csum_fold(c);
}

/* Replaces a 16-byte IPv6 address in a checksum. */
static __always_inline void hc_csum_replace16(__u16 *sum, const __u8 *from, const __u8 *to)
{
	const __u32 *f = (const __u32 *)from, *t = (const __u32 *)to;

#pragma unroll
	for (int i = 0; i < 4; i++)
		hc_csum_replace4(sum, f[i], t[i]);
}

#endif /* HC_BPF_CSUM_H */
