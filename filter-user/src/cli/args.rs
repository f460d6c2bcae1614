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
        #[arg(short, long)]
        iface: String,
        /// Configuration file (TOML); the defaults are the provider's published values.
        #[arg(short, long)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "auto")]
        mode: AttachMode,
        /// Count every decision but drop nothing.
        #[arg(long)]
        dry_run: bool,
        /// Accept an empty allowlist (which denies all signalling).
        #[arg(long)]
        force: bool,
    },
    /// Remove the filter from an interface, with its pins.
    Detach {
        #[arg(short, long)]
        iface: Option<String>,
    },
    /// Attached interfaces, mode, program, policy.
    Status {
        #[arg(short, long)]
        iface: Option<String>,
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
        #[arg(short, long)]
        iface: Option<String>,
        #[arg(long)]
        json: bool,
        /// Redraw every SECS seconds with per-second rates.
        #[arg(long, value_name = "SECS")]
        watch: Option<f64>,
    },
    /// Denied sources with the most packets.
    Top {
        #[arg(short, long)]
        iface: Option<String>,
        #[arg(short = 'n', default_value_t = 10)]
        n: usize,
        #[arg(long)]
        json: bool,
        /// The drop reason whose sources to show: sip_denied (the default),
        /// sip_ratelimited or rtp_ratelimited.
        #[arg(long, value_name = "R", default_value = "sip_denied")]
        reason: String,
    },
    /// Show or change the ban set: sources dropped before any other rule.
    Ban {
        #[command(subcommand)]
        action: BanAction,
    },
    /// Run every packet of a pcap through the real program (nothing attached).
    Check {
        #[arg(long)]
        pcap: PathBuf,
        #[arg(short, long)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Foreground service: attach, reload on SIGHUP, serve metrics, detach on SIGTERM.
    Run {
        #[arg(short, long)]
        iface: String,
        #[arg(short, long)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "auto")]
        mode: AttachMode,
        /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464).
        #[arg(long)]
        metrics: Option<SocketAddr>,
        /// Accept an empty allowlist (which denies all signalling).
        #[arg(long)]
        force: bool,
    },
    /// Build a throw-away lab of network namespaces and show the filter at work.
    Demo,
}

#[derive(Subcommand, Debug)]
pub enum AllowAction {
    /// The allowlist.
    List {
        #[arg(short, long)]
        iface: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Add CIDRs.
    Add {
        #[arg(short, long)]
        iface: Option<String>,
        #[arg(required = true)]
        cidrs: Vec<String>,
    },
    /// Remove CIDRs.
    Del {
        #[arg(short, long)]
        iface: Option<String>,
        #[arg(required = true)]
        cidrs: Vec<String>,
        /// Allow removing the last entry (an empty allowlist denies all signalling).
        #[arg(long)]
        force: bool,
    },
    /// Swap in a whole new set from a file (one CIDR a line, # comments), atomically.
    Replace {
        #[arg(short, long)]
        iface: Option<String>,
        #[arg(long)]
        file: PathBuf,
        /// Accept an empty file (which denies all signalling).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum BanAction {
    /// Ban addresses or CIDRs, for a time or permanently; a banned entry takes the new time.
    Add {
        #[arg(short, long)]
        iface: Option<String>,
        /// Addresses or CIDRs.
        #[arg(required_unless_present = "file")]
        cidrs: Vec<String>,
        /// Also ban every entry of a file (one a line, # comments; or APIBAN's JSON).
        #[arg(long)]
        file: Option<PathBuf>,
        /// How long: seconds (3600) or 90s, 10m, 1h30m, 7d; permanent when left out.
        #[arg(long = "for", value_name = "DURATION", allow_hyphen_values = true)]
        duration: Option<String>,
    },
    /// Lift bans.
    Del {
        #[arg(short, long)]
        iface: Option<String>,
        #[arg(required = true)]
        cidrs: Vec<String>,
        /// Skip entries that are not banned (expired, say) instead of refusing.
        #[arg(long)]
        missing_ok: bool,
    },
    /// The bans in force and the time left on each.
    List {
        #[arg(short, long)]
        iface: Option<String>,
        #[arg(long)]
        json: bool,
    },
}
