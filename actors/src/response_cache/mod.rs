//! `ResponseCache`: exact-match answers with a TTL and a byte bound (LRU),
//! owned by one actor. The actor does every insert, eviction and expiry and
//! publishes the live entries in a read-only snapshot; the request path reads
//! hits from the snapshot without a message (docs/decisions/cache.md).

mod handle;
pub mod messages;
pub mod replica_tier;
mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use tokio::time::Instant;

pub use handle::{CacheCounters, CacheHandle, Snapshot};
pub use state::{CacheEntry, CacheKey, CacheStore, ENTRY_OVERHEAD, Inserted, StoreLimits, StoredAnswer};

use crate::status::GetStatus;
use crate::supervision::{ActorMeta, guarded};
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

    fn detail(&self) -> sonic_rs::Value {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (hits, misses) = (get(&c.hits), get(&c.misses));
        let lookups = hits + misses;
        let limits = self.store.limits();
        sonic_rs::json!({
            "entries": self.store.len(),
            "bytes": self.store.bytes(),
            "max_bytes": limits.max_bytes,
            "max_entry_bytes": limits.max_entry_bytes,
            "hits": hits,
            "misses": misses,
            "bypasses": get(&c.bypasses),
            "hit_rate": if lookups == 0 { 0.0 } else { hits as f64 / lookups as f64 },
            "stores": self.store.inserts,
            "evictions": self.store.evictions,
            "expirations": self.store.expirations,
            "too_large": self.store.too_large,
            "coalesced": get(&c.coalesced),
            "batched": get(&c.batched),
            "batches": get(&c.batches),
            "store_failures": get(&c.store_failures),
        })
    }
}

impl Actor for ResponseCache {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::supervision::MAILBOX_CAPACITY);
        // Spawned work is dropped on a restart: re-arm the sweep each start.
        ctx.run_interval(SWEEP_EVERY, |act, _| act.sweep());
        self.publish_gauges();
        self.meta.started();
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.meta.stopped();
    }
}

impl Supervised for ResponseCache {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // The store and the snapshot are kept: a restart forgets nothing.
        self.meta.restarting();
    }
}

impl Handler<Store> for ResponseCache {
    type Result = bool;

    fn handle(&mut self, msg: Store, ctx: &mut Self::Context) -> bool {
        self.meta.dequeued();
        let meta = self.meta.clone();
        guarded(&meta, ctx, false, || {
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
        })
    }
}

impl Handler<Clear> for ResponseCache {
    type Result = ();

    fn handle(&mut self, _msg: Clear, ctx: &mut Self::Context) {
        self.meta.dequeued();
        let meta = self.meta.clone();
        guarded(&meta, ctx, (), || {
            let keys: Vec<CacheKey> = self.snapshot.iter().map(|e| *e.key()).collect();
            for k in keys {
                self.store.remove(k);
                self.snapshot.remove(&k);
            }
            self.publish_gauges();
        })
    }
}

impl Handler<GetStatus> for ResponseCache {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _msg: GetStatus, ctx: &mut Self::Context) -> Self::Result {
        self.meta.dequeued();
        let meta = self.meta.clone();
        let fallback = sonic_rs::json!({ "error": "status handler failed; the actor is restarting" });
        MessageResult(guarded(&meta, ctx, fallback, || self.detail()))
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::circuit_breakers::messages::InjectPanic> for ResponseCache {
    type Result = ();

    #[allow(clippy::panic)]
    fn handle(&mut self, _msg: crate::circuit_breakers::messages::InjectPanic, ctx: &mut Self::Context) {
        self.meta.dequeued();
        let meta = self.meta.clone();
        guarded(&meta, ctx, (), || panic!("injected fault: response_cache panics on purpose"))
    }
}
