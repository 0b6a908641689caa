//! The files API behind `/files/browse` and `/files/read`, limited to sandboxes.
//!
//! A requested path is served only if it resolves (following symlinks) to an
//! executor's `runs` directory or anything inside it, i.e. to
//! `<work_dir>/frameworks/<fid>/executors/<eid>/runs[/<container>/...]`: the
//! sandboxes of running executors and those of finished ones until they are garbage
//! collected. Everything else (`<work_dir>/meta`, `..` out of a sandbox, a symlink a
//! task planted pointing out of it) is [`FilesError::Forbidden`] and never opened for
//! reading. A missing path is [`FilesError::NotFound`] only when its nearest existing
//! ancestor lies in the sandbox tree and the path would be allowed; otherwise it is
//! forbidden too, so the API tells nothing about files elsewhere.
//!
//! Resolution and opening are two steps a task could race (swapping a directory for a
//! symlink in between), so the file is opened with `O_NOFOLLOW | O_NONBLOCK` and its
//! real path checked again through `/proc/self/fd` before a byte is read. Only regular
//! files are read (a FIFO a task created cannot hang a reader).
//!
//! Reads follow Mesos's `/files/read`: an offset of -1 (or none) asks for the file's
//! size; otherwise at most `length` bytes (default and cap [`MAX_READ_BYTES`]) from
//! `offset`. The data is returned as text: invalid UTF-8 is replaced by U+FFFD, and a
//! multi-byte character cut by the end of the window is left for the next read. The
//! reply's `length` says how many bytes of the file the data covers; a reader
//! continues at `offset + length`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use serde::Serialize;

/// The most bytes one read returns (the default when no length is given).
pub const MAX_READ_BYTES: u64 = 1024 * 1024;
/// The most entries one directory listing returns (the first ones by name).
pub const MAX_BROWSE_ENTRIES: usize = 10_000;
/// The longest path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// Why a files request is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilesError {
    /// The request is malformed (relative path, NUL byte, reading a directory...): 400.
    #[error("{0}")]
    BadRequest(String),
    /// The path resolves outside the agent's sandboxes: 403.
    #[error("{0}")]
    Forbidden(String),
    /// The path would be in a sandbox but does not exist (or was garbage collected): 404.
    #[error("{0}")]
    NotFound(String),
    /// The agent could not do what was asked (an I/O error): 500.
    #[error("{0}")]
    Internal(String),
}

/// One entry of a directory listing, as `/files/browse` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The entry's full path (to pass back to `/files/read` or `/files/browse`).
    pub path: String,
    /// The entry's name.
    pub name: String,
    /// Size in bytes (of the link itself for a symlink).
    pub size: u64,
    /// Type and permissions, `ls -l` style, e.g. `-rw-r--r--` or `drwxr-xr-x`.
    pub mode: String,
    /// Last modification, seconds since the Unix epoch.
    pub mtime: i64,
    /// True for a directory (a symlink to one is not).
    pub is_dir: bool,
    /// Hard links.
    pub nlink: u64,
    /// Owner's uid.
    pub uid: u32,
    /// Owner's gid.
    pub gid: u32,
}

/// The answer to a read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadReply {
    /// The text read (empty for a size query or at the end of the file).
    pub data: String,
    /// Where the data starts; for a size query, the file's size.
    pub offset: u64,
    /// How many bytes of the file `data` covers.
    pub length: u64,
}

/// The part of the file system the files API serves: the sandbox tree of one agent.
#[derive(Debug, Clone)]
pub struct SandboxTree {
    /// `<canonical work_dir>/frameworks` (deliberately not itself resolved: if it
    /// were a symlink, everything under it would resolve elsewhere and be refused).
    frameworks: PathBuf,
}

impl SandboxTree {
    /// The sandbox tree of the agent whose work directory is `work_dir`.
    pub fn new(work_dir: &Path) -> Result<SandboxTree, FilesError> {
        let work_dir = std::fs::canonicalize(work_dir)
            .map_err(|e| FilesError::Internal(format!("cannot resolve the agent's work directory: {e}")))?;
        Ok(SandboxTree { frameworks: work_dir.join("frameworks") })
    }

    /// True if the resolved `path` is an executor's `runs` directory or inside one.
    fn allows(&self, path: &Path) -> bool {
        let Ok(rest) = path.strip_prefix(&self.frameworks) else { return false };
        let parts: Vec<Component<'_>> = rest.components().collect();
        parts.len() >= 4
            && parts.iter().all(|c| matches!(c, Component::Normal(_)))
            && parts[1].as_os_str() == "executors"
            && parts[3].as_os_str() == "runs"
    }

