//! The SSH sessions a strict policy must not lock out, found by sipwall
//! itself (docs/policy.md, "Never locked out"): `sudo` resets the
//! environment, so `SSH_CONNECTION` is only the fallback.
//!
//! A session is an established TCP connection, in this network namespace,
//! to a port that a process named `sshd` listens on, held by an sshd
//! process of a logged-in user (its title `sshd: USER@pts/0` or
//! `sshd-session: USER@notty`). Connections still authenticating (a
//! password guesser's among them) do not count: they would make the guard
//! refuse for a stranger. Everything comes from /proc: the sshd processes
//! of this namespace and their socket descriptors, matched by inode to the
//! kernel's socket table (/proc/thread-self/net/tcp, tcp6).
use std::{collections::HashSet, net::IpAddr, os::unix::fs::MetadataExt as _, path::Path};

use filter_kernel::flows::endpoint;

/// One SSH session: the client's address and port, and the server's port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SshSession {
    pub client: IpAddr,
    pub client_port: u16,
    pub port: u16,
}

/// Where the sessions came from, for the guard's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Found in /proc: established connections to sshd.
    Proc,
    /// `SSH_CONNECTION`.
    Environment,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Proc => "an established connection to sshd",
            Source::Environment => "SSH_CONNECTION",
        }
    }
}

/// The sessions to keep: those found in /proc, and the one
/// `SSH_CONNECTION` names when it is not among them (an sshd started per
/// connection by inetd or a socket unit listens through a process not
/// named `sshd`, so /proc does not show its sessions); empty when there is
/// neither.
pub fn find() -> Vec<(Source, SshSession)> {
    let mut found: Vec<(Source, SshSession)> = from_proc(Path::new("/proc"))
        .into_iter()
        .map(|session| (Source::Proc, session))
        .collect();
    let from_env = std::env::var("SSH_CONNECTION")
        .ok()
        .and_then(|text| parse_ssh_connection(&text));
    if let Some(session) = from_env {
        if !found.iter().any(|(_, known)| *known == session) {
            found.push((Source::Environment, session));
        }
    }
    found
}

/// `SSH_CONNECTION`: "CLIENT CLIENT_PORT SERVER SERVER_PORT". A link-local
/// IPv6 address may carry its zone (`fe80::1%eth0`), which the address
/// itself does not need; an IPv4-mapped client is IPv4 on the wire.
pub fn parse_ssh_connection(text: &str) -> Option<SshSession> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [client, client_port, _server, port] = fields[..] else {
        return None;
    };
    let client = client.split('%').next()?.parse::<IpAddr>().ok()?;
    Some(SshSession {
        client: unmap(client),
        client_port: client_port.parse().ok()?,
        port: port.parse().ok()?,
    })
}

fn unmap(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// Sessions under `proc` (a /proc mount) in the calling thread's network
/// namespace; none when anything cannot be read.
fn from_proc(proc: &Path) -> Vec<SshSession> {
    let Ok(netns) = std::fs::metadata(proc.join("thread-self/ns/net")) else {
        return Vec::new();
    };
    let sockets = sshd_sockets(proc, netns.ino());
    if sockets.all.is_empty() {
        return Vec::new();
    }
    let table: Vec<SocketLine> = ["tcp", "tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(proc.join("thread-self/net").join(f)).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(SocketLine::parse)
                .collect::<Vec<_>>()
        })
        .collect();
    sessions(&table, &sockets)
}

/// Socket inodes of sshd processes in one network namespace: every one
/// (listeners among them), and those of logged-in users' processes.
#[derive(Debug, Default)]
struct SshdSockets {
    all: HashSet<u64>,
    logged_in: HashSet<u64>,
}

fn sshd_sockets(proc: &Path, netns: u64) -> SshdSockets {
    let mut out = SshdSockets::default();
    let Ok(entries) = std::fs::read_dir(proc) else {
        return out;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !matches!(comm.trim_end(), "sshd" | "sshd-session") {
            continue;
        }
        if std::fs::metadata(dir.join("ns/net")).map(|m| m.ino()).ok() != Some(netns) {
            continue;
        }
        // The title sshd gives a logged-in user's process: "sshd: root@pts/0".
        let title = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        let logged_in = title
            .split(|&b| b == 0)
            .next()
            .is_some_and(|t| t.contains(&b'@'));
        let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let inode = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok());
            if let Some(inode) = inode {
                out.all.insert(inode);
                if logged_in {
                    out.logged_in.insert(inode);
                }
            }
        }
    }
    out
}

