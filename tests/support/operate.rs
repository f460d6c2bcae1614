//! Driving the sipwall binary through error, fault and hostile-input cases:
//! what a run printed and how it ended, a snapshot of the running filter to
//! prove a refused command changed nothing, and a foreign XDP program to
//! stand in for someone else's.
use std::{
    ffi::CString,
    fmt,
    os::unix::{ffi::OsStrExt, process::ExitStatusExt},
    path::Path,
    process::Output,
};

use serde_json::Value;

use crate::netns::{Host, TestLab};

/// One finished run of the binary.
pub struct Run {
    pub args: Vec<String>,
    /// Exit code; `None` when a signal ended it (128 + signal is shown).
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(args: &[&str], out: Output) -> Run {
        Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: out.status.code(),
            signal: out.status.signal(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics (naming `case`) unless the run exited with `code` and its
    /// stderr holds every one of `words` (case-insensitive).
    pub fn expect(&self, code: i32, words: &[&str], case: &str) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "{case}: expected exit status {code}\n{self}"
        );
        let err = self.stderr.to_lowercase();
        for w in words {
            assert!(
                err.contains(&w.to_lowercase()),
                "{case}: stderr should say {w:?}\n{self}"
            );
        }
        self
    }

    /// Panics unless the run succeeded; returns stdout.
    pub fn ok(&self, case: &str) -> &str {
        assert_eq!(self.code, Some(0), "{case}: expected success\n{self}");
        &self.stdout
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  sipwall {:?}\n  exit {:?} signal {:?}",
            self.args, self.code, self.signal
        )?;
        writeln!(f, "  stdout: {}", self.stdout.trim_end())?;
        write!(f, "  stderr: {}", self.stderr.trim_end())
    }
}

/// `sipwall --bpffs <lab's> ARGS` in the PBX's namespace.
pub fn sipwall(lab: &TestLab, args: &[&str]) -> Run {
    Run::from_output(args, lab.sipwall(args))
}

/// `status --json`, checking its exit status on the way: 1 exactly when
/// one of the interfaces it lists is not filtering, else 0.
pub fn status_json(lab: &TestLab) -> Value {
    let run = sipwall(lab, &["status", "--json"]);
    let doc: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e})\n{run}"));
    let down = doc["interfaces"]
        .as_array()
        .unwrap_or_else(|| panic!("status --json without interfaces\n{run}"))
        .iter()
        .any(|i| i["attached"] != true);
    assert_eq!(
        run.code,
        Some(if down { 1 } else { 0 }),
        "status exits 1 exactly when an interface is not filtering\n{run}"
    );
    doc
}

/// The same as an unprivileged user (nobody, no capabilities).
pub fn sipwall_unprivileged(lab: &TestLab, args: &[&str]) -> Run {
    let out = lab
        .command(Host::Pbx, "setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(&lab.bin)
        .arg("--bpffs")
        .arg(lab.bpffs())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running setpriv sipwall {args:?}: {e}"));
    Run::from_output(args, out)
}

/// What a refused command must leave exactly as it was: the allowlist, the
/// status (program, mode, policy, problems), the counters of the reasons
/// only test traffic moves, and the program the kernel runs on the
/// interface.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub allow: Value,
    pub bans: Value,
    pub status: Value,
    pub counters: Vec<(String, Value)>,
    pub xdp_prog: Option<u64>,
}

/// Reasons background traffic (neighbour discovery, ARP) never moves.
const QUIET_REASONS: [&str; 9] = [
    "sip_allowed",
    "sip_denied",
    "rtp_allowed",
    "fragment",
    "malformed",
    "banned",
    "sip_ratelimited",
    "rtp_ratelimited",
    "rtp_invalid",
];

pub fn snapshot(lab: &TestLab, iface: &str) -> Snapshot {
    let json = |args: &[&str]| -> Value {
        let run = sipwall(lab, args);
        let out = run.ok("taking a snapshot of the running filter");
        serde_json::from_str(out).unwrap_or_else(|e| panic!("{args:?} is not JSON ({e}): {out}"))
    };
    let allow = json(&["allow", "list", "-i", iface, "--json"]);
    let bans = json(&["ban", "list", "-i", iface, "--json"]);
    let status = json(&["status", "-i", iface, "--json"]);
    let stats = json(&["stats", "-i", iface, "--json"]);
    let counters = QUIET_REASONS
        .iter()
        .map(|r| (r.to_string(), stats["interfaces"][0]["counters"][r].clone()))
        .collect();
    Snapshot {
        allow,
        bans,
        status,
        counters,
        xdp_prog: xdp_prog(lab, iface),
    }
}

/// The XDP program on `iface` in the PBX, as `ip link` reports it.
pub fn xdp_prog(lab: &TestLab, iface: &str) -> Option<u64> {
    let out = lab
        .exec(Host::Pbx, &["ip", "-d", "-j", "link", "show", "dev", iface])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let json: Value = serde_json::from_str(&out).expect("ip -j output is JSON");
    json[0]["xdp"]["prog"]["id"].as_u64()
}

