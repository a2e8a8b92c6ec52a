//! Prometheus counters (`GET /metrics`, text format 0.0.4).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The endpoints counted (label `endpoint`).
pub const ENDPOINTS: [&str; 5] = ["range", "stream", "fields", "task", "other"];
/// Status classes (label `code`).
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The service's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: [[AtomicU64; 5]; 5],
    entries_sent: AtomicU64,
    journal_errors: AtomicU64,
    streams_active: AtomicU64,
    streams_total: AtomicU64,
}

/// Decrements the active-stream gauge when the response body is dropped (the stream
/// ended or the client went away).
#[derive(Debug)]
pub struct StreamGuard(Arc<Metrics>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.streams_active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Counts an answer.
    pub fn request(&self, endpoint: &str, status: u16) {
        let e = ENDPOINTS
            .iter()
            .position(|x| *x == endpoint)
            .unwrap_or(ENDPOINTS.len() - 1);
        let c = usize::from((status / 100).clamp(1, 5) - 1);
        if let Some(counter) = self.requests.get(e).and_then(|r| r.get(c)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an entry sent.
    pub fn entry_sent(&self) {
        self.entries_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a journal read that failed.
    pub fn journal_error(&self) {
        self.journal_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A response body that streams entries starts.
    pub fn stream_started(self: &Arc<Self>) -> StreamGuard {
        self.streams_active.fetch_add(1, Ordering::Relaxed);
        self.streams_total.fetch_add(1, Ordering::Relaxed);
        StreamGuard(self.clone())
    }

    /// Response bodies streaming now.
    pub fn streams_active(&self) -> u64 {
        self.streams_active.load(Ordering::Relaxed)
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP basalt_logs_requests_total Answers by endpoint and status class.\n# TYPE basalt_logs_requests_total counter"
        );
        for (e, row) in ENDPOINTS.iter().zip(&self.requests) {
            for (c, n) in CLASSES.iter().zip(row) {
                let _ = writeln!(
                    s,
                    "basalt_logs_requests_total{{endpoint=\"{e}\",code=\"{c}\"}} {}",
                    n.load(Ordering::Relaxed)
                );
            }
        }
        for (name, help, kind, v) in [
            (
                "basalt_logs_entries_sent_total",
                "Journal entries sent to clients.",
                "counter",
                &self.entries_sent,
            ),
            (
                "basalt_logs_journal_errors_total",
                "Journal reads (journalctl) that failed.",
                "counter",
                &self.journal_errors,
            ),
            (
                "basalt_logs_streams_active",
                "Response bodies streaming entries now (journalctl children alive).",
                "gauge",
                &self.streams_active,
            ),
            (
                "basalt_logs_streams_total",
                "Response bodies that streamed entries.",
                "counter",
                &self.streams_total,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        s
    }
}
