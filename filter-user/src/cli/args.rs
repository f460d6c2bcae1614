//! The command line (docs/cli.md): every subcommand and flag, as clap
//! parses them. What each does is in the module of its name.
//!
//! Each subcommand's variant holds its own `Args` struct; a flag that
//! several commands take is declared once, in a small struct of its own
//! that they flatten in. Where commands word such a flag's help each their
//! own way on purpose, the variant gives it (`mut_arg`).
use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::{Args, Parser, Subcommand, ValueEnum};
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
    #[command(mut_arg("config", |a| a.help(
        "Configuration file (TOML, a regular file of at most 32 MiB); the defaults are the \
         provider's published values"
    )))]
    Attach(AttachArgs),
    /// Keep a policy applied with --confirm.
    Confirm(ConfirmArgs),
    /// Remove the filter from an interface, with its pins.
    Detach(AttachedIface),
    /// Attached interfaces, mode, program, policy.
    Status(ShowArgs),
    /// Show or change the signalling allowlist of a running filter.
    #[command(subcommand)]
    Allow(AllowAction),
    /// Counters per reason.
    Stats(StatsArgs),
    /// Denied sources with the most packets.
    Top(TopArgs),
    /// Show or change the ban set: sources dropped before any other rule.
    #[command(subcommand)]
    Ban(BanAction),
    /// Calls mode's pinholes: list them, or open and close one by hand (PBX integrations).
    #[command(subcommand)]
    Pinhole(PinholeAction),
    /// Run every packet of a pcap through the real program (nothing attached).
    ///
    /// Each frame of the capture (pcap or pcapng, Ethernet) is judged by the XDP program loaded
    /// with the configuration given (BPF_PROG_TEST_RUN); the verdict and reason are printed per
    /// packet, then a summary. Packets the host sent (--local, --local-iface) are reported as
    /// outbound and not judged: the filter only sees what arrives.
    Check(CheckArgs),
    /// Write what the filter judges on an interface to pcapng, each packet commented with its verdict and reason.
    ///
    /// While it runs, the XDP and TC egress programs sample the packets the filter takes (headers
    /// up to --snaplen, at most --rate a second); it stops at --count, --duration or Ctrl-C, with
    /// a valid file, and reports on stderr how many packets matched, were written, skipped by the
    /// rate cap or lost. One capture per interface.
    Capture(CaptureArgs),
    /// Which row of the policy decides a packet: the packet described is built and run through the real program.
    ///
    /// The policy is a configuration file's (-c; the defaults without it) or a live attachment's
    /// (-i, read from its maps: the ban set, rate-limit buckets and learnt flows are left out).
    /// Prints the verdict, the counter, the row of docs/policy.md and the configuration key behind it.
    Explain(ExplainArgs),
    /// Foreground service: attach, follow the configuration file (and SIGHUP), serve metrics and probes; on SIGTERM detach only what it attached.
    #[command(mut_arg("config", |a| a.help(
        "Configuration file (TOML): the whole truth, allowlist included; reloaded whenever it \
         changes and on SIGHUP"
    )))]
    Run(RunArgs),
    /// Production checks, each ok/warn/fail with what to do; exit 0, 1 or 2 by the worst.
    Doctor(DoctorArgs),
}

#[derive(Subcommand, Debug)]
pub enum AllowAction {
    /// The allowlist.
    List(ShowArgs),
    /// Add CIDRs.
    #[command(
        mut_arg("cidrs", |a| a.help("Addresses or networks (a bare address is /32 or /128)")),
        mut_arg("force", |a| a.help(
            "Change the pinned allowlist even when the attachment is not filtering, and add a \
             prefix of length 0 (every source of a family)"
        )),
    )]
    Add(AllowEditArgs),
    /// Remove CIDRs.
    #[command(
        mut_arg("cidrs", |a| a.help("Entries to remove, as listed by `allow list`")),
        mut_arg("force", |a| a.help(
            "Allow removing the last entry (an empty allowlist denies all signalling), and \
             changing an attachment that is not filtering"
        )),
    )]
    Del(AllowEditArgs),
    /// Swap in a whole new set from a file (one CIDR a line, # comments), atomically.
    Replace(AllowReplaceArgs),
}