/// The XDP program on `iface` once the kernel has settled: a link whose
/// last reference went away (its pin removed by hand) is released from a
/// work queue, a moment later.
pub fn xdp_prog_after_release(lab: &TestLab, iface: &str) -> Option<u64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let prog = xdp_prog(lab, iface);
        if prog.is_none() || std::time::Instant::now() > deadline {
            return prog;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The name `ip link` gives the XDP program on `iface`.
pub fn xdp_prog_name(lab: &TestLab, iface: &str) -> Option<String> {
    let out = lab
        .exec(Host::Pbx, &["ip", "-d", "-j", "link", "show", "dev", iface])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let json: Value = serde_json::from_str(&out).expect("ip -j output is JSON");
    json[0]["xdp"]["prog"]["name"].as_str().map(str::to_owned)
}

/// Adds a veth pair `name` <-> `<name>p`, both ends up, inside the PBX's
/// namespace (removed with it): a second interface to attach to.
pub fn add_veth(lab: &TestLab, name: &str) {
    let peer = format!("{name}p");
    lab.exec(
        Host::Pbx,
        &[
            "ip", "link", "add", name, "type", "veth", "peer", "name", &peer,
        ],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    for dev in [name, peer.as_str()] {
        lab.exec(Host::Pbx, &["ip", "link", "set", dev, "up"])
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
}

/// Loads a program that is not sipwall's — two instructions, `return
/// XDP_PASS` — straight through bpf(2), names it `name` and pins it at
/// `pin` (on a bpffs) so that `ip link set dev IF xdp pinned PIN` can
/// attach it. The program lives as long as the pin or an attachment.
pub fn pin_foreign_xdp(pin: &Path, name: &str) {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_OBJ_PIN: libc::c_long = 6;
    const BPF_PROG_TYPE_XDP: u32 = 6;
    const XDP_PASS: i32 = 2;
    assert!(name.len() < 16, "program names have at most 15 bytes");
    // r0 = XDP_PASS (BPF_ALU64 | BPF_MOV | BPF_K); exit (BPF_JMP | BPF_EXIT).
    let mut insns = [0u8; 16];
    insns[0] = 0xb7;
    insns[4..8].copy_from_slice(&XDP_PASS.to_le_bytes());
    insns[8] = 0x95;
    let license = c"GPL";
    // union bpf_attr, BPF_PROG_LOAD part: prog_type, insn_cnt, insns,
    // license, log fields (unused), kern_version, prog_flags, prog_name.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_XDP.to_ne_bytes());
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[48..48 + name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: attr is a valid bpf_attr for BPF_PROG_LOAD; the pointers it
    // holds outlive the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, attr.as_ptr(), attr.len()) };
    assert!(
        fd >= 0,
        "loading the foreign XDP program: {}",
        std::io::Error::last_os_error()
    );
    let path = CString::new(pin.as_os_str().as_bytes()).expect("no NUL in path");
    // BPF_OBJ_PIN part: pathname, bpf_fd.
    let mut attr = [0u8; 128];
    attr[0..8].copy_from_slice(&(path.as_ptr() as u64).to_ne_bytes());
    attr[8..12].copy_from_slice(&(fd as u32).to_ne_bytes());
    // SAFETY: as above.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_PIN, attr.as_ptr(), attr.len()) };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the fd we got; the pin keeps the program.
    unsafe { libc::close(fd as libc::c_int) };
    assert!(rc == 0, "pinning the foreign XDP program at {pin:?}: {err}");
}

/// Gives a receiving socket an 8 MiB buffer (SO_RCVBUFFORCE, as root), so
/// a receiver thread starved of CPU for a moment loses nothing.
pub fn big_rcvbuf(sock: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt on a socket we own, with an int option value.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}

/// Whether process `pid` waits for a flock (a `->` line of /proc/locks).
pub fn waits_for_flock(pid: u32) -> bool {
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    locks.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&"->")
            && f.get(2) == Some(&"FLOCK")
            && f.get(5) == Some(&pid.to_string().as_str())
    })
}

/// Writes an allowlist file, one CIDR a line.
pub fn write_list(path: &Path, cidrs: &[String]) {
    let mut text = String::with_capacity(cidrs.len() * 20);
    for c in cidrs {
        text.push_str(c);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {path:?}: {e}"));
}

/// `count` distinct IPv4 /32s from 198.18.0.0/15 (RFC 2544's benchmarking
/// range: these are allowlist entries, never addresses traffic is sent to)
/// starting at offset `from`.
pub fn bench_v4(from: u32, count: u32) -> Vec<String> {
    assert!(
        from + count <= 1 << 17,
        "198.18.0.0/15 holds 131072 addresses"
    );
    (from..from + count)
        .map(|i| {
            let a = std::net::Ipv4Addr::from(u32::from_be_bytes([198, 18, 0, 0]) + i);
            format!("{a}/32")
        })
        .collect()
}

/// `count` distinct IPv6 /48s of 2001:db8::/32, from 2001:db8:`from`::/48.
pub fn doc_v6(from: u16, count: u16) -> Vec<String> {
    (0..count)
        .map(|i| format!("2001:db8:{:x}::/48", from + i))
        .collect()
}
