//! The last minutes of traffic, second by second, for the dashboard: how
//! many requests ended, how many failed, and their latency distribution.
//!
//! The request path adds to cumulative atomic counters (three relaxed
//! adds, no clock read, no lock); a sampler ticks once a second, takes the
//! difference since its last tick and pushes it into a ring of at most
//! [`SECONDS`] entries. Memory is fixed: 300 samples of 18 counters. Percentiles
//! are read from the histogram's bucket bounds (the upper bound of the
//! bucket holding the rank), which is as exact as the buckets: fine for
//! a chart, not for an SLO.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// How many seconds of history are kept.
pub const SECONDS: usize = 300;

/// Upper bounds of the latency buckets, in milliseconds; the last bucket is
/// everything above.
const BOUNDS_MS: [u64; 15] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000];
const BUCKETS: usize = BOUNDS_MS.len() + 1;

#[derive(Default)]
struct Totals {
    requests: AtomicU64,
    errors: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

/// One second of traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Second {
    /// Requests per latency bucket, for sums over several seconds.
    #[serde(skip)]
    hist: [u64; BUCKETS],
    /// Unix time of the second's end.
    pub t: u64,
    pub requests: u64,
    /// Requests answered with a 5xx status, or streams that ended in an error.
    pub errors: u64,
    /// Latency percentiles of the requests that ended in this second
    /// (`None` when none did).
    pub p50_ms: Option<u64>,
    pub p99_ms: Option<u64>,
}

/// Several seconds together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Seconds covered (fewer than asked just after start).
    pub seconds: usize,
    pub requests: u64,
    pub errors: u64,
    /// Requests per second.
    pub rate: f64,
    pub p50_ms: Option<u64>,
    pub p99_ms: Option<u64>,
}

#[derive(Default)]
pub struct Series {
    totals: Totals,
    ring: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    last: [u64; BUCKETS + 2],
    seconds: VecDeque<Second>,
}

impl Series {
    /// One request ended after `took`; `failed` when it failed on the
    /// gateway's or the upstream's side.
    pub fn record(&self, took: Duration, failed: bool) {
        let t = &self.totals;
        t.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            t.errors.fetch_add(1, Ordering::Relaxed);
        }
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let i = BOUNDS_MS.iter().position(|b| ms <= *b).unwrap_or(BOUNDS_MS.len());
        t.buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Close the second that ends at unix time `now_s`: the sampler calls
    /// this once a second.
    pub fn tick(&self, now_s: u64) {
        let t = &self.totals;
        let mut now = [0u64; BUCKETS + 2];
        now[0] = t.requests.load(Ordering::Relaxed);
        now[1] = t.errors.load(Ordering::Relaxed);
        for (i, b) in t.buckets.iter().enumerate() {
            now[i + 2] = b.load(Ordering::Relaxed);
        }
        let Ok(mut ring) = self.ring.lock() else { return };
        let mut diff = [0u64; BUCKETS + 2];
        for (d, (n, l)) in diff.iter_mut().zip(now.iter().zip(ring.last.iter())) {
            *d = n.saturating_sub(*l);
        }
        ring.last = now;
        let hist = &diff[2..];
        let mut h = [0u64; BUCKETS];
        h.copy_from_slice(hist);
        let second = Second {
            hist: h,
            t: now_s,
            requests: diff[0],
            errors: diff[1],
            p50_ms: percentile(hist, 0.50),
            p99_ms: percentile(hist, 0.99),
        };
        if ring.seconds.len() == SECONDS {
            ring.seconds.pop_front();
        }
        ring.seconds.push_back(second);
    }

    /// The last `n` seconds together: requests, errors, percentiles.
    pub fn summary(&self, n: usize) -> Summary {
        let Ok(ring) = self.ring.lock() else { return Summary::default() };
        let mut hist = [0u64; BUCKETS];
        let (mut requests, mut errors, mut seconds) = (0, 0, 0);
        for s in ring.seconds.iter().rev().take(n) {
            requests += s.requests;
            errors += s.errors;
            seconds += 1;
            for (a, b) in hist.iter_mut().zip(s.hist.iter()) {
                *a += b;
            }
        }
        Summary {
            seconds,
            requests,
            errors,
            rate: if seconds > 0 { requests as f64 / seconds as f64 } else { 0.0 },
            p50_ms: percentile(&hist, 0.50),
            p99_ms: percentile(&hist, 0.99),
        }
    }

    /// The seconds kept, oldest first.
    pub fn seconds(&self) -> Vec<Second> {
        self.ring.lock().map(|r| r.seconds.iter().copied().collect()).unwrap_or_default()
    }
}

/// The upper bound (ms) of the bucket holding the `q` quantile; the last,
/// open bucket reports its lower bound.
fn percentile(hist: &[u64], q: f64) -> Option<u64> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    // The rank of the q-quantile, 1-based: ceil(q * total).
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, n) in hist.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(BOUNDS_MS.get(i).copied().unwrap_or(BOUNDS_MS[BOUNDS_MS.len() - 1]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tick_holds_the_second_since_the_last() {
        let s = Series::default();
        s.tick(100);
        for ms in [1, 3, 3, 40, 40, 40, 40, 40, 40, 900] {
            s.record(Duration::from_millis(ms), ms == 900);
        }
        s.tick(101);
        s.tick(102);
        let v = s.seconds();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0], Second { t: 100, ..Default::default() });
        let sum = s.summary(60);
        assert_eq!((sum.seconds, sum.requests, sum.errors, sum.p50_ms, sum.p99_ms), (3, 10, 1, Some(50), Some(1000)));
        assert_eq!(s.summary(1).requests, 0, "the last second only");
        assert_eq!((v[1].t, v[1].requests, v[1].errors), (101, 10, 1));
        assert_eq!(v[1].p50_ms, Some(50), "the 5th of 10 is in the 25..50 ms bucket");
        assert_eq!(v[1].p99_ms, Some(1000), "the 10th is in the 500..1000 ms bucket");
        assert_eq!((v[2].requests, v[2].p50_ms), (0, None));
    }

    #[test]
    fn the_ring_is_bounded() {
        let s = Series::default();
        for t in 0..(SECONDS as u64 + 50) {
            s.record(Duration::from_secs(100), false);
            s.tick(t);
        }
        let v = s.seconds();
        assert_eq!(v.len(), SECONDS);
        assert_eq!(v[0].t, 50);
        assert_eq!(v[SECONDS - 1].p99_ms, Some(60_000), "beyond the last bound: its lower bound");
    }
}
