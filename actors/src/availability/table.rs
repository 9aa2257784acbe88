//! Availability's read-only snapshot, read by the request path to route
//! (least in-flight, lowest latency, hedge delay, skip unhealthy).
//!
//! The actor owns every statistic it derives (EWMAs, health) and is their
//! only writer. In-flight counts are the one exception: they change twice
//! per attempt and must be exact at once for least-in-flight routing, so the
//! request path counts them here directly with an atomic add — a counter,
//! like a metric, not actor state (decision in docs/performance.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
struct Live {
    inflight: AtomicI64,
    /// Microseconds; 0 = no sample yet.
    latency_us: AtomicU64,
    ttft_us: AtomicU64,
    ttft_p95_us: AtomicU64,
    unhealthy: AtomicBool,
}

/// By deployment id; append-only, like the breakers' gates.
#[derive(Debug)]
pub struct AvailTable {
    live: boxcar::Vec<Live>,
}

/// Counts one attempt as in flight until dropped.
#[derive(Debug)]
pub struct InflightGuard {
    table: Arc<AvailTable>,
    deployment: usize,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if let Some(l) = self.table.live.get(self.deployment) {
            l.inflight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn nonzero(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

impl AvailTable {
    pub fn new(deployments: usize) -> AvailTable {
        let t = AvailTable { live: boxcar::Vec::new() };
        t.grow_to(deployments);
        t
    }

    /// Make sure ids `0..n` have an entry (new ones have no samples).
    pub fn grow_to(&self, n: usize) {
        while self.live.count() < n {
            self.live.push(Live::default());
        }
    }

    pub fn len(&self) -> usize {
        self.live.count()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Count an attempt at `deployment` as in flight until the guard drops.
    pub fn start(self: &Arc<Self>, deployment: usize) -> InflightGuard {
        if let Some(l) = self.live.get(deployment) {
            l.inflight.fetch_add(1, Ordering::Relaxed);
        }
        InflightGuard { table: self.clone(), deployment }
    }

    pub fn inflight(&self, d: usize) -> i64 {
        self.live.get(d).map_or(0, |l| l.inflight.load(Ordering::Relaxed))
    }

    pub fn latency_us(&self, d: usize) -> Option<u64> {
        self.live.get(d).and_then(|l| nonzero(l.latency_us.load(Ordering::Relaxed)))
    }

    pub fn ttft_us(&self, d: usize) -> Option<u64> {
        self.live.get(d).and_then(|l| nonzero(l.ttft_us.load(Ordering::Relaxed)))
    }

    pub fn ttft_p95_us(&self, d: usize) -> Option<u64> {
        self.live.get(d).and_then(|l| nonzero(l.ttft_p95_us.load(Ordering::Relaxed)))
    }

    pub fn unhealthy(&self, d: usize) -> bool {
        self.live.get(d).is_some_and(|l| l.unhealthy.load(Ordering::Relaxed))
    }

    pub(super) fn publish(
        &self,
        d: usize,
        latency_ms: Option<f64>,
        ttft_ms: Option<f64>,
        ttft_p95_ms: Option<f64>,
        unhealthy: bool,
    ) {
        let Some(l) = self.live.get(d) else { return };
        let us = |v: Option<f64>| v.map_or(0, |ms| ((ms * 1000.0) as u64).max(1));
        l.latency_us.store(us(latency_ms), Ordering::Relaxed);
        l.ttft_us.store(us(ttft_ms), Ordering::Relaxed);
        l.ttft_p95_us.store(us(ttft_p95_ms), Ordering::Relaxed);
        l.unhealthy.store(unhealthy, Ordering::Relaxed);
    }
}
