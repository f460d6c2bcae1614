//! Reading the operator's files, bounded: a configuration, an allowlist or
//! a capture must be a regular file (or standard input where a command
//! documents `-`) no larger than its cap. Anything else — a device like
//! /dev/zero, a FIFO, a socket, a folder, a file larger than any valid one —
//! is refused with a usage error before a byte is read, so a mistyped path
//! can neither hang sipwall nor fill its memory.
//!
//! FIFOs are refused rather than read with a timeout: a FIFO without a
//! writer would otherwise block forever, and one with a writer is better
//! given as standard input (`--file -`) where that is offered.
use std::{
    io::Read as _,
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::Path,
};

use crate::error::UsageError;

/// The largest configuration or allowlist file read: room for the largest
/// valid allowlist (131,072 IPv4 and 131,072 IPv6 prefixes, up to 43
/// characters each, quoted, with comments) several times over.
pub const TEXT_CAP: u64 = 32 << 20;

/// The largest capture `check --pcap` reads (it holds every frame in
/// memory); split bigger ones with `editcap -c`.
pub const PCAP_CAP: u64 = 256 << 20;

/// Reads the regular file at `path` (what it is, `what`, names it in
/// errors), refusing anything else and anything larger than `cap` bytes.
pub fn read_regular(path: &Path, what: &str, cap: u64) -> Result<Vec<u8>, UsageError> {
    let name = path.display();
    let fail = |why: String| UsageError(format!("{name}: cannot read the {what}: {why}"));
    // O_NONBLOCK: opening a FIFO without a writer would block here before
    // fstat could say what it is. Regular files ignore the flag.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    let kind = meta.file_type();
    let not_regular = if kind.is_dir() {
        Some("it is a directory")
    } else if kind.is_fifo() {
        Some("it is a FIFO (named pipe), which sipwall does not read: it could block forever; write a regular file")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("it is a device, not a regular file")
    } else if kind.is_socket() {
        Some("it is a socket, not a regular file")
    } else if !kind.is_file() {
        Some("it is not a regular file")
    } else {
        None
    };
    if let Some(why) = not_regular {
        return Err(fail(why.into()));
    }
    if meta.len() > cap {
        return Err(too_large(&name.to_string(), what, meta.len(), cap));
    }
    read_capped(file, cap).map_err(|e| match e {
        Capped::TooLarge(n) => too_large(&name.to_string(), what, n, cap),
        Capped::Io(e) => fail(e.to_string()),
    })
}

/// A list file as text: a regular file of at most [`TEXT_CAP`] bytes, or
/// standard input for `-`. Returns the name to use in messages and the
/// text.
pub fn read_list_text(path: &Path, what: &str) -> Result<(String, String), UsageError> {
    let stdin = path == Path::new("-");
    let name = if stdin {
        "standard input".to_string()
    } else {
        path.display().to_string()
    };
    let bytes = if stdin {
        read_stdin(what, TEXT_CAP)?
    } else {
        read_regular(path, what, TEXT_CAP)?
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| UsageError(format!("{name}: not a text file (invalid UTF-8)")))?;
    Ok((name, text))
}

/// Reads standard input to its end, refusing more than `cap` bytes.
pub fn read_stdin(what: &str, cap: u64) -> Result<Vec<u8>, UsageError> {
    read_capped(std::io::stdin().lock(), cap).map_err(|e| match e {
        Capped::TooLarge(n) => too_large("standard input", what, n, cap),
        Capped::Io(e) => UsageError(format!("standard input: cannot read the {what}: {e}")),
    })
}

enum Capped {
    /// More than the cap: at least this many bytes.
    TooLarge(u64),
    Io(std::io::Error),
}

/// Reads to the end, but never more than `cap` + 1 bytes (a file may grow
/// after fstat).
fn read_capped(reader: impl std::io::Read, cap: u64) -> Result<Vec<u8>, Capped> {
    let mut bytes = Vec::new();
    reader
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(Capped::Io)?;
    if bytes.len() as u64 > cap {
        return Err(Capped::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

fn too_large(name: &str, what: &str, size: u64, cap: u64) -> UsageError {
    UsageError(format!(
        "{name}: the {what} is too large ({size} bytes; sipwall reads at most {} MiB)",
        cap >> 20
    ))
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;

    #[test]
    fn refuses_what_is_not_a_regular_file_or_too_large() {
        let dir = std::env::temp_dir().join(format!("sipwall-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big");
        File::create(&big).unwrap().set_len(TEXT_CAP + 1).unwrap();
        let small = dir.join("small");
        std::fs::write(&small, "192.0.2.1\n").unwrap();
        for (path, says) in [
            (Path::new("/dev/zero"), "device"),
            (dir.as_path(), "directory"),
            (big.as_path(), "too large"),
        ] {
            let err = read_regular(path, "list", TEXT_CAP).expect_err(says).0;
            assert!(err.contains(says), "{path:?}: {err}");
        }
        assert_eq!(
            read_regular(&small, "list", TEXT_CAP).unwrap(),
            b"192.0.2.1\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
