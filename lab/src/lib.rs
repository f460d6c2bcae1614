//! A throw-away lab of network namespaces, shared by the demo (this
//! crate's `sipwall-demo`, run by `cargo xtask demo`), the
//! network-namespace tests and the benchmarks. Not part of the product.
//!
//! ```text
//!  provider (44.229.228.186, 44.238.177.138)  ──┐
//!                                               router ── pbx (192.0.2.1, XDP on wan0)
//!  outsider (203.0.113.2, 2001:db8:3::2)     ──┘
//! ```
//!
//! Every host is its own namespace named `<tag>-<pid>-<n>-<host>`, so labs of
//! parallel tests never meet. The lab also mounts a private bpffs in the root
//! mount namespace: `ip netns exec` gives its command a fresh /sys, so pins
//! under /sys/fs/bpf made there would vanish with the command, while a mount
//! under /run stays visible. Dropping the lab kills what still runs in its
//! namespaces, deletes them (which removes the veths and any XDP attachment)
//! and unmounts the bpffs (which releases the pins).
pub mod sipp;
pub mod traffic;

use std::{
    ffi::CString,
    fs::File,
    net::{Ipv4Addr, Ipv6Addr},
    os::{fd::AsRawFd, unix::ffi::OsStrExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output},
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};

/// The PBX: the host sipwall protects.
pub const PBX: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const PBX6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// The PBX's interface towards the router; the one the filter is attached to.
pub const PBX_IFACE: &str = "wan0";
/// The provider's two signalling addresses (docs/policy.md), held by the provider host.
pub const PROVIDER: [Ipv4Addr; 2] = [
    Ipv4Addr::new(44, 229, 228, 186),
    Ipv4Addr::new(44, 238, 177, 138),
];
/// A host on the internet that is not the provider.
pub const OUTSIDER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
pub const OUTSIDER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    Pbx,
    Router,
    Provider,
    Outsider,
}

impl Host {
    pub const ALL: [Host; 4] = [Host::Pbx, Host::Router, Host::Provider, Host::Outsider];

