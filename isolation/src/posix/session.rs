//! The steps between fork and exec, and the crate's only `unsafe` code: a new session
//! (and so a new process group), joining the container's cgroups, forking the waiter
//! (see [`crate::waiter`]), then dropping to the container's user; and the POSIX
//! fallback's data limit. Done in the child before `exec`, so no process of the
//! container ever runs outside its cgroups.
//!
//! Everything here runs in the forked child of a possibly multi-threaded parent, where
//! only async-signal-safe calls are allowed: raw system calls on data prepared before
//! the fork, no allocation, no locks.

use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, RawFd};

use nix::errno::Errno;
use nix::libc;
use nix::unistd::{getpid, getuid, setgid, setgroups, setsid, setuid, Gid, Uid};
use tokio::process::Command;

use super::maps;
use crate::waiter::{format_i32, format_record, Record, RECORD_MAX_BYTES, WAITER_NAME};

/// The waiter's exit code when it could not wait for the task (cannot happen: the task
/// is its only child and nothing else reaps it). No record is written then.
const WAITER_FAILED_EXIT: i32 = 127;

/// What the child does before `exec`.
#[derive(Debug)]
pub(crate) struct Session {
    /// Lead a new session (cgroup containers). POSIX containers get their own process
    /// group from the standard library instead.
    pub new_session: bool,
    /// The container's `cgroup.procs` files, opened for writing (close-on-exec) by the
    /// parent; the child writes its pid to each.
    pub cgroup_procs: Vec<File>,
    /// The status file (opened for writing, close-on-exec, descriptor above 2): fork a
    /// waiter that records the task's end in it. `None`: the child execs the task itself.
    pub waiter: Option<File>,
    /// Uid and primary gid to switch to after joining the cgroups (joining needs root
    /// on cgroup v1) and after forking the waiter (which keeps the containerizer's
    /// user, so the task cannot signal it); supplementary groups are dropped when
    /// switching from root.
    pub user: Option<(u32, u32)>,
}