#[derive(Subcommand, Debug)]
pub enum BanAction {
    /// Ban addresses or CIDRs, for a time or permanently; a banned entry takes the new time.
    Add(BanAddArgs),
    /// Lift bans.
    Del(BanDelArgs),
    /// The bans in force and the time left on each.
    List(ShowArgs),
}

#[derive(Subcommand, Debug)]
pub enum PinholeAction {
    /// The pinholes: local port, remote address, Call-ID, age, idle time, packets, live or expired.
    List(ShowArgs),
    /// Open a pinhole: media from ADDR (or any source) to a local port of rtp_ports passes.
    Add(PinholeAddArgs),
    /// Close a pinhole at once.
    Del(PinholeDelArgs),
}

// Flags that several commands share, each declared once and flattened in.

/// `-i` of the commands that act on an attachment.
#[derive(Args, Debug)]
pub struct AttachedIface {
    /// The attached interface (may be left out when only one is attached).
    #[arg(short, long)]
    pub iface: Option<String>,
}

/// `--json`.
#[derive(Args, Debug)]
pub struct JsonFlag {
    /// Print JSON (docs/json.md) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What `attach` and `run` apply, and where. Each gives its own help for
/// `-c` (at its variant of [`Command`]): `run` follows the file, `attach`
/// reads it once.
#[derive(Args, Debug)]
pub struct PolicyTarget {
    /// The interface to filter (in this network namespace, or --netns's).
    #[arg(short, long)]
    pub iface: String,
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// XDP mode: auto tries native, then falls back to skb.
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: AttachMode,
}

/// `--force` of `attach` and `run`: the refusals of a policy it overrides.
#[derive(Args, Debug)]
pub struct PolicyForce {
    /// Accept an empty allowlist (which denies all signalling), a
    /// strict policy the SSH guard refuses, and check_rtp, a media rate
    /// limit or strict egress over the host's unreserved ephemeral ports.
    #[arg(long)]
    pub force: bool,
}

/// The flags of `status`, `allow list` and `ban list`: which attachment,
/// what format.
#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    pub attached: AttachedIface,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// The range of `--confirm SECS`, for `attach` and `run` (whose help texts
/// for it differ: `attach` also takes Enter, `run` detaches).
fn confirm_secs() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(1..=3600)
}

/// `--watch` of `stats` and `top` (its range: [`super::stats::watch_interval`]).
#[derive(Args, Debug)]
pub struct WatchFlag {
    /// Redraw every SECS seconds with per-second rates.
    #[arg(long, value_name = "SECS")]
    pub watch: Option<f64>,
}

// Each command's own flags, in the order of Command.

#[derive(Args, Debug)]
pub struct AttachArgs {
    #[command(flatten)]
    pub target: PolicyTarget,
    /// Count every decision but drop nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub policy: PolicyForce,
    /// Roll the policy back unless `sipwall confirm` (or Enter) comes
    /// within SECS seconds.
    #[arg(long, value_name = "SECS", value_parser = confirm_secs())]
    pub confirm: Option<u64>,
}

