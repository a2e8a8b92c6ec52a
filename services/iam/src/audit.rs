//! The audit log: every login success, failure and lockout, every token revocation and
//! every permission denial is emitted as a `tracing` event with target
//! `basalt_iam::audit` and structured fields (`event`, `uid`, `source`, `detail`), and
//! kept in an in-process ring buffer readable by superusers at `GET /acs/api/v1/audit`.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;

/// The tracing target of audit events.
pub const AUDIT_TARGET: &str = "basalt_iam::audit";

/// How many records the ring buffer keeps.
pub const AUDIT_CAPACITY: usize = 1024;

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Unix milliseconds.
    pub time_ms: u64,
    /// `login_success`, `login_failure`, `login_locked`, `lockout`, `token_revoked`,
    /// `permission_denied`, `superuser_bootstrap`.
    pub event: &'static str,
    /// The account concerned.
    pub uid: String,
    /// Client address, when known.
    pub source: String,
    /// Extra detail (resource/action, failure reason).
    pub detail: String,
}

/// The ring buffer plus the tracing emitter.
#[derive(Debug, Default)]
pub struct AuditLog {
    records: Mutex<VecDeque<AuditRecord>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl AuditLog {
    /// Records and emits one event.
    pub fn record(&self, event: &'static str, uid: &str, source: &str, detail: &str) {
        tracing::info!(target: AUDIT_TARGET, event, uid, source, detail, "audit");
        let rec = AuditRecord {
            time_ms: now_ms(),
            event,
            uid: uid.to_owned(),
            source: source.to_owned(),
            detail: detail.to_owned(),
        };
        if let Ok(mut q) = self.records.lock() {
            if q.len() == AUDIT_CAPACITY {
                q.pop_front();
            }
            q.push_back(rec);
        }
    }

    /// The records kept, oldest first.
    pub fn snapshot(&self) -> Vec<AuditRecord> {
        self.records
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_buffer_keeps_the_newest() {
        let log = AuditLog::default();
        for i in 0..AUDIT_CAPACITY + 3 {
            log.record("login_failure", &format!("u{i}"), "127.0.0.1", "");
        }
        let s = log.snapshot();
        assert_eq!(s.len(), AUDIT_CAPACITY);
        assert_eq!(s[0].uid, "u3");
    }
}