/// Makes `command`'s child run [`Session::enter`] between fork and exec; a failure there
/// fails the spawn with that error.
#[allow(unsafe_code)]
pub(crate) fn install(command: &mut Command, session: Session) {
    // SAFETY: the closure runs in the forked child of a possibly multi-threaded parent,
    // where only async-signal-safe operations are allowed. `Session::enter` only makes
    // raw system calls (setsid, getpid, write, the waiter's fork and everything the
    // waiter does, setgroups, setgid, setuid) on data prepared before the fork: the
    // files are already open, numbers are formatted into stack buffers, `setgroups(&[])`
    // passes an empty slice, and errors become `io::Error::from_raw_os_error`. Nothing
    // allocates, locks or touches the parent's other threads' state.
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
    /// Runs in the child: new session, join the cgroups, fork the waiter (which never
    /// returns from here), switch user.
    fn enter(&self) -> io::Result<()> {
        if self.new_session {
            setsid()?;
        }
        let mut buffer = [0u8; 11];
        let pid = format_i32(getpid().as_raw(), &mut buffer);
        for file in &self.cgroup_procs {
            if nix::unistd::write(file, pid)? != pid.len() {
                return Err(Errno::EIO.into());
            }
        }
        if let Some(status_file) = &self.waiter {
            fork_waiter(status_file.as_raw_fd())?;
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

/// Forks the task off this child and makes this child the waiter. Returns only in the
/// task (the new process), with the signal mask and `SIGCHLD` disposition this child
/// had; the waiter never returns (see [`wait_and_record`]).
///
/// Every signal is blocked across the fork, so the waiter is immune from its first
/// instruction: a signal sent to the container (its process group or cgroup) reaches
/// the task and stays pending in the waiter. `SIGCHLD` is set to its default action,
/// since an ignored `SIGCHLD` would reap the task before the waiter could.
#[allow(unsafe_code)]
fn fork_waiter(status_fd: RawFd) -> io::Result<()> {
    // SAFETY: only raw system calls (rt_sigprocmask, rt_sigaction, clone) on stack
    // values; `sigfillset` only writes the given stack set. The fork
    // is the raw `clone` system call with just SIGCHLD, so no `pthread_atfork` handler
    // and no libc lock runs in this already-forked child. The new process continues
    // into the standard library's exec path, as this child would have.
    unsafe {
        let mut all = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigfillset(all.as_mut_ptr());
        let mut previous_mask = MaybeUninit::<libc::sigset_t>::uninit();
        if libc::sigprocmask(libc::SIG_SETMASK, all.as_ptr(), previous_mask.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut default_action: libc::sigaction = std::mem::zeroed();
        default_action.sa_sigaction = libc::SIG_DFL;
        let mut previous_chld = MaybeUninit::<libc::sigaction>::uninit();
        if libc::sigaction(libc::SIGCHLD, &default_action, previous_chld.as_mut_ptr()) != 0 {
            let error = io::Error::last_os_error();
            libc::sigprocmask(libc::SIG_SETMASK, previous_mask.as_ptr(), std::ptr::null_mut());
            return Err(error);
        }
        let restore = || {
            libc::sigaction(libc::SIGCHLD, previous_chld.as_ptr(), std::ptr::null_mut());
            libc::sigprocmask(libc::SIG_SETMASK, previous_mask.as_ptr(), std::ptr::null_mut());
        };
        match raw_fork() {
            -1 => {
                let error = io::Error::last_os_error();
                restore();
                Err(error)
            }
            0 => {
                restore();
                Ok(())
            }
            task => wait_and_record(status_fd, task),
        }
    }
}

/// `fork` as the bare system call.
#[allow(unsafe_code)]
unsafe fn raw_fork() -> libc::pid_t {
    // SAFETY: clone with only the exit signal and no stack is fork(2); the caller
    // handles both returns.
    #[cfg(not(target_arch = "s390x"))]
    let pid = unsafe { sys(libc::SYS_clone, [libc::SIGCHLD.into(), 0, 0, 0, 0]) };
    // s390x takes the stack first.
    #[cfg(target_arch = "s390x")]
    let pid = unsafe { sys(libc::SYS_clone, [0, libc::SIGCHLD.into(), 0, 0, 0]) };
    pid as libc::pid_t
}

/// `syscall(2)` with every argument a machine word: a variadic `int` would leave the
/// upper half of its register undefined, and the kernel reads whole words (unused
/// trailing arguments are ignored).
#[allow(unsafe_code)]
unsafe fn sys(number: libc::c_long, args: [libc::c_long; 5]) -> libc::c_long {
    // SAFETY: the caller's: `number` with `args` must be a valid system call.
    unsafe { libc::syscall(number, args[0], args[1], args[2], args[3], args[4]) }
}

/// The waiter: closes every descriptor but the standard ones and the status file (above
/// all the standard library's exec-error socket, so `spawn` returns as soon as the task
/// has exec'd), gives back its copy of the containerizer's memory (at once, so that the
/// containerizer's own writes stop copying pages for it), names itself, waits for
/// `task`, writes its wait status to `status_fd` and exits the way the task did.
#[allow(unsafe_code)]
unsafe fn wait_and_record(status_fd: RawFd, task: libc::pid_t) -> ! {
    // SAFETY: only async-signal-safe system calls on stack values and static C strings:
    // close_range (or close) through libc's thin wrappers, then, from
    // `discard_inherited_memory` on, only through `libc::syscall`, since the memory
    // libc's wrappers might read may be gone. The record is formatted into a stack
    // buffer. All signals are blocked (see `fork_waiter`).
    unsafe {
        close_all_but(status_fd);
        discard_inherited_memory();
        sys(libc::SYS_prctl, [libc::PR_SET_NAME.into(), WAITER_NAME.as_ptr() as libc::c_long, 0, 0, 0]);
        // Out of the OOM killer's reach, so an OOM kill in the container hits the task.
        // Best effort: lowering the score needs CAP_SYS_RESOURCE (and the waiter, having
        // given back its memory, is small anyway).
        let path = c"/proc/self/oom_score_adj".as_ptr() as libc::c_long;
        let flags = (libc::O_WRONLY | libc::O_CLOEXEC).into();
        let score = sys(libc::SYS_openat, [libc::AT_FDCWD.into(), path, flags, 0, 0]);
        if score >= 0 {
            sys(libc::SYS_write, [score, b"-1000".as_ptr() as libc::c_long, 5, 0, 0]);
            sys(libc::SYS_close, [score, 0, 0, 0, 0]);
        }

        let mut raw_status: libc::c_int = 0;
        loop {
            let status_address = std::ptr::addr_of_mut!(raw_status) as libc::c_long;
            let reaped = sys(libc::SYS_wait4, [task.into(), status_address, 0, 0, 0]);
            if reaped == libc::c_long::from(task) {
                break;
            }
            if reaped == -1 && Errno::last() == Errno::EINTR {
                continue;
            }
            sys(libc::SYS_exit_group, [WAITER_FAILED_EXIT.into(), 0, 0, 0, 0]);
        }
        let mut buffer = [0u8; RECORD_MAX_BYTES];
        let record = format_record(Record { raw_status, task_pid: task }, &mut buffer);
        let mut written = 0;
        while written < record.len() {
            let rest = &record[written..];
            let count = sys(
                libc::SYS_write,
                [status_fd.into(), rest.as_ptr() as libc::c_long, rest.len() as libc::c_long, 0, 0],
            );
            if count > 0 {
                written += count as usize;
            } else if !(count == -1 && Errno::last() == Errno::EINTR) {
                break; // disk full or gone: the reaper falls back on our own status
            }
        }
        mirror(raw_status)
    }
}

/// How much of the stack and of the thread area the waiter keeps, below and above the
/// stack pointer and the thread pointer (see [`maps`]): generous, since the rest reads
/// back as zeros.
const KEPT_AROUND_BYTES: usize = 256 << 10;

/// Gives back the waiter's copy-on-write share of the containerizer's private
/// anonymous memory (heap, arenas, other threads' stacks, see [`maps`]) with
/// `MADV_DONTNEED`, so that the task's waiter pins none of the agent's pages and looks
/// as small as it is to the OOM killer. Kept: windows around the stack pointer and the
/// thread pointer (thread control block, static TLS, rseq area), and the `.bss` of the
/// executable and shared objects (anonymous mappings right after a file mapping), which
/// libc's string functions may read. Dropped pages read back as zeros, so from here on
/// the waiter runs only its own code on its stack and makes raw system calls.
#[allow(unsafe_code)]
unsafe fn discard_inherited_memory() {
    // SAFETY: openat, read, madvise and close through `libc::syscall` on a stack buffer;
    // `pthread_self` reads the thread pointer; `sysconf` reads a libc constant (before
    // anything is dropped). Nothing dropped is read afterwards: see the callers.
    unsafe {
        let page = match libc::sysconf(libc::_SC_PAGESIZE) {
            size if size > 0 && (size as usize).is_power_of_two() => size as usize,
            _ => return,
        };
        let marker = 0u8;
        let stack = std::ptr::addr_of!(marker) as usize;
        let thread = libc::pthread_self() as usize;
        let keep = [
            maps::window(stack, KEPT_AROUND_BYTES, KEPT_AROUND_BYTES, page),
            maps::window(thread, KEPT_AROUND_BYTES, KEPT_AROUND_BYTES, page),
        ];
        let path = c"/proc/self/maps".as_ptr() as libc::c_long;
        let fd = sys(
            libc::SYS_openat,
            [libc::AT_FDCWD.into(), path, (libc::O_RDONLY | libc::O_CLOEXEC).into(), 0, 0],
        );
        if fd < 0 {
            return;
        }
        let mut buffer = [0u8; 8192];
        let mut filled = 0;
        let mut previous_end = 0usize;
        let mut previous_file_backed = false;
        loop {
            let free = &mut buffer[filled..];
            let count = sys(
                libc::SYS_read,
                [fd, free.as_mut_ptr() as libc::c_long, free.len() as libc::c_long, 0, 0],
            );
            if count <= 0 {
                break;
            }
            filled += count as usize;
            let mut consumed = 0;
            while let Some(length) = buffer[consumed..filled].iter().position(|byte| *byte == b'\n') {
                if let Some(mapping) = maps::parse_line(&buffer[consumed..consumed + length]) {
                    let bss = previous_file_backed && mapping.start == previous_end;
                    if mapping.private_anonymous && !bss {
                        for (start, end) in maps::without(mapping.start, mapping.end, keep) {
                            if start < end {
                                let range = [start as libc::c_long, (end - start) as libc::c_long];
                                sys(
                                    libc::SYS_madvise,
                                    [range[0], range[1], libc::MADV_DONTNEED.into(), 0, 0],
                                );
                            }
                        }
                    }
                    previous_end = mapping.end;
                    previous_file_backed = mapping.file_backed;
                }
                consumed += length + 1;
            }
            if consumed == 0 && filled == buffer.len() {
                filled = 0; // a line longer than the buffer: cannot be one of ours
                continue;
            }
            buffer.copy_within(consumed..filled, 0);
            filled -= consumed;
        }
        sys(libc::SYS_close, [fd, 0, 0, 0, 0]);
    }
}

/// Exits the way the wait status `raw_status` says the task did: the same exit code, or
/// the same signal (its action reset to the default first, so that no handler of the
/// containerizer's runs; no core dump of the waiter). Raw system calls only (see
/// [`discard_inherited_memory`]).
#[allow(unsafe_code)]
unsafe fn mirror(raw_status: libc::c_int) -> ! {
    // SAFETY: prctl, rt_sigaction, rt_sigprocmask, getpid, kill and exit_group through
    // `libc::syscall` on stack values. The kernel's signal set is one 64-bit word (on
    // every Linux architecture but MIPS, where these two calls fail and the exit code
    // below is used); an all-zero kernel `sigaction` is the default action with no
    // flags and an empty mask whatever the architecture's field order.
    unsafe {
        if libc::WIFEXITED(raw_status) {
            sys(libc::SYS_exit_group, [libc::WEXITSTATUS(raw_status).into(), 0, 0, 0, 0]);
        }
        let signal = libc::WTERMSIG(raw_status);
        if libc::WIFSIGNALED(raw_status) && (1..=64).contains(&signal) {
            sys(libc::SYS_prctl, [libc::PR_SET_DUMPABLE.into(), 0, 0, 0, 0]);
            let default_action = [0u64; 4];
            let action = std::ptr::addr_of!(default_action) as libc::c_long;
            sys(libc::SYS_rt_sigaction, [signal.into(), action, 0, 8, 0]);
            let pid = sys(libc::SYS_getpid, [0; 5]);
            sys(libc::SYS_kill, [pid, signal.into(), 0, 0, 0]);
            let only: u64 = 1 << (signal - 1);
            let set = std::ptr::addr_of!(only) as libc::c_long;
            sys(libc::SYS_rt_sigprocmask, [libc::SIG_UNBLOCK.into(), set, 0, 8, 0]);
        }
        // Still alive: a signal that does not terminate, which cannot have ended the task.
        sys(libc::SYS_exit_group, [(128 + (signal & 0x7f)).into(), 0, 0, 0, 0]);
        libc::_exit(128 + (signal & 0x7f))
    }
}

/// Closes every descriptor from 3 up except `keep` (which is above 2).
#[allow(unsafe_code)]
unsafe fn close_all_but(keep: RawFd) {
    // SAFETY: close_range and close on descriptor numbers; getrlimit writes a stack
    // struct. Closing descriptors the standard library's child code still holds is
    // fine: the waiter never returns to it.
    unsafe {
        let keep = keep as libc::c_uint;
        let close_range = |first: libc::c_uint, last: libc::c_uint| {
            sys(libc::SYS_close_range, [first.into(), last.into(), 0, 0, 0])
        };
        let below = if keep > 3 { close_range(3, keep - 1) } else { 0 };
        if below == 0 && close_range(keep + 1, libc::c_uint::MAX) == 0 {
            return;
        }
        // Kernels before 5.9: close one by one up to the descriptor limit.
        let mut limit = MaybeUninit::<libc::rlimit>::uninit();
        let last = if libc::getrlimit(libc::RLIMIT_NOFILE, limit.as_mut_ptr()) == 0 {
            limit.assume_init().rlim_cur.min(1 << 20) as libc::c_uint
        } else {
            1024
        };
        for fd in 3..last {
            if fd != keep {
                libc::close(fd as libc::c_int);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_formatted_in_decimal() {
        let mut buffer = [0u8; 11];
        assert_eq!(format_i32(0, &mut buffer), b"0");
        assert_eq!(format_i32(7, &mut buffer), b"7");
        assert_eq!(format_i32(4194304, &mut buffer), b"4194304");
        assert_eq!(format_i32(i32::MAX, &mut buffer), b"2147483647");
        assert_eq!(format_i32(i32::MIN, &mut buffer), b"-2147483648");
    }
}
