//! The counter families: the reasons each program counts a packet under,
//! and the counter kept per reason.

/// A family of counters: the reasons one program counts under, each the
/// index of its slot in that program's counters map. [`Reason`] (the XDP
/// program) and [`OutReason`] (the TC egress program) are the two, both
/// declared by `counter_family!`; what reads, diffs, renders or exports
/// counters is written once, over this trait.
pub trait CounterFamily: Copy + PartialEq + core::fmt::Debug + 'static {
    /// Every member, in slot order: the order JSON, metrics and tables list
    /// them.
    const MEMBERS: &'static [Self];
    /// One counter a member, summed over CPUs, indexed by `index()`.
    type Set: Copy + Default + AsRef<[Counter]> + AsMut<[Counter]>;

    /// The counter's name as it appears in JSON, metrics and tests.
    fn name(self) -> &'static str;
    /// Whether packets counted under it are dropped (unless in dry run).
    fn drops(self) -> bool;
    /// Its slot in the counters map (and in `Set`).
    fn index(self) -> u32;

    fn from_name(name: &str) -> Option<Self> {
        Self::MEMBERS.iter().copied().find(|r| r.name() == name)
    }
}

/// Declares a counter family from one table: the enum (its members' slots
/// as discriminants), the number of slots, and for each member its name
/// (after the family's prefix, if it has one) and whether it drops (`pass`
/// or `drop`). The inherent `ALL`, `name` and
/// `drops` are `const` for the eBPF side; [`CounterFamily`] is the same,
/// for code generic over the two families.
macro_rules! counter_family {
    (
        $(#[$meta:meta])*
        pub enum $family:ident, count $count:ident, names prefixed $prefix:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $slot:literal => $name:literal, $verdict:ident, )*
        }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $family {
            $( $(#[$vmeta])* $variant = $slot, )*
        }

        #[doc = concat!("Number of [`", stringify!($family), "`] members, the size of its counters map.")]
        pub const $count: u32 = 0 $( + { let _ = $slot; 1 } )*;

        impl $family {
            /// Every member, in slot order: the order JSON, metrics and
            /// tables list them (docs/json.md).
            pub const ALL: [$family; $count as usize] = [ $( $family::$variant ),* ];

            /// The counter's name as it appears in JSON, metrics and tests.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $family::$variant => concat!($prefix, $name), )*
                }
            }

            /// Whether packets counted under it are dropped (unless in dry
            /// run).
            pub const fn drops(self) -> bool {
                match self {
                    $( $family::$variant => counter_family!(@drops $verdict), )*
                }
            }
        }

        // The slots are 0, 1, 2...: `ALL[i]`'s slot is `i`, which is what
        // indexing a counter set by `reason as usize` relies on.
        const _: () = {
            let mut i = 0;
            while i < $family::ALL.len() {
                assert!($family::ALL[i] as usize == i);
                i += 1;
            }
        };

        impl CounterFamily for $family {
            const MEMBERS: &'static [Self] = &$family::ALL;
            type Set = [Counter; $count as usize];

            fn name(self) -> &'static str {
                $family::name(self)
            }
            fn drops(self) -> bool {
                $family::drops(self)
            }
            fn index(self) -> u32 {
                self as u32
            }
        }
    };
    (@drops drop) => { true };
    (@drops pass) => { false };
    // A family whose names have no prefix.
    (
        $(#[$meta:meta])*
        pub enum $family:ident, count $count:ident { $($members:tt)* }
    ) => {
        counter_family! {
            $(#[$meta])*
            pub enum $family, count $count, names prefixed "" { $($members)* }
        }
    };
}

counter_family! {
    /// Why a packet got its verdict; the index of its slot in the counters map.
    ///
    /// The kernel side only ever writes these as constants: a reason is never
    /// built from packet bytes.
    pub enum Reason, count REASON_COUNT {
        SipAllowed = 0 => "sip_allowed", pass,
        SipDenied = 1 => "sip_denied", drop,
        RtpAllowed = 2 => "rtp_allowed", pass,
        Fragment = 3 => "fragment", pass,
        Other = 4 => "other", pass,
        NonIp = 5 => "non_ip", pass,
        Malformed = 6 => "malformed", drop,
        /// The source is in the ban set (docs/policy.md, abuse controls).
        Banned = 7 => "banned", drop,
        /// An allowed signalling packet over its source's rate limit.
        SipRatelimited = 8 => "sip_ratelimited", drop,
        /// A media packet over its source's rate limit.
        RtpRatelimited = 9 => "rtp_ratelimited", drop,
        /// UDP into the media range that is not RTP/RTCP (`check_rtp`).
        RtpInvalid = 10 => "rtp_invalid", drop,
        /// Strict mode: ICMP errors, neighbour discovery, DHCP replies, pings.
        Essential = 11 => "essential", pass,
        /// Strict mode: a packet of a flow this host has sent on.
        Reply = 12 => "reply", pass,
        /// Strict mode: matched a `[[strict.allow]]` rule.
        RuleAllowed = 13 => "rule_allowed", pass,
        /// Strict mode: UDP from the provider's media ports to a port outside
        /// `rtp_ports` (dropped: one-way audio).
        RtpOutside = 14 => "rtp_outside", drop,
        /// Strict mode: nothing allowed it.
        Denied = 15 => "denied", drop,
        /// Calls mode: UDP to the media range (or from the provider's
        /// media ports) that matched no live pinhole.
        RtpUnsolicited = 16 => "rtp_unsolicited", drop,
    }
}

counter_family! {
    /// Why the TC egress program passed or dropped an outgoing packet (strict
    /// egress, docs/policy.md "Egress"); the index of its slot in the egress
    /// counters map. Kept apart from [`Reason`]: the two programs count into
    /// maps of their own.
    pub enum OutReason, count OUT_REASON_COUNT, names prefixed "out_" {
        /// Not IPv4/IPv6.
        NonIp = 0 => "non_ip", pass,
        /// To a signalling port at an allowlisted address.
        SipAllowed = 1 => "sip_allowed", pass,
        /// To a signalling port elsewhere (dropped).
        SipDenied = 2 => "sip_denied", drop,
        /// UDP to the provider's media ports.
        RtpAllowed = 3 => "rtp_allowed", pass,
        /// An answer to what ingress lets in: from a signalling port to an
        /// allowlisted address, from `rtp_ports`, from a `[[strict.allow]]`
        /// rule's ports back to its `from`, echo replies when ping is on.
        Reply = 4 => "reply", pass,
        /// ICMP errors, neighbour discovery, DHCP client, DNS to the
        /// configured resolvers.
        Essential = 5 => "essential", pass,
        /// Matched an `[[egress.allow]]` rule.
        RuleAllowed = 6 => "rule_allowed", pass,
        /// A non-first fragment (its first fragment was judged by its ports).
        Fragment = 7 => "fragment", pass,
        /// Nothing allowed it (dropped); malformed packets too.
        Denied = 8 => "denied", drop,
    }
}

/// Packets and bytes (frame length) counted under one reason, on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}
