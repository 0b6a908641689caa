//! Starting a container's main process: user lookup, sandbox and log files, the
//! environment, and the spawn itself.

use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::process::Stdio;

use nix::unistd::{Uid, User};
use tokio::process::{Child, Command};

use super::session::{self, Session};
use crate::config::{ContainerConfig, ContainerId, LaunchCommand};
use crate::error::IsolationError;

/// `PATH` given to containers when the containerizer itself has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables copied from the containerizer's own environment, when set.
pub const INHERITED_ENV: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// The environment every container starts from (before the user's and the config's
/// variables): [`INHERITED_ENV`] from this process, `PATH` defaulting to [`DEFAULT_PATH`].
pub(crate) fn base_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = INHERITED_ENV
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|value| ((*name).to_owned(), value)))
        .collect();
    if !env.iter().any(|(name, _)| name == "PATH") {
        env.push(("PATH".to_owned(), DEFAULT_PATH.to_owned()));
    }
    env
}

/// How the main process is separated from the containerizer.
#[derive(Debug)]
pub(crate) enum Mode {
    /// Its own process group; without a waiter the user is switched by the standard
    /// library, which keeps the fast `posix_spawn` path (when nothing else needs a hook).
    ProcessGroup,
    /// Its own session (and process group), and the given `cgroup.procs` files (opened
    /// for writing) joined before `exec`; then the user switch.
    Session {
        /// The container's `cgroup.procs` files.
        cgroup_procs: Vec<File>,
    },
}

/// Spawns the main process of `config` (already validated), separated as `mode` says.
/// With `waiter` (the container's status file, see [`crate::waiter`]) the main process
/// is the waiter and the task its only child; without, the main process is the task.
/// Must be called within a tokio runtime.
pub(crate) fn spawn(
    config: &ContainerConfig,
    base_env: &[(String, String)],
    mode: Mode,
    waiter: Option<File>,
) -> Result<Child, IsolationError> {
    let id = &config.id;
    let user = match &config.user {
        Some(name) => Some(resolve_user(id, name)?),
        None => None,
    };
    let sandbox = &config.sandbox;
    fs::create_dir_all(sandbox).map_err(|error| {
        IsolationError::io(format!("creating sandbox '{}' of container '{id}'", sandbox.display()), error)
    })?;
    let stdout = open_log(id, &sandbox.join("stdout"))?;
    let stderr = open_log(id, &sandbox.join("stderr"))?;
    if let Some(user) = &user {
        if user.uid != Uid::effective() {
            for path in [sandbox.clone(), sandbox.join("stdout"), sandbox.join("stderr")] {
                std::os::unix::fs::chown(&path, Some(user.uid.as_raw()), Some(user.gid.as_raw())).map_err(
                    |error| {
                        IsolationError::io(
                            format!(
                                "giving '{}' to user '{}' for container '{id}'",
                                path.display(),
                                user.name
                            ),
                            error,
                        )
                    },
                )?;
            }
        }
    }

    let (mut command, program) = match &config.command {
        LaunchCommand::Shell(script) => {
            let mut command = Command::new("/bin/sh");
            command.arg("-c").arg(script);
            (command, "/bin/sh")
        }
        LaunchCommand::Exec { program, args } => {
            let mut command = Command::new(program);
            command.args(args);
            (command, program.as_str())
        }
    };
    command.env_clear().envs(base_env.iter().map(|(name, value)| (name, value)));
    if let Some(user) = &user {
        command.env("HOME", &user.dir).env("USER", &user.name).env("LOGNAME", &user.name);
    }
    command
        .envs(&config.env)
        .current_dir(sandbox)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        // Containers outlive the containerizer (agent restarts recover them).
        .kill_on_drop(false);
    let user_ids = user.as_ref().map(|user| (user.uid.as_raw(), user.gid.as_raw()));
    match mode {
        Mode::ProcessGroup => {
            // The main process leads a new process group, so a signal reaches the tree.
            command.process_group(0);
            // Without cgroups, the memory limit becomes an rlimit (inherited by children).
            if let Some(bytes) = config.limits.mem_bytes {
                session::install_data_limit(&mut command, bytes);
            }
            match waiter {
                // The user switch must follow the waiter's fork (the waiter keeps ours,
                // so the task cannot signal it): the hook does both.
                Some(status_file) => session::install(
                    &mut command,
                    Session {
                        new_session: false,
                        cgroup_procs: Vec::new(),
                        waiter: Some(status_file),
                        user: user_ids,
                    },
                ),
                None => {
                    if let Some((uid, gid)) = user_ids {
                        command.uid(uid).gid(gid);
                    }
                }
            }
        }
        // setsid makes the main process lead a new session and process group; the user
        // switch must follow the cgroup join (cgroup.procs is root's) and the waiter's
        // fork, so the hook does all three.
        Mode::Session { cgroup_procs } => session::install(
            &mut command,
            Session { new_session: true, cgroup_procs, waiter, user: user_ids },
        ),
    }
    command.spawn().map_err(|error| {
        IsolationError::io(format!("spawning container '{id}' (program '{program}')"), error)
    })
}

/// Looks a user up in the password database.
fn resolve_user(id: &ContainerId, name: &str) -> Result<User, IsolationError> {
    match User::from_name(name) {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(IsolationError::UnknownUser { id: id.clone(), user: name.to_owned() }),
        Err(errno) => Err(IsolationError::io(
            format!("looking up user '{name}' for container '{id}'"),
            std::io::Error::from(errno),
        )),
    }
}

/// Opens (creating it if needed) a log file for appending.
fn open_log(id: &ContainerId, path: &Path) -> Result<File, IsolationError> {
    OpenOptions::new().create(true).append(true).open(path).map_err(|error| {
        IsolationError::io(format!("opening '{}' for container '{id}'", path.display()), error)
    })
}
