//! `ResponseCache`: exact-match answers with a TTL and a byte bound (LRU),
//! owned by one actor. The actor does every insert, eviction and expiry and
//! publishes the live entries in a read-only snapshot; the request path reads
//! hits from the snapshot without a message (docs/decisions/cache.md).

mod detail;
mod handle;
pub mod messages;
pub mod replica_tier;
mod state;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use actix::prelude::*;
use tokio::time::Instant;

pub use detail::CacheDetail;
pub use handle::{CacheCounters, CacheHandle, Snapshot};
pub use state::{CacheEntry, CacheKey, CacheStore, ENTRY_OVERHEAD, Inserted, StoreLimits, StoredAnswer};

use crate::supervision::ActorMeta;
use crate::supervision::shell::{self, Shell, actor_shell};
use messages::{Clear, Store};

pub const NAME: &str = "response_cache";

/// How often expired entries are swept out (they are never served once
/// stale: readers check the expiry themselves).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub struct ResponseCache {
    store: CacheStore,
    snapshot: Arc<Snapshot>,
    counters: Arc<CacheCounters>,
    meta: Arc<ActorMeta>,
    entries_gauge: metrics::Gauge,
    bytes_gauge: metrics::Gauge,
    evictions_counter: metrics::Counter,
}

impl ResponseCache {
    pub fn new(
        limits: StoreLimits,
        snapshot: Arc<Snapshot>,
        clock: Arc<AtomicU64>,
        counters: Arc<CacheCounters>,
        meta: Arc<ActorMeta>,
    ) -> Self {
        ResponseCache {
            store: CacheStore::new(limits, clock),
            snapshot,
            counters,
            meta,
            entries_gauge: metrics::gauge!("sluice_cache_entries"),
            bytes_gauge: metrics::gauge!("sluice_cache_bytes"),
            evictions_counter: metrics::counter!("sluice_cache_evictions_total"),
        }
    }

    fn unpublish(&self, keys: &[CacheKey]) {
        for k in keys {
            self.snapshot.remove(k);
        }
    }

    fn publish_gauges(&self) {
        self.entries_gauge.set(self.store.len() as f64);
        self.bytes_gauge.set(self.store.bytes() as f64);
    }

    fn sweep(&mut self) {
        let gone = self.store.expire(Instant::now());
        if !gone.is_empty() {
            self.unpublish(&gone);
            self.publish_gauges();
        }
    }

    /// Insert into the store, then publish what it stored and withdraw what
    /// it evicted.
    fn store(&mut self, msg: Store) -> bool {
        let ins = self.store.insert(msg.key, msg.answer, msg.ttl, Instant::now());
        self.unpublish(&ins.evicted);
        if !ins.evicted.is_empty() {
            self.evictions_counter.increment(ins.evicted.len() as u64);
        }
        let stored = match ins.stored {
            Some(e) => {
                self.snapshot.insert(msg.key, e);
                true
            }
            None => false,
        };
        self.publish_gauges();
        stored
    }

    fn clear(&mut self) {
        self.store.clear();
        self.snapshot.clear();
        self.publish_gauges();
    }
}

impl Shell for ResponseCache {
    type Detail = CacheDetail;

    fn meta(&self) -> &Arc<ActorMeta> {
        &self.meta
    }

    fn detail(&self) -> CacheDetail {
        CacheDetail::read(&self.store, &self.counters)
    }

    /// The store and the snapshot are kept across a restart (it forgets
    /// nothing); the sweep, dropped with the other spawned work, is re-armed.
    fn on_start(&mut self, ctx: &mut Context<Self>) {
        shell::run_interval(ctx, SWEEP_EVERY, |act, _| act.sweep());
        self.publish_gauges();
    }
}

actor_shell!(ResponseCache);

impl Handler<Store> for ResponseCache {
    type Result = bool;

    fn handle(&mut self, msg: Store, ctx: &mut Self::Context) -> bool {
        shell::handle(self, ctx, false, |act, _| act.store(msg))
    }
}

impl Handler<Clear> for ResponseCache {
    type Result = ();

    fn handle(&mut self, _msg: Clear, ctx: &mut Self::Context) {
        shell::handle(self, ctx, (), |act, _| act.clear())
    }
}
