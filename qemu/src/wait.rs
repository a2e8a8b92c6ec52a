//! Polling with a deadline: the only way tests wait for something.

use std::time::{Duration, Instant};

/// A condition did not become true in time.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {waited:?} waiting for {what}")]
pub struct Timeout {
    pub what: String,
    pub waited: Duration,
}

/// Calls `check` until it returns `Some`, at most until `timeout` has passed, pausing
/// `interval` between calls. `check` runs at least once, and once more at the deadline.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, Timeout> {
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Timeout {
                what: what.to_string(),
                waited: now - start,
            });
        }
        std::thread::sleep(interval.min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_some() {
        let mut n = 0;
        let v = wait_until(
            "n to reach 3",
            Duration::from_secs(5),
            Duration::ZERO,
            || {
                n += 1;
                (n == 3).then_some(n * 10)
            },
        )
        .unwrap();
        assert_eq!(v, 30);
    }

    #[test]
    fn times_out_with_the_description() {
        let start = Instant::now();
        let err = wait_until(
            "never",
            Duration::from_millis(50),
            Duration::from_millis(10),
            || None::<()>,
        )
        .unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert!(err.to_string().contains("never"));
    }

    #[test]
    fn checks_at_least_once_even_with_zero_timeout() {
        let mut calls = 0;
        let r = wait_until("x", Duration::ZERO, Duration::ZERO, || {
            calls += 1;
            Some(())
        });
        assert!(r.is_ok());
        assert_eq!(calls, 1);
    }
}
