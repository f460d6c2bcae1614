//! Never locked out (docs/policy.md, "Strict mode"): the SSH guard that
//! refuses a strict policy which would deny the operator's next login, and
//! a ban that would cut them off. `--confirm`, the other half, is
//! `ops::confirm`.
use anyhow::Result;
use filter_policy::ruleset::{AllowRule, RuleProto, Ruleset};
use ipnet::IpNet;

use super::sessions::{self, Source, SshSession};
use crate::error::UsageError;

/// Refuses (exit 2) a ban that would cut the operator off: a prefix of
/// length 0 (every source of a family, the provider and the operator
/// included), or one covering the client address of a logged-in SSH
/// session: those sshd holds in this network namespace, and
/// `SSH_CONNECTION`'s ([`sessions::find`]; `sudo` resets the environment, so
/// the environment alone would let `sudo sipwall ban add` cut its own
/// session). `ban add --force` skips this. A password guesser fail2ban
/// bans is not logged in, so its connection does not count; fail2ban's
/// action runs without `SSH_CONNECTION`.
pub fn check_bans(nets: &[IpNet]) -> Result<(), UsageError> {
    if let Some(net) = nets.iter().find(|n| n.prefix_len() == 0) {
        return Err(UsageError(format!(
            "ban add {net}: bans every {} source, the provider's and yours included; nothing changed (--force to ban it anyway)",
            if net.addr().is_ipv4() { "IPv4" } else { "IPv6" }
        )));
    }
    for (source, session) in sessions::find() {
        if let Some(net) = nets.iter().find(|n| n.contains(&session.client)) {
            return Err(UsageError(format!(
                "ban add {net}: it covers your own SSH client {} ({}): every packet of your session would be dropped; nothing changed (--force to ban it anyway)",
                session.client,
                source.name()
            )));
        }
    }
    Ok(())
}

/// Refuses (exit 2) a strict `ruleset` under which a new TCP connection
/// from an SSH client's address to its SSH port would not pass by a rule
/// (no essential traffic is TCP), naming the rule to add. A seeded flow
/// keeps today's session, not tomorrow's login. Strict egress must let the
/// SSH server's answers out too: by that same rule (its answers are
/// `out_reply`) or an `[[egress.allow]]` rule to the operator's address.
/// The sessions are those sshd holds in this network namespace, and
/// `SSH_CONNECTION`'s ([`sessions::find`]); with neither, a warning on
/// stderr says the policy goes on unguarded. In guard mode only an SSH
/// port among the signalling ports is refused. Dry run drops nothing and
/// passes; `force` overrides.
pub fn check_ssh_guard(ruleset: &Ruleset, force: bool) -> Result<(), UsageError> {
    let egress = ruleset.egress.strict();
    if ruleset.dry_run || force {
        return Ok(());
    }
    let found = sessions::find();
    if !(ruleset.strict() || egress) {
        // Guard mode filters only the signalling ports, but there it lets
        // in the allowlist alone: an SSH session on one of them is cut.
        return found
            .iter()
            .try_for_each(|(source, session)| check_signalling_port(ruleset, session, *source));
    }
    if found.is_empty() {
        eprintln!(
            "sipwall: warning: no SSH session found (no logged-in connection to a port sshd listens on in this network namespace, and no SSH_CONNECTION): the SSH guard cannot tell whether this strict policy keeps your next login; apply it with --confirm SECS to be safe"
        );
        return Ok(());
    }
    found
        .iter()
        .try_for_each(|(source, session)| check_session(ruleset, session, *source))
}

/// Refuses a guard-mode `ruleset` that polices the port an SSH session came
/// in on while its client is not allowlisted.
fn check_signalling_port(
    ruleset: &Ruleset,
    session: &SshSession,
    source: Source,
) -> Result<(), UsageError> {
    let SshSession { client, port, .. } = *session;
    if !ruleset.sig_ports.contains(&port) || ruleset.allow.iter().any(|n| n.contains(&client)) {
        return Ok(());
    }
    Err(UsageError(format!(
        "this configuration would lock you out: the SSH session of {client} ({}) came in on TCP port {port}, which [signalling] ports lists, and there only the allowlist passes. Take {port} out of [signalling] ports, move SSH to another port, or use --force",
        source.name()
    )))
}

/// [`check_ssh_guard`] for one session.
fn check_session(
    ruleset: &Ruleset,
    session: &SshSession,
    source: Source,
) -> Result<(), UsageError> {
    let egress = ruleset.egress.strict();
    let SshSession {
        client,
        client_port,
        port,
    } = *session;
    let how = source.name();
    if ruleset.strict() && ruleset.sig_ports.contains(&port) {
        return Err(UsageError(format!(
            "strict mode would lock you out: the SSH session of {client} ({how}) came in on TCP port {port}, a signalling port, where only the allowlist passes. Move SSH to another port, or use --force"
        )));
    }
    let ruled = ruleset.rules.iter().any(|r| r.allows(6, client, port));
    // The answers: from the SSH port to the client's port.
    let answered = ruled
        || (ruleset.sig_ports.contains(&port) && ruleset.allow.iter().any(|n| n.contains(&client)))
        || ruleset
            .egress
            .rules
            .iter()
            .any(|r| r.allows(6, client, client_port));
    if (!ruleset.strict() || ruled) && (!egress || answered) {
        return Ok(());
    }
    let prefix = if client.is_ipv4() { 32 } else { 128 };
    let rule = AllowRule {
        proto: RuleProto::Tcp,
        ports: vec![(port, port)],
        from: vec![ipnet::IpNet::new(client, prefix).expect("a host prefix")],
    };
    let what = if ruleset.strict() {
        format!(
            "strict mode would lock you out: a new SSH connection from {client} to TCP port {port} ({how}) would be denied; your session would survive, your next login would not"
        )
    } else {
        format!(
            "strict egress would lock you out: the answers of the SSH session from {client} (from TCP port {port}, {how}) would be dropped as out_denied; a [[strict.allow]] rule for your SSH port lets them out as out_reply (in guard mode it filters nothing inbound)"
        )
    };
    Err(UsageError(format!(
        "{what}. Add this rule (or your management network instead of the /{prefix}) and try again, or use --force:\n\n{}",
        rule.to_toml()
    )))
}
