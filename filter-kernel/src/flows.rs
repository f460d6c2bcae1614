//! The host's own flows, as strict mode's replies need them: the keys the
//! two programs agree on (`filter_common::FlowKeyV4` and `FlowKey`, one
//! map per address family), and the flows already
//! open when strict mode starts, read from the kernel's socket table
//! (/proc/net/tcp, tcp6, udp, udp6) so that they are not cut (the
//! operator's SSH session above all).
use std::net::{IpAddr, Ipv6Addr};

use anyhow::{Context as _, Result};
use filter_common::{FlowKey, FlowKeyV4};

/// One flow of this host: its remote and local ends and the protocol (for
/// an ICMP echo, remote port 0 and the identifier as the local port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowTuple {
    pub proto: u8,
    pub remote: IpAddr,
    pub remote_port: u16,
    pub local: IpAddr,
    pub local_port: u16,
}

/// A flow's key in the map of its address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowMapKey {
    /// `FLOWS_V4`.
    V4(FlowKeyV4),
    /// `FLOWS_V6` (a tuple mixing the families, which no packet has, is
    /// entered here with its IPv4 end mapped, and never matched).
    V6(FlowKey),
}

impl FlowTuple {
    /// The key both programs build for this flow.
    pub fn key(&self) -> FlowMapKey {
        let ports = u32::from_ne_bytes(
            [
                self.remote_port.to_be_bytes(),
                self.local_port.to_be_bytes(),
            ]
            .concat()
            .try_into()
            .expect("4 bytes"),
        );
        let proto = u32::from(self.proto);
        match (self.remote, self.local) {
            (IpAddr::V4(remote), IpAddr::V4(local)) => FlowMapKey::V4(FlowKeyV4 {
                remote: u32::from_ne_bytes(remote.octets()),
                local: u32::from_ne_bytes(local.octets()),
                ports,
                proto,
            }),
            (remote, local) => FlowMapKey::V6(FlowKey {
                remote: words(remote),
                local: words(local),
                ports,
                proto,
            }),
        }
    }
}

/// An address as the programs hold it: 16 bytes (IPv4 mapped into IPv6)
/// as two native words.
fn words(addr: IpAddr) -> [u64; 2] {
    let v6 = match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let b = v6.octets();
    [
        u64::from_ne_bytes(b[..8].try_into().expect("8 bytes")),
        u64::from_ne_bytes(b[8..].try_into().expect("8 bytes")),
    ]
}

/// The TCP connections and connected UDP sockets open in this network
/// namespace now, from /proc/net.
pub fn open_flows() -> Result<Vec<FlowTuple>> {
    let mut out = Vec::new();
    for (file, proto) in [("tcp", 6), ("tcp6", 6), ("udp", 17), ("udp6", 17)] {
        // The calling thread's namespace (/proc/net follows the main thread).
        let path = format!("/proc/thread-self/net/{file}");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            // No IPv6 in this kernel: no IPv6 sockets either.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {path}")),
        };
        out.extend(
            text.lines()
                .skip(1)
                .filter_map(|line| socket_line(line, proto)),
        );
    }
    Ok(out)
}

/// TCP states that are no flow to keep: LISTEN, CLOSE and TIME_WAIT.
const TCP_LISTEN: u8 = 0x0A;
const TCP_CLOSE: u8 = 0x07;
const TCP_TIME_WAIT: u8 = 0x06;

/// One line of /proc/net/{tcp,udp}[6]: `sl local rem st ...`, addresses as
/// the kernel prints them (32-bit words in host order, then the port).
fn socket_line(line: &str, proto: u8) -> Option<FlowTuple> {
    let mut fields = line.split_whitespace().skip(1);
    let (local, local_port) = endpoint(fields.next()?)?;
    let (remote, remote_port) = endpoint(fields.next()?)?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    if remote_port == 0 || remote.is_unspecified() {
        return None; // listening, or an unconnected UDP socket
    }
    if proto == 6 && matches!(state, TCP_LISTEN | TCP_CLOSE | TCP_TIME_WAIT) {
        return None;
    }
    // An IPv4 flow on an IPv6 socket is IPv4 on the wire.
    let unmap = |a: IpAddr| match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    };
    Some(FlowTuple {
        proto,
        remote: unmap(remote),
        remote_port,
        local: unmap(local),
        local_port,
    })
}

/// An `ADDR:PORT` of /proc/net/{tcp,udp}[6], as the kernel prints it.
pub fn endpoint(text: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes);
    let addr = match addr.len() {
        8 => IpAddr::from(word(addr)?),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(&addr[i * 8..i * 8 + 8])?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some((addr, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_the_packet_bytes_in_the_map_of_their_family() {
        let v4 = FlowTuple {
            proto: 17,
            remote: "203.0.113.53".parse().unwrap(),
            remote_port: 53,
            local: "192.0.2.10".parse().unwrap(),
            local_port: 33333,
        };
        let FlowMapKey::V4(k) = v4.key() else {
            panic!("an IPv4 flow belongs in FLOWS_V4");
        };
        assert_eq!(k.remote.to_ne_bytes(), [203, 0, 113, 53]);
        assert_eq!(k.local.to_ne_bytes(), [192, 0, 2, 10]);
        // Remote port then local port, each in network order.
        assert_eq!(k.ports.to_ne_bytes(), [0, 53, 0x82, 0x35]);
        assert_eq!(k.proto, 17);
        let v6 = FlowTuple {
            remote: "2001:db8:bad::53".parse().unwrap(),
            local: "2001:db8::10".parse().unwrap(),
            ..v4
        };
        let FlowMapKey::V6(k) = v6.key() else {
            panic!("an IPv6 flow belongs in FLOWS_V6");
        };
        assert_eq!(
            k.remote[0].to_ne_bytes(),
            [0x20, 0x01, 0x0d, 0xb8, 0x0b, 0xad, 0, 0]
        );
        assert_eq!(k.local[1].to_ne_bytes(), [0, 0, 0, 0, 0, 0, 0, 0x10]);
    }

    #[test]
    fn proc_net_lines_are_read() {
        // 192.0.2.10:22 <- 198.51.100.7:50000, established.
        let v4 = "   1: 0A0200C0:0016 076433C6:C350 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0 10 0";
        let t = socket_line(v4, 6).expect("an established connection");
        assert_eq!(t.local, "192.0.2.10".parse::<IpAddr>().unwrap());
        assert_eq!(t.remote, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!((t.local_port, t.remote_port), (22, 50000));
        let listen = "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 10 0";
        assert_eq!(socket_line(listen, 6), None);
        // ::ffff:192.0.2.10 on an IPv6 socket is IPv4 on the wire.
        let mapped = "   0: 0000000000000000FFFF00000A0200C0:0016 0000000000000000FFFF0000076433C6:C350 01 0";
        let t = socket_line(mapped, 6).expect("mapped");
        assert!(t.remote.is_ipv4() && t.local.is_ipv4());
    }
}
