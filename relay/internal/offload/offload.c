// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

/*
 * turnd's kernel data plane: forwards established TURN ChannelData over UDP
 * in both directions at tcx ingress, and hands everything else on untouched.
 *
 *   client --ChannelData--> listener  ==>  relay --UDP--> peer      (c2p)
 *   peer   --UDP-->         relay     ==>  listener --ChannelData--> client (p2c)
 *
 * User space (relay/internal/offload) is the only writer of every map; the
 * program only reads the forwarding maps and bumps per-CPU counters. Any
 * packet the program does not forward returns TCX_NEXT, so the rest of the
 * tcx chain and the stack see it exactly as it arrived. The checks all run
 * before the first write; a helper failing after a write drops the packet
 * (it can no longer be handed on intact) and counts R_ERROR.
 */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Debian 12's uapi headers predate tcx (Linux 6.6); these are its verdicts. */
#define TCX_NEXT (-1)
#define TCX_PASS 0
#define TCX_DROP 2
#define TCX_REDIRECT 7

#define MAX_BINDINGS 65536
#define MAX_LISTEN 8
#define MAX_OWN 8
#define OUT_TTL 64

#define F_ENABLED 1   /* forward at all (cleared when the permission lapses) */
#define F_THROTTLED 2 /* over a bandwidth cap: user space shapes it */
#define F_LOCAL 4     /* destination is this host (ifindex is lo) */

/* Reasons a packet to one of our ports was or was not forwarded. */
enum reason {
	R_FWD_C2P = 0,
	R_FWD_P2C,
	R_MISS,
	R_NOT_CHANNEL,
	R_BAD_LENGTH,
	R_FRAGMENT,
	R_IP_OPTIONS,
	R_IPV6_EXT,
	R_GSO,
	R_MTU,
	R_EXPIRED,
	R_THROTTLED,
	R_DISABLED,
	R_RELAY_TO_RELAY,
	R_CSUM_PARTIAL,
	R_FAMILY,
	R_MALFORMED,
	R_ERROR,
	R_MAX,
};

/* Addresses are 16 bytes; IPv4 as ::ffff:a.b.c.d. Ports and the channel are
 * big-endian so packet bytes are keys as they are. */
struct c2p_key {
	__u8 fam; /* 4 or 6 */
	__u8 pad;
	__be16 chan;
	__be16 cport;
	__be16 lport;
	__u8 caddr[16];
	__u8 laddr[16];
};

struct p2c_key {
	__u8 fam;
	__u8 pad[3];
	__be16 pport;
	__be16 rport;
	__u8 paddr[16];
	__u8 raddr[16];
};

struct fwd {
	__u8 fam; /* family of the rewritten packet */
	__u8 flags;
	__be16 chan;
	__be16 sport;
	__be16 dport;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 ifindex; /* egress for bpf_redirect_neigh (lo when F_LOCAL) */
	__u32 slot;    /* index into stats */
	__u32 mtu;     /* egress MTU (L3 bytes); 0: no check */
	__u32 pad;
	__u64 chan_deadline; /* CLOCK_MONOTONIC ns */
	__u64 perm_deadline;
};

struct counters {
	__u64 pkts_c2p;
	__u64 bytes_c2p; /* application bytes (ChannelData payload) */
	__u64 pkts_p2c;
	__u64 bytes_p2c;
};

struct cfg {
	__u8 own[MAX_OWN][16]; /* our listener and relay addresses */
	__u32 enabled;
	__u32 n_own;
	__be16 listen_ports[MAX_LISTEN]; /* 0: unused slot */
	__u16 relay_lo; /* host order, inclusive */
	__u16 relay_hi;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_BINDINGS);
	__type(key, struct c2p_key);
	__type(value, struct fwd);
} c2p SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_BINDINGS);
	__type(key, struct p2c_key);
	__type(value, struct fwd);
} p2c SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_BINDINGS);
	__type(key, __u32);
	__type(value, struct counters);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, R_MAX);
	__type(key, __u32);
	__type(value, __u64);
} reasons SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cfg);
} config SEC(".maps");

/* Keep the types in the object's BTF for bpf2go's -type. */
const enum reason *unused_reason __attribute__((unused));

static __always_inline int count(__u32 r, int verdict)
{
	__u64 *v = bpf_map_lookup_elem(&reasons, &r);
	if (v)
		*v += 1;
	return verdict;
}

static __always_inline int pass(__u32 r) { return count(r, TCX_NEXT); }