#[derive(Args, Debug)]
pub struct ConfirmArgs {
    /// The interface whose --confirm waits (may be left out when only one is attached).
    #[arg(short, long)]
    pub iface: Option<String>,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    pub attached: AttachedIface,
    #[command(flatten)]
    pub output: JsonFlag,
    #[command(flatten)]
    pub redraw: WatchFlag,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    #[command(flatten)]
    pub attached: AttachedIface,
    /// How many sources to show.
    #[arg(short = 'n', default_value_t = 10)]
    pub n: usize,
    #[command(flatten)]
    pub output: JsonFlag,
    /// The drop reason whose sources to show: sip_denied (the default),
    /// denied, rtp_outside, banned, sip_ratelimited, rtp_ratelimited,
    /// rtp_invalid, rtp_unsolicited.
    #[arg(long, value_name = "R", default_value = "sip_denied")]
    pub reason: String,
    #[command(flatten)]
    pub redraw: WatchFlag,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The capture: a regular pcap or pcapng file of at most 256 MiB.
    #[arg(long, value_name = "FILE")]
    pub pcap: PathBuf,
    /// Configuration file (TOML) to judge by; the defaults when left out.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// This host's addresses: packets from them were sent by the host (outbound) and are not
    /// judged. Repeat or list several.
    #[arg(long, value_name = "ADDR", num_args = 1.., value_delimiter = ',')]
    pub local: Vec<IpAddr>,
    /// Take this host's addresses from an interface (as `ip addr` shows them now). Repeatable.
    #[arg(long, value_name = "IF")]
    pub local_iface: Vec<String>,
    /// Which program judges the frames: `in`, the XDP program (packets arriving); `out`, the TC egress program (packets the host sends; with --local, only frames from those addresses).
    #[arg(long, value_enum, default_value = "in")]
    pub direction: CheckDirection,
    #[command(flatten)]
    pub output: JsonFlag,
}

#[derive(Args, Debug)]
pub struct CaptureArgs {
    #[command(flatten)]
    pub attached: AttachedIface,
    /// Only packets counted under this reason (a counter name, in or out_*); repeatable.
    #[arg(long = "reason", value_name = "R")]
    pub reasons: Vec<String>,
    /// Only dropped or only passed packets.
    #[arg(long, value_enum)]
    pub verdict: Option<CaptureVerdict>,
    /// Only packets arriving (in, the XDP program) or sent (out, strict egress's TC program).
    #[arg(long, value_enum)]
    pub direction: Option<CheckDirection>,
    /// Stop after writing N packets.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop after this long: seconds (30, 2.5) or 90s, 10m, 1h.
    #[arg(long, value_name = "D", value_parser = crate::ops::capture::parse_duration)]
    pub duration: Option<Duration>,
    /// Bytes of each packet to keep (headers first), 1-1536.
    #[arg(long, value_name = "N", default_value_t = crate::ops::capture::DEFAULT_SNAPLEN,
          value_parser = clap::value_parser!(u32).range(1..=filter_common::capture::MAX_SNAPLEN as i64))]
    pub snaplen: u32,
    /// At most this many packets a second are sampled (shared out over the CPUs); the rest
    /// are counted as skipped.
    #[arg(long, value_name = "PPS", default_value_t = crate::ops::capture::DEFAULT_RATE,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: u32,
    /// The pcapng file to write, or - for standard output (| tshark -r -).
    #[arg(short = 'w', value_name = "FILE|-", required = true)]
    pub write: PathBuf,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Judge by the policy of this attached interface (read from its maps).
    #[arg(short, long, conflicts_with = "config")]
    pub iface: Option<String>,
    /// Judge by this configuration file (TOML); the defaults when neither -i nor -c is given.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// `in`: a packet arriving (the XDP program); `out`: a packet the host sends (the TC egress program).
    #[arg(long, value_enum, default_value = "in")]
    pub direction: CheckDirection,
    #[command(flatten)]
    pub output: JsonFlag,
    /// The packet: [vlan N] tcp|udp|sctp SRC:PORT > DST:PORT [flags S|A|F|R|P|U...]
    /// [fragment] [payload N], or [vlan N] icmp SRC > DST [type N] [code N]; IPv6 with a
    /// port as [ADDR]:PORT. One argument or several words.
    #[arg(required = true, num_args = 1.., value_name = "PACKET", allow_hyphen_values = true)]
    pub packet: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: PolicyTarget,
    /// Serve Prometheus metrics (/metrics) and probes (/healthz, /readyz) on this address (e.g. 127.0.0.1:9464).
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    #[command(flatten)]
    pub policy: PolicyForce,
    /// Never detach on exit: the filter stays attached and pinned for the next start (fleets, Kubernetes).
    #[arg(long)]
    pub keep_attached: bool,
    /// Roll the policy back (detach) unless `sipwall confirm` comes
    /// within SECS seconds of the start.
    #[arg(long, value_name = "SECS", value_parser = confirm_secs())]
    pub confirm: Option<u64>,
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub attached: AttachedIface,
    /// Configuration file to compare with the running policy.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// The provider's signalling hostname, resolved and compared with the allowlist.
    #[arg(long, value_name = "NAME", default_value = crate::ops::doctor::DEFAULT_PROVIDER_HOST)]
    pub provider_host: String,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// `allow add` and `allow del`: the same arguments, each command with its
