/* hc_pktgen: a small UDP/IPv4 traffic generator for the data-plane benchmarks.
 *
 * Sends prebuilt Ethernet frames on one interface through an AF_PACKET raw
 * socket with PACKET_QDISC_BYPASS, in sendmmsg batches, for a given time or
 * packet count, then prints what it sent. xdp-trafficgen does not load on
 * this kernel (docs/datapath-facts.md, trap 6), hence this tool.
 *
 * Every frame carries full, computed IPv4 and UDP checksums: nothing is left
 * to offload, so a frame stays valid after an XDP redirect into another veth
 * (trap 2). Flows differ by UDP source port only: --flows N uses ports
 * --sport, --sport+1, ... --sport+N-1, sent round-robin.
 *
 * Without --dst-mac the next hop's MAC is asked for with ARP on the
 * interface itself (the peer of a veth answers for its addresses), so the
 * tool needs no neighbour entry and no prior traffic.
 *
 * Output, one line on stdout:
 *   sent=N seconds=S pps=P errors=E
 * errors counts the sendmmsg calls that stopped at a frame the device
 * refused (ENOBUFS and the like when it cannot take more); the rest of such a
 * batch is not retried, and only frames the kernel took are in sent.
 *
 * --mode xdp sends the same frames another way: a small XDP program per flow
 * (write the frame's headers, bpf_redirect to the interface) run by
 * BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES, so each frame enters
 * the interface through its ndo_xdp_xmit as an xdp_frame, the way frames
 * come off a NIC's receive ring, not as an skb. On a veth the peer's XDP
 * program then sees the frame without first converting an skb into an
 * xdp_buff (a copy no NIC needs). The peer must have NAPI (GRO on, or an XDP
 * program) or the kernel drops every frame. Nothing holds this mode back: a
 * frame the peer's ring has no room for is dropped there, and sent counts
 * every frame handed to the redirect.
 *
 * Must run as root (CAP_NET_RAW; CAP_BPF for --mode xdp). Only frames to the
 * given addresses are sent, on the given interface; the benchmarks keep it
 * inside network namespaces of their own.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/bpf.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PKTGEN_MAX_BATCH 1024
#define PKTGEN_MAX_FLOWS 65536
#define PKTGEN_MIN_PAYLOAD 0
/* Each BPF_PROG_TEST_RUN call costs ~20 ms of set-up and tear-down here
 * (page pool, memory model), so xdp mode sizes its calls to ~0.25 s. */
#define XDP_CALL_SECONDS 0.25
#define XDP_CALL_MIN 4096u
#define XDP_CALL_MAX (1u << 23)
#define XDP_MAX_BATCH 256 /* the kernel's limit for live frames */
#define XDP_MAX_FLOWS 1024 /* one small program per flow */
#define PKTGEN_HDR_LEN (sizeof(struct ether_header) + sizeof(struct iphdr) + sizeof(struct udphdr))
#define PKTGEN_MAX_PAYLOAD (ETH_DATA_LEN - sizeof(struct iphdr) - sizeof(struct udphdr))

struct pktgen_opts {
	const char *iface;
	uint8_t src_mac[ETH_ALEN];
	uint8_t dst_mac[ETH_ALEN];
	bool have_src_mac, have_dst_mac;
	struct in_addr src_ip, dst_ip, next_hop;
	bool have_src_ip, have_dst_ip, have_next_hop;
	uint16_t dport, sport;
	unsigned int flows;
	unsigned int payload;
	double seconds;
	uint64_t count;
	unsigned int batch;
	bool quiet;
	bool xdp_mode;
};

