//! One function per command: parse what the command line gave, call the
//! module that does the work, print the result.
use std::{path::Path, time::Duration};

use anyhow::Result;

use crate::{
    allow::{self, Change},
    attach::{self, mode_name},
    check,
    cli::{AllowAction, AttachMode, Cli, Command},
    config,
    error::UsageError,
    maps::Maps,
    pins::{self, PinRoot},
    privileges::require_root,
    service::Service,
    stats::{self, IfaceCounters},
    status,
};

pub fn run(cli: Cli) -> Result<()> {
    let root = PinRoot::new(&cli.bpffs);
    match cli.command {
        Command::Check { pcap, config, json } => {
            // Configuration and capture errors are usage errors: report them
            // before asking for privileges.
            let ruleset = config::load(config.as_deref())?;
            let frames = check::read_frames(&pcap)?;
            require_root()?;
            let results = check::check(&frames, &ruleset)?;
            if json {
                println!("{}", check::to_json(&results));
            } else {
                print!("{}", check::to_text(&results));
            }
            Ok(())
        }
        Command::Attach {
            iface,
            config,
            mode,
            dry_run,
            force,
        } => attach_cmd(&root, &iface, config.as_deref(), mode, dry_run, force),
        Command::Detach { iface } => {
            require_root()?;
            let iface = root.resolve(iface.as_deref())?;
            attach::detach(&root, &iface)?;
            println!("detached sipwall from {iface} and removed its pins");
            Ok(())
        }
        Command::Status { iface, json } => {
            require_root()?;
            let ifaces = match iface {
                Some(i) => vec![root.resolve(Some(&i))?],
                None => root.attached()?,
            };
            let all: Vec<_> = ifaces.iter().map(|i| status::gather(&root, i)).collect();
            if json {
                println!("{}", status::to_json(&all));
            } else {
                print!("{}", status::to_text(&all));
            }
            Ok(())
        }
        Command::Allow { action } => allow_cmd(&root, action),
        Command::Stats { iface, json, watch } => {
            let watch = watch.map(watch_interval).transpose()?;
            require_root()?;
            let ifaces = match iface {
                Some(i) => vec![root.resolve(Some(&i))?],
                None => {
                    let all = root.attached()?;
                    if all.is_empty() {
                        root.resolve(None)?;
                    }
                    all
                }
            };
            stats_cmd(&root, &ifaces, json, watch)
        }
        Command::Top { iface, n, json } => {
            if n == 0 {
                return Err(UsageError("-n 0: nothing to show; give at least 1".into()).into());
            }
            require_root()?;
            let iface = root.resolve(iface.as_deref())?;
            pins::read_info(&root.iface_dir(&iface))?;
            let maps = Maps::open_pinned(&root.iface_dir(&iface))?;
            let mut sources = maps.denied_sources()?;
            sources.truncate(n);
            if json {
                println!("{}", stats::top_json(&sources));
            } else {
                print!("{}", stats::top_text(&iface, &sources));
            }
            Ok(())
        }
        Command::Run {
            iface,
            config,
            mode,
            metrics,
            force,
        } => {
            // Refuse a bad file before anything else.
            config::load(config.as_deref())?;
            require_root()?;
            Service {
                root: cli.bpffs.clone(),
                iface,
                config,
                mode,
                metrics,
                force,
            }
            .run()
        }
        Command::Demo => crate::demo::run(),
    }
}

