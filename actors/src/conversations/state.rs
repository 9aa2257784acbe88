//! The stored conversations as a pure data structure: one entry per
//! Response id, a TTL, a byte bound, oldest out first. No actix, no I/O,
//! time passed in, so it is tested on a paused clock.
//!
//! Oldest-stored first is the eviction order, not least-recently-used:
//! every turn of a conversation is stored under a new id holding the whole
//! history up to it, so a live conversation is always among the newest
//! entries, and what goes first is the earlier turns that superseded
//! copies already hold. With one TTL for all, the oldest entry is also the
//! first to expire, so one ordered index serves both.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// Bytes counted for an entry beyond its contents: the map slot, the order
/// index, the `Arc` and the snapshot's copy of the id.
pub const ENTRY_OVERHEAD: usize = 192;

/// Limits of the store (`[responses]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub ttl: Duration,
    /// Every entry together, [`ENTRY_OVERHEAD`] included.
    pub max_bytes: usize,
    /// One entry; larger ones are refused.
    pub max_entry_bytes: usize,
}

impl Default for Limits {
    /// The config's defaults (docs/configuration.md, `[responses]`).
    fn default() -> Self {
        Limits { ttl: Duration::from_secs(86_400), max_bytes: 256 << 20, max_entry_bytes: 8 << 20 }
    }
}

/// One stored Response and the conversation up to it, shared read-only
/// with the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The name of the key that created it: only that key may read it,
    /// continue it or delete it.
    pub owner: String,
    /// The Response object, for `GET /v1/responses/{id}`.
    pub response: Bytes,
    /// Every input and output item so far (a JSON array), for the next
    /// turn's `previous_response_id`.
    pub items: Bytes,
    /// When it was first stored (Unix ms): kept with the entry, so a copy
    /// reloaded after a restart (or read from Redis) keeps its age.
    pub stored_unix_ms: u64,
}

impl Conversation {
    /// Bytes it holds, as counted against the limits.
    pub fn size(&self, id: &str) -> usize {
        id.len() + self.owner.len() + self.response.len() + self.items.len() + ENTRY_OVERHEAD
    }
}

/// A stored conversation and when it expires.
#[derive(Debug)]
pub struct Entry {
    pub conversation: Conversation,
    pub expires_at: Instant,
}

impl Entry {
    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

/// Why an entry was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the conversation is {size} bytes, more than responses.max_entry_bytes ({max})")]
    TooLarge { size: usize, max: usize },
}

struct Slot {
    entry: Arc<Entry>,
    /// Its place in `order`.
    seq: u64,
    size: usize,
}

/// What an insert did to other entries: removed to make room, or
/// replaced (the same id stored again).
#[derive(Debug, Default)]
pub struct Inserted {
    pub entry: Option<Arc<Entry>>,
    pub evicted: Vec<String>,
}

pub struct ConversationStore {
    limits: Limits,
    entries: HashMap<String, Slot>,
    /// Ids in the order they were stored.
    order: BTreeMap<u64, String>,
    next_seq: u64,
    bytes: usize,
    evictions: u64,
}

impl ConversationStore {
    pub fn new(limits: Limits) -> ConversationStore {
        ConversationStore {
            limits,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
            evictions: 0,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Store `conversation` under `id` at `now`, for the TTL less the age
    /// it already has (one reloaded after a restart). Evicts the oldest
    /// entries while the store would be over `max_bytes`.
    pub fn insert(
        &mut self,
        id: String,
        conversation: Conversation,
        age: Duration,
        now: Instant,
    ) -> Result<Inserted, Refused> {
        let size = conversation.size(&id);
        if size > self.limits.max_entry_bytes {
            return Err(Refused::TooLarge { size, max: self.limits.max_entry_bytes });
        }
        let mut evicted = Vec::new();
        if self.remove(&id) {
            evicted.push(id.clone());
        }
        while self.bytes + size > self.limits.max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some(slot) = self.entries.remove(&oldest) {
                self.bytes -= slot.size;
                self.evictions += 1;
            }
            evicted.push(oldest);
        }
        let expires_at = now + self.limits.ttl.saturating_sub(age);
        let entry = Arc::new(Entry { conversation, expires_at });
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, id.clone());
        self.entries.insert(id, Slot { entry: entry.clone(), seq, size });
        self.bytes += size;
        Ok(Inserted { entry: Some(entry), evicted })
    }