/* Set by SIGINT/SIGTERM: the run ends early and still prints its figures. */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: hc_pktgen --iface IF --dst-ip A.B.C.D --dport PORT [options]\n"
		"\n"
		"  --iface IF         interface to send on (required)\n"
		"  --src-mac MAC      source MAC (default: the interface's)\n"
		"  --dst-mac MAC      destination MAC (default: ask the next hop with ARP)\n"
		"  --next-hop A.B.C.D whom to ARP for (default: --dst-ip)\n"
		"  --src-ip A.B.C.D   source address (default: the interface's first IPv4)\n"
		"  --dst-ip A.B.C.D   destination address (required)\n"
		"  --dport PORT       UDP destination port (required)\n"
		"  --sport PORT       first UDP source port (default 10000)\n"
		"  --flows N          number of source ports, i.e. flows (default 1)\n"
		"  --size BYTES       UDP payload bytes (default 18: 64-byte frames on the wire)\n"
		"  --seconds S        run for S seconds (default 5)\n"
		"  --count N          stop after N packets (0: no limit; default 0)\n"
		"  --batch N          frames per sendmmsg call (default 64, max %d)\n"
		"  --mode packet|xdp  send through an AF_PACKET socket (default) or as\n"
		"                     xdp_frames (BPF_PROG_TEST_RUN live frames)\n"
		"  --quiet            print only the result line\n",
		PKTGEN_MAX_BATCH);
}

static int parse_mac(const char *s, uint8_t mac[ETH_ALEN])
{
	unsigned int b[ETH_ALEN];
	char tail;

	if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) !=
	    ETH_ALEN)
		return -EINVAL;
	for (int i = 0; i < ETH_ALEN; i++) {
		if (b[i] > 0xff)
			return -EINVAL;
		mac[i] = (uint8_t)b[i];
	}
	return 0;
}

static int parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_opts(int argc, char **argv, struct pktgen_opts *o)
{
	enum { O_IFACE = 256, O_SRC_MAC, O_DST_MAC, O_NEXT_HOP, O_SRC_IP, O_DST_IP, O_DPORT,
	       O_SPORT, O_FLOWS, O_SIZE, O_SECONDS, O_COUNT, O_BATCH, O_QUIET, O_MODE, O_HELP };
	static const struct option longopts[] = {
		{ "iface", required_argument, NULL, O_IFACE },
		{ "src-mac", required_argument, NULL, O_SRC_MAC },
		{ "dst-mac", required_argument, NULL, O_DST_MAC },
		{ "next-hop", required_argument, NULL, O_NEXT_HOP },
		{ "src-ip", required_argument, NULL, O_SRC_IP },
		{ "dst-ip", required_argument, NULL, O_DST_IP },
		{ "dport", required_argument, NULL, O_DPORT },
		{ "sport", required_argument, NULL, O_SPORT },
		{ "flows", required_argument, NULL, O_FLOWS },
		{ "size", required_argument, NULL, O_SIZE },
		{ "seconds", required_argument, NULL, O_SECONDS },
		{ "count", required_argument, NULL, O_COUNT },
		{ "batch", required_argument, NULL, O_BATCH },
		{ "quiet", no_argument, NULL, O_QUIET },
		{ "mode", required_argument, NULL, O_MODE },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long v;
	char *end;
	int c;

	memset(o, 0, sizeof(*o));
	o->sport = 10000;
	o->flows = 1;
	o->payload = 18;
	o->seconds = 5;
	o->batch = 64;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_IFACE:
			if (strlen(optarg) >= IFNAMSIZ)
				goto bad;
			o->iface = optarg;
			break;
		case O_SRC_MAC:
			if (parse_mac(optarg, o->src_mac))
				goto bad;
			o->have_src_mac = true;
			break;
		case O_DST_MAC:
			if (parse_mac(optarg, o->dst_mac))
				goto bad;
			o->have_dst_mac = true;
			break;
		case O_NEXT_HOP:
			if (inet_pton(AF_INET, optarg, &o->next_hop) != 1)
				goto bad;
			o->have_next_hop = true;
			break;
		case O_SRC_IP:
			if (inet_pton(AF_INET, optarg, &o->src_ip) != 1)
				goto bad;
			o->have_src_ip = true;
			break;
		case O_DST_IP:
			if (inet_pton(AF_INET, optarg, &o->dst_ip) != 1)
				goto bad;
			o->have_dst_ip = true;
			break;
		case O_DPORT:
			if (parse_ulong(optarg, 65535, &v) || v == 0)
				goto bad;
			o->dport = (uint16_t)v;
			break;
		case O_SPORT:
			if (parse_ulong(optarg, 65535, &v) || v == 0)
				goto bad;
			o->sport = (uint16_t)v;
			break;
		case O_FLOWS:
			if (parse_ulong(optarg, PKTGEN_MAX_FLOWS, &v) || v == 0)
				goto bad;
			o->flows = (unsigned int)v;
			break;
		case O_SIZE:
			if (parse_ulong(optarg, PKTGEN_MAX_PAYLOAD, &v))
				goto bad;
			o->payload = (unsigned int)v;
			break;
		case O_SECONDS:
			errno = 0;
			o->seconds = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(o->seconds >= 0) || o->seconds > 86400)
				goto bad;
			break;
		case O_COUNT:
			if (parse_ulong(optarg, ULONG_MAX, &v))
				goto bad;
			o->count = v;
			break;
		case O_BATCH:
			if (parse_ulong(optarg, PKTGEN_MAX_BATCH, &v) || v == 0)
				goto bad;
			o->batch = (unsigned int)v;
			break;
		case O_QUIET:
			o->quiet = true;
			break;
		case O_MODE:
			if (strcmp(optarg, "xdp") == 0)
				o->xdp_mode = true;
			else if (strcmp(optarg, "packet") != 0)
				goto bad;
			break;
		case O_HELP:
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
		continue;
bad:
		fprintf(stderr, "hc_pktgen: bad value for --%s: '%s'\n",
			longopts[c - O_IFACE].name, optarg);
		return -EINVAL;
	}
	if (optind < argc) {
		fprintf(stderr, "hc_pktgen: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (!o->iface || !o->have_dst_ip || !o->dport) {
		fprintf(stderr, "hc_pktgen: --iface, --dst-ip and --dport are required\n");
		usage(stderr);
		return -EINVAL;
	}
	if ((unsigned int)o->sport + o->flows - 1 > 65535) {
		fprintf(stderr, "hc_pktgen: --sport + --flows passes port 65535\n");
		return -EINVAL;
	}
	if (o->seconds == 0 && o->count == 0) {
		fprintf(stderr, "hc_pktgen: --seconds 0 needs a --count\n");
		return -EINVAL;
	}
	if (o->xdp_mode && (o->batch > XDP_MAX_BATCH || o->flows > XDP_MAX_FLOWS)) {
		fprintf(stderr, "hc_pktgen: --mode xdp takes --batch up to %d, --flows up to %d\n",
			XDP_MAX_BATCH, XDP_MAX_FLOWS);
		return -EINVAL;
	}
	if (!o->have_next_hop)
		o->next_hop = o->dst_ip;
	return 0;
}

