//! Allowlist updates made as differences (only the prefixes that changed,
//! only the /24s they touch, the old generation brought level afterwards
//! or on the next install) must leave the program judging exactly as if
//! the list had been written from scratch. A random walk of adds, deletes
//! and whole replacements over long lists (direct tables in use, IPv4
//! host maps and IPv6 tries included) is checked after every step against
//! the list itself: a source is allowed when a prefix of the list
//! contains it, through the real program (BPF_PROG_TEST_RUN). Needs root
//! (CAP_BPF).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::Reason;
use filter_kernel::runner::Runner;
use filter_policy::ruleset::Ruleset;
use ipnet::IpNet;
use sipwall_lab::{PBX, PBX6};
use sipwall_tests::{generator::Rng, packet::Frame};

/// A random prefix near a few bases, so that adds, deletes and probes hit
/// the same /24s (partial host maps, shared IPv6 /24s) again and again.
fn prefix(rng: &mut Rng) -> IpNet {
    if rng.percent(60) {
        let base: u32 = rng.pick(&[0x0a00_0000, 0xac10_0000, 0xc633_6400, 0xcb00_7100]);
        let addr = Ipv4Addr::from(base | (rng.below(1 << 18) as u32));
        let len = rng.pick(&[16u8, 20, 24, 26, 28, 30, 32]);
        IpNet::new(IpAddr::V4(addr), len).unwrap().trunc()
    } else {
        let base: u128 = rng.pick(&[0x2001_0db8u128 << 96, 0x2a00_1450u128 << 96]);
        let addr = Ipv6Addr::from(base | (u128::from(rng.next_u64()) << 40));
        let len = rng.pick(&[20u8, 24, 32, 48, 64, 128]);
        IpNet::new(IpAddr::V6(addr), len).unwrap().trunc()
    }
}

/// An address inside `net` (or near it, to probe both sides).
fn probe(rng: &mut Rng, net: &IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) => {
            let host = u32::from(n.network())
                ^ (rng.next_u64() as u32 & (rng.pick(&[0xffu32, 0xfff, 0x1])));
            IpAddr::V4(Ipv4Addr::from(host))
        }
        IpNet::V6(n) => {
            let bits = u128::from(n.network())
                ^ u128::from(rng.next_u64() & rng.pick(&[0xffu64, u64::MAX]));
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

fn judged(runner: &Runner, src: IpAddr) -> Reason {
    let frame = match src {
        IpAddr::V4(a) => Frame::ipv4(a, PBX).udp(5555, 5060).build(),
        IpAddr::V6(a) => Frame::ipv6(a, PBX6).udp(5555, 5060).build(),
    };
    runner
        .run(&frame)
        .unwrap()
        .reason()
        .unwrap_or_else(|| panic!("{src}: no single reason"))
}

#[test]
fn updates_by_difference_judge_as_the_list_says() {
    sipwall_tests::skip_unless_root!();
    let mut rng = Rng::new(0x5157_0009);
    let mut list: Vec<IpNet> = (0..400).map(|_| prefix(&mut rng)).collect();
    let ruleset = |allow: &Vec<IpNet>| {
        Ruleset {
            allow: allow.clone(),
            ..Ruleset::default()
        }
        .normalise()
        .unwrap()
    };
    let mut runner = Runner::new(&ruleset(&list)).unwrap();
    for step in 0..60 {
        let what = match rng.below(10) {
            0 => {
                list = (0..300 + rng.below(200))
                    .map(|_| prefix(&mut rng))
                    .collect();
                "replace"
            }
            1..=4 => {
                for _ in 0..1 + rng.below(4) {
                    list.push(prefix(&mut rng));
                }
                "add"
            }
            _ => {
                for _ in 0..1 + rng.below(4) {
                    if !list.is_empty() {
                        let i = rng.below(list.len() as u64) as usize;
                        list.swap_remove(i);
                    }
                }
                "del"
            }
        };
        let before = runner.maps.read_ruleset().unwrap().allow;
        let rules = ruleset(&list);
        // Probes near what changed (added or removed) and near the rest.
        let changed: Vec<IpNet> = before
            .iter()
            .filter(|n| !rules.allow.contains(n))
            .chain(rules.allow.iter().filter(|n| !before.contains(n)))
            .copied()
            .collect();
        // As `sipwall allow` does: read the live ruleset (above), then
        // install.
        runner.install(&rules).unwrap();
        assert_eq!(
            runner.maps.read_ruleset().unwrap().allow,
            rules.allow,
            "step {step} ({what}): the tries hold the list"
        );
        for i in 0..80 {
            let near = if i % 2 == 0 && !changed.is_empty() {
                rng.pick(&changed)
            } else {
                rng.pick(&rules.allow)
            };
            let src = probe(&mut rng, &near);
            let want = if rules.allow.iter().any(|n| n.contains(&src)) {
                Reason::SipAllowed
            } else {
                Reason::SipDenied
            };
            assert_eq!(judged(&runner, src), want, "step {step} ({what}): {src}");
        }
    }
}
