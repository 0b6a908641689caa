//! A registry in one local JSON file: the embedded default for a single master.
//!
//! The file holds `{"format": 1, "term": T, "version": V, "state": {...}}`. Every
//! write goes to a fresh temp file in the same directory, which is fsynced, renamed
//! over the old file, and the directory fsynced: a crash leaves the old state or the
//! new one, never a torn file. A crash between create and rename can leave a
//! `.<name>.tmp-*` file behind; it is never read and can be deleted.
//!
//! The file is the only source of truth: every call re-reads it under an in-process
//! mutex, so a second `FileRegistry` on the same path (another master process) sees
//! the fence. Two processes writing at the same instant can still race between read
//! and rename; the etcd registry closes that gap, a single embedded master has none.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{
    apply_all, check_claim_term, check_write_term, BoxFuture, Operation, Registry, RegistryError,
    RegistryState, Term,
};

/// The on-disk format this code reads and writes.
pub(super) const FORMAT: u32 = 1;

/// A registry stored in one JSON file. Cheap to clone; clones share the mutex.
#[derive(Debug, Clone)]
pub struct FileRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// Serialises this process's read-check-write cycles on the file.
    lock: Mutex<()>,
}

/// The whole file.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Contents {
    /// The on-disk format, [`FORMAT`].
    pub(super) format: u32,
    /// The highest claimed term (`Term(0)`: none).
    pub(super) term: Term,
    /// Bumped by every non-empty transaction.
    pub(super) version: u64,
    /// The registry's state.
    pub(super) state: RegistryState,
}

impl Contents {
    pub(super) fn empty() -> Contents {
        Contents { format: FORMAT, term: Term(0), version: 0, state: RegistryState::default() }
    }
}

impl FileRegistry {
    /// A registry stored at `path`. A missing file means the empty state (it is
    /// created by the first `recover`); an existing file is read now so that a
    /// corrupt one is reported at startup. Does blocking I/O: call it at startup.
    pub fn open(path: impl Into<PathBuf>) -> Result<FileRegistry, RegistryError> {
        let path = path.into();
        if path.file_name().is_none() {
            return Err(RegistryError::InvalidArgument(format!(
                "registry path {} does not name a file",
                path.display()
            )));
        }
        let directory = directory_of(&path);
        let metadata = fs::metadata(&directory).map_err(|source| io_error(&directory, source))?;
        if !metadata.is_dir() {
            let source = io::Error::other("not a directory");
            return Err(io_error(&directory, source));
        }
        read(&path)?;
        Ok(FileRegistry { inner: Arc::new(Inner { path, lock: Mutex::new(()) }) })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `work` on the blocking pool, holding the in-process lock.
    fn blocking<T, F>(&self, work: F) -> BoxFuture<'static, Result<T, RegistryError>>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> Result<T, RegistryError> + Send + 'static,
    {
        let inner = self.inner.clone();
        let path = self.inner.path.clone();
        Box::pin(async move {
            let task = tokio::task::spawn_blocking(move || {
                // The mutex guards no data (the file is the data): poisoning is harmless.
                let _guard = inner.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                work(&inner.path)
            });
            match task.await {
                Ok(result) => result,
                Err(join_error) => {
                    let source = io::Error::other(format!("registry I/O task failed: {join_error}"));
                    Err(io_error(&path, source))
                }
            }
        })
    }
}

impl Registry for FileRegistry {
    fn recover(&self, term: Term) -> BoxFuture<'static, Result<RegistryState, RegistryError>> {
        self.blocking(move |path| {
            let mut contents = read(path)?.unwrap_or_else(Contents::empty);
            check_claim_term(term, contents.term)?;
            if term > contents.term {
                contents.term = term;
                write(path, &contents)?;
            }
            tracing::info!(
                registry = %path.display(),
                term = term.0,
                version = contents.version,
                agents = contents.state.agents.len(),
                frameworks = contents.state.frameworks.len(),
                "registry recovered"
            );
            Ok(contents.state)
        })
    }

