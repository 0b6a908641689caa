//! The JSON-lines file sink for `keel::msg` events: one object per line with
//! `timestamp` (RFC 3339, microseconds, UTC), `level`, the event's fields (`message`
//! is `send`, `recv` or `drop`; then `from`, `to`, `kind`, `size`, `id`, `parent`,
//! `reason`) and `target`. Written by hand rather than through a generic JSON
//! formatter: this runs for every message when tracing to a file is on.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Writes each event it sees as a JSON line to a shared buffered file.
pub(crate) struct JsonLines {
    pub file: Arc<Mutex<BufWriter<File>>>,
}

impl<S: Subscriber> Layer<S> for JsonLines {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut line = String::with_capacity(256);
        line.push_str("{\"timestamp\":\"");
        write_rfc3339(&mut line, SystemTime::now());
        line.push_str("\",\"level\":\"");
        line.push_str(event.metadata().level().as_str());
        line.push('"');
        event.record(&mut Fields { out: &mut line });
        line.push_str(",\"target\":\"");
        escape_into(&mut line, event.metadata().target());
        line.push_str("\"}\n");
        let mut file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = file.write_all(line.as_bytes());
    }
}

/// Appends `,"name":value` for each field.
struct Fields<'a> {
    out: &'a mut String,
}

impl Fields<'_> {
    fn key(&mut self, field: &Field) {
        self.out.push_str(",\"");
        escape_into(self.out, field.name());
        self.out.push_str("\":");
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        self.out.push('"');
        escape_into(self.out, value);
        self.out.push('"');
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%x` fields and the message arrive here; both print their text.
        self.key(field);
        self.out.push('"');
        let mut escaper = Escaper { out: self.out };
        let _ = write!(escaper, "{value:?}");
        self.out.push('"');
    }
}

/// A `fmt::Write` that escapes what it is given for a JSON string.
struct Escaper<'a> {
    out: &'a mut String,
}

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.out, s);
        Ok(())
    }
}

/// Appends `s` escaped for a JSON string.
pub(crate) fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Appends `micros` (since the Unix epoch) as `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`.
pub(crate) fn write_rfc3339_micros(out: &mut String, micros: u64) {
    write_rfc3339(out, std::time::UNIX_EPOCH + std::time::Duration::from_micros(micros));
}

/// Appends `time` as `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`.
fn write_rfc3339(out: &mut String, time: SystemTime) {
    let t = crate::clock::UtcTime::from_system(time);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.micros
    );
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let mut out = String::new();
        write_rfc3339(&mut out, UNIX_EPOCH + std::time::Duration::from_micros(1_795_230_218_516_123));
        assert_eq!(out, "2026-11-21T03:03:38.516123Z");
        out.clear();
        write_rfc3339(&mut out, UNIX_EPOCH);
        assert_eq!(out, "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        escape_into(&mut out, "a\"b\\c\nd\u{1}");
        assert_eq!(out, "a\\\"b\\\\c\\nd\\u0001");
        let parsed: String = serde_json::from_str(&format!("\"{out}\"")).unwrap();
        assert_eq!(parsed, "a\"b\\c\nd\u{1}");
    }
}