/* One's complement sum of a buffer, folded later; RFC 1071. */
static uint32_t csum_add(uint32_t sum, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 1) {
		sum += (uint32_t)p[0] << 8 | p[1];
		p += 2;
		len -= 2;
	}
	if (len)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* Writes one Ethernet + IPv4 + UDP frame for source port sport; returns its
 * length. The payload is a fixed pattern, the IP ID the flow's index. */
static size_t build_frame(uint8_t *buf, const struct pktgen_opts *o, uint16_t sport,
			  uint16_t ip_id)
{
	struct ether_header *eth = (struct ether_header *)buf;
	struct iphdr *ip = (struct iphdr *)(eth + 1);
	struct udphdr *udp = (struct udphdr *)(ip + 1);
	uint8_t *payload = (uint8_t *)(udp + 1);
	uint16_t udp_len = (uint16_t)(sizeof(*udp) + o->payload);
	uint8_t pseudo[12];
	uint32_t sum;
	uint16_t c;

	memcpy(eth->ether_dhost, o->dst_mac, ETH_ALEN);
	memcpy(eth->ether_shost, o->src_mac, ETH_ALEN);
	eth->ether_type = htons(ETHERTYPE_IP);

	memset(ip, 0, sizeof(*ip));
	ip->version = 4;
	ip->ihl = sizeof(*ip) / 4;
	ip->tot_len = htons((uint16_t)(sizeof(*ip) + udp_len));
	ip->id = htons(ip_id);
	ip->frag_off = htons(IP_DF);
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->saddr = o->src_ip.s_addr;
	ip->daddr = o->dst_ip.s_addr;
	ip->check = htons(csum_fold(csum_add(0, ip, sizeof(*ip))));

	udp->source = htons(sport);
	udp->dest = htons(o->dport);
	udp->len = htons(udp_len);
	udp->check = 0;
	for (unsigned int i = 0; i < o->payload; i++)
		payload[i] = (uint8_t)('a' + i % 26);

	memcpy(pseudo, &ip->saddr, 4);
	memcpy(pseudo + 4, &ip->daddr, 4);
	pseudo[8] = 0;
	pseudo[9] = IPPROTO_UDP;
	pseudo[10] = (uint8_t)(udp_len >> 8);
	pseudo[11] = (uint8_t)udp_len;
	sum = csum_add(0, pseudo, sizeof(pseudo));
	sum = csum_add(sum, udp, udp_len);
	c = csum_fold(sum);
	/* RFC 768: a computed zero is sent as all ones (zero means "none"). */
	udp->check = htons(c ? c : 0xffff);
	return sizeof(*eth) + sizeof(*ip) + udp_len;
}

