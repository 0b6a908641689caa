//! Short names for narrow places: message kinds without their package
//! (`keel.agent.RunTask` -> `RunTask`, and shorter still when needed), actor labels
//! (`master@:5050`, or `P1`... with a legend), durations and times.

use std::collections::HashSet;

/// The kind without its package: `keel.agent.RunTask` -> `RunTask`.
pub fn short_kind(kind: &str) -> &str {
    kind.rsplit('.').next().unwrap_or(kind)
}

/// Shorter forms of the long kinds, for arrows between neighbouring columns.
const TINY_KINDS: &[(&str, &str)] = &[
    ("StatusUpdateAcknowledgement", "Ack"),
    ("StatusUpdate", "Update"),
    ("FrameworkToExecutorMessage", "FwToExec"),
    ("ExecutorToFrameworkMessage", "ExecToFw"),
    ("CheckpointResources", "Checkpoint"),
    ("ShutdownFramework", "ShutdownFw"),
    ("ShutdownExecutor", "ShutdownExec"),
];

/// The shortest form of a kind: `StatusUpdateAcknowledgement` -> `Ack`, else short.
pub fn tiny_kind(kind: &str) -> &str {
    let short = short_kind(kind);
    TINY_KINDS.iter().find(|(long, _)| *long == short).map_or(short, |(_, tiny)| tiny)
}

/// The kind in at most `width` characters: short, then tiny, then cut.
pub fn fit_kind(kind: &str, width: usize) -> String {
    let short = short_kind(kind);
    if short.chars().count() <= width {
        return short.to_string();
    }
    truncate(tiny_kind(kind), width)
}

/// `text` in at most `width` characters, a cut one ending with `~`.
pub fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('~');
    out
}

/// A duration for people: `850us`, `1.25ms`, `12.5ms`, `3.40s`, `2m05s`.
pub fn duration(us: u64) -> String {
    match us {
        0..=999 => format!("{us}us"),
        1_000..=9_999 => format!("{:.2}ms", us as f64 / 1e3),
        10_000..=999_999 => format!("{:.1}ms", us as f64 / 1e3),
        1_000_000..=59_999_999 => format!("{:.2}s", us as f64 / 1e6),
        _ => format!("{}m{:02}s", us / 60_000_000, us / 1_000_000 % 60),
    }
}

/// A time since the start, in milliseconds with microseconds, in at most 9 characters.
pub fn since_start(us: u64) -> String {
    if us < 100_000_000 {
        format!("{}.{:03}", us / 1_000, us % 1_000)
    } else if us < 10_000_000_000_000 {
        format!("{}s", us / 1_000_000)
    } else {
        "later".to_string()
    }
}

/// Microseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn rfc3339(us: u64) -> String {
    let secs = us / 1_000_000;
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        us % 1_000_000
    )
}

/// The date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The name and `host:port` of a UPID (`name@host:port`).
pub fn split_upid(upid: &str) -> (&str, &str) {
    upid.split_once('@').unwrap_or((upid, ""))
}

/// The `host:port` of a UPID's node.
pub fn node_of(upid: &str) -> &str {
    split_upid(upid).1
}

/// Labels for actors, all in one style, each at most a given width.
#[derive(Debug, Clone)]
pub struct ActorLabels {
    labels: Vec<(String, String)>,
}

impl ActorLabels {
    /// Labels for `actors` (UPIDs), the most telling style that keeps them distinct
    /// within `width`: the UPID, `name@:port`, the name, or `P1`, `P2`...
    pub fn new(actors: &[String], width: usize) -> ActorLabels {
        let styles: [fn(&str) -> String; 3] = [
            |upid| upid.to_string(),
            |upid| {
                let (name, node) = split_upid(upid);
                let port = node.rsplit_once(':').map_or(node, |(_, port)| port);
                format!("{name}@:{port}")
            },
            |upid| split_upid(upid).0.to_string(),
        ];
        for style in styles {
            let labels: Vec<String> = actors.iter().map(|a| style(a)).collect();
            let distinct: HashSet<&String> = labels.iter().collect();
            if distinct.len() == labels.len() && labels.iter().all(|l| l.chars().count() <= width) {
                return ActorLabels { labels: actors.iter().cloned().zip(labels).collect() };
            }
        }
        let labels = actors.iter().enumerate().map(|(i, a)| (a.clone(), format!("P{}", i + 1))).collect();
        ActorLabels { labels }
    }

    /// The label of `actor` (the actor itself if unknown).
    pub fn label<'a>(&'a self, actor: &'a str) -> &'a str {
        self.labels.iter().find(|(full, _)| full == actor).map_or(actor, |(_, label)| label.as_str())
    }

    /// `label = full UPID` for every label that is not the UPID itself.
    pub fn legend(&self) -> Vec<String> {
        self.labels
            .iter()
            .filter(|(full, label)| full != label)
            .map(|(full, label)| format!("{label} = {full}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_shrink_to_fit() {
        assert_eq!(fit_kind("keel.agent.RunTask", 20), "RunTask");
        assert_eq!(fit_kind("keel.common.StatusUpdateAcknowledgement", 12), "Ack");
        assert_eq!(fit_kind("keel.scheduler.Subscribed", 6), "Subsc~");
    }

    #[test]
    fn actor_labels_take_the_most_telling_style_that_fits() {
        let actors = vec!["master@127.0.0.1:5050".to_string(), "agent@127.0.0.1:5051".to_string()];
        assert_eq!(ActorLabels::new(&actors, 30).label("agent@127.0.0.1:5051"), "agent@127.0.0.1:5051");
        let labels = ActorLabels::new(&actors, 14);
        assert_eq!(labels.label("master@127.0.0.1:5050"), "master@:5050");
        assert_eq!(
            labels.legend(),
            vec!["master@:5050 = master@127.0.0.1:5050", "agent@:5051 = agent@127.0.0.1:5051"]
        );
        let agents = vec!["agent@10.0.0.1:5051".to_string(), "agent@10.0.0.2:5051".to_string()];
        assert_eq!(ActorLabels::new(&agents, 12).label("agent@10.0.0.2:5051"), "P2");
    }

    #[test]
    fn times_for_people() {
        assert_eq!(duration(850), "850us");
        assert_eq!(duration(1_250), "1.25ms");
        assert_eq!(duration(3_400_000), "3.40s");
        assert_eq!(duration(125_000_000), "2m05s");
        assert_eq!(since_start(12_345_678), "12345.678");
        assert_eq!(rfc3339(1_795_230_218_516_123), "2026-11-21T03:03:38.516123Z");
    }
}
