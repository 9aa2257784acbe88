//! The cache as `/status` shows it: a read of the store and of the
//! request path's counters.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::handle::CacheCounters;
use super::state::CacheStore;

#[derive(Debug, Serialize)]
pub struct CacheDetail {
    pub entries: usize,
    pub bytes: usize,
    pub max_bytes: usize,
    pub max_entry_bytes: usize,
    pub hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    pub hit_rate: f64,
    pub stores: u64,
    pub evictions: u64,
    pub expirations: u64,
    pub too_large: u64,
    pub coalesced: u64,
    pub batched: u64,
    pub batches: u64,
    pub store_failures: u64,
}

impl CacheDetail {
    pub fn read(store: &CacheStore, c: &CacheCounters) -> CacheDetail {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (hits, misses) = (get(&c.hits), get(&c.misses));
        let lookups = hits + misses;
        let limits = store.limits();
        CacheDetail {
            entries: store.len(),
            bytes: store.bytes(),
            max_bytes: limits.max_bytes,
            max_entry_bytes: limits.max_entry_bytes,
            hits,
            misses,
            bypasses: get(&c.bypasses),
            hit_rate: if lookups == 0 { 0.0 } else { hits as f64 / lookups as f64 },
            stores: store.inserts,
            evictions: store.evictions,
            expirations: store.expirations,
            too_large: store.too_large,
            coalesced: get(&c.coalesced),
            batched: get(&c.batched),
            batches: get(&c.batches),
            store_failures: get(&c.store_failures),
        }
    }
}