/* Fills in the interface's MAC and first IPv4 address where not given. */
static int iface_defaults(int fd, struct pktgen_opts *o, int *ifindex)
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	strncpy(ifr.ifr_name, o->iface, IFNAMSIZ - 1);
	if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) {
		fprintf(stderr, "hc_pktgen: interface %s: %s\n", o->iface, strerror(errno));
		return -errno;
	}
	*ifindex = ifr.ifr_ifindex;
	if (!o->have_src_mac) {
		if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
			fprintf(stderr, "hc_pktgen: MAC of %s: %s\n", o->iface, strerror(errno));
			return -errno;
		}
		memcpy(o->src_mac, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
	}
	if (!o->have_src_ip) {
		int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		int rc = 0;

		if (s < 0)
			return -errno;
		ifr.ifr_addr.sa_family = AF_INET;
		if (ioctl(s, SIOCGIFADDR, &ifr) < 0) {
			rc = -errno;
			fprintf(stderr, "hc_pktgen: no IPv4 address on %s (give --src-ip): %s\n",
				o->iface, strerror(errno));
		} else {
			o->src_ip = ((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr;
		}
		close(s);
		if (rc)
			return rc;
	}
	return 0;
}

struct arp_frame {
	struct ether_header eth;
	uint16_t htype, ptype;
	uint8_t hlen, plen;
	uint16_t op;
	uint8_t sha[ETH_ALEN];
	uint8_t spa[4];
	uint8_t tha[ETH_ALEN];
	uint8_t tpa[4];
} __attribute__((packed));

_Static_assert(sizeof(struct arp_frame) == 42, "ARP frame layout");

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Asks o->next_hop for its MAC on the interface: three requests, one second
 * each. Fills o->dst_mac; returns 0 or -errno (-ETIMEDOUT without answer). */
static int arp_resolve(struct pktgen_opts *o, int ifindex)
{
	struct sockaddr_ll sll = {
		.sll_family = AF_PACKET,
		.sll_protocol = htons(ETHERTYPE_ARP),
		.sll_ifindex = ifindex,
	};
	struct arp_frame req, resp;
	int fd, rc = -ETIMEDOUT;

	fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETHERTYPE_ARP));
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		rc = -errno;
		goto out;
	}
	memset(&req, 0, sizeof(req));
	memset(req.eth.ether_dhost, 0xff, ETH_ALEN);
	memcpy(req.eth.ether_shost, o->src_mac, ETH_ALEN);
	req.eth.ether_type = htons(ETHERTYPE_ARP);
	req.htype = htons(1);
	req.ptype = htons(ETHERTYPE_IP);
	req.hlen = ETH_ALEN;
	req.plen = 4;
	req.op = htons(1);
	memcpy(req.sha, o->src_mac, ETH_ALEN);
	memcpy(req.spa, &o->src_ip, 4);
	memcpy(req.tpa, &o->next_hop, 4);

	for (int attempt = 0; attempt < 3 && rc == -ETIMEDOUT; attempt++) {
		double deadline;

		if (send(fd, &req, sizeof(req), 0) < 0) {
			rc = -errno;
			break;
		}
		deadline = now_s() + 1.0;
		for (;;) {
			double left = deadline - now_s();
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			ssize_t n;
			int pr;

			if (left <= 0)
				break;
			pr = poll(&pfd, 1, (int)(left * 1000) + 1);
			if (pr < 0) {
				if (errno == EINTR && !stop_requested)
					continue;
				rc = -errno;
				goto out;
			}
			if (pr == 0)
				break;
			n = recv(fd, &resp, sizeof(resp), 0);
			if (n < 0) {
				if (errno == EINTR || errno == EAGAIN)
					continue;
				rc = -errno;
				goto out;
			}
			if ((size_t)n < sizeof(resp) || resp.op != htons(2) ||
			    memcmp(resp.spa, &o->next_hop, 4) != 0)
				continue;
			memcpy(o->dst_mac, resp.sha, ETH_ALEN);
			rc = 0;
			break;
		}
	}