    fn claim_next(&self) -> BoxFuture<'static, Result<(Term, RegistryState), RegistryError>> {
        self.blocking(move |path| {
            let mut contents = read(path)?.unwrap_or_else(Contents::empty);
            contents.term = Term(contents.term.0 + 1);
            write(path, &contents)?;
            tracing::info!(
                registry = %path.display(),
                term = contents.term.0,
                version = contents.version,
                agents = contents.state.agents.len(),
                frameworks = contents.state.frameworks.len(),
                "registry recovered"
            );
            Ok((contents.term, contents.state))
        })
    }

    fn apply(
        &self,
        term: Term,
        operations: Vec<Operation>,
    ) -> BoxFuture<'static, Result<u64, RegistryError>> {
        self.blocking(move |path| {
            let Some(mut contents) = read(path)? else {
                // Never claimed, or deleted under us: either way the caller holds no term.
                return Err(RegistryError::InvalidArgument(format!(
                    "term {term} has not been claimed: {} does not exist",
                    path.display()
                )));
            };
            check_write_term(term, contents.term)?;
            if operations.is_empty() {
                return Ok(contents.version);
            }
            contents.state = apply_all(&contents.state, &operations)?;
            contents.version += 1;
            write(path, &contents)?;
            tracing::debug!(
                registry = %path.display(),
                term = term.0,
                version = contents.version,
                operations = operations.len(),
                "registry applied"
            );
            Ok(contents.version)
        })
    }

    fn describe(&self) -> String {
        format!("file:{}", self.inner.path.display())
    }
}

/// Reads the file; `None` if it does not exist.
pub(super) fn read(path: &Path) -> Result<Option<Contents>, RegistryError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(source) if source.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error(path, source)),
    };
    let contents: Contents = serde_json::from_slice(&bytes)
        .map_err(|e| RegistryError::Corrupt(format!("{}: {e}", path.display())))?;
    if contents.format != FORMAT {
        return Err(RegistryError::Corrupt(format!(
            "{}: format {} is not supported (expected {FORMAT})",
            path.display(),
            contents.format
        )));
    }
    Ok(Some(contents))
}

/// Replaces the file atomically with `contents`.
pub(super) fn write(path: &Path, contents: &Contents) -> Result<(), RegistryError> {
    let bytes = serde_json::to_vec(contents)
        .map_err(|e| RegistryError::InvalidArgument(format!("state cannot be serialised: {e}")))?;
    // serde_json writes NaN and infinities as `null`, which it then cannot read back:
    // refuse to store what the next leader could not recover.
    if let Err(e) = serde_json::from_slice::<Contents>(&bytes) {
        return Err(RegistryError::InvalidArgument(format!("state would not read back: {e}")));
    }
    let directory = directory_of(path);
    let file_name = path.file_name().map(|name| name.to_string_lossy()).unwrap_or_default();
    let temp_path =
        directory.join(format!(".{file_name}.tmp-{}-{:016x}", std::process::id(), fastrand::u64(..)));
    if let Err(e) = write_synced(&temp_path, &bytes) {
        let _ = fs::remove_file(&temp_path);
        return Err(e);
    }
    if let Err(source) = fs::rename(&temp_path, path) {
        let _ = fs::remove_file(&temp_path);
        return Err(io_error(path, source));
    }
    sync_directory(&directory)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    let mut file =
        OpenOptions::new().write(true).create_new(true).open(path).map_err(|e| io_error(path, e))?;
    file.write_all(bytes).map_err(|e| io_error(path, e))?;
    file.sync_all().map_err(|e| io_error(path, e))
}

/// Makes the rename durable. Directories cannot be opened for fsync everywhere;
/// on Unix they can and must be.
fn sync_directory(directory: &Path) -> Result<(), RegistryError> {
    if cfg!(unix) {
        File::open(directory).and_then(|dir| dir.sync_all()).map_err(|e| io_error(directory, e))?;
    }
    Ok(())
}

fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn io_error(path: &Path, source: io::Error) -> RegistryError {
    RegistryError::Io { path: path.to_path_buf(), source }
}
