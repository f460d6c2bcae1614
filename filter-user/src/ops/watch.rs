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

const EVENTS: u32 = libc::IN_CREATE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE
    | libc::IN_CLOSE_WRITE
    | libc::IN_MODIFY
    | libc::IN_ATTRIB;

pub struct ConfigWatch {
    inotify: AsyncFd<OwnedFd>,
    file: PathBuf,
    watched: Vec<PathBuf>,
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
            if self.watched.contains(&dir) {
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
            self.watched.push(dir);
        }
        Ok(())
    }

    /// Returns once something changed in a watched directory and the
    /// directory has been quiet for [`SETTLE`] since (or [`SETTLE_AT_MOST`]
    /// has passed).
    pub async fn changed(&mut self) -> Result<()> {
        self.drain_next().await?;
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
        // What the file resolves to may have moved; a directory that can't
        // be watched now is reported at the next change.
        if let Err(e) = self.watch_directories() {
            eprintln!("sipwall: {e:#}");
        }
        Ok(())
    }

    /// Waits for events and reads all that are queued. Their contents do
    /// not matter: the caller compares the file itself.
    async fn drain_next(&mut self) -> Result<()> {
        let mut guard = self.inotify.readable().await?;
        let mut buf = [0u8; 4096];
        loop {
            let fd = guard.get_inner().as_raw_fd();
            // SAFETY: reading into a buffer we own, within its length.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
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