/// One line of /proc/net/tcp[6]: the ends, the state and the inode.
#[derive(Debug, PartialEq, Eq)]
struct SocketLine {
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    state: u8,
    inode: u64,
}

const TCP_ESTABLISHED: u8 = 0x01;
const TCP_LISTEN: u8 = 0x0A;

impl SocketLine {
    /// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`.
    fn parse(line: &str) -> Option<SocketLine> {
        let f: Vec<&str> = line.split_whitespace().collect();
        Some(SocketLine {
            local: endpoint(f.get(1)?)?,
            remote: endpoint(f.get(2)?)?,
            state: u8::from_str_radix(f.get(3)?, 16).ok()?,
            inode: f.get(9)?.parse().ok()?,
        })
    }
}

/// Established connections to a port an sshd socket listens on, held by a
/// logged-in user's sshd process.
fn sessions(table: &[SocketLine], sockets: &SshdSockets) -> Vec<SshSession> {
    let ports: HashSet<u16> = table
        .iter()
        .filter(|l| l.state == TCP_LISTEN && sockets.all.contains(&l.inode))
        .map(|l| l.local.1)
        .collect();
    table
        .iter()
        .filter(|l| {
            l.state == TCP_ESTABLISHED
                && ports.contains(&l.local.1)
                && sockets.logged_in.contains(&l.inode)
        })
        .map(|l| SshSession {
            client: unmap(l.remote.0),
            client_port: l.remote.1,
            port: l.local.1,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_connection_with_and_without_a_zone() {
        let s = parse_ssh_connection("198.51.100.7 50022 192.0.2.1 22").unwrap();
        assert_eq!(
            (s.client, s.client_port, s.port),
            ("198.51.100.7".parse().unwrap(), 50022, 22)
        );
        let s = parse_ssh_connection("fe80::1%eth0 50022 fe80::2%eth0 2222").unwrap();
        assert_eq!(s.client, "fe80::1".parse::<IpAddr>().unwrap());
        assert_eq!(s.port, 2222);
        let s = parse_ssh_connection("::ffff:198.51.100.7 50022 ::ffff:192.0.2.1 22").unwrap();
        assert!(s.client.is_ipv4());
        for bad in [
            "",
            "198.51.100.7 50022 192.0.2.1",
            "fe80::1%eth0 x 192.0.2.1 22",
            "host 1 2 3",
        ] {
            assert_eq!(parse_ssh_connection(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sessions_are_logged_in_connections_to_an_sshd_port() {
        // sshd listens on :22 (inode 100); 198.51.100.7 is logged in
        // (inode 200), 203.0.113.9 still authenticating (inode 300), and a
        // connection to another port (inode 400) is someone else's.
        let lines = [
            "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0 100 0 0 10 0",
            "   1: 0100A8C0:0016 076433C6:C350 01 00000000:00000000 02:00000000 00000000     0        0 200 2 0 20 4 30 10 -1",
            "   2: 0100A8C0:0016 097100CB:C351 01 00000000:00000000 02:00000000 00000000     0        0 300 2 0 20 4 30 10 -1",
            "   3: 0100A8C0:1F90 076433C6:C352 01 00000000:00000000 02:00000000 00000000     0        0 400 2 0 20 4 30 10 -1",
        ];
        let table: Vec<SocketLine> = lines.iter().filter_map(|l| SocketLine::parse(l)).collect();
        assert_eq!(table.len(), 4);
        let sockets = SshdSockets {
            all: [100, 200, 300].into(),
            logged_in: [200, 400].into(),
        };
        assert_eq!(
            sessions(&table, &sockets),
            [SshSession {
                client: "198.51.100.7".parse().unwrap(),
                client_port: 50000,
                port: 22
            }]
        );
    }
}
