//! Exit statuses that outlive the containerizer's process: the status files written by
//! each container's waiter, where they live, their format, and reading them back.
//!
//! With a state directory configured, a container's main process is a *waiter*: a
//! fork of the containerizer's child made just before `exec` (see
//! `posix::session`), whose own child execs the task. The waiter ignores every signal
//! it can, waits for the task, writes the task's raw wait status to
//! `<state_dir>/<container id>` (created empty by `launch`), then exits the same way
//! the task did (same exit code, or the same signal re-raised), so whoever reaps it
//! sees a faithful status. The file survives the containerizer: a new process
//! recovering the container reads it.
//!
//! Record format, one line: `v1 status=<raw wait status> pid=<task pid>\n`, written
//! with one `write` by a process that must not allocate (hence [`format_record`] into a
//! stack buffer). An empty file means nothing was recorded (yet).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use crate::config::ContainerId;
use crate::error::IsolationError;
use crate::status::Termination;

/// Longest record a waiter writes, in bytes.
pub(crate) const RECORD_MAX_BYTES: usize = 64;

/// Most bytes read from a status file: anything longer is garbled anyway.
const READ_LIMIT_BYTES: u64 = 256;

/// The `comm` a waiter gives itself (`ps`, `top`), so it is not mistaken for the agent.
pub(crate) const WAITER_NAME: &[u8] = b"keel-waiter\0";

/// What a waiter recorded about the task it waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    /// The raw wait status, as `waitpid` returned it.
    pub raw_status: i32,
    /// The task's pid.
    pub task_pid: i32,
}

impl Record {
    /// The task's termination.
    pub fn termination(&self) -> Termination {
        Termination::from_exit_status(ExitStatus::from_raw(self.raw_status))
    }
}

/// What a status file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StatusFile {
    /// No file: the container was launched without a waiter (no state directory, or
    /// an older version), or the file was removed.
    Missing,
    /// The file exists but holds no record: the task has not ended yet, or its waiter
    /// was killed before it could write one.
    Empty,
    /// The task's end, as recorded.
    Recorded(Record),
    /// The file cannot be read or parsed; the reason says why (with the path).
    Garbled(String),
}

impl StatusFile {
    /// Why no status is known, for a [`crate::UNKNOWN_EXIT_MESSAGE`]; `None` for a
    /// record.
    pub fn unknown_reason(&self, path: &Path) -> Option<String> {
        match self {
            StatusFile::Missing => {
                Some(format!("no status file {} (launched without a waiter?)", path.display()))
            }
            StatusFile::Empty => Some(format!(
                "{} is empty: the waiter ended without recording the task's status",
                path.display()
            )),
            StatusFile::Garbled(reason) => Some(reason.clone()),
            StatusFile::Recorded(_) => None,
        }
    }
}

/// The directory of one containerizer's status files.
#[derive(Debug, Clone)]
pub(crate) struct StatusDir {
    dir: PathBuf,
}

impl StatusDir {
    /// Status files under `dir` (created on first use).
    pub fn new(dir: PathBuf) -> Self {
        StatusDir { dir }
    }

    /// The status file of container `id`.
    pub fn path(&self, id: &ContainerId) -> PathBuf {
        self.dir.join(&id.0)
    }