    pub fn name(self) -> &'static str {
        match self {
            Host::Pbx => "pbx",
            Host::Router => "router",
            Host::Provider => "provider",
            Host::Outsider => "outsider",
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks every wait of the lab to give up (the demo's SIGINT handler calls
/// this; it only stores to an atomic, so it is async-signal-safe).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Makes Ctrl-C and SIGTERM ask the lab to stop: whatever runs on it ends
/// at its next step and unwinds through the lab's cleanup instead of dying
/// with the namespaces in place.
pub fn stop_on_signals() {
    extern "C" fn on_signal(_: libc::c_int) {
        request_stop();
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

/// Fails when a stop was requested; call between steps.
pub fn check_stop() -> Result<()> {
    if stop_requested() {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps, waking early (with an error) when a stop is requested.
pub fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        check_stop()?;
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(20)));
    }
    check_stop()
}

/// Waits for a child at most `timeout`; past it the child is killed and
/// `None` returned. A requested stop kills it too and fails.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if stop_requested() || Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            check_stop()?;
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Lab {
    base: String,
    /// Namespaces created so far, so a half-built lab is removed too.
    namespaces: Vec<String>,
    dir: PathBuf,
    bpffs_mounted: bool,
}

impl Lab {
    /// Builds the whole topology. `tag` starts every name the lab creates
    /// (namespaces, its folder under /run).
    pub fn new(tag: &str) -> Result<Lab> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        sweep_stale(tag);
        let base = format!("{tag}-{}-{n}", std::process::id());
        let mut lab = Lab {
            dir: PathBuf::from("/run").join(&base),
            base,
            namespaces: Vec::new(),
            bpffs_mounted: false,
        };
        // On error `lab` is dropped here, removing whatever was built.
        lab.mount_bpffs()?;
        lab.build_network()?;
        Ok(lab)
    }

    /// The network namespace of a host.
    pub fn ns(&self, host: Host) -> String {
        format!("{}-{}", self.base, host.name())
    }

    /// The private bpffs to pass as `--bpffs` to sipwall.
    pub fn bpffs(&self) -> PathBuf {
        self.dir.join("bpffs")
    }

    /// A scratch folder removed with the lab.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `program` to run inside a host's namespace (`ip netns exec`).
    pub fn command(&self, host: Host, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec"]).arg(self.ns(host)).arg(program);
        cmd
    }

    /// `sipwall --bpffs <lab's bpffs> ARGS` inside the PBX's namespace.
    pub fn sipwall(&self, exe: &Path, args: &[&str]) -> Command {
        let mut cmd = self.command(Host::Pbx, exe);
        cmd.arg("--bpffs").arg(self.bpffs()).args(args);
        cmd
    }

    /// Runs a command in a host, capturing its output whatever its status.
    pub fn output(&self, host: Host, argv: &[&str]) -> Result<Output> {
        let (program, args) = argv.split_first().context("empty command")?;
        self.command(host, program)
            .args(args)
            .output()
            .with_context(|| format!("running {argv:?} in {}", host.name()))
    }

    /// Runs a command in a host and returns its stdout; fails with its
    /// stderr when it exits non-zero.
    pub fn exec(&self, host: Host, argv: &[&str]) -> Result<String> {
        let out = self.output(host, argv)?;
        if !out.status.success() {
            bail!(
                "{argv:?} in {} failed ({}): {}",
                host.name(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `f` on a thread that has entered a host's network namespace.
    /// Sockets created there belong to that namespace for good, so `f` may
    /// return them for use from any thread (drop them before the lab: an open
    /// socket keeps its namespace alive).
    pub fn in_ns<T: Send>(&self, host: Host, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = format!("/run/netns/{}", self.ns(host));
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        std::thread::scope(|s| {
            let thread = s.spawn(move || -> Result<T> {
                // Network namespaces are per thread: only this thread moves.
                // SAFETY: setns on a file descriptor this thread owns.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error())
                        .with_context(|| format!("entering {path}"));
                }
                Ok(f())
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Whether a socket of `proto` ("udp", "tcp", "udp6", "tcp6") is bound
    /// to `port` in a host (TCP: listening).
    pub fn is_bound(&self, host: Host, proto: &str, port: u16) -> Result<bool> {
        let table = self.in_ns(host, || {
            std::fs::read_to_string(format!("/proc/thread-self/net/{proto}"))
        })??;
        let tcp = proto.starts_with("tcp");
        Ok(table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let bound = fields
                .get(1)
                .and_then(|local| local.rsplit(':').next())
                .and_then(|hex| u16::from_str_radix(hex, 16).ok())
                == Some(port);
            // TCP state 0A is LISTEN.
            bound && (!tcp || fields.get(3) == Some(&"0A"))
        }))
    }

    /// Waits until [`Lab::is_bound`] holds.
    pub fn wait_bound(&self, host: Host, proto: &str, port: u16, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        while !self.is_bound(host, proto, port)? {
            if Instant::now() > end {
                bail!(
                    "nothing bound to {proto} port {port} in {} after {timeout:?}",
                    host.name()
                );
            }
            sleep(Duration::from_millis(20))?;
        }
        Ok(())
    }

    fn mount_bpffs(&mut self) -> Result<()> {
        filter_kernel::pins::mount_bpffs(&self.bpffs())
            .context("mounting the lab's bpffs (needs root)")?;
        self.bpffs_mounted = true;
        Ok(())
    }

    fn build_network(&mut self) -> Result<()> {
        for host in Host::ALL {
            let ns = self.ns(host);
            ip(&["netns", "add", &ns])?;
            self.namespaces.push(ns);
            self.ip(host, &["link", "set", "lo", "up"])?;
            // No duplicate address detection: addresses (link-local ones
            // included, which neighbour discovery uses) work at once.
            for conf in ["default", "all"] {
                self.sysctl(host, &format!("net/ipv6/conf/{conf}/accept_dad"), "0")?;
            }
        }
        // One veth pair per host, router side named after the host.
        for (host, router_end, host_end) in [
            (Host::Pbx, "pbx", PBX_IFACE),
            (Host::Provider, "provider", "eth0"),
            (Host::Outsider, "outsider", "eth0"),
        ] {
            let ns = self.ns(host);
            self.ip(
                Host::Router,
                &[
                    "link", "add", router_end, "type", "veth", "peer", "name", host_end, "netns",
                    &ns,
                ],
            )?;
            self.ip(Host::Router, &["link", "set", router_end, "up"])?;
            self.ip(host, &["link", "set", host_end, "up"])?;
        }
        let provider = PROVIDER.map(|a| format!("{a}/32"));
        let provider_src = PROVIDER[0].to_string();
        let pbx = format!("{PBX}/24");
        let pbx6 = format!("{PBX6}/64");
        let outsider = format!("{OUTSIDER}/24");
        let outsider6 = format!("{OUTSIDER6}/64");
        let steps: &[(Host, &[&str])] = &[
            (Host::Pbx, &["addr", "add", &pbx, "dev", PBX_IFACE]),
            (
                Host::Pbx,
                &["addr", "add", &pbx6, "dev", PBX_IFACE, "nodad"],
            ),
            (
                Host::Pbx,
                &["route", "add", "default", "via", "192.0.2.254"],
            ),
            (
                Host::Pbx,
                &["-6", "route", "add", "default", "via", "2001:db8:1::fe"],
            ),
            (
                Host::Router,
                &["addr", "add", "192.0.2.254/24", "dev", "pbx"],
            ),
            (
                Host::Router,
                &["addr", "add", "2001:db8:1::fe/64", "dev", "pbx", "nodad"],
            ),
            (
                Host::Router,
                &["addr", "add", "198.51.100.1/24", "dev", "provider"],
            ),
            (
                Host::Router,
                &["route", "add", &provider[0], "via", "198.51.100.2"],
            ),
            (
                Host::Router,
                &["route", "add", &provider[1], "via", "198.51.100.2"],
            ),
            (
                Host::Router,
                &["addr", "add", "203.0.113.1/24", "dev", "outsider"],
            ),
            (
                Host::Router,
                &[
                    "addr",
                    "add",
                    "2001:db8:3::fe/64",
                    "dev",
                    "outsider",
                    "nodad",
                ],
            ),
            (
                Host::Provider,
                &["addr", "add", "198.51.100.2/24", "dev", "eth0"],
            ),
            (
                Host::Provider,
                &["addr", "add", &provider[0], "dev", "eth0"],
            ),
            (
                Host::Provider,
                &["addr", "add", &provider[1], "dev", "eth0"],
            ),
            // The provider speaks from its signalling address unless told otherwise.
            (
                Host::Provider,
                &[
                    "route",
                    "add",
                    "default",
                    "via",
                    "198.51.100.1",
                    "src",
                    &provider_src,
                ],
            ),
            (Host::Outsider, &["addr", "add", &outsider, "dev", "eth0"]),
            (
                Host::Outsider,
                &["addr", "add", &outsider6, "dev", "eth0", "nodad"],
            ),
            (
                Host::Outsider,
                &["route", "add", "default", "via", "203.0.113.1"],
            ),
            (
                Host::Outsider,
                &["-6", "route", "add", "default", "via", "2001:db8:3::fe"],
            ),
        ];
        for (host, args) in steps {
            self.ip(*host, args)?;
        }
        self.sysctl(Host::Router, "net/ipv4/ip_forward", "1")?;
        self.sysctl(Host::Router, "net/ipv6/conf/all/forwarding", "1")?;
        // A SYN the filter drops would otherwise be retried for two minutes.
        for host in [Host::Provider, Host::Outsider] {
            self.sysctl(host, "net/ipv4/tcp_syn_retries", "1")?;
        }
        Ok(())
    }

    fn ip(&self, host: Host, args: &[&str]) -> Result<()> {
        let ns = self.ns(host);
        let mut all = vec!["-n", ns.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    fn sysctl(&self, host: Host, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{key}");
        self.in_ns(host, || std::fs::write(&path, value))?
            .with_context(|| format!("setting {key} in {}", host.name()))
    }

    /// Kills what still runs in the lab's namespaces (only processes this
    /// lab's user started can be there: the names are unique).
    fn kill_leftovers(&self, ns: &str) {
        let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
            return;
        };
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<libc::pid_t>() {
                // SAFETY: kill has no memory effects; the pids are of this
                // lab's namespaces only.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            self.kill_leftovers(ns);
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("lab cleanup: {e:#}");
            }
        }
        if self.bpffs_mounted {
            let target = CString::new(self.bpffs().as_os_str().as_bytes()).expect("no NUL in path");
            // Detach lazily: an `ip netns exec` still exiting may hold it.
            // SAFETY: a valid C string that outlives the call.
            if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
                eprintln!(
                    "lab cleanup: unmounting {}: {}",
                    self.bpffs().display(),
                    std::io::Error::last_os_error()
                );
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("lab cleanup: removing {}: {e}", self.dir.display());
            }
        }
    }
}

/// Removes what labs of this tag left behind when their process died
/// without unwinding (SIGKILL, a CI timeout): namespaces and /run folders
/// named `<tag>-<pid>-…` whose pid no longer runs.
fn sweep_stale(tag: &str) {
    let stale = |name: &str| {
        name.strip_prefix(tag)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split('-').next())
            .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
            .is_some_and(|pid| !Path::new("/proc").join(pid).exists())
    };
    let names = |dir: &str| -> Vec<String> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| stale(n))
            .collect()
    };
    for ns in names("/run/netns") {
        let _ = ip(&["netns", "del", &ns]);
    }
    for dir in names("/run") {
        let dir = Path::new("/run").join(dir);
        if let Ok(target) = CString::new(dir.join("bpffs").as_os_str().as_bytes()) {
            // SAFETY: a valid C string that outlives the call.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (Debian package iproute2)")?;
    if !out.status.success() {
        return Err(anyhow!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}
