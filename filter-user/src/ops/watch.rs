//! Following the configuration file for the `run` service: inotify on the
//! directory that holds it (and, when the file is a symlink, on the
//! directory of what it points to), so that an editor's in-place write, an
//! atomic rename over the file and Kubernetes' swap of a ConfigMap volume's
//! `..data` symlink are all seen. Events are debounced: the service reloads
//! once a burst of them has settled.
use std::{
    ffi::CString,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result};
use tokio::io::unix::AsyncFd;

/// How long a directory must stay quiet after an event before the file is
/// read: a kubelet update is several renames and removals in a row.
pub const SETTLE: Duration = Duration::from_millis(200);
/// A directory that never settles is read this often anyway.
const SETTLE_AT_MOST: Duration = Duration::from_secs(2);
/// While a watched directory is gone (replaced by a rename, say), how often
/// to try to watch it again.
const RETRY: Duration = Duration::from_secs(1);

const EVENTS: u32 = libc::IN_CREATE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE
    | libc::IN_CLOSE_WRITE
    | libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_MOVE_SELF
    | libc::IN_DELETE_SELF;

pub struct ConfigWatch {
    inotify: AsyncFd<OwnedFd>,
    file: PathBuf,
    /// Watch descriptor and directory of each watch in place.
    watched: Vec<(i32, PathBuf)>,
    /// The last failure to watch a directory, reported once.
    last_error: Option<String>,
}

impl ConfigWatch {
    /// Starts watching the directories of `file`.
    pub fn new(file: &Path) -> Result<ConfigWatch> {
        // SAFETY: inotify_init1 takes no pointers; the result is checked.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("inotify_init1");
        }
        // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the AsyncFd owns the descriptor, so it stays open for as
        // long as it is registered.
        let inotify =
            unsafe { AsyncFd::register(fd) }.context("registering the inotify descriptor")?;
        let mut watch = ConfigWatch {
            inotify,
            file: file.to_path_buf(),
            watched: Vec::new(),
            last_error: None,
        };
        watch.watch_directories()?;
        Ok(watch)
    }

    /// The directories whose changes can change what `file` reads as: its
    /// own, and that of the file it resolves to (when it is a symlink to
    /// elsewhere). Kubernetes' `..data/` is inside the first one.
    fn directories(&self) -> Vec<PathBuf> {
        let parent = |p: &Path| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut dirs = vec![parent(&self.file)];
        if let Ok(real) = std::fs::canonicalize(&self.file) {
            let real_dir = parent(&real);
            let given = std::fs::canonicalize(&dirs[0]).unwrap_or_else(|_| dirs[0].clone());
            if real_dir != given && !real_dir.starts_with(&given) {
                dirs.push(real_dir);
            }
        }
        dirs
    }

    /// Adds a watch for each directory not yet watched (a symlink may have
    /// been pointed elsewhere).
    fn watch_directories(&mut self) -> Result<()> {
        for dir in self.directories() {
            if self.watched.iter().any(|(_, w)| *w == dir) {
                continue;
            }
            let c = CString::new(dir.as_os_str().as_bytes())
                .with_context(|| format!("{} has a NUL byte", dir.display()))?;
            // SAFETY: a valid C string that outlives the call, on our own
            // inotify descriptor.
            let wd = unsafe {
                libc::inotify_add_watch(self.inotify.get_ref().as_raw_fd(), c.as_ptr(), EVENTS)
            };
            if wd < 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("watching {} for changes", dir.display()));
            }
            self.watched.push((wd, dir));
        }
        Ok(())
    }

    /// Whether a directory that should be watched is not (it was removed,
    /// or could not be watched).
    fn missing_a_directory(&self) -> bool {
        self.directories()
            .iter()
            .any(|d| !self.watched.iter().any(|(_, w)| w == d))
    }

    /// Returns once something changed in a watched directory and the
    /// directory has been quiet for [`SETTLE`] since (or [`SETTLE_AT_MOST`]
    /// has passed).
    pub async fn changed(&mut self) -> Result<()> {
        if self.missing_a_directory() {
            // Until it can be watched again, look every second.
            tokio::select! {
                more = self.drain_next() => more?,
                _ = tokio::time::sleep(RETRY) => {}
            }
        } else {
            self.drain_next().await?;
        }
        let deadline = tokio::time::Instant::now() + SETTLE_AT_MOST;
        loop {
            let quiet = tokio::time::sleep(SETTLE);
            tokio::select! {
                _ = quiet => break,
                more = self.drain_next() => more?,
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        // What the file resolves to may have moved, or its directory been
        // replaced; a directory that can't be watched is reported once and
        // tried again every second.
        match self.watch_directories() {
            Ok(()) => self.last_error = None,
            Err(e) => {
                let text = format!("{e:#}");
                if self.last_error.as_ref() != Some(&text) {
                    eprintln!("sipwall: {text}; trying again every second");
                }
                self.last_error = Some(text);
            }
        }
        Ok(())
    }

    /// Waits for events and reads all that are queued. Which file changed
    /// does not matter (the caller compares the file itself); a watched
    /// directory that was moved away or removed is no longer the one at its
    /// path: its watch is dropped, so that the path is watched again.
    async fn drain_next(&mut self) -> Result<()> {
        let mut guard = self.inotify.readable().await?;
        let mut buf = [0u8; 4096];
        loop {
            let fd = guard.get_inner().as_raw_fd();
            // SAFETY: reading into a buffer we own, within its length.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                for wd in gone_watches(&buf[..n as usize]) {
                    if self.watched.iter().any(|(w, _)| *w == wd) {
                        self.watched.retain(|(w, _)| *w != wd);
                        // SAFETY: removing a watch of our own descriptor;
                        // one the kernel already dropped fails harmlessly.
                        unsafe { libc::inotify_rm_watch(fd, wd) };
                    }
                }
                continue;
            }
            let err = std::io::Error::last_os_error();
            if n < 0 && err.kind() == std::io::ErrorKind::WouldBlock {
                guard.clear_ready();
                return Ok(());
            }
            if n < 0 && err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err).context("reading inotify events");
        }
    }
}

/// The watch descriptors whose directory left its path (moved away,
/// removed, or the watch dropped by the kernel) among `events`: a read of
/// struct inotify_event records (wd, mask, cookie, len, then len bytes of
/// name).
fn gone_watches(events: &[u8]) -> Vec<i32> {
    const HEADER: usize = 16;
    let word = |at: usize| u32::from_ne_bytes(events[at..at + 4].try_into().expect("4 bytes"));
    let mut out = Vec::new();
    let mut at = 0;
    while at + HEADER <= events.len() {
        let wd = word(at) as i32;
        let mask = word(at + 4);
        let len = word(at + 12) as usize;
        if mask & (libc::IN_IGNORED | libc::IN_MOVE_SELF | libc::IN_DELETE_SELF) != 0 {
            out.push(wd);
        }
        at += HEADER + len;
    }
    out
}