out:
	close(fd);
	return rc;
}

static int sys_bpf(int cmd, union bpf_attr *attr)
{
	return (int)syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

/* Loads an XDP program that writes hdr (the frame's Ethernet, IPv4 and UDP
 * headers) over the frame and returns bpf_redirect(ifindex, 0). Returns its
 * fd or -errno.
 *
 * Live frames live in a page pool that BPF_PROG_TEST_RUN recycles without
 * copying the packet in again, and whoever receives a frame may rewrite it in
 * place (the kernel's forwarding and NAT do, so does a DNAT XDP program): a
 * recycled frame would go out with the workload's MAC and address. Writing
 * the headers back on every run keeps every frame as built. */
static int load_redirect_prog(int ifindex, const uint8_t *hdr)
{
	struct bpf_insn insns[32];
	static char log_buf[4096];
	union bpf_attr attr;
	unsigned int n = 0, exit_jump;
	int fd;

	memset(insns, 0, sizeof(insns));
	/* r2 = data, r3 = data_end; frames shorter than PKTGEN_HDR_LEN pass. */
	insns[n++] = (struct bpf_insn){ .code = BPF_LDX | BPF_MEM | BPF_W, .dst_reg = BPF_REG_2,
					.src_reg = BPF_REG_1, .off = offsetof(struct xdp_md, data) };
	insns[n++] = (struct bpf_insn){ .code = BPF_LDX | BPF_MEM | BPF_W, .dst_reg = BPF_REG_3,
					.src_reg = BPF_REG_1,
					.off = offsetof(struct xdp_md, data_end) };
	insns[n++] = (struct bpf_insn){ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0,
					.imm = XDP_PASS };
	insns[n++] = (struct bpf_insn){ .code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = BPF_REG_4,
					.src_reg = BPF_REG_2 };
	insns[n++] = (struct bpf_insn){ .code = BPF_ALU64 | BPF_ADD | BPF_K, .dst_reg = BPF_REG_4,
					.imm = PKTGEN_HDR_LEN };
	exit_jump = n;
	insns[n++] = (struct bpf_insn){ .code = BPF_JMP | BPF_JGT | BPF_X, .dst_reg = BPF_REG_4,
					.src_reg = BPF_REG_3 };
	/* 42 bytes of headers: ten 4-byte stores and one 2-byte store. */
	for (unsigned int off = 0; off + 4 <= PKTGEN_HDR_LEN; off += 4) {
		int32_t v;

		memcpy(&v, hdr + off, 4);
		insns[n++] = (struct bpf_insn){ .code = BPF_ST | BPF_MEM | BPF_W,
						.dst_reg = BPF_REG_2, .off = (int16_t)off, .imm = v };
	}
	{
		int16_t v;

		memcpy(&v, hdr + PKTGEN_HDR_LEN - 2, 2);
		insns[n++] = (struct bpf_insn){ .code = BPF_ST | BPF_MEM | BPF_H,
						.dst_reg = BPF_REG_2, .off = PKTGEN_HDR_LEN - 2,
						.imm = v };
	}
	insns[n++] = (struct bpf_insn){ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_1,
					.imm = ifindex };
	insns[n++] = (struct bpf_insn){ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_2,
					.imm = 0 };
	insns[n++] = (struct bpf_insn){ .code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_redirect };
	insns[exit_jump].off = (int16_t)(n - exit_jump - 1);
	insns[n++] = (struct bpf_insn){ .code = BPF_JMP | BPF_EXIT };

	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_XDP;
	attr.insns = (uintptr_t)insns;
	attr.insn_cnt = n;
	attr.license = (uintptr_t)"GPL";
	attr.log_buf = (uintptr_t)log_buf;
	attr.log_size = sizeof(log_buf);
	attr.log_level = 1;
	strncpy(attr.prog_name, "hc_pktgen", sizeof(attr.prog_name) - 1);
	fd = sys_bpf(BPF_PROG_LOAD, &attr);
	if (fd < 0) {
		int e = errno;

		fprintf(stderr, "hc_pktgen: loading the redirect program: %s\n%s", strerror(e),
			log_buf);
		return -e;
	}
	return fd;
}

/* Runs the redirect program over frame n times as live frames. Returns 0 or
 * -errno (-EINTR when a signal cut the run short). */
static int xdp_live_send(int prog_fd, const uint8_t *frame, size_t len, unsigned int n,
			 unsigned int batch)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.test.prog_fd = (uint32_t)prog_fd;
	attr.test.data_in = (uintptr_t)frame;
	attr.test.data_size_in = (uint32_t)len;
	attr.test.repeat = n;
	attr.test.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
	attr.test.batch_size = batch;
	return sys_bpf(BPF_PROG_TEST_RUN, &attr) < 0 ? -errno : 0;
}

