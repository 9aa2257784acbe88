//! The typed API in front of the `ResponseCache` actor, and the read-only
//! snapshot the request path reads hits from without a round trip.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use dashmap::DashMap;
use tokio::time::Instant;

use super::messages::{Clear, Store};
use super::state::{CacheEntry, CacheKey, StoreLimits, StoredAnswer};
use super::{NAME, ResponseCache};
use crate::supervision::{ActorMeta, ActorRegistry};

/// How long a store may wait for the actor before the fetching task gives
/// up on it (the answer is then simply not cached).
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// The published entries: the actor inserts and removes, handlers read.
pub type Snapshot = DashMap<CacheKey, Arc<CacheEntry>>;

/// Counters the request path bumps (relaxed atomics: statistics only), read
/// by the actor for `/status`. Kept outside the actor so they survive a restart.
#[derive(Debug, Default)]
pub struct CacheCounters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub bypasses: AtomicU64,
    /// Requests that shared another request's upstream call (single-flight).
    pub coalesced: AtomicU64,
    /// Embedding requests merged into a shared upstream call.
    pub batched: AtomicU64,
    /// Upstream calls made for merged embedding requests.
    pub batches: AtomicU64,
    /// Stores refused because the mailbox was full or the actor did not answer.
    pub store_failures: AtomicU64,
}

impl CacheCounters {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Clone)]
pub struct CacheHandle {
    addr: Addr<ResponseCache>,
    meta: Arc<ActorMeta>,
    snapshot: Arc<Snapshot>,
    clock: Arc<AtomicU64>,
    counters: Arc<CacheCounters>,
}

impl CacheHandle {
    pub fn start(limits: StoreLimits, arbiter: &ArbiterHandle, registry: &mut ActorRegistry) -> CacheHandle {
        let meta = ActorMeta::new(NAME);
        let snapshot = Arc::new(Snapshot::new());
        let clock = Arc::new(AtomicU64::new(0));
        let counters = Arc::new(CacheCounters::default());
        let (m, s, c, n) = (meta.clone(), snapshot.clone(), clock.clone(), counters.clone());
        let addr = Supervisor::start_in_arbiter(arbiter, move |_| ResponseCache::new(limits, s, c, n, m));
        registry.register(meta.clone(), &addr);
        CacheHandle { addr, meta, snapshot, clock, counters }
    }

    /// The fresh entry under `key`, if any, marked used. A read of the
    /// snapshot: no message, no wait.
    pub fn get(&self, key: CacheKey, now: Instant) -> Option<Arc<CacheEntry>> {
        let e = self.snapshot.get(&key)?.value().clone();
        if !e.is_fresh(now) {
            return None;
        }
        e.touch(&self.clock);
        Some(e)
    }

    /// Ask the actor to store an answer; true once it is published.
    pub async fn store(&self, key: CacheKey, answer: StoredAnswer, ttl: Duration) -> bool {
        match self.meta.ask(&self.addr, Store { key, answer, ttl }, STORE_TIMEOUT).await {
            Ok(stored) => stored,
            Err(_) => {
                CacheCounters::bump(&self.counters.store_failures);
                false
            }
        }
    }

    /// Drop every entry (fire-and-forget).
    pub fn clear(&self) {
        self.meta.tell(&self.addr, Clear);
    }

    pub fn counters(&self) -> &CacheCounters {
        &self.counters
    }

    /// Entries published right now.
    pub fn len(&self) -> usize {
        self.snapshot.len()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshot.is_empty()
    }
}
