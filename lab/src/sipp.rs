//! Real SIP peers: sipp's built-in `uas` scenario answers on the PBX, its
//! built-in `uac` scenario places calls (INVITE, ACK, BYE) from a lab host;
//! either takes a scenario file of its own instead (`-sf FILE` among the
//! extra flags).
use std::{
    collections::HashMap,
    fs::File,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use super::{wait_child, Host, Lab, PBX};

/// The port the PBX answers on.
pub const SIP_PORT: u16 = 5060;

/// How long a caller waits for an answer before counting the call failed.
const ANSWER_TIMEOUT_MS: u32 = 2000;
/// Calls placed per second.
const RATE: u32 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn flag(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// The sipp binary, or an error saying which package brings it.
pub fn find() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("sipp"))
        .find(|p| p.is_file())
        .context(
            "sipp not found: install the Debian package sip-tester \
             (`apt-get install sip-tester`, or `cargo xtask setup`)",
        )
}

/// A folder of its own for each sipp run: sipp writes its files in the
/// current directory.
fn run_dir(lab: &Lab, what: &str) -> Result<PathBuf> {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let dir = lab.dir().join(format!(
        "sipp-{what}-{}",
        RUNS.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn log(dir: &Path) -> String {
    ["stdout", "stderr"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `-sn BUILTIN`, unless `extra` loads a scenario file (`-sf FILE`): sipp
/// takes one scenario only.
fn scenario<'a>(builtin: &'a str, extra: &[&str]) -> Vec<&'a str> {
    if extra.contains(&"-sf") {
        Vec::new()
    } else {
        vec!["-sn", builtin]
    }
}

fn spawn(lab: &Lab, host: Host, dir: &Path, args: &[&str]) -> Result<Child> {
    let sipp = find()?;
    lab.command(host, &sipp)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("stdout"))?)
        .stderr(File::create(dir.join("stderr"))?)
        .spawn()
        .with_context(|| format!("starting sipp in {}", host.name()))
}

/// sipp answering calls on the PBX, 192.0.2.1:5060. Killed on drop.
pub struct Uas {
    child: Child,
}

impl Uas {
    pub fn start(lab: &Lab, transport: Transport) -> Result<Uas> {
        Uas::start_on(lab, Host::Pbx, PBX.into(), transport, &[])
    }

    /// sipp answering on `host` at `addr`:5060, with `extra` flags (e.g.
    /// `-mp PORT`: the media port its SDP answer names; `-sf FILE`: a
    /// scenario of its own instead of the built-in `uas`).
    pub fn start_on(
        lab: &Lab,
        host: Host,
        addr: IpAddr,
        transport: Transport,
        extra: &[&str],
    ) -> Result<Uas> {
        let dir = run_dir(lab, &format!("uas-{}-{}", host.name(), transport.name()))?;
        let (addr, port) = (addr.to_string(), SIP_PORT.to_string());
        let mut args = scenario("uas", extra);
        args.extend(["-i", &addr, "-p", &port, "-t", transport.flag(), "-nostdin"]);
        args.extend_from_slice(extra);
        let mut uas = Uas {
            child: spawn(lab, host, &dir, &args)?,
        };
        let bound = lab.wait_bound(host, transport.name(), SIP_PORT, Duration::from_secs(5));
        if let Err(e) = bound {
            if let Some(status) = uas.child.try_wait()? {
                bail!("sipp UAS exited ({status}): {}", log(&dir));
            }
            return Err(e);
        }
        Ok(uas)
    }
}

impl Drop for Uas {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a caller saw.
#[derive(Debug, Clone)]
pub struct Calls {
    pub attempted: u32,
    pub successful: u64,
    pub failed: u64,
    /// SIP messages the caller sent, retransmissions included: over UDP,
    /// exactly the datagrams that reached the filter.
    pub messages_sent: u64,
    pub retransmissions: u64,
    /// sipp's exit status; `None` when it had to be killed.
    pub exit: Option<i32>,
    /// sipp's output, for failure messages.
    pub log: String,
}

impl Calls {
    pub fn all_succeeded(&self) -> bool {
        self.exit == Some(0) && self.successful == u64::from(self.attempted)
    }

    pub fn none_succeeded(&self) -> bool {
        self.successful == 0
    }
}

/// Places `calls` calls from `host`, sending from `src`, to the PBX and
/// waits for them all to end (answered, or failed after 2 s without answer).
pub fn call(lab: &Lab, host: Host, src: IpAddr, transport: Transport, calls: u32) -> Result<Calls> {
    let to = SocketAddr::new(PBX.into(), SIP_PORT);
    start_calls(lab, host, src, to, transport, calls, Duration::ZERO, &[])?.wait()
}

/// Calls being placed by a sipp UAC; [`Placing::wait`] gives what it saw.
pub struct Placing {
    child: Child,
    dir: PathBuf,
    calls: u32,
    budget: Duration,
}

/// Starts placing `calls` calls from `host`/`src` to `to`, each held for
/// `hold` after the answer (sipp's `-d`), with `extra` flags (e.g. `-mp
/// PORT`, `-l CONCURRENT`, `-sf FILE` for a scenario of its own instead of
/// the built-in `uac`), and returns at once.
#[allow(clippy::too_many_arguments)]
pub fn start_calls(
    lab: &Lab,
    host: Host,
    src: IpAddr,
    to: SocketAddr,
    transport: Transport,
    calls: u32,
    hold: Duration,
    extra: &[&str],
) -> Result<Placing> {
    let dir = run_dir(lab, &format!("uac-{}-{}", host.name(), transport.name()))?;
    let budget = Duration::from_secs(u64::from(calls / RATE) + 10) + hold * 2;
    let (to, src, calls_arg, rate, hold_ms) = (
        to.to_string(),
        src.to_string(),
        calls.to_string(),
        RATE.to_string(),
        hold.as_millis().to_string(),
    );
    let (answer, timeout) = (
        ANSWER_TIMEOUT_MS.to_string(),
        format!("{}s", budget.as_secs()),
    );
    let mut args = scenario("uac", extra);
    args.extend([
        &to,
        "-d",
        &hold_ms,
        "-i",
        &src,
        "-bind_local",
        "-t",
        transport.flag(),
        "-m",
        &calls_arg,
        "-r",
        &rate,
        "-nostdin",
        // No default behaviours: a call left unanswered just fails, without
        // a CANCEL, so every message sent is one of the scenario's.
        "-nd",
        "-recv_timeout",
        &answer,
        "-timeout",
        &timeout,
        "-timeout_error",
        "-trace_stat",
        "-stf",
        "stat.csv",
        "-trace_counts",
        "-fd",
        "1",
    ]);
    args.extend_from_slice(extra);
    Ok(Placing {
        child: spawn(lab, host, &dir, &args)?,
        dir,
        calls,
        budget,
    })
}

impl Placing {
    /// Waits for every call to end and reads sipp's statistics.
    pub fn wait(mut self) -> Result<Calls> {
        let (dir, calls) = (self.dir.clone(), self.calls);
        let status = wait_child(&mut self.child, self.budget + Duration::from_secs(5))?;
        read_calls(&dir, calls, status.and_then(|s| s.code()))
    }
}

impl Drop for Placing {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_calls(dir: &Path, calls: u32, exit: Option<i32>) -> Result<Calls> {
    let stat = last_row(&dir.join("stat.csv"));
    let counts = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("_counts.csv"))
        .map(|p| last_row(&p))
        .unwrap_or_default();
    let field = |row: &HashMap<String, String>, key: &str| -> u64 {
        row.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    // A message the caller sends has a `<n>_<name>_Sent` column; its
    // retransmissions are in `<n>_<name>_Retrans` beside it.
    let messages_sent = counts
        .keys()
        .filter_map(|k| k.strip_suffix("_Sent"))
        .map(|m| field(&counts, &format!("{m}_Sent")) + field(&counts, &format!("{m}_Retrans")))
        .sum();
    Ok(Calls {
        attempted: calls,
        successful: field(&stat, "SuccessfulCall(C)"),
        failed: field(&stat, "FailedCall(C)"),
        messages_sent,
        retransmissions: field(&stat, "Retransmissions(C)"),
        exit,
        log: log(dir),
    })
}

/// The last line of one of sipp's `;`-separated files, by column name.
fn last_row(path: &Path) -> HashMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let (Some(header), Some(last)) = (lines.next(), lines.next_back()) else {
        return HashMap::new();
    };
    header
        .split(';')
        .map(str::to_owned)
        .zip(last.split(';').map(str::to_owned))
        .collect()
}