    /// Resolves a requested path to a canonical one the API may serve.
    pub fn resolve(&self, requested: &Path) -> Result<PathBuf, FilesError> {
        let shown = requested.display();
        if requested.as_os_str().len() > MAX_PATH_BYTES {
            return Err(FilesError::BadRequest(format!("path longer than {MAX_PATH_BYTES} bytes")));
        }
        if !requested.is_absolute() {
            return Err(FilesError::BadRequest(format!("path must be absolute, got {shown:?}")));
        }
        let forbidden = || FilesError::Forbidden(format!("{shown:?} is not inside a sandbox of this agent"));
        match std::fs::canonicalize(requested) {
            Ok(resolved) if self.allows(&resolved) => Ok(resolved),
            Ok(_) => Err(forbidden()),
            Err(e) if is_missing(&e) => {
                if self.would_allow_missing(requested) {
                    Err(FilesError::NotFound(format!("no such file or directory: {shown:?}")))
                } else {
                    Err(forbidden())
                }
            }
            // Symlink loops, permissions, ...: nothing to serve.
            Err(_) => Err(forbidden()),
        }
    }

    /// For a path that does not exist: whether its nearest existing ancestor is in the
    /// sandbox tree and the path, completed lexically from there, would be allowed.
    fn would_allow_missing(&self, requested: &Path) -> bool {
        let components: Vec<Component<'_>> = requested.components().collect();
        for existing in (1..components.len()).rev() {
            let prefix: PathBuf = components[..existing].iter().collect();
            let Ok(mut resolved) = std::fs::canonicalize(&prefix) else { continue };
            if !resolved.starts_with(&self.frameworks) {
                return false;
            }
            for component in &components[existing..] {
                match component {
                    Component::Normal(name) => resolved.push(name),
                    Component::ParentDir => {
                        resolved.pop();
                    }
                    _ => {}
                }
            }
            return self.allows(&resolved);
        }
        false
    }

    /// Opens a resolved path without following a final symlink and checks, on the open
    /// file, that it is still inside the tree (a task may have swapped a component).
    fn open(&self, resolved: &Path, directory: bool) -> Result<File, FilesError> {
        let mut flags = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        if directory {
            flags |= OFlag::O_DIRECTORY;
        }
        let file = OpenOptions::new().read(true).custom_flags(flags.bits()).open(resolved).map_err(|e| {
            let shown = resolved.display();
            match e.raw_os_error().map(Errno::from_raw) {
                Some(Errno::ENOTDIR) if directory => {
                    FilesError::BadRequest(format!("{shown:?} is not a directory"))
                }
                _ if is_missing(&e) => FilesError::NotFound(format!("no such file or directory: {shown:?}")),
                // ELOOP: the last component became a symlink since it was resolved.
                _ => FilesError::Forbidden(format!("cannot open {shown:?}: {e}")),
            }
        })?;
        let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .map_err(|e| FilesError::Internal(format!("cannot check the opened file's path: {e}")))?;
        if !self.allows(&real) {
            return Err(FilesError::Forbidden(format!(
                "{:?} is not inside a sandbox of this agent",
                resolved.display()
            )));
        }
        Ok(file)
    }

