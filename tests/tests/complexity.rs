//! The verifier's work stays far from the kernel's limit. For each mode the
//! program runs in, the program is loaded and that mode's configuration
//! installed as `sipwall` does it, and the kernel's `verified_insns`
//! (instructions the verifier processed, over every path; from
//! BPF_OBJ_GET_INFO_BY_FD) is read for each program the mode runs. The
//! kernel refuses a program at 1,000,000; this gate fails at 600,000, so
//! that a change that makes the verifier's walk explode is seen here and
//! not on an operator's host. Modelled on Cilium's `bpf/complexity-tests`:
//! one list of configurations, each loaded, each figure printed.
//!
//! Today the modes are flags in the policy map, which the verifier cannot
//! read, so one load walks every mode's path and the figures of the modes
//! agree; a mode that is loaded differently (its own program, a load-time
//! constant) shows its own figure here. Needs root (CAP_BPF).
use filter_kernel::runner::Runner;
use filter_policy::{
    config,
    ruleset::{EgressMode, MediaMode, Mode, Ruleset},
};

/// The most instructions the verifier may process for one program.
const LIMIT: u32 = 600_000;

/// A program of the object.
#[derive(Clone, Copy, Debug)]
enum Program {
    /// The XDP program (`sipwall`): every incoming packet.
    Xdp,
    /// The TC egress program (`sipwall_egress`): flow learning, strict egress.
    Egress,
}

/// One mode: its name, a configuration that selects it, what the parsed
/// configuration must show (so that a renamed key cannot silently test
/// guard mode twice), and the programs it runs.
struct ModeCase {
    name: &'static str,
    toml: &'static str,
    selected: fn(&Ruleset) -> bool,
    programs: &'static [Program],
}

/// Each mode's configuration adds to the one before it.
macro_rules! guard_toml {
    () => {
        "[media]\nrtp_ports = \"10000-20000\"\n"
    };
}
macro_rules! strict_toml {
    () => {
        concat!(
            guard_toml!(),
            "[policy]\nmode = \"strict\"\n",
            "[[strict.allow]]\nproto = \"tcp\"\nports = [22]\nfrom = [\"198.51.100.0/24\"]\n",
        )
    };
}

/// Every mode. A new mode is one more entry.
const MODES: &[ModeCase] = &[
    ModeCase {
        name: "guard",
        toml: guard_toml!(),
        selected: |r| r.mode == Mode::Guard && r.egress.mode == EgressMode::Open,
        programs: &[Program::Xdp, Program::Egress],
    },
    ModeCase {
        name: "strict",
        toml: strict_toml!(),
        selected: |r| r.mode == Mode::Strict && r.egress.mode == EgressMode::Open,
        programs: &[Program::Xdp, Program::Egress],
    },
    ModeCase {
        name: "strict egress",
        toml: concat!(
            strict_toml!(),
            "[egress]\nmode = \"strict\"\ndns = [\"203.0.113.53\", \"2001:db8:53::53\"]\n",
            "[[egress.allow]]\nproto = \"tcp\"\nports = [443]\nto = [\"203.0.113.50/32\"]\n",
        ),
        selected: |r| r.mode == Mode::Strict && r.egress.mode == EgressMode::Strict,
        programs: &[Program::Xdp, Program::Egress],
    },
    // Calls mode (the pinhole row, signalling copies) with strict ingress
    // and egress: every path it adds at once.
    ModeCase {
        name: "calls",
        toml: concat!(
            "[media]\nrtp_ports = \"10000-20000\"\nmode = \"calls\"\nunattended = \"closed\"\n",
            "[policy]\nmode = \"strict\"\n",
            "[egress]\nmode = \"strict\"\ndns = [\"203.0.113.53\"]\n",
        ),
        selected: |r| {
            r.media.mode == MediaMode::Calls
                && r.mode == Mode::Strict
                && r.egress.mode == EgressMode::Strict
        },
        programs: &[Program::Xdp, Program::Egress],
    },
];

/// The verifier's figure for one program of a loaded object.
fn verified_insns(runner: &Runner, program: Program) -> u32 {
    let info = match program {
        Program::Xdp => runner.program().unwrap().info(),
        Program::Egress => runner.egress_program().unwrap().info(),
    }
    .unwrap_or_else(|e| panic!("BPF_OBJ_GET_INFO_BY_FD on the {program:?} program: {e}"));
    info.verified_instruction_count().unwrap_or_else(|| {
        panic!("the kernel reports no verified_insns for the {program:?} program (Linux 5.16 or later reports it)")
    })
}

#[test]
fn every_mode_stays_under_the_verifier_budget() {
    sipwall_tests::skip_unless_root!();
    let mut over = Vec::new();
    for mode in MODES {
        let ruleset = config::parse(mode.toml, "complexity.toml")
            .unwrap_or_else(|e| panic!("mode {}: {e}", mode.name));
        assert!(
            (mode.selected)(&ruleset),
            "mode {}: its configuration does not select it",
            mode.name
        );
        let runner = Runner::new(&ruleset)
            .unwrap_or_else(|e| panic!("mode {}: loading the program: {e:#}", mode.name));
        for &program in mode.programs {
            let insns = verified_insns(&runner, program);
            eprintln!(
                "complexity: {:<14} {:<7} verified_insns {insns:>9} of {LIMIT}",
                mode.name,
                format!("{program:?}")
            );
            if insns > LIMIT {
                over.push(format!("{} / {program:?}: {insns}", mode.name));
            }
        }
    }
    assert!(
        over.is_empty(),
        "the verifier processed more than {LIMIT} instructions: {over:?}"
    );
}
