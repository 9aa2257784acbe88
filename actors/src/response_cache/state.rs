//! The response cache's store as a pure data structure: exact-match entries
//! with a TTL each, a byte bound, and least-recently-used eviction. No actix,
//! no I/O, time passed in, so it is tested on a paused clock.
//!
//! Recency without messages: a hit must not cost the request path an actor
//! message (docs/decisions/cache.md), so handlers stamp the entry they serve
//! with the next value of a shared use clock ([`CacheEntry::touch`], one
//! atomic add and one store), and the store reads the stamps only when it
//! evicts. The LRU order is kept lazily: `lru` maps the stamp an entry was
//! queued under to its key; when the oldest is popped and its entry was used
//! since (its stamp is newer), it is re-queued under that stamp instead of
//! evicted. Every queued stamp is at most the entry's current one, so the
//! first entry popped whose stamp did not move is the least recently used.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// A 128-bit hash of everything that determines an answer.
pub type CacheKey = u128;

/// Bytes counted for an entry beyond its answer: the map slot, the LRU and
/// expiry nodes, the `Arc` and the snapshot's copy of the key. Keeps a cache
/// of many tiny answers honest about its memory.
pub const ENTRY_OVERHEAD: usize = 192;

/// What a hit serves, in both shapes a client may ask for, ready to send:
/// building either costs nothing at hit time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredAnswer {
    /// The whole answer: `chat.completion`, `text_completion` or an
    /// embeddings `list`.
    pub body: Bytes,
    /// The answer as SSE events, without the usage-only chunk and
    /// `[DONE]` (empty where the route does not stream).
    pub events: Bytes,
    /// The usage-only chunk (`data: {..."choices":[],"usage":{...}}\n\n`),
    /// for clients that asked `stream_options.include_usage`.
    pub usage_event: Bytes,
}

impl StoredAnswer {
    /// Bytes the answer holds.
    pub fn size(&self) -> usize {
        self.body.len() + self.events.len() + self.usage_event.len()
    }
}

/// One stored answer, shared read-only with the request path.
#[derive(Debug)]
pub struct CacheEntry {
    pub answer: StoredAnswer,
    pub stored_at: Instant,
    pub expires_at: Instant,
    /// Use-clock value at the last hit (or the insert).
    last_used: AtomicU64,
}

impl CacheEntry {
    pub fn new(answer: StoredAnswer, stored_at: Instant, ttl: Duration) -> CacheEntry {
        CacheEntry { answer, stored_at, expires_at: stored_at + ttl, last_used: AtomicU64::new(0) }
    }

    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.expires_at
    }

    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.stored_at)
    }

    /// Mark the entry used now (the request path's only write).
    pub fn touch(&self, clock: &AtomicU64) {
        self.last_used.store(clock.fetch_add(1, Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }
}

/// Limits of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// All entries together, [`ENTRY_OVERHEAD`] included.
    pub max_bytes: usize,
    /// One entry; larger answers are not stored.
    pub max_entry_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits { max_bytes: 64 * 1024 * 1024, max_entry_bytes: 1024 * 1024 }
    }
}

struct Slot {
    entry: Arc<CacheEntry>,
    /// The stamp this entry is queued under in `lru`.
    queued: u64,
    size: usize,
}

/// What an insert did: whether it stored, and which keys it removed
/// (evicted to make room), for the published snapshot.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Inserted {
    pub stored: Option<Arc<CacheEntry>>,
    pub evicted: Vec<CacheKey>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Slot({} bytes, queued {})", self.size, self.queued)
    }
}

impl PartialEq for CacheEntry {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for CacheEntry {}

#[derive(Debug)]
pub struct CacheStore {
    limits: StoreLimits,
    entries: HashMap<CacheKey, Slot>,
    /// Queued stamp → key, oldest first.
    lru: BTreeMap<u64, CacheKey>,
    /// (expiry, key), soonest first.
    expiries: BTreeMap<(Instant, CacheKey), ()>,
    bytes: usize,
    /// The use clock handlers stamp entries with.
    clock: Arc<AtomicU64>,
    pub evictions: u64,
    pub expirations: u64,
    pub inserts: u64,
    /// Answers larger than `max_entry_bytes`, not stored.
    pub too_large: u64,
}

impl CacheStore {
    pub fn new(limits: StoreLimits, clock: Arc<AtomicU64>) -> CacheStore {
        CacheStore {
            limits,
            entries: HashMap::new(),
            lru: BTreeMap::new(),
            expiries: BTreeMap::new(),
            bytes: 0,
            clock,
            evictions: 0,
            expirations: 0,
            inserts: 0,
            too_large: 0,
        }
    }

    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held, [`ENTRY_OVERHEAD`] per entry included.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The entry under `key` if it is still fresh at `now`, marked used.
    pub fn get(&self, key: CacheKey, now: Instant) -> Option<Arc<CacheEntry>> {
        let e = &self.entries.get(&key)?.entry;
        if !e.is_fresh(now) {
            return None;
        }
        e.touch(&self.clock);
        Some(e.clone())
    }