/// own help for them (given at its variant of [`AllowAction`]).
#[derive(Args, Debug)]
pub struct AllowEditArgs {
    #[command(flatten)]
    pub attached: AttachedIface,
    #[arg(required = true, value_name = "CIDR")]
    pub cidrs: Vec<String>,
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct AllowReplaceArgs {
    #[command(flatten)]
    pub attached: AttachedIface,
    /// The new allowlist: a regular file of at most 32 MiB, or `-` for standard input.
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// Accept an empty file (which denies all signalling) or one with a prefix of length 0,
    /// and change an attachment that is not filtering.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct BanAddArgs {
    #[command(flatten)]
    pub attached: AttachedIface,
    /// Addresses or CIDRs.
    #[arg(required_unless_present = "file")]
    pub cidrs: Vec<String>,
    /// Also ban every entry of a file (one a line, # comments; or APIBAN's JSON); - for standard input.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// How long: seconds (3600) or 90s, 10m, 1h30m, 7d; permanent when left out.
    #[arg(long = "for", value_name = "DURATION", allow_hyphen_values = true)]
    pub duration: Option<String>,
    /// Ban even a prefix of length 0, one overlapping the allowlist (the provider), or one
    /// covering the client of a logged-in SSH session (found in /proc, else SSH_CONNECTION).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct BanDelArgs {
    #[command(flatten)]
    pub attached: AttachedIface,
    /// Addresses or CIDRs.
    #[arg(required = true)]
    pub cidrs: Vec<String>,
    /// Skip entries that are not banned (expired, say) instead of refusing.
    #[arg(long)]
    pub missing_ok: bool,
}

/// Which pinhole `pinhole add` and `del` change.
#[derive(Args, Debug)]
pub struct PinholeTarget {
    /// The attached interface (may be left out when only one is attached).
    #[arg(short, long)]
    pub iface: Option<String>,
    /// The local UDP port: one of the attachment's rtp_ports.
    #[arg(long, value_name = "P")]
    pub port: u16,
    /// The remote address media comes from, or `any` for any source.
    #[arg(long, value_name = "ADDR|any")]
    pub from: String,
}

#[derive(Args, Debug)]
pub struct PinholeAddArgs {
    #[command(flatten)]
    pub target: PinholeTarget,
    /// Keep it open without media for this long (1 s to 24 h: seconds, or 90s, 10m, 1h) instead
    /// of [media] call_idle; media keeps it open as long again as call_idle after its last packet.
    #[arg(long = "for", value_name = "DURATION", allow_hyphen_values = true)]
    pub duration: Option<String>,
}

#[derive(Args, Debug)]
pub struct PinholeDelArgs {
    #[command(flatten)]
    pub target: PinholeTarget,
    /// A pinhole that is not there is no error (an integration that closes on every hang-up).
    #[arg(long)]
    pub missing_ok: bool,
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
