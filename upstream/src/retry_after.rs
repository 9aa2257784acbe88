//! `Retry-After`, read once for everyone who honours it (the attempt loop,
//! the circuit breakers, the answer a client gets).
//!
//! The header comes from an upstream, so any text may arrive. Every delay
//! saturates at [`CEILING`] — `99999999999999999999` or `1e300` seconds are
//! "a long time", not an overflow: `Duration::from_secs_f64(1e300)` panics,
//! and so does adding a huge `Duration` to an `Instant` — and callers cap it
//! further with `[routing].retry_after_cap_ms`.
//!
//! Forms, in the order tried:
//! - delay-seconds (RFC 9110 §10.2.3), any number of digits;
//! - a decimal or exponent number (`1.5`, `1e3`): not in the RFC, but sent
//!   by some servers; `inf` saturates like any huge number;
//! - an HTTP-date: the time left until it, zero once it has passed.
//!
//! What is not a delay is [`Invalid`], never silently "absent": a negative
//! number, NaN, an empty value or unreadable text. The caller counts it and
//! treats the deployment as if it had sent no Retry-After (it cools for the
//! default second): a negative value taken as zero would invite a retry at
//! once, which is exactly what a 429 asks not to do.

use std::time::{Duration, SystemTime};

/// The longest delay a `Retry-After` is read as (one day). Far above any
/// configured cap, and small enough that `Instant::now() + d` never
/// overflows.
pub const CEILING: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a `Retry-After` value is not a delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("the Retry-After value is empty")]
    Empty,
    #[error("the Retry-After value is negative")]
    Negative,
    #[error("the Retry-After value is NaN")]
    NotANumber,
    #[error("the Retry-After value is neither a number of seconds nor an HTTP-date")]
    Unreadable,
}

impl Invalid {
    /// A low-cardinality metric label.
    pub fn label(self) -> &'static str {
        match self {
            Invalid::Empty => "empty",
            Invalid::Negative => "negative",
            Invalid::NotANumber => "nan",
            Invalid::Unreadable => "unreadable",
        }
    }
}

/// Read a `Retry-After` value as a delay from `now`, at most [`CEILING`].
pub fn parse(value: &[u8], now: SystemTime) -> Result<Duration, Invalid> {
    let v = value.trim_ascii();
    if v.is_empty() {
        return Err(Invalid::Empty);
    }
    if v.iter().all(u8::is_ascii_digit) {
        return Ok(whole_seconds(v));
    }
    let Ok(text) = std::str::from_utf8(v) else { return Err(Invalid::Unreadable) };
    if let Ok(secs) = text.parse::<f64>() {
        return fractional_seconds(secs);
    }
    match httpdate::parse_http_date(text) {
        Ok(at) => Ok(at.duration_since(now).unwrap_or(Duration::ZERO).min(CEILING)),
        Err(_) => Err(Invalid::Unreadable),
    }
}

/// [`parse`], then at most `cap`.
pub fn parse_capped(value: &[u8], now: SystemTime, cap: Duration) -> Result<Duration, Invalid> {
    parse(value, now).map(|d| d.min(cap))
}

/// Digits only: saturating, so any length is fine.
fn whole_seconds(digits: &[u8]) -> Duration {
    let ceiling = CEILING.as_secs();
    let mut secs: u64 = 0;
    for d in digits {
        secs = secs.saturating_mul(10).saturating_add(u64::from(d - b'0'));
        if secs >= ceiling {
            return CEILING;
        }
    }
    Duration::from_secs(secs)
}

fn fractional_seconds(secs: f64) -> Result<Duration, Invalid> {
    if secs.is_nan() {
        return Err(Invalid::NotANumber);
    }
    if secs < 0.0 {
        return Err(Invalid::Negative);
    }
    // Compared before converting: `from_secs_f64` panics past u64::MAX
    // seconds and on infinity.
    if secs >= CEILING.as_secs_f64() {
        return Ok(CEILING);
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &str) -> Result<Duration, Invalid> {
        parse(v.as_bytes(), SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480))
    }

    #[test]
    fn seconds_saturate_instead_of_overflowing() {
        assert_eq!(p("7"), Ok(Duration::from_secs(7)));
        assert_eq!(p(" 0 "), Ok(Duration::ZERO));
        assert_eq!(p("99999999999999999999"), Ok(CEILING));
        assert_eq!(p(&"9".repeat(10_000)), Ok(CEILING));
        assert_eq!(p("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(p("1e300"), Ok(CEILING));
        assert_eq!(p("1e3"), Ok(Duration::from_secs(1000)));
        assert_eq!(p("inf"), Ok(CEILING));
        assert_eq!(p("+Infinity"), Ok(CEILING));
        assert_eq!(p("86401"), Ok(CEILING));
    }

    #[test]
    fn what_is_not_a_delay_says_why() {
        assert_eq!(p("-1"), Err(Invalid::Negative));
        assert_eq!(p("-0.5"), Err(Invalid::Negative));
        assert_eq!(p("-inf"), Err(Invalid::Negative));
        assert_eq!(p("NaN"), Err(Invalid::NotANumber));
        assert_eq!(p(""), Err(Invalid::Empty));
        assert_eq!(p("   "), Err(Invalid::Empty));
        assert_eq!(p("soon"), Err(Invalid::Unreadable));
        assert_eq!(parse(b"\xff\xfe", SystemTime::now()), Err(Invalid::Unreadable));
    }

    #[test]
    fn http_dates_count_from_now() {
        // "now" is Wed, 21 Oct 2015 07:28:00 GMT.
        assert_eq!(p("Wed, 21 Oct 2015 07:28:30 GMT"), Ok(Duration::from_secs(30)));
        assert_eq!(p("Wed, 21 Oct 2015 07:00:00 GMT"), Ok(Duration::ZERO), "a date passed: retry now");
        assert_eq!(p("Fri, 31 Dec 9999 23:59:59 GMT"), Ok(CEILING));
        assert_eq!(p("Wed, 21 Oct 2015 07:28:30 XYZ"), Err(Invalid::Unreadable));
    }

    #[test]
    fn capped() {
        let now = SystemTime::now();
        assert_eq!(parse_capped(b"1e300", now, Duration::from_secs(10)), Ok(Duration::from_secs(10)));
        assert_eq!(parse_capped(b"3", now, Duration::from_secs(10)), Ok(Duration::from_secs(3)));
    }
}