    /// Store `answer` under `key` for `ttl`, replacing what was there and
    /// evicting least recently used entries until everything fits.
    pub fn insert(&mut self, key: CacheKey, answer: StoredAnswer, ttl: Duration, now: Instant) -> Inserted {
        let size = answer.size() + ENTRY_OVERHEAD;
        let mut out = Inserted::default();
        if size > self.limits.max_entry_bytes.saturating_add(ENTRY_OVERHEAD) || size > self.limits.max_bytes {
            self.too_large += 1;
            // A stale, smaller answer under the same key must not outlive the refresh.
            if self.remove(key) {
                out.evicted.push(key);
            }
            return out;
        }
        self.remove(key);
        let entry = Arc::new(CacheEntry::new(answer, now, ttl));
        let stamp = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        entry.last_used.store(stamp, Ordering::Relaxed);
        self.lru.insert(stamp, key);
        self.expiries.insert((entry.expires_at, key), ());
        self.entries.insert(key, Slot { entry: entry.clone(), queued: stamp, size });
        self.bytes += size;
        self.inserts += 1;
        out.evicted = self.make_room(key);
        out.stored = Some(entry);
        out
    }

    /// Evict least recently used entries (never `keep`, just inserted)
    /// until the store is within `max_bytes`.
    fn make_room(&mut self, keep: CacheKey) -> Vec<CacheKey> {
        let mut evicted = Vec::new();
        // Bounded: a hot entry touched while this runs is re-queued at most
        // a few times; past the bound the oldest queued entry goes anyway.
        let mut requeues_left = self.entries.len() * 2 + 8;
        while self.bytes > self.limits.max_bytes {
            let Some((stamp, key)) = self.lru.pop_first() else { break };
            let Some(slot) = self.entries.get_mut(&key) else { continue };
            let used = slot.entry.last_used();
            if key == keep || (used > stamp && requeues_left > 0) {
                requeues_left = requeues_left.saturating_sub(1);
                // Clock values are handed out once, so a stamp names one entry.
                let at = if used > stamp { used } else { self.clock.fetch_add(1, Ordering::Relaxed) + 1 };
                slot.queued = at;
                self.lru.insert(at, key);
                if key == keep && self.entries.len() == 1 {
                    break;
                }
                continue;
            }
            // Put it back so `remove` finds it where it expects.
            self.lru.insert(stamp, key);
            if self.remove(key) {
                self.evictions += 1;
                evicted.push(key);
            }
        }
        evicted
    }

    /// Remove entries whose TTL ended at or before `now`; returns their keys.
    pub fn expire(&mut self, now: Instant) -> Vec<CacheKey> {
        let mut gone = Vec::new();
        while let Some((&(at, key), ())) = self.expiries.first_key_value() {
            if at > now {
                break;
            }
            if self.remove(key) {
                self.expirations += 1;
                gone.push(key);
            } else {
                self.expiries.remove(&(at, key));
            }
        }
        gone
    }

    /// When the next entry expires, if any.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.first_key_value().map(|(&(at, _), ())| at)
    }

