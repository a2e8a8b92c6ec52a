//! Marathon timestamps: ISO-8601 UTC with milliseconds and `Z`
//! (`2015-02-09T10:44:05.123Z`), used for app versions, `versionInfo` and events.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Formats milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_millis(ms: u64) -> String {
    let secs = ms / 1000;
    let millis = ms % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Milliseconds since the epoch of `t` (0 before the epoch).
pub fn millis_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// Now, formatted.
pub fn now() -> String {
    format_millis(millis_of(SystemTime::now()))
}

/// Now in milliseconds since the epoch.
pub fn now_millis() -> u64 {
    millis_of(SystemTime::now())
}

/// Parses a timestamp written by [`format_millis`] (also accepts no fraction and up to
/// 9 fraction digits, and `+00:00` for `Z`). Returns milliseconds since the epoch.
pub fn parse(ts: &str) -> Option<u64> {
    let ts = ts.strip_suffix('Z').or_else(|| ts.strip_suffix("+00:00"))?;
    let (date, time) = ts.split_once('T')?;
    let mut dp = date.split('-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    if dp.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, frac),
        None => (time, ""),
    };
    let mut tp = hms.split(':');
    let h: u64 = tp.next()?.parse().ok()?;
    let mi: u64 = tp.next()?.parse().ok()?;
    let s: u64 = tp.next()?.parse().ok()?;
    if tp.next().is_some() || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis: u64 = if frac.is_empty() {
        0
    } else {
        let padded = format!("{frac:0<3}");
        padded[..3].parse().ok()?
    };
    let days = days_from_civil(y, m, d);
    if days < 0 {
        return None;
    }
    Some(((days as u64) * 86_400 + h * 3600 + mi * 60 + s) * 1000 + millis)
}

// Howard Hinnant's civil-date algorithms.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_millis(1_423_478_645_123), "2015-02-09T10:44:05.123Z");
        assert_eq!(parse("2015-02-09T10:44:05.123Z"), Some(1_423_478_645_123));
        assert_eq!(parse("2015-02-09T10:44:05Z"), Some(1_423_478_645_000));
        assert_eq!(parse("2015-02-09 10:44:05Z"), None);
        for ms in [1u64, 951_782_400_000, 4_102_444_800_999] {
            assert_eq!(parse(&format_millis(ms)), Some(ms));
        }
    }
}