static __always_inline __u32 fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return s;
}

/* Sum of the big-endian 16-bit words of n bytes (n even, small, constant). */
static __always_inline __u32 sum_words(const __u8 *b, int n)
{
	__u32 s = 0;
#pragma unroll
	for (int i = 0; i < n; i += 2)
		s += ((__u32)b[i] << 8) | b[i + 1];
	return s;
}

static __always_inline __u32 addr_sum(__u8 fam, const __u8 *a)
{
	return fam == 4 ? sum_words(a + 12, 4) : sum_words(a, 16);
}

/* Folded (not complemented) pseudo-header sum: what a CHECKSUM_PARTIAL
 * packet carries in its UDP checksum field. */
static __always_inline __u16 pseudo(__u8 fam, const __u8 *s, const __u8 *d, __u16 udplen)
{
	return fold(addr_sum(fam, s) + addr_sum(fam, d) + IPPROTO_UDP + udplen);
}

static __always_inline __u32 neg(__u32 v) { return (~v) & 0xffff; }

static __always_inline int addr_eq(const __u8 *a, const __u8 *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	return x[0] == y[0] && x[1] == y[1];
}

static __always_inline int is_own(const struct cfg *c, const __u8 *a)
{
#pragma unroll
	for (int i = 0; i < MAX_OWN; i++) {
		if (i >= c->n_own)
			break;
		if (addr_eq(c->own[i], a))
			return 1;
	}
	return 0;
}

static __always_inline int is_listen(const struct cfg *c, __be16 port)
{
#pragma unroll
	for (int i = 0; i < MAX_LISTEN; i++)
		if (c->listen_ports[i] && c->listen_ports[i] == port)
			return 1;
	return 0;
}

static __always_inline void map4(__u8 *dst, __be32 a)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &a, 4);
}

/* Everything the rewrite needs, gathered before the first write. */
struct pkt {
	__u8 saddr[16] __attribute__((aligned(8)));
	__u8 daddr[16] __attribute__((aligned(8)));
	__u8 fam;
	__u8 partial;
	__be16 sport;
	__be16 dport;
	__u16 udplen;
	__u16 check; /* host order */
	__u16 iphl;
	__u32 l4off;
	__u32 wire_end; /* 14 + IP length: bytes past it are link padding */
	union {
		struct iphdr ip4;
		struct ipv6hdr ip6;
	};
};

static __always_inline int expired(const struct fwd *f)
{
	__u64 now = bpf_ktime_get_coarse_ns();
	return now >= f->chan_deadline || now >= f->perm_deadline;
}

/* Writes the new IP header (addresses, length, TTL) at offset 14. */
static __always_inline int write_ip(struct __sk_buff *skb, struct pkt *p, const struct fwd *f,
				    __u16 udplen)
{
	if (p->fam == 4) {
		struct iphdr *ip = &p->ip4;
		__builtin_memcpy(&ip->saddr, f->saddr + 12, 4);
		__builtin_memcpy(&ip->daddr, f->daddr + 12, 4);
		ip->tot_len = bpf_htons(sizeof(*ip) + udplen);
		ip->ttl = OUT_TTL;
		ip->check = 0;
		ip->check = bpf_htons(neg(fold(sum_words((const __u8 *)ip, sizeof(*ip)))));
		return bpf_skb_store_bytes(skb, ETH_HLEN, ip, sizeof(*ip), BPF_F_RECOMPUTE_CSUM);
	}
	struct ipv6hdr *ip = &p->ip6;
	__builtin_memcpy(&ip->saddr, f->saddr, 16);
	__builtin_memcpy(&ip->daddr, f->daddr, 16);
	ip->payload_len = bpf_htons(udplen);
	ip->hop_limit = OUT_TTL;
	return bpf_skb_store_bytes(skb, ETH_HLEN, ip, sizeof(*ip), BPF_F_RECOMPUTE_CSUM);
}

/* New UDP checksum from the old one: take out what left (old pseudo-header,
 * old ports and length, `gone`), add what came (new pseudo-header, ports,
 * length, `came`). A CHECKSUM_PARTIAL packet (only rewritten peer→client for
 * local delivery) keeps the partial form: the new pseudo-header sum. */