    /// Remove `id`; whether it was there.
    pub fn remove(&mut self, id: &str) -> bool {
        match self.entries.remove(id) {
            Some(slot) => {
                self.order.remove(&slot.seq);
                self.bytes -= slot.size;
                true
            }
            None => false,
        }
    }

    /// Remove every entry expired at `now`; their ids. The oldest expire
    /// first, so the walk stops at the first fresh one.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut gone = Vec::new();
        while let Some(entry) = self.order.first_entry() {
            if self.entries.get(entry.get()).is_some_and(|s| s.entry.is_fresh(now)) {
                break;
            }
            let id = entry.remove();
            if let Some(slot) = self.entries.remove(&id) {
                self.bytes -= slot.size;
                gone.push(id);
            }
        }
        gone
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Entry>> {
        self.entries.get(id).map(|s| &s.entry)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries removed to stay within `max_bytes`, since start.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(owner: &str, n: usize) -> Conversation {
        Conversation {
            owner: owner.into(),
            response: Bytes::from(vec![b'r'; n]),
            items: Bytes::from_static(b"[]"),
            stored_unix_ms: 0,
        }
    }

    fn limits(max_bytes: usize) -> Limits {
        Limits { ttl: Duration::from_secs(60), max_bytes, max_entry_bytes: 4096 }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_their_ttl() {
        let mut s = ConversationStore::new(limits(1 << 20));
        let t0 = Instant::now();
        s.insert("a".into(), conv("k", 10), Duration::ZERO, t0).unwrap();
        tokio::time::advance(Duration::from_secs(30)).await;
        s.insert("b".into(), conv("k", 10), Duration::ZERO, Instant::now()).unwrap();
        // Reloaded after a restart with 50 s of its minute already gone.
        s.insert("c".into(), conv("k", 10), Duration::from_secs(50), Instant::now()).unwrap();
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(s.expire(Instant::now()).is_empty(), "a has one second left");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(s.expire(Instant::now()), ["a"]);
        assert!(s.get("c").is_some_and(|e| !e.is_fresh(Instant::now())), "c is stale; readers check");
        tokio::time::advance(Duration::from_secs(30)).await;
        let mut gone = s.expire(Instant::now());
        gone.sort();
        assert_eq!(gone, ["b", "c"]);
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_go_first_past_the_byte_bound() {
        let one = conv("k", 100).size("x");
        let mut s = ConversationStore::new(limits(3 * one));
        let now = Instant::now();
        for id in ["x", "y", "z"] {
            assert!(s.insert(id.into(), conv("k", 100), Duration::ZERO, now).unwrap().evicted.is_empty());
        }
        assert_eq!(s.bytes(), 3 * one);
        let ins = s.insert("w".into(), conv("k", 100), Duration::ZERO, now).unwrap();
        assert_eq!(ins.evicted, ["x"]);
        assert_eq!((s.len(), s.evictions()), (3, 1));
        assert!(s.get("x").is_none() && s.get("w").is_some());
        // Storing an id again replaces it (not an eviction).
        let ins = s.insert("y".into(), conv("k", 100), Duration::ZERO, now).unwrap();
        assert_eq!(ins.evicted, ["y"]);
        assert_eq!((s.len(), s.evictions(), s.bytes()), (3, 1, 3 * one));
        // Now y is the newest: z goes next.
        assert_eq!(s.insert("v".into(), conv("k", 100), Duration::ZERO, now).unwrap().evicted, ["z"]);
    }

    #[test]
    fn too_large_entries_are_refused() {
        let mut s = ConversationStore::new(limits(1 << 20));
        let e = s.insert("big".into(), conv("k", 5000), Duration::ZERO, Instant::now()).unwrap_err();
        assert!(matches!(e, Refused::TooLarge { max: 4096, .. }));
        assert!(s.is_empty());
        assert!(!s.remove("big"));
    }
}
