//! Fuzz target: a `Retry-After` value -> the one parser every honouring
//! site uses. Any bytes give a delay of at most a day or a reason it is
//! none, never a panic (`1e300` once reached `Duration::from_secs_f64`).
//! Run: `scripts/fuzz retry_after`.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use sluice_upstream::retry_after::{CEILING, parse, parse_capped};

fuzz_target!(|data: &[u8]| {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    if let Ok(d) = parse(data, now) {
        assert!(d <= CEILING);
        // And what a breaker does with it cannot overflow either.
        let _ = tokio::time::Instant::now() + d;
    }
    if let Ok(d) = parse_capped(data, now, Duration::from_secs(10)) {
        assert!(d <= Duration::from_secs(10));
    }
});
