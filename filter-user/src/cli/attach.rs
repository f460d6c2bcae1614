//! `sipwall attach`: load, pin and attach, or upgrade in place.
use anyhow::Result;
use filter_kernel::{attach, pins::PinRoot, privileges::require_root};
use filter_policy::config;

use super::args::AttachArgs;
use crate::ops::{admission, confirm};

pub fn run(root: &PinRoot, args: &AttachArgs) -> Result<()> {
    let iface = args.target.iface.as_str();
    let force = args.policy.force;
    let mut ruleset = config::load(args.target.config.as_deref())?;
    ruleset.dry_run |= args.dry_run;
    admission::check(&ruleset, force)?;
    require_root()?;
    let previous = match args.confirm {
        Some(_) => Some(confirm::previous(root, iface)?),
        None => None,
    };
    let mut attached = attach::attach(root, iface, &ruleset, args.target.mode.requested(), true)?;
    let live = attached.maps.read_ruleset()?;
    if attached.replaced {
        println!(
            "replaced the sipwall program on {iface} in place ({} mode, program id {}); {}",
            attached.mode.name(),
            attached.program_id,
            if attached.kept_allowlist {
                "allowlist and counters kept"
            } else {
                "allowlist installed from the configuration"
            }
        );
        if attached.kept_allowlist && args.target.config.is_some() && live.allow != ruleset.allow {
            eprintln!(
                "sipwall: note: the live allowlist ({} entries) was kept; the file's [signalling] allow differs: apply it with `sipwall allow replace`",
                live.allow.len()
            );
        }
    } else {
        println!(
            "attached sipwall to {iface} in {} mode (program id {})",
            attached.mode.name(),
            attached.program_id
        );
    }
    println!("  {}", live.summary());
    if let (Some(secs), Some(previous)) = (args.confirm, previous) {
        // The loaded object would detach its links when dropped: only the
        // pinned links keep the filter, so drop nothing but the maps use.
        confirm::await_confirmation(root, iface, &mut attached.maps, previous, secs)?;
    }
    Ok(())
}
