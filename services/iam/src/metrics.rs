//! Prometheus counters served at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The IAM's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Successful logins.
    pub login_success: AtomicU64,
    /// Failed logins (bad credentials).
    pub login_failure: AtomicU64,
    /// Logins refused because of a lockout.
    pub login_locked: AtomicU64,
    /// Malformed login requests.
    pub login_invalid: AtomicU64,
    /// Lockouts started.
    pub lockouts: AtomicU64,
    /// Tokens revoked by logout.
    pub revocations: AtomicU64,
    /// Authorization decisions that allowed.
    pub authz_allow: AtomicU64,
    /// Authorization decisions that denied.
    pub authz_deny: AtomicU64,
}

impl Metrics {
    /// Adds one to `c`.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP basalt_iam_logins_total Login attempts by result."
        );
        let _ = writeln!(out, "# TYPE basalt_iam_logins_total counter");
        for (result, c) in [
            ("success", &self.login_success),
            ("failure", &self.login_failure),
            ("locked", &self.login_locked),
            ("invalid", &self.login_invalid),
        ] {
            let _ = writeln!(
                out,
                "basalt_iam_logins_total{{result=\"{result}\"}} {}",
                g(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP basalt_iam_lockouts_total Lockouts started (per uid or address)."
        );
        let _ = writeln!(out, "# TYPE basalt_iam_lockouts_total counter");
        let _ = writeln!(out, "basalt_iam_lockouts_total {}", g(&self.lockouts));
        let _ = writeln!(
            out,
            "# HELP basalt_iam_token_revocations_total Tokens revoked by logout."
        );
        let _ = writeln!(out, "# TYPE basalt_iam_token_revocations_total counter");
        let _ = writeln!(
            out,
            "basalt_iam_token_revocations_total {}",
            g(&self.revocations)
        );
        let _ = writeln!(
            out,
            "# HELP basalt_iam_authorizations_total Authorization decisions by result."
        );
        let _ = writeln!(out, "# TYPE basalt_iam_authorizations_total counter");
        let _ = writeln!(
            out,
            "basalt_iam_authorizations_total{{result=\"allow\"}} {}",
            g(&self.authz_allow)
        );
        let _ = writeln!(
            out,
            "basalt_iam_authorizations_total{{result=\"deny\"}} {}",
            g(&self.authz_deny)
        );
        out
    }
}