    /// Remove every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.lru.clear();
        self.expiries.clear();
        self.bytes = 0;
    }

    /// Remove one entry; true if it was there.
    pub fn remove(&mut self, key: CacheKey) -> bool {
        let Some(slot) = self.entries.remove(&key) else { return false };
        self.lru.remove(&slot.queued);
        self.expiries.remove(&(slot.entry.expires_at, key));
        self.bytes -= slot.size;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(n: usize) -> StoredAnswer {
        StoredAnswer { body: Bytes::from(vec![b'x'; n]), events: Bytes::new(), usage_event: Bytes::new() }
    }

    fn store(max_bytes: usize) -> CacheStore {
        CacheStore::new(StoreLimits { max_bytes, max_entry_bytes: max_bytes }, Arc::default())
    }

    const TTL: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn ttl_expires_entries_on_a_paused_clock() {
        let mut s = store(1 << 20);
        let t0 = Instant::now();
        s.insert(1, answer(10), Duration::from_secs(10), t0);
        s.insert(2, answer(10), Duration::from_secs(30), t0);
        assert!(s.get(1, Instant::now()).is_some());
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(s.get(1, Instant::now()).is_some(), "fresh until its TTL");
        assert!(s.expire(Instant::now()).is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(s.get(1, Instant::now()).is_none(), "stale entries are not served, even before the sweep");
        assert_eq!(s.expire(Instant::now()), vec![1]);
        assert_eq!((s.len(), s.expirations), (1, 1));
        assert_eq!(s.next_expiry(), Some(t0 + Duration::from_secs(30)));
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(s.expire(Instant::now()), vec![2]);
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn age_is_measured_from_the_store() {
        let mut s = store(1 << 20);
        s.insert(1, answer(1), TTL, Instant::now());
        tokio::time::advance(Duration::from_secs(7)).await;
        let e = s.get(1, Instant::now()).unwrap();
        assert_eq!(e.age(Instant::now()), Duration::from_secs(7));
    }

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let each = 100 + ENTRY_OVERHEAD;
        let mut s = store(each * 3);
        let now = Instant::now();
        for k in 1..=3 {
            assert!(s.insert(k, answer(100), TTL, now).evicted.is_empty());
        }
        assert_eq!(s.bytes(), each * 3);
        // 1 is used again: 2 is now the least recently used.
        assert!(s.get(1, now).is_some());
        let ins = s.insert(4, answer(100), TTL, now);
        assert_eq!(ins.evicted, vec![2]);
        assert!(ins.stored.is_some());
        // A bigger one pushes out as many as needed, oldest first (3, then 1).
        let ins = s.insert(5, answer(100 + each), TTL, now);
        assert_eq!(ins.evicted, vec![3, 1]);
        assert_eq!(s.evictions, 3);
        assert!(s.bytes() <= each * 3);
        assert!(s.get(4, now).is_some() && s.get(5, now).is_some());
    }

    #[test]
    fn too_large_is_not_stored_and_drops_the_old_answer() {
        let mut s = CacheStore::new(StoreLimits { max_bytes: 10_000, max_entry_bytes: 100 }, Arc::default());
        let now = Instant::now();
        s.insert(1, answer(50), TTL, now);
        let ins = s.insert(1, answer(101), TTL, now);
        assert!(ins.stored.is_none());
        assert_eq!(ins.evicted, vec![1]);
        assert_eq!((s.len(), s.bytes(), s.too_large), (0, 0, 1));
    }

    #[test]
    fn replacing_an_entry_keeps_the_byte_count_right() {
        let mut s = store(1 << 20);
        let now = Instant::now();
        s.insert(1, answer(10), TTL, now);
        s.insert(1, answer(30), TTL, now);
        assert_eq!((s.len(), s.bytes()), (1, 30 + ENTRY_OVERHEAD));
        assert!(s.remove(1));
        assert!(!s.remove(1));
        assert_eq!(s.bytes(), 0);
        assert!(s.expire(now + TTL * 2).is_empty(), "no stale expiry left behind");
        s.insert(2, answer(10), TTL, now);
        s.clear();
        assert_eq!((s.len(), s.bytes(), s.next_expiry()), (0, 0, None));
    }

    #[test]
    fn lru_order_survives_many_touches() {
        let each = 10 + ENTRY_OVERHEAD;
        let mut s = store(each * 4);
        let now = Instant::now();
        for k in 1..=4 {
            s.insert(k, answer(10), TTL, now);
        }
        // Touch in the order 3, 1, 4, 2: 3 is now the least recently used.
        for k in [3, 1, 4, 2] {
            s.get(k, now);
        }
        assert_eq!(s.insert(5, answer(10), TTL, now).evicted, vec![3]);
        assert_eq!(s.insert(6, answer(10), TTL, now).evicted, vec![1]);
        assert_eq!(s.insert(7, answer(10), TTL, now).evicted, vec![4]);
    }
}
