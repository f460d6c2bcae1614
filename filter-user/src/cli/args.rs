//! The command line (docs/cli.md): every subcommand and flag, as clap
//! parses them. What each does is in the module of its name.
use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use filter_common::XdpMode;

#[derive(Parser, Debug)]
#[command(
    name = "sipwall",
    version,
    about = "XDP firewall for a SIP trunk: signalling only from the provider, media on the RTP range"
)]
pub struct Cli {
    /// Root of sipwall's pins on bpffs.
    #[arg(
        long,
        global = true,
        env = "SIPWALL_BPFFS",
        default_value = "/sys/fs/bpf/sipwall"
    )]
    pub bpffs: PathBuf,

    /// Act in another network namespace: a name under /run/netns (as `ip netns` shows it) or a
    /// path such as /proc/PID/ns/net. Attachments belong to a namespace and its interface;
    /// without this flag, sipwall acts on those of the namespace it runs in.
    #[arg(long, global = true, value_name = "NAME|PATH")]
    pub netns: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AttachMode {
    /// Native (driver) mode, falling back to skb mode when the driver refuses.
    Auto,
    /// Driver mode.
    Native,
    /// Generic (skb) mode: works everywhere, slower.
    Skb,
    /// Offloaded to the NIC.
    Hw,
}

