//! Network namespaces: which one a command runs in, entering another one
//! for `--netns`, and naming one for messages.
//!
//! A namespace is identified by the inode of its nsfs file (what
//! `readlink /proc/self/ns/net` shows as `net:[INODE]` and `lsns -t net`
//! lists). It is unique among the namespaces that exist; an attachment's
//! pins live in a folder named after it (see [`crate::pins`]).
use std::{fs::File, os::fd::AsRawFd, os::unix::fs::MetadataExt, path::Path};

use anyhow::{Context as _, Result};

use filter_policy::error::UsageError;

/// A network namespace, by the inode of its nsfs file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetnsId(pub u64);

/// Folders of the pin root named after a namespace start with this. With
/// the shortest inode numbers nsfs hands out (ten digits) the name is longer
/// than the 15 bytes an interface name may have, so it never collides with
/// the layout-3 folders named after interfaces.
const DIR_PREFIX: &str = "netns-";

impl NetnsId {
    /// The namespace the calling thread is in.
    pub fn current() -> Result<NetnsId> {
        // The thread's, not the process's: `--netns` moves the main thread,
        // and so does a test that enters a namespace on a thread of its own.
        let meta = std::fs::metadata("/proc/thread-self/ns/net")
            .or_else(|_| std::fs::metadata("/proc/self/ns/net"))
            .context("reading /proc/thread-self/ns/net (is /proc mounted?)")?;
        Ok(NetnsId(meta.ino()))
    }

    /// The folder name of this namespace's attachments under the pin root.
    pub fn dir_name(self) -> String {
        format!("{DIR_PREFIX}{}", self.0)
    }

    /// The namespace a pin-root folder is named after, if it is one.
    pub fn from_dir_name(name: &str) -> Option<NetnsId> {
        let digits = name.strip_prefix(DIR_PREFIX)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().map(NetnsId)
    }

    /// How messages name it: `net:[INODE]`, with its name under
    /// /run/netns (as `ip netns` shows it), or "PID 1's" for the namespace
    /// of this PID namespace's init (the host's on a host; a container's
    /// own in a container).
    pub fn describe(self) -> String {
        match self.name() {
            Some(name) => format!("net:[{}] ({name})", self.0),
            None if self.is_init() => format!("net:[{}] (PID 1's)", self.0),
            None => format!("net:[{}]", self.0),
        }
    }

    /// Its name under /run/netns, if it has one.
    pub fn name(self) -> Option<String> {
        std::fs::read_dir("/run/netns")
            .ok()?
            .filter_map(|e| e.ok())
            .find(|e| e.metadata().is_ok_and(|m| m.ino() == self.0))
            .and_then(|e| e.file_name().into_string().ok())
    }

    fn is_init(self) -> bool {
        std::fs::metadata("/proc/1/ns/net").is_ok_and(|m| m.ino() == self.0)
    }

    /// The `--netns` argument that reaches this namespace, if there is one
    /// sipwall can name: its name under /run/netns, or PID 1's namespace.
    pub fn flag(self) -> Option<String> {
        self.name()
            .or_else(|| self.is_init().then(|| "/proc/1/ns/net".into()))
    }
}

/// Moves the calling thread (sipwall's main thread, before it starts any
/// other or spawns `ip`) into the namespace `spec` names: a name under
/// /run/netns (as `ip netns add` makes them) or a path to an nsfs file
/// (`/proc/PID/ns/net`). Children spawned afterwards start in it too.
pub fn enter(spec: &str) -> Result<NetnsId> {
    if spec.is_empty() {
        return Err(UsageError("--netns needs a namespace name or path".into()).into());
    }
    let path = if spec.contains('/') {
        Path::new(spec).to_path_buf()
    } else {
        Path::new("/run/netns").join(spec)
    };
    let file = File::open(&path).map_err(|e| {
        UsageError(format!(
            "--netns {spec}: cannot open {}: {e} (`ip netns list` lists the named namespaces; a path like /proc/PID/ns/net works too)",
            path.display()
        ))
    })?;
    // SAFETY: setns on a file descriptor we own; it changes only this
    // thread's namespace, and sipwall has started no other thread yet.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINVAL) {
            return Err(UsageError(format!(
                "--netns {spec}: {} is not a network namespace",
                path.display()
            ))
            .into());
        }
        return Err(err).with_context(|| {
            format!(
                "entering the network namespace {} (needs root)",
                path.display()
            )
        });
    }
    NetnsId::current()
}

#[cfg(test)]
mod tests {
    use super::NetnsId;

    #[test]
    fn folder_names_round_trip_and_never_look_like_interfaces() {
        let id = NetnsId(4026531840);
        assert_eq!(id.dir_name(), "netns-4026531840");
        assert_eq!(NetnsId::from_dir_name(&id.dir_name()), Some(id));
        assert!(id.dir_name().len() > 15);
        for name in ["wan0", "netns-", "netns-x1", "netns-12a", "eth0"] {
            assert_eq!(NetnsId::from_dir_name(name), None, "{name}");
        }
    }
}
