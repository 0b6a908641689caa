//! The step between fork and exec for cgroup containers: a new session (and so a new
//! process group), joining the container's cgroups, then dropping to the container's
//! user. Done in the child before `exec`, so no process of the container ever runs
//! outside its cgroups.

use std::fs::File;
use std::io;

use nix::errno::Errno;
use nix::unistd::{getpid, getuid, setgid, setgroups, setsid, setuid, Gid, Uid};
use tokio::process::Command;

/// What the child does before `exec`.
#[derive(Debug)]
pub(crate) struct Session {
    /// The container's `cgroup.procs` files, opened for writing (close-on-exec) by the
    /// parent; the child writes its pid to each.
    pub cgroup_procs: Vec<File>,
    /// Uid and primary gid to switch to after joining the cgroups (joining needs root
    /// on cgroup v1); supplementary groups are dropped when switching from root.
    pub user: Option<(u32, u32)>,
}

/// Makes `command`'s child run [`Session::enter`] between fork and exec; a failure there
/// fails the spawn with that error.
#[allow(unsafe_code)]
pub(crate) fn install(command: &mut Command, session: Session) {
    // SAFETY: the closure runs in the forked child of a possibly multi-threaded parent,
    // where only async-signal-safe operations are allowed. `Session::enter` only makes
    // raw system calls (setsid, getpid, write, setgroups, setgid, setuid) on data
    // prepared before the fork: the files are already open, the pid is formatted into
    // a stack buffer, `setgroups(&[])` passes an empty slice, and errors become
    // `io::Error::from_raw_os_error`. Nothing allocates, locks or touches the parent's
    // other threads' state.
    unsafe {
        command.pre_exec(move || session.enter());
    }
}

/// Makes `command`'s child lower its data-segment limit (`RLIMIT_DATA`, which since
/// Linux 4.7 also covers private anonymous mappings: the heap) before `exec`: the POSIX
/// fallback's memory limit, enforced as allocation failures instead of an OOM kill.
#[allow(unsafe_code)]
pub(crate) fn install_data_limit(command: &mut Command, bytes: u64) {
    // SAFETY: runs in the forked child before exec; it only makes the setrlimit system
    // call with a value computed before the fork: no allocation, no locks.
    unsafe {
        command.pre_exec(move || {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_DATA, bytes, bytes)
                .map_err(io::Error::from)
        });
    }
}

impl Session {
    /// Runs in the child: new session, join the cgroups, switch user.
    fn enter(&self) -> io::Result<()> {
        setsid()?;
        let mut buffer = [0u8; 20];
        let pid = format_pid(getpid().as_raw(), &mut buffer);
        for file in &self.cgroup_procs {
            if nix::unistd::write(file, pid)? != pid.len() {
                return Err(Errno::EIO.into());
            }
        }
        if let Some((uid, gid)) = self.user {
            if getuid().is_root() {
                setgroups(&[])?;
            }
            setgid(Gid::from_raw(gid))?;
            setuid(Uid::from_raw(uid))?;
        }
        Ok(())
    }
}

/// Writes `pid` in decimal at the end of `buffer` and returns those bytes; no allocation.
fn format_pid(pid: i32, buffer: &mut [u8; 20]) -> &[u8] {
    let mut value = pid.unsigned_abs();
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    &buffer[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_formatted_in_decimal() {
        let mut buffer = [0u8; 20];
        assert_eq!(format_pid(0, &mut buffer), b"0");
        assert_eq!(format_pid(7, &mut buffer), b"7");
        assert_eq!(format_pid(4194304, &mut buffer), b"4194304");
        assert_eq!(format_pid(i32::MAX, &mut buffer), b"2147483647");
    }
}