    /// Lists the directory at `requested`, sorted by name, at most
    /// [`MAX_BROWSE_ENTRIES`] entries.
    pub fn browse(&self, requested: &Path) -> Result<Vec<Entry>, FilesError> {
        let resolved = self.resolve(requested)?;
        let directory = self.open(&resolved, true)?;
        // Read the directory the descriptor refers to, not whatever the path names now.
        let through = PathBuf::from(format!("/proc/self/fd/{}", directory.as_raw_fd()));
        let listing = std::fs::read_dir(&through)
            .map_err(|e| FilesError::Internal(format!("cannot list {:?}: {e}", resolved.display())))?;
        let mut names: Vec<std::ffi::OsString> =
            listing.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        names.sort();
        names.truncate(MAX_BROWSE_ENTRIES);
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            // lstat: a symlink shows as a link, its target is not looked at.
            let Ok(meta) = std::fs::symlink_metadata(through.join(&name)) else { continue };
            entries.push(Entry {
                path: resolved.join(&name).to_string_lossy().into_owned(),
                name: name.to_string_lossy().into_owned(),
                size: meta.len(),
                mode: mode_string(meta.mode()),
                mtime: meta.mtime(),
                is_dir: meta.is_dir(),
                nlink: meta.nlink(),
                uid: meta.uid(),
                gid: meta.gid(),
            });
        }
        Ok(entries)
    }

    /// Reads the file at `requested`: its size when `offset` is `None`, otherwise up
    /// to `length` bytes (capped at [`MAX_READ_BYTES`]; the cap when `None`) from
    /// `offset`.
    pub fn read(
        &self,
        requested: &Path,
        offset: Option<u64>,
        length: Option<u64>,
    ) -> Result<ReadReply, FilesError> {
        let resolved = self.resolve(requested)?;
        let file = self.open(&resolved, false)?;
        let meta = file
            .metadata()
            .map_err(|e| FilesError::Internal(format!("cannot stat {:?}: {e}", resolved.display())))?;
        if meta.is_dir() {
            return Err(FilesError::BadRequest(format!(
                "{:?} is a directory (use /files/browse)",
                resolved.display()
            )));
        }
        if !meta.is_file() {
            return Err(FilesError::BadRequest(format!("{:?} is not a regular file", resolved.display())));
        }
        let size = meta.len();
        let Some(offset) = offset else {
            return Ok(ReadReply { data: String::new(), offset: size, length: 0 });
        };
        let length = length.unwrap_or(MAX_READ_BYTES).min(MAX_READ_BYTES);
        if offset >= size || length == 0 {
            return Ok(ReadReply { data: String::new(), offset, length: 0 });
        }
        let wanted = length.min(size - offset) as usize;
        let mut buffer = vec![0u8; wanted];
        let mut filled = 0;
        while filled < wanted {
            match file.read_at(&mut buffer[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(FilesError::Internal(format!("cannot read {:?}: {e}", resolved.display())))
                }
            }
        }
        buffer.truncate(filled);
        let at_end = offset + filled as u64 >= size;
        let keep = if at_end { buffer.len() } else { complete_utf8_prefix(&buffer) };
        buffer.truncate(keep);
        let data = String::from_utf8_lossy(&buffer).into_owned();
        Ok(ReadReply { data, offset, length: keep as u64 })
    }
}

/// True for errors that mean "no such path" (including a file used as a directory).
fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error().is_some_and(|n| n == Errno::ENOTDIR as i32)
}

/// The length of `bytes` without a trailing, incomplete UTF-8 sequence (unless that
/// would leave nothing, so a reader always makes progress).
fn complete_utf8_prefix(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=len.min(3) {
        let byte = bytes[len - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: look further back for the lead
        }
        let needed = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        if needed > back && len > back {
            return len - back;
        }
        return len;
    }
    len
}