impl AttachMode {
    /// The mode asked for; `None` for auto (native, falling back to skb).
    pub fn requested(self) -> Option<XdpMode> {
        match self {
            AttachMode::Auto => None,
            AttachMode::Native => Some(XdpMode::Native),
            AttachMode::Skb => Some(XdpMode::Skb),
            AttachMode::Hw => Some(XdpMode::Hw),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load, pin and attach the filter to an interface; it keeps running after sipwall exits.
    Attach {
        /// The interface to filter (in this network namespace, or --netns's).
        #[arg(short, long)]
        iface: String,
        /// Configuration file (TOML, a regular file of at most 32 MiB); the defaults are the
        /// provider's published values.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// XDP mode: auto tries native, then falls back to skb.
        #[arg(long, value_enum, default_value = "auto")]
        mode: AttachMode,
        /// Count every decision but drop nothing.
        #[arg(long)]
        dry_run: bool,
        /// Accept an empty allowlist (which denies all signalling), a
        /// strict policy the SSH guard refuses, and check_rtp, a media rate
        /// limit or strict egress over the host's unreserved ephemeral ports.
        #[arg(long)]
        force: bool,
        /// Roll the policy back unless `sipwall confirm` (or Enter) comes
        /// within SECS seconds.
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        confirm: Option<u64>,
    },
    /// Keep a policy applied with --confirm.
    Confirm {
        /// The interface whose --confirm waits (may be left out when only one is attached).
        #[arg(short, long)]
        iface: Option<String>,
    },
    /// Remove the filter from an interface, with its pins.
    Detach {
        /// The attached interface (may be left out when only one is attached).
        #[arg(short, long)]
        iface: Option<String>,
    },
    /// Attached interfaces, mode, program, policy.
    Status {
        /// The attached interface (may be left out when only one is attached).
        #[arg(short, long)]
        iface: Option<String>,
        /// Print JSON (docs/json.md) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show or change the signalling allowlist of a running filter.
    Allow {
        #[command(subcommand)]
        action: AllowAction,
    },
    /// Counters per reason.
    Stats {
        /// The attached interface (may be left out when only one is attached).
        #[arg(short, long)]
        iface: Option<String>,
        /// Print JSON (docs/json.md) instead of text.
        #[arg(long)]
        json: bool,
        /// Redraw every SECS seconds with per-second rates.
        #[arg(long, value_name = "SECS")]
        watch: Option<f64>,
    },
    /// Denied sources with the most packets.
    Top {
        /// The attached interface (may be left out when only one is attached).
        #[arg(short, long)]
        iface: Option<String>,
        /// How many sources to show.
        #[arg(short = 'n', default_value_t = 10)]
        n: usize,
        /// Print JSON (docs/json.md) instead of text.
        #[arg(long)]
        json: bool,
        /// The drop reason whose sources to show: sip_denied (the default),
        /// denied, rtp_outside, banned, sip_ratelimited, rtp_ratelimited,
        /// rtp_invalid.
        #[arg(long, value_name = "R", default_value = "sip_denied")]
        reason: String,
        /// Redraw every SECS seconds with per-second rates.
        #[arg(long, value_name = "SECS")]
        watch: Option<f64>,
    },
    /// Show or change the ban set: sources dropped before any other rule.
    Ban {
        #[command(subcommand)]
        action: BanAction,
    },
    /// Run every packet of a pcap through the real program (nothing attached).
    ///
    /// Each frame of the capture (pcap or pcapng, Ethernet) is judged by the XDP program loaded
    /// with the configuration given (BPF_PROG_TEST_RUN); the verdict and reason are printed per
    /// packet, then a summary. Packets the host sent (--local, --local-iface) are reported as
    /// outbound and not judged: the filter only sees what arrives.
    Check {
        /// The capture: a regular pcap or pcapng file of at most 256 MiB.
        #[arg(long, value_name = "FILE")]
        pcap: PathBuf,
        /// Configuration file (TOML) to judge by; the defaults when left out.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// This host's addresses: packets from them were sent by the host (outbound) and are not
        /// judged. Repeat or list several.
        #[arg(long, value_name = "ADDR", num_args = 1.., value_delimiter = ',')]
        local: Vec<std::net::IpAddr>,
        /// Take this host's addresses from an interface (as `ip addr` shows them now). Repeatable.
        #[arg(long, value_name = "IF")]
        local_iface: Vec<String>,
        /// Which program judges the frames: `in`, the XDP program (packets arriving); `out`, the TC egress program (packets the host sends; with --local, only frames from those addresses).
        #[arg(long, value_enum, default_value = "in")]
        direction: CheckDirection,
        /// Print JSON (docs/json.md) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write what the filter judges on an interface to pcapng, each packet commented with its verdict and reason.
    ///
    /// While it runs, the XDP and TC egress programs sample the packets the filter takes (headers
    /// up to --snaplen, at most --rate a second); it stops at --count, --duration or Ctrl-C, with
    /// a valid file, and reports on stderr how many packets matched, were written, skipped by the
    /// rate cap or lost. One capture per interface.
    Capture {
        /// The attached interface (may be left out when only one is attached).
        #[arg(short, long)]
        iface: Option<String>,
        /// Only packets counted under this reason (a counter name, in or out_*); repeatable.
        #[arg(long = "reason", value_name = "R")]
        reasons: Vec<String>,
        /// Only dropped or only passed packets.
        #[arg(long, value_enum)]
        verdict: Option<CaptureVerdict>,
        /// Only packets arriving (in, the XDP program) or sent (out, strict egress's TC program).
        #[arg(long, value_enum)]
        direction: Option<CheckDirection>,
        /// Stop after writing N packets.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
        /// Stop after this long: seconds (30, 2.5) or 90s, 10m, 1h.
        #[arg(long, value_name = "D", value_parser = crate::ops::capture::parse_duration)]
        duration: Option<std::time::Duration>,
        /// Bytes of each packet to keep (headers first), 1-1536.
        #[arg(long, value_name = "N", default_value_t = crate::ops::capture::DEFAULT_SNAPLEN,
              value_parser = clap::value_parser!(u32).range(1..=filter_common::capture::MAX_SNAPLEN as i64))]
        snaplen: u32,
        /// At most this many packets a second are sampled (shared out over the CPUs); the rest
        /// are counted as skipped.
        #[arg(long, value_name = "PPS", default_value_t = crate::ops::capture::DEFAULT_RATE,
              value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        rate: u32,
        /// The pcapng file to write, or - for standard output (| tshark -r -).
        #[arg(short = 'w', value_name = "FILE|-", required = true)]
        write: PathBuf,
    },
    /// Which row of the policy decides a packet: the packet described is built and run through the real program.
    ///
    /// The policy is a configuration file's (-c; the defaults without it) or a live attachment's
    /// (-i, read from its maps: the ban set, rate-limit buckets and learnt flows are left out).
    /// Prints the verdict, the counter, the row of docs/policy.md and the configuration key behind it.
    Explain {
        /// Judge by the policy of this attached interface (read from its maps).
        #[arg(short, long, conflicts_with = "config")]
        iface: Option<String>,
        /// Judge by this configuration file (TOML); the defaults when neither -i nor -c is given.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// `in`: a packet arriving (the XDP program); `out`: a packet the host sends (the TC egress program).
        #[arg(long, value_enum, default_value = "in")]
        direction: CheckDirection,
        /// Print JSON (docs/json.md) instead of text.
        #[arg(long)]
        json: bool,
        /// The packet: [vlan N] tcp|udp|sctp SRC:PORT > DST:PORT [flags S|A|F|R|P|U...]
        /// [fragment] [payload N], or [vlan N] icmp SRC > DST [type N] [code N]; IPv6 with a
        /// port as [ADDR]:PORT. One argument or several words.
        #[arg(required = true, num_args = 1.., value_name = "PACKET", allow_hyphen_values = true)]
        packet: Vec<String>,
    },
    /// Foreground service: attach, follow the configuration file (and SIGHUP), serve metrics and probes; on SIGTERM detach only what it attached.
    Run {
        /// The interface to filter.
        #[arg(short, long)]
        iface: String,
        /// Configuration file (TOML): the whole truth, allowlist included; reloaded whenever it changes and on SIGHUP.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// XDP mode: auto tries native, then falls back to skb.
        #[arg(long, value_enum, default_value = "auto")]
        mode: AttachMode,
        /// Serve Prometheus metrics (/metrics) and probes (/healthz, /readyz) on this address (e.g. 127.0.0.1:9464).
        #[arg(long)]
        metrics: Option<SocketAddr>,
        /// Accept an empty allowlist (which denies all signalling), a
        /// strict policy the SSH guard refuses, and check_rtp, a media rate
        /// limit or strict egress over the host's unreserved ephemeral ports.
        #[arg(long)]
        force: bool,
        /// Never detach on exit: the filter stays attached and pinned for the next start (fleets, Kubernetes).
        #[arg(long)]
        keep_attached: bool,
        /// Roll the policy back (detach) unless `sipwall confirm` comes
        /// within SECS seconds of the start.
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        confirm: Option<u64>,
    },
    /// Production checks, each ok/warn/fail with what to do; exit 0, 1 or 2 by the worst.
    Doctor {
        /// The attached interface (may be left out when only one is attached).
        #[arg(short, long)]
        iface: Option<String>,
        /// Configuration file to compare with the running policy.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// The provider's signalling hostname, resolved and compared with the allowlist.
        #[arg(long, value_name = "NAME", default_value = crate::ops::doctor::DEFAULT_PROVIDER_HOST)]
        provider_host: String,
        /// Print JSON (docs/json.md) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AllowAction {
    /// The allowlist.
    List {
        /// The attached interface (may be left out when only one is attached).
        #[arg(short, long)]
        iface: Option<String>,
        /// Print JSON (docs/json.md) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add CIDRs.
    Add {
        /// The attached interface (may be left out when only one is attached).
        #[arg(short, long)]
        iface: Option<String>,
        /// Addresses or networks (a bare address is /32 or /128).
        #[arg(required = true, value_name = "CIDR")]
        cidrs: Vec<String>,
        /// Change the pinned allowlist even when the attachment is not filtering, and add a
        /// prefix of length 0 (every source of a family).
        #[arg(long)]
        force: bool,
    },
    /// Remove CIDRs.
    Del {
        /// The attached interface (may be left out when only one is attached).
        #[arg(short, long)]
        iface: Option<String>,
        /// Entries to remove, as listed by `allow list`.
        #[arg(required = true, value_name = "CIDR")]
        cidrs: Vec<String>,
        /// Allow removing the last entry (an empty allowlist denies all signalling), and changing
        /// an attachment that is not filtering.
        #[arg(long)]
        force: bool,
    },
    /// Swap in a whole new set from a file (one CIDR a line, # comments), atomically.
    Replace {
        /// The attached interface (may be left out when only one is attached).
        #[arg(short, long)]
        iface: Option<String>,
        /// The new allowlist: a regular file of at most 32 MiB, or `-` for standard input.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Accept an empty file (which denies all signalling) or one with a prefix of length 0,
        /// and change an attachment that is not filtering.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum BanAction {
    /// Ban addresses or CIDRs, for a time or permanently; a banned entry takes the new time.
    Add {
        /// The attached interface (may be left out when only one is attached).
        #[arg(short, long)]
        iface: Option<String>,
        /// Addresses or CIDRs.
        #[arg(required_unless_present = "file")]
        cidrs: Vec<String>,
        /// Also ban every entry of a file (one a line, # comments; or APIBAN's JSON); - for standard input.
        #[arg(long)]
        file: Option<PathBuf>,
        /// How long: seconds (3600) or 90s, 10m, 1h30m, 7d; permanent when left out.
        #[arg(long = "for", value_name = "DURATION", allow_hyphen_values = true)]
        duration: Option<String>,
        /// Ban even a prefix of length 0, one overlapping the allowlist (the provider), or one
        /// covering the client of a logged-in SSH session (found in /proc, else SSH_CONNECTION).
        #[arg(long)]
        force: bool,
    },
    /// Lift bans.
    Del {
        /// The attached interface (may be left out when only one is attached).
        #[arg(short, long)]
        iface: Option<String>,
        /// Addresses or CIDRs.
        #[arg(required = true)]
        cidrs: Vec<String>,
        /// Skip entries that are not banned (expired, say) instead of refusing.
        #[arg(long)]
        missing_ok: bool,
    },
    /// The bans in force and the time left on each.
    List {
        /// The attached interface (may be left out when only one is attached).
        #[arg(short, long)]
        iface: Option<String>,
        /// Print JSON (docs/json.md) instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `check --direction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckDirection {
    In,
    Out,
}

impl From<CheckDirection> for crate::ops::check::Direction {
    fn from(d: CheckDirection) -> Self {
        match d {
            CheckDirection::In => crate::ops::check::Direction::In,
            CheckDirection::Out => crate::ops::check::Direction::Out,
        }
    }
}

/// `capture --verdict`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CaptureVerdict {
    Drop,
    Pass,
}
