//! Prometheus counters, served as text on the internal metrics listener.

use crate::routes::Route;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// Counters for one route table.
#[derive(Debug)]
pub struct Metrics {
    prefixes: Vec<&'static str>,
    /// Per route: requests by status class (1xx..5xx).
    by_route: Vec<[AtomicU64; 5]>,
    unmatched: AtomicU64,
    unauthorized: AtomicU64,
    forbidden: AtomicU64,
    upstream_errors: AtomicU64,
    in_flight: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    /// Counters for `table`.
    pub fn new(table: &[Route]) -> Metrics {
        Metrics {
            prefixes: table.iter().map(|r| r.prefix).collect(),
            by_route: table.iter().map(|_| Default::default()).collect(),
            unmatched: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
            forbidden: AtomicU64::new(0),
            upstream_errors: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            buckets: Default::default(),
            latency_count: AtomicU64::new(0),
            latency_sum_us: AtomicU64::new(0),
        }
    }

    pub(crate) fn start(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a finished request (time to response headers).
    pub(crate) fn finish(&self, route: Option<usize>, status: u16, took: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        match route.and_then(|i| self.by_route.get(i)) {
            Some(classes) => {
                let class = usize::from((status / 100).clamp(1, 5) - 1);
                if let Some(c) = classes.get(class) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.unmatched.fetch_add(1, Ordering::Relaxed);
            }
        }
        match status {
            401 => {
                self.unauthorized.fetch_add(1, Ordering::Relaxed);
            }
            403 => {
                self.forbidden.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        let secs = took.as_secs_f64();
        for (b, le) in self.buckets.iter().zip(BUCKETS) {
            if secs <= le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn upstream_error(&self) {
        self.upstream_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "# HELP basalt_gateway_requests_total Requests by route prefix and status class.\n# TYPE basalt_gateway_requests_total counter"
        );
        for (prefix, classes) in self.prefixes.iter().zip(&self.by_route) {
            for (i, c) in classes.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "basalt_gateway_requests_total{{route=\"{prefix}\",code=\"{}xx\"}} {}",
                    i + 1,
                    g(c)
                );
            }
        }
        let _ = writeln!(
            s,
            "basalt_gateway_requests_total{{route=\"\",code=\"4xx\"}} {}",
            g(&self.unmatched)
        );
        for (name, help, v) in [
            (
                "basalt_gateway_unauthorized_total",
                "401 answers (missing, invalid, expired or revoked token).",
                &self.unauthorized,
            ),
            (
                "basalt_gateway_forbidden_total",
                "403 answers (permission missing).",
                &self.forbidden,
            ),
            (
                "basalt_gateway_upstream_errors_total",
                "Requests whose upstream could not be reached or resolved.",
                &self.upstream_errors,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                g(v)
            );
        }
        let _ = writeln!(
            s,
            "# HELP basalt_gateway_in_flight Requests waiting for response headers.\n# TYPE basalt_gateway_in_flight gauge\nbasalt_gateway_in_flight {}",
            g(&self.in_flight)
        );
        let _ = writeln!(
            s,
            "# HELP basalt_gateway_response_seconds Time to response headers.\n# TYPE basalt_gateway_response_seconds histogram"
        );
        for (b, le) in self.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                s,
                "basalt_gateway_response_seconds_bucket{{le=\"{le}\"}} {}",
                g(b)
            );
        }
        let count = g(&self.latency_count);
        let _ = writeln!(
            s,
            "basalt_gateway_response_seconds_bucket{{le=\"+Inf\"}} {count}\nbasalt_gateway_response_seconds_sum {}\nbasalt_gateway_response_seconds_count {count}",
            g(&self.latency_sum_us) as f64 / 1e6
        );
        s
    }
}