static __always_inline __u16 new_check(const struct pkt *p, const struct fwd *f, __u16 udplen,
				       __u32 gone, __u32 came)
{
	__u16 nps = pseudo(f->fam, f->saddr, f->daddr, udplen);
	if (p->partial)
		return nps;
	if (p->fam == 4 && p->check == 0)
		return 0; /* no checksum stays no checksum */
	__u32 s = neg(p->check);
	s += neg(pseudo(p->fam, p->saddr, p->daddr, p->udplen));
	s += neg(fold((__u32)bpf_ntohs(p->sport) + bpf_ntohs(p->dport) + p->udplen));
	s += neg(fold(gone));
	s += nps;
	s += fold((__u32)bpf_ntohs(f->sport) + bpf_ntohs(f->dport) + udplen);
	s += came;
	__u16 c = neg(fold(s));
	return c ? c : 0xffff;
}

/* Remote destinations leave through the egress interface; for local ones
 * user space sets ifindex to lo's. Both go through bpf_redirect_neigh: it
 * routes in the kernel (no ip_forward needed) and attaches the output route,
 * so a locally delivered packet whose source is our own relay address is not
 * dropped as a martian, as it would be after TCX_PASS from a veth or NIC. */
static __always_inline int deliver(const struct fwd *f)
{
	return bpf_redirect_neigh(f->ifindex, NULL, 0, 0);
}

static __always_inline void add_stats(const struct fwd *f, int c2p_dir, __u32 bytes)
{
	__u32 slot = f->slot;
	struct counters *st = bpf_map_lookup_elem(&stats, &slot);
	if (!st)
		return;
	if (c2p_dir) {
		st->pkts_c2p++;
		st->bytes_c2p += bytes;
	} else {
		st->pkts_p2c++;
		st->bytes_p2c += bytes;
	}
}

/* ChannelData -> UDP. Layout before: IP | UDP | chan(4) | data | pad(0-3);
 * after: IP | UDP | data. */
static __always_inline int to_peer(struct __sk_buff *skb, const struct cfg *c, struct pkt *p)
{
	__u8 ch[4];
	if (p->udplen < 8 + 4)
		return pass(R_NOT_CHANNEL);
	if (bpf_skb_load_bytes(skb, p->l4off + 8, ch, 4))
		return pass(R_MALFORMED);
	if (ch[0] < 0x40 || ch[0] > 0x7f)
		return pass(R_NOT_CHANNEL);
	__u16 dlen = ((__u16)ch[2] << 8) | ch[3];
	__u16 room = p->udplen - 8 - 4;
	if (dlen > room || room - dlen > 3)
		return pass(R_BAD_LENGTH);

	struct c2p_key k = {.fam = p->fam};
	__builtin_memcpy(&k.chan, ch, 2);
	k.cport = p->sport;
	k.lport = p->dport;
	__builtin_memcpy(k.caddr, p->saddr, 16);
	__builtin_memcpy(k.laddr, p->daddr, 16);
	struct fwd *f = bpf_map_lookup_elem(&c2p, &k);
	if (!f)
		return pass(R_MISS);
	if (!(f->flags & F_ENABLED))
		return pass(R_DISABLED);
	if (f->flags & F_THROTTLED)
		return pass(R_THROTTLED);
	if (expired(f))
		return pass(R_EXPIRED);
	if (f->fam != p->fam)
		return pass(R_FAMILY);
	if (is_own(c, f->daddr))
		return pass(R_RELAY_TO_RELAY);
	/* Closing the 4 bytes moves the UDP header 4 bytes past csum_start:
	 * completed later, the checksum lands in the wrong place; delivered
	 * locally, the stack sees a negative checksum offset and verifies the
	 * unfinished checksum. Either way only user space can carry it. */
	if (p->partial)
		return pass(R_CSUM_PARTIAL);

	/* The peer's link may be narrower than the client's. */
	if (f->mtu && p->iphl + 8 + (__u32)dlen > f->mtu)
		return pass(R_MTU);

	/* Padding leaves with the header: sum the pad bytes where they sit. */
	__u16 padn = room - dlen;
	__u32 gone = ((__u32)ch[0] << 8 | ch[1]) + ((__u32)ch[2] << 8 | ch[3]);
	if (padn) {
		__u8 tail[4];
		__u32 toff = p->l4off + p->udplen - 4; /* >= start of chan header */
		if (bpf_skb_load_bytes(skb, toff, tail, 4))
			return pass(R_MALFORMED);
		/* tail[j] sits at UDP offset udplen-4+j; udplen-4+j is even iff j is
		 * (udplen even) or odd (udplen odd). */
		int odd = p->udplen & 1;
#pragma unroll
		for (int j = 1; j < 4; j++) {
			if (j < 4 - padn)
				continue;
			int even = ((j & 1) == odd);
			gone += even ? ((__u32)tail[j] << 8) : tail[j];
		}
	}
	__u16 udplen = 8 + dlen;
	struct udphdr u = {
		.source = f->sport,
		.dest = f->dport,
		.len = bpf_htons(udplen),
	};
	u.check = bpf_htons(new_check(p, f, udplen, gone, 0));

	/* Checks done. Put the new UDP header where the old header's second
	 * half and the channel header are, then close the 4 bytes after L3. */
	if (bpf_skb_store_bytes(skb, p->l4off + 4, &u, sizeof(u), BPF_F_RECOMPUTE_CSUM))
		return count(R_ERROR, TCX_DROP);
	if (bpf_skb_adjust_room(skb, -4, BPF_ADJ_ROOM_NET, 0))
		return count(R_ERROR, TCX_DROP);
	if (write_ip(skb, p, f, udplen))
		return count(R_ERROR, TCX_DROP);
	__u32 want = p->l4off + udplen;
	if (skb->len > want && bpf_skb_change_tail(skb, want, 0))
		return count(R_ERROR, TCX_DROP);
	add_stats(f, 1, dlen);
	return count(R_FWD_C2P, deliver(f));
}