fn attach_cmd(
    root: &PinRoot,
    iface: &str,
    config_path: Option<&Path>,
    mode: AttachMode,
    dry_run: bool,
    force: bool,
) -> Result<()> {
    let mut ruleset = config::load(config_path)?;
    ruleset.dry_run |= dry_run;
    if ruleset.allow.is_empty() && !force {
        return Err(UsageError(
            "the allowlist is empty, which denies all signalling; add --force if that is what you want".into(),
        )
        .into());
    }
    require_root()?;
    let attached = attach::attach(root, iface, &ruleset, mode, true)?;
    let live = attached.maps.read_ruleset()?;
    if attached.replaced {
        println!(
            "replaced the sipwall program on {iface} in place ({} mode, program id {}); {}",
            mode_name(attached.mode),
            attached.program_id,
            if attached.kept_allowlist {
                "allowlist and counters kept"
            } else {
                "allowlist installed from the configuration"
            }
        );
        if attached.kept_allowlist && config_path.is_some() && live.allow != ruleset.allow {
            eprintln!(
                "sipwall: note: the live allowlist ({} entries) was kept; the file's [signalling] allow differs: apply it with `sipwall allow replace`",
                live.allow.len()
            );
        }
    } else {
        println!(
            "attached sipwall to {iface} in {} mode (program id {})",
            mode_name(attached.mode),
            attached.program_id
        );
    }
    println!("  {}", live.summary());
    Ok(())
}

fn allow_cmd(root: &PinRoot, action: AllowAction) -> Result<()> {
    let (iface, change, force) = match action {
        AllowAction::List { iface, json } => {
            require_root()?;
            let iface = root.resolve(iface.as_deref())?;
            pins::read_info(&root.iface_dir(&iface))?;
            let allow = Maps::open_pinned(&root.iface_dir(&iface))?
                .read_ruleset()?
                .allow;
            if json {
                let list: Vec<String> = allow.iter().map(|n| n.to_string()).collect();
                println!("{}", serde_json::json!({ "allow": list }));
            } else {
                for n in &allow {
                    println!("{n}");
                }
            }
            return Ok(());
        }
        AllowAction::Add { iface, cidrs } => (iface, Change::Add(allow::parse_all(&cidrs)?), false),
        AllowAction::Del {
            iface,
            cidrs,
            force,
        } => (iface, Change::Del(allow::parse_all(&cidrs)?), force),
        AllowAction::Replace { iface, file, force } => {
            (iface, Change::Replace(allow::read_file(&file)?), force)
        }
    };
    require_root()?;
    let iface = root.resolve(iface.as_deref())?;
    let allow = allow::apply(root, &iface, change, force)?;
    println!("{iface}: the allowlist now has {} entries", allow.len());
    Ok(())
}

/// `--watch SECS`, refused unless it is a sane interval (a zero sleep
/// would spin; a huge one does not fit a Duration).
fn watch_interval(secs: f64) -> Result<Duration, UsageError> {
    const MIN: f64 = 0.01;
    const MAX: f64 = 86_400.0;
    if !(MIN..=MAX).contains(&secs) {
        return Err(UsageError(format!(
            "--watch {secs}: the interval must be a number of seconds from {MIN} to {MAX}"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn stats_cmd(root: &PinRoot, ifaces: &[String], json: bool, watch: Option<Duration>) -> Result<()> {
    let read = || -> Result<Vec<IfaceCounters>> {
        ifaces
            .iter()
            .map(|iface| {
                let dir = root.iface_dir(iface);
                let info = pins::read_info(&dir)?;
                let maps = Maps::open_pinned(&dir)?;
                Ok(IfaceCounters {
                    iface: iface.clone(),
                    mode: mode_name(info.mode),
                    dry_run: maps.read_ruleset()?.dry_run,
                    counters: maps.counters()?,
                })
            })
            .collect()
    };
    let Some(interval) = watch else {
        let now = read()?;
        if json {
            println!("{}", stats::to_json(&now));
        } else {
            print!("{}", stats::to_text(&now, None));
        }
        return Ok(());
    };
    let mut prev = read()?;
    let mut last = std::time::Instant::now();
    loop {
        std::thread::sleep(interval);
        let now = read()?;
        let elapsed = last.elapsed().as_secs_f64();
        last = std::time::Instant::now();
        if json {
            // One JSON document per line.
            println!("{}", stats::to_json(&now));
        } else {
            // Redraw in place: home the cursor and clear the screen.
            print!(
                "\x1b[H\x1b[2J{}",
                stats::to_text(&now, Some((&prev, elapsed)))
            );
            println!("\nevery {}s; Ctrl-C to stop", interval.as_secs_f64());
        }
        prev = now;
    }
}