/// `ls -l` style type and permission bits.
fn mode_string(mode: u32) -> String {
    let kind = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        0o010000 => 'p',
        0o140000 => 's',
        0o020000 => 'c',
        0o060000 => 'b',
        _ => '-',
    };
    let mut out = String::with_capacity(10);
    out.push(kind);
    for (shift, special, set_char) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 0o7;
        out.push(if bits & 0o4 != 0 { 'r' } else { '-' });
        out.push(if bits & 0o2 != 0 { 'w' } else { '-' });
        let exec = bits & 0o1 != 0;
        out.push(match (mode & special != 0, exec) {
            (true, true) => set_char,
            (true, false) => set_char.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
        tree: SandboxTree,
        sandbox: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = dir.path().join("frameworks/F/executors/E/runs/C");
        std::fs::create_dir_all(&sandbox).unwrap();
        std::fs::create_dir_all(dir.path().join("meta")).unwrap();
        std::fs::write(dir.path().join("meta/agent.json"), "{}").unwrap();
        std::fs::write(sandbox.join("stdout"), "hello\n").unwrap();
        let tree = SandboxTree::new(dir.path()).unwrap();
        let sandbox = std::fs::canonicalize(sandbox).unwrap();
        Fixture { dir, tree, sandbox }
    }

    fn forbidden(result: Result<impl std::fmt::Debug, FilesError>) -> bool {
        matches!(result, Err(FilesError::Forbidden(_)))
    }

    #[test]
    fn reads_and_lists_inside_a_sandbox() {
        let f = fixture();
        let reply = f.tree.read(&f.sandbox.join("stdout"), Some(0), None).unwrap();
        assert_eq!(reply, ReadReply { data: "hello\n".into(), offset: 0, length: 6 });
        let reply = f.tree.read(&f.sandbox.join("stdout"), Some(2), Some(2)).unwrap();
        assert_eq!(reply.data, "ll");
        let size = f.tree.read(&f.sandbox.join("stdout"), None, None).unwrap();
        assert_eq!((size.data.as_str(), size.offset), ("", 6));
        let past = f.tree.read(&f.sandbox.join("stdout"), Some(100), Some(5)).unwrap();
        assert_eq!((past.data.as_str(), past.offset, past.length), ("", 100, 0));
        let entries = f.tree.browse(&f.sandbox).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].name, "stdout");
        assert_eq!(entries[0].size, 6);
        assert!(entries[0].mode.starts_with('-'));
        // The runs directory lists the sandboxes.
        let runs = f.tree.browse(f.sandbox.parent().unwrap()).unwrap();
        assert_eq!(runs[0].name, "C");
        assert!(runs[0].is_dir);
    }

    #[test]
    fn refuses_everything_outside_the_sandboxes() {
        let f = fixture();
        let meta = f.sandbox.join("../../../../../../meta/agent.json");
        assert!(forbidden(f.tree.read(&meta, Some(0), None)));
        // Four levels up is the framework's directory: not a sandbox either.
        assert!(forbidden(f.tree.read(&f.sandbox.join("../../../../meta/agent.json"), Some(0), None)));
        assert!(forbidden(f.tree.read(Path::new("/etc/passwd"), Some(0), None)));
        assert!(forbidden(f.tree.browse(f.dir.path())));
        assert!(forbidden(f.tree.browse(&f.dir.path().join("frameworks/F"))));
        std::os::unix::fs::symlink("/etc/passwd", f.sandbox.join("link")).unwrap();
        assert!(forbidden(f.tree.read(&f.sandbox.join("link"), Some(0), None)));
        std::os::unix::fs::symlink("/etc", f.sandbox.join("etc")).unwrap();
        assert!(forbidden(f.tree.browse(&f.sandbox.join("etc"))));
        assert!(forbidden(f.tree.read(&f.sandbox.join("etc/no-such-file"), Some(0), None)));
        assert!(forbidden(f.tree.read(Path::new("/no/such/file"), Some(0), None)));
        // The listing shows the link, not its target.
        let entries = f.tree.browse(&f.sandbox).unwrap();
        let link = entries.iter().find(|e| e.name == "link").unwrap();
        assert!(link.mode.starts_with('l') && !link.is_dir);
    }

    #[test]
    fn missing_paths_in_the_tree_are_not_found() {
        let f = fixture();
        assert!(matches!(f.tree.read(&f.sandbox.join("nope"), Some(0), None), Err(FilesError::NotFound(_))));
        let collected = f.dir.path().join("frameworks/F/executors/E/runs/GONE/stdout");
        assert!(matches!(f.tree.read(&collected, Some(0), None), Err(FilesError::NotFound(_))));
        let other = f.dir.path().join("frameworks/G/executors/E/runs/C/stdout");
        assert!(matches!(f.tree.read(&other, Some(0), None), Err(FilesError::NotFound(_))));
    }

    #[test]
    fn bad_requests() {
        let f = fixture();
        let relative = f.tree.read(Path::new("frameworks/F"), Some(0), None);
        assert!(matches!(relative, Err(FilesError::BadRequest(_))));
        assert!(matches!(f.tree.read(&f.sandbox, Some(0), None), Err(FilesError::BadRequest(_))));
        let file_as_dir = f.tree.browse(&f.sandbox.join("stdout"));
        assert!(matches!(file_as_dir, Err(FilesError::BadRequest(_))), "{file_as_dir:?}");
        let long = PathBuf::from(format!("/{}", "a".repeat(MAX_PATH_BYTES)));
        assert!(matches!(f.tree.read(&long, Some(0), None), Err(FilesError::BadRequest(_))));
    }

    #[test]
    fn fifos_are_not_read() {
        let f = fixture();
        let fifo = f.sandbox.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(f.tree.read(&fifo, Some(0), None), Err(FilesError::BadRequest(_))));
    }

    #[test]
    fn utf8_characters_are_not_cut() {
        let f = fixture();
        std::fs::write(f.sandbox.join("text"), "aé€x").unwrap(); // 1 + 2 + 3 + 1 bytes
        let first = f.tree.read(&f.sandbox.join("text"), Some(0), Some(4)).unwrap();
        assert_eq!((first.data.as_str(), first.length), ("aé", 3));
        let second = f.tree.read(&f.sandbox.join("text"), Some(3), Some(10)).unwrap();
        assert_eq!(second.data, "€x");
        assert_eq!(complete_utf8_prefix(&[0xE2]), 1);
        assert_eq!(complete_utf8_prefix(b"ab\xF0\x9F"), 2);
        assert_eq!(complete_utf8_prefix(b"ab\xF0\x9F\x98\x80"), 6);
    }

    #[test]
    fn modes_look_like_ls() {
        assert_eq!(mode_string(0o100644), "-rw-r--r--");
        assert_eq!(mode_string(0o040755), "drwxr-xr-x");
        assert_eq!(mode_string(0o104755), "-rwsr-xr-x");
        assert_eq!(mode_string(0o041777), "drwxrwxrwt");
    }
}