/* UDP -> ChannelData. Layout before: IP | UDP | data; after:
 * IP | UDP | chan(4) | data, no padding (RFC 8656: over UDP padding is not required). */
static __always_inline int to_client(struct __sk_buff *skb, const struct cfg *c, struct pkt *p)
{
	struct p2c_key k = {.fam = p->fam};
	k.pport = p->sport;
	k.rport = p->dport;
	__builtin_memcpy(k.paddr, p->saddr, 16);
	__builtin_memcpy(k.raddr, p->daddr, 16);
	struct fwd *f = bpf_map_lookup_elem(&p2c, &k);
	if (!f)
		return pass(R_MISS);
	if (!(f->flags & F_ENABLED))
		return pass(R_DISABLED);
	if (f->flags & F_THROTTLED)
		return pass(R_THROTTLED);
	if (expired(f))
		return pass(R_EXPIRED);
	if (f->fam != p->fam)
		return pass(R_FAMILY);
	if (is_own(c, p->saddr))
		return pass(R_RELAY_TO_RELAY);
	__u16 dlen = p->udplen - 8;
	__u16 udplen = p->udplen + 4;
	if (f->mtu && p->iphl + (__u32)udplen > f->mtu)
		return pass(R_MTU);
	/* Opening 4 bytes leaves csum_start 4 bytes into the new UDP header:
	 * completed later (remote destination), the checksum would land in the
	 * wrong place. Delivered locally, the stack trusts a partial checksum
	 * whose start is not before the transport header, so the rewrite is
	 * safe there and keeps the partial form. */
	if (p->partial && !(f->flags & F_LOCAL))
		return pass(R_CSUM_PARTIAL);

	struct {
		struct udphdr u;
		__be16 chan;
		__be16 len;
	} h = {
		.u = {.source = f->sport, .dest = f->dport, .len = bpf_htons(udplen)},
		.chan = f->chan,
		.len = bpf_htons(dlen),
	};
	__u32 came = fold((__u32)bpf_ntohs(f->chan) + dlen);
	h.u.check = bpf_htons(new_check(p, f, udplen, 0, came));

	/* Open 4 bytes after L3, then write UDP header + channel header over the
	 * gap and the old UDP header; the data stays where it was. */
	if (bpf_skb_adjust_room(skb, 4, BPF_ADJ_ROOM_NET, 0))
		return count(R_ERROR, TCX_DROP);
	if (bpf_skb_store_bytes(skb, p->l4off, &h, sizeof(h), BPF_F_RECOMPUTE_CSUM))
		return count(R_ERROR, TCX_DROP);
	if (write_ip(skb, p, f, udplen))
		return count(R_ERROR, TCX_DROP);
	__u32 want = p->l4off + udplen;
	if (skb->len > want && bpf_skb_change_tail(skb, want, 0))
		return count(R_ERROR, TCX_DROP);
	add_stats(f, 0, dlen);
	return count(R_FWD_P2C, deliver(f));
}