    /// Creates (or truncates) the status file of `id` and opens it for the waiter to
    /// write: close-on-exec, and never one of the standard descriptors 0-2 (which the
    /// child replaces before the waiter is forked).
    pub fn create(&self, id: &ContainerId) -> Result<File, IsolationError> {
        let path = self.path(id);
        let open = || OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path);
        let file = match open() {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&self.dir).map_err(|error| {
                    IsolationError::io(format!("creating state directory '{}'", self.dir.display()), error)
                })?;
                open()
            }
            other => other,
        };
        let context = || format!("creating status file '{}' of container '{id}'", path.display());
        let file = file.map_err(|error| IsolationError::io(context(), error))?;
        if std::os::fd::AsRawFd::as_raw_fd(&file) > 2 {
            return Ok(file);
        }
        // `try_clone` duplicates to the lowest free descriptor >= 3.
        file.try_clone().map_err(|error| IsolationError::io(context(), error))
    }

    /// Reads the status file of `id`.
    pub fn read(&self, id: &ContainerId) -> StatusFile {
        read_status_file(&self.path(id))
    }

    /// Removes the status file of `id`; a missing one is fine, other failures are
    /// returned.
    pub fn remove(&self, id: &ContainerId) -> Result<(), IsolationError> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(IsolationError::io(
                format!("removing status file '{}' of container '{id}'", path.display()),
                error,
            )),
        }
    }

    /// Removes the status files of the containers `keep` says no to (recovery: the
    /// agent forgot them, so nobody will ask); failures are logged.
    pub fn remove_all_but(&self, keep: impl Fn(&ContainerId) -> bool) {
        let listed = match self.list() {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(%error, "could not list the status files");
                return;
            }
        };
        for id in listed.into_iter().filter(|id| !keep(id)) {
            match self.remove(&id) {
                Ok(()) => tracing::info!(container_id = %id, "status file of an unknown container removed"),
                Err(error) => {
                    tracing::warn!(container_id = %id, %error, "could not remove the status file of an unknown container")
                }
            }
        }
    }

    /// The ids that have a status file, sorted; none if the directory does not exist.
    pub fn list(&self) -> Result<Vec<ContainerId>, IsolationError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => {
                return Err(IsolationError::io(
                    format!("listing state directory '{}'", self.dir.display()),
                    error,
                ))
            }
        };
        let mut ids: Vec<ContainerId> = entries
            .flatten()
            .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
            .filter_map(|entry| entry.file_name().into_string().ok())
            .map(ContainerId)
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// The termination of a main process this containerizer reaped (`reaped` is its wait
/// status). With a waiter, the task's status as the waiter recorded it (exact, core
/// dump included); without one, or if nothing was recorded (the waiter was killed, by
/// `destroy` for instance, or could not write), the reaped status, which the waiter
/// mirrors.
pub(crate) fn reaped_termination(
    reaped: ExitStatus,
    statuses: Option<&StatusDir>,
    id: &ContainerId,
) -> Termination {
    match statuses.map(|statuses| statuses.read(id)) {
        Some(StatusFile::Recorded(record)) => record.termination(),
        Some(other) => {
            let termination = Termination::from_exit_status(reaped);
            tracing::debug!(container_id = %id, status_file = ?other, status = %termination.message, "no recorded exit status; reporting the waiter's");
            termination
        }
        None => Termination::from_exit_status(reaped),
    }
}

/// Reads and parses one status file; never fails (see [`StatusFile`]).
pub(crate) fn read_status_file(path: &Path) -> StatusFile {
    let mut bytes = Vec::new();
    let read = File::open(path).and_then(|file| file.take(READ_LIMIT_BYTES).read_to_end(&mut bytes));
    match read {
        Ok(_) => match parse_record(&bytes) {
            Ok(None) => StatusFile::Empty,
            Ok(Some(record)) => StatusFile::Recorded(record),
            Err(reason) => {
                StatusFile::Garbled(format!("status file {} is garbled: {reason}", path.display()))
            }
        },
        Err(error) if error.kind() == io::ErrorKind::NotFound => StatusFile::Missing,
        Err(error) => StatusFile::Garbled(format!("status file {} is unreadable: {error}", path.display())),
    }
}

/// Parses a status file's contents: `Ok(None)` if empty, the record, or why it is not one.
pub(crate) fn parse_record(bytes: &[u8]) -> Result<Option<Record>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let Some(line) = text.strip_suffix('\n') else {
        return Err(format!("no complete line in {text:?}"));
    };
    let mut fields = line.split(' ');
    let (Some("v1"), Some(status), Some(pid), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(format!("not a v1 record: {line:?}"));
    };
    let number = |field: &str, key: &str| -> Result<i32, String> {
        field
            .strip_prefix(key)
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| format!("bad field {field:?} in {line:?}"))
    };
    let raw_status = number(status, "status=")?;
    let task_pid = number(pid, "pid=")?;
    if task_pid <= 0 {
        return Err(format!("bad pid in {line:?}"));
    }
    Ok(Some(Record { raw_status, task_pid }))
}

