//! The `keel` subcommands' logic (the binary only parses flags and calls these).

pub mod execute;
pub mod http;
pub mod logs;
pub mod ps;
pub mod sim;
pub mod trace;
pub mod why;

use keel_kernel::Upid;

/// A master given as `HOST:PORT` (or a full `master@HOST:PORT`).
pub fn master_upid(text: &str) -> anyhow::Result<Upid> {
    let text = text.trim().trim_start_matches("http://").trim_end_matches('/');
    let full =
        if text.contains('@') { text.to_string() } else { format!("{}@{text}", crate::master::MASTER_NAME) };
    full.parse().map_err(|e| anyhow::anyhow!("invalid master address {text:?}: {e}"))
}
