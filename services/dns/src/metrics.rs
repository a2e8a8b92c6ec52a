//! Lock-free counters behind `/metrics` (Prometheus text format).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

const TYPES: [&str; 10] = [
    "A", "AAAA", "SRV", "SOA", "NS", "ANY", "PTR", "MX", "TXT", "other",
];
const RCODES: [&str; 7] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other",
];

fn type_index(t: RecordType) -> usize {
    match t {
        RecordType::A => 0,
        RecordType::AAAA => 1,
        RecordType::SRV => 2,
        RecordType::SOA => 3,
        RecordType::NS => 4,
        RecordType::ANY => 5,
        RecordType::PTR => 6,
        RecordType::MX => 7,
        RecordType::TXT => 8,
        _ => 9,
    }
}

fn rcode_index(r: ResponseCode) -> usize {
    match r {
        ResponseCode::NoError => 0,
        ResponseCode::FormErr => 1,
        ResponseCode::ServFail => 2,
        ResponseCode::NXDomain => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::Refused => 5,
        _ => 6,
    }
}

/// The service's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    queries: [[AtomicU64; 7]; 10],
    forwarded_ok: AtomicU64,
    forwarded_failed: AtomicU64,
    state_updates: AtomicU64,
    state_failures: AtomicU64,
    records: AtomicU64,
}

impl Metrics {
    /// Counts one answered query.
    pub fn query(&self, qtype: RecordType, rcode: ResponseCode) {
        self.queries[type_index(qtype)][rcode_index(rcode)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one forwarded query.
    pub fn forwarded(&self, ok: bool) {
        if ok {
            self.forwarded_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.forwarded_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one applied state and records the new record count.
    pub fn state_applied(&self, records: usize) {
        self.state_updates.fetch_add(1, Ordering::Relaxed);
        self.records.store(records as u64, Ordering::Relaxed);
    }

    /// Counts one state that could not be turned into records.
    pub fn state_failed(&self) {
        self.state_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The number of applied states.
    pub fn state_updates(&self) -> u64 {
        self.state_updates.load(Ordering::Relaxed)
    }

    /// Queries counted for `qtype`/`rcode`.
    pub fn queries(&self, qtype: RecordType, rcode: ResponseCode) -> u64 {
        self.queries[type_index(qtype)][rcode_index(rcode)].load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP basalt_dns_queries_total DNS queries answered, by query type and response code.\n");
        out.push_str("# TYPE basalt_dns_queries_total counter\n");
        for (ti, t) in TYPES.iter().enumerate() {
            for (ri, r) in RCODES.iter().enumerate() {
                let v = self.queries[ti][ri].load(Ordering::Relaxed);
                if v > 0 {
                    let _ = writeln!(
                        out,
                        "basalt_dns_queries_total{{type=\"{t}\",rcode=\"{r}\"}} {v}"
                    );
                }
            }
        }
        out.push_str("# HELP basalt_dns_forwarded_total Queries forwarded upstream, by result.\n");
        out.push_str("# TYPE basalt_dns_forwarded_total counter\n");
        let _ = writeln!(
            out,
            "basalt_dns_forwarded_total{{result=\"ok\"}} {}",
            self.forwarded_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "basalt_dns_forwarded_total{{result=\"failed\"}} {}",
            self.forwarded_failed.load(Ordering::Relaxed)
        );
        out.push_str("# HELP basalt_dns_records Resource records currently served.\n");
        out.push_str("# TYPE basalt_dns_records gauge\n");
        let _ = writeln!(
            out,
            "basalt_dns_records {}",
            self.records.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP basalt_dns_state_updates_total Master states turned into a new record set.\n",
        );
        out.push_str("# TYPE basalt_dns_state_updates_total counter\n");
        let _ = writeln!(
            out,
            "basalt_dns_state_updates_total {}",
            self.state_updates.load(Ordering::Relaxed)
        );
        out.push_str("# HELP basalt_dns_state_failures_total Master states rejected (previous records kept).\n");
        out.push_str("# TYPE basalt_dns_state_failures_total counter\n");
        let _ = writeln!(
            out,
            "basalt_dns_state_failures_total {}",
            self.state_failures.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.query(RecordType::A, ResponseCode::NoError);
        m.query(RecordType::A, ResponseCode::NoError);
        m.query(RecordType::CAA, ResponseCode::NXDomain);
        m.state_applied(42);
        let text = m.render();
        assert!(text.contains("basalt_dns_queries_total{type=\"A\",rcode=\"NOERROR\"} 2\n"));
        assert!(text.contains("basalt_dns_queries_total{type=\"other\",rcode=\"NXDOMAIN\"} 1\n"));
        assert!(text.contains("basalt_dns_records 42\n"));
        assert!(text.contains("basalt_dns_state_updates_total 1\n"));
        assert_eq!(m.queries(RecordType::A, ResponseCode::NoError), 2);
    }
}
