//! What a batch run ended with: per command, its attempts, final state and exit
//! code, printed as a table; the run succeeded when every command finished.

use keel_actors::task::TaskState;

/// Longest command shown in the table (longer ones are cut with `...`).
const COMMAND_WIDTH_MAX: usize = 48;

/// One command's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    /// The shell command.
    pub command: String,
    /// Attempts launched.
    pub attempts: u32,
    /// The final state (`None`: the run ended before the job did).
    pub final_state: Option<TaskState>,
    /// The last attempt's exit code, when its command exited.
    pub exit_code: Option<i32>,
}

/// The whole run's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Each command, in input order.
    pub jobs: Vec<JobSummary>,
    /// Why the framework ended early (the master's error), if it did.
    pub aborted: Option<String>,
}

impl Summary {
    /// Whether every command finished and the run was not aborted.
    pub fn succeeded(&self) -> bool {
        self.aborted.is_none() && self.jobs.iter().all(|j| j.final_state == Some(TaskState::Finished))
    }

    /// The process exit code: 0 when every command succeeded, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.succeeded() {
            0
        } else {
            1
        }
    }

    /// The table: command, attempts, final state, exit code.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .jobs
            .iter()
            .map(|job| {
                [
                    shorten(&job.command, COMMAND_WIDTH_MAX),
                    job.attempts.to_string(),
                    job.final_state.map_or("-", TaskState::name).to_string(),
                    job.exit_code.map_or_else(|| "-".to_string(), |code| code.to_string()),
                ]
            })
            .collect();
        let header = ["COMMAND", "ATTEMPTS", "FINAL STATE", "EXIT CODE"].map(str::to_string);
        let mut widths = header.clone().map(|h| h.chars().count());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&rows) {
            let cells: Vec<String> =
                row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        if let Some(reason) = &self.aborted {
            out.push_str(&format!("aborted: {reason}\n"));
        }
        out
    }
}

/// `text` on one line, cut to `max` characters.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let cut: String = one_line.chars().take(max.saturating_sub(3)).collect();
    format!("{cut}...")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_columns_and_shows_missing_values_as_dashes() {
        let summary = Summary {
            jobs: vec![
                JobSummary {
                    command: "true".into(),
                    attempts: 1,
                    final_state: Some(TaskState::Finished),
                    exit_code: Some(0),
                },
                JobSummary {
                    command: "exit 3".into(),
                    attempts: 3,
                    final_state: Some(TaskState::Failed),
                    exit_code: Some(3),
                },
                JobSummary { command: "x".repeat(100), attempts: 0, final_state: None, exit_code: None },
            ],
            aborted: None,
        };
        let table = summary.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("COMMAND"));
        assert!(lines[2].contains("TASK_FAILED") && lines[2].ends_with('3'));
        assert!(lines[3].contains("...") && lines[3].ends_with('-'));
        let column = lines[0].find("ATTEMPTS").expect("header");
        assert_eq!(lines[1].find('1'), Some(column));
        assert_eq!(summary.exit_code(), 1);
    }

    #[test]
    fn shorten_keeps_short_text_and_cuts_long_text() {
        assert_eq!(shorten("echo  hi\n", 10), "echo hi");
        assert_eq!(shorten("abcdefghijkl", 8), "abcde...");
    }
}