static __always_inline int ext_hdr(__u8 nh)
{
	switch (nh) {
	case 0:   /* hop-by-hop */
	case 43:  /* routing */
	case 44:  /* fragment */
	case 50:  /* ESP */
	case 51:  /* AH */
	case 60:  /* destination options */
	case 135: /* mobility */
	case 139: /* HIP */
	case 140: /* shim6 */
		return 1;
	}
	return 0;
}

SEC("tcx/ingress")
int turn_offload(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct cfg *c = bpf_map_lookup_elem(&config, &zero);
	if (!c)
		return TCX_NEXT;

	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	/* Headers we parse: Ethernet + IPv6 + UDP at most. Pull them into the
	 * linear area when a driver left them in fragments. */
	__u32 need = ETH_HLEN + sizeof(struct ipv6hdr) + sizeof(struct udphdr);
	if (data + need > end && skb->len > need) {
		bpf_skb_pull_data(skb, need);
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
	}
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return TCX_NEXT;

	struct pkt p = {};
	struct udphdr *udp;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->version != 4 || ip->protocol != IPPROTO_UDP)
			return TCX_NEXT;
		p.fam = 4;
		map4(p.saddr, ip->saddr);
		map4(p.daddr, ip->daddr);
		__u16 frag = bpf_ntohs(ip->frag_off);
		if (frag & 0x1fff) {
			/* No UDP header here: count it if it is addressed to us. */
			return is_own(c, p.daddr) ? pass(R_FRAGMENT) : TCX_NEXT;
		}
		udp = (void *)ip + ip->ihl * 4;
		if ((void *)(udp + 1) > end)
			return TCX_NEXT;
		p.dport = udp->dest;
		if (!is_listen(c, p.dport) && (bpf_ntohs(p.dport) < c->relay_lo ||
					       bpf_ntohs(p.dport) > c->relay_hi))
			return TCX_NEXT;
		if (!c->enabled)
			return pass(R_DISABLED);
		if (frag & 0x2000)
			return pass(R_FRAGMENT);
		if (ip->ihl != 5)
			return pass(R_IP_OPTIONS);
		__u16 tot = bpf_ntohs(ip->tot_len);
		if (tot < sizeof(*ip) + sizeof(*udp) || bpf_ntohs(udp->len) != tot - sizeof(*ip))
			return pass(R_BAD_LENGTH);
		p.iphl = sizeof(*ip);
		p.wire_end = ETH_HLEN + tot;
		__builtin_memcpy(&p.ip4, ip, sizeof(*ip));
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->version != 6)
			return TCX_NEXT;
		p.fam = 6;
		__builtin_memcpy(p.saddr, &ip->saddr, 16);
		__builtin_memcpy(p.daddr, &ip->daddr, 16);
		if (ip->nexthdr != IPPROTO_UDP) {
			if (ext_hdr(ip->nexthdr) && is_own(c, p.daddr))
				return pass(ip->nexthdr == 44 ? R_FRAGMENT : R_IPV6_EXT);
			return TCX_NEXT;
		}
		udp = (void *)(ip + 1);
		if ((void *)(udp + 1) > end)
			return TCX_NEXT;
		p.dport = udp->dest;
		if (!is_listen(c, p.dport) && (bpf_ntohs(p.dport) < c->relay_lo ||
					       bpf_ntohs(p.dport) > c->relay_hi))
			return TCX_NEXT;
		if (!c->enabled)
			return pass(R_DISABLED);
		__u16 plen = bpf_ntohs(ip->payload_len);
		if (plen < sizeof(*udp) || bpf_ntohs(udp->len) != plen)
			return pass(R_BAD_LENGTH);
		if (udp->check == 0)
			return pass(R_MALFORMED); /* mandatory over IPv6 */
		p.iphl = sizeof(*ip);
		p.wire_end = ETH_HLEN + sizeof(*ip) + plen;
		__builtin_memcpy(&p.ip6, ip, sizeof(*ip));
	} else {
		return TCX_NEXT;
	}
	if (skb->gso_segs > 1 || skb->gso_size)
		return pass(R_GSO);
	if (skb->len < p.wire_end)
		return pass(R_BAD_LENGTH);

	p.sport = udp->source;
	p.udplen = bpf_ntohs(udp->len);
	p.check = bpf_ntohs(udp->check);
	p.l4off = ETH_HLEN + p.iphl;
	p.partial = p.check != 0 && p.check == pseudo(p.fam, p.saddr, p.daddr, p.udplen);

	if (is_listen(c, p.dport))
		return to_peer(skb, c, &p);
	return to_client(skb, c, &p);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