/// Formats a record into `buffer` and returns its bytes; no allocation (it runs in the
/// waiter, a forked child that may only make async-signal-safe calls).
pub(crate) fn format_record(record: Record, buffer: &mut [u8; RECORD_MAX_BYTES]) -> &[u8] {
    let mut length = 0;
    let mut push = |bytes: &[u8]| {
        buffer[length..length + bytes.len()].copy_from_slice(bytes);
        length += bytes.len();
    };
    let mut digits = [0u8; 11];
    push(b"v1 status=");
    push(format_i32(record.raw_status, &mut digits));
    push(b" pid=");
    push(format_i32(record.task_pid, &mut digits));
    push(b"\n");
    &buffer[..length]
}

/// Writes `value` in decimal at the end of `buffer` and returns those bytes.
pub(crate) fn format_i32(value: i32, buffer: &mut [u8; 11]) -> &[u8] {
    let mut magnitude = value.unsigned_abs();
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if value < 0 {
        start -= 1;
        buffer[start] = b'-';
    }
    &buffer[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ExitStatusKind;

    #[test]
    fn records_round_trip_without_allocating() {
        let mut buffer = [0u8; RECORD_MAX_BYTES];
        for record in [
            Record { raw_status: 3 << 8, task_pid: 4242 },
            Record { raw_status: 9, task_pid: 1 },
            Record { raw_status: i32::MIN, task_pid: i32::MAX },
            Record { raw_status: -1, task_pid: 7 },
        ] {
            let bytes = format_record(record, &mut buffer);
            assert_eq!(parse_record(bytes), Ok(Some(record)), "{:?}", String::from_utf8_lossy(bytes));
        }
        let bytes = format_record(Record { raw_status: 768, task_pid: 12 }, &mut buffer);
        assert_eq!(bytes, b"v1 status=768 pid=12\n");
    }

    #[test]
    fn records_map_to_terminations() {
        let exited = Record { raw_status: 3 << 8, task_pid: 5 }.termination();
        assert_eq!(exited.status, ExitStatusKind::Exited(3));
        let killed = Record { raw_status: 15, task_pid: 5 }.termination();
        assert_eq!(killed.status, ExitStatusKind::Signaled(15));
        let dumped = Record { raw_status: 11 | 0x80, task_pid: 5 }.termination();
        assert_eq!(dumped.message, "killed by signal 11 (SIGSEGV) (core dumped)");
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        assert_eq!(parse_record(b""), Ok(None));
        for garbage in [
            &b"v1 status=768 pid=12"[..], // no newline: a torn write
            b"v1 status=768 pid=12\njunk",
            b"v2 status=768 pid=12\n",
            b"v1 status=768\n",
            b"v1 status=x pid=12\n",
            b"v1 status=99999999999 pid=12\n",
            b"v1 status=768 pid=0\n",
            b"v1 status=768 pid=12 extra\n",
            b"\xff\xfe\n",
            b"\n",
        ] {
            assert!(parse_record(garbage).is_err(), "{:?} parsed", String::from_utf8_lossy(garbage));
        }
    }

    #[test]
    fn files_are_created_read_listed_and_removed() {
        let dir = std::env::temp_dir().join(format!("keel-status-unit-{}", std::process::id()));
        let statuses = StatusDir::new(dir.join("nested"));
        let id = ContainerId("c1".into());
        assert_eq!(statuses.read(&id), StatusFile::Missing);
        let file = statuses.create(&id).unwrap();
        assert!(std::os::fd::AsRawFd::as_raw_fd(&file) > 2);
        assert_eq!(statuses.read(&id), StatusFile::Empty);
        std::fs::write(statuses.path(&id), "v1 status=256 pid=9\n").unwrap();
        assert_eq!(statuses.read(&id), StatusFile::Recorded(Record { raw_status: 256, task_pid: 9 }));
        std::fs::write(statuses.path(&id), "nonsense").unwrap();
        match statuses.read(&id) {
            StatusFile::Garbled(reason) => assert!(reason.contains("garbled"), "{reason}"),
            other => panic!("expected garbled, got {other:?}"),
        }
        assert_eq!(statuses.list().unwrap(), vec![id.clone()]);
        statuses.remove(&id).unwrap();
        statuses.remove(&id).unwrap();
        assert!(statuses.list().unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