static void print_mac(FILE *out, const uint8_t m[ETH_ALEN])
{
	fprintf(out, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

int main(int argc, char **argv)
{
	static uint8_t *frames[PKTGEN_MAX_FLOWS];
	static size_t frame_len;
	struct mmsghdr *msgs = NULL;
	struct iovec *iovs = NULL;
	int *prog_fds = NULL;
	struct pktgen_opts o;
	struct sockaddr_ll sll;
	struct sigaction sa;
	uint64_t sent = 0, errors = 0;
	double start, end, elapsed;
	unsigned int next_flow = 0, xdp_n = 65536;
	int fd = -1, ifindex = 0, one = 1, rc = 1;
	uint8_t *frame_mem = NULL;
	size_t stride;

	if (parse_opts(argc, argv, &o))
		return 2;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL)) {
		perror("hc_pktgen: sigaction");
		return 1;
	}

	/* Protocol 0: this socket only sends, it receives nothing. */
	fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("hc_pktgen: socket(AF_PACKET)");
		goto out;
	}
	if (iface_defaults(fd, &o, &ifindex))
		goto out;
	if (!o.have_dst_mac) {
		int arc = arp_resolve(&o, ifindex);

		if (arc) {
			char ip[INET_ADDRSTRLEN];

			inet_ntop(AF_INET, &o.next_hop, ip, sizeof(ip));
			fprintf(stderr, "hc_pktgen: no ARP answer for %s on %s (%s); give --dst-mac\n",
				ip, o.iface, strerror(-arc));
			goto out;
		}
	}
	if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)) < 0) {
		perror("hc_pktgen: PACKET_QDISC_BYPASS");
		goto out;
	}
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_ifindex = ifindex;
	sll.sll_protocol = 0;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		perror("hc_pktgen: bind");
		goto out;
	}

	/* One prebuilt frame per flow, 64-byte aligned. */
	stride = (sizeof(struct ether_header) + sizeof(struct iphdr) + sizeof(struct udphdr) +
		  o.payload + 63) & ~(size_t)63;
	frame_mem = aligned_alloc(64, stride * o.flows);
	msgs = calloc(o.batch, sizeof(*msgs));
	iovs = calloc(o.batch, sizeof(*iovs));
	if (!frame_mem || !msgs || !iovs) {
		perror("hc_pktgen: alloc");
		goto out;
	}
	for (unsigned int i = 0; i < o.flows; i++) {
		frames[i] = frame_mem + i * stride;
		frame_len = build_frame(frames[i], &o, (uint16_t)(o.sport + i), (uint16_t)i);
	}
	if (o.xdp_mode) {
		prog_fds = calloc(o.flows, sizeof(*prog_fds));
		if (!prog_fds) {
			perror("hc_pktgen: alloc");
			goto out;
		}
		for (unsigned int i = 0; i < o.flows; i++)
			prog_fds[i] = -1;
		for (unsigned int i = 0; i < o.flows; i++) {
			prog_fds[i] = load_redirect_prog(ifindex, frames[i]);
			if (prog_fds[i] < 0)
				goto out;
		}
	}
	for (unsigned int i = 0; i < o.batch; i++) {
		iovs[i].iov_len = frame_len;
		msgs[i].msg_hdr.msg_iov = &iovs[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}

	if (!o.quiet) {
		char s[INET_ADDRSTRLEN], d[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &o.src_ip, s, sizeof(s));
		inet_ntop(AF_INET, &o.dst_ip, d, sizeof(d));
		fprintf(stderr, "hc_pktgen: %s ", o.iface);
		print_mac(stderr, o.src_mac);
		fprintf(stderr, " -> ");
		print_mac(stderr, o.dst_mac);
		fprintf(stderr, ", %s:%u-%u -> %s:%u, %zu-byte frames, %s, batch %u, ", s, o.sport,
			o.sport + o.flows - 1, d, o.dport, frame_len,
			o.xdp_mode ? "xdp live frames" : "AF_PACKET", o.batch);
		if (o.count)
			fprintf(stderr, "%" PRIu64 " packets", o.count);
		else
			fprintf(stderr, "%.1f s", o.seconds);
		fprintf(stderr, "\n");
	}

	start = now_s();
	end = o.seconds > 0 ? start + o.seconds : 0;
	while (!stop_requested) {
		unsigned int n = o.xdp_mode ? xdp_n : o.batch;
		int r;

		if (o.count) {
			if (sent >= o.count)
				break;
			if (o.count - sent < n)
				n = (unsigned int)(o.count - sent);
		}
		if (o.xdp_mode) {
			double t_call = now_s(), left, rate;

			/* One frame (flow) per call, run n times: the kernel
			 * batches them o.batch at a time. */
			r = xdp_live_send(prog_fds[next_flow], frames[next_flow], frame_len, n,
					  o.batch);
			/* Size the next call from this one's rate and the time left. */
			rate = n / (now_s() - t_call + 1e-6);
			left = end ? end - now_s() : XDP_CALL_SECONDS;
			rate *= left < XDP_CALL_SECONDS ? left : XDP_CALL_SECONDS;
			xdp_n = rate < XDP_CALL_MIN ? XDP_CALL_MIN :
				rate > XDP_CALL_MAX ? XDP_CALL_MAX : (unsigned int)rate;
			if (++next_flow == o.flows)
				next_flow = 0;
			if (r < 0 && r != -EINTR) {
				fprintf(stderr, "hc_pktgen: BPF_PROG_TEST_RUN: %s\n", strerror(-r));
				goto out;
			}
			/* An interrupted run does not say how far it got. */
			if (r == 0)
				sent += n;
			if (end && now_s() >= end)
				break;
			continue;
		}
		for (unsigned int i = 0; i < n; i++) {
			iovs[i].iov_base = frames[next_flow];
			if (++next_flow == o.flows)
				next_flow = 0;
		}
		r = sendmmsg(fd, msgs, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS || errno == EAGAIN || errno == ENETDOWN) {
				/* The device refused the first frame of the batch: count
				 * it and go on with the next one. */
				errors++;
			} else {
				perror("hc_pktgen: sendmmsg");
				goto out;
			}
		} else {
			sent += (unsigned int)r;
			/* A short count means the frame after the last one sent
			 * failed; skip it, as above. */
			if ((unsigned int)r < n)
				errors++;
		}
		if (end && now_s() >= end)
			break;
	}
	elapsed = now_s() - start;
	printf("sent=%" PRIu64 " seconds=%.3f pps=%.0f errors=%" PRIu64 "\n", sent, elapsed,
	       elapsed > 0 ? (double)sent / elapsed : 0.0, errors);
	fflush(stdout);
	rc = 0;
out:
	free(iovs);
	free(msgs);
	free(frame_mem);
	for (unsigned int i = 0; prog_fds && i < o.flows; i++)
		if (prog_fds[i] >= 0)
			close(prog_fds[i]);
	free(prog_fds);
	if (fd >= 0)
		close(fd);
	return rc;
}
