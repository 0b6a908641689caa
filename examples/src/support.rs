//! What the examples share: the status line they print, and waiting for a driver
//! with a bound on how long subscribing may take (a wrong or dead master is an
//! error, not a hang).

use std::time::Duration;

use keel_actors::scheduler::{DriverStatus, Scheduler, SchedulerHandle, NO_MASTER_ANSWERED};
use keel_actors::task::TaskStatus;

/// How long a framework waits for its subscription by default.
pub const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

/// `LABEL: TASK_STATE (message)`, with a sandbox message shown as its stdout path.
pub fn status_line(label: &str, status: &TaskStatus) -> String {
    let mut line = format!("{label}: {}", status.state);
    if let Some(message) = &status.message {
        match message.strip_prefix("sandbox: ") {
            Some(sandbox) => line.push_str(&format!(" (stdout: {sandbox}/stdout)")),
            None => line.push_str(&format!(" ({message})")),
        }
    }
    line
}

/// Waits until the driver ends. The driver gives up by itself when no master
/// answered its subscription within `SchedulerConfig::subscribe_timeout` (the callers
/// set it); that is an error, not a result.
pub async fn wait_for_driver<S: Scheduler>(
    handle: &SchedulerHandle<S>,
    master: &impl std::fmt::Display,
    subscribe_timeout: Duration,
) -> anyhow::Result<DriverStatus> {
    match handle.wait().await {
        DriverStatus::Aborted(reason) if reason.starts_with(NO_MASTER_ANSWERED) => anyhow::bail!(
            "no answer from the master {master} within {} s: is it running at that address?",
            subscribe_timeout.as_secs_f64()
        ),
        status => Ok(status),
    }
}

/// A positive, finite number of seconds given for `flag`, as a duration.
pub fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    if value.is_finite() && value > 0.0 && value <= 86_400.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        anyhow::bail!("{flag} must be a number of seconds between 0 and 86400, not {value}")
    }
}

/// The shell of an example binary: tracing (`KEEL_TRACE` for the message file,
/// warnings on stderr), then `run`; an error prints `PROGRAM: error: ...` and exits 2.
pub fn cli_main(
    program: &str,
    run: impl FnOnce() -> anyhow::Result<std::process::ExitCode>,
) -> std::process::ExitCode {
    let trace_file = std::env::var_os("KEEL_TRACE").map(std::path::PathBuf::from);
    let result = keel_kernel::trace::init_with_default(trace_file.as_deref(), "warn")
        .map_err(anyhow::Error::from)
        .and_then(|_trace| run());
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{program}: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
