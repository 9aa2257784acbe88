//! How a rate-limit refusal (and a request within its limits) reads on the
//! wire: OpenAI's `x-ratelimit-*` headers, and the words for the limit that
//! refused. Beside the error type, whose 429s carry them.

use std::time::Duration;

use sluice_actors::rate_limiter::{Exceeded, Headroom};

/// `Go`-style duration, as OpenAI writes its reset headers: `1s`, `6m0s`, `120ms`.
pub fn reset_str(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    let m = (secs / 60.0).floor() as u64;
    let s = secs - (m as f64) * 60.0;
    let s = if (s - s.round()).abs() < 0.0005 { format!("{}", s.round() as u64) } else { format!("{s:.3}") };
    if m > 0 { format!("{m}m{s}s") } else { format!("{s}s") }
}

/// `x-ratelimit-*` header pairs for a headroom.
pub fn headers(h: &Headroom) -> Vec<(&'static str, String)> {
    let mut v = Vec::with_capacity(6);
    if let Some((limit, remaining, reset)) = h.requests {
        v.push(("x-ratelimit-limit-requests", limit.to_string()));
        v.push(("x-ratelimit-remaining-requests", remaining.to_string()));
        v.push(("x-ratelimit-reset-requests", reset_str(reset)));
    }
    if let Some((limit, remaining, reset)) = h.tokens {
        v.push(("x-ratelimit-limit-tokens", limit.to_string()));
        v.push(("x-ratelimit-remaining-tokens", remaining.to_string()));
        v.push(("x-ratelimit-reset-tokens", reset_str(reset)));
    }
    v
}

/// Which limit refused, as words for the error message.
pub fn describe(limit: &str) -> &'static str {
    match limit {
        l if l == Exceeded::Requests.as_str() => "requests per minute",
        l if l == Exceeded::Tokens.as_str() => "tokens per minute",
        _ => "concurrent requests",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_format() {
        assert_eq!(reset_str(Duration::from_millis(120)), "120ms");
        assert_eq!(reset_str(Duration::from_secs(1)), "1s");
        assert_eq!(reset_str(Duration::from_secs(360)), "6m0s");
        assert_eq!(reset_str(Duration::from_millis(1500)), "1.500s");
    }
}
