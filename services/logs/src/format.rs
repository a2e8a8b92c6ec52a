//! Response formats, chosen by the `Accept` header as in dcos-log:
//!
//! - `text/event-stream`: Server-Sent Events, each entry `data: <JSON entry>\n\n`, on
//!   `/stream/` preceded by `id: <cursor>\n` (a browser's `EventSource` sends it back as
//!   `Last-Event-ID` when it reconnects);
//! - `application/json`: one JSON entry per line
//!   (`{"fields":{…},"cursor":…,"monotonic_timestamp":…,"realtime_timestamp":…}`);
//! - anything else (`text/plain`, `text/html`, `*/*`, none): journalctl's `short` format,
//!   `Mmm dd HH:MM:SS host identifier[pid]: message`, times in UTC.
//!
//! `Accept` lists are read in order; the first media type named above wins.

use crate::journal::Entry;

/// A response format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// journalctl `short` lines.
    Text,
    /// JSON lines.
    Json,
    /// Server-Sent Events.
    EventStream,
}

impl Format {
    /// The format for an `Accept` header value.
    pub fn from_accept(accept: Option<&str>) -> Format {
        for range in accept.unwrap_or_default().split(',') {
            let media = range.split(';').next().unwrap_or_default().trim();
            match media.to_ascii_lowercase().as_str() {
                "text/event-stream" => return Format::EventStream,
                "application/json" => return Format::Json,
                "text/plain" | "text/html" | "*/*" | "text/*" => return Format::Text,
                _ => {}
            }
        }
        Format::Text
    }

    /// The `Content-Type` of the answer.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain",
            Format::Json => "application/json",
            Format::EventStream => "text/event-stream",
        }
    }

    /// One entry in this format; `with_id`: SSE events carry `id: <cursor>` (streams).
    pub fn entry(self, e: &Entry, with_id: bool) -> String {
        match self {
            Format::Text => short_line(e),
            Format::Json => format!("{}\n", entry_json(e)),
            Format::EventStream if with_id => {
                format!("id: {}\ndata: {}\n\n", e.cursor, entry_json(e))
            }
            Format::EventStream => format!("data: {}\n\n", entry_json(e)),
        }
    }
}

fn entry_json(e: &Entry) -> String {
    // A struct of strings and integers always serialises.
    serde_json::to_string(e).unwrap_or_else(|_| "{}".to_owned())
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// (year, month 1-12, day) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// `Mmm dd HH:MM:SS` (UTC) of a realtime timestamp in µs.
pub fn short_time(realtime_us: u64) -> String {
    let secs = i64::try_from(realtime_us / 1_000_000).unwrap_or(i64::MAX);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (_, month, day) = civil_from_days(days);
    let name = MONTHS
        .get(usize::try_from(month.saturating_sub(1)).unwrap_or(0))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{name} {day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// journalctl's `short` line of an entry.
pub fn short_line(e: &Entry) -> String {
    let host = e.field("_HOSTNAME");
    let ident = [e.field("SYSLOG_IDENTIFIER"), e.field("_COMM"), "unknown"]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or("unknown");
    let pid = [e.field("SYSLOG_PID"), e.field("_PID")]
        .into_iter()
        .find(|s| !s.is_empty());
    let mut line = short_time(e.realtime_timestamp);
    if !host.is_empty() {
        line.push(' ');
        line.push_str(host);
    }
    line.push(' ');
    line.push_str(ident);
    if let Some(p) = pid {
        line.push('[');
        line.push_str(p);
        line.push(']');
    }
    line.push_str(": ");
    line.push_str(e.field("MESSAGE"));
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn entry(fields: &[(&str, &str)]) -> Entry {
        Entry {
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            cursor: "s=1;i=2".into(),
            monotonic_timestamp: 9,
            realtime_timestamp: 1_700_000_000_123_456,
        }
    }

    #[test]
    fn accept_header_picks_the_format() {
        assert_eq!(Format::from_accept(None), Format::Text);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Text);
        assert_eq!(Format::from_accept(Some("text/html")), Format::Text);
        assert_eq!(Format::from_accept(Some("application/json")), Format::Json);
        assert_eq!(
            Format::from_accept(Some("text/event-stream; charset=utf-8")),
            Format::EventStream
        );
        assert_eq!(
            Format::from_accept(Some("image/png, application/json, text/plain")),
            Format::Json
        );
        assert_eq!(Format::from_accept(Some("image/png")), Format::Text);
    }

    #[test]
    fn short_format_is_journalctls() {
        // journalctl --utc prints "Nov 14 22:13:20 node1 basalt-a[7]: hello"
        let e = entry(&[
            ("_HOSTNAME", "node1"),
            ("SYSLOG_IDENTIFIER", "basalt-a"),
            ("_PID", "7"),
            ("MESSAGE", "hello"),
        ]);
        assert_eq!(short_line(&e), "Nov 14 22:13:20 node1 basalt-a[7]: hello\n");
        let bare = entry(&[("_COMM", "sh"), ("MESSAGE", "x")]);
        assert_eq!(short_line(&bare), "Nov 14 22:13:20 sh: x\n");
        assert_eq!(short_time(0), "Jan 01 00:00:00");
        assert_eq!(short_time(951_782_400_000_000), "Feb 29 00:00:00"); // 2000-02-29
    }

    #[test]
    fn json_and_sse_shapes() {
        let e = entry(&[("MESSAGE", "m")]);
        let j = Format::Json.entry(&e, false);
        assert!(j.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(j.trim()).unwrap();
        assert_eq!(v["fields"]["MESSAGE"], "m");
        assert_eq!(v["cursor"], "s=1;i=2");
        assert_eq!(v["monotonic_timestamp"], 9);
        let s = Format::EventStream.entry(&e, true);
        assert!(s.starts_with("id: s=1;i=2\ndata: {"), "{s}");
        assert!(s.ends_with("}\n\n"));
        assert!(Format::EventStream.entry(&e, false).starts_with("data: {"));
    }
}
