/* The reference program of tier 1 written in C, for clang: the same policy
 * as `bench_reference` in filter-ebpf/src/bin/bench-progs.rs (sipwall's
 * default policy for plain IPv4: the provider's two addresses inline,
 * 5060/5061 policed, UDP to 40000-60000 passed, per-reason per-CPU
 * counters; no VLAN tags, IPv4 options or IPv6). Self-contained: no
 * libbpf headers needed, a legacy "maps" section as aya reads it.
 *
 * Built by the bench with: clang -O2 -target bpf -c reference.c */
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct counter {
	__u64 packets;
	__u64 bytes;
};

#define SEC(name) __attribute__((section(name), used))
#define INLINE static inline __attribute__((always_inline))

enum { XDP_DROP = 1, XDP_PASS = 2 };
enum { BPF_MAP_TYPE_PERCPU_ARRAY = 6 };
/* sipwall's reason indices (filter_common::Reason). */
enum { SIP_ALLOWED, SIP_DENIED, RTP_ALLOWED, FRAGMENT, OTHER, NON_IP, MALFORMED };

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;

struct bpf_map_def SEC("maps") C_COUNTERS = {
	.type = BPF_MAP_TYPE_PERCPU_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(struct counter),
	.max_entries = 7,
};

/* Network byte order as a native load on a little-endian target reads it. */
#define BE16(x) ((__u16)((((x) & 0xff) << 8) | (((x) >> 8) & 0xff)))
#define ADDR(a, b, c, d) ((__u32)(a) | (__u32)(b) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)

INLINE int count(__u32 reason, __u64 bytes, int action)
{
	struct counter *c = bpf_map_lookup_elem(&C_COUNTERS, &reason);
	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
	return action;
}

SEC("xdp")
int bench_reference_c(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 bytes = end - data;

	if (data + 14 > end)
		return count(MALFORMED, bytes, XDP_DROP);
	if (*(__u16 *)(data + 12) != BE16(0x0800))
		return count(NON_IP, bytes, XDP_PASS);
	if (data + 34 > end)
		return count(MALFORMED, bytes, XDP_DROP);
	if (*(__u8 *)(data + 14) != 0x45)
		return count(MALFORMED, bytes, XDP_DROP);
	if (*(__u16 *)(data + 20) & BE16(0x1fff))
		return count(FRAGMENT, bytes, XDP_PASS);
	__u8 proto = *(__u8 *)(data + 23);
	__u32 l4_len;
	if (proto == 17)
		l4_len = 8;
	else if (proto == 6)
		l4_len = 20;
	else
		return count(OTHER, bytes, XDP_PASS);
	if (data + 34 + l4_len > end)
		return count(MALFORMED, bytes, XDP_DROP);
	__u16 dport = BE16(*(__u16 *)(data + 36));
	if (dport == 5060 || dport == 5061) {
		__u32 src = *(__u32 *)(data + 26);
		if (src == ADDR(44, 229, 228, 186) || src == ADDR(44, 238, 177, 138))
			return count(SIP_ALLOWED, bytes, XDP_PASS);
		return count(SIP_DENIED, bytes, XDP_DROP);
	}
	if (proto == 17 && dport >= 40000 && dport <= 60000)
		return count(RTP_ALLOWED, bytes, XDP_PASS);
	return count(OTHER, bytes, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
